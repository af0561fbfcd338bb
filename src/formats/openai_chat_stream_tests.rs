use super::super::Usage;
use super::*;
use serde_json::Value;

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

/// A small deterministic generator of chunk-like JSON (xorshift), for the fast path's test.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn ws(&mut self) -> &'static str {
        ["", "", "", " ", "\n", "\t", "\r\n "][self.below(7)]
    }

    fn string(&mut self) -> String {
        let parts = [
            "hi",
            "The ",
            "",
            "é",
            "😀",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\t",
            "\\u00e9",
            "\\u0041",
            "\\b\\f\\r",
            "a b",
        ];
        // Rarer: what the fast path leaves to serde_json, or what is not JSON at all.
        let odd = ["\\ud83d\\ude00", "\\ud83d", "\\ude00x", "\\x", "\\u12", "\u{1}"];
        let mut s = String::from("\"");
        for _ in 0..self.below(4) {
            let part = if self.below(40) == 0 { self.pick(&odd) } else { self.pick(&parts) };
            s.push_str(part);
        }
        s.push('"');
        s
    }

    fn number(&mut self) -> String {
        self.pick(&[
            "0",
            "1",
            "7",
            "42",
            "-1",
            "-0",
            "1.5",
            "2e3",
            "1E+2",
            "0.0",
            "01",
            "1.",
            "-",
            "18446744073709551616",
            "3",
        ])
        .to_owned()
    }

    /// A count: a plain integer, now and then any number (or not one).
    fn count(&mut self) -> String {
        if self.below(10) == 0 {
            self.number()
        } else {
            self.below(100_000).to_string()
        }
    }

    fn any(&mut self, depth: usize) -> String {
        match self.below(if depth > 3 { 5 } else { 8 }) {
            0 | 1 => self.string(),
            2 => self.number(),
            3 => self.pick(&["true", "false"]).to_owned(),
            4 => "null".to_owned(),
            5 => {
                let n = self.below(3);
                let items: Vec<String> = (0..n).map(|_| self.any(depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let keys = ["a", "id", "content", "type", "index"];
                let n = self.below(3);
                let items: Vec<String> =
                    (0..n).map(|_| format!("\"{}\":{}", self.pick(&keys), self.any(depth + 1))).collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    /// An object from `(key, value)` candidates: each present or not, some twice, some with a
    /// value of any type instead.
    fn object(&mut self, members: Vec<(&str, String)>) -> String {
        let mut out = Vec::new();
        for (k, v) in members {
            if self.below(5) == 0 {
                continue;
            }
            let v = if self.below(12) == 0 { self.any(2) } else { v };
            out.push(format!("{}\"{k}\"{}:{}{v}{}", self.ws(), self.ws(), self.ws(), self.ws()));
            if self.below(25) == 0 {
                out.push(format!("\"{k}\":{}", self.any(2)));
            }
        }
        if self.below(4) == 0 {
            let v = self.any(1);
            out.insert(self.below(out.len() + 1), format!("\"x_unknown\":{v}"));
        }
        format!("{{{}}}", out.join(","))
    }

    fn str_or_null(&mut self) -> String {
        if self.below(4) == 0 {
            "null".to_owned()
        } else {
            self.string()
        }
    }

    fn tool_call(&mut self) -> String {
        let members = vec![
            ("index", self.count()),
            ("id", self.str_or_null()),
            ("type", "\"function\"".to_owned()),
            ("function", {
                let f = vec![("name", self.str_or_null()), ("arguments", self.str_or_null())];
                self.object(f)
            }),
        ];
        self.object(members)
    }

    fn chunk(&mut self) -> String {
        let tool_calls = {
            let n = self.below(3);
            let calls: Vec<String> = (0..n).map(|_| self.tool_call()).collect();
            format!("[{}]", calls.join(","))
        };
        let delta = vec![
            ("role", "\"assistant\"".to_owned()),
            ("content", self.str_or_null()),
            ("reasoning_content", self.str_or_null()),
            ("refusal", self.str_or_null()),
            ("tool_calls", tool_calls),
        ];
        let choices = {
            let n = self.below(3);
            let mut cs = Vec::new();
            for _ in 0..n {
                let members = vec![
                    ("index", "0".to_owned()),
                    ("delta", self.object(delta.clone())),
                    ("logprobs", "null".to_owned()),
                    ("finish_reason", self.str_or_null()),
                ];
                cs.push(self.object(members));
            }
            format!("[{}]", cs.join(","))
        };
        let usage = if self.below(2) == 0 {
            "null".to_owned()
        } else {
            let prompt = vec![("cached_tokens", self.count()), ("audio_tokens", self.count())];
            let completion =
                vec![("reasoning_tokens", self.count()), ("accepted_prediction_tokens", "0".to_owned())];
            let members = vec![
                ("prompt_tokens", self.count()),
                ("completion_tokens", self.count()),
                ("total_tokens", self.count()),
                (
                    "prompt_tokens_details",
                    if self.below(4) == 0 { "null".to_owned() } else { self.object(prompt) },
                ),
                ("completion_tokens_details", self.object(completion)),
            ];
            self.object(members)
        };
        let members = vec![
            ("id", self.str_or_null()),
            ("object", "\"chat.completion.chunk\"".to_owned()),
            ("created", self.number()),
            ("model", self.str_or_null()),
            ("system_fingerprint", self.str_or_null()),
            ("choices", choices),
            ("usage", usage),
            ("error", if self.below(8) == 0 { r#"{"message":"x"}"#.to_owned() } else { "null".to_owned() }),
        ];
        self.object(members)
    }

    /// One to three character edits (delete, insert, replace) that keep the text UTF-8.
    fn mutate(&mut self, s: &str) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        let alphabet: Vec<char> = "{}[]\",:\\ 0123456789-.eEntfrua\u{1}é".chars().collect();
        for _ in 0..=self.below(3) {
            let at = self.below(chars.len() + 1);
            let c = alphabet[self.below(alphabet.len())];
            match self.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => chars[at] = c,
                _ => chars.insert(at, c),
            }
        }
        chars.into_iter().collect()
    }
}

fn serde_chunk(s: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<Obj<Chunk>>(s).map(|c| format!("{:?}", c.0.unwrap_or_default()))
}

#[test]
fn the_fast_path_reads_every_chunk_as_serde_json_does_or_gives_up() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    // Of the generated chunks serde_json accepts: how many there were, how many the fast path
    // read (unmutated ones, mutated ones).
    let mut valid = [0; 2];
    let mut fast = [0; 2];
    for i in 0..40_000 {
        let mutated = i % 2;
        let mut s = g.chunk();
        if mutated == 1 {
            s = g.mutate(&s);
        }
        let want = serde_chunk(&s);
        valid[mutated] += usize::from(want.is_ok());
        let Some(c) = scan_chunk(&s) else { continue };
        fast[mutated] += 1;
        match want {
            Ok(want) => assert_eq!(format!("{c:?}"), want, "{s}"),
            Err(e) => panic!("the fast path accepted what serde_json rejects ({e}): {s}"),
        }
    }
    eprintln!("valid {valid:?}, fast {fast:?}");
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
