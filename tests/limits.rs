//! Limits and money through the real gateway: RPM burst then refusal, and 40 clients for 10 s
//! against RPM 60 (70 ± 1 admitted); an in-flight cap with streams; budgets refused in every
//! inbound format, under a concurrent burst (overspend figure printed), and shared by a
//! project's keys; a TPM reservation that can never fit (400 naming the numbers); streamed and
//! client-aborted requests charged; spend rebuilt after a restart; preflight; the usage log
//! reopened on SIGHUP. Refused requests never reach the upstream.

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
    // A client has its answer a moment before the gateway settles the request's cost: wait
    // for each one's usage line (written after the settlement) before the next request.
    gw.usage_lines(1).await;
    // The second fits the estimate (a few tokens + 10) and lands the spend over 0.004 at most by
    // its actual cost; the third is refused.
    let mut refused = None;
    for i in 0..3 {
        let r = chat(&gw, "/v1/chat/completions", BODY).await;
        if r.status() == 429 {
            refused = Some(serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap());
            break;
        }
        gw.usage_lines(i + 2).await;
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
    // The third request settles as it ends, after its answer: wait for its line (written after
    // the settlement) before the fourth is admitted.
    assert_eq!(gw.usage_lines(3).await.len(), 3);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_clients_for_ten_seconds_against_rpm_60_get_70_admitted_and_refused_ones_never_reach_upstream()
{
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Arc::new(Gateway::start(&config(&up.url(), ", rpm: 60", "")).await);
    let start = std::time::Instant::now();
    let end = start + std::time::Duration::from_secs(10);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut refused) = (0u64, 0u64);
            while std::time::Instant::now() < end {
                let r =
                    c.post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(BODY).send().await.unwrap();
                match r.status().as_u16() {
                    200 => ok += 1,
                    429 => {
                        assert!(r.headers().contains_key("retry-after"));
                        refused += 1;
                        // A client that backs off a little (still ~40 tries a second in all).
                        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                    }
                    s => panic!("unexpected status {s}"),
                }
            }
            (ok, refused)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (o, r) = t.await.unwrap();
        ok += o;
        refused += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!(
        "RPM 60, 40 clients for {elapsed:.2} s: {ok} admitted, {refused} refused, upstream saw {}",
        up.count()
    );
    // A burst of 60, then one a second: 60 + 60 × 10 / 60 = 70 (± 1).
    assert!((69..=71).contains(&ok), "{ok} admitted in {elapsed:.2} s");
    assert!(refused > 100, "the clients did press: {refused} refused");
    assert_eq!(up.count() as u64, ok, "refused requests never reach the upstream");
}

/// A key budget spent in the period, then one request in each inbound format: each is a 429
/// in its own error shape, with `retry-after` = the time to the next UTC day; a `total`
/// budget (that never resets) answers without `retry-after`.
#[tokio::test(flavor = "multi_thread")]
async fn a_spent_budget_is_refused_in_every_inbound_format() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let second = "sk-second-key";
    let cfg = format!(
        "{}  - {{ id: k2, hash: \"{}\", budget: {{ usd: 0.003, period: total }} }}\n",
        config(&up.url(), ", budget: { usd: 0.003, period: daily }", ""),
        llm_gateway::auth::stored_form(second)
    );
    let gw = Gateway::start(&cfg).await;
    // Each spends its whole budget with one answer (1000 in + 1000 out = 3000 µ$).
    for key in [KEY, second] {
        let r =
            client().post(gw.url("/v1/chat/completions")).bearer_auth(key).body(BODY).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    wait_limits(&gw, "k1", "k1's spend", |v| v["key"]["budget"]["spent_micros"] == 3000).await;
    wait_limits(&gw, "k2", "k2's spend", |v| v["key"]["budget"]["spent_micros"] == 3000).await;
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let to_midnight = 86_400 - unix % 86_400;
    let calls: [(&str, &str, &str); 4] = [
        ("/v1/chat/completions", "bearer", BODY),
        ("/v1/responses", "bearer", r#"{"model":"fast","input":"hi","max_output_tokens":10}"#),
        ("/v1/messages", "x-api-key", BODY),
        (
            "/v1beta/models/fast:generateContent",
            "x-goog-api-key",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":10}}"#,
        ),
    ];
    for (path, auth, body) in calls {
        let req = client().post(gw.url(path)).body(body);
        let req = match auth {
            "bearer" => req.bearer_auth(KEY),
            header => req.header(header, KEY),
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(
            retry.abs_diff(to_midnight) <= 5,
            "{path}: retry-after {retry}, {to_midnight} s to the next UTC day"
        );
        let v = json_of(r).await;
        let msg = match path {
            "/v1/messages" => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                &v["error"]["message"]
            }
            "/v1beta/models/fast:generateContent" => {
                assert_eq!(v["error"]["code"], 429, "{v}");
                assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED", "{v}");
                &v["error"]["message"]
            }
            _ => {
                assert_eq!(v["error"]["type"], "insufficient_quota", "{path}: {v}");
                assert_eq!(v["error"]["code"], "budget_exceeded", "{path}: {v}");
                &v["error"]["message"]
            }
        };
        assert!(msg.as_str().unwrap().contains("key k1"), "{path}: {v}");
    }
    // A spent `total` budget never resets: no retry-after.
    let r =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(second).body(BODY).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none(), "{:?}", r.headers());
    assert_eq!(json_of(r).await["error"]["type"], "insufficient_quota");
    assert_eq!(up.count(), 2, "refused requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_requests_overspend_a_nearly_spent_budget_by_less_than_one_request() {
    use llm_gateway::formats::Format;
    use llm_gateway::limits::tokens::{count_request_tokens, TokenizerFamily};
    // The provider reports 7 more prompt tokens than the gateway counted (its own framing) and
    // uses the whole output cap, after 300 ms so that all 30 requests are in flight together.
    let up = MockUpstream::start(|r, _| {
        let counted = count_request_tokens(Format::OpenAiChat, &r.body, TokenizerFamily::O200k);
        let cap = r.json()["max_tokens"].as_u64().unwrap();
        let body = format!(
            r#"{{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"ok"}},"finish_reason":"length"}}],"usage":{{"prompt_tokens":{},"completion_tokens":{cap},"total_tokens":0}}}}"#,
            counted + 7
        );
        Reply::Stream {
            status: 200,
            content_type: "application/json".into(),
            parts: vec![(Wait::Delay(std::time::Duration::from_millis(300)), body.into_bytes())],
        }
    })
    .await;
    // $0.025 a day; each request may cost ~20 input tokens × $1 + 1000 output × $2 per Mtok.
    let gw =
        Arc::new(Gateway::start(&config(&up.url(), ", budget: { usd: 0.025, period: daily }", "")).await);
    let body = r#"{"model":"fast","max_tokens":1000,"messages":[{"role":"user","content":"How many roads must a man walk down?"}]}"#;
    let max_cost = {
        let input = count_request_tokens(Format::OpenAiChat, body.as_bytes(), TokenizerFamily::O200k);
        input + 2 * 1000
    };
    // Nearly spend it: 8 requests one after the other.
    for _ in 0..8 {
        let r =
            client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let before =
        wait_limits(&gw, "k1", "the first 8 settled", |v| v["key"]["budget"]["reserved_micros"] == 0).await;
    let spent_before = before["key"]["budget"]["spent_micros"].as_u64().unwrap();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move {
                let r = client()
                    .post(gw.url("/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                if status == 429 {
                    assert_eq!(json_of(r).await["error"]["type"], "insufficient_quota");
                }
                status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let admitted = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(admitted + statuses.iter().filter(|&&s| s == 429).count(), 30, "{statuses:?}");
    let after = wait_limits(&gw, "k1", "the burst settled", |v| {
        v["key"]["budget"]["reserved_micros"] == 0 && v["key"]["in_flight"] == 0
    })
    .await;
    let (limit, spent) = (
        after["key"]["budget"]["limit_micros"].as_u64().unwrap(),
        after["key"]["budget"]["spent_micros"].as_u64().unwrap(),
    );
    let overspend = spent.saturating_sub(limit);
    eprintln!(
        "budget {limit} µ$, {spent_before} spent before; 30 concurrent: {admitted} admitted, spend now {spent} µ$, \
         overspend {overspend} µ$ (one request's maximum cost {max_cost} µ$)"
    );
    assert!((1..30).contains(&admitted), "the budget must admit some and refuse most: {admitted}");
    assert!(overspend <= max_cost, "overspend {overspend} > one request's maximum cost {max_cost}");
    assert_eq!(up.count(), 8 + admitted, "refused requests never reach the upstream");
    // The spend is exactly what the usage lines say.
    let lines = gw.usage_lines(38).await;
    assert_eq!(lines.len(), 38);
    assert_eq!(lines.iter().map(|l| l["cost_micros"].as_u64().unwrap()).sum::<u64>(), spent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_budget_is_shared_by_its_keys() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let second = "sk-second-key";
    // Project p: $0.006 a day, i.e. two answers of 3000 µ$; neither key has a budget of its own.
    let cfg = format!(
        "{}  - {{ id: k2, hash: \"{}\", project: p }}\n",
        config(&up.url(), "", ", budget: { usd: 0.006, period: daily }"),
        llm_gateway::auth::stored_form(second)
    );
    let gw = Gateway::start(&cfg).await;
    let call =
        |key: &'static str| client().post(gw.url("/v1/chat/completions")).bearer_auth(key).body(BODY).send();
    assert_eq!(call(KEY).await.unwrap().status(), 200);
    wait_limits(&gw, "k2", "k1's spend in the project", |v| v["project"]["budget"]["spent_micros"] == 3000)
        .await;
    assert_eq!(call(second).await.unwrap().status(), 200);
    let v = wait_limits(&gw, "k1", "k2's spend in the project", |v| {
        v["project"]["budget"]["spent_micros"] == 6000
    })
    .await;
    assert!(v["key"]["budget"].is_null(), "k1 has no budget of its own: {v}");
    for key in [KEY, second] {
        let r = call(key).await.unwrap();
        assert_eq!(r.status(), 429);
        let v = json_of(r).await;
        assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("project p"), "{v}");
    }
    assert_eq!(up.count(), 2);
    let lines = gw.usage_lines(4).await;
    let by_key = |k: &str| lines.iter().filter(|l| l["key"] == k && l["status"] == 200).count();
    assert_eq!((by_key("k1"), by_key("k2")), (1, 1), "{lines:?}");
}

const CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}]}\n\n";
const USAGE_CHUNK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":1000,\"total_tokens\":2000}}\n\ndata: [DONE]\n\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_request_is_charged_its_reported_usage() {
    let up = MockUpstream::start(|_, _| {
        Reply::sse(vec![(Wait::None, CHUNK), (Wait::None, CHUNK), (Wait::None, USAGE_CHUNK)])
    })
    .await;
    let gw = Gateway::start(&config(&up.url(), ", budget: { usd: 1, period: daily }", "")).await;
    let r = chat(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let lines = gw.usage_lines(1).await;
    assert_eq!(lines[0]["stream"], true, "{lines:?}");
    assert_eq!(lines[0]["cost_micros"], 3000, "{lines:?}");
    wait_limits(&gw, "k1", "the stream's spend", |v| v["key"]["budget"]["spent_micros"] == 3000).await;
}

/// The client reads the first event and goes away; the provider never gets to report usage.
/// The request is still charged: at least its counted input.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_aborted_stream_is_charged_at_least_its_input() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let never = Arc::new(tokio::sync::Notify::new());
    let (g, n) = (gate.clone(), never.clone());
    let up = MockUpstream::start(move |_, _| {
        let mut parts = vec![(Wait::None, CHUNK), (Wait::Gate(g.clone()), CHUNK)];
        for _ in 0..20 {
            parts.push((Wait::Delay(std::time::Duration::from_millis(50)), CHUNK));
        }
        parts.push((Wait::Gate(n.clone()), USAGE_CHUNK));
        Reply::sse(parts)
    })
    .await;
    let gw = Gateway::start(&config(&up.url(), ", budget: { usd: 1, period: daily }", "")).await;
    // A prompt of about 1000 tokens: 1000 µ$ of input at $1 per Mtok.
    let prompt = "lorem ipsum ".repeat(500);
    let body =
        format!(r#"{{"model":"fast","stream":true,"messages":[{{"role":"user","content":"{prompt}"}}]}}"#);
    let mut r =
        client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    gate.notify_one();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        if let Some(l) = gw.usage_lines(1).await.into_iter().next() {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no usage line for the aborted stream:\n{}", gw.log());
    };
    let cost = line["cost_micros"].as_u64().unwrap();
    assert!(line["input_tokens"].as_u64().unwrap() >= 900, "{line}");
    assert!(cost >= 900, "an aborted stream is charged at least its input: {line}");
    wait_limits(&gw, "k1", "the aborted stream's spend", |v| v["key"]["budget"]["spent_micros"] == cost)
        .await;
    never.notify_one();
}

/// Cache reads (and Anthropic cache writes) are billed at their own prices whatever shape the
/// provider reports them in: OpenAI `prompt_tokens_details.cached_tokens`, Anthropic
/// `cache_read_input_tokens` / `cache_creation_input_tokens`, Gemini `cachedContentTokenCount`.
#[tokio::test(flavor = "multi_thread")]
async fn cached_tokens_are_priced_apart_in_each_provider_usage_shape() {
    let openai = MockUpstream::start(|_, _| {
        Reply::json(
            200,
            r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10000,"completion_tokens":1000,"total_tokens":11000,"prompt_tokens_details":{"cached_tokens":4000},"completion_tokens_details":{"reasoning_tokens":200}}}"#,
        )
    })
    .await;
    let anthropic = MockUpstream::start(|_, _| {
        Reply::json(
            200,
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1000,"cache_read_input_tokens":20000,"cache_creation_input_tokens":5000,"output_tokens":500}}"#,
        )
    })
    .await;
    let gemini = MockUpstream::start(|_, _| {
        Reply::json(
            200,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"ok"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10000,"cachedContentTokenCount":8000,"candidatesTokenCount":300,"thoughtsTokenCount":700,"totalTokenCount":11000},"modelVersion":"gemini-x"}"#,
        )
    })
    .await;
    // The same prices on every alias: input $2, cache read $0.50, cache write $2.50, output $10.
    let price = "pricing: { input_per_mtok: 2.0, cached_input_per_mtok: 0.5, cache_write_per_mtok: 2.5, output_per_mtok: 10.0 }";
    let cfg = format!(
        r#"providers:
  - {{ name: oa, kind: openai, base_url: "{}", api_key: sk-oa }}
  - {{ name: an, kind: anthropic, base_url: "{}", api_key: sk-an }}
  - {{ name: gm, kind: gemini, base_url: "{}", api_key: gm-key }}
models:
  - {{ alias: oa, targets: [ {{ provider: oa, model: gpt-x }} ], {price} }}
  - {{ alias: an, targets: [ {{ provider: an, model: claude-x }} ], {price} }}
  - {{ alias: gm, targets: [ {{ provider: gm, model: gemini-x }} ], {price} }}
keys:
  - {{ id: k1, hash: "{{KEY_HASH}}", budget: {{ usd: 10, period: daily }} }}
"#,
        openai.url(),
        anthropic.url(),
        gemini.url()
    );
    let gw = Gateway::start(&cfg).await;
    let mut expected = 0;
    // (alias, cost in µ$, cached, cache writes)
    for (n, (alias, cost, cached, written)) in [
        // 6000 × 2 + 4000 × 0.5 + 1000 × 10 (reasoning inside the output, billed once).
        ("oa", 24_000u64, 4_000u64, 0u64),
        // 1000 × 2 + 20000 × 0.5 + 5000 × 2.5 + 500 × 10.
        ("an", 29_500, 20_000, 5_000),
        // 2000 × 2 + 8000 × 0.5 + (300 + 700 thoughts) × 10.
        ("gm", 18_000, 8_000, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let body =
            format!(r#"{{"model":"{alias}","max_tokens":10,"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let r = chat(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 200, "{alias}: {}", r.text().await.unwrap());
        expected += cost;
        let lines = gw.usage_lines(n + 1).await;
        let line = lines.iter().find(|l| l["alias"] == alias).unwrap_or_else(|| panic!("{alias}: {lines:?}"));
        assert_eq!(line["cost_micros"], cost, "{alias}: {line}");
        assert_eq!(
            (line["cached_tokens"].as_u64(), line["cache_write_tokens"].as_u64()),
            (Some(cached), Some(written)),
            "{line}"
        );
    }
    wait_limits(&gw, "k1", "the spend of the three", |v| v["key"]["budget"]["spent_micros"] == expected)
        .await;
}

/// JWT bearers over real HTTP, keys from the JWKS file: each algorithm is accepted (and its
/// `rpm` claim enforced), and refused with a 401 for each failure; refused ones never reach
/// the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn jwt_bearers_of_each_algorithm_are_accepted_and_each_failure_refused() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    let read = |name: &str| std::fs::read(format!("{fixtures}/{name}")).unwrap();
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&format!(
        "auth:\n  jwt: {{ issuer: https://login.test/, audience: llm-gateway, jwks_file: \"{fixtures}/jwks.json\" }}\n{}",
        config(&up.url(), "", "")
    ))
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |sub: &str| {
        serde_json::json!({"iss": "https://login.test/", "aud": "llm-gateway", "sub": sub, "project": "p",
            "exp": now + 600, "nbf": now - 10, "rpm": 1})
    };
    let keys = [
        (Algorithm::RS256, "rsa-jwks", EncodingKey::from_rsa_pem(&read("rsa2_private.pem")).unwrap()),
        (Algorithm::ES256, "ec-jwks", EncodingKey::from_ec_pem(&read("ec_private.pem")).unwrap()),
        (Algorithm::EdDSA, "ed-jwks", EncodingKey::from_ed_pem(&read("ed25519_private.pem")).unwrap()),
        (
            Algorithm::HS256,
            "hs-jwks",
            EncodingKey::from_secret(b"jwks-hmac-secret-for-tests-only-0123456789").unwrap(),
        ),
    ];
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let status = |token: String| {
        let url = gw.url("/v1/chat/completions");
        async move { client().post(url).bearer_auth(token).body(BODY).send().await.unwrap().status().as_u16() }
    };
    for (alg, kid, key) in &keys {
        let sign = |c: &serde_json::Value| {
            let mut h = Header::new(*alg);
            h.kid = Some(kid.to_string());
            jsonwebtoken::encode(&h, c, key).unwrap()
        };
        let sub = format!("{alg:?}");
        let good = claims(&sub);
        assert_eq!(status(sign(&good)).await, 200, "{alg:?} accepted");
        assert_eq!(status(sign(&good)).await, 429, "{alg:?}: the token's rpm claim (1) is enforced");
        let with = |k: &str, v: serde_json::Value| {
            let mut c = claims(&sub);
            c[k] = v;
            sign(&c)
        };
        let token = sign(&good);
        let (head, sig) = token.rsplit_once('.').unwrap();
        let bad_sig = {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut raw = b.decode(sig).unwrap();
            raw[10] ^= 0x01;
            format!("{head}.{}", b.encode(raw))
        };
        let payload = token.split('.').nth(1).unwrap();
        let confusion = jsonwebtoken::encode(
            &Header { kid: Some("rsa-jwks".into()), ..Header::new(Algorithm::HS256) },
            &good,
            &EncodingKey::from_secret(&read("rsa2_public.pem")).unwrap(),
        )
        .unwrap();
        for (failure, token) in [
            ("expired", with("exp", serde_json::json!(now - 120))),
            ("nbf", with("nbf", serde_json::json!(now + 120))),
            ("iss", with("iss", serde_json::json!("https://evil.test/"))),
            ("aud", with("aud", serde_json::json!("someone-else"))),
            ("signature", bad_sig),
            ("none", format!("{}.{payload}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})))),
            ("confusion", confusion),
        ] {
            assert_eq!(status(token).await, 401, "{alg:?}: {failure}");
        }
    }
    assert_eq!(up.count(), 4, "only the four good tokens reached the upstream");
    // Each sub: one answered line and one refused (429) line; 401s are not usage.
    let lines = gw.usage_lines(8).await;
    assert_eq!(lines.len(), 8, "{lines:?}");
    let mut subs: Vec<&str> =
        lines.iter().filter(|l| l["status"] == 200).map(|l| l["key"].as_str().unwrap()).collect();
    subs.sort();
    assert_eq!(subs, ["jwt:ES256", "jwt:EdDSA", "jwt:HS256", "jwt:RS256"]);
}

/// TPM reserves input + output cap, and the reported usage replaces the reservation: with a
/// small answer the tokens come back, so ten requests with a 1000-token cap fit a 3000 TPM
/// (without the reconciliation the third would be refused).
#[tokio::test(flavor = "multi_thread")]
async fn a_small_answer_gives_back_its_reserved_tokens() {
    let up = MockUpstream::start(|_, _| {
        Reply::json(
            200,
            r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}"#,
        )
    })
    .await;
    let gw = Gateway::start(&config(&up.url(), ", tpm: 3000", "")).await;
    let body = r#"{"model":"fast","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}"#;
    for i in 0..10 {
        let r = chat(&gw, "/v1/chat/completions", body).await;
        assert_eq!(r.status(), 200, "request {i}");
        let remaining: u64 = r.headers()["x-ratelimit-remaining-tokens"].to_str().unwrap().parse().unwrap();
        // At admission this request holds ~1010 tokens; earlier ones hold only their 10.
        assert!(
            remaining < 2000 && remaining + 1010 + 10 * i as u64 >= 2900,
            "request {i}: {remaining} left"
        );
        // Settled after the answer: wait until the reservation is replaced by the usage.
        wait_limits(&gw, "k1", "the reconciliation", |v| {
            v["key"]["tpm"]["remaining"].as_u64().unwrap() >= 2800 - 10 * i as u64
        })
        .await;
    }
    assert_eq!(up.count(), 10);
}
