//! The OpenAI Chat Completions stream (`chat.completion.chunk` SSE) <-> `StreamEvent`s.
//! Re-exported as `openai_chat::{StreamDecoder, StreamEncoder}`. Pure: no I/O.
//!
//! Chunk grammar written by the encoder: every chunk has the same `id`; the first carries
//! `delta.role = "assistant"`; a tool call's `id`, `type` and `function.name` (with
//! `arguments: ""`) appear only on the first chunk of its `index`, argument fragments after;
//! `finish_reason` is set once, on the last choice chunk; the usage chunk (`choices: []`)
//! comes only if the client asked for it; `data: [DONE]` ends every stream.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::finish_reason;
use super::lenient::{First, Many, Obj, Str, U64};
use super::openai_chat::{encode_usage, error_value, UsageOut, WireUsage};
use super::scan::{Scan, Seen};
use super::sse::{write_data, write_json, write_json_str, write_json_u64, SseParser, SseSink};
use super::{ErrorKind, FinishReason, Format, ResponseOptions, StreamEvent, TranslateError};

/// Decodes an upstream OpenAI Chat SSE stream into `StreamEvent`s.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    sse: SseParser,
    st: State,
}

/// What the decoder knows of the stream so far.
#[derive(Debug, Default)]
struct State {
    started: bool,
    /// `[DONE]` or an error chunk was seen.
    done: bool,
    /// A `finish_reason` was seen.
    finished: bool,
    /// The upstream reported an error inside the stream.
    errored: bool,
    /// Upstream `tool_calls[].index` -> our ordinal (0, 1, ...), for indices already started.
    tools: HashMap<u64, u32>,
    /// The head of the last chunk the fast path read, and its bytes (see [`Head`]).
    head: Option<Head>,
    head_bytes: Vec<u8>,
    /// Tests and fuzzing: read every chunk whole; and how many were read from a head.
    #[cfg(any(test, feature = "fuzzing"))]
    whole_only: bool,
    #[cfg(any(test, feature = "fuzzing"))]
    resumed: usize,
}

/// Each SSE event decoded where the parser hands it over (in the chunk itself, usually): no
/// copy of its data.
struct Sink<'a> {
    st: &'a mut State,
    out: &'a mut Vec<StreamEvent>,
}

impl SseSink for Sink<'_> {
    fn event(&mut self, _event: &str, data: &str) -> Result<(), TranslateError> {
        self.st.on_event(data, self.out)
    }
}

// === impl StreamDecoder ===

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder { sse: SseParser::new(), ..Self::default() }
    }

    /// Events completed before a framing error still count.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        self.sse.feed_to(chunk, &mut Sink { st: &mut self.st, out })
    }

    /// End of the upstream stream. A stream without a single chunk is
    /// `TranslateError::EmptyStream`; one that stops before any `finish_reason` and without
    /// `[DONE]` is `Truncated` (never a silent empty `stop` answer).
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        self.sse.finish_to(&mut Sink { st: &mut self.st, out })?;
        let st = &self.st;
        if st.done {
            return if st.started || st.errored { Ok(()) } else { Err(TranslateError::EmptyStream) };
        }
        match (st.started, st.finished) {
            (false, _) => Err(TranslateError::EmptyStream),
            (true, false) => Err(TranslateError::Truncated("no finish_reason and no [DONE]".into())),
            (true, true) => Ok(()),
        }
    }
}

// === impl State ===

impl State {
    fn on_event(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        let data = data.trim();
        if self.done || data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk = match self.scan(data) {
            Some(c) => c,
            None => serde_json::from_str::<Obj<Chunk>>(data)
                .map_err(|e| TranslateError::Stream(format!("chunk is not JSON: {e}")))?
                .0
                .unwrap_or_default(),
        };
        if let Some(e) = chunk.error {
            let envelope = format!("{{\"error\":{}}}", e.get());
            let (kind, message) = super::openai_chat::decode_error(0, envelope.as_bytes());
            out.push(StreamEvent::Error { kind, message });
            self.done = true;
            self.errored = true;
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.to_owned_string(),
                model: chunk.model.to_owned_string(),
            });
        }
        if let Some(choice) = &chunk.choices.0 {
            if let Some(delta) = choice.delta.as_ref() {
                if let Some(t) = delta.reasoning_content.non_empty() {
                    out.push(StreamEvent::ThinkingDelta { text: t.to_owned() });
                }
                if let Some(t) = delta.content.non_empty() {
                    out.push(StreamEvent::TextDelta { text: t.to_owned() });
                }
                if let Some(t) = delta.refusal.non_empty() {
                    out.push(StreamEvent::TextDelta { text: t.to_owned() });
                }
                for (pos, call) in delta.tool_calls.0.iter().enumerate() {
                    self.on_tool_call(pos, call.as_ref(), out);
                }
            }
            if let Some(r) = choice.finish_reason.0.as_deref() {
                self.finished = true;
                out.push(StreamEvent::Finish(finish_reason::decode(Format::OpenAiChat, r)));
            }
        }
        if let Some(u) = chunk.usage.as_ref() {
            out.push(StreamEvent::Usage(u.usage()));
        }
        Ok(())
    }

    /// The fast path for one chunk: from the end of the previous chunk's head when this one
    /// starts with the same bytes (after the first chunk: `id` and `model` are not needed
    /// again), else whole.
    fn scan<'a>(&mut self, data: &'a str) -> Option<Chunk<'a>> {
        #[cfg(any(test, feature = "fuzzing"))]
        if self.whole_only {
            return scan_chunk(data);
        }
        if let Some(h) = self.head.filter(|_| self.started && data.as_bytes().starts_with(&self.head_bytes)) {
            // The same bytes leave the same state: if the rest does not read, neither would
            // the whole.
            #[cfg(any(test, feature = "fuzzing"))]
            {
                self.resumed += 1;
            }
            return scan_chunk_from(data, Some(h)).map(|(c, _)| c);
        }
        let (c, head) = scan_chunk_from(data, None)?;
        self.head = head;
        self.head_bytes.clear();
        if let Some(h) = head {
            if h.len <= 1024 {
                self.head_bytes.extend_from_slice(&data.as_bytes()[..h.len]);
            } else {
                self.head = None;
            }
        }
        Some(c)
    }

    /// One element of `delta.tool_calls` (`None`: not an object).
    fn on_tool_call(&mut self, pos: usize, call: Option<&WireToolCall>, out: &mut Vec<StreamEvent>) {
        let upstream_index = call.and_then(|c| c.index.0).unwrap_or(pos as u64);
        let function = call.and_then(|c| c.function.as_ref());
        let next = self.tools.len() as u32;
        let index = match self.tools.get(&upstream_index) {
            Some(i) => *i,
            None => {
                let name = function.map_or("", |f| f.name.as_str());
                let id = call.map_or("", |c| c.id.as_str());
                if name.is_empty() && id.is_empty() {
                    // Arguments for a call never announced: nothing to attach them to.
                    return;
                }
                self.tools.insert(upstream_index, next);
                out.push(StreamEvent::ToolCallStart {
                    index: next,
                    id: id.to_owned(),
                    name: name.to_owned(),
                    signature: None,
                });
                next
            }
        };
        if let Some(f) = function.and_then(|f| f.arguments.non_empty()) {
            out.push(StreamEvent::ToolArgsDelta { index, fragment: f.to_owned() });
        }
    }
}

/// The fast path for a chunk of the everyday shape: the same `Chunk` `serde_json` would
/// decode, or `None` where the scanner gives up (then `serde_json` decides, see `scan`): any
/// syntax it does not take, a known key twice (serde's derive rejects it), a field of an
/// unexpected type (lenient there, left to serde), a non-null `error`.
#[cfg(any(test, feature = "fuzzing"))]
fn scan_chunk(data: &str) -> Option<Chunk<'_>> {
    scan_chunk_from(data, None).map(|(c, _)| c)
}

/// Where a chunk's members before `choices` end: the length of its text up to the value of
/// `choices`, and the members read by then. The chunks of one stream nearly always start with
/// the same bytes (`{"id":…,"object":…,"created":…,"model":…,"choices":`), which then need not
/// be read again.
#[derive(Clone, Copy, Debug)]
struct Head {
    len: usize,
    seen: Seen,
}

/// [`scan_chunk`], and the chunk's [`Head`] when it has one. With `resume`, the head of an
/// earlier chunk read by the fast path that `data` starts with, byte for byte: the read goes on
/// from there, in the state the same bytes left it in (so the chunk reads as a whole read
/// would, except that the head's `id` and `model` are left unset: the decoder takes them from
/// the first chunk only).
fn scan_chunk_from<'a>(data: &'a str, resume: Option<Head>) -> Option<(Chunk<'a>, Option<Head>)> {
    let mut c = Chunk::default();
    let mut seen = resume.map_or_else(Seen::default, |h| h.seen);
    let mut head = None;
    let mut member = |key: &'a str, p: &mut Scan<'a>| -> Option<()> {
        match key {
            "id" => c.id = seen.str(0, p)?,
            "model" => c.model = seen.str(1, p)?,
            "choices" => {
                if head.is_none() {
                    head = Some(Head { len: p.at(), seen });
                }
                seen.once(2)?;
                // The first element, an object; the others are skipped.
                let mut first = None;
                let mut n = 0;
                p.nullable(|p| {
                    p.elements(|p| {
                        n += 1;
                        match n {
                            1 => first = Some(scan_choice(p)?),
                            _ => p.skip()?,
                        }
                        Some(())
                    })
                })?;
                c.choices = First(first);
            }
            "usage" => {
                seen.once(3)?;
                c.usage = Obj(p.nullable(WireUsage::scan)?);
            }
            "error" => {
                seen.once(4)?;
                p.null()?;
            }
            _ => p.skip()?,
        }
        Some(())
    };
    let mut p = match resume {
        None => {
            let mut p = Scan::new(data);
            p.members(&mut member)?;
            p
        }
        Some(h) => {
            let mut p = Scan::resume(data, h.len, 1);
            member("choices", &mut p)?;
            p.more_members(&mut member)?;
            p
        }
    };
    p.end()?;
    Some((c, head))
}

fn scan_choice<'a>(p: &mut Scan<'a>) -> Option<Choice<'a>> {
    let mut c = Choice::default();
    let mut seen = Seen::default();
    p.members(|key, p| {
        match key {
            "delta" => {
                seen.once(0)?;
                c.delta = Obj(p.nullable(scan_delta)?);
            }
            "finish_reason" => c.finish_reason = seen.str(1, p)?,
            _ => p.skip()?,
        }
        Some(())
    })?;
    Some(c)
}

fn scan_delta<'a>(p: &mut Scan<'a>) -> Option<Delta<'a>> {
    let mut d = Delta::default();
    let mut seen = Seen::default();
    p.members(|key, p| {
        match key {
            "content" => d.content = seen.str(0, p)?,
            "reasoning_content" => d.reasoning_content = seen.str(1, p)?,
            "refusal" => d.refusal = seen.str(2, p)?,
            "tool_calls" => {
                seen.once(3)?;
                p.nullable(|p| {
                    p.elements(|p| {
                        let call = p.nullable(scan_tool_call)?;
                        d.tool_calls.0.push(call);
                        Some(())
                    })
                })?;
            }
            _ => p.skip()?,
        }
        Some(())
    })?;
    Some(d)
}

fn scan_tool_call<'a>(p: &mut Scan<'a>) -> Option<WireToolCall<'a>> {
    let mut t = WireToolCall::default();
    let mut seen = Seen::default();
    p.members(|key, p| {
        match key {
            "index" => {
                seen.once(0)?;
                t.index = p.u64_or_null()?;
            }
            "id" => t.id = seen.str(1, p)?,
            "function" => {
                seen.once(2)?;
                t.function = Obj(p.nullable(|p| {
                    let mut f = WireFunction::default();
                    let mut seen = Seen::default();
                    p.members(|key, p| {
                        match key {
                            "name" => f.name = seen.str(0, p)?,
                            "arguments" => f.arguments = seen.str(1, p)?,
                            _ => p.skip()?,
                        }
                        Some(())
                    })?;
                    Some(f)
                })?);
            }
            _ => p.skip()?,
        }
        Some(())
    })?;
    Some(t)
}

/// Panics unless the fast path reads `data` as `serde_json` does or gives up (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(data: &str) {
    if let Some(c) = scan_chunk(data) {
        match serde_json::from_str::<Obj<Chunk>>(data) {
            Ok(want) => assert_eq!(format!("{c:?}"), format!("{:?}", want.0.unwrap_or_default()), "{data}"),
            Err(e) => panic!("the chunk fast path accepted what serde_json rejects ({e}): {data}"),
        }
    }
}

/// Panics unless `stream`, decoded with chunks read from the previous chunk's head, gives the
/// events and errors it gives with every chunk read whole (tests, fuzzing). Returns how many
/// chunks were read from a head.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn resume_agrees(stream: &[u8]) -> usize {
    let run = |whole_only: bool| {
        let mut d = StreamDecoder::new();
        d.st.whole_only = whole_only;
        let mut out = Vec::new();
        let fed = d.feed(stream, &mut out).map_err(|e| e.to_string());
        let end = d.finish(&mut out).map_err(|e| e.to_string());
        ((format!("{out:?}"), fed, end), d.st.resumed)
    };
    let ((resumed, n), (whole, _)) = (run(false), run(true));
    assert_eq!(resumed, whole, "{}", String::from_utf8_lossy(stream));
    n
}

/// One `chat.completion.chunk`, typed: the fields the decoder reads, borrowed from the event's
/// data; any field of an unexpected JSON type reads as absent (see `lenient`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Chunk<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    choices: First<Choice<'a>>,
    usage: Obj<WireUsage>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Obj<Delta<'a>>,
    #[serde(borrow)]
    finish_reason: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Str<'a>,
    #[serde(borrow)]
    reasoning_content: Str<'a>,
    #[serde(borrow)]
    refusal: Str<'a>,
    #[serde(borrow)]
    tool_calls: Many<WireToolCall<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireToolCall<'a> {
    index: U64,
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    function: Obj<WireFunction<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireFunction<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    arguments: Str<'a>,
}

/// Encodes `StreamEvent`s as an OpenAI Chat SSE stream for the client.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    started: bool,
    finished: bool,
    done: bool,
    /// Tool indices whose first chunk (id + name) was sent.
    tools_started: Vec<u32>,
    usage: Option<super::Usage>,
}

// === impl StreamEncoder ===

impl StreamEncoder {
    pub fn new(opts: &ResponseOptions) -> Self {
        StreamEncoder {
            model: opts.model.to_owned(),
            include_usage: opts.include_usage,
            id: String::new(),
            created: 0,
            started: false,
            finished: false,
            done: false,
            tools_started: Vec::new(),
            usage: None,
        }
    }

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let StreamEvent::Start { id, .. } = ev {
            if !self.started {
                self.id = if id.is_empty() { "chatcmpl-gateway".to_owned() } else { id.clone() };
                self.start(out);
            }
            return;
        }
        if let StreamEvent::Error { kind, message } = ev {
            self.fail(*kind, message, out);
            return;
        }
        if let StreamEvent::Usage(u) = ev {
            self.usage = Some(*u);
            return;
        }
        if self.finished {
            // Nothing may follow the finish_reason chunk except usage.
            return;
        }
        self.start(out);
        match ev {
            StreamEvent::TextDelta { text } if !text.is_empty() => {
                self.chunk(DeltaOut::Content { content: text }, None, out)
            }
            StreamEvent::ThinkingDelta { text } if !text.is_empty() => {
                self.chunk(DeltaOut::Reasoning { reasoning_content: text }, None, out)
            }
            StreamEvent::ToolCallStart { index, id, name, .. } => {
                if self.tools_started.contains(index) {
                    return;
                }
                self.tools_started.push(*index);
                let id = if id.is_empty() { format!("call_{index}") } else { id.clone() };
                let call = ToolCallOut {
                    index: *index,
                    id: Some(&id),
                    ty: Some("function"),
                    function: FunctionOut { name: Some(name), arguments: "" },
                };
                self.chunk(DeltaOut::ToolCalls { tool_calls: [call] }, None, out);
            }
            StreamEvent::ToolArgsDelta { index, fragment } if !fragment.is_empty() => {
                if !self.tools_started.contains(index) {
                    return;
                }
                let call = ToolCallOut {
                    index: *index,
                    id: None,
                    ty: None,
                    function: FunctionOut { name: None, arguments: fragment },
                };
                self.chunk(DeltaOut::ToolCalls { tool_calls: [call] }, None, out);
            }
            StreamEvent::Finish(reason) => self.finish_chunk(*reason, out),
            _ => {}
        }
    }

    /// End of the upstream stream: the finish chunk (`stop` if none came), usage if asked, `[DONE]`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        if !self.finished {
            self.finish_chunk(FinishReason::Stop, out);
        }
        if self.include_usage {
            let u = self.usage.unwrap_or_default();
            let v = UsageChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: [],
                usage: encode_usage(&u),
            };
            write_json(out, "", &v);
        }
        write_data(out, "[DONE]");
        self.done = true;
    }

    fn fail(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<u8>) {
        write_json(out, "", &error_value(kind, message));
        write_data(out, "[DONE]");
        self.done = true;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = "chatcmpl-gateway".to_owned();
        }
        self.chunk(DeltaOut::Role { role: "assistant", content: "" }, None, out);
    }

    fn finish_chunk(&mut self, reason: FinishReason, out: &mut Vec<u8>) {
        let mut reason = reason;
        if reason == FinishReason::Stop && !self.tools_started.is_empty() {
            reason = FinishReason::ToolCalls;
        }
        self.chunk(DeltaOut::Empty {}, Some(finish_reason::encode(Format::OpenAiChat, reason)), out);
        self.finished = true;
    }

    fn chunk(&self, delta: DeltaOut, finish: Option<&'static str>, out: &mut Vec<u8>) {
        // Text and reasoning deltas, the chunk of nearly every event, from literal pieces (the
        // same bytes as serialising `ChunkOut`, see the tests).
        if let (DeltaOut::Content { content: text } | DeltaOut::Reasoning { reasoning_content: text }, None) =
            (&delta, finish)
        {
            let field: &[u8] = if matches!(delta, DeltaOut::Content { .. }) {
                b"\"content\":"
            } else {
                b"\"reasoning_content\":"
            };
            out.extend_from_slice(b"data: {\"id\":");
            write_json_str(out, &self.id);
            out.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            write_json_u64(out, self.created);
            out.extend_from_slice(b",\"model\":");
            write_json_str(out, &self.model);
            out.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{");
            out.extend_from_slice(field);
            write_json_str(out, text);
            out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
            return;
        }
        self.typed_chunk(delta, finish, out);
    }

    fn typed_chunk(&self, delta: DeltaOut, finish: Option<&'static str>, out: &mut Vec<u8>) {
        let v = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [ChoiceOut { index: 0, delta, logprobs: None, finish_reason: finish }],
        };
        write_json(out, "", &v);
    }
}

// The chunks the encoder writes, typed: serialised straight into the output buffer in
// OpenAI's own field order, with no `serde_json::Value` built on the way.

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut<'a>; 1],
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Clone, Serialize)]
#[serde(untagged)]
enum DeltaOut<'a> {
    Role { role: &'static str, content: &'static str },
    Content { content: &'a str },
    Reasoning { reasoning_content: &'a str },
    ToolCalls { tool_calls: [ToolCallOut<'a>; 1] },
    Empty {},
}

#[derive(Clone, Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    ty: Option<&'static str>,
    function: FunctionOut<'a>,
}

#[derive(Clone, Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: UsageOut,
}

#[cfg(test)]
#[path = "openai_chat_stream_tests.rs"]
mod tests;
