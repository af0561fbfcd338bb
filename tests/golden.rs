//! Table-driven golden tests for format translation (requests, responses, errors, streams).
//!
//! Layout: `tests/golden/<kind>/<from>/<case>.<ext>` is an input written from the provider's
//! documented examples; `<case>.<to>.<ext>` next to it is the expected translation into
//! format `to`. Requests go client -> upstream (`from` is the client format); responses,
//! errors and streams go upstream -> client (`from` is the upstream format).
//! - requests:  `<case>.json` -> `<case>.<to>.json` (pretty body), plus
//!   `<case>.<to>.dropped.txt` (one dropped parameter a line) when any, or
//!   `<case>.<to>.error.txt` when translation is refused.
//! - responses: `<case>.json` -> `<case>.<to>.json` (pretty body + `"_usage"` for accounting).
//! - errors:    `<case>.json` = `{"status": 529, "body": <upstream body>}` -> `<case>.<to>.json`.
//! - streams:   `<case>.sse` (or `.bin` for Bedrock event-stream) -> `<case>.<to>.sse`, fed
//!   in one chunk and byte by byte (identical output required), and checked by
//!   `formats::grammar::check`. Streams use `include_usage: true`.
//!
//! Add a format by adding a row (or a column in a row's list) below and its fixtures.
//! Regenerate expected files with `GOLDEN_UPDATE=1 cargo test --test golden`, then READ every
//! changed file against the provider docs before committing it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use llm_gateway::formats::{
    grammar, translate_error, translate_request, translate_response, Format, RequestOptions, ResponseOptions,
    StreamTranslator,
};

/// (client format, upstream formats to translate into).
const REQUESTS: &[(Format, &[Format])] = &[
    (Format::OpenAiChat, &[Format::Anthropic, Format::OpenAiChat, Format::OpenAiResponses, Format::Gemini]),
    (Format::Anthropic, &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini]),
    (
        Format::OpenAiResponses,
        &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini],
    ),
    (Format::Gemini, &[Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::OpenAiResponses]),
];

/// (upstream format, client formats to translate into).
const RESPONSES: &[(Format, &[Format])] = &[
    (Format::OpenAiChat, &[Format::Anthropic, Format::OpenAiChat, Format::OpenAiResponses, Format::Gemini]),
    (Format::Anthropic, &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini]),
    (
        Format::OpenAiResponses,
        &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini],
    ),
    (Format::Gemini, &[Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::OpenAiResponses]),
];

/// (upstream format, client formats).
const ERRORS: &[(Format, &[Format])] = &[
    (Format::OpenAiChat, &[Format::Anthropic, Format::OpenAiChat, Format::OpenAiResponses, Format::Gemini]),
    (Format::Anthropic, &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini]),
    (
        Format::OpenAiResponses,
        &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini],
    ),
    (Format::Gemini, &[Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::OpenAiResponses]),
];

/// (upstream format, client formats). Same-format streams pass through (observe mode).
const STREAMS: &[(Format, &[Format])] = &[
    (Format::OpenAiChat, &[Format::Anthropic, Format::OpenAiChat, Format::OpenAiResponses, Format::Gemini]),
    (Format::Anthropic, &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini]),
    (
        Format::OpenAiResponses,
        &[Format::OpenAiChat, Format::Anthropic, Format::OpenAiResponses, Format::Gemini],
    ),
    (Format::Gemini, &[Format::OpenAiChat, Format::Anthropic, Format::Gemini, Format::OpenAiResponses]),
];

const REQUEST_OPTS: RequestOptions<'static> =
    RequestOptions { target_model: "target-model", default_max_tokens: 4096, legacy_max_tokens: false };

fn response_opts() -> ResponseOptions<'static> {
    ResponseOptions { model: "client-model", gemini_sse: true, include_usage: true }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os("GOLDEN_UPDATE").is_some()
}

/// Input fixtures of `<kind>/<from>`: files whose name has exactly one dot.
fn inputs(kind: &str, from: Format) -> Vec<(String, PathBuf)> {
    let dir = root().join(kind).join(from.name());
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_owned();
            let (case, _ext) = name.split_once('.')?;
            (!_ext.contains('.')).then(|| (case.to_owned(), p.clone()))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

/// Compare `actual` with the expected file (or write it under GOLDEN_UPDATE). Returns a
/// mismatch description instead of panicking so one run reports every difference.
fn expect(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if updating() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures
            .push(format!("{}: mismatch\n--- expected\n{expected}\n--- actual\n{actual}", path.display())),
        Err(_) => failures.push(format!("{}: missing (run with GOLDEN_UPDATE=1)", path.display())),
    }
}

/// Expect `path` NOT to exist (e.g. no dropped params); under GOLDEN_UPDATE remove it.
fn expect_absent(path: &Path, failures: &mut Vec<String>) {
    if path.exists() {
        if updating() {
            std::fs::remove_file(path).unwrap();
        } else {
            failures.push(format!("{}: exists but nothing was produced", path.display()));
        }
    }
}

fn pretty(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap() + "\n",
        Err(_) => format!("NOT JSON: {}\n", String::from_utf8_lossy(bytes)),
    }
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} golden failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn requests() {
    let mut failures = Vec::new();
    for (from, targets) in REQUESTS {
        for (case, path) in inputs("requests", *from) {
            let body = std::fs::read(&path).unwrap();
            for to in *targets {
                let dir = path.parent().unwrap();
                let json_path = dir.join(format!("{case}.{}.json", to.name()));
                let dropped_path = dir.join(format!("{case}.{}.dropped.txt", to.name()));
                let error_path = dir.join(format!("{case}.{}.error.txt", to.name()));
                match translate_request(*from, *to, &body, &REQUEST_OPTS) {
                    Ok(enc) => {
                        expect(&json_path, &pretty(&enc.body), &mut failures);
                        if enc.dropped.is_empty() {
                            expect_absent(&dropped_path, &mut failures);
                        } else {
                            expect(&dropped_path, &(enc.dropped.join("\n") + "\n"), &mut failures);
                        }
                        expect_absent(&error_path, &mut failures);
                    }
                    Err(e) => {
                        expect(&error_path, &format!("{e}\n"), &mut failures);
                        expect_absent(&json_path, &mut failures);
                        expect_absent(&dropped_path, &mut failures);
                    }
                }
            }
        }
    }
    report(failures);
}

#[test]
fn responses() {
    let mut failures = Vec::new();
    for (from, targets) in RESPONSES {
        for (case, path) in inputs("responses", *from) {
            let body = std::fs::read(&path).unwrap();
            for to in *targets {
                let out = path.parent().unwrap().join(format!("{case}.{}.json", to.name()));
                let actual = match translate_response(*from, *to, &body, &response_opts()) {
                    Ok((bytes, usage)) => {
                        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        v["_usage"] = serde_json::json!(format!("{usage:?}"));
                        serde_json::to_string_pretty(&v).unwrap() + "\n"
                    }
                    Err(e) => format!("ERROR: {e}\n"),
                };
                expect(&out, &actual, &mut failures);
            }
        }
    }
    report(failures);
}

#[test]
fn errors() {
    let mut failures = Vec::new();
    for (from, targets) in ERRORS {
        for (case, path) in inputs("errors", *from) {
            let input: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let status = input["status"].as_u64().unwrap() as u16;
            let body = match &input["body"] {
                serde_json::Value::String(s) => s.clone().into_bytes(),
                v => serde_json::to_vec(v).unwrap(),
            };
            for to in *targets {
                let out = path.parent().unwrap().join(format!("{case}.{}.json", to.name()));
                expect(&out, &pretty(&translate_error(*from, *to, status, &body)), &mut failures);
            }
        }
    }
    report(failures);
}

fn run_stream(from: Format, to: Format, chunks: &mut dyn Iterator<Item = &[u8]>) -> (Vec<u8>, String) {
    let mut t = StreamTranslator::new(from, to, &response_opts());
    let mut out = Vec::new();
    let mut note = String::new();
    for c in chunks {
        if let Err(e) = t.feed(c, &mut out) {
            let _ = writeln!(note, "feed error: {e}");
            t.fail(llm_gateway::formats::ErrorKind::UpstreamError, &e.to_string(), &mut out);
            break;
        }
    }
    t.finish(&mut out);
    let _ = writeln!(note, "usage: {:?}", t.usage());
    (out, note)
}

#[test]
fn streams() {
    let mut failures = Vec::new();
    for (from, targets) in STREAMS {
        for (case, path) in inputs("streams", *from) {
            let input = std::fs::read(&path).unwrap();
            for to in *targets {
                let out_path = path.parent().unwrap().join(format!("{case}.{}.sse", to.name()));
                let (whole, note) = run_stream(*from, *to, &mut std::iter::once(&input[..]));
                let (bytewise, _) = run_stream(*from, *to, &mut input.chunks(1));
                if whole != bytewise {
                    failures.push(format!("{}: byte-by-byte feeding differs from whole", out_path.display()));
                }
                if let Err(e) = grammar::check(*to, &whole) {
                    failures.push(format!("{}: grammar: {e}", out_path.display()));
                }
                let mut actual = String::from_utf8_lossy(&whole).into_owned();
                for line in note.lines() {
                    let _ = writeln!(actual, ": {line}");
                }
                expect(&out_path, &actual, &mut failures);
            }
        }
    }
    report(failures);
}
