//! Gemini `generateContent` request bodies <-> IR (both directions). See `gemini.rs` for the
//! tool-id and thought-signature conventions. Pure: no I/O.

use serde_json::{json, Map, Value};

use super::super::tools::{tool_arguments_to_object, value_to_tool_arguments};
use super::super::{
    ChatRequest, Encoded, ImageSource, Message, Part, Reasoning, RequestOptions, ResponseFormat, Role,
    SystemPart, Tool, ToolCall, ToolChoice, ToolResult, TranslateError,
};
use super::{
    parts_of, sanitize_schema, str_of, synth_call_id, text_part, DUMMY_THOUGHT_SIGNATURE, SIGNATURE_PREFIX,
};

// === Request: wire -> IR ===

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let m = super::super::json_object(body)?;
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
                    // A plain text part's signature is optional to echo and has no IR slot
                    // that other formats would not misread as a thinking block: dropped.
                    parts.push(text_part(t));
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
            } else if signature.is_some() {
                // A signature-only part (see above): dropped.
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

/// Gemini schemas may spell types in upper case (`"OBJECT"`) and carry the Gemini-only
/// `propertyOrdering`; JSON Schema wants lower case and no such key.
fn lower_types(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("propertyOrdering");
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
            // 1 is the default; only a real request for more is worth carrying (and refusing).
            "candidateCount" | "candidate_count" => s.n = u32_of(x).filter(|n| *n != 1),
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
    if req.web_search.is_some() {
        // Grounding with Google Search (it takes no domain or location filter).
        let tools = body.entry("tools").or_insert_with(|| json!([]));
        if let Some(a) = tools.as_array_mut() {
            a.push(json!({"google_search": {}}));
        }
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
        // Gemini counts thoughts inside maxOutputTokens: a budget that fills the cap leaves no
        // room for the answer, so it is halved below the cap.
        let budget = match (budget, req.max_tokens) {
            (Some(b), Some(max)) if b >= i64::from(max) => Some(i64::from(max) / 2),
            (b, _) => b,
        };
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

pub(super) fn image_part(img: &ImageSource) -> Value {
    match img {
        ImageSource::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        ImageSource::Url(u) => match super::super::openai_responses::image_from_url(u) {
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
                // Only Gemini's own thoughts go back (another provider's signature is a 400).
                Part::Thinking { text, signature } => {
                    let Some(sig) = signature.as_deref().and_then(|s| s.strip_prefix(SIGNATURE_PREFIX))
                    else {
                        continue;
                    };
                    if !text.is_empty() {
                        parts.push(json!({"text": text, "thought": true, "thoughtSignature": sig}));
                        continue;
                    }
                    // A signature that belonged to the part before it.
                    match parts.last_mut() {
                        Some(last) if last.get("thoughtSignature").is_none() => {
                            last["thoughtSignature"] = json!(sig)
                        }
                        _ => parts.push(json!({"text": "", "thoughtSignature": sig})),
                    }
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
