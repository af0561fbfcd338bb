use super::super::{ErrorKind, Retry};
use super::*;
use crate::formats::scan::testgen::Gen;

const OK_CHAT: &[u8] = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}"#;

#[test]
fn a_json_answer_with_identity_encoding_is_valid() {
    for enc in [None, Some("identity"), Some(" Identity "), Some("")] {
        assert_eq!(non_stream_body(Format::OpenAiChat, Some("application/json"), enc, OK_CHAT), Ok(None));
    }
    // The content-type is not what decides: the body is.
    assert_eq!(non_stream_body(Format::OpenAiChat, Some("text/plain"), None, OK_CHAT), Ok(None));
    // Responses carry `"error": null` on success.
    let resp = br#"{"id":"r","object":"response","status":"completed","error":null,"output":[]}"#;
    assert_eq!(non_stream_body(Format::OpenAiResponses, None, None, resp), Ok(None));
}

#[test]
fn a_compressed_answer_is_refused() {
    for enc in ["gzip", "br", "deflate, gzip", "zstd"] {
        assert_eq!(
            non_stream_body(Format::Anthropic, Some("application/json"), Some(enc), b"\x1f\x8b\x08"),
            Err(UpstreamInvalid::Encoding(enc.into()))
        );
        assert_eq!(
            stream_head(Some("text/event-stream"), Some(enc)),
            Err(UpstreamInvalid::Encoding(enc.into()))
        );
    }
}

#[test]
fn an_answer_that_is_not_a_json_object_is_refused() {
    let html = b"<html><body>502 Bad Gateway</body></html>";
    match non_stream_body(Format::Gemini, Some("text/html"), None, html) {
        Err(UpstreamInvalid::NotJson { content_type, detail }) => {
            assert_eq!(content_type.as_deref(), Some("text/html"));
            assert!(detail.contains("line 1"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(non_stream_body(Format::Gemini, None, None, b"  \n"), Err(UpstreamInvalid::Empty));
    assert_eq!(non_stream_body(Format::Gemini, None, None, b"[1,2]"), Err(UpstreamInvalid::NotObject));
    assert_eq!(non_stream_body(Format::Bedrock, None, None, b"\"text\""), Err(UpstreamInvalid::NotObject));
    assert!(matches!(
        non_stream_body(Format::OpenAiChat, None, None, br#"{"choices":[]"#),
        Err(UpstreamInvalid::NotJson { .. })
    ));
    // Found by fuzzing: invalid UTF-8 inside a string passed (values are skipped, not read).
    assert_eq!(
        non_stream_body(Format::OpenAiChat, None, None, b"{\"choices\":[],\"x\":\"\x8a\"}"),
        Err(UpstreamInvalid::NotJson { content_type: None, detail: "invalid UTF-8 at byte 19".into() })
    );
    // Found by fuzzing: a lone surrogate escape in a skipped string passed too.
    for body in [
        &br#"{"choices":[],"x":{"\udb00a":1}}"#[..],
        br#"{"choices":["\udb00"]}"#,
        br#"{"choices":[],"e":"\q"}"#,
    ] {
        assert!(
            matches!(
                non_stream_body(Format::OpenAiChat, None, None, body),
                Err(UpstreamInvalid::NotJson { .. })
            ),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        non_stream_body(Format::OpenAiChat, None, None, br#"{"choices":["\ud83d\ude00 \u00e9"]}"#),
        Ok(None)
    );
}

#[test]
fn a_2xx_that_is_only_an_error_object_is_refused_and_classified() {
    let body = br#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#;
    match non_stream_body(Format::OpenAiChat, Some("application/json"), None, body) {
        Err(UpstreamInvalid::ErrorBody(c)) => {
            assert_eq!((c.kind, c.message.as_str()), (ErrorKind::RateLimited, "Rate limit reached"));
            assert_eq!(c.retry, Retry::Quota { retry_after: None });
        }
        other => panic!("{other:?}"),
    }
    let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert!(matches!(
        non_stream_body(Format::Anthropic, None, None, anthropic),
        Err(UpstreamInvalid::ErrorBody(UpstreamErrorClass { kind: ErrorKind::Overloaded, .. }))
    ));
    // An answer that also has its success members is an answer (the error is informational).
    let both = br#"{"choices":[{"index":0,"message":{"content":"x"}}],"error":{"message":"partial"}}"#;
    assert_eq!(non_stream_body(Format::OpenAiChat, None, None, both), Ok(None));
}

#[test]
fn a_stream_head_must_not_announce_a_whole_body() {
    assert_eq!(stream_head(Some("text/event-stream; charset=utf-8"), None), Ok(()));
    assert_eq!(stream_head(None, Some("identity")), Ok(()));
    assert_eq!(stream_head(Some("application/vnd.amazon.eventstream"), None), Ok(()));
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "text/html",
        " TEXT/HTML ;charset=x",
        "application/problem+json",
        "application/vnd.api+JSON",
    ] {
        assert_eq!(stream_head(Some(ct), None), Err(UpstreamInvalid::NotAStream(ct.into())));
    }
    // Unusual but possible stream types are left to the stream decoder.
    for ct in ["text/plain", "json", "application/jsonl", "text/htmlx", "application/json+x"] {
        assert_eq!(stream_head(Some(ct), None), Ok(()), "{ct}");
    }
}

#[test]
fn the_check_tells_where_usage_lies_and_still_checks_it() {
    let body = br#"{"id":"c","choices":[],"usage" : {"prompt_tokens":12,"completion_tokens":10}, "x":1}"#;
    let at = non_stream_body(Format::OpenAiChat, None, None, body).unwrap().expect("usage found");
    assert_eq!(&body[at], br#"{"prompt_tokens":12,"completion_tokens":10}"#);
    // An escaped key is found too; a bad escape inside usage is refused like anywhere else.
    let body = br#"{"choices":[],"us\u0061ge":null}"#;
    let at = non_stream_body(Format::OpenAiChat, None, None, body).unwrap().expect("usage found");
    assert_eq!(&body[at], b"null");
    let bad = br#"{"choices":[],"usage":{"note":"\udb00"}}"#;
    assert!(matches!(
        non_stream_body(Format::OpenAiChat, None, None, bad),
        Err(UpstreamInvalid::NotJson { .. })
    ));
}

/// An answer-like body: the members of a chat answer (each maybe missing, repeated or of
/// another type), an `error` now and then.
fn answer(g: &mut Gen) -> String {
    let message = vec![("role", "\"assistant\"".to_owned()), ("content", g.str_or_null())];
    let choice = vec![
        ("index", g.count()),
        ("message", g.object(message)),
        (
            "logprobs",
            if g.below(3) == 0 {
                format!("{{\"content\":[{{\"logprob\":-0.{}}}]}}", g.count())
            } else {
                "null".to_owned()
            },
        ),
        ("finish_reason", g.str_or_null()),
    ];
    let choices = format!("[{}]", g.object(choice));
    let usage =
        vec![("prompt_tokens", g.count()), ("completion_tokens", g.count()), ("total_tokens", g.number())];
    let members = vec![
        ("id", g.str_or_null()),
        ("object", "\"chat.completion\"".to_owned()),
        ("created", g.count()),
        ("model", g.string()),
        ("choices", choices),
        ("usage", g.object(usage)),
        ("error", if g.below(6) == 0 { "{\"message\":\"x\"}".to_owned() } else { "null".to_owned() }),
    ];
    g.object(members)
}

#[test]
fn the_fast_check_finds_what_the_serde_pass_finds_or_gives_up() {
    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    let success = success_keys(Format::OpenAiChat);
    let (mut valid, mut fast) = (0, 0);
    for i in 0..30_000 {
        let mut s = answer(&mut g);
        if i % 2 == 1 {
            s = g.mutate(&s);
        }
        let want = serde_top_level(success, s.as_bytes());
        valid += usize::from(want.is_ok() && i % 2 == 0);
        let Some(top) = scan_top_level(success, s.as_bytes()) else { continue };
        fast += usize::from(i % 2 == 0);
        match want {
            Ok(want) => assert_eq!(top, want, "{s}"),
            Err(e) => panic!("the fast check accepted what serde_json refuses ({e}): {s}"),
        }
    }
    // Most valid answers take the fast path (not a test passed by always giving up).
    assert!(fast * 2 > valid, "only {fast} of {valid} valid answers took the fast path");
}

#[test]
fn what_only_a_full_decode_refuses_is_left_to_serde() {
    let success = success_keys(Format::OpenAiChat);
    for body in [
        r#"{"choices":[],"x":"\udb00"}"#,
        r#"{"choices":[],"x":1e400}"#,
        r#"{"choices":[],"x":"a\u0000b","y":"\ud83d\ude00"}"#,
    ] {
        assert_eq!(scan_top_level(success, body.as_bytes()), None, "{body}");
    }
    assert!(serde_top_level(success, br#"{"choices":[],"x":"\udb00"}"#).is_err());
    assert!(serde_top_level(success, br#"{"choices":[],"x":1e400}"#).is_err());
    // Not UTF-8: left to serde, which refuses it.
    assert_eq!(scan_top_level(success, b"{\"choices\":\"\xff\"}"), None);
}
