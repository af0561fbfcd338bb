//! The access log: one JSON line per request (every request, refused ones included, probes
//! excluded), every line of the log JSON (Pingora's own too), no secret or prompt in any of
//! them, and `log.bodies` putting cut, masked bodies in the line.

mod common;

use std::time::Duration;

use common::*;

const OK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"the answer text"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;

/// Every line of the log as JSON (panics, naming the line, on one that is not).
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}")))
        .collect()
}

fn access_lines(log: &str) -> Vec<serde_json::Value> {
    json_lines(log).into_iter().filter(|l| l["target"] == "access").collect()
}

async fn wait_access_lines(gw: &Gateway, n: usize) -> Vec<serde_json::Value> {
    eventually(Duration::from_secs(10), "the access lines", || async { access_lines(&gw.log()).len() >= n })
        .await;
    access_lines(&gw.log())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_json_access_line_per_request_with_no_secret_and_no_prompt() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let c = client();
    let prompt = r#"{"model":"fast","messages":[{"role":"user","content":"private prompt words"}]}"#;
    // Each answer's request id, in the order the requests were sent: the access lines are written
    // by whichever worker served the request, after its answer, so their order in the log is
    // not the order of the requests.
    let mut ids = Vec::new();
    let mut id_of =
        |r: &reqwest::Response| ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    let ok = c.post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(prompt).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    id_of(&ok);
    let bad_key = "sk-gw-wrongwrongwrongwrong12345";
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(bad_key).body(prompt).send().await.unwrap();
    assert_eq!(r.status(), 401);
    id_of(&r);
    let other = r#"{"model":"other","messages":[{"role":"user","content":"private prompt words"}]}"#;
    let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(other).send().await.unwrap();
    assert_eq!(r.status(), 403);
    id_of(&r);
    let r = c.get(gw.url("/v1/nothing-here")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    id_of(&r);
    // A Gemini call with the key in the URL.
    let gem = r#"{"contents":[{"role":"user","parts":[{"text":"private prompt words"}]}]}"#;
    let r = c
        .post(gw.url(&format!("/v1beta/models/fast:generateContent?key={KEY}")))
        .body(gem)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    id_of(&r);
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/healthz")).send().await.unwrap().status(), 200);
    }

    let logged = wait_access_lines(&gw, 5).await;
    assert_eq!(logged.len(), 5, "one line per request, none for the probes: {logged:#?}");
    let lines: Vec<&serde_json::Value> = ids
        .iter()
        .map(|id| logged.iter().find(|l| l["request_id"] == id.as_str()).expect("a line for each request id"))
        .collect();
    let statuses: Vec<u64> = lines.iter().map(|l| l["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 401, 403, 404, 200]);

    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["message"], "request");
    assert_eq!(l["key"], "k1");
    assert_eq!(l["alias"], "fast");
    assert_eq!(l["provider"], "up");
    assert_eq!(l["model"], "gpt-4o-mini");
    assert_eq!(l["endpoint"], "openai_chat");
    assert_eq!(l["method"], "POST");
    assert_eq!(l["path"], "/v1/chat/completions");
    assert_eq!(l["input_tokens"], 11);
    assert_eq!(l["output_tokens"], 7);
    assert_eq!(l["attempts"], 1);
    // 11 input tokens at $1/M and 7 output at $2/M.
    assert_eq!(l["cost_usd"], 0.000025);
    assert!(l["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(l["ttfb_ms"].as_f64().unwrap() > 0.0);
    assert!(l["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let id = ok.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(l["request_id"], id, "the line names the id the client was given");
    assert!(l.get("request_body").is_none() && l.get("response_body").is_none());

    assert!(lines[1]["key"].is_null(), "a refused key is not named");
    assert_eq!(lines[2]["key"], "k1");
    assert!(lines[2]["error"].as_str().unwrap().contains("other"), "the refusal says why: {}", lines[2]);
    assert_eq!(lines[3]["endpoint"], "not_found");
    assert_eq!(lines[4]["path"], "/v1beta/models/fast:generateContent?key=***");

    let log = gw.log();
    // Pingora's own lines (its start-up notes) share the stream, as JSON.
    assert!(json_lines(&log).iter().any(|l| l["target"].as_str().unwrap_or("").starts_with("pingora")));
    for secret in [KEY, bad_key, "sk-provider-secret", ADMIN_TOKEN, "private prompt words", "the answer text"]
    {
        assert!(!log.contains(secret), "{secret:?} is in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_bodies_adds_both_bodies_cut_at_the_cap() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let mut cfg = openai_config(&up.url());
    cfg.0["log"] = serde_json::json!({ "requests": true, "bodies": true, "body_max_bytes": 48 });
    let gw = Gateway::start(&cfg).await;
    let long = "word ".repeat(100);
    let prompt = format!(r#"{{"model":"fast","messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(prompt.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let lines = wait_access_lines(&gw, 1).await;
    let l = &lines[0];
    assert_eq!(l["request_body"], format!("{}…[{} more bytes]", &prompt[..48], prompt.len() - 48));
    assert_eq!(l["response_body"], format!("{}…[{} more bytes]", &OK[..48], OK.len() - 48));
    // Still no key, and the config check no longer calls the field unenforced.
    assert!(!gw.log().contains(KEY));
    assert!(!gw.log().contains("log.bodies is not enforced"));
}
