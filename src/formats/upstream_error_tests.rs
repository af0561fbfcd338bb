use super::*;

const S: Option<Duration> = Some(Duration::from_secs(7));

fn class(format: Format, status: u16, body: &str) -> (ErrorKind, Retry) {
    let c = classify_upstream_error(format, status, S, None, body.as_bytes());
    (c.kind, c.retry)
}

fn quota() -> Retry {
    Retry::Quota { retry_after: S }
}

#[test]
fn openai_errors() {
    let f = Format::OpenAiChat;
    let rl = r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#;
    assert_eq!(class(f, 429, rl), (ErrorKind::RateLimited, quota()));
    let iq = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
    assert_eq!(class(f, 429, iq), (ErrorKind::BudgetExceeded, quota()));
    let ctx =
        r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    assert_eq!(class(f, 400, ctx), (ErrorKind::InvalidRequest, Retry::No));
    // `invalid_request_error` also comes with 401 and 404: the status decides there.
    let key = r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    assert_eq!(class(f, 401, key), (ErrorKind::Authentication, Retry::NextTarget));
    let nokey =
        r#"{"error":{"message":"You didn't provide an API key","type":"invalid_request_error","code":null}}"#;
    assert_eq!(class(f, 401, nokey), (ErrorKind::Authentication, Retry::NextTarget));
    let model =
        r#"{"error":{"message":"no such model","type":"invalid_request_error","code":"model_not_found"}}"#;
    assert_eq!(class(f, 404, model), (ErrorKind::NotFound, Retry::NextTarget));
    let server = r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#;
    assert_eq!(class(f, 500, server), (ErrorKind::UpstreamError, Retry::NextTarget));
    assert_eq!(class(f, 503, "<html>down</html>"), (ErrorKind::Overloaded, quota()));
    assert_eq!(class(f, 502, "<html>502 Bad Gateway</html>"), (ErrorKind::UpstreamError, Retry::NextTarget));
    assert_eq!(class(f, 504, ""), (ErrorKind::UpstreamTimeout, Retry::NextTarget));
    let c = classify_upstream_error(Format::OpenAiResponses, 429, None, None, rl.as_bytes());
    assert_eq!(c.kind, ErrorKind::RateLimited);
    assert_eq!(c.retry, Retry::Quota { retry_after: None });
    assert_eq!((c.message.as_str(), c.provider_code.as_deref()), ("slow down", Some("rate_limit_exceeded")));
}

#[test]
fn anthropic_errors_including_overloaded_529() {
    let f = Format::Anthropic;
    let body = |t: &str| format!(r#"{{"type":"error","error":{{"type":"{t}","message":"m"}}}}"#);
    assert_eq!(class(f, 529, &body("overloaded_error")), (ErrorKind::Overloaded, quota()));
    assert_eq!(class(f, 529, ""), (ErrorKind::Overloaded, quota()));
    assert_eq!(class(f, 429, &body("rate_limit_error")), (ErrorKind::RateLimited, quota()));
    assert_eq!(class(f, 402, &body("billing_error")), (ErrorKind::BudgetExceeded, quota()));
    assert_eq!(class(f, 400, &body("invalid_request_error")), (ErrorKind::InvalidRequest, Retry::No));
    assert_eq!(class(f, 413, &body("request_too_large")), (ErrorKind::RequestTooLarge, Retry::No));
    assert_eq!(class(f, 401, &body("authentication_error")), (ErrorKind::Authentication, Retry::NextTarget));
    assert_eq!(class(f, 403, &body("permission_error")), (ErrorKind::PermissionDenied, Retry::NextTarget));
    assert_eq!(class(f, 404, &body("not_found_error")), (ErrorKind::NotFound, Retry::NextTarget));
    assert_eq!(class(f, 500, &body("api_error")), (ErrorKind::UpstreamError, Retry::NextTarget));
    assert_eq!(class(f, 504, &body("timeout_error")), (ErrorKind::UpstreamTimeout, Retry::NextTarget));
    // The named type wins over the status.
    assert_eq!(class(f, 500, &body("overloaded_error")), (ErrorKind::Overloaded, quota()));
}

#[test]
fn gemini_errors() {
    let f = Format::Gemini;
    let body = |code: u16, status: &str| {
        format!(r#"{{"error":{{"code":{code},"message":"m","status":"{status}"}}}}"#)
    };
    assert_eq!(class(f, 429, &body(429, "RESOURCE_EXHAUSTED")), (ErrorKind::RateLimited, quota()));
    assert_eq!(class(f, 400, &body(400, "RESOURCE_EXHAUSTED")), (ErrorKind::RateLimited, quota()));
    assert_eq!(class(f, 503, &body(503, "UNAVAILABLE")), (ErrorKind::Overloaded, quota()));
    assert_eq!(class(f, 500, &body(500, "INTERNAL")), (ErrorKind::UpstreamError, Retry::NextTarget));
    assert_eq!(
        class(f, 504, &body(504, "DEADLINE_EXCEEDED")),
        (ErrorKind::UpstreamTimeout, Retry::NextTarget)
    );
    assert_eq!(class(f, 400, &body(400, "INVALID_ARGUMENT")), (ErrorKind::InvalidRequest, Retry::No));
    assert_eq!(
        class(f, 403, &body(403, "PERMISSION_DENIED")),
        (ErrorKind::PermissionDenied, Retry::NextTarget)
    );
    // The JSON-array form, and an unknown status name falling back to the code.
    let arr = format!("[{}]", body(429, "RESOURCE_EXHAUSTED"));
    assert_eq!(class(f, 429, &arr), (ErrorKind::RateLimited, quota()));
    assert_eq!(class(f, 200, &body(404, "SOMETHING_NEW")), (ErrorKind::NotFound, Retry::NextTarget));
}

#[test]
fn bedrock_errors_from_the_header_or_the_body() {
    let f = Format::Bedrock;
    let typed = |status: u16, header: &str, body: &str| {
        let c = classify_upstream_error(f, status, S, Some(header), body.as_bytes());
        (c.kind, c.retry)
    };
    let msg = r#"{"message":"Too many requests, please wait before trying again."}"#;
    let thr = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/";
    assert_eq!(typed(429, thr, msg), (ErrorKind::RateLimited, quota()));
    assert_eq!(typed(400, "LimitExceededException", msg), (ErrorKind::RateLimited, quota()));
    assert_eq!(typed(400, "ServiceQuotaExceededException", msg), (ErrorKind::RateLimited, quota()));
    assert_eq!(typed(429, "ModelNotReadyException", msg), (ErrorKind::Overloaded, Retry::SameTargetLater));
    assert_eq!(typed(503, "ServiceUnavailableException", msg), (ErrorKind::Overloaded, quota()));
    assert_eq!(typed(408, "ModelTimeoutException", msg), (ErrorKind::UpstreamTimeout, Retry::NextTarget));
    assert_eq!(typed(500, "InternalServerException", msg), (ErrorKind::UpstreamError, Retry::NextTarget));
    assert_eq!(typed(424, "ModelErrorException", msg), (ErrorKind::UpstreamError, Retry::NextTarget));
    assert_eq!(typed(400, "ValidationException", msg), (ErrorKind::InvalidRequest, Retry::No));
    assert_eq!(typed(403, "AccessDeniedException", msg), (ErrorKind::PermissionDenied, Retry::NextTarget));
    // Without the header, the body's `__type` names it.
    let body = r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"slow"}"#;
    let c = classify_upstream_error(f, 400, None, None, body.as_bytes());
    assert_eq!((c.kind, c.retry), (ErrorKind::RateLimited, Retry::Quota { retry_after: None }));
    assert_eq!(
        (c.message.as_str(), c.provider_code.as_deref()),
        ("ThrottlingException: slow", Some("ThrottlingException"))
    );
    assert_eq!(class(f, 429, ""), (ErrorKind::RateLimited, quota()));
}

#[test]
fn every_format_decode_error_agrees_with_the_table() {
    let bodies = [
        "",
        "<html>oops</html>",
        r#"{"error":{"type":"overloaded_error","message":"x"}}"#,
        r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"x"}}"#,
        r#"{"error":{"code":"insufficient_quota","type":"insufficient_quota","message":"x"}}"#,
        r#"{"__type":"ThrottlingException","message":"x"}"#,
    ];
    for format in
        [Format::OpenAiChat, Format::OpenAiResponses, Format::Anthropic, Format::Gemini, Format::Bedrock]
    {
        for status in [400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504, 529] {
            for body in bodies {
                let c = classify_upstream_error(format, status, None, None, body.as_bytes());
                assert_eq!(
                    super::super::decode_error(format, status, body.as_bytes()),
                    (c.kind, c.message.clone())
                );
                assert_eq!(c.retry, retry_for(c.kind, c.provider_code.as_deref(), None));
            }
        }
    }
}
