use super::*;

const REQ: RequestOptions<'static> =
    RequestOptions { target_model: "t", default_max_tokens: 1024, legacy_max_tokens: false };

#[test]
fn n_above_one_is_a_400_for_every_cross_format_target() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#;
    for to in [Format::Anthropic, Format::Gemini, Format::Bedrock, Format::OpenAiResponses] {
        assert!(
            matches!(
                translate_request(Format::OpenAiChat, to, body, &REQ),
                Err(TranslateError::Invalid { .. })
            ),
            "{to:?}"
        );
    }
}

#[test]
fn dropped_parameters_are_reported() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1,"logprobs":true}"#;
    let enc = translate_request(Format::OpenAiChat, Format::Anthropic, body, &REQ).unwrap();
    assert_eq!(enc.dropped, ["seed", "logprobs"]);
}

#[test]
fn status_and_kind_round_trip() {
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::Authentication,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::RequestTooLarge,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamError,
    ] {
        assert_eq!(kind_for_status(status_for(kind)), kind);
    }
    assert_eq!(kind_for_status(529), ErrorKind::Overloaded);
}

#[test]
fn errors_are_translated_into_the_client_envelope_with_the_upstream_message() {
    let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}"#;
    let out: serde_json::Value =
        serde_json::from_slice(&translate_error(Format::Anthropic, Format::OpenAiChat, 429, body)).unwrap();
    assert_eq!(out["error"]["message"], "Number of requests has exceeded your rate limit");
    assert_eq!(out["error"]["type"], "rate_limit_error");
}

#[test]
fn a_same_format_stream_passes_through_and_still_counts_usage() {
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let up = b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n";
    let mut t = StreamTranslator::new(Format::OpenAiChat, Format::OpenAiChat, &opts);
    let mut out = Vec::new();
    t.feed(up, &mut out).unwrap();
    t.finish(&mut out);
    assert_eq!(out, up);
    assert_eq!((t.usage().input_tokens, t.usage().output_tokens), (3, 4));
}

#[test]
fn fail_mid_stream_ends_the_client_stream_with_an_error_event() {
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let mut t = StreamTranslator::new(Format::OpenAiChat, Format::Anthropic, &opts);
    let mut out = Vec::new();
    t.feed(b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n", &mut out)
        .unwrap();
    t.fail(ErrorKind::UpstreamTimeout, "upstream timed out", &mut out);
    t.finish(&mut out);
    let s = String::from_utf8(out.clone()).unwrap();
    assert!(s.ends_with("event: error\ndata: {\"error\":{\"message\":\"upstream timed out\",\"type\":\"api_error\"},\"type\":\"error\"}\n\n"), "{s}");
    super::super::grammar::check(Format::Anthropic, &out).unwrap();
}

#[test]
fn a_malformed_upstream_chunk_is_an_error_the_proxy_can_fail_on() {
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let mut t = StreamTranslator::new(Format::Anthropic, Format::OpenAiChat, &opts);
    assert!(t.feed(b"event: message_start\ndata: {oops\n\n", &mut Vec::new()).is_err());
}

/// Decoding what an encoder wrote gives the same conversation back (same format, through
/// the IR), for every request fixture of the golden suite.
#[test]
fn same_format_request_round_trips_keep_the_conversation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/requests");
    for f in [Format::OpenAiChat, Format::Anthropic] {
        let Ok(dir) = std::fs::read_dir(root.join(f.name())) else { continue };
        for entry in dir.flatten() {
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.matches('.').count() != 1 {
                continue;
            }
            let Ok(ir1) = decode_request(f, &std::fs::read(&path).unwrap()) else { continue };
            let Ok(enc) = encode_request(f, &ir1, &REQ) else { continue };
            let ir2 = decode_request(f, &enc.body).unwrap();
            // `""` arguments are written as the equivalent `"{}"`; an OpenAI upstream request
            // carries reasoning as text only (no signatures).
            let norm = |ms: &[super::super::Message]| {
                let mut ms = ms.to_vec();
                for p in ms.iter_mut().flat_map(|m| m.parts.iter_mut()) {
                    match p {
                        super::super::Part::ToolCall(c) if c.arguments.is_empty() => {
                            c.arguments = "{}".into()
                        }
                        super::super::Part::Thinking { signature, .. } if f == Format::OpenAiChat => {
                            *signature = None
                        }
                        _ => {}
                    }
                }
                ms
            };
            assert_eq!(norm(&ir2.messages), norm(&ir1.messages), "{name}");
            assert_eq!(ir2.system, ir1.system, "{name}");
            assert_eq!(ir2.tools.len(), ir1.tools.len(), "{name}");
            assert_eq!(ir2.tool_choice, ir1.tool_choice, "{name}");
        }
    }
}

/// Feed `bytes` to a translator and finish it: the client's bytes and the translator.
fn translate_all(from: Format, to: Format, bytes: &[u8]) -> (String, StreamTranslator) {
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let mut t = StreamTranslator::new(from, to, &opts);
    let mut out = Vec::new();
    if let Err(e) = t.feed(bytes, &mut out) {
        t.fail(ErrorKind::UpstreamError, &e.to_string(), &mut out);
    }
    t.finish(&mut out);
    (String::from_utf8(out).unwrap(), t)
}

#[test]
fn an_empty_or_garbage_upstream_stream_is_an_error_never_an_empty_answer() {
    let garbage: &[u8] = b"<html><body>502 Bad Gateway</body></html>";
    for from in
        [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini, Format::Bedrock]
    {
        for to in [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini] {
            for body in [&b""[..], garbage, b": keep-alive\n\n"] {
                let (out, t) = translate_all(from, to, body);
                let what = format!("{from:?} -> {to:?} {:?}", String::from_utf8_lossy(body));
                let err = t.decode_error().unwrap_or_else(|| panic!("{what}: no decode error"));
                assert!(
                    matches!(err, TranslateError::EmptyStream | TranslateError::Stream(_)),
                    "{what}: {err:?}"
                );
                assert!(t.error().is_some(), "{what}");
                // No successful ending was written: no stop reason, no [DONE] after a finish.
                for marker in ["end_turn", "\"finish_reason\":\"stop\"", "\"STOP\"", "response.completed"] {
                    assert!(!out.contains(marker), "{what}: {marker} in {out}");
                }
                if from != to {
                    assert!(out.contains("error"), "{what}: no error event in {out:?}");
                    super::super::grammar::check(to, out.as_bytes())
                        .unwrap_or_else(|e| panic!("{what}: {e}\n{out}"));
                }
            }
        }
    }
}

#[test]
fn a_stream_cut_before_its_end_is_reported_as_truncated() {
    let cut = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
    );
    let (out, t) = translate_all(Format::Anthropic, Format::OpenAiChat, cut.as_bytes());
    assert_eq!(t.decode_error(), Some(&TranslateError::Truncated("no message_stop".into())));
    assert!(out.contains("\"content\":\"Hel\"") && out.contains("\"error\""), "{out}");
    assert!(!out.contains("\"finish_reason\":\"stop\""), "{out}");
    assert_eq!(t.usage().input_tokens, 3);
    // Passed through unchanged: the client sees the upstream's bytes; the problem is reported.
    let (out, t) = translate_all(Format::Anthropic, Format::Anthropic, cut.as_bytes());
    assert_eq!(out, cut);
    assert_eq!(t.decode_error(), Some(&TranslateError::Truncated("no message_stop".into())));
}

#[test]
fn an_error_the_upstream_reports_in_a_well_formed_stream_is_not_a_decode_error() {
    let s = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (out, t) = translate_all(Format::Anthropic, Format::OpenAiChat, s.as_bytes());
    assert_eq!(t.decode_error(), None);
    assert_eq!(t.error(), Some("Overloaded"));
    assert!(out.contains("Overloaded"), "{out}");
}

#[test]
fn an_answer_over_the_content_limit_ends_the_stream_with_an_error() {
    let delta = |t: &str| {
        format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{t}\"}}}}\n\n")
    };
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let mut t = StreamTranslator::new(Format::Anthropic, Format::OpenAiResponses, &opts).with_max_answer(10);
    let mut out = Vec::new();
    t.feed(start.as_bytes(), &mut out).unwrap();
    t.feed(delta("hello").as_bytes(), &mut out).unwrap();
    let e = t.feed(delta("world!").as_bytes(), &mut out).unwrap_err();
    assert_eq!(e, TranslateError::AnswerTooLarge { limit: 10 });
    assert_eq!(t.decode_error(), Some(&e));
    t.fail(ErrorKind::UpstreamError, &e.to_string(), &mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("hello") && !out.contains("world!"), "{out}");
    assert!(out.contains("response.failed"), "{out}");
    super::super::grammar::check(Format::OpenAiResponses, out.as_bytes()).unwrap();
}

// === Answer fields ===

const OPTS: ResponseOptions<'static> =
    ResponseOptions { model: "target-model", gemini_sse: true, include_usage: true };

#[test]
fn ids_take_each_client_formats_own_shape() {
    assert_eq!(answer_id(Format::OpenAiChat, "msg_01AbC"), "chatcmpl-01AbC");
    assert_eq!(answer_id(Format::OpenAiChat, "chatcmpl-9"), "chatcmpl-9");
    assert_eq!(answer_id(Format::OpenAiChat, "resp_42"), "chatcmpl-42");
    assert_eq!(answer_id(Format::Anthropic, "chatcmpl-xyz"), "msg_xyz");
    assert_eq!(answer_id(Format::Anthropic, "msg_bdrk_00ff"), "msg_bdrk_00ff");
    // Gemini's responseId has no prefix; characters an id never has are left out.
    assert_eq!(answer_id(Format::Anthropic, "gm/Id 7"), "msg_gmId7");
    assert_eq!(answer_id(Format::Gemini, "msg_1"), "msg_1");
    assert_eq!(answer_id(Format::OpenAiResponses, "msg_1"), "msg_1", "the Responses encoder adds resp_");
    // None from the upstream: a fresh one each time.
    let (a, b) = (answer_id(Format::Anthropic, ""), answer_id(Format::Anthropic, ""));
    assert!(a.starts_with("msg_") && a.len() == 4 + 24, "{a}");
    assert_ne!(a, b);
    assert!(answer_id(Format::OpenAiChat, "chatcmpl-").starts_with("chatcmpl-"));
}

#[test]
fn the_model_is_the_one_the_upstream_reports_else_the_target() {
    assert_eq!(
        answer_model("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
        "claude-3-5-haiku-20241022"
    );
    assert_eq!(answer_model("", "anthropic.claude-v2"), "anthropic.claude-v2");
    assert_eq!(answer_model("  ", "t"), "t");
}

#[test]
fn translated_answers_carry_the_upstream_model_and_their_own_id_shape() {
    let anthropic = br#"{"id":"msg_01X","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#;
    let (body, _) = translate_response(Format::Anthropic, Format::OpenAiChat, anthropic, &OPTS).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["model"].as_str()),
        (Some("chatcmpl-01X"), Some("claude-3-5-haiku-20241022"))
    );
    let chat = br#"{"id":"chatcmpl-7","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let (body, _) = translate_response(Format::OpenAiChat, Format::Anthropic, chat, &OPTS).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((v["id"].as_str(), v["model"].as_str()), (Some("msg_7"), Some("gpt-4o-mini-2024-07-18")));
    // Bedrock Converse reports no model: the target's.
    let bedrock = br#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}"#;
    let (body, _) = translate_response(Format::Bedrock, Format::Anthropic, bedrock, &OPTS).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "target-model");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    let (body, _) = translate_response(Format::Bedrock, Format::OpenAiChat, bedrock, &OPTS).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
}

#[test]
fn translated_streams_carry_the_upstream_model_and_their_own_id_shape() {
    let gemini = b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"hi\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":1,\"totalTokenCount\":4},\"modelVersion\":\"gemini-2.0-flash-001\",\"responseId\":\"abc\"}\n\n";
    for (to, id_prefix, model_key) in [
        (Format::OpenAiChat, "\"id\":\"chatcmpl-abc\"", "\"model\":\"gemini-2.0-flash-001\""),
        (Format::Anthropic, "\"id\":\"msg_abc\"", "\"model\":\"gemini-2.0-flash-001\""),
    ] {
        let mut t = StreamTranslator::new(Format::Gemini, to, &OPTS);
        let mut out = Vec::new();
        t.feed(gemini, &mut out).unwrap();
        t.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(id_prefix), "{to:?}: {text}");
        assert!(text.contains(model_key), "{to:?}: {text}");
        assert!(!text.contains("target-model"), "{to:?}: {text}");
    }
}

#[test]
fn a_responses_echo_repeats_the_request_or_the_apis_defaults() {
    let req = br#"{"model":"m","input":"hi","instructions":"Be brief","tools":[{"type":"function","name":"f","parameters":{}}],"temperature":0.2,"user":null}"#;
    let echo = responses_echo(req).unwrap();
    assert_eq!(echo.len(), 14);
    assert_eq!(echo["instructions"], "Be brief");
    assert_eq!(echo["tools"][0]["name"], "f");
    assert_eq!(echo["temperature"], 0.2);
    assert_eq!(echo["top_p"], 1.0);
    assert_eq!(echo["tool_choice"], "auto");
    assert_eq!(echo["user"], serde_json::Value::Null);
    assert_eq!(echo["text"]["format"]["type"], "text");
    assert!(!echo.contains_key("model") && !echo.contains_key("input"));
    assert!(responses_echo(b"[1]").is_none());

    let chat = br#"{"id":"chatcmpl-7","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let (body, _) = translate_response(Format::OpenAiChat, Format::OpenAiResponses, chat, &OPTS).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&echo_into_response(&body, &echo)).unwrap();
    assert_eq!(v["tools"][0]["name"], "f");
    assert_eq!(v["instructions"], "Be brief");
    assert_eq!(v["output"][0]["content"][0]["text"], "hi", "the answer itself is kept");
    assert_eq!(echo_into_response(b"not json", &echo), b"not json");
}

#[test]
fn a_translated_responses_stream_echoes_the_request_in_every_response_object() {
    let req = br#"{"model":"m","input":"hi","instructions":"Be brief","tools":[{"type":"function","name":"f","parameters":{}}]}"#;
    let echo = responses_echo(req).unwrap();
    let chat = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
    // Fed whole and byte by byte: the same output.
    let mut outputs = Vec::new();
    for split in [chat.len(), 1] {
        let mut t =
            StreamTranslator::new(Format::OpenAiChat, Format::OpenAiResponses, &OPTS).with_echo(echo.clone());
        let mut out = Vec::new();
        for piece in chat.as_bytes().chunks(split) {
            t.feed(piece, &mut out).unwrap();
        }
        t.finish(&mut out);
        outputs.push(String::from_utf8(out).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    let text = &outputs[0];
    let objects: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter(|v| v.get("response").is_some())
        .collect();
    let kinds: Vec<&str> = objects.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["response.created", "response.in_progress", "response.completed"], "{text}");
    for v in &objects {
        assert_eq!(v["response"]["tools"][0]["name"], "f", "{v}");
        assert_eq!(v["response"]["instructions"], "Be brief", "{v}");
    }
    assert_eq!(objects[2]["response"]["output"][0]["content"][0]["text"], "hi");
    crate::formats::grammar::check(Format::OpenAiResponses, text.as_bytes()).unwrap();
    // Without an echo nothing changes: the encoder's own `tools: []`.
    let mut t = StreamTranslator::new(Format::OpenAiChat, Format::OpenAiResponses, &OPTS);
    let mut out = Vec::new();
    t.feed(chat.as_bytes(), &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("\"tools\":[]"));
}

#[test]
fn a_responses_web_search_maps_to_anthropics_search_tool_and_geminis_grounding_and_is_refused_elsewhere() {
    let body = br#"{"model":"m","input":"news?","tools":[{"type":"web_search","filters":{"allowed_domains":["example.com"]},"user_location":{"type":"approximate","country":"FR"}},{"type":"function","name":"f","parameters":{"type":"object"}}]}"#;
    let v = |e: Encoded| serde_json::from_slice::<serde_json::Value>(&e.body).unwrap();
    let a = v(translate_request(Format::OpenAiResponses, Format::Anthropic, body, &REQ).unwrap());
    let tools = a["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["name"], "f");
    assert_eq!(tools[1]["type"], crate::formats::anthropic::WEB_SEARCH_TOOL);
    assert_eq!(tools[1]["name"], "web_search");
    assert_eq!(tools[1]["allowed_domains"], serde_json::json!(["example.com"]));
    assert_eq!(tools[1]["user_location"]["country"], "FR");
    let g = v(translate_request(Format::OpenAiResponses, Format::Gemini, body, &REQ).unwrap());
    assert_eq!(g["tools"][1], serde_json::json!({"google_search": {}}));
    assert!(g["tools"][0]["functionDeclarations"].is_array());
    // Only web search: Gemini still gets grounding, Anthropic the tool alone.
    let only = br#"{"model":"m","input":"news?","tools":[{"type":"web_search_preview"}]}"#;
    let g = v(translate_request(Format::OpenAiResponses, Format::Gemini, only, &REQ).unwrap());
    assert_eq!(g["tools"], serde_json::json!([{"google_search": {}}]));
    let a = v(translate_request(Format::OpenAiResponses, Format::Anthropic, only, &REQ).unwrap());
    assert_eq!(a["tools"].as_array().map(Vec::len), Some(1));
    for to in [Format::OpenAiChat, Format::Bedrock] {
        let e = translate_request(Format::OpenAiResponses, to, only, &REQ).unwrap_err().to_string();
        assert!(e.contains("web_search") && e.contains("no server-side web search"), "{to:?}: {e}");
    }
    // Other built-in tools are still refused by name.
    let fs = br#"{"model":"m","input":"x","tools":[{"type":"file_search","vector_store_ids":["v"]}]}"#;
    let e = translate_request(Format::OpenAiResponses, Format::Anthropic, fs, &REQ).unwrap_err().to_string();
    assert!(e.contains("file_search"), "{e}");
}

#[test]
fn an_anthropic_answer_with_web_search_blocks_translates_to_its_text() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[
        {"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"news"}},
        {"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[{"type":"web_search_result","url":"https://x.test","title":"X","encrypted_content":"e"}]},
        {"type":"text","text":"Here is the news","citations":[{"type":"web_search_result_location","url":"https://x.test","title":"X","cited_text":"n"}]}],
        "stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5,"server_tool_use":{"web_search_requests":1}}}"#;
    let r = decode_response(Format::Anthropic, body).unwrap();
    let opts = ResponseOptions { model: "m", gemini_sse: true, include_usage: false };
    let out = String::from_utf8(encode_response(Format::OpenAiResponses, &r, &opts)).unwrap();
    assert!(out.contains("Here is the news"), "{out}");
}
