//! Tests for `retry.rs`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use super::retry::{
    backoff, backoff_with, outcome, parse_retry_after, retry_after, Outcome, Retry, MAX_RETRY_AFTER,
};
use crate::formats::{classify_upstream_error, Format};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn quota(secs: Option<u64>) -> Outcome {
    Outcome::Quota { retry_after: secs.map(Duration::from_secs) }
}

/// The whole path the proxy takes: the retry-after headers, the one error table, the outcome.
fn route_at(format: Format, status: u16, h: &HeaderMap, body: &str, now: SystemTime) -> Outcome {
    let amzn = h.get("x-amzn-errortype").and_then(|v| v.to_str().ok());
    let class = classify_upstream_error(format, status, retry_after(h, now), amzn, body.as_bytes());
    outcome(status, class.retry)
}

fn route(format: Format, status: u16, h: &HeaderMap, body: &str) -> Outcome {
    route_at(format, status, h, body, SystemTime::now())
}

const NONE: &str = "";

#[test]
fn success_statuses_are_success_whatever_the_class() {
    for s in [200, 201, 204, 304] {
        assert_eq!(outcome(s, Retry::No), Outcome::Success, "{s}");
        assert_eq!(route(Format::OpenAiChat, s, &HeaderMap::new(), NONE), Outcome::Success, "{s}");
    }
}

#[test]
fn status_429_and_anthropic_529_and_503_are_quota_errors() {
    assert_eq!(route(Format::OpenAiChat, 429, &HeaderMap::new(), NONE), quota(None));
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(route(Format::Anthropic, 529, &HeaderMap::new(), overloaded), quota(None));
    assert_eq!(route(Format::Anthropic, 529, &HeaderMap::new(), NONE), quota(None));
    assert_eq!(route(Format::OpenAiChat, 503, &HeaderMap::new(), NONE), quota(None));
}

#[test]
fn server_errors_timeouts_and_the_gateways_own_credentials_move_to_the_next_target() {
    for s in [500, 502, 504, 408, 401, 403, 404] {
        assert_eq!(route(Format::OpenAiChat, s, &HeaderMap::new(), NONE), Outcome::Transient, "{s}");
    }
}

#[test]
fn request_errors_are_not_retried() {
    for s in [400, 413, 422] {
        assert_eq!(route(Format::OpenAiChat, s, &HeaderMap::new(), NONE), Outcome::Client, "{s}");
    }
    let ctx =
        r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    assert_eq!(route(Format::OpenAiChat, 400, &HeaderMap::new(), ctx), Outcome::Client);
}

#[test]
fn bedrock_throttling_is_quota_from_the_body_or_the_amzn_header() {
    let body = r#"{"message":"Too many requests","__type":"ThrottlingException"}"#;
    assert_eq!(route(Format::Bedrock, 400, &HeaderMap::new(), body), quota(None));
    let h = headers(&[(
        "x-amzn-errortype",
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
    )]);
    assert_eq!(route(Format::Bedrock, 400, &h, NONE), quota(None));
    let h = headers(&[("x-amzn-errortype", "ValidationException:http://internal")]);
    assert_eq!(route(Format::Bedrock, 400, &h, NONE), Outcome::Client);
}

#[test]
fn a_bedrock_model_still_loading_is_not_a_failure() {
    let h = headers(&[("x-amzn-errortype", "ModelNotReadyException:http://internal")]);
    assert_eq!(route(Format::Bedrock, 429, &h, NONE), Outcome::NotReady);
}

#[test]
fn gemini_resource_exhausted_is_quota_whatever_the_status() {
    let body = r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#;
    assert_eq!(route(Format::Gemini, 429, &HeaderMap::new(), body), quota(None));
    assert_eq!(route(Format::Gemini, 400, &HeaderMap::new(), body), quota(None));
}

#[test]
fn unavailable_error_types_are_quota_whatever_the_status() {
    let body = r#"{"message":"busy","__type":"ServiceUnavailableException"}"#;
    assert_eq!(route(Format::Bedrock, 400, &HeaderMap::new(), body), quota(None));
    let body = r#"{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}"#;
    assert_eq!(route(Format::Gemini, 503, &HeaderMap::new(), body), quota(None));
}

#[test]
fn retry_after_in_seconds_is_read() {
    let h = headers(&[("retry-after", "2")]);
    assert_eq!(route(Format::OpenAiChat, 429, &h, NONE), quota(Some(2)));
    let h = headers(&[("retry-after", " 1.5 ")]);
    assert_eq!(
        route(Format::OpenAiChat, 429, &h, NONE),
        Outcome::Quota { retry_after: Some(Duration::from_millis(1500)) }
    );
}

#[test]
fn retry_after_as_an_http_date_is_read_relative_to_now() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
    let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
    assert_eq!(route_at(Format::OpenAiChat, 429, &h, NONE, now), quota(Some(10)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
}

#[test]
fn retry_after_ms_wins_over_retry_after() {
    let h = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
    assert_eq!(
        route(Format::OpenAiChat, 429, &h, NONE),
        Outcome::Quota { retry_after: Some(Duration::from_millis(250)) }
    );
}

#[test]
fn garbage_negative_and_huge_retry_after_values_are_handled() {
    let now = SystemTime::now();
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-3", now), None);
    assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
}

#[test]
fn backoff_is_exponential_with_full_jitter() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(10);
    let long = Duration::from_secs(60);
    let mut rng = fastrand::Rng::with_seed(7);
    for attempt in 0..6 {
        let cap = base * (1 << attempt);
        let samples: Vec<Duration> =
            (0..2000).map(|_| backoff_with(&mut rng, attempt, base, max, long)).collect();
        assert!(samples.iter().all(|d| *d <= cap), "attempt {attempt}");
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        assert!(mean > cap * 4 / 10 && mean < cap * 6 / 10, "attempt {attempt}: mean {mean:?} cap {cap:?}");
    }
}

#[test]
fn backoff_is_capped_by_max() {
    let mut rng = fastrand::Rng::with_seed(1);
    let max = Duration::from_secs(2);
    for _ in 0..1000 {
        assert!(backoff_with(&mut rng, 40, Duration::from_secs(1), max, Duration::from_secs(60)) <= max);
    }
}

#[test]
fn backoff_never_passes_the_deadline() {
    let left = Duration::from_millis(30);
    for attempt in 0..10 {
        assert!(backoff(attempt, Duration::from_millis(100), Duration::from_secs(10), left) <= left);
    }
    assert_eq!(
        backoff(3, Duration::from_millis(100), Duration::from_secs(10), Duration::ZERO),
        Duration::ZERO
    );
}
