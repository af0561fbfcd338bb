//! The runtime and admission core through the real gateway: required fields refused in every
//! inbound format with nothing sent upstream, 405, a target that cannot take the request skipped
//! for the next, count_tokens and models accounted, and reloads that keep round-robin positions,
//! open circuits and in-flight requests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;

async fn post(gw: &Gateway, path: &str, body: &str) -> reqwest::Response {
    client().post(gw.url(path)).bearer_auth(KEY).body(body.to_string()).send().await.unwrap()
}

async fn wait_log(gw: &Gateway, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log().matches(needle).count() < times {
        assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn required_fields_are_refused_in_the_callers_shape_and_never_sent_upstream() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/chat/completions", r#"{"model":"fast","messages":[]}"#, "/error/type"),
        ("/v1/chat/completions", r#"{"model":"fast"}"#, "/error/type"),
        (
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"temperature":"0.5"}"#,
            "/error/type",
        ),
        ("/v1/responses", r#"{"model":"fast"}"#, "/error/type"),
        ("/v1/messages", r#"{"model":"fast","max_tokens":5,"messages":[]}"#, "/type"),
        (
            "/v1/messages",
            r#"{"model":"fast","max_tokens":"many","messages":[{"role":"user","content":"x"}]}"#,
            "/type",
        ),
        ("/v1beta/models/fast:generateContent", "{}", "/error/status"),
        ("/v1/models/fast:generateContent", r#"{"contents":[]}"#, "/error/status"),
        ("/v1/embeddings", r#"{"model":"fast"}"#, "/error/type"),
        // A valid chat body is still checked as what its endpoint takes.
        ("/v1/embeddings", r#"{"model":"fast","messages":[{"role":"user","content":"x"}]}"#, "/error/type"),
    ];
    for (path, body, shape) in cases {
        let r = post(&gw, path, body).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        assert!(r.headers().contains_key("x-gateway-attempts"), "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let t = v.pointer(shape).and_then(|t| t.as_str()).unwrap_or_default().to_string();
        assert!(["invalid_request_error", "error", "INVALID_ARGUMENT"].contains(&t.as_str()), "{path}: {v}");
    }
    assert_eq!(up.count(), 0, "nothing may reach the provider");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_method_is_405_with_allow() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let r = client().get(gw.url("/v1/chat/completions")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert!(r.headers().contains_key("x-gateway-attempts"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_the_request_cannot_be_translated_for_is_skipped_for_the_next() {
    let anth = MockUpstream::start(|_, _| Reply::json(500, "{}")).await;
    let oai = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&format!(
        r#"providers:
  - {{ name: anth, kind: anthropic, base_url: "{}", api_key: k }}
  - {{ name: oai, kind: openai, base_url: "{}", api_key: k }}
models:
  - alias: mixed
    targets: [ {{ provider: anth, model: claude }}, {{ provider: oai, model: gpt }} ]
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
"#,
        anth.url(),
        oai.url()
    ))
    .await;
    // n=2 cannot be sent to Anthropic: every request must land on OpenAI.
    for _ in 0..4 {
        let r = post(
            &gw,
            "/v1/chat/completions",
            r#"{"model":"mixed","n":2,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-gateway-provider"], "oai");
    }
    assert_eq!(anth.count(), 0);
    assert_eq!(oai.count(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn count_tokens_and_models_are_accounted() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let r = post(
        &gw,
        "/v1/messages/count_tokens",
        r#"{"model":"fast","messages":[{"role":"user","content":"hello there"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = client().get(gw.url("/v1/models")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let lines = gw.usage_lines(2).await;
    let endpoints: Vec<&str> = lines.iter().filter_map(|l| l["endpoint"].as_str()).collect();
    assert!(endpoints.contains(&"count_tokens") && endpoints.contains(&"models"), "{lines:?}");
    let ct = lines.iter().find(|l| l["endpoint"] == "count_tokens").unwrap();
    assert_eq!(ct["alias"], "fast");
    assert_eq!(ct["key"], "k1");
    assert!(ct["input_tokens"].as_u64().unwrap() > 0);
}

fn reload_config(a: &MockUpstream, b: &MockUpstream, bad: &MockUpstream, extra_alias: bool) -> String {
    let mut s = format!(
        r#"limits: {{ upstream_timeout_ms: 3000, max_attempts: 1, circuit_breaker: {{ failure_threshold: 2, cooldown_s: 600 }} }}
providers:
  - {{ name: pa, kind: openai_compatible, base_url: "{}" }}
  - {{ name: pb, kind: openai_compatible, base_url: "{}" }}
  - {{ name: pbad, kind: openai_compatible, base_url: "{}" }}
models:
  - alias: a
    targets: [ {{ provider: pa, model: m, weight: 3 }}, {{ provider: pb, model: m, weight: 1 }} ]
  - alias: x
    targets: [ {{ provider: pbad, model: m }} ]
"#,
        a.url(),
        b.url(),
        bad.url()
    );
    if extra_alias {
        s.push_str("  - alias: added\n    targets: [ { provider: pb, model: other } ]\n");
    }
    s.push_str("keys:\n  - { id: k, hash: \"{KEY_HASH}\" }\n");
    s
}

async fn sequence(gw: &Gateway, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r =
            post(gw, "/v1/chat/completions", r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#)
                .await;
        assert_eq!(r.status(), 200);
        out.push(r.headers()["x-gateway-provider"].to_str().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_of_another_alias_keeps_the_smooth_sequence_and_the_open_circuit() {
    let a = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let b = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let bad =
        MockUpstream::start(|_, _| Reply::json(500, r#"{"error":{"message":"down","type":"server_error"}}"#))
            .await;

    // The uninterrupted smooth 3:1 sequence, from a gateway that is never reloaded.
    let plain = Gateway::start(&reload_config(&a, &b, &bad, false)).await;
    let expected = sequence(&plain, 8).await;
    assert_eq!(expected.iter().filter(|p| *p == "pa").count(), 6, "{expected:?}");
    drop(plain);

    let gw = Gateway::start(&reload_config(&a, &b, &bad, false)).await;
    // Open x's circuit: two failures with threshold 2.
    for _ in 0..2 {
        let r =
            post(&gw, "/v1/chat/completions", r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#)
                .await;
        assert_eq!(r.status(), 502);
    }
    let mut seen = sequence(&gw, 3).await;
    gw.write_config(reload_config(&a, &b, &bad, true));
    wait_log(&gw, "config reloaded", 1).await;
    seen.extend(sequence(&gw, 5).await);
    assert_eq!(seen, expected, "the 3:1 sequence must go on across the reload");

    // x's circuit is still open: the 502 names the target and why, without calling it.
    let before = bad.count();
    let r = post(&gw, "/v1/chat/completions", r#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#)
        .await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-gateway-attempts"], "0");
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("pbad/m: skipped: circuit open"), "{msg}");
    assert_eq!(bad.count(), before);
    let r =
        post(&gw, "/v1/chat/completions", r#"{"model":"added","messages":[{"role":"user","content":"hi"}]}"#)
            .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_flight_request_finishes_on_the_runtime_it_started_with() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let up = MockUpstream::start(move |_, _| {
        Reply::sse(vec![
            (Wait::None, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"one \"},\"finish_reason\":null}]}\n\n"),
            (Wait::Gate(g.clone()), "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"),
        ])
    })
    .await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let mut r = post(
        &gw,
        "/v1/chat/completions",
        r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("one"));
    // Remove the alias the stream is on; the stream must still finish.
    gw.write_config(format!(
        r#"providers:
  - {{ name: up, kind: openai, base_url: "{}", api_key: sk-provider-secret }}
models:
  - {{ alias: other, targets: [ {{ provider: up, model: gpt-4o }} ] }}
keys:
  - {{ id: k1, hash: "{{KEY_HASH}}" }}
"#,
        up.url()
    ));
    wait_log(&gw, "config reloaded", 1).await;
    let r2 =
        post(&gw, "/v1/chat/completions", r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#)
            .await;
    assert_eq!(r2.status(), 404, "new requests see the new config");
    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("two") && rest.contains("[DONE]"), "{rest}");
}

fn jwt(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef-test").unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_bearer_is_a_principal_with_its_project_and_models() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&format!(
        "auth:\n  jwt: {{ issuer: https://login.test/, audience: llm-gateway, keys: [\"hmac:0123456789abcdef0123456789abcdef-test\"] }}\nprojects:\n  - {{ name: search }}\n{}",
        openai_config(&up.url())
    ))
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let good = serde_json::json!({"iss": "https://login.test/", "aud": "llm-gateway", "sub": "alice", "project": "search", "models": ["fast"], "exp": now + 600});
    let call = |token: String, model: &'static str| {
        let url = gw.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .body(format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(call(jwt(good.clone()), "fast").await, 200);
    assert_eq!(call(jwt(good.clone()), "other").await, 403, "the models claim is the allow-list");
    let mut expired = good.clone();
    expired["exp"] = serde_json::json!(now - 3600);
    assert_eq!(call(jwt(expired), "fast").await, 401);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = serde_json::json!("someone-else");
    assert_eq!(call(jwt(wrong_aud), "fast").await, 401);
    let lines = gw.usage_lines(2).await;
    let ok = lines.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!((ok["key"].as_str(), ok["project"].as_str()), (Some("jwt:alice"), Some("search")));
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflights_are_answered_here_and_allowed_origins_can_read_the_answers() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let mut cfg = openai_config(&up.url());
    cfg.0["cors"] = serde_json::json!({ "allow_origins": ["https://app.example.com"], "max_age_s": 300 });
    let gw = Gateway::start(&cfg).await;
    let c = client();
    let url = gw.url("/v1/chat/completions");
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type, x-stainless-os")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-headers"], "authorization, content-type, x-stainless-os");
    assert_eq!(h["access-control-max-age"], "300");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));

    let r = c
        .post(&url)
        .header("origin", "https://app.example.com")
        .bearer_auth(KEY)
        .body(r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(r.headers()["vary"], "origin");
    assert!(r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-ratelimit-remaining-requests"));

    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_eq!(up.count(), 1, "preflights never reach the upstream");

    // Off by default: an OPTIONS is a 405 like any unserved method.
    let plain = Gateway::start(&openai_config(&up.url())).await;
    let r = c
        .request(reqwest::Method::OPTIONS, plain.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
