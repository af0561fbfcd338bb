//! Jobs and files (SPEC section 10) against a stateful Rust mock of OpenAI's Files, Batches,
//! fine-tuning and videos APIs and Anthropic's Message Batches: the official Python SDKs'
//! calls through the gateway (tests/jobs/jobs.py), aliases rewritten inside batch files and
//! job requests, project isolation, a finished batch charged exactly once against the
//! budget, and a 200 MB upload through flat gateway memory.

mod common;

use std::time::Duration;

use common::jobs::{JobsMock, ANTHROPIC_KEY, OPENAI_KEY};
use common::*;
use serde_json::{json, Value};

const KEY_B: &str = "sk-test-key-of-project-beta";
const TARGET: &str = "gpt-4o-mini-2024-07-18";

fn config(mock: &JobsMock, alpha_budget: Option<f64>) -> Cfg {
    let mut alpha = json!({ "name": "alpha" });
    if let Some(usd) = alpha_budget {
        alpha["budget"] = json!({ "usd": usd, "period": "monthly" });
    }
    Cfg(json!({
        "limits": { "upstream_timeout_ms": 20000, "max_body_bytes": 1_048_576 },
        "jobs": { "provider": "openai", "anthropic_provider": "anthropic" },
        "providers": [
            { "name": "openai", "kind": "openai", "base_url": mock.url(), "api_key": OPENAI_KEY },
            { "name": "anthropic", "kind": "anthropic", "base_url": mock.url(), "api_key": ANTHROPIC_KEY },
        ],
        "models": [
            { "alias": "cheap", "targets": [ { "provider": "openai", "model": TARGET } ],
              "pricing": { "input_per_mtok": 1.0, "output_per_mtok": 2.0,
                           "batch": { "input_per_mtok": 0.5, "output_per_mtok": 1.0 } } },
            { "alias": "tunable", "targets": [ { "provider": "openai", "model": TARGET } ] },
            { "alias": "video", "targets": [ { "provider": "openai", "model": "sora-2" } ],
              "pricing": { "per_video_second": 0.1 } },
            { "alias": "claude", "targets": [ { "provider": "anthropic", "model": "claude-3-5-haiku-latest" } ] },
            { "alias": "secret", "targets": [ { "provider": "openai", "model": "gpt-4o" } ] },
        ],
        "projects": [ alpha, { "name": "beta" } ],
        "keys": [
            { "id": "a", "hash": "{KEY_HASH}", "project": "alpha", "models": ["cheap", "tunable", "video", "claude"] },
            { "id": "b", "hash": llm_gateway::auth::stored_form(KEY_B), "project": "beta" },
        ],
    }))
}

/// A multipart form of `purpose` and a file part holding `file`.
fn upload_form(purpose: &str, file: &[u8]) -> (String, Vec<u8>) {
    let b = "----gatewaytestboundary";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

fn batch_line(i: usize, model: &str, pad: usize) -> String {
    json!({"custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "x".repeat(pad)}]}})
    .to_string()
}

async fn upload(gw: &Gateway, key: &str, purpose: &str, file: &[u8]) -> (u16, Value) {
    let (ct, body) = upload_form(purpose, file);
    let r = client()
        .post(gw.url("/v1/files"))
        .bearer_auth(key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or(Value::Null))
}

async fn call(
    gw: &Gateway,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client().request(method, gw.url(path)).bearer_auth(key);
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn official_sdks_drive_every_job_api_and_another_project_sees_none_of_it() {
    if std::env::var("CONFORMANCE").as_deref() == Ok("skip") {
        eprintln!("jobs sdk: SKIPPED (CONFORMANCE=skip)");
        return;
    }
    let mock = JobsMock::start().await;
    let gw = Gateway::start(config(&mock, None)).await;
    let (dir, sdks) = ("conformance-current", &["openai>=3,<4", "anthropic>=2,<3", "google-genai>=3,<4"][..]);
    let Some(py) = tokio::task::spawn_blocking(move || venv_python(dir, sdks)).await.unwrap() else {
        eprintln!("jobs sdk: SKIPPED (no python3 venv)");
        return;
    };
    let url = gw.url("");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jobs/jobs.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("KEY_A", KEY)
            .env("KEY_B", KEY_B)
            .output()
            .expect("run jobs.py")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "jobs.py failed:\n{stderr}\n{stdout}\ngateway log:\n{}", gw.log());
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(seen["ok"], true);
    // The provider got target models, never aliases, and only the gateway's credentials.
    assert_eq!(mock.batch_file_models(), vec![TARGET; 3]);
    {
        let st = mock.state.lock();
        assert_eq!(st.bad_auth, 0, "every upstream call carried the provider key");
        let mb_models: Vec<String> = st
            .mb_requests
            .values()
            .flatten()
            .map(|r| r["params"]["model"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(
            !mb_models.is_empty() && mb_models.iter().all(|m| m == "claude-3-5-haiku-latest"),
            "{mb_models:?}"
        );
        assert!(st.jobs.iter().all(|j| j["model"] == TARGET));
        assert!(
            st.videos.iter().all(|v| v["model"] == "sora-2"),
            "the multipart video form's model was rewritten"
        );
    }
    // One usage line per creation (project alpha), with the endpoint named.
    let lines = gw.usage_lines(1).await;
    let creates: Vec<&str> = lines
        .iter()
        .filter(|l| l["endpoint"].as_str().is_some_and(|e| e.ends_with("_create")))
        .map(|l| l["endpoint"].as_str().unwrap())
        .collect();
    for e in
        ["files_create", "batches_create", "fine_tuning_create", "videos_create", "message_batches_create"]
    {
        assert!(creates.contains(&e), "a usage line for {e}: {creates:?}");
    }
    // The video was charged once at 8 s x 0.10 USD.
    let video_cost: f64 = lines
        .iter()
        .filter(|l| l["endpoint"] == "videos_get")
        .map(|l| l["cost_usd"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((video_cost - 0.8).abs() < 1e-9, "video cost {video_cost}");
    // The message batch's usage (only in its results: 2 x 10 in, 3 out) charged at the first
    // of two downloads.
    let results: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l["endpoint"] == "message_batches_results")
        .map(|l| (l["input_tokens"].as_u64().unwrap_or(0), l["output_tokens"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(results, vec![(20, 6), (0, 0)]);
    // The record survives a restart: B still gets 404, A still reads its file.
    let file_id = lines
        .iter()
        .find(|l| l["endpoint"] == "files_create")
        .and_then(|l| l["attempt_log"].as_array())
        .and_then(|a| a.iter().find_map(|x| x.as_str()?.strip_prefix("created ").map(str::to_string)))
        .expect("created id in the attempt log");
    let gw = gw.restart().await;
    assert_eq!(call(&gw, KEY, reqwest::Method::GET, &format!("/v1/files/{file_id}"), None).await.0, 200);
    assert_eq!(call(&gw, KEY_B, reqwest::Method::GET, &format!("/v1/files/{file_id}"), None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_line_naming_an_alias_the_key_may_not_use_refuses_the_upload_naming_the_line() {
    let mock = JobsMock::start().await;
    let gw = Gateway::start(config(&mock, None)).await;
    let file = format!(
        "{}\n{}\n{}\n",
        batch_line(0, "cheap", 1),
        batch_line(1, "secret", 1),
        batch_line(2, "cheap", 1)
    );
    let (status, v) = upload(&gw, KEY, "batch", file.as_bytes()).await;
    assert_eq!(status, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("line 2") && msg.contains("secret"), "{msg}");
    // A model that is no alias at all (the provider's own name) is refused the same way.
    let file = format!("{}\n", batch_line(0, "gpt-4o", 1));
    let (status, v) = upload(&gw, KEY, "batch", file.as_bytes()).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("line 1"), "{v}");
    // The provider never got a complete upload.
    assert!(mock.state.lock().files.is_empty(), "no file reached the provider");
    // A job naming a forbidden alias: 403 before anything is sent.
    let (status, _) =
        call(&gw, KEY, reqwest::Method::POST, "/v1/videos", Some(json!({"model": "secret", "prompt": "x"})))
            .await;
    assert_eq!(status, 403);
    let (status, v) = call(
        &gw,
        KEY,
        reqwest::Method::POST,
        "/v1/messages/batches",
        Some(json!({"requests": [{"custom_id": "a", "params": {"model": "secret", "max_tokens": 1, "messages": []}}]})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["type"], "error", "Anthropic's error shape: {v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("requests[0].params.model"), "{v}");
    assert!(mock.state.lock().videos.is_empty() && mock.state.lock().message_batches.is_empty());
    // Nothing was recorded for the refused uploads.
    let (status, v) = call(&gw, KEY, reqwest::Method::GET, "/v1/files", None).await;
    assert_eq!((status, v["data"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
}

/// The project's budget spend as the admin API shows it (micro-USD).
async fn project_spent(gw: &Gateway) -> u64 {
    let r = client().get(gw.admin_url("/admin/keys/a/limits")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["project"]["budget"]["spent_micros"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_batch_is_charged_exactly_once_however_often_it_is_read() {
    let mock = JobsMock::start().await;
    let gw = Gateway::start(config(&mock, Some(1.0))).await;
    let file: String = (0..3).map(|i| batch_line(i, "cheap", 1) + "\n").collect();
    let (status, f) = upload(&gw, KEY, "batch", file.as_bytes()).await;
    assert_eq!(status, 200, "{f}");
    let body =
        json!({"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let (status, b) = call(&gw, KEY, reqwest::Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!(status, 200, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let path = format!("/v1/batches/{id}");
    // validating -> in_progress -> completed, read twice more, and listed twice.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, v) = call(&gw, KEY, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}");
        statuses.push(v["status"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(statuses, ["in_progress", "completed", "completed", "completed"]);
    for _ in 0..2 {
        let (status, v) = call(&gw, KEY, reqwest::Method::GET, "/v1/batches", None).await;
        assert_eq!((status, v["data"][0]["status"].as_str()), (200, Some("completed")), "{v}");
    }
    // 3 lines x (10 in x 0.5 + 5 out x 1.0) USD/Mtok at the alias's batch prices = 30 micro-USD.
    let lines = gw.usage_lines(8).await;
    assert_eq!(lines.len(), 8, "one line per call");
    let charged: Vec<&Value> = lines.iter().filter(|l| l["cost_micros"].as_u64().unwrap_or(0) > 0).collect();
    assert_eq!(charged.len(), 1, "one line carries the batch's cost: {lines:#?}");
    assert_eq!(charged[0]["cost_micros"], 30);
    assert_eq!(
        (charged[0]["input_tokens"].as_u64(), charged[0]["output_tokens"].as_u64()),
        (Some(30), Some(15))
    );
    assert_eq!(charged[0]["alias"], "cheap");
    assert_eq!(charged[0]["endpoint"], "batches_get");
    assert_eq!(project_spent(&gw).await, 30, "charged against the project's budget");
    // After a restart (spend rebuilt from the usage lines), reads charge nothing more.
    let gw = gw.restart().await;
    let (status, _) = call(&gw, KEY, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200);
    let after = gw.usage_lines(9).await;
    let total: u64 = after.iter().map(|l| l["cost_micros"].as_u64().unwrap_or(0)).sum();
    assert_eq!((after.len(), total), (9, 30), "charged once");
    assert_eq!(project_spent(&gw).await, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_projects_ids_are_404_and_lists_hold_only_the_callers_objects() {
    let mock = JobsMock::start().await;
    let gw = Gateway::start(config(&mock, None)).await;
    let mut mine = Vec::new();
    for i in 0..3 {
        let (status, f) = upload(&gw, KEY, "fine-tune", format!("{{\"n\":{i}}}\n").as_bytes()).await;
        assert_eq!(status, 200, "{f}");
        mine.push(f["id"].as_str().unwrap().to_string());
    }
    let (status, theirs) = upload(&gw, KEY_B, "fine-tune", b"{}\n").await;
    assert_eq!(status, 200);
    let theirs = theirs["id"].as_str().unwrap().to_string();
    // Pages of 2 through the SDK's cursor: A's three files, newest first, and never B's.
    let (_, p1) = call(&gw, KEY, reqwest::Method::GET, "/v1/files?limit=2", None).await;
    let ids = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&p1), vec![mine[2].clone(), mine[1].clone()]);
    assert_eq!(p1["has_more"], true);
    let (_, p2) =
        call(&gw, KEY, reqwest::Method::GET, &format!("/v1/files?limit=2&after={}", mine[1]), None).await;
    assert_eq!(ids(&p2), vec![mine[0].clone()]);
    assert_eq!(p2["has_more"], false);
    let (_, pb) = call(&gw, KEY_B, reqwest::Method::GET, "/v1/files", None).await;
    assert_eq!(ids(&pb), vec![theirs.clone()]);
    // Every id-bearing call on another project's object: 404, and the provider never asked.
    let before = mock.state.lock().seen.len();
    for (m, p) in [
        (reqwest::Method::GET, format!("/v1/files/{}", mine[0])),
        (reqwest::Method::GET, format!("/v1/files/{}/content", mine[0])),
        (reqwest::Method::DELETE, format!("/v1/files/{}", mine[0])),
        (reqwest::Method::GET, "/v1/batches/batch_999".to_string()),
        (reqwest::Method::POST, "/v1/fine_tuning/jobs/ftjob-1/cancel".to_string()),
        (reqwest::Method::GET, "/v1/videos/video_1/content".to_string()),
    ] {
        let (status, v) = call(&gw, KEY_B, m.clone(), &p, None).await;
        assert_eq!(status, 404, "{m} {p}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    let (status, v) = call(&gw, KEY_B, reqwest::Method::GET, "/v1/messages/batches/msgbatch_1", None).await;
    assert_eq!((status, v["type"].as_str()), (404, Some("error")), "Anthropic's shape: {v}");
    assert_eq!(mock.state.lock().seen.len(), before);
    // Wrong method: 405 with allow.
    let r = client().put(gw.url("/v1/files")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    // A provider that serves no job API, named by header: a clear 400.
    let r = client()
        .get(gw.url("/v1/files"))
        .bearer_auth(KEY)
        .header("x-gateway-provider", "anthropic")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("does not serve files"), "{v}");
}

/// VmHWM of the gateway process, in KiB.
fn hwm(gw: &Gateway) -> u64 {
    gw.proc_kb("VmHWM")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_mb_batch_file_streams_through_flat_memory_with_every_line_rewritten() {
    let mock = JobsMock::start().await;
    let mut cfg = config(&mock, None);
    cfg.0["limits"]["max_file_bytes"] = json!(300 * 1024 * 1024);
    let gw = Gateway::start(cfg).await;
    // Warm the connection pools and buffers with a small upload first.
    let (status, _) = upload(&gw, KEY, "batch", format!("{}\n", batch_line(0, "cheap", 10)).as_bytes()).await;
    assert_eq!(status, 200);
    let before = hwm(&gw);
    let line = batch_line(0, "cheap", 16 * 1024);
    let n = 200 * 1024 * 1024 / (line.len() + 1);
    let mut file = Vec::with_capacity(n * (line.len() + 1));
    for i in 0..n {
        file.extend_from_slice(batch_line(i, "cheap", 16 * 1024).as_bytes());
        file.push(b'\n');
    }
    let size = file.len();
    let started = std::time::Instant::now();
    let (status, v) =
        tokio::time::timeout(Duration::from_secs(240), upload(&gw, KEY, "batch", &file)).await.unwrap();
    assert_eq!(status, 200, "{v}");
    let after = hwm(&gw);
    println!(
        "200 MB upload: {size} bytes, {n} lines in {:.1} s; gateway VmHWM {} KiB before, {} KiB after (+{} KiB)",
        started.elapsed().as_secs_f64(),
        before,
        after,
        after.saturating_sub(before)
    );
    assert!(after.saturating_sub(before) < 32 * 1024, "VmHWM grew by {} KiB", after - before);
    let models = mock.batch_file_models();
    assert_eq!(models.len(), n + 1, "every line arrived");
    assert!(models.iter().all(|m| m == TARGET), "every line names the target model");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_every_instance_serves_any_instances_objects_and_charges_a_batch_once() {
    let Some(redis) = RedisServer::start().await else { return };
    let mock = JobsMock::start().await;
    let mut cfg = config(&mock, Some(1.0));
    cfg.0["redis"] = json!({ "url": redis.url(), "timeout_ms": 200 });
    let (one, two) = (Gateway::start(&cfg).await, Gateway::start(&cfg).await);
    let file: String = (0..3).map(|i| batch_line(i, "cheap", 1) + "\n").collect();
    let (status, f) = upload(&one, KEY, "batch", file.as_bytes()).await;
    assert_eq!(status, 200, "{f}");
    let fid = f["id"].as_str().unwrap().to_string();
    // The other instance knows the file's owner: the owner reads it, another project gets 404.
    assert_eq!(call(&two, KEY, reqwest::Method::GET, &format!("/v1/files/{fid}"), None).await.0, 200);
    assert_eq!(call(&two, KEY_B, reqwest::Method::GET, &format!("/v1/files/{fid}"), None).await.0, 404);
    let (_, list) = call(&two, KEY, reqwest::Method::GET, "/v1/files", None).await;
    assert_eq!(list["data"][0]["id"], fid.as_str(), "{list}");
    // A batch made on the second instance from the first's file, read on both.
    let body = json!({"input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let (status, b) = call(&two, KEY, reqwest::Method::POST, "/v1/batches", Some(body)).await;
    assert_eq!(status, 200, "{b}");
    let path = format!("/v1/batches/{}", b["id"].as_str().unwrap());
    let mut statuses = Vec::new();
    for gw in [&one, &two, &one, &two] {
        let (status, v) = call(gw, KEY, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}\n{}\n{}", one.log(), two.log());
        statuses.push(v["status"].as_str().unwrap_or("").to_string());
    }
    assert_eq!(statuses, ["in_progress", "completed", "completed", "completed"]);
    let (l1, l2) = (one.usage_lines(4).await, two.usage_lines(5).await);
    let charged: Vec<u64> =
        l1.iter().chain(&l2).filter_map(|l| l["cost_micros"].as_u64()).filter(|&c| c > 0).collect();
    assert_eq!(charged, vec![30], "charged once across the two instances");
}
