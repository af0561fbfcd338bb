use std::time::{Duration, Instant};

use super::*;

const CONTENT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n\n";
const DONE: &str = "data: [DONE]\n\n";

/// Feed `chunks` and collect what the client gets, the usage and the error.
fn run(strip: bool, chunks: &[&[u8]]) -> (String, Option<Usage>, Option<TranslateError>) {
    let mut o = OpenAiStreamUsage::new(strip);
    let mut client = Vec::new();
    for c in chunks {
        let mut out = Vec::new();
        if o.feed(c, &mut out) {
            assert!(out.is_empty());
            client.extend_from_slice(c);
        } else {
            client.extend_from_slice(&out);
        }
    }
    o.finish(&mut client);
    (String::from_utf8(client).unwrap(), o.usage(), o.error().cloned())
}

fn tokens(u: Option<Usage>) -> (u64, u64, u64) {
    let u = u.expect("usage found");
    (u.input_tokens, u.output_tokens, u.cache_read_tokens)
}

#[test]
fn usage_is_found_in_a_stream_split_anywhere() {
    let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n";
    let stream = format!("{CONTENT}{usage}{DONE}");
    let stream = stream.as_bytes();
    for strip in [false, true] {
        for split in 0..stream.len() {
            let (client, u, err) = run(strip, &[&stream[..split], &stream[split..]]);
            assert_eq!(tokens(u), (7, 3, 2), "split {split}");
            assert_eq!(err, None);
            let want =
                if strip { format!("{CONTENT}{DONE}") } else { String::from_utf8_lossy(stream).into() };
            assert_eq!(client, want, "strip {strip}, split {split}");
        }
    }
}

#[test]
fn the_usage_only_chunk_is_recognised_as_json_whatever_its_spacing_and_key_order() {
    let chunks = [
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n",
        "data: {\"id\": \"c\", \"choices\": [], \"usage\": {\"prompt_tokens\": 5, \"completion_tokens\": 1}}\n\n",
        "data: {\"usage\" : {\"completion_tokens\":1, \"prompt_tokens\":5} , \"choices\" : [ ] ,\"id\":\"c\"}\n\n",
        "data:{\"choices\":[\t],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\r\n\r\n",
        // One event, two data lines (joined with a newline: still one JSON object).
        "data: {\"choices\": [],\ndata:  \"usage\": {\"prompt_tokens\": 5, \"completion_tokens\": 1}}\n\n",
    ];
    for usage in chunks {
        let stream = format!("{CONTENT}{usage}{DONE}");
        let (client, u, err) = run(true, &[stream.as_bytes()]);
        assert_eq!(client, format!("{CONTENT}{DONE}"), "{usage:?}");
        assert_eq!(tokens(u), (5, 1, 0), "{usage:?}");
        assert_eq!(err, None);
    }
}

#[test]
fn only_the_usage_only_chunk_is_stripped() {
    // Azure's prompt-filter chunk has empty choices but no usage; a last content chunk with
    // usage (some OpenAI-compatible servers) has choices. Neither is the usage-only chunk.
    let filter = "data: {\"choices\":[],\"prompt_filter_results\":[{\"prompt_index\":0}]}\n\n";
    let last = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":9}}\n\n";
    let nulled = "data: {\"choices\":[],\"usage\":null}\n\n";
    let text =
        "data: {\"choices\":[{\"delta\":{\"content\":\"say \\\"choices\\\":[] and \\\"usage\\\":{}\"}}]}\n\n";
    let stream = format!("{filter}{text}{last}{nulled}{DONE}");
    let (client, u, _) = run(true, &[stream.as_bytes()]);
    assert_eq!(client, stream);
    assert_eq!(tokens(u), (2, 9, 0));
}

#[test]
fn an_unterminated_last_event_is_still_inspected() {
    let stream = format!("{CONTENT}data: {{\"choices\": [], \"usage\": {{\"prompt_tokens\": 4}}}}");
    let (client, u, err) = run(true, &[stream.as_bytes()]);
    assert_eq!(client, CONTENT);
    assert_eq!(tokens(u), (4, 0, 0));
    assert_eq!(err, None);
}

#[test]
fn observe_mode_forwards_every_chunk_unchanged_even_mid_event() {
    let mut o = OpenAiStreamUsage::new(false);
    let mut out = Vec::new();
    for piece in [&b"data: {\"choi"[..], b"ces\":[]", b",\"usage\":{\"prompt_tokens\":1}}\n", b"\n"] {
        assert!(o.feed(piece, &mut out));
    }
    assert!(out.is_empty());
    assert_eq!(tokens(o.usage()), (1, 0, 0));
}

#[test]
fn strip_mode_forwards_chunks_of_whole_ordinary_events_without_copying() {
    let mut o = OpenAiStreamUsage::new(true);
    let mut out = Vec::new();
    assert!(o.feed(CONTENT.as_bytes(), &mut out));
    assert!(o.feed(format!("{CONTENT}{CONTENT}").as_bytes(), &mut out));
    assert!(out.is_empty());
}

#[test]
fn a_big_event_streams_through_in_strip_mode_instead_of_waiting_for_its_end() {
    let mut o = OpenAiStreamUsage::new(true);
    let mut client = 0;
    let mut out = Vec::new();
    let head = b"data: {\"choices\":[{\"delta\":{\"content\":\"";
    client += if o.feed(head, &mut out) { head.len() } else { out.len() };
    let filler = vec![b'a'; 4096];
    let mut fed = head.len();
    for _ in 0..16 {
        out.clear();
        client += if o.feed(&filler, &mut out) { filler.len() } else { out.len() };
        fed += filler.len();
    }
    // Everything but at most one hold's worth has reached the client before the event ended.
    assert!(client + STRIP_HOLD_MAX >= fed, "client got {client} of {fed} bytes");
    assert!(client > 0);
    out.clear();
    assert!(o.feed(b"\"}}]}\n\n", &mut out));
    assert!(o.buffered() <= 2 * STRIP_HOLD_MAX + KEEP_CAPACITY, "buffered {}", o.buffered());
}

#[test]
fn a_100_mb_event_without_an_end_is_refused_with_bounded_memory_and_fast() {
    let chunk = vec![b'x'; 16 * 1024];
    for strip in [false, true] {
        let started = Instant::now();
        let mut o = OpenAiStreamUsage::new(strip);
        let mut out = Vec::new();
        let mut fed = 0usize;
        let mut max_buffered = 0;
        o.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"", &mut out);
        while fed < 100 * 1024 * 1024 {
            out.clear();
            let forwarded = o.feed(&chunk, &mut out);
            fed += chunk.len();
            max_buffered = max_buffered.max(o.buffered());
            if o.error().is_some() {
                assert!(!forwarded);
                break;
            }
        }
        assert_eq!(
            o.error(),
            Some(&TranslateError::EventTooLarge { limit: MAX_EVENT_BYTES }),
            "strip {strip}"
        );
        assert!(fed <= MAX_EVENT_BYTES + chunk.len(), "error only after {fed} bytes");
        assert!(max_buffered <= MAX_EVENT_BYTES, "buffered {max_buffered} bytes");
        // The client's stream ends with an OpenAI error event and [DONE].
        let tail = String::from_utf8_lossy(&out);
        assert!(tail.ends_with("data: [DONE]\n\n"), "{tail}");
        let err = tail.lines().find(|l| l.starts_with("data: {")).expect("an error event");
        let v: serde_json::Value = serde_json::from_str(&err["data: ".len()..]).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("exceeds 16777216 bytes"), "{v}");
        // After the error nothing more is forwarded or buffered.
        out.clear();
        assert!(!o.feed(&chunk, &mut out));
        assert!(out.is_empty());
        assert_eq!(o.buffered(), 0);
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    }
}

#[test]
fn many_small_events_cost_linear_time() {
    // 40 MiB of ordinary events in 16 KiB chunks, every event split across two chunks.
    let event = CONTENT.as_bytes();
    let mut stream = Vec::new();
    while stream.len() < 40 * 1024 * 1024 {
        stream.extend_from_slice(event);
    }
    let started = Instant::now();
    for strip in [false, true] {
        let mut o = OpenAiStreamUsage::new(strip);
        let mut out = Vec::new();
        let mut client = 0;
        for c in stream[7..].chunks(16 * 1024 + 3) {
            out.clear();
            client += if o.feed(c, &mut out) { c.len() } else { out.len() };
            assert!(o.buffered() <= 4 * STRIP_HOLD_MAX);
        }
        assert_eq!(client, stream.len() - 7);
    }
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn an_empty_or_non_sse_stream_is_an_error() {
    for (strip, body) in
        [(false, ""), (true, ""), (false, "<html>502 Bad Gateway</html>"), (true, "\n\n: ping\n\n")]
    {
        let (client, u, err) = run(strip, &[body.as_bytes()]);
        assert_eq!(err, Some(TranslateError::EmptyStream), "{body:?}");
        assert_eq!(u, None);
        assert!(client.starts_with(body.trim_end_matches('\n')) || strip, "{client}");
        assert!(client.contains("\"error\"") && client.ends_with("data: [DONE]\n\n"), "{client}");
    }
    let (_, _, err) = run(false, &[DONE.as_bytes()]);
    assert_eq!(err, None, "[DONE] alone is a (short) stream");
}

#[test]
fn the_output_does_not_depend_on_where_the_chunks_were_split() {
    // CRLF line ends, a usage-only chunk and one too big to have been held back.
    let big = format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":1}},\"pad\":\"{}\"}}\r\n\r\n",
        "p".repeat(STRIP_HOLD_MAX)
    );
    let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2}}\r\n\r\n";
    let stream = format!("{}{big}{usage}{DONE}", CONTENT.replace('\n', "\r\n"));
    let whole = run(true, &[stream.as_bytes()]);
    assert!(whole.0 == format!("{}{big}{DONE}", CONTENT.replace('\n', "\r\n")));
    let b = stream.as_bytes();
    for split in (0..b.len()).step_by(97).chain(b.len() - usage.len() - 20..b.len()) {
        let split_run = run(true, &[&b[..split], &b[split..]]);
        assert!(split_run.0 == whole.0, "split {split}: {:?}", &split_run.0[split_run.0.len() - 40..]);
        assert_eq!(split_run.1, whole.1, "split {split}");
    }
}

/// A `usage` value in either spelling (members maybe missing, repeated or of another type).
fn usage_value(g: &mut crate::formats::scan::testgen::Gen) -> String {
    if g.below(5) == 0 {
        return "null".to_owned();
    }
    let responses = g.below(3) == 0;
    let (input, output, input_details, output_details) = if responses {
        ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")
    } else {
        ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")
    };
    let details = |g: &mut crate::formats::scan::testgen::Gen| {
        if g.below(4) == 0 {
            return "null".to_owned();
        }
        let m =
            vec![("cached_tokens", g.count()), ("reasoning_tokens", g.count()), ("audio_tokens", g.count())];
        g.object(m)
    };
    let mut members = vec![
        (input, g.count()),
        (output, g.count()),
        ("total_tokens", g.count()),
        (input_details, details(g)),
        (output_details, details(g)),
    ];
    if g.below(10) == 0 {
        // The other spelling of the same count as well: the derive refuses it.
        members.push(("prompt_tokens", g.count()));
        members.push(("input_tokens", g.count()));
    }
    g.object(members)
}

#[test]
fn the_fast_path_reads_usage_chunks_as_serde_json_does_or_gives_up() {
    let mut g = crate::formats::scan::testgen::Gen(0x0DDB_1A5E_5BAD_5EED);
    let (mut valid, mut fast) = (0, 0);
    for i in 0..30_000 {
        let choices = g.pick(&["[]", "null", "[{\"index\":0,\"delta\":{}}]", "{}", "1"]).to_owned();
        let members = vec![
            ("id", g.str_or_null()),
            ("object", "\"chat.completion.chunk\"".to_owned()),
            ("choices", choices),
            ("usage", usage_value(&mut g)),
        ];
        let mut s = g.object(members);
        if i % 2 == 1 {
            s = g.mutate(&s);
        }
        let want = serde_json::from_slice::<Chunk>(s.as_bytes())
            .map(|c| (c.usage.map(Usage::from), c.choices.is_some_and(|c| c.is_empty())));
        valid += usize::from(want.is_ok() && i % 2 == 0);
        let Some((usage, only)) = scan_usage_chunk(s.as_bytes()) else { continue };
        fast += usize::from(i % 2 == 0);
        match want {
            // `usage_only` only matters when there is usage.
            Ok((want_usage, want_only)) => {
                assert_eq!(usage, want_usage, "{s}");
                if usage.is_some() {
                    assert_eq!(only, want_only, "{s}");
                }
            }
            Err(e) => panic!("the fast path accepted what serde_json rejects ({e}): {s}"),
        }
    }
    assert!(fast * 2 > valid, "only {fast} of {valid} valid chunks took the fast path");
}

#[test]
fn a_usage_value_reads_the_same_either_way() {
    let mut g = crate::formats::scan::testgen::Gen(0x005E_ED0F_7E57);
    for i in 0..20_000 {
        let mut s = usage_value(&mut g);
        if i % 2 == 1 {
            s = g.mutate(&s);
        }
        let serde = serde_json::from_slice::<Option<super::super::passthrough::OpenAiUsage>>(s.as_bytes())
            .ok()
            .and_then(|u| u.map(Usage::from));
        assert_eq!(super::super::passthrough::openai_usage_value(s.as_bytes()), serde, "{s}");
    }
}
