//! Retry policy: what an attempt's outcome means ([`outcome`], from
//! `formats`' one error table), how long a `retry-after`
//! asks us to wait ([`retry_after`]), and how long to back off before retrying a transient
//! error ([`backoff`]). Pure functions; the proxy drives the attempts and the sleeping.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

pub use crate::formats::Retry;

/// What one upstream attempt's answer means for routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 1xx–3xx: the answer goes to the client.
    Success,
    /// Rate, quota or capacity limit (`Retry::Quota`): switch target at once and cool this
    /// one down for `retry_after` (or [`DEFAULT_QUOTA_COOLDOWN`] when absent).
    Quota { retry_after: Option<Duration> },
    /// The target failed (`Retry::NextTarget`: server error, timeout, its credentials or model
    /// mapping): retry (another target when there is one) after [`backoff`].
    Transient,
    /// The target is not ready yet (`Retry::SameTargetLater`, a model still loading): move
    /// on, cool it down briefly, without counting a failure against its circuit.
    NotReady,
    /// `Retry::No`: the request itself is wrong or not allowed; another target would say
    /// the same. Not retried.
    Client,
}

/// Cool-down after a quota error that carried no `retry-after`.
pub const DEFAULT_QUOTA_COOLDOWN: Duration = Duration::from_secs(1);

/// The longest `retry-after` we honour; a provider asking for an hour (daily quota) still
/// gets the target back within this, and the next 429 cools it down again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What an answer with `status` means for routing. The error's class comes from the one
/// table of upstream errors (`formats::classify_upstream_error`), so routing and the error
/// the client sees can never disagree; only success is read from the status here.
pub fn outcome(status: u16, retry: Retry) -> Outcome {
    if status < 400 {
        return Outcome::Success;
    }
    match retry {
        Retry::No => Outcome::Client,
        Retry::NextTarget => Outcome::Transient,
        Retry::SameTargetLater => Outcome::NotReady,
        Retry::Quota { retry_after } => Outcome::Quota { retry_after },
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
