//! Tests for `targets.rs` and `latency.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::circuit::{CircuitConfig, CircuitState};
use super::latency::LatencyHistogram;
use super::targets::{Failure, TargetKey, Targets};

const CB: CircuitConfig = CircuitConfig { failure_threshold: 1, cooldown: Duration::from_secs(30) };

#[test]
fn state_carries_over_a_reload_by_provider_and_model() {
    let reg = Targets::new();
    let key = TargetKey::new("openai", "gpt-4o-mini");
    let before = reg.target(&key, CB);
    before.on_failure(Failure::Connect, Instant::now());
    let after = reg.target(&key, CircuitConfig { failure_threshold: 9, cooldown: Duration::from_secs(5) });
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(after.circuit().state(), CircuitState::Open);
    assert_eq!(after.circuit().config().failure_threshold, 9, "the new config applies");
    assert!(!Arc::ptr_eq(&after, &reg.target(&TargetKey::new("openai", "gpt-4o"), CB)));
}

#[test]
fn retain_forgets_removed_targets() {
    let reg = Targets::new();
    let keep = TargetKey::new("a", "m");
    reg.target(&keep, CB);
    reg.target(&TargetKey::new("b", "m"), CB);
    reg.retain(std::slice::from_ref(&keep));
    assert!(reg.get(&keep).is_some());
    assert!(reg.get(&TargetKey::new("b", "m")).is_none());
}

#[test]
fn the_health_snapshot_shows_state_counters_last_error_and_latency() {
    let reg = Targets::new();
    let t =
        reg.target(&TargetKey::new("openai", "gpt-4o-mini"), CircuitConfig { failure_threshold: 3, ..CB });
    let now = Instant::now();
    for ms in 1..=100 {
        t.on_success(Duration::from_millis(ms));
    }
    t.on_failure(Failure::Quota { retry_after: Some(Duration::from_secs(20)) }, now);
    t.on_client_error(Duration::from_millis(3));
    let snaps = reg.snapshot();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    assert_eq!((s.attempts, s.successes, s.failures), (102, 100, 1));
    assert!(s.healthy);
    assert_eq!(s.circuit, CircuitState::Closed);
    assert!(s.cooling_down_ms.is_some_and(|ms| ms > 15_000));
    assert!(s.last_error.as_ref().unwrap().message.contains("rate limited"));
    assert!((49.0..=51.0).contains(&s.latency.p50_ms), "{:?}", s.latency);
    assert!((98.0..=101.0).contains(&s.latency.p99_ms), "{:?}", s.latency);
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["circuit"], "closed");
    assert_eq!(json["provider"], "openai");
    assert!(json["latency"]["p99_ms"].is_number());
}

#[test]
fn an_open_circuit_or_failing_check_reads_unhealthy() {
    let reg = Targets::new();
    let t = reg.target(&TargetKey::new("p", "m"), CB);
    t.on_failure(Failure::Status(502), Instant::now());
    assert!(!reg.snapshot()[0].healthy);
    let u = reg.target(&TargetKey::new("q", "m"), CB);
    reg.provider("q").set(false, Some("connection refused".into()));
    let s = u.snapshot();
    assert!(!s.healthy);
    assert_eq!(s.health_check, "failing");
    assert!(s.last_error.unwrap().message.contains("connection refused"));
}

#[test]
fn latency_recording_from_many_threads_loses_nothing() {
    let h = Arc::new(LatencyHistogram::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                (0..10_000).for_each(|i| h.record(Duration::from_micros(100 + i % 900)))
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(h.summary().count, 40_000);
}

#[test]
fn latency_of_an_idle_target_is_zero() {
    let s = LatencyHistogram::new().summary();
    assert_eq!((s.count, s.p50_ms, s.p99_ms), (0, 0.0, 0.0));
}
