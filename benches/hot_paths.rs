//! Criterion micro-benchmarks of the per-request hot functions.
//! Run: `cargo bench --bench hot_paths` (HTML-free text output; `-- <filter>` to pick some).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
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
        let peeked = passthrough::peek(&b).unwrap();
        g.bench_function("rewrite_peeked", |x| {
            x.iter(|| passthrough::rewrite_peeked(black_box(&b), &peeked, Some("gpt-4o-mini"), true))
        });
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

fn translation(c: &mut Criterion) {
    use llm_gateway::formats::{self, Format, RequestOptions, ResponseOptions, StreamTranslator};
    let anthropic_req = br#"{"model":"fast","max_tokens":1024,"system":"You are a helpful assistant.","messages":[{"role":"user","content":"What is the weather in Paris and in Rome?"},{"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C, sunny"}]}],"tools":[{"name":"get_weather","description":"Weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],"stream":true}"#;
    let ropts =
        RequestOptions { target_model: "gpt-4o-mini", default_max_tokens: 4096, legacy_max_tokens: false };
    let openai_resp = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"It is 18C and sunny in Paris; Rome is 22C and clear."},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":20,"total_tokens":140}}"#;
    let opts = ResponseOptions { model: "fast", gemini_sse: true, include_usage: false };
    let mut g = c.benchmark_group("translate");
    g.bench_function("request_anthropic_to_openai", |x| {
        x.iter(|| {
            formats::translate_request(
                Format::Anthropic,
                Format::OpenAiChat,
                black_box(anthropic_req),
                &ropts,
            )
            .unwrap()
        })
    });
    g.bench_function("response_openai_to_anthropic", |x| {
        x.iter(|| {
            formats::translate_response(Format::OpenAiChat, Format::Anthropic, black_box(openai_resp), &opts)
                .unwrap()
        })
    });
    g.finish();

    let chunk = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello there, "},"finish_reason":null}]}

"#;
    let first = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

"#;
    let anth = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello there, \"}}\n\n";
    let anth_start = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let mut g = c.benchmark_group("stream_chunk");
    g.throughput(Throughput::Elements(1));
    for (name, from, to, start, delta) in [
        ("openai_to_anthropic", Format::OpenAiChat, Format::Anthropic, &first[..], &chunk[..]),
        ("openai_to_responses", Format::OpenAiChat, Format::OpenAiResponses, first, chunk),
        ("openai_to_gemini", Format::OpenAiChat, Format::Gemini, first, chunk),
        ("anthropic_to_openai", Format::Anthropic, Format::OpenAiChat, anth_start, anth),
    ] {
        // A fresh translator, past the start and one delta (so the measured delta is a
        // steady-state one), per measured chunk: one fed millions of chunks would reach the
        // answer-size cap (`AnswerTooLarge`).
        g.bench_function(name, |x| {
            x.iter_batched_ref(
                || {
                    let mut t = StreamTranslator::new(from, to, &opts);
                    let mut out = Vec::with_capacity(4096);
                    t.feed(start, &mut out).unwrap();
                    t.feed(delta, &mut out).unwrap();
                    out.clear();
                    (t, out)
                },
                |(t, out)| t.feed(black_box(delta), out).unwrap(),
                BatchSize::NumIterations(1024),
            )
        });
    }
    g.finish();
}

/// The stored-response stores' cost per turn, journals included (group-committed by their task
/// on a runtime, as in the gateway): a translated route's turn 3 (history of two turns read,
/// the new turn kept), a native route's record, and a follow-up's lookup.
fn responses_store(c: &mut Criterion) {
    use llm_gateway::responses::{Affinity, AffinityStore, Bounds, ConversationStore, Turn};
    use serde_json::json;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _enter = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let created = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let turn = |prev: Option<&str>, said: &str| Turn {
        prev: prev.map(str::to_string),
        created,
        input: vec![json!({"type": "message", "role": "user", "content": said})],
        response: json!({"id": "x", "object": "response", "status": "completed", "output": [{"type": "message",
            "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "A short answer of a few words."}]}],
            "usage": {"input_tokens": 20, "output_tokens": 8}}),
    };
    let conv = ConversationStore::open(dir.path(), Bounds::default(), now, None).unwrap();
    conv.put("project:p", "resp_1", turn(None, "one"), now);
    conv.put("project:p", "resp_2", turn(Some("resp_1"), "two"), now);
    let aff = AffinityStore::open(dir.path(), Duration::from_secs(30 * 24 * 3600), now).unwrap();
    let rec = Affinity {
        owner: "project:p".into(),
        provider: "openai".into(),
        model: "gpt-5".into(),
        alias: "fast".into(),
        created,
    };
    aff.record("resp_known", rec.clone(), now);
    let mut g = c.benchmark_group("responses_store");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("translated_turn3_history_and_put", |x| {
        x.iter(|| {
            n += 1;
            let h = conv.history("project:p", "resp_2", now).unwrap();
            // Another project: the per-project bound trims its own oldest turns, never p's.
            conv.put("project:q", &format!("resp_t{n}"), turn(Some("resp_2"), "three"), now);
            black_box(h)
        })
    });
    g.bench_function("native_record", |x| {
        x.iter(|| {
            n += 1;
            aff.record(&format!("resp_n{n}"), rec.clone(), now)
        })
    });
    g.bench_function("native_lookup", |x| x.iter(|| aff.get(black_box("resp_known"), "project:p", now)));
    g.finish();
}

criterion_group!(benches, passthrough_bodies, stream_usage, auth, translation, responses_store);
criterion_main!(benches);
