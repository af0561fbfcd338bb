//! Chaos: three targets that refuse, hang, 500 and 429 at random, under 200 concurrent clients
//! for `CHAOS_SECS` (default 30) seconds. Its own test binary, so its load never overlaps the
//! timing-sensitive routing tests.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
const BODY: &str = r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#;

/// Three targets that randomly refuse, hang, 500 and 429, under 200 concurrent clients.
/// Every request must end (success or a clean error) and none may hang.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_every_request_ends_cleanly_and_success_matches_healthy_capacity() {
    let secs: u64 = std::env::var("CHAOS_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let flaky = |seed: u64| {
        move |_: &Received, n: usize| {
            let x = (n as u64).wrapping_mul(6364136223846793005).wrapping_add(seed) >> 33;
            match x % 10 {
                0 => Reply::Close,
                1 => Reply::Hang,
                2 => Reply::json(500, "{}"),
                3 => Reply::json(429, "{}").with_header("retry-after", "1"),
                _ => Reply::json(200, OK),
            }
        }
    };
    let a = MockUpstream::start(flaky(1)).await;
    let b = MockUpstream::start(flaky(2)).await;
    let c = MockUpstream::start(flaky(3)).await;
    let cfg = routing_config(&[&a, &b, &c], &[1, 1, 1]).limits(serde_json::json!({
        "max_attempts": 3,
        "circuit_breaker": { "failure_threshold": 50, "cooldown_s": 1 },
        "upstream_timeout_ms": 500,
    }));
    let gw = Arc::new(Gateway::start(&cfg).await);
    let ok = Arc::new(AtomicU32::new(0));
    let clean_err = Arc::new(AtomicU32::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (gw, ok, clean_err) = (gw.clone(), ok.clone(), clean_err.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            while Instant::now() < deadline {
                let r = c
                    .post(gw.url("/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .body(BODY)
                    .send()
                    .await
                    .expect("no request may hang or break");
                let status = r.status().as_u16();
                let body = r.bytes().await.expect("body");
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert!([502, 504].contains(&status), "unexpected status {status}");
                    let v: serde_json::Value = serde_json::from_slice(&body).expect("a clean JSON error");
                    assert!(v["error"]["message"].is_string());
                    clean_err.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, err) = (ok.load(Ordering::Relaxed), clean_err.load(Ordering::Relaxed));
    let rate = ok as f64 / (ok + err) as f64;
    let report = format!("chaos: {ok} ok, {err} clean errors, success rate {rate:.3} over {secs}s (200 clients, 3 targets each failing 40% at random; 3 attempts allow 0.936)\n");
    print!("{report}");
    let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/chaos-report.txt"), report);
    // Each attempt succeeds with p = 0.6; three attempts: 1 - 0.4^3 = 0.936. Allow for cool-downs.
    assert!(rate > 0.85, "success rate {rate:.3} below what the healthy capacity allows");
}
