//! Anthropic Messages: `/v1/messages`, `x-api-key`, `anthropic-version`; the client's
//! `anthropic-beta` flags are passed through unchanged.

use http::HeaderMap;

use super::{AuthScheme, ModelIn, ProviderSpec, Responses};
use super::{Operation, Route};
use crate::config::ProviderKind;
use crate::formats::Format;

pub const SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::Anthropic,
    chat_format: Format::Anthropic,
    default_base_url: Some("https://api.anthropic.com"),
    auth: AuthScheme::Header("x-api-key"),
    api_key_required: true,
    fixed_headers: &[("anthropic-version", API_VERSION)],
    media: &[],
    media_translated: false,
    model_in: ModelIn::Body,
    legacy_max_tokens: false,
    responses: Responses::Never,
    jobs: &[crate::jobs::Api::MessageBatches],
};

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
