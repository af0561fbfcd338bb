//! Limits through the real gateway: RPM burst then refusal, an in-flight cap with streams, a
//! budget refused in the caller's format, a TPM reservation that can never fit (400 naming the
//! numbers), `x-ratelimit-*` on answers; refused requests never reach the upstream.

mod common;

use std::sync::Arc;

use common::*;

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000}}"#;

fn config(upstream: &str, key_limits: &str, project: &str) -> String {
    format!(
        r#"providers:
  - {{ name: up, kind: openai, base_url: "{upstream}", api_key: sk-provider-secret }}
models:
  - alias: fast
    targets: [ {{ provider: up, model: gpt-4o-mini }} ]
    pricing: {{ input_per_mtok: 1.0, output_per_mtok: 2.0 }}
  - alias: other
    targets: [ {{ provider: up, model: gpt-4o }} ]
projects:
  - {{ name: p {project} }}
keys:
  - {{ id: k1, hash: "{{KEY_HASH}}", project: p {key_limits} }}
"#
    )
}

async fn chat(gw: &Gateway, path: &str, body: &str) -> reqwest::Response {
    client().post(gw.url(path)).bearer_auth(KEY).body(body.to_string()).send().await.unwrap()
}

const BODY: &str = r#"{"model":"fast","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_rpm_burst_admits_exactly_rpm_then_429_with_retry_after() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url(), ", rpm: 3", "")).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = chat(&gw, "/v1/chat/completions", BODY).await;
        if r.status() == 200 {
            assert_eq!(r.headers()["x-ratelimit-limit-requests"], "3");
        } else {
            let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=20).contains(&retry), "retry-after {retry}");
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
            statuses.push(429);
            continue;
        }
        statuses.push(200);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    assert_eq!(up.count(), 3, "refused requests never reach the upstream");
    // The live state on the admin API: the bucket is empty (at most the refill of a few seconds).
    let live =
        client().get(gw.admin_url("/admin/keys/k1/limits")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&live.bytes().await.unwrap()).unwrap();
    assert_eq!(v["key"]["rpm"]["limit"], 3, "{v}");
    assert!(v["key"]["rpm"]["remaining"].as_u64().unwrap() <= 1, "{v}");
    // The same key through the Anthropic shape: refused as a rate_limit_error.
    let r = chat(&gw, "/v1/messages", BODY).await;
    assert_eq!(r.status(), 429);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_parallel_counts_a_stream_until_it_ends() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let up = MockUpstream::start(move |_, _| {
        Reply::sse(vec![
            (Wait::None, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n"),
            (Wait::Gate(g.clone()), "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"),
        ])
    })
    .await;
    let gw = Gateway::start(&config(&up.url(), ", max_parallel: 1", "")).await;
    let stream_body = r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut first = chat(&gw, "/v1/chat/completions", stream_body).await;
    assert_eq!(first.status(), 200);
    assert!(first.chunk().await.unwrap().is_some());
    let second = chat(&gw, "/v1/chat/completions", stream_body).await;
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    gate.notify_one();
    while first.chunk().await.unwrap().is_some() {}
    // The slot is free once the stream ended (released by the account step).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        gate.notify_one();
        let r = chat(&gw, "/v1/chat/completions", BODY).await;
        if r.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the in-flight slot was never released");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_project_budget_is_refused_as_insufficient_quota() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    // One answer costs 1000 * 1 + 1000 * 2 = 3000 micro-dollars; the budget is 0.004 USD.
    let gw = Gateway::start(&config(&up.url(), "", ", budget: { usd: 0.004, period: daily }")).await;
    assert_eq!(chat(&gw, "/v1/chat/completions", BODY).await.status(), 200);
    // The second fits the estimate (a few tokens + 10) and lands the spend over 0.004 at most by
    // its actual cost; the third is refused.
    let mut refused = None;
    for _ in 0..3 {
        let r = chat(&gw, "/v1/chat/completions", BODY).await;
        if r.status() == 429 {
            refused = Some(serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap());
            break;
        }
    }
    let v = refused.expect("the budget never refused");
    assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    assert!(up.count() <= 2, "{} upstream calls", up.count());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_whose_cap_alone_exceeds_tpm_is_a_400_naming_the_numbers() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url(), ", tpm: 50", "")).await;
    let r = chat(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"fast","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("allows 50 tokens per minute"), "{msg}");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn spend_after_a_restart_equals_spend_before() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let body = config(&up.url(), ", budget: { usd: 0.0065, period: monthly }", "");
    let gw = Gateway::start(&body).await;
    // Two answers cost 2 x 3000 micro-dollars: 0.0005 USD of the budget is left.
    assert_eq!(chat(&gw, "/v1/chat/completions", BODY).await.status(), 200);
    assert_eq!(chat(&gw, "/v1/chat/completions", BODY).await.status(), 200);
    let lines = gw.usage_lines(2).await;
    assert_eq!(lines.len(), 2);
    // A restart on the same state dir: the third request's estimate (a few input tokens + 10
    // output, about 30 micro-dollars) fits what is left, its actual 3000 lands spend over the
    // budget, so a fourth is refused - exactly as if the process had never restarted.
    let gw = gw.restart().await;
    assert_eq!(chat(&gw, "/v1/chat/completions", BODY).await.status(), 200);
    let r = chat(&gw, "/v1/chat/completions", BODY).await;
    assert_eq!(r.status(), 429, "spend was not rebuilt from the usage log:\n{}\n{lines:?}", gw.log());
}

/// `GET /admin/keys/{id}/limits` as JSON.
async fn live_limits(gw: &Gateway, key: &str) -> serde_json::Value {
    let r = client()
        .get(gw.admin_url(&format!("/admin/keys/{key}/limits")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// Poll the live limits of `key` until `pred` holds (settling happens after the answer is sent).
async fn wait_limits(
    gw: &Gateway,
    key: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let v = live_limits(gw, key).await;
        if pred(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what} never happened: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn json_of(r: reqwest::Response) -> serde_json::Value {
    let b = r.bytes().await.unwrap();
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)))
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_prices_plans_against_live_budgets_and_charges_nothing() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    // Key budget 0.01 USD, project budget 0.05 USD; alias `fast` at $1 / $2 per Mtok.
    let gw = Gateway::start(&config(
        &up.url(),
        ", models: [fast], budget: { usd: 0.01, period: daily }",
        ", budget: { usd: 0.05, period: monthly }",
    ))
    .await;
    // One real request: 1000 in + 1000 out = 3000 micro-dollars spent by key and project.
    assert_eq!(chat(&gw, "/v1/chat/completions", BODY).await.status(), 200);
    wait_limits(&gw, "k1", "the spend of the first request", |v| v["key"]["budget"]["spent_micros"] == 3000)
        .await;
    let url = gw.url("/v1/gateway/preflight");
    let preflight = |body: &'static str| client().post(&url).bearer_auth(KEY).body(body).send();

    // 1000 in + 1000 out = 3000 µ$ fits the 7000 left.
    let r = preflight(r#"{"operations":[{"model":"fast","input_tokens":1000,"output_tokens":1000}]}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["estimated_cost_micros"], 3000, "{v}");
    assert!((v["estimated_cost_usd"].as_f64().unwrap() - 0.003).abs() < 1e-12, "{v}");
    assert_eq!(v["budget_remaining_micros"]["key"], 7000, "{v}");
    assert_eq!(v["budget_remaining_micros"]["project"], 47000, "{v}");
    assert!((v["budget_remaining_usd"]["key"].as_f64().unwrap() - 0.007).abs() < 1e-12, "{v}");
    assert!(v["reason"].is_null(), "{v}");

    // Three of them (9000 µ$) do not: the key's budget says no, with the numbers.
    let r = preflight(
        r#"{"operations":[{"model":"fast","input_tokens":1000,"output_tokens":1000},
            {"model":"fast","input_tokens":1000,"output_tokens":1000},
            {"model":"fast","input_tokens":2000}]}"#,
    )
    .await
    .unwrap();
    let v = json_of(r).await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["estimated_cost_micros"], 8000, "{v}");
    let per: Vec<u64> = v["per_operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["estimated_cost_micros"].as_u64().unwrap())
        .collect();
    assert_eq!(per, [3000, 3000, 2000]);
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("key k1") && reason.contains("$0.007000 left"), "{reason}");

    // Errors in the OpenAI shape: unknown alias, an alias the key may not use, a malformed body, no key.
    let r = preflight(r#"{"operations":[{"model":"nope","input_tokens":1}]}"#).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(json_of(r).await["error"]["code"], "model_not_found");
    let r = preflight(r#"{"operations":[{"model":"other","input_tokens":1}]}"#).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(json_of(r).await["error"]["type"], "permission_error");
    let r = preflight(r#"{"operations":[{"model":"fast","input_tokens":"many"}]}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("operations[0].input_tokens"), "{v}");
    let r = client().post(gw.url("/v1/gateway/preflight")).body("{\"operations\":[]}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(gw.url("/v1/gateway/preflight")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // No provider was called and nothing was charged or reserved.
    assert_eq!(up.count(), 1, "preflight must not call a provider");
    let v = live_limits(&gw, "k1").await;
    assert_eq!(v["key"]["budget"]["spent_micros"], 3000, "{v}");
    assert_eq!(v["key"]["budget"]["reserved_micros"], 0, "{v}");
    assert_eq!(v["project"]["budget"]["spent_micros"], 3000, "{v}");
    assert_eq!(v["key"]["in_flight"], 0, "{v}");
    let lines = gw.usage_lines(7).await;
    let spent: u64 = lines.iter().map(|l| l["cost_micros"].as_u64().unwrap()).sum();
    assert_eq!(spent, 3000, "{lines:?}");
    assert!(
        lines.iter().filter(|l| l["endpoint"] == "preflight").all(|l| l["cost_micros"] == 0),
        "{lines:?}"
    );
}

/// Request ids in a usage file.
fn ids_in(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reopens_the_usage_log_after_logrotate_renamed_it_and_no_line_is_lost() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url(), "", "")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gw.log().contains("SIGHUP reopens") {
        assert!(std::time::Instant::now() < deadline, "the SIGHUP listener never started:\n{}", gw.log());
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let send = |tag: &'static str, n: usize| {
        let gw = &gw;
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                let id = format!("{tag}-{i}");
                let r = client()
                    .post(gw.url("/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .header("x-request-id", &id)
                    .body(BODY)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                ids.push(id);
            }
            ids
        }
    };
    let state = gw.dir.path().join("state");
    let (live, rotated) = (state.join("usage.jsonl"), state.join("usage.jsonl.1"));
    let before = send("before", 5).await;
    assert_eq!(gw.usage_lines(5).await.len(), 5);
    // logrotate: rename, then (after more requests) signal.
    std::fs::rename(&live, &rotated).unwrap();
    let between = send("between", 5).await;
    let status = std::process::Command::new("kill").args(["-HUP", &gw.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let after = send("after", 5).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (old, new) = loop {
        let (old, new) = (ids_in(&rotated), ids_in(&live));
        if old.len() + new.len() >= 15 || std::time::Instant::now() > deadline {
            break (old, new);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let mut all: Vec<String> = old.iter().chain(&new).cloned().collect();
    all.sort();
    let mut sent: Vec<String> = before.iter().chain(&between).chain(&after).cloned().collect();
    sent.sort();
    assert_eq!(all, sent, "every line exactly once across the two files\nold {old:?}\nnew {new:?}");
    assert!(before.iter().all(|id| old.contains(id)), "lines written before the rename stay in it: {old:?}");
    assert!(after.iter().all(|id| new.contains(id)), "lines after SIGHUP go to the new file: {new:?}");
}
