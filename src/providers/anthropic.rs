//! Anthropic Messages: `/v1/messages`, `x-api-key`, `anthropic-version`; the client's
//! `anthropic-beta` flags are passed through unchanged.

use http::HeaderMap;

use super::{Operation, Route};

pub const API_VERSION: &str = "2023-06-01";

pub fn request(prefix: &str, op: Operation, key: Option<&str>, client: &HeaderMap) -> Route {
    let path = match op {
        Operation::Chat { .. } | Operation::Media(_) => format!("{prefix}/v1/messages"),
    };
    let mut headers = Vec::with_capacity(3);
    if let Some(k) = key {
        headers.push(("x-api-key", k.to_string()));
    }
    let version = client.get("anthropic-version").and_then(|v| v.to_str().ok()).unwrap_or(API_VERSION);
    headers.push(("anthropic-version", version.to_string()));
    if let Some(beta) = client.get("anthropic-beta").and_then(|v| v.to_str().ok()) {
        headers.push(("anthropic-beta", beta.to_string()));
    }
    (path, headers)
}
