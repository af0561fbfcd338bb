use super::*;
use crate::formats::scan::testgen::Gen;

/// What serde reads, as text (`RequestIn` has no `PartialEq`: compared by its `Debug`).
fn serde_request(body: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str::<Obj<RequestIn>>(body).map(|r| format!("{:?}", r.0.unwrap_or_default()))
}

/// An Anthropic Messages request of the everyday shape, now and then with a member missing,
/// repeated or of another type, system or content as blocks, extra members (`Gen::object`).
fn request(g: &mut Gen) -> String {
    let n = g.below(4);
    let messages: Vec<String> = (0..n)
        .map(|_| {
            let content = match g.below(8) {
                0 => r#"[{"type":"text","text":"hi"}]"#.to_owned(),
                1 => "null".to_owned(),
                _ => g.string(),
            };
            let role = if g.below(10) == 0 {
                g.str_or_null()
            } else {
                format!("\"{}\"", g.pick(&["user", "assistant"]))
            };
            g.object(vec![("role", role), ("content", content)])
        })
        .collect();
    let system = match g.below(4) {
        0 => r#"[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}]"#.to_owned(),
        1 => "null".to_owned(),
        _ => g.string(),
    };
    let members = vec![
        ("model", g.str_or_null()),
        ("max_tokens", g.count()),
        ("system", system),
        ("messages", format!("[{}]", messages.join(","))),
        ("stream", g.pick(&["true", "false", "null"]).to_owned()),
        ("temperature", g.number()),
        ("top_p", g.number()),
        ("top_k", g.count()),
        ("stop_sequences", r#"["\n\nHuman:"]"#.to_owned()),
        ("metadata", r#"{"user_id":"u1"}"#.to_owned()),
        ("tool_choice", r#"{"type":"auto"}"#.to_owned()),
        ("tools", r#"[{"name":"get","description":"d","input_schema":{"type":"object"}}]"#.to_owned()),
        ("thinking", r#"{"type":"enabled","budget_tokens":1024}"#.to_owned()),
    ];
    g.object(members)
}

#[test]
fn the_fast_path_reads_every_request_as_serde_does_or_gives_up() {
    let mut g = Gen(0xBB67_AE85_84CA_A73B);
    let (valid, fast) = g.differential(30_000, request, serde_request, |s| {
        scan_request(s.as_bytes()).map(|r| format!("{r:?}"))
    });
    // Not a test that passes by always giving up.
    assert!(fast[0] * 2 > valid[0], "only {} of {} valid requests took the fast path", fast[0], valid[0]);
    assert!(fast[1] > 1000, "only {} mutated requests took the fast path", fast[1]);
}

#[test]
fn everyday_requests_take_the_fast_path() {
    for s in [
        r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}]}"#,
        r#"{"model":"m","max_tokens":64,"stream":true,"system":"be brief","temperature":0.7,"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"line\none \"quoted\" caf\u00e9"}]}"#,
        r#"{"model":"m","max_tokens":64,"messages":[{"role":"user","content":[{"type":"text","text":"blocks go to serde, member by member"}]}],"metadata":{"user_id":"u"},"x_unknown":[1,2]}"#,
    ] {
        let r = scan_request(s.as_bytes()).unwrap_or_else(|| panic!("gave up on {s}"));
        assert_eq!(format!("{r:?}"), serde_request(s).unwrap());
    }
    // Left to serde: a message member given twice (serde's derive refuses it), an escaped key.
    assert!(scan_request(br#"{"messages":[{"role":"user","role":"user","content":"x"}]}"#).is_none());
    assert!(scan_request(br#"{"mod\u0065l":"m"}"#).is_none());
}
