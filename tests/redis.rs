//! Limits shared through a real `redis-server` by three gateway processes on one mock upstream
//! (SPEC section 9): RPM across instances as exact as on one, a budget across instances, spend
//! surviving restarts, Redis killed (`local`, `closed`, `open`, each bounded by `timeout_ms`) and
//! restarted, and in-flight slots of a `kill -9`ed instance freed by their lease.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// 5 input + 1000 output tokens at $1 / $2 per Mtok: 2005 micro-dollars, about what the
/// admission estimates for a short prompt with `max_tokens: 1000`.
const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1000,"total_tokens":1005}}"#;
const BODY: &str = r#"{"model":"fast","max_tokens":1000,"messages":[{"role":"user","content":"hi"}]}"#;

fn shared_config(up: &MockUpstream, redis: &RedisServer, key: Value, redis_extra: Value) -> Cfg {
    let mut cfg = openai_config(&up.url());
    let mut r = json!({ "url": redis.url(), "timeout_ms": 50 });
    r.as_object_mut().unwrap().extend(redis_extra.as_object().unwrap().clone());
    cfg.0["redis"] = r;
    let k1 = cfg.key_mut("k1");
    k1.as_object_mut().unwrap().extend(key.as_object().unwrap().clone());
    cfg
}

async fn three(cfg: &Cfg) -> Vec<Arc<Gateway>> {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(Arc::new(Gateway::start(cfg).await));
    }
    v
}

async fn health_of(gw: &Gateway) -> Value {
    let r = client().get(gw.admin_url("/admin/health")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// The OK answer after `wait`, as a chunked JSON body.
fn slow_json(wait: Wait) -> Reply {
    Reply::Stream {
        status: 200,
        content_type: "application/json".into(),
        parts: vec![(wait, OK.as_bytes().to_vec())],
    }
}

async fn chat(gw: &Gateway) -> reqwest::Response {
    client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(BODY).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rpm_across_three_instances_admits_what_one_instance_would() {
    let Some(redis) = RedisServer::start().await else { return };
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    // closed: a Redis call that fails is a 503 here (and the test fails), never a silent local
    // admission; a generous timeout for a debug build on a loaded box.
    let exact = json!({ "on_error": "closed", "timeout_ms": 1000 });
    let gws = three(&shared_config(&up, &redis, json!({ "rpm": 60 }), exact)).await;
    let (ok, refused) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let span = Duration::from_secs(6);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (gw, ok, refused) = (gws[i % 3].clone(), ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            while start.elapsed() < span {
                every.tick().await;
                let r = chat(&gw).await;
                match r.status().as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    s => panic!("unexpected status {s}: {}", r.text().await.unwrap_or_default()),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "RPM 60 over 3 instances, 60 clients, {elapsed:.2} s: {ok} admitted (expected 60 + {elapsed:.2}), {} refused",
        refused.load(Ordering::Relaxed)
    );
    let expected = 60.0 + elapsed;
    assert!((f64::from(ok) - expected).abs() <= 1.5, "admitted {ok}, expected {expected:.1} ± 1");
    assert_eq!(up.count(), ok as usize, "refused requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_across_instances_overspends_at_most_one_request_and_survives_restarts() {
    let Some(redis) = RedisServer::start().await else { return };
    let up = MockUpstream::start(|_, _| slow_json(Wait::Delay(Duration::from_millis(300)))).await;
    let budget = 20_000; // micro-dollars: about ten requests
    let exact = json!({ "on_error": "closed", "timeout_ms": 1000 });
    let cfg = shared_config(&up, &redis, json!({ "budget": { "usd": 0.02, "period": "daily" } }), exact);
    let gws = three(&cfg).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let gw = gws[i % 3].clone();
        tasks.push(tokio::spawn(async move { chat(&gw).await.status().as_u16() }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let mut spent = 0;
    let lines = |gw: &Gateway| {
        let text = std::fs::read_to_string(gw.dir.path().join("state/usage.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(5), "30 usage lines", || async {
        gws.iter().map(|g| lines(g).len()).sum::<usize>() == 30
    })
    .await;
    for gw in &gws {
        spent += lines(gw).iter().map(|l| l["cost_micros"].as_u64().unwrap_or(0)).sum::<u64>();
    }
    let over = spent.saturating_sub(budget);
    eprintln!("budget $0.02 over 3 instances, 30 concurrent: {admitted} admitted, spent {spent} µ$, overspend {over} µ$ (one request: 2005 µ$)");
    assert!(over <= 2005, "overspend {over} µ$ is more than one request's cost");
    assert!(admitted >= 9, "the budget admits about ten: {admitted}");
    // Every instance's admin view reads the shared counters: the spend of all three.
    for gw in &gws {
        eventually(Duration::from_secs(5), "the admin view shows the shared spend", || async {
            let r = client()
                .get(gw.admin_url("/admin/keys/k1/limits"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            v["source"] == "redis" && v["key"]["budget"]["spent_micros"].as_u64() == Some(spent)
        })
        .await;
    }
    // And so does preflight, on every instance.
    for gw in &gws {
        let r = client()
            .post(gw.url("/v1/gateway/preflight"))
            .bearer_auth(KEY)
            .body(r#"{"operations":[{"model":"fast","input_tokens":1,"output_tokens":1}]}"#)
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["budget_remaining_micros"]["key"].as_u64(), Some(budget.saturating_sub(spent)), "{v}");
    }

    // Spend lives in Redis: every instance restarted still refuses.
    let mut again = Vec::new();
    for gw in gws {
        let gw = Arc::try_unwrap(gw).ok().unwrap().restart().await;
        again.push(gw);
    }
    for gw in &again {
        let r = chat(gw).await;
        assert_eq!(r.status(), 429);
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_local_closed_open_each_within_the_timeout_then_shared_again() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let mode = |m: &str| shared_config(&up, &redis, json!({ "rpm": 5 }), json!({ "on_error": m }));
    let (local_a, local_b) = (Gateway::start(&mode("local")).await, Gateway::start(&mode("local")).await);
    let closed = Gateway::start(&mode("closed")).await;
    let open = Gateway::start(&mode("open")).await;
    assert_eq!(chat(&local_a).await.status(), 200, "Redis is up");

    redis.kill();
    let timed = |gw: &Gateway| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let t = Instant::now();
            let r = client().post(url).bearer_auth(KEY).body(BODY).send().await.unwrap();
            let waited = t.elapsed();
            assert!(waited < Duration::from_millis(50 + 100 + 150), "waited {waited:?} with Redis down");
            r
        }
    };
    // local: this instance's own counters (rpm 5: five, then 429).
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(timed(&local_a).await.status().as_u16());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    // closed: 503 with retry-after.
    let r = timed(&closed).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // open: admitted without limits.
    for _ in 0..8 {
        assert_eq!(timed(&open).await.status(), 200);
    }
    let health = health_of(&local_a).await;
    assert_eq!(health["limits_backend"]["redis"]["available"], false, "{health}");
    eventually(Duration::from_secs(3), "the outage is counted in limits_backend_errors_total", || async {
        let r = client().get(local_a.admin_url("/metrics")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let text = r.text().await.unwrap();
        text.lines().any(|l| {
            l.strip_prefix("llm_gateway_limits_backend_errors_total ").is_some_and(|v| v.trim() != "0")
        })
    })
    .await;

    // Redis back (empty): no gateway restart. Each instance's first call on its old connection
    // fails (and is admitted by its own counters); the next reconnects.
    redis.restart().await;
    eventually(Duration::from_secs(5), "A and B count in Redis again", || async {
        let _ = chat(&local_a).await;
        let _ = chat(&local_b).await;
        health_of(&local_a).await["limits_backend"]["redis"]["available"] == true
            && health_of(&local_b).await["limits_backend"]["redis"]["available"] == true
    })
    .await;
    // Shared counting resumed: on a clean bucket, five through A, then B (whose own counters
    // are untouched) is refused by the shared one.
    redis.flushall().await;
    for i in 0..5 {
        let r = chat(&local_a).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "request {i} through A: {body}\n{}", local_a.log());
    }
    let r = chat(&local_b).await;
    assert_eq!(
        r.status(),
        429,
        "B is refused by the shared bucket; A:\n{}\nB:\n{}",
        local_a.log(),
        local_b.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_slots_of_a_killed_instance_are_freed_by_their_lease() {
    let Some(redis) = RedisServer::start().await else { return };
    let gate = Arc::new(tokio::sync::Notify::new());
    let hold = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (g, h) = (gate.clone(), hold.clone());
    let up = MockUpstream::start(move |_, _| {
        if h.load(Ordering::SeqCst) {
            slow_json(Wait::Gate(g.clone()))
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let cfg = shared_config(&up, &redis, json!({ "max_parallel": 2 }), json!({ "slot_lease_s": 2 }));
    let mut a = Gateway::start(&cfg).await;
    let b = Gateway::start(&cfg).await;
    let url = a.url("/v1/chat/completions");
    for _ in 0..2 {
        let url = url.clone();
        tokio::spawn(async move { client().post(url).bearer_auth(KEY).body(BODY).send().await });
    }
    eventually(Duration::from_secs(5), "both requests reached the upstream", || async { up.count() == 2 })
        .await;
    let r = chat(&b).await;
    assert_eq!(r.status(), 429, "two slots held by A");
    a.kill9();
    let killed = Instant::now();
    hold.store(false, Ordering::SeqCst);
    gate.notify_waiters();
    eventually(Duration::from_secs(6), "the dead instance's slots expire", || async {
        let r =
            client().post(b.url("/v1/chat/completions")).bearer_auth(KEY).body(BODY).send().await.unwrap();
        r.status() != 429
    })
    .await;
    eprintln!("slots of a kill -9ed instance freed after {:?} (lease 2 s)", killed.elapsed());
}

/// `rediss://`: the limits go to a `redis-server` that speaks only TLS, its certificate issued
/// by a private CA the gateway trusts through `SSL_CERT_FILE`. With `on_error: closed`, a TLS
/// failure would refuse every request, so three 200s then a 429 prove the shared bucket.
#[tokio::test(flavor = "multi_thread")]
async fn rediss_shares_limits_over_tls_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("redis-server is not installed: skipping (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "llm-gateway test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("redis.pem"), leaf.pem()).unwrap();
    std::fs::write(path("redis.key"), leaf_key.serialize_pem()).unwrap();
    let port = free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-cert-file", &path("redis.pem"), "--tls-key-file", &path("redis.key")])
        .args(["--tls-ca-cert-file", &path("ca.pem"), "--tls-auth-clients", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if started.elapsed() > Duration::from_secs(10) || redis.try_wait().unwrap().is_some() {
            let _ = redis.kill();
            panic!("redis-server did not listen for TLS on {port} (built without TLS?)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let mut cfg = openai_config(&up.url());
    cfg.0["redis"] =
        json!({ "url": format!("rediss://localhost:{port}/0"), "on_error": "closed", "timeout_ms": 1000 });
    cfg.key_mut("k1").as_object_mut().unwrap().insert("rpm".into(), json!(3));
    let ca = path("ca.pem");
    let gw = Gateway::start_with_env(&cfg, &[("SSL_CERT_FILE", ca.as_str())], &["SSL_CERT_DIR"]).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r =
            client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(BODY).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    let health = health_of(&gw).await;
    let _ = redis.kill();
    let _ = redis.wait();
    println!("rediss: statuses {statuses:?}, health {}", health["limits_backend"]);
    assert_eq!(statuses, [200, 200, 200, 429], "log:\n{}", gw.log());
    assert_eq!(health["limits_backend"]["redis"]["available"], true, "{health}");
    assert_eq!(up.count(), 3, "the refused request never reached the upstream");
}
