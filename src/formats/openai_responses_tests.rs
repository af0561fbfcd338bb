use super::super::{
    ChatRequest, ErrorKind, FinishReason, ImageSource, Part, RequestOptions, ResponseFormat, ResponseOptions,
    Role, StreamEvent, SystemPart, ToolCall, ToolChoice, TranslateError, Usage,
};
use super::*;
use serde_json::json;

fn req_opts() -> RequestOptions<'static> {
    RequestOptions { target_model: "gpt-5", default_max_tokens: 1024, legacy_max_tokens: false }
}

fn resp_opts() -> ResponseOptions<'static> {
    ResponseOptions { model: "gw-model", gemini_sse: true, include_usage: false }
}

fn decode(v: Value) -> Result<ChatRequest, TranslateError> {
    decode_request(&serde_json::to_vec(&v).unwrap())
}

fn events_of(bytes: &[u8]) -> Vec<Value> {
    let mut p = super::super::sse::SseParser::new();
    let mut evs = Vec::new();
    p.feed(bytes, &mut evs).unwrap();
    p.finish(&mut evs);
    evs.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect()
}

fn types_of(bytes: &[u8]) -> Vec<String> {
    events_of(bytes).iter().map(|v| v["type"].as_str().unwrap().to_owned()).collect()
}

fn encode_stream(events: &[StreamEvent]) -> Vec<u8> {
    let mut enc = StreamEncoder::new(&resp_opts());
    let mut out = Vec::new();
    for e in events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    out
}

fn decode_stream(bytes: &[u8]) -> Vec<StreamEvent> {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.feed(bytes, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    out
}

#[test]
fn a_string_input_becomes_one_user_message_and_instructions_become_system() {
    let r = decode(json!({"model": "m", "instructions": "be brief", "input": "hi",
        "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stream": true, "store": true}))
    .unwrap();
    assert_eq!(r.model, "m");
    assert_eq!(r.system[0].text, "be brief");
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].role, Role::User);
    assert_eq!(r.max_tokens, Some(50));
    assert_eq!(r.sampling.temperature, Some(0.2));
    assert!(r.stream);
    assert!(r.extra.is_empty(), "store is ignored, not carried");
}

#[test]
fn typed_items_decode_into_turns_with_tool_calls_and_results() {
    let r = decode(json!({"model": "m", "input": [
        {"type": "message", "role": "developer", "content": "sys"},
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
    ]}))
    .unwrap();
    assert_eq!(r.system[0].text, "sys");
    assert_eq!(r.messages.len(), 3);
    assert_eq!(
        r.messages[0].parts[1],
        Part::Image(ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() })
    );
    assert_eq!(r.messages[1].parts.len(), 3, "text and both calls in one assistant turn");
    assert!(
        matches!(&r.messages[1].parts[1], Part::ToolCall(c) if c.id == "c1" && c.arguments == "{\"a\":1}")
    );
    assert_eq!(r.messages[2].role, Role::User);
    assert!(matches!(&r.messages[2].parts[1], Part::ToolResult(t) if t.call_id == "c2"));
}

#[test]
fn reasoning_items_carry_encrypted_content_as_the_thinking_signature() {
    let r = decode(json!({"input": [{"type": "reasoning", "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "thought"}], "encrypted_content": "openai:ENC"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "foreign"}], "encrypted_content": "EqQB"}]}))
    .unwrap();
    assert_eq!(
        r.messages[0].parts[0],
        Part::Thinking { text: "thought".into(), signature: Some("openai:ENC".into()) }
    );
    let body = encode_request(&r, &req_opts()).unwrap().body;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["input"][0]["encrypted_content"], "ENC", "our tag is stripped upstream");
    assert_eq!(v["input"].as_array().unwrap().len(), 1, "another provider's reasoning is not replayed");
    let resp = decode_response(br#"{"output":[{"type":"reasoning","summary":[],"encrypted_content":"X"}]}"#)
        .unwrap();
    assert_eq!(resp.content[0], Part::Thinking { text: String::new(), signature: Some("openai:X".into()) });
}

#[test]
fn previous_response_id_is_refused_because_the_gateway_is_stateless() {
    let e = decode(json!({"input": "x", "previous_response_id": "resp_1"})).unwrap_err();
    assert!(matches!(&e, TranslateError::Unsupported(m) if m.contains("stateless")), "{e}");
    assert!(decode(json!({"input": "x", "previous_response_id": null})).is_ok());
}

#[test]
fn built_in_tools_are_refused_but_web_search_and_function_tools_are_flat() {
    let e = decode(json!({"input": "x", "tools": [{"type": "file_search"}]})).unwrap_err();
    assert!(matches!(&e, TranslateError::Unsupported(m) if m.contains("file_search")));
    // Web search is the target's own search (Anthropic's tool, Gemini's grounding).
    let r = decode(json!({"input": "x", "tools": [{"type": "web_search_preview", "user_location": {"type": "approximate", "city": "Paris"}}]})).unwrap();
    assert!(r.tools.is_empty());
    assert_eq!(r.web_search.and_then(|w| w.user_location).map(|l| l["city"].clone()), Some(json!("Paris")));
    let r = decode(json!({"input": "x", "tools": [{"type": "function", "name": "f",
        "description": "d", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": false}))
    .unwrap();
    assert_eq!(r.tools[0].name, "f");
    assert_eq!(r.tools[0].strict, Some(true));
    assert_eq!(r.tool_choice, Some(ToolChoice::Tool("f".into())));
    assert_eq!(r.parallel_tool_calls, Some(false));
}

#[test]
fn text_format_and_reasoning_effort_decode() {
    let r = decode(json!({"input": "x", "reasoning": {"effort": "high"},
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true}}}))
    .unwrap();
    assert_eq!(r.reasoning.unwrap().effort.as_deref(), Some("high"));
    assert_eq!(
        r.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "s".into(),
            schema: json!({"type": "object"}),
            strict: Some(true)
        })
    );
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    assert!(matches!(decode_request(b"{"), Err(TranslateError::Json(_))));
    assert!(decode_request(b"[]").is_err());
    assert!(decode(json!({"input": 5})).is_err());
    assert!(decode(json!({"input": [{"type": "function_call"}]})).is_err());
    assert!(decode_response(b"nope").is_err());
}

#[test]
fn encode_request_writes_items_and_reports_dropped_parameters() {
    let mut r = decode(json!({"input": [
        {"role": "user", "content": "q"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": "r"}]}))
    .unwrap();
    r.sampling.stop = vec!["x".into()];
    r.sampling.seed = Some(1);
    r.system.push(SystemPart { text: "s".into(), cache_control: None });
    let enc = encode_request(&r, &req_opts()).unwrap();
    let v: Value = serde_json::from_slice(&enc.body).unwrap();
    assert_eq!(v["model"], "gpt-5");
    assert_eq!(v["instructions"], "s");
    assert_eq!(v["store"], false);
    assert_eq!(
        v["input"][0],
        json!({"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "q"}]})
    );
    assert_eq!(
        v["input"][1],
        json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"})
    );
    assert_eq!(v["input"][2], json!({"type": "function_call_output", "call_id": "c1", "output": "r"}));
    assert_eq!(enc.dropped, vec!["stop", "seed"]);
}

#[test]
fn a_response_body_decodes_text_calls_and_usage() {
    let body = json!({"id": "resp_1", "object": "response", "created_at": 7, "status": "completed",
        "model": "gpt-5", "output": [
            {"type": "reasoning", "id": "rs", "summary": []},
            {"type": "message", "id": "m", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
            {"type": "function_call", "id": "fc", "call_id": "c1", "name": "f", "arguments": "{}"}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 2}, "output_tokens_details": {"reasoning_tokens": 3}}});
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(r.content.len(), 2, "an empty reasoning item is skipped");
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(r.usage.cache_read_tokens, 2);
    assert_eq!(r.usage.reasoning_tokens, 3);
    assert_eq!(r.created, 7);
}

#[test]
fn an_incomplete_response_for_max_output_tokens_is_length_both_ways() {
    let body = json!({"id": "resp_1", "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(r.finish, FinishReason::Length);
    let out: Value = serde_json::from_slice(&encode_response(&r, &resp_opts())).unwrap();
    assert_eq!(out["status"], "incomplete");
    assert_eq!(out["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn encode_response_groups_text_into_a_message_item_and_writes_usage() {
    let resp = ChatResponse {
        id: "abc".into(),
        model: "up".into(),
        created: 1,
        content: vec![
            text_part("a"),
            Part::ToolCall(ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
                signature: None,
            }),
        ],
        finish: FinishReason::ToolCalls,
        usage: Usage { input_tokens: 3, output_tokens: 4, ..Usage::default() },
    };
    let v: Value = serde_json::from_slice(&encode_response(&resp, &resp_opts())).unwrap();
    assert_eq!(v["id"], "resp_abc");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gw-model");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["text"], "a");
    assert_eq!(v["output"][1]["call_id"], "c1");
    assert_eq!(v["usage"]["total_tokens"], 7);
}

#[test]
fn errors_round_trip_through_the_openai_envelope() {
    let body = encode_error(ErrorKind::RateLimited, "slow down");
    assert_eq!(decode_error(429, &body), (ErrorKind::RateLimited, "slow down".into()));
    assert_eq!(decode_error(503, b"<html>").0, ErrorKind::Overloaded);
}

fn text_then_call() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start { id: "x1".into(), model: "up".into() },
        StreamEvent::TextDelta { text: "Hel".into() },
        StreamEvent::TextDelta { text: "lo".into() },
        StreamEvent::ToolCallStart { index: 0, id: "c1".into(), name: "f".into(), signature: None },
        StreamEvent::ToolArgsDelta { index: 0, fragment: "{\"a\":".into() },
        StreamEvent::ToolArgsDelta { index: 0, fragment: "1}".into() },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage { input_tokens: 5, output_tokens: 7, ..Usage::default() }),
    ]
}

#[test]
fn the_stream_encoder_writes_the_documented_sequence_for_text_then_a_function_call() {
    let out = encode_stream(&text_then_call());
    assert_eq!(
        types_of(&out),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    check_stream_grammar(&out).unwrap();
    let evs = events_of(&out);
    let done = evs.last().unwrap();
    assert_eq!(done["response"]["usage"]["output_tokens"], 7);
    assert_eq!(done["response"]["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(evs[12]["arguments"], "{\"a\":1}");
    assert_eq!(evs[6]["text"], "Hello");
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64);
    }
}

#[test]
fn the_stream_decoder_inverts_the_encoder() {
    let out = encode_stream(&text_then_call());
    let back = decode_stream(&out);
    assert_eq!(
        back,
        vec![
            StreamEvent::Start { id: "resp_x1".into(), model: "gw-model".into() },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::ToolCallStart { index: 0, id: "c1".into(), name: "f".into(), signature: None },
            StreamEvent::ToolArgsDelta { index: 0, fragment: "{\"a\":".into() },
            StreamEvent::ToolArgsDelta { index: 0, fragment: "1}".into() },
            StreamEvent::Usage(Usage { input_tokens: 5, output_tokens: 7, ..Usage::default() }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn two_parallel_calls_stream_as_two_function_call_items() {
    let evs = vec![
        StreamEvent::Start { id: "r".into(), model: "m".into() },
        StreamEvent::ToolCallStart { index: 0, id: "a".into(), name: "f".into(), signature: None },
        StreamEvent::ToolArgsDelta { index: 0, fragment: "{}".into() },
        StreamEvent::ToolCallStart { index: 1, id: "b".into(), name: "g".into(), signature: None },
        StreamEvent::ToolArgsDelta { index: 1, fragment: "{\"x\":2}".into() },
        StreamEvent::Finish(FinishReason::ToolCalls),
    ];
    let out = encode_stream(&evs);
    check_stream_grammar(&out).unwrap();
    let last = events_of(&out).pop().unwrap();
    assert_eq!(last["response"]["output"][0]["call_id"], "a");
    assert_eq!(last["response"]["output"][1]["arguments"], "{\"x\":2}");
    let back = decode_stream(&out);
    assert!(back.contains(&StreamEvent::ToolCallStart {
        index: 1,
        id: "b".into(),
        name: "g".into(),
        signature: None
    }));
    assert_eq!(back.last(), Some(&StreamEvent::Finish(FinishReason::ToolCalls)));
}

#[test]
fn an_error_mid_stream_closes_open_items_and_ends_with_response_failed() {
    let evs = vec![
        StreamEvent::Start { id: "r".into(), model: "m".into() },
        StreamEvent::TextDelta { text: "a".into() },
        StreamEvent::Error { kind: ErrorKind::Overloaded, message: "busy".into() },
        StreamEvent::TextDelta { text: "ignored".into() },
    ];
    let out = encode_stream(&evs);
    check_stream_grammar(&out).unwrap();
    let last = events_of(&out).pop().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["error"]["message"], "busy");
    let back = decode_stream(&out);
    assert_eq!(
        back.last(),
        Some(&StreamEvent::Error { kind: ErrorKind::Overloaded, message: "busy".into() })
    );
}

#[test]
fn an_upstream_error_event_becomes_an_ir_error() {
    let s = b"event: error\ndata: {\"type\":\"error\",\"code\":\"rate_limit_exceeded\",\"message\":\"slow\",\"sequence_number\":0}\n\n";
    assert_eq!(
        decode_stream(s),
        vec![StreamEvent::Error { kind: ErrorKind::RateLimited, message: "slow".into() }]
    );
}

#[test]
fn thinking_streams_as_a_reasoning_item_with_its_signature() {
    let evs = vec![
        StreamEvent::Start { id: "r".into(), model: "m".into() },
        StreamEvent::ThinkingDelta { text: "hmm".into() },
        StreamEvent::ThinkingSignature { signature: "SIG".into() },
        StreamEvent::TextDelta { text: "ok".into() },
    ];
    let out = encode_stream(&evs);
    check_stream_grammar(&out).unwrap();
    let last = events_of(&out).pop().unwrap();
    assert_eq!(last["response"]["output"][0]["encrypted_content"], "SIG");
    assert_eq!(last["response"]["output"][0]["summary"][0]["text"], "hmm");
    let back = decode_stream(&out);
    assert_eq!(back[1], StreamEvent::ThinkingDelta { text: "hmm".into() });
    assert_eq!(back[2], StreamEvent::ThinkingSignature { signature: "openai:SIG".into() });
}

#[test]
fn a_stream_cut_before_response_completed_ends_in_an_error() {
    let out = encode_stream(&text_then_call());
    let cut = &out[..out.len() / 2];
    let mut d = StreamDecoder::new();
    let mut evs = Vec::new();
    d.feed(cut, &mut evs).unwrap();
    assert_eq!(d.finish(&mut evs), Err(TranslateError::Truncated("no response.completed".into())));
    assert!(matches!(evs.first(), Some(StreamEvent::Start { .. })));
    assert!(check_stream_grammar(cut).is_err());
    let mut d = StreamDecoder::new();
    d.feed(b"event: keepalive\n\n", &mut evs).unwrap();
    assert_eq!(d.finish(&mut evs), Err(TranslateError::EmptyStream));
}

#[test]
fn the_grammar_checker_rejects_out_of_order_events() {
    let ok = encode_stream(&text_then_call());
    let text = String::from_utf8(ok).unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    // Drop the output_item.added of the message: its content_part.added is then orphaned.
    let mut bad: Vec<&str> = events.clone();
    bad.remove(2);
    let bad = bad.join("\n\n") + "\n\n";
    assert!(check_stream_grammar(bad.as_bytes()).is_err());
    // Swap two events: sequence numbers then go backwards.
    let mut swapped = events.clone();
    swapped.swap(4, 5);
    let swapped = swapped.join("\n\n") + "\n\n";
    assert!(check_stream_grammar(swapped.as_bytes()).unwrap_err().contains("sequence_number"));
}

#[test]
fn an_empty_ir_stream_still_yields_a_complete_response() {
    let out = encode_stream(&[]);
    check_stream_grammar(&out).unwrap();
    assert_eq!(types_of(&out), ["response.created", "response.in_progress", "response.completed"]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
            let _ = decode_error(500, &bytes);
            let _ = check_stream_grammar(&bytes);
            let mut d = StreamDecoder::new();
            let mut out = Vec::new();
            let _ = d.feed(&bytes, &mut out);
            let _ = d.finish(&mut out);
        }

        #[test]
        fn chunk_splits_do_not_change_the_decoded_stream(cuts in proptest::collection::vec(0usize..4000, 0..12)) {
            let bytes = encode_stream(&text_then_call());
            let whole = decode_stream(&bytes);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = StreamDecoder::new();
            let mut out = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                d.feed(&bytes[prev..c], &mut out).unwrap();
                prev = c;
            }
            d.finish(&mut out).unwrap();
            prop_assert_eq!(out, whole);
        }
    }
}

/// Arbitrary IR event sequences (tool indices in start order, as decoders produce them).
pub(crate) fn arbitrary_events(ops: &[(u8, String)]) -> Vec<StreamEvent> {
    let mut evs = vec![StreamEvent::Start { id: "r".into(), model: "m".into() }];
    let mut tools = 0u32;
    for (op, s) in ops {
        evs.push(match op % 8 {
            0 | 1 => StreamEvent::TextDelta { text: s.clone() },
            2 => StreamEvent::ThinkingDelta { text: s.clone() },
            3 => StreamEvent::ThinkingSignature { signature: s.clone() },
            4 => {
                tools += 1;
                StreamEvent::ToolCallStart {
                    index: tools - 1,
                    id: format!("c{tools}"),
                    name: "f".into(),
                    signature: None,
                }
            }
            5 if tools > 0 => StreamEvent::ToolArgsDelta { index: tools - 1, fragment: s.clone() },
            5 | 6 => StreamEvent::Usage(Usage { input_tokens: s.len() as u64, ..Usage::default() }),
            _ if s.len() % 3 == 0 => {
                StreamEvent::Error { kind: ErrorKind::UpstreamError, message: s.clone() }
            }
            _ => StreamEvent::Finish(FinishReason::Length),
        });
    }
    evs
}

mod event_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_ir_event_sequence_encodes_to_a_grammatical_stream_that_decodes(
            ops in proptest::collection::vec((any::<u8>(), "[a-z\"{} ]{0,6}"), 0..24)
        ) {
            let out = encode_stream(&arbitrary_events(&ops));
            prop_assert!(check_stream_grammar(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
            let back = decode_stream(&out);
            let ends_well = matches!(back.last(), Some(StreamEvent::Finish(_) | StreamEvent::Error { .. }));
            prop_assert!(ends_well);
        }
    }
}

#[test]
fn a_function_call_sent_only_as_a_done_item_still_decodes() {
    let s = concat!(
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"m\"}}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"sequence_number\":1,\"output_index\":0,",
        "\"item\":{\"type\":\"function_call\",\"call_id\":\"c9\",\"name\":\"f\",\"arguments\":\"{}\"}}\n\n",
        "data: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"status\":\"completed\"}}\n\n",
    );
    assert_eq!(
        decode_stream(s.as_bytes())[1..],
        [
            StreamEvent::ToolCallStart { index: 0, id: "c9".into(), name: "f".into(), signature: None },
            StreamEvent::ToolArgsDelta { index: 0, fragment: "{}".into() },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}
