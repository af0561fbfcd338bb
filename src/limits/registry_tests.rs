//! Tests of the admission step with injected time: bursts and refill, all-or-none across
//! scopes, settle and drop, budgets under real concurrency, periods and alerts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::limits::{AlertKind, BudgetRule, Demand, Dimension, ScopeId, ScopeRules};

const S: u64 = 1_000_000_000;
const T0: u64 = 1_000 * S;

/// 2026-03-04T10:00:00Z (a Wednesday).
fn wall(secs_after: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_772_618_400 + secs_after)
}

fn rpm(n: u64) -> ScopeRules {
    ScopeRules { rpm: Some(n), ..ScopeRules::default() }
}

fn budget(micros: u64, period: BudgetPeriod, alert_at: Option<f64>) -> ScopeRules {
    ScopeRules {
        budget: Some(BudgetRule { limit_micros: micros, period, alert_at }),
        ..ScopeRules::default()
    }
}

fn admit(
    reg: &LimitsRegistry,
    scopes: &[(ScopeId, &ScopeRules)],
    tokens: u64,
    cost: u64,
    now: u64,
) -> Result<Reservation, Refusal> {
    reg.admit(scopes, Demand { tokens, cost_micros: cost, input_tokens: 0 }, now, wall(0))
}

#[test]
fn a_burst_admits_exactly_rpm_then_the_refill_rate() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = rpm(60);
    let scopes = [(key.clone(), &rules)];
    let mut kept = Vec::new();
    let mut admitted = 0;
    // Burst at T0: exactly 60.
    while let Ok(r) = admit(&reg, &scopes, 0, 0, T0) {
        kept.push(r);
        admitted += 1;
        assert!(admitted <= 60);
    }
    assert_eq!(admitted, 60);
    // Then every 10 ms for 10 s: one per second refills, 10 more.
    let mut t = T0;
    while t <= T0 + 10 * S {
        if let Ok(r) = admit(&reg, &scopes, 0, 0, t) {
            kept.push(r);
            admitted += 1;
        }
        t += 10_000_000;
    }
    assert!((69..=71).contains(&admitted), "admitted {admitted}, expected 70 ± 1");
    for r in kept {
        r.settle(0, 0, t, wall(10));
    }
}

#[test]
fn a_refused_request_takes_nothing_and_gives_the_real_wait() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = ScopeRules { rpm: Some(2), tpm: Some(1_000), max_parallel: Some(5), ..ScopeRules::default() };
    let scopes = [(key.clone(), &rules)];
    let a = admit(&reg, &scopes, 450, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    let b = admit(&reg, &scopes, 450, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    let before = reg.state(&key, &rules, T0, wall(0));
    let r = admit(&reg, &scopes, 10, 0, T0).err().unwrap_or_else(|| panic!("third request admitted"));
    assert_eq!((r.dimension, r.limit, r.too_large), (Dimension::Rpm, 2, false));
    // rpm 2: one request refills every 30 s.
    assert_eq!(r.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(reg.state(&key, &rules, T0, wall(0)), before);
    assert_eq!(before.in_flight, 2);
    assert_eq!(before.tpm.map(|w| w.remaining), Some(100));
    // 30 s later: a request fits RPM again, TPM has refilled 500 (600 left) and 700 do not
    // fit; 100 more refill in 6 s. The RPM slot taken before TPM refused is given back.
    let r2 = admit(&reg, &scopes, 700, 0, T0 + 30 * S).err().unwrap_or_else(|| panic!("admitted"));
    assert_eq!((r2.dimension, r2.requested, r2.remaining), (Dimension::Tpm, 700, 600));
    assert_eq!(r2.retry_after, Some(Duration::from_secs(6)));
    let v = reg.state(&key, &rules, T0 + 30 * S, wall(0));
    assert_eq!((v.rpm.map(|w| w.remaining), v.in_flight), (Some(1), 2));
    assert!(admit(&reg, &scopes, 700, 0, T0 + 36 * S).map(|r| r.settle(700, 0, T0, wall(0))).is_ok());
    a.settle(450, 0, T0, wall(0));
    b.settle(450, 0, T0, wall(0));
}

#[test]
fn a_tpm_demand_above_capacity_is_too_large_naming_the_numbers() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("search-prod");
    let rules = ScopeRules { tpm: Some(200_000), rpm: Some(10), ..ScopeRules::default() };
    let r = admit(&reg, &[(key.clone(), &rules)], 250_000, 0, T0).err().unwrap_or_else(|| panic!("admitted"));
    assert_eq!(
        (r.dimension, r.limit, r.requested, r.too_large, r.retry_after),
        (Dimension::Tpm, 200_000, 250_000, true, None)
    );
    assert!(r.to_string().contains("250000 tokens"), "{r}");
    // Nothing was taken, not even the request.
    let v = reg.state(&key, &rules, T0, wall(0));
    assert_eq!(v.rpm.map(|w| w.remaining), Some(10));
    assert_eq!(v.in_flight, 0);
}

#[test]
fn settling_below_the_reservation_refunds_tokens_and_above_it_charges_more() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = ScopeRules { tpm: Some(10_000), ..ScopeRules::default() };
    let scopes = [(key.clone(), &rules)];
    let r = admit(&reg, &scopes, 8_000, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.headers().tokens.map(|l| l.remaining), Some(2_000));
    assert_eq!(r.reserved_tokens(), 8_000);
    r.settle(1_500, 0, T0, wall(0));
    assert_eq!(reg.state(&key, &rules, T0, wall(0)).tpm.map(|w| w.remaining), Some(8_500));
    // Now 8,000 fit again.
    let r = admit(&reg, &scopes, 8_000, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    r.settle(9_000, 0, T0, wall(0));
    assert_eq!(reg.state(&key, &rules, T0, wall(0)).tpm.map(|w| w.remaining), Some(0));
    // 10,500 used of 10,000 per minute: 1 token waits until 501 have refilled (3.006 s).
    let e = admit(&reg, &scopes, 1, 0, T0).err().unwrap_or_else(|| panic!("admitted"));
    assert_eq!(e.retry_after, Some(Duration::from_millis(3_006)));
}

#[test]
fn a_project_refusal_leaves_the_key_untouched() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let project = ScopeId::project("p");
    let key_rules = ScopeRules {
        rpm: Some(100),
        tpm: Some(100_000),
        max_parallel: Some(10),
        budget: Some(BudgetRule { limit_micros: 1_000_000, period: BudgetPeriod::Daily, alert_at: None }),
    };
    let project_rules = budget(50_000, BudgetPeriod::Monthly, None);
    let scopes = [(key.clone(), &key_rules), (project.clone(), &project_rules)];
    let before = reg.state(&key, &key_rules, T0, wall(0));
    let r = reg
        .admit(&scopes, Demand { tokens: 5_000, cost_micros: 60_000, input_tokens: 0 }, T0, wall(0))
        .err()
        .unwrap_or_else(|| panic!("admitted over the project budget"));
    assert_eq!((r.dimension, r.scope.clone(), r.too_large), (Dimension::Budget, project.clone(), true));
    let r = reg
        .admit(&scopes, Demand { tokens: 5_000, cost_micros: 40_000, input_tokens: 0 }, T0, wall(0))
        .unwrap_or_else(|e| panic!("{e}"));
    r.settle(5_000, 40_000, T0, wall(0));
    let after_one = reg.state(&key, &key_rules, T0, wall(0));
    // The project has 10,000 left: a 20,000 estimate is refused by the project, and the key,
    // already charged by then, is rolled back to exactly where it was.
    let e = reg
        .admit(&scopes, Demand { tokens: 5_000, cost_micros: 20_000, input_tokens: 0 }, T0, wall(0))
        .err()
        .unwrap_or_else(|| panic!("admitted"));
    assert_eq!((e.dimension, e.scope, e.remaining, e.too_large), (Dimension::Budget, project, 10_000, false));
    assert_eq!(reg.state(&key, &key_rules, T0, wall(0)), after_one);
    assert_ne!(after_one, before);
    assert_eq!(after_one.rpm.map(|w| w.remaining), Some(99));
    assert_eq!(after_one.budget.map(|b| b.spent_micros), Some(40_000));
}

#[test]
fn parallel_slots_are_freed_by_settle_and_by_drop() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = ScopeRules { max_parallel: Some(2), ..ScopeRules::default() };
    let scopes = [(key.clone(), &rules)];
    let a = admit(&reg, &scopes, 0, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    let b = admit(&reg, &scopes, 0, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    let e = admit(&reg, &scopes, 0, 0, T0).err().unwrap_or_else(|| panic!("third admitted"));
    assert_eq!((e.dimension, e.limit, e.retry_after), (Dimension::Parallel, 2, Some(Duration::from_secs(1))));
    a.settle(0, 0, T0, wall(0));
    assert_eq!(reg.state(&key, &rules, T0, wall(0)).in_flight, 1);
    drop(b);
    assert_eq!(reg.state(&key, &rules, T0, wall(0)).in_flight, 0);
    let c = admit(&reg, &scopes, 0, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    let d = admit(&reg, &scopes, 0, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    c.settle(0, 0, T0, wall(0));
    d.settle(0, 0, T0, wall(0));
}

#[test]
fn a_dropped_reservation_keeps_its_charges_as_spent() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = ScopeRules {
        tpm: Some(10_000),
        budget: Some(BudgetRule { limit_micros: 1_000_000, period: BudgetPeriod::Daily, alert_at: None }),
        ..ScopeRules::default()
    };
    let scopes = [(key.clone(), &rules)];
    let r = reg.admit(&scopes, Demand { tokens: 4_000, cost_micros: 300_000, input_tokens: 0 }, T0, wall(0));
    drop(r);
    let v = reg.state(&key, &rules, T0, wall(0));
    assert_eq!(v.in_flight, 0);
    assert_eq!(v.tpm.map(|w| w.remaining), Some(6_000));
    let b = v.budget.unwrap_or_else(|| panic!("no budget view"));
    assert_eq!((b.spent_micros, b.reserved_micros, b.remaining_micros), (300_000, 0, 700_000));
    // A panic while the request holds it takes the same path.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _r =
            reg.admit(&scopes, Demand { tokens: 1_000, cost_micros: 100_000, input_tokens: 0 }, T0, wall(0));
        panic!("handler bug");
    }));
    assert!(caught.is_err());
    let v = reg.state(&key, &rules, T0, wall(0));
    assert_eq!((v.in_flight, v.budget.map(|b| b.spent_micros)), (0, Some(400_000)));
}

#[test]
fn thirty_threads_never_overspend_a_small_budget() {
    // Each request reserves its maximum cost (1,000 µ$) and costs 0..=1,000 in the end.
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let project = ScopeId::project("p");
    let key_rules = budget(1_000_000, BudgetPeriod::Daily, Some(0.5));
    let project_rules = budget(250_000, BudgetPeriod::Daily, None);
    let scopes = [(key.clone(), &key_rules), (project.clone(), &project_rules)];
    let admitted = std::sync::atomic::AtomicU64::new(0);
    let alerts = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..30u64 {
            let (reg, scopes, admitted, alerts) = (&reg, &scopes, &admitted, &alerts);
            s.spawn(move || {
                let mut refused_in_a_row = 0;
                let mut i = 0u64;
                while refused_in_a_row < 200 {
                    i += 1;
                    match reg.admit(
                        scopes,
                        Demand { tokens: 0, cost_micros: 1_000, input_tokens: 0 },
                        T0,
                        wall(0),
                    ) {
                        Ok(r) => {
                            refused_in_a_row = 0;
                            admitted.fetch_add(1, Ordering::Relaxed);
                            std::thread::yield_now();
                            let actual = (t * 7_919 + i * 104_729) % 1_001;
                            let st = r.settle(0, actual, T0, wall(0));
                            alerts.fetch_add(st.alerts.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert_eq!(e.dimension, Dimension::Budget);
                            refused_in_a_row += 1;
                            std::thread::yield_now();
                        }
                    }
                }
            });
        }
    });
    let p = reg.state(&project, &project_rules, T0, wall(0)).budget.unwrap_or_else(|| panic!("no view"));
    let k = reg.state(&key, &key_rules, T0, wall(0)).budget.unwrap_or_else(|| panic!("no view"));
    assert!(p.spent_micros <= 250_000, "project overspent: {}", p.spent_micros);
    // Every request settled: nothing left reserved, and the key saw the same spend.
    assert_eq!((p.reserved_micros, k.reserved_micros), (0, 0));
    assert_eq!(k.spent_micros, p.spent_micros);
    // The budget was used up to within one request's maximum cost.
    assert!(p.spent_micros > 250_000 - 1_000, "stopped early at {}", p.spent_micros);
    assert!(admitted.load(Ordering::Relaxed) >= 250);
    // Project exhausted once (its limit), key threshold (500,000) never reached.
    assert!(alerts.load(Ordering::Relaxed) <= 1);
}

#[test]
fn thirty_threads_spending_exactly_their_estimate_use_the_budget_exactly() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = budget(100_000, BudgetPeriod::Total, None);
    let scopes = [(key.clone(), &rules)];
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..30 {
            s.spawn(|| loop {
                match reg.admit(&scopes, Demand { tokens: 0, cost_micros: 700, input_tokens: 0 }, T0, wall(0))
                {
                    Ok(r) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        r.settle(0, 700, T0, wall(0));
                    }
                    Err(e) => {
                        // Spent for good: a total budget never clears by waiting.
                        if e.retry_after.is_none() {
                            return;
                        }
                        std::thread::yield_now();
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 100_000 / 700);
    let b = reg.state(&key, &rules, T0, wall(0)).budget.unwrap_or_else(|| panic!("no view"));
    assert_eq!((b.spent_micros, b.reserved_micros), (142 * 700, 0));
}

#[test]
fn a_new_utc_day_resets_the_budget_and_the_refusal_says_when() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = budget(10_000, BudgetPeriod::Daily, None);
    let scopes = [(key.clone(), &rules)];
    let evening = wall(13 * 3_600); // 23:00 UTC
    let r = reg
        .admit(&scopes, Demand { tokens: 0, cost_micros: 8_000, input_tokens: 0 }, T0, evening)
        .unwrap_or_else(|e| panic!("{e}"));
    r.settle(0, 9_000, T0, evening);
    let e = reg
        .admit(&scopes, Demand { tokens: 0, cost_micros: 2_000, input_tokens: 0 }, T0, evening)
        .err()
        .unwrap_or_else(|| panic!("admitted"));
    assert_eq!(e.retry_after, Some(Duration::from_secs(3_600)));
    let after_midnight = wall(14 * 3_600 + 1);
    let v = reg.state(&key, &rules, T0, after_midnight).budget.unwrap_or_else(|| panic!("no view"));
    assert_eq!((v.spent_micros, v.period_start.as_str()), (0, "2026-03-05T00:00:00Z"));
    let r = reg.admit(&scopes, Demand { tokens: 0, cost_micros: 9_500, input_tokens: 0 }, T0, after_midnight);
    assert!(r.is_ok());
}

#[test]
fn an_alert_is_reported_once_per_period() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = budget(10_000, BudgetPeriod::Daily, Some(0.5));
    let scopes = [(key.clone(), &rules)];
    let spend = |cost: u64, w: SystemTime| {
        reg.admit(&scopes, Demand { tokens: 0, cost_micros: cost, input_tokens: 0 }, T0, w)
            .unwrap_or_else(|e| panic!("{e}"))
            .settle(0, cost, T0, w)
            .alerts
    };
    assert!(spend(4_000, wall(0)).is_empty());
    let a = spend(2_000, wall(0));
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].kind, a[0].spent_micros, a[0].limit_micros), (AlertKind::Threshold, 6_000, 10_000));
    assert_eq!(a[0].scope, key);
    assert!(spend(1_000, wall(0)).is_empty());
    let a = spend(3_000, wall(0));
    assert_eq!(a.iter().map(|a| a.kind).collect::<Vec<_>>(), vec![AlertKind::Exhausted]);
    // Next day: the threshold fires again, once.
    let tomorrow = wall(86_400);
    assert_eq!(spend(6_000, tomorrow).len(), 1);
    assert!(spend(1_000, tomorrow).is_empty());
    let json = serde_json::to_value(&spend(3_000, tomorrow)[0]).unwrap_or_default();
    assert_eq!(json["period_start"], "2026-03-05T00:00:00Z");
    assert_eq!(json["kind"], "exhausted");
}

#[test]
fn headers_come_from_the_tightest_scope() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let project = ScopeId::project("p");
    let key_rules = ScopeRules { rpm: Some(600), tpm: Some(1_000), ..ScopeRules::default() };
    let project_rules = ScopeRules { rpm: Some(60), tpm: Some(100_000), ..ScopeRules::default() };
    let scopes = [(key.clone(), &key_rules), (project.clone(), &project_rules)];
    let r = admit(&reg, &scopes, 400, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    let h = *r.headers();
    assert_eq!(h.requests, Some(Level { limit: 60, remaining: 59, reset: Duration::from_secs(1) }));
    assert_eq!(h.tokens, Some(Level { limit: 1_000, remaining: 600, reset: Duration::from_secs(24) }));
    assert_eq!(
        h.pairs(),
        vec![
            ("x-ratelimit-limit-requests", "60".to_string()),
            ("x-ratelimit-remaining-requests", "59".to_string()),
            ("x-ratelimit-reset-requests", "1s".to_string()),
            ("x-ratelimit-limit-tokens", "1000".to_string()),
            ("x-ratelimit-remaining-tokens", "600".to_string()),
            ("x-ratelimit-reset-tokens", "24s".to_string()),
        ]
    );
    assert_eq!(reg.rate_headers(&scopes, T0), h);
    r.settle(400, 0, T0, wall(0));
}

#[test]
fn go_durations_read_like_openais() {
    assert_eq!(go_duration(Duration::ZERO), "0s");
    assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    assert_eq!(go_duration(Duration::from_millis(1_500)), "1.5s");
    assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
    assert_eq!(go_duration(Duration::from_millis(85_200)), "1m25.2s");
    assert_eq!(go_duration(Duration::from_secs(3_723)), "1h2m3s");
}

#[test]
fn a_changed_limit_applies_on_the_next_request() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let low = rpm(2);
    for _ in 0..2 {
        admit(&reg, &[(key.clone(), &low)], 0, 0, T0).unwrap_or_else(|e| panic!("{e}")).settle(
            0,
            0,
            T0,
            wall(0),
        );
    }
    assert!(admit(&reg, &[(key.clone(), &low)], 0, 0, T0).is_err());
    // Raised to 600: the bucket keeps its fill level (empty) and refills at 10 per second.
    let high = rpm(600);
    assert!(admit(&reg, &[(key.clone(), &high)], 0, 0, T0).is_err());
    let mut n = 0;
    while admit(&reg, &[(key.clone(), &high)], 0, 0, T0 + S).map(|r| r.settle(0, 0, T0, wall(0))).is_ok() {
        n += 1;
    }
    assert_eq!(n, 10);
}

#[test]
fn seeded_spend_counts_against_the_budget_and_shows_in_the_view() {
    let reg = LimitsRegistry::new();
    let key = ScopeId::key("k");
    let rules = budget(50_000_000, BudgetPeriod::Monthly, None);
    reg.seed_spend(key.clone(), BudgetPeriod::Monthly, 49_990_000, wall(0));
    let e = reg
        .admit(
            &[(key.clone(), &rules)],
            Demand { tokens: 0, cost_micros: 20_000, input_tokens: 0 },
            T0,
            wall(0),
        )
        .err()
        .unwrap_or_else(|| panic!("admitted"));
    assert_eq!((e.dimension, e.remaining), (Dimension::Budget, 10_000));
    // Until the month ends: 2026-04-01T00:00:00Z is 27 days 14 hours after wall(0).
    assert_eq!(e.retry_after, Some(Duration::from_secs(27 * 86_400 + 14 * 3_600)));
    let v = reg.state(&key, &rules, T0, wall(0));
    let json = serde_json::to_value(&v).unwrap_or_default();
    assert_eq!(json["scope"], serde_json::json!({"kind": "key", "name": "k"}));
    assert_eq!(json["budget"]["spent_micros"], 49_990_000);
    assert_eq!(json["budget"]["period_start"], "2026-03-01T00:00:00Z");
    assert_eq!(json["budget"]["period_end"], "2026-04-01T00:00:00Z");
    assert_eq!(json["budget"]["limit_usd"], 50.0);
    assert_eq!(json["in_flight"], 0);
}

#[test]
fn prune_forgets_unwanted_idle_scopes_only() {
    let reg = LimitsRegistry::new();
    let rules = rpm(10);
    let gone = ScopeId::key("gone");
    let busy = ScopeId::key("busy");
    let kept = ScopeId::key("kept");
    admit(&reg, &[(gone.clone(), &rules)], 0, 0, T0).unwrap_or_else(|e| panic!("{e}")).settle(
        0,
        0,
        T0,
        wall(0),
    );
    admit(&reg, &[(kept.clone(), &rules)], 0, 0, T0).unwrap_or_else(|e| panic!("{e}")).settle(
        0,
        0,
        T0,
        wall(0),
    );
    let r = admit(&reg, &[(busy.clone(), &rules)], 0, 0, T0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reg.len(), 3);
    reg.prune(|id| *id == kept);
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.state(&kept, &rules, T0, wall(0)).rpm.map(|w| w.remaining), Some(9));
    r.settle(0, 0, T0, wall(0));
    reg.prune(|id| *id == kept);
    assert_eq!(reg.len(), 1);
}
