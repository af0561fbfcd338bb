//! OpenAI Responses API request bodies <-> IR (both directions). Pure: no I/O.

use serde_json::{json, Map, Value};

use super::super::{
    ChatRequest, Encoded, ImageSource, Message, Part, Reasoning, RequestOptions, ResponseFormat, Role,
    SystemPart, Tool, ToolCall, ToolChoice, ToolResult, TranslateError, WebSearch,
};
use super::{image_from_url, str_field, text_part, SIGNATURE_PREFIX};

// === Request: wire -> IR ===

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let m = super::super::json_object(body)?;
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
            "tools" => (req.tools, req.web_search) = decode_tools(&val)?,
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

fn image_to_url(img: &ImageSource) -> String {
    match img {
        ImageSource::Url(u) => u.clone(),
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
    }
}

/// The request's function tools, and the web search it asks for (a built-in tool that maps to
/// the target's own search).
fn decode_tools(v: &Value) -> Result<(Vec<Tool>, Option<WebSearch>), TranslateError> {
    let Some(arr) = v.as_array() else {
        return match v {
            Value::Null => Ok((Vec::new(), None)),
            _ => Err(TranslateError::invalid("tools", "expected an array")),
        };
    };
    let mut tools = Vec::with_capacity(arr.len());
    let mut search = None;
    for t in arr {
        match str_field(t, "type") {
            "web_search"
            | "web_search_preview"
            | "web_search_2025_08_26"
            | "web_search_preview_2025_03_11" => {
                let allowed = t.pointer("/filters/allowed_domains").and_then(Value::as_array);
                search = Some(WebSearch {
                    allowed_domains: allowed
                        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    user_location: t.get("user_location").filter(|l| l.is_object()).cloned(),
                });
            }
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
    Ok((tools, search))
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
    if !req.tools.is_empty() || req.web_search.is_some() {
        let mut tools: Vec<Value> = req
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
        if let Some(ws) = &req.web_search {
            let mut t = json!({"type": "web_search"});
            if !ws.allowed_domains.is_empty() {
                t["filters"] = json!({"allowed_domains": ws.allowed_domains});
            }
            if let Some(l) = &ws.user_location {
                t["user_location"] = l.clone();
            }
            tools.push(t);
        }
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
            // With `store: false` this is the only way to get reasoning back for the next turn.
            body.insert("include".into(), json!(["reasoning.encrypted_content"]));
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
                // Only this API's own reasoning goes back (see `SIGNATURE_PREFIX`): reasoning
                // without its token, or another provider's, cannot be replayed.
                Part::Thinking { text, signature } => {
                    let Some(sig) = signature.as_deref().and_then(|s| s.strip_prefix(SIGNATURE_PREFIX))
                    else {
                        continue;
                    };
                    flush(&mut content, &mut items);
                    let summary: Vec<Value> = if text.is_empty() {
                        Vec::new()
                    } else {
                        vec![json!({"type": "summary_text", "text": text})]
                    };
                    items.push(json!({"type": "reasoning", "summary": summary, "encrypted_content": sig}));
                }
                Part::RedactedThinking { .. } => {}
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
