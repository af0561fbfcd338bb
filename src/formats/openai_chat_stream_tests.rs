use super::super::Usage;
use super::*;
use serde_json::Value;

use crate::formats::scan::testgen::Gen;

fn encode(events: &[StreamEvent], include_usage: bool) -> String {
    let opts = ResponseOptions { model: "gpt-x", gemini_sse: true, include_usage };
    let mut enc = StreamEncoder::new(&opts);
    let mut out = Vec::new();
    for e in events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    String::from_utf8(out).unwrap()
}

fn data_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn start() -> StreamEvent {
    StreamEvent::Start { id: "msg_1".into(), model: "claude".into() }
}

#[test]
fn the_first_chunk_carries_the_assistant_role() {
    let chunks = data_lines(&encode(&[start(), StreamEvent::TextDelta { text: "hi".into() }], false));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hi");
    assert!(chunks.iter().all(|c| c["id"] == "msg_1" && c["object"] == "chat.completion.chunk"));
}

#[test]
fn tool_call_id_and_name_appear_only_on_the_first_chunk_of_an_index() {
    let s = encode(
        &[
            start(),
            StreamEvent::ToolCallStart { index: 0, id: "toolu_1".into(), name: "f".into(), signature: None },
            StreamEvent::ToolArgsDelta { index: 0, fragment: "{\"a\"".into() },
            StreamEvent::ToolArgsDelta { index: 0, fragment: ":1}".into() },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ],
        false,
    );
    let chunks = data_lines(&s);
    let first = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["id"], "toolu_1");
    assert_eq!(first["function"]["name"], "f");
    assert_eq!(first["function"]["arguments"], "");
    let second = &chunks[2]["choices"][0]["delta"]["tool_calls"][0];
    assert!(second.get("id").is_none() && second["function"].get("name").is_none());
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
    assert!(s.ends_with("data: [DONE]\n\n"));
}

#[test]
fn the_usage_chunk_is_sent_only_when_the_client_asked() {
    let u = Usage { input_tokens: 3, output_tokens: 4, ..Usage::default() };
    let evs = [start(), StreamEvent::Finish(FinishReason::Stop), StreamEvent::Usage(u)];
    let without = data_lines(&encode(&evs, false));
    assert!(without.iter().all(|c| c.get("usage").is_none()));
    let with = data_lines(&encode(&evs, true));
    let last = with.last().unwrap();
    assert_eq!(last["choices"], serde_json::json!([]));
    assert_eq!(last["usage"]["total_tokens"], 7);
}

#[test]
fn finish_reason_is_sent_once_even_if_the_upstream_never_gave_one() {
    let chunks = data_lines(&encode(&[start(), StreamEvent::TextDelta { text: "a".into() }], false));
    let reasons: Vec<_> = chunks.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0]["choices"][0]["finish_reason"], "stop");
}

#[test]
fn the_decoder_numbers_tool_calls_and_reads_the_usage_chunk() {
    let up = "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n\
data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n\
data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\n\
data: [DONE]\n\n";
    let mut d = StreamDecoder::new();
    let mut evs = Vec::new();
    d.feed(up.as_bytes(), &mut evs).unwrap();
    d.finish(&mut evs).unwrap();
    assert_eq!(
        evs,
        vec![
            StreamEvent::Start { id: "c1".into(), model: "gpt".into() },
            StreamEvent::ToolCallStart { index: 0, id: "call_a".into(), name: "f".into(), signature: None },
            StreamEvent::ToolArgsDelta { index: 0, fragment: "{}".into() },
            StreamEvent::Finish(FinishReason::ToolCalls),
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 2,
                cache_read_tokens: 1,
                ..Usage::default()
            }),
        ]
    );
}

#[test]
fn a_mid_stream_error_object_becomes_a_stream_error() {
    let mut d = StreamDecoder::new();
    let mut evs = Vec::new();
    d.feed(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n", &mut evs).unwrap();
    assert!(matches!(&evs[0], StreamEvent::Error { message, .. } if message == "boom"));
}

#[test]
fn garbage_data_is_a_stream_error_not_a_panic() {
    let mut d = StreamDecoder::new();
    assert!(d.feed(b"data: {nope\n\n", &mut Vec::new()).is_err());
}

fn decode_all(bytes: &[u8]) -> (Vec<StreamEvent>, Result<(), TranslateError>) {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    let r = d.feed(bytes, &mut out).and_then(|()| d.finish(&mut out));
    (out, r)
}

#[test]
fn an_empty_or_cut_stream_is_an_error_and_a_finished_one_is_not() {
    assert_eq!(decode_all(b"").1, Err(TranslateError::EmptyStream));
    assert_eq!(decode_all(b"data: [DONE]\n\n").1, Err(TranslateError::EmptyStream));
    assert_eq!(decode_all(b": ping\n\nretry: 10\n\n").1, Err(TranslateError::EmptyStream));
    let text = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
    let (evs, r) = decode_all(text.as_bytes());
    assert_eq!(r, Err(TranslateError::Truncated("no finish_reason and no [DONE]".into())));
    assert_eq!(evs[1], StreamEvent::TextDelta { text: "Hi".into() });
    // [DONE] without a finish_reason (some OpenAI-compatible servers) and a finish without
    // [DONE] are both complete answers.
    assert_eq!(decode_all(format!("{text}data: [DONE]\n\n").as_bytes()).1, Ok(()));
    let fin = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    assert_eq!(decode_all(format!("{text}{fin}").as_bytes()).1, Ok(()));
    // An upstream error chunk alone is a (failed) answer, not an empty stream.
    let (evs, r) = decode_all(b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n");
    assert_eq!(r, Ok(()));
    assert!(matches!(&evs[0], StreamEvent::Error { message, .. } if message == "boom"));
}

#[test]
fn text_chunks_are_the_bytes_their_typed_form_serialises_to() {
    let text = "plain, then \"quoted\", a \\ and a\nnewline, é";
    let mut enc =
        StreamEncoder::new(&ResponseOptions { model: "gpt-\"x\"", gemini_sse: true, include_usage: false });
    enc.id = "chatcmpl-1".into();
    enc.created = 1_700_000_000;
    for delta in [DeltaOut::Content { content: text }, DeltaOut::Reasoning { reasoning_content: text }] {
        let mut templated = Vec::new();
        enc.chunk(delta.clone(), None, &mut templated);
        let mut typed = Vec::new();
        enc.typed_chunk(delta, None, &mut typed);
        assert_eq!(String::from_utf8(templated).unwrap(), String::from_utf8(typed).unwrap());
    }
}

fn tool_call(g: &mut Gen) -> String {
    let members = vec![
        ("index", g.count()),
        ("id", g.str_or_null()),
        ("type", "\"function\"".to_owned()),
        ("function", {
            let f = vec![("name", g.str_or_null()), ("arguments", g.str_or_null())];
            g.object(f)
        }),
    ];
    g.object(members)
}

fn chunk(g: &mut Gen) -> String {
    let tool_calls = {
        let n = g.below(3);
        let calls: Vec<String> = (0..n).map(|_| tool_call(g)).collect();
        format!("[{}]", calls.join(","))
    };
    let delta = vec![
        ("role", "\"assistant\"".to_owned()),
        ("content", g.str_or_null()),
        ("reasoning_content", g.str_or_null()),
        ("refusal", g.str_or_null()),
        ("tool_calls", tool_calls),
    ];
    let choices = {
        let n = g.below(3);
        let mut cs = Vec::new();
        for _ in 0..n {
            let members = vec![
                ("index", "0".to_owned()),
                ("delta", g.object(delta.clone())),
                ("logprobs", "null".to_owned()),
                ("finish_reason", g.str_or_null()),
            ];
            cs.push(g.object(members));
        }
        format!("[{}]", cs.join(","))
    };
    let usage = if g.below(2) == 0 {
        "null".to_owned()
    } else {
        let prompt = vec![("cached_tokens", g.count()), ("audio_tokens", g.count())];
        let completion =
            vec![("reasoning_tokens", g.count()), ("accepted_prediction_tokens", "0".to_owned())];
        let members = vec![
            ("prompt_tokens", g.count()),
            ("completion_tokens", g.count()),
            ("total_tokens", g.count()),
            ("prompt_tokens_details", if g.below(4) == 0 { "null".to_owned() } else { g.object(prompt) }),
            ("completion_tokens_details", g.object(completion)),
        ];
        g.object(members)
    };
    let members = vec![
        ("id", g.str_or_null()),
        ("object", "\"chat.completion.chunk\"".to_owned()),
        ("created", g.count()),
        ("model", g.str_or_null()),
        ("system_fingerprint", g.str_or_null()),
        ("choices", choices),
        ("usage", usage),
        ("error", if g.below(8) == 0 { r#"{"message":"x"}"#.to_owned() } else { "null".to_owned() }),
    ];
    g.object(members)
}

fn serde_chunk(s: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<Obj<Chunk>>(s).map(|c| format!("{:?}", c.0.unwrap_or_default()))
}

#[test]
fn the_fast_path_reads_every_chunk_as_serde_json_does_or_gives_up() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let (valid, fast) =
        g.differential(40_000, chunk, serde_chunk, |s| scan_chunk(s).map(|c| format!("{c:?}")));
    // Not a test that passes by always giving up: most valid chunks take the fast path (the
    // rest have a field of another type, a non-null error or a surrogate, on purpose).
    assert!(fast[0] * 2 > valid[0], "only {} of {} valid chunks took the fast path", fast[0], valid[0]);
    assert!(fast[1] > 1000, "only {} mutated chunks took the fast path", fast[1]);
}

#[test]
fn everyday_chunks_take_the_fast_path() {
    for s in [
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"line\none \"quoted\" caf\u00e9"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]},"finish_reason":null}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}"#,
    ] {
        let c = scan_chunk(s).unwrap_or_else(|| panic!("gave up on {s}"));
        assert_eq!(format!("{c:?}"), serde_chunk(s).unwrap());
    }
    // An error chunk is left to serde_json (it keeps the raw error object).
    assert!(scan_chunk(r#"{"error":{"message":"overloaded"}}"#).is_none());
}

/// The chunks of a stream read from the end of the previous chunk's head decode as chunks read
/// whole: same events, same errors, for streams whose chunks share a head or not, with members
/// after `choices` that repeat one of the head's, and with bytes dropped.
#[test]
fn chunks_read_from_the_previous_head_decode_as_whole_ones() {
    let mut g = Gen(0x0dd_c0de);
    let heads = [
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":"#,
        r#"{"id":"c","choices":"#,
        r#"{"model":"m","id":"c", "choices":"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","usage":null,"choices":"#,
        r#"{"id":"c","id":"d","choices":"#,
        r#"{"error":null,"choices":"#,
        r#"{"id":7,"choices":"#,
    ];
    let tails = [
        "",
        "",
        r#","usage":null"#,
        r#","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}"#,
        r#","error":{"message":"x"}"#,
        r#","id":"again""#,
        r#","model":"again""#,
        r#","choices":[]"#,
        r#","usage":null,"usage":null"#,
        r#" ,"x":[1,{"y":null}] "#,
    ];
    let mut resumed = 0;
    for _ in 0..4000 {
        let head = g.pick(&heads);
        let mut stream = String::new();
        for _ in 0..=g.below(6) {
            let head = if g.below(6) == 0 { g.pick(&heads) } else { head };
            let choice = {
                let delta = match g.below(4) {
                    0 => format!(r#"{{"content":{}}}"#, g.string()),
                    1 => format!(r#"{{"role":"assistant","content":{},"refusal":null}}"#, g.string()),
                    2 => format!(r#"{{"tool_calls":[{}]}}"#, tool_call(&mut g)),
                    _ => "{}".to_owned(),
                };
                let finish = g.pick(&["null", r#""stop""#, r#""tool_calls""#, "3"]);
                format!(r#"[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]"#)
            };
            let choices = match g.below(8) {
                0 => "[]".to_owned(),
                1 => "null".to_owned(),
                2 => g.any(2),
                _ => choice,
            };
            let mut c = format!("{head}{choices}{}}}", g.pick(&tails));
            if g.below(10) == 0 {
                let at = g.below(c.len());
                if c.is_char_boundary(at) && c.is_char_boundary(at + 1) {
                    c.remove(at);
                }
            }
            stream.push_str("data: ");
            stream.push_str(&c);
            stream.push_str("\n\n");
        }
        if g.below(2) == 0 {
            stream.push_str("data: [DONE]\n\n");
        }
        resumed += resume_agrees(stream.as_bytes());
    }
    assert!(resumed > 600, "only {resumed} chunks were read from a head");
}
