use super::super::{
    ChatRequest, ErrorKind, FinishReason, ImageSource, Message, Part, Reasoning, RequestOptions,
    ResponseFormat, ResponseOptions, Role, StreamEvent, ToolCall, ToolChoice, ToolResult, TranslateError,
    Usage,
};
use super::*;
use serde_json::json;

fn req_opts() -> RequestOptions<'static> {
    RequestOptions { target_model: "gemini-2.5-flash", default_max_tokens: 1024, legacy_max_tokens: false }
}

fn resp_opts(sse: bool) -> ResponseOptions<'static> {
    ResponseOptions { model: "gw-model", gemini_sse: sse, include_usage: false }
}

fn decode(v: Value) -> Result<ChatRequest, TranslateError> {
    decode_request(&serde_json::to_vec(&v).unwrap())
}

fn encode(r: &ChatRequest) -> (Value, Vec<&'static str>) {
    let e = encode_request(r, &req_opts()).unwrap();
    (serde_json::from_slice(&e.body).unwrap(), e.dropped)
}

fn decode_stream(bytes: &[u8]) -> Vec<StreamEvent> {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.feed(bytes, &mut out).unwrap();
    d.finish(&mut out).unwrap();
    out
}

fn encode_stream(events: &[StreamEvent], sse: bool) -> Vec<u8> {
    let mut e = StreamEncoder::new(&resp_opts(sse));
    let mut out = Vec::new();
    for ev in events {
        e.encode(ev, &mut out);
    }
    e.finish(&mut out);
    out
}

fn conversation() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG"},
                {"functionCall": {"name": "get_time", "args": {}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}}]}
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "d",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {"temperature": 0.5, "topP": 0.9, "topK": 40, "maxOutputTokens": 1000,
            "stopSequences": ["END"], "thinkingConfig": {"thinkingBudget": 512}}
    })
}

#[test]
fn a_conversation_decodes_with_synthesised_ids_matched_by_name() {
    let r = decode(conversation()).unwrap();
    assert_eq!(r.model, "", "the model is in the URL");
    assert_eq!(r.system[0].text, "be brief");
    assert_eq!(r.messages.len(), 3);
    assert_eq!(
        r.messages[0].parts[1],
        Part::Image(ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() })
    );
    let Part::ToolCall(c0) = &r.messages[1].parts[0] else { panic!() };
    assert_eq!(c0.id, "call_0_get_weather");
    assert_eq!(c0.signature.as_deref(), Some("SIG"));
    assert_eq!(c0.arguments, r#"{"city":"Paris"}"#);
    let Part::ToolResult(t0) = &r.messages[2].parts[0] else { panic!() };
    assert_eq!(t0.call_id, "call_1_get_time");
    assert_eq!(t0.content, vec![text_part("noon")]);
    let Part::ToolResult(t1) = &r.messages[2].parts[1] else { panic!() };
    assert_eq!(t1.call_id, "call_0_get_weather");
    assert_eq!(t1.content, vec![text_part(r#"{"temp":20}"#)]);
    assert_eq!(r.tools[0].parameters["type"], "object");
    assert_eq!(r.tool_choice, Some(ToolChoice::Tool("get_weather".into())));
    assert_eq!(r.sampling.top_k, Some(40));
    assert_eq!(r.sampling.stop, vec!["END"]);
    assert_eq!(r.max_tokens, Some(1000));
    assert_eq!(r.reasoning.unwrap().budget_tokens, Some(512));
}

#[test]
fn a_decoded_conversation_encodes_back_to_the_same_gemini_shape() {
    let r = decode(conversation()).unwrap();
    let (v, dropped) = encode(&r);
    assert!(dropped.is_empty(), "{dropped:?}");
    let c = &v["contents"];
    assert_eq!(c[1]["parts"][0]["thoughtSignature"], "SIG");
    assert_eq!(c[1]["parts"][0]["functionCall"], json!({"name": "get_weather", "args": {"city": "Paris"}}));
    assert!(c[1]["parts"][1].get("thoughtSignature").is_none(), "only the first call needs one");
    assert_eq!(
        c[2]["parts"][0]["functionResponse"],
        json!({"name": "get_time", "response": {"output": "noon"}})
    );
    assert_eq!(c[2]["parts"][1]["functionResponse"]["response"], json!({"temp": 20}));
    assert_eq!(
        v["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
    );
    assert_eq!(v["generationConfig"]["thinkingConfig"]["thinkingBudget"], 512);
    let mut capped = r.clone();
    capped.max_tokens = Some(300);
    let (v, _) = encode(&capped);
    assert_eq!(
        v["generationConfig"]["thinkingConfig"]["thinkingBudget"], 150,
        "thoughts count against the cap"
    );
    assert_eq!(v["systemInstruction"], json!({"parts": [{"text": "be brief"}]}));
}

#[test]
fn tool_results_from_other_formats_are_named_after_their_call() {
    let r = ChatRequest {
        messages: vec![
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall(ToolCall {
                    id: "toolu_1".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                    signature: None,
                })],
            },
            Message {
                role: Role::User,
                parts: vec![Part::ToolResult(ToolResult {
                    call_id: "toolu_1".into(),
                    name: None,
                    content: vec![text_part("boom")],
                    is_error: true,
                })],
            },
        ],
        ..ChatRequest::default()
    };
    let (v, _) = encode(&r);
    assert_eq!(v["contents"][0]["parts"][0]["thoughtSignature"], DUMMY_THOUGHT_SIGNATURE);
    assert_eq!(
        v["contents"][1]["parts"][0]["functionResponse"],
        json!({"name": "f", "response": {"error": "boom"}})
    );
    let orphan = ChatRequest { messages: vec![r.messages[1].clone()], ..ChatRequest::default() };
    assert!(encode_request(&orphan, &req_opts()).is_err());
}

#[test]
fn schemas_are_sanitised_to_gemini_subset() {
    let s = json!({"$schema": "x", "type": "object", "additionalProperties": false,
        "$defs": {"P": {"type": "string", "format": "uri"}},
        "properties": {
            "p": {"$ref": "#/$defs/P"},
            "n": {"type": ["integer", "null"], "format": "int32"},
            "k": {"const": "a"},
            "o": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["p", "missing"]});
    let out = sanitize_schema(&s).unwrap();
    assert_eq!(
        out,
        json!({"type": "object", "properties": {
            "p": {"type": "string"},
            "n": {"type": "integer", "nullable": true, "format": "int32"},
            "k": {"enum": ["a"], "type": "string"},
            "o": {"type": "string", "nullable": true}},
            "required": ["p"]})
    );
    assert_eq!(sanitize_schema(&json!({"type": "object", "properties": {}})), None);
    assert_eq!(sanitize_schema(&Value::Null), None);
}

#[test]
fn recursive_refs_are_cut_off_instead_of_looping() {
    let s = json!({"type": "object", "$defs": {"N": {"type": "object",
        "properties": {"next": {"$ref": "#/$defs/N"}}}},
        "properties": {"n": {"$ref": "#/$defs/N"}}});
    assert!(sanitize_schema(&s).is_some());
}

#[test]
fn json_schema_response_format_and_effort_map_to_generation_config() {
    let r = ChatRequest {
        response_format: Some(ResponseFormat::JsonSchema {
            name: "x".into(),
            schema: json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
            strict: Some(true),
        }),
        reasoning: Some(Reasoning { effort: Some("low".into()), budget_tokens: None }),
        parallel_tool_calls: Some(true),
        ..ChatRequest::default()
    };
    let (v, dropped) = encode(&r);
    let gc = &v["generationConfig"];
    assert_eq!(gc["responseMimeType"], "application/json");
    assert_eq!(gc["responseSchema"], json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    assert_eq!(gc["thinkingConfig"], json!({"thinkingBudget": 1024, "includeThoughts": true}));
    assert_eq!(dropped, vec!["parallel_tool_calls"]);
}

#[test]
fn built_in_tools_and_non_image_inline_data_are_refused() {
    assert!(matches!(
        decode(json!({"contents": [], "tools": [{"googleSearch": {}}]})),
        Err(TranslateError::Unsupported(_))
    ));
    assert!(matches!(
        decode(
            json!({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "application/pdf", "data": "x"}}]}]})
        ),
        Err(TranslateError::Unsupported(_))
    ));
    assert!(matches!(decode_request(b"{"), Err(TranslateError::Json(_))));
    assert!(decode(json!({"contents": {}})).is_err());
}

#[test]
fn stop_with_function_calls_decodes_as_tool_calls_and_usage_adds_thoughts() {
    let body = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"text": "Let me check."},
            {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "S"},
            {"functionCall": {"name": "g", "args": {}}}]},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
            "cachedContentTokenCount": 4, "totalTokenCount": 18},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"});
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(r.finish, FinishReason::ToolCalls);
    assert_eq!(r.id, "abc");
    assert_eq!(
        r.usage,
        Usage {
            input_tokens: 10,
            output_tokens: 8,
            cache_read_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 3
        }
    );
    assert!(matches!(&r.content[0], Part::Thinking { text, .. } if text == "thinking..."));
    assert!(
        matches!(&r.content[2], Part::ToolCall(c) if c.id == "call_0_f" && c.signature.as_deref() == Some("S"))
    );
    assert!(matches!(&r.content[3], Part::ToolCall(c) if c.id == "call_1_g"));
    let out: Value = serde_json::from_slice(&encode_response(&r, &resp_opts(true))).unwrap();
    assert_eq!(out["candidates"][0]["finishReason"], "STOP");
    assert_eq!(out["candidates"][0]["content"]["parts"][2]["functionCall"]["id"], "call_0_f");
    assert_eq!(out["usageMetadata"]["candidatesTokenCount"], 5);
    assert_eq!(out["usageMetadata"]["thoughtsTokenCount"], 3);
}

#[test]
fn a_plain_text_parts_signature_is_dropped() {
    let body = json!({"candidates": [{"content": {"parts": [{"text": "hi", "thoughtSignature": "T"}]},
        "finishReason": "STOP"}]});
    let r = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(r.content, vec![text_part("hi")]);
    let req = decode(json!({"contents": [{"role": "model", "parts": [{"text": "hi", "thoughtSignature": "T"}, {"thoughtSignature": "U"}]}]})).unwrap();
    assert_eq!(req.messages[0].parts, vec![text_part("hi")]);
}

#[test]
fn max_tokens_and_safety_map_through_the_shared_table() {
    for (wire, want) in [
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        ("OTHER", FinishReason::Error),
    ] {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": wire}]});
        assert_eq!(decode_response(&serde_json::to_vec(&body).unwrap()).unwrap().finish, want);
    }
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
    assert_eq!(
        decode_response(&serde_json::to_vec(&blocked).unwrap()).unwrap().finish,
        FinishReason::ContentFilter
    );
}

#[test]
fn errors_use_the_google_envelope() {
    let body = encode_error(ErrorKind::RateLimited, "quota");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}));
    assert_eq!(decode_error(429, &body), (ErrorKind::RateLimited, "quota".into()));
    let arr = br#"[{"error":{"code":403,"message":"no","status":"PERMISSION_DENIED"}}]"#;
    assert_eq!(decode_error(403, arr).0, ErrorKind::PermissionDenied);
    assert_eq!(decode_error(500, b"oops"), (ErrorKind::UpstreamError, "oops".into()));
}

const SSE: &str = concat!(
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],",
    "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1,\"totalTokenCount\":5},",
    "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"index\":0}],",
    "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2,\"totalTokenCount\":6}}\r\n\r\n",
    "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}}},",
    "{\"functionCall\":{\"name\":\"g\",\"args\":{}}}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],",
    "\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":9,\"totalTokenCount\":13}}\r\n\r\n",
);

fn expected_events() -> Vec<StreamEvent> {
    let usage = |o| StreamEvent::Usage(Usage { input_tokens: 4, output_tokens: o, ..Usage::default() });
    vec![
        StreamEvent::Start { id: "r1".into(), model: "gemini-2.5-flash".into() },
        StreamEvent::TextDelta { text: "Hel".into() },
        usage(1),
        StreamEvent::TextDelta { text: "lo".into() },
        usage(2),
        StreamEvent::ToolCallStart { index: 0, id: "call_0_f".into(), name: "f".into(), signature: None },
        StreamEvent::ToolArgsDelta { index: 0, fragment: "{\"a\":1}".into() },
        StreamEvent::ToolCallStart { index: 1, id: "call_1_g".into(), name: "g".into(), signature: None },
        StreamEvent::ToolArgsDelta { index: 1, fragment: "{}".into() },
        usage(9),
        StreamEvent::Finish(FinishReason::ToolCalls),
    ]
}

#[test]
fn an_sse_stream_with_text_then_two_parallel_calls_decodes() {
    assert_eq!(decode_stream(SSE.as_bytes()), expected_events());
    check_stream_grammar(SSE.as_bytes()).unwrap();
}

#[test]
fn the_json_array_form_decodes_the_same_events() {
    let chunks: Vec<&str> =
        SSE.split("\r\n\r\n").filter(|s| !s.is_empty()).map(|s| s.strip_prefix("data: ").unwrap()).collect();
    let array = format!("[{}]", chunks.join(",\r\n"));
    assert_eq!(decode_stream(array.as_bytes()), expected_events());
    check_stream_grammar(array.as_bytes()).unwrap();
}

#[test]
fn the_encoder_writes_json_array_form_that_decodes_back() {
    let out = encode_stream(&expected_events(), false);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("[{") && text.ends_with("}]"), "{text}");
    assert!(text.contains("},\r\n{"));
    check_stream_grammar(&out).unwrap();
    let back = decode_stream(&out);
    assert_eq!(back[1], StreamEvent::TextDelta { text: "Hel".into() });
    assert!(back.contains(&StreamEvent::ToolArgsDelta { index: 1, fragment: "{}".into() }));
    assert_eq!(back.last(), Some(&StreamEvent::Finish(FinishReason::ToolCalls)));
}

#[test]
fn the_sse_encoder_puts_finish_reason_and_usage_only_on_the_last_chunk() {
    let out = encode_stream(&expected_events(), true);
    check_stream_grammar(&out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let chunks: Vec<Value> = text
        .split("\n\n")
        .filter(|s| !s.is_empty())
        .map(|s| serde_json::from_str(s.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 9);
    assert_eq!(last["candidates"][0]["content"]["parts"][1]["functionCall"]["name"], "g");
    assert_eq!(last["candidates"][0]["content"]["parts"][0]["functionCall"]["args"], json!({"a": 1}));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["candidates"][0].get("finishReason").is_none()));
}

#[test]
fn an_error_mid_stream_is_an_error_chunk_that_closes_the_array() {
    let evs = vec![
        StreamEvent::Start { id: "r".into(), model: "m".into() },
        StreamEvent::TextDelta { text: "a".into() },
        StreamEvent::Error { kind: ErrorKind::Overloaded, message: "busy".into() },
    ];
    let out = encode_stream(&evs, false);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[1]["error"]["status"], "UNAVAILABLE");
    check_stream_grammar(&out).unwrap();
    assert_eq!(
        decode_stream(&out).last(),
        Some(&StreamEvent::Error { kind: ErrorKind::Overloaded, message: "busy".into() })
    );
}

#[test]
fn thought_parts_stream_as_thinking_with_their_signature() {
    let s = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true,\"thoughtSignature\":\"Z\"}]},\"finishReason\":\"STOP\"}]}\n\n";
    let evs = decode_stream(s.as_bytes());
    assert_eq!(evs[1], StreamEvent::ThinkingDelta { text: "hmm".into() });
    assert_eq!(evs[2], StreamEvent::ThinkingSignature { signature: "gemini:Z".into() });
    assert_eq!(evs[3], StreamEvent::Finish(FinishReason::Stop));
}

#[test]
fn an_empty_garbage_or_cut_stream_is_an_error_not_an_empty_answer() {
    let finish = |bytes: &[u8]| {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        d.feed(bytes, &mut out)?;
        d.finish(&mut out).map(|()| out)
    };
    assert_eq!(finish(b""), Err(TranslateError::EmptyStream));
    assert_eq!(finish(b"event: ping\n\n: comment\n\n"), Err(TranslateError::EmptyStream));
    assert_eq!(finish(b"<html>bad gateway</html>\n\n"), Err(TranslateError::EmptyStream));
    assert!(matches!(finish(b"data: <html>bad gateway</html>\n\n"), Err(TranslateError::Stream(_))));
    assert!(matches!(finish(b"[{\"candidates\":[]}, 7]"), Err(TranslateError::Stream(_))));
    let cut = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Once\"}]}}]}\n\n";
    assert_eq!(finish(cut.as_bytes()), Err(TranslateError::Truncated("no finishReason".into())));
}

#[test]
fn the_grammar_checker_rejects_a_finish_reason_before_the_last_chunk() {
    let bad =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}]}\n\n\
               data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}]}\n\n";
    assert!(check_stream_grammar(bad.as_bytes()).is_err());
    assert!(check_stream_grammar(b"data: [1]\n\n").is_err());
    assert!(check_stream_grammar(b"[{\"candidates\":[]}").is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(bytes: &[u8], cuts: Vec<usize>) -> Vec<StreamEvent> {
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
        out
    }

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
        fn arbitrary_json_never_panics_request_decoding(s in "[\\[\\]{}\":,a-z0-9 ]{0,200}") {
            let _ = decode_request(s.as_bytes());
            let _ = decode_response(s.as_bytes());
        }

        #[test]
        fn chunk_splits_do_not_change_the_decoded_sse_stream(cuts in proptest::collection::vec(0usize..4000, 0..12)) {
            prop_assert_eq!(feed_split(SSE.as_bytes(), cuts), expected_events());
        }

        #[test]
        fn chunk_splits_do_not_change_the_decoded_array_stream(cuts in proptest::collection::vec(0usize..4000, 0..12)) {
            let bytes = encode_stream(&expected_events(), false);
            let whole = feed_split(&bytes, Vec::new());
            prop_assert_eq!(feed_split(&bytes, cuts), whole);
        }
    }
}

#[test]
fn only_gemini_tagged_thoughts_are_sent_back_to_gemini() {
    let body = json!({"candidates": [{"content": {"parts": [
        {"text": "plan", "thought": true, "thoughtSignature": "A"}, {"text": "hi"}]}, "finishReason": "STOP"}]});
    let resp = decode_response(&serde_json::to_vec(&body).unwrap()).unwrap();
    let mut parts = resp.content;
    parts.push(Part::Thinking { text: String::new(), signature: Some("gemini:B".into()) });
    parts.push(Part::Thinking { text: "anthropic thought".into(), signature: Some("EqQB".into()) });
    let r =
        ChatRequest { messages: vec![Message { role: Role::Assistant, parts }], ..ChatRequest::default() };
    let (v, _) = encode(&r);
    assert_eq!(
        v["contents"][0]["parts"],
        json!([{"text": "plan", "thought": true, "thoughtSignature": "A"}, {"text": "hi", "thoughtSignature": "B"}])
    );
}

mod event_props {
    use super::*;
    use proptest::prelude::*;

    fn arbitrary_events(ops: &[(u8, String)]) -> Vec<StreamEvent> {
        super::super::super::openai_responses::tests::arbitrary_events(ops)
    }

    proptest! {
        #[test]
        fn any_ir_event_sequence_encodes_to_a_grammatical_stream_in_both_forms(
            ops in proptest::collection::vec((any::<u8>(), "[a-z\"{} ]{0,6}"), 0..24),
            sse in any::<bool>(),
        ) {
            let out = encode_stream(&arbitrary_events(&ops), sse);
            prop_assert!(check_stream_grammar(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
            let back = decode_stream(&out);
            let ends_well = matches!(back.last(), Some(StreamEvent::Finish(_) | StreamEvent::Error { .. }));
            prop_assert!(ends_well);
        }
    }
}

#[test]
fn elements_before_a_framing_error_in_the_same_chunk_are_still_decoded() {
    // Found by fuzzing: fed at once, the good element was dropped with the error; fed in
    // pieces, it was decoded. Now both give the element, then the error.
    let s = b"[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}]: trailing";
    for chunk in [s.len(), 7] {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        let r = s.chunks(chunk).try_for_each(|c| d.feed(c, &mut out));
        assert!(matches!(r, Err(TranslateError::Stream(_))), "chunk {chunk}: {r:?}");
        assert_eq!(out[1], StreamEvent::TextDelta { text: "Hi".into() }, "chunk {chunk}");
    }
}
