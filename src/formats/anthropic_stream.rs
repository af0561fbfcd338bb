//! The Anthropic Messages stream (SSE) <-> `StreamEvent`s. Re-exported as
//! `anthropic::{StreamDecoder, StreamEncoder}`. Pure: no I/O.
//!
//! The encoder is the hard direction (an OpenAI-style flat delta stream into blocks):
//! `message_start` goes out first, before any usage is known; a block is opened on the first
//! delta of its kind and closed before a block of another kind (or another tool call) opens,
//! so two blocks are never open at once; `Finish` and `Usage` are held until the upstream
//! ends, because OpenAI sends usage after `finish_reason`, and then `message_delta` carries
//! the stop reason with the final cumulative usage, followed by `message_stop`.

use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::anthropic::WireUsage;
use super::anthropic::{encode_usage, error_value, kind_for_type, stop_reason, UsageIn};
use super::anthropic_request::BlockIn;
use super::finish_reason;
use super::lenient::{Obj, Str, U64};
use super::scan::{Scan, Seen};
use super::sse::{write_json, write_json_str, write_json_u64, SseEvent, SseParser};
use super::{ErrorKind, FinishReason, Format, ResponseOptions, StreamEvent, TranslateError, Usage};

/// What the block at an Anthropic content index is, as far as the decoder cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool_use block and its tool-call ordinal.
    Tool(u32),
    Other,
}

/// Decodes an upstream Anthropic SSE stream into `StreamEvent`s.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    sse: SseParser,
    events: Vec<SseEvent>,
    /// Content index -> block kind, for blocks started.
    blocks: Vec<(u64, Block)>,
    tools: u32,
    usage: Usage,
    /// `message_start` (or any later event) was seen.
    started: bool,
    /// A `stop_reason` was seen.
    stopped: bool,
    /// `message_stop` or an `error` event was seen.
    done: bool,
}

// === impl StreamDecoder ===

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder { sse: SseParser::new(), ..Self::default() }
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        // Events completed before a framing error still count.
        let framing = self.sse.feed(chunk, &mut self.events);
        self.drain(out)?;
        framing
    }

    /// End of the upstream stream. A stream without a single event is
    /// `TranslateError::EmptyStream`; one that stops before `message_stop` and without a
    /// `stop_reason` is `Truncated`.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        self.sse.finish(&mut self.events);
        self.drain(out)?;
        match (self.started, self.done || self.stopped) {
            (false, false) => Err(TranslateError::EmptyStream),
            (true, false) => Err(TranslateError::Truncated("no message_stop".into())),
            (_, true) => Ok(()),
        }
    }

    fn drain(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        let mut events = std::mem::take(&mut self.events);
        let r = events.iter().try_for_each(|ev| self.on_event(ev, out));
        events.clear();
        self.events = events; // keep the capacity
        r
    }

    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.done {
            return Ok(());
        }
        let v = match scan_event(&ev.data) {
            Some(v) => v,
            None => serde_json::from_str::<Obj<EventIn>>(&ev.data)
                .map_err(|e| TranslateError::Stream(format!("{} event is not JSON: {e}", ev.event)))?
                .0
                .unwrap_or_default(),
        };
        // The `type` in the data is authoritative; the `event:` line names the same thing.
        let ty = v.ty.0.as_deref().unwrap_or(ev.event.as_str());
        let began = self.started;
        if ty != "ping" && ty != "error" {
            self.started = true;
        }
        match ty {
            // One message per stream, started first: a later `message_start` would change the
            // id and model under the client mid-stream (found by fuzzing).
            "message_start" if began => {
                return Err(TranslateError::Stream("message_start after the message began".into()))
            }
            "message_start" => {
                let m = v.message.as_ref();
                out.push(StreamEvent::Start {
                    id: m.map(|m| m.id.to_owned_string()).unwrap_or_default(),
                    model: m.map(|m| m.model.to_owned_string()).unwrap_or_default(),
                });
                if let Some(u) = m.and_then(|m| m.usage.as_ref()) {
                    self.usage = u.over(self.usage);
                    out.push(StreamEvent::Usage(self.usage));
                }
            }
            "content_block_start" => {
                let index = v.index.or_zero();
                let cb = v.content_block.0.unwrap_or_default();
                let block = match cb.ty.as_str() {
                    "text" => {
                        if let Some(t) = cb.text.non_empty() {
                            out.push(StreamEvent::TextDelta { text: t.to_owned() });
                        }
                        Block::Text
                    }
                    "thinking" => {
                        if let Some(t) = cb.thinking.non_empty() {
                            out.push(StreamEvent::ThinkingDelta { text: t.to_owned() });
                        }
                        Block::Thinking
                    }
                    "tool_use" => {
                        let ordinal = self.tools;
                        self.tools += 1;
                        out.push(StreamEvent::ToolCallStart {
                            index: ordinal,
                            id: cb.id.to_owned_string(),
                            name: cb.name.to_owned_string(),
                            signature: None,
                        });
                        // The start block's input is `{}`; arguments come as input_json_delta.
                        if let Some(input) = cb.input.filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.push(StreamEvent::ToolArgsDelta {
                                index: ordinal,
                                fragment: input.to_string(),
                            });
                        }
                        Block::Tool(ordinal)
                    }
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let index = v.index.or_zero();
                let block = self.blocks.iter().rev().find(|(i, _)| *i == index).map(|(_, b)| *b);
                let d = v.delta.0.unwrap_or_default();
                match (d.ty.as_str(), block) {
                    ("text_delta", _) => out.push(StreamEvent::TextDelta { text: d.text.to_owned_string() }),
                    ("thinking_delta", _) => {
                        out.push(StreamEvent::ThinkingDelta { text: d.thinking.to_owned_string() })
                    }
                    ("signature_delta", _) => {
                        out.push(StreamEvent::ThinkingSignature { signature: d.signature.to_owned_string() })
                    }
                    ("input_json_delta", Some(Block::Tool(ordinal))) => {
                        if let Some(fragment) = d.partial_json.non_empty() {
                            out.push(StreamEvent::ToolArgsDelta {
                                index: ordinal,
                                fragment: fragment.to_owned(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.usage.as_ref() {
                    self.usage = u.over(self.usage);
                    out.push(StreamEvent::Usage(self.usage));
                }
                if let Some(r) = v.delta.as_ref().and_then(|d| d.stop_reason.0.as_deref()) {
                    self.stopped = true;
                    out.push(StreamEvent::Finish(finish_reason::decode(Format::Anthropic, r)));
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let e = v.error.0.unwrap_or_default();
                let kind = e.ty.0.as_deref().and_then(kind_for_type).unwrap_or(ErrorKind::UpstreamError);
                out.push(StreamEvent::Error { kind, message: e.message.to_owned_string() });
                self.done = true;
            }
            // ping, content_block_stop, and event types added later.
            _ => {}
        }
        Ok(())
    }
}

/// The fast path for the events of every chunk (`content_block_delta`, `content_block_stop`,
/// `ping`, `message_stop`): the same `EventIn` `serde_json` would decode, or `None` where the
/// scanner gives up and `serde_json` decides (see `scan`): a non-null `message`,
/// `content_block`, `usage` or `error` (once per stream), a member of an unexpected type, a
/// known member twice, any syntax the scanner does not take.
fn scan_event(data: &str) -> Option<EventIn<'_>> {
    let mut p = Scan::new(data);
    let mut e = EventIn::default();
    let mut seen = Seen::default();
    p.members(|key, p| {
        match key {
            "type" => e.ty = seen.str(0, p)?,
            "index" => e.index = seen.once(1).and_then(|_| p.u64_or_null())?,
            "delta" => {
                seen.once(2)?;
                e.delta = Obj(p.nullable(scan_delta)?);
            }
            "message" | "content_block" | "usage" | "error" => {
                let bit = match key {
                    "message" => 3,
                    "content_block" => 4,
                    "usage" => 5,
                    _ => 6,
                };
                seen.once(bit)?;
                p.null()?;
            }
            _ => p.skip()?,
        }
        Some(())
    })?;
    p.end()?;
    Some(e)
}

fn scan_delta<'a>(p: &mut Scan<'a>) -> Option<DeltaIn<'a>> {
    let mut d = DeltaIn::default();
    let mut seen = Seen::default();
    p.members(|key, p| {
        let (bit, field) = match key {
            "type" => (0, &mut d.ty),
            "text" => (1, &mut d.text),
            "thinking" => (2, &mut d.thinking),
            "signature" => (3, &mut d.signature),
            "partial_json" => (4, &mut d.partial_json),
            "stop_reason" => (5, &mut d.stop_reason),
            _ => {
                p.skip()?;
                return Some(());
            }
        };
        *field = seen.str(bit, p)?;
        Some(())
    })?;
    Some(d)
}

/// Panics unless the fast path reads `data` as `serde_json` does or gives up (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(data: &str) {
    let seen = |e: &EventIn| {
        let absent =
            [e.message.0.is_none(), e.content_block.0.is_none(), e.usage.0.is_none(), e.error.0.is_none()];
        format!("{:?} {:?} {:?} {absent:?}", e.ty, e.index, e.delta)
    };
    if let Some(e) = scan_event(data) {
        match serde_json::from_str::<Obj<EventIn>>(data) {
            Ok(want) => assert_eq!(seen(&e), seen(&want.0.unwrap_or_default()), "{data}"),
            Err(err) => {
                panic!("the Anthropic event fast path accepted what serde_json rejects ({err}): {data}")
            }
        }
    }
}

/// One upstream Anthropic stream event, typed: the fields the decoder reads, borrowed from the
/// event's data; any field of an unexpected JSON type reads as absent (see `lenient`).
#[derive(Default, Deserialize)]
#[serde(default)]
struct EventIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    message: Obj<MessageIn<'a>>,
    index: U64,
    #[serde(borrow)]
    content_block: Obj<BlockIn<'a>>,
    #[serde(borrow)]
    delta: Obj<DeltaIn<'a>>,
    usage: Obj<UsageIn>,
    #[serde(borrow)]
    error: Obj<ErrorIn<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessageIn<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    usage: Obj<UsageIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeltaIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    thinking: Str<'a>,
    #[serde(borrow)]
    signature: Str<'a>,
    #[serde(borrow)]
    partial_json: Str<'a>,
    #[serde(borrow)]
    stop_reason: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Str<'a>,
    #[serde(borrow)]
    message: Str<'a>,
}

/// The block the encoder has open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

/// Encodes `StreamEvent`s as an Anthropic Messages SSE stream for the client.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    started: bool,
    done: bool,
    open: Option<Open>,
    /// Content index of the next block.
    next_index: u32,
    /// Tool calls whose block was opened (a tool's block is never reopened).
    tools_seen: Vec<u32>,
    finish: Option<FinishReason>,
    usage: Usage,
}

// === impl StreamEncoder ===

impl StreamEncoder {
    pub fn new(opts: &ResponseOptions) -> Self {
        StreamEncoder {
            model: opts.model.to_owned(),
            started: false,
            done: false,
            open: None,
            next_index: 0,
            tools_seen: Vec::new(),
            finish: None,
            usage: Usage::default(),
        }
    }

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Start { id, .. } => self.start(id, out),
            StreamEvent::Usage(u) => {
                self.usage = *u;
            }
            StreamEvent::Error { kind, message } => self.fail(*kind, message, out),
            _ if self.finish.is_some() => {} // nothing but usage may follow the finish
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                self.open_block(Open::Text, out);
                self.delta(Delta::Text { text }, out);
            }
            StreamEvent::ThinkingDelta { text } if !text.is_empty() => {
                self.open_block(Open::Thinking, out);
                self.delta(Delta::Thinking { thinking: text }, out);
            }
            // A signature belongs to the open thinking block; with none open it has no home.
            StreamEvent::ThinkingSignature { signature } if self.open == Some(Open::Thinking) => {
                self.delta(Delta::Signature { signature }, out);
            }
            StreamEvent::ToolCallStart { index, id, name, .. } => {
                if self.tools_seen.contains(index) {
                    return;
                }
                self.start("", out);
                self.close_block(out);
                self.tools_seen.push(*index);
                let id = if id.is_empty() { format!("toolu_gateway_{index}") } else { id.clone() };
                self.block_start(ContentBlock::ToolUse { id: &id, name, input: Empty {} }, out);
                self.open = Some(Open::Tool(*index));
            }
            // Fragments of the open call stream straight through. Fragments of a call whose
            // block is closed cannot be placed (OpenAI never interleaves calls).
            StreamEvent::ToolArgsDelta { index, fragment }
                if !fragment.is_empty() && self.open == Some(Open::Tool(*index)) =>
            {
                self.delta(Delta::InputJson { partial_json: fragment }, out);
            }
            StreamEvent::Finish(reason) => {
                self.start("", out);
                self.close_block(out);
                self.finish = Some(*reason);
            }
            _ => {}
        }
    }

    /// End of the upstream stream: close the open block, then `message_delta` (stop reason,
    /// final usage) and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start("", out);
        self.close_block(out);
        let reason = stop_reason(self.finish.unwrap_or(FinishReason::Stop), !self.tools_seen.is_empty());
        self.message_delta(reason, out);
        out.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        self.done = true;
    }

    fn fail(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<u8>) {
        write_json(out, "error", &error_value(kind, message));
        self.done = true;
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = if id.is_empty() { "msg_gateway" } else { id };
        self.message_start(id, out);
    }

    // The events below are written from literal pieces: the same bytes as serialising their
    // typed form (`MessageStart`, `BlockEvent`, ...; the tests check each), without escaping
    // every key again on every event.

    fn message_start(&self, id: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        write_json_str(out, id);
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_json_str(out, &self.model);
        out.extend_from_slice(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        encode_usage(&self.usage).write(out);
        out.extend_from_slice(b"}}\n\n");
    }

    fn message_delta(&self, reason: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":",
        );
        write_json_str(out, reason);
        out.extend_from_slice(b",\"stop_sequence\":null},\"usage\":");
        encode_usage(&self.usage).write(out);
        out.extend_from_slice(b"}\n\n");
    }

    fn open_block(&mut self, kind: Open, out: &mut Vec<u8>) {
        self.start("", out);
        if self.open == Some(kind) {
            return;
        }
        self.close_block(out);
        let block = match kind {
            Open::Text => ContentBlock::Text { text: "" },
            Open::Thinking => ContentBlock::Thinking { thinking: "" },
            Open::Tool(_) => return,
        };
        self.block_start(block, out);
        self.open = Some(kind);
    }

    fn block_start(&mut self, block: ContentBlock, out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":",
        );
        write_json_u64(out, self.next_index.into());
        out.extend_from_slice(b",\"content_block\":");
        match block {
            ContentBlock::Text { text } => {
                out.extend_from_slice(b"{\"type\":\"text\",\"text\":");
                write_json_str(out, text);
            }
            ContentBlock::Thinking { thinking } => {
                out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":");
                write_json_str(out, thinking);
            }
            ContentBlock::ToolUse { id, name, input: Empty {} } => {
                out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
                write_json_str(out, id);
                out.extend_from_slice(b",\"name\":");
                write_json_str(out, name);
                out.extend_from_slice(b",\"input\":{}");
            }
        }
        out.extend_from_slice(b"}}\n\n");
    }

    /// One `content_block_delta`, the event of every chunk: written from literal pieces (the
    /// same bytes as serialising `DeltaEvent`, see the tests).
    fn delta(&self, delta: Delta, out: &mut Vec<u8>) {
        let (kind, field, value) = delta.parts();
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        write_json_u64(out, self.next_index.into());
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        write_json_str(out, value);
        out.extend_from_slice(b"}}\n\n");
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            out.extend_from_slice(
                b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
            );
            write_json_u64(out, self.next_index.into());
            out.extend_from_slice(b"}\n\n");
            self.next_index += 1;
        }
    }
}

// The events the encoder writes, typed, in Anthropic's own field order (`type` first). The
// encoder writes the same bytes from literal pieces; the tests serialise these to check.

#[cfg(test)]
#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    message: Message<'a>,
}

#[cfg(test)]
#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: WireUsage,
}

#[cfg(test)]
#[derive(Serialize)]
struct BlockEvent<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    index: u32,
    content_block: ContentBlock<'a>,
}

#[derive(Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock<'a> {
    Text { text: &'a str },
    Thinking { thinking: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: Empty },
}

/// `{}`.
#[derive(Clone, Serialize)]
struct Empty {}

/// What `StreamEncoder::delta` writes (tests check the two agree).
#[cfg(test)]
#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    index: u32,
    delta: Delta<'a>,
}

#[derive(Clone, Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

// === impl Delta ===

impl<'a> Delta<'a> {
    /// `(type, field, value)`.
    fn parts(&self) -> (&'static str, &'static str, &'a str) {
        match *self {
            Delta::Text { text } => ("text_delta", "text", text),
            Delta::Thinking { thinking } => ("thinking_delta", "thinking", thinking),
            Delta::Signature { signature } => ("signature_delta", "signature", signature),
            Delta::InputJson { partial_json } => ("input_json_delta", "partial_json", partial_json),
        }
    }
}

#[cfg(test)]
#[derive(Serialize)]
struct StopEvent {
    #[serde(rename = "type")]
    ty: &'static str,
    index: u32,
}

#[cfg(test)]
#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    ty: &'static str,
    delta: StopDelta,
    usage: WireUsage,
}

#[cfg(test)]
#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

#[cfg(test)]
#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    ty: &'static str,
}

#[cfg(test)]
#[path = "anthropic_stream_tests.rs"]
mod tests;
