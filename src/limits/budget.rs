//! One scope's budget counters in integer micro-dollars, lock-free: `committed` = spent this
//! period + reservations outstanding (what admission checks), `spent` = actual cost settled
//! this period. Admission reserves an estimate if `committed + estimate <= limit`; settling
//! replaces the estimate by the actual cost. A new UTC period resets `spent` and keeps the
//! outstanding reservations (they settle into the period they end in, as the usage log's
//! `time` does, so a spend rebuild agrees).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::period::{period_id, same_kind};
use crate::config::BudgetPeriod;

/// Budget counters of one scope. `Default` is "nothing spent, no period seen yet".
#[derive(Debug, Default)]
pub struct BudgetState {
    committed: AtomicU64,
    spent: AtomicU64,
    /// `period_id` of the period the counters belong to (0 = none yet).
    period: AtomicU64,
    /// `period_id + 1` of the last period whose `alert_at` threshold was reported.
    alerted: AtomicU64,
    /// `period_id + 1` of the last period whose exhaustion was reported.
    exhausted: AtomicU64,
}

/// Why a reservation was refused: what was committed at the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Over {
    pub committed: u64,
    pub spent: u64,
}

/// A once-per-period event from [`BudgetState::crossings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossing {
    /// Spend reached `alert_at × limit`.
    Threshold,
    /// Spend reached the limit.
    Exhausted,
}

// === impl BudgetState ===

impl BudgetState {
    /// Move the counters into the period of `wall` if it is a later one (or the budget's
    /// period kind changed). Only ever moves forward; one caller does the reset.
    pub fn roll(&self, period: BudgetPeriod, wall: SystemTime) -> u64 {
        let id = period_id(period, wall);
        let mut seen = self.period.load(Ordering::Acquire);
        loop {
            if seen == id || (same_kind(seen, id) && seen > id) {
                return seen;
            }
            match self.period.compare_exchange(seen, id, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // Spent leaves, reservations stay. Settles racing with this are additive
                    // (they update `committed` before `spent`), so the counters stay consistent.
                    let old = self.spent.swap(0, Ordering::AcqRel);
                    self.committed.fetch_sub(old, Ordering::AcqRel);
                    return id;
                }
                Err(now_seen) => seen = now_seen,
            }
        }
    }

    /// Reserve `micros` if it fits under `limit`; a refusal takes nothing.
    pub fn reserve(&self, micros: u64, limit: u64) -> Result<(), Over> {
        let mut c = self.committed.load(Ordering::Acquire);
        loop {
            if c.checked_add(micros).is_none_or(|after| after > limit) {
                return Err(Over { committed: c, spent: self.spent.load(Ordering::Acquire) });
            }
            match self.committed.compare_exchange_weak(c, c + micros, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => c = seen,
            }
        }
    }

    /// Give back a reservation that was never used (rollback of a refused admission).
    pub fn release(&self, micros: u64) {
        self.committed.fetch_sub(micros, Ordering::AcqRel);
    }

    /// Replace a reservation of `reserved` by the actual cost. Returns the spend after.
    pub fn settle(&self, reserved: u64, actual: u64) -> u64 {
        // `committed` first, then `spent` (see `roll`): committed never dips below spent.
        if actual >= reserved {
            self.committed.fetch_add(actual - reserved, Ordering::AcqRel);
        } else {
            self.committed.fetch_sub(reserved - actual, Ordering::AcqRel);
        }
        self.spent.fetch_add(actual, Ordering::AcqRel).saturating_add(actual)
    }

    /// Report each crossing at most once per period: the threshold `alert_at` (micros) and
    /// the limit, given the spend after a settle.
    pub fn crossings(
        &self,
        period: u64,
        spent: u64,
        alert_at: Option<u64>,
        limit: u64,
    ) -> [Option<Crossing>; 2] {
        let once = |flag: &AtomicU64| flag.swap(period + 1, Ordering::AcqRel) != period + 1;
        let threshold = match alert_at {
            Some(a) if spent >= a && once(&self.alerted) => Some(Crossing::Threshold),
            _ => None,
        };
        let exhausted = (spent >= limit && once(&self.exhausted)).then_some(Crossing::Exhausted);
        [threshold, exhausted]
    }

    /// Set the spend of the current period (start-up seeding from the usage log).
    pub fn seed(&self, period: BudgetPeriod, wall: SystemTime, micros: u64) {
        self.roll(period, wall);
        let old = self.spent.swap(micros, Ordering::AcqRel);
        if micros >= old {
            self.committed.fetch_add(micros - old, Ordering::AcqRel);
        } else {
            self.committed.fetch_sub(old - micros, Ordering::AcqRel);
        }
    }

    /// `(spent, reserved)` now.
    pub fn read(&self) -> (u64, u64) {
        let spent = self.spent.load(Ordering::Acquire);
        let committed = self.committed.load(Ordering::Acquire);
        (spent, committed.saturating_sub(spent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn day(n: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + n * 86_400 + 3_600)
    }

    #[test]
    fn reserve_refuses_beyond_the_limit_and_takes_nothing() {
        let b = BudgetState::default();
        b.roll(BudgetPeriod::Daily, day(0));
        assert!(b.reserve(600, 1_000).is_ok());
        assert_eq!(b.reserve(401, 1_000), Err(Over { committed: 600, spent: 0 }));
        assert!(b.reserve(400, 1_000).is_ok());
        assert_eq!(b.read(), (0, 1_000));
    }

    #[test]
    fn settle_replaces_the_reservation_by_the_actual_cost() {
        let b = BudgetState::default();
        b.roll(BudgetPeriod::Daily, day(0));
        b.reserve(500, 1_000).ok();
        assert_eq!(b.settle(500, 120), 120);
        assert_eq!(b.read(), (120, 0));
        b.reserve(500, 1_000).ok();
        assert_eq!(b.settle(500, 700), 820);
        assert_eq!(b.read(), (820, 0));
    }

    #[test]
    fn a_new_period_resets_spend_and_keeps_reservations_in_flight() {
        let b = BudgetState::default();
        b.roll(BudgetPeriod::Daily, day(0));
        b.reserve(300, 1_000).ok();
        b.settle(300, 300);
        b.reserve(200, 1_000).ok(); // in flight across midnight
        assert_eq!(b.read(), (300, 200));
        // An earlier instant (a clock a little behind) never rolls back.
        b.roll(BudgetPeriod::Daily, day(0));
        assert_eq!(b.read(), (300, 200));
        b.roll(BudgetPeriod::Daily, day(1));
        assert_eq!(b.read(), (0, 200));
        b.roll(BudgetPeriod::Daily, day(0));
        assert_eq!(b.read(), (0, 200));
        b.settle(200, 150);
        assert_eq!(b.read(), (150, 0));
    }

    #[test]
    fn crossings_are_reported_once_per_period() {
        let b = BudgetState::default();
        let p0 = b.roll(BudgetPeriod::Daily, day(0));
        assert_eq!(b.crossings(p0, 700, Some(800), 1_000), [None, None]);
        assert_eq!(b.crossings(p0, 800, Some(800), 1_000), [Some(Crossing::Threshold), None]);
        assert_eq!(b.crossings(p0, 900, Some(800), 1_000), [None, None]);
        assert_eq!(b.crossings(p0, 1_000, Some(800), 1_000), [None, Some(Crossing::Exhausted)]);
        assert_eq!(b.crossings(p0, 1_100, Some(800), 1_000), [None, None]);
        let p1 = b.roll(BudgetPeriod::Daily, day(1));
        assert_ne!(p0, p1);
        assert_eq!(
            b.crossings(p1, 1_000, Some(800), 1_000),
            [Some(Crossing::Threshold), Some(Crossing::Exhausted)]
        );
    }

    #[test]
    fn seeding_sets_the_current_spend() {
        let b = BudgetState::default();
        b.seed(BudgetPeriod::Monthly, day(0), 4_000);
        assert_eq!(b.read(), (4_000, 0));
        assert!(b.reserve(1_001, 5_000).is_err());
        b.seed(BudgetPeriod::Monthly, day(0), 1_000);
        assert_eq!(b.read(), (1_000, 0));
        assert!(b.reserve(4_000, 5_000).is_ok());
    }
}
