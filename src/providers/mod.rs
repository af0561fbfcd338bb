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
    /// `POST /v1/images/edits` (multipart, streamed like transcriptions).
    ImagesEdits,
    /// `POST /v1/images/variations` (multipart).
    ImagesVariations,
    /// Legacy text completions (`POST /v1/completions`: vLLM, llama.cpp, TGI, OpenAI).
    Completions,
    /// `POST /v1/moderations`.
    Moderations,
}

impl MediaOp {
    /// The path after `/v1` (OpenAI) or after the deployment (Azure).
    pub fn path(self) -> &'static str {
        match self {
            MediaOp::Embeddings => "/embeddings",
            MediaOp::ImagesGenerations => "/images/generations",
            MediaOp::AudioSpeech => "/audio/speech",
            MediaOp::AudioTranscriptions => "/audio/transcriptions",
            MediaOp::ImagesEdits => "/images/edits",
            MediaOp::ImagesVariations => "/images/variations",
            MediaOp::Completions => "/completions",
            MediaOp::Moderations => "/moderations",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MediaOp::Embeddings => "embeddings",
            MediaOp::ImagesGenerations => "images_generations",
            MediaOp::AudioSpeech => "audio_speech",
            MediaOp::AudioTranscriptions => "audio_transcriptions",
            MediaOp::ImagesEdits => "images_edits",
            MediaOp::ImagesVariations => "images_variations",
            MediaOp::Completions => "completions",
            MediaOp::Moderations => "moderations",
        }
    }

    /// Whether the request is a multipart form (streamed, `model` read from its prefix).
    pub fn multipart(self) -> bool {
        matches!(self, MediaOp::AudioTranscriptions | MediaOp::ImagesEdits | MediaOp::ImagesVariations)
    }
}

/// How a provider kind authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <api_key>`.
    Bearer,
    /// The key in a header of its own (`api-key`, `x-api-key`, `x-goog-api-key`).
    Header(&'static str),
    /// AWS SigV4 over each request (no static header).
    SigV4,
    /// No credentials (the built-in mock).
    None,
}

/// Where the target model goes in an upstream request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelIn {
    /// The body's `model` field.
    Body,
    /// The URL path (Gemini, Bedrock).
    Path,
    /// Azure: the deployment in the path, except the `api_version: v1` form (body).
    PathUnlessV1,
}

/// Whether a kind speaks the Responses API natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Responses {
    Native,
    /// `openai_compatible` servers that say `responses: true` (e.g. vLLM).
    WhenConfigured,
    Never,
}

/// Everything the gateway needs to know about a provider kind, declared once per kind (in its
/// own file) and read by routing, validation, health checks and media.
#[derive(Debug)]
pub struct ProviderSpec {
    pub kind: ProviderKind,
    /// The wire format it speaks for chat.
    pub chat_format: Format,
    /// Used when the config has no `base_url` (`None` = required; `{region}` is substituted).
    pub default_base_url: Option<&'static str>,
    pub auth: AuthScheme,
    /// Whether `api_key` must be set.
    pub api_key_required: bool,
    /// Headers sent with every request besides auth (e.g. `anthropic-version`), health checks included.
    pub fixed_headers: &'static [(&'static str, &'static str)],
    /// The OpenAI media operations it serves.
    pub media: &'static [MediaOp],
    /// Media requests must be translated (not passed through) for it.
    pub media_translated: bool,
    pub model_in: ModelIn,
    /// Sends `max_tokens` rather than OpenAI's `max_completion_tokens`.
    pub legacy_max_tokens: bool,
    pub responses: Responses,
    /// The job APIs it serves (files, batches, fine-tuning, videos, message batches).
    pub jobs: &'static [crate::jobs::Api],
}

/// The declaration of `kind`.
pub fn spec(kind: ProviderKind) -> &'static ProviderSpec {
    match kind {
        ProviderKind::Openai => &openai::SPEC,
        ProviderKind::OpenaiCompatible => &openai::COMPATIBLE_SPEC,
        ProviderKind::AzureOpenai => &azure_openai::SPEC,
        ProviderKind::Anthropic => &anthropic::SPEC,
        ProviderKind::Gemini => &gemini::SPEC,
        ProviderKind::Bedrock => &bedrock::SPEC,
        ProviderKind::Mock => &mock::SPEC,
    }
}

// === impl ProviderSpec ===

impl ProviderSpec {
    pub fn serves_media(&self, op: MediaOp) -> bool {
        self.media.contains(&op)
    }

    /// The default `base_url` for this kind (`None` when the config must give one).
    pub fn default_base_url(&self, region: Option<&str>) -> Option<String> {
        let url = self.default_base_url?;
        if url.contains("{region}") {
            Some(url.replace("{region}", region?))
        } else {
            Some(url.to_string())
        }
    }

    /// The static headers a request (or health check) to this provider carries for `api_key`.
    pub fn auth_headers(&self, api_key: Option<&str>) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> =
            self.fixed_headers.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        match (self.auth, api_key) {
            (AuthScheme::Bearer, Some(k)) => out.push(("authorization", format!("Bearer {k}"))),
            (AuthScheme::Header(h), Some(k)) => out.push((h, k.to_string())),
            _ => {}
        }
        out
    }
}

/// The wire format a provider kind speaks for chat.
pub fn chat_format(kind: ProviderKind) -> Format {
    spec(kind).chat_format
}

/// Whether a provider kind needs an OpenAI media request translated (not passed through).
pub fn media_translated(kind: ProviderKind) -> bool {
    spec(kind).media_translated
}

/// Whether a provider kind serves an OpenAI media operation.
pub fn supports_media(kind: ProviderKind, op: MediaOp) -> bool {
    spec(kind).serves_media(op)
}

/// One URL path segment from a name the config or a client gave (a model, a deployment, a
/// response id): RFC 3986 unreserved bytes kept, everything else percent-encoded, so no name
/// can add a path segment or a query.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a provider speaks the Responses API natively (passed through, not translated).
pub fn speaks_responses(p: &Provider) -> bool {
    match spec(p.kind).responses {
        Responses::Native => true,
        Responses::WhenConfigured => p.responses,
        Responses::Never => false,
    }
}

/// A request to a provider's job API (`call`, the client's `query` passed on, `body` as the
/// client sent it or rewritten). A kind that does not serve the API is an error naming the
/// provider and the operation.
pub fn jobs_request(
    p: &Provider,
    call: &crate::jobs::JobCall,
    query: Option<&str>,
    client: &HeaderMap,
) -> Result<UpstreamRequest, ProviderError> {
    if !spec(p.kind).jobs.contains(&call.api) {
        return Err(ProviderError {
            provider: p.name.clone(),
            message: format!("a {} provider does not serve {}", p.kind.name(), call.api.name()),
        });
    }
    let prefix = p.endpoint.as_ref().map(|e| e.path_prefix.as_str()).unwrap_or("");
    let key = p.api_key.as_ref().map(|k| k.expose());
    let path = format!("{}{}", call.api.path(), call.sub());
    let (mut path_and_query, headers) = match p.kind {
        ProviderKind::AzureOpenai => {
            (azure_openai::jobs_path(prefix, &path, p.api_version.as_deref()), spec(p.kind).auth_headers(key))
        }
        ProviderKind::Anthropic => {
            let (_, headers) = anthropic::request(prefix, Operation::Chat { stream: false }, key, client);
            (format!("{prefix}/v1{path}"), headers)
        }
        _ => (format!("{prefix}/v1{path}"), spec(p.kind).auth_headers(key)),
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path_and_query.push(if path_and_query.contains('?') { '&' } else { '?' });
        path_and_query.push_str(q);
    }
    Ok(UpstreamRequest { method: call.method(), path_and_query, headers, body: Bytes::new() })
}

/// A provider's answer to "where and how": the path (and query) and the auth headers.
pub type Route = (String, Vec<(&'static str, String)>);

/// The request to send to one upstream for one attempt (the body is shared, never copied).
#[derive(Clone, Debug)]
pub struct UpstreamRequest {
    /// `POST` for every operation except the stored-response reads and deletes.
    pub method: http::Method,
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

/// Whether the body must name the model (`model` field) for this provider.
pub fn model_in_body(p: &Provider) -> bool {
    match spec(p.kind).model_in {
        ModelIn::Body => true,
        ModelIn::Path => false,
        ModelIn::PathUnlessV1 => p.api_version.as_deref() == Some("v1"),
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
    Ok(UpstreamRequest { method: http::Method::POST, path_and_query, headers, body })
}

/// A request to a provider's native Responses API: `sub` is the path after `/responses`
/// (`""`, `/{id}`, `/{id}/input_items`, `/{id}/cancel`, `/input_tokens`) and `query` the
/// client's query string, passed on. OpenAI and compatible servers: `/v1/responses...`; Azure:
/// its `/openai/v1/responses...` form (model in the body, whatever `api_version` says).
pub fn responses_request(
    p: &Provider,
    method: http::Method,
    sub: &str,
    query: Option<&str>,
    body: Bytes,
) -> Result<UpstreamRequest, ProviderError> {
    if !speaks_responses(p) {
        return Err(ProviderError {
            provider: p.name.clone(),
            message: format!("{} does not speak the Responses API", p.kind.name()),
        });
    }
    let prefix = p.endpoint.as_ref().map(|e| e.path_prefix.as_str()).unwrap_or("");
    let key = p.api_key.as_ref().map(|k| k.expose());
    let mut path_and_query = match p.kind {
        ProviderKind::AzureOpenai => azure_openai::responses_path(prefix, sub),
        _ => openai::responses_path(prefix, sub),
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let headers = spec(p.kind).auth_headers(key);
    Ok(UpstreamRequest { method, path_and_query, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(text: &str) -> crate::config::Snapshot {
        let t = format!(
            "listen: 127.0.0.1:1\nproviders: [{text}]\nmodels: [{{alias: a, targets: [{{provider: p, model: m}}]}}]\n"
        );
        crate::config::load_str(&t).unwrap()
    }

    #[test]
    fn job_requests_use_each_kinds_path_and_refuse_what_a_kind_does_not_serve() {
        use crate::jobs::JobCall;
        let get = |p: &str| JobCall::classify(&http::Method::GET, p).unwrap().unwrap();
        let cases = [
            ("{name: p, kind: openai, base_url: \"http://h/proxy\", api_key: sk}", "/v1/files/file-1/content", "/proxy/v1/files/file-1/content?x=1"),
            ("{name: p, kind: azure_openai, base_url: \"https://r.openai.azure.com\", api_key: az, api_version: \"2024-10-21\"}", "/v1/batches/b1", "/openai/batches/b1?api-version=2024-10-21&x=1"),
            ("{name: p, kind: azure_openai, base_url: \"https://r.openai.azure.com/openai/v1\", api_key: az, api_version: v1}", "/v1/fine_tuning/jobs/ft1/events", "/openai/v1/fine_tuning/jobs/ft1/events?x=1"),
            ("{name: p, kind: anthropic, api_key: k}", "/v1/messages/batches/mb1/results", "/v1/messages/batches/mb1/results?x=1"),
        ];
        for (text, path, want) in cases {
            let snap = provider(text);
            let r = jobs_request(&snap.providers[0], &get(path), Some("x=1"), &HeaderMap::new()).unwrap();
            assert_eq!((r.method.as_str(), r.path_and_query.as_str()), ("GET", want), "{text}");
            assert!(!r.headers.is_empty(), "auth headers: {text}");
        }
        for (text, path, what) in [
            ("{name: p, kind: azure_openai, base_url: \"https://r\", api_key: az, api_version: \"2024-10-21\"}", "/v1/videos", "videos"),
            ("{name: p, kind: anthropic, api_key: k}", "/v1/files", "files"),
            ("{name: p, kind: openai, api_key: k}", "/v1/messages/batches", "message_batches"),
            ("{name: p, kind: gemini, api_key: k}", "/v1/batches", "batches"),
        ] {
            let snap = provider(text);
            let e = jobs_request(&snap.providers[0], &get(path), None, &HeaderMap::new()).unwrap_err();
            assert!(e.to_string().contains(&format!("does not serve {what}")), "{e}");
        }
    }

    #[test]
    fn responses_requests_use_each_kinds_native_path() {
        let cases = [
            ("{name: p, kind: openai, base_url: \"http://h/proxy\", api_key: sk}", "/proxy/v1/responses/resp_1?limit=2", ("authorization", "Bearer sk")),
            ("{name: p, kind: azure_openai, base_url: \"https://r.openai.azure.com\", api_key: az, api_version: \"2024-10-21\"}", "/openai/v1/responses/resp_1?limit=2", ("api-key", "az")),
            ("{name: p, kind: azure_openai, base_url: \"https://r.openai.azure.com/openai/v1\", api_key: az, api_version: v1}", "/openai/v1/responses/resp_1?limit=2", ("api-key", "az")),
            ("{name: p, kind: openai_compatible, base_url: \"http://vllm:8000/v1\", responses: true}", "/v1/responses/resp_1?limit=2", ("", "")),
        ];
        for (text, path, (hk, hv)) in cases {
            let snap = provider(text);
            let r = responses_request(
                &snap.providers[0],
                http::Method::GET,
                "/resp_1",
                Some("limit=2"),
                Bytes::new(),
            )
            .unwrap();
            assert_eq!((r.method.as_str(), r.path_and_query.as_str()), ("GET", path), "{text}");
            let auth: Vec<_> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if hk.is_empty() {
                assert!(auth.is_empty(), "{text}");
            } else {
                assert_eq!(auth, vec![(hk, hv)], "{text}");
            }
        }
        // A compatible server that did not say `responses: true`, and Anthropic: never.
        for text in [
            "{name: p, kind: openai_compatible, base_url: \"http://vllm:8000\"}",
            "{name: p, kind: anthropic, api_key: k}",
        ] {
            let snap = provider(text);
            assert!(
                responses_request(&snap.providers[0], http::Method::POST, "", None, Bytes::new()).is_err()
            );
        }
    }
}
