//! The `s3://BUCKET/PREFIX` tier: an S3-compatible object store (AWS S3, MinIO, Ceph RGW) through
//! the `object_store` crate, as a `remote::Backend`.
//!
//! Layout: one object per buffer, key `PREFIX/<hex>` (or `<hex>` without a prefix), holding
//! exactly the buffer's bytes: the same as a hashserver `--layout flat` directory, so
//! `aws s3 sync DIR s3://BUCKET/PREFIX` (and back) moves buffers between the two.
//!
//! Configuration: the standard `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL` for MinIO and other S3-compatible servers, `AWS_ALLOW_HTTP=true` for a
//! plain-http endpoint), then `object_store`'s S3 keys given as address query parameters, which
//! take precedence (`s3://b/p?endpoint=http://127.0.0.1:9000&allow_http=true&region=us-east-1`).
//! Requests are retried by `RemoteTier`, not by `object_store`; a body has no total time limit
//! (a large buffer may take long), only `RemoteTier`'s per-chunk timeout.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::CostProfile;
use super::remote::{Backend, Body, RemoteError, RemoteOptions};
use crate::checksum::Checksum;

/// Uploads up to this size are one PUT; bigger ones are multipart uploads of parts this size.
const PART: usize = 16 << 20;

/// One bucket (and key prefix) of an S3-compatible store.
pub struct S3 {
    address: String,
    store: Arc<AmazonS3>,
    prefix: String,
}

impl S3 {
    /// `bucket_and_prefix` is `BUCKET[/PREFIX]`; `settings` are `object_store` S3 keys with
    /// values (from the address query), applied over the `AWS_*` environment variables.
    pub fn new(
        address: &str,
        bucket_and_prefix: &str,
        settings: &[(String, String)],
        options: &RemoteOptions,
    ) -> Result<Self, String> {
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        if bucket.is_empty() {
            return Err("an s3:// address needs a bucket: s3://BUCKET/PREFIX".into());
        }
        let client = ClientOptions::new()
            .with_connect_timeout(options.timeout)
            .with_timeout_disabled();
        let no_retries = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(no_retries);
        let env = std::env::vars().filter(|(k, _)| k.starts_with("AWS_"));
        for (key, value) in env.chain(settings.iter().cloned()) {
            match key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                Ok(key) => builder = builder.with_config(key, value),
                Err(_) if key.starts_with("AWS_") => {}
                Err(_) => return Err(format!("unknown S3 setting '{key}' in {address}")),
            }
        }
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("cannot configure {address}: {e}"))?;
        Ok(S3 {
            address: address.to_string(),
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, checksum: &Checksum) -> Key {
        if self.prefix.is_empty() {
            Key::from(checksum.hex())
        } else {
            Key::from(format!("{}/{}", self.prefix, checksum.hex()))
        }
    }

    fn failed(&self, what: &str, e: object_store::Error) -> RemoteError {
        use object_store::Error as E;
        let message = format!("{} ({what}): {e}", self.address);
        match e {
            E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::NotSupported { .. }
            | E::InvalidPath { .. }
            | E::Precondition { .. } => RemoteError::Refused(message),
            _ => RemoteError::Unavailable(message),
        }
    }

    async fn length(&self, checksum: Checksum) -> Result<Option<u64>, RemoteError> {
        match self.store.head(&self.key(&checksum)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("HEAD", e)),
        }
    }

    async fn put_parts(&self, key: &Key, mut file: tokio::fs::File) -> Result<(), RemoteError> {
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.failed("multipart upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut block = vec![0u8; PART];
        loop {
            let n = file
                .read(&mut block)
                .await
                .map_err(|e| RemoteError::Refused(format!("cannot read a staged buffer: {e}")))?;
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(4)
                .await
                .map_err(|e| self.failed("upload part", e))?;
            writer.write(&block[..n]);
        }
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| self.failed("complete upload", e))
    }
}

impl Backend for S3 {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn address(&self) -> &str {
        &self.address
    }

    fn cost(&self) -> CostProfile {
        CostProfile::REMOTE_HASHSERVER
    }

    fn batch_size(&self) -> usize {
        64
    }

    /// One HEAD per buffer, all at once (S3 has no batch lookup).
    async fn lengths(&self, checksums: Vec<Checksum>) -> Result<Vec<Option<u64>>, RemoteError> {
        futures_util::future::try_join_all(checksums.into_iter().map(|c| self.length(c))).await
    }

    async fn get(&self, checksum: Checksum, offset: u64) -> Result<Option<Body>, RemoteError> {
        let options = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..GetOptions::default()
        };
        match self.store.get_opts(&self.key(&checksum), options).await {
            Ok(result) => {
                let total = result.meta.size;
                let address = self.address.clone();
                let chunks = result.into_stream().map_err(move |e| {
                    RemoteError::Unavailable(format!("{address} (GET body): {e}"))
                });
                Ok(Some(Body {
                    total,
                    chunks: Box::pin(chunks),
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("GET", e)),
        }
    }

    async fn put_file(
        &self,
        checksum: Checksum,
        path: PathBuf,
        len: u64,
    ) -> Result<(), RemoteError> {
        let key = self.key(&checksum);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| RemoteError::Refused(format!("cannot read {}: {e}", path.display())))?;
        if len as usize > PART {
            return self.put_parts(&key, file).await;
        }
        let mut bytes = Vec::with_capacity(len as usize);
        let mut file = file;
        file.read_to_end(&mut bytes)
            .await
            .map_err(|e| RemoteError::Refused(format!("cannot read {}: {e}", path.display())))?;
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.failed("PUT", e))
    }

    async fn remove(&self, checksum: Checksum) -> Result<bool, RemoteError> {
        if self.length(checksum).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&self.key(&checksum)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("DELETE", e)),
        }
    }

    /// Every `PREFIX/<hex>` key (other keys under the prefix are ignored).
    async fn list(&self) -> Result<Vec<Checksum>, RemoteError> {
        let prefix = (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str()));
        let mut objects = self.store.list(prefix.as_ref());
        let mut all = Vec::new();
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|e| self.failed("LIST", e))?;
            let name = meta.location.filename().unwrap_or("");
            let parent_is_prefix = meta.location.as_ref().len()
                == name.len() + self.prefix.len() + usize::from(!self.prefix.is_empty());
            if let Some(checksum) = Checksum::parse_strict(name).filter(|_| parent_is_prefix) {
                all.push(checksum);
            }
        }
        Ok(all)
    }
}
