//! `StreamTranslator`: an upstream stream in one format -> the client's stream in another,
//! one chunk at a time, through `StreamEvent`s. Never buffers more than one unfinished event.

use super::super::{
    anthropic, bedrock, gemini, openai_chat, openai_responses, ErrorKind, Format, ResponseOptions,
    StreamEvent, TranslateError, Usage,
};

/// The most content (text, thinking, tool-call arguments) one translated answer may carry.
/// Some client formats hold the whole answer until it ends (the Responses
/// `response.completed` event repeats it; Gemini sends function calls whole), so this bounds
/// the memory one stream can take. Real answers are far smaller (128k output tokens are about
/// half a MiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
enum Decoder {
    OpenAiChat(openai_chat::StreamDecoder),
    OpenAiResponses(openai_responses::StreamDecoder),
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
    Bedrock(bedrock::StreamDecoder),
}

// === impl Decoder ===

impl Decoder {
    fn new(from: Format) -> Self {
        match from {
            Format::OpenAiChat => Decoder::OpenAiChat(openai_chat::StreamDecoder::new()),
            Format::OpenAiResponses => Decoder::OpenAiResponses(openai_responses::StreamDecoder::new()),
            Format::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new()),
            Format::Gemini => Decoder::Gemini(gemini::StreamDecoder::new()),
            Format::Bedrock => Decoder::Bedrock(bedrock::StreamDecoder::new()),
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        match self {
            Decoder::OpenAiChat(d) => d.feed(chunk, out),
            Decoder::OpenAiResponses(d) => d.feed(chunk, out),
            Decoder::Anthropic(d) => d.feed(chunk, out),
            Decoder::Gemini(d) => d.feed(chunk, out),
            Decoder::Bedrock(d) => d.feed(chunk, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), TranslateError> {
        match self {
            Decoder::OpenAiChat(d) => d.finish(out),
            Decoder::OpenAiResponses(d) => d.finish(out),
            Decoder::Anthropic(d) => d.finish(out),
            Decoder::Gemini(d) => d.finish(out),
            Decoder::Bedrock(d) => d.finish(out),
        }
    }
}

#[derive(Debug)]
enum Encoder {
    OpenAiChat(openai_chat::StreamEncoder),
    OpenAiResponses(openai_responses::StreamEncoder),
    Anthropic(anthropic::StreamEncoder),
    Gemini(gemini::StreamEncoder),
}

// === impl Encoder ===

impl Encoder {
    fn new(to: Format, opts: &ResponseOptions) -> Self {
        match to {
            Format::OpenAiResponses => Encoder::OpenAiResponses(openai_responses::StreamEncoder::new(opts)),
            Format::Anthropic => Encoder::Anthropic(anthropic::StreamEncoder::new(opts)),
            Format::Gemini => Encoder::Gemini(gemini::StreamEncoder::new(opts)),
            // Bedrock is never a client format; OpenAI Chat is the safe default.
            Format::OpenAiChat | Format::Bedrock => {
                Encoder::OpenAiChat(openai_chat::StreamEncoder::new(opts))
            }
        }
    }

    fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAiChat(e) => e.encode(ev, out),
            Encoder::OpenAiResponses(e) => e.encode(ev, out),
            Encoder::Anthropic(e) => e.encode(ev, out),
            Encoder::Gemini(e) => e.encode(ev, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAiChat(e) => e.finish(out),
            Encoder::OpenAiResponses(e) => e.finish(out),
            Encoder::Anthropic(e) => e.finish(out),
            Encoder::Gemini(e) => e.finish(out),
        }
    }
}

/// Translates one upstream stream (format `from`) into the client's stream (format `to`).
///
/// When `from == to` it observes instead: the upstream bytes pass through unchanged and are
/// decoded only to track usage (a decoding problem then stops the observing, never the stream).
#[derive(Debug)]
pub struct StreamTranslator {
    decoder: Decoder,
    encoder: Encoder,
    /// The client's format and options: the encoder is made again at the upstream's `Start`,
    /// with the model it reports (see `translate::answer_model`).
    to: Format,
    model: String,
    gemini_sse: bool,
    include_usage: bool,
    started: bool,
    /// Responses clients: the request fields each Response object in the stream repeats
    /// (see `translate::responses_echo`).
    echo: Option<serde_json::Map<String, serde_json::Value>>,
    passthrough: bool,
    /// The decoder failed (observe mode): stop decoding, keep passing bytes.
    blind: bool,
    events: Vec<StreamEvent>,
    usage: Usage,
    /// The first error of the stream, if any (see `error`).
    error: Option<String>,
    /// Why the upstream's stream could not be decoded, if it could not.
    decode_error: Option<TranslateError>,
    /// Content bytes given to the encoder so far, and the limit.
    content: usize,
    max_content: usize,
    ended: bool,
}

// === impl StreamTranslator ===

impl StreamTranslator {
    pub fn new(from: Format, to: Format, opts: &ResponseOptions) -> Self {
        let mut t = Self::reencoding(from, to, opts);
        t.passthrough = from == to;
        t
    }

    /// Always decode and re-encode, even when `from == to` (e.g. a Gemini SSE upstream for a
    /// client that asked for Gemini's streamed JSON-array form).
    pub fn reencoding(from: Format, to: Format, opts: &ResponseOptions) -> Self {
        StreamTranslator {
            decoder: Decoder::new(from),
            encoder: Encoder::new(to, opts),
            to,
            model: opts.model.to_owned(),
            gemini_sse: opts.gemini_sse,
            include_usage: opts.include_usage,
            started: false,
            echo: None,
            passthrough: false,
            blind: false,
            events: Vec::new(),
            usage: Usage::default(),
            error: None,
            decode_error: None,
            content: 0,
            max_content: MAX_ANSWER_BYTES,
            ended: false,
        }
    }

    /// Write `echo` into every Response object of a translated Responses stream
    /// (`response.created`, `.in_progress`, `.completed`, `.failed`, `.incomplete`).
    pub fn with_echo(mut self, echo: serde_json::Map<String, serde_json::Value>) -> Self {
        self.echo = Some(echo);
        self
    }

    /// Translate what is complete in `chunk` and append the client's bytes to `out` (possibly
    /// nothing). An `Err` means the upstream stream is malformed; the caller should `fail`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let from = out.len();
        let r = self.feed_inner(chunk, out);
        self.patch_echo(out, from);
        r
    }

    fn feed_inner(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if self.ended {
            return Ok(());
        }
        if self.passthrough {
            out.extend_from_slice(chunk);
            if !self.blind {
                if let Err(e) = self.decoder.feed(chunk, &mut self.events) {
                    self.blind = true;
                    self.decode_error.get_or_insert(e);
                }
            }
            self.observe();
            return Ok(());
        }
        let r = self.decoder.feed(chunk, &mut self.events);
        let r = self.emit(out).and(r);
        if let Err(e) = &r {
            self.decode_error.get_or_insert_with(|| e.clone());
        }
        r
    }

    /// The upstream ended cleanly: close open blocks and write the terminal events.
    ///
    /// A stream that was empty, undecodable or cut short is not a finished answer: it ends
    /// with an error event instead of the terminal events, and [`Self::decode_error`] (and
    /// [`Self::error`]) say why. When the bytes pass through unchanged, an error event is
    /// added only for a stream without any event (the client got nothing usable); other
    /// decoding problems are only reported.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let from = out.len();
        self.finish_inner(out);
        self.patch_echo(out, from);
    }

    fn finish_inner(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.passthrough {
            if !self.blind {
                if let Err(e) = self.decoder.finish(&mut self.events) {
                    self.decode_error.get_or_insert(e);
                }
            }
            self.observe();
            if let Some(e @ TranslateError::EmptyStream) = &self.decode_error {
                let message = e.to_string();
                self.error.get_or_insert_with(|| message.clone());
                self.encoder.encode(&StreamEvent::Error { kind: ErrorKind::UpstreamError, message }, out);
            }
            return;
        }
        let r = self.decoder.finish(&mut self.events);
        let r = self.emit(out).and(r);
        match r {
            Ok(()) => self.encoder.finish(out),
            Err(e) => {
                self.error.get_or_insert_with(|| e.to_string());
                self.encoder.encode(
                    &StreamEvent::Error { kind: ErrorKind::UpstreamError, message: e.to_string() },
                    out,
                );
                self.decode_error.get_or_insert(e);
            }
        }
    }

    /// The upstream failed mid-stream: write an error event in the client's format and end.
    pub fn fail(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.error.get_or_insert_with(|| message.to_owned());
        let from = out.len();
        self.encoder.encode(&StreamEvent::Error { kind, message: message.to_owned() }, out);
        self.encoder.finish(out);
        self.patch_echo(out, from);
        self.ended = true;
    }

    /// Write the echo into the Response objects among the events appended to `out` since
    /// `from` (whole events: the encoders write nothing partial). Other events are untouched
    /// and cost one substring search.
    fn patch_echo(&self, out: &mut Vec<u8>, from: usize) {
        let Some(echo) = &self.echo else { return };
        if self.passthrough || memchr::memmem::find(&out[from..], b"\"response\":{").is_none() {
            return;
        }
        let tail = out.split_off(from);
        let mut rest = &tail[..];
        while !rest.is_empty() {
            let end = memchr::memmem::find(rest, b"\n\n").map_or(rest.len(), |i| i + 2);
            let (event, next) = rest.split_at(end);
            rest = next;
            match echoed_event(event, echo) {
                Some(patched) => out.extend_from_slice(&patched),
                None => out.extend_from_slice(event),
            }
        }
    }

    /// The first error of the stream, if any: one the upstream reported inside it, one found
    /// decoding it, or the one given to `fail`.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Why the upstream's stream itself was bad, if it was: empty
    /// (`TranslateError::EmptyStream`), cut short (`Truncated`), undecodable (`Stream`) or an
    /// event over the size limit (`EventTooLarge`). `None` for a well-formed stream, even one
    /// in which the upstream reported an error. `EmptyStream` means the client got nothing but
    /// the error event, so the answer may still be retried elsewhere if no header was sent.
    pub fn decode_error(&self) -> Option<&TranslateError> {
        self.decode_error.as_ref()
    }

    /// The latest usage totals seen so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    fn observe(&mut self) {
        for ev in self.events.drain(..) {
            match ev {
                StreamEvent::Usage(u) => self.usage = u,
                StreamEvent::Error { message, .. } => {
                    self.error.get_or_insert(message);
                }
                _ => {}
            }
        }
    }

    /// Encode the decoded events; an answer over the content limit stops here.
    fn emit(&mut self, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let mut events = std::mem::take(&mut self.events);
        let mut r = Ok(());
        for ev in events.drain(..) {
            match &ev {
                StreamEvent::Usage(u) => self.usage = *u,
                StreamEvent::Error { message, .. } => {
                    self.error.get_or_insert_with(|| message.clone());
                }
                StreamEvent::TextDelta { text } | StreamEvent::ThinkingDelta { text } => {
                    self.content += text.len();
                }
                StreamEvent::ToolArgsDelta { fragment, .. } => self.content += fragment.len(),
                _ => {}
            }
            if self.content > self.max_content {
                r = Err(TranslateError::AnswerTooLarge { limit: self.max_content });
                break;
            }
            if let StreamEvent::Start { id, model } = &ev {
                if !self.started {
                    self.started = true;
                    let ev = self.answer_start(id, model);
                    self.encoder.encode(&ev, out);
                    continue;
                }
            }
            self.encoder.encode(&ev, out);
        }
        events.clear();
        self.events = events; // keep the capacity
        r
    }

    /// The upstream's first `Start`: the encoder (which has written nothing yet) is made
    /// again with the model the upstream reports, and the id is put in the client format's
    /// own shape (README "Answer fields").
    fn answer_start(&mut self, id: &str, model: &str) -> StreamEvent {
        let model = super::answer_model(model, &self.model).to_owned();
        let opts =
            ResponseOptions { model: &model, gemini_sse: self.gemini_sse, include_usage: self.include_usage };
        self.encoder = Encoder::new(self.to, &opts);
        StreamEvent::Start { id: super::answer_id(self.to, id), model }
    }

    /// A translator with a smaller content limit (tests).
    #[cfg(test)]
    pub(crate) fn with_max_answer(mut self, limit: usize) -> Self {
        self.max_content = limit;
        self
    }
}

/// One SSE event whose `data` is an object with a `response` object, with `echo` written into
/// that object; `None` for any other event.
fn echoed_event(event: &[u8], echo: &serde_json::Map<String, serde_json::Value>) -> Option<Vec<u8>> {
    let at = memchr::memmem::find(event, b"data: ")?;
    let data_end = memchr::memchr(b'\n', &event[at..]).map_or(event.len(), |i| at + i);
    let data = &event[at + 6..data_end];
    memchr::memmem::find(data, b"\"response\":{")?;
    let mut v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let response = v.get_mut("response")?.as_object_mut()?;
    for (k, x) in echo {
        response.insert(k.clone(), x.clone());
    }
    let mut patched = Vec::with_capacity(event.len() + 256);
    patched.extend_from_slice(&event[..at + 6]);
    serde_json::to_writer(&mut patched, &v).ok()?;
    patched.extend_from_slice(&event[data_end..]);
    Some(patched)
}
