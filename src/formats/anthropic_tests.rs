use super::super::Sampling;
use super::*;
use crate::formats::{Tool, ToolCall, ToolResult};

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

/// The typed request decoder reads odd shapes as reading a `Value` did: fields of the wrong
/// type are absent, refusals name the field, unmodelled members are kept, a repeated member
/// replaces the earlier one.
#[test]
fn requests_of_every_shape_decode_as_a_value_reader_would() {
    let err = |body: &str| decode_request(body.as_bytes()).unwrap_err().to_string();
    assert!(err("[1]").contains("expected a JSON object"), "{}", err("[1]"));
    assert!(err("{\"messages\": [").contains("EOF"), "{}", err("{\"messages\": ["));
    for messages in ["null", "{}", "\"hi\"", "3"] {
        let e = err(&format!(r#"{{"model":"m","messages":{messages}}}"#));
        assert!(e.contains("messages") && e.contains("must be an array"), "{messages}: {e}");
    }
    let e = err(r#"{"messages":[5]}"#);
    assert!(e.contains("messages[0].role") && e.contains("None"), "{e}");
    let e = err(r#"{"messages":[{"role":"system","content":"x"}]}"#);
    assert!(e.contains("messages[0].role") && e.contains("\"system\""), "{e}");
    let e = err(r#"{"messages":[{"role":"user","content":7}]}"#);
    assert!(e.contains("messages[0].content") && e.contains("must be a string or an array"), "{e}");
    let e = err(r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},3]}]}"#);
    assert!(e.contains("messages[0].content[1] of type \"\""), "{e}");
    let e = err(
        r#"{"messages":[{"role":"user","content":[{"type":"tool_result","content":[{"type":"audio"}]}]}]}"#,
    );
    assert!(e.contains("messages[0].content[0].content[0] of type \"audio\""), "{e}");
    let e = err(r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file"}}]}]}"#);
    assert!(e.contains("messages[0].content[0].source of type"), "{e}");
    let e = err(r#"{"system":{"text":"x"},"messages":[]}"#);
    assert!(e.contains("system"), "{e}");
    let e = err(r#"{"messages":[],"tools":[{"description":"no name"}]}"#);
    assert!(e.contains("tools[0].name"), "{e}");
    let e = err(r#"{"messages":[],"tools":[{"type":"web_search_20250305","name":"w"}]}"#);
    assert!(e.contains("server tool type"), "{e}");

    let body = r#"{"model":"first","model":"claude-x","max_tokens":"9","temperature":1,"top_p":0.5,"top_k":-1,
        "stream":"yes","stop_sequences":["END",4],"metadata":{"user_id":"u\"1"},"service_tier":"auto",
        "system":[{"text":"be brief","cache_control":{"type":"ephemeral"}},7,{"cache_control":null}],
        "tools":[{"name":"f","input_schema":{"type":"object"},"strict":true},{"type":"custom","name":"g"}],
        "tool_choice":{"type":"tool","name":"f","disable_parallel_tool_use":true},
        "thinking":{"type":"enabled","budget_tokens":2048},
        "messages":[
          {"role":"user","content":"plain \u00e9"},
          {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":""},
            {"type":"tool_use","id":"t1","name":"f","input":{"a":1}},{"type":"server_tool_use"}]},
          {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok","is_error":1},
            {"type":"image","source":{"type":"url","url":"https://x/y.png"}},
            {"type":"text","text":"t","cache_control":null}]},
          {"role":"assistant","content":null}
        ]}"#;
    let r = decode_request(body.as_bytes()).unwrap();
    assert_eq!(r.model, "claude-x");
    assert_eq!(r.max_tokens, None, "a string is not a number");
    assert_eq!((r.sampling.temperature, r.sampling.top_p, r.sampling.top_k), (Some(1.0), Some(0.5), None));
    assert!(!r.stream && !r.include_usage);
    assert_eq!(r.sampling.stop, vec!["END".to_owned()]);
    assert_eq!(r.user.as_deref(), Some("u\"1"));
    assert_eq!(r.extra.get("service_tier"), Some(&json!("auto")));
    assert_eq!(r.extra.len(), 1);
    assert_eq!(r.system.len(), 3);
    assert_eq!(r.system[0].cache_control, Some(json!({"type": "ephemeral"})));
    assert_eq!((r.system[1].text.as_str(), &r.system[1].cache_control), ("", &None));
    assert_eq!(r.system[2].cache_control, Some(Value::Null));
    assert_eq!(r.tools.len(), 2);
    assert_eq!((r.tools[0].strict, &r.tools[0].parameters), (Some(true), &json!({"type": "object"})));
    assert_eq!(r.tools[1].parameters, Value::Null);
    assert_eq!(r.tool_choice, Some(ToolChoice::Tool("f".into())));
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert_eq!(r.reasoning.as_ref().and_then(|t| t.budget_tokens), Some(2048));
    assert_eq!(r.messages.len(), 4);
    assert_eq!(r.messages[0].parts, vec![text("plain é")]);
    assert_eq!(
        r.messages[1].parts,
        vec![
            Part::Thinking { text: "hm".into(), signature: None },
            Part::ToolCall(ToolCall {
                id: "t1".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into(),
                signature: None
            }),
        ]
    );
    let Part::ToolResult(res) = &r.messages[2].parts[0] else { panic!("{:?}", r.messages[2].parts) };
    assert_eq!((res.call_id.as_str(), &res.content, res.is_error), ("t1", &vec![text("ok")], false));
    assert_eq!(r.messages[2].parts[1], Part::Image(ImageSource::Url("https://x/y.png".into())));
    assert_eq!(r.messages[2].parts[2], Part::Text { text: "t".into(), cache_control: Some(Value::Null) });
    assert!(r.messages[3].parts.is_empty());
}
