//! Per-target circuit breaker: closed → open → half-open (one probe) → closed.
//! Lock-free (one packed `AtomicU64` plus counters). It owns no clock: every call takes the
//! caller's `now: Instant`, so tests drive time by hand. It does not decide *what* is a failure
//! (see `retry.rs`) nor keep health-check or cool-down state (see `targets.rs`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clock;

/// Circuit settings (`limits.circuit_breaker` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit. `0` is treated as `1`.
    pub failure_threshold: u32,
    /// How long an open circuit rejects before it lets one probe through.
    pub cooldown: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig { failure_threshold: 5, cooldown: Duration::from_secs(30) }
    }
}

/// The breaker's state as shown by `/admin/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    /// A probe request is in flight; everyone else is rejected until it reports.
    HalfOpen,
}

/// A circuit breaker whose hot path is a couple of atomic loads.
///
/// `state` packs the state (top 2 bits) and the time it was entered (low 62 bits, nanoseconds
/// since `clock::epoch()`), so state and time change together in one compare-and-swap.
pub struct CircuitBreaker {
    state: AtomicU64,
    failures: AtomicU32,
    threshold: AtomicU32,
    cooldown_ns: AtomicU64,
    /// Times the circuit opened (closed → open, or a failed half-open probe) and closed
    /// again, since the target was first seen: watchers compare them to see every change.
    opened: AtomicU64,
    closed: AtomicU64,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const TIME_MASK: u64 = (1 << 62) - 1;

fn pack(state: u64, at_ns: u64) -> u64 {
    (state << 62) | (at_ns & TIME_MASK)
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> 62, word & TIME_MASK)
}

// === impl CircuitBreaker ===

impl CircuitBreaker {
    pub fn new(config: CircuitConfig) -> Self {
        let cb = CircuitBreaker {
            state: AtomicU64::new(pack(CLOSED, 0)),
            failures: AtomicU32::new(0),
            threshold: AtomicU32::new(1),
            cooldown_ns: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        };
        cb.set_config(config);
        cb
    }

    /// Applies new settings (config reload) without resetting the state.
    pub fn set_config(&self, config: CircuitConfig) {
        self.threshold.store(config.failure_threshold.max(1), Ordering::Relaxed);
        self.cooldown_ns.store(clock::nanos(config.cooldown), Ordering::Relaxed);
    }

    pub fn config(&self) -> CircuitConfig {
        CircuitConfig {
            failure_threshold: self.threshold.load(Ordering::Relaxed),
            cooldown: Duration::from_nanos(self.cooldown_ns.load(Ordering::Relaxed)),
        }
    }

    /// The state at `now`. An open circuit whose cool-down has passed still reads `Open`
    /// until a caller takes the probe with [`Self::try_acquire`].
    pub fn state(&self) -> CircuitState {
        match unpack(self.state.load(Ordering::Acquire)).0 {
            CLOSED => CircuitState::Closed,
            OPEN => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// How many times the circuit has opened and closed again (monotonic; watchers compare
    /// two readings to see each transition, even ones between their looks).
    pub fn transitions(&self) -> (u64, u64) {
        (self.opened.load(Ordering::Relaxed), self.closed.load(Ordering::Relaxed))
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether a request *could* go through at `now`, without claiming anything: closed, or
    /// open with the cool-down over, or half-open with a probe that went silent for a whole
    /// cool-down (a cancelled request never reports back; its slot is given to the next one).
    pub fn allows(&self, now: Instant) -> bool {
        let (state, at) = unpack(self.state.load(Ordering::Acquire));
        state == CLOSED || self.cooled(at, now)
    }

    /// Claims the right to send one request at `now`. Closed: always `true`. Open past the
    /// cool-down, or half-open with a stale probe: exactly one concurrent caller wins (and
    /// its request is the probe), the others get `false`.
    pub fn try_acquire(&self, now: Instant) -> bool {
        let word = self.state.load(Ordering::Acquire);
        let (state, at) = unpack(word);
        if state == CLOSED {
            return true;
        }
        if !self.cooled(at, now) {
            return false;
        }
        let probe = pack(HALF_OPEN, clock::since_epoch(now));
        self.state.compare_exchange(word, probe, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The upstream answered: close the circuit (ends a half-open probe) and reset the count.
    /// A late success while open (from a request sent before it opened) changes nothing.
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let word = self.state.load(Ordering::Acquire);
        if unpack(word).0 == HALF_OPEN
            && self.state.compare_exchange(word, pack(CLOSED, 0), Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The attempt failed at `now`. Closed: count it and open at the threshold. Half-open:
    /// the probe failed, open again for another cool-down. Open: nothing more to learn.
    pub fn record_failure(&self, now: Instant) {
        let word = self.state.load(Ordering::Acquire);
        let opened = pack(OPEN, clock::since_epoch(now));
        match unpack(word).0 {
            CLOSED => {
                let n = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
                if n >= self.threshold.load(Ordering::Relaxed)
                    && self.state.compare_exchange(word, opened, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    self.opened.fetch_add(1, Ordering::Relaxed);
                }
            }
            HALF_OPEN
                if self.state.compare_exchange(word, opened, Ordering::AcqRel, Ordering::Acquire).is_ok() =>
            {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn cooled(&self, at_ns: u64, now: Instant) -> bool {
        clock::since_epoch(now) >= at_ns.saturating_add(self.cooldown_ns.load(Ordering::Relaxed))
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(CircuitConfig::default())
    }
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("failures", &self.consecutive_failures())
            .finish()
    }
}
