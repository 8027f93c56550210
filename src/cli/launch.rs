//! What the server subcommands (`database`, `hashserver`) share with their Python originals'
//! launchers: port choice (--port / --port-range / the default range), the status-file
//! handshake, shutdown on signals or after --timeout seconds idle, and logging to stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::seq::SliceRandom;
use serde_json::{Map, Value};
use tokio::net::TcpListener;

use crate::db::pyjson;
use crate::http::{self, Activity};

/// The options every server subcommand takes, as the Python servers spell them.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Port to listen on (0: any free port). Default: a random free port in 49152-65535.
    #[arg(long, conflicts_with = "port_range")]
    pub port: Option<u16>,
    /// Pick a random free port in START..=END.
    #[arg(long, num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
    pub port_range: Option<Vec<i64>>,
    /// Interface to listen on. This server has no authentication: use 0.0.0.0 only on a
    /// trusted network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// JSON object file written by the launcher: wait for it, then add "port" and
    /// "status": "running" (or "status": "failed").
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Stop (exit 0) after this many seconds without requests.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub http: super::HttpLimitArgs,
}

impl ServerArgs {
    /// The listening socket (see `choose_listener`).
    pub async fn listener(&self) -> anyhow::Result<TcpListener> {
        choose_listener(&self.host, self.port, self.port_range.as_deref()).await
    }

    /// `--timeout` as a duration; it must be positive.
    pub fn idle_timeout(&self) -> anyhow::Result<Option<Duration>> {
        match self.timeout {
            Some(t) if !(t > 0.0 && t.is_finite()) => bail!("--timeout must be a positive number"),
            t => Ok(t.map(Duration::from_secs_f64)),
        }
    }
}

/// The port range searched when neither --port nor --port-range is given (the Python default).
const DEFAULT_PORT_RANGE: (i64, i64) = (49152, 65535);
/// How long to wait for the launcher to create the status file.
const STATUS_FILE_WAIT: Duration = Duration::from_secs(20);

/// Log warnings and errors to stderr (more with RUST_LOG=info), unless logging is set up already.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Bind the listening socket: --port as is (in use: an error), else a random free port of
/// --port-range or of the default range, each port tried at most once.
async fn choose_listener(
    host: &str,
    port: Option<u16>,
    port_range: Option<&[i64]>,
) -> anyhow::Result<TcpListener> {
    if let Some(port) = port {
        return http::bind(host, port).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                anyhow::anyhow!(
                    "{host} port {port} already in use: choose another --port, or use --port-range"
                )
            }
            _ => anyhow::anyhow!("cannot listen on {host} port {port}: {e}"),
        });
    }
    let (start, end) = match port_range {
        Some([start, end]) => (*start, *end),
        _ => DEFAULT_PORT_RANGE,
    };
    if start < 0 || end > 65535 {
        bail!("--port-range values must be between 0 and 65535");
    }
    if start > end {
        bail!("--port-range START must be less than or equal to END");
    }
    let mut ports: Vec<u16> = (start as u16..=end as u16).collect();
    ports.shuffle(&mut rand::rng());
    for port in ports {
        match http::bind(host, port).await {
            Ok(listener) => return Ok(listener),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                ) => {}
            Err(e) => bail!("cannot listen on {host} port {port}: {e}"),
        }
    }
    bail!("No free port available in range {start}-{end}")
}

/// Completes on SIGINT, SIGTERM or SIGHUP, or once the server has been idle for `timeout`.
pub fn shutdown_signal(
    activity: Arc<Activity>,
    timeout: Option<Duration>,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let idle = async {
            match timeout {
                Some(limit) => idle_for(&activity, limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = hup.recv() => tracing::info!("SIGHUP: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
            _ = idle => tracing::info!("no request for {timeout:?}: stopping"),
        }
    })
}

/// Completes when no request has come for `limit`.
async fn idle_for(activity: &Activity, limit: Duration) {
    loop {
        let idle = activity.idle();
        if idle >= limit {
            return;
        }
        tokio::time::sleep(limit - idle).await;
    }
}

/// The launcher's status file: a JSON object we add `port` and `status` to.
pub struct StatusFile {
    path: PathBuf,
    contents: Map<String, Value>,
}

impl StatusFile {
    /// Wait up to 20 s for the file to exist; it must hold a JSON object.
    pub async fn wait(path: &Path) -> anyhow::Result<StatusFile> {
        let deadline = Instant::now() + STATUS_FILE_WAIT;
        let shown = path.display();
        let raw = loop {
            match std::fs::read(path) {
                Ok(raw) => break raw,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if Instant::now() >= deadline {
                        bail!(
                            "Status file '{shown}' not found after {} seconds",
                            STATUS_FILE_WAIT.as_secs()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!("cannot read status file '{shown}': {e}"),
            }
        };
        let value: Value = serde_json::from_slice(&raw)
            .with_context(|| format!("Status file '{shown}' is not valid JSON"))?;
        let Value::Object(contents) = value else {
            bail!("Status file '{shown}' must contain a JSON object");
        };
        Ok(StatusFile {
            path: path.to_path_buf(),
            contents,
        })
    }

    pub fn write_running(&self, port: u16) -> anyhow::Result<()> {
        let mut payload = self.contents.clone();
        payload.insert("port".into(), Value::from(port));
        payload.insert("status".into(), Value::from("running"));
        self.write(payload)
    }

    pub fn write_failed(&self) -> anyhow::Result<()> {
        let mut payload = self.contents.clone();
        payload.insert("status".into(), Value::from("failed"));
        self.write(payload)
    }

    /// Python `json.dump` + newline to `FILE.tmp`, renamed over the file (atomic for readers).
    fn write(&self, payload: Map<String, Value>) -> anyhow::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let text = pyjson::dumps(&Value::Object(payload)) + "\n";
        std::fs::write(&tmp, text)
            .with_context(|| format!("cannot write {}", Path::new(&tmp).display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))
    }
}
