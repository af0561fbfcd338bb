//! Anthropic Messages wire format <-> IR: requests, responses, errors, and (in
//! `anthropic_stream.rs`) the Messages SSE stream. Pure: no I/O, no config, no auth.
//!
//! Encoding rules worth knowing: `max_tokens` is required, so the client's value is used,
//! else `RequestOptions::default_max_tokens`; same-role turns are merged (the API requires
//! alternation), so several OpenAI `tool` messages become ONE user turn of `tool_result`s;
//! `Thinking` parts without a signature (another provider's reasoning) are not sent back;
//! parameters Anthropic cannot express are listed in `Encoded::dropped` (see `translate.rs`).
//!
//! Usage convention (the IR's): `input_tokens` counts ALL prompt tokens, cached or not, as
//! OpenAI's `prompt_tokens` does; Anthropic's `input_tokens` excludes cache reads and writes,
//! so decode adds them and encode subtracts them.

use serde_json::{json, Map, Value};

use super::finish_reason;
use super::lenient::U64;
use super::tools::{object_schema, tool_arguments_to_object, tool_id_for_anthropic};
use super::{
    ChatRequest, ChatResponse, Encoded, ErrorKind, FinishReason, Format, ImageSource, Message, Part,
    Reasoning, RequestOptions, ResponseFormat, ResponseOptions, Role, SystemPart, ToolChoice, TranslateError,
    Usage,
};

pub use super::anthropic_request::decode_request;
pub use super::anthropic_stream::{StreamDecoder, StreamEncoder};

/// The smallest thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u32 = 1024;

// === Request ===

/// The version of Anthropic's web search tool the gateway asks for.
pub const WEB_SEARCH_TOOL: &str = "web_search_20250305";

pub fn encode_request(req: &ChatRequest, opts: &RequestOptions) -> Result<Encoded, TranslateError> {
    let mut dropped = Vec::new();
    let s = &req.sampling;
    if s.n.is_some_and(|n| n > 1) {
        return Err(TranslateError::invalid("n", "only n=1 is supported when the target is Anthropic"));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(opts.target_model));
    let mut max_tokens = req.max_tokens.unwrap_or(opts.default_max_tokens).max(1);
    if !req.system.is_empty() {
        let system = if let [SystemPart { text, cache_control: None }] = req.system.as_slice() {
            json!(text)
        } else {
            Value::Array(req.system.iter().map(|p| text_block(&p.text, p.cache_control.as_ref())).collect())
        };
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(encode_messages(&req.messages)));
    if !req.tools.is_empty() || req.web_search.is_some() {
        let tools = req.tools.iter().map(|t| {
            let mut o = Map::new();
            o.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                o.insert("description".into(), json!(d));
            }
            o.insert("input_schema".into(), object_schema(&t.parameters));
            Value::Object(o)
        });
        let mut tools: Vec<Value> = tools.collect();
        if let Some(ws) = &req.web_search {
            // Anthropic's server-side web search tool.
            let mut t = json!({"type": WEB_SEARCH_TOOL, "name": "web_search"});
            if !ws.allowed_domains.is_empty() {
                t["allowed_domains"] = json!(ws.allowed_domains);
            }
            if let Some(l) = &ws.user_location {
                t["user_location"] = l.clone();
            }
            tools.push(t);
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    let disable_parallel = req.parallel_tool_calls == Some(false) && !req.tools.is_empty();
    if !req.tools.is_empty() && (req.tool_choice.is_some() || disable_parallel) {
        let mut tc = match req.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
        if disable_parallel && req.tool_choice != Some(ToolChoice::None) {
            tc["disable_parallel_tool_use"] = json!(true);
        }
        body.insert("tool_choice".into(), tc);
    }
    if !s.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(s.stop));
    }
    let mut budget = thinking_budget(req.reasoning.as_ref());
    if let Some(b) = budget.filter(|b| max_tokens <= *b) {
        // budget_tokens must be below max_tokens. A client's own cap is kept (the budget
        // shrinks to half of it, or thinking is dropped); the default cap grows instead.
        if req.max_tokens.is_none() {
            max_tokens = b.saturating_add(max_tokens);
        } else if max_tokens / 2 >= MIN_THINKING_BUDGET {
            budget = Some(max_tokens / 2);
        } else {
            budget = None;
            dropped.push("reasoning_effort");
        }
    }
    if budget.is_some() && !thinking_allowed(req) {
        budget = None;
        dropped.push("reasoning_effort");
    }
    if let Some(budget) = budget {
        body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
        // Extended thinking rejects modified temperature / top_k and top_p below 0.95.
        if s.temperature.is_some() {
            dropped.push("temperature");
        }
        if s.top_k.is_some() {
            dropped.push("top_k");
        }
        match s.top_p {
            Some(p) if p >= 0.95 => {
                body.insert("top_p".into(), json!(p));
            }
            Some(_) => dropped.push("top_p"),
            None => {}
        }
    } else {
        if let Some(t) = s.temperature {
            // Anthropic's range is 0..=1 (OpenAI's is 0..=2).
            body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
        }
        if let Some(p) = s.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(k) = s.top_k {
            body.insert("top_k".into(), json!(k));
        }
    }
    body.insert("max_tokens".into(), json!(max_tokens));
    if let Some(u) = &req.user {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    for (name, present) in [
        ("seed", s.seed.is_some()),
        ("presence_penalty", s.presence_penalty.is_some()),
        ("frequency_penalty", s.frequency_penalty.is_some()),
        ("logprobs", s.logprobs.is_some()),
        ("n", s.n.is_some()),
        (
            "response_format",
            matches!(
                req.response_format,
                Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
            ),
        ),
    ] {
        if present {
            dropped.push(name);
        }
    }
    Ok(Encoded { body: serde_json::to_vec(&Value::Object(body))?, dropped })
}

/// An explicit budget wins; else an OpenAI effort maps to a budget; "none"/"minimal" mean off.
/// Shared with Bedrock (Claude models take the same budgets there).
pub(crate) fn thinking_budget(r: Option<&Reasoning>) -> Option<u32> {
    let r = r?;
    if let Some(b) = r.budget_tokens {
        return Some(b.max(MIN_THINKING_BUDGET));
    }
    match r.effort.as_deref()? {
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(16384),
        "xhigh" | "max" => Some(32768),
        _ => None,
    }
}

/// Anthropic refuses extended thinking when `tool_choice` forces a tool, and when the last
/// assistant turn called tools without its signed thinking block (history from another
/// provider or a client that dropped it); thinking is then turned off rather than failing.
fn thinking_allowed(req: &ChatRequest) -> bool {
    if matches!(req.tool_choice, Some(ToolChoice::Required | ToolChoice::Tool(_))) {
        return false;
    }
    let Some(last) = req.messages.iter().rev().find(|m| m.role == Role::Assistant) else {
        return true;
    };
    let calls_tools = last.parts.iter().any(|p| matches!(p, Part::ToolCall(_)));
    let signed = last.parts.iter().any(|p| match p {
        Part::Thinking { signature: Some(sig), .. } => !super::foreign_signature(sig),
        Part::RedactedThinking { .. } => true,
        _ => false,
    });
    !calls_tools || signed
}

/// IR turns -> Anthropic messages, merging consecutive same-role turns. A turn with nothing
/// Anthropic can carry (e.g. only empty text) is left out rather than sent empty.
fn encode_messages(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<(Role, Vec<Value>)> = Vec::new();
    for m in messages {
        // Thinking signed by another provider is never sent to Anthropic (it would be a 400).
        let blocks: Vec<Value> = m
            .parts
            .iter()
            .filter(|p| !matches!(p, Part::Thinking { signature: Some(sig), .. } if super::foreign_signature(sig)))
            .filter_map(encode_part)
            .collect();
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((role, prev)) if *role == m.role => prev.extend(blocks),
            _ => out.push((m.role, blocks)),
        }
    }
    out.into_iter()
        .map(|(role, mut blocks)| {
            let role = if role == Role::User { "user" } else { "assistant" };
            if role == "user" {
                // Anthropic wants tool_result blocks before any other content of the turn.
                blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            }
            let content = match blocks.as_slice() {
                [b] if b.get("type").and_then(Value::as_str) == Some("text")
                    && b.get("cache_control").is_none() =>
                {
                    b["text"].clone()
                }
                _ => Value::Array(blocks),
            };
            json!({"role": role, "content": content})
        })
        .collect()
}

fn encode_part(p: &Part) -> Option<Value> {
    Some(match p {
        Part::Text { text, cache_control } => {
            if text.is_empty() {
                return None; // Anthropic rejects empty text blocks.
            }
            text_block(text, cache_control.as_ref())
        }
        Part::Image(ImageSource::Base64 { media_type, data }) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        Part::Image(ImageSource::Url(url)) => json!({"type": "image", "source": {"type": "url", "url": url}}),
        Part::ToolCall(c) => json!({
            "type": "tool_use",
            "id": tool_id_for_anthropic(&c.id),
            "name": c.name,
            "input": tool_arguments_to_object(&c.arguments),
        }),
        Part::ToolResult(r) => {
            let mut b = json!({"type": "tool_result", "tool_use_id": tool_id_for_anthropic(&r.call_id)});
            b["content"] = match r.content.as_slice() {
                [Part::Text { text, cache_control: None }] => json!(text),
                parts => Value::Array(parts.iter().filter_map(encode_part).collect()),
            };
            if r.is_error {
                b["is_error"] = json!(true);
            }
            b
        }
        // Only Anthropic's own signed thinking can be sent back.
        Part::Thinking { text, signature: Some(sig) } => {
            json!({"type": "thinking", "thinking": text, "signature": sig})
        }
        Part::Thinking { signature: None, .. } => return None,
        Part::RedactedThinking { data } => json!({"type": "redacted_thinking", "data": data}),
    })
}

fn text_block(text: &str, cache_control: Option<&Value>) -> Value {
    let mut b = json!({"type": "text", "text": text});
    if let Some(cc) = cache_control {
        b["cache_control"] = cc.clone();
    }
    b
}

// === Response ===

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    let content =
        super::anthropic_request::decode_response_content(v.get("content").unwrap_or(&Value::Null))?;
    Ok(ChatResponse {
        id: v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        created: 0,
        content,
        finish: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map_or(FinishReason::Stop, |r| finish_reason::decode(Format::Anthropic, r)),
        usage: v.get("usage").map(|u| decode_usage(u, Usage::default())).unwrap_or_default(),
    })
}

/// Anthropic `usage` over `prev` (fields absent here keep their previous value).
pub(crate) fn decode_usage(u: &Value, prev: Usage) -> Usage {
    // Not an object: nothing changes.
    <UsageIn as serde::Deserialize>::deserialize(u).unwrap_or_default().over(prev)
}

/// `usage` as Anthropic sends it, typed (the stream decoder reads it so); a field that is
/// absent keeps the value it had (`message_delta` repeats only what changed).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct UsageIn {
    input_tokens: U64,
    cache_read_input_tokens: U64,
    cache_creation_input_tokens: U64,
    output_tokens: U64,
}

// === impl UsageIn ===

impl UsageIn {
    /// These counts over `prev`: Anthropic's `input_tokens` excludes the cached part, ours
    /// includes it.
    pub(crate) fn over(&self, prev: Usage) -> Usage {
        let read = self.cache_read_input_tokens.0.unwrap_or(prev.cache_read_tokens);
        let write = self.cache_creation_input_tokens.0.unwrap_or(prev.cache_write_tokens);
        Usage {
            input_tokens: match self.input_tokens.0 {
                Some(i) => i.saturating_add(read).saturating_add(write),
                None => prev.input_tokens.max(read.saturating_add(write)),
            },
            output_tokens: self.output_tokens.0.unwrap_or(prev.output_tokens),
            cache_read_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: prev.reasoning_tokens,
        }
    }
}

/// `usage` as Anthropic writes it (`input_tokens` excludes the cached part).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(crate) struct WireUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

// === impl WireUsage ===

impl WireUsage {
    /// Append the object: the bytes its `Serialize` writes (see the stream tests), from
    /// literal keys.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        use super::sse::write_json_u64;
        out.extend_from_slice(b"{\"input_tokens\":");
        write_json_u64(out, self.input_tokens);
        out.extend_from_slice(b",\"cache_creation_input_tokens\":");
        write_json_u64(out, self.cache_creation_input_tokens);
        out.extend_from_slice(b",\"cache_read_input_tokens\":");
        write_json_u64(out, self.cache_read_input_tokens);
        out.extend_from_slice(b",\"output_tokens\":");
        write_json_u64(out, self.output_tokens);
        out.push(b'}');
    }
}

pub(crate) fn encode_usage(u: &Usage) -> WireUsage {
    WireUsage {
        input_tokens: u.input_tokens.saturating_sub(u.cache_read_tokens.saturating_add(u.cache_write_tokens)),
        cache_creation_input_tokens: u.cache_write_tokens,
        cache_read_input_tokens: u.cache_read_tokens,
        output_tokens: u.output_tokens,
    }
}

pub fn encode_response(resp: &ChatResponse, opts: &ResponseOptions) -> Vec<u8> {
    let content: Vec<Value> = resp
        .content
        .iter()
        .filter_map(|p| match p {
            // Unsigned reasoning from another provider is still shown to the client.
            Part::Thinking { text, signature: None } => {
                Some(json!({"type": "thinking", "thinking": text, "signature": ""}))
            }
            p => encode_part(p),
        })
        .collect();
    let has_tools = resp.content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    let v = json!({
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": opts.model,
        "content": content,
        "stop_reason": stop_reason(resp.finish, has_tools),
        "stop_sequence": null,
        "usage": encode_usage(&resp.usage),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Upstreams that finish with `stop` after calling tools (Gemini, OpenAI with a forced tool)
/// still mean `tool_use` to an Anthropic client, which only runs tools on that reason.
pub(crate) fn stop_reason(finish: FinishReason, has_tools: bool) -> &'static str {
    match finish {
        FinishReason::Stop if has_tools => "tool_use",
        f => finish_reason::encode(Format::Anthropic, f),
    }
}

// === Error ===

/// `{"type":"error","error":{"type","message"}}`; the kind comes from the error type, else the status.
pub fn decode_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let (kind, message, _) = super::upstream_error::decode(super::Format::Anthropic, status, None, body);
    (kind, message)
}

/// The error class of an Anthropic `error.type` (see `upstream_error` for the whole table).
pub(crate) fn kind_for_type(t: &str) -> Option<ErrorKind> {
    Some(match t {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" => ErrorKind::RateLimited,
        "billing_error" => ErrorKind::BudgetExceeded,
        "overloaded_error" => ErrorKind::Overloaded,
        "api_error" => ErrorKind::UpstreamError,
        "timeout_error" => ErrorKind::UpstreamTimeout,
        _ => return None,
    })
}

pub fn encode_error(kind: ErrorKind, message: &str) -> Vec<u8> {
    serde_json::to_vec(&error_value(kind, message)).unwrap_or_default()
}

pub(crate) fn error_value(kind: ErrorKind, message: &str) -> Value {
    let t = match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimited | ErrorKind::BudgetExceeded => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::UpstreamTimeout | ErrorKind::UpstreamError | ErrorKind::Internal => "api_error",
    };
    json!({"type": "error", "error": {"type": t, "message": message}})
}

#[cfg(test)]
#[path = "anthropic_tests.rs"]
mod tests;
