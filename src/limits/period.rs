//! UTC budget periods: which period a wall-clock instant falls in, when it started and when
//! the next one starts. Daily periods start at 00:00 UTC, weekly ones on Monday 00:00 UTC,
//! monthly ones on the 1st at 00:00 UTC; `total` is one period that never ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::config::BudgetPeriod;

const DAY: u64 = 86_400;

/// The period `wall` falls in: an id that grows with time within one period kind (the kind
/// is in the top byte, so a budget whose period kind changed sees a new id).
pub fn period_id(period: BudgetPeriod, wall: SystemTime) -> u64 {
    let days = unix_secs(wall) / DAY;
    let (tag, index) = match period {
        BudgetPeriod::Daily => (1, days),
        // 1970-01-01 was a Thursday: Monday 1969-12-29 is day -3.
        BudgetPeriod::Weekly => (2, (days + 3) / 7),
        BudgetPeriod::Monthly => {
            let (y, m, _) = civil_from_days(days);
            (3, y * 12 + m - 1)
        }
        BudgetPeriod::Total => (4, 0),
    };
    (tag << 56) | (index & ((1 << 56) - 1))
}

/// Whether two ids name periods of the same kind.
pub fn same_kind(a: u64, b: u64) -> bool {
    a >> 56 == b >> 56
}

/// When the period containing `wall` started (the Unix epoch for `total`).
pub fn period_start(period: BudgetPeriod, wall: SystemTime) -> SystemTime {
    let days = unix_secs(wall) / DAY;
    let start_day = match period {
        BudgetPeriod::Daily => days,
        BudgetPeriod::Weekly => ((days + 3) / 7 * 7).saturating_sub(3),
        BudgetPeriod::Monthly => days - civil_from_days(days).2 + 1,
        BudgetPeriod::Total => 0,
    };
    UNIX_EPOCH + Duration::from_secs(start_day * DAY)
}

/// When the period after the one containing `wall` starts; `None` for `total`.
pub fn next_period_start(period: BudgetPeriod, wall: SystemTime) -> Option<SystemTime> {
    let start = period_start(period, wall);
    match period {
        BudgetPeriod::Daily => Some(start + Duration::from_secs(DAY)),
        BudgetPeriod::Weekly => Some(start + Duration::from_secs(7 * DAY)),
        BudgetPeriod::Monthly => {
            let (y, m, _) = civil_from_days(unix_secs(start) / DAY);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Some(UNIX_EPOCH + Duration::from_secs(days_from_civil(y, m, 1) * DAY))
        }
        BudgetPeriod::Total => None,
    }
}

/// RFC 3339 form of a wall-clock instant (seconds precision, UTC).
pub fn rfc3339(wall: SystemTime) -> String {
    let secs = i64::try_from(unix_secs(wall)).unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// `wall` in RFC 3339 UTC with its fraction of a second, as the `time` crate's `Rfc3339`
/// writes it (`2026-03-02T10:04:05.25Z`: no fraction when it is 0, else up to nine digits
/// with trailing zeros trimmed). This runs for every request's usage line, so the date and
/// time of day are formatted once per second per thread and the fraction by `itoa`; instants
/// before 1970 or after 9999 go through `time` whole.
pub fn rfc3339_fraction(wall: SystemTime) -> String {
    thread_local! {
        /// The last second formatted on this thread, without its `Z`.
        static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let d = match wall.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() < 253_402_300_800 => d,
        _ => {
            return time::OffsetDateTime::from(wall)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        }
    };
    let mut out = String::with_capacity(31);
    SECOND.with_borrow_mut(|(secs, text)| {
        if *secs != d.as_secs() {
            *text = rfc3339(UNIX_EPOCH + Duration::from_secs(d.as_secs()));
            text.pop(); // the `Z`
            *secs = d.as_secs();
        }
        out.push_str(text);
    });
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let mut digits = itoa::Buffer::new();
        // Nine digits with their leading zeros: those of 1_000_000_000 + nanos after the `1`.
        let nine = &digits.format(1_000_000_000 + nanos)[1..];
        out.push('.');
        out.push_str(nine.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Seconds since the Unix epoch (0 for earlier instants).
fn unix_secs(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `(year, month 1-12, day 1-31)` of the day `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`, integer only: this runs on every admission with a monthly budget).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

/// Days from 1970-01-01 to a date (H. Hinnant's `days_from_civil`), for dates after 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap_or(0))
    }

    #[test]
    fn daily_periods_turn_at_utc_midnight() {
        let a = at("2026-03-04T23:59:59Z");
        let b = at("2026-03-05T00:00:00Z");
        assert_ne!(period_id(BudgetPeriod::Daily, a), period_id(BudgetPeriod::Daily, b));
        assert!(period_id(BudgetPeriod::Daily, a) < period_id(BudgetPeriod::Daily, b));
        assert_eq!(period_start(BudgetPeriod::Daily, a), at("2026-03-04T00:00:00Z"));
        assert_eq!(next_period_start(BudgetPeriod::Daily, a), Some(b));
    }

    #[test]
    fn weekly_periods_start_on_monday() {
        // 2026-03-02 is a Monday.
        let sun = at("2026-03-01T12:00:00Z");
        let mon = at("2026-03-02T00:00:00Z");
        let wed = at("2026-03-04T08:00:00Z");
        assert_eq!(period_start(BudgetPeriod::Weekly, wed), mon);
        assert_eq!(period_start(BudgetPeriod::Weekly, sun), at("2026-02-23T00:00:00Z"));
        assert_eq!(period_id(BudgetPeriod::Weekly, mon), period_id(BudgetPeriod::Weekly, wed));
        assert_ne!(period_id(BudgetPeriod::Weekly, sun), period_id(BudgetPeriod::Weekly, mon));
        assert_eq!(next_period_start(BudgetPeriod::Weekly, wed), Some(at("2026-03-09T00:00:00Z")));
        // The epoch week: Thursday 1970-01-01 belongs to the week of Monday 1969-12-29.
        assert_eq!(
            period_start(BudgetPeriod::Weekly, at("1970-01-05T00:00:00Z")),
            at("1970-01-05T00:00:00Z")
        );
    }

    #[test]
    fn monthly_periods_follow_the_calendar() {
        let feb = at("2028-02-29T18:00:00Z");
        assert_eq!(period_start(BudgetPeriod::Monthly, feb), at("2028-02-01T00:00:00Z"));
        assert_eq!(next_period_start(BudgetPeriod::Monthly, feb), Some(at("2028-03-01T00:00:00Z")));
        let dec = at("2026-12-31T23:00:00Z");
        assert_eq!(next_period_start(BudgetPeriod::Monthly, dec), Some(at("2027-01-01T00:00:00Z")));
        assert!(
            period_id(BudgetPeriod::Monthly, dec)
                < period_id(BudgetPeriod::Monthly, at("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn integer_calendar_agrees_with_the_time_crate_every_day_for_400_years() {
        for days in 0..146_097u64 {
            let t = OffsetDateTime::from_unix_timestamp(i64::try_from(days * DAY).unwrap_or(0))
                .unwrap_or_else(|e| panic!("{e}"));
            let want =
                (u64::try_from(t.year()).unwrap_or(0), u64::from(u8::from(t.month())), u64::from(t.day()));
            assert_eq!(civil_from_days(days), want, "day {days}");
            assert_eq!(days_from_civil(want.0, want.1, want.2), days);
        }
    }

    #[test]
    fn total_is_one_endless_period_and_kinds_never_share_ids() {
        let a = at("2020-01-01T00:00:00Z");
        let b = at("2030-01-01T00:00:00Z");
        assert_eq!(period_id(BudgetPeriod::Total, a), period_id(BudgetPeriod::Total, b));
        assert_eq!(next_period_start(BudgetPeriod::Total, a), None);
        assert!(!same_kind(period_id(BudgetPeriod::Daily, a), period_id(BudgetPeriod::Monthly, a)));
        assert_eq!(rfc3339(at("2026-03-02T00:00:00Z")), "2026-03-02T00:00:00Z");
        // With a fraction: as the `time` crate writes it, for instants all over the range.
        let by_time = |w: SystemTime| {
            time::OffsetDateTime::from(w).format(&time::format_description::well_known::Rfc3339).unwrap()
        };
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = match i % 4 {
                0 => x % 253_402_300_800,
                1 => 1_700_000_000 + x % 100_000_000,
                2 => x % 86_400 * 3,
                _ => 951_782_400 + x % 1_000 * 86_400, // around 2000-02-29
            };
            let nanos = match i % 5 {
                0 => 0,
                1 => (x >> 32) as u32 % 1_000 * 1_000_000,
                2 => (x >> 32) as u32 % 10 * 100_000_000,
                _ => (x >> 32) as u32 % 1_000_000_000,
            };
            let w = UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            assert_eq!(rfc3339_fraction(w), by_time(w), "{secs}.{nanos:09}");
        }
        let before = UNIX_EPOCH - std::time::Duration::from_millis(1500);
        assert_eq!(rfc3339_fraction(before), by_time(before));
    }
}
