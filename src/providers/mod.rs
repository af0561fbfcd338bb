//! Provider kinds: for each, the URL of each operation, the auth headers, and the wire format
//! it speaks. Declarative and small; translation lives in `formats/`, I/O in `proxy/`.

mod anthropic;
pub use self::anthropic::API_VERSION as ANTHROPIC_API_VERSION;
mod azure_openai;
mod bedrock;
mod gemini;
pub mod mock;
mod openai;
pub mod sigv4;

use bytes::Bytes;
use http::HeaderMap;

use crate::config::{Provider, ProviderKind};
use crate::formats::Format;

/// What the client asked for, independent of format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A chat turn (Chat Completions, Responses, Messages, generateContent).
    Chat { stream: bool },
    /// OpenAI-family media and embeddings, passed through (`/v1/<path>`).
    Media(MediaOp),
}

/// The OpenAI media endpoints, each passed through to providers of the OpenAI family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaOp {
    Embeddings,
    ImagesGenerations,
    AudioSpeech,
    AudioTranscriptions,
}

impl MediaOp {
    /// The path after `/v1` (OpenAI) or after the deployment (Azure).
    pub fn path(self) -> &'static str {
        match self {
            MediaOp::Embeddings => "/embeddings",
            MediaOp::ImagesGenerations => "/images/generations",
            MediaOp::AudioSpeech => "/audio/speech",
            MediaOp::AudioTranscriptions => "/audio/transcriptions",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MediaOp::Embeddings => "embeddings",
            MediaOp::ImagesGenerations => "images_generations",
            MediaOp::AudioSpeech => "audio_speech",
            MediaOp::AudioTranscriptions => "audio_transcriptions",
        }
    }
}

/// Whether a provider kind needs an OpenAI media request translated (not passed through).
pub fn media_translated(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Gemini | ProviderKind::Bedrock)
}

/// Whether a provider kind serves an OpenAI media operation.
pub fn supports_media(kind: ProviderKind, op: MediaOp) -> bool {
    match kind {
        ProviderKind::Openai | ProviderKind::AzureOpenai | ProviderKind::OpenaiCompatible => true,
        ProviderKind::Mock => op == MediaOp::Embeddings,
        // Embeddings through `formats::embeddings` (batchEmbedContents, InvokeModel).
        ProviderKind::Gemini | ProviderKind::Bedrock => op == MediaOp::Embeddings,
        ProviderKind::Anthropic => false,
    }
}

/// A provider's answer to "where and how": the path (and query) and the auth headers.
pub type Route = (String, Vec<(&'static str, String)>);

/// The request to send to one upstream for one attempt (the body is shared, never copied).
#[derive(Clone, Debug)]
pub struct UpstreamRequest {
    pub path_and_query: String,
    /// Headers to send besides Host, Content-Length, Content-Type and Accept-Encoding.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// Why a request could not be built for a provider (a config problem, answered 502).
#[derive(Debug, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub message: String,
}

/// The wire format a provider kind speaks for chat.
pub fn chat_format(kind: ProviderKind) -> Format {
    match kind {
        ProviderKind::Openai
        | ProviderKind::AzureOpenai
        | ProviderKind::OpenaiCompatible
        | ProviderKind::Mock => Format::OpenAiChat,
        ProviderKind::Anthropic => Format::Anthropic,
        ProviderKind::Gemini => Format::Gemini,
        ProviderKind::Bedrock => Format::Bedrock,
    }
}

/// Whether the body must name the model (`model` field) for this provider kind.
pub fn model_in_body(p: &Provider) -> bool {
    match p.kind {
        ProviderKind::Gemini | ProviderKind::Bedrock => false,
        ProviderKind::AzureOpenai => p.api_version.as_deref() == Some("v1"),
        _ => true,
    }
}

/// Build the path and auth headers for one attempt. `client` is the inbound request's headers
/// (only pass-through headers such as `anthropic-beta` are read from it).
pub fn build_request(
    p: &Provider,
    op: Operation,
    model: &str,
    body: Bytes,
    client: &HeaderMap,
) -> Result<UpstreamRequest, ProviderError> {
    let prefix = p.endpoint.as_ref().map(|e| e.path_prefix.as_str()).unwrap_or("");
    let key = p.api_key.as_ref().map(|k| k.expose());
    let (path_and_query, headers) = match p.kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Mock => {
            openai::request(prefix, op, key)
        }
        ProviderKind::AzureOpenai => azure_openai::request(prefix, op, model, p.api_version.as_deref(), key),
        ProviderKind::Anthropic => anthropic::request(prefix, op, key, client),
        ProviderKind::Gemini => gemini::request(prefix, op, model, key),
        ProviderKind::Bedrock => {
            let ep = p
                .endpoint
                .as_ref()
                .ok_or_else(|| ProviderError { provider: p.name.clone(), message: "no base_url".into() })?;
            bedrock::request(p, ep, op, model, &body)
                .map_err(|message| ProviderError { provider: p.name.clone(), message })?
        }
    };
    Ok(UpstreamRequest { path_and_query, headers, body })
}
