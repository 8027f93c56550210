//! The Seamless buffer server, a drop-in for hashserver 1.1.0 (spec: hashserver.md), served with
//! axum on tokio: `GET/PUT /<checksum>`, `PUT /promise/<checksum>`, `/has`, `/has-now`,
//! `/buffer-length`, `/healthcheck`, with hashserver's status codes, bodies and headers.
//!
//! `protocol.rs` holds the wire rules, `backend.rs` every disk access, `promises.rs` the
//! per-process promises and in-flight uploads, `routes.rs` the handlers. `seamfs hashserver`
//! (cli/hashserver.rs) serves a hashserver directory; the mount serves its own store.

mod backend;
mod promises;
pub mod protocol;
mod routes;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use backend::{Algorithm, Backend, BufferDir, Layout, PREFIX_SENTINEL};
use promises::{InFlight, Promises};

use crate::http::Activity;

/// How long a GET waits for lock files by default (hashserver's `--lock-timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of a buffer server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Accept `PUT /<cs>` and `PUT /promise/<cs>`.
    pub writable: bool,
    /// Lock files older than this are ignored.
    pub lock_timeout: Duration,
}

struct Shared {
    backend: Arc<Backend>,
    options: Options,
    promises: Promises,
    in_flight: InFlight,
    activity: Arc<Activity>,
}

/// One buffer server: where the buffers are, its options, promises and activity clock.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    pub fn new(backend: Backend, options: Options) -> Service {
        Service {
            shared: Arc::new(Shared {
                backend: Arc::new(backend),
                options,
                promises: Promises::default(),
                in_flight: InFlight::default(),
                activity: Arc::new(Activity::new()),
            }),
        }
    }

    pub fn activity(&self) -> Arc<Activity> {
        self.shared.activity.clone()
    }

    /// The axum router. hashserver's routing (FastAPI's 404/405 rules, path parameters that a
    /// `PUT /has` also matches) is reproduced in `routes::dispatch`, so everything goes there.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(routes::dispatch)
            .with_state(self.shared.clone())
    }

    /// Serve on `listener` until `shutdown` completes; in-flight requests are finished first.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY not set: {e}");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A buffer server on a thread of its own (its own tokio runtime), for the mount. Stopped on
/// drop.
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl BackgroundServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, what a seamless-remote `BufferClient` is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("buffer server stopped with an error: {e}"),
                Err(_) => tracing::warn!("buffer server thread panicked"),
            }
        }
    }
}

/// Serve `service` on `host:port` (0 = a free port) on a background thread; returns once the
/// socket is bound.
pub fn spawn(service: Service, host: &str, port: u16) -> io::Result<BackgroundServer> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("seamfs-buffer-http")
        .enable_all()
        .build()?;
    let listener = runtime.block_on(TcpListener::bind((host, port)))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("seamfs-buffer-server".into())
        .spawn(move || {
            runtime.block_on(service.serve(listener, async {
                let _ = rx.await;
            }))
        })?;
    Ok(BackgroundServer {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}
