//! `seamfs database DATABASE_FILE`: serve a Seamless database over HTTP, a drop-in for
//! seamless-database 2.1 (also run as `seamless-database`): the same options, port choice,
//! status-file handshake with the launcher, inactivity timeout and signal handling (spec §5.4).
//! Differences on purpose: `--host` defaults to 127.0.0.1, a port in use is an immediate
//! error, and read-only mode works (see docs/compat.md, "Database").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::launch::{self, StatusFile};
use crate::db::Database;
use crate::http::Service;

/// Serve a Seamless database file over HTTP (the seamless-database protocol).
///
/// Prints `DATABASE FILE <path>` and the address it serves on. Exits 0 on SIGINT, SIGTERM,
/// SIGHUP, or after --timeout seconds without requests.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  seamfs database ~/seamless/seamless.db --writable            # port logged\n  seamfs database db.sqlite --port 0 --status-file status.json  # a free port, written to the file\n  curl -s -X GET localhost:PORT -d '{\"type\":\"buffer_info\",\"checksum\":\"<hex>\"}'"
)]
pub struct Args {
    /// SQLite file holding the database; created (with its tables) if missing and --writable.
    database_file: PathBuf,
    /// Accept PUT requests (the file is opened read/write). Without it every PUT gets 405.
    #[arg(long)]
    writable: bool,
    #[command(flatten)]
    server: launch::ServerArgs,
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
    let limits = args.server.http.limits()?;
    let listener = args.server.listener().await?;
    let port = listener.local_addr()?.port();
    let status = match &args.server.status_file {
        Some(path) => Some(StatusFile::wait(path).await?),
        None => None,
    };
    let timeout = args.server.idle_timeout().inspect_err(|_| {
        if let Some(status) = &status
            && let Err(e) = status.write_failed()
        {
            tracing::warn!("cannot update the status file: {e:#}");
        }
    })?;
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
        .serve(listener, limits, shutdown)
        .await
        .context("the HTTP server failed")
}
