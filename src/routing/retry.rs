//! Retry policy: what an attempt's outcome means ([`classify`]), how long a `retry-after`
//! asks us to wait ([`retry_after`]), and how long to back off before retrying a transient
//! error ([`backoff`]). Pure functions; the proxy drives the attempts and the sleeping.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// What one upstream attempt's answer means for routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 1xx–3xx: the answer goes to the client.
    Success,
    /// Rate or quota limit (429, Anthropic 529 `overloaded_error`, Bedrock
    /// `ThrottlingException`, Gemini `RESOURCE_EXHAUSTED`): switch target at once and cool
    /// this one down for `retry_after` (or [`DEFAULT_QUOTA_COOLDOWN`] when absent).
    Quota { retry_after: Option<Duration> },
    /// 408 and 5xx: retry (another target when there is one) after [`backoff`].
    Transient,
    /// Any other 4xx (400, 401, 403, 404, 413, 422, ...): the request itself is wrong or not
    /// allowed; another target would say the same. Not retried.
    Client,
}

/// Cool-down after a quota error that carried no `retry-after`.
pub const DEFAULT_QUOTA_COOLDOWN: Duration = Duration::from_secs(1);

/// The longest `retry-after` we honour; a provider asking for an hour (daily quota) still
/// gets the target back within this, and the next 429 cools it down again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Provider error types (the `type`/`status`/`code` field of the error body, or AWS's
/// `x-amzn-errortype`) that mean "rate or quota limited", whatever the HTTP status.
const QUOTA_ERROR_TYPES: &[&str] = &[
    "ThrottlingException",
    "ServiceQuotaExceededException",
    "TooManyRequestsException",
    "RESOURCE_EXHAUSTED",
    "rate_limit_error",
    "rate_limit_exceeded",
    "overloaded_error",
    "insufficient_quota",
];

/// Error types that mean "try again, maybe elsewhere", whatever the HTTP status.
const TRANSIENT_ERROR_TYPES: &[&str] = &[
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelTimeoutException",
    "ModelNotReadyException",
    "UNAVAILABLE",
    "INTERNAL",
    "DEADLINE_EXCEEDED",
    "api_error",
    "server_error",
];

/// Classifies an upstream answer from its status, headers and, when the proxy has parsed the
/// error body, the provider's error type (e.g. `"RESOURCE_EXHAUSTED"`). Bedrock's
/// `x-amzn-errortype` header (`ThrottlingException:http://...`) is read when `error_type` is
/// `None`. `retry-after` is read relative to the system clock.
pub fn classify(status: u16, headers: &HeaderMap, error_type: Option<&str>) -> Outcome {
    classify_at(status, headers, error_type, SystemTime::now())
}

/// [`classify`] with the wall clock given (for `retry-after` HTTP-dates).
pub fn classify_at(status: u16, headers: &HeaderMap, error_type: Option<&str>, now: SystemTime) -> Outcome {
    if status < 400 {
        return Outcome::Success;
    }
    let amzn = headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok());
    let kind = error_type.or(amzn).map(|t| t.split(':').next().unwrap_or(t).trim());
    let quota = || Outcome::Quota { retry_after: retry_after(headers, now) };
    if let Some(kind) = kind {
        if QUOTA_ERROR_TYPES.contains(&kind) {
            return quota();
        }
        if TRANSIENT_ERROR_TYPES.contains(&kind) {
            return Outcome::Transient;
        }
    }
    match status {
        429 | 529 => quota(),
        408 | 500..=599 => Outcome::Transient,
        _ => Outcome::Client,
    }
}

/// How long the upstream asks us to wait: `retry-after-ms` (OpenAI, Azure) or `retry-after`
/// as delta-seconds (fractions allowed) or an HTTP-date (relative to `now`; a date in the
/// past is zero). Capped at [`MAX_RETRY_AFTER`]. `None` when absent or unparsable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = headers.get("retry-after-ms").and_then(|v| v.to_str().ok());
    if let Some(ms) = ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        return secs(ms / 1000.0);
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Parses one `retry-after` value: `"2"`, `"1.5"` or `"Wed, 21 Oct 2015 07:28:00 GMT"`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(s) = value.parse::<f64>() {
        return secs(s);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// Backoff before retry number `attempt` (0 = the first retry) of a transient error:
/// "full jitter", a uniform random duration in `[0, min(max, base * 2^attempt)]`, and never
/// more than `deadline_left` (the request's remaining time budget). The caller should give
/// up instead of retrying when `deadline_left` is too small to be worth an attempt.
pub fn backoff(attempt: u32, base: Duration, max: Duration, deadline_left: Duration) -> Duration {
    backoff_with(&mut fastrand::Rng::new(), attempt, base, max, deadline_left)
}

/// [`backoff`] with the random source given (seeded in tests).
pub fn backoff_with(
    rng: &mut fastrand::Rng,
    attempt: u32,
    base: Duration,
    max: Duration,
    deadline_left: Duration,
) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
    let cap = base.saturating_mul(factor).min(max).min(deadline_left);
    let cap_ns = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=cap_ns))
}
