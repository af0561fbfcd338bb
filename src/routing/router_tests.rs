//! Tests for `router.rs`: availability, `tried`/`last` skipping, probes and cool-downs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::circuit::CircuitConfig;
use super::router::AliasRouter;
use super::targets::{Failure, TargetKey, Targets};

const CB: CircuitConfig = CircuitConfig { failure_threshold: 2, cooldown: Duration::from_secs(30) };

fn router(names: &[(&str, u32)]) -> (Arc<Targets>, AliasRouter) {
    let reg = Targets::new();
    let states = names.iter().map(|(p, _)| reg.target(&TargetKey::new(*p, "m"), CB)).collect();
    let weights: Vec<u32> = names.iter().map(|(_, w)| *w).collect();
    (reg.clone(), AliasRouter::new(states, &weights))
}

fn count(r: &AliasRouter, n: usize, now: Instant) -> Vec<usize> {
    let mut c = vec![0; r.len()];
    for _ in 0..n {
        c[r.pick(&[], None, now).unwrap()] += 1;
    }
    c
}

#[test]
fn picks_follow_the_weights() {
    let (_, r) = router(&[("a", 3), ("b", 1)]);
    assert_eq!(count(&r, 400, Instant::now()), vec![300, 100]);
}

#[test]
fn an_open_circuit_sends_all_picks_to_the_others_in_their_weight_ratio() {
    let (_, r) = router(&[("a", 3), ("b", 2), ("c", 1)]);
    let now = Instant::now();
    r.target(1).on_failure(Failure::Status(503), now);
    r.target(1).on_failure(Failure::Connect, now);
    assert!(!r.target(1).is_available(now));
    assert_eq!(count(&r, 400, now), vec![300, 0, 100]);
}

#[test]
fn tried_targets_are_skipped() {
    let (_, r) = router(&[("a", 1), ("b", 1), ("c", 1)]);
    let now = Instant::now();
    for _ in 0..20 {
        let p = r.pick(&[0, 2], None, now);
        assert_eq!(p, Some(1));
    }
    assert_eq!(r.pick(&[0, 1, 2], None, now), None);
}

#[test]
fn the_last_target_is_not_retried_when_another_is_available() {
    let (_, r) = router(&[("a", 100), ("b", 1)]);
    let now = Instant::now();
    for _ in 0..20 {
        assert_eq!(r.pick(&[], Some(0), now), Some(1));
    }
}

#[test]
fn the_last_target_is_retried_when_it_is_the_only_one_left() {
    let (_, r) = router(&[("a", 1), ("b", 1)]);
    let now = Instant::now();
    assert_eq!(r.pick(&[1], Some(0), now), Some(0));
    let (_, single) = router(&[("only", 1)]);
    assert_eq!(single.pick(&[], Some(0), now), Some(0));
}

#[test]
fn a_half_open_target_is_given_to_one_request_only() {
    let (_, r) = router(&[("a", 1)]);
    let t0 = Instant::now();
    r.target(0).on_failure(Failure::Timeout, t0);
    r.target(0).on_failure(Failure::Timeout, t0);
    assert_eq!(r.pick(&[], None, t0 + Duration::from_secs(1)), None);
    let t1 = t0 + Duration::from_secs(31);
    assert_eq!(r.pick(&[], None, t1), Some(0));
    assert_eq!(r.pick(&[], None, t1), None, "the probe is in flight");
    r.target(0).on_success(Duration::from_millis(5));
    assert_eq!(r.pick(&[], None, t1), Some(0));
}

#[test]
fn a_quota_retry_after_of_two_seconds_cools_the_target_down_for_two_seconds() {
    let (_, r) = router(&[("a", 1), ("b", 1)]);
    let t0 = Instant::now();
    r.target(0).on_failure(Failure::Quota { retry_after: Some(Duration::from_secs(2)) }, t0);
    assert!(!r.target(0).is_available(t0));
    assert!(!r.target(0).is_available(t0 + Duration::from_millis(1999)));
    assert_eq!(count(&r, 10, t0 + Duration::from_secs(1)), vec![0, 10]);
    assert!(r.target(0).is_available(t0 + Duration::from_secs(2)));
    assert_eq!(count(&r, 10, t0 + Duration::from_secs(2)), vec![5, 5]);
}

#[test]
fn an_unhealthy_provider_takes_all_its_targets_out() {
    let reg = Targets::new();
    let a1 = reg.target(&TargetKey::new("a", "m1"), CB);
    let a2 = reg.target(&TargetKey::new("a", "m2"), CB);
    let b = reg.target(&TargetKey::new("b", "m1"), CB);
    let r = AliasRouter::new(vec![a1, a2, b], &[1, 1, 1]);
    reg.provider("a").set(false, Some("503".into()));
    let now = Instant::now();
    assert_eq!(count(&r, 9, now), vec![0, 0, 9]);
    reg.provider("a").set(true, None);
    assert_eq!(count(&r, 9, now), vec![3, 3, 3]);
}
