//! OpenAI and OpenAI-compatible servers (vLLM, llama.cpp server, Ollama, TGI):
//! `/v1/chat/completions`, `Authorization: Bearer` (optional for compatible servers).

use super::{AuthScheme, MediaOp, ModelIn, ProviderSpec, Responses};
use super::{Operation, Route};
use crate::config::ProviderKind;
use crate::formats::Format;
use crate::jobs::Api;

const ALL_MEDIA: &[MediaOp] = &[
    MediaOp::Embeddings,
    MediaOp::ImagesGenerations,
    MediaOp::AudioSpeech,
    MediaOp::AudioTranscriptions,
    MediaOp::ImagesEdits,
    MediaOp::ImagesVariations,
    MediaOp::Completions,
    MediaOp::Moderations,
];

pub const SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::Openai,
    chat_format: Format::OpenAiChat,
    default_base_url: Some("https://api.openai.com"),
    auth: AuthScheme::Bearer,
    api_key_required: true,
    fixed_headers: &[],
    media: ALL_MEDIA,
    media_translated: false,
    model_in: ModelIn::Body,
    legacy_max_tokens: false,
    responses: Responses::Native,
    jobs: &[Api::Files, Api::Batches, Api::FineTuning, Api::Videos],
};

/// vLLM, llama.cpp server, Ollama, TGI: OpenAI's wire format, key optional, `max_tokens`.
pub const COMPATIBLE_SPEC: ProviderSpec = ProviderSpec {
    kind: ProviderKind::OpenaiCompatible,
    default_base_url: None,
    api_key_required: false,
    legacy_max_tokens: true,
    responses: Responses::WhenConfigured,
    jobs: &[Api::Files, Api::Batches],
    ..SPEC
};

pub const CHAT_PATH: &str = "/v1/chat/completions";

pub fn request(prefix: &str, op: Operation, key: Option<&str>) -> Route {
    let path = match op {
        Operation::Chat { .. } => format!("{prefix}{CHAT_PATH}"),
        Operation::Media(m) => format!("{prefix}/v1{}", m.path()),
    };
    let headers = key.map(|k| vec![("authorization", format!("Bearer {k}"))]).unwrap_or_default();
    (path, headers)
}

/// `/v1/responses` plus `sub` (`/{id}`, `/{id}/input_items`, ...).
pub fn responses_path(prefix: &str, sub: &str) -> String {
    format!("{prefix}/v1/responses{sub}")
}
