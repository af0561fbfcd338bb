//! Instants as plain `u64` nanoseconds, so routing state fits in atomics. No clock is read
//! here except once, for the process-wide epoch; callers pass `now` (tests pass fake instants).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A fixed instant well before any `now` the process will see (a day before the first call
/// when the monotonic clock allows it), so `since_epoch` never saturates at zero in practice.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400))
            .or_else(|| now.checked_sub(Duration::from_secs(60)))
            .unwrap_or(now)
    })
}

/// `now` as nanoseconds since [`epoch`]; never `0`, so `0` can mean "never".
pub fn since_epoch(now: Instant) -> u64 {
    nanos(now.saturating_duration_since(epoch())).max(1)
}

/// The instant `ns` nanoseconds after [`epoch`].
pub fn at(ns: u64) -> Instant {
    epoch() + Duration::from_nanos(ns)
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
