//! Which data-plane endpoint a request is for, from its method and path (SPEC section 3).

use super::responses::StoredOp;
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
    /// A stored response by id: `GET/DELETE /v1/responses/{id}`, `GET .../input_items`,
    /// `POST .../cancel`.
    StoredResponse {
        id: String,
        op: StoredOp,
    },
    /// `POST /v1/responses/input_tokens`.
    ResponsesInputTokens,
    /// `/v1/gateway/preflight`: the cost of planned operations against the caller's budgets.
    Preflight,
    /// OpenAI media and embeddings, passed through to the OpenAI family.
    Media(MediaOp),
    /// A known path with the wrong method (405, with `allow`).
    MethodNotAllowed {
        allow: &'static str,
    },
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
        let only = |ok: bool, allow: &'static str, e: Endpoint| {
            if ok {
                e
            } else {
                Endpoint::MethodNotAllowed { allow }
            }
        };
        match path {
            "/healthz" => only(get, "GET", Endpoint::Healthz),
            "/readyz" => only(get, "GET", Endpoint::Readyz),
            "/v1/models" | "/models" | "/v1beta/models" => only(get, "GET", Endpoint::Models),
            "/v1/chat/completions" | "/chat/completions" => {
                only(post, "POST", Endpoint::Chat { format: Format::OpenAiChat, gemini: None })
            }
            "/v1/responses" | "/responses" => {
                only(post, "POST", Endpoint::Chat { format: Format::OpenAiResponses, gemini: None })
            }
            "/v1/messages" => only(post, "POST", Endpoint::Chat { format: Format::Anthropic, gemini: None }),
            "/v1/messages/count_tokens" => only(post, "POST", Endpoint::CountTokens),
            "/v1/gateway/preflight" => only(post, "POST", Endpoint::Preflight),
            "/v1/embeddings" | "/embeddings" => only(post, "POST", Endpoint::Media(MediaOp::Embeddings)),
            "/v1/images/generations" | "/images/generations" => {
                only(post, "POST", Endpoint::Media(MediaOp::ImagesGenerations))
            }
            "/v1/audio/speech" | "/audio/speech" => only(post, "POST", Endpoint::Media(MediaOp::AudioSpeech)),
            "/v1/audio/transcriptions" | "/audio/transcriptions" => {
                only(post, "POST", Endpoint::Media(MediaOp::AudioTranscriptions))
            }
            _ if responses_sub(path).is_some() => {
                let sub = responses_sub(path).unwrap_or_default();
                let delete = method == http::Method::DELETE;
                match sub.split_once('/') {
                    _ if sub == "input_tokens" => only(post, "POST", Endpoint::ResponsesInputTokens),
                    None if !sub.is_empty() => match () {
                        () if get => Endpoint::StoredResponse { id: sub.to_string(), op: StoredOp::Get },
                        () if delete => {
                            Endpoint::StoredResponse { id: sub.to_string(), op: StoredOp::Delete }
                        }
                        () => Endpoint::MethodNotAllowed { allow: "GET, DELETE" },
                    },
                    Some((id, "input_items")) if !id.is_empty() => only(
                        get,
                        "GET",
                        Endpoint::StoredResponse { id: id.to_string(), op: StoredOp::InputItems },
                    ),
                    Some((id, "cancel")) if !id.is_empty() => only(
                        post,
                        "POST",
                        Endpoint::StoredResponse { id: id.to_string(), op: StoredOp::Cancel },
                    ),
                    _ => Endpoint::NotFound,
                }
            }
            _ => match gemini_call(path) {
                Some((model, verb)) => {
                    let stream = verb == "streamGenerateContent";
                    let call = GeminiCall {
                        model: model.to_string(),
                        stream,
                        sse: stream && query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse")),
                    };
                    match verb {
                        "generateContent" | "streamGenerateContent" if !model.is_empty() => {
                            only(post, "POST", Endpoint::Chat { format: Format::Gemini, gemini: Some(call) })
                        }
                        _ => Endpoint::NotFound,
                    }
                }
                None => Endpoint::NotFound,
            },
        }
    }
}

/// `/v1beta/models/{model}:{verb}` or `/v1/models/{model}:{verb}` (the current google-genai SDK
/// calls `/v1/`): the model and the verb.
fn gemini_call(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    rest.rsplit_once(':')
}

/// What follows `/v1/responses/` (or `/responses/`).
fn responses_sub(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/responses/").or_else(|| path.strip_prefix("/responses/"))
}

/// The error shape a client on `path` expects, even before we know the endpoint is valid.
pub fn error_format_for_path(path: &str) -> Format {
    if path.starts_with("/v1/messages") {
        Format::Anthropic
    } else if path.starts_with("/v1beta/") || (path.starts_with("/v1/models/") && path.contains(':')) {
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
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/chat/completions", None),
            Endpoint::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(Endpoint::classify(&Method::GET, "/v1/nothing", None), Endpoint::NotFound);
        assert_eq!(Endpoint::classify(&Method::POST, "/v1/gateway/preflight", None), Endpoint::Preflight);
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/gateway/preflight", None),
            Endpoint::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/models/fast:generateContent", None),
            Endpoint::Chat {
                format: Format::Gemini,
                gemini: Some(GeminiCall { model: "fast".into(), stream: false, sse: false })
            }
        );
        assert_eq!(error_format_for_path("/v1/models/fast:generateContent"), Format::Gemini);
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

    #[test]
    fn stored_response_paths_map_by_method() {
        let stored = |id: &str, op| Endpoint::StoredResponse { id: id.into(), op };
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/responses/resp_1", None),
            stored("resp_1", StoredOp::Get)
        );
        assert_eq!(
            Endpoint::classify(&Method::DELETE, "/v1/responses/resp_1", None),
            stored("resp_1", StoredOp::Delete)
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/responses/resp_1/input_items", Some("limit=5")),
            stored("resp_1", StoredOp::InputItems)
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/responses/resp_1/cancel", None),
            stored("resp_1", StoredOp::Cancel)
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/responses/input_tokens", None),
            Endpoint::ResponsesInputTokens
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/responses/resp_1", None),
            Endpoint::MethodNotAllowed { allow: "GET, DELETE" }
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/responses/resp_1/cancel", None),
            Endpoint::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(Endpoint::classify(&Method::GET, "/v1/responses/", None), Endpoint::NotFound);
        assert_eq!(Endpoint::classify(&Method::GET, "/v1/responses/a/b/c", None), Endpoint::NotFound);
    }
}
