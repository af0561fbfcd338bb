//! Gemini `generateContent` wire format <-> IR: request and response bodies, errors, and (in
//! `gemini_stream.rs`) `streamGenerateContent` in both its SSE and JSON-array forms.
//! Pure: no I/O, no config, no auth. The model is in the URL, not the body (the proxy fills it).
//!
//! Tool-call ids: Gemini's `functionCall` usually has no id, so decoders synthesise
//! `call_<n>_<name>`, `n` being the call's ordinal in the body (in a request: across all
//! turns; in a response or stream: within it). A `functionResponse` without an id is
//! matched to the earliest unanswered call of the same name. Encoders for an upstream send
//! no ids and name every `functionResponse` after its call; encoders for a client write
//! `functionCall.id` so SDKs echo it back.
//!
//! Thought signatures: a `functionCall` part's `thoughtSignature` rides on
//! `ToolCall::signature`; a thought part's on `Part::Thinking`. A plain text part's signature
//! is dropped: Gemini only requires the function-call ones back, and an empty thinking block
//! would surface in other formats. (An empty signed `Part::Thinking` is still re-attached to
//! the part before it on encode.)
//! Thinking signatures from an upstream are tagged `gemini:` (see `SIGNATURE_PREFIX`).

use serde_json::{json, Value};

use super::finish_reason;
use super::tools::{tool_arguments_to_object, value_to_tool_arguments};
use super::{
    ChatResponse, ErrorKind, FinishReason, Format, ImageSource, Part, ResponseOptions, ToolCall,
    TranslateError, Usage,
};

#[path = "gemini_request.rs"]
mod request;
#[path = "gemini_schema.rs"]
mod schema;
#[path = "gemini_stream.rs"]
mod stream;

use request::image_part;
pub use request::{decode_request, encode_request};
pub use schema::sanitize_schema;
pub use stream::{check_stream_grammar, StreamDecoder, StreamEncoder};

/// Google's documented placeholder for a function call that has no real thought signature
/// (history produced by another model); without one Gemini 3 rejects the turn.
pub const DUMMY_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// Marks a `Part::Thinking` signature as Gemini's own. Decoders of upstream answers add it;
/// `encode_request` sends back only signatures that carry it (stripped) and drops other
/// providers' thoughts, which Gemini would reject. Client-side decode/encode keep signatures
/// verbatim, so a client echoes the tagged value. `ToolCall::signature` is never tagged
/// (only Gemini fills it).
pub const SIGNATURE_PREFIX: &str = "gemini:";

/// A thought signature from a Gemini upstream, tagged (see `SIGNATURE_PREFIX`).
pub fn tag_signature(sig: &str) -> String {
    format!("{SIGNATURE_PREFIX}{sig}")
}

// === Shared helpers ===

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn parts_of(content: &Value) -> &[Value] {
    content.get("parts").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn text_part(text: impl Into<String>) -> Part {
    Part::Text { text: text.into(), cache_control: None }
}

/// The synthesised id of the `n`th function call named `name` (see the module docs).
pub fn synth_call_id(n: usize, name: &str) -> String {
    format!("call_{n}_{name}")
}

// === Response: wire -> IR ===

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(TranslateError::invalid("body", "expected a JSON object"));
    }
    let cand = v.pointer("/candidates/0").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let mut n_calls = 0;
    for p in cand.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
        content.extend(response_part(p, &mut n_calls));
    }
    let finish = candidate_finish(&v, cand, n_calls > 0);
    Ok(ChatResponse {
        id: str_of(&v, "responseId").to_owned(),
        model: str_of(&v, "modelVersion").to_owned(),
        created: 0,
        content,
        finish,
        usage: v.get("usageMetadata").map(usage_from_value).unwrap_or_default(),
    })
}

/// One response part as IR parts.
fn response_part(p: &Value, n_calls: &mut usize) -> Vec<Part> {
    let raw = p.get("thoughtSignature").and_then(Value::as_str);
    if let Some(fc) = p.get("functionCall") {
        let signature = raw.map(str::to_owned);
        let name = str_of(fc, "name").to_owned();
        let id = match fc.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => synth_call_id(*n_calls, &name),
        };
        *n_calls += 1;
        let arguments = fc.get("args").map_or_else(|| "{}".into(), value_to_tool_arguments);
        return vec![Part::ToolCall(ToolCall { id, name, arguments, signature })];
    }
    let signature = raw.map(tag_signature);
    let text = p.get("text").and_then(Value::as_str);
    if p.get("thought").and_then(Value::as_bool) == Some(true) {
        return vec![Part::Thinking { text: text.unwrap_or_default().to_owned(), signature }];
    }
    let mut out = Vec::new();
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        out.push(text_part(t));
    }
    if let Some(d) = p.get("inlineData") {
        out.push(Part::Image(ImageSource::Base64 {
            media_type: str_of(d, "mimeType").to_owned(),
            data: str_of(d, "data").to_owned(),
        }));
    }
    // A plain text part's signature is dropped (see `decode_contents`).
    out
}

pub(crate) fn candidate_finish(v: &Value, cand: &Value, has_calls: bool) -> FinishReason {
    if cand.is_null() && v.pointer("/promptFeedback/blockReason").is_some() {
        return FinishReason::ContentFilter;
    }
    match finish_reason::decode(Format::Gemini, str_of(cand, "finishReason")) {
        FinishReason::Stop if has_calls => FinishReason::ToolCalls,
        r => r,
    }
}

pub(crate) fn usage_from_value(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    Usage {
        input_tokens: n("promptTokenCount") + n("toolUsePromptTokenCount"),
        output_tokens: n("candidatesTokenCount") + thoughts,
        cache_read_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

// === Response: IR -> wire ===

pub fn encode_response(resp: &ChatResponse, opts: &ResponseOptions) -> Vec<u8> {
    let mut parts: Vec<Value> = Vec::new();
    for p in &resp.content {
        match p {
            Part::Text { text, .. } => parts.push(json!({ "text": text })),
            Part::Image(img) => parts.push(image_part(img)),
            Part::ToolCall(c) => parts.push(call_part(c)),
            Part::Thinking { text, signature } if text.is_empty() => {
                if let Some(sig) = signature {
                    match parts.last_mut() {
                        Some(last) if last.get("thoughtSignature").is_none() => {
                            last["thoughtSignature"] = json!(sig)
                        }
                        _ => parts.push(json!({"text": "", "thoughtSignature": sig})),
                    }
                }
            }
            Part::Thinking { text, signature } => {
                let mut part = json!({"text": text, "thought": true});
                if let Some(sig) = signature {
                    part["thoughtSignature"] = json!(sig);
                }
                parts.push(part);
            }
            Part::ToolResult(_) | Part::RedactedThinking { .. } => {}
        }
    }
    let v = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_reason::encode(Format::Gemini, resp.finish),
            "index": 0,
        }],
        "usageMetadata": usage_to_value(&resp.usage),
        "modelVersion": opts.model,
        "responseId": resp.id,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A tool call as a `functionCall` part for a client (with its id, so SDKs echo it back).
pub(crate) fn call_part(c: &ToolCall) -> Value {
    let mut part = json!({"functionCall": {"id": c.id, "name": c.name,
        "args": tool_arguments_to_object(&c.arguments)}});
    if let Some(s) = &c.signature {
        part["thoughtSignature"] = json!(s);
    }
    part
}

pub(crate) fn usage_to_value(u: &Usage) -> Value {
    let mut m = json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens.saturating_sub(u.reasoning_tokens),
        "totalTokenCount": u.input_tokens.saturating_add(u.output_tokens),
    });
    if u.cache_read_tokens > 0 {
        m["cachedContentTokenCount"] = json!(u.cache_read_tokens);
    }
    if u.reasoning_tokens > 0 {
        m["thoughtsTokenCount"] = json!(u.reasoning_tokens);
    }
    m
}

// === Errors ===

pub fn decode_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let (kind, message, _) = super::upstream_error::decode(super::Format::Gemini, status, None, body);
    (kind, message)
}

/// The error class of a Google RPC status name (see `upstream_error` for the whole table).
pub(crate) fn kind_from_status_name(s: &str) -> Option<ErrorKind> {
    Some(match s {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::InvalidRequest,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::PermissionDenied,
        "NOT_FOUND" => ErrorKind::NotFound,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorKind::UpstreamTimeout,
        "INTERNAL" | "UNKNOWN" => ErrorKind::UpstreamError,
        _ => return None,
    })
}

/// `(HTTP code, status name)` of the Google error envelope for `kind`.
pub(crate) fn error_code_status(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest => (400, "INVALID_ARGUMENT"),
        ErrorKind::RequestTooLarge => (413, "INVALID_ARGUMENT"),
        ErrorKind::Authentication => (401, "UNAUTHENTICATED"),
        ErrorKind::PermissionDenied => (403, "PERMISSION_DENIED"),
        ErrorKind::NotFound => (404, "NOT_FOUND"),
        ErrorKind::RateLimited | ErrorKind::BudgetExceeded => (429, "RESOURCE_EXHAUSTED"),
        ErrorKind::Overloaded => (503, "UNAVAILABLE"),
        ErrorKind::UpstreamTimeout => (504, "DEADLINE_EXCEEDED"),
        ErrorKind::UpstreamError => (502, "INTERNAL"),
        ErrorKind::Internal => (500, "INTERNAL"),
    }
}

pub(crate) fn error_value(kind: ErrorKind, message: &str) -> Value {
    let (code, status) = error_code_status(kind);
    json!({"error": {"code": code, "message": message, "status": status}})
}

pub fn encode_error(kind: ErrorKind, message: &str) -> Vec<u8> {
    serde_json::to_vec(&error_value(kind, message)).unwrap_or_default()
}

#[cfg(test)]
#[path = "gemini_tests.rs"]
mod tests;
