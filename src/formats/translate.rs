//! The translation entry points the proxy calls: request, response, error and stream
//! translation between any inbound (client) format and any upstream format, through the IR.
//! Pure dispatch: each format's own file does the decoding and encoding.
//!
//! # Parameters a target cannot honour
//! The policy is per parameter, decided here and in the encoders, and always visible: a
//! dropped parameter is named in `Encoded::dropped` (the proxy reports it in
//! `x-gateway-dropped-params`); a parameter whose loss would change the answer's *shape* is a
//! 400 (`TranslateError`), never silently ignored.
//!
//! | parameter | to OpenAI Chat | to Anthropic |
//! |---|---|---|
//! | `n` > 1 | 400 (the IR carries one choice; only same-format passthrough keeps `n`) | 400 |
//! | `n` = 1 | kept | dropped (listed) |
//! | `seed`, `presence_penalty`, `frequency_penalty`, `logprobs` | kept | dropped (listed) |
//! | `response_format` json_object / json_schema | kept | dropped (listed) |
//! | `top_k` | dropped (listed) | kept |
//! | `temperature` | kept | clamped to Anthropic's 0..=1 |
//! | `temperature`, `top_k`, `top_p` < 0.95 with thinking on | kept | dropped (listed): extended thinking rejects them |
//! | `max_tokens` | `max_completion_tokens` | the client's value, else `RequestOptions::default_max_tokens` (required); a client cap below the thinking budget halves the budget (or drops thinking, listed as `reasoning_effort`), the default cap grows by the budget instead |
//! | `reasoning_effort` / thinking budget | `reasoning_effort` (a budget maps to low/medium/high) | `thinking.budget_tokens` (low 2048, medium 8192, high 16384; none/minimal = off) |
//! | thinking with a forced tool (`required`/named), or when the last assistant tool-call turn has no signed thinking | `reasoning_effort` kept | thinking off, listed as `reasoning_effort` (Anthropic would 400) |
//! | `parallel_tool_calls: false` | kept | `tool_choice.disable_parallel_tool_use` |
//! | `user` / `metadata.user_id` | `user` | `metadata.user_id` |
//! | `stop` / `stop_sequences` | `stop` | `stop_sequences` |
//! | unsigned reasoning (another provider's) in history | `reasoning_content` | not sent (Anthropic only accepts its own signed thinking) |
//! | tool-call arguments that are not a JSON object | kept as text | `{"_raw_arguments": text}` (never lost, never `{}`) |
//!
//! Mid-conversation `system`/`developer` messages are hoisted, in order, into the system
//! prompt (no format but OpenAI can place them mid-conversation).

use super::{
    anthropic, bedrock, gemini, openai_chat, openai_responses, ChatRequest, ChatResponse, Encoded, ErrorKind,
    Format, RequestOptions, ResponseOptions, TranslateError, Usage,
};

/// Inbound body (client format `from`) -> upstream body (format `to`).
/// `from == to` is not called by the proxy (it passes the body through).
pub fn translate_request(
    from: Format,
    to: Format,
    body: &[u8],
    opts: &RequestOptions,
) -> Result<Encoded, TranslateError> {
    let req = decode_request(from, body)?;
    if req.sampling.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::invalid(
            "n",
            format!("n > 1 cannot be translated to {}; send n=1 or omit it", to.name()),
        ));
    }
    encode_request(to, &req, opts)
}

/// Upstream non-stream response body (format `from`) -> client body (format `to`), plus usage.
pub fn translate_response(
    from: Format,
    to: Format,
    body: &[u8],
    opts: &ResponseOptions,
) -> Result<(Vec<u8>, Usage), TranslateError> {
    let mut resp = decode_response(from, body)?;
    resp.id = answer_id(to, &resp.id);
    let model = answer_model(&resp.model, opts.model).to_owned();
    let opts = ResponseOptions { model: &model, ..*opts };
    Ok((encode_response(to, &resp, &opts), resp.usage))
}

// === Answer fields ===

/// The `model` a translated answer names: the concrete model the upstream reported (as
/// OpenAI answers with dated model names), else `target`, the target's configured model
/// (what the proxy puts in `ResponseOptions::model`). Never the alias the client sent; the
/// same rule as on passthrough routes, where the upstream's own answer is passed on.
pub fn answer_model<'a>(reported: &'a str, target: &'a str) -> &'a str {
    if reported.trim().is_empty() {
        target
    } else {
        reported
    }
}

/// The request fields a Responses object repeats, with what the real API shows when the
/// request does not set them.
fn responses_echo_defaults() -> [(&'static str, serde_json::Value); 14] {
    use serde_json::{json, Value};
    [
        ("instructions", Value::Null),
        ("tools", json!([])),
        ("tool_choice", json!("auto")),
        ("parallel_tool_calls", json!(true)),
        ("temperature", json!(1.0)),
        ("top_p", json!(1.0)),
        ("max_output_tokens", Value::Null),
        ("previous_response_id", Value::Null),
        ("metadata", json!({})),
        ("text", json!({"format": {"type": "text"}})),
        ("reasoning", json!({"effort": null, "summary": null})),
        ("truncation", json!("disabled")),
        ("user", Value::Null),
        ("store", json!(true)),
    ]
}

/// What a translated Responses answer echoes from the client's Responses `request`, as the
/// real API fills the Response object: `tools`, `instructions`, `tool_choice`, sampling and the
/// rest, each the request's value or the API's default. `None` when the body is not an object.
pub fn responses_echo(request: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut req: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(request).ok()?;
    Some(
        responses_echo_defaults()
            .into_iter()
            .map(|(k, default)| {
                let v = req.remove(k).filter(|v| !v.is_null()).unwrap_or(default);
                (k.to_owned(), v)
            })
            .collect(),
    )
}

/// A translated Responses answer (the whole Response object) with `echo` written into it.
/// An answer that is not a JSON object is returned as it is.
pub fn echo_into_response(answer: &[u8], echo: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(answer) else {
        return answer.to_vec();
    };
    for (k, x) in echo {
        v.insert(k.clone(), x.clone());
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| answer.to_vec())
}

/// Id prefixes of the formats that have one.
const ID_PREFIXES: [&str; 3] = ["chatcmpl-", "msg_", "resp_"];

/// The id of a translated answer in client format `to`'s own shape: `chatcmpl-…` for Chat,
/// `msg_…` for Anthropic (Responses ids get `resp_` from their encoder; Gemini's
/// `responseId` has no shape). The upstream's id is kept after its own prefix (so logs
/// still match), or a random one is made when it gave none.
pub fn answer_id(to: Format, upstream: &str) -> String {
    let prefix = match to {
        Format::OpenAiChat => "chatcmpl-",
        Format::Anthropic => "msg_",
        Format::OpenAiResponses | Format::Gemini | Format::Bedrock => return upstream.to_owned(),
    };
    if upstream.starts_with(prefix) {
        return upstream.to_owned();
    }
    let rest = ID_PREFIXES.iter().find_map(|p| upstream.strip_prefix(p)).unwrap_or(upstream);
    let rest: String =
        rest.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(96).collect();
    if rest.is_empty() {
        format!("{prefix}{:024x}", fastrand::u128(..) >> 32)
    } else {
        format!("{prefix}{rest}")
    }
}

/// Upstream error body (any status >= 400) -> client error body in format `to`, keeping the
/// upstream's message. The status stays the proxy's business.
pub fn translate_error(from: Format, to: Format, status: u16, body: &[u8]) -> Vec<u8> {
    let (kind, message) = decode_error(from, status, body);
    encode_error(to, kind, &message)
}

/// The client error envelope (format `to`) for an error the gateway itself raises.
pub fn encode_error(to: Format, kind: ErrorKind, message: &str) -> Vec<u8> {
    match to {
        Format::OpenAiChat => openai_chat::encode_error(kind, message),
        Format::OpenAiResponses => openai_responses::encode_error(kind, message),
        Format::Anthropic => anthropic::encode_error(kind, message),
        Format::Gemini => gemini::encode_error(kind, message),
        // Bedrock is outbound only; a Bedrock-shaped client does not exist. OpenAI's envelope.
        Format::Bedrock => openai_chat::encode_error(kind, message),
    }
}

/// The HTTP status for an error class.
pub fn status_for(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::Authentication => 401,
        ErrorKind::PermissionDenied => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::RequestTooLarge => 413,
        ErrorKind::RateLimited | ErrorKind::BudgetExceeded => 429,
        ErrorKind::Overloaded => 503,
        ErrorKind::UpstreamTimeout => 504,
        ErrorKind::UpstreamError => 502,
        ErrorKind::Internal => 500,
    }
}

/// The error class of an upstream HTTP status (529 is Anthropic's "overloaded").
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Authentication,
        402 => ErrorKind::BudgetExceeded,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::RequestTooLarge,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        408 | 504 => ErrorKind::UpstreamTimeout,
        _ => ErrorKind::UpstreamError,
    }
}

// === Dispatch over formats ===

pub fn decode_request(from: Format, body: &[u8]) -> Result<ChatRequest, TranslateError> {
    match from {
        Format::OpenAiChat => openai_chat::decode_request(body),
        Format::OpenAiResponses => openai_responses::decode_request(body),
        Format::Anthropic => anthropic::decode_request(body),
        Format::Gemini => gemini::decode_request(body),
        Format::Bedrock => Err(TranslateError::Unsupported("Bedrock as a client format".into())),
    }
}

pub fn encode_request(
    to: Format,
    req: &ChatRequest,
    opts: &RequestOptions,
) -> Result<Encoded, TranslateError> {
    match to {
        Format::OpenAiChat => openai_chat::encode_request(req, opts),
        Format::OpenAiResponses => openai_responses::encode_request(req, opts),
        Format::Anthropic => anthropic::encode_request(req, opts),
        Format::Gemini => gemini::encode_request(req, opts),
        Format::Bedrock => bedrock::encode_request(req, opts),
    }
}

pub fn decode_response(from: Format, body: &[u8]) -> Result<ChatResponse, TranslateError> {
    match from {
        Format::OpenAiChat => openai_chat::decode_response(body),
        Format::OpenAiResponses => openai_responses::decode_response(body),
        Format::Anthropic => anthropic::decode_response(body),
        Format::Gemini => gemini::decode_response(body),
        Format::Bedrock => bedrock::decode_response(body),
    }
}

pub fn encode_response(to: Format, resp: &ChatResponse, opts: &ResponseOptions) -> Vec<u8> {
    match to {
        Format::OpenAiChat => openai_chat::encode_response(resp, opts),
        Format::OpenAiResponses => openai_responses::encode_response(resp, opts),
        Format::Anthropic => anthropic::encode_response(resp, opts),
        Format::Gemini => gemini::encode_response(resp, opts),
        // Not a client format: answer in OpenAI's shape rather than nothing.
        Format::Bedrock => openai_chat::encode_response(resp, opts),
    }
}

pub fn decode_error(from: Format, status: u16, body: &[u8]) -> (ErrorKind, String) {
    match from {
        Format::OpenAiChat => openai_chat::decode_error(status, body),
        Format::OpenAiResponses => openai_responses::decode_error(status, body),
        Format::Anthropic => anthropic::decode_error(status, body),
        Format::Gemini => gemini::decode_error(status, body),
        Format::Bedrock => bedrock::decode_error(status, body),
    }
}

#[path = "translate_stream.rs"]
mod stream;
pub use stream::{StreamTranslator, MAX_ANSWER_BYTES};

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
