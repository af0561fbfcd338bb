//! Wire formats <-> the canonical IR, and the translation entry points the proxy calls.
//! Pure: no I/O, no config, no auth (provider URLs and credentials live in `providers/`).
//!
//! Each format file exposes the same verbs (decode = wire -> IR, encode = IR -> wire):
//! `decode_request`, `encode_request`, `decode_response`, `encode_response`,
//! `decode_error`, `encode_error`, and a `StreamDecoder` / `StreamEncoder` pair fed one
//! chunk (or one event) at a time. The functions below dispatch over `Format`.
//! Code in this folder refers to siblings with `super::`, never `crate::`.

pub mod anthropic;
mod anthropic_request;
mod anthropic_stream;
pub mod bedrock;
pub mod embeddings;
pub mod eventstream;
pub mod finish_reason;
pub mod gemini;
pub mod grammar;
pub mod ir;
pub(crate) mod lenient;
pub mod multipart;
pub mod openai_chat;
mod openai_chat_stream;
pub mod openai_responses;
pub mod passthrough;
pub(crate) mod scan;
/// The fast paths checked against `serde_json` (the `scan_differential` fuzz target).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use scan::fast_paths_agree;
pub mod sse;
mod stream_usage;
pub mod tools;
pub mod translate;
pub mod upstream_error;
pub mod validate;

pub use ir::*;
pub use translate::*;
pub use upstream_error::{classify_upstream_error, Retry, UpstreamErrorClass};

/// Whether a thinking signature was issued by another provider (Gemini and OpenAI Responses
/// signatures are tagged on decode). Only Anthropic/Bedrock-Claude's own signatures may be
/// sent to them: a foreign one would be rejected with a 400.
pub fn foreign_signature(signature: &str) -> bool {
    signature.starts_with(gemini::SIGNATURE_PREFIX)
        || signature.starts_with(openai_responses::SIGNATURE_PREFIX)
}

/// A request body as its top-level JSON object (every request decoder starts here).
pub(crate) fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, TranslateError> {
    match serde_json::from_slice(body)? {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(TranslateError::invalid("body", "expected a JSON object")),
    }
}

/// What an encoder needs beyond the IR when writing a request for an upstream.
#[derive(Clone, Debug)]
pub struct RequestOptions<'a> {
    /// The concrete upstream model to write into the body (or that the URL names).
    pub target_model: &'a str,
    /// `max_tokens` to send when the client gave none and the target requires one (Anthropic).
    pub default_max_tokens: u32,
    /// OpenAI Chat upstreams: write the cap as `max_tokens` instead of `max_completion_tokens`
    /// (self-hosted OpenAI-compatible servers such as older vLLM, llama.cpp and Ollama only know
    /// `max_tokens`; OpenAI's reasoning models only accept `max_completion_tokens`).
    pub legacy_max_tokens: bool,
}

/// What an encoder needs beyond the IR when writing a response or stream for the client.
#[derive(Clone, Debug)]
pub struct ResponseOptions<'a> {
    /// The model name to report to the client.
    pub model: &'a str,
    /// Gemini inbound only: `true` = SSE (`alt=sse`), `false` = one streamed JSON array.
    pub gemini_sse: bool,
    /// OpenAI Chat inbound only: the client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// A request body written for an upstream, with the parameters the target could not honour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded {
    pub body: Vec<u8>,
    /// Names of request parameters dropped because the target format cannot express them
    /// (reported to the client in `x-gateway-dropped-params`).
    pub dropped: Vec<&'static str>,
}

/// Why a body could not be translated. Always the client's fault or an unsupported feature;
/// the proxy answers 400 in the client's format with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("invalid JSON body: {0}")]
    Json(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} is not supported by this route")]
    Unsupported(String),
    /// An upstream stream that cannot be decoded (an event that is not JSON, broken framing).
    #[error("malformed upstream stream: {0}")]
    Stream(String),
    /// One upstream stream event is bigger than `sse::MAX_EVENT_BYTES` (or an event-stream
    /// frame bigger than the protocol allows).
    #[error("an upstream stream event exceeds {limit} bytes")]
    EventTooLarge { limit: usize },
    /// A translated answer carries more than `translate::MAX_ANSWER_BYTES` of content.
    #[error("the upstream's answer exceeds {limit} bytes")]
    AnswerTooLarge { limit: usize },
    /// The upstream stream ended before a single event (empty, or not a stream at all).
    #[error("the upstream stream ended without any event")]
    EmptyStream,
    /// The upstream stream ended before its answer did (no finish, no terminal event).
    #[error("the upstream stream ended early: {0}")]
    Truncated(String),
}

impl TranslateError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::Invalid { field: field.into(), message: message.into() }
    }
}

impl From<serde_json::Error> for TranslateError {
    fn from(e: serde_json::Error) -> Self {
        TranslateError::Json(e.to_string())
    }
}
