//! The Responses API through the real gateway against Rust mocks: native passthrough to
//! OpenAI, Azure and a compatible server with `responses: true` (stream and non-stream, a
//! built-in tool and an encrypted reasoning item byte for byte), a per-target decision on an
//! alias mixing both kinds, `previous_response_id` pinned to the creating target, stored
//! responses by id (owner only, durable across a restart), and a three-turn conversation
//! through translated routes (Anthropic, Gemini) whose third turn carries the whole history.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const OTHER_KEY: &str = "sk-other-project-key";

/// What the client sends, `MODEL` and `STREAM` filled in; odd spacing and escapes on purpose.
const CLIENT: &str = r#"{"model": "MODEL",  "input":[{"type":"message","role":"user","content":"Find news \u00e9"},{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAAABo-ENC\u002b/=="}],
 "tools":[{"type":"web_search_preview","search_context_size":"high"}],"include":["reasoning.encrypted_content"], "store":true,"metadata":{"k":"v"},"stream":STREAM}"#;

fn client_body(model: &str, stream: bool) -> String {
    CLIENT.replace("MODEL", model).replace("STREAM", if stream { "true" } else { "false" })
}

/// A Responses answer as an OpenAI-style server writes it (a web search call, an encrypted
/// reasoning item, a message with a citation).
fn answer(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","object":"response","created_at":1700000000,"status":"completed","model":"gpt-5-2025-08-07","output":[{{"type":"web_search_call","id":"ws_1","status":"completed","action":{{"type":"search","query":"news"}}}},{{"type":"reasoning","id":"rs_2","summary":[],"encrypted_content":"gAAAA-OUT\u002b"}},{{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{{"type":"output_text","text":"Here","annotations":[{{"type":"url_citation","url":"https://x.test"}}]}}]}}],"tools":[{{"type":"web_search_preview","search_context_size":"high"}}],"usage":{{"input_tokens":120,"input_tokens_details":{{"cached_tokens":20}},"output_tokens":50,"output_tokens_details":{{"reasoning_tokens":30}},"total_tokens":170}}}}"#
    )
}

/// The same answer as a stream.
fn answer_stream(id: &str) -> String {
    let created = json!({"type": "response.created", "sequence_number": 0,
        "response": {"id": id, "object": "response", "status": "in_progress", "output": [], "usage": null}});
    let added = json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
        "item": {"type": "web_search_call", "id": "ws_1", "status": "in_progress"}});
    let delta = json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1",
        "output_index": 2, "content_index": 0, "delta": "Here"});
    let done: Value = serde_json::from_str(&answer(id)).unwrap();
    let completed = json!({"type": "response.completed", "sequence_number": 3, "response": done});
    let mut out = String::new();
    for ev in [created, added, delta, completed] {
        out.push_str(&format!("event: {}\ndata: {}\n\n", ev["type"].as_str().unwrap(), ev));
    }
    out
}

/// A server that speaks Responses (and Chat, for translated requests): ids `resp_<name>_<n>`.
async fn responses_server(name: &'static str) -> MockUpstream {
    MockUpstream::start(move |r, n| {
        let id = format!("resp_{name}_{n}");
        let path = r.path.split('?').next().unwrap_or_default().to_string();
        if path.ends_with("/chat/completions") {
            let body = json!({"id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "chat answer"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}});
            return Reply::json(200, &body.to_string());
        }
        if path.ends_with("/responses") {
            if r.json()["stream"] == json!(true) {
                return Reply::sse(vec![(Wait::None, &answer_stream(&id))]);
            }
            return Reply::json(200, &answer(&id));
        }
        if path.ends_with("/input_tokens") {
            return Reply::json(200, r#"{"object":"response.input_tokens","input_tokens":42}"#);
        }
        // By id: echo what was asked, so the test sees it arrived.
        let stored = path.rsplit("/responses/").next().unwrap_or_default().to_string();
        let body = json!({"asked": stored, "method": r.method, "deleted": r.method == "DELETE"});
        Reply::json(200, &body.to_string())
    })
    .await
}

fn keys() -> String {
    format!(
        "projects:\n  - {{ name: alpha }}\n  - {{ name: beta }}\nkeys:\n  - {{ id: k1, hash: \"{{KEY_HASH}}\", project: alpha }}\n  - {{ id: k2, hash: \"{}\", project: beta }}\n",
        llm_gateway::auth::stored_form(OTHER_KEY)
    )
}

/// Alias `pair` over two Responses-speaking targets (`pa`/m0, `pb`/m1), `extra` config lines.
fn pair_config(pa: &MockUpstream, pb: &MockUpstream, extra: &str) -> String {
    format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
{extra}providers:
  - {{ name: pa, kind: openai_compatible, base_url: "{}", responses: true }}
  - {{ name: pb, kind: openai_compatible, base_url: "{}", responses: true }}
models:
  - {{ alias: pair, targets: [ {{ provider: pa, model: m0 }}, {{ provider: pb, model: m1 }} ] }}
{}"#,
        pa.url(),
        pb.url(),
        keys()
    )
}

async fn post(gw: &Gateway, key: &str, body: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    let b = r.bytes().await.unwrap();
    serde_json::from_slice(&b).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)))
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_pass_through_byte_for_byte_to_openai_azure_and_a_compatible_server() {
    let oai = responses_server("oai").await;
    let az = responses_server("az").await;
    let vl = responses_server("vl").await;
    let plain = responses_server("plain").await;
    let gw = Gateway::start(format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
providers:
  - {{ name: oai, kind: openai, base_url: "{}", api_key: sk-oai-secret }}
  - {{ name: az, kind: azure_openai, base_url: "{}", api_key: az-secret, api_version: "2024-10-21" }}
  - {{ name: vl, kind: openai_compatible, base_url: "{}", responses: true }}
  - {{ name: plain, kind: openai_compatible, base_url: "{}" }}
models:
  - {{ alias: oai, targets: [ {{ provider: oai, model: gpt-5 }} ] }}
  - {{ alias: az, targets: [ {{ provider: az, model: my-deployment }} ] }}
  - {{ alias: vl, targets: [ {{ provider: vl, model: qwen3 }} ] }}
  - {{ alias: mixed, targets: [ {{ provider: plain, model: llama }}, {{ provider: oai, model: gpt-5 }} ] }}
{}"#,
        oai.url(),
        az.url(),
        vl.url(),
        plain.url(),
        keys()
    ))
    .await;
    let cases = [
        ("oai", &oai, "gpt-5", "/v1/responses", ("authorization", "Bearer sk-oai-secret")),
        ("az", &az, "my-deployment", "/openai/v1/responses", ("api-key", "az-secret")),
        ("vl", &vl, "qwen3", "/v1/responses", ("content-type", "application/json")),
    ];
    let mut lines = 0;
    for (alias, mock, model, path, (hk, hv)) in cases {
        for stream in [false, true] {
            let before = mock.count();
            let r = post(&gw, KEY, &client_body(alias, stream)).await;
            assert_eq!(r.status(), 200, "{alias} stream={stream}");
            assert_eq!(r.headers()["x-gateway-provider"], alias);
            let got = r.bytes().await.unwrap();
            let id = format!("resp_{alias}_{before}");
            let want = if stream { answer_stream(&id) } else { answer(&id) };
            assert_eq!(
                String::from_utf8_lossy(&got),
                want,
                "{alias} stream={stream}: the client gets the upstream's bytes"
            );
            let req = mock.requests().pop().unwrap();
            assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", path), "{alias}");
            assert_eq!(req.header(hk), Some(hv), "{alias}");
            assert_eq!(
                String::from_utf8(req.body.clone()).unwrap(),
                client_body(model, stream),
                "{alias} stream={stream}: only `model` changed"
            );
            lines += 1;
            let usage = gw.usage_lines(lines).await;
            let u = usage.last().unwrap();
            assert_eq!(u["endpoint"], "openai_responses");
            assert_eq!(u["provider"], alias);
            assert_eq!(u["stream"], stream);
            assert_eq!(
                (&u["input_tokens"], &u["output_tokens"], &u["cached_tokens"], &u["reasoning_tokens"]),
                (&json!(120), &json!(50), &json!(20), &json!(30)),
                "{alias} stream={stream}: usage from the body / response.completed"
            );
        }
    }
    // An alias mixing both kinds decides per target: Chat for the plain server, Responses for OpenAI.
    let plain_body = r#"{"model":"mixed","input":"hi"}"#;
    for _ in 0..4 {
        let r = post(&gw, KEY, plain_body).await;
        assert_eq!(r.status(), 200);
        let v = json_of(r).await;
        assert_eq!(v["object"], "response", "{v}");
    }
    let chat_reqs = plain.requests();
    assert_eq!(chat_reqs.len(), 2, "round robin over the two targets");
    for r in &chat_reqs {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.json()["messages"][0]["content"], "hi");
    }
    let native: Vec<_> = oai
        .requests()
        .into_iter()
        .filter(|r| r.json()["model"] == "gpt-5" && r.json()["input"] == "hi")
        .collect();
    assert_eq!(native.len(), 2);
    for r in native {
        assert_eq!(r.path, "/v1/responses");
        assert_eq!(String::from_utf8(r.body).unwrap(), r#"{"model":"gpt-5","input":"hi"}"#);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn previous_response_id_reaches_the_creating_target_every_time() {
    let pa = responses_server("pa").await;
    let pb = responses_server("pb").await;
    let gw = Gateway::start(pair_config(&pa, &pb, "")).await;
    // 20 responses, half on each target (ten of them streamed: recorded at response.created).
    let mut created = Vec::new();
    for i in 0..20 {
        let stream = i % 2 == 1;
        let r = post(&gw, KEY, &format!(r#"{{"model":"pair","input":"turn {i}","stream":{stream}}}"#)).await;
        assert_eq!(r.status(), 200);
        let provider = r.headers()["x-gateway-provider"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        let id = text.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        assert!(id.starts_with(&format!("resp_{provider}_")), "{id} from {provider}");
        created.push((id, provider));
    }
    assert_eq!(created.iter().filter(|(_, p)| p == "pa").count(), 10);
    // All of pa's first, then pb's: round robin alone would send half of them elsewhere.
    created.sort_by(|a, b| a.1.cmp(&b.1));
    let mut reached = 0;
    for (id, creator) in &created {
        let (ca, cb) = (pa.count(), pb.count());
        let body = format!(r#"{{"model":"pair","input":"more","previous_response_id":"{id}"}}"#);
        let r = post(&gw, KEY, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-gateway-provider"], creator.as_str(), "{id}");
        let mock = if creator == "pa" { &pa } else { &pb };
        assert_eq!(pa.count() + pb.count(), ca + cb + 1, "one attempt");
        let got = mock.requests().pop().unwrap();
        assert_eq!(got.json()["previous_response_id"], id.as_str(), "passed through untouched");
        assert_eq!(got.json()["model"], if creator == "pa" { "m0" } else { "m1" });
        reached += 1;
    }
    assert_eq!(reached, 20, "20 of 20 follow-ups reached the creating target");
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_responses_are_their_owners_only_routed_by_id_and_survive_a_restart() {
    let oai = responses_server("oai").await;
    let gw = Gateway::start(format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
providers:
  - {{ name: oai, kind: openai, base_url: "{}", api_key: sk-oai-secret }}
models:
  - {{ alias: oai, targets: [ {{ provider: oai, model: gpt-5 }} ] }}
{}"#,
        oai.url(),
        keys()
    ))
    .await;
    let r = post(&gw, KEY, r#"{"model":"oai","input":"hello"}"#).await;
    assert_eq!(r.status(), 200);
    let id = json_of(r).await["id"].as_str().unwrap().to_string();
    let seen = oai.count();
    let get = |key: &'static str, path: String| {
        let url = gw.url(&path);
        async move { client().get(url).bearer_auth(key).send().await.unwrap() }
    };

    // Another project: 404 in OpenAI's shape, nothing sent upstream, for every way in.
    let r = get(OTHER_KEY, format!("/v1/responses/{id}")).await;
    assert_eq!(r.status(), 404);
    let v = json_of(r).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], format!("Response with id '{id}' not found."));
    let r =
        client().delete(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(OTHER_KEY).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post(&gw, OTHER_KEY, &format!(r#"{{"model":"oai","input":"x","previous_response_id":"{id}"}}"#))
        .await;
    assert_eq!(r.status(), 404);
    let v = json_of(r).await;
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert_eq!(v["error"]["param"], "previous_response_id");
    let r = get(KEY, "/v1/responses/resp_unknown".into()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(oai.count(), seen, "nothing reached the provider");

    // The owner: passed through to the provider that stores it, method, path and query kept.
    let r = get(KEY, format!("/v1/responses/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gateway-provider"], "oai");
    assert_eq!(json_of(r).await["asked"], id.as_str());
    let r = get(KEY, format!("/v1/responses/{id}/input_items?limit=2&order=asc")).await;
    assert_eq!(r.status(), 200);
    let last = oai.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.clone()),
        ("GET", format!("/v1/responses/{id}/input_items?limit=2&order=asc"))
    );
    assert_eq!(last.header("authorization"), Some("Bearer sk-oai-secret"));
    let r =
        client().post(gw.url(&format!("/v1/responses/{id}/cancel"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(oai.requests().pop().unwrap().path, format!("/v1/responses/{id}/cancel"));
    let r = client()
        .post(gw.url("/v1/responses/input_tokens"))
        .bearer_auth(KEY)
        .body(r#"{"model":"oai","input":"count me"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(r).await["input_tokens"], 42);
    let last = oai.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/responses/input_tokens");
    assert_eq!(String::from_utf8(last.body).unwrap(), r#"{"model":"gpt-5","input":"count me"}"#);

    // Durable: the record is in state_dir and read back after a kill -9.
    let journal = gw.dir.path().join("state/responses.jsonl");
    eventually(Duration::from_secs(5), "the record reaches responses.jsonl", || {
        let j = std::fs::read_to_string(&journal).unwrap_or_default();
        let id = id.clone();
        async move { j.contains(&id) }
    })
    .await;
    let gw = gw.restart().await;
    let r = client().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200, "still routed after a restart");
    let r = client().delete(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(oai.requests().pop().unwrap().method, "DELETE");
    let r = client().get(gw.url(&format!("/v1/responses/{id}"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 404, "forgotten once deleted");
}

/// Anthropic answers "answer <n>" with id msg_<n>, non-stream or stream.
async fn anthropic_server() -> MockUpstream {
    MockUpstream::start(|r, n| {
        let text = format!("answer {n}");
        if r.json()["stream"] != json!(true) {
            let body = json!({"id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": "claude",
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 4}});
            return Reply::json(200, &body.to_string());
        }
        let events = [
            ("message_start", json!({"type": "message_start", "message": {"id": format!("msg_{n}"), "type": "message",
                "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 1}}})),
            ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
            ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})),
            ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}})),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let text: String = events.iter().map(|(e, v)| format!("event: {e}\ndata: {v}\n\n")).collect();
        Reply::sse(vec![(Wait::None, &text)])
    })
    .await
}

/// Gemini answers "answer <n>" with responseId gm_<n>.
async fn gemini_server() -> MockUpstream {
    MockUpstream::start(|r, n| {
        let c = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": format!("answer {n}")}]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4,
            "totalTokenCount": 14}, "modelVersion": "gemini-mock", "responseId": format!("gm_{n}")});
        if r.path.contains(":streamGenerateContent") {
            return Reply::sse(vec![(Wait::None, &format!("data: {c}\n\n"))]);
        }
        Reply::json(200, &c.to_string())
    })
    .await
}

/// The texts of an Anthropic `messages` or Gemini `contents` list, with their roles.
fn turns(v: &Value) -> Vec<(String, String)> {
    let list = v["messages"].as_array().or(v["contents"].as_array()).expect("messages or contents");
    let mut out = Vec::new();
    for m in list {
        let role = m["role"].as_str().unwrap_or_default().to_string();
        let parts = m["content"].as_array().or(m["parts"].as_array());
        let text = match (m["content"].as_str(), parts) {
            (Some(s), _) => s.to_string(),
            (None, Some(parts)) => {
                parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("")
            }
            _ => String::new(),
        };
        out.push((role, text));
    }
    out
}

/// The id in a Responses body or in a stream's `response.created`.
fn response_id(text: &str) -> String {
    text.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_turn_conversation_through_translated_routes_carries_the_whole_history() {
    let anth = anthropic_server().await;
    let gem = gemini_server().await;
    let gw = Gateway::start(format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
providers:
  - {{ name: anth, kind: anthropic, base_url: "{}", api_key: sk-ant }}
  - {{ name: gem, kind: gemini, base_url: "{}", api_key: gm-key }}
models:
  - {{ alias: claude, targets: [ {{ provider: anth, model: claude-sonnet }} ] }}
  - {{ alias: gemini, targets: [ {{ provider: gem, model: gemini-2.5-flash }} ] }}
{}"#,
        anth.url(),
        gem.url(),
        keys()
    ))
    .await;
    for (alias, mock, assistant) in [("claude", &anth, "assistant"), ("gemini", &gem, "model")] {
        let r = post(&gw, KEY, &format!(r#"{{"model":"{alias}","input":"one"}}"#)).await;
        assert_eq!(r.status(), 200, "{alias}");
        let id1 = response_id(&r.text().await.unwrap());
        // Turn two streamed: the stored turn comes from the translated stream's response.completed.
        let body =
            format!(r#"{{"model":"{alias}","stream":true,"previous_response_id":"{id1}","input":"two"}}"#);
        let r = post(&gw, KEY, &body).await;
        assert_eq!(r.status(), 200, "{alias}");
        let id2 = response_id(&r.text().await.unwrap());
        assert_ne!(id1, id2);
        let body = format!(
            r#"{{"model":"{alias}","previous_response_id":"{id2}","input":[{{"type":"message","role":"user","content":"three"}}]}}"#
        );
        let r = post(&gw, KEY, &body).await;
        assert_eq!(r.status(), 200, "{alias}");
        let v = json_of(r).await;
        assert!(v["output"].to_string().contains("answer 2"), "{alias}: {v}");
        let third = mock.requests().pop().unwrap().json();
        let want: Vec<(String, String)> = [
            ("user", "one"),
            (assistant, "answer 0"),
            ("user", "two"),
            (assistant, "answer 1"),
            ("user", "three"),
        ]
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect();
        assert_eq!(turns(&third), want, "{alias}: the upstream saw the whole conversation on turn 3");

        // Another project cannot continue it or read it.
        let body = format!(r#"{{"model":"{alias}","previous_response_id":"{id2}","input":"x"}}"#);
        let before = mock.count();
        let r = post(&gw, OTHER_KEY, &body).await;
        assert_eq!(r.status(), 404, "{alias}");
        assert_eq!(json_of(r).await["error"]["code"], "previous_response_not_found");
        let r = client()
            .get(gw.url(&format!("/v1/responses/{id2}")))
            .bearer_auth(OTHER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(mock.count(), before, "nothing sent upstream");
        // The owner reads it from the gateway's store.
        let r = client().get(gw.url(&format!("/v1/responses/{id2}"))).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v = json_of(r).await;
        assert_eq!(v["id"], id2.as_str());
        assert!(v["output"].to_string().contains("answer 1"), "{v}");
        let r = client()
            .get(gw.url(&format!("/v1/responses/{id2}/input_items")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(json_of(r).await["data"], json!([{"type": "message", "role": "user", "content": "two"}]));

        // `store: false` keeps nothing.
        let r = post(&gw, KEY, &format!(r#"{{"model":"{alias}","input":"secret","store":false}}"#)).await;
        let unstored = response_id(&r.text().await.unwrap());
        let r = post(
            &gw,
            KEY,
            &format!(r#"{{"model":"{alias}","input":"x","previous_response_id":"{unstored}"}}"#),
        )
        .await;
        assert_eq!(r.status(), 404, "{alias}: a store:false response cannot be continued");
    }
    let path = gw.dir.path().join("state/conversations.jsonl");
    eventually(Duration::from_secs(5), "the turns reach conversations.jsonl", || {
        let j = std::fs::read_to_string(&path).unwrap_or_default();
        async move { j.lines().count() >= 6 }
    })
    .await;
    let journal = std::fs::read_to_string(&path).unwrap();
    assert!(journal.contains("\"three\""), "the third turn is kept");
    assert!(!journal.contains("secret"), "store:false never reaches the disk");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_a_response_made_through_one_instance_is_routed_by_id_through_another() {
    let Some(redis) = RedisServer::start().await else { return };
    let pa = responses_server("pa").await;
    let pb = responses_server("pb").await;
    let cfg = pair_config(&pa, &pb, &format!("redis: {{ url: \"{}\", timeout_ms: 200 }}\n", redis.url()));
    let (one, two) = (Gateway::start(&cfg).await, Gateway::start(&cfg).await);
    // Responses made through the first instance, on both targets.
    let mut created = Vec::new();
    for i in 0..6 {
        let r = post(&one, KEY, &format!(r#"{{"model":"pair","input":"turn {i}"}}"#)).await;
        assert_eq!(r.status(), 200);
        let provider = r.headers()["x-gateway-provider"].to_str().unwrap().to_string();
        created.push((json_of(r).await["id"].as_str().unwrap().to_string(), provider));
    }
    // Reads and follow-ups through the second: each reaches the creating target.
    for (id, creator) in &created {
        // The record reaches Redis off the request's path: wait until a read by id finds it.
        eventually(Duration::from_secs(5), "the record in Redis", || async {
            let r =
                client().get(two.url(&format!("/v1/responses/{id}"))).bearer_auth(KEY).send().await.unwrap();
            r.status() == 200
        })
        .await;
        let (ca, cb) = (pa.count(), pb.count());
        let body = format!(r#"{{"model":"pair","input":"more","previous_response_id":"{id}"}}"#);
        let r = post(&two, KEY, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-gateway-provider"], creator.as_str(), "{id}");
        assert_eq!(pa.count() + pb.count(), ca + cb + 1, "one attempt");
        let other = client()
            .get(two.url(&format!("/v1/responses/{id}")))
            .bearer_auth(OTHER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "another project's id through the other instance");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn web_search_reaches_anthropics_search_tool_and_a_target_without_search_is_a_clear_400() {
    // Anthropic answers with its search blocks, then the text with a citation, stream or not.
    let anth = MockUpstream::start(|r, _| {
        let req = r.json();
        let searched = req["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["type"] == "web_search_20250305"));
        let text = if searched { "searched: the news" } else { "no search tool" };
        let blocks = json!([
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "news"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [{"type": "web_search_result", "url": "https://x.test", "title": "X", "encrypted_content": "e"}]},
            {"type": "text", "text": text, "citations": [{"type": "web_search_result_location", "url": "https://x.test", "title": "X", "cited_text": "n", "encrypted_index": "i"}]}]);
        if req["stream"] != json!(true) {
            let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": blocks,
                "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 4}});
            return Reply::json(200, &body.to_string());
        }
        let mut events = vec![("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}))];
        events.push(("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}})));
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"query\":\"news\"}"}})));
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        events.push(("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": blocks[1]})));
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 1})));
        events.push(("content_block_start", json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}})));
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta", "citation": blocks[2]["citations"][0]}})));
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": text}})));
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 2})));
        events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}})));
        events.push(("message_stop", json!({"type": "message_stop"})));
        let text: String = events.iter().map(|(e, v)| format!("event: {e}\ndata: {v}\n\n")).collect();
        Reply::sse(vec![(Wait::None, &text)])
    })
    .await;
    let chat = MockUpstream::start(|_, _| Reply::json(500, "{}")).await;
    let gw = Gateway::start(format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
providers:
  - {{ name: anth, kind: anthropic, base_url: "{}", api_key: sk-ant }}
  - {{ name: local, kind: openai_compatible, base_url: "{}" }}
models:
  - {{ alias: claude, targets: [ {{ provider: anth, model: claude-x }} ] }}
  - {{ alias: local, targets: [ {{ provider: local, model: llama }} ] }}
{}"#,
        anth.url(),
        chat.url(),
        keys()
    ))
    .await;
    let body = |model: &str, stream: bool| {
        format!(
            r#"{{"model":"{model}","input":"news?","stream":{stream},"tools":[{{"type":"web_search","filters":{{"allowed_domains":["x.test"]}}}}]}}"#
        )
    };
    let r = post(&gw, KEY, &body("claude", false)).await;
    assert_eq!(r.status(), 200);
    let v = json_of(r).await;
    assert!(v.to_string().contains("searched: the news"), "{v}");
    let sent = anth.requests()[0].json();
    let tool = sent["tools"].as_array().unwrap().iter().find(|t| t["name"] == "web_search").cloned().unwrap();
    assert_eq!(tool["allowed_domains"], json!(["x.test"]));
    let r = post(&gw, KEY, &body("claude", true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("searched: the news") && text.contains("response.completed"), "{text}");
    // A Chat-only target has no server-side search: 400 naming the tool, nothing sent.
    let r = post(&gw, KEY, &body("local", false)).await;
    assert_eq!(r.status(), 400);
    let v = json_of(r).await;
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("web_search") && msg.contains("no server-side web search"), "{v}");
    assert_eq!(chat.count(), 0);
}
