//! Which data-plane endpoint a request is for, from its method and path (SPEC section 3).

use super::responses::StoredOp;
use crate::formats::Format;
use crate::providers::MediaOp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Readyz,
    /// OpenAI `GET /v1/models`: the caller's aliases.
    Models,
    /// OpenAI `GET /v1/models/{model}`: one alias.
    Model {
        name: String,
    },
    /// Gemini `GET /v1beta/models` (and `/v1/models` from a Google client): the caller's aliases.
    GeminiModels,
    /// Gemini `GET /v1beta/models/{model}` (and `/v1/models/{model}` from a Google client).
    GeminiModel {
        name: String,
    },
    /// Gemini `models/{model}:countTokens`: the gateway's own count.
    GeminiCountTokens {
        model: String,
    },
    /// Gemini `models/{model}:embedContent` (one) or `:batchEmbedContents` (`batch`).
    GeminiEmbed {
        model: String,
        batch: bool,
    },
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
    /// Files, batches, fine-tuning jobs, videos, message batches.
    Job(crate::jobs::JobCall),
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
    /// An embedding call rather than a generation: `Some(false)` for `embedContent`,
    /// `Some(true)` for `batchEmbedContents`.
    pub embed: Option<bool>,
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
        if let Some(job) = crate::jobs::JobCall::classify(method, path) {
            return match job {
                Ok(call) => Endpoint::Job(call),
                Err(w) => Endpoint::MethodNotAllowed { allow: w.allow },
            };
        }
        match path {
            "/healthz" => only(get, "GET", Endpoint::Healthz),
            "/readyz" => only(get, "GET", Endpoint::Readyz),
            "/v1/models" | "/models" => only(get, "GET", Endpoint::Models),
            "/v1beta/models" => only(get, "GET", Endpoint::GeminiModels),
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
            "/v1/images/edits" | "/images/edits" => only(post, "POST", Endpoint::Media(MediaOp::ImagesEdits)),
            "/v1/images/variations" | "/images/variations" => {
                only(post, "POST", Endpoint::Media(MediaOp::ImagesVariations))
            }
            "/v1/completions" | "/completions" => only(post, "POST", Endpoint::Media(MediaOp::Completions)),
            "/v1/moderations" | "/moderations" => only(post, "POST", Endpoint::Media(MediaOp::Moderations)),
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
                Some(("", _)) => Endpoint::NotFound,
                Some((model, verb)) => {
                    let model = model.to_string();
                    match verb {
                        "generateContent" | "streamGenerateContent" => {
                            let stream = verb == "streamGenerateContent";
                            let sse = stream && query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
                            let call = GeminiCall { model, stream, sse, embed: None };
                            only(post, "POST", Endpoint::Chat { format: Format::Gemini, gemini: Some(call) })
                        }
                        "countTokens" => only(post, "POST", Endpoint::GeminiCountTokens { model }),
                        "embedContent" => only(post, "POST", Endpoint::GeminiEmbed { model, batch: false }),
                        "batchEmbedContents" => {
                            only(post, "POST", Endpoint::GeminiEmbed { model, batch: true })
                        }
                        _ => Endpoint::NotFound,
                    }
                }
                None => match model_path(path) {
                    Some((name, gemini)) => {
                        let name = name.to_string();
                        let e =
                            if gemini { Endpoint::GeminiModel { name } } else { Endpoint::Model { name } };
                        only(get, "GET", e)
                    }
                    None => Endpoint::NotFound,
                },
            },
        }
    }

    /// [`Endpoint::classify`], then the models endpoints a Google client calls on `/v1/`
    /// (google-genai 3.x lists with `GET /v1/models`, as OpenAI clients do) in Gemini's shape.
    pub fn classify_request(
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Endpoint {
        match Endpoint::classify(method, path, query) {
            Endpoint::Models if google_client(headers, query) => Endpoint::GeminiModels,
            Endpoint::Model { name } if google_client(headers, query) => Endpoint::GeminiModel { name },
            e => e,
        }
    }
}

/// Whether a request comes from a Google client: it authenticates the Google way
/// (`x-goog-api-key`, `?key=`), says so (`x-goog-api-client`), or pages Google's way
/// (`pageSize`, `pageToken`). OpenAI and Anthropic clients send none of these.
pub fn google_client(headers: &http::HeaderMap, query: Option<&str>) -> bool {
    headers.contains_key("x-goog-api-key")
        || headers.contains_key("x-goog-api-client")
        || query.is_some_and(|q| {
            q.split('&').any(|kv| {
                let k = kv.split('=').next().unwrap_or_default();
                k == "key" || k == "pageSize" || k == "pageToken"
            })
        })
}

/// `/v1beta/models/{name}` (Gemini: `true`) or `/v1/models/{name}` (`false`), one segment.
fn model_path(path: &str) -> Option<(&str, bool)> {
    let (rest, gemini) = match path.strip_prefix("/v1beta/models/") {
        Some(r) => (r, true),
        None => (path.strip_prefix("/v1/models/")?, false),
    };
    (!rest.is_empty() && !rest.contains('/')).then_some((rest, gemini))
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

/// The error shape a client on `path` expects, even before we know the endpoint is valid:
/// Gemini's for `/v1beta/`, for `/v1/models/{model}:{verb}`, and for `/v1/models...` from a
/// Google client (see [`google_client`]).
pub fn error_format_for(path: &str, query: Option<&str>, headers: &http::HeaderMap) -> Format {
    let models = path == "/v1/models" || path.starts_with("/v1/models/");
    if path.starts_with("/v1/messages") {
        Format::Anthropic
    } else if path.starts_with("/v1beta/")
        || (path.starts_with("/v1/models/") && path.contains(':'))
        || (models && google_client(headers, query))
    {
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
                gemini: Some(GeminiCall { model: "fast".into(), stream: false, sse: false, embed: None })
            }
        );
        let none = http::HeaderMap::new();
        assert_eq!(error_format_for("/v1/models/fast:generateContent", None, &none), Format::Gemini);
        assert_eq!(
            Endpoint::classify(
                &Method::POST,
                "/v1beta/models/fast:streamGenerateContent",
                Some("alt=sse&key=k")
            ),
            Endpoint::Chat {
                format: Format::Gemini,
                gemini: Some(GeminiCall { model: "fast".into(), stream: true, sse: true, embed: None })
            }
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1beta/models/:generateContent", None),
            Endpoint::NotFound
        );
    }

    #[test]
    fn gemini_verbs_on_v1_and_v1beta_alike() {
        for prefix in ["/v1", "/v1beta"] {
            let at = |verb: &str| format!("{prefix}/models/fast:{verb}");
            assert_eq!(
                Endpoint::classify(&Method::POST, &at("countTokens"), None),
                Endpoint::GeminiCountTokens { model: "fast".into() }
            );
            assert_eq!(
                Endpoint::classify(&Method::POST, &at("embedContent"), None),
                Endpoint::GeminiEmbed { model: "fast".into(), batch: false }
            );
            assert_eq!(
                Endpoint::classify(&Method::POST, &at("batchEmbedContents"), None),
                Endpoint::GeminiEmbed { model: "fast".into(), batch: true }
            );
            assert_eq!(
                Endpoint::classify(&Method::GET, &at("batchEmbedContents"), None),
                Endpoint::MethodNotAllowed { allow: "POST" }
            );
            assert_eq!(Endpoint::classify(&Method::POST, &at("noSuchVerb"), None), Endpoint::NotFound);
            assert_eq!(
                Endpoint::classify(&Method::POST, &at("streamGenerateContent"), Some("alt=sse")),
                Endpoint::Chat {
                    format: Format::Gemini,
                    gemini: Some(GeminiCall { model: "fast".into(), stream: true, sse: true, embed: None })
                }
            );
        }
        assert_eq!(Endpoint::classify(&Method::GET, "/v1beta/models", None), Endpoint::GeminiModels);
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1beta/models/fast", None),
            Endpoint::GeminiModel { name: "fast".into() }
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1beta/models", None),
            Endpoint::MethodNotAllowed { allow: "GET" }
        );
        assert_eq!(Endpoint::classify(&Method::GET, "/v1/models/a/b", None), Endpoint::NotFound);
    }

    #[test]
    fn v1_models_answers_each_client_in_its_own_shape() {
        let none = http::HeaderMap::new();
        let mut openai = http::HeaderMap::new();
        openai.insert("authorization", "Bearer sk".parse().unwrap());
        let mut google = http::HeaderMap::new();
        google.insert("x-goog-api-key", "sk".parse().unwrap());
        let get = &Method::GET;
        assert_eq!(Endpoint::classify_request(get, "/v1/models", None, &openai), Endpoint::Models);
        assert_eq!(Endpoint::classify_request(get, "/v1/models", None, &none), Endpoint::Models);
        assert_eq!(Endpoint::classify_request(get, "/v1/models", None, &google), Endpoint::GeminiModels);
        assert_eq!(
            Endpoint::classify_request(get, "/v1/models", Some("pageSize=50"), &none),
            Endpoint::GeminiModels
        );
        assert_eq!(
            Endpoint::classify_request(get, "/v1/models", Some("key=sk"), &none),
            Endpoint::GeminiModels
        );
        assert_eq!(
            Endpoint::classify_request(get, "/v1/models/fast", None, &openai),
            Endpoint::Model { name: "fast".into() }
        );
        assert_eq!(
            Endpoint::classify_request(get, "/v1/models/fast", None, &google),
            Endpoint::GeminiModel { name: "fast".into() }
        );
        // Errors follow the same rule.
        assert_eq!(error_format_for("/v1/models", None, &openai), Format::OpenAiChat);
        assert_eq!(error_format_for("/v1/models", None, &google), Format::Gemini);
        assert_eq!(error_format_for("/v1/models/x", Some("key=k"), &none), Format::Gemini);
        assert_eq!(error_format_for("/v1beta/nothing", None, &none), Format::Gemini);
        assert_eq!(error_format_for("/v1/messages", None, &google), Format::Anthropic);
        assert_eq!(error_format_for("/v1/chat/completions", None, &google), Format::OpenAiChat);
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
