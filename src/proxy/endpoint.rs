//! Which data-plane endpoint a request is for, from its method and path (SPEC section 3).

use crate::formats::Format;
use crate::providers::MediaOp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Readyz,
    Models,
    /// A chat turn in `format`. For Gemini the model is in the path.
    Chat {
        format: Format,
        gemini: Option<GeminiCall>,
    },
    /// Anthropic `/v1/messages/count_tokens` (an estimate).
    CountTokens,
    /// OpenAI media and embeddings, passed through to the OpenAI family.
    Media(MediaOp),
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeminiCall {
    pub model: String,
    pub stream: bool,
    /// `?alt=sse`: the stream is SSE rather than one streamed JSON array.
    pub sse: bool,
}

impl Endpoint {
    pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> Endpoint {
        let get = method == http::Method::GET;
        let post = method == http::Method::POST;
        match path {
            "/healthz" if get => Endpoint::Healthz,
            "/readyz" if get => Endpoint::Readyz,
            "/v1/models" | "/models" if get => Endpoint::Models,
            "/v1/chat/completions" | "/chat/completions" if post => {
                Endpoint::Chat { format: Format::OpenAiChat, gemini: None }
            }
            "/v1/responses" | "/responses" if post => {
                Endpoint::Chat { format: Format::OpenAiResponses, gemini: None }
            }
            "/v1/messages" if post => Endpoint::Chat { format: Format::Anthropic, gemini: None },
            "/v1/messages/count_tokens" if post => Endpoint::CountTokens,
            "/v1/embeddings" | "/embeddings" if post => Endpoint::Media(MediaOp::Embeddings),
            "/v1/images/generations" | "/images/generations" if post => {
                Endpoint::Media(MediaOp::ImagesGenerations)
            }
            "/v1/audio/speech" | "/audio/speech" if post => Endpoint::Media(MediaOp::AudioSpeech),
            "/v1/audio/transcriptions" | "/audio/transcriptions" if post => {
                Endpoint::Media(MediaOp::AudioTranscriptions)
            }
            _ if post => match path.strip_prefix("/v1beta/models/").and_then(|r| r.rsplit_once(':')) {
                Some((model, "generateContent")) if !model.is_empty() => Endpoint::Chat {
                    format: Format::Gemini,
                    gemini: Some(GeminiCall { model: model.to_string(), stream: false, sse: false }),
                },
                Some((model, "streamGenerateContent")) if !model.is_empty() => Endpoint::Chat {
                    format: Format::Gemini,
                    gemini: Some(GeminiCall {
                        model: model.to_string(),
                        stream: true,
                        sse: query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse")),
                    }),
                },
                _ => Endpoint::NotFound,
            },
            _ => Endpoint::NotFound,
        }
    }
}

/// The error shape a client on `path` expects, even before we know the endpoint is valid.
pub fn error_format_for_path(path: &str) -> Format {
    if path.starts_with("/v1/messages") {
        Format::Anthropic
    } else if path.starts_with("/v1beta/") {
        Format::Gemini
    } else {
        Format::OpenAiChat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(Endpoint::classify(&Method::GET, "/healthz", None), Endpoint::Healthz);
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/chat/completions", None),
            Endpoint::Chat { format: Format::OpenAiChat, gemini: None }
        );
        assert_eq!(Endpoint::classify(&Method::GET, "/v1/chat/completions", None), Endpoint::NotFound);
        assert_eq!(
            Endpoint::classify(
                &Method::POST,
                "/v1beta/models/fast:streamGenerateContent",
                Some("alt=sse&key=k")
            ),
            Endpoint::Chat {
                format: Format::Gemini,
                gemini: Some(GeminiCall { model: "fast".into(), stream: true, sse: true })
            }
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1beta/models/:generateContent", None),
            Endpoint::NotFound
        );
    }
}
