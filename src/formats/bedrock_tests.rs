use super::super::eventstream::{encode_event, encode_exception, encode_frame};
use super::super::{Message, Reasoning, Sampling, SystemPart, Tool, ToolCall, ToolResult};
use super::*;
use serde_json::json;

fn opts() -> RequestOptions<'static> {
    RequestOptions {
        target_model: "anthropic.claude-3-5-haiku-20241022-v1:0",
        default_max_tokens: 4096,
        legacy_max_tokens: false,
    }
}

fn text(t: &str) -> Part {
    Part::Text { text: t.into(), cache_control: None }
}

fn user(parts: Vec<Part>) -> Message {
    Message { role: Role::User, parts }
}

fn assistant(parts: Vec<Part>) -> Message {
    Message { role: Role::Assistant, parts }
}

fn encode(req: &ChatRequest) -> (Value, Vec<&'static str>) {
    let e = encode_request(req, &opts()).unwrap();
    (serde_json::from_slice(&e.body).unwrap(), e.dropped)
}

fn call(id: &str, name: &str, args: &str) -> Part {
    Part::ToolCall(ToolCall { id: id.into(), name: name.into(), arguments: args.into(), signature: None })
}

fn result(id: &str, content: &str, is_error: bool) -> Part {
    Part::ToolResult(ToolResult { call_id: id.into(), name: None, content: vec![text(content)], is_error })
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Weather for a city".into()),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        strict: None,
    }
}

// --- request encoding ---

#[test]
fn plain_text_request_has_no_model_and_no_empty_sections() {
    let req =
        ChatRequest { model: "alias".into(), messages: vec![user(vec![text("Hi")])], ..Default::default() };
    let (v, dropped) = encode(&req);
    assert_eq!(v, json!({"messages":[{"role":"user","content":[{"text":"Hi"}]}]}));
    assert!(dropped.is_empty());
}

#[test]
fn system_parts_become_the_system_array_with_cache_points() {
    let req = ChatRequest {
        system: vec![
            SystemPart { text: "Be brief.".into(), cache_control: None },
            SystemPart { text: "Long context".into(), cache_control: Some(json!({"type":"ephemeral"})) },
        ],
        messages: vec![user(vec![text("Hi")])],
        ..Default::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(
        v["system"],
        json!([{"text":"Be brief."},{"text":"Long context"},{"cachePoint":{"type":"default"}}])
    );
}

#[test]
fn multi_turn_keeps_roles_and_merges_same_role_runs() {
    let req = ChatRequest {
        messages: vec![
            user(vec![text("Hi")]),
            assistant(vec![text("Hello!")]),
            user(vec![text("One")]),
            user(vec![text("Two")]),
        ],
        ..Default::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(
        v["messages"],
        json!([
            {"role":"user","content":[{"text":"Hi"}]},
            {"role":"assistant","content":[{"text":"Hello!"}]},
            {"role":"user","content":[{"text":"One"},{"text":"Two"}]},
        ])
    );
}

#[test]
fn sampling_max_tokens_and_stop_sequences_go_in_inference_config() {
    let req = ChatRequest {
        messages: vec![user(vec![text("Hi")])],
        max_tokens: Some(256),
        sampling: Sampling {
            temperature: Some(0.5),
            top_p: Some(0.9),
            top_k: Some(40),
            stop: vec!["END".into(), "\n\n".into()],
            seed: Some(7),
            presence_penalty: Some(0.1),
            ..Default::default()
        },
        ..Default::default()
    };
    let (v, dropped) = encode(&req);
    assert_eq!(
        v["inferenceConfig"],
        json!({"maxTokens":256,"temperature":0.5,"topP":0.9,"stopSequences":["END","\n\n"]})
    );
    assert_eq!(v["additionalModelRequestFields"], json!({"top_k":40}));
    assert_eq!(dropped, vec!["seed", "presence_penalty"]);
}

#[test]
fn no_max_tokens_means_no_default_is_invented() {
    let req = ChatRequest { messages: vec![user(vec![text("Hi")])], ..Default::default() };
    let (v, _) = encode(&req);
    assert!(v.get("inferenceConfig").is_none());
}

#[test]
fn tools_and_each_tool_choice() {
    let base = ChatRequest {
        messages: vec![user(vec![text("Weather in Paris?")])],
        tools: vec![weather_tool()],
        ..Default::default()
    };
    let (v, _) = encode(&base);
    assert_eq!(
        v["toolConfig"],
        json!({"tools":[{"toolSpec":{
            "name":"get_weather","description":"Weather for a city",
            "inputSchema":{"json":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}
        }}]})
    );
    for (choice, want) in [
        (ToolChoice::Auto, json!({"auto":{}})),
        (ToolChoice::Required, json!({"any":{}})),
        (ToolChoice::Tool("get_weather".into()), json!({"tool":{"name":"get_weather"}})),
    ] {
        let req = ChatRequest { tool_choice: Some(choice), ..base.clone() };
        let (v, dropped) = encode(&req);
        assert_eq!(v["toolConfig"]["toolChoice"], want);
        assert!(dropped.is_empty());
    }
    // `none` with no tool history: no toolConfig at all.
    let req = ChatRequest { tool_choice: Some(ToolChoice::None), ..base.clone() };
    let (v, dropped) = encode(&req);
    assert!(v.get("toolConfig").is_none());
    assert!(dropped.is_empty());
}

#[test]
fn tool_call_and_several_results_become_tool_use_and_one_user_turn_of_tool_results() {
    let req = ChatRequest {
        messages: vec![
            user(vec![text("Weather in Paris and Rome?")]),
            assistant(vec![
                text("Checking."),
                call("call_1", "get_weather", r#"{"city":"Paris"}"#),
                call("call_2", "get_weather", r#"{"city":"Rome"}"#),
            ]),
            // As the OpenAI decoder may produce them: one user turn per `role: tool` message.
            user(vec![result("call_1", "18C", false)]),
            user(vec![result("call_2", "city not found", true)]),
        ],
        tools: vec![weather_tool()],
        ..Default::default()
    };
    let (v, _) = encode(&req);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(
        msgs[1],
        json!({"role":"assistant","content":[
            {"text":"Checking."},
            {"toolUse":{"toolUseId":"call_1","name":"get_weather","input":{"city":"Paris"}}},
            {"toolUse":{"toolUseId":"call_2","name":"get_weather","input":{"city":"Rome"}}},
        ]})
    );
    assert_eq!(
        msgs[2],
        json!({"role":"user","content":[
            {"toolResult":{"toolUseId":"call_1","content":[{"text":"18C"}]}},
            {"toolResult":{"toolUseId":"call_2","content":[{"text":"city not found"}],"status":"error"}},
        ]})
    );
}

#[test]
fn empty_arguments_and_odd_ids_are_normalised() {
    let req = ChatRequest {
        messages: vec![
            user(vec![text("Go")]),
            assistant(vec![call("call.a:b", "ping", "")]),
            user(vec![result("call.a:b", "pong", false)]),
        ],
        tools: vec![Tool { name: "ping".into(), description: None, parameters: Value::Null, strict: None }],
        ..Default::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(
        v["messages"][1]["content"][0]["toolUse"],
        json!({"toolUseId":"call_a_b","name":"ping","input":{}})
    );
    assert_eq!(v["messages"][2]["content"][0]["toolResult"]["toolUseId"], "call_a_b");
    assert_eq!(
        v["toolConfig"]["tools"][0]["toolSpec"],
        json!({"name":"ping","inputSchema":{"json":{"type":"object","properties":{}}}})
    );
}

#[test]
fn tool_history_without_tools_still_gets_a_tool_config() {
    let req = ChatRequest {
        messages: vec![
            user(vec![text("Go")]),
            assistant(vec![call("c1", "ping", "{}")]),
            user(vec![result("c1", "pong", false)]),
        ],
        tool_choice: Some(ToolChoice::None),
        ..Default::default()
    };
    let (v, dropped) = encode(&req);
    assert_eq!(
        v["toolConfig"],
        json!({"tools":[{"toolSpec":{"name":"ping","inputSchema":{"json":{"type":"object","properties":{}}}}}]})
    );
    assert_eq!(dropped, vec!["tool_choice"]);
}

#[test]
fn images_from_data_uris_and_base64_get_the_format_enum() {
    let req = ChatRequest {
        messages: vec![user(vec![
            text("What is this?"),
            Part::Image(ImageSource::Url("data:image/png;base64,iVBORw0KGgo=".into())),
            Part::Image(ImageSource::Url("data:image/jpeg;base64,/9j/4AAQ".into())),
            Part::Image(ImageSource::Base64 { media_type: "image/gif".into(), data: "R0lGOD".into() }),
            Part::Image(ImageSource::Base64 { media_type: "image/webp".into(), data: "UklGR".into() }),
        ])],
        ..Default::default()
    };
    let (v, _) = encode(&req);
    let c = &v["messages"][0]["content"];
    assert_eq!(c[1], json!({"image":{"format":"png","source":{"bytes":"iVBORw0KGgo="}}}));
    assert_eq!(c[2], json!({"image":{"format":"jpeg","source":{"bytes":"/9j/4AAQ"}}}));
    assert_eq!(c[3]["image"]["format"], "gif");
    assert_eq!(c[4]["image"]["format"], "webp");
}

#[test]
fn an_image_url_is_a_translate_error_naming_where_it_is() {
    let req = ChatRequest {
        messages: vec![user(vec![
            text("What is this?"),
            Part::Image(ImageSource::Url("https://example.com/cat.png".into())),
        ])],
        ..Default::default()
    };
    let err = encode_request(&req, &opts()).unwrap_err();
    match err {
        TranslateError::Invalid { field, message } => {
            assert_eq!(field, "messages[0].content[1].image_url");
            assert!(message.contains("data: URI"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let svg = ChatRequest {
        messages: vec![user(vec![Part::Image(ImageSource::Url(
            "data:image/svg+xml;base64,PHN2Zz4=".into(),
        ))])],
        ..Default::default()
    };
    assert!(matches!(encode_request(&svg, &opts()), Err(TranslateError::Invalid { .. })));
}

#[test]
fn s3_image_urls_use_s3_location() {
    let req = ChatRequest {
        messages: vec![user(vec![Part::Image(ImageSource::Url("s3://bucket/cat.JPG".into()))])],
        ..Default::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(
        v["messages"][0]["content"][0],
        json!({"image":{"format":"jpeg","source":{"s3Location":{"uri":"s3://bucket/cat.JPG"}}}})
    );
}

#[test]
fn signed_thinking_is_replayed_and_budget_goes_to_additional_fields() {
    let req = ChatRequest {
        messages: vec![
            user(vec![text("Think")]),
            assistant(vec![
                Part::Thinking { text: "hmm".into(), signature: Some("sig==".into()) },
                Part::Thinking { text: "unsigned".into(), signature: None },
                Part::RedactedThinking { data: "b64data".into() },
                text("Done"),
            ]),
            user(vec![text("More")]),
        ],
        reasoning: Some(Reasoning { effort: None, budget_tokens: Some(2048) }),
        ..Default::default()
    };
    let (v, _) = encode(&req);
    assert_eq!(
        v["messages"][1]["content"],
        json!([
            {"reasoningContent":{"reasoningText":{"text":"hmm","signature":"sig=="}}},
            {"reasoningContent":{"redactedContent":"b64data"}},
            {"text":"Done"},
        ])
    );
    assert_eq!(
        v["additionalModelRequestFields"],
        json!({"thinking":{"type":"enabled","budget_tokens":2048}})
    );
    // No max_tokens given: raised above the budget by the default.
    assert_eq!(v["inferenceConfig"], json!({"maxTokens": 2048 + 4096}));
}

fn encode_for(model: &str, req: &ChatRequest) -> (Value, Vec<&'static str>) {
    let o = RequestOptions { target_model: model, default_max_tokens: 1000, legacy_max_tokens: false };
    let e = encode_request(req, &o).unwrap();
    (serde_json::from_slice(&e.body).unwrap(), e.dropped)
}

#[test]
fn claude_thinking_from_effort_drops_what_thinking_forbids() {
    let req = ChatRequest {
        messages: vec![user(vec![text("x")])],
        max_tokens: Some(20_000),
        sampling: Sampling { temperature: Some(0.2), top_p: Some(0.5), top_k: Some(5), ..Default::default() },
        reasoning: Some(Reasoning { effort: Some("high".into()), budget_tokens: None }),
        ..Default::default()
    };
    let (v, dropped) = encode_for("us.anthropic.claude-sonnet-4-20250514-v1:0", &req);
    assert_eq!(
        v["additionalModelRequestFields"],
        json!({"thinking":{"type":"enabled","budget_tokens":16384}})
    );
    assert_eq!(v["inferenceConfig"], json!({"maxTokens": 20_000}));
    assert_eq!(dropped, vec!["temperature", "top_p", "top_k"]);
    // A max_tokens at or below the budget is raised.
    let small = ChatRequest { max_tokens: Some(100), sampling: Sampling::default(), ..req.clone() };
    assert_eq!(
        encode_for("anthropic.claude-3-7-sonnet-20250219-v1:0", &small).0["inferenceConfig"]["maxTokens"],
        17384
    );
    // "none" turns thinking off without reporting a drop.
    let off = ChatRequest {
        reasoning: Some(Reasoning { effort: Some("none".into()), budget_tokens: None }),
        ..small
    };
    let (v, dropped) = encode_for("anthropic.claude-3-7-sonnet-20250219-v1:0", &off);
    assert!(v.get("additionalModelRequestFields").is_none());
    assert!(dropped.is_empty());
}

#[test]
fn top_k_and_reasoning_are_spelled_per_model_family() {
    let req = ChatRequest {
        messages: vec![user(vec![text("x")])],
        sampling: Sampling { top_k: Some(7), ..Default::default() },
        ..Default::default()
    };
    let (v, dropped) = encode_for("amazon.nova-pro-v1:0", &req);
    assert_eq!(v["additionalModelRequestFields"], json!({"inferenceConfig":{"topK":7}}));
    assert!(dropped.is_empty());
    let (v, dropped) = encode_for("meta.llama3-1-70b-instruct-v1:0", &req);
    assert!(v.get("additionalModelRequestFields").is_none());
    assert_eq!(dropped, vec!["top_k"]);
    let thinking = ChatRequest {
        messages: vec![user(vec![text("x")])],
        reasoning: Some(Reasoning { effort: None, budget_tokens: Some(4096) }),
        ..Default::default()
    };
    let (v, dropped) = encode_for("meta.llama3-1-70b-instruct-v1:0", &thinking);
    assert!(v.get("additionalModelRequestFields").is_none() && v.get("inferenceConfig").is_none());
    assert_eq!(dropped, vec!["reasoning_effort"]);
}

// --- response decoding ---

#[test]
fn response_with_text_tool_use_and_usage() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "abc"}}},
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 50,
                  "cacheReadInputTokens": 5, "cacheWriteInputTokens": 3},
        "metrics": {"latencyMs": 420}
    });
    let r = decode_response(body.to_string().as_bytes()).unwrap();
    assert!(r.id.starts_with("msg_bdrk_"));
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 38, // 30 + 5 cache reads + 3 cache writes: the IR counts every prompt token
            output_tokens: 12,
            cache_read_tokens: 5,
            cache_write_tokens: 3,
            reasoning_tokens: 0
        }
    );
    assert_eq!(
        r.content,
        vec![
            Part::Thinking { text: "Need weather.".into(), signature: Some("abc".into()) },
            text("Let me check."),
            Part::ToolCall(ToolCall {
                id: "tooluse_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
                signature: None
            }),
        ]
    );
}

#[test]
fn every_stop_reason_maps() {
    for (reason, want) in [
        ("end_turn", FinishReason::Stop),
        ("tool_use", FinishReason::ToolCalls),
        ("max_tokens", FinishReason::Length),
        ("stop_sequence", FinishReason::Stop),
        ("guardrail_intervened", FinishReason::ContentFilter),
        ("content_filtered", FinishReason::ContentFilter),
        ("model_context_window_exceeded", FinishReason::Length),
    ] {
        let body = json!({"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},
                          "stopReason": reason, "usage": {"inputTokens":1,"outputTokens":1}});
        assert_eq!(decode_response(body.to_string().as_bytes()).unwrap().finish, want, "{reason}");
    }
}

#[test]
fn invalid_response_json_is_an_error() {
    assert!(matches!(decode_response(b"not json"), Err(TranslateError::Json(_))));
}

// --- errors ---

#[test]
fn exceptions_map_from_the_header_or_the_body() {
    let body = br#"{"message":"Too many requests, please wait before trying again."}"#;
    for (name, want) in [
        ("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", ErrorKind::RateLimited),
        ("ValidationException", ErrorKind::InvalidRequest),
        ("AccessDeniedException", ErrorKind::PermissionDenied),
        ("ModelTimeoutException", ErrorKind::UpstreamTimeout),
        ("ServiceUnavailableException", ErrorKind::Overloaded),
        ("ResourceNotFoundException", ErrorKind::NotFound),
        ("UnrecognizedClientException", ErrorKind::Authentication),
        ("InvalidSignatureException", ErrorKind::Authentication),
        ("ServiceQuotaExceededException", ErrorKind::RateLimited),
        ("ModelNotReadyException", ErrorKind::Overloaded),
        ("InternalServerException", ErrorKind::UpstreamError),
        ("ModelErrorException", ErrorKind::UpstreamError),
    ] {
        let (kind, msg) = decode_error_typed(400, Some(name), body);
        assert_eq!(kind, want, "{name}");
        assert!(msg.ends_with("please wait before trying again."), "{msg}");
        assert!(!msg.contains("http://"), "{msg}");
    }
    let (kind, msg) = decode_error(
        400,
        br#"{"__type":"com.amazon.coral.validate#ValidationException","message":"Malformed input request"}"#,
    );
    assert_eq!(kind, ErrorKind::InvalidRequest);
    assert_eq!(msg, "ValidationException: Malformed input request");
}

#[test]
fn unknown_errors_fall_back_to_the_status() {
    assert_eq!(decode_error(429, b"").0, ErrorKind::RateLimited);
    assert_eq!(decode_error(503, b"<html>").0, ErrorKind::Overloaded);
    assert_eq!(decode_error(403, br#"{"Message":"denied"}"#), (ErrorKind::PermissionDenied, "denied".into()));
    assert_eq!(decode_error(500, b"").1, "Bedrock returned HTTP 500");
}

// --- streams ---

fn ev(event_type: &str, payload: Value) -> Vec<u8> {
    encode_event(event_type, payload.to_string().as_bytes())
}

/// Text, then a tool use whose input arrives in pieces, then stop and metadata: what
/// ConverseStream sends for a Claude tool call (with its `p` padding field).
fn tool_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(ev("messageStart", json!({"p":"abcd","role":"assistant"})));
    s.extend(ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"text":"Let me "},"p":"ab"})));
    s.extend(ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"text":"check."},"p":"ab"})));
    s.extend(ev("contentBlockStop", json!({"contentBlockIndex":0,"p":"abcdef"})));
    s.extend(ev(
        "contentBlockStart",
        json!({"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_X1","name":"get_weather"}},"p":"a"}),
    ));
    s.extend(ev(
        "contentBlockDelta",
        json!({"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}},"p":"a"}),
    ));
    s.extend(ev(
        "contentBlockDelta",
        json!({"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}},"p":"a"}),
    ));
    s.extend(ev("contentBlockStop", json!({"contentBlockIndex":1,"p":"ab"})));
    s.extend(ev("messageStop", json!({"stopReason":"tool_use","p":"abc"})));
    s.extend(ev(
        "metadata",
        json!({"usage":{"inputTokens":412,"outputTokens":57,"totalTokens":469},"metrics":{"latencyMs":1234},"p":"ab"}),
    ));
    s
}

fn expected_tool_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start { id: "req-1".into(), model: String::new() },
        StreamEvent::TextDelta { text: "Let me ".into() },
        StreamEvent::TextDelta { text: "check.".into() },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "tooluse_X1".into(),
            name: "get_weather".into(),
            signature: None,
        },
        StreamEvent::ToolArgsDelta { index: 0, fragment: "{\"city\":".into() },
        StreamEvent::ToolArgsDelta { index: 0, fragment: "\"Paris\"}".into() },
        StreamEvent::Usage(Usage { input_tokens: 412, output_tokens: 57, ..Default::default() }),
        StreamEvent::Finish(FinishReason::ToolCalls),
    ]
}

fn run(chunks: &[&[u8]]) -> Result<Vec<StreamEvent>, TranslateError> {
    let mut d = StreamDecoder::with_id("req-1".into());
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, &mut out)?;
    }
    d.finish(&mut out)?;
    Ok(out)
}

#[test]
fn stream_of_text_then_tool_use_then_metadata() {
    let s = tool_stream();
    assert_eq!(run(&[&s]).unwrap(), expected_tool_events());
}

#[test]
fn stream_fed_byte_by_byte_gives_the_same_events() {
    let s = tool_stream();
    let bytes: Vec<&[u8]> = s.chunks(1).collect();
    assert_eq!(run(&bytes).unwrap(), expected_tool_events());
    let sevens: Vec<&[u8]> = s.chunks(7).collect();
    assert_eq!(run(&sevens).unwrap(), expected_tool_events());
}

#[test]
fn two_tool_calls_get_ordinals_by_call_not_by_block() {
    let mut s = Vec::new();
    s.extend(ev("messageStart", json!({"role":"assistant"})));
    for (block, id) in [(1, "t1"), (2, "t2")] {
        s.extend(ev(
            "contentBlockStart",
            json!({"contentBlockIndex":block,"start":{"toolUse":{"toolUseId":id,"name":"f"}}}),
        ));
        s.extend(ev(
            "contentBlockDelta",
            json!({"contentBlockIndex":block,"delta":{"toolUse":{"input":"{}"}}}),
        ));
    }
    s.extend(ev("messageStop", json!({"stopReason":"tool_use"})));
    let out = run(&[&s]).unwrap();
    let starts: Vec<u32> = out
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { index, .. } | StreamEvent::ToolArgsDelta { index, .. } => {
                Some(*index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![0, 0, 1, 1]);
    // No metadata: the held Finish is flushed by finish().
    assert_eq!(out.last(), Some(&StreamEvent::Finish(FinishReason::ToolCalls)));
}

#[test]
fn reasoning_deltas_and_signature() {
    let mut s = Vec::new();
    s.extend(ev("messageStart", json!({"role":"assistant"})));
    s.extend(ev(
        "contentBlockDelta",
        json!({"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Hmm"}}}),
    ));
    s.extend(ev(
        "contentBlockDelta",
        json!({"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"SIG"}}}),
    ));
    s.extend(ev("contentBlockDelta", json!({"contentBlockIndex":1,"delta":{"text":"Answer"}})));
    s.extend(ev("messageStop", json!({"stopReason":"end_turn"})));
    s.extend(ev("metadata", json!({"usage":{"inputTokens":1,"outputTokens":2,"cacheReadInputTokens":9}})));
    assert_eq!(
        run(&[&s]).unwrap(),
        vec![
            StreamEvent::Start { id: "req-1".into(), model: String::new() },
            StreamEvent::ThinkingDelta { text: "Hmm".into() },
            StreamEvent::ThinkingSignature { signature: "SIG".into() },
            StreamEvent::TextDelta { text: "Answer".into() },
            StreamEvent::Usage(Usage {
                input_tokens: 10, // 1 + 9 cache reads
                output_tokens: 2,
                cache_read_tokens: 9,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::Stop),
        ]
    );
}

#[test]
fn exception_frame_after_events_becomes_an_error_event() {
    let mut s = Vec::new();
    s.extend(ev("messageStart", json!({"role":"assistant"})));
    s.extend(ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"text":"Hel"}})));
    s.extend(encode_exception("throttlingException", br#"{"message":"Too many tokens, please wait."}"#));
    // Anything after the exception is ignored.
    s.extend(ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"text":"lo"}})));
    let out = run(&[&s]).unwrap();
    assert_eq!(
        out,
        vec![
            StreamEvent::Start { id: "req-1".into(), model: String::new() },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::Error {
                kind: ErrorKind::RateLimited,
                message: "throttlingException: Too many tokens, please wait.".into()
            },
        ]
    );
    for (name, kind) in [
        ("modelStreamErrorException", ErrorKind::UpstreamError),
        ("internalServerException", ErrorKind::UpstreamError),
        ("validationException", ErrorKind::InvalidRequest),
        ("serviceUnavailableException", ErrorKind::Overloaded),
    ] {
        let out = run(&[&encode_exception(name, br#"{"message":"m"}"#)]).unwrap();
        assert!(matches!(&out[..], [StreamEvent::Error { kind: k, .. }] if *k == kind), "{name}: {out:?}");
    }
}

#[test]
fn protocol_error_frame_becomes_an_error_event() {
    let f = encode_frame(
        &[(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")],
        b"",
    );
    let out = run(&[&f]).unwrap();
    assert_eq!(
        out,
        vec![StreamEvent::Error { kind: ErrorKind::UpstreamError, message: "InternalFailure: boom".into() }]
    );
}

#[test]
fn corrupt_or_truncated_streams_are_stream_errors() {
    let mut s = tool_stream();
    s[20] ^= 0xff;
    assert!(matches!(run(&[&s]), Err(TranslateError::Stream(_))));
    let s = tool_stream();
    assert!(matches!(run(&[&s[..s.len() - 5]]), Err(TranslateError::Stream(_))));
    let bad_json = encode_event("contentBlockDelta", b"{not json");
    assert!(matches!(run(&[&bad_json]), Err(TranslateError::Stream(_))));
}

#[test]
fn a_stream_cut_before_message_stop_or_without_events_is_an_error() {
    let s = ev("contentBlockDelta", json!({"contentBlockIndex":0,"delta":{"text":"Hi"}}));
    let mut d = StreamDecoder::with_id("req-1".into());
    let mut out = Vec::new();
    d.feed(&s, &mut out).unwrap();
    assert_eq!(d.finish(&mut out), Err(TranslateError::Truncated("no messageStop".into())));
    assert_eq!(
        out,
        vec![
            StreamEvent::Start { id: "req-1".into(), model: String::new() },
            StreamEvent::TextDelta { text: "Hi".into() },
        ]
    );
    assert_eq!(run(&[]), Err(TranslateError::EmptyStream));
    // Ended between messageStop and metadata: finished, just without usage.
    let stop = ev("messageStop", json!({"stopReason":"end_turn"}));
    assert_eq!(run(&[&s, &stop]).unwrap().last(), Some(&StreamEvent::Finish(FinishReason::Stop)));
}

#[test]
fn a_frame_over_the_protocol_size_is_event_too_large() {
    // A valid prelude announcing a frame bigger than event-stream allows.
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&((eventstream::MAX_FRAME_LEN + 1) as u32).to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(run(&[&prelude]), Err(TranslateError::EventTooLarge { limit: eventstream::MAX_FRAME_LEN }));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_splits_give_the_same_events(cuts in proptest::collection::vec(0usize..2000, 0..16)) {
            let s = tool_stream();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&s[at..c]);
                at = c;
            }
            chunks.push(&s[at..]);
            prop_assert_eq!(run(&chunks).unwrap(), expected_tool_events());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = run(&[&bytes]);
        }

        #[test]
        fn arbitrary_payloads_in_valid_frames_never_panic(
            event in prop::sample::select(vec![
                "messageStart", "contentBlockStart", "contentBlockDelta",
                "contentBlockStop", "messageStop", "metadata",
            ]),
            payload in "\\PC{0,80}",
        ) {
            let _ = run(&[&encode_event(event, payload.as_bytes())]);
        }
    }
}
