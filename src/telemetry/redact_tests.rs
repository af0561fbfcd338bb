//! Tests for `redact.rs`: each secret shape is masked, ordinary text is left alone (and not
//! copied), and no part of a secret survives.

use std::borrow::Cow;

use super::*;

const OPENAI: &str = "sk-proj-AbCdEf0123456789_xyzXYZ-0123456789abcdef";
const ANTHROPIC: &str = "sk-ant-api03-QWERTYUIOPasdfghjkl0123456789-zxcvbnm_AA";
const GATEWAY: &str = "sk-gw-3kTq9ZbXvL0aP2wR7yN5mC8dF1hJ4sG6uE";
const GOOGLE: &str = "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY";
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsInRlYW0iOiJzZWFyY2gifQ.c2lnbmF0dXJlLWJ5dGVz";

fn assert_gone(out: &str, secret: &str) {
    // No 6-byte window of the secret's private part may survive.
    let private = &secret[secret.len() - 12..];
    assert!(!out.contains(private), "{secret} leaked in {out:?}");
}

#[test]
fn url_query_secrets_are_masked_and_other_params_kept() {
    let u = format!("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={GOOGLE}");
    assert_eq!(redact_url(&u), "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=***");
    assert_eq!(
        redact_url("/openai/deployments/x/chat/completions?api-version=2024-10-21&api-key=abc123"),
        "/openai/deployments/x/chat/completions?api-version=2024-10-21&api-key=***"
    );
    assert_eq!(
        redact_url("/cb?access_token=t0k&state=1&sig=ZZZ#frag"),
        "/cb?access_token=***&state=1&sig=***#frag"
    );
    assert_eq!(
        redact_url("/x?X-Amz-Signature=abcd&X-Amz-Credential=AK%2F1"),
        "/x?X-Amz-Signature=***&X-Amz-Credential=***"
    );
    assert_eq!(redact_url("key=abc&alt=sse"), "key=***&alt=sse", "a bare query string");
    assert_eq!(redact_url("/v1/chat/completions?monkey=1&keys=2"), "/v1/chat/completions?monkey=1&keys=2");
}

#[test]
fn clean_input_is_borrowed_not_copied() {
    for s in ["/v1/chat/completions", "/v1/models?limit=10", "plain words, task-force risk-based"] {
        assert!(matches!(redact_url(s), Cow::Borrowed(_)), "{s}");
        assert!(matches!(redact_text(s), Cow::Borrowed(_)), "{s}");
    }
    assert!(matches!(redact_header("content-type", "application/json"), Cow::Borrowed("application/json")));
}

#[test]
fn credential_headers_are_fully_masked_keeping_only_the_scheme() {
    assert_eq!(redact_header("Authorization", &format!("Bearer {GATEWAY}")), "Bearer ***");
    assert_eq!(redact_header("authorization", "Basic dXNlcjpwYXNz"), "Basic ***");
    assert_eq!(redact_header("proxy-authorization", "Bearer x"), "Bearer ***");
    assert_eq!(redact_header("authorization", "justatoken"), "***");
    for name in ["x-api-key", "api-key", "X-Goog-Api-Key", "cookie", "Set-Cookie", "x-amz-security-token"] {
        assert_eq!(redact_header(name, ANTHROPIC), "***", "{name}");
    }
    assert_eq!(redact_header("x-custom-admin-token", "hunter2"), "***", "a name that says token");
    assert_eq!(redact_header("user-agent", "OpenAI/Python 1.50"), "OpenAI/Python 1.50");
    // A secret pasted into an ordinary header is still caught by the text rules.
    assert_eq!(redact_header("x-note", &format!("key {OPENAI}")), "key sk-proj-***");
}

#[test]
fn free_text_tokens_are_masked_with_only_their_public_prefix() {
    let msg = format!(
        "upstream 401 for {OPENAI}; anthropic {ANTHROPIC}, gw {GATEWAY}, google {GOOGLE}, aws {AWS}, jwt {JWT}."
    );
    let out = redact_text(&msg);
    assert_eq!(
        out,
        "upstream 401 for sk-proj-***; anthropic sk-ant-***, gw sk-gw-***, google AIza***, aws AKIA***, jwt eyJ***."
    );
    for s in [OPENAI, ANTHROPIC, GATEWAY, GOOGLE, AWS, JWT] {
        assert_gone(&out, s);
    }
    assert_eq!(redact_text("sk-0123456789abcdef0123"), "sk-***");
}

#[test]
fn bearer_tokens_are_masked_in_any_case() {
    assert_eq!(redact_text("Authorization: Bearer abc.def-ghi"), "Authorization: Bearer ***");
    assert_eq!(redact_text(r#"{"h":"bearer xyz"}"#), r#"{"h":"bearer ***"}"#);
    assert_eq!(redact_text("Bearer ***"), "Bearer ***", "already masked stays as is");
}

#[test]
fn json_secret_members_and_urls_inside_messages_are_masked() {
    let body = r#"{"name":"openai","api_key": "plain-secret-value","model":"gpt-4o"}"#;
    assert_eq!(redact_text(body), r#"{"name":"openai","api_key": "***","model":"gpt-4o"}"#);
    let msg = "connect to https://relay.local/hook?token=abc123&x=1 failed";
    assert_eq!(redact_text(msg), "connect to https://relay.local/hook?token=***&x=1 failed");
    assert_eq!(redact_text(r#"{"key":"search-prod"}"#), r#"{"key":"search-prod"}"#, "a key id is public");
}

#[test]
fn look_alikes_are_left_alone() {
    for s in [
        "the task-oriented risk-scoring desk-booking",
        "sk-short",
        "AIza",
        "AKIA1234",
        "AKIAIOSFODNN7EXAMPLEMORE",
        "eyJ not a jwt",
        "bearer",
    ] {
        assert_eq!(redact_text(s), s);
    }
}

#[test]
fn non_ascii_text_around_secrets_survives() {
    let s = format!("clé «{GATEWAY}» für 日本");
    assert_eq!(redact_text(&s), "clé «sk-gw-***» für 日本");
}

#[test]
fn credential_headers_are_masked_in_raw_heads_and_debug_dumps() {
    assert_eq!(
        redact_text("POST / HTTP/1.1\r\nx-goog-api-key: abc123\r\nhost: h\r\n"),
        "POST / HTTP/1.1\r\nx-goog-api-key: ***\r\nhost: h\r\n"
    );
    assert_eq!(redact_text("Authorization: Bearer plain123\n"), "Authorization: Bearer ***\n");
    assert_eq!(redact_text("api-key:plain123"), "api-key:***");
    assert_eq!(
        redact_text(r#"headers: {"x-goog-api-key": "plain1", "cookie": "a=b", "host": "h"}"#),
        r#"headers: {"x-goog-api-key": "***", "cookie": "***", "host": "h"}"#
    );
    // A debug-printed byte string, as Pingora logs the heads it writes.
    assert_eq!(
        redact_text(r#"b"POST / HTTP/1.1\r\nx-api-key: anth0002\r\nauthorization: Bearer oa0001\r\n\r\n""#),
        r#"b"POST / HTTP/1.1\r\nx-api-key: ***\r\nauthorization: Bearer ***\r\n\r\n""#
    );
    // Not a header line: a word that only contains a header name, or no colon.
    assert_eq!(redact_text("my-api-key: 1"), "my-api-key: 1");
    assert_eq!(redact_text("send `x-api-key` or `api-key`"), "send `x-api-key` or `api-key`");
}
