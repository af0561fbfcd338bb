//! OpenAI Responses API wire format <-> IR: request and response bodies, errors, and (in
//! `openai_responses_stream.rs`) the `response.*` SSE event machine in both directions.
//! Pure: no I/O, no config, no auth. This layer is stateless, so `previous_response_id`,
//! `conversation` and `item_reference` are refused rather than half-honoured; the proxy resolves
//! `previous_response_id` before translating (`proxy/responses.rs`: the stored history is
//! prepended to `input`).

use serde_json::{json, Value};

use super::finish_reason;
use super::{
    ChatResponse, ErrorKind, FinishReason, Format, ImageSource, Part, ResponseOptions, ToolCall,
    TranslateError, Usage,
};

/// Marks a `Part::Thinking` signature as this API's `encrypted_content`. Decoders of upstream
/// answers add it; `encode_request` replays only reasoning that carries it (stripped) and drops
/// other providers' thoughts, which OpenAI would reject. Client-side decode/encode keep
/// signatures verbatim, so a client echoes the tagged value.
pub const SIGNATURE_PREFIX: &str = "openai:";

/// An `encrypted_content` from a Responses upstream, tagged (see `SIGNATURE_PREFIX`).
pub fn tag_signature(sig: &str) -> String {
    format!("{SIGNATURE_PREFIX}{sig}")
}

#[path = "openai_responses_grammar.rs"]
mod grammar;
#[path = "openai_responses_request.rs"]
mod request;
#[path = "openai_responses_stream.rs"]
mod stream;

pub use grammar::check_stream_grammar;
pub use request::{decode_request, encode_request};
pub use stream::{StreamDecoder, StreamEncoder};

// === Shared helpers ===

fn text_part(text: impl Into<String>) -> Part {
    Part::Text { text: text.into(), cache_control: None }
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// A `data:` URI becomes base64 data; anything else stays a URL.
pub(crate) fn image_from_url(u: &str) -> ImageSource {
    if let Some(rest) = u.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            if let Some(media_type) = meta.strip_suffix(";base64") {
                return ImageSource::Base64 { media_type: media_type.to_owned(), data: data.to_owned() };
            }
        }
    }
    ImageSource::Url(u.to_owned())
}

// === Response: wire -> IR ===

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(TranslateError::invalid("body", "expected a JSON object"));
    }
    Ok(response_from_value(&v))
}

/// A Responses `response` object (a body, or the one inside `response.completed`) as IR.
pub(crate) fn response_from_value(v: &Value) -> ChatResponse {
    let mut content = Vec::new();
    for item in v.get("output").and_then(Value::as_array).into_iter().flatten() {
        match str_field(item, "type") {
            "message" => {
                for c in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    match str_field(c, "type") {
                        "output_text" => content.push(text_part(str_field(c, "text"))),
                        "refusal" => content.push(text_part(str_field(c, "refusal"))),
                        _ => {}
                    }
                }
            }
            "function_call" => content.push(Part::ToolCall(ToolCall {
                id: str_field(item, "call_id").to_owned(),
                name: str_field(item, "name").to_owned(),
                arguments: str_field(item, "arguments").to_owned(),
                signature: None,
            })),
            "reasoning" => {
                let text = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|s| str_field(s, "text")).collect::<Vec<_>>().join("\n\n"))
                    .unwrap_or_default();
                let signature = item.get("encrypted_content").and_then(Value::as_str).map(tag_signature);
                if !text.is_empty() || signature.is_some() {
                    content.push(Part::Thinking { text, signature });
                }
            }
            _ => {}
        }
    }
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    let finish = finish_from_response(v, has_calls);
    ChatResponse {
        id: str_field(v, "id").to_owned(),
        model: str_field(v, "model").to_owned(),
        created: v.get("created_at").and_then(Value::as_u64).unwrap_or(0),
        content,
        finish,
        usage: v.get("usage").map(usage_from_value).unwrap_or_default(),
    }
}

pub(crate) fn finish_from_response(v: &Value, has_calls: bool) -> FinishReason {
    match str_field(v, "status") {
        "incomplete" => {
            let reason = v.get("incomplete_details").map(|d| str_field(d, "reason")).unwrap_or_default();
            match finish_reason::decode(Format::OpenAiResponses, reason) {
                FinishReason::Stop => FinishReason::Length,
                r => r,
            }
        }
        "failed" => FinishReason::Error,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

pub(crate) fn usage_from_value(u: &Value) -> Usage {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n(u.get("input_tokens")),
        output_tokens: n(u.get("output_tokens")),
        cache_read_tokens: n(u.pointer("/input_tokens_details/cached_tokens")),
        cache_write_tokens: 0,
        reasoning_tokens: n(u.pointer("/output_tokens_details/reasoning_tokens")),
    }
}

// === Response: IR -> wire ===

pub fn encode_response(resp: &ChatResponse, opts: &ResponseOptions) -> Vec<u8> {
    let id = response_id(&resp.id);
    let mut ids = ItemIds::new(&id);
    let mut output = Vec::new();
    let mut texts: Vec<Value> = Vec::new();
    let flush = |texts: &mut Vec<Value>, output: &mut Vec<Value>, ids: &mut ItemIds| {
        if !texts.is_empty() {
            output.push(message_item(&ids.next("msg"), std::mem::take(texts), "completed"));
        }
    };
    for p in &resp.content {
        match p {
            Part::Text { text, .. } => texts.push(output_text(text)),
            Part::ToolCall(c) => {
                flush(&mut texts, &mut output, &mut ids);
                output.push(function_call_item(&ids.next("fc"), c, "completed"));
            }
            Part::Thinking { text, signature } => {
                flush(&mut texts, &mut output, &mut ids);
                output.push(reasoning_item(&ids.next("rs"), text, signature.as_deref()));
            }
            Part::Image(_) | Part::ToolResult(_) | Part::RedactedThinking { .. } => {}
        }
    }
    flush(&mut texts, &mut output, &mut ids);
    let v = response_object(&id, opts.model, resp.created, Some(resp.finish), output, Some(&resp.usage));
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Our response ids always carry the `resp_` prefix SDKs expect; an upstream without ids gets a
/// fresh one per response.
pub(crate) fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_owned()
    } else if id.is_empty() {
        // Unique: the gateway's conversation store keys turns by it.
        format!("resp_{:032x}", fastrand::u128(..))
    } else {
        format!("resp_{id}")
    }
}

/// Output item ids derived from the response id: `msg_<suffix>_<n>`, `fc_...`, `rs_...`.
pub(crate) struct ItemIds {
    suffix: String,
    n: u32,
}

impl ItemIds {
    pub(crate) fn new(resp_id: &str) -> Self {
        ItemIds { suffix: resp_id.strip_prefix("resp_").unwrap_or(resp_id).to_owned(), n: 0 }
    }
    pub(crate) fn next(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}_{}_{}", self.suffix, self.n);
        self.n += 1;
        id
    }
}

pub(crate) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub(crate) fn message_item(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

pub(crate) fn function_call_item(id: &str, c: &ToolCall, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": c.id,
        "name": c.name, "arguments": c.arguments})
}

pub(crate) fn reasoning_item(id: &str, text: &str, signature: Option<&str>) -> Value {
    let summary: Vec<Value> =
        if text.is_empty() { Vec::new() } else { vec![json!({"type": "summary_text", "text": text})] };
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary});
    if let Some(s) = signature {
        item["encrypted_content"] = json!(s);
    }
    item
}

/// The `response` object. `finish: None` means still in progress.
pub(crate) fn response_object(
    id: &str,
    model: &str,
    created: u64,
    finish: Option<FinishReason>,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let (status, incomplete) = match finish {
        None => ("in_progress", Value::Null),
        Some(r) => match finish_reason::encode(Format::OpenAiResponses, r) {
            "completed" => ("completed", Value::Null),
            "failed" => ("failed", Value::Null),
            reason => ("incomplete", json!({ "reason": reason })),
        },
    };
    let error = if status == "failed" {
        json!({"code": "server_error", "message": "the upstream model reported an error"})
    } else {
        Value::Null
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage.map(usage_to_value).unwrap_or(Value::Null),
    })
}

pub(crate) fn usage_to_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
    })
}

// === Errors ===

pub fn decode_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let (kind, message, _) = super::upstream_error::decode(Format::OpenAiResponses, status, None, body);
    (kind, message)
}

/// The error class of an OpenAI error `code`/`type` found inside a stream (no HTTP status).
pub(crate) fn kind_from_code(code: &str, ty: &str) -> ErrorKind {
    fn non_empty(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    super::upstream_error::openai_kind(0, non_empty(code), non_empty(ty))
}

pub(crate) use super::openai_chat::error_type_code;

pub fn encode_error(kind: ErrorKind, message: &str) -> Vec<u8> {
    let (ty, code) = error_type_code(kind);
    let v = json!({"error": {"message": message, "type": ty, "param": null, "code": code}});
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
#[path = "openai_responses_tests.rs"]
pub(crate) mod tests;
