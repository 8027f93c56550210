//! The HTTP serving layer every seamfs server uses (`serve_with_limits`): the accept loop with
//! limits a hostile or broken client cannot get around.
//!
//! - A cap on open connections. Over it, a connection is answered `503` and closed at once by a
//!   small, separately capped set of rejecters; beyond those it is closed unanswered. Either way
//!   it holds no descriptor for long.
//! - The cap is tied to the process's descriptor limit (`Limits::for_this_process`): HTTP never
//!   holds more than a quarter of the table, so the FUSE side of a mount (files, backing files,
//!   the store) can never meet EMFILE because of HTTP clients.
//! - A deadline to send each request head (`head_timeout`), counted from the connection's start
//!   or from the end of the previous answer, so it also closes idle keep-alive connections.
//! - A deadline to send each request body (`body_timeout`, extended by `min_body_rate` for what
//!   arrives, so large bodies at a decent rate pass and trickling ones do not): a late body
//!   fails with `BodyTimeout`, which handlers answer `408`; the connection is then closed.
//! - Once no connection is open, freed memory is handed back to the system (glibc keeps the
//!   per-connection buffers of a burst of clients otherwise).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::map_request_with_state;
use http_body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections served at once unless the descriptor limit calls for fewer (the CLI's help
/// says 1024).
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections over the cap that get an answer (`503`) rather than a bare close.
const MAX_REJECTERS: usize = 32;
/// How long a rejecter waits for the request it answers, and then for the client to close.
const REJECT_WAIT: Duration = Duration::from_millis(500);

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a request head, from the connection's start or the previous answer.
    pub head_timeout: Duration,
    /// Time to send a request body, before `min_body_rate` extends it.
    pub body_timeout: Duration,
    /// Bytes per second of body that buy more time (one second per `min_body_rate` bytes).
    pub min_body_rate: u64,
}

impl Limits {
    /// The defaults, with the connection cap fitted to this process's descriptor limit.
    pub fn for_this_process() -> Limits {
        Limits {
            // Longer than the keep-alive of the usual clients (aiohttp: 15 s), so they close
            // idle connections first and never send on one this side is closing.
            head_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 1 << 20,
            max_connections: DEFAULT_MAX_CONNECTIONS.min(connection_budget(descriptor_limit())),
        }
    }

    /// `self` with at most `wanted` connections, and never more than the descriptor budget.
    pub fn with_max_connections(self, wanted: usize) -> Limits {
        let budget = connection_budget(descriptor_limit());
        if wanted > budget {
            tracing::warn!(
                wanted,
                budget,
                "HTTP connections capped at a quarter of the descriptor limit (ulimit -n), \
                 so that the filesystem keeps the rest"
            );
        }
        Limits {
            max_connections: wanted.clamp(1, budget),
            ..self
        }
    }
}

/// The most connections a process with `nofile` descriptors gives HTTP: a quarter of them.
fn connection_budget(nofile: u64) -> usize {
    usize::try_from(nofile / 4).unwrap_or(usize::MAX).max(1)
}

/// The soft `RLIMIT_NOFILE` of this process.
fn descriptor_limit() -> u64 {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Raise the soft descriptor limit to the hard one (a mount holds many files; the HTTP cap is
/// a share of this limit). Returns the soft limit in force afterwards.
pub fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::debug!("descriptor limit stays at {soft}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => descriptor_limit(),
    }
}

/// Connections the kernel queues before `accept` (capped by net.core.somaxconn): a burst of
/// clients while the accept loop waits for a CPU must not get dropped SYNs (a 1 s retry each).
const ACCEPT_BACKLOG: u32 = 4096;

/// Listen on `host:port` (port 0: any free port) with a deep accept queue.
pub async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(ACCEPT_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} names no address"),
        )
    }))
}

/// Serve `router` on `listener` within `limits` until `shutdown` completes; connections still
/// open then finish their request in flight and close.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let router = router.layer(map_request_with_state(limits, with_body_deadline));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .keep_alive(true);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let rejecters = Arc::new(Semaphore::new(MAX_REJECTERS));
    let trim = Arc::new(Trim::new(open.clone(), limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            reject(tcp, &rejecters, limits.max_connections);
            continue;
        };
        // Small request/answer pairs on keep-alive connections: never let Nagle hold an answer.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        let trim = trim.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
            drop::<OwnedSemaphorePermit>(permit);
            trim.connection_closed();
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Accept failed: out of descriptors (wait for some to close) or a client gone before accept.
async fn accept_failed(e: io::Error) {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tracing::warn!("cannot accept an HTTP connection: {e}; retrying in 100 ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        _ => tracing::debug!("accept: {e}"),
    }
}

/// The answer over the connection cap.
fn busy_answer(max: usize) -> String {
    let body =
        format!("ERROR: Too many connections (the server takes {max} at once): retry shortly\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answer a connection over the cap with 503, or, when the rejecters are all busy, just close it.
fn reject(tcp: TcpStream, rejecters: &Arc<Semaphore>, max: usize) {
    let Ok(rejecter) = rejecters.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        answer_busy(tcp, max).await;
        drop(rejecter);
    });
}

/// Read the request head (an answer before it confuses clients, and closing with unread input
/// sends a reset, which can make the client lose the answer), answer 503, and close.
async fn answer_busy(mut tcp: TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(REJECT_WAIT, read_head(&mut tcp)).await;
    let answer = busy_answer(max);
    if let Ok(Ok(())) = tokio::time::timeout(REJECT_WAIT, tcp.write_all(answer.as_bytes())).await {
        let _ = tcp.shutdown().await;
        let _ = tokio::time::timeout(REJECT_WAIT, read_until_closed(&mut tcp)).await;
    }
}

/// Read until the end of a request head, a bounded amount.
async fn read_head(tcp: &mut TcpStream) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while seen.len() < 64 << 10 {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..n]);
        let from = seen.len().saturating_sub(n + 3);
        if seen[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(())
}

/// Read (and drop) what the peer sends until it closes.
async fn read_until_closed(tcp: &mut TcpStream) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 4096];
    while tcp.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Hands freed memory back to the system once the last open connection closes (at most once
/// a second): a burst of thousands of clients otherwise leaves its buffers in the allocator.
struct Trim {
    open: Arc<Semaphore>,
    max: usize,
    scheduled: AtomicBool,
}

impl Trim {
    fn new(open: Arc<Semaphore>, max: usize) -> Trim {
        Trim {
            open,
            max,
            scheduled: AtomicBool::new(false),
        }
    }

    fn connection_closed(self: &Arc<Self>) {
        if self.open.available_permits() < self.max || self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let trim = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trim.scheduled.store(false, Ordering::Release);
            if trim.open.available_permits() == trim.max {
                let _ = tokio::task::spawn_blocking(release_free_memory).await;
            }
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

// ---- the body deadline ----

/// A request body not received within its deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "request body not received in time (allowed: {allowed:?} plus one second per {rate} bytes received)"
)]
pub struct BodyTimeout {
    allowed: Duration,
    rate: u64,
}

/// Whether `error` (or what caused it) is a `BodyTimeout`.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

async fn with_body_deadline(State(limits): State<Limits>, request: Request) -> Request {
    request.map(|body| Body::new(DeadlineBody::new(body, limits)))
}

/// A body that fails with `BodyTimeout` once its deadline passes; each frame received pushes
/// the deadline by its length at `min_body_rate`.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limits: Limits,
}

impl DeadlineBody {
    fn new(inner: Body, limits: Limits) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
            limits,
        }
    }

    fn extend(&mut self, received: usize) {
        let more =
            Duration::from_secs_f64(received as f64 / self.limits.min_body_rate.max(1) as f64);
        let until = self.deadline.deadline() + more;
        self.deadline.as_mut().reset(until.max(Instant::now()));
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(received)) = &frame
                && let Some(data) = received.data_ref()
            {
                this.extend(data.len());
            }
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout {
                allowed: this.limits.body_timeout,
                rate: this.limits.min_body_rate,
            })))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_takes_at_most_a_quarter_of_the_descriptors() {
        assert_eq!(connection_budget(1024), 256);
        assert_eq!(connection_budget(20_000), 5_000);
        assert_eq!(connection_budget(2), 1);
        let limits = Limits::for_this_process();
        assert!(limits.max_connections as u64 <= descriptor_limit() / 4);
        assert!(
            limits.with_max_connections(usize::MAX).max_connections as u64
                <= descriptor_limit() / 4
        );
    }

    #[test]
    fn a_body_timeout_is_found_under_wrappers() {
        let wrapped = axum::Error::new(BodyTimeout {
            allowed: Duration::from_secs(1),
            rate: 1,
        });
        assert!(is_body_timeout(&wrapped));
        assert!(!is_body_timeout(&io::Error::other("other")));
    }
}
