//! AWS Bedrock Converse / ConverseStream wire format <-> IR. Bedrock is only ever an upstream,
//! so this file encodes requests and decodes responses, errors and streams; there is no
//! inbound side. Pure: no I/O, no signing, no URLs (the model id goes in the URL, see
//! `providers/sigv4.rs` `converse_path`), and no event-stream framing (see `eventstream.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::eventstream::{self, Message as Frame};
use super::finish_reason;
use super::tools::{object_schema, tool_arguments_to_object, tool_id_for_anthropic, value_to_tool_arguments};
use super::{
    ChatRequest, ChatResponse, Encoded, ErrorKind, FinishReason, Format, ImageSource, Part, RequestOptions,
    Role, StreamEvent, ToolChoice, TranslateError, Usage,
};

/// Image formats Converse accepts (`image.format`), by MIME type.
const IMAGE_FORMATS: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpeg"),
    ("image/jpg", "jpeg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

// === Request ===

/// The Converse request body for `req` (the target model is not in the body; it is in the
/// URL path). Parameters Converse cannot express are listed in `Encoded::dropped`.
///
/// Mapping notes:
/// - Consecutive turns of the same role are merged (Converse wants strict alternation, and an
///   OpenAI tool-results run plus a user text must become one user turn).
/// - Tool-call arguments become the `input` object; `tool_choice: none` omits `toolConfig`
///   unless the history has tool blocks (Converse then requires it), in which case tools stay
///   and `tool_choice` is reported dropped. History tool names without a definition get a
///   stub spec for the same reason.
/// - `top_k` and thinking go in `additionalModelRequestFields`, spelled for the target's model
///   family (read from `opts.target_model`): Claude gets `top_k` and `thinking` (an effort maps
///   to a budget as in `anthropic.rs`, `maxTokens` is raised above the budget, and temperature,
///   top_k and top_p < 0.95 are dropped while thinking); Nova gets `inferenceConfig.topK`;
///   other families drop both.
/// - `cache_control` on a text block becomes a `cachePoint` after it.
/// - Thinking parts without a signature are not replayed (Bedrock would reject them).
pub fn encode_request(req: &ChatRequest, opts: &RequestOptions) -> Result<Encoded, TranslateError> {
    if req.web_search.is_some() {
        return Err(super::WebSearch::unsupported("Bedrock"));
    }
    let mut dropped: Vec<&'static str> = Vec::new();
    let mut body = Map::new();

    let mut history_tools: Vec<&str> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut last_role: Option<Role> = None;
    for (i, m) in req.messages.iter().enumerate() {
        let mut content = Vec::new();
        for (j, p) in m.parts.iter().enumerate() {
            encode_part(p, m.role, &mut content, &mut history_tools)
                .map_err(|e| e.at(&format!("messages[{i}].content[{j}]")))?;
        }
        if content.is_empty() {
            continue;
        }
        if last_role == Some(m.role) {
            if let Some(Value::Array(prev)) = messages.last_mut().and_then(|v| v.get_mut("content")) {
                prev.extend(content);
                continue;
            }
        }
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        messages.push(json!({ "role": role, "content": content }));
        last_role = Some(m.role);
    }
    body.insert("messages".into(), Value::Array(messages));

    if !req.system.is_empty() {
        let mut system = Vec::new();
        for s in req.system.iter().filter(|s| !s.text.is_empty()) {
            system.push(json!({ "text": s.text }));
            if s.cache_control.is_some() {
                system.push(cache_point());
            }
        }
        if !system.is_empty() {
            body.insert("system".into(), Value::Array(system));
        }
    }

    let family = ModelFamily::of(opts.target_model);
    let s = &req.sampling;
    let budget = match family {
        ModelFamily::Claude => thinking_budget(req.reasoning.as_ref()),
        _ => None,
    };
    let wants_reasoning = req.reasoning.as_ref().is_some_and(|r| {
        r.budget_tokens.is_some() || r.effort.as_deref().is_some_and(|e| !matches!(e, "none" | "minimal"))
    });
    if budget.is_none() && wants_reasoning {
        dropped.push("reasoning_effort");
    }

    let mut inference = Map::new();
    let mut max_tokens = req.max_tokens;
    if let Some(b) = budget {
        // Claude needs budget_tokens < max_tokens: raise max_tokens rather than starve the answer.
        if max_tokens.is_none_or(|m| m <= b) {
            max_tokens = Some(b.saturating_add(opts.default_max_tokens.max(1)));
        }
    }
    if let Some(n) = max_tokens {
        inference.insert("maxTokens".into(), json!(n));
    }
    // Claude's extended thinking rejects a modified temperature or top_k and top_p below 0.95.
    match s.temperature {
        Some(_) if budget.is_some() => dropped.push("temperature"),
        Some(t) => {
            inference.insert("temperature".into(), json!(t));
        }
        None => {}
    }
    match s.top_p {
        Some(p) if budget.is_some() && p < 0.95 => dropped.push("top_p"),
        Some(p) => {
            inference.insert("topP".into(), json!(p));
        }
        None => {}
    }
    if !s.stop.is_empty() {
        inference.insert("stopSequences".into(), json!(s.stop));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }

    // Model-specific fields, each in its family's own spelling.
    let mut additional = Map::new();
    match (s.top_k, family) {
        (None, _) => {}
        (Some(_), ModelFamily::Claude) if budget.is_some() => dropped.push("top_k"),
        (Some(k), ModelFamily::Claude) => {
            additional.insert("top_k".into(), json!(k));
        }
        (Some(k), ModelFamily::Nova) => {
            additional.insert("inferenceConfig".into(), json!({ "topK": k }));
        }
        (Some(_), ModelFamily::Other) => dropped.push("top_k"),
    }
    if let Some(b) = budget {
        additional.insert("thinking".into(), json!({ "type": "enabled", "budget_tokens": b }));
    }
    if !additional.is_empty() {
        body.insert("additionalModelRequestFields".into(), Value::Object(additional));
    }

    if let Some(tc) = encode_tool_config(req, &history_tools, &mut dropped) {
        body.insert("toolConfig".into(), tc);
    }

    if s.seed.is_some() {
        dropped.push("seed");
    }
    if s.presence_penalty.is_some() {
        dropped.push("presence_penalty");
    }
    if s.frequency_penalty.is_some() {
        dropped.push("frequency_penalty");
    }
    if s.n.is_some_and(|n| n > 1) {
        dropped.push("n");
    }
    if s.logprobs == Some(true) {
        dropped.push("logprobs");
    }
    if req.parallel_tool_calls == Some(false) {
        dropped.push("parallel_tool_calls");
    }
    if matches!(
        req.response_format,
        Some(super::ResponseFormat::JsonObject | super::ResponseFormat::JsonSchema { .. })
    ) {
        dropped.push("response_format");
    }

    Ok(Encoded { body: serde_json::to_vec(&Value::Object(body))?, dropped })
}

/// The model family of a Bedrock model id, foundation-model id, inference profile
/// (`us.anthropic...`) or ARN: it decides how model-specific fields are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelFamily {
    Claude,
    Nova,
    Other,
}

impl ModelFamily {
    fn of(model_id: &str) -> Self {
        let m = model_id.to_ascii_lowercase();
        if m.contains("anthropic.") || m.contains("claude") {
            ModelFamily::Claude
        } else if m.contains("amazon.nova") || m.contains("nova-") {
            ModelFamily::Nova
        } else {
            ModelFamily::Other
        }
    }
}

use super::anthropic::thinking_budget;

fn cache_point() -> Value {
    json!({ "cachePoint": { "type": "default" } })
}

fn encode_part<'a>(
    p: &'a Part,
    role: Role,
    out: &mut Vec<Value>,
    history_tools: &mut Vec<&'a str>,
) -> Result<(), TranslateError> {
    match p {
        Part::Text { text, cache_control } => {
            // Converse rejects blank text blocks.
            if !text.is_empty() {
                out.push(json!({ "text": text }));
            }
            if cache_control.is_some() {
                out.push(cache_point());
            }
        }
        Part::Image(src) => out.push(encode_image(src)?),
        Part::ToolCall(tc) => {
            if !history_tools.contains(&tc.name.as_str()) {
                history_tools.push(&tc.name);
            }
            out.push(json!({ "toolUse": {
                "toolUseId": tool_id_for_anthropic(&tc.id),
                "name": tc.name,
                "input": tool_arguments_to_object(&tc.arguments),
            }}));
        }
        Part::ToolResult(tr) => {
            if let Some(name) = tr.name.as_deref() {
                if !history_tools.contains(&name) {
                    history_tools.push(name);
                }
            }
            let mut content = Vec::new();
            for (k, c) in tr.content.iter().enumerate() {
                match c {
                    Part::Text { text, .. } => content.push(json!({ "text": text })),
                    Part::Image(src) => content
                        .push(encode_image(src).map_err(|e| e.at(&format!("tool_result.content[{k}]")))?),
                    _ => {}
                }
            }
            if content.is_empty() {
                content.push(json!({ "text": "" }));
            }
            let mut block = json!({
                "toolUseId": tool_id_for_anthropic(&tr.call_id),
                "content": content,
            });
            // `status` is only sent for errors: some non-Claude models reject the field.
            if tr.is_error {
                block["status"] = json!("error");
            }
            out.push(json!({ "toolResult": block }));
        }
        Part::Thinking { text, signature } => {
            if let (Role::Assistant, Some(sig)) =
                (role, signature.as_ref().filter(|s| !super::foreign_signature(s)))
            {
                out.push(json!({ "reasoningContent": {
                    "reasoningText": { "text": text, "signature": sig }
                }}));
            }
        }
        Part::RedactedThinking { data } => {
            if role == Role::Assistant {
                out.push(json!({ "reasoningContent": { "redactedContent": data } }));
            }
        }
    }
    Ok(())
}

/// An IR image as a Converse `image` block: base64 bytes with a format enum, or an S3 object.
fn encode_image(src: &ImageSource) -> Result<Value, TranslateError> {
    let (media_type, data) = match src {
        ImageSource::Base64 { media_type, data } => (media_type.as_str(), data.as_str()),
        ImageSource::Url(url) if url.starts_with("data:") => parse_data_uri(url)?,
        ImageSource::Url(url) if url.starts_with("s3://") => {
            let ext = url.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            let format = match ext.as_str() {
                "png" => "png",
                "jpg" | "jpeg" => "jpeg",
                "gif" => "gif",
                "webp" => "webp",
                _ => {
                    return Err(TranslateError::invalid(
                        "image_url",
                        format!("cannot tell the image format of {url:?} (want .png, .jpeg, .gif or .webp)"),
                    ))
                }
            };
            return Ok(json!({ "image": { "format": format, "source": { "s3Location": { "uri": url } } } }));
        }
        ImageSource::Url(_) => {
            return Err(TranslateError::invalid(
                "image_url",
                "Bedrock Converse needs the image bytes, not a URL; send a base64 data: URI",
            ))
        }
    };
    let media = media_type.to_ascii_lowercase();
    let format = IMAGE_FORMATS.iter().find(|(m, _)| *m == media).map(|(_, f)| *f).ok_or_else(|| {
        TranslateError::invalid(
            "image_url",
            format!("image type {media_type:?} is not supported by Bedrock (use png, jpeg, gif or webp)"),
        )
    })?;
    Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
}

/// `data:<media>;base64,<data>` -> (media type, base64 data).
fn parse_data_uri(url: &str) -> Result<(&str, &str), TranslateError> {
    let bad = || TranslateError::invalid("image_url", "malformed data: URI (want data:<type>;base64,<data>)");
    let rest = url.strip_prefix("data:").ok_or_else(bad)?;
    let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
    let media = meta.strip_suffix(";base64").ok_or_else(bad)?;
    Ok((media.split(';').next().unwrap_or(media), data))
}

fn encode_tool_config(
    req: &ChatRequest,
    history_tools: &[&str],
    dropped: &mut Vec<&'static str>,
) -> Option<Value> {
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut spec = json!({
                "name": t.name,
                "inputSchema": { "json": object_schema(&t.parameters) },
            });
            if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
                spec["description"] = json!(d);
            }
            json!({ "toolSpec": spec })
        })
        .collect();
    // Converse refuses toolUse/toolResult blocks unless toolConfig names the tools.
    for name in history_tools {
        if !req.tools.iter().any(|t| t.name == *name) {
            tools.push(json!({ "toolSpec": {
                "name": name,
                "inputSchema": { "json": { "type": "object", "properties": {} } },
            }}));
        }
    }
    if tools.is_empty() {
        if req.tool_choice.as_ref().is_some_and(|c| *c != ToolChoice::None && *c != ToolChoice::Auto) {
            dropped.push("tool_choice");
        }
        return None;
    }
    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({ "auto": {} })),
        Some(ToolChoice::Required) => Some(json!({ "any": {} })),
        Some(ToolChoice::Tool(name)) => Some(json!({ "tool": { "name": name } })),
        Some(ToolChoice::None) => {
            if history_tools.is_empty() {
                return None;
            }
            dropped.push("tool_choice");
            None
        }
    };
    let mut tc = json!({ "tools": tools });
    if let Some(c) = choice {
        tc["toolChoice"] = c;
    }
    Some(tc)
}

// === Response ===

/// A Converse response body as IR. Bedrock reports neither an id nor the model in the body:
/// the id is generated (`msg_bdrk_…`; use [`decode_response_with_id`] to pass the
/// `x-amzn-requestid` header instead) and `model` is left empty for the caller to fill.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, TranslateError> {
    decode_response_with_id(body, new_id())
}

/// [`decode_response`] with a caller-chosen response id.
pub fn decode_response_with_id(body: &[u8], id: String) -> Result<ChatResponse, TranslateError> {
    let v: Value = serde_json::from_slice(body)?;
    let blocks =
        v.pointer("/output/message/content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut content = Vec::new();
    for b in blocks {
        if let Some(text) = b.get("text").and_then(Value::as_str) {
            content.push(Part::Text { text: text.to_owned(), cache_control: None });
        } else if let Some(tu) = b.get("toolUse") {
            content.push(Part::ToolCall(super::ToolCall {
                id: str_at(tu, "toolUseId").to_owned(),
                name: str_at(tu, "name").to_owned(),
                arguments: value_to_tool_arguments(tu.get("input").unwrap_or(&Value::Null)),
                signature: None,
            }));
        } else if let Some(rc) = b.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                content.push(Part::Thinking {
                    text: str_at(rt, "text").to_owned(),
                    signature: rt.get("signature").and_then(Value::as_str).map(str::to_owned),
                });
            } else if let Some(data) = rc.get("redactedContent").and_then(Value::as_str) {
                content.push(Part::RedactedThinking { data: data.to_owned() });
            }
        }
    }
    let finish = decode_stop_reason(v.get("stopReason").and_then(Value::as_str).unwrap_or(""));
    Ok(ChatResponse {
        id,
        model: String::new(),
        created: now_secs(),
        content,
        finish,
        usage: v.get("usage").map(decode_usage).unwrap_or_default(),
    })
}

/// Converse `usage` as IR usage. Bedrock's `inputTokens` excludes cache reads and writes (as
/// Anthropic's `input_tokens` does); the IR counts every prompt token, so they are added.
fn decode_usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("inputTokens")
            .saturating_add(n("cacheReadInputTokens"))
            .saturating_add(n("cacheWriteInputTokens")),
        output_tokens: n("outputTokens"),
        cache_read_tokens: n("cacheReadInputTokens"),
        cache_write_tokens: n("cacheWriteInputTokens"),
        reasoning_tokens: 0,
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn new_id() -> String {
    format!("msg_bdrk_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// === Errors ===

/// An upstream error response (non-2xx) as (kind, message), reading the exception name from
/// the body's `__type` (see [`decode_error_typed`] to pass the `x-amzn-errortype` header too).
pub fn decode_error(status: u16, body: &[u8]) -> (ErrorKind, String) {
    decode_error_typed(status, None, body)
}

/// An upstream error as (kind, message). `error_type` is the `x-amzn-errortype` header when
/// present (e.g. `ThrottlingException:http://internal.amazon.com/coral/...`); otherwise the
/// body's `__type` (e.g. `com.amazon.coral.validate#ValidationException`) names it; failing
/// both, the HTTP status decides.
pub fn decode_error_typed(status: u16, error_type: Option<&str>, body: &[u8]) -> (ErrorKind, String) {
    let (kind, message, _) = super::upstream_error::decode(Format::Bedrock, status, error_type, body);
    (kind, message)
}

/// `ThrottlingException:http://...` and `com.amazon.coral...#ThrottlingException` -> `ThrottlingException`.
pub(crate) fn short_exception_name(name: &str) -> &str {
    let name = name.split(':').next().unwrap_or(name);
    name.rsplit('#').next().unwrap_or(name).trim()
}

/// The error class of a Bedrock exception name, in either the HTTP spelling
/// (`ThrottlingException`) or the event-stream one (`throttlingException`).
pub fn exception_kind(name: &str) -> Option<ErrorKind> {
    let n = name.to_ascii_lowercase();
    let n = n.strip_suffix("exception").unwrap_or(&n);
    Some(match n {
        "throttling" | "servicequotaexceeded" | "toomanyrequests" | "limitexceeded" => ErrorKind::RateLimited,
        "validation" | "serialization" | "invalidparameter" => ErrorKind::InvalidRequest,
        "accessdenied" => ErrorKind::PermissionDenied,
        "unrecognizedclient"
        | "invalidsignature"
        | "incompletesignature"
        | "expiredtoken"
        | "missingauthenticationtoken"
        | "invalidclienttokenid"
        | "unauthorized" => ErrorKind::Authentication,
        "resourcenotfound" | "unknownoperation" => ErrorKind::NotFound,
        "modeltimeout" | "requesttimeout" => ErrorKind::UpstreamTimeout,
        "serviceunavailable" | "modelnotready" => ErrorKind::Overloaded,
        "requestentitytoolarge" | "payloadtoolarge" => ErrorKind::RequestTooLarge,
        "internalserver" | "internalfailure" | "modelerror" | "modelstreamerror" => ErrorKind::UpstreamError,
        _ => return None,
    })
}

// === Stream ===

/// ConverseStream (raw `application/vnd.amazon.eventstream` bytes) -> IR stream events.
///
/// Converse sends `messageStop` before `metadata`; the `Finish` is held back until the usage
/// has been emitted (or the stream ends), so encoders that close on `Finish` see the usage.
/// An `exception` frame (which Bedrock sends after a 200 when the model fails mid-stream)
/// becomes `StreamEvent::Error`, and everything after it is ignored.
#[derive(Debug)]
pub struct StreamDecoder {
    frames: eventstream::Decoder,
    id: String,
    started: bool,
    /// Converse `contentBlockIndex` -> IR tool-call ordinal, for blocks that are tool uses.
    tool_blocks: Vec<(u64, u32)>,
    next_tool: u32,
    pending_finish: Option<FinishReason>,
    finished: bool,
    failed: bool,
    scratch: Vec<Frame>,
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

// === impl StreamDecoder ===

impl StreamDecoder {
    /// A decoder whose `Start` carries a generated id (`msg_bdrk_…`).
    pub fn new() -> Self {
        Self::with_id(new_id())
    }

    /// A decoder whose `Start` carries `id` (e.g. the `x-amzn-requestid` response header).
    pub fn with_id(id: String) -> Self {
        StreamDecoder {
            frames: eventstream::Decoder::new(),
            id,
            started: false,
            tool_blocks: Vec::new(),
            next_tool: 0,
            pending_finish: None,
            finished: false,
            failed: false,
            scratch: Vec::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        let mut frames = std::mem::take(&mut self.scratch);
        let r = self.frames.feed(chunk, &mut frames).map_err(frame_error);
        for f in frames.drain(..) {
            self.on_frame(&f, out)?;
        }
        self.scratch = frames;
        r
    }

    /// End of the upstream body: flush a held `Finish` (the stream ended between
    /// `messageStop` and `metadata`). A partial frame left over is an error, and so is a
    /// stream without a single event (`EmptyStream`) or one that stopped before `messageStop`
    /// (`Truncated`).
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        self.frames.finish().map_err(frame_error)?;
        if self.failed || self.finished {
            return Ok(());
        }
        match self.pending_finish.take() {
            Some(reason) => {
                out.push(StreamEvent::Finish(reason));
                self.finished = true;
                Ok(())
            }
            None if self.started => Err(TranslateError::Truncated("no messageStop".into())),
            None => Err(TranslateError::EmptyStream),
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start { id: self.id.clone(), model: String::new() });
        }
    }

    fn on_frame(&mut self, f: &Frame, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.failed || self.finished {
            return Ok(());
        }
        match f.message_type() {
            Some("exception") => {
                let name = f.exception_type().unwrap_or("exception");
                let (kind, message) = decode_error_typed(500, Some(name), &f.payload);
                self.fail(kind, message, out);
                return Ok(());
            }
            Some("error") => {
                let code = f.error_code().unwrap_or("error");
                let message = f.error_message().unwrap_or("");
                let kind = exception_kind(code).unwrap_or(ErrorKind::UpstreamError);
                self.fail(kind, format!("{code}: {message}"), out);
                return Ok(());
            }
            _ => {}
        }
        let Some(event) = f.event_type() else {
            return Ok(());
        };
        let v: Value = serde_json::from_slice(&f.payload).map_err(|e| {
            TranslateError::Stream(format!("ConverseStream {event} payload is not JSON: {e}"))
        })?;
        match event {
            "messageStart" => self.ensure_started(out),
            "contentBlockStart" => {
                if let Some(tu) = v.pointer("/start/toolUse") {
                    self.ensure_started(out);
                    let block = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                    let index = self.next_tool;
                    self.next_tool += 1;
                    self.tool_blocks.push((block, index));
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: str_at(tu, "toolUseId").to_owned(),
                        name: str_at(tu, "name").to_owned(),
                        signature: None,
                    });
                }
            }
            "contentBlockDelta" => {
                let Some(delta) = v.get("delta") else {
                    return Ok(());
                };
                self.ensure_started(out);
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        out.push(StreamEvent::TextDelta { text: text.to_owned() });
                    }
                } else if let Some(tu) = delta.get("toolUse") {
                    let block = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                    let index =
                        self.tool_blocks.iter().find(|(b, _)| *b == block).map(|(_, i)| *i).ok_or_else(
                            || {
                                TranslateError::Stream(format!(
                                "ConverseStream toolUse delta for block {block} without a contentBlockStart"
                            ))
                            },
                        )?;
                    let fragment = str_at(tu, "input");
                    if !fragment.is_empty() {
                        out.push(StreamEvent::ToolArgsDelta { index, fragment: fragment.to_owned() });
                    }
                } else if let Some(rc) = delta.get("reasoningContent") {
                    if let Some(text) = rc.get("text").and_then(Value::as_str) {
                        if !text.is_empty() {
                            out.push(StreamEvent::ThinkingDelta { text: text.to_owned() });
                        }
                    } else if let Some(sig) = rc.get("signature").and_then(Value::as_str) {
                        out.push(StreamEvent::ThinkingSignature { signature: sig.to_owned() });
                    }
                    // `redactedContent` has no stream event in the IR; it is dropped.
                }
            }
            "messageStop" => {
                self.ensure_started(out);
                let reason = v.get("stopReason").and_then(Value::as_str).unwrap_or("");
                self.pending_finish = Some(decode_stop_reason(reason));
            }
            "metadata" => {
                self.ensure_started(out);
                if let Some(u) = v.get("usage") {
                    out.push(StreamEvent::Usage(decode_usage(u)));
                }
                if let Some(reason) = self.pending_finish.take() {
                    out.push(StreamEvent::Finish(reason));
                    self.finished = true;
                }
            }
            // contentBlockStop and anything newer carry nothing the IR needs.
            _ => {}
        }
        Ok(())
    }

    fn fail(&mut self, kind: ErrorKind, message: String, out: &mut Vec<StreamEvent>) {
        self.failed = true;
        out.push(StreamEvent::Error { kind, message });
    }
}

/// A framing error as a stream error (a frame over the protocol's size is `EventTooLarge`).
fn frame_error(e: eventstream::FrameError) -> TranslateError {
    match e {
        eventstream::FrameError::Length(n) if n > eventstream::MAX_FRAME_LEN => {
            TranslateError::EventTooLarge { limit: eventstream::MAX_FRAME_LEN }
        }
        e => TranslateError::Stream(e.to_string()),
    }
}

/// Converse `stopReason` -> finish reason, from the shared table (unknown names mean `Stop`).
fn decode_stop_reason(reason: &str) -> FinishReason {
    finish_reason::decode(Format::Bedrock, reason)
}

// === impl TranslateError (location prefix) ===

trait At {
    fn at(self, path: &str) -> Self;
}

impl At for TranslateError {
    /// Prefix an `Invalid` error's field with where in the request it happened.
    fn at(self, path: &str) -> Self {
        match self {
            TranslateError::Invalid { field, message } => {
                TranslateError::Invalid { field: format!("{path}.{field}"), message }
            }
            other => other,
        }
    }
}

#[cfg(test)]
#[path = "bedrock_tests.rs"]
mod tests;
