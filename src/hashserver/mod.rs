//! The Seamless buffer server, a drop-in for hashserver 1.1.0 (spec: hashserver.md), served with
//! axum on tokio: `GET/PUT /<checksum>`, `PUT /promise/<checksum>`, `/has`, `/has-now`,
//! `/buffer-length`, `/healthcheck`, with hashserver's status codes, bodies and headers.
//!
//! `protocol.rs` holds the wire rules, `backend.rs` every disk access (`dir_index.rs` the
//! remembered listings `/has` uses), `promises.rs` the
//! per-process promises and in-flight uploads, `routes.rs` the handlers. `seamfs hashserver`
//! (cli/hashserver.rs) serves a hashserver directory; the mount serves its own store.

mod backend;
mod dir_index;
mod promises;
pub mod protocol;
mod routes;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

pub use backend::{Algorithm, Backend, BufferDir};
use promises::{InFlight, Promises};

use crate::http::{Activity, BackgroundServer};

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
        limits: crate::http::Limits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        crate::http::serve_router(listener, self.router(), limits, shutdown).await
    }
}

/// Serve `service` on `host:port` (0 = a free port) on a background thread (for the mount);
/// returns once the socket is bound.
pub fn spawn(
    service: Service,
    host: &str,
    port: u16,
    limits: crate::http::Limits,
) -> io::Result<BackgroundServer> {
    crate::http::spawn_router(service.router(), host, port, "seamfs-buffers", limits)
}
