use super::super::sse::{SseEvent, SseParser};
use super::*;
use serde_json::Value;

fn opts() -> ResponseOptions<'static> {
    ResponseOptions { model: "claude-x", gemini_sse: true, include_usage: false }
}

fn encode(events: &[StreamEvent]) -> Vec<u8> {
    let mut enc = StreamEncoder::new(&opts());
    let mut out = Vec::new();
    for e in events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    out
}

fn names(bytes: &[u8]) -> Vec<String> {
    let mut p = SseParser::new();
    let mut evs: Vec<SseEvent> = Vec::new();
    p.feed(bytes, &mut evs).unwrap();
    p.finish(&mut evs);
    evs.into_iter()
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            match v.pointer("/delta/type").and_then(Value::as_str) {
                Some(d) if e.event == "content_block_delta" => format!("delta:{d}@{}", v["index"]),
                _ => match v.get("index") {
                    Some(i) => format!("{}@{i}", e.event),
                    None => e.event,
                },
            }
        })
        .collect()
}

fn start() -> StreamEvent {
    StreamEvent::Start { id: "chatcmpl-1".into(), model: "gpt".into() }
}

fn text(t: &str) -> StreamEvent {
    StreamEvent::TextDelta { text: t.into() }
}

fn tool(index: u32, name: &str) -> StreamEvent {
    StreamEvent::ToolCallStart { index, id: format!("call_{index}"), name: name.into(), signature: None }
}

fn args(index: u32, f: &str) -> StreamEvent {
    StreamEvent::ToolArgsDelta { index, fragment: f.into() }
}

#[test]
fn message_start_comes_first_even_before_usage_is_known() {
    let out = encode(&[start(), text("hi")]);
    assert_eq!(names(&out)[0], "message_start");
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains(r#""input_tokens":0"#), "{s}");
}

#[test]
fn text_then_tool_call_closes_the_text_block_first() {
    let out = encode(&[
        start(),
        text("Let me check."),
        tool(0, "get_weather"),
        args(0, "{\"city\":"),
        args(0, "\"Paris\"}"),
        StreamEvent::Finish(FinishReason::ToolCalls),
    ]);
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start@0",
            "delta:text_delta@0",
            "content_block_stop@0",
            "content_block_start@1",
            "delta:input_json_delta@1",
            "delta:input_json_delta@1",
            "content_block_stop@1",
            "message_delta",
            "message_stop"
        ]
    );
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains(r#""stop_reason":"tool_use""#));
}

#[test]
fn parallel_tool_calls_get_one_block_each_in_order() {
    let out = encode(&[start(), tool(0, "a"), args(0, "{}"), tool(1, "b"), args(1, "{\"x\":1}")]);
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start@0",
            "delta:input_json_delta@0",
            "content_block_stop@0",
            "content_block_start@1",
            "delta:input_json_delta@1",
            "content_block_stop@1",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn tool_arguments_are_streamed_never_replaced_by_an_empty_object() {
    let out =
        String::from_utf8(encode(&[start(), text("a"), tool(0, "f"), args(0, "{\"q\":\"v\"}")])).unwrap();
    assert!(out.contains(r#""partial_json":"{\"q\":\"v\"}""#), "{out}");
}

#[test]
fn usage_after_the_finish_lands_in_message_delta() {
    let u = Usage { input_tokens: 10, output_tokens: 5, ..Usage::default() };
    let out = String::from_utf8(encode(&[
        start(),
        text("a"),
        StreamEvent::Finish(FinishReason::Length),
        StreamEvent::Usage(u),
    ]))
    .unwrap();
    let delta = out.split("event: message_delta").nth(1).unwrap();
    assert!(delta.contains(r#""stop_reason":"max_tokens""#));
    assert!(delta.contains(r#""output_tokens":5"#) && delta.contains(r#""input_tokens":10"#), "{delta}");
}

#[test]
fn thinking_then_text_switches_blocks_and_keeps_the_signature() {
    let out = encode(&[
        start(),
        StreamEvent::ThinkingDelta { text: "hmm".into() },
        StreamEvent::ThinkingSignature { signature: "sig".into() },
        text("answer"),
    ]);
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start@0",
            "delta:thinking_delta@0",
            "delta:signature_delta@0",
            "content_block_stop@0",
            "content_block_start@1",
            "delta:text_delta@1",
            "content_block_stop@1",
            "message_delta",
            "message_stop"
        ]
    );
}

#[test]
fn a_stream_that_ends_without_a_reason_ends_as_end_turn() {
    let out = String::from_utf8(encode(&[start(), text("a")])).unwrap();
    assert!(out.contains(r#""stop_reason":"end_turn""#));
}

#[test]
fn an_error_ends_the_stream_with_an_error_event() {
    let out = encode(&[
        start(),
        text("a"),
        StreamEvent::Error { kind: ErrorKind::Overloaded, message: "busy".into() },
        text("late"),
    ]);
    assert_eq!(names(&out), ["message_start", "content_block_start@0", "delta:text_delta@0", "error"]);
    assert!(String::from_utf8(out).unwrap().contains("overloaded_error"));
}

#[test]
fn an_empty_upstream_still_gets_a_complete_message() {
    assert_eq!(names(&encode(&[])), ["message_start", "message_delta", "message_stop"]);
}

const UPSTREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: ping\ndata: {\"type\":\"ping\"}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[test]
fn the_decoder_maps_blocks_to_events_and_keeps_cumulative_usage() {
    let mut d = StreamDecoder::new();
    let mut evs = Vec::new();
    d.feed(UPSTREAM.as_bytes(), &mut evs).unwrap();
    d.finish(&mut evs).unwrap();
    let u1 = Usage { input_tokens: 25, output_tokens: 1, cache_read_tokens: 5, ..Usage::default() };
    let u2 = Usage { output_tokens: 9, ..u1 };
    assert_eq!(
        evs,
        vec![
            StreamEvent::Start { id: "msg_1".into(), model: "claude".into() },
            StreamEvent::Usage(u1),
            text("Hi"),
            StreamEvent::ToolCallStart { index: 0, id: "toolu_1".into(), name: "f".into(), signature: None },
            args(0, "{\"a\":1}"),
            StreamEvent::Usage(u2),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn an_upstream_error_event_becomes_a_stream_error() {
    let mut d = StreamDecoder::new();
    let mut evs = Vec::new();
    d.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", &mut evs).unwrap();
    assert_eq!(evs, vec![StreamEvent::Error { kind: ErrorKind::Overloaded, message: "Overloaded".into() }]);
}

#[test]
fn an_empty_or_cut_stream_is_an_error_and_a_stopped_one_is_not() {
    let run = |s: &str| {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        d.feed(s.as_bytes(), &mut out).and_then(|()| d.finish(&mut out))
    };
    assert_eq!(run(""), Err(TranslateError::EmptyStream));
    assert_eq!(run("event: ping\ndata: {\"type\":\"ping\"}\n\n"), Err(TranslateError::EmptyStream));
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n";
    assert_eq!(run(start), Err(TranslateError::Truncated("no message_stop".into())));
    let delta = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
    assert_eq!(run(&format!("{start}{delta}")), Ok(()));
    assert_eq!(
        run(&format!("{start}{delta}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n")),
        Ok(())
    );
}

#[test]
fn a_message_start_after_the_message_began_is_a_malformed_stream() {
    // Found by fuzzing (`stream_anthropic`): content before any message_start, then one; the
    // translated stream would change its id mid-way.
    let start = r#"{"type":"message_start","message":{"id":"msg_2","model":"m2","role":"assistant","content":[],"usage":{"input_tokens":1,"output_tokens":0}}}"#;
    let text = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    for first in [text.to_string(), format!("event: message_start\ndata: {start}\n\n")] {
        let input = format!("{first}event: message_start\ndata: {start}\n\n");
        let mut d = StreamDecoder::default();
        let mut out = Vec::new();
        let e = d.feed(input.as_bytes(), &mut out).unwrap_err();
        assert!(e.to_string().contains("message_start after the message began"), "{e}");
    }
}

#[test]
fn delta_events_are_the_bytes_their_typed_form_serialises_to() {
    let text = "plain, then \"quoted\", a \\ and a\nnewline, é";
    let mut enc = StreamEncoder::new(&ResponseOptions { model: "m", gemini_sse: true, include_usage: false });
    enc.next_index = 7;
    for delta in [
        Delta::Text { text },
        Delta::Thinking { thinking: text },
        Delta::Signature { signature: "sig" },
        Delta::InputJson { partial_json: "{\"city\": \"Par" },
    ] {
        let mut templated = Vec::new();
        enc.delta(delta.clone(), &mut templated);
        let mut typed = Vec::new();
        write_json(
            &mut typed,
            "content_block_delta",
            &DeltaEvent { ty: "content_block_delta", index: 7, delta },
        );
        assert_eq!(String::from_utf8(templated).unwrap(), String::from_utf8(typed).unwrap());
    }
}

#[test]
fn every_templated_event_is_the_bytes_its_typed_form_serialises_to() {
    let mut enc = StreamEncoder::new(&ResponseOptions {
        model: "claude-\"q\"",
        gemini_sse: true,
        include_usage: false,
    });
    enc.usage = Usage {
        input_tokens: 30,
        output_tokens: 7,
        cache_read_tokens: 10,
        cache_write_tokens: 5,
        reasoning_tokens: 0,
    };
    enc.next_index = 2;
    let usage = encode_usage(&enc.usage);
    let typed = |event: &str, v: &dyn erased::Ser| {
        let mut out = Vec::new();
        out.extend_from_slice(format!("event: {event}\ndata: ").as_bytes());
        v.write(&mut out);
        out.extend_from_slice(b"\n\n");
        String::from_utf8(out).unwrap()
    };
    let text = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    };
    let message = Message {
        id: "msg_\\1",
        ty: "message",
        role: "assistant",
        model: "claude-\"q\"",
        content: [],
        stop_reason: None,
        stop_sequence: None,
        usage,
    };
    assert_eq!(
        text(&|o| enc.message_start("msg_\\1", o)),
        typed("message_start", &MessageStart { ty: "message_start", message })
    );
    let delta = MessageDelta {
        ty: "message_delta",
        delta: StopDelta { stop_reason: "tool_use", stop_sequence: None },
        usage,
    };
    assert_eq!(text(&|o| enc.message_delta("tool_use", o)), typed("message_delta", &delta));
    for block in [
        ContentBlock::Text { text: "" },
        ContentBlock::Thinking { thinking: "" },
        ContentBlock::ToolUse { id: "toolu_1", name: "get_\"weather\"", input: Empty {} },
    ] {
        let mut enc = StreamEncoder::new(&opts());
        enc.next_index = 3;
        let mut out = Vec::new();
        enc.block_start(block.clone(), &mut out);
        let ev = BlockEvent { ty: "content_block_start", index: 3, content_block: block };
        assert_eq!(String::from_utf8(out).unwrap(), typed("content_block_start", &ev));
    }
    let mut enc = StreamEncoder::new(&opts());
    enc.open = Some(Open::Text);
    enc.next_index = 4;
    let mut out = Vec::new();
    enc.close_block(&mut out);
    let stop = StopEvent { ty: "content_block_stop", index: 4 };
    assert_eq!(String::from_utf8(out).unwrap(), typed("content_block_stop", &stop));
    let mut out = Vec::new();
    enc.finish(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with(&typed("message_stop", &TypeOnly { ty: "message_stop" })), "{out}");
}

/// `&dyn` over the typed events of the test above.
mod erased {
    pub trait Ser {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Ser for T {
        fn write(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(out, self).unwrap();
        }
    }
}

/// An upstream Anthropic event: the everyday ones, whose members may be missing, repeated or of
/// another type, and the once-per-stream ones the fast path leaves to serde_json.
fn event(g: &mut crate::formats::scan::testgen::Gen) -> String {
    let delta_type =
        g.pick(&["\"text_delta\"", "\"thinking_delta\"", "\"input_json_delta\"", "\"signature_delta\""]);
    let delta = vec![
        ("type", delta_type.to_owned()),
        ("text", g.str_or_null()),
        ("thinking", g.str_or_null()),
        ("partial_json", g.str_or_null()),
        ("signature", g.str_or_null()),
        ("stop_reason", g.str_or_null()),
    ];
    let ty = g.pick(&[
        "\"content_block_delta\"",
        "\"content_block_stop\"",
        "\"ping\"",
        "\"message_stop\"",
        "\"message_delta\"",
    ]);
    let members = vec![
        ("type", ty.to_owned()),
        ("index", g.count()),
        ("delta", g.object(delta)),
        ("usage", if g.below(10) == 0 { "{\"output_tokens\":3}".to_owned() } else { "null".to_owned() }),
        ("message", if g.below(20) == 0 { "{\"id\":\"m\"}".to_owned() } else { "null".to_owned() }),
    ];
    g.object(members)
}

#[test]
fn the_fast_path_reads_every_event_as_serde_json_does_or_gives_up() {
    let mut g = crate::formats::scan::testgen::Gen(0xBB67_AE85_84CA_A73B);
    let (mut valid, mut fast) = (0, 0);
    for i in 0..30_000 {
        let mut s = event(&mut g);
        if i % 2 == 1 {
            s = g.mutate(&s);
        }
        valid += usize::from(i % 2 == 0 && serde_json::from_str::<Obj<EventIn>>(&s).is_ok());
        fast += usize::from(i % 2 == 0 && scan_event(&s).is_some());
        fast_path_agrees(&s);
    }
    assert!(fast * 2 > valid, "only {fast} of {valid} valid events took the fast path");
    // The event of nearly every chunk takes it.
    let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#;
    assert!(scan_event(delta).is_some());
}
