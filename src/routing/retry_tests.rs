//! Tests for `retry.rs`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use super::retry::{
    backoff, backoff_with, classify, classify_at, parse_retry_after, Outcome, MAX_RETRY_AFTER,
};

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

#[test]
fn success_statuses_are_success() {
    for s in [200, 201, 204, 304] {
        assert_eq!(classify(s, &HeaderMap::new(), None), Outcome::Success, "{s}");
    }
}

#[test]
fn status_429_and_anthropic_529_are_quota_errors() {
    assert_eq!(classify(429, &HeaderMap::new(), None), quota(None));
    assert_eq!(classify(529, &HeaderMap::new(), Some("overloaded_error")), quota(None));
    assert_eq!(classify(529, &HeaderMap::new(), None), quota(None));
}

#[test]
fn server_errors_and_408_are_transient() {
    for s in [500, 502, 503, 504, 408] {
        assert_eq!(classify(s, &HeaderMap::new(), None), Outcome::Transient, "{s}");
    }
}

#[test]
fn client_errors_are_not_retried() {
    for s in [400, 401, 403, 404, 413, 422] {
        assert_eq!(classify(s, &HeaderMap::new(), None), Outcome::Client, "{s}");
    }
}

#[test]
fn bedrock_throttling_is_quota_from_the_error_type_or_the_amzn_header() {
    assert_eq!(classify(400, &HeaderMap::new(), Some("ThrottlingException")), quota(None));
    let h = headers(&[(
        "x-amzn-errortype",
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
    )]);
    assert_eq!(classify(400, &h, None), quota(None));
    let h = headers(&[("x-amzn-errortype", "ValidationException:http://internal")]);
    assert_eq!(classify(400, &h, None), Outcome::Client);
}

#[test]
fn gemini_resource_exhausted_is_quota() {
    assert_eq!(classify(429, &HeaderMap::new(), Some("RESOURCE_EXHAUSTED")), quota(None));
    assert_eq!(classify(400, &HeaderMap::new(), Some("RESOURCE_EXHAUSTED")), quota(None));
}

#[test]
fn unavailable_error_types_are_transient_whatever_the_status() {
    assert_eq!(classify(400, &HeaderMap::new(), Some("ServiceUnavailableException")), Outcome::Transient);
    assert_eq!(classify(503, &HeaderMap::new(), Some("UNAVAILABLE")), Outcome::Transient);
}

#[test]
fn retry_after_in_seconds_is_read() {
    let h = headers(&[("retry-after", "2")]);
    assert_eq!(classify(429, &h, None), quota(Some(2)));
    let h = headers(&[("retry-after", " 1.5 ")]);
    assert_eq!(classify(429, &h, None), Outcome::Quota { retry_after: Some(Duration::from_millis(1500)) });
}

#[test]
fn retry_after_as_an_http_date_is_read_relative_to_now() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
    let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
    assert_eq!(classify_at(429, &h, None, now), quota(Some(10)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
}

#[test]
fn retry_after_ms_wins_over_retry_after() {
    let h = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
    assert_eq!(classify(429, &h, None), Outcome::Quota { retry_after: Some(Duration::from_millis(250)) });
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
