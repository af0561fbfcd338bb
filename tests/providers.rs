//! Provider kinds: what each upstream receives (path, headers, auth, body) and that its real
//! wire format comes back to the client, non-stream and stream. Bedrock requests are checked
//! by an independent SigV4 implementation inside the mock (a from-scratch HMAC chain on `ring`).

mod common;

use common::providers::{self as mocks, TOOL};
use common::*;
use serde_json::{json, Value};

async fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, String) {
    let mut rb = client().post(gw.url(path)).body(body.to_string());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_openai_uses_the_deployment_url_and_api_key() {
    let up = mocks::openai().await;
    let cfg = format!(
        r#"providers:
  - {{ name: az, kind: azure_openai, base_url: "{0}", api_key: az-secret, api_version: "2024-10-21" }}
  - {{ name: az1, kind: azure_openai, base_url: "{0}/openai/v1", api_key: az-secret, api_version: v1 }}
models:
  - {{ alias: a, targets: [ {{ provider: az, model: "my deploy" }} ] }}
  - {{ alias: b, targets: [ {{ provider: az1, model: gpt-4o }} ] }}
keys: [ {{ id: k, hash: "{{KEY_HASH}}" }} ]
"#,
        up.url()
    );
    let gw = Gateway::start(&cfg).await;
    let auth = [("api-key", KEY)]; // the Azure SDK's header
    let (s, body) = post(
        &gw,
        "/v1/chat/completions",
        &auth,
        json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let got = &up.requests()[0];
    assert_eq!(got.path, "/openai/deployments/my%20deploy/chat/completions?api-version=2024-10-21");
    assert_eq!(got.header("api-key"), Some("az-secret"));
    assert!(got.json().get("model").is_none(), "the deployment URL names the model");
    let (s, _) = post(
        &gw,
        "/v1/chat/completions",
        &auth,
        json!({"model": "b", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200);
    let got = &up.requests()[1];
    assert_eq!(got.path, "/openai/v1/chat/completions", "a trailing /openai/v1 is not doubled");
    assert_eq!(got.json()["model"], "gpt-4o");
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_compatible_servers_get_no_key_and_keep_a_path_prefix() {
    let up = mocks::openai().await;
    let cfg = format!(
        "providers:\n  - {{ name: vllm, kind: openai_compatible, base_url: \"{}/serving/v1/\" }}\nmodels:\n  - {{ alias: a, targets: [ {{ provider: vllm, model: meta-llama/Llama-3.1-8B }} ] }}\nkeys: [ {{ id: k, hash: \"{{KEY_HASH}}\" }} ]\n",
        up.url()
    );
    let gw = Gateway::start(&cfg).await;
    let (s, _) = post(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {KEY}"))],
        json!({"model": "a", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200);
    let got = &up.requests()[0];
    assert_eq!(got.path, "/serving/v1/chat/completions");
    assert_eq!(got.header("authorization"), None, "the client's key never reaches the upstream");
    assert_eq!(got.json()["model"], "meta-llama/Llama-3.1-8B");
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_gets_its_headers_and_the_native_stream_passes_through() {
    let up = mocks::anthropic().await;
    let cfg = format!(
        "providers:\n  - {{ name: ant, kind: anthropic, base_url: \"{}\", api_key: sk-ant-provider }}\nmodels:\n  - {{ alias: claude, targets: [ {{ provider: ant, model: claude-3-5-haiku-latest }} ] }}\nkeys: [ {{ id: k, hash: \"{{KEY_HASH}}\" }} ]\n",
        up.url()
    );
    let gw = Gateway::start(&cfg).await;
    let headers = [
        ("x-api-key", KEY),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
    ];
    let req = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let (s, body) = post(&gw, "/v1/messages", &headers, req.clone()).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from anthropic");
    let got = &up.requests()[0];
    assert_eq!(got.path, "/v1/messages");
    assert_eq!(got.header("x-api-key"), Some("sk-ant-provider"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(got.header("anthropic-beta"), Some("prompt-caching-2024-07-31"));
    assert_eq!(got.json()["model"], "claude-3-5-haiku-latest");

    let mut req = req;
    req["stream"] = json!(true);
    let (s, body) = post(&gw, "/v1/messages", &[("authorization", &format!("Bearer {KEY}"))], req).await;
    assert_eq!(s, 200);
    assert!(body.starts_with("event: message_start\n"), "{body}");
    assert!(body.contains("\"text\":\"from anthropic\""));
    assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), "{body}");
    let usage = gw.usage_lines(2).await;
    assert_eq!(
        (usage[1]["input_tokens"].as_u64(), usage[1]["output_tokens"].as_u64()),
        (Some(10), Some(4)),
        "{usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_gets_the_model_in_the_url_and_its_key_header() {
    let up = mocks::gemini().await;
    let cfg = format!(
        "providers:\n  - {{ name: gm, kind: gemini, base_url: \"{}\", api_key: gm-provider }}\nmodels:\n  - {{ alias: flash, targets: [ {{ provider: gm, model: gemini-2.0-flash }} ] }}\nkeys: [ {{ id: k, hash: \"{{KEY_HASH}}\" }} ]\n",
        up.url()
    );
    let gw = Gateway::start(&cfg).await;
    let req = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let (s, body) =
        post(&gw, "/v1beta/models/flash:generateContent", &[("x-goog-api-key", KEY)], req.clone()).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Hello from gemini"));
    let got = &up.requests()[0];
    assert_eq!(got.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(got.header("x-goog-api-key"), Some("gm-provider"));
    assert_eq!(got.json(), req, "same-format body is untouched");

    let (s, body) =
        post(&gw, &format!("/v1beta/models/flash:streamGenerateContent?alt=sse&key={KEY}"), &[], req).await;
    assert_eq!(s, 200);
    assert_eq!(up.requests()[1].path, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    assert!(body.starts_with("data: {") && body.contains("from gemini"), "{body}");

    // Without alt=sse the Google SDK gets one streamed JSON array (upstream is still SSE).
    let (s, body) = post(
        &gw,
        "/v1beta/models/flash:streamGenerateContent",
        &[("x-goog-api-key", KEY)],
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(up.requests()[2].path, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    let chunks: Vec<Value> =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not a JSON array ({e}): {body}"));
    let text: String =
        chunks.iter().filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, "Hello from gemini");
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrock_requests_are_sigv4_signed_over_the_exact_bytes_with_the_model_id_encoded() {
    let up = mocks::bedrock().await;
    let cfg = format!(
        "providers:\n  - {{ name: br, kind: bedrock, base_url: \"{}\", region: us-west-2, aws_access_key_id: AKIDEXAMPLE, aws_secret_access_key: wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, aws_session_token: tok123 }}\nmodels:\n  - {{ alias: haiku, targets: [ {{ provider: br, model: \"anthropic.claude-3-5-haiku-20241022-v1:0\" }} ] }}\nkeys: [ {{ id: k, hash: \"{{KEY_HASH}}\" }} ]\n",
        up.url()
    );
    let gw = Gateway::start(&cfg).await;
    let auth = format!("Bearer {KEY}");
    let req = json!({"model": "haiku", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": TOOL, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let (s, body) = post(&gw, "/v1/chat/completions", &[("authorization", &auth)], req.clone()).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    let got = &up.requests()[0];
    assert_eq!(got.path, "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");
    assert_eq!(got.header("x-amz-security-token"), Some("tok123"));
    let sent = got.json();
    assert_eq!(sent["system"][0]["text"], "Be brief.");
    assert_eq!(sent["toolConfig"]["tools"][0]["toolSpec"]["name"], TOOL);
    sigv4::verify(got, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-west-2").expect("signature verifies");
    let mut tampered = got.clone();
    tampered.body.push(b' ');
    assert!(
        sigv4::verify(&tampered, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-west-2").is_err(),
        "a tampered body is rejected"
    );

    let mut req = req;
    req["stream"] = json!(true);
    let (s, body) = post(&gw, "/v1/chat/completions", &[("authorization", &auth)], req).await;
    assert_eq!(s, 200);
    let got = &up.requests()[1];
    assert_eq!(got.path, "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream");
    sigv4::verify(got, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-west-2")
        .expect("stream signature verifies");
    assert!(body.contains("\"name\":\"get_weather\"") && body.ends_with("data: [DONE]\n\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bedrock_exception_frame_after_200_becomes_an_error_event_in_the_clients_stream() {
    use llm_gateway::formats::eventstream::{encode_event, encode_exception};
    let up = MockUpstream::start(|_, _| {
        let frames = vec![
            encode_event("messageStart", br#"{"role":"assistant"}"#),
            encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"text":"Partial "}}"#),
            encode_exception("throttlingException", br#"{"message":"Too many tokens, please wait"}"#),
        ];
        Reply::Stream {
            status: 200,
            content_type: "application/vnd.amazon.eventstream".into(),
            parts: frames.into_iter().map(|f| (Wait::None, f)).collect(),
        }
    })
    .await;
    let cfg = format!(
        "providers:\n  - {{ name: br, kind: bedrock, base_url: \"{}\", region: us-east-1 }}\nmodels:\n  - {{ alias: haiku, targets: [ {{ provider: br, model: \"anthropic.claude-3-5-haiku-20241022-v1:0\" }} ] }}\nkeys: [ {{ id: k, hash: \"{{KEY_HASH}}\" }} ]\n",
        up.url()
    );
    // Credentials from the standard AWS environment variables.
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-token"),
    ];
    let gw = Gateway::start_with_env(&cfg, &env, &[]).await;
    let req = json!({"model": "haiku", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (s, body) = post(&gw, "/v1/messages", &[("x-api-key", KEY)], req).await;
    assert_eq!(s, 200);
    assert!(body.contains("\"text\":\"Partial \""), "the text before the exception arrives: {body}");
    assert!(body.contains("event: error"), "an Anthropic error event ends the stream: {body}");
    assert!(body.contains("Too many tokens"), "{body}");
    let got = &up.requests()[0];
    assert!(got.header("authorization").unwrap().contains("Credential=AKIDENV/"), "env credentials used");
    assert_eq!(got.header("x-amz-security-token"), Some("env-token"));
    sigv4::verify(got, "env-secret", "us-east-1").expect("signed with the env secret");
    let usage = gw.usage_lines(1).await;
    assert!(usage[0]["error"].is_string(), "the usage line records the stream error: {:?}", usage[0]);
}

/// An independent SigV4 verifier (AWS Signature Version 4, as documented), for the mock side.
mod sigv4 {
    use super::Received;
    use ring::{digest, hmac};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes()).as_ref().to_vec()
    }

    /// URI-encode every byte but unreserved ones (and keep '/').
    fn encode_path(p: &str) -> String {
        p.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    pub fn verify(r: &Received, secret: &str, region: &str) -> Result<(), String> {
        let auth = r.header("authorization").ok_or("no authorization")?;
        let field = |name: &str| -> Result<String, String> {
            auth.split([',', ' '])
                .find_map(|p| p.trim().strip_prefix(name))
                .map(str::to_string)
                .ok_or(format!("no {name}"))
        };
        let credential = field("Credential=")?;
        let signed_headers = field("SignedHeaders=")?;
        let signature = field("Signature=")?;
        let scope: Vec<&str> =
            credential.split_once('/').map(|x| x.1).ok_or("bad credential")?.split('/').collect();
        let (date, reg, service) = (scope[0], scope[1], scope[2]);
        if reg != region || service != "bedrock" {
            return Err(format!("scope {scope:?}"));
        }
        let amz_date = r.header("x-amz-date").ok_or("no x-amz-date")?;
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        // Non-S3 services sign the path URI-encoded once more.
        let canonical_uri = encode_path(path);
        let mut canonical_headers = String::new();
        for h in signed_headers.split(';') {
            let v = r.header(h).ok_or(format!("signed header {h} missing"))?;
            canonical_headers.push_str(&format!("{h}:{}\n", v.trim()));
        }
        let payload_hash = hex(digest::digest(&digest::SHA256, &r.body).as_ref());
        let canonical =
            format!("POST\n{canonical_uri}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}");
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{reg}/{service}/aws4_request\n{}",
            hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
        );
        let k = hmac(format!("AWS4{secret}").as_bytes(), date);
        let k = hmac(&k, reg);
        let k = hmac(&k, service);
        let k = hmac(&k, "aws4_request");
        let expected = hex(&hmac(&k, &string_to_sign));
        if expected == signature {
            Ok(())
        } else {
            Err(format!("signature mismatch: expected {expected}, got {signature}"))
        }
    }
}
