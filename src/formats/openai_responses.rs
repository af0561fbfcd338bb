//! OpenAI Responses API wire format <-> IR: request and response bodies, errors, and (in
//! `openai_responses_stream.rs`) the `response.*` SSE event machine in both directions.
//! Pure: no I/O, no config, no auth. The gateway is stateless, so `previous_response_id`,
//! `conversation` and `item_reference` are refused rather than half-honoured.

use serde_json::{json, Map, Value};

use super::finish_reason;
use super::{
    ChatRequest, ChatResponse, Encoded, ErrorKind, FinishReason, Format, ImageSource, Message, Part,
    Reasoning, RequestOptions, ResponseFormat, ResponseOptions, Role, SystemPart, Tool, ToolCall, ToolChoice,
    ToolResult, TranslateError, Usage,
};

#[path = "openai_responses_stream.rs"]
mod stream;

pub use stream::{check_stream_grammar, StreamDecoder, StreamEncoder};

// === Request: wire -> IR ===

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    let Value::Object(m) = v else {
        return Err(TranslateError::invalid("body", "expected a JSON object"));
    };
    let mut req = ChatRequest::default();
    for (k, val) in m {
        match k.as_str() {
            "model" => req.model = val.as_str().unwrap_or_default().to_owned(),
            "instructions" => match val {
                Value::Null => {}
                Value::String(s) => req.system.push(system_part(s)),
                _ => return Err(TranslateError::invalid("instructions", "expected a string")),
            },
            "input" => decode_input(val, &mut req)?,
            "tools" => req.tools = decode_tools(&val)?,
            "tool_choice" => req.tool_choice = decode_tool_choice(&val)?,
            "parallel_tool_calls" => req.parallel_tool_calls = val.as_bool(),
            "max_output_tokens" => req.max_tokens = as_u32(&val, "max_output_tokens")?,
            "temperature" => req.sampling.temperature = val.as_f64(),
            "top_p" => req.sampling.top_p = val.as_f64(),
            "stream" => req.stream = val.as_bool().unwrap_or(false),
            "user" | "safety_identifier" => {
                if let Some(u) = val.as_str() {
                    req.user = Some(u.to_owned());
                }
            }
            "reasoning" => {
                if let Some(e) = val.get("effort").and_then(Value::as_str) {
                    req.reasoning = Some(Reasoning { effort: Some(e.to_owned()), budget_tokens: None });
                }
            }
            "text" => req.response_format = decode_text_format(&val)?,
            "previous_response_id" | "conversation" if !val.is_null() => {
                return Err(TranslateError::Unsupported(format!(
                    "`{k}` (the gateway is stateless and keeps no stored responses; \
                     resend the whole conversation in `input` instead)"
                )))
            }
            "previous_response_id" | "conversation" | "store" => {}
            _ => {
                req.extra.insert(k, val);
            }
        }
    }
    Ok(req)
}

fn system_part(text: String) -> SystemPart {
    SystemPart { text, cache_control: None }
}

fn as_u32(v: &Value, field: &str) -> Result<Option<u32>, TranslateError> {
    match v {
        Value::Null => Ok(None),
        _ => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| TranslateError::invalid(field, "expected a non-negative integer")),
    }
}

fn text_part(text: impl Into<String>) -> Part {
    Part::Text { text: text.into(), cache_control: None }
}

/// Append `part` to the last message when it has `role`, else start a new message.
fn push_part(messages: &mut Vec<Message>, role: Role, part: Part) {
    match messages.last_mut() {
        Some(m) if m.role == role => m.parts.push(part),
        _ => messages.push(Message { role, parts: vec![part] }),
    }
}

fn decode_input(input: Value, req: &mut ChatRequest) -> Result<(), TranslateError> {
    match input {
        Value::String(s) => {
            req.messages.push(Message { role: Role::User, parts: vec![text_part(s)] });
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                decode_item(item, i, req)?;
            }
            Ok(())
        }
        Value::Null => Ok(()),
        _ => Err(TranslateError::invalid("input", "expected a string or an array of items")),
    }
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn decode_item(item: Value, i: usize, req: &mut ChatRequest) -> Result<(), TranslateError> {
    let field = format!("input[{i}]");
    let ty = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match ty {
        "message" => {
            let role = str_field(&item, "role");
            let parts = decode_message_content(item.get("content"), &field)?;
            match role {
                "system" | "developer" => {
                    let text = parts
                        .into_iter()
                        .filter_map(|p| match p {
                            Part::Text { text, .. } => Some(text),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    req.system.push(system_part(text));
                }
                "user" => parts.into_iter().for_each(|p| push_part(&mut req.messages, Role::User, p)),
                "assistant" => {
                    parts.into_iter().for_each(|p| push_part(&mut req.messages, Role::Assistant, p))
                }
                other => {
                    return Err(TranslateError::invalid(
                        format!("{field}.role"),
                        format!("unknown role `{other}`"),
                    ))
                }
            }
        }
        "function_call" => {
            let arguments = str_field(&item, "arguments").to_owned();
            let call = ToolCall {
                id: str_field(&item, "call_id").to_owned(),
                name: str_field(&item, "name").to_owned(),
                arguments,
                signature: None,
            };
            if call.id.is_empty() || call.name.is_empty() {
                return Err(TranslateError::invalid(field, "function_call needs `call_id` and `name`"));
            }
            push_part(&mut req.messages, Role::Assistant, Part::ToolCall(call));
        }
        "function_call_output" => {
            let call_id = str_field(&item, "call_id").to_owned();
            let content = match item.get("output") {
                Some(Value::String(s)) => vec![text_part(s.clone())],
                Some(Value::Array(_)) => decode_message_content(item.get("output"), &field)?,
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![text_part(other.to_string())],
            };
            let result = ToolResult { call_id, name: None, content, is_error: false };
            push_part(&mut req.messages, Role::User, Part::ToolResult(result));
        }
        "reasoning" => {
            let text = item
                .get("summary")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|s| str_field(s, "text")).collect::<Vec<_>>().join("\n\n"))
                .unwrap_or_default();
            let signature = item.get("encrypted_content").and_then(Value::as_str).map(str::to_owned);
            push_part(&mut req.messages, Role::Assistant, Part::Thinking { text, signature });
        }
        "item_reference" => {
            return Err(TranslateError::Unsupported(format!(
                "{field}: `item_reference` (the gateway is stateless; send the item itself)"
            )))
        }
        other => return Err(TranslateError::Unsupported(format!("{field}: input item type `{other}`"))),
    }
    Ok(())
}

fn decode_message_content(c: Option<&Value>, field: &str) -> Result<Vec<Part>, TranslateError> {
    match c {
        Some(Value::String(s)) => Ok(vec![text_part(s.clone())]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match str_field(p, "type") {
                    "input_text" | "output_text" | "text" => out.push(text_part(str_field(p, "text"))),
                    "refusal" => out.push(text_part(str_field(p, "refusal"))),
                    "input_image" => {
                        let url =
                            p.get("image_url").and_then(|u| u.as_str().or_else(|| u.get("url")?.as_str()));
                        match url {
                            Some(u) => out.push(Part::Image(image_from_url(u))),
                            None => {
                                return Err(TranslateError::Unsupported(format!(
                                    "{field}: input_image by `file_id` (send `image_url`)"
                                )))
                            }
                        }
                    }
                    other => {
                        return Err(TranslateError::Unsupported(format!(
                            "{field}: content part type `{other}`"
                        )))
                    }
                }
            }
            Ok(out)
        }
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => {
            Err(TranslateError::invalid(format!("{field}.content"), "expected a string or an array of parts"))
        }
    }
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

fn image_to_url(img: &ImageSource) -> String {
    match img {
        ImageSource::Url(u) => u.clone(),
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
    }
}

fn decode_tools(v: &Value) -> Result<Vec<Tool>, TranslateError> {
    let Some(arr) = v.as_array() else {
        return match v {
            Value::Null => Ok(Vec::new()),
            _ => Err(TranslateError::invalid("tools", "expected an array")),
        };
    };
    let mut tools = Vec::with_capacity(arr.len());
    for t in arr {
        match str_field(t, "type") {
            "function" => tools.push(Tool {
                name: str_field(t, "name").to_owned(),
                description: t.get("description").and_then(Value::as_str).map(str::to_owned),
                parameters: t.get("parameters").cloned().unwrap_or(Value::Null),
                strict: t.get("strict").and_then(Value::as_bool),
            }),
            other => {
                return Err(TranslateError::Unsupported(format!(
                    "built-in tool `{other}` (only `function` tools can be translated to another provider)"
                )))
            }
        }
    }
    Ok(tools)
}

fn decode_tool_choice(v: &Value) -> Result<Option<ToolChoice>, TranslateError> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            other => return Err(TranslateError::invalid("tool_choice", format!("unknown value `{other}`"))),
        },
        Value::Object(_) if str_field(v, "type") == "function" => {
            Some(ToolChoice::Tool(str_field(v, "name").to_owned()))
        }
        _ => return Err(TranslateError::Unsupported(format!("tool_choice type `{}`", str_field(v, "type")))),
    })
}

fn decode_text_format(v: &Value) -> Result<Option<ResponseFormat>, TranslateError> {
    let Some(f) = v.get("format") else {
        return Ok(None);
    };
    Ok(match str_field(f, "type") {
        "text" => Some(ResponseFormat::Text),
        "json_object" => Some(ResponseFormat::JsonObject),
        "json_schema" => Some(ResponseFormat::JsonSchema {
            name: str_field(f, "name").to_owned(),
            schema: f.get("schema").cloned().unwrap_or(Value::Null),
            strict: f.get("strict").and_then(Value::as_bool),
        }),
        "" => None,
        other => return Err(TranslateError::invalid("text.format.type", format!("unknown value `{other}`"))),
    })
}

// === Request: IR -> wire ===

pub fn encode_request(req: &ChatRequest, opts: &RequestOptions) -> Result<Encoded, TranslateError> {
    let mut body = Map::new();
    let mut dropped = Vec::new();
    body.insert("model".into(), json!(opts.target_model));
    if !req.system.is_empty() {
        let text: Vec<&str> = req.system.iter().map(|s| s.text.as_str()).collect();
        body.insert("instructions".into(), json!(text.join("\n\n")));
    }
    body.insert("input".into(), Value::Array(encode_input(&req.messages)));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut o = json!({"type": "function", "name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    o["description"] = json!(d);
                }
                if let Some(s) = t.strict {
                    o["strict"] = json!(s);
                }
                o
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = &req.tool_choice {
        let v = match tc {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(n) => json!({"type": "function", "name": n}),
        };
        body.insert("tool_choice".into(), v);
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(n) = req.max_tokens {
        body.insert("max_output_tokens".into(), json!(n));
    }
    let s = &req.sampling;
    if let Some(t) = s.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = s.top_p {
        body.insert("top_p".into(), json!(p));
    }
    for (present, name) in [
        (s.top_k.is_some(), "top_k"),
        (!s.stop.is_empty(), "stop"),
        (s.seed.is_some(), "seed"),
        (s.presence_penalty.is_some(), "presence_penalty"),
        (s.frequency_penalty.is_some(), "frequency_penalty"),
        (s.n.is_some_and(|n| n > 1), "n"),
        (s.logprobs == Some(true), "logprobs"),
    ] {
        if present {
            dropped.push(name);
        }
    }
    if let Some(r) = &req.reasoning {
        let effort = r.effort.clone().or_else(|| {
            r.budget_tokens.map(|b| {
                match b {
                    0..=2048 => "low",
                    2049..=12288 => "medium",
                    _ => "high",
                }
                .to_owned()
            })
        });
        if let Some(e) = effort {
            body.insert("reasoning".into(), json!({"effort": e}));
        }
    }
    if let Some(f) = &req.response_format {
        let format = match f {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema { name, schema, strict } => {
                let mut o = json!({"type": "json_schema", "name": name, "schema": schema});
                if let Some(s) = strict {
                    o["strict"] = json!(s);
                }
                o
            }
        };
        body.insert("text".into(), json!({ "format": format }));
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), json!(u));
    }
    body.insert("stream".into(), json!(req.stream));
    // Stateless: never ask the upstream to keep our traffic.
    body.insert("store".into(), json!(false));
    Ok(Encoded { body: serde_json::to_vec(&Value::Object(body))?, dropped })
}

fn encode_input(messages: &[Message]) -> Vec<Value> {
    let mut items = Vec::new();
    for m in messages {
        let mut content: Vec<Value> = Vec::new();
        let flush = |content: &mut Vec<Value>, items: &mut Vec<Value>| {
            if !content.is_empty() {
                let role = if m.role == Role::User { "user" } else { "assistant" };
                items.push(json!({"type": "message", "role": role, "content": std::mem::take(content)}));
            }
        };
        for p in &m.parts {
            match p {
                Part::Text { text, .. } => {
                    let ty = if m.role == Role::User { "input_text" } else { "output_text" };
                    content.push(json!({"type": ty, "text": text}));
                }
                Part::Image(img) => {
                    content.push(json!({"type": "input_image", "image_url": image_to_url(img)}))
                }
                Part::ToolCall(c) => {
                    flush(&mut content, &mut items);
                    items.push(json!({"type": "function_call", "call_id": c.id, "name": c.name,
                        "arguments": if c.arguments.trim().is_empty() { "{}" } else { &c.arguments }}));
                }
                Part::ToolResult(r) => {
                    flush(&mut content, &mut items);
                    items.push(json!({"type": "function_call_output", "call_id": r.call_id,
                        "output": tool_output(&r.content)}));
                }
                Part::Thinking { text, signature: Some(sig) } => {
                    flush(&mut content, &mut items);
                    let summary: Vec<Value> = if text.is_empty() {
                        Vec::new()
                    } else {
                        vec![json!({"type": "summary_text", "text": text})]
                    };
                    items.push(json!({"type": "reasoning", "summary": summary, "encrypted_content": sig}));
                }
                // Reasoning without its opaque token cannot be replayed to the Responses API.
                Part::Thinking { signature: None, .. } | Part::RedactedThinking { .. } => {}
            }
        }
        flush(&mut content, &mut items);
    }
    items
}

/// A tool result as `function_call_output.output`: a string, or typed parts when it has images.
fn tool_output(content: &[Part]) -> Value {
    if content.iter().all(|p| matches!(p, Part::Text { .. })) {
        let text: String = content
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        return json!(text);
    }
    let parts: Vec<Value> = content
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(json!({"type": "input_text", "text": text})),
            Part::Image(img) => Some(json!({"type": "input_image", "image_url": image_to_url(img)})),
            _ => None,
        })
        .collect();
    Value::Array(parts)
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
                let signature = item.get("encrypted_content").and_then(Value::as_str).map(str::to_owned);
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

/// Our response ids always carry the `resp_` prefix SDKs expect.
pub(crate) fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_owned()
    } else if id.is_empty() {
        "resp_gateway".to_owned()
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
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

// === Errors ===

pub fn decode_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error").unwrap_or(&v);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let kind = kind_from_code(str_field(err, "code"), str_field(err, "type"))
        .unwrap_or_else(|| kind_for_status(status));
    (kind, message)
}

pub(crate) fn kind_from_code(code: &str, ty: &str) -> Option<ErrorKind> {
    Some(match (code, ty) {
        ("invalid_api_key", _) | (_, "authentication_error") => ErrorKind::Authentication,
        ("rate_limit_exceeded", _) | (_, "rate_limit_error") => ErrorKind::RateLimited,
        ("insufficient_quota", _) | (_, "insufficient_quota") => ErrorKind::BudgetExceeded,
        ("model_not_found", _) | (_, "not_found_error") => ErrorKind::NotFound,
        ("context_length_exceeded", _) | (_, "invalid_request_error") => ErrorKind::InvalidRequest,
        (_, "permission_error") => ErrorKind::PermissionDenied,
        ("server_is_overloaded" | "overloaded", _) => ErrorKind::Overloaded,
        ("server_error", _) | (_, "server_error") => ErrorKind::UpstreamError,
        _ => return None,
    })
}

fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 422 => ErrorKind::InvalidRequest,
        401 => ErrorKind::Authentication,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::RequestTooLarge,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        504 => ErrorKind::UpstreamTimeout,
        _ => ErrorKind::UpstreamError,
    }
}

/// `(type, code)` of the OpenAI error envelope for `kind`.
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

pub fn encode_error(kind: ErrorKind, message: &str) -> Vec<u8> {
    let (ty, code) = error_type_code(kind);
    let v = json!({"error": {"message": message, "type": ty, "param": null, "code": code}});
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
#[path = "openai_responses_tests.rs"]
mod tests;
