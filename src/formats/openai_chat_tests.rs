use super::super::Sampling;
use super::*;

fn decode(v: Value) -> ChatRequest {
    decode_request(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn encode(req: &ChatRequest) -> Value {
    let opts = RequestOptions { target_model: "up", default_max_tokens: 100, legacy_max_tokens: false };
    serde_json::from_slice(&encode_request(req, &opts).unwrap().body).unwrap()
}

#[test]
fn system_and_developer_messages_are_hoisted_in_order() {
    let req = decode(json!({"model": "m", "messages": [
        {"role": "system", "content": "a"},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "b"}]},
    ]}));
    let sys: Vec<_> = req.system.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(sys, ["a", "b"]);
    assert_eq!(req.messages.len(), 1);
}

#[test]
fn consecutive_tool_messages_become_one_user_turn() {
    let req = decode(json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": ""}},
            {"id": "2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "x"},
        {"role": "tool", "tool_call_id": "2", "content": "y"},
    ]}));
    assert_eq!(req.messages.len(), 2);
    assert_eq!(req.messages[1].role, Role::User);
    assert_eq!(req.messages[1].parts.len(), 2);
}

#[test]
fn max_completion_tokens_wins_over_max_tokens() {
    let req = decode(json!({"model": "m", "messages": [], "max_tokens": 5, "max_completion_tokens": 9}));
    assert_eq!(req.max_tokens, Some(9));
}

#[test]
fn stop_may_be_a_string_or_an_array() {
    assert_eq!(decode(json!({"messages": [], "stop": "x"})).sampling.stop, ["x"]);
    assert_eq!(decode(json!({"messages": [], "stop": ["x", "y"]})).sampling.stop, ["x", "y"]);
}

#[test]
fn a_data_uri_image_becomes_inline_bytes() {
    assert_eq!(
        image_from_url("data:image/png;base64,AAAA"),
        ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() }
    );
    assert_eq!(image_from_url("https://x/y.png"), ImageSource::Url("https://x/y.png".into()));
}

#[test]
fn unknown_content_parts_are_refused_not_dropped() {
    let body =
        json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]});
    assert!(matches!(
        decode_request(&serde_json::to_vec(&body).unwrap()),
        Err(TranslateError::Unsupported(_))
    ));
}

#[test]
fn a_streaming_upstream_request_always_asks_for_usage() {
    let req = ChatRequest { stream: true, include_usage: false, ..ChatRequest::default() };
    assert_eq!(encode(&req)["stream_options"], json!({"include_usage": true}));
}

#[test]
fn tool_results_encode_as_tool_messages_before_the_rest_of_the_turn() {
    let req = ChatRequest {
        messages: vec![Message {
            role: Role::User,
            parts: vec![
                Part::ToolResult(ToolResult {
                    call_id: "c".into(),
                    name: None,
                    content: vec![text("r")],
                    is_error: false,
                }),
                text("next"),
            ],
        }],
        ..ChatRequest::default()
    };
    let v = encode(&req);
    assert_eq!(v["messages"][0], json!({"role": "tool", "tool_call_id": "c", "content": "r"}));
    assert_eq!(v["messages"][1], json!({"role": "user", "content": "next"}));
}

#[test]
fn top_k_is_listed_as_dropped() {
    let req = ChatRequest {
        sampling: Sampling { top_k: Some(3), ..Sampling::default() },
        ..ChatRequest::default()
    };
    let opts = RequestOptions { target_model: "up", default_max_tokens: 100, legacy_max_tokens: false };
    assert_eq!(encode_request(&req, &opts).unwrap().dropped, ["top_k"]);
}

#[test]
fn response_usage_keeps_cached_and_reasoning_tokens() {
    let u = decode_usage(&json!({"prompt_tokens": 10, "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}));
    assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens), (10, 5, 4, 2));
}

#[test]
fn errors_keep_the_upstream_message_and_budget_is_insufficient_quota() {
    let (kind, msg) = decode_error(
        429,
        br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#,
    );
    assert_eq!((kind, msg.as_str()), (ErrorKind::RateLimited, "slow down"));
    let v: Value = serde_json::from_slice(&encode_error(ErrorKind::BudgetExceeded, "over")).unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota");
}

#[test]
fn malformed_json_is_a_translate_error() {
    assert!(matches!(decode_request(b"{"), Err(TranslateError::Json(_))));
    assert!(matches!(decode_response(b"nope"), Err(TranslateError::Json(_))));
}

#[test]
fn signed_thinking_round_trips_through_thinking_blocks() {
    let resp = ChatResponse {
        content: vec![
            Part::Thinking { text: "t".into(), signature: Some("sig".into()) },
            Part::RedactedThinking { data: "r".into() },
            text("a"),
        ],
        ..ChatResponse::default()
    };
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let out: Value = serde_json::from_slice(&encode_response(&resp, &opts)).unwrap();
    let msg = &out["choices"][0]["message"];
    assert_eq!(msg["reasoning_content"], "t");
    // The client sends the message back; the signature survives for an Anthropic upstream.
    let req = decode(json!({"messages": [msg]}));
    assert_eq!(req.messages[0].parts, resp.content);
    // An upstream OpenAI request never carries thinking_blocks.
    assert!(encode(&req)["messages"][0].get("thinking_blocks").is_none());
}

#[test]
fn the_cap_is_max_tokens_for_compatible_servers_and_max_completion_tokens_for_openai() {
    let req = super::super::ChatRequest { max_tokens: Some(77), ..Default::default() };
    let mut opts = RequestOptions { target_model: "up", default_max_tokens: 100, legacy_max_tokens: false };
    let body: serde_json::Value =
        serde_json::from_slice(&super::encode_request(&req, &opts).unwrap().body).unwrap();
    assert_eq!((body["max_completion_tokens"].as_u64(), body.get("max_tokens")), (Some(77), None));
    opts.legacy_max_tokens = true;
    let body: serde_json::Value =
        serde_json::from_slice(&super::encode_request(&req, &opts).unwrap().body).unwrap();
    assert_eq!((body["max_tokens"].as_u64(), body.get("max_completion_tokens")), (Some(77), None));
}

/// A message of text alone is written without building a `Value`; it must come out byte for
/// byte as the general path writes it, for every shape the fast path takes (and it must take
/// the everyday ones).
#[test]
fn text_messages_write_what_the_value_path_writes() {
    let mut g = crate::formats::scan::testgen::Gen(0x5eed_0001);
    let texts = ["", "Say something short.", "quote \" and \\ slash", "é😀\n\t\u{1}", "</script>"];
    let mut taken = 0;
    for _ in 0..2000 {
        let role = if g.below(2) == 0 { Role::User } else { Role::Assistant };
        let parts = (0..g.below(4))
            .map(|_| match g.below(6) {
                0 => Part::Image(ImageSource::Url("https://i.test/a.png".into())),
                1 => Part::Thinking { text: "t".into(), signature: None },
                2 => Part::Text {
                    text: g.pick(&texts).into(),
                    cache_control: Some(json!({"type": "ephemeral"})),
                },
                _ => Part::Text { text: g.pick(&texts).into(), cache_control: None },
            })
            .collect();
        let m = Message { role, parts };
        let mut general = Vec::new();
        encode_message_values(&m, &mut general);
        if let Some(fast) = text_message(&m) {
            taken += 1;
            assert_eq!(general.len(), 1, "{m:?}");
            assert_eq!(
                serde_json::to_string(&fast).unwrap(),
                serde_json::to_string(&general[0]).unwrap(),
                "{m:?}"
            );
        }
    }
    assert!(taken > 400, "the fast path took only {taken} of 2000 messages");
}
