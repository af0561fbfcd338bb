//! Issue 9 (hardening), from outside: the real gateway over HTTP against mock upstreams on
//! loopback, each test a defect that was observed (multipart with two `model` parts, passthrough
//! answers that are not what they claim, client that goes away, slow request heads, keys in logs).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Aliases `stt` (allowed) and `stt-dear` (not allowed for the key).
fn stt_config(up: &MockUpstream) -> String {
    format!(
        r#"limits: {{ upstream_timeout_ms: 5000, max_body_bytes: 20971520 }}
providers:
  - {{ name: up, kind: openai, base_url: "{}", api_key: sk-provider-secret }}
models:
  - {{ alias: stt, targets: [ {{ provider: up, model: whisper-1 }} ] }}
  - {{ alias: stt-dear, targets: [ {{ provider: up, model: whisper-dear }} ] }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}", models: [stt] }}
"#,
        up.url()
    )
}

fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, value) in parts {
        body.extend_from_slice(b"--BOUNDARY\r\n");
        body.extend_from_slice(headers.as_bytes());
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--BOUNDARY--\r\n");
    body
}

const MODEL: &str = "Content-Disposition: form-data; name=\"model\"";
const FILE: &str =
    "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav";

/// A key allowed only `stt` must not reach the provider with another model by adding a
/// second `model` part: before the second part or after a megabyte of file, the form is a 400
/// in OpenAI's shape and the provider never receives a complete request.
#[tokio::test(flavor = "multi_thread")]
async fn a_form_with_two_model_parts_is_refused_before_the_provider_sees_it() {
    let up = MockUpstream::start(|r, _| Reply::json(200, &format!(r#"{{"text":"{} bytes"}}"#, r.body.len())))
        .await;
    let gw = Gateway::start(&stt_config(&up)).await;
    let c = client();
    let audio = vec![7u8; 1 << 20];
    let send = |body: Vec<u8>| {
        c.post(gw.url("/v1/audio/transcriptions"))
            .bearer_auth(KEY)
            .header("content-type", "multipart/form-data; boundary=BOUNDARY")
            .body(body)
            .send()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "second model right after the first",
            form(&[(MODEL, b"stt"), (MODEL, b"whisper-dear"), (FILE, b"RIFF")]),
        ),
        (
            "second model after a 1 MiB file",
            form(&[(MODEL, b"stt"), (FILE, &audio), (MODEL, b"whisper-dear")]),
        ),
        (
            "second model spelled differently",
            form(&[
                (MODEL, b"stt"),
                (FILE, &audio),
                ("content-disposition: form-data; name=model", b"stt-dear"),
            ]),
        ),
    ];
    for (what, body) in cases {
        let r = send(body).await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{what}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("model"), "{what}: {v}");
        assert_eq!(up.count(), 0, "{what}: the provider received a complete request");
    }
    // One model part still goes through, rewritten.
    let r = send(form(&[(MODEL, b"stt"), (FILE, &audio)])).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
    let got = &up.requests()[0].body;
    assert!(got.windows(9).any(|w| w == b"whisper-1"));
    assert!(!got.windows(12).any(|w| w == b"whisper-dear"));
    let usage = gw.usage_lines(4).await;
    let statuses: Vec<u64> = usage.iter().map(|u| u["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![400, 400, 400, 200]);
}
