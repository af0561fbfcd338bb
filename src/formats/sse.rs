//! Server-Sent Events framing: an incremental parser fed arbitrary byte chunks, and writers.
//! Knows nothing about what the `data` means (that is each format's stream decoder).
//!
//! Parsing follows the WHATWG event-stream rules that matter for LLM APIs: lines end in
//! `\n`, `\r\n` or `\r` (a `\r` at the end of a chunk waits for the next byte), `:` lines
//! are comments, `data` lines of one event are joined with `\n`, one space after the colon
//! is dropped, a blank line dispatches. `id` and `retry` are ignored.

use super::TranslateError;

/// The most bytes one upstream stream event may take, for every stream decoder that buffers
/// an unfinished event: this SSE parser, Gemini's JSON-array splitter and the OpenAI usage
/// observer (`passthrough::OpenAiStreamUsage`). A bigger event is an error
/// (`TranslateError::EventTooLarge`) that ends the stream, so a corrupt or hostile upstream
/// costs at most this much memory per stream, never gigabytes.
///
/// 16 MiB: real events are small (a delta, a usage chunk) except those carrying whole images
/// (Gemini image output, Responses `image_generation` results, a few MiB of base64), and it
/// matches the largest payload of an AWS event-stream frame (`eventstream::MAX_FRAME_LEN`).
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event. `event` is empty when the upstream sent no `event:` field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Where [`SseParser::feed_to`] hands each event as it completes, borrowed: from the chunk
/// being fed when the event lies whole in it as one `data:` line (the everyday case), else from
/// the parser's buffers. A sink that reads events in place copies nothing.
pub trait SseSink {
    /// One event (`event` is empty when the upstream sent no `event:` field).
    fn event(&mut self, event: &str, data: &str) -> Result<(), TranslateError>;
}

/// Collecting owned events.
impl SseSink for Vec<SseEvent> {
    fn event(&mut self, event: &str, data: &str) -> Result<(), TranslateError> {
        self.push(SseEvent { event: event.to_owned(), data: data.to_owned() });
        Ok(())
    }
}

/// A sink and its first error: the events after it in the same feed are dropped (as a decoder
/// that stops at its first bad event drops them), and the chunk is still parsed to its end.
struct Deliver<'s, S: ?Sized> {
    sink: &'s mut S,
    error: Option<TranslateError>,
}

impl<S: SseSink + ?Sized> Deliver<'_, S> {
    #[inline]
    fn event(&mut self, event: &str, data: &str) {
        if self.error.is_none() {
            if let Err(e) = self.sink.event(event, data) {
                self.error = Some(e);
            }
        }
    }

    /// The sink's error first, else the parser's.
    fn result(self, framing: Result<(), TranslateError>) -> Result<(), TranslateError> {
        match self.error {
            Some(e) => Err(e),
            None => framing,
        }
    }
}

/// Incremental SSE parser.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line being received.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: skip a `\n` at the start of the next one.
    skip_lf: bool,
    /// Still at the very start of the stream (a UTF-8 BOM is dropped there).
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    /// Tests: every event through the buffers, none handed out whole from the chunk.
    #[cfg(any(test, feature = "fuzzing"))]
    general_only: bool,
}

/// A line buffer at most this big keeps its capacity between lines.
const KEEP_CAPACITY: usize = 64 * 1024;

/// An event's data buffer at most this big keeps its capacity between events (the everyday
/// event never fills it: it is read in place). Small, since an idle stream holds it.
const KEEP_DATA_CAPACITY: usize = 4 * 1024;

// === impl SseParser ===

impl SseParser {
    pub fn new() -> Self {
        SseParser { at_start: true, ..Self::default() }
    }

    /// Feed the next chunk; every event it completes is pushed onto `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), TranslateError> {
        self.feed_to(chunk, out)
    }

    /// Feed the next chunk; every event it completes goes to `sink` as it completes. The
    /// sink's first error stops the delivery (the chunk is still parsed) and is returned
    /// before any framing error.
    pub fn feed_to<S: SseSink + ?Sized>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), TranslateError> {
        let mut d = Deliver { sink, error: None };
        let framing = self.feed_inner(chunk, &mut d);
        d.result(framing)
    }

    fn feed_inner<S: SseSink + ?Sized>(
        &mut self,
        chunk: &[u8],
        d: &mut Deliver<S>,
    ) -> Result<(), TranslateError> {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        if self.at_start && !rest.is_empty() {
            let bom = b"\xEF\xBB\xBF";
            let have = self.line.len() + rest.len();
            if have < 3 && bom.starts_with(&[&self.line[..], rest].concat()) {
                self.line.extend_from_slice(rest);
                return Ok(());
            }
            self.at_start = false;
            let mut joined = std::mem::take(&mut self.line);
            joined.extend_from_slice(rest);
            let start = if joined.starts_with(bom) { 3 } else { 0 };
            return self.feed_lines(&joined[start..], d);
        }
        self.feed_lines(rest, d)
    }

    fn feed_lines<S: SseSink + ?Sized>(
        &mut self,
        mut rest: &[u8],
        d: &mut Deliver<S>,
    ) -> Result<(), TranslateError> {
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) {
            let (head, tail) = rest.split_at(pos);
            if self.line.is_empty() {
                if let Some(end) = self.whole_data_event(rest, pos, d) {
                    rest = &rest[end..];
                    continue;
                }
                self.process_line(head, d);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.process_line(&line, d);
                line.clear();
                if line.capacity() <= KEEP_CAPACITY {
                    self.line = line; // keep the capacity
                }
            }
            if self.data.len() > MAX_EVENT_BYTES {
                self.line = Vec::new();
                self.data = String::new();
                return Err(TranslateError::EventTooLarge { limit: MAX_EVENT_BYTES });
            }
            rest = &tail[1..];
            if tail[0] == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        if self.line.len() + rest.len() + self.data.len() > MAX_EVENT_BYTES {
            self.line = Vec::new();
            self.data = String::new();
            return Err(TranslateError::EventTooLarge { limit: MAX_EVENT_BYTES });
        }
        super::stream_usage::extend_bounded(&mut self.line, rest);
        Ok(())
    }

    /// The everyday event, handed to the sink straight from `rest` without a copy: nothing
    /// pending, a `data:` line (ending at `pos`) of valid UTF-8 right followed by the blank line
    /// that dispatches it. Returns where the event ends in `rest`, or `None` (nothing done) when
    /// it is anything else, which then takes the general path: the same event either way.
    #[inline]
    fn whole_data_event<S: SseSink + ?Sized>(
        &mut self,
        rest: &[u8],
        pos: usize,
        d: &mut Deliver<S>,
    ) -> Option<usize> {
        if self.has_data || !self.event.is_empty() {
            return None;
        }
        #[cfg(any(test, feature = "fuzzing"))]
        if self.general_only {
            return None;
        }
        let value = rest[..pos].strip_prefix(b"data:")?;
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if value.len() > MAX_EVENT_BYTES {
            return None;
        }
        let data = std::str::from_utf8(value).ok()?;
        // The data line's end: `\n`, `\r\n`, or `\r` followed by another byte.
        let mut at = pos + 1;
        if rest[pos] == b'\r' && *rest.get(at)? == b'\n' {
            at += 1;
        }
        // The blank line right after it: `\n`, `\r\n`, or `\r` (at the end of the chunk, a
        // `\n` starting the next one belongs to it).
        let mut end = at + 1;
        match rest.get(at)? {
            b'\n' => {}
            b'\r' => match rest.get(end) {
                Some(b'\n') => end += 1,
                Some(_) => {}
                None => self.skip_lf = true,
            },
            _ => return None,
        }
        d.event("", data);
        Some(end)
    }

    /// End of input: a last line without its newline and an event without its blank line
    /// are still delivered (some upstreams close without the final `\n\n`).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        // Collecting into a `Vec` never fails.
        let _ = self.finish_to(out);
    }

    /// [`Self::finish`], handing the last events to `sink`.
    pub fn finish_to<S: SseSink + ?Sized>(&mut self, sink: &mut S) -> Result<(), TranslateError> {
        let mut d = Deliver { sink, error: None };
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            if !(self.at_start && b"\xEF\xBB\xBF".starts_with(&line)) {
                self.process_line(&line, &mut d);
            }
        }
        self.dispatch(&mut d);
        d.result(Ok(()))
    }

    fn process_line<S: SseSink + ?Sized>(&mut self, line: &[u8], d: &mut Deliver<S>) {
        if line.is_empty() {
            self.dispatch(d);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => {
                self.event.clear();
                self.event.push_str(&lossy(value));
            }
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&lossy(value));
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch<S: SseSink + ?Sized>(&mut self, d: &mut Deliver<S>) {
        if self.has_data {
            d.event(&self.event, &self.data);
        }
        self.event.clear();
        self.data.clear();
        if self.data.capacity() > KEEP_DATA_CAPACITY {
            self.data = String::new();
        }
        self.has_data = false;
    }
}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD. The same as `String::from_utf8_lossy`,
/// whose character-by-character walk costs several times the validation on valid text.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Panics unless events read in place from the chunk are the buffered path's, for `stream`
/// fed in the chunks `splits` gives (tests, fuzzing): the same events and the same errors.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(stream: &[u8], mut splits: impl FnMut() -> usize) {
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let end = (at + splits().max(1)).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    let run = |mut p: SseParser| {
        let mut out = Vec::new();
        let mut errors: Vec<_> =
            chunks.iter().map(|c| p.feed(c, &mut out).err().map(|e| e.to_string())).collect();
        errors.push(p.finish_to(&mut out).err().map(|e| e.to_string()));
        (out, errors)
    };
    let general = run(SseParser { general_only: true, ..SseParser::new() });
    assert_eq!(run(SseParser::new()), general, "{:?}", String::from_utf8_lossy(stream));
}

/// Append `event: <name>` (when non-empty) and `data:` lines for `data`, then a blank line.
pub fn write_event(out: &mut Vec<u8>, event: &str, data: &str) {
    if !event.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    write_data(out, data);
}

/// Append one data-only event (`data: ...\n\n`), splitting embedded newlines into lines.
pub fn write_data(out: &mut Vec<u8>, data: &str) {
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Append an event whose data is `value` serialised as JSON (no raw newlines possible): a
/// `serde_json::Value`, or a typed event the encoder writes straight into `out`.
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, event: &str, value: &T) {
    if !event.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Serialising into a Vec cannot fail (no map with non-string keys is ever written).
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// Append `s` as a JSON string (quoted, escaped), byte for byte what `serde_json` writes.
/// Text without a quote, backslash or control character (nearly every delta) is copied in
/// one piece; anything else goes through `serde_json`'s escaper. The per-chunk events are
/// written with this and literal keys: a derived `Serialize` escapes every key on every
/// chunk, which cost more than the rest of the event.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Nothing to escape: no `"`, `\` or control character (8 bytes at a time).
    if super::scan::find_stop(s.as_bytes(), 0).is_none() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Append `n` in decimal.
pub fn write_json_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
