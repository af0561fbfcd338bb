//! Tests for `access_log.rs`: the JSON line's fields, redaction, and the level switch.
//! Each test installs its subscriber for its own thread only (`with_default`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// Collects everything written, for inspection.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter(self.0.clone())
    }
}

impl Capture {
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().clone()).unwrap()
    }
}

fn line() -> AccessLine<'static> {
    AccessLine {
        request_id: "req-7",
        key_id: Some("search-prod"),
        project: Some("search"),
        alias: Some("fast"),
        provider: Some("openai"),
        model: Some("gpt-4o-mini"),
        endpoint: "chat_completions",
        method: "POST",
        path: "/v1/chat/completions",
        status: 200,
        stream: true,
        input_tokens: 812,
        output_tokens: 64,
        cached_tokens: 512,
        reasoning_tokens: 0,
        cost_micros: 160_200,
        latency: Duration::from_micros(1_234_567),
        ttfb: Some(Duration::from_micros(345_600)),
        attempts: 2,
        error: None,
        client: Some("10.1.2.3:50412"),
        request_body: None,
        response_body: None,
        body_max_bytes: 0,
    }
}

#[test]
fn the_json_line_carries_every_field() {
    let cap = Capture::default();
    let (sub, _h) = build_subscriber("info", true, false, cap.clone()).unwrap();
    tracing::subscriber::with_default(sub, || line().emit());
    let lines = cap.lines();
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["target"], "access");
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["message"], "request");
    assert_eq!(l["request_id"], "req-7");
    assert_eq!(l["key"], "search-prod");
    assert_eq!(l["project"], "search");
    assert_eq!(l["alias"], "fast");
    assert_eq!(l["provider"], "openai");
    assert_eq!(l["model"], "gpt-4o-mini");
    assert_eq!(l["endpoint"], "chat_completions");
    assert_eq!(l["method"], "POST");
    assert_eq!(l["path"], "/v1/chat/completions");
    assert_eq!(l["status"], 200);
    assert_eq!(l["stream"], true);
    assert_eq!(l["input_tokens"], 812);
    assert_eq!(l["output_tokens"], 64);
    assert_eq!(l["cached_tokens"], 512);
    assert_eq!(l["reasoning_tokens"], 0);
    assert_eq!(l["cost_usd"], 0.1602);
    assert_eq!(l["latency_ms"], 1234.567);
    assert_eq!(l["ttfb_ms"], 345.6);
    assert_eq!(l["attempts"], 2);
    assert!(l.get("error").is_none(), "absent options are not written");
    assert!(l["timestamp"].is_string());
}

#[test]
fn secrets_never_reach_the_line() {
    let cap = Capture::default();
    let (sub, _h) = build_subscriber("info", true, false, cap.clone()).unwrap();
    let secret = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";
    let path = format!("/v1beta/models/gemini-2.0-flash:generateContent?key={secret}");
    let error =
        "upstream said: invalid api key sk-ant-api03-QWERTYUIOPasdfghjkl0123456789 (Bearer abcdef123456)";
    let mut l = line();
    l.path = &path;
    l.error = Some(error);
    l.model = Some("sk-proj-AbCdEf0123456789_xyzXYZ");
    l.status = 401;
    tracing::subscriber::with_default(sub, || l.emit());
    let text = cap.text();
    for leaked in ["9tSrke72", "QWERTYUIOP", "abcdef123456", "AbCdEf0123"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    let j = &cap.lines()[0];
    assert_eq!(j["path"], "/v1beta/models/gemini-2.0-flash:generateContent?key=***");
    assert_eq!(j["error"], "upstream said: invalid api key sk-ant-*** (Bearer ***)");
    assert_eq!(j["model"], "sk-proj-***");
}

#[test]
fn the_reload_handle_changes_the_level_at_run_time() {
    let cap = Capture::default();
    let (sub, h) = build_subscriber("warn", true, false, cap.clone()).unwrap();
    tracing::subscriber::with_default(sub, || {
        line().emit();
        tracing::debug!(target: "llm_gateway", "quiet");
        assert!(cap.lines().is_empty(), "info and debug are filtered at warn");
        h.set_filter("info,llm_gateway=debug").unwrap();
        assert_eq!(h.current(), "llm_gateway=debug,info", "EnvFilter's normal form");
        line().emit();
        tracing::debug!(target: "llm_gateway", "loud");
        tracing::debug!(target: "other_crate", "still quiet");
        let lines = cap.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["target"], "access");
        assert_eq!(lines[1]["message"], "loud");
        h.set_filter("info,access=off").unwrap();
        line().emit();
        assert_eq!(cap.lines().len(), 2, "access lines can be switched off alone");
    });
}

#[test]
fn a_bad_filter_is_refused_and_the_running_one_stays() {
    let cap = Capture::default();
    let (_sub, h) = build_subscriber("info", true, false, cap).unwrap();
    let err = h.set_filter("info,[unclosed").unwrap_err();
    assert!(matches!(err, LoggingError::BadFilter { ref spec, .. } if spec == "info,[unclosed"), "{err}");
    assert_eq!(h.current(), "info");
    assert!(build_subscriber("=", false, false, Capture::default()).is_err());
}

#[test]
fn text_output_has_no_colour_codes_when_ansi_is_off() {
    let cap = Capture::default();
    let (sub, _h) = build_subscriber("info", false, false, cap.clone()).unwrap();
    tracing::subscriber::with_default(sub, || line().emit());
    let text = cap.text();
    assert!(text.contains("request_id=\"req-7\"") || text.contains("request_id=req-7"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn every_line_is_redacted_whoever_formats_it() {
    // Lines the gateway does not build itself: Pingora's error summary with the request URL,
    // and its trace-level header dumps, at every level, text and JSON.
    for json in [false, true] {
        let cap = Capture::default();
        let (sub, _h) = build_subscriber("trace", json, false, cap.clone()).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::error!(
                target: "pingora_proxy",
                "Fail to proxy: Downstream ConnectionClosed, status: 499, tries: 0, retry: false, POST /v1beta/models/g:streamGenerateContent?alt=sse&key=plainvirtualkey42, Host: x"
            );
            tracing::trace!(
                target: "pingora_core",
                r#"Request header: RequestHeader {{ base: Parts {{ method: POST, uri: /v1/chat/completions, version: HTTP/1.1, headers: {{"host": "gw", "x-goog-api-key": "gemsecret0001", "api-key": "azsecret0002", "authorization": "Bearer provsecret0003", "x-api-key": "anthsecret0004"}} }} }}"#
            );
            tracing::debug!("raw head: POST / HTTP/1.1\r\nX-Goog-Api-Key: gemsecret0005\r\nAuthorization: Basic dXNlcjpwYXNz\r\n");
            tracing::info!(field = "?key=fieldsecret0006&x=1", "a field");
        });
        let out = cap.text();
        for secret in [
            "plainvirtualkey42",
            "gemsecret0001",
            "azsecret0002",
            "provsecret0003",
            "anthsecret0004",
            "gemsecret0005",
            "dXNlcjpwYXNz",
            "fieldsecret0006",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("key=***"), "{out}");
        assert!(out.contains("Basic ***"), "{out}");
        for event in ["Fail to proxy", "Request header", "raw head", "a field"] {
            assert!(out.contains(event), "{event} missing from {out}");
        }
    }
}

#[test]
fn bodies_are_cut_at_the_cap_on_a_character_boundary_and_masked() {
    let cap = Capture::default();
    let (sub, _h) = build_subscriber("info", true, false, cap.clone()).unwrap();
    // "é" is bytes 10 and 11: a cap of 11 falls inside it and backs off to 10.
    let request = r#"{"m":"aaaaé and more"}"#;
    let answer = r#"{"note":"my key is sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}"#;
    tracing::subscriber::with_default(sub, || {
        AccessLine {
            request_body: Some(request.as_bytes()),
            response_body: Some(answer.as_bytes()),
            body_max_bytes: 11,
            ..line()
        }
        .emit();
        AccessLine { response_body: Some(answer.as_bytes()), body_max_bytes: 4096, ..line() }.emit();
    });
    let lines = cap.lines();
    assert_eq!(lines[0]["request_body"], format!("{}…[{} more bytes]", &request[..10], request.len() - 10));
    assert_eq!(lines[0]["client"], "10.1.2.3:50412");
    let full = lines[1]["response_body"].as_str().unwrap();
    assert!(full.starts_with(r#"{"note":"my key is "#), "{full}");
    assert!(!full.contains("abcdefghijklmnopqrstuvwxyz0123456789"), "the key is masked: {full}");
    assert!(lines[1].get("request_body").is_none(), "no body field when none was kept");
}
