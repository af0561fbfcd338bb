//! Criterion micro-benchmarks of the telemetry hot path: recording a finished request in the
//! metrics, the active-request guard, redaction of a clean and of a dirty log string, and
//! the `/metrics` exposition.
//! Run: `cargo bench --bench telemetry` (`-- record` to pick some).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use llm_gateway::telemetry::{redact_text, redact_url, KnownNames, Metrics, RequestSample, TokenCounts};

fn known() -> KnownNames {
    KnownNames {
        aliases: (0..20).map(|i| format!("alias-{i}")).collect(),
        providers: (0..6).map(|i| format!("provider-{i}")).collect(),
        projects: (0..10).map(|i| format!("project-{i}")).collect(),
        keys: (0..100).map(|i| format!("key-{i}")).collect(),
        targets: Vec::new(),
    }
}

fn sample(alias: &str) -> RequestSample<'_> {
    RequestSample {
        alias,
        provider: "provider-3",
        project: "project-7",
        status: 200,
        total: Duration::from_millis(812),
        upstream: Duration::from_millis(811),
        ttfb: Some(Duration::from_millis(240)),
        tokens: TokenCounts { input: 1200, output: 300, cached: 1024, reasoning: 0 },
        cost_micros: 4_321,
    }
}

fn metrics(c: &mut Criterion) {
    let m = Metrics::new(&known());
    let known_alias = sample("alias-11");
    let unknown_alias = sample("some-client-model-name");
    m.record_request(&known_alias);
    m.record_request(&unknown_alias);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("record_request", |b| b.iter(|| m.record_request(black_box(&known_alias))));
    g.bench_function("record_request_unknown_alias", |b| {
        b.iter(|| m.record_request(black_box(&unknown_alias)))
    });
    g.bench_function("start_request_guard", |b| b.iter(|| drop(black_box(m.start_request()))));
    for a in 0..20 {
        for s in [200, 429, 502] {
            let mut x = sample("");
            let alias = format!("alias-{a}");
            x.alias = &alias;
            x.status = s;
            m.record_request(&x);
        }
    }
    g.bench_function("encode_60_request_series", |b| b.iter(|| black_box(m.encode()).len()));
    g.finish();
}

fn redaction(c: &mut Criterion) {
    let clean =
        "upstream 503 from provider-3 after 2 attempts: service unavailable, retry later (request r-123)";
    let dirty =
        "upstream 401: invalid x-api-key sk-ant-api03-QWERTYUIOPasdfghjkl0123456789 for Bearer abc.def";
    let url = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";
    let mut g = c.benchmark_group("redact");
    g.bench_function("text_clean_100B", |b| b.iter(|| redact_text(black_box(clean)).len()));
    g.bench_function("text_two_secrets_100B", |b| b.iter(|| redact_text(black_box(dirty)).len()));
    g.bench_function("url_with_key", |b| b.iter(|| redact_url(black_box(url)).len()));
    g.finish();
}

criterion_group!(benches, metrics, redaction);
criterion_main!(benches);
