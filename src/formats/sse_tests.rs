use super::*;

fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c, &mut out).unwrap();
    }
    p.finish(&mut out);
    out
}

fn ev(event: &str, data: &str) -> SseEvent {
    SseEvent { event: event.into(), data: data.into() }
}

#[test]
fn lf_and_crlf_and_cr_line_endings_all_dispatch() {
    let s = b"event: a\ndata: 1\n\nevent: b\r\ndata: 2\r\n\r\nevent: c\rdata: 3\r\r";
    assert_eq!(parse_chunks(&[s]), vec![ev("a", "1"), ev("b", "2"), ev("c", "3")]);
}

#[test]
fn an_event_split_at_every_byte_parses_the_same() {
    let s: &[u8] = b"\xEF\xBB\xBFevent: a\r\ndata: {\"x\": 1}\r\n\r\n: comment\n\ndata: two\ndata: lines\n\n";
    let whole = parse_chunks(&[s]);
    assert_eq!(whole, vec![ev("a", "{\"x\": 1}"), ev("", "two\nlines")]);
    let bytes: Vec<&[u8]> = s.chunks(1).collect();
    assert_eq!(parse_chunks(&bytes), whole);
    for cut in 0..s.len() {
        assert_eq!(parse_chunks(&[&s[..cut], &s[cut..]]), whole, "cut at {cut}");
    }
}

#[test]
fn comments_and_unknown_fields_are_ignored() {
    let s = b": ping\nid: 7\nretry: 100\nfoo\ndata:x\n\n";
    assert_eq!(parse_chunks(&[s]), vec![ev("", "x")]);
}

#[test]
fn an_event_without_data_is_not_dispatched() {
    assert_eq!(parse_chunks(&[b"event: ping\n\n"]), vec![]);
}

#[test]
fn a_stream_closed_without_the_blank_line_still_delivers_the_last_event() {
    assert_eq!(parse_chunks(&[b"data: [DONE]"]), vec![ev("", "[DONE]")]);
}

#[test]
fn writers_round_trip_through_the_parser() {
    let mut out = Vec::new();
    write_event(&mut out, "message_start", "a\nb");
    write_data(&mut out, "[DONE]");
    write_json(&mut out, "x", &serde_json::json!({"k": "v\n"}));
    assert_eq!(
        parse_chunks(&[&out]),
        vec![ev("message_start", "a\nb"), ev("", "[DONE]"), ev("x", "{\"k\":\"v\\n\"}")]
    );
}

#[test]
fn an_endless_line_is_refused() {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let big = vec![b'a'; 1024 * 1024];
    let mut failed = false;
    for _ in 0..40 {
        if p.feed(&big, &mut out).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
}

#[test]
fn json_strings_are_written_as_serde_json_writes_them() {
    let cases = [
        "",
        "plain text",
        "quote \" inside",
        "back\\slash",
        "new\nline",
        "tab\t",
        "\u{1}ctl",
        "\u{7f}del",
        "é ü 日本 🎉",
        "</script>",
        "\r\n\u{8}\u{c}",
    ];
    for c in cases {
        let mut out = b"x".to_vec();
        write_json_str(&mut out, c);
        assert_eq!(&out[1..], serde_json::to_vec(c).unwrap().as_slice(), "{c:?}");
    }
    let mut out = Vec::new();
    write_json_u64(&mut out, 0);
    out.push(b' ');
    write_json_u64(&mut out, u64::MAX);
    assert_eq!(out, b"0 18446744073709551615");
}
