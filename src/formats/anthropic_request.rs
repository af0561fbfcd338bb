//! Anthropic Messages requests (and response content) -> IR, decoded typed: the body is read
//! once into borrowed structs (`lenient` fields), never into a `serde_json::Value` tree, except
//! for the rare fields kept whole (`tool_choice`, `thinking`, `metadata`, `stop_sequences`,
//! tool schemas, image sources, `cache_control`) and the unmodelled ones (`ChatRequest::extra`).
//! Accepts and refuses exactly what reading a `Value` with `get(..).and_then(Value::as_*)` did,
//! with the same errors (the tests in `anthropic_tests.rs` run on this).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::lenient::{present, Arr, Bool, Obj, Str, F64, U64};
use super::scan::{Scan, Seen};
use super::tools::value_to_tool_arguments;
use super::{
    ChatRequest, ImageSource, Message, Part, Reasoning, Role, SystemPart, Tool, ToolCall, ToolChoice,
    ToolResult, TranslateError,
};

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, TranslateError> {
    let w = match scan_request(body) {
        Some(w) => w,
        None => match serde_json::from_slice::<Obj<RequestIn>>(body)?.0 {
            Some(w) => w,
            None => return Err(TranslateError::invalid("body", "expected a JSON object")),
        },
    };
    let mut req = ChatRequest { model: w.model.to_owned_string(), ..ChatRequest::default() };
    match w.system {
        Poly::Absent => {}
        Poly::Text(s) => req.system.push(SystemPart { text: s.to_owned_string(), cache_control: None }),
        Poly::Items(blocks) => {
            for b in blocks {
                let b = b.unwrap_or_default();
                req.system
                    .push(SystemPart { text: b.text.to_owned_string(), cache_control: b.cache_control });
            }
        }
        Poly::Other => {
            return Err(TranslateError::invalid("system", "must be a string or an array of text blocks"))
        }
    }
    let messages = w
        .messages
        .0
        .ok_or_else(|| TranslateError::invalid("messages", "is required and must be an array"))?;
    req.messages.reserve(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let m = m.unwrap_or_default();
        let role = match m.role.0.as_deref() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(TranslateError::invalid(
                    format!("messages[{i}].role"),
                    format!("{other:?} is not user or assistant"),
                ))
            }
        };
        let parts = decode_content(m.content, &|| format!("messages[{i}].content"))?;
        req.messages.push(Message { role, parts });
    }
    for (i, t) in w.tools.0.into_iter().flatten().enumerate() {
        let t = t.unwrap_or_default();
        if let Some(ty) = t.ty.0.as_deref().filter(|t| *t != "custom") {
            return Err(TranslateError::Unsupported(format!("tools[{i}] of server tool type {ty:?}")));
        }
        req.tools.push(Tool {
            name: t
                .name
                .0
                .ok_or_else(|| TranslateError::invalid(format!("tools[{i}].name"), "is required"))?
                .into_owned(),
            description: t.description.0.map(|d| d.into_owned()),
            parameters: t.input_schema.unwrap_or(Value::Null),
            strict: t.strict.0,
        });
    }
    if let Some(tc) = w.tool_choice.filter(|v| !v.is_null()) {
        req.tool_choice = Some(match tc.get("type").and_then(Value::as_str) {
            Some("auto") => ToolChoice::Auto,
            Some("any") => ToolChoice::Required,
            Some("none") => ToolChoice::None,
            Some("tool") => {
                ToolChoice::Tool(tc.get("name").and_then(Value::as_str).unwrap_or_default().to_owned())
            }
            other => {
                return Err(TranslateError::invalid("tool_choice.type", format!("unknown value {other:?}")))
            }
        });
        if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    req.max_tokens = w.max_tokens.0.map(|n| n.min(u32::MAX as u64) as u32);
    req.sampling.stop = w
        .stop_sequences
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    req.sampling.temperature = w.temperature.0;
    req.sampling.top_p = w.top_p.0;
    req.sampling.top_k = w.top_k.0.map(|n| n.min(u32::MAX as u64) as u32);
    if let Some(t) = &w.thinking {
        if t.get("type").and_then(Value::as_str) == Some("enabled") {
            req.reasoning = Some(Reasoning {
                effort: None,
                budget_tokens: t
                    .get("budget_tokens")
                    .and_then(Value::as_u64)
                    .map(|n| n.min(u32::MAX as u64) as u32),
            });
        }
    }
    req.user = w.metadata.as_ref().and_then(|m| m.get("user_id")).and_then(Value::as_str).map(str::to_owned);
    req.stream = w.stream.0.unwrap_or(false);
    // An Anthropic client always receives usage in the stream.
    req.include_usage = req.stream;
    req.extra = w.extra;
    Ok(req)
}

/// A response's `content` (the non-stream answer decoder reads it from its `Value`).
pub(crate) fn decode_response_content(content: &Value) -> Result<Vec<Part>, TranslateError> {
    let c = Poly::deserialize(content).map_err(|e| TranslateError::invalid("content", e.to_string()))?;
    decode_content(c, &|| "content".to_owned())
}

/// Message `content`: a string or an array of content blocks. `field` names it in errors
/// (made only when there is one).
fn decode_content(content: Poly<BlockIn>, field: &dyn Fn() -> String) -> Result<Vec<Part>, TranslateError> {
    let blocks = match content {
        Poly::Text(s) => return Ok(vec![Part::Text { text: s.to_owned_string(), cache_control: None }]),
        Poly::Items(a) => a,
        Poly::Absent => return Ok(Vec::new()),
        Poly::Other => {
            return Err(TranslateError::invalid(field(), "must be a string or an array of content blocks"))
        }
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.into_iter().enumerate() {
        let b = b.unwrap_or_default();
        let part = match b.ty.as_str() {
            "text" => Part::Text { text: b.text.to_owned_string(), cache_control: b.cache_control },
            "image" => Part::Image(decode_image(b.source.as_ref().unwrap_or(&Value::Null), &|| {
                format!("{}[{j}].source", field())
            })?),
            "tool_use" => Part::ToolCall(ToolCall {
                id: b.id.to_owned_string(),
                name: b.name.to_owned_string(),
                arguments: value_to_tool_arguments(b.input.as_ref().unwrap_or(&Value::Null)),
                signature: None,
            }),
            "tool_result" => Part::ToolResult(ToolResult {
                call_id: b.tool_use_id.to_owned_string(),
                name: None,
                content: decode_content(b.content, &|| format!("{}[{j}].content", field()))?,
                is_error: b.is_error.0.unwrap_or(false),
            }),
            // An empty signature (another provider's reasoning shown to the client) is no signature.
            "thinking" => Part::Thinking {
                text: b.thinking.to_owned_string(),
                signature: b.signature.non_empty().map(str::to_owned),
            },
            "redacted_thinking" => Part::RedactedThinking { data: b.data.to_owned_string() },
            // The model's own web searches and their results: what it learned is in the text
            // blocks that follow (with their citations); no other format has these blocks.
            "server_tool_use" | "web_search_tool_result" => continue,
            other => return Err(TranslateError::Unsupported(format!("{}[{j}] of type {other:?}", field()))),
        };
        out.push(part);
    }
    Ok(out)
}

fn decode_image(src: &Value, field: &dyn Fn() -> String) -> Result<ImageSource, TranslateError> {
    let s = |k: &str| src.get(k).and_then(Value::as_str).map(str::to_owned);
    match src.get("type").and_then(Value::as_str) {
        Some("base64") => Ok(ImageSource::Base64 {
            media_type: s("media_type").unwrap_or_default(),
            data: s("data").unwrap_or_default(),
        }),
        Some("url") => Ok(ImageSource::Url(s("url").unwrap_or_default())),
        other => Err(TranslateError::Unsupported(format!("{} of type {other:?}", field()))),
    }
}

/// The request body, typed. Decoded by hand (not derived) so that unmodelled members go to
/// `extra` as they are, and a repeated member replaces the earlier one, as in a `Value`.
#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug))]
#[derive(Default)]
struct RequestIn<'a> {
    model: Str<'a>,
    system: Poly<'a, SystemBlockIn<'a>>,
    messages: Arr<MessageIn<'a>>,
    tools: Arr<ToolIn<'a>>,
    tool_choice: Option<Value>,
    max_tokens: U64,
    stop_sequences: Option<Value>,
    temperature: F64,
    top_p: F64,
    top_k: U64,
    thinking: Option<Value>,
    metadata: Option<Value>,
    stream: Bool,
    extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for RequestIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RequestIn<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut r = RequestIn::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let key = key.0.unwrap_or_default();
                    match &*key {
                        "model" => r.model = map.next_value()?,
                        "system" => r.system = map.next_value()?,
                        "messages" => r.messages = map.next_value()?,
                        "tools" => r.tools = map.next_value()?,
                        "tool_choice" => r.tool_choice = Some(map.next_value()?),
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "stop_sequences" => r.stop_sequences = Some(map.next_value()?),
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "top_k" => r.top_k = map.next_value()?,
                        "thinking" => r.thinking = Some(map.next_value()?),
                        "metadata" => r.metadata = Some(map.next_value()?),
                        "stream" => r.stream = map.next_value()?,
                        _ => {
                            let v: Value = map.next_value()?;
                            r.extra.insert(key.into_owned(), v);
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

/// The fast path for a request of the everyday shape: the same `RequestIn` the serde pass
/// would decode, or `None` where the scanner gives up (then serde decides, with its own
/// errors; see `scan`). Read by the scanner: `model`, `system` and each message's `role` and
/// `content` when they are strings, `messages` when an array, `max_tokens` when a plain
/// integer. Every other member, and those in another shape, is decoded by serde from its own
/// text, so it reads exactly as in the whole-body pass; if that fails, the whole body goes to
/// serde. A repeated top-level member replaces the earlier one (as the serde visitor does); a
/// repeated member of a message gives up (serde's derive refuses it).
fn scan_request(body: &[u8]) -> Option<RequestIn<'_>> {
    let mut p = Scan::new(std::str::from_utf8(body).ok()?);
    let mut r = RequestIn::default();
    p.members(|key, p| {
        match key {
            "model" => {
                r.model = match p.peek()? {
                    b'"' | b'n' => Str(p.string_or_null()?),
                    _ => member(p)?,
                }
            }
            "system" => r.system = poly(p)?,
            "messages" => r.messages = messages(p)?,
            "max_tokens" => {
                r.max_tokens = match p.peek()? {
                    b'0'..=b'9' => U64(Some(p.u64()?)),
                    _ => member(p)?,
                }
            }
            "tools" => r.tools = member(p)?,
            "tool_choice" => r.tool_choice = Some(member(p)?),
            "stop_sequences" => r.stop_sequences = Some(member(p)?),
            "temperature" => r.temperature = member(p)?,
            "top_p" => r.top_p = member(p)?,
            "top_k" => r.top_k = member(p)?,
            "thinking" => r.thinking = Some(member(p)?),
            "metadata" => r.metadata = Some(member(p)?),
            "stream" => r.stream = member(p)?,
            _ => {
                let v: Value = member(p)?;
                r.extra.insert(key.to_owned(), v);
            }
        }
        Some(())
    })?;
    p.end()?;
    Some(r)
}

/// One member's value decoded by serde from its own text.
fn member<'a, T: Deserialize<'a>>(p: &mut Scan<'a>) -> Option<T> {
    serde_json::from_str(p.skip_raw()?).ok()
}

/// `system` or a message's `content`: a string read here, anything else by serde.
fn poly<'a, T: Deserialize<'a>>(p: &mut Scan<'a>) -> Option<Poly<'a, T>> {
    match p.peek()? {
        b'"' => Some(Poly::Text(Str(Some(p.string()?)))),
        _ => member(p),
    }
}

/// `messages`: an array of objects read here (`role` a string or `null`, `content` via
/// [`poly`], other members skipped as serde's derive does); anything else by serde.
fn messages<'a>(p: &mut Scan<'a>) -> Option<Arr<MessageIn<'a>>> {
    if p.peek()? != b'[' {
        return member(p);
    }
    let mut all = Vec::new();
    p.elements(|p| {
        if p.peek()? != b'{' {
            all.push(member::<Obj<MessageIn>>(p)?.0);
            return Some(());
        }
        let mut m = MessageIn::default();
        let mut seen = Seen::default();
        p.members(|key, p| {
            match key {
                "role" => m.role = seen.str(0, p)?,
                "content" => {
                    seen.once(1)?;
                    m.content = poly(p)?;
                }
                _ => p.skip()?,
            }
            Some(())
        })?;
        all.push(Some(m));
        Some(())
    })?;
    Some(Arr(Some(all)))
}

/// Panics unless the fast path reads `body` as serde does or gives up (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(body: &[u8]) {
    if let Some(r) = scan_request(body) {
        match serde_json::from_slice::<Obj<RequestIn>>(body) {
            Ok(want) => assert_eq!(format!("{r:?}"), format!("{:?}", want.0.unwrap_or_default())),
            Err(e) => panic!("the request fast path accepted what serde rejects ({e}): {body:?}"),
        }
    }
}

#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug))]
#[derive(Default, Deserialize)]
#[serde(default)]
struct SystemBlockIn<'a> {
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(deserialize_with = "present")]
    cache_control: Option<Value>,
}

#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug))]
#[derive(Default, Deserialize)]
#[serde(default)]
struct MessageIn<'a> {
    #[serde(borrow)]
    role: Str<'a>,
    #[serde(borrow)]
    content: Poly<'a, BlockIn<'a>>,
}

/// A content block: the fields of every block type (each type reads its own; the
/// stream decoder reads `content_block_start` blocks with it too).
#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug))]
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct BlockIn<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) ty: Str<'a>,
    #[serde(borrow)]
    pub(super) text: Str<'a>,
    #[serde(deserialize_with = "present")]
    pub(super) cache_control: Option<Value>,
    #[serde(deserialize_with = "present")]
    pub(super) source: Option<Value>,
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    #[serde(borrow)]
    pub(super) name: Str<'a>,
    #[serde(deserialize_with = "present")]
    pub(super) input: Option<Value>,
    #[serde(borrow)]
    pub(super) tool_use_id: Str<'a>,
    #[serde(borrow)]
    pub(super) content: Poly<'a, BlockIn<'a>>,
    pub(super) is_error: Bool,
    #[serde(borrow)]
    pub(super) thinking: Str<'a>,
    #[serde(borrow)]
    pub(super) signature: Str<'a>,
    #[serde(borrow)]
    pub(super) data: Str<'a>,
}

#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug))]
#[derive(Default, Deserialize)]
#[serde(default)]
struct ToolIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    description: Str<'a>,
    #[serde(deserialize_with = "present")]
    input_schema: Option<Value>,
    strict: Bool,
}

/// A member that is a string or an array of objects (`system`, `content`): absent or `null`,
/// the string, the array (elements that are not objects are `None`), or any other value.
#[cfg_attr(any(test, feature = "fuzzing"), derive(Debug))]
#[derive(Default)]
pub(super) enum Poly<'a, T> {
    #[default]
    Absent,
    Text(Str<'a>),
    Items(Vec<Option<T>>),
    Other,
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for Poly<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(std::marker::PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = Poly<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Poly::Text(Str(Some(s.into()))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Poly::Text(Str(Some(s.to_owned().into()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Poly::Text(Str(Some(s.into()))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(o) = seq.next_element::<Obj<T>>()? {
                    all.push(o.0);
                }
                Ok(Poly::Items(all))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Poly::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Poly::Absent)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Poly::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Poly::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Poly::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Poly::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Poly::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
#[path = "anthropic_request_tests.rs"]
mod tests;
