//! The `http://HOST:PORT` / `https://…` tier: a hashserver (the Python `hashserver` 1.1.0 or
//! `seamfs hashserver`; protocol in `shared/spec/hashserver.md`) as a `remote::Backend`.
//!
//! * Presence: `GET /has` with a JSON list (batched); lengths: `GET /buffer-length` (0 means
//!   absent except for the empty buffer, which `/has` then settles; a promised buffer, `true`,
//!   counts as absent until it arrives).
//! * Reads: `GET /<hex>`, with `Range: bytes=N-` to resume a broken transfer, streamed.
//!   `Accept-Encoding: identity`: a buffer the server only has compressed is refused with a clear
//!   error rather than stored compressed.
//! * Writes: `PUT /<hex>`, the staged file streamed as the body (200 stored, 201 already there,
//!   202 being uploaded by someone else: all success). A read-only server answers 405.
//! * A hashserver can neither list nor delete: those calls are refused.
//!
//! One `reqwest` client per tier: connections are pooled and reused.

use std::path::PathBuf;

use futures_util::TryStreamExt;
use reqwest::{StatusCode, header};

use super::CostProfile;
use super::remote::{Backend, Body, RemoteError, RemoteOptions};
use crate::checksum::Checksum;

/// A hashserver at one base URL.
pub struct Hashserver {
    /// The URL without a trailing `/`.
    base: String,
    client: reqwest::Client,
    loopback: bool,
}

impl Hashserver {
    pub fn new(base: &str, options: &RemoteOptions) -> Result<Self, String> {
        let base = base.trim_end_matches('/').to_string();
        let host = base
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
            .unwrap_or("");
        let loopback = host == "localhost" || host.starts_with("127.") || host == "[";
        let client = reqwest::Client::builder()
            .connect_timeout(options.timeout)
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| format!("cannot make an HTTP client for {base}: {e}"))?;
        Ok(Hashserver {
            base,
            client,
            loopback,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// `GET /<route>` with a JSON list of checksums; the JSON list that comes back.
    async fn ask(
        &self,
        route: &str,
        checksums: &[Checksum],
    ) -> Result<Vec<serde_json::Value>, RemoteError> {
        let body: Vec<String> = checksums.iter().map(Checksum::hex).collect();
        let response = self
            .client
            .get(self.url(route))
            .header(header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).expect("a list of strings is JSON"))
            .send()
            .await
            .map_err(|e| self.failed(route, e))?;
        let response = self.check(route, response).await?;
        let text = response.bytes().await.map_err(|e| self.failed(route, e))?;
        let answer: Vec<serde_json::Value> = serde_json::from_slice(&text).map_err(|e| {
            RemoteError::Refused(format!("{}: bad /{route} answer: {e}", self.base))
        })?;
        if answer.len() != checksums.len() {
            return Err(RemoteError::Refused(format!(
                "{}: /{route} answered {} items for {} checksums",
                self.base,
                answer.len(),
                checksums.len()
            )));
        }
        Ok(answer)
    }

    fn failed(&self, what: &str, e: reqwest::Error) -> RemoteError {
        RemoteError::Unavailable(format!("{} ({what}): {e}", self.base))
    }

    /// Success statuses pass; 5xx may pass (retried); other errors are refusals.
    async fn check(
        &self,
        what: &str,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, RemoteError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!("{} ({what}): HTTP {status}: {}", self.base, text.trim());
        if status.is_server_error() {
            Err(RemoteError::Unavailable(message))
        } else {
            Err(RemoteError::Refused(message))
        }
    }
}

impl Backend for Hashserver {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn address(&self) -> &str {
        &self.base
    }

    fn cost(&self) -> CostProfile {
        if self.loopback {
            CostProfile::LOCAL_HASHSERVER
        } else {
            CostProfile::REMOTE_HASHSERVER
        }
    }

    async fn lengths(&self, checksums: Vec<Checksum>) -> Result<Vec<Option<u64>>, RemoteError> {
        let answer = self.ask("buffer-length", &checksums).await?;
        let empty = Checksum::of(b"");
        let mut lengths = Vec::with_capacity(answer.len());
        for (checksum, value) in checksums.iter().zip(answer) {
            lengths.push(match value.as_u64() {
                Some(0) if *checksum == empty => self.present(vec![empty]).await?[0].then_some(0),
                Some(0) | None => None,
                Some(n) => Some(n),
            });
        }
        Ok(lengths)
    }

    async fn present(&self, checksums: Vec<Checksum>) -> Result<Vec<bool>, RemoteError> {
        let answer = self.ask("has", &checksums).await?;
        Ok(answer
            .iter()
            .map(|v| {
                v.as_bool()
                    .unwrap_or_else(|| v.as_u64().is_some_and(|n| n > 0))
            })
            .collect())
    }

    async fn get(&self, checksum: Checksum, offset: u64) -> Result<Option<Body>, RemoteError> {
        let mut request = self
            .client
            .get(self.url(&checksum.hex()))
            .header(header::ACCEPT_ENCODING, "identity");
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().await.map_err(|e| self.failed("GET", e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.check("GET", response).await?;
        if let Some(encoding) = response.headers().get(header::CONTENT_ENCODING)
            && encoding.as_bytes() != b"identity"
        {
            return Err(RemoteError::Refused(format!(
                "{}: buffer {checksum} is stored only compressed ({:?}); store it uncompressed",
                self.base, encoding
            )));
        }
        let total = total_length(&response, offset).ok_or_else(|| {
            RemoteError::Refused(format!("{}: GET {checksum} without a length", self.base))
        })?;
        let base = self.base.clone();
        let chunks = response
            .bytes_stream()
            .map_err(move |e| RemoteError::Unavailable(format!("{base} (GET body): {e}")));
        Ok(Some(Body {
            total,
            chunks: Box::pin(chunks),
        }))
    }

    async fn put_file(
        &self,
        checksum: Checksum,
        path: PathBuf,
        len: u64,
    ) -> Result<(), RemoteError> {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| RemoteError::Refused(format!("cannot read {}: {e}", path.display())))?;
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let response = self
            .client
            .put(self.url(&checksum.hex()))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| self.failed("PUT", e))?;
        self.check("PUT", response).await.map(|_| ())
    }

    async fn remove(&self, _checksum: Checksum) -> Result<bool, RemoteError> {
        Err(RemoteError::Refused(format!(
            "{}: a hashserver cannot delete buffers",
            self.base
        )))
    }

    async fn list(&self) -> Result<Vec<Checksum>, RemoteError> {
        Err(RemoteError::Refused(format!(
            "{}: a hashserver cannot list its buffers",
            self.base
        )))
    }
}

/// The buffer's full length from a 200 (`Content-Length`) or a 206 (`Content-Range: …/TOTAL`).
fn total_length(response: &reqwest::Response, offset: u64) -> Option<u64> {
    if response.status() == StatusCode::PARTIAL_CONTENT {
        let range = response
            .headers()
            .get(header::CONTENT_RANGE)?
            .to_str()
            .ok()?;
        return range.rsplit_once('/')?.1.trim().parse().ok();
    }
    // A server that ignored the Range sent the whole buffer: not resumable here.
    if offset > 0 {
        return None;
    }
    response.content_length()
}
