//! The buffer server's request handling (`seamfs hashserver` and the mount's buffer port), its
//! axum router driven without sockets: any method, path, headers (Range, If-Range,
//! Accept-Encoding, Content-Encoding, Content-Type...) and body get a whole answer that is never
//! a failure on our side (5xx), except hashserver's own 500 for a list body with a non-string
//! element, which we reproduce on purpose.
//!
//! Input: one flag byte (bit 0: the mount's store with a RAM tier instead of a hashserver
//! directory; bit 1: read-only), then `METHOD PATH\n`, `Name: value\n` lines, an empty line
//! and the body. Each input gets a fresh service (promises are per process, and a GET waits for
//! a promised buffer), over directories shared by all inputs and seeded with one buffer.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use seamfs::hashserver::{Algorithm, Backend, BufferDir, Options, Service};
use seamfs::store::disk::PREFIX_SENTINEL;
use seamfs::store::{Layout, RamConfig, Store, StoreOptions};
use tower::ServiceExt;

/// `Hello world!\n`, the buffer of the spec transcripts, present in both backends.
const HELLO: &[u8] = b"Hello world!\n";
const HELLO_SHA256: &str = "0ba904eae8773b70c75333db4de2f3ac45a8ad4ddba1b242f0b3cfc199391dd8";

struct Fixture {
    _dir: tempfile::TempDir,
    buffers: PathBuf,
    store: Arc<Store>,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let buffers = dir.path().join("buffers");
        seed_directory(&buffers);
        let options = StoreOptions {
            ram: Some(RamConfig::new(1 << 20, None)),
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("store"), &options, "fuzz").expect("open store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let fixture = Fixture {
            _dir: dir,
            buffers,
            store: Arc::new(store),
            runtime,
        };
        for flags in [0, 1] {
            let request = put(HELLO_SHA256, HELLO);
            let status = fixture.runtime.block_on(answer(&fixture, flags, request)).0;
            assert!(status.is_success(), "seeding the buffer: {status}");
        }
        fixture
    })
}

/// A hashserver directory in the prefix layout.
fn seed_directory(root: &Path) {
    std::fs::create_dir_all(root).expect("buffer dir");
    std::fs::write(root.join(PREFIX_SENTINEL), "1\n").expect("sentinel");
}

fn put(hex: &str, body: &[u8]) -> Request<Body> {
    Request::put(format!("/{hex}"))
        .body(Body::from(body.to_vec()))
        .expect("a valid request")
}

fn service(fixture: &Fixture, flags: u8) -> Service {
    let backend = if flags & 1 == 1 {
        Backend::store(&fixture.store)
    } else {
        let main = BufferDir {
            root: fixture.buffers.clone(),
            layout: Layout::Prefix,
        };
        Backend::directory(main, Vec::new(), Algorithm::Sha256)
    };
    let options = Options {
        writable: flags & 2 == 0,
        lock_timeout: Duration::from_secs(1),
    };
    Service::new(backend, options)
}

/// The status and whole body of the answer to `request`.
async fn answer(fixture: &Fixture, flags: u8, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = service(fixture, flags)
        .router()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| format!("<body broke off: {e}>").into_bytes());
    (status, body)
}

/// `METHOD PATH\nName: value\n...\n\nbody`; None for what hyper would refuse before routing.
fn parse(data: &[u8]) -> Option<Request<Body>> {
    let head_end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or((data.len(), data.len()), |i| (i, i + 2));
    let head = std::str::from_utf8(&data[..head_end.0]).ok()?;
    let body = data[head_end.1..].to_vec();
    let mut lines = head.lines();
    let (method, path) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(path);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(Body::from(body)).ok()
}

/// hashserver answers 500 to a list body holding a non-string element (its TypeError).
fn is_list_route(path: &str) -> bool {
    matches!(path, "/has" | "/has-now" | "/buffer-length")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some(request) = parse(rest) else {
        return;
    };
    let path = request.uri().path().to_string();
    let fixture = fixture();
    let (status, body) = fixture.runtime.block_on(answer(fixture, flags, request));
    let reproduced = status == StatusCode::INTERNAL_SERVER_ERROR
        && is_list_route(&path)
        && body == b"Internal Server Error";
    assert!(
        status.as_u16() < 500 || reproduced,
        "{path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
});
