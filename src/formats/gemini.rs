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
//! `ToolCall::signature`; a thought part's on `Part::Thinking`; a plain text part's becomes an
//! empty `Part::Thinking { signature }` right after the text (re-attached on encode).

use serde_json::{json, Map, Value};

use super::finish_reason;
use super::tools::{tool_arguments_to_object, value_to_tool_arguments};
use super::{
    ChatRequest, ChatResponse, Encoded, ErrorKind, FinishReason, Format, ImageSource, Message, Part,
    Reasoning, RequestOptions, ResponseFormat, ResponseOptions, Role, SystemPart, Tool, ToolCall, ToolChoice,
    ToolResult, TranslateError, Usage,
};

#[path = "gemini_schema.rs"]
mod schema;
#[path = "gemini_stream.rs"]
mod stream;

pub use schema::sanitize_schema;
pub use stream::{check_stream_grammar, StreamDecoder, StreamEncoder};

/// Google's documented placeholder for a function call that has no real thought signature
/// (history produced by another model); without one Gemini 3 rejects the turn.
pub const DUMMY_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

// === Request: wire -> IR ===

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    let Value::Object(m) = v else {
        return Err(TranslateError::invalid("body", "expected a JSON object"));
    };
    let mut req = ChatRequest::default();
    for (k, val) in m {
        match k.as_str() {
            "contents" => decode_contents(&val, &mut req)?,
            "systemInstruction" | "system_instruction" => {
                let text = parts_of(&val)
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n");
                req.system.push(SystemPart { text, cache_control: None });
            }
            "tools" => decode_tools(&val, &mut req)?,
            "toolConfig" | "tool_config" => decode_tool_config(&val, &mut req),
            "generationConfig" | "generation_config" => decode_generation_config(&val, &mut req),
            "model" => {}
            _ => {
                req.extra.insert(k, val);
            }
        }
    }
    Ok(req)
}

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

fn decode_contents(v: &Value, req: &mut ChatRequest) -> Result<(), TranslateError> {
    let Some(contents) = v.as_array() else {
        return Err(TranslateError::invalid("contents", "expected an array"));
    };
    let mut n_calls = 0usize;
    // (id, name, answered) of every call seen so far.
    let mut calls: Vec<(String, String, bool)> = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        let role = match str_of(c, "role") {
            "model" => Role::Assistant,
            "user" | "function" | "" => Role::User,
            other => {
                return Err(TranslateError::invalid(
                    format!("contents[{i}].role"),
                    format!("unknown role `{other}`"),
                ))
            }
        };
        let mut parts = Vec::new();
        for (j, p) in parts_of(c).iter().enumerate() {
            let field = format!("contents[{i}].parts[{j}]");
            let signature = p.get("thoughtSignature").and_then(Value::as_str).map(str::to_owned);
            if let Some(fc) = p.get("functionCall") {
                let name = str_of(fc, "name").to_owned();
                let id = match fc.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => id.to_owned(),
                    _ => synth_call_id(n_calls, &name),
                };
                n_calls += 1;
                calls.push((id.clone(), name.clone(), false));
                let arguments = fc.get("args").map_or_else(|| "{}".into(), value_to_tool_arguments);
                parts.push(Part::ToolCall(ToolCall { id, name, arguments, signature }));
            } else if let Some(fr) = p.get("functionResponse") {
                let name = str_of(fr, "name").to_owned();
                let call_id = match fr.get("id").and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => {
                        if let Some(c) = calls.iter_mut().find(|c| c.0 == id) {
                            c.2 = true;
                        }
                        id.to_owned()
                    }
                    _ => match calls.iter_mut().find(|c| !c.2 && c.1 == name) {
                        Some(c) => {
                            c.2 = true;
                            c.0.clone()
                        }
                        None => synth_call_id(n_calls, &name),
                    },
                };
                let (text, is_error) = function_response_text(fr.get("response"));
                parts.push(Part::ToolResult(ToolResult {
                    call_id,
                    name: Some(name),
                    content: vec![text_part(text)],
                    is_error,
                }));
            } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    parts.push(Part::Thinking { text: t.to_owned(), signature });
                } else {
                    parts.push(text_part(t));
                    if signature.is_some() {
                        parts.push(Part::Thinking { text: String::new(), signature });
                    }
                }
            } else if let Some(d) = p.get("inlineData").or_else(|| p.get("inline_data")) {
                let mime = d
                    .get("mimeType")
                    .or_else(|| d.get("mime_type"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !mime.starts_with("image/") {
                    return Err(TranslateError::Unsupported(format!(
                        "{field}: inlineData of type `{mime}` (only images translate)"
                    )));
                }
                parts.push(Part::Image(ImageSource::Base64 {
                    media_type: mime.to_owned(),
                    data: str_of(d, "data").to_owned(),
                }));
            } else if let Some(d) = p.get("fileData").or_else(|| p.get("file_data")) {
                let uri = d
                    .get("fileUri")
                    .or_else(|| d.get("file_uri"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                parts.push(Part::Image(ImageSource::Url(uri.to_owned())));
            } else if let Some(sig) = signature {
                // A signature-only part: keep it as an empty thought.
                parts.push(Part::Thinking { text: String::new(), signature: Some(sig) });
            } else {
                let kind = p.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
                return Err(TranslateError::Unsupported(format!("{field}: part `{kind}`")));
            }
        }
        if parts.is_empty() {
            continue;
        }
        match req.messages.last_mut() {
            Some(m) if m.role == role => m.parts.extend(parts),
            _ => req.messages.push(Message { role, parts }),
        }
    }
    Ok(())
}

/// A `functionResponse.response` as tool-result text: `{"output": s}` / `{"result": s}` /
/// `{"content": s}` become `s`, `{"error": e}` is an error result, anything else is its JSON.
fn function_response_text(r: Option<&Value>) -> (String, bool) {
    let Some(r) = r else {
        return (String::new(), false);
    };
    if let Some(o) = r.as_object() {
        if o.len() == 1 {
            let (k, v) = o.iter().next().expect("one entry");
            let text = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            match k.as_str() {
                "output" | "result" | "content" if v.is_string() => return (text, false),
                "error" => return (text, true),
                _ => {}
            }
        }
    }
    (r.to_string(), false)
}

fn decode_tools(v: &Value, req: &mut ChatRequest) -> Result<(), TranslateError> {
    let Some(arr) = v.as_array() else {
        return Err(TranslateError::invalid("tools", "expected an array"));
    };
    for t in arr {
        let Some(obj) = t.as_object() else {
            return Err(TranslateError::invalid("tools", "expected objects"));
        };
        for (k, decls) in obj {
            match k.as_str() {
                "functionDeclarations" | "function_declarations" => {
                    for d in decls.as_array().map_or(&[][..], Vec::as_slice) {
                        let parameters = d
                            .get("parametersJsonSchema")
                            .or_else(|| d.get("parameters"))
                            .cloned()
                            .unwrap_or(Value::Null);
                        req.tools.push(Tool {
                            name: str_of(d, "name").to_owned(),
                            description: d.get("description").and_then(Value::as_str).map(str::to_owned),
                            parameters: lower_types(parameters),
                            strict: None,
                        });
                    }
                }
                other => {
                    return Err(TranslateError::Unsupported(format!(
                        "built-in tool `{other}` (only functionDeclarations translate to another provider)"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Gemini schemas may spell types in upper case (`"OBJECT"`); JSON Schema wants lower case.
fn lower_types(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "type" {
                        if let Value::String(s) = x {
                            *s = s.to_ascii_lowercase();
                            continue;
                        }
                    }
                    walk(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn decode_tool_config(v: &Value, req: &mut ChatRequest) {
    let Some(fc) = v.get("functionCallingConfig").or_else(|| v.get("function_calling_config")) else {
        return;
    };
    let allowed: Vec<&str> = fc
        .get("allowedFunctionNames")
        .or_else(|| fc.get("allowed_function_names"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    req.tool_choice = match str_of(fc, "mode").to_ascii_uppercase().as_str() {
        "AUTO" | "VALIDATED" => Some(ToolChoice::Auto),
        "NONE" => Some(ToolChoice::None),
        "ANY" if allowed.len() == 1 => Some(ToolChoice::Tool(allowed[0].to_owned())),
        "ANY" => Some(ToolChoice::Required),
        _ => None,
    };
}

fn decode_generation_config(v: &Value, req: &mut ChatRequest) {
    let Some(m) = v.as_object() else {
        return;
    };
    let u32_of = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
    let mut mime = None;
    let mut schema = None;
    for (k, x) in m {
        let s = &mut req.sampling;
        match k.as_str() {
            "temperature" => s.temperature = x.as_f64(),
            "topP" | "top_p" => s.top_p = x.as_f64(),
            "topK" | "top_k" => s.top_k = u32_of(x),
            "maxOutputTokens" | "max_output_tokens" => req.max_tokens = u32_of(x),
            "stopSequences" | "stop_sequences" => {
                s.stop = x
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default()
            }
            "candidateCount" | "candidate_count" => s.n = u32_of(x),
            "seed" => s.seed = x.as_i64(),
            "presencePenalty" | "presence_penalty" => s.presence_penalty = x.as_f64(),
            "frequencyPenalty" | "frequency_penalty" => s.frequency_penalty = x.as_f64(),
            "responseLogprobs" | "response_logprobs" => s.logprobs = x.as_bool(),
            "responseMimeType" | "response_mime_type" => mime = x.as_str().map(str::to_owned),
            "responseSchema" | "response_schema" | "responseJsonSchema" | "response_json_schema" => {
                schema = Some(lower_types(x.clone()))
            }
            "thinkingConfig" | "thinking_config" => {
                let budget = x
                    .get("thinkingBudget")
                    .or_else(|| x.get("thinking_budget"))
                    .and_then(Value::as_i64)
                    .and_then(|b| u32::try_from(b).ok());
                let level = x
                    .get("thinkingLevel")
                    .or_else(|| x.get("thinking_level"))
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase);
                if budget.is_some() || level.is_some() {
                    req.reasoning = Some(Reasoning { effort: level, budget_tokens: budget });
                }
            }
            _ => {}
        }
    }
    req.response_format = match (mime.as_deref(), schema) {
        (_, Some(schema)) => {
            Some(ResponseFormat::JsonSchema { name: "response".into(), schema, strict: None })
        }
        (Some("application/json"), None) => Some(ResponseFormat::JsonObject),
        (Some("text/plain"), None) => Some(ResponseFormat::Text),
        _ => None,
    };
}

// === Request: IR -> wire ===

pub fn encode_request(req: &ChatRequest, _opts: &RequestOptions) -> Result<Encoded, TranslateError> {
    let mut body = Map::new();
    let mut dropped = Vec::new();
    if !req.system.is_empty() {
        let parts: Vec<Value> = req.system.iter().map(|s| json!({"text": s.text})).collect();
        body.insert("systemInstruction".into(), json!({ "parts": parts }));
    }
    body.insert("contents".into(), Value::Array(encode_contents(&req.messages)?));
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name});
                if let Some(desc) = &t.description {
                    d["description"] = json!(desc);
                }
                if let Some(p) = sanitize_schema(&t.parameters) {
                    d["parameters"] = p;
                }
                d
            })
            .collect();
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
    }
    if let Some(tc) = &req.tool_choice {
        let fc = match tc {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
        };
        body.insert("toolConfig".into(), json!({ "functionCallingConfig": fc }));
    }
    if req.parallel_tool_calls.is_some() {
        dropped.push("parallel_tool_calls");
    }
    let mut gc = Map::new();
    let s = &req.sampling;
    let mut put = |k: &str, v: Value| {
        gc.insert(k.to_owned(), v);
    };
    if let Some(t) = s.temperature {
        put("temperature", json!(t));
    }
    if let Some(p) = s.top_p {
        put("topP", json!(p));
    }
    if let Some(k) = s.top_k {
        put("topK", json!(k));
    }
    if let Some(n) = req.max_tokens {
        put("maxOutputTokens", json!(n));
    }
    if !s.stop.is_empty() {
        put("stopSequences", json!(s.stop));
    }
    if let Some(n) = s.n {
        if n > 1 {
            // We translate only the first candidate back.
            dropped.push("n");
        }
    }
    if let Some(seed) = s.seed {
        put("seed", json!(seed));
    }
    if let Some(p) = s.presence_penalty {
        put("presencePenalty", json!(p));
    }
    if let Some(p) = s.frequency_penalty {
        put("frequencyPenalty", json!(p));
    }
    if s.logprobs == Some(true) {
        dropped.push("logprobs");
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => put("responseMimeType", json!("application/json")),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            put("responseMimeType", json!("application/json"));
            if let Some(s) = sanitize_schema(schema) {
                put("responseSchema", s);
            }
        }
    }
    if let Some(r) = &req.reasoning {
        let budget = r.budget_tokens.map(i64::from).or_else(|| {
            r.effort.as_deref().map(|e| match e {
                "none" => 0,
                "minimal" | "low" => 1024,
                "medium" => 8192,
                _ => 24576,
            })
        });
        if let Some(b) = budget {
            put("thinkingConfig", json!({"thinkingBudget": b, "includeThoughts": b != 0}));
        }
    }
    if !gc.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gc));
    }
    if req.user.is_some() {
        dropped.push("user");
    }
    Ok(Encoded { body: serde_json::to_vec(&Value::Object(body))?, dropped })
}

fn image_part(img: &ImageSource) -> Value {
    match img {
        ImageSource::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        ImageSource::Url(u) => match super::openai_responses::image_from_url(u) {
            ImageSource::Base64 { media_type, data } => {
                json!({"inlineData": {"mimeType": media_type, "data": data}})
            }
            ImageSource::Url(_) => json!({"fileData": {"mimeType": guess_image_mime(u), "fileUri": u}}),
        },
    }
}

fn guess_image_mime(u: &str) -> &'static str {
    let path = u.split(['?', '#']).next().unwrap_or(u).to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

/// `Part::ToolResult` content as `functionResponse.response` (an object): JSON-object text is
/// sent as that object, other text as `{"output": text}` (`{"error": text}` for errors).
fn function_response_value(r: &ToolResult) -> Value {
    let text: String = r
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    if r.is_error {
        return json!({ "error": text });
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "output": text }),
    }
}

fn encode_contents(messages: &[Message]) -> Result<Vec<Value>, TranslateError> {
    // call id -> function name, for results that do not carry the name.
    let mut names: Vec<(&str, &str)> = Vec::new();
    let mut contents = Vec::new();
    for m in messages {
        let mut parts: Vec<Value> = Vec::new();
        let mut first_call = true;
        for p in &m.parts {
            match p {
                Part::Text { text, .. } => parts.push(json!({ "text": text })),
                Part::Image(img) => parts.push(image_part(img)),
                Part::ToolCall(c) => {
                    names.push((&c.id, &c.name));
                    let mut part = json!({"functionCall": {"name": c.name,
                        "args": tool_arguments_to_object(&c.arguments)}});
                    match &c.signature {
                        Some(s) => part["thoughtSignature"] = json!(s),
                        None if first_call => part["thoughtSignature"] = json!(DUMMY_THOUGHT_SIGNATURE),
                        None => {}
                    }
                    first_call = false;
                    parts.push(part);
                }
                Part::ToolResult(r) => {
                    let name = match &r.name {
                        Some(n) => n.clone(),
                        None => names
                            .iter()
                            .rev()
                            .find(|(id, _)| *id == r.call_id)
                            .map(|(_, n)| n.to_string())
                            .ok_or_else(|| {
                                TranslateError::invalid(
                                    "messages",
                                    format!(
                                        "tool result `{}` answers no earlier tool call; Gemini needs the function name",
                                        r.call_id
                                    ),
                                )
                            })?,
                    };
                    parts.push(json!({"functionResponse": {"name": name,
                        "response": function_response_value(r)}}));
                    for c in &r.content {
                        if let Part::Image(img) = c {
                            parts.push(image_part(img));
                        }
                    }
                }
                Part::Thinking { text, signature } if text.is_empty() => {
                    // A signature that belonged to the part before it.
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
                Part::RedactedThinking { .. } => {}
            }
        }
        if parts.is_empty() {
            continue;
        }
        let role = if m.role == Role::Assistant { "model" } else { "user" };
        contents.push(json!({"role": role, "parts": parts}));
    }
    Ok(contents)
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

/// One response part as IR parts (a signed text part gives the text and an empty signed thought).
fn response_part(p: &Value, n_calls: &mut usize) -> Vec<Part> {
    let signature = p.get("thoughtSignature").and_then(Value::as_str).map(str::to_owned);
    if let Some(fc) = p.get("functionCall") {
        let name = str_of(fc, "name").to_owned();
        let id = match fc.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => synth_call_id(*n_calls, &name),
        };
        *n_calls += 1;
        let arguments = fc.get("args").map_or_else(|| "{}".into(), value_to_tool_arguments);
        return vec![Part::ToolCall(ToolCall { id, name, arguments, signature })];
    }
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
    if signature.is_some() {
        out.push(Part::Thinking { text: String::new(), signature });
    }
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
        "totalTokenCount": u.input_tokens + u.output_tokens,
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
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // The JSON-array stream form wraps errors in an array.
    let v = v.get(0).cloned().unwrap_or(v);
    let err = v.get("error").unwrap_or(&Value::Null);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let kind = kind_from_status_name(str_of(err, "status")).unwrap_or_else(|| {
        let code =
            err.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(status);
        kind_for_http(code)
    });
    (kind, message)
}

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

fn kind_for_http(status: u16) -> ErrorKind {
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
