//! Tests of the OpenTelemetry export: spans, links, attributes and metrics through the SDK's
//! in-memory exporters; the queue's drop count; endpoint checks.

use super::*;
use opentelemetry::trace::SpanId;
use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::InMemoryMetricExporter;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
}

/// A request to alias `fast` that failed once on `a` (HTTP 503) and was served by `b`.
fn retried() -> RequestTrace {
    RequestTrace {
        start: at(0),
        duration: Duration::from_millis(900),
        request_id: "req-1".into(),
        endpoint: "openai_chat",
        alias: Some("fast".into()),
        provider: Some("b".into()),
        provider_kind: Some(ProviderKind::Anthropic),
        model: Some("claude-x".into()),
        status: 200,
        input_tokens: 12,
        output_tokens: 34,
        error: None,
        attempts: vec![
            Attempt {
                provider: "a".into(),
                kind: ProviderKind::Openai,
                model: "gpt-x".into(),
                start: at(10),
                duration: Some(Duration::from_millis(100)),
                status: 503,
                error_type: Some("http"),
            },
            Attempt {
                provider: "b".into(),
                kind: ProviderKind::Anthropic,
                model: "claude-x".into(),
                start: at(150),
                duration: None,
                status: 200,
                error_type: None,
            },
        ],
    }
}

fn attr(s: &SpanData, key: &str) -> Option<Value> {
    s.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
}

fn memory_pipeline() -> (Pipeline, InMemorySpanExporter, InMemoryMetricExporter) {
    let spans = InMemorySpanExporter::default();
    let metrics = InMemoryMetricExporter::default();
    let p = Pipeline::new(spans.clone(), metrics.clone(), "gw-test", Duration::from_secs(3600));
    (p, spans, metrics)
}

#[test]
fn a_request_is_one_server_span_with_each_attempt_as_a_client_child() {
    let (p, exporter, _) = memory_pipeline();
    p.record(&retried());
    p.traces.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 3, "{spans:#?}");

    let root = spans.iter().find(|s| s.name == "chat fast").expect("request span");
    assert_eq!(root.span_kind, SpanKind::Server);
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    assert_eq!(root.start_time, at(0));
    assert_eq!(root.end_time, at(900));
    assert_eq!(attr(root, "gen_ai.operation.name"), Some("chat".into()));
    assert_eq!(attr(root, "gen_ai.provider.name"), Some("anthropic".into()));
    assert_eq!(attr(root, "gen_ai.request.model"), Some("fast".into()));
    assert_eq!(attr(root, "gen_ai.response.model"), Some("claude-x".into()));
    assert_eq!(attr(root, "gen_ai.usage.input_tokens"), Some(Value::I64(12)));
    assert_eq!(attr(root, "gen_ai.usage.output_tokens"), Some(Value::I64(34)));
    assert_eq!(attr(root, "http.response.status_code"), Some(Value::I64(200)));
    assert_eq!(attr(root, "llm_gateway.request_id"), Some("req-1".into()));
    assert_eq!(attr(root, "llm_gateway.attempts"), Some(Value::I64(2)));
    assert_eq!(attr(root, "error.type"), None);
    assert_eq!(root.status, Status::Unset);

    let failed = spans.iter().find(|s| s.name == "chat gpt-x").expect("first attempt");
    let served = spans.iter().find(|s| s.name == "chat claude-x").expect("second attempt");
    for child in [failed, served] {
        assert_eq!(child.span_kind, SpanKind::Client);
        assert_eq!(child.parent_span_id, root.span_context.span_id());
        assert_eq!(child.span_context.trace_id(), root.span_context.trace_id());
    }
    assert_eq!((failed.start_time, failed.end_time), (at(10), at(110)));
    assert_eq!(attr(failed, "gen_ai.provider.name"), Some("openai".into()));
    assert_eq!(attr(failed, "llm_gateway.provider"), Some("a".into()));
    assert_eq!(attr(failed, "http.response.status_code"), Some(Value::I64(503)));
    assert_eq!(attr(failed, "error.type"), Some("503".into()));
    assert!(matches!(failed.status, Status::Error { .. }));
    // The attempt that answered lasts until the request ends.
    assert_eq!((served.start_time, served.end_time), (at(150), at(900)));
    assert_eq!(attr(served, "gen_ai.request.model"), Some("claude-x".into()));
    assert_eq!(attr(served, "error.type"), None);
    assert_eq!(served.status, Status::Unset);
}

#[test]
fn a_failed_request_carries_its_error_type_and_a_redacted_status() {
    let (p, exporter, _) = memory_pipeline();
    let mut t = retried();
    t.status = 502;
    t.error = Some("all targets failed; key sk-abcdefghijklmnopqrstuvwxyz123456 refused".into());
    t.attempts[1].duration = Some(Duration::from_millis(5));
    t.attempts[1].status = 0;
    t.attempts[1].error_type = Some("timeout");
    p.record(&t);
    p.traces.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let root = spans.iter().find(|s| s.parent_span_id == SpanId::INVALID).unwrap();
    assert_eq!(attr(root, "error.type"), Some("502".into()));
    match &root.status {
        Status::Error { description } => {
            assert!(!description.contains("abcdefghijklmnop"), "{description}");
            assert!(description.contains("all targets failed"), "{description}");
        }
        s => panic!("status {s:?}"),
    }
    let timed_out = spans.iter().find(|s| s.name == "chat claude-x").unwrap();
    assert_eq!(attr(timed_out, "error.type"), Some("timeout".into()));
    assert_eq!(attr(timed_out, "http.response.status_code"), None);
    assert_eq!(timed_out.end_time, at(155));
}

/// An attempt read as starting before its request (two clocks read apart) is moved into the
/// request's span, but its end stays where its own start and duration put it, so it does not
/// run past the retry that followed.
#[test]
fn an_attempt_moved_into_its_request_keeps_its_end() {
    let (p, exporter, _) = memory_pipeline();
    let mut t = retried();
    t.start = at(50);
    p.record(&t);
    p.traces.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let failed =
        spans.iter().find(|s| attr(s, "error.type").is_some() && s.parent_span_id != SpanId::INVALID);
    let failed = failed.expect("the failed attempt's span");
    assert_eq!((failed.start_time, failed.end_time), (at(50), at(110)));
}

fn histogram_u64(rm: &[ResourceMetrics], name: &str, token_type: &str) -> (u64, u64) {
    for r in rm {
        for scope in r.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::U64(MetricData::Histogram(h)) = m.data() {
                    for dp in h.data_points() {
                        if dp.attributes().any(|kv| {
                            kv.key.as_str() == "gen_ai.token.type" && kv.value.as_str() == token_type
                        }) {
                            return (dp.count(), dp.sum());
                        }
                    }
                }
            }
        }
    }
    (0, 0)
}

fn histogram_f64_count(rm: &[ResourceMetrics], name: &str) -> (u64, f64) {
    for r in rm {
        for scope in r.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                    return h.data_points().fold((0, 0.0), |(c, s), dp| (c + dp.count(), s + dp.sum()));
                }
            }
        }
    }
    (0, 0.0)
}

#[test]
fn token_usage_and_duration_histograms_follow_the_genai_conventions() {
    let (p, _, metrics) = memory_pipeline();
    p.record(&retried());
    let mut second = retried();
    second.input_tokens = 100;
    second.output_tokens = 1;
    second.duration = Duration::from_millis(100);
    p.record(&second);
    let mut refused = retried();
    refused.status = 429;
    p.record(&refused);
    p.metrics.force_flush().unwrap();
    let rm = metrics.get_finished_metrics().unwrap();
    // Tokens only of the answered requests; durations of all three.
    assert_eq!(histogram_u64(&rm, "gen_ai.client.token.usage", "input"), (2, 112));
    assert_eq!(histogram_u64(&rm, "gen_ai.client.token.usage", "output"), (2, 35));
    let (count, sum) = histogram_f64_count(&rm, "gen_ai.client.operation.duration");
    assert_eq!(count, 3);
    assert!((sum - 1.9).abs() < 1e-9, "{sum}");
}

/// Keeps what it exports after a shutdown (the SDK's in-memory exporter clears on shutdown).
#[derive(Clone, Debug, Default)]
struct Kept(Arc<parking_lot::Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().extend(batch);
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    // A handle over a queue of 2 whose worker has not started yet: the queue cannot drain.
    let (tx, rx) = mpsc::sync_channel(2);
    let shared = Arc::new(Shared::default());
    let otel = Otel { tx, shared: shared.clone() };
    for _ in 0..5 {
        otel.record(retried());
    }
    assert_eq!(otel.dropped(), 3);
    assert_eq!(otel.exported(), 0);

    // The worker starts: it exports the 2 queued requests (3 spans each), and stops when asked.
    let kept = Kept::default();
    let p = Pipeline::new(kept.clone(), InMemoryMetricExporter::default(), "t", Duration::from_secs(3600));
    let worker = std::thread::spawn(move || p.run(rx, &shared));
    assert!(otel.shutdown(Duration::from_secs(10)), "stopped in time");
    worker.join().unwrap();
    assert_eq!(otel.exported(), 2);
    assert_eq!(kept.0.lock().len(), 6, "flushed at stop");
    // After the stop nothing blocks either: the trace is counted as dropped.
    otel.record(retried());
    assert_eq!(otel.dropped(), 4);
    assert!(otel.shutdown(Duration::from_secs(1)), "a second stop returns at once");
}

#[test]
fn the_endpoint_must_be_plain_http_with_a_host() {
    assert_eq!(signal_url("http://127.0.0.1:4318", "/v1/traces").unwrap(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(
        signal_url("http://collector:4318/", "/v1/metrics").unwrap(),
        "http://collector:4318/v1/metrics"
    );
    assert_eq!(signal_url("http://c/otlp", "/v1/traces").unwrap(), "http://c/otlp/v1/traces");
    for bad in ["https://collector:4318", "collector:4318", "", "http://", "http://c?x=1", "ftp://c"] {
        assert!(matches!(signal_url(bad, "/v1/traces"), Err(OtelError::Endpoint { .. })), "{bad}");
    }
}

#[test]
fn operation_and_provider_names_use_the_well_known_values() {
    assert_eq!(operation_name("openai_chat"), "chat");
    assert_eq!(operation_name("anthropic"), "chat");
    assert_eq!(operation_name("gemini"), "chat");
    assert_eq!(operation_name("embeddings"), "embeddings");
    assert_eq!(operation_name("images_generations"), "images_generations");
    assert_eq!(provider_name(ProviderKind::Gemini), "gcp.gemini");
    assert_eq!(provider_name(ProviderKind::Bedrock), "aws.bedrock");
    assert_eq!(provider_name(ProviderKind::AzureOpenai), "azure.ai.openai");
}
