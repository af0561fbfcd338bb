//! What the current SDKs call, against Rust mocks: the Google SDK's paths on `/v1/` and
//! `/v1beta/` alike (generation, `countTokens`, `embedContent`, `batchEmbedContents`, models
//! list and get), Gemini-shaped errors on every Gemini path, `GET /v1/models` in each client's
//! own shape, and the answer-field policy (`model`, ids) across routes.

mod common;

use serde_json::{json, Value};

use common::*;

/// A JSON request body (reqwest is built without its `json` feature here).
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json").body(v.to_string())
    }
}

/// Headers google-genai 3.6.1 sends (observed against a mock).
fn google(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.header("x-goog-api-key", KEY).header("x-goog-api-client", "google-genai-sdk/3.6.1 gl-python/3.11.7")
}

/// An OpenAI-family mock: `/v1/embeddings` answers one vector `[i, len(text)]` per input;
/// chat answers one text completion.
async fn openai_mock() -> MockUpstream {
    MockUpstream::start(|r, _| {
        let req = r.json();
        if r.path.ends_with("/embeddings") {
            let inputs = req["input"].as_array().cloned().unwrap_or_default();
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": [i as f32, t.as_str().unwrap_or("").len() as f32]}))
                .collect();
            let body = json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": 11, "total_tokens": 11}});
            return Reply::json(200, &body.to_string());
        }
        let body = json!({"id": "chatcmpl-up1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        Reply::json(200, &body.to_string())
    })
    .await
}

/// A Gemini mock: `batchEmbedContents` answers `[i, 7]` per request.
async fn gemini_mock() -> MockUpstream {
    MockUpstream::start(|r, _| {
        let req = r.json();
        if r.path.contains(":batchEmbedContents") {
            let n = req["requests"].as_array().map(Vec::len).unwrap_or(0);
            let embeddings: Vec<Value> = (0..n).map(|i| json!({"values": [i as f32, 7.0]})).collect();
            return Reply::json(200, &json!({"embeddings": embeddings}).to_string());
        }
        Reply::json(404, r#"{"error":{"code":404,"message":"no","status":"NOT_FOUND"}}"#)
    })
    .await
}

fn config(openai: &MockUpstream, gemini: &MockUpstream) -> Cfg {
    let mut c = openai_config(&openai.url());
    c.0["providers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "g", "kind": "gemini", "base_url": gemini.url(), "api_key": "gm-secret"}));
    c = c
        .alias(json!({"alias": "emb", "targets": [{"provider": "up", "model": "text-embedding-3-small"}]}))
        .alias(json!({"alias": "gemb", "targets": [{"provider": "g", "model": "text-embedding-004"}]}));
    c.key_mut("k1")["models"] = json!(["fast", "emb", "gemb"]);
    c
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {body:?}")))
}

#[tokio::test(flavor = "multi_thread")]
async fn google_sdk_embeddings_reach_openai_and_gemini_targets_on_v1_and_v1beta() {
    let (o, g) = (openai_mock().await, gemini_mock().await);
    let gw = Gateway::start(&config(&o, &g)).await;
    let batch = json!({"requests": [
        {"content": {"parts": [{"text": "abc"}], "role": "user"}, "model": "models/emb"},
        {"content": {"parts": [{"text": "hello"}], "role": "user"}, "model": "models/emb"}]});
    for prefix in ["/v1", "/v1beta"] {
        // To an OpenAI target: translated to /v1/embeddings and back.
        let r = google(client().post(gw.url(&format!("{prefix}/models/emb:batchEmbedContents"))));
        let (status, v) = json_of(r.json_body(&batch).send().await.unwrap()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v, json!({"embeddings": [{"values": [0.0, 3.0]}, {"values": [1.0, 5.0]}]}));
        let sent = o.requests().last().unwrap().clone();
        assert_eq!(sent.path, "/v1/embeddings");
        assert_eq!(sent.json()["model"], "text-embedding-3-small");
        assert_eq!(sent.json()["input"], json!(["abc", "hello"]));
        // embedContent: one vector.
        let one = json!({"content": {"parts": [{"text": "abcd"}]}, "outputDimensionality": 2});
        let r = google(client().post(gw.url(&format!("{prefix}/models/emb:embedContent"))));
        let (status, v) = json_of(r.json_body(&one).send().await.unwrap()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v, json!({"embedding": {"values": [0.0, 4.0]}}));
        assert_eq!(o.requests().last().unwrap().json()["dimensions"], 2);
        // To a Gemini target: batchEmbedContents with the target model.
        let r = google(client().post(gw.url(&format!("{prefix}/models/gemb:batchEmbedContents"))));
        let (status, v) = json_of(r.json_body(&batch).send().await.unwrap()).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v, json!({"embeddings": [{"values": [0.0, 7.0]}, {"values": [1.0, 7.0]}]}));
        let sent = g.requests().last().unwrap().clone();
        assert_eq!(sent.path, "/v1beta/models/text-embedding-004:batchEmbedContents");
        assert_eq!(sent.json()["requests"][1]["model"], "models/text-embedding-004");
        assert_eq!(sent.json()["requests"][1]["content"]["parts"][0]["text"], "hello");
    }
    assert_eq!(o.count(), 4);
    assert_eq!(g.count(), 2);
    // Accounted as embeddings, with the upstream's count (OpenAI) or the estimate (Gemini).
    let lines = gw.usage_lines(6).await;
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(lines.iter().all(|l| l["endpoint"] == "embeddings" && l["status"] == 200), "{lines:?}");
    // Each line is written once its answer is sent, and each call here is its own connection,
    // so the lines can come in another order than the calls: read them by target model.
    let tokens = |model: &str| {
        let mut v: Vec<u64> =
            lines.iter().filter(|l| l["model"] == model).filter_map(|l| l["input_tokens"].as_u64()).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(tokens("text-embedding-004"), vec![3, 3], "ceil(3/4) + ceil(5/4) per batch: {lines:?}");
    assert_eq!(tokens("text-embedding-3-small"), vec![11; 4], "the upstream's count: {lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn count_tokens_and_models_answer_in_gemini_shape() {
    let (o, g) = (openai_mock().await, gemini_mock().await);
    let gw = Gateway::start(&config(&o, &g)).await;
    let body = json!({"contents": [{"parts": [{"text": "The quick brown fox jumps over the lazy dog"}], "role": "user"}]});
    let mut counts = Vec::new();
    for prefix in ["/v1", "/v1beta"] {
        let r = google(client().post(gw.url(&format!("{prefix}/models/fast:countTokens"))));
        let (status, v) = json_of(r.json_body(&body).send().await.unwrap()).await;
        assert_eq!(status, 200, "{v}");
        counts.push(v["totalTokens"].as_u64().unwrap());
    }
    // The gateway's own count (o200k for the gpt-4o-mini target: 9 text tokens plus the
    // message framing), the same on both paths and for the wrapped form.
    let own = llm_gateway::limits::tokens::count_request_tokens(
        llm_gateway::formats::Format::Gemini,
        body.to_string().as_bytes(),
        llm_gateway::limits::tokens::TokenizerFamily::O200k,
    );
    assert!(own > 9, "{own}");
    assert_eq!(counts, vec![own, own]);
    let wrapped = json!({"generateContentRequest": {"model": "models/fast", "contents": body["contents"]}});
    let r = google(client().post(gw.url("/v1beta/models/fast:countTokens")));
    let (_, v) = json_of(r.json_body(&wrapped).send().await.unwrap()).await;
    assert_eq!(v["totalTokens"], own);
    assert_eq!(o.count(), 0, "counting never calls a provider");

    // The list: Gemini's shape for a Google client on /v1 and anyone on /v1beta.
    for (path, is_google) in
        [("/v1/models", true), ("/v1beta/models", false), ("/v1/models?pageSize=50", false)]
    {
        let rb = client().get(gw.url(path));
        let rb = if is_google { google(rb) } else { rb.bearer_auth(KEY) };
        let (status, v) = json_of(rb.send().await.unwrap()).await;
        assert_eq!(status, 200, "{path}: {v}");
        let names: Vec<&str> =
            v["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["models/fast", "models/emb", "models/gemb"], "{path}");
    }
    // An OpenAI client on /v1/models still gets OpenAI's list.
    let (status, v) =
        json_of(client().get(gw.url("/v1/models")).bearer_auth(KEY).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert_eq!(v["data"][0]["id"], "fast");
    // Get one, both shapes.
    let (status, v) = json_of(google(client().get(gw.url("/v1/models/emb"))).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["name"], "models/emb");
    assert!(v["supportedGenerationMethods"].as_array().unwrap().contains(&json!("embedContent")));
    let (status, v) =
        json_of(client().get(gw.url("/v1/models/emb")).bearer_auth(KEY).send().await.unwrap()).await;
    assert_eq!((status, v["id"].as_str(), v["object"].as_str()), (200, Some("emb"), Some("model")));
    // A model the key may not use is refused, never listed.
    let (status, v) =
        json_of(google(client().get(gw.url("/v1beta/models/other"))).send().await.unwrap()).await;
    assert_eq!((status, v["error"]["status"].as_str()), (403, Some("PERMISSION_DENIED")), "{v}");
}

/// `{"error": {"code", "message", "status"}}` with the HTTP status as `code`.
fn assert_gemini_error(status: u16, v: &Value, want: u16, want_status: &str, what: &str) {
    assert_eq!(status, want, "{what}: {v}");
    assert_eq!(v["error"]["code"], want, "{what}: {v}");
    assert_eq!(v["error"]["status"], want_status, "{what}: {v}");
    assert!(!v["error"]["message"].as_str().unwrap_or_default().is_empty(), "{what}: {v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_on_a_gemini_path_is_in_gemini_shape() {
    let (o, g) = (openai_mock().await, gemini_mock().await);
    let mut cfg = config(&o, &g);
    cfg.key_mut("k1")["rpm"] = json!(8);
    let gw = Gateway::start(&cfg).await;
    let gen = json!({"contents": [{"parts": [{"text": "hi"}], "role": "user"}]});
    let emb = json!({"content": {"parts": [{"text": "hi"}]}});
    for prefix in ["/v1", "/v1beta"] {
        let at = |verb: &str, model: &str| gw.url(&format!("{prefix}/models/{model}:{verb}"));
        // 401: a wrong key, on every verb and on the list.
        for verb in ["generateContent", "countTokens", "embedContent", "batchEmbedContents"] {
            let r = client()
                .post(at(verb, "fast"))
                .header("x-goog-api-key", "wrong")
                .json_body(&gen)
                .send()
                .await
                .unwrap();
            let (status, v) = json_of(r).await;
            assert_gemini_error(status, &v, 401, "UNAUTHENTICATED", verb);
        }
        let r = client()
            .get(gw.url(&format!("{prefix}/models")))
            .header("x-goog-api-key", "wrong")
            .send()
            .await
            .unwrap();
        let (status, v) = json_of(r).await;
        assert_gemini_error(status, &v, 401, "UNAUTHENTICATED", "list");
        // 404: no such alias, no such verb, no such model to get.
        let (status, v) =
            json_of(google(client().post(at("embedContent", "nope"))).json_body(&emb).send().await.unwrap())
                .await;
        assert_gemini_error(status, &v, 404, "NOT_FOUND", "unknown alias");
        let (status, v) =
            json_of(google(client().post(at("predict", "fast"))).json_body(&gen).send().await.unwrap()).await;
        assert_gemini_error(status, &v, 404, "NOT_FOUND", "unknown verb");
        let r = google(client().get(gw.url(&format!("{prefix}/models/nope")))).send().await.unwrap();
        let (status, v) = json_of(r).await;
        assert_gemini_error(status, &v, 404, "NOT_FOUND", "get");
        // 400: bodies that are not what the verb takes.
        let (status, v) = json_of(
            google(client().post(at("batchEmbedContents", "emb")))
                .json_body(&json!({"requests": []}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_gemini_error(status, &v, 400, "INVALID_ARGUMENT", "empty batch");
        let (status, v) = json_of(
            google(client().post(at("countTokens", "fast")))
                .json_body(&json!({"contents": []}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_gemini_error(status, &v, 400, "INVALID_ARGUMENT", "no contents");
    }
    assert_eq!(o.count() + g.count(), 0, "nothing refused reaches a provider");
    // 429: the key's rpm (8) is spent by the admitted requests above and these.
    let mut refused = None;
    for _ in 0..10 {
        let r = google(client().post(gw.url("/v1/models/emb:embedContent")))
            .json_body(&emb)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            refused = Some(json_of(r).await);
            break;
        }
    }
    let (status, v) = refused.expect("the rpm limit never refused");
    assert_gemini_error(status, &v, 429, "RESOURCE_EXHAUSTED", "rpm");
}

/// A Chat stream whose usage-only chunk is written `"choices": []` (spaced) or
/// `"choices":[]` (compact), the usage only when the request asked for it.
async fn chat_stream_mock(spaced: bool) -> MockUpstream {
    MockUpstream::start(move |r, _| {
        let req = r.json();
        let mut parts = vec![
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n".to_string(),
        ];
        if req["stream_options"]["include_usage"] == json!(true) {
            parts.push(if spaced {
                "data: {\"id\": \"chatcmpl-1\", \"object\": \"chat.completion.chunk\", \"choices\": [], \"usage\": {\"prompt_tokens\": 6, \"completion_tokens\": 1, \"total_tokens\": 7}}\n\n".to_string()
            } else {
                "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":1,\"total_tokens\":7}}\n\n".to_string()
            });
        }
        parts.push("data: [DONE]\n\n".to_string());
        Reply::Stream {
            status: 200,
            content_type: "text/event-stream".into(),
            parts: parts.into_iter().map(|p| (Wait::None, p.into_bytes())).collect(),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_usage_chunk_asked_for_on_the_clients_behalf_is_removed_spaced_or_compact() {
    for spaced in [true, false] {
        let up = chat_stream_mock(spaced).await;
        let gw = Gateway::start(&openai_config(&up.url())).await;
        let ask = |include: bool| {
            let mut body =
                json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
            if include {
                body["stream_options"] = json!({"include_usage": true});
            }
            client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).json_body(&body).send()
        };
        // The client did not ask: the gateway asked upstream, records the usage, and removes
        // the chunk.
        let text = ask(false).await.unwrap().text().await.unwrap();
        assert_eq!(up.requests()[0].json()["stream_options"]["include_usage"], true, "spaced {spaced}");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "spaced {spaced}: {text}");
        assert!(events[0].contains("\"content\":\"Hi\""), "{text}");
        assert_eq!(events[1], "data: [DONE]");
        assert!(!text.contains("usage"), "spaced {spaced}: {text}");
        // The client asked: it gets the chunk exactly as the upstream wrote it.
        let text = ask(true).await.unwrap().text().await.unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 3, "spaced {spaced}: {text}");
        let want = if spaced {
            "\"choices\": [], \"usage\": {\"prompt_tokens\": 6"
        } else {
            "\"choices\":[],\"usage\":{\"prompt_tokens\":6"
        };
        assert!(events[1].contains(want), "spaced {spaced}: {text}");
        let lines = gw.usage_lines(2).await;
        assert_eq!(lines.len(), 2);
        for l in &lines {
            assert_eq!((l["input_tokens"].as_u64(), l["output_tokens"].as_u64()), (Some(6), Some(1)), "{l}");
        }
    }
}

/// An Anthropic mock answering `msg_01X` from `claude-3-5-haiku-20241022`, JSON or a stream.
async fn anthropic_mock() -> MockUpstream {
    MockUpstream::start(|r, _| {
        if r.json()["stream"] == json!(true) {
            let events = [
                ("message_start", json!({"type": "message_start", "message": {"id": "msg_01X", "type": "message", "role": "assistant",
                    "model": "claude-3-5-haiku-20241022", "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 3, "output_tokens": 1}}})),
                ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}})),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 1}})),
                ("message_stop", json!({"type": "message_stop"})),
            ];
            return Reply::Stream {
                status: 200,
                content_type: "text/event-stream".into(),
                parts: events.iter().map(|(n, v)| (Wait::None, format!("event: {n}\ndata: {v}\n\n").into_bytes())).collect(),
            };
        }
        let body = json!({"id": "msg_01X", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 1}});
        Reply::json(200, &body.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_name_the_upstream_model_and_carry_ids_in_the_clients_shape_on_every_route() {
    let (o, a) = (openai_mock().await, anthropic_mock().await);
    let mut c = openai_config(&o.url());
    c.0["providers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "an", "kind": "anthropic", "base_url": a.url(), "api_key": "sk-ant"}));
    c = c.alias(
        json!({"alias": "claude", "targets": [{"provider": "an", "model": "claude-3-5-haiku-latest"}]}),
    );
    c.key_mut("k1")["models"] = json!(["fast", "claude"]);
    let gw = Gateway::start(&c).await;
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let messages = |model: &str, stream: bool| json!({"model": model, "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let post = |path: &str, body: Value| client().post(gw.url(path)).bearer_auth(KEY).json_body(&body).send();
    // (path, body, id prefix, model): passthrough and translated alike.
    let cases = [
        ("/v1/chat/completions", chat("fast"), "chatcmpl-", "gpt-4o-mini-2024-07-18"),
        ("/v1/chat/completions", chat("claude"), "chatcmpl-", "claude-3-5-haiku-20241022"),
        ("/v1/messages", messages("claude", false), "msg_", "claude-3-5-haiku-20241022"),
        ("/v1/messages", messages("fast", false), "msg_", "gpt-4o-mini-2024-07-18"),
    ];
    for (path, body, prefix, model) in cases {
        let (status, v) = json_of(post(path, body.clone()).await.unwrap()).await;
        assert_eq!(status, 200, "{path} {body}: {v}");
        assert!(v["id"].as_str().unwrap().starts_with(prefix), "{path} {body}: {v}");
        assert_eq!(v["model"], model, "{path} {body}: {v}");
    }
    // Gemini clients: modelVersion is the upstream's model too.
    let gen = json!({"contents": [{"parts": [{"text": "hi"}], "role": "user"}]});
    let (_, v) = json_of(
        google(client().post(gw.url("/v1/models/claude:generateContent")))
            .json_body(&gen)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["modelVersion"], "claude-3-5-haiku-20241022", "{v}");
    // A translated stream: every chunk says both.
    let body = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let text = post("/v1/chat/completions", body).await.unwrap().text().await.unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 3, "{text}");
    for c in &chunks {
        assert_eq!(
            (c["id"].as_str(), c["model"].as_str()),
            (Some("chatcmpl-01X"), Some("claude-3-5-haiku-20241022")),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_translated_responses_answer_echoes_the_requests_tools_and_instructions() {
    let a = anthropic_mock().await;
    let mut c = openai_config(&a.url());
    c.0["providers"] = json!([{"name": "an", "kind": "anthropic", "base_url": a.url(), "api_key": "sk-ant"}]);
    c.alias_mut("fast")["targets"] = json!([{"provider": "an", "model": "claude-3-5-haiku-latest"}]);
    c.alias_mut("other")["targets"] = json!([{"provider": "an", "model": "claude-3-5-haiku-latest"}]);
    let gw = Gateway::start(&c).await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}]);
    for stream in [false, true] {
        let body = json!({"model": "fast", "input": "hi", "instructions": "Be brief", "tools": tools, "stream": stream, "temperature": 0.5});
        let r =
            client().post(gw.url("/v1/responses")).bearer_auth(KEY).json_body(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let objects: Vec<Value> = if stream {
            text.split("\n\n")
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok()?.get("response").cloned())
                .collect()
        } else {
            vec![serde_json::from_str(&text).unwrap()]
        };
        assert_eq!(objects.len(), if stream { 3 } else { 1 }, "{text}");
        for o in &objects {
            assert_eq!(o["tools"], tools, "stream {stream}: {o}");
            assert_eq!(o["instructions"], "Be brief", "stream {stream}: {o}");
            assert_eq!(o["temperature"], 0.5, "stream {stream}: {o}");
            assert_eq!(o["model"], "claude-3-5-haiku-20241022", "stream {stream}: {o}");
            assert!(o["id"].as_str().unwrap().starts_with("resp_"), "stream {stream}: {o}");
        }
        assert_eq!(objects.last().unwrap()["output"][0]["content"][0]["text"], "hi", "{text}");
    }
}
