//! `streamGenerateContent` in both directions: `StreamDecoder` (SSE from `alt=sse`, or the
//! JSON-array form, sniffed from the first byte -> IR events), `StreamEncoder` (IR events ->
//! SSE or the JSON-array form for a client) and `check_stream_grammar`. No I/O.
//!
//! Gemini has no start/stop events: every chunk is a whole `GenerateContentResponse` with
//! cumulative `usageMetadata`, and function calls arrive whole (the encoder buffers argument
//! fragments until the call is complete).

use serde_json::{json, Value};

use super::super::sse::{write_json_str, SseEvent, SseParser, MAX_EVENT_BYTES};
use super::super::{ErrorKind, FinishReason, ResponseOptions, StreamEvent, ToolCall, TranslateError, Usage};
use super::{
    call_part, candidate_finish, error_value, kind_from_status_name, str_of, synth_call_id, usage_from_value,
    usage_to_value,
};

// === JSON-array framing ===

/// Splits `[{...},\r\n{...}]` fed in arbitrary chunks into its top-level objects.
#[derive(Debug, Default)]
struct ArraySplitter {
    buf: Vec<u8>,
    depth: usize,
    in_string: bool,
    escape: bool,
}

impl ArraySplitter {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), TranslateError> {
        for &b in chunk {
            if self.depth == 0 {
                match b {
                    b'{' => {
                        self.depth = 1;
                        self.buf.push(b);
                    }
                    b'[' | b']' | b',' | b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => {
                        return Err(TranslateError::Stream(format!(
                            "unexpected byte {:?} between JSON-array elements",
                            b as char
                        )))
                    }
                }
                continue;
            }
            if self.buf.len() == MAX_EVENT_BYTES {
                self.buf = Vec::new();
                return Err(TranslateError::EventTooLarge { limit: MAX_EVENT_BYTES });
            }
            self.buf.push(b);
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        out.push(std::mem::take(&mut self.buf));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

// === Decoder: Gemini stream -> IR ===

#[derive(Debug, Default)]
enum Framing {
    #[default]
    Unknown,
    Sse(SseParser),
    Array(ArraySplitter),
}

#[derive(Debug, Default)]
pub struct StreamDecoder {
    framing: Framing,
    started: bool,
    done: bool,
    finished: bool,
    n_calls: u32,
    in_thought: bool,
    usage: Option<Usage>,
}

// === impl StreamDecoder ===

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        let mut chunk = chunk;
        if matches!(self.framing, Framing::Unknown) {
            let skip = chunk
                .iter()
                .take_while(|b| b.is_ascii_whitespace() || **b == 0xEF || **b == 0xBB || **b == 0xBF)
                .count();
            match chunk.get(skip) {
                None => return Ok(()),
                Some(b'[') => self.framing = Framing::Array(ArraySplitter::default()),
                Some(_) => self.framing = Framing::Sse(SseParser::new()),
            }
            chunk = &chunk[skip..];
        }
        let mut jsons: Vec<String> = Vec::new();
        // Elements completed before a framing error still count.
        let framing = match &mut self.framing {
            Framing::Unknown => Ok(()),
            Framing::Sse(p) => {
                let mut evs: Vec<SseEvent> = Vec::new();
                let r = p.feed(chunk, &mut evs);
                jsons.extend(evs.into_iter().map(|e| e.data));
                r
            }
            Framing::Array(s) => {
                let mut objs = Vec::new();
                let r = s.feed(chunk, &mut objs);
                jsons.extend(objs.into_iter().map(|o| String::from_utf8_lossy(&o).into_owned()));
                r
            }
        };
        for j in jsons {
            self.chunk(&j, out)?;
        }
        framing
    }

    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if let Framing::Sse(p) = &mut self.framing {
            let mut evs = Vec::new();
            p.finish(&mut evs);
            for e in evs {
                // An event cut off by the end of input is a truncated stream.
                if self.chunk(&e.data, out).is_err() && !self.done {
                    self.done = true;
                    out.push(StreamEvent::Error {
                        kind: ErrorKind::UpstreamError,
                        message: "the upstream stream ended inside an event".into(),
                    });
                }
            }
        }
        if let Framing::Array(s) = &self.framing {
            if s.depth > 0 && !self.done {
                self.done = true;
                out.push(StreamEvent::Error {
                    kind: ErrorKind::UpstreamError,
                    message: "the upstream stream ended inside a JSON element".into(),
                });
                return Ok(());
            }
        }
        if !self.done {
            self.done = true;
            if !self.started {
                return Err(TranslateError::EmptyStream);
            }
            if !self.finished {
                return Err(TranslateError::Truncated("no finishReason".into()));
            }
        }
        Ok(())
    }

    fn chunk(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        if self.done || data.trim() == "[DONE]" || data.trim().is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| TranslateError::Stream(format!("chunk is not JSON: {e}")))?;
        if let Some(err) = v.get("error") {
            self.done = true;
            out.push(StreamEvent::Error {
                kind: kind_from_status_name(str_of(err, "status")).unwrap_or(ErrorKind::UpstreamError),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream stream error")
                    .to_owned(),
            });
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: str_of(&v, "responseId").to_owned(),
                model: str_of(&v, "modelVersion").to_owned(),
            });
        }
        let cand = v.pointer("/candidates/0").unwrap_or(&Value::Null);
        for p in cand.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
            self.part(p, out);
        }
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            let u = usage_from_value(u);
            if self.usage != Some(u) {
                self.usage = Some(u);
                out.push(StreamEvent::Usage(u));
            }
        }
        let blocked = cand.is_null() && v.pointer("/promptFeedback/blockReason").is_some();
        if !self.finished && (cand.get("finishReason").is_some() || blocked) {
            self.finished = true;
            out.push(StreamEvent::Finish(candidate_finish(&v, cand, self.n_calls > 0)));
        }
        Ok(())
    }

    fn part(&mut self, p: &Value, out: &mut Vec<StreamEvent>) {
        let signature = p.get("thoughtSignature").and_then(Value::as_str).map(str::to_owned);
        if let Some(fc) = p.get("functionCall") {
            self.in_thought = false;
            let index = self.n_calls;
            self.n_calls += 1;
            let name = str_of(fc, "name").to_owned();
            let id = match fc.get("id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => id.to_owned(),
                _ => synth_call_id(index as usize, &name),
            };
            let args = fc.get("args").map_or_else(|| "{}".to_owned(), super::value_to_tool_arguments);
            out.push(StreamEvent::ToolCallStart { index, id, name, signature });
            out.push(StreamEvent::ToolArgsDelta { index, fragment: args });
            return;
        }
        let text = str_of(p, "text");
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            self.in_thought = true;
            if !text.is_empty() {
                out.push(StreamEvent::ThinkingDelta { text: text.to_owned() });
            }
            if let Some(s) = signature {
                out.push(StreamEvent::ThinkingSignature { signature: super::tag_signature(&s) });
            }
            return;
        }
        // A signature on a plain text part has no thinking block to belong to in a stream;
        // it is dropped (Gemini only requires the ones on function calls back).
        self.in_thought = false;
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta { text: text.to_owned() });
        }
    }
}

// === Encoder: IR -> Gemini stream ===

#[derive(Debug)]
pub struct StreamEncoder {
    sse: bool,
    model: String,
    id: String,
    /// JSON-array form: `[` written / an element written (so the next needs `,\r\n`).
    opened: bool,
    any: bool,
    done: bool,
    /// Tool calls whose arguments are still arriving, in start order.
    pending: Vec<(u32, ToolCall)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

// === impl StreamEncoder ===

impl StreamEncoder {
    pub fn new(opts: &ResponseOptions) -> Self {
        StreamEncoder {
            sse: opts.gemini_sse,
            model: opts.model.to_owned(),
            id: String::new(),
            opened: false,
            any: false,
            done: false,
            pending: Vec::new(),
            usage: None,
            finish: None,
        }
    }

    fn write(&mut self, v: &Value, out: &mut Vec<u8>) {
        // Serialising a Value into a Vec cannot fail.
        self.write_with(out, |_, out| {
            let _ = serde_json::to_writer(&mut *out, v);
        });
    }

    /// One chunk (SSE event or array element) written by `element` into `out`.
    fn write_with(&mut self, out: &mut Vec<u8>, element: impl FnOnce(&Self, &mut Vec<u8>)) {
        if self.sse {
            out.extend_from_slice(b"data: ");
            element(self, out);
            out.extend_from_slice(b"\n\n");
            return;
        }
        if !self.opened {
            self.opened = true;
            out.push(b'[');
        }
        if self.any {
            out.extend_from_slice(b",\r\n");
        }
        self.any = true;
        element(self, out);
    }

    /// A text chunk, the chunk of nearly every event, written from literal pieces (the same
    /// JSON as `chunk` makes of it; see the tests).
    fn text_chunk(&mut self, text: &str, out: &mut Vec<u8>) {
        self.write_with(out, |enc, out| {
            out.extend_from_slice(b"{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":");
            write_json_str(out, text);
            out.extend_from_slice(b"}]},\"index\":0}]");
            if let Some(u) = &enc.usage {
                out.extend_from_slice(b",\"usageMetadata\":");
                // Serialising a Value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &usage_to_value(u));
            }
            out.extend_from_slice(b",\"modelVersion\":");
            write_json_str(out, &enc.model);
            out.extend_from_slice(b",\"responseId\":");
            write_json_str(out, &enc.id);
            out.push(b'}');
        });
    }

    fn chunk(&self, parts: Vec<Value>, finish: Option<FinishReason>) -> Value {
        let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(r) = finish {
            cand["finishReason"] = json!(super::finish_reason::encode(super::Format::Gemini, r));
        }
        let mut v = json!({"candidates": [cand]});
        if let Some(u) = &self.usage {
            v["usageMetadata"] = usage_to_value(u);
        }
        v["modelVersion"] = json!(self.model);
        v["responseId"] = json!(self.id);
        v
    }

    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            return;
        }
        let parts: Vec<Value> = self.pending.drain(..).map(|(_, c)| call_part(&c)).collect();
        let v = self.chunk(parts, None);
        self.write(&v, out);
    }

    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Start { id, model } => {
                self.id = id.clone();
                if self.model.is_empty() {
                    self.model = model.clone();
                }
            }
            StreamEvent::TextDelta { text } => {
                self.flush_calls(out);
                self.text_chunk(text, out);
            }
            StreamEvent::ThinkingDelta { text } => {
                self.flush_calls(out);
                if !text.is_empty() {
                    let v = self.chunk(vec![json!({"text": text, "thought": true})], None);
                    self.write(&v, out);
                }
            }
            StreamEvent::ThinkingSignature { signature } => {
                self.flush_calls(out);
                let part = json!({"text": "", "thought": true, "thoughtSignature": signature});
                let v = self.chunk(vec![part], None);
                self.write(&v, out);
            }
            StreamEvent::ToolCallStart { index, id, name, signature } => self.pending.push((
                *index,
                ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                },
            )),
            StreamEvent::ToolArgsDelta { index, fragment } => {
                if let Some((_, c)) = self.pending.iter_mut().find(|(i, _)| i == index) {
                    c.arguments.push_str(fragment);
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(r) => self.finish = Some(*r),
            StreamEvent::Error { kind, message } => {
                self.flush_calls(out);
                self.done = true;
                let v = error_value(*kind, message);
                self.write(&v, out);
                self.close(out);
            }
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if !self.sse {
            if !self.opened {
                out.push(b'[');
            }
            out.push(b']');
        }
    }

    /// End of the IR stream: the last chunk carries any buffered calls, `finishReason` and
    /// the final usage; the JSON-array form is closed. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        let mut parts: Vec<Value> = self.pending.drain(..).map(|(_, c)| call_part(&c)).collect();
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        let finish = self.finish.unwrap_or(FinishReason::Stop);
        let v = self.chunk(parts, Some(finish));
        self.write(&v, out);
        self.close(out);
    }
}

// === Grammar ===

/// Check a Gemini stream (SSE or JSON-array form): every element is a JSON object that is a
/// `GenerateContentResponse` (or an `{"error":...}`, which must be last), and `finishReason`
/// appears only on the last chunk that has candidates.
pub fn check_stream_grammar(bytes: &[u8]) -> Result<(), String> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let mut elems: Vec<String> = Vec::new();
    match start.map(|i| bytes[i]) {
        None => return Err("empty stream".into()),
        Some(b'[') => {
            let mut s = ArraySplitter::default();
            let mut objs = Vec::new();
            s.feed(bytes, &mut objs).map_err(|e| e.to_string())?;
            if s.depth != 0 {
                return Err("the JSON array ends inside an element".into());
            }
            let trimmed = bytes.trim_ascii_end();
            if !trimmed.ends_with(b"]") {
                return Err("the JSON array is not closed with `]`".into());
            }
            elems.extend(objs.into_iter().map(|o| String::from_utf8_lossy(&o).into_owned()));
        }
        Some(_) => {
            let mut p = SseParser::new();
            let mut evs = Vec::new();
            p.feed(bytes, &mut evs).map_err(|e| e.to_string())?;
            p.finish(&mut evs);
            elems.extend(evs.into_iter().map(|e| e.data));
        }
    }
    if elems.is_empty() {
        return Err("the stream has no chunks".into());
    }
    let mut finished_at: Option<usize> = None;
    let n = elems.len();
    for (i, e) in elems.iter().enumerate() {
        let v: Value = serde_json::from_str(e).map_err(|err| format!("chunk {i} is not JSON: {err}"))?;
        let Some(o) = v.as_object() else {
            return Err(format!("chunk {i} is not a JSON object"));
        };
        if o.contains_key("error") {
            if i + 1 != n {
                return Err(format!("error chunk {i} is not the last"));
            }
            continue;
        }
        if !(o.contains_key("candidates")
            || o.contains_key("usageMetadata")
            || o.contains_key("promptFeedback"))
        {
            return Err(format!("chunk {i} is not a GenerateContentResponse"));
        }
        let has_cands = o.get("candidates").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if has_cands {
            if let Some(f) = finished_at {
                return Err(format!("chunk {i} has candidates after finishReason on chunk {f}"));
            }
            if v.pointer("/candidates/0/finishReason").is_some() {
                finished_at = Some(i);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod text_chunk_tests {
    use super::*;

    /// The text chunk written from literal pieces is the JSON `chunk` makes of the same text,
    /// with and without usage, in both stream forms.
    #[test]
    fn text_chunks_are_what_chunk_makes() {
        let text = "plain, \"quoted\", a \\ and a\nnewline, é";
        for sse in [true, false] {
            for usage in [
                None,
                Some(Usage { input_tokens: 9, output_tokens: 4, cache_read_tokens: 2, ..Usage::default() }),
            ] {
                let opts = ResponseOptions { model: "gemini-\"x\"", gemini_sse: sse, include_usage: false };
                let mut enc = StreamEncoder::new(&opts);
                enc.id = "resp-1".into();
                enc.usage = usage;
                let mut templated = Vec::new();
                enc.text_chunk(text, &mut templated);
                enc.text_chunk(text, &mut templated);
                let mut valued = Vec::new();
                let mut enc2 = StreamEncoder::new(&opts);
                enc2.id = "resp-1".into();
                enc2.usage = usage;
                for _ in 0..2 {
                    let v = enc2.chunk(vec![json!({ "text": text })], None);
                    enc2.write(&v, &mut valued);
                }
                let elements = |b: &[u8]| -> Vec<Value> {
                    let t = std::str::from_utf8(b).unwrap();
                    if sse {
                        t.split("\n\n")
                            .filter(|e| !e.is_empty())
                            .map(|e| serde_json::from_str(&e[6..]).unwrap())
                            .collect()
                    } else {
                        serde_json::from_str::<Vec<Value>>(&format!("{t}]")).unwrap()
                    }
                };
                assert_eq!(elements(&templated), elements(&valued), "sse {sse}, usage {usage:?}");
                assert_eq!(elements(&templated).len(), 2);
            }
        }
    }
}
