use super::super::Sampling;
use super::*;

fn opts() -> RequestOptions<'static> {
    RequestOptions { target_model: "claude", default_max_tokens: 8192, legacy_max_tokens: false }
}

fn encode(req: &ChatRequest) -> (Value, Vec<&'static str>) {
    let e = encode_request(req, &opts()).unwrap();
    (serde_json::from_slice(&e.body).unwrap(), e.dropped)
}

fn text(t: &str) -> Part {
    Part::Text { text: t.into(), cache_control: None }
}

fn result(id: &str) -> Part {
    Part::ToolResult(ToolResult {
        call_id: id.into(),
        name: None,
        content: vec![text("ok")],
        is_error: false,
    })
}

#[test]
fn max_tokens_defaults_to_the_configured_value_not_a_small_cap() {
    let (v, _) = encode(&ChatRequest::default());
    assert_eq!(v["max_tokens"], 8192);
    let (v, _) = encode(&ChatRequest { max_tokens: Some(7), ..ChatRequest::default() });
    assert_eq!(v["max_tokens"], 7);
}

#[test]
fn same_role_turns_are_merged_so_roles_alternate() {
    let req = ChatRequest {
        messages: vec![
            Message { role: Role::User, parts: vec![result("a")] },
            Message { role: Role::User, parts: vec![result("b")] },
            Message { role: Role::User, parts: vec![text("more")] },
        ],
        ..ChatRequest::default()
    };
    let (v, _) = encode(&req);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    let types: Vec<_> =
        msgs[0]["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["tool_result", "tool_result", "text"]);
}

#[test]
fn empty_tool_arguments_become_an_empty_input_object() {
    let req = ChatRequest {
        messages: vec![Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall(ToolCall {
                id: "x".into(),
                name: "f".into(),
                arguments: String::new(),
                signature: None,
            })],
        }],
        ..ChatRequest::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(v["messages"][0]["content"][0]["input"], json!({}));
}

#[test]
fn unportable_parameters_are_listed_as_dropped() {
    let req = ChatRequest {
        sampling: Sampling {
            seed: Some(1),
            presence_penalty: Some(0.1),
            frequency_penalty: Some(0.1),
            logprobs: Some(true),
            ..Sampling::default()
        },
        ..ChatRequest::default()
    };
    let (v, dropped) = encode(&req);
    assert_eq!(dropped, ["seed", "presence_penalty", "frequency_penalty", "logprobs"]);
    assert!(v.get("seed").is_none());
}

#[test]
fn n_greater_than_one_is_refused() {
    let req =
        ChatRequest { sampling: Sampling { n: Some(2), ..Sampling::default() }, ..ChatRequest::default() };
    assert!(matches!(encode_request(&req, &opts()), Err(TranslateError::Invalid { .. })));
}

#[test]
fn reasoning_effort_maps_to_a_thinking_budget_below_max_tokens() {
    let req = ChatRequest {
        reasoning: Some(Reasoning { effort: Some("high".into()), budget_tokens: None }),
        sampling: Sampling { temperature: Some(0.2), ..Sampling::default() },
        ..ChatRequest::default()
    };
    let (v, dropped) = encode(&req);
    assert_eq!(v["thinking"], json!({"type": "enabled", "budget_tokens": 16384}));
    assert!(v["max_tokens"].as_u64().unwrap() > 16384);
    assert_eq!(dropped, ["temperature"]);
}

#[test]
fn unsigned_thinking_is_not_sent_back() {
    let req = ChatRequest {
        messages: vec![Message {
            role: Role::Assistant,
            parts: vec![Part::Thinking { text: "t".into(), signature: None }, text("a")],
        }],
        ..ChatRequest::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(v["messages"][0]["content"], "a");
}

#[test]
fn decoded_usage_counts_cached_prompt_tokens_as_input() {
    let u = decode_usage(
        &json!({"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 3}),
        Usage::default(),
    );
    assert_eq!((u.input_tokens, u.cache_read_tokens, u.cache_write_tokens), (17, 5, 2));
    assert_eq!(serde_json::to_value(encode_usage(&u)).unwrap()["input_tokens"], 10);
}

#[test]
fn tool_use_with_a_stop_finish_is_reported_as_tool_use() {
    assert_eq!(stop_reason(FinishReason::Stop, true), "tool_use");
    assert_eq!(stop_reason(FinishReason::Stop, false), "end_turn");
    assert_eq!(stop_reason(FinishReason::Length, true), "max_tokens");
}

#[test]
fn error_types_map_both_ways() {
    let (kind, msg) =
        decode_error(529, br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
    assert_eq!((kind, msg.as_str()), (ErrorKind::Overloaded, "Overloaded"));
    let v: Value = serde_json::from_slice(&encode_error(ErrorKind::RequestTooLarge, "big")).unwrap();
    assert_eq!(v, json!({"type": "error", "error": {"type": "request_too_large", "message": "big"}}));
}

#[test]
fn server_tools_are_refused_clearly() {
    let body = br#"{"model":"m","max_tokens":1,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#;
    assert!(matches!(decode_request(body), Err(TranslateError::Unsupported(_))));
}

#[test]
fn thinking_is_turned_off_when_the_last_tool_turn_has_no_signed_thinking() {
    let call = Part::ToolCall(ToolCall {
        id: "c".into(),
        name: "f".into(),
        arguments: "{}".into(),
        signature: None,
    });
    let req = ChatRequest {
        reasoning: Some(Reasoning { effort: Some("low".into()), budget_tokens: None }),
        messages: vec![
            Message { role: Role::User, parts: vec![text("q")] },
            Message { role: Role::Assistant, parts: vec![call] },
            Message { role: Role::User, parts: vec![result("c")] },
        ],
        ..ChatRequest::default()
    };
    let (v, dropped) = encode(&req);
    assert!(v.get("thinking").is_none());
    assert_eq!(dropped, ["reasoning_effort"]);
}

#[test]
fn thinking_is_turned_off_when_a_tool_is_forced() {
    let req = ChatRequest {
        reasoning: Some(Reasoning { effort: None, budget_tokens: Some(2000) }),
        tools: vec![Tool { name: "f".into(), description: None, parameters: Value::Null, strict: None }],
        tool_choice: Some(ToolChoice::Required),
        ..ChatRequest::default()
    };
    let (v, dropped) = encode(&req);
    assert!(v.get("thinking").is_none());
    assert_eq!(dropped, ["reasoning_effort"]);
}

#[test]
fn a_turn_with_only_empty_text_is_left_out_and_neighbours_merge() {
    let req = ChatRequest {
        messages: vec![
            Message { role: Role::User, parts: vec![text("a")] },
            Message { role: Role::Assistant, parts: vec![text("")] },
            Message { role: Role::User, parts: vec![text("b")] },
        ],
        ..ChatRequest::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(
        v["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    );
}

#[test]
fn thinking_signed_by_another_provider_is_not_sent_to_anthropic() {
    use super::super::ir::*;
    let req = ChatRequest {
        messages: vec![
            Message { role: Role::User, parts: vec![Part::Text { text: "q".into(), cache_control: None }] },
            Message {
                role: Role::Assistant,
                parts: vec![
                    Part::Thinking { text: "gemini thought".into(), signature: Some("gemini:abc".into()) },
                    Part::Text { text: "a".into(), cache_control: None },
                ],
            },
            Message { role: Role::User, parts: vec![Part::Text { text: "q2".into(), cache_control: None }] },
        ],
        ..Default::default()
    };
    let opts = super::super::RequestOptions {
        target_model: "claude",
        default_max_tokens: 100,
        legacy_max_tokens: false,
    };
    let body = String::from_utf8(super::encode_request(&req, &opts).unwrap().body).unwrap();
    assert!(!body.contains("gemini:abc") && !body.contains("gemini thought"), "{body}");
}
