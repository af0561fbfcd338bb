//! Routing and resilience through the real gateway: weighted round-robin, active health checks,
//! circuit breakers, quota cool-downs, retries, fallbacks, and a chaos run.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
const BODY: &str = r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#;

async fn call(gw: &Gateway, body: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn provider_of(r: &reqwest::Response) -> String {
    r.headers().get("x-gateway-provider").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_three_to_one_hold_within_five_percent_and_interleave() {
    let a = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let b = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&routing_config(&[&a, &b], &[3, 1])).await;
    let mut seq = Vec::new();
    for _ in 0..400 {
        let r = call(&gw, BODY).await;
        assert_eq!(r.status(), 200);
        seq.push(provider_of(&r));
    }
    let pa = seq.iter().filter(|p| *p == "pa").count();
    assert!((280..=320).contains(&pa), "pa got {pa} of 400");
    assert_eq!(a.count() + b.count(), 400);
    let mut longest: HashMap<&str, usize> = HashMap::new();
    let mut run = 1;
    for w in seq.windows(2) {
        run = if w[0] == w[1] { run + 1 } else { 1 };
        let e = longest.entry(w[1].as_str()).or_default();
        *e = (*e).max(run);
    }
    assert!(longest["pa"] <= 3 && longest["pb"] <= 1, "runs too long: {longest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_target_gets_no_traffic_and_gets_it_back_after_recovery() {
    let sick = Arc::new(AtomicBool::new(false));
    let s = sick.clone();
    let a = MockUpstream::start(move |r, _| {
        if r.path == "/health" {
            return if s.load(Ordering::SeqCst) { Reply::json(503, "{}") } else { Reply::json(200, "{}") };
        }
        Reply::json(200, OK)
    })
    .await;
    let b =
        MockUpstream::start(
            |r, _| if r.path == "/health" { Reply::json(200, "{}") } else { Reply::json(200, OK) },
        )
        .await;
    let cfg = routing_config(&[&a, &b], &[1, 1])
        .providers_with(serde_json::json!({ "health_check": { "path": "/health", "interval_s": 1 } }));
    let gw = Gateway::start(&cfg).await;
    sick.store(true, Ordering::SeqCst);
    // With weights 1:1, two answers in a row from B mean A is out of the rotation.
    eventually(Duration::from_secs(5), "the failing health check takes A out", || async {
        provider_of(&call(&gw, BODY).await) == "pb" && provider_of(&call(&gw, BODY).await) == "pb"
    })
    .await;
    for _ in 0..20 {
        assert_eq!(provider_of(&call(&gw, BODY).await), "pb");
    }
    sick.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "a passing health check brings A back", || async {
        provider_of(&call(&gw, BODY).await) == "pa"
    })
    .await;
    let mut to_a = 0;
    for _ in 0..20 {
        if provider_of(&call(&gw, BODY).await) == "pa" {
            to_a += 1;
        }
    }
    assert!(to_a >= 8, "recovered target got {to_a} of 20");
}

fn chat_count(m: &MockUpstream) -> usize {
    m.requests().iter().filter(|r| r.path != "/health").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_after_n_failures_half_opens_after_the_cooldown_and_closes_on_success() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let a = MockUpstream::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Reply::json(500, "{}")
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let b = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let limits = serde_json::json!({ "max_attempts": 2, "circuit_breaker": { "failure_threshold": 3, "cooldown_s": 1 } });
    let gw = Gateway::start(&routing_config(&[&a, &b], &[1, 1]).limits(limits)).await;
    for _ in 0..12 {
        assert_eq!(call(&gw, BODY).await.status(), 200, "B serves every request");
    }
    assert_eq!(chat_count(&a), 3, "the open circuit keeps further requests away from A");
    // After the cool-down the circuit half-opens: exactly one probe reaches A (and fails: the
    // circuit opens again).
    let opened = Instant::now();
    eventually(Duration::from_secs(5), "a half-open probe reaches A", || async {
        assert_eq!(call(&gw, BODY).await.status(), 200);
        chat_count(&a) > 3
    })
    .await;
    assert!(
        opened.elapsed() >= Duration::from_millis(800),
        "probed before the cool-down: {:?}",
        opened.elapsed()
    );
    for _ in 0..6 {
        assert_eq!(call(&gw, BODY).await.status(), 200);
    }
    assert_eq!(chat_count(&a), 4, "one half-open probe");
    failing.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "the next probe succeeds and A serves again", || async {
        provider_of(&call(&gw, BODY).await) == "pa"
    })
    .await;
    let before = chat_count(&a);
    for _ in 0..10 {
        assert_eq!(call(&gw, BODY).await.status(), 200);
    }
    assert!(chat_count(&a) >= before + 4, "closed again after a successful probe: A has {}", chat_count(&a));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_cools_the_target_down_for_that_long() {
    let a = MockUpstream::start(|_, n| {
        if n == 0 {
            Reply::json(429, r#"{"error":{"message":"slow down"}}"#).with_header("retry-after", "2")
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let b = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&routing_config(&[&a, &b], &[1, 1])).await;
    let t = Instant::now();
    let r = call(&gw, BODY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gateway-attempts"], "2", "switched target at once");
    // Sample the cool-down window: every call in it goes to B.
    let mut every = tokio::time::interval(Duration::from_millis(100));
    while t.elapsed() < Duration::from_millis(1700) {
        every.tick().await;
        assert_eq!(provider_of(&call(&gw, BODY).await), "pb", "A is cooling down");
    }
    eventually(Duration::from_secs(3), "A serves again after its retry-after", || async {
        provider_of(&call(&gw, BODY).await) == "pa"
    })
    .await;
    assert!(t.elapsed() >= Duration::from_secs(2), "A came back before its retry-after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flaky_target_is_retried_and_a_client_error_is_not() {
    let a = MockUpstream::start(|r, n| {
        if r.body.windows(7).any(|w| w == b"invalid") {
            return Reply::json(400, r#"{"error":{"message":"bad input","type":"invalid_request_error"}}"#);
        }
        if n == 0 {
            Reply::json(503, "{}")
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let gw = Gateway::start(&routing_config(&[&a], &[1])).await;
    let r = call(&gw, BODY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gateway-attempts"], "2");
    let r = call(&gw, r#"{"model":"a","messages":[{"role":"user","content":"invalid"}]}"#).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-gateway-attempts"], "1", "a client error is not retried");
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"]["message"], "bad input");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_every_target_fails_the_fallback_alias_serves_and_else_502_within_the_deadline() {
    let a = MockUpstream::start(|_, _| Reply::json(500, "{}")).await;
    let b = MockUpstream::start(|_, _| Reply::json(502, "{}")).await;
    let c = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let mut cfg = routing_config(&[&a, &b, &c], &[1, 1])
        .limits(serde_json::json!({ "max_attempts": 3 }))
        .alias(serde_json::json!({ "alias": "backup", "targets": [ { "provider": "pc", "model": "m-backup" } ] }))
        .alias(serde_json::json!({ "alias": "doomed", "targets": [ { "provider": "pa", "model": "m" }, { "provider": "pb", "model": "m" } ] }));
    cfg.alias_mut("a")["fallbacks"] = serde_json::json!(["backup"]);
    let gw = Gateway::start(&cfg).await;
    let r = call(&gw, BODY).await;
    assert_eq!(r.status(), 200);
    assert_eq!(provider_of(&r), "pc");
    assert_eq!(r.headers()["x-gateway-model"], "m-backup");
    let t = Instant::now();
    let r = call(&gw, r#"{"model":"doomed","messages":[{"role":"user","content":"hi"}]}"#).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-gateway-attempts"], "3", "max_attempts tries over the two failing targets");
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("all targets failed"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // The Anthropic caller gets Anthropic's envelope for the same failure.
    let r = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", KEY)
        .body(r#"{"model":"doomed","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["type"], "error");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_mebibyte_body_is_retried_intact_on_the_next_target() {
    let a = MockUpstream::start(|_, _| Reply::json(500, "{}")).await;
    let b = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(
        &routing_config(&[&a, &b], &[1, 1]).limits(serde_json::json!({ "max_body_bytes": 4_194_304 })),
    )
    .await;
    let big =
        format!(r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"a"}}"#, "z".repeat(1 << 20));
    let mut served = 0;
    for _ in 0..2 {
        let r = call(&gw, &big).await;
        assert_eq!(r.status(), 200);
        served += 1;
    }
    assert_eq!(served, 2);
    let expect = |m: &str| big.replace(r#""model":"a""#, &format!(r#""model":"{m}""#));
    for r in a.requests() {
        assert_eq!(r.body, expect("m0").into_bytes());
    }
    for r in b.requests() {
        assert_eq!(r.body, expect("m1").into_bytes(), "the retried body arrived whole");
    }
}
