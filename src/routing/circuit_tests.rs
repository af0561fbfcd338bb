//! Tests for `circuit.rs`. Time is injected: every `now` is `t0 + offset`, no sleeps.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::circuit::{CircuitBreaker, CircuitConfig, CircuitState};

fn breaker() -> (CircuitBreaker, Instant) {
    let cfg = CircuitConfig { failure_threshold: 3, cooldown: Duration::from_secs(30) };
    (CircuitBreaker::new(cfg), Instant::now())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let (cb, t0) = breaker();
    cb.record_failure(t0);
    cb.record_failure(t0);
    assert_eq!(cb.state(), CircuitState::Closed);
    assert!(cb.try_acquire(t0));
    cb.record_failure(t0);
    assert_eq!(cb.state(), CircuitState::Open);
}

#[test]
fn a_success_resets_the_consecutive_count() {
    let (cb, t0) = breaker();
    cb.record_failure(t0);
    cb.record_failure(t0);
    cb.record_success();
    cb.record_failure(t0);
    cb.record_failure(t0);
    assert_eq!(cb.state(), CircuitState::Closed);
    assert_eq!(cb.consecutive_failures(), 2);
}

#[test]
fn rejects_while_open() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    assert!(!cb.allows(t0 + secs(1)));
    assert!(!cb.try_acquire(t0 + secs(29)));
    assert_eq!(cb.state(), CircuitState::Open);
}

#[test]
fn half_opens_after_the_cooldown_admitting_exactly_one_probe() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    let t = t0 + secs(30) + Duration::from_millis(1);
    assert!(cb.allows(t));
    assert!(cb.try_acquire(t));
    assert_eq!(cb.state(), CircuitState::HalfOpen);
    assert!(!cb.allows(t));
    assert!(!cb.try_acquire(t));
}

#[test]
fn concurrent_callers_after_the_cooldown_get_one_probe_between_them() {
    for _ in 0..50 {
        let (cb, t0) = breaker();
        (0..3).for_each(|_| cb.record_failure(t0));
        let cb = Arc::new(cb);
        let t = t0 + secs(31);
        let barrier = Arc::new(Barrier::new(4));
        let wins: usize = (0..4)
            .map(|_| {
                let (cb, barrier) = (cb.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    cb.try_acquire(t)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1);
    }
}

#[test]
fn closes_on_the_probes_success() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    assert!(cb.try_acquire(t0 + secs(31)));
    cb.record_success();
    assert_eq!(cb.state(), CircuitState::Closed);
    assert!(cb.try_acquire(t0 + secs(31)));
    assert!(cb.try_acquire(t0 + secs(31)));
}

#[test]
fn reopens_on_the_probes_failure_for_another_cooldown() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    let t1 = t0 + secs(31);
    assert!(cb.try_acquire(t1));
    cb.record_failure(t1);
    assert_eq!(cb.state(), CircuitState::Open);
    assert!(!cb.try_acquire(t1 + secs(29)));
    assert!(cb.try_acquire(t1 + secs(30)));
}

#[test]
fn a_probe_that_never_reports_is_replaced_after_a_cooldown() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    let t1 = t0 + secs(30);
    assert!(cb.try_acquire(t1));
    assert!(!cb.try_acquire(t1 + secs(29)));
    assert!(cb.try_acquire(t1 + secs(30)));
    assert!(!cb.try_acquire(t1 + secs(30)));
}

#[test]
fn a_late_success_does_not_close_an_open_circuit() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    cb.record_success();
    assert_eq!(cb.state(), CircuitState::Open);
}

#[test]
fn a_reload_changes_threshold_and_cooldown_but_keeps_the_state() {
    let (cb, t0) = breaker();
    (0..3).for_each(|_| cb.record_failure(t0));
    cb.set_config(CircuitConfig { failure_threshold: 10, cooldown: secs(5) });
    assert_eq!(cb.state(), CircuitState::Open);
    assert!(cb.try_acquire(t0 + secs(5)));
    assert_eq!(cb.config().failure_threshold, 10);
}

#[test]
fn every_opening_and_closing_is_counted_even_a_failed_probe() {
    let (cb, t0) = breaker();
    assert_eq!(cb.transitions(), (0, 0));
    for _ in 0..3 {
        cb.record_failure(t0);
    }
    cb.record_failure(t0); // already open: no second opening
    assert_eq!(cb.transitions(), (1, 0));
    assert!(cb.try_acquire(t0 + secs(31)));
    cb.record_failure(t0 + secs(31)); // the probe failed: opens again
    assert_eq!(cb.transitions(), (2, 0));
    assert!(cb.try_acquire(t0 + secs(62)));
    cb.record_success();
    cb.record_success(); // already closed: no second closing
    assert_eq!(cb.transitions(), (2, 1));
    assert_eq!(cb.state(), CircuitState::Closed);
}
