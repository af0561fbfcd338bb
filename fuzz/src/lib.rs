//! Drivers shared by the fuzz targets in `fuzz_targets/`: each feeds outside bytes to one
//! decoder of `llm_gateway::formats` and checks what must hold whatever the bytes are. Besides
//! "no panic, no hang, bounded memory" (libFuzzer's own checks), the oracles are:
//!
//! - requests: a decoded request encodes for every upstream format without panicking, and every
//!   encoded body is JSON;
//! - responses: a decoded response encodes as JSON in every client format;
//! - streams: whatever the upstream sends, a translated stream is grammatical in the client's
//!   format (`formats::grammar::check`), and feeding the same bytes in small chunks gives the
//!   same output as feeding them at once (split invariance);
//! - `passthrough`: a rewritten body is still JSON, names the new model, and keeps the rest;
//! - the OpenAI usage observer: split invariance, and in observe mode the bytes pass unchanged;
//! - upstream errors: classification never panics and agrees with `decode_error`;
//! - multipart: the `model` part count (or refusal) does not depend on how the upload is
//!   split, and a `model` field the admission would read is always one the scanner counted.

use llm_gateway::formats::{
    self, embeddings, eventstream, grammar, passthrough, Format, RequestOptions, ResponseOptions,
    StreamTranslator,
};

/// The formats a client can speak.
pub const CLIENT_FORMATS: [Format; 4] =
    [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini];

/// Every format an upstream can speak.
pub const UPSTREAM_FORMATS: [Format; 5] =
    [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini, Format::Bedrock];

/// Inputs longer than this are not interesting (the decoders are linear) and slow the run.
const MAX_INPUT: usize = 256 * 1024;

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
}

/// A client request body in format `from` -> IR -> every upstream format.
pub fn request(from: Format, data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(req) = formats::decode_request(from, data) else { return };
    for to in UPSTREAM_FORMATS {
        for legacy_max_tokens in [false, true] {
            let opts = RequestOptions { target_model: "m", default_max_tokens: 1024, legacy_max_tokens };
            if let Ok(enc) = formats::encode_request(to, &req, &opts) {
                assert!(is_json(&enc.body), "{from:?} -> {to:?}: encoded request is not JSON");
            }
        }
    }
}

/// An upstream non-stream answer in format `from` -> IR -> every client format.
pub fn response(from: Format, data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(resp) = formats::decode_response(from, data) else { return };
    for to in CLIENT_FORMATS {
        let opts = ResponseOptions { model: "m", gemini_sse: false, include_usage: false };
        let body = formats::encode_response(to, &resp, &opts);
        assert!(is_json(&body), "{from:?} -> {to:?}: encoded response is not JSON");
    }
}

/// Tool-call arguments are the model's text, passed on as they came: when the upstream's do
/// not add up to JSON, the client's cannot either. Every other grammar rule must hold.
fn is_arguments_rule(e: &str) -> bool {
    (e.contains("tool call") && e.ends_with("are not JSON"))
        || (e.contains("tool block") && e.ends_with("is not a JSON object"))
}

/// Run one stream through a translator, fed at once (`chunk == 0`) or `chunk` bytes at a time.
/// Returns the client's bytes and the error the translator reports, if any.
fn translate(
    from: Format,
    to: Format,
    opts: &ResponseOptions,
    reencode: bool,
    data: &[u8],
    chunk: usize,
) -> (Vec<u8>, Option<String>) {
    let mut t = if reencode {
        StreamTranslator::reencoding(from, to, opts)
    } else {
        StreamTranslator::new(from, to, opts)
    };
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if chunk == 0 { vec![data] } else { data.chunks(chunk).collect() };
    for piece in pieces {
        if let Err(e) = t.feed(piece, &mut out) {
            t.fail(formats::ErrorKind::UpstreamError, &e.to_string(), &mut out);
            return (out, t.error().map(str::to_owned));
        }
    }
    t.finish(&mut out);
    (out, t.error().map(str::to_owned))
}

/// An upstream stream in format `from` -> every client format (Gemini in both its SSE and its
/// JSON-array form). The first input byte picks the chunk size for the split-invariance run.
pub fn stream(from: Format, data: &[u8]) {
    if data.len() > MAX_INPUT || data.is_empty() {
        return;
    }
    let chunk = 1 + usize::from(data[0] % 32);
    for to in CLIENT_FORMATS {
        for gemini_sse in [true, false] {
            if to != Format::Gemini && !gemini_sse {
                continue;
            }
            let opts = ResponseOptions { model: "m", gemini_sse, include_usage: data[0] & 1 == 1 };
            // Same format: bytes pass through (and are only observed), except a Gemini SSE
            // upstream for a client that asked for the JSON-array form.
            let reencode = from == to && to == Format::Gemini && !gemini_sse;
            let whole = translate(from, to, &opts, reencode, data, 0);
            if from != to || reencode {
                if let Err(e) = grammar::check(to, &whole.0).map_err(|e| (is_arguments_rule(&e), e)) {
                    let (arguments_only, e) = e;
                    if arguments_only {
                        continue;
                    }
                    panic!(
                        "{from:?} -> {to:?} (sse {gemini_sse}): ungrammatical output: {e}\n{}",
                        String::from_utf8_lossy(&whole.0)
                    );
                }
            } else {
                assert!(whole.0.starts_with(data), "{from:?} passthrough changed the bytes");
            }
            // Ids Bedrock streams lack are generated at random: compare only deterministic runs.
            if translate(from, to, &opts, reencode, data, 0) != whole {
                continue;
            }
            let split = translate(from, to, &opts, reencode, data, chunk);
            assert_eq!(
                String::from_utf8_lossy(&split.0),
                String::from_utf8_lossy(&whole.0),
                "{from:?} -> {to:?}: output depends on how the input was split (chunk {chunk})"
            );
            assert_eq!(split.1, whole.1, "{from:?} -> {to:?}: error depends on the split (chunk {chunk})");
        }
    }
}

/// The AWS event-stream frame decoder, fed at once and in chunks: same messages, same error.
pub fn eventstream(data: &[u8]) {
    if data.len() > MAX_INPUT || data.is_empty() {
        return;
    }
    let run = |chunk: usize| {
        let mut d = eventstream::Decoder::new();
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = if chunk == 0 { vec![data] } else { data.chunks(chunk).collect() };
        for p in pieces {
            if let Err(e) = d.feed(p, &mut out) {
                return (out, Some(e));
            }
        }
        let e = d.finish().err();
        (out, e)
    };
    let whole = run(0);
    let split = run(1 + usize::from(data[0] % 64));
    assert_eq!(whole, split, "event-stream decoding depends on the split");
}

/// `peek` then `rewrite_peeked` (model replaced, model removed, usage forced on).
pub fn passthrough(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(p) = passthrough::peek(data) else { return };
    for (model, force) in [(Some("new-model"), false), (None, false), (Some("x"), true), (None, true)] {
        let out = passthrough::rewrite_peeked(data, &p, model, force);
        let again = match passthrough::peek(&out) {
            Ok(again) => again,
            Err(e) => panic!(
                "rewrite ({model:?}, force {force}) broke the JSON: {e}\nin:  {}\nout: {}",
                String::from_utf8_lossy(data),
                String::from_utf8_lossy(&out)
            ),
        };
        assert_eq!(again.model.as_deref(), model, "rewrite did not set the model");
        assert_eq!(again.stream, p.stream, "rewrite changed `stream`");
        if force {
            assert!(again.include_usage, "rewrite did not force include_usage");
        } else {
            assert_eq!(again.include_usage, p.include_usage, "rewrite changed include_usage");
        }
    }
}

/// The OpenAI Chat usage observer (same-format streams), in both modes.
pub fn stream_usage(data: &[u8]) {
    if data.len() > MAX_INPUT || data.is_empty() {
        return;
    }
    for strip in [false, true] {
        let run = |chunk: usize| {
            let mut o = passthrough::OpenAiStreamUsage::new(strip);
            let mut out = Vec::new();
            let pieces: Vec<&[u8]> = if chunk == 0 { vec![data] } else { data.chunks(chunk).collect() };
            for p in pieces {
                let mut piece_out = Vec::new();
                if o.feed(p, &mut piece_out) {
                    assert!(piece_out.is_empty(), "forwarded unchanged, yet output was written");
                    out.extend_from_slice(p);
                } else {
                    assert!(strip || o.error().is_some(), "observe mode must forward every chunk unchanged");
                    out.extend_from_slice(&piece_out);
                }
            }
            o.finish(&mut out);
            if !strip && o.error().is_none() {
                assert_eq!(out, data, "observe mode changed the bytes");
            }
            (out, o.usage(), o.error().cloned())
        };
        let whole = run(0);
        let split = run(1 + usize::from(data[0] % 32));
        assert_eq!(
            String::from_utf8_lossy(&whole.0),
            String::from_utf8_lossy(&split.0),
            "usage observer output depends on the split (strip {strip})"
        );
        assert_eq!(whole.1, split.1, "usage depends on the split (strip {strip})");
        assert_eq!(whole.2, split.2, "the error depends on the split (strip {strip})");
        if strip && whole.2.is_none() {
            assert!(whole.0.len() <= data.len(), "strip mode added bytes");
        }
    }
}

/// A multipart upload (boundary `XyZ`) through `formats::multipart`: `ModelParts` fed whole,
/// in chunks and byte by byte gives the same count or error; `model_field` finds a field only
/// where the scanner counted one, inside the body.
pub fn multipart(data: &[u8]) {
    use formats::multipart::{model_field, ModelParts};
    if data.len() > MAX_INPUT || data.is_empty() {
        return;
    }
    let run = |chunk: usize| -> Result<u32, formats::multipart::MultipartError> {
        let mut p = ModelParts::new("XyZ");
        let pieces: Vec<&[u8]> = if chunk == 0 { vec![data] } else { data.chunks(chunk).collect() };
        for piece in pieces {
            p.feed(piece)?;
        }
        Ok(p.models())
    };
    let whole = run(0);
    assert_eq!(whole, run(1 + usize::from(data[0] % 64)), "the count depends on the split");
    if data.len() <= 4096 {
        assert_eq!(whole, run(1), "the count differs byte by byte");
    }
    assert!(whole.as_ref().map_or(true, |&n| n <= 1), "a second model part was not refused");
    if let Some((start, end)) = model_field(data, "XyZ") {
        assert!(start <= end && end <= data.len(), "model value {start}..{end} outside the body");
        assert!(whole != Ok(0), "model_field found a field the scanner did not count");
    }
}

/// Embeddings: an OpenAI request body, and upstream answers from Gemini and Bedrock.
pub fn embeddings(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(req) = embeddings::decode_openai_request(data) {
        let _ = embeddings::encode_gemini_request(&req, "text-embedding-004");
        for model in ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"] {
            let _ = embeddings::encode_bedrock_requests(&req, model);
        }
    }
    let req = embeddings::EmbeddingRequest {
        model: "e".into(),
        inputs: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    if let Ok(resp) = embeddings::decode_gemini_response(data, &req) {
        let _ = embeddings::encode_openai_response(&resp, "e", data.len() % 2 == 0);
    }
    for model in ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"] {
        let _ = embeddings::decode_bedrock_responses(&[data, data], model, &req);
    }
}

/// Upstream error answers and 2xx bodies: the error table, every format's `decode_error`
/// (which must agree with it), and the checks of a 2xx answer.
pub fn upstream_error(data: &[u8]) {
    if data.len() > MAX_INPUT || data.len() < 2 {
        return;
    }
    // The first byte picks a status: the ones providers use, else an arbitrary one.
    const STATUSES: [u16; 16] =
        [200, 400, 401, 402, 403, 404, 408, 413, 422, 424, 429, 500, 502, 503, 504, 529];
    let status = STATUSES.get(usize::from(data[0])).copied().unwrap_or(100 + 2 * u16::from(data[0]));
    let body = &data[1..];
    for from in UPSTREAM_FORMATS {
        let c = formats::classify_upstream_error(from, status, None, Some("ThrottlingException:x"), body);
        let _ = formats::status_for(c.kind);
        let c = formats::classify_upstream_error(from, status, None, None, body);
        assert_eq!(formats::decode_error(from, status, body), (c.kind, c.message.clone()));
        assert_eq!(c.retry, formats::upstream_error::retry_for(c.kind, c.provider_code.as_deref(), None));
        let valid = formats::validate::non_stream_body(from, Some("application/json"), None, body);
        if valid.is_ok() {
            assert!(
                serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object()),
                "{from:?}: validated a body that is not a JSON object"
            );
        }
        let _ = formats::validate::stream_head(from, std::str::from_utf8(body).ok(), None);
    }
}
