//! The admin API over real HTTP on the admin listener: each role's rights (refusals change
//! nothing on disk), a key created through the API works at once and is refused at once once
//! deleted, and `/metrics` parses with an independent Prometheus reader and counts what was sent.

mod common;

use common::*;
use serde_json::{json, Value};

const VIEWER: &str = "viewer-token-7f3a9c1e5b2d";
const LEAD: &str = "search-lead-token-4e8b2a6c0d1f";
const OTHER_KEY: &str = "sk-gw-other-project-key-0123456789";

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

fn config(upstream: &str) -> Cfg {
    let stored = llm_gateway::auth::stored_form;
    let mut cfg = openai_config(upstream);
    cfg.0["admin"] = json!({
        "listen": "{ADMIN_LISTEN}",
        "token": ADMIN_TOKEN,
        "tokens": [
            { "id": "viewer", "hash": stored(VIEWER), "role": "viewer" },
            { "id": "lead", "hash": stored(LEAD), "role": "project", "project": "search" },
        ],
    });
    cfg.0["projects"] = json!([{ "name": "search" }, { "name": "other" }]);
    cfg.key_mut("k1")["project"] = json!("search");
    cfg.0["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": "k2", "hash": stored(OTHER_KEY), "project": "other", "models": ["fast"] }));
    cfg
}

async fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), gw.admin_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn chat(gw: &Gateway, key: &str) -> u16 {
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(key).body(body).send().await.unwrap();
    r.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_gets_exactly_its_rights_and_refusals_change_nothing() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url())).await;
    let file = || std::fs::read(gw.config_path()).unwrap();
    let before = file();

    assert_eq!(admin(&gw, "GET", "/admin/keys", None, None).await.0, 401);
    assert_eq!(admin(&gw, "GET", "/admin/keys", Some("not-a-token"), None).await.0, 401);

    // viewer: every GET, no change.
    for path in ["/admin/keys", "/admin/config", "/admin/health", "/admin/usage", "/admin/audit"] {
        assert_eq!(admin(&gw, "GET", path, Some(VIEWER), None).await.0, 200, "{path}");
    }
    let new_key = json!({ "id": "v1", "project": "search", "models": ["fast"] });
    assert_eq!(admin(&gw, "POST", "/admin/keys", Some(VIEWER), Some(new_key)).await.0, 403);
    assert_eq!(admin(&gw, "DELETE", "/admin/keys/k2", Some(VIEWER), None).await.0, 403);
    assert_eq!(admin(&gw, "POST", "/admin/reload", Some(VIEWER), None).await.0, 403);

    // project lead: the keys of its own project only.
    let (s, b) = admin(&gw, "GET", "/admin/keys", Some(LEAD), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["keys"].as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids, ["k1"], "only its project's keys: {b}");
    let elsewhere = json!({ "id": "l1", "project": "other", "models": ["fast"] });
    assert_eq!(admin(&gw, "POST", "/admin/keys", Some(LEAD), Some(elsewhere)).await.0, 403);
    assert_eq!(admin(&gw, "DELETE", "/admin/keys/k2", Some(LEAD), None).await.0, 403);
    let model = json!({ "alias": "mine", "targets": [ { "provider": "up", "model": "x" } ] });
    assert_eq!(admin(&gw, "POST", "/admin/models", Some(LEAD), Some(model)).await.0, 403);
    assert_eq!(admin(&gw, "GET", "/admin/config", Some(LEAD), None).await.0, 403);
    assert_eq!(file(), before, "no refusal changed the file");
    assert_eq!(chat(&gw, OTHER_KEY).await, 200, "k2 still works");

    let own = json!({ "id": "l2", "project": "search", "models": ["fast"] });
    let (s, b) = admin(&gw, "POST", "/admin/keys", Some(LEAD), Some(own)).await;
    assert_eq!(s, 201, "{b}");
    let (_, audit) = admin(&gw, "GET", "/admin/audit", Some(ADMIN_TOKEN), None).await;
    let line =
        audit["entries"].as_array().unwrap().iter().find(|l| l["action"] == "keys.create").cloned().unwrap();
    assert_eq!(line["actor"], "lead", "the audit line names the token: {line}");
    let plaintext = b["key"].as_str().unwrap();
    assert!(!audit.to_string().contains(plaintext), "no plaintext key in the audit log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_key_works_at_once_and_a_deleted_one_is_refused_at_once() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url())).await;
    let (s, b) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(ADMIN_TOKEN),
        Some(json!({ "id": "fresh", "models": ["fast"] })),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let key = b["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk-gw-") && key.len() > 40, "{key}");
    assert_eq!(chat(&gw, &key).await, 200, "usable on the very next request");
    let yaml = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(yaml.contains("id: fresh") && !yaml.contains(&key), "hashed in the file:\n{yaml}");
    let (s, _) = admin(&gw, "GET", "/admin/keys/fresh", Some(ADMIN_TOKEN), None).await;
    assert_eq!(s, 200);
    assert_eq!(admin(&gw, "DELETE", "/admin/keys/fresh", Some(ADMIN_TOKEN), None).await.0, 200);
    assert_eq!(chat(&gw, &key).await, 401, "refused on the very next request");
    assert_eq!(admin(&gw, "GET", "/admin/keys/fresh", Some(ADMIN_TOKEN), None).await.0, 404);
    assert!(!gw.log().contains(&key), "the plaintext key is in no log line");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_exactly_the_requests_sent() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url())).await;
    for _ in 0..7 {
        assert_eq!(chat(&gw, KEY).await, 200);
    }
    let forbidden = r#"{"model":"other","messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..2 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .body(forbidden)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    // A request is counted once its answer is written, so the client can ask for the metrics
    // before the last one is counted: scrape until all nine are (then check there are not more).
    let scrape_once = || async {
        let text = client()
            .get(gw.admin_url("/metrics"))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        (text, scrape)
    };
    let value_in = |scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    eventually(std::time::Duration::from_secs(5), "all nine requests counted", || async {
        value_in(&scrape_once().await.1, "llm_gateway_requests_total", &[]) >= 9.0
    })
    .await;
    let (text, scrape) = scrape_once().await;
    let value = |name: &str, labels: &[(&str, &str)]| value_in(&scrape, name, labels);
    assert_eq!(value("llm_gateway_requests_total", &[("alias", "fast"), ("status", "200")]), 7.0, "{text}");
    assert_eq!(value("llm_gateway_requests_total", &[("status", "403")]), 2.0, "{text}");
    assert_eq!(value("llm_gateway_tokens_total", &[("direction", "input")]), 21.0, "{text}");
    assert_eq!(value("llm_gateway_tokens_total", &[("direction", "output")]), 7.0, "{text}");
    assert_eq!(value("llm_gateway_active_requests", &[]), 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_filter_changes_at_run_time_by_an_admin_only_and_is_audited() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&config(&up.url())).await;
    let (s, b) = admin(&gw, "GET", "/admin/log", Some(VIEWER), None).await;
    assert_eq!((s, b["filter"].as_str()), (200, Some("info")), "{b}");
    let debug = json!({ "filter": "debug,pingora=info" });
    assert_eq!(admin(&gw, "PUT", "/admin/log", Some(VIEWER), Some(debug.clone())).await.0, 403);
    assert_eq!(
        admin(&gw, "PUT", "/admin/log", Some(ADMIN_TOKEN), Some(json!({ "filter": "no=such=thing" })))
            .await
            .0,
        400
    );
    let (s, b) = admin(&gw, "PUT", "/admin/log", Some(ADMIN_TOKEN), Some(debug)).await;
    assert_eq!((s, b["previous"].as_str()), (200, Some("info")), "{b}");
    let (_, b) = admin(&gw, "GET", "/admin/log", Some(VIEWER), None).await;
    assert!(b["filter"].as_str().unwrap().contains("debug"), "{b}");
    let (_, audit) = admin(&gw, "GET", "/admin/audit", Some(ADMIN_TOKEN), None).await;
    let line =
        audit["entries"].as_array().unwrap().iter().find(|l| l["action"] == "log.set").cloned().unwrap();
    assert_eq!(line["actor"], "admin", "{line}");
    assert!(gw.log().contains("log filter changed"));
}
