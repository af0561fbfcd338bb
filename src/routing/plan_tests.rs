//! Tests for `plan.rs`: the attempt order across targets and fallbacks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::circuit::CircuitConfig;
use super::plan::AttemptPlan;
use super::retry::{Outcome, Retry};
use super::router::AliasRouter;
use super::targets::{Failure, TargetKey, Targets};

fn alias(reg: &Targets, providers: &[&str]) -> Arc<AliasRouter> {
    let cb = CircuitConfig { failure_threshold: 5, cooldown: Duration::from_secs(30) };
    let states = providers.iter().map(|p| reg.target(&TargetKey::new(*p, "m"), cb)).collect();
    Arc::new(AliasRouter::new(states, &vec![1; providers.len()]))
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

const MS: Duration = Duration::from_millis(10);

#[test]
fn a_success_ends_the_plan_after_one_attempt() {
    let reg = Targets::new();
    let mut plan = AttemptPlan::new(vec![(7, alias(&reg, &["a", "b"]))], 3, far());
    let now = Instant::now();
    let step = plan.next(now).unwrap();
    assert_eq!((step.alias, step.wait), (7, Duration::ZERO));
    assert_eq!(plan.answered(&step, 200, Retry::No, MS, now), Outcome::Success);
    assert_eq!(plan.next(now), None);
    assert_eq!(plan.attempts(), 1);
}

#[test]
fn transient_errors_switch_target_at_once_then_back_off_before_a_revisit_then_fall_back() {
    let reg = Targets::new();
    let chain = vec![(0, alias(&reg, &["a", "b"])), (1, alias(&reg, &["c"]))];
    let mut plan = AttemptPlan::new(chain, 3, far());
    let now = Instant::now();
    let s1 = plan.next(now).unwrap();
    plan.failed(&s1, Failure::Connect, now);
    let s2 = plan.next(now).unwrap();
    assert_ne!(s1.target, s2.target, "never the same target twice in a row");
    assert_eq!(s2.wait, Duration::ZERO, "a fresh target needs no backoff");
    plan.answered(&s2, 502, Retry::NextTarget, MS, now);
    let s3 = plan.next(now).unwrap();
    assert_eq!((s3.alias, s3.target), (0, s1.target), "third attempt revisits the first target");
    assert!(s3.wait <= Duration::from_millis(100));
    plan.failed(&s3, Failure::Timeout, now);
    let s4 = plan.next(now).unwrap();
    assert_eq!((s4.alias, s4.chain_pos, s4.target), (1, 1, 0), "max_attempts reached: fallback alias");
    plan.failed(&s4, Failure::Connect, now);
    let s5 = plan.next(now).unwrap();
    assert_eq!((s5.alias, s5.target), (1, 0), "single-target fallback retries itself");
    plan.failed(&s5, Failure::Connect, now);
    let s6 = plan.next(now).unwrap();
    plan.failed(&s6, Failure::Connect, now);
    assert_eq!(plan.next(now), None);
    assert_eq!(plan.attempts(), 6);
}

#[test]
fn a_quota_error_on_a_single_target_alias_goes_straight_to_the_fallback() {
    let reg = Targets::new();
    let chain = vec![(0, alias(&reg, &["a"])), (1, alias(&reg, &["b"]))];
    let mut plan = AttemptPlan::new(chain, 3, far());
    let now = Instant::now();
    let s1 = plan.next(now).unwrap();
    let outcome =
        plan.answered(&s1, 429, Retry::Quota { retry_after: Some(Duration::from_secs(2)) }, MS, now);
    assert_eq!(outcome, Outcome::Quota { retry_after: Some(Duration::from_secs(2)) });
    let s2 = plan.next(now).unwrap();
    assert_eq!((s2.alias, s2.wait), (1, Duration::ZERO));
    assert!(!reg.get(&TargetKey::new("a", "m")).unwrap().is_available(now + Duration::from_secs(1)));
}

#[test]
fn a_client_error_is_final() {
    let reg = Targets::new();
    let mut plan = AttemptPlan::new(vec![(0, alias(&reg, &["a", "b"]))], 3, far());
    let now = Instant::now();
    let s1 = plan.next(now).unwrap();
    assert_eq!(plan.answered(&s1, 400, Retry::No, MS, now), Outcome::Client);
    assert_eq!(plan.next(now), None);
    let t = reg.get(&TargetKey::new(["a", "b"][s1.target], "m")).unwrap();
    assert_eq!(t.snapshot().failures, 0, "a client error is not the target's fault");
}

#[test]
fn no_attempt_starts_past_the_deadline() {
    let reg = Targets::new();
    let now = Instant::now();
    let mut plan = AttemptPlan::new(vec![(0, alias(&reg, &["a"]))], 3, now + Duration::from_millis(1));
    let s1 = plan.next(now).unwrap();
    plan.failed(&s1, Failure::Timeout, now);
    assert_eq!(plan.next(now + Duration::from_millis(1)), None);
}

#[test]
fn unavailable_aliases_are_skipped() {
    let reg = Targets::new();
    let chain = vec![(0, alias(&reg, &["down"])), (1, alias(&reg, &["up"]))];
    reg.provider("down").set(false, None);
    let mut plan = AttemptPlan::new(chain, 3, far());
    assert_eq!(plan.next(Instant::now()).unwrap().alias, 1);
}

#[test]
fn when_every_target_is_cooling_down_attempts_go_to_the_ones_that_recover_first() {
    use super::targets::{Failure, TargetKey, Targets};
    use super::{AliasRouter, AttemptPlan, CircuitConfig};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let reg = Targets::new();
    let cfg = CircuitConfig { failure_threshold: 100, cooldown: Duration::from_secs(30) };
    let a = reg.target(&TargetKey::new("p", "a"), cfg);
    let b = reg.target(&TargetKey::new("p", "b"), cfg);
    let now = Instant::now();
    a.on_failure(Failure::Quota { retry_after: Some(Duration::from_secs(5)) }, now);
    b.on_failure(Failure::Quota { retry_after: Some(Duration::from_secs(2)) }, now);
    let router = Arc::new(AliasRouter::new(vec![a, b], &[1, 1]));
    let mut plan = AttemptPlan::new(vec![(0, router)], 3, now + Duration::from_secs(60));
    let step = plan.next(now).expect("a panic attempt");
    assert_eq!(step.target, 1, "b's cool-down ends first");
    plan.failed(&step, Failure::Quota { retry_after: Some(Duration::from_secs(2)) }, now);
    assert_eq!(plan.next(now).map(|s| s.target), Some(0), "then the other cooling target");
    assert_eq!(plan.next(now), None, "each cooling target at most once");
}

#[test]
fn a_target_still_loading_is_passed_over_without_a_failure_against_it() {
    let reg = Targets::new();
    let mut plan = AttemptPlan::new(vec![(0, alias(&reg, &["a", "b"]))], 3, far());
    let now = Instant::now();
    let s1 = plan.next(now).unwrap();
    assert_eq!(plan.answered(&s1, 429, Retry::SameTargetLater, MS, now), Outcome::NotReady);
    let s2 = plan.next(now).unwrap();
    assert_ne!(s1.target, s2.target, "the other target is tried next");
    let t = reg.get(&TargetKey::new(["a", "b"][s1.target], "m")).unwrap();
    let snap = t.snapshot();
    assert_eq!((snap.attempts, snap.failures, snap.consecutive_failures), (1, 0, 0));
    assert!(snap.cooling_down_ms.is_some(), "a short cool-down so others go first");
    assert!(snap.last_error.unwrap().message.contains("not ready"));
}
