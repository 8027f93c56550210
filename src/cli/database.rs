//! `seamfs database DATABASE_FILE`: serve a Seamless database over HTTP, a drop-in for
//! seamless-database 2.1 (also run as `seamless-database`): the same options, port choice,
//! status-file handshake with the launcher, inactivity timeout and signal handling (spec §5.4).
//! Differences on purpose: `--host` defaults to 127.0.0.1, a port in use is an immediate
//! error, and read-only mode works (see docs/compat.md, "Database").

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use super::launch::{self, StatusFile};
use crate::db::Database;
use crate::http::Service;

/// Serve a Seamless database file over HTTP (the seamless-database protocol).
///
/// Prints `DATABASE FILE <path>` and the address it serves on. Exits 0 on SIGINT, SIGTERM,
/// SIGHUP, or after --timeout seconds without requests.
#[derive(clap::Args)]
pub struct Args {
    /// SQLite file holding the database; created (with its tables) if missing and --writable.
    database_file: PathBuf,
    /// Port to listen on (0: any free port). Default: a random free port in 49152-65535.
    #[arg(long, conflicts_with = "port_range")]
    port: Option<u16>,
    /// Pick a random free port in START..=END.
    #[arg(long, num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
    port_range: Option<Vec<i64>>,
    /// Interface to listen on. This server has no authentication: use 0.0.0.0 only on a
    /// trusted network.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Accept PUT requests (the file is opened read/write). Without it every PUT gets 405.
    #[arg(long)]
    writable: bool,
    /// JSON object file written by the launcher: wait for it, then add "port" and
    /// "status": "running" (or "status": "failed").
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    /// Stop (exit 0) after this many seconds without requests.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    launch::init_logging();
    println!("DATABASE FILE {}", args.database_file.display());
    let db = Database::open(&args.database_file, args.writable)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, db))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args, db: Database) -> anyhow::Result<()> {
    let listener =
        launch::choose_listener(&args.host, args.port, args.port_range.as_deref()).await?;
    let port = listener.local_addr()?.port();
    let status = match &args.status_file {
        Some(path) => Some(StatusFile::wait(path).await?),
        None => None,
    };
    let timeout = match args.timeout {
        Some(t) if !(t > 0.0 && t.is_finite()) => {
            if let Some(status) = &status {
                status.write_failed()?;
            }
            bail!("--timeout must be a positive number");
        }
        t => t.map(Duration::from_secs_f64),
    };
    let service = Service::new(db, args.writable).context("cannot start the database writer")?;
    let activity = service.activity();
    println!(
        "Serving the Seamless database on http://{}",
        listener.local_addr()?
    );
    println!("Press Ctrl+C to end");
    if let Some(status) = &status {
        status.write_running(port)?;
    }
    let shutdown = launch::shutdown_signal(activity, timeout)?;
    service
        .serve(listener, shutdown)
        .await
        .context("the HTTP server failed")
}
