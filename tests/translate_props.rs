//! Property tests for the translation core: any split of an upstream stream into chunks gives
//! byte-identical client output to feeding it whole, and arbitrary or corrupted bytes never
//! panic a decoder or a `translate_*` function. Fixtures come from `tests/golden/`.
//!
//! Run: `cargo test --test translate_props` (PROPTEST_CASES=2000 for a longer run).

use std::path::Path;

use llm_gateway::formats::{
    translate_error, translate_request, translate_response, ErrorKind, Format, RequestOptions,
    ResponseOptions, StreamTranslator,
};
use proptest::prelude::*;

const ALL: [Format; 5] =
    [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini, Format::Bedrock];

/// Client formats (Bedrock is outbound only).
const CLIENTS: [Format; 4] = [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini];

fn opts() -> ResponseOptions<'static> {
    ResponseOptions { model: "m", gemini_sse: true, include_usage: true }
}

const REQ: RequestOptions<'static> =
    RequestOptions { target_model: "t", default_max_tokens: 1024, legacy_max_tokens: false };

/// Every input fixture (`<case>.<ext>`, one dot) of `tests/golden/<kind>/<format>/`.
fn fixtures(kind: &str) -> Vec<(Format, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(kind);
    let mut out = Vec::new();
    for f in ALL {
        let Ok(dir) = std::fs::read_dir(root.join(f.name())) else { continue };
        let mut files: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.matches('.').count() == 1))
            .collect();
        files.sort();
        for p in files {
            out.push((f, std::fs::read(p).unwrap()));
        }
    }
    assert!(!out.is_empty(), "no {kind} fixtures");
    out
}

fn run(from: Format, to: Format, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut t = StreamTranslator::new(from, to, &opts());
    let mut out = Vec::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        if let Err(e) = t.feed(&input[at..end], &mut out) {
            t.fail(ErrorKind::UpstreamError, &e.to_string(), &mut out);
            return out;
        }
        at = end;
    }
    t.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_a_stream_gives_the_same_output(
        pick in any::<prop::sample::Index>(),
        to in prop::sample::select(CLIENTS.to_vec()),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let streams = fixtures("streams");
        let (from, input) = &streams[pick.index(streams.len())];
        let whole = run(*from, to, input, &[]);
        prop_assert_eq!(run(*from, to, input, &cuts), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_stream_translator(
        from in prop::sample::select(ALL.to_vec()),
        to in prop::sample::select(CLIENTS.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let _ = run(from, to, &bytes, &cuts);
    }

    #[test]
    fn sse_shaped_garbage_never_panics_a_stream_translator(
        from in prop::sample::select(vec![Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini]),
        to in prop::sample::select(CLIENTS.to_vec()),
        events in prop::collection::vec(("(event: [a-z_]{0,20}\n)?", "data: [ -~]{0,60}\n\n"), 0..12),
    ) {
        let bytes: String = events.into_iter().map(|(e, d)| e + &d).collect();
        let _ = run(from, to, bytes.as_bytes(), &[]);
    }

    #[test]
    fn corrupted_fixtures_never_panic_a_stream_translator(
        pick in any::<prop::sample::Index>(),
        to in prop::sample::select(CLIENTS.to_vec()),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let streams = fixtures("streams");
        let (from, input) = &streams[pick.index(streams.len())];
        let mut input = input.clone();
        for (at, b) in flips {
            let i = at.index(input.len());
            input[i] = b;
        }
        let _ = run(*from, to, &input, &[]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_translate_functions(
        from in prop::sample::select(ALL.to_vec()),
        to in prop::sample::select(ALL.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        status in 100u16..600,
    ) {
        let _ = translate_request(from, to, &bytes, &REQ);
        let _ = translate_response(from, to, &bytes, &opts());
        let _ = translate_error(from, to, status, &bytes);
    }

    #[test]
    fn corrupted_json_fixtures_never_panic_translate_functions(
        kind in prop::sample::select(vec!["requests", "responses", "errors"]),
        pick in any::<prop::sample::Index>(),
        to in prop::sample::select(ALL.to_vec()),
        flips in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"{}[]\":,0 an-tl".to_vec())), 0..6),
    ) {
        let all = fixtures(kind);
        let (from, body) = &all[pick.index(all.len())];
        let mut body = body.clone();
        for (at, b) in flips {
            let i = at.index(body.len());
            body[i] = b;
        }
        let _ = translate_request(*from, to, &body, &REQ);
        let _ = translate_response(*from, to, &body, &opts());
        let _ = translate_error(*from, to, 500, &body);
    }
}

/// Not random, but the same spirit: every stream fixture translated into every client format
/// (not only the golden-table pairs) obeys that format's stream grammar.
#[test]
fn every_stream_fixture_into_every_client_format_obeys_the_grammar() {
    let mut failures = Vec::new();
    for (from, input) in fixtures("streams") {
        for to in CLIENTS {
            let out = run(from, to, &input, &[]);
            if let Err(e) = llm_gateway::formats::grammar::check(to, &out) {
                failures.push(format!(
                    "{} -> {}: {e}\n{}",
                    from.name(),
                    to.name(),
                    String::from_utf8_lossy(&out)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

proptest! {
    #[test]
    fn huge_token_counts_never_overflow(a in any::<u64>(), b in any::<u64>(), c in any::<u64>()) {
        let anthropic = format!(
            r#"{{"id":"m","content":[],"stop_reason":"end_turn","usage":{{"input_tokens":{a},"output_tokens":{b},"cache_read_input_tokens":{c},"cache_creation_input_tokens":{c}}}}}"#
        );
        let openai = format!(
            r#"{{"id":"c","choices":[],"usage":{{"prompt_tokens":{a},"completion_tokens":{b},"prompt_tokens_details":{{"cached_tokens":{c}}}}}}}"#
        );
        for to in [Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini] {
            let _ = translate_response(Format::Anthropic, to, anthropic.as_bytes(), &opts());
            let _ = translate_response(Format::OpenAiChat, to, openai.as_bytes(), &opts());
        }
    }
}
