//! OpenAI media and embeddings through the gateway: passed through to OpenAI-family providers
//! with `model` rewritten, binary answers streamed, and multipart uploads streamed with flat memory.

mod common;

use common::*;

fn config(up: &MockUpstream) -> String {
    format!(
        r#"limits: {{ upstream_timeout_ms: 5000, max_body_bytes: 20971520 }}
providers:
  - {{ name: up, kind: openai, base_url: "{}", api_key: sk-provider-secret }}
  - {{ name: az, kind: azure_openai, base_url: "{}", api_key: az-secret, api_version: "2024-10-21" }}
  - {{ name: m, kind: mock }}
models:
  - {{ alias: emb, targets: [ {{ provider: up, model: text-embedding-3-small }} ] }}
  - {{ alias: emb-az, targets: [ {{ provider: az, model: my-embedding-deploy }} ] }}
  - {{ alias: emb-mock, targets: [ {{ provider: m, model: mock-embed }} ] }}
  - {{ alias: img, targets: [ {{ provider: up, model: gpt-image-1 }} ] }}
  - {{ alias: tts, targets: [ {{ provider: up, model: gpt-4o-mini-tts }} ] }}
  - {{ alias: stt, targets: [ {{ provider: up, model: whisper-1 }} ] }}
  - {{ alias: legacy, targets: [ {{ provider: up, model: gpt-3.5-turbo-instruct }} ],
       pricing: {{ input_per_mtok: 1.5, output_per_mtok: 2.0 }} }}
  - {{ alias: mod, targets: [ {{ provider: up, model: omni-moderation-latest }} ] }}
  - {{ alias: editor, targets: [ {{ provider: az, model: gpt-image-deploy }}, {{ provider: up, model: gpt-image-1 }} ],
       pricing: {{ per_image: 0.04 }} }}
  - {{ alias: dalle2, targets: [ {{ provider: up, model: dall-e-2 }} ], pricing: {{ per_image: 0.02 }} }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
"#,
        up.url(),
        up.url()
    )
}

const EMB: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":4,"total_tokens":4}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_and_images_pass_through_with_the_model_rewritten() {
    let up = MockUpstream::start(|r, _| match r.path.as_str() {
        "/v1/embeddings" => Reply::json(200, EMB),
        p if p.starts_with("/openai/deployments/my-embedding-deploy/embeddings?api-version=2024-10-21") => {
            Reply::json(200, EMB)
        }
        "/v1/images/generations" => Reply::json(200, r#"{"created":1,"data":[{"b64_json":"aGk="}]}"#),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let gw = Gateway::start(&config(&up)).await;
    let c = client();
    let r = c
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .body(r#"{"model":"emb","input":"hello world"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), EMB);
    let got = &up.requests()[0];
    assert_eq!(got.json()["model"], "text-embedding-3-small");
    assert_eq!(got.header("authorization"), Some("Bearer sk-provider-secret"));

    let r = c
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .body(r#"{"model":"emb-az","input":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[1].header("api-key"), Some("az-secret"));

    let r = c
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .body(r#"{"model":"emb-mock","input":["a","b"]}"#)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["model"], "mock-embed");

    let r = c
        .post(gw.url("/v1/images/generations"))
        .bearer_auth(KEY)
        .body(r#"{"model":"img","prompt":"a cat"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[2].json()["model"], "gpt-image-1");

    let usage = gw.usage_lines(4).await;
    assert_eq!(usage[0]["endpoint"], "embeddings");
    assert_eq!(usage[0]["input_tokens"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_audio_is_streamed_back_as_binary() {
    let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let a = audio.clone();
    let up = MockUpstream::start(move |_, _| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "audio/mpeg".into())],
        body: a.clone(),
    })
    .await;
    let gw = Gateway::start(&config(&up)).await;
    let r = client()
        .post(gw.url("/v1/audio/speech"))
        .bearer_auth(KEY)
        .body(r#"{"model":"tts","input":"Hello","voice":"alloy"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    assert_eq!(r.bytes().await.unwrap().to_vec(), audio);
    assert_eq!(up.requests()[0].json()["model"], "gpt-4o-mini-tts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_mebibyte_audio_upload_streams_through_with_flat_memory() {
    let up = MockUpstream::start(|r, _| {
        let text = format!(r#"{{"text":"got {} bytes"}}"#, r.body.len());
        Reply::json(200, &text)
    })
    .await;
    let gw = Gateway::start(&config(&up)).await;
    let multipart = |audio: &[u8]| {
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n",
        );
        body.extend_from_slice(b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
        body.extend_from_slice(audio);
        body.extend_from_slice(b"\r\n--BOUNDARY--\r\n");
        body
    };
    // Warm up (pools, buffers, allocator arenas) with a 1 MiB upload, then measure the 10 MiB one.
    let warm = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .bearer_auth(KEY)
        .header("content-type", "multipart/form-data; boundary=BOUNDARY")
        .body(multipart(&vec![7u8; 1 << 20]))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let audio: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let body = multipart(&audio);
    let rss_before = gw.proc_kb("VmHWM");
    let r = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .bearer_auth(KEY)
        .header("content-type", "multipart/form-data; boundary=BOUNDARY")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let expected_len = body.len() - "stt".len() + "whisper-1".len();
    assert_eq!(r.text().await.unwrap(), format!(r#"{{"text":"got {expected_len} bytes"}}"#));
    let got = &up.requests()[1];
    assert_eq!(got.path, "/v1/audio/transcriptions");
    assert_eq!(got.header("content-type"), Some("multipart/form-data; boundary=BOUNDARY"));
    let mut expected = body.clone();
    let at = body.windows(7).position(|w| w == b"\r\n\r\nstt").unwrap() + 4;
    expected.splice(at..at + 3, b"whisper-1".iter().copied());
    assert_eq!(got.body, expected, "the upload arrives byte for byte, model rewritten");
    let rss_after = gw.proc_kb("VmHWM");
    let grew_kb = rss_after.saturating_sub(rss_before);
    println!(
        "gateway peak RSS: {rss_before} kB before, {rss_after} kB after a 10 MiB upload (+{grew_kb} kB)"
    );
    // Buffering the upload would add at least its 10 MiB; streaming adds a few buffers.
    assert!(grew_kb < 3 * 1024, "peak RSS grew by {grew_kb} kB: the upload was buffered");
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_are_translated_for_gemini_and_bedrock_titan() {
    let gemini = MockUpstream::start(|r, _| {
        let req = r.json();
        let n = req["requests"].as_array().map(|a| a.len()).unwrap_or(0);
        let embeddings: Vec<serde_json::Value> =
            (0..n).map(|i| serde_json::json!({"values": [i as f32, 0.5, -0.5]})).collect();
        Reply::json(200, &serde_json::json!({"embeddings": embeddings}).to_string())
    })
    .await;
    let bedrock = MockUpstream::start(|r, _| {
        let text = r.json()["inputText"].as_str().unwrap_or("").to_string();
        Reply::json(
            200,
            &serde_json::json!({"embedding": [text.len() as f32, 1.0], "inputTextTokenCount": 2}).to_string(),
        )
    })
    .await;
    let cfg = format!(
        r#"providers:
  - {{ name: gm, kind: gemini, base_url: "{}", api_key: gm-key }}
  - {{ name: br, kind: bedrock, base_url: "{}", region: us-east-1, aws_access_key_id: AKID, aws_secret_access_key: secret }}
models:
  - {{ alias: emb-g, targets: [ {{ provider: gm, model: text-embedding-004 }} ] }}
  - {{ alias: emb-t, targets: [ {{ provider: br, model: "amazon.titan-embed-text-v2:0" }} ] }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
"#,
        gemini.url(),
        bedrock.url()
    );
    let gw = Gateway::start(&cfg).await;
    let c = client();
    let r = c
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .body(r#"{"model":"emb-g","input":["a","bb"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["embedding"], serde_json::json!([1.0, 0.5, -0.5]));
    let got = &gemini.requests()[0];
    assert_eq!(got.path, "/v1beta/models/text-embedding-004:batchEmbedContents");
    assert_eq!(got.header("x-goog-api-key"), Some("gm-key"));
    assert_eq!(got.json()["requests"][1]["content"]["parts"][0]["text"], "bb");

    // Titan embeds one input per call: three calls, answers combined in order, usage summed.
    let r = c
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .body(r#"{"model":"emb-t","input":["x","yy","zzz"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let firsts: Vec<f64> =
        v["data"].as_array().unwrap().iter().map(|d| d["embedding"][0].as_f64().unwrap()).collect();
    assert_eq!(firsts, vec![1.0, 2.0, 3.0]);
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(bedrock.count(), 3);
    let got = &bedrock.requests()[0];
    assert_eq!(got.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert!(got.header("authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
    let usage = gw.usage_lines(2).await;
    assert_eq!(usage[1]["input_tokens"], 6);

    // A request the target cannot serve is a clear 400, not an upstream call.
    let r = c
        .post(gw.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .body(r#"{"model":"emb-t","input":"x","dimensions":300}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(bedrock.count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_moderations_image_edits_and_variations_are_routed_by_model_and_priced() {
    let up = MockUpstream::start(|r, _| match r.path.as_str() {
        "/v1/completions" => Reply::json(
            200,
            r#"{"id":"cmpl-1","object":"text_completion","model":"gpt-3.5-turbo-instruct","choices":[{"text":"hi","index":0,"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}"#,
        ),
        "/v1/moderations" => {
            Reply::json(200, r#"{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false}]}"#)
        }
        p if p.starts_with("/openai/deployments/gpt-image-deploy/images/edits?api-version=") => {
            Reply::json(200, r#"{"created":1,"data":[{"b64_json":"YQ=="},{"b64_json":"Yg=="}]}"#)
        }
        "/v1/images/variations" => Reply::json(200, r#"{"created":1,"data":[{"url":"https://x/1.png"}]}"#),
        _ => Reply::json(404, "{}"),
    })
    .await;
    let gw = Gateway::start(&config(&up)).await;
    let post = |path: &str, body: &str| {
        client()
            .post(gw.url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let r = post("/v1/completions", r#"{"model":"legacy","prompt":["a","b"],"max_tokens":5}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[0].json()["model"], "gpt-3.5-turbo-instruct");
    let r = post("/v1/moderations", r#"{"model":"mod","input":"text"}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[1].json()["model"], "omni-moderation-latest");
    // Refused before any upstream call: no prompt, no input, no model.
    for (path, body) in [
        ("/v1/completions", r#"{"model":"legacy"}"#),
        ("/v1/moderations", r#"{"model":"mod"}"#),
        ("/v1/moderations", r#"{"input":"x"}"#),
    ] {
        let r = post(path, body).await.unwrap();
        assert_eq!(r.status(), 400, "{path} {body}");
    }
    assert_eq!(up.count(), 2);
    let form = |model: &str| {
        format!("--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nadd a hat\r\n--B--\r\n")
    };
    let multipart = |path: &str, model: &str| {
        client()
            .post(gw.url(path))
            .bearer_auth(KEY)
            .header("content-type", "multipart/form-data; boundary=B")
            .body(form(model))
            .send()
    };
    let r = multipart("/v1/images/edits", "editor").await.unwrap();
    assert_eq!(r.status(), 200);
    let got = &up.requests()[2];
    assert_eq!(got.header("api-key"), Some("az-secret"), "the Azure target serves image edits");
    assert!(String::from_utf8_lossy(&got.body).contains("\r\n\r\ngpt-image-deploy\r\n"), "model rewritten");
    // Variations: OpenAI only (Azure has no variations endpoint).
    let r = multipart("/v1/images/variations", "dalle2").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[3].path, "/v1/images/variations");
    // Priced: 1000 in x 1.5 + 500 out x 2.0 = 2500 micro-USD; 2 images x 0.04; 1 x 0.02.
    let lines = gw.usage_lines(7).await;
    let cost =
        |e: &str| lines.iter().find(|l| l["endpoint"] == e).map(|l| l["cost_micros"].as_u64().unwrap_or(0));
    assert_eq!(cost("completions"), Some(2500));
    assert_eq!(cost("moderations"), Some(0));
    assert_eq!(cost("images_edits"), Some(80_000));
    assert_eq!(cost("images_variations"), Some(20_000));
}
