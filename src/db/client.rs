//! A client of a remote seamless-database (`--database-url`): the records a mount shares with
//! other mounts of one deployment, BufferInfo and expression rows (view results), spoken in the
//! seamless-database protocol (`GET /` / `PUT /` with a JSON body, spec `seamless.md`).
//!
//! Calls are synchronous (the views run on FUSE threads) and run on the network tiers' runtime
//! with their timeout. A remote database that fails is logged and treated as not knowing: the
//! mount then computes and records locally, as without one.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ExpressionKey, JsonMap};
use crate::checksum::Checksum;
use crate::store::remote::wait;

/// One remote seamless-database.
#[derive(Clone)]
pub struct RemoteRecords {
    url: String,
    client: reqwest::Client,
}

impl RemoteRecords {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot make an HTTP client for {url}: {e}"))?;
        Ok(RemoteRecords {
            url: url.trim_end_matches('/').to_string() + "/",
            client,
        })
    }

    /// Send one request; the body of a 200, `None` for a 404 or a failure (logged).
    fn send(&self, put: bool, body: Value) -> Option<String> {
        let request = if put {
            self.client.put(&self.url)
        } else {
            self.client.get(&self.url)
        }
        .header("content-type", "application/json")
        .body(body.to_string());
        let url = self.url.clone();
        let answer = wait(async move {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        });
        match answer {
            Ok((status, text)) if status.is_success() => Some(text),
            Ok((status, _)) if status == reqwest::StatusCode::NOT_FOUND => None,
            Ok((status, text)) => {
                tracing::warn!(database = %url, %status, answer = %text.trim(), "remote database refused a request");
                None
            }
            Err(e) => {
                tracing::warn!(database = %url, error = %e, "remote database unavailable");
                None
            }
        }
    }

    fn expression_body(key: &ExpressionKey) -> serde_json::Map<String, Value> {
        let body = json!({
            "type": "expression",
            "checksum": key.input.hex(),
            "path": key.path,
            "celltype": key.celltype,
            "target_celltype": key.target_celltype,
        });
        match body {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        }
    }

    pub fn get_expression(&self, key: &ExpressionKey) -> Option<Checksum> {
        let text = self.send(false, Value::Object(Self::expression_body(key)))?;
        Checksum::parse_strict(text.trim().trim_matches('"'))
    }

    pub fn set_expression(&self, key: &ExpressionKey, result: &Checksum) {
        let mut body = Self::expression_body(key);
        body.insert("value".into(), Value::String(result.hex()));
        self.send(true, Value::Object(body));
    }

    pub fn get_buffer_info(&self, checksum: &Checksum) -> Option<JsonMap> {
        let text = self.send(
            false,
            json!({"type": "buffer_info", "checksum": checksum.hex()}),
        )?;
        match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    pub fn merge_buffer_info(&self, checksum: &Checksum, info: &JsonMap) {
        self.send(
            true,
            json!({"type": "buffer_info", "checksum": checksum.hex(), "value": info}),
        );
    }
}
