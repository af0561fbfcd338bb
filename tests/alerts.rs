//! Operational events through the real gateway: a local webhook receiver gets exactly one
//! event per budget crossing (alert_at, exhausted), per circuit opening and closing, per alias
//! going down and per refused reload; each is also an audit line (actor `gateway`) and counted
//! in `alerts_total`, and the circuit and budget gauges follow.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// 100,000 input tokens at $1/Mtok: $0.10 per answer.
const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100000,"completion_tokens":0,"total_tokens":100000}}"#;

fn body(model: &str) -> String {
    format!(r#"{{"model":"{model}","max_tokens":5,"messages":[{{"role":"user","content":"hi"}}]}}"#)
}

async fn chat(gw: &Gateway, model: &str) -> u16 {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(body(model))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

/// The events the receiver got, by kind.
fn events(hook: &MockUpstream) -> Vec<Value> {
    hook.requests().iter().map(|r| r.json()).collect()
}

fn count(hook: &MockUpstream, kind: &str) -> usize {
    events(hook).iter().filter(|e| e["kind"] == kind).count()
}

fn audit(gw: &Gateway) -> Vec<Value> {
    let text = std::fs::read_to_string(gw.dir.path().join("state/audit.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

async fn metrics(gw: &Gateway) -> String {
    let r = client().get(gw.admin_url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_event_per_budget_crossing_circuit_change_alias_down_and_refused_reload() {
    let hook = MockUpstream::start(|_, _| Reply::json(200, "{}")).await;
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let flaky = MockUpstream::start(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Reply::json(500, r#"{"error":{"message":"boom","type":"server_error"}}"#)
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let mut cfg = openai_config(&up.url())
        .limits(json!({ "max_attempts": 1, "circuit_breaker": { "failure_threshold": 2, "cooldown_s": 1 } }))
        .alias(json!({ "alias": "flaky", "targets": [ { "provider": "down", "model": "m" } ] }));
    cfg.0["providers"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "down", "kind": "openai_compatible", "base_url": flaky.url() }));
    cfg.0["alerts"] = json!({ "webhook": format!("{}/hook", hook.url()) });
    let k1 = cfg.key_mut("k1");
    k1["models"] = json!(["fast", "flaky"]);
    k1["budget"] = json!({ "usd": 0.25, "period": "daily", "alert_at": 0.5 });
    let gw = Gateway::start(&cfg).await;

    // Circuit: two failures open it (one event), and the alias's only target is then down.
    assert_eq!(chat(&gw, "flaky").await, 502);
    assert_eq!(chat(&gw, "flaky").await, 502);
    eventually(Duration::from_secs(5), "circuit_open and alias_down delivered", || async {
        count(&hook, "circuit_open") == 1 && count(&hook, "alias_down") == 1
    })
    .await;
    let open = events(&hook).into_iter().find(|e| e["kind"] == "circuit_open").unwrap();
    assert_eq!(open["subject"], "down/m");
    let m = metrics(&gw).await;
    assert!(m.contains(r#"llm_gateway_circuit_open{target="down/m"} 1"#), "{m}");

    // After the cool-down a successful probe closes it: one circuit_close.
    failing.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(5), "the probe succeeds", || async { chat(&gw, "flaky").await == 200 })
        .await;
    eventually(Duration::from_secs(5), "circuit_close delivered", || async {
        count(&hook, "circuit_close") == 1
    })
    .await;

    // Budget: $0.10, $0.20 (crosses 0.5 × $0.25), $0.30 (exhausted), then refused.
    for expect in [200, 200, 200, 429] {
        assert_eq!(chat(&gw, "fast").await, expect);
    }
    eventually(Duration::from_secs(5), "both budget events delivered", || async {
        count(&hook, "budget_alert") == 1 && count(&hook, "budget_exhausted") == 1
    })
    .await;
    let alert = events(&hook).into_iter().find(|e| e["kind"] == "budget_alert").unwrap();
    assert_eq!(alert["subject"], "key:k1");
    assert!(alert["text"].as_str().unwrap().contains("budget alert"), "{alert}");
    assert!(alert["detail"].as_str().unwrap().contains("alert_at 0.5"), "{alert}");

    eventually(Duration::from_secs(5), "the budget gauge follows", || async {
        metrics(&gw).await.contains(r#"llm_gateway_budget_used_ratio{scope="key",name="k1"} 1.2"#)
    })
    .await;

    // A broken edit of the file is refused: one reload_failed, naming the file.
    let mut broken = cfg.clone();
    broken.alias_mut("fast")["targets"][0]["provider"] = json!("nope");
    gw.write_config(&broken);
    eventually(Duration::from_secs(5), "reload_failed delivered", || async {
        count(&hook, "reload_failed") == 1
    })
    .await;

    // Nothing twice, and every event is an audit line and a counter.
    for (kind, n) in [
        ("budget_alert", 1),
        ("budget_exhausted", 1),
        ("circuit_open", 1),
        ("circuit_close", 1),
        ("alias_down", 1),
        ("reload_failed", 1),
    ] {
        assert_eq!(count(&hook, kind), n, "{kind}: {:?}", events(&hook));
        let lines = audit(&gw).into_iter().filter(|l| l["action"] == format!("alert.{kind}")).count();
        assert_eq!(lines, n, "audit lines for {kind}");
    }
    let m = metrics(&gw).await;
    assert!(m.contains(r#"llm_gateway_alerts_total{kind="circuit_open"} 1"#), "{m}");
    assert!(m.contains(r#"llm_gateway_alerts_total{kind="budget_alert"} 1"#), "{m}");
    assert!(m.contains(r#"llm_gateway_circuit_open{target="down/m"} 0"#), "{m}");
    assert!(m.contains(r#"llm_gateway_ratelimited_total{kind="budget"} 1"#), "the refusal is counted: {m}");
    assert!(m.contains(r#"llm_gateway_upstream_healthy{provider="down"} 1"#), "{m}");
    let line = audit(&gw).into_iter().find(|l| l["action"] == "alert.budget_exhausted").unwrap();
    assert_eq!((line["actor"].as_str(), line["target"].as_str()), (Some("gateway"), Some("key:k1")));
    assert!(gw.log().contains("budget_exhausted"), "the event is a log line too");
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
        .args(["audit", "verify", "--file"])
        .arg(gw.dir.path().join("state/audit.jsonl"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "the chain holds: {}", String::from_utf8_lossy(&verify.stderr));
}
