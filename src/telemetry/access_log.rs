//! The per-request access line (a `tracing` event on target `access`, one JSON object per
//! request when JSON logging is on) and the process's logging setup: an `EnvFilter` behind a
//! reload handle so the admin API can change the level at run time, JSON or text on stderr,
//! ANSI colours only when stderr is a terminal. Every string in the line passes through
//! `redact`. Does not write the usage log (see `accounting/usage_log.rs`).

use std::io::IsTerminal;
use std::time::Duration;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use super::redact::{redact_text, redact_url};

/// The `tracing` target of access lines (filter with e.g. `info,access=off`).
pub const TARGET: &str = "access";

/// One finished request, as logged. Borrowed: building it allocates nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    /// The virtual key id (public), or `jwt:<sub>`; never the key itself.
    pub key_id: Option<&'a str>,
    pub project: Option<&'a str>,
    pub alias: Option<&'a str>,
    pub provider: Option<&'a str>,
    /// The concrete upstream model.
    pub model: Option<&'a str>,
    /// The API surface, e.g. `chat_completions`, `messages`.
    pub endpoint: &'a str,
    pub method: &'a str,
    /// Request path and query as received (secret query values are masked here).
    pub path: &'a str,
    pub status: u16,
    pub stream: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_micros: u64,
    pub latency: Duration,
    pub ttfb: Option<Duration>,
    pub attempts: u32,
    pub error: Option<&'a str>,
    /// The client's address (`ip:port`).
    pub client: Option<&'a str>,
    /// `log.bodies`: the request and answer bodies (streams: none), cut at `body_max_bytes`.
    pub request_body: Option<&'a [u8]>,
    pub response_body: Option<&'a [u8]>,
    pub body_max_bytes: usize,
}

/// Changes the running log filter (the admin API's level switch). Cheap to clone.
#[derive(Clone, Debug)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "invalid log filter {spec:?}: {reason}; use e.g. \"info\" or \"info,access=off,llm_gateway=debug\""
    )]
    BadFilter { spec: String, reason: String },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

// === impl AccessLine ===

impl AccessLine<'_> {
    /// Emits the line as an `info` event on target `access`.
    pub fn emit(&self) {
        let path = redact_url(self.path);
        let key = self.key_id.map(redact_text);
        let model = self.model.map(redact_text);
        let error = self.error.map(redact_text);
        let request_body = self.request_body.map(|b| body_text(b, self.body_max_bytes));
        let response_body = self.response_body.map(|b| body_text(b, self.body_max_bytes));
        tracing::info!(
            target: TARGET,
            request_id = self.request_id,
            key = key.as_deref(),
            project = self.project,
            alias = self.alias,
            provider = self.provider,
            model = model.as_deref(),
            endpoint = self.endpoint,
            method = self.method,
            path = &*path,
            status = self.status,
            stream = self.stream,
            input_tokens = self.input_tokens,
            output_tokens = self.output_tokens,
            cached_tokens = self.cached_tokens,
            reasoning_tokens = self.reasoning_tokens,
            cost_usd = self.cost_micros as f64 / 1e6,
            latency_ms = millis(self.latency),
            ttfb_ms = self.ttfb.map(millis),
            attempts = self.attempts,
            error = error.as_deref(),
            client = self.client,
            request_body = request_body.as_deref(),
            response_body = response_body.as_deref(),
            "request"
        );
    }
}

/// A body as log text: at most `max` bytes (cut on a character boundary, with a note of what
/// was left out), invalid UTF-8 replaced, secrets masked.
fn body_text(body: &[u8], max: usize) -> String {
    let mut cut = body.len().min(max);
    // Back off to a UTF-8 character boundary (at most 3 bytes).
    while cut > 0 && cut < body.len() && (body[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    let mut text = redact_text(&String::from_utf8_lossy(&body[..cut])).into_owned();
    if cut < body.len() {
        text.push_str(&format!("…[{} more bytes]", body.len() - cut));
    }
    text
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

// === impl LogHandle ===

impl LogHandle {
    /// Replaces the filter (`EnvFilter` syntax). The `log` crate's cap (Pingora logs through
    /// it) follows the new maximum level.
    pub fn set_filter(&self, spec: &str) -> Result<(), LoggingError> {
        let filter = parse_filter(spec)?;
        let max = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
        self.filter.reload(filter).map_err(|e| LoggingError::Reload(e.to_string()))?;
        log::set_max_level(log_level(max));
        Ok(())
    }

    /// The running filter, in `EnvFilter` syntax.
    pub fn current(&self) -> String {
        self.filter.with_current(|f| f.to_string()).unwrap_or_default()
    }
}

/// Installs the global subscriber: `spec` is an `EnvFilter` directive (`info`,
/// `info,access=off`, …); `json` writes one JSON object per event (fields flattened);
/// otherwise text, coloured only when stderr is a terminal. Every line, at every level and
/// from every crate (Pingora's own, through `log`), passes through `redact::redact_text` on
/// its way out (see `Redacting`). Returns the level switch.
pub fn init_logging(spec: &str, json: bool) -> Result<LogHandle, LoggingError> {
    let ansi = std::io::stderr().is_terminal();
    let (subscriber, handle) = build_subscriber(spec, json, ansi, std::io::stderr)?;
    // The subscriber only: the `log` bridge (Pingora logs through `log`) is installed by the
    // caller with its own level cap, and `try_init` would fail trying to install it again.
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadyInstalled)?;
    let _ = INSTALLED.set(handle.clone());
    Ok(handle)
}

/// The handle of the subscriber `init_logging` installed (for `PUT /admin/log`).
static INSTALLED: std::sync::OnceLock<LogHandle> = std::sync::OnceLock::new();

/// The installed logger's handle, when `init_logging` ran in this process.
pub fn installed() -> Option<&'static LogHandle> {
    INSTALLED.get()
}

/// The subscriber `init_logging` installs, writing to `writer` (tests capture it).
pub fn build_subscriber<W>(
    spec: &str,
    json: bool,
    ansi: bool,
    writer: W,
) -> Result<(impl tracing::Subscriber + Send + Sync + 'static, LogHandle), LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let writer = Redacting { inner: writer, json };
    let (filter, handle) = reload::Layer::new(parse_filter(spec)?);
    let (json_layer, text_layer) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .with_writer(writer);
        (Some(layer), None)
    } else {
        (None, Some(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer)))
    };
    let subscriber = Registry::default().with(filter).with(json_layer).with(text_layer);
    Ok((subscriber, LogHandle { filter: handle }))
}

/// A `MakeWriter` whose writers mask secrets in what they are given. The fmt layers write
/// each formatted event with one `write_all`, so a whole line is redacted at once: this is
/// what keeps keys out of lines the gateway does not format itself (Pingora's `Fail to
/// proxy: … POST /…?key=…` and its trace-level header dumps). JSON lines are redacted string
/// by string (escaping would otherwise hide `\"x-api-key\": \"…\"` from the scan).
#[derive(Clone, Debug)]
pub struct Redacting<M> {
    pub inner: M,
    pub json: bool,
}

/// The writer of `Redacting`.
pub struct RedactingWriter<W> {
    inner: W,
    json: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter { inner: self.inner.make_writer(), json: self.json }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter { inner: self.inner.make_writer_for(meta), json: self.json }
    }
}

// === impl RedactingWriter ===

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.json {
            if let Some(masked) = redact_json_lines(buf) {
                self.inner.write_all(&masked)?;
                return Ok(buf.len());
            }
        }
        let text = String::from_utf8_lossy(buf);
        match redact_text(&text) {
            // Nothing to mask: the bytes as they came.
            std::borrow::Cow::Borrowed(_) => self.inner.write_all(buf)?,
            std::borrow::Cow::Owned(masked) => self.inner.write_all(masked.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// JSON lines with every string (and member name's string value) redacted; `None` when `buf`
/// is not JSON lines (the caller then redacts it as text).
fn redact_json_lines(buf: &[u8]) -> Option<Vec<u8>> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(m) = redact_text(s) {
                    *s = m;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    match v {
                        serde_json::Value::String(s) if super::redact::is_secret_header(k) => {
                            *s = super::redact::MASK.to_string();
                        }
                        _ => walk(v),
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for line in buf.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if body.trim_ascii().is_empty() {
            out.extend_from_slice(line);
            continue;
        }
        let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
        walk(&mut v);
        serde_json::to_writer(&mut out, &v).ok()?;
        if line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    Some(out)
}

fn parse_filter(spec: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(spec)
        .map_err(|e| LoggingError::BadFilter { spec: spec.to_string(), reason: e.to_string() })
}

fn log_level(l: LevelFilter) -> log::LevelFilter {
    match l {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

#[cfg(test)]
#[path = "access_log_tests.rs"]
mod tests;
