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
    // Each character to escape at each place of strings longer and shorter than a word.
    for len in 0..20 {
        for at in 0..len {
            for c in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', 'é'] {
                let s: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                let mut out = Vec::new();
                write_json_str(&mut out, &s);
                assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
    }
    let mut out = Vec::new();
    write_json_u64(&mut out, 0);
    out.push(b' ');
    write_json_u64(&mut out, u64::MAX);
    assert_eq!(out, b"0 18446744073709551615");
}

/// An event that lies whole in a chunk is handed out from the chunk itself; that must give
/// the same events (and errors) as the buffered path, for any bytes split anywhere.
#[test]
fn whole_events_read_in_place_are_the_buffered_ones() {
    let mut g = crate::formats::scan::testgen::Gen(0x55e_0001);
    let lines: [&[u8]; 16] = [
        b"data: {\"a\":1}",
        b"data: {\"b\":2}\n",
        b"data: {\"c\":3}\r\n",
        b"data:x",
        b"data: ",
        b"data",
        b"data:  two spaces",
        b"data: \xc3\xa9",
        b"data: \xff bad",
        b"event: e",
        b"event:",
        b": comment",
        b"id: 1",
        b"",
        b"",
        b"data: [DONE]",
    ];
    let ends: [&[u8]; 4] = [b"\n", b"\n", b"\r\n", b"\r"];
    let mut whole_taken = 0;
    for _ in 0..5000 {
        let mut stream = Vec::new();
        if g.below(10) == 0 {
            stream.extend_from_slice(b"\xEF\xBB\xBF");
        }
        for _ in 0..g.below(12) {
            stream.extend_from_slice(lines[g.below(lines.len())]);
            stream.extend_from_slice(ends[g.below(ends.len())]);
        }
        let mut small = g.below(2) == 0;
        super::fast_path_agrees(&stream, || {
            small = !small;
            1 + g.below(if small { 4 } else { 40 })
        });
        let mut in_place = InPlace(stream.as_ptr_range(), 0);
        let mut p = SseParser::new();
        let _ = p.feed_to(b"\n", &mut in_place); // past the start, where a BOM is looked for
        let _ = p.feed_to(&stream, &mut in_place);
        whole_taken += in_place.1;
    }
    assert!(whole_taken > 1500, "only {whole_taken} events were read in place");
}

/// Counts the events whose data lies in the chunk fed.
struct InPlace(std::ops::Range<*const u8>, usize);

impl SseSink for InPlace {
    fn event(&mut self, _event: &str, data: &str) -> Result<(), TranslateError> {
        self.1 += usize::from(!data.is_empty() && self.0.contains(&data.as_ptr()));
        Ok(())
    }
}

/// A sink's first error stops the delivery for the rest of that chunk, which is still parsed:
/// the next chunk's events come out as if nothing had happened.
#[test]
fn a_sink_error_drops_the_rest_of_its_chunk_only() {
    struct FailOn(&'static str, Vec<String>);
    impl SseSink for FailOn {
        fn event(&mut self, _event: &str, data: &str) -> Result<(), TranslateError> {
            if data == self.0 {
                return Err(TranslateError::Stream("bad".into()));
            }
            self.1.push(data.to_owned());
            Ok(())
        }
    }
    let mut p = SseParser::new();
    let mut sink = FailOn("b", Vec::new());
    assert!(p.feed_to(b"data: a\n\ndata: b\n\ndata: c\n\ndata: d", &mut sink).is_err());
    assert!(p.feed_to(b"\n\nevent: x\ndata: e\n\n", &mut sink).is_ok());
    assert_eq!(sink.1, ["a", "d", "e"]);
}
