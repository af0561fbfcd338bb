//! Criterion benchmarks of the limits path: one admission + settle against a key and a
//! project scope that both have RPM, TPM, max_parallel and a budget (one thread, and two
//! threads on the same scopes); the whole admission step of the gateway (authenticate, alias,
//! allow-list, body validation, token count, price, reservation, then settle) for a key with
//! limits and for one without, on the same small chat body; and input token counting of
//! 1 KiB, 100 KiB and 1 MiB prompts.
//! Run: `nice cargo bench --bench limits` (`-- <filter>` to pick some).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llm_gateway::config::BudgetPeriod;
use llm_gateway::formats::Format;
use llm_gateway::limits::tokens::{self, TokenizerFamily};
use llm_gateway::limits::{BudgetRule, Demand, LimitsRegistry, ScopeId, ScopeRules};

fn rules() -> ScopeRules {
    ScopeRules {
        rpm: Some(1_000_000_000),
        tpm: Some(1_000_000_000_000),
        max_parallel: Some(1_000),
        budget: Some(BudgetRule {
            limit_micros: u64::MAX / 4,
            period: BudgetPeriod::Monthly,
            alert_at: Some(0.8),
        }),
    }
}

fn admit_settle(c: &mut Criterion) {
    let reg = LimitsRegistry::new();
    let (key_rules, project_rules) = (rules(), rules());
    let scopes = [(ScopeId::key("search-prod"), &key_rules), (ScopeId::project("search"), &project_rules)];
    // Other scopes in the map, as in a gateway with many keys.
    for i in 0..10_000 {
        reg.seed_spend(ScopeId::key(format!("key-{i}")), BudgetPeriod::Daily, 1, SystemTime::now());
    }
    let wall = SystemTime::now();
    let demand = Demand { tokens: 1_500, cost_micros: 2_000, input_tokens: 0 };
    let clock = AtomicU64::new(1_000_000_000_000);
    let tick = || clock.fetch_add(1_000, Ordering::Relaxed);

    let mut g = c.benchmark_group("limits");
    g.throughput(Throughput::Elements(1));
    g.bench_function("admit_settle/key+project/1_thread", |b| {
        b.iter(|| {
            let now = tick();
            let r = reg.admit(black_box(&scopes), demand, now, wall).unwrap();
            black_box(r.headers());
            r.settle(1_200, 1_700, now, wall)
        })
    });
    // Two threads admitting and settling on the same two scopes; the figure is wall time per
    // request in each thread (both threads run `iters` requests).
    g.bench_function("admit_settle/key+project/2_threads_contending", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            let now = tick();
                            let r = reg.admit(&scopes, demand, now, wall).unwrap();
                            black_box(r.settle(1_200, 1_700, now, wall));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.bench_function("rate_headers/key+project", |b| b.iter(|| reg.rate_headers(black_box(&scopes), tick())));
    g.finish();
}

/// The admission step as the gateway runs it, limits on vs off (the difference is what the
/// limits cost per request: token count, price, reservation, settle).
fn admission_step(c: &mut Criterion) {
    use llm_gateway::admission::{self, Shape};
    let cfg = format!(
        r#"listen: "127.0.0.1:0"
state_dir: /tmp/llm-gateway-bench-limits
providers:
  - {{ name: up, kind: openai_compatible, base_url: "http://127.0.0.1:9" }}
models:
  - {{ alias: fast, targets: [ {{ provider: up, model: gpt-4o-mini }} ], pricing: {{ input_per_mtok: 1, output_per_mtok: 2 }} }}
projects:
  - {{ name: bench, rpm: 1000000000, tpm: 1000000000000, budget: {{ usd: 1000000000, period: monthly }} }}
keys:
  - {{ id: off, hash: "{}" }}
  - {{ id: on, hash: "{}", project: bench, rpm: 1000000000, tpm: 1000000000000, max_parallel: 100000, budget: {{ usd: 1000000000, period: daily }} }}
"#,
        llm_gateway::auth::stored_form("sk-bench-off"),
        llm_gateway::auth::stored_form("sk-bench-on")
    );
    let snap = llm_gateway::config::load_str(&cfg).unwrap();
    let rt = llm_gateway::runtime::Registries::default().build(snap, None, 1, None);
    tokens::warm().unwrap();
    // The overhead bench's body.
    let body = br#"{"model":"fast","messages":[{"role":"user","content":"Say something short."}],"temperature":0.2}"#;
    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements(1));
    for (name, key) in [("limits_off", "sk-bench-off"), ("limits_on", "sk-bench-on")] {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
        g.bench_function(format!("authenticate_admit_settle/{name}"), |b| {
            b.iter(|| {
                let now = SystemTime::now();
                let p = admission::authenticate(&rt, black_box(&headers), None, now).unwrap();
                let a = ready(admission::admit(
                    &rt,
                    p,
                    "fast",
                    Shape::Chat(Format::OpenAiChat),
                    Some(admission::Body::unchecked(body)),
                    false,
                ))
                .unwrap();
                if let Some(llm_gateway::limits::Hold::Local(r)) = a.reservation {
                    let headers = r.headers().pairs();
                    black_box(headers);
                    black_box(r.settle(30, 40, admission::mono_ns(Instant::now()), now));
                }
            })
        });
    }
    // Its parts: the token count and output cap of that body, and the header values.
    g.bench_function("input_and_cap/small_chat_body", |b| {
        b.iter(|| tokens::input_and_cap(Format::OpenAiChat, black_box(body), TokenizerFamily::O200k))
    });
    g.finish();
}

/// The output of a future that needs no waiting (admission without Redis never waits).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("admission waited although no redis: is configured"),
    }
}

/// Deterministic mixed text: English-like words, numbers, code and JSON fragments.
fn prompt(bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "gateway",
        "routes",
        "requests",
        "to",
        "providers",
        "and",
        "counts",
        "tokens",
        "budget",
        "limits",
        "Anthropic",
        "streaming",
        "reliable",
        "latency",
        "of",
        "a",
        "retry",
        "when",
        "fails",
    ];
    const CODE: &[&str] = &[
        "fn admit(&self, n: u64) -> Result<(), Error> {\n    self.bucket.take(n)?;\n}\n",
        "{\"model\": \"gpt-4o\", \"max_tokens\": 1024, \"temperature\": 0.2}\n",
        "    for (i, x) in items.iter().enumerate() { total += x * i; }\n",
    ];
    let mut s = String::with_capacity(bytes + 128);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while s.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 10 {
            0 => s.push_str(CODE[(x >> 8) as usize % CODE.len()]),
            1 => s.push_str(&format!(" {} ", x % 100_000)),
            2 => s.push_str(".\n"),
            _ => {
                s.push(' ');
                s.push_str(WORDS[(x >> 8) as usize % WORDS.len()]);
            }
        }
    }
    s.truncate(bytes);
    s
}

fn chat_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": "fast",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}],
        "max_tokens": 1024
    }))
    .unwrap()
}

fn token_counting(c: &mut Criterion) {
    tokens::warm().unwrap();
    for (label, size) in
        [("1KiB", 1024), ("100KiB", 100 * 1024), ("200KiB", 200 * 1024), ("1MiB", 1024 * 1024)]
    {
        let text = prompt(size);
        let body = chat_body(&text);
        let mut g = c.benchmark_group(format!("tokens/{label}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        if size >= 1024 * 1024 {
            g.sample_size(20).measurement_time(Duration::from_secs(8));
        }
        g.bench_function("count_request_tokens/openai_chat/o200k", |b| {
            b.iter(|| {
                tokens::count_request_tokens(Format::OpenAiChat, black_box(&body), TokenizerFamily::O200k)
            })
        });
        g.bench_function("count_text/o200k", |b| {
            b.iter(|| tokens::count_text(black_box(&text), TokenizerFamily::O200k))
        });
        g.bench_function("count_text/cl100k", |b| {
            b.iter(|| tokens::count_text(black_box(&text), TokenizerFamily::Cl100k))
        });
        if size == 100 * 1024 {
            // The reference: tiktoken-rs' own CoreBPE on the same text.
            let bpe = tiktoken_rs::o200k_base_singleton();
            g.bench_function("tiktoken_rs_encode_ordinary/o200k", |b| {
                b.iter(|| bpe.encode_ordinary(black_box(&text)).len())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, admit_settle, admission_step, token_counting);
criterion_main!(benches);
