//! `seamfs hashserver DIRECTORY`: serve a Seamless buffer directory over HTTP, a drop-in for
//! hashserver 1.1.0 (also run as `hashserver`): the same options, start-up checks in the same
//! order, port choice, status-file handshake, inactivity timeout, and the `OK` / "Uvicorn
//! running on" lines launchers and tests look for (spec §7). Differences on purpose are listed
//! in docs/compat.md ("Buffer server").

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use super::launch::{self, StatusFile};
use crate::hashserver::{Algorithm, Backend, BufferDir, DEFAULT_LOCK_TIMEOUT, Options, Service};
use crate::store::disk::PREFIX_SENTINEL;
use crate::store::{DiskStore, Layout, RemoteStack, StoreOptions};

/// What `seamfs hashserver --help` shows after the options.
const HELP: &str = "\
Buffers are files named by their checksum: DIRECTORY/<cs[:2]>/<cs> (prefix layout, the default)
or DIRECTORY/<cs> (flat). Prints `OK`, then the address on stderr. Exits 0 on SIGINT, SIGTERM,
SIGHUP, or after --timeout seconds without requests.

With --remote, a buffer DIRECTORY lacks is fetched from the remotes, verified and kept in
DIRECTORY; with --push, every buffer PUT is also uploaded in the background (the queue is
DIRECTORY/.seamfs-push/push-queue.db). Both need --hash-algorithm sha-256.

Examples:
  seamfs hashserver ~/buffers --writable --port 5577
  hashserver --port-range 5500 5600 --status-file st.json --timeout 600 ~/buffers --writable
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true seamfs hashserver /scratch/buffers \\
      --writable --port 5577 --remote s3://bucket/buffers --push s3://bucket/buffers
  seamfs hashserver ~/cache --port 5577 --remote http://127.0.0.1:5813";

/// Options of `seamfs hashserver` (hashserver 1.1.0's, plus the remote tiers).
#[derive(clap::Args)]
#[command(after_help = HELP)]
pub struct Args {
    /// Directory where buffers are located (it must exist).
    directory: PathBuf,
    /// Extra read-only buffer directories, separated by `;` (default: $HASHSERVER_EXTRA_DIRS).
    #[arg(long, value_name = "DIRS")]
    extra_dirs: Option<String>,
    /// Allow HTTP PUT requests (uploads and promises).
    #[arg(long)]
    writable: bool,
    /// Directory layout: "prefix" (DIRECTORY/<cs[:2]>/<cs>) or "flat" (DIRECTORY/<cs>).
    #[arg(long, default_value = "prefix")]
    layout: String,
    /// Hash algorithm that names the buffers.
    #[arg(long, default_value = "sha-256", value_parser = ["sha3-256", "sha-256"])]
    hash_algorithm: String,
    /// Wait at most this many seconds for lock files of external writers.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_LOCK_TIMEOUT.as_secs_f64(), allow_negative_numbers = true)]
    lock_timeout: f64,
    #[command(flatten)]
    remote: super::RemoteArgs,
    #[command(flatten)]
    server: launch::ServerArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    launch::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    if !(args.lock_timeout > 0.0 && args.lock_timeout.is_finite()) {
        bail!("--lock-timeout must be a positive number");
    }
    let limits = args.server.http.limits()?;
    let listener = args.server.listener().await;
    let status = match &args.server.status_file {
        Some(path) => Some(StatusFile::wait(path).await?),
        None => None,
    };
    // A port that cannot be had is reported to the launcher too (hashserver says "running").
    let listener = match listener {
        Ok(listener) => listener,
        Err(e) => {
            if let Some(status) = &status {
                status.write_failed()?;
            }
            return Err(e);
        }
    };
    let addr = listener.local_addr()?;
    let checked = check_startup(&args).await;
    let (timeout, backend, _remote_stack) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            if let Some(status) = &status {
                status.write_failed()?;
            }
            return Err(e);
        }
    };
    let service = Service::new(
        backend,
        Options {
            writable: args.writable,
            lock_timeout: Duration::from_secs_f64(args.lock_timeout),
        },
    );
    let activity = service.activity();
    println!("OK");
    // The upstream tests and some launchers find the port with the regex
    // `Uvicorn running on http://[^:]+:(\d+)`: print the line they look for.
    eprintln!("INFO:     Uvicorn running on http://{addr} (Press CTRL+C to quit)");
    if let Some(status) = &status {
        status.write_running(addr.port())?;
    }
    let shutdown = launch::shutdown_signal(activity, timeout)?;
    service
        .serve(listener, limits, shutdown)
        .await
        .context("the HTTP server failed")
}

/// hashserver's checks after the status-file handshake, in its order: --timeout, the
/// directory, its mode, the layout and the prefix sentinel; then the remote tiers (the stack
/// must live as long as the server).
async fn check_startup(
    args: &Args,
) -> anyhow::Result<(Option<Duration>, Backend, Option<RemoteStack>)> {
    let timeout = args.server.idle_timeout()?;
    let dir = &args.directory;
    let shown = dir.display();
    if !dir.exists() {
        bail!("Directory '{shown}' does not exist");
    }
    if !dir.is_dir() {
        bail!("Directory '{shown}' is not a directory");
    }
    // Group-writable, setgid and sticky, as hashserver sets it (best effort).
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o3775));
    let layout = match args.layout.as_str() {
        "prefix" => Layout::Prefix,
        "flat" => Layout::Flat,
        _ => bail!("Layout must be 'flat' or 'prefix'"),
    };
    if layout == Layout::Prefix {
        let sentinel = dir.join(PREFIX_SENTINEL);
        if !sentinel.exists() {
            let _ = std::fs::write(&sentinel, b"1\n");
        }
    }
    let extra = args
        .extra_dirs
        .clone()
        .or_else(|| std::env::var("HASHSERVER_EXTRA_DIRS").ok())
        .unwrap_or_default();
    let extra = extra
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| BufferDir::detect(PathBuf::from(d)))
        .collect();
    let main = BufferDir {
        root: dir.clone(),
        layout,
    };
    let algorithm = match args.hash_algorithm.as_str() {
        "sha3-256" => Algorithm::Sha3_256,
        _ => Algorithm::Sha256,
    };
    let options = StoreOptions {
        remotes: args.remote.remotes.clone(),
        push: args.remote.push.clone(),
        ..StoreOptions::default()
    };
    if options.remotes.is_empty() && options.push.is_none() {
        return Ok((timeout, Backend::directory(main, extra, algorithm), None));
    }
    if algorithm != Algorithm::Sha256 {
        bail!(
            "--remote and --push need --hash-algorithm sha-256 (remote tiers name buffers by SHA-256)"
        );
    }
    let disk = DiskStore::open_folder(dir, Some(layout))
        .with_context(|| format!("cannot use {shown} as a buffer directory"))?;
    let stack = RemoteStack::open(Arc::new(disk), &options, &dir.join(".seamfs-push"))?;
    let backend = Backend::tiered(main, extra, stack.tiers().clone());
    Ok((timeout, backend, Some(stack)))
}
