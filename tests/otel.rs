//! OpenTelemetry export through the real gateway: an OTLP/HTTP receiver in the test (the mock
//! upstream, answering 200 to every POST) gets exactly one server span per accounted request,
//! the upstream attempts as client children (two for a retried request), the GenAI attributes
//! with the mock's token counts, and the GenAI metrics.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message as _;

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":11,"total_tokens":18}}"#;
const BODY: &str = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM: [&str; 3] = [
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":11,\"total_tokens\":18}}\n\n",
    "data: [DONE]\n\n",
];

/// An OTLP/HTTP collector: answers every export with an empty (valid) protobuf response.
async fn receiver() -> MockUpstream {
    MockUpstream::start(|_, _| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/x-protobuf".into())],
        body: Vec::new(),
    })
    .await
}

/// Every span received so far, with its resource's `service.name`.
fn spans(rx: &MockUpstream) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for r in rx.requests().iter().filter(|r| r.path == "/v1/traces") {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        let req = ExportTraceServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            let service =
                rs.resource.as_ref().and_then(|r| text(&r.attributes, "service.name")).unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    out
}

fn value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match value(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match value(attrs, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// The latest (cumulative) sum and count of `gen_ai.client.token.usage` for `token_type`, and
/// the count of `gen_ai.client.operation.duration`.
fn metrics(rx: &MockUpstream) -> Option<(i64, u64, u64)> {
    let last = rx.requests().into_iter().rfind(|r| r.path == "/v1/metrics")?;
    let req = ExportMetricsServiceRequest::decode(last.body.as_slice()).expect("OTLP protobuf");
    let (mut input_sum, mut input_count, mut durations) = (0i64, 0u64, 0u64);
    for m in req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
        let Some(metric::Data::Histogram(h)) = &m.data else { continue };
        for dp in &h.data_points {
            match m.name.as_str() {
                "gen_ai.client.token.usage"
                    if text(&dp.attributes, "gen_ai.token.type").as_deref() == Some("input") =>
                {
                    assert_eq!(m.unit, "{token}");
                    input_sum += dp.sum.unwrap_or(0.0) as i64;
                    input_count += dp.count;
                }
                "gen_ai.client.operation.duration" => {
                    assert_eq!(m.unit, "s");
                    durations += dp.count;
                }
                _ => {}
            }
        }
    }
    Some((input_sum, input_count, durations))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_accounted_request_is_one_span_with_its_attempts_as_children_and_the_genai_metrics() {
    let rx = receiver().await;
    // The first call to gpt-4o-mini fails with 503: that request is retried (a second attempt).
    let up = MockUpstream::start(|req, n| {
        if n == 0 {
            Reply::json(503, r#"{"error":{"message":"overloaded","type":"server_error"}}"#)
        } else if req.json()["stream"] == true {
            // The last event only after a pause: the answering attempt's span lasts as long.
            Reply::sse(vec![
                (Wait::None, STREAM[0]),
                (Wait::Delay(Duration::from_millis(150)), STREAM[1]),
                (Wait::None, STREAM[2]),
            ])
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let mut cfg = openai_config(&up.url()).limits(serde_json::json!({ "max_attempts": 3 }));
    cfg.alias_mut("fast")["fallbacks"] = serde_json::json!(["other"]);
    cfg.0["otel"] =
        serde_json::json!({ "endpoint": rx.url(), "service_name": "gw-test", "export_interval_ms": 100 });
    let gw = Gateway::start(&cfg).await;

    let mut served_by = Vec::new();
    for i in 0..3 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("x-request-id", format!("otel-{i}"))
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        served_by.push(r.headers()["x-gateway-model"].to_str().unwrap().to_string());
    }
    // A stream: its tokens come from the usage event; its span ends with the stream.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "otel-stream")
        .body(r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let streamed_by = r.headers()["x-gateway-model"].to_str().unwrap().to_string();
    assert!(String::from_utf8(r.bytes().await.unwrap().to_vec()).unwrap().contains("[DONE]"));
    // Accounted (an authenticated key) but refused: a span with its error.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "otel-refused")
        .body(r#"{"model":"other","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    let refused_status = r.status().as_u16();
    assert!(refused_status >= 400, "{refused_status}");
    // Not accounted (no key), so no span; nor health checks.
    let r = client().post(gw.url("/v1/chat/completions")).body(BODY).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let roots = |all: &[(String, Span)]| all.iter().filter(|(_, s)| s.parent_span_id.is_empty()).count();
    eventually(Duration::from_secs(10), "5 request spans and their 5 attempt spans", || {
        let all = spans(&rx);
        async move { roots(&all) >= 5 && all.len() >= 10 }
    })
    .await;
    let all = spans(&rx);
    assert_eq!(roots(&all), 5, "one span per accounted request: {all:#?}");
    assert_eq!(all.len(), 10, "the 5 request spans and 3 + 1 + 1 attempts");
    assert!(all.iter().all(|(service, _)| service == "gw-test"));

    let request = |id: &str| {
        all.iter()
            .map(|(_, s)| s)
            .find(|s| {
                s.parent_span_id.is_empty()
                    && text(&s.attributes, "llm_gateway.request_id").as_deref() == Some(id)
            })
            .unwrap_or_else(|| panic!("no span for {id}"))
    };
    let children = |parent: &Span| -> Vec<&Span> {
        let mut c: Vec<&Span> = all
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
            .collect();
        c.sort_by_key(|s| s.start_time_unix_nano);
        c
    };
    for (i, model) in served_by.iter().enumerate() {
        let s = request(&format!("otel-{i}"));
        assert_eq!(s.name, "chat fast");
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(text(&s.attributes, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(text(&s.attributes, "gen_ai.provider.name").as_deref(), Some("openai"));
        assert_eq!(text(&s.attributes, "gen_ai.request.model").as_deref(), Some("fast"));
        assert_eq!(text(&s.attributes, "gen_ai.response.model").as_deref(), Some(model.as_str()));
        assert_eq!(int(&s.attributes, "gen_ai.usage.input_tokens"), Some(7));
        assert_eq!(int(&s.attributes, "gen_ai.usage.output_tokens"), Some(11));
        assert_eq!(int(&s.attributes, "http.response.status_code"), Some(200));
        assert_eq!(text(&s.attributes, "error.type"), None);
        assert!(s.end_time_unix_nano > s.start_time_unix_nano);
        let kids = children(s);
        let expected = if i == 0 { 2 } else { 1 };
        assert_eq!(kids.len(), expected, "attempts of otel-{i}");
        assert_eq!(int(&s.attributes, "llm_gateway.attempts"), Some(expected as i64));
        for k in &kids {
            assert_eq!(k.kind, SpanKind::Client as i32);
            assert_eq!(text(&k.attributes, "llm_gateway.provider").as_deref(), Some("up"));
            assert!(
                k.start_time_unix_nano >= s.start_time_unix_nano
                    && k.end_time_unix_nano <= s.end_time_unix_nano
            );
        }
        let served = kids.last().unwrap();
        assert_eq!(served.name, format!("chat {model}"));
        assert_eq!(int(&served.attributes, "http.response.status_code"), Some(200));
        assert_eq!(text(&served.attributes, "error.type"), None);
        if i == 0 {
            let failed = kids[0];
            assert_eq!(text(&failed.attributes, "gen_ai.request.model").as_deref(), Some("gpt-4o-mini"));
            assert_eq!(int(&failed.attributes, "http.response.status_code"), Some(503));
            assert_eq!(text(&failed.attributes, "error.type").as_deref(), Some("503"));
            assert!(
                failed.end_time_unix_nano <= served.start_time_unix_nano,
                "the retry follows the failure: request {}..{}, failed {}..{}, served {}..{}",
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                failed.start_time_unix_nano,
                failed.end_time_unix_nano,
                served.start_time_unix_nano,
                served.end_time_unix_nano
            );
        }
    }
    let s = request("otel-stream");
    assert_eq!(s.name, "chat fast");
    assert_eq!(text(&s.attributes, "gen_ai.response.model").as_deref(), Some(streamed_by.as_str()));
    assert_eq!(int(&s.attributes, "gen_ai.usage.input_tokens"), Some(7));
    assert_eq!(int(&s.attributes, "gen_ai.usage.output_tokens"), Some(11));
    let kids = children(s);
    assert_eq!(kids.len(), 1);
    assert_eq!(
        kids[0].end_time_unix_nano, s.end_time_unix_nano,
        "the answering attempt ends with the stream"
    );
    assert!(
        kids[0].end_time_unix_nano - kids[0].start_time_unix_nano >= 150_000_000,
        "it lasted the stream's pause"
    );

    let refused = request("otel-refused");
    assert_eq!(int(&refused.attributes, "http.response.status_code"), Some(i64::from(refused_status)));
    assert_eq!(text(&refused.attributes, "error.type"), Some(refused_status.to_string()));
    assert!(children(refused).is_empty(), "nothing was sent upstream");

    // Metrics: token usage of the 4 answered requests (7 input tokens each), a duration for all 5.
    eventually(Duration::from_secs(10), "the GenAI metrics", || {
        let m = metrics(&rx);
        async move { m == Some((28, 4, 5)) }
    })
    .await;
    assert!(!gw.log().contains("otel is not enforced"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_otel_nothing_is_exported_and_a_bad_endpoint_is_refused_by_check() {
    let rx = receiver().await;
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let mut cfg = openai_config(&up.url());
    // Not configured: nothing is sent anywhere (the receiver is only a witness).
    let gw = Gateway::start(&cfg).await;
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(BODY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.usage_lines(1).await.len(), 1);
    assert_eq!(rx.count(), 0);
    assert!(!gw.log().contains("otel"), "{}", gw.log());
    drop(gw);

    cfg.0["otel"] = serde_json::json!({ "endpoint": rx.url() });
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("otel is not enforced"), "{out}");
    cfg.0["otel"] =
        serde_json::json!({ "endpoint": "https://collector.example:4318", "export_interval_ms": 0 });
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("otel.endpoint: \"https://collector.example:4318\" must be an http:// URL"),
        "{out}"
    );
    assert!(out.contains("otel.export_interval_ms: 0 is not allowed"), "{out}");
}

/// `llm-gateway check` on `cfg`: exit code and output.
fn check(cfg: &Cfg) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let (port, admin_port) = two_free_ports();
    let text = Gateway::config_text(port, admin_port, &dir.path().join("state"), &cfg.to_string());
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}
