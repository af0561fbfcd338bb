//! Criterion micro-benchmarks of the per-request hot functions.
//! Run: `cargo bench --bench hot_paths` (HTML-free text output; `-- <filter>` to pick some).

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llm_gateway::formats::passthrough::{self, OpenAiStreamUsage};

fn body(prompt_bytes: usize) -> Vec<u8> {
    format!(
        r#"{{"model":"fast","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{}"}}],"temperature":0.2,"stream":true}}"#,
        "x".repeat(prompt_bytes)
    )
    .into_bytes()
}

fn passthrough_bodies(c: &mut Criterion) {
    for size in [1024usize, 100 * 1024] {
        let b = body(size);
        let mut g = c.benchmark_group(format!("passthrough/{}KiB", size / 1024));
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_function("peek", |x| x.iter(|| passthrough::peek(black_box(&b)).unwrap()));
        g.bench_function("rewrite_model_and_usage", |x| {
            x.iter(|| passthrough::rewrite_request(black_box(&b), Some("gpt-4o-mini"), true).unwrap())
        });
        g.finish();
    }
}

fn stream_usage(c: &mut Criterion) {
    let chunk = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello there, "},"finish_reason":null}]}

"#;
    let mut g = c.benchmark_group("stream_usage");
    g.throughput(Throughput::Elements(1));
    g.bench_function("observe_one_chunk", |x| {
        let mut o = OpenAiStreamUsage::new(false);
        let mut out = Vec::new();
        x.iter(|| o.feed(black_box(chunk), &mut out))
    });
    g.bench_function("strip_one_chunk", |x| {
        let mut o = OpenAiStreamUsage::new(true);
        let mut out = Vec::with_capacity(4096);
        x.iter(|| {
            out.clear();
            o.feed(black_box(chunk), &mut out)
        })
    });
    g.finish();
}

fn auth(c: &mut Criterion) {
    let mut text = String::from(
        "listen: 127.0.0.1:1\nproviders: [{name: m, kind: mock}]\nmodels: [{alias: a, targets: [{provider: m, model: x}]}]\nkeys:\n",
    );
    for i in 0..1000 {
        text.push_str(&format!(
            "  - {{id: k{i}, hash: \"{}\"}}\n",
            llm_gateway::auth::stored_form(&format!("sk-{i}"))
        ));
    }
    let snap = llm_gateway::config::load_str(&text).unwrap();
    c.bench_function("auth/authenticate_among_1000_keys", |x| {
        x.iter(|| {
            llm_gateway::auth::authenticate(&snap, Some(black_box("sk-500")), SystemTime::now()).unwrap()
        })
    });
}

criterion_group!(benches, passthrough_bodies, stream_usage, auth);
criterion_main!(benches);
