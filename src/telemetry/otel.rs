//! OpenTelemetry export (SPEC section 7, `otel:`): one span per finished request with its
//! upstream attempts as child spans, and the GenAI client metrics, sent over OTLP/HTTP
//! (protobuf) by the maintained `opentelemetry` SDK and its OTLP exporter.
//!
//! The request path only hands a finished request to a bounded queue (`Otel::record`: one
//! `try_send`, never blocking; when the queue is full the trace is dropped and counted). A
//! worker thread of its own (polling once per tick while busy, so senders need not wake it)
//! turns traces into spans and metric points; the SDK's batch span
//! processor and periodic metric reader export from their own threads with a blocking HTTP
//! client. Nothing here runs on a Pingora or tokio thread after `record` returns.
//!
//! Off by default: without `otel:` the gateway holds `None`, and nothing is allocated or spawned.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanExporter,
};
use opentelemetry_sdk::Resource;

use super::redact::redact_text;
use crate::config::{OtelConfig, ProviderKind};

/// Finished requests waiting for the worker; beyond this they are dropped (and counted).
pub const QUEUE: usize = 4096;
/// The most one export (a batch of spans, or the metrics) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Spans per OTLP request.
const MAX_BATCH: usize = 512;
/// How often a busy worker looks at the queue (`QUEUE` per tick is ~200,000 requests/s).
const TICK: Duration = Duration::from_millis(20);
/// Seconds between two "traces dropped" warnings.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// Bucket boundaries the GenAI semantic conventions give for `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bucket boundaries (seconds) the GenAI semantic conventions give for
/// `gen_ai.client.operation.duration`.
const DURATION_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];

#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("otel.endpoint {endpoint:?} {ENDPOINT_RULE}")]
    Endpoint { endpoint: String },
    #[error("otel: cannot build the {signal} exporter: {reason}")]
    Exporter { signal: &'static str, reason: String },
    #[error("otel: cannot start the export thread: {0}")]
    Thread(String),
}

/// One finished request, as exported: built by the account step after the answer is sent.
#[derive(Clone, Debug)]
pub struct RequestTrace {
    /// Wall-clock time the request arrived.
    pub start: SystemTime,
    pub duration: Duration,
    pub request_id: String,
    /// The API surface (`RequestCtx::endpoint`: `openai_chat`, `anthropic`, `embeddings`...).
    pub endpoint: &'static str,
    /// The alias the client named (`gen_ai.request.model`).
    pub alias: Option<String>,
    /// The configured provider that answered, else the last one tried.
    pub provider: Option<String>,
    pub provider_kind: Option<ProviderKind>,
    /// The upstream model that answered, else the last one tried (`gen_ai.response.model`).
    pub model: Option<String>,
    /// The status the client got (499: it went away first).
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
}

/// One upstream attempt of a request (a child span of the request's).
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The configured provider name.
    pub provider: String,
    pub kind: ProviderKind,
    /// The upstream model asked for.
    pub model: String,
    pub start: SystemTime,
    /// `None` for the attempt that answered: its span ends with the request's.
    pub duration: Option<Duration>,
    /// The upstream's HTTP status; 0 when none arrived (connect error, timeout).
    pub status: u16,
    /// Why it failed (`error.type`), e.g. `connect`, `timeout`, `http`; `None` when it answered.
    pub error_type: Option<&'static str>,
}

/// The export handle: cheap to call from any thread. Dropping the last handle stops the
/// worker (which flushes what it holds, without waiting for the caller).
pub struct Otel {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    dropped: AtomicU64,
    exported: AtomicU64,
}

enum Msg {
    Trace(Box<RequestTrace>),
    /// Flush and stop; answer on the channel when done.
    Stop(mpsc::Sender<()>),
}

/// The SDK side, owned by the worker thread.
struct Pipeline {
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
    tracer: SdkTracer,
    token_usage: Histogram<u64>,
    duration: Histogram<f64>,
}

// === impl Otel ===

impl Otel {
    /// Starts the export from `otel:`: the OTLP/HTTP exporters for `{endpoint}/v1/traces` and
    /// `{endpoint}/v1/metrics` and the worker thread. Fails on a bad endpoint or exporter.
    /// Defaults: queue of `QUEUE` requests, batches of 512 spans, 10 s export timeout.
    pub fn start(cfg: &OtelConfig) -> Result<Otel, OtelError> {
        let traces_url = signal_url(&cfg.endpoint, "/v1/traces")?;
        let metrics_url = signal_url(&cfg.endpoint, "/v1/metrics")?;
        let interval = Duration::from_millis(cfg.export_interval_ms.max(1));
        let service = cfg.service_name.clone();
        Otel::spawn(QUEUE, move || {
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(traces_url)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| OtelError::Exporter { signal: "traces", reason: e.to_string() })?;
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(metrics_url)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| OtelError::Exporter { signal: "metrics", reason: e.to_string() })?;
            Ok(Pipeline::new(spans, metrics, &service, interval))
        })
    }

    /// Starts the worker thread, which builds its pipeline with `build` (so the SDK's clients
    /// are made and dropped off the caller's runtime), and waits for that to succeed.
    fn spawn(
        queue: usize,
        build: impl FnOnce() -> Result<Pipeline, OtelError> + Send + 'static,
    ) -> Result<Otel, OtelError> {
        let (tx, rx) = mpsc::sync_channel(queue);
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let worker_shared = shared.clone();
        std::thread::Builder::new()
            .name("otel-export".into())
            .spawn(move || match build() {
                Ok(p) => {
                    let _ = ready_tx.send(Ok(()));
                    p.run(rx, &worker_shared);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| OtelError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Otel { tx, shared }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(OtelError::Thread("the export thread stopped while starting".into())),
        }
    }

    /// Hands one finished request to the exporter. Never blocks: when the queue is full (the
    /// collector is slow or down) the trace is dropped and counted in `dropped()`.
    pub fn record(&self, trace: RequestTrace) {
        if self.tx.try_send(Msg::Trace(Box::new(trace))).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests dropped because the queue was full (or the worker had stopped).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Requests turned into spans and metric points so far.
    pub fn exported(&self) -> u64 {
        self.shared.exported.load(Ordering::Relaxed)
    }

    /// Exports everything queued and stops the exporters, waiting at most `within`; `false`
    /// when that was not enough. Blocks: call it from a plain thread (`spawn_blocking`).
    pub fn shutdown(&self, within: Duration) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        let deadline = Instant::now() + within;
        // A full queue makes room as the worker works through it; a stopped worker says so.
        if self.tx.send(Msg::Stop(done_tx)).is_err() {
            return true;
        }
        done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// The tracer (batching into `spans`) and the meter (read into `metrics` every `interval`).
    fn new<S, M>(spans: S, metrics: M, service: &str, interval: Duration) -> Pipeline
    where
        S: SpanExporter + 'static,
        M: PushMetricExporter,
    {
        let resource = Resource::builder().with_service_name(service.to_string()).build();
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(interval)
            .with_max_queue_size(QUEUE * 4)
            .with_max_export_batch_size(MAX_BATCH)
            .build();
        let traces = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(BatchSpanProcessor::builder(spans).with_batch_config(batch).build())
            .build();
        let metrics = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(PeriodicReader::builder(metrics).with_interval(interval).build())
            .build();
        let tracer = traces.tracer("llm-gateway");
        let meter = metrics.meter("llm-gateway");
        let token_usage = meter
            .u64_histogram("gen_ai.client.token.usage")
            .with_description("Number of input and output tokens used")
            .with_unit("{token}")
            .with_boundaries(TOKEN_BUCKETS.to_vec())
            .build();
        let duration = meter
            .f64_histogram("gen_ai.client.operation.duration")
            .with_description("GenAI operation duration")
            .with_unit("s")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build();
        Pipeline { traces, metrics, tracer, token_usage, duration }
    }

    /// The worker's loop: one trace at a time until told to stop or every handle is gone.
    fn run(self, rx: Receiver<Msg>, shared: &Shared) {
        let mut warned_at: Option<(Instant, u64)> = None;
        let mut busy = false;
        let done = loop {
            match next_msg(&rx, &mut busy) {
                Some(Msg::Trace(t)) => {
                    self.record(&t);
                    shared.exported.fetch_add(1, Ordering::Relaxed);
                }
                Some(Msg::Stop(done)) => break Some(done),
                None => break None,
            }
            let dropped = shared.dropped.load(Ordering::Relaxed);
            let last = warned_at.map(|(_, n)| n).unwrap_or(0);
            if dropped > last && warned_at.is_none_or(|(at, _)| at.elapsed() >= DROP_WARN_EVERY) {
                tracing::warn!(dropped, "otel: export queue full, request traces dropped");
                warned_at = Some((Instant::now(), dropped));
            }
        };
        self.stop();
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn stop(&self) {
        if let Err(e) = self.traces.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!("otel: flushing spans at stop: {e}");
        }
        if let Err(e) = self.metrics.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!("otel: flushing metrics at stop: {e}");
        }
    }

    /// The request's span (server kind), its attempts' child spans (client kind), and the
    /// GenAI metric points.
    fn record(&self, t: &RequestTrace) {
        let op = operation_name(t.endpoint);
        let end = t.start + t.duration;
        let provider = t.provider_kind.map(provider_name);
        let error_type = request_error_type(t);

        let mut common = Vec::with_capacity(6);
        common.push(KeyValue::new("gen_ai.operation.name", op));
        if let Some(p) = provider {
            common.push(KeyValue::new("gen_ai.provider.name", p));
        }
        if let Some(a) = &t.alias {
            common.push(KeyValue::new("gen_ai.request.model", a.clone()));
        }
        if let Some(m) = &t.model {
            common.push(KeyValue::new("gen_ai.response.model", m.clone()));
        }

        let mut attrs = common.clone();
        attrs.extend([
            KeyValue::new("gen_ai.usage.input_tokens", t.input_tokens as i64),
            KeyValue::new("gen_ai.usage.output_tokens", t.output_tokens as i64),
            KeyValue::new("http.response.status_code", i64::from(t.status)),
            KeyValue::new("llm_gateway.request_id", t.request_id.clone()),
            KeyValue::new("llm_gateway.endpoint", t.endpoint),
            KeyValue::new("llm_gateway.attempts", t.attempts.len() as i64),
        ]);
        if let Some(p) = &t.provider {
            attrs.push(KeyValue::new("llm_gateway.provider", p.clone()));
        }
        if let Some(e) = &error_type {
            attrs.push(KeyValue::new("error.type", e.clone()));
        }
        let mut span = self
            .tracer
            .span_builder(span_name(op, t.alias.as_deref()))
            .with_kind(SpanKind::Server)
            .with_start_time(t.start)
            .with_attributes(attrs)
            .start(&self.tracer);
        if t.status >= 500 || t.status == 0 {
            let why = t.error.as_deref().map(redact_text).unwrap_or(Cow::Borrowed("failed"));
            span.set_status(Status::error(why.into_owned()));
        }
        let cx = Context::new().with_span(span);
        for a in &t.attempts {
            self.attempt_span(op, a, (t.start, end), &cx);
        }
        cx.span().end_with_timestamp(end);

        // Metrics: the client's view of the operation, by the same bounded attributes.
        let mut timed = common.clone();
        if let Some(e) = error_type {
            timed.push(KeyValue::new("error.type", e));
        }
        self.duration.record(t.duration.as_secs_f64(), &timed);
        if (200..300).contains(&t.status) {
            let mut tokens = common;
            tokens.push(KeyValue::new("gen_ai.token.type", "input"));
            self.token_usage.record(t.input_tokens, &tokens);
            if let Some(last) = tokens.last_mut() {
                *last = KeyValue::new("gen_ai.token.type", "output");
            }
            self.token_usage.record(t.output_tokens, &tokens);
        }
    }

    fn attempt_span(
        &self,
        op: &'static str,
        a: &Attempt,
        (request_start, request_end): (SystemTime, SystemTime),
        parent: &Context,
    ) {
        // Inside its request's span: the two are measured by different clock reads, which can
        // disagree by microseconds under load.
        let start = a.start.clamp(request_start, request_end);
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("gen_ai.provider.name", provider_name(a.kind)),
            KeyValue::new("gen_ai.request.model", a.model.clone()),
            KeyValue::new("llm_gateway.provider", a.provider.clone()),
        ];
        if a.status != 0 {
            attrs.push(KeyValue::new("http.response.status_code", i64::from(a.status)));
        }
        let error_type = a.error_type.map(|e| match e {
            "http" if a.status != 0 => Cow::Owned(a.status.to_string()),
            e => Cow::Borrowed(e),
        });
        if let Some(e) = &error_type {
            attrs.push(KeyValue::new("error.type", e.to_string()));
        }
        let mut span = self
            .tracer
            .span_builder(span_name(op, Some(&a.model)))
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, parent);
        if let Some(e) = error_type {
            span.set_status(Status::error(e.into_owned()));
        }
        // From the attempt's own start: a start moved later into the request's span does not
        // move its end (which would then pass the next attempt's start).
        let end = match a.duration {
            Some(d) => (a.start + d).clamp(start, request_end),
            None => request_end,
        };
        span.end_with_timestamp(end);
    }
}

/// What `otel.endpoint` must be (said by config checks and start errors).
pub const ENDPOINT_RULE: &str = "must be an http:// URL with a host and no query, e.g. \
     http://127.0.0.1:4318 (the export is OTLP/HTTP without TLS: run the collector, or its agent, next to the gateway)";

/// Whether `endpoint` is usable as `otel.endpoint` (see `ENDPOINT_RULE`).
pub fn endpoint_ok(endpoint: &str) -> bool {
    endpoint.parse::<http::Uri>().is_ok_and(|uri| {
        uri.scheme_str() == Some("http") && uri.host().is_some_and(|h| !h.is_empty()) && uri.query().is_none()
    })
}

/// The worker's next message (`None`: every handle is gone). While requests keep coming it
/// looks once per `TICK`, so a request thread's `try_send` is a queue write that never has to
/// wake it; after a tick that brought nothing it blocks until the next request.
fn next_msg(rx: &Receiver<Msg>, busy: &mut bool) -> Option<Msg> {
    loop {
        match rx.try_recv() {
            Ok(m) => {
                *busy = true;
                return Some(m);
            }
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if *busy => {
                *busy = false;
                std::thread::park_timeout(TICK);
            }
            Err(TryRecvError::Empty) => {
                *busy = true;
                return rx.recv().ok();
            }
        }
    }
}

/// `{endpoint}{path}` for one signal.
fn signal_url(endpoint: &str, path: &str) -> Result<String, OtelError> {
    if !endpoint_ok(endpoint) {
        return Err(OtelError::Endpoint { endpoint: endpoint.to_string() });
    }
    Ok(format!("{}{path}", endpoint.trim_end_matches('/')))
}

/// `gen_ai.operation.name` of an API surface: the conventions' well-known values where one
/// fits, else the surface's own name.
pub fn operation_name(endpoint: &'static str) -> &'static str {
    match endpoint {
        "openai_chat" | "openai_responses" | "anthropic" | "gemini" | "bedrock" => "chat",
        "embeddings" => "embeddings",
        other => other,
    }
}

/// `gen_ai.provider.name` of a provider kind (the conventions' well-known values).
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai => "openai",
        ProviderKind::AzureOpenai => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Bedrock => "aws.bedrock",
        ProviderKind::OpenaiCompatible => "openai_compatible",
        ProviderKind::Mock => "mock",
    }
}

/// `{operation} {model}`, the conventions' span name.
fn span_name(op: &str, model: Option<&str>) -> String {
    match model {
        Some(m) if !m.is_empty() => format!("{op} {m}"),
        _ => op.to_string(),
    }
}

/// `error.type` of a request: its status code when it failed (499: the client went away).
fn request_error_type(t: &RequestTrace) -> Option<String> {
    match t.status {
        0 => Some("_OTHER".into()),
        s if s >= 400 => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[path = "otel_tests.rs"]
mod tests;
