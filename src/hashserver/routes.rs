//! The handlers: routing as FastAPI/Starlette do it for hashserver's routes (first full match
//! wins, else the first path match answers 405 with its method, else 404; a trailing slash is
//! redirected), CORS headers as its `CORSMiddleware` adds them, and one function per route.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::Shared;
use super::backend::{Found, Outcome, wait_for_locks};
use super::protocol::{self, ListError, RangeRequest};
use crate::checksum::{Checksum, Compression};
use crate::store::Reader;

/// Largest JSON list body accepted (a million checksums is about 70 MB).
const LIST_BODY_LIMIT: usize = 128 << 20;
/// Files up to this size are read into memory; larger ones are memory-mapped.
const READ_LIMIT: u64 = 256 << 10;
/// Pieces of an upload waiting for the writer thread.
const UPLOAD_QUEUE: usize = 16;
/// Block size of a body streamed from a tier's reader.
const STREAM_BLOCK: u64 = 1 << 20;
/// Blocks of a streamed body read ahead of the client.
const BODY_QUEUE: usize = 4;
/// PUT bodies up to this size (by `Content-Length`) are read whole before any disk work.
const SMALL_PUT: u64 = 64 << 10;

/// The routes of hashserver, in registration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    BufferLength,
    Has,
    HasNow,
    Healthcheck,
    Get,
    Put,
    Promise,
}

impl RouteKind {
    fn method(self) -> Method {
        match self {
            RouteKind::Put | RouteKind::Promise => Method::PUT,
            _ => Method::GET,
        }
    }

    /// The path parameter if `path` (percent-decoded) matches this route's pattern.
    fn matches(self, path: &str) -> Option<&str> {
        let literal = |name: &str| (path == name).then_some("");
        match self {
            RouteKind::BufferLength => literal("/buffer-length"),
            RouteKind::Has => literal("/has"),
            RouteKind::HasNow => literal("/has-now"),
            RouteKind::Healthcheck => literal("/healthcheck"),
            RouteKind::Get | RouteKind::Put => single_segment(path.strip_prefix('/')?),
            RouteKind::Promise => single_segment(path.strip_prefix("/promise/")?),
        }
    }
}

/// Starlette's `{param}`: one or more characters, no slash.
fn single_segment(rest: &str) -> Option<&str> {
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

fn routes(writable: bool) -> &'static [RouteKind] {
    use RouteKind::*;
    const READ: &[RouteKind] = &[BufferLength, Has, HasNow, Healthcheck, Get];
    const WRITE: &[RouteKind] = &[BufferLength, Has, HasNow, Healthcheck, Get, Put, Promise];
    if writable { WRITE } else { READ }
}

enum Resolution<'a> {
    Handle(RouteKind, &'a str),
    NotAllowed(Method),
    Redirect,
    NotFound,
}

fn resolve<'a>(method: &Method, path: &'a str, writable: bool) -> Resolution<'a> {
    let mut partial = None;
    for &route in routes(writable) {
        if let Some(param) = route.matches(path) {
            if route.method() == *method {
                return Resolution::Handle(route, param);
            }
            partial.get_or_insert(route.method());
        }
    }
    if let Some(allowed) = partial {
        return Resolution::NotAllowed(allowed);
    }
    let other = match path.strip_suffix('/') {
        Some(stripped) => stripped.to_string(),
        None => format!("{path}/"),
    };
    if path != "/" && routes(writable).iter().any(|r| r.matches(&other).is_some()) {
        return Resolution::Redirect;
    }
    Resolution::NotFound
}

/// Every request: CORS preflight, routing, then the CORS headers on the answer.
pub(super) async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.activity.touch();
    let origin = request.headers().contains_key(header::ORIGIN);
    let mut response = if request.method() == Method::OPTIONS
        && origin
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        preflight(request.headers())
    } else {
        route(&shared, request).await
    };
    shared.activity.touch();
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        let headers = response.headers_mut();
        if origin {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        if !headers.contains_key(header::VARY) {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    response
}

async fn route(shared: &Arc<Shared>, request: Request) -> Response {
    let raw_path = request.uri().path().to_string();
    let path = percent_decode(&raw_path);
    let method = request.method().clone();
    match resolve(&method, &path, shared.options.writable) {
        Resolution::Handle(route, param) => {
            let param = param.to_string();
            let (parts, body) = request.into_parts();
            match route {
                RouteKind::Healthcheck => text(StatusCode::OK, "OK"),
                RouteKind::Has | RouteKind::HasNow | RouteKind::BufferLength => {
                    list_route(shared, route, &parts.headers, body).await
                }
                RouteKind::Get => get_buffer(shared, &param, &parts.headers).await,
                RouteKind::Put => put_buffer(shared, &param, &parts.headers, body).await,
                RouteKind::Promise => promise(shared, &param),
            }
        }
        Resolution::NotAllowed(allowed) => {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"detail":"Method Not Allowed"}"#.into(),
            );
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_str(allowed.as_str()).expect("a method name"),
            );
            response
        }
        Resolution::Redirect => redirect(&request, &raw_path),
        Resolution::NotFound => {
            json_response(StatusCode::NOT_FOUND, r#"{"detail":"Not Found"}"#.into())
        }
    }
}

/// Starlette's `redirect_slashes`: 307 to the same URL with the trailing slash removed/added.
fn redirect(request: &Request, raw_path: &str) -> Response {
    let target = match raw_path.strip_suffix('/') {
        Some(stripped) => stripped.to_string(),
        None => format!("{raw_path}/"),
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!("http://{host}{target}{query}");
    let mut response = empty(StatusCode::TEMPORARY_REDIRECT);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// CORSMiddleware's answer to a preflight with `allow_origins/methods/headers = ["*"]`.
fn preflight(request: &HeaderMap) -> Response {
    let mut response = Response::new(Body::from("OK"));
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network",
        ),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, QUERY"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

// ---- /has, /has-now, /buffer-length ----

async fn list_route(
    shared: &Arc<Shared>,
    route: RouteKind,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let body = match axum::body::to_bytes(body, LIST_BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let checksums = match protocol::parse_list_body(content_type, &body) {
        Ok(checksums) => checksums,
        Err(ListError::Invalid(body)) => return json_response(StatusCode::BAD_REQUEST, body),
        Err(ListError::Internal) => return internal_error(),
    };
    let answer = match route {
        RouteKind::BufferLength => buffer_lengths(shared, checksums).await,
        _ => has(shared, checksums, route == RouteKind::Has).await,
    };
    json_response(StatusCode::OK, answer.to_string())
}

async fn has(shared: &Arc<Shared>, checksums: Vec<Checksum>, with_promises: bool) -> Value {
    let backend = shared.backend.clone();
    let in_flight: Vec<bool> = checksums
        .iter()
        .map(|cs| shared.in_flight.contains(cs))
        .collect();
    let (checksums, mut found) = blocking(move || {
        let stored = backend.has_many(&checksums);
        let found: Vec<bool> = stored
            .into_iter()
            .zip(in_flight)
            .map(|(s, u)| s || u)
            .collect();
        (checksums, found)
    })
    .await;
    if with_promises {
        for (answer, cs) in found.iter_mut().zip(&checksums) {
            *answer = *answer || shared.promises.is_promised(cs);
        }
    }
    json!(found)
}

async fn buffer_lengths(shared: &Arc<Shared>, checksums: Vec<Checksum>) -> Value {
    shared.in_flight.wait_idle(&checksums).await;
    let backend = shared.backend.clone();
    let (checksums, lengths) = blocking(move || {
        let lengths = backend.lengths(&checksums);
        (checksums, lengths)
    })
    .await;
    // A promised buffer's length is `true` (sic): hashserver puts a boolean in the int list.
    let answers: Vec<Value> = checksums
        .iter()
        .zip(lengths)
        .map(|(cs, length)| {
            if shared.promises.is_promised(cs) {
                json!(true)
            } else {
                json!(length)
            }
        })
        .collect();
    Value::Array(answers)
}

// ---- GET /<checksum> ----

/// What a GET found on disk, ready to send.
enum Ready {
    Missing,
    /// Stored forms are read at once (verified if raw).
    File {
        found: Found,
        bytes: Bytes,
    },
    /// Not in any directory, but in one of the tiers (the store's RAM tier, a remote read
    /// through).
    Tier(Reader),
    /// A compressed form the client cannot read: sent decompressed, streamed.
    Decompress {
        found: Found,
        compression: Compression,
    },
    Corrupt(String),
    NotAFile(String),
}

async fn get_buffer(shared: &Arc<Shared>, text_checksum: &str, headers: &HeaderMap) -> Response {
    let checksum = match protocol::parse_checksum(text_checksum) {
        Ok(cs) => cs,
        Err(msg) => return validation_error(text_checksum, &msg),
    };
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared.in_flight.wait_idle(&[checksum]).await;
    loop {
        match prepare(shared, checksum, accept.as_deref()).await {
            Ready::Missing => {
                if shared.promises.wait_for(&checksum).await {
                    continue;
                }
                return text(StatusCode::NOT_FOUND, "Not found");
            }
            Ready::File { found, bytes } => {
                return file_response(&checksum, Some(&found), Content::Bytes(bytes), headers);
            }
            Ready::Tier(reader) => {
                return file_response(&checksum, None, Content::of(checksum, reader), headers);
            }
            Ready::Decompress { found, compression } => {
                return decompressed_response(shared, checksum, found, compression);
            }
            Ready::Corrupt(path) => {
                let message = format!(
                    "File corruption: file at path {path} does not have the correct {} checksum.",
                    shared.backend.algorithm().name()
                );
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({ "message": message }).to_string(),
                );
            }
            Ready::NotAFile(path) => {
                let message = format!("File at path {path} is not a file.");
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({ "message": message }).to_string(),
                );
            }
        }
    }
}

/// Find the form to send; wait for lock files when it is missing or fails its checksum, then
/// look once more (hashserver's order).
async fn prepare(shared: &Arc<Shared>, checksum: Checksum, accept: Option<&str>) -> Ready {
    let order = protocol::preferred_forms(accept);
    let accept_owned = accept.map(str::to_string);
    let attempt = |shared: &Arc<Shared>| {
        let backend = shared.backend.clone();
        let order = order.clone();
        let accept = accept_owned.clone();
        blocking(move || read_form(&backend, &checksum, &order, accept.as_deref()))
    };
    let first = attempt(shared).await;
    let lock_path = match &first {
        Ready::Missing => None,
        Ready::Corrupt(path) => Some(std::path::PathBuf::from(path)),
        _ => return first,
    };
    let locks = shared.backend.lock_paths(&checksum, lock_path.as_deref());
    wait_for_locks(&locks, shared.options.lock_timeout).await;
    attempt(shared).await
}

/// One look on disk: the first stored form in `order`, opened, checked (raw form) and read.
fn read_form(
    backend: &super::Backend,
    checksum: &Checksum,
    order: &[protocol::Form],
    accept: Option<&str>,
) -> Ready {
    let Some(found) = backend.find(checksum, order) else {
        return match backend.from_tiers(checksum) {
            Ok(Some(reader)) => Ready::Tier(reader),
            Ok(None) => Ready::Missing,
            Err(e) => {
                tracing::warn!(%checksum, error = %e, "cannot read a buffer from the store");
                Ready::Missing
            }
        };
    };
    let shown = found.path.display().to_string();
    if !found.meta.is_file() {
        return Ready::NotAFile(shown);
    }
    if let Some(compression) = found.form
        && !protocol::accepts(accept, compression)
    {
        return Ready::Decompress { found, compression };
    }
    let result = (|| -> io::Result<Option<(Found, Bytes)>> {
        let file = std::fs::File::open(&found.path)?;
        let meta = file.metadata()?;
        let found = Found { meta, ..found };
        // The hash cannot overlap the send: the spec answers a corrupt file with a 400 and a
        // JSON body, so the verdict must be known before the status line goes out. A big file
        // is thus read twice on its first GET (hash, then send; the second read comes from the
        // page cache) and once after that (`verify` remembers it). Measured (perf, 512 MiB, under
        // load): the first GET is SHA-256 (SHA-NI) and the socket copy; a repeat GET runs at
        // `curl file://` speed.
        if found.form.is_none() && !backend.verify(checksum, &found, &file)? {
            return Ok(None);
        }
        let bytes = read_bytes(&file, found.meta.len())?;
        Ok(Some((found, bytes)))
    })();
    match result {
        Ok(Some((found, bytes))) => Ready::File { found, bytes },
        Ok(None) => Ready::Corrupt(shown),
        // Gone between the look and the open: as if missing.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ready::Missing,
        Err(e) => {
            tracing::warn!(path = %shown, error = %e, "cannot read a buffer file");
            Ready::Missing
        }
    }
}

/// The file's bytes: read when small, else memory-mapped (sent without a copy in user space).
fn read_bytes(file: &std::fs::File, len: u64) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    if len <= READ_LIMIT {
        let mut data = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut data, 0)?;
        return Ok(Bytes::from(data));
    }
    // SAFETY: buffer files are read-only and replaced only by rename, never rewritten in place.
    let map = unsafe { memmap2::Mmap::map(file)? };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Bytes::from_owner(map))
}

/// Starlette `FileResponse`: stat headers, `Range`/`If-Range`, 206 single or multipart.
fn file_response(
    checksum: &Checksum,
    found: Option<&Found>,
    content: Content,
    request: &HeaderMap,
) -> Response {
    use std::os::unix::fs::MetadataExt;
    let size = content.len();
    // A buffer held only in a RAM tier has no file time: the epoch, as the mount shows it.
    let mtime = found.map_or(0.0, |f| {
        protocol::python_mtime(f.meta.mtime(), f.meta.mtime_nsec())
    });
    let etag = protocol::etag(mtime, size);
    let last_modified = protocol::http_date(mtime);
    let mut headers = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    put(header::CONTENT_TYPE, "application/octet-stream");
    put(header::ACCEPT_RANGES, "bytes");
    put(
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{}\"", checksum.hex()),
    );
    put(header::LAST_MODIFIED, &last_modified);
    put(header::ETAG, &etag);
    if let Some(compression) = found.and_then(|f| f.form) {
        put(
            header::CONTENT_ENCODING,
            protocol::content_encoding(compression),
        );
    }
    let range = request.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range_ok = match request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(tag) => !tag.starts_with("W/") && (tag == last_modified || tag == etag),
    };
    let parts = match range.filter(|_| if_range_ok) {
        None => RangeRequest::Full,
        Some(range) => protocol::parse_range(range, size),
    };
    match parts {
        RangeRequest::Full => content.respond(StatusCode::OK, headers, vec![Part::Range(0, size)]),
        RangeRequest::Parts(ranges) if ranges.len() == 1 => {
            let (start, end) = ranges[0];
            put_range(&mut headers, start, end, size);
            let parts = vec![Part::Range(start, end)];
            content.respond(StatusCode::PARTIAL_CONTENT, headers, parts)
        }
        RangeRequest::Parts(ranges) => multipart(headers, content, &ranges),
        RangeRequest::Malformed(message) => {
            let mut response = Response::new(Body::from(message));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        RangeRequest::Unsatisfiable => {
            let mut response = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}

fn put_range(headers: &mut HeaderMap, start: u64, end: u64, size: u64) {
    let value = format!("bytes {start}-{}/{size}", end - 1);
    headers.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&value).expect("ascii"),
    );
}

/// A `multipart/byteranges` answer, laid out as Starlette writes it.
fn multipart(mut headers: HeaderMap, content: Content, ranges: &[(u64, u64)]) -> Response {
    let boundary = format!("{:026x}", rand::random::<u128>() >> 24);
    let size = content.len();
    let mut parts = Vec::new();
    for &(start, end) in ranges {
        parts.push(Part::Text(Bytes::from(format!(
            "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
            end - 1
        ))));
        parts.push(Part::Range(start, end));
        parts.push(Part::Text(Bytes::from_static(b"\r\n")));
    }
    parts.push(Part::Text(Bytes::from(format!("--{boundary}--"))));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
            .expect("ascii"),
    );
    content.respond(StatusCode::PARTIAL_CONTENT, headers, parts)
}

/// What a GET sends: bytes at hand (a file read whole or mapped, a RAM tier's), or a tier's
/// reader that is not (a remote's download), read in bounded blocks as the body goes out.
enum Content {
    Bytes(Bytes),
    Streamed(Checksum, Arc<Reader>),
}

/// A part of a body: literal bytes (multipart headers) or a range `[start, end)` of the content.
enum Part {
    Text(Bytes),
    Range(u64, u64),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Text(text) => text.len() as u64,
            Part::Range(start, end) => end - start,
        }
    }
}

impl Content {
    fn of(checksum: Checksum, reader: Reader) -> Content {
        match reader {
            Reader::Bytes(buffer) => Content::Bytes(buffer.bytes().clone()),
            ranged => Content::Streamed(checksum, Arc::new(ranged)),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Streamed(_, reader) => reader.len(),
        }
    }

    /// The answer with `parts` as its body (zero-copy for one range of bytes at hand).
    fn respond(self, status: StatusCode, mut headers: HeaderMap, parts: Vec<Part>) -> Response {
        let body = match self {
            Content::Bytes(bytes) => Body::from(joined(&bytes, parts)),
            Content::Streamed(checksum, reader) => {
                let len: u64 = parts.iter().map(Part::len).sum();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                streamed(checksum, reader, parts)
            }
        };
        with_headers(status, headers, body)
    }
}

/// `parts` of `bytes`, one after the other.
fn joined(bytes: &Bytes, parts: Vec<Part>) -> Bytes {
    if let [Part::Range(start, end)] = parts.as_slice() {
        return bytes.slice(*start as usize..*end as usize);
    }
    let mut body = Vec::new();
    for piece in parts {
        match piece {
            Part::Text(text) => body.extend_from_slice(&text),
            Part::Range(start, end) => body.extend_from_slice(&bytes[start as usize..end as usize]),
        }
    }
    Bytes::from(body)
}

/// A body of `parts` of `reader`, read in blocks of `STREAM_BLOCK` on a blocking thread, a few
/// blocks ahead of the client at most. A read that fails (a remote that broke off, a download
/// that failed its verification) ends the body short of its `Content-Length`: hyper drops the
/// connection, as for a compressed form that fails its hash, so a client never takes a cut-off
/// body for a whole one.
fn streamed(checksum: Checksum, reader: Arc<Reader>, parts: Vec<Part>) -> Body {
    blocking_body(move |send| {
        for part in parts {
            let (mut at, end) = match part {
                Part::Text(text) => {
                    if !send(Ok(text)) {
                        return;
                    }
                    continue;
                }
                Part::Range(start, end) => (start, end),
            };
            while at < end {
                match read_block(&reader, at, end) {
                    Ok(block) => {
                        at += block.len() as u64;
                        if !send(Ok(block)) {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%checksum, offset = at, error = %e, "GET cut off: a read from the tiers failed");
                        send(Err(e));
                        return;
                    }
                }
            }
        }
    })
}

/// The next block of `[at, end)` of `reader` (never empty: a reader that ends early fails).
fn read_block(reader: &Reader, at: u64, end: u64) -> io::Result<Bytes> {
    let block = reader.range(at, (end - at).min(STREAM_BLOCK) as usize)?;
    if block.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the buffer ended at {at} of {end} bytes"),
        ));
    }
    Ok(block)
}

/// A body whose parts `produce` makes on a blocking thread and hands to its callback (false:
/// the client is gone, stop), at most `BODY_QUEUE` ahead. An `Err` ends the body unfinished.
fn blocking_body(
    produce: impl FnOnce(&mut dyn FnMut(io::Result<Bytes>) -> bool) + Send + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(BODY_QUEUE);
    tokio::task::spawn_blocking(move || produce(&mut |piece| tx.blocking_send(piece).is_ok()));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

/// A compressed-only buffer for a client that cannot decode that compression: decompressed on
/// the fly, hashed on the way, and cut off (never completed) if the content does not match.
fn decompressed_response(
    shared: &Arc<Shared>,
    checksum: Checksum,
    found: Found,
    compression: Compression,
) -> Response {
    let algorithm = shared.backend.algorithm();
    let body = blocking_body(move |send| {
        let result = super::backend::stream_decompressed(
            &found.path,
            compression,
            algorithm,
            &checksum,
            |piece| send(Ok(piece)),
        );
        if let Err(e) = result {
            send(Err(e));
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", checksum.hex()))
            .expect("ascii"),
    );
    with_headers(StatusCode::OK, headers, body)
}

// ---- PUT ----

async fn put_buffer(
    shared: &Arc<Shared>,
    text_checksum: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let checksum = match protocol::parse_checksum(text_checksum) {
        Ok(cs) => cs,
        Err(msg) => return validation_error(text_checksum, &msg),
    };
    let compression = protocol::upload_compression(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .filter(|&len| len <= SMALL_PUT);
    let put = match small {
        Some(len) => put_small(shared, checksum, compression, body, len).await,
        None => put_streamed(shared, checksum, compression, body).await,
    };
    put_answer(shared, checksum, put)
}

/// What became of a PUT.
enum Put {
    /// Stored before this PUT (201, body not checked).
    AlreadyStored,
    /// Another upload of the checksum is in progress (202).
    InFlight,
    /// This PUT's upload: see `upload`.
    Uploaded(io::Result<Option<Outcome>>),
}

/// A big or unsized body: checked, then streamed to a writer thread while it arrives.
async fn put_streamed(
    shared: &Arc<Shared>,
    checksum: Checksum,
    compression: Option<Compression>,
    body: Body,
) -> Put {
    let backend = shared.backend.clone();
    if blocking(move || backend.already_stored(&checksum, compression)).await {
        return Put::AlreadyStored;
    }
    let Some(_claim) = shared.in_flight.claim(checksum) else {
        return Put::InFlight;
    };
    Put::Uploaded(upload(shared, checksum, compression, body).await)
}

/// A small body: read whole first, then the checks and the write in one trip to a blocking
/// thread. A small PUT costs its thread hand-offs more than its bytes (three trips and a channel
/// wake per piece on the streamed path).
async fn put_small(
    shared: &Arc<Shared>,
    checksum: Checksum,
    compression: Option<Compression>,
    body: Body,
    len: u64,
) -> Put {
    let data = match read_small_body(checksum, body, len).await {
        Ok(Some(data)) => data,
        Ok(None) => return Put::Uploaded(Ok(None)),
        Err(e) => return Put::Uploaded(Err(e)),
    };
    let shared = shared.clone();
    blocking(move || {
        if shared.backend.already_stored(&checksum, compression) {
            return Put::AlreadyStored;
        }
        let Some(_claim) = shared.in_flight.claim(checksum) else {
            return Put::InFlight;
        };
        let uploaded = shared
            .backend
            .begin_upload(checksum, compression)
            .and_then(|mut upload| match upload.write(&data)? {
                Some(early) => Ok(Some(early)),
                None => upload.finish().map(Some),
            });
        Put::Uploaded(uploaded)
    })
    .await
}

/// The whole body of a small PUT. `Ok(None)`: it broke off (client gone); `TimedOut`: it came
/// too slowly (the serving layer's body deadline).
async fn read_small_body(checksum: Checksum, body: Body, len: u64) -> io::Result<Option<Vec<u8>>> {
    let mut data = Vec::with_capacity(len as usize);
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(piece) => data.extend_from_slice(&piece),
            Err(e) => return body_broke_off(checksum, &e),
        }
    }
    Ok(Some(data))
}

/// A body that broke off: the client went away, or (an error) it trickled in too slowly.
fn body_broke_off<T>(checksum: Checksum, e: &axum::Error) -> io::Result<Option<T>> {
    tracing::debug!("PUT {checksum}: body broke off: {e}");
    if crate::http::serving::is_body_timeout(e) {
        return Err(io::Error::new(io::ErrorKind::TimedOut, e.to_string()));
    }
    Ok(None)
}

fn put_answer(shared: &Arc<Shared>, checksum: Checksum, put: Put) -> Response {
    let uploaded = match put {
        Put::AlreadyStored => {
            shared.promises.resolve(&checksum);
            return empty(StatusCode::CREATED);
        }
        Put::InFlight => return empty(StatusCode::ACCEPTED),
        Put::Uploaded(uploaded) => uploaded,
    };
    match uploaded {
        Ok(Some(Outcome::Stored)) => {
            shared.promises.resolve(&checksum);
            text(StatusCode::OK, "OK")
        }
        Ok(Some(Outcome::Mismatch)) => {
            tracing::warn!("PUT {checksum} incorrect checksum");
            text(StatusCode::BAD_REQUEST, "Incorrect checksum")
        }
        Ok(Some(Outcome::BadPayload)) => {
            tracing::warn!("PUT {checksum} invalid compressed payload");
            text(StatusCode::BAD_REQUEST, "Invalid compressed payload")
        }
        Ok(None) => {
            tracing::warn!("PUT {checksum}: the client disconnected");
            empty(StatusCode::BAD_REQUEST)
        }
        // A body trickling in slower than the serving layer allows: told why, then closed.
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            tracing::warn!("PUT {checksum}: {e}");
            with_headers(
                StatusCode::REQUEST_TIMEOUT,
                HeaderMap::new(),
                Body::from(format!("ERROR: {e}")),
            )
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            tracing::error!("PUT {checksum}: {e}");
            text(
                StatusCode::INSUFFICIENT_STORAGE,
                "No space left on device: free space in the buffer directory",
            )
        }
        Err(e) => {
            tracing::error!("PUT {checksum}: {e}");
            internal_error()
        }
    }
}

/// Pieces of an upload handed to its writer thread.
enum Piece {
    Data(Bytes),
    End,
}

/// Stream the body to the backend's writer on a blocking thread (hashing and disk writes overlap
/// the network). `Ok(None)`: the body broke off (client gone); `TimedOut`: it came too slowly
/// (the serving layer's body deadline). Either way nothing is kept.
async fn upload(
    shared: &Arc<Shared>,
    checksum: Checksum,
    compression: Option<Compression>,
    body: Body,
) -> io::Result<Option<Outcome>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(UPLOAD_QUEUE);
    let backend = shared.backend.clone();
    let writer = tokio::task::spawn_blocking(move || -> io::Result<Option<Outcome>> {
        let mut upload = backend.begin_upload(checksum, compression)?;
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Data(data) => {
                    if let Some(early) = upload.write(&data)? {
                        return Ok(Some(early));
                    }
                }
                Piece::End => return upload.finish().map(Some),
            }
        }
        Ok(None)
    });
    let mut stream = body.into_data_stream();
    let mut too_slow = None;
    loop {
        let piece = match stream.next().await {
            Some(Ok(data)) => Piece::Data(data),
            Some(Err(e)) => {
                too_slow = body_broke_off::<()>(checksum, &e).err();
                break;
            }
            None => Piece::End,
        };
        let end = matches!(piece, Piece::End);
        // A send fails when the writer stopped early (bad payload, disk error): answer that.
        if tx.send(piece).await.is_err() || end {
            break;
        }
    }
    drop(tx);
    let outcome = writer
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("upload writer failed: {e}"))));
    match too_slow {
        Some(e) => Err(e),
        None => outcome,
    }
}

fn promise(shared: &Arc<Shared>, text_checksum: &str) -> Response {
    let checksum = match protocol::parse_checksum(text_checksum) {
        Ok(cs) => cs,
        Err(msg) => return validation_error(text_checksum, &msg),
    };
    shared.promises.add(checksum);
    let body = format!(
        r#"{{"checksum":"{}","expires_in":{:.1}}}"#,
        checksum.hex(),
        super::promises::PROMISE_TTL.as_secs_f64()
    );
    json_response(StatusCode::ACCEPTED, body)
}

// ---- answers ----

/// Run blocking disk work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("disk work does not panic")
}

fn validation_error(text_checksum: &str, msg: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        protocol::path_error(text_checksum, msg),
    )
}

/// A plain-text body, sent without a content type (as hashserver's `Response(content=...)`).
fn text(status: StatusCode, body: &'static str) -> Response {
    with_headers(status, HeaderMap::new(), Body::from(body))
}

fn empty(status: StatusCode) -> Response {
    with_headers(status, HeaderMap::new(), Body::empty())
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_headers(status, headers, Body::from(body))
}

/// What an unhandled exception gives in hashserver (no CORS headers either).
fn internal_error() -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    with_headers(
        StatusCode::INTERNAL_SERVER_ERROR,
        headers,
        Body::from("Internal Server Error"),
    )
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Percent-decode a URL path as Starlette does before matching (invalid UTF-8 replaced).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_follows_starlette() {
        let hex = "0".repeat(64);
        let cs_path = format!("/{hex}");
        let promise_path = format!("/promise/{hex}");
        let handled = |m: &Method, p: &str, w: bool| match resolve(m, p, w) {
            Resolution::Handle(route, _) => Some(route),
            _ => None,
        };
        let allowed = |m: &Method, p: &str, w: bool| match resolve(m, p, w) {
            Resolution::NotAllowed(allowed) => Some(allowed),
            _ => None,
        };
        assert_eq!(handled(&Method::GET, "/has", true), Some(RouteKind::Has));
        assert_eq!(handled(&Method::PUT, "/has", true), Some(RouteKind::Put));
        assert_eq!(allowed(&Method::PUT, "/has", false), Some(Method::GET));
        assert_eq!(allowed(&Method::PUT, &cs_path, false), Some(Method::GET));
        assert_eq!(allowed(&Method::DELETE, &cs_path, true), Some(Method::GET));
        assert_eq!(
            allowed(&Method::GET, &promise_path, true),
            Some(Method::PUT)
        );
        assert!(matches!(
            resolve(&Method::PUT, &promise_path, false),
            Resolution::NotFound
        ));
        assert!(matches!(
            resolve(&Method::GET, "/", true),
            Resolution::NotFound
        ));
        assert!(matches!(
            resolve(&Method::GET, "/a/b", true),
            Resolution::NotFound
        ));
        assert!(matches!(
            resolve(&Method::GET, "/has/", true),
            Resolution::Redirect
        ));
        assert_eq!(percent_decode("/a%20b%2"), "/a b%2");
    }
}
