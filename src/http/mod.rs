//! The seamless-database JSON-over-HTTP protocol, served with axum on tokio.
//!
//! `GET /healthcheck` answers `OK`; GET and PUT on any other path carry one JSON request in the
//! body (`protocol.rs` answers it). Every reply is `text/plain; charset=utf-8`, as the Python
//! server's. Other parts of seamfs embed the server with `serve` (in their own runtime) or
//! `spawn` (on a thread of its own, for synchronous callers such as the mount). `serve_router`
//! and `spawn_router` are the connection handling every seamfs HTTP server shares (the buffer
//! server's too).

pub mod protocol;
pub mod serving;
mod writer;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::db::Database;
use protocol::Reply;
pub use serving::{Limits, serve_with_limits};
use writer::Writer;

/// Largest request body accepted (the Python server takes up to 10 GB); larger ones get 413.
pub const BODY_LIMIT: usize = 16 << 20;

/// When the server last saw a request (for `--timeout`): healthchecks, GETs, and PUTs on a
/// writable server count, as in the Python server.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Time since the last request (or since the server was created).
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

struct Shared {
    db: Database,
    /// None: a read-only server.
    writer: Option<Writer>,
    activity: Arc<Activity>,
}

/// One database server: the database, whether PUTs are allowed, and its activity clock.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// `writable = false` answers every PUT with 405 (also on a database opened writable).
    /// A writable service starts its writer thread.
    pub fn new(db: Database, writable: bool) -> io::Result<Service> {
        let writer = if writable && db.is_writable() {
            Some(Writer::start(db.clone())?)
        } else {
            None
        };
        Ok(Service {
            shared: Arc::new(Shared {
                db,
                writer,
                activity: Arc::new(Activity::new()),
            }),
        })
    }

    pub fn activity(&self) -> Arc<Activity> {
        self.shared.activity.clone()
    }

    /// The axum router of the protocol.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/healthcheck",
                get(healthcheck).put(dispatch).fallback(dispatch),
            )
            .fallback(dispatch)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.shared.clone())
    }

    /// Serve on `listener` within `limits` until `shutdown` completes; in-flight requests are
    /// finished first.
    pub async fn serve(
        self,
        listener: TcpListener,
        limits: Limits,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        serve_router(listener, self.router(), limits, shutdown).await
    }
}

/// Serve any of seamfs' HTTP routers (database, buffers) on `listener` under `limits` until
/// `shutdown` completes; in-flight requests are finished first.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, router, limits, shutdown).await
}

/// Bind `host:port` (port 0: any free port); `listener.local_addr()` tells which.
pub async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    serving::bind(host, port).await
}

/// A server (database or buffers) running on a thread of its own (its own tokio runtime).
/// Stopped on `stop` or drop.
pub struct BackgroundServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl BackgroundServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, the URL a seamless-remote client is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving and wait for the thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("HTTP server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            tracing::warn!("HTTP server stopped with an error: {e}");
        }
    }
}

/// Start serving `db` on `host:port` (0 = a free port) on a background thread; returns once
/// the socket is bound, so the address is usable at once.
pub fn spawn(
    db: Database,
    host: &str,
    port: u16,
    writable: bool,
    limits: Limits,
) -> io::Result<BackgroundServer> {
    let router = Service::new(db, writable)?.router();
    spawn_router(router, host, port, "seamfs-db", limits)
}

/// Serve `router` on `host:port` (0 = a free port) under `limits` on a thread named `name` with
/// its own runtime; returns once the socket is bound.
pub fn spawn_router(
    router: Router,
    host: &str,
    port: u16,
    name: &str,
    limits: Limits,
) -> io::Result<BackgroundServer> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{name}-http"))
        .enable_all()
        .build()?;
    let listener = runtime.block_on(bind(host, port))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("{name}-server"))
        .spawn(move || {
            runtime.block_on(serve_router(listener, router, limits, async {
                let _ = rx.await;
            }))
        })?;
    Ok(BackgroundServer {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

// ---- handlers ----

async fn healthcheck(State(shared): State<Arc<Shared>>) -> Response {
    shared.activity.touch();
    text(Reply {
        status: 200,
        body: "OK".into(),
    })
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match method {
        Method::GET | Method::HEAD => {
            shared.activity.touch();
            // What the mount acknowledged and holds back for a group commit is written first,
            // so a record answered here is never behind a closed file.
            if let Some(pending) = shared.db.pending() {
                let _ = tokio::task::spawn_blocking(move || pending.write_pending()).await;
            }
            match body {
                // Reads are a few microseconds on a WAL reader connection: answer inline.
                Ok(body) => text(protocol::answer_get(&shared.db, &body)),
                Err(rejection) => body_error(rejection),
            }
        }
        Method::PUT => {
            let Some(writer) = &shared.writer else {
                return text(Reply {
                    status: 405,
                    body: "ERROR: Database server is read-only".into(),
                });
            };
            shared.activity.touch();
            match body {
                Ok(body) => text(writer.put(body).await),
                Err(rejection) => body_error(rejection),
            }
        }
        _ => text(Reply {
            status: 405,
            body: "405: Method Not Allowed".into(),
        }),
    }
}

fn body_error(rejection: BytesRejection) -> Response {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            text(Reply {
                status: 413,
                body: format!("ERROR: Request body larger than {} MiB", BODY_LIMIT >> 20),
            })
        }
        other if serving::is_body_timeout(&other) => text(Reply {
            status: 408,
            body: format!("ERROR: {}", other.body_text()),
        }),
        other => text(Reply {
            status: 400,
            body: format!("ERROR: Cannot read the request body: {other}"),
        }),
    }
}

fn text(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = HeaderValue::from_static("text/plain; charset=utf-8");
    (status, [(header::CONTENT_TYPE, content_type)], reply.body).into_response()
}
