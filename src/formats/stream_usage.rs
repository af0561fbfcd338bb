//! `OpenAiStreamUsage`: watches a same-format OpenAI Chat SSE stream on its way to the client,
//! picks up the usage chunk, and (when the gateway asked for usage on the client's behalf)
//! removes the usage-only chunk the client did not ask for. Re-exported as
//! `passthrough::OpenAiStreamUsage`. Pure: no I/O.
//!
//! Costs, whatever the upstream sends:
//! - linear: every byte is scanned once (line ends are searched only in new bytes);
//! - bounded: one event may hold at most [`MAX_EVENT_BYTES`]; a bigger one ends the stream
//!   with an OpenAI error event ([`OpenAiStreamUsage::error`] says why);
//! - prompt: in observe mode every chunk is forwarded as it came. In strip mode an event is
//!   held back only while it could still be the usage-only chunk (at most [`STRIP_HOLD_MAX`]
//!   bytes; the chunk is a few hundred), so a bigger event streams through.
//!
//! The usage-only chunk is recognised as JSON (`"choices": []` and a `usage` object, any
//! spacing and key order), never by matching bytes.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::passthrough::OpenAiUsage;
use super::sse::{write_data, write_json, MAX_EVENT_BYTES};
use super::{ErrorKind, TranslateError, Usage};

/// The most bytes of one event strip mode holds back while deciding whether it is the
/// usage-only chunk. Anything bigger cannot be that chunk and is passed on at once.
pub const STRIP_HOLD_MAX: usize = 16 * 1024;

/// Watches an OpenAI Chat SSE stream passing through. With `strip`, the usage-only event
/// (`"choices": []` with a `usage` object) is removed from what the client gets.
#[derive(Debug, Default)]
pub struct OpenAiStreamUsage {
    strip: bool,
    /// The current line when it started in an earlier chunk (its bytes so far).
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to that line end.
    skip_lf: bool,
    /// That `\r` ended an event (a blank line): its `\n` belongs to that event, and is
    /// removed with it when `cut_lf`.
    event_lf: bool,
    cut_lf: bool,
    /// `data` lines of the current event, joined with `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// Bytes of the current event before this chunk.
    event_len: usize,
    /// Strip mode: the current event may still be the usage-only chunk; its bytes from
    /// earlier chunks are in `held`, not yet given to the client.
    holding: bool,
    held: Vec<u8>,
    /// Events whose data was JSON or `[DONE]`.
    valid_events: u64,
    usage: Option<Usage>,
    error: Option<TranslateError>,
    ended: bool,
}

/// What one chunk does to the client's bytes, decided while scanning it.
#[derive(Default)]
struct Edit {
    /// Held bytes of the chunk's first event to write before the chunk's own bytes.
    prefix: Option<Vec<u8>>,
    /// Ranges of the chunk to leave out (usage-only events).
    cuts: Vec<(usize, usize)>,
    /// The chunk's bytes from here on are held back (the start of an unfinished event).
    hold_from: Option<usize>,
    /// The chunk's bytes from here on are dropped because the stream failed.
    failed_at: Option<usize>,
}

// === impl OpenAiStreamUsage ===

impl OpenAiStreamUsage {
    pub fn new(strip: bool) -> Self {
        OpenAiStreamUsage { strip, holding: true, ..Default::default() }
    }

    /// Observe `chunk`. Returns `true` when `chunk` should be forwarded unchanged (then `out`
    /// is untouched); `false` when the client gets what was appended to `out` instead (strip
    /// mode, or an error event). After an error (see [`Self::error`]) every call returns
    /// `false` and writes nothing: the caller should stop reading the upstream.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        if self.ended {
            return false;
        }
        let edit = self.scan(chunk);
        if edit.failed_at.is_none()
            && edit.prefix.is_none()
            && edit.cuts.is_empty()
            && edit.hold_from.is_none()
        {
            return true;
        }
        if let Some(p) = &edit.prefix {
            out.extend_from_slice(p);
        }
        let end = edit.failed_at.or(edit.hold_from).unwrap_or(chunk.len());
        let mut at = 0;
        for &(s, e) in &edit.cuts {
            out.extend_from_slice(&chunk[at..s]);
            at = e;
        }
        out.extend_from_slice(&chunk[at.min(end)..end]);
        if edit.failed_at.is_some() {
            self.write_error(out);
        }
        false
    }

    /// End of the upstream stream: an unterminated last event is handled as if it had ended
    /// (strip mode writes what the client should still get to `out`). A stream without a
    /// single event (empty, or not SSE at all) is an error: an error event is appended and
    /// [`Self::error`] reports it.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.on_line(&line);
        }
        let held = std::mem::take(&mut self.held);
        let usage_only = self.end_event();
        if self.strip && !usage_only {
            out.extend_from_slice(&held);
        }
        if self.valid_events == 0 {
            self.error = Some(TranslateError::EmptyStream);
            self.write_error(out);
        }
        self.ended = true;
    }

    /// The latest usage the stream reported.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Why the stream was ended with an error event, if it was: an event over
    /// [`MAX_EVENT_BYTES`] or a stream without any event.
    pub fn error(&self) -> Option<&TranslateError> {
        self.error.as_ref()
    }

    /// Bytes held in memory for the current line, event data and held-back event.
    pub fn buffered(&self) -> usize {
        self.line.capacity() + self.data.capacity() + self.held.capacity()
    }

    /// Scan `chunk` once: complete lines and events are handled, the unfinished tail kept.
    fn scan(&mut self, chunk: &[u8]) -> Edit {
        let mut edit = Edit::default();
        let mut pos = 0;
        // Where the current event's bytes in this chunk start.
        let mut event_start = 0;
        if self.skip_lf {
            self.skip_lf = false;
            if chunk.first() == Some(&b'\n') {
                pos = 1;
                if self.event_lf {
                    event_start = 1;
                }
                if self.cut_lf {
                    edit.cuts.push((0, 1));
                }
            }
        }
        self.event_lf = false;
        self.cut_lf = false;
        while let Some(i) = memchr::memchr2(b'\n', b'\r', &chunk[pos..]) {
            let term = pos + i;
            let mut next = term + 1;
            if chunk[term] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.event_len + (next - event_start) > MAX_EVENT_BYTES {
                return self.fail(edit, event_start);
            }
            let blank = if self.line.is_empty() {
                self.on_line(&chunk[pos..term]);
                term == pos
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&chunk[pos..term]);
                self.on_line(&line);
                line.clear();
                if line.capacity() <= KEEP_CAPACITY {
                    self.line = line;
                }
                false
            };
            pos = next;
            if blank {
                self.event_ended(&mut edit, event_start, next);
                event_start = next;
            }
        }
        let tail = chunk.len() - event_start;
        if self.event_len + tail > MAX_EVENT_BYTES {
            return self.fail(edit, event_start);
        }
        self.event_len += tail;
        extend_bounded(&mut self.line, &chunk[pos..]);
        if self.strip && self.holding && tail > 0 {
            if self.held.len() + tail <= STRIP_HOLD_MAX {
                self.held.extend_from_slice(&chunk[event_start..]);
                edit.hold_from = Some(event_start);
            } else {
                // Too big to be the usage chunk: what was held goes out, the rest streams.
                self.holding = false;
                if event_start == 0 && !self.held.is_empty() {
                    edit.prefix = Some(std::mem::take(&mut self.held));
                }
            }
        }
        edit
    }

    /// A blank line at `end` closed the event whose bytes in this chunk start at `start`.
    /// Only an event that was held back whole (at most `STRIP_HOLD_MAX` bytes) is removed,
    /// wherever the chunks were split.
    fn event_ended(&mut self, edit: &mut Edit, start: usize, end: usize) {
        let size = self.event_len + (end - start);
        self.event_lf = self.skip_lf;
        let held = std::mem::take(&mut self.held);
        let usage_only = self.end_event();
        if self.strip {
            if self.holding && size <= STRIP_HOLD_MAX && usage_only {
                edit.cuts.push((start, end));
                self.cut_lf = self.skip_lf;
            } else if start == 0 && !held.is_empty() {
                edit.prefix = Some(held);
            }
        }
        self.holding = true;
    }

    /// Inspect the finished event's data, reset for the next one; returns whether it was the
    /// usage-only chunk.
    fn end_event(&mut self) -> bool {
        let mut usage_only = false;
        if self.has_data {
            let data = self.data.trim_ascii();
            if data == b"[DONE]" || data.first() == Some(&b'{') {
                self.valid_events += 1;
            }
            if has_usage_object(data) {
                if let Some((usage, only)) = scan_usage_chunk(data) {
                    if usage.is_some() {
                        self.usage = usage;
                        usage_only = only;
                    }
                } else {
                    match serde_json::from_slice::<Chunk>(data) {
                        Ok(Chunk { choices, usage: Some(u) }) => {
                            self.usage = Some(Usage::from(u));
                            usage_only = choices.is_some_and(|c| c.is_empty());
                        }
                        Ok(_) => {}
                        // `choices` of an odd shape: still take the usage, never strip the event.
                        Err(_) => self.usage = super::passthrough::openai_usage(data).or(self.usage),
                    }
                }
            }
        }
        self.data.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
        self.has_data = false;
        self.event_len = 0;
        usage_only
    }

    fn on_line(&mut self, line: &[u8]) {
        let Some(value) = line.strip_prefix(b"data") else { return };
        let value = match value.first() {
            None => value,
            Some(b':') => value[1..].strip_prefix(b" ").unwrap_or(&value[1..]),
            Some(_) => return, // another field whose name starts with "data"
        };
        if self.has_data {
            self.data.push(b'\n');
        }
        extend_bounded(&mut self.data, value);
        self.has_data = true;
    }

    /// The current event is over the limit: keep what came before it, end the stream.
    fn fail(&mut self, mut edit: Edit, event_start: usize) -> Edit {
        self.error = Some(TranslateError::EventTooLarge { limit: MAX_EVENT_BYTES });
        if event_start == 0 {
            // The oversized event began in an earlier chunk; its held bytes are dropped.
            edit.prefix = None;
        }
        edit.hold_from = None;
        edit.failed_at = Some(event_start);
        self.line = Vec::new();
        self.data = Vec::new();
        self.held = Vec::new();
        self.ended = true;
        edit
    }

    /// End the client's stream: close any event it got part of, then an error event and `[DONE]`.
    fn write_error(&self, out: &mut Vec<u8>) {
        let message = self.error.as_ref().map(ToString::to_string).unwrap_or_default();
        out.extend_from_slice(b"\n\n");
        write_json(out, "", &super::openai_chat::error_value(ErrorKind::UpstreamError, &message));
        write_data(out, "[DONE]");
    }
}

/// Buffers bigger than this are freed after use rather than kept for the next event.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Append `bytes`, growing the capacity by doubling but never past what `MAX_EVENT_BYTES`
/// needs (the callers check the length first), so a buffer never takes more than the limit.
pub(super) fn extend_bounded(buf: &mut Vec<u8>, bytes: &[u8]) {
    let need = buf.len() + bytes.len();
    if need > buf.capacity() {
        let want = (buf.capacity() * 2).clamp(need, MAX_EVENT_BYTES.max(need));
        buf.reserve_exact(want - buf.len());
    }
    buf.extend_from_slice(bytes);
}

/// The top-level members of a chunk that matter here.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
}

/// The fast path for a chunk with usage (`scan`): what the derived [`Chunk`] gives, as the
/// usage (`None` for `null`) and whether `choices` is an empty array; `None` where the scanner
/// gives up and `serde_json` decides.
fn scan_usage_chunk(data: &[u8]) -> Option<(Option<Usage>, bool)> {
    let mut p = super::scan::Scan::new(std::str::from_utf8(data).ok()?);
    let (mut usage, mut choices) = (None, None);
    p.members(|key, p| {
        match key {
            "usage" if usage.is_none() => {
                usage = Some(p.nullable(super::passthrough::scan_openai_usage)?);
            }
            "choices" if choices.is_none() => {
                let mut empty = true;
                let list = p.nullable(|p| {
                    p.elements(|p| {
                        empty = false;
                        p.skip()
                    })
                })?;
                // `null` reads as no list (never "empty").
                choices = Some(list.is_some() && empty);
            }
            "usage" | "choices" => return None, // twice: the derive refuses it
            _ => p.skip()?,
        }
        Some(())
    })?;
    p.end()?;
    Some((usage.flatten(), choices.unwrap_or(false)))
}

/// Panics unless the usage chunk's fast path reads `data` as the derived [`Chunk`] does or
/// gives up (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fast_path_agrees(data: &[u8]) {
    if let Some((usage, only)) = scan_usage_chunk(data) {
        match serde_json::from_slice::<Chunk>(data) {
            Ok(c) => {
                let want = c.usage.map(Usage::from);
                assert_eq!(usage, want);
                if usage.is_some() {
                    assert_eq!(only, c.choices.is_some_and(|c| c.is_empty()));
                }
            }
            Err(e) => panic!("the usage chunk's fast path accepted what serde_json rejects ({e})"),
        }
    }
}

/// `"usage"`, searched for in every event (the searcher built once).
static USAGE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));

/// Whether `data` has a `"usage"` key whose value is an object (`"usage": null`, which OpenAI
/// puts on every other chunk when usage is on, does not count). A quote inside a JSON string
/// is escaped, so `"usage"` followed by a colon can only be a key.
fn has_usage_object(data: &[u8]) -> bool {
    USAGE_KEY.find_iter(data).any(|at| {
        let mut rest = data[at + 7..].trim_ascii_start();
        let Some(r) = rest.strip_prefix(b":") else { return false };
        rest = r.trim_ascii_start();
        rest.first() == Some(&b'{')
    })
}

#[cfg(test)]
#[path = "stream_usage_tests.rs"]
mod tests;
