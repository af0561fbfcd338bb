//! Azure OpenAI: `/openai/deployments/{deployment}/chat/completions?api-version=...` with an
//! `api-key` header, or the newer `/openai/v1/chat/completions` (model in the body) when
//! `api_version: v1`.

use super::{AuthScheme, MediaOp, ModelIn, ProviderSpec, Responses};
use super::{Operation, Route};
use crate::config::ProviderKind;
use crate::formats::Format;
use crate::jobs::Api;

pub const SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::AzureOpenai,
    chat_format: Format::OpenAiChat,
    default_base_url: None,
    auth: AuthScheme::Header("api-key"),
    api_key_required: true,
    fixed_headers: &[],
    media: &[
        MediaOp::Embeddings,
        MediaOp::ImagesGenerations,
        MediaOp::AudioSpeech,
        MediaOp::AudioTranscriptions,
        MediaOp::ImagesEdits,
        MediaOp::Completions,
    ],
    media_translated: false,
    model_in: ModelIn::PathUnlessV1,
    legacy_max_tokens: false,
    responses: Responses::Native,
    jobs: &[Api::Files, Api::Batches, Api::FineTuning],
};

/// Used when the config names no `api_version`.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

pub fn request(
    prefix: &str,
    op: Operation,
    deployment: &str,
    api_version: Option<&str>,
    key: Option<&str>,
) -> Route {
    // A base_url given as ".../openai/v1" arrives here as prefix ".../openai".
    let v1_prefix = prefix.strip_suffix("/openai").unwrap_or(prefix);
    let path = match (op, api_version) {
        (Operation::Chat { .. }, Some("v1")) => format!("{v1_prefix}/openai/v1/chat/completions"),
        (Operation::Media(m), Some("v1")) => format!("{v1_prefix}/openai/v1{}", m.path()),
        (Operation::Media(m), v) => format!(
            "{prefix}/openai/deployments/{}{}?api-version={}",
            super::encode_segment(deployment),
            m.path(),
            v.unwrap_or(DEFAULT_API_VERSION)
        ),
        (Operation::Chat { .. }, v) => format!(
            "{prefix}/openai/deployments/{}/chat/completions?api-version={}",
            super::encode_segment(deployment),
            v.unwrap_or(DEFAULT_API_VERSION)
        ),
    };
    let headers = key.map(|k| vec![("api-key", k.to_string())]).unwrap_or_default();
    (path, headers)
}

/// A job API path (`/files/{id}`, ...): `/openai/v1/...` when `api_version: v1`, else
/// `/openai/...?api-version=...` (files, batches and fine-tuning are not per deployment).
pub fn jobs_path(prefix: &str, path: &str, api_version: Option<&str>) -> String {
    match api_version {
        Some("v1") => format!("{}/openai/v1{path}", prefix.strip_suffix("/openai").unwrap_or(prefix)),
        v => format!("{prefix}/openai{path}?api-version={}", v.unwrap_or(DEFAULT_API_VERSION)),
    }
}

/// Azure's Responses API lives only in the v1 form: `/openai/v1/responses` plus `sub`.
pub fn responses_path(prefix: &str, sub: &str) -> String {
    let v1_prefix = prefix.strip_suffix("/openai").unwrap_or(prefix);
    format!("{v1_prefix}/openai/v1/responses{sub}")
}
