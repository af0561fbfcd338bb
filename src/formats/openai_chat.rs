//! OpenAI Chat Completions wire format <-> IR: requests, responses, errors, and (in
//! `openai_chat_stream.rs`) the `chat.completion.chunk` stream. Pure: no I/O, no config, no auth.
//!
//! Decoding: `system`/`developer` messages are hoisted into `ChatRequest::system` in order
//! (wherever they appear); consecutive `role: tool` messages become `ToolResult` parts of one
//! `User` turn; `reasoning_content` (OpenAI-compatible servers) becomes a `Thinking` part, and
//! `thinking_blocks` (signed Anthropic thinking, the LiteLLM convention) win over it when present.
//! Encoding always asks a streaming upstream for usage (`stream_options.include_usage`) and
//! writes the cap as `max_completion_tokens` (reasoning models reject `max_tokens`). Responses
//! to clients carry signed thinking in `thinking_blocks` so it can return on the next turn.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::finish_reason;
use super::lenient::{Obj, U64};
use super::scan::{Scan, Seen};
use super::tools::value_to_tool_arguments;
use super::{
    ChatRequest, ChatResponse, Encoded, ErrorKind, Format, ImageSource, Message, Part, Reasoning,
    RequestOptions, ResponseFormat, ResponseOptions, Role, SystemPart, Tool, ToolCall, ToolChoice,
    ToolResult, TranslateError, Usage,
};

pub use super::openai_chat_stream::{StreamDecoder, StreamEncoder};

/// Top-level request fields this file models; everything else goes to `ChatRequest::extra`.
const MODELLED: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "logprobs",
    "response_format",
    "reasoning_effort",
    "user",
    "stream",
    "stream_options",
];

// === Request ===

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let obj = &super::json_object(body)?;
    let mut req = ChatRequest {
        model: str_field(obj, "model").unwrap_or_default().to_owned(),
        ..ChatRequest::default()
    };
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("messages", "is required and must be an array"))?;
    for (i, m) in messages.iter().enumerate() {
        decode_message(&mut req, i, m)?;
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        for (i, t) in tools.iter().enumerate() {
            req.tools.push(decode_tool(i, t)?);
        }
    }
    req.tool_choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(TranslateError::invalid("tool_choice", format!("unknown value {other:?}"))),
        }),
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(ToolChoice::Tool(name.to_owned())),
            None => {
                return Err(TranslateError::invalid(
                    "tool_choice",
                    "expected a string or {\"type\":\"function\",\"function\":{\"name\":...}}",
                ))
            }
        },
    };
    req.parallel_tool_calls = obj.get("parallel_tool_calls").and_then(Value::as_bool);
    req.max_tokens = u32_field(obj, "max_completion_tokens").or_else(|| u32_field(obj, "max_tokens"));
    req.sampling.stop = match obj.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    req.sampling.temperature = obj.get("temperature").and_then(Value::as_f64);
    req.sampling.top_p = obj.get("top_p").and_then(Value::as_f64);
    req.sampling.seed = obj.get("seed").and_then(Value::as_i64);
    req.sampling.presence_penalty = obj.get("presence_penalty").and_then(Value::as_f64);
    req.sampling.frequency_penalty = obj.get("frequency_penalty").and_then(Value::as_f64);
    req.sampling.n = u32_field(obj, "n");
    req.sampling.logprobs = obj.get("logprobs").and_then(Value::as_bool);
    req.response_format = obj.get("response_format").and_then(decode_response_format);
    req.reasoning = str_field(obj, "reasoning_effort")
        .map(|e| Reasoning { effort: Some(e.to_owned()), budget_tokens: None });
    req.user = str_field(obj, "user").map(str::to_owned);
    req.stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    req.include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (k, v) in obj {
        if !MODELLED.contains(&k.as_str()) {
            req.extra.insert(k.clone(), v.clone());
        }
    }
    Ok(req)
}

fn decode_message(req: &mut ChatRequest, i: usize, m: &Value) -> Result<(), TranslateError> {
    let field = |f: &str| format!("messages[{i}].{f}");
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(field("role"), "is required"))?;
    let content = m.get("content").unwrap_or(&Value::Null);
    match role {
        "system" | "developer" => {
            for part in decode_content(content, &field("content"))? {
                if let Part::Text { text, cache_control } = part {
                    req.system.push(SystemPart { text, cache_control });
                }
            }
        }
        "user" => {
            let parts = decode_content(content, &field("content"))?;
            req.messages.push(Message { role: Role::User, parts });
        }
        "assistant" => {
            let mut parts = decode_thinking(m);
            parts.extend(decode_content(content, &field("content"))?);
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                for (j, c) in calls.iter().enumerate() {
                    let name = c.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                        TranslateError::invalid(
                            field(&format!("tool_calls[{j}].function.name")),
                            "is required",
                        )
                    })?;
                    parts.push(Part::ToolCall(ToolCall {
                        id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        name: name.to_owned(),
                        arguments: match c.pointer("/function/arguments") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => String::new(),
                            Some(v) => value_to_tool_arguments(v),
                        },
                        signature: None,
                    }));
                }
            }
            req.messages.push(Message { role: Role::Assistant, parts });
        }
        "tool" => {
            let result = Part::ToolResult(ToolResult {
                call_id: m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: m.get("name").and_then(Value::as_str).map(str::to_owned),
                content: decode_content(content, &field("content"))?,
                is_error: false,
            });
            // Consecutive tool messages become one user turn of results.
            match req.messages.last_mut() {
                Some(last)
                    if last.role == Role::User
                        && !last.parts.is_empty()
                        && last.parts.iter().all(|p| matches!(p, Part::ToolResult(_))) =>
                {
                    last.parts.push(result)
                }
                _ => req.messages.push(Message { role: Role::User, parts: vec![result] }),
            }
        }
        other => return Err(TranslateError::invalid(field("role"), format!("{other:?} is not supported"))),
    }
    Ok(())
}

/// Message `content`: a string, null, or an array of typed parts.
fn decode_content(content: &Value, field: &str) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![text(s)]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                let ty = p.get("type").and_then(Value::as_str).unwrap_or("text");
                match ty {
                    "text" | "input_text" | "refusal" => {
                        let key = if ty == "refusal" { "refusal" } else { "text" };
                        let t = p.get(key).and_then(Value::as_str).unwrap_or_default();
                        out.push(Part::Text {
                            text: t.to_owned(),
                            cache_control: p.get("cache_control").cloned(),
                        });
                    }
                    "image_url" => {
                        let url = p
                            .pointer("/image_url/url")
                            .or_else(|| p.get("image_url"))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                TranslateError::invalid(format!("{field}[{j}].image_url.url"), "is required")
                            })?;
                        out.push(Part::Image(image_from_url(url)));
                    }
                    other => {
                        return Err(TranslateError::Unsupported(format!("{field}[{j}] of type {other:?}")))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(TranslateError::invalid(field, "must be a string, an array or null")),
    }
}

/// `data:<mime>;base64,<data>` becomes inline bytes; anything else is a URL.
pub(crate) fn image_from_url(url: &str) -> ImageSource {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            if let Some(media_type) = meta.strip_suffix(";base64") {
                return ImageSource::Base64 { media_type: media_type.to_owned(), data: data.to_owned() };
            }
        }
    }
    ImageSource::Url(url.to_owned())
}

fn decode_tool(i: usize, t: &Value) -> Result<Tool, TranslateError> {
    let f = t.get("function").unwrap_or(t);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid(format!("tools[{i}].function.name"), "is required"))?;
    Ok(Tool {
        name: name.to_owned(),
        description: f.get("description").and_then(Value::as_str).map(str::to_owned),
        parameters: f.get("parameters").cloned().unwrap_or(Value::Null),
        strict: f.get("strict").and_then(Value::as_bool),
    })
}

fn decode_response_format(v: &Value) -> Option<ResponseFormat> {
    match v.get("type")?.as_str()? {
        "text" => Some(ResponseFormat::Text),
        "json_object" => Some(ResponseFormat::JsonObject),
        "json_schema" => {
            let s = v.get("json_schema")?;
            Some(ResponseFormat::JsonSchema {
                name: s.get("name").and_then(Value::as_str).unwrap_or("response").to_owned(),
                schema: s.get("schema").cloned().unwrap_or(Value::Null),
                strict: s.get("strict").and_then(Value::as_bool),
            })
        }
        _ => None,
    }
}

pub fn encode_request(req: &ChatRequest, opts: &RequestOptions) -> Result<Encoded, TranslateError> {
    if req.web_search.is_some() {
        return Err(super::WebSearch::unsupported("Chat Completions"));
    }
    let mut dropped = Vec::new();
    let mut messages: Vec<MessageOut> = Vec::with_capacity(req.system.len() + req.messages.len());
    messages.extend(
        req.system.iter().map(|s| MessageOut::Text { content: Cow::Borrowed(&s.text), role: "system" }),
    );
    for m in &req.messages {
        match text_message(m) {
            Some(t) => messages.push(t),
            None => encode_message(m, &mut messages),
        }
    }
    let tools = (!req.tools.is_empty()).then(|| {
        let tools = req.tools.iter().map(|t| {
            let mut f = Map::new();
            f.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                f.insert("description".into(), json!(d));
            }
            f.insert("parameters".into(), super::tools::object_schema(&t.parameters));
            if let Some(s) = t.strict {
                f.insert("strict".into(), json!(s));
            }
            json!({"type": "function", "function": f})
        });
        tools.collect()
    });
    let tool_choice = req.tool_choice.as_ref().map(|tc| match tc {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
    });
    let s = &req.sampling;
    if s.top_k.is_some() {
        dropped.push("top_k");
    }
    let response_format = req.response_format.as_ref().map(|rf| match rf {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema { name, schema, strict } => {
            let mut js = json!({"name": name, "schema": schema});
            if let Some(st) = strict {
                js["strict"] = json!(st);
            }
            json!({"type": "json_schema", "json_schema": js})
        }
    });
    let reasoning_effort = req
        .reasoning
        .as_ref()
        .and_then(|r| r.effort.as_deref().or_else(|| r.budget_tokens.map(effort_for_budget)));
    let body = RequestOut {
        model: opts.target_model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls.filter(|_| !req.tools.is_empty()),
        max_tokens: req.max_tokens.filter(|_| opts.legacy_max_tokens),
        max_completion_tokens: req.max_tokens.filter(|_| !opts.legacy_max_tokens),
        stop: (!s.stop.is_empty()).then_some(&s.stop),
        temperature: s.temperature,
        top_p: s.top_p,
        seed: s.seed,
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        n: s.n,
        logprobs: s.logprobs,
        response_format,
        reasoning_effort,
        user: req.user.as_deref(),
        stream: req.stream.then_some(true),
        // Always: accounting needs the usage chunk; the encoder hides it unless the client asked.
        stream_options: req.stream.then_some(StreamOptions { include_usage: true }),
    };
    Ok(Encoded { body: serde_json::to_vec(&body)?, dropped })
}

/// The request body written for an OpenAI Chat upstream, typed (absent members are left out).
#[derive(serde::Serialize)]
struct RequestOut<'a> {
    model: &'a str,
    messages: Vec<MessageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Anthropic/Gemini thinking budgets as an OpenAI `reasoning_effort`.
pub(crate) fn effort_for_budget(budget: u32) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=12288 => "medium",
        _ => "high",
    }
}

/// One message of the request written upstream.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum MessageOut<'a> {
    /// A message of text alone, the everyday one, written without building a `Value` first:
    /// `{"content":…,"role":…}`, the members in the order `serde_json`'s map writes them, so
    /// the bytes are the ones the general path writes (see the tests).
    Text {
        content: Cow<'a, str>,
        role: &'static str,
    },
    Value(Value),
}

/// `m` as a [`MessageOut::Text`] when it is text alone, as the general path would write it:
/// a user message of one text part without `cache_control`, or an assistant message of text
/// parts (joined) that is not empty.
fn text_message(m: &Message) -> Option<MessageOut<'_>> {
    match (m.role, m.parts.as_slice()) {
        (Role::User, [Part::Text { text, cache_control: None }]) => {
            Some(MessageOut::Text { content: Cow::Borrowed(text), role: "user" })
        }
        (Role::Assistant, [Part::Text { text, .. }]) => {
            Some(MessageOut::Text { content: Cow::Borrowed(text), role: "assistant" })
        }
        (Role::Assistant, parts)
            if !parts.is_empty() && parts.iter().all(|p| matches!(p, Part::Text { .. })) =>
        {
            let text = parts.iter().map(|p| if let Part::Text { text, .. } = p { text.as_str() } else { "" });
            Some(MessageOut::Text { content: Cow::Owned(text.collect()), role: "assistant" })
        }
        _ => None,
    }
}

fn encode_message(m: &Message, out: &mut Vec<MessageOut>) {
    let mut values = Vec::new();
    encode_message_values(m, &mut values);
    out.extend(values.into_iter().map(MessageOut::Value));
}

/// `m` as the messages it becomes upstream, through `Value` (every shape).
fn encode_message_values(m: &Message, out: &mut Vec<Value>) {
    match m.role {
        Role::Assistant => out.push(assistant_message(&m.parts, false)),
        Role::User => {
            let mut rest = Vec::new();
            for p in &m.parts {
                match p {
                    Part::ToolResult(r) => {
                        let mut text = String::new();
                        for c in &r.content {
                            match c {
                                Part::Text { text: t, .. } => text.push_str(t),
                                // Tool messages carry text only; images follow in a user message.
                                other => rest.push(other.clone()),
                            }
                        }
                        out.push(json!({"role": "tool", "tool_call_id": r.call_id, "content": text}));
                    }
                    other => rest.push(other.clone()),
                }
            }
            if !rest.is_empty() || m.parts.is_empty() {
                out.push(json!({"role": "user", "content": encode_user_content(&rest)}));
            }
        }
    }
}

fn encode_user_content(parts: &[Part]) -> Value {
    if let [Part::Text { text, cache_control: None }] = parts {
        return json!(text);
    }
    let parts = parts.iter().filter_map(|p| match p {
        Part::Text { text, .. } => Some(json!({"type": "text", "text": text})),
        Part::Image(ImageSource::Url(u)) => Some(json!({"type": "image_url", "image_url": {"url": u}})),
        Part::Image(ImageSource::Base64 { media_type, data }) => Some(json!({
            "type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}
        })),
        _ => None,
    });
    Value::Array(parts.collect())
}

// === Response ===

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    let choice = v.pointer("/choices/0");
    let msg = choice.and_then(|c| c.get("message")).unwrap_or(&Value::Null);
    let mut content = Vec::new();
    content.extend(decode_thinking(msg));
    if let Some(t) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(text(t));
    }
    if let Some(t) = msg.get("refusal").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(text(t));
    }
    for c in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        content.push(Part::ToolCall(ToolCall {
            id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            name: c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            arguments: c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            signature: None,
        }));
    }
    let finish = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .map_or(super::FinishReason::Stop, |r| finish_reason::decode(Format::OpenAiChat, r));
    Ok(ChatResponse {
        id: v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        created: v.get("created").and_then(Value::as_u64).unwrap_or(0),
        content,
        finish,
        usage: v.get("usage").map(decode_usage).unwrap_or_default(),
    })
}

/// `usage` of a response or of the final stream chunk.
pub(crate) fn decode_usage(u: &Value) -> Usage {
    // Not an object: no counts.
    WireUsage::deserialize(u).map(|w| w.usage()).unwrap_or_default()
}

/// `usage`, typed (the stream decoder reads it from the chunk, [`decode_usage`] from a `Value`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct WireUsage {
    prompt_tokens: U64,
    completion_tokens: U64,
    prompt_tokens_details: Obj<PromptDetails>,
    completion_tokens_details: Obj<CompletionDetails>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: U64,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct CompletionDetails {
    reasoning_tokens: U64,
}

// === impl WireUsage ===

impl WireUsage {
    /// `usage` read by the stream decoder's fast path (`None`: left to `serde_json`, see
    /// `scan`): integers or `null` in the counted fields, objects or `null` for the details.
    pub(crate) fn scan(p: &mut Scan) -> Option<WireUsage> {
        let mut u = WireUsage::default();
        let mut seen = Seen::default();
        p.members(|key, p| {
            match key {
                "prompt_tokens" => u.prompt_tokens = seen.once(0).and_then(|_| p.u64_or_null())?,
                "completion_tokens" => u.completion_tokens = seen.once(1).and_then(|_| p.u64_or_null())?,
                "prompt_tokens_details" => {
                    seen.once(2)?;
                    u.prompt_tokens_details =
                        Obj(scan_details(p, "cached_tokens")?.map(|n| PromptDetails { cached_tokens: n }));
                }
                "completion_tokens_details" => {
                    seen.once(3)?;
                    u.completion_tokens_details = Obj(scan_details(p, "reasoning_tokens")?
                        .map(|n| CompletionDetails { reasoning_tokens: n }));
                }
                _ => p.skip()?,
            }
            Some(())
        })?;
        Some(u)
    }

    pub(crate) fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens.or_zero(),
            output_tokens: self.completion_tokens.or_zero(),
            cache_read_tokens: self.prompt_tokens_details.as_ref().map_or(0, |d| d.cached_tokens.or_zero()),
            cache_write_tokens: 0,
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .map_or(0, |d| d.reasoning_tokens.or_zero()),
        }
    }
}

/// A `*_tokens_details` object (`None` inside `Some` for `null`) with its one counted field.
fn scan_details(p: &mut Scan, field: &str) -> Option<Option<U64>> {
    p.nullable(|p| {
        let mut n = U64(None);
        let mut seen = false;
        p.members(|key, p| {
            if key == field {
                if std::mem::replace(&mut seen, true) {
                    return None;
                }
                n = p.u64_or_null()?;
            } else {
                p.skip()?;
            }
            Some(())
        })?;
        Some(n)
    })
}

/// `usage` as OpenAI writes it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(crate) struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetailsOut,
    completion_tokens_details: CompletionDetailsOut,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
struct PromptDetailsOut {
    cached_tokens: u64,
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
struct CompletionDetailsOut {
    reasoning_tokens: u64,
}

pub(crate) fn encode_usage(u: &Usage) -> UsageOut {
    UsageOut {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.input_tokens.saturating_add(u.output_tokens),
        prompt_tokens_details: PromptDetailsOut { cached_tokens: u.cache_read_tokens },
        completion_tokens_details: CompletionDetailsOut { reasoning_tokens: u.reasoning_tokens },
    }
}

/// An assistant message's reasoning: `thinking_blocks` (signed Anthropic thinking carried by
/// OpenAI-shaped clients, the LiteLLM convention) when present, else `reasoning_content`.
fn decode_thinking(msg: &Value) -> Vec<Part> {
    let s = |b: &Value, k: &str| b.get(k).and_then(Value::as_str).map(str::to_owned);
    let blocks = msg.get("thinking_blocks").and_then(Value::as_array).filter(|b| !b.is_empty());
    if let Some(blocks) = blocks {
        return blocks
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str)? {
                "thinking" => Some(Part::Thinking {
                    text: s(b, "thinking").unwrap_or_default(),
                    signature: s(b, "signature").filter(|s| !s.is_empty()),
                }),
                "redacted_thinking" => Some(Part::RedactedThinking { data: s(b, "data")? }),
                _ => None,
            })
            .collect();
    }
    match msg.get("reasoning_content").and_then(Value::as_str) {
        Some(r) if !r.is_empty() => vec![Part::Thinking { text: r.to_owned(), signature: None }],
        _ => Vec::new(),
    }
}

/// An assistant message: text parts joined into `content` (null when there are only tool
/// calls), thinking into `reasoning_content`, tool calls with `""` arguments sent as `"{}"`.
/// For a client (`to_client`), signed or redacted thinking is also kept in `thinking_blocks`
/// so it can come back on the next turn; upstreams never get that field.
fn assistant_message(parts: &[Part], to_client: bool) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for p in parts {
        match p {
            Part::Text { text: t, .. } => text.push_str(t),
            Part::Thinking { text: t, .. } => thinking.push_str(t),
            Part::ToolCall(c) => {
                let args = if c.arguments.is_empty() { "{}" } else { c.arguments.as_str() };
                calls.push(json!({
                    "id": c.id, "type": "function", "function": {"name": c.name, "arguments": args},
                }));
            }
            _ => {}
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) };
    msg.insert("content".into(), content);
    if !thinking.is_empty() {
        msg.insert("reasoning_content".into(), json!(thinking));
    }
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    let signed =
        |p: &Part| matches!(p, Part::Thinking { signature: Some(_), .. } | Part::RedactedThinking { .. });
    if to_client && parts.iter().any(signed) {
        let blocks = parts.iter().filter_map(|p| match p {
            Part::Thinking { text, signature } => {
                Some(json!({"type": "thinking", "thinking": text, "signature": signature.as_deref().unwrap_or("")}))
            }
            Part::RedactedThinking { data } => Some(json!({"type": "redacted_thinking", "data": data})),
            _ => None,
        });
        msg.insert("thinking_blocks".into(), Value::Array(blocks.collect()));
    }
    Value::Object(msg)
}

pub fn encode_response(resp: &ChatResponse, opts: &ResponseOptions) -> Vec<u8> {
    let msg = assistant_message(&resp.content, true);
    let v = json!({
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": opts.model,
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": null,
            "finish_reason": finish_reason::encode(Format::OpenAiChat, resp.finish),
        }],
        "usage": encode_usage(&resp.usage),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

// === Error ===

/// `{"error":{"message","type","code"}}` (also accepts a bare string body). The kind comes
/// from the status, refined by the type/code.
pub fn decode_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let (kind, message, _) = super::upstream_error::decode(super::Format::OpenAiChat, status, None, body);
    (kind, message)
}

pub fn encode_error(kind: ErrorKind, message: &str) -> Vec<u8> {
    serde_json::to_vec(&error_value(kind, message)).unwrap_or_default()
}

pub(crate) fn error_value(kind: ErrorKind, message: &str) -> Value {
    let (t, code) = error_type_code(kind);
    json!({"error": {"message": message, "type": t, "code": code}})
}

/// `(type, code)` of the OpenAI error envelope for `kind` (Chat and Responses share it).
pub(crate) fn error_type_code(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::PermissionDenied => ("permission_error", Some("model_not_allowed")),
        ErrorKind::NotFound => ("invalid_request_error", Some("model_not_found")),
        ErrorKind::RequestTooLarge => ("invalid_request_error", Some("request_too_large")),
        ErrorKind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::BudgetExceeded => ("insufficient_quota", Some("budget_exceeded")),
        ErrorKind::Overloaded => ("server_error", Some("overloaded")),
        ErrorKind::UpstreamTimeout => ("server_error", Some("upstream_timeout")),
        ErrorKind::UpstreamError => ("server_error", Some("upstream_error")),
        ErrorKind::Internal => ("server_error", None),
    }
}

// === Helpers ===

fn text(s: &str) -> Part {
    Part::Text { text: s.to_owned(), cache_control: None }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn u32_field(obj: &Map<String, Value>, key: &str) -> Option<u32> {
    obj.get(key).and_then(Value::as_u64).map(|n| n.min(u32::MAX as u64) as u32)
}

#[cfg(test)]
#[path = "openai_chat_tests.rs"]
mod tests;
