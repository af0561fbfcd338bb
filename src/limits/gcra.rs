//! A lock-free token bucket in GCRA form: one `AtomicU64` holds the theoretical arrival time
//! (TAT) in nanoseconds of the caller's monotonic clock. Capacity = `limit`, refilled
//! continuously at `limit` per [`WINDOW`]. No clock is read here: `now` is passed in.
//!
//! The state is "debt" = `TAT - now` (0 when the bucket is full, [`WINDOW`] when empty). A
//! demand of `n` units costs `n · WINDOW / limit` ns of debt and is admitted iff the new debt
//! stays within the window. So a full bucket admits exactly `limit` units at once and then
//! `limit` per minute. Because the state is a fraction of the window, a limit that changes
//! between calls keeps the bucket's fill level as a fraction (half used stays half used).
//!
//! Rounding: the cost of a demand is rounded down to whole nanoseconds, so over a minute a
//! bucket may over-admit by less than `limit / 60e9` units per admission (never a whole unit
//! for limits below 245,000 per minute).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The refill window: limits are per minute.
pub const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_NS: u64 = 60_000_000_000;

/// Why a demand was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deny {
    /// The demand is larger than the bucket's capacity: it can never be admitted.
    TooLarge,
    /// Not now; the demand could be admitted after this long.
    Wait(Duration),
}

/// What a bucket looks like at an instant (for rate-limit headers and the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub limit: u64,
    /// Whole units that could be admitted now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// One GCRA bucket. `Default` is a full bucket.
#[derive(Debug, Default)]
pub struct Gcra {
    tat: AtomicU64,
}

// === impl Gcra ===

impl Gcra {
    /// Take `n` units at `now` if the bucket holds them; a refused demand takes nothing.
    /// Returns the bucket's level after the take.
    pub fn take(&self, n: u64, limit: u64, now: u64) -> Result<Level, Deny> {
        if n > limit {
            return Err(Deny::TooLarge);
        }
        let cost = cost_ns(n, limit);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now).saturating_add(cost);
            let debt = new_tat - now;
            if debt > WINDOW_NS {
                return Err(Deny::Wait(Duration::from_nanos(debt - WINDOW_NS)));
            }
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(level_at(new_tat, limit, now)),
                Err(seen) => tat = seen,
            }
        }
    }

    /// Give `n` units back (a reservation larger than the actual use, or a rollback). Never
    /// fills the bucket beyond full.
    pub fn refund(&self, n: u64, limit: u64, now: u64) {
        let cost = cost_ns(n, limit);
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
            Some(tat.saturating_sub(cost).max(now.min(tat)))
        });
    }

    /// Charge `n` units whether or not the bucket holds them (actual use above the
    /// reservation). The debt may exceed the window: later demands then wait longer.
    pub fn force(&self, n: u64, limit: u64, now: u64) {
        let cost = cost_ns(n, limit);
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| Some(tat.max(now).saturating_add(cost)));
    }

    /// The bucket's level at `now`, without taking anything.
    pub fn level(&self, limit: u64, now: u64) -> Level {
        level_at(self.tat.load(Ordering::Acquire), limit, now)
    }
}

/// Nanoseconds of debt for `n` units at `limit` per window (`limit` 0 counts as 1 so the
/// arithmetic stays defined; a zero limit refuses every demand as too large anyway).
fn cost_ns(n: u64, limit: u64) -> u64 {
    let c = u128::from(n) * u128::from(WINDOW_NS) / u128::from(limit.max(1));
    u64::try_from(c).unwrap_or(u64::MAX)
}

fn level_at(tat: u64, limit: u64, now: u64) -> Level {
    let debt = tat.saturating_sub(now);
    let free = WINDOW_NS.saturating_sub(debt);
    let remaining = u128::from(free) * u128::from(limit) / u128::from(WINDOW_NS);
    Level {
        limit,
        remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
        reset: Duration::from_nanos(debt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_admits_exactly_its_limit_at_once() {
        for limit in [1, 7, 60, 600, 6_000, 100_000] {
            let b = Gcra::default();
            let now = 1_000 * S;
            let mut n = 0;
            while b.take(1, limit, now).is_ok() {
                n += 1;
                assert!(n <= limit, "limit {limit} over-admitted");
            }
            assert_eq!(n, limit, "limit {limit}");
        }
    }

    #[test]
    fn after_the_burst_admissions_follow_the_refill_rate() {
        // rpm 60 offered a request every 10 ms for 10 s: 60 at once + 10 refilled.
        let b = Gcra::default();
        let start = 1_000 * S;
        let mut admitted = 0;
        let mut t = start;
        while t <= start + 10 * S {
            if b.take(1, 60, t).is_ok() {
                admitted += 1;
            }
            t += 10_000_000;
        }
        assert!((69..=71).contains(&admitted), "admitted {admitted}, expected 70 ± 1");
    }

    #[test]
    fn a_refused_demand_takes_nothing_and_says_how_long_to_wait() {
        let b = Gcra::default();
        let now = 1_000 * S;
        assert!(b.take(90, 100, now).is_ok());
        let before = b.level(100, now);
        // 20 more need 10 more units: 10 units at 100/min = 6 s.
        assert_eq!(b.take(20, 100, now), Err(Deny::Wait(Duration::from_secs(6))));
        assert_eq!(b.level(100, now), before);
        assert_eq!(before.remaining, 10);
        // And after exactly that wait, it is admitted.
        assert!(b.take(20, 100, now + 6 * S).is_ok());
    }

    #[test]
    fn a_demand_above_capacity_is_too_large() {
        let b = Gcra::default();
        assert_eq!(b.take(101, 100, S), Err(Deny::TooLarge));
        assert_eq!(b.take(1, 0, S), Err(Deny::TooLarge));
        assert_eq!(b.level(100, S).remaining, 100);
    }

    #[test]
    fn refund_frees_units_but_never_beyond_full() {
        let b = Gcra::default();
        let now = 1_000 * S;
        b.take(1_000, 1_000, now).ok();
        assert_eq!(b.level(1_000, now).remaining, 0);
        b.refund(400, 1_000, now);
        assert_eq!(b.level(1_000, now).remaining, 400);
        b.refund(5_000, 1_000, now);
        assert_eq!(b.level(1_000, now), Level { limit: 1_000, remaining: 1_000, reset: Duration::ZERO });
        assert!(b.take(1_000, 1_000, now).is_ok());
    }

    #[test]
    fn force_charges_beyond_capacity_and_later_demands_wait_it_out() {
        let b = Gcra::default();
        let now = 1_000 * S;
        b.force(2_000, 1_000, now);
        assert_eq!(b.level(1_000, now).reset, Duration::from_secs(120));
        // One unit needs the debt to fall to 60 s - 60 ms.
        assert_eq!(b.take(1, 1_000, now), Err(Deny::Wait(Duration::from_millis(60_060))));
    }

    #[test]
    fn headers_level_counts_whole_units_and_time_to_full() {
        let b = Gcra::default();
        let now = 1_000 * S;
        let l = b.take(15, 60, now).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(l, Level { limit: 60, remaining: 45, reset: Duration::from_secs(15) });
        assert_eq!(b.level(60, now + 5 * S).remaining, 50);
    }
}
