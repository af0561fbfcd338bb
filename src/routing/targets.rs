//! Per-target resilience state (health, circuit, cool-down, counters, latency), kept in a
//! registry keyed by `(provider, model)` that outlives config snapshots, so a reload keeps
//! what the gateway has learned. It decides nothing about order (see `router.rs`) or about
//! what an upstream answer means (see `retry.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use serde::Serialize;

use super::circuit::{CircuitBreaker, CircuitConfig, CircuitState};
use super::clock;
use super::latency::{LatencyHistogram, LatencySummary};
use super::retry::{DEFAULT_QUOTA_COOLDOWN, MAX_RETRY_AFTER};

/// A target's stable identity across reloads: provider name and the provider's model id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TargetKey {
    pub provider: String,
    pub model: String,
}

impl TargetKey {
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        TargetKey { provider: provider.into(), model: model.into() }
    }
}

/// Why an attempt failed, as far as the target's health is concerned. Client errors (400,
/// 401, 413, ...) are not failures of the target: report them with
/// [`TargetState::on_client_error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// TCP or TLS connect failed (including DNS as resolved by the caller).
    Connect,
    /// Connect, read or total deadline passed.
    Timeout,
    /// The upstream answered with this (5xx or 408) status.
    Status(u16),
    /// Rate/quota limited: cools the target down for `retry_after`
    /// (default [`DEFAULT_QUOTA_COOLDOWN`], at most [`MAX_RETRY_AFTER`]).
    Quota { retry_after: Option<Duration> },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect => f.write_str("connect error"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Status(s) => write!(f, "upstream status {s}"),
            Failure::Quota { retry_after: Some(d) } => write!(f, "rate limited (retry after {d:?})"),
            Failure::Quota { retry_after: None } => f.write_str("rate limited"),
        }
    }
}

/// Active health of one provider, shared by all its targets; written by `health.rs`.
#[derive(Debug)]
pub struct ProviderHealth {
    healthy: AtomicBool,
    last_error: ArcSwapOption<LastError>,
}

impl ProviderHealth {
    fn new() -> Self {
        ProviderHealth { healthy: AtomicBool::new(true), last_error: ArcSwapOption::empty() }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a health-check result; returns whether the health flipped.
    pub fn set(&self, healthy: bool, error: Option<String>) -> bool {
        if let Some(message) = error {
            self.last_error.store(Some(Arc::new(LastError { message, at_unix_ms: unix_ms() })));
        }
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// The last failing health check: its message and when it ran.
    pub fn last_error(&self) -> Option<Arc<LastError>> {
        self.last_error.load_full()
    }
}

/// The last failure seen on a target, for `/admin/health`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastError {
    pub message: String,
    /// Wall-clock time of the failure, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Everything the gateway knows about one target. Shared as `Arc` by the registry and every
/// config snapshot's routers; all methods take `&self` and are lock-free except
/// `on_failure` (which stores the last error) and latency recording (sharded).
#[derive(Debug)]
pub struct TargetState {
    key: TargetKey,
    provider: Arc<ProviderHealth>,
    circuit: CircuitBreaker,
    /// Nanoseconds since `clock::epoch()` until which the target is cooling down (0: not).
    cool_until: AtomicU64,
    attempts: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    last_error: ArcSwapOption<LastError>,
    latency: LatencyHistogram,
}

/// A target's state as `/admin/health` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TargetHealth {
    pub provider: String,
    pub model: String,
    /// Active health check passing (or none configured) and circuit not open.
    pub healthy: bool,
    pub health_check: &'static str,
    pub circuit: CircuitState,
    pub consecutive_failures: u32,
    /// Milliseconds left of a quota cool-down, when one is running.
    pub cooling_down_ms: Option<u64>,
    pub last_error: Option<LastError>,
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub latency: LatencySummary,
}

// === impl TargetState ===

impl TargetState {
    /// A fresh target: healthy, circuit closed. Normally made by [`Targets::target`].
    pub fn new(key: TargetKey, provider: Arc<ProviderHealth>, circuit: CircuitConfig) -> Self {
        TargetState {
            key,
            provider,
            circuit: CircuitBreaker::new(circuit),
            cool_until: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            latency: LatencyHistogram::new(),
        }
    }

    pub fn key(&self) -> &TargetKey {
        &self.key
    }

    pub fn circuit(&self) -> &CircuitBreaker {
        &self.circuit
    }

    /// Whether a request could be sent at `now`: provider healthy, not cooling down, and the
    /// circuit closed or ready for a probe. Claims nothing (see [`Self::try_acquire`]).
    pub fn is_available(&self, now: Instant) -> bool {
        self.provider.is_healthy() && !self.cooling_down(now) && self.circuit.allows(now)
    }

    /// [`Self::is_available`], then claims the circuit: when half-open, exactly one caller
    /// gets `true` and sends the probe. Call this for the target you are about to use.
    pub fn try_acquire(&self, now: Instant) -> bool {
        self.provider.is_healthy() && !self.cooling_down(now) && self.circuit.try_acquire(now)
    }

    /// Like [`Self::try_acquire`] but ignoring a quota cool-down: for the plan's panic mode,
    /// when every target of a request is cooling down (health and circuit still apply).
    pub fn try_acquire_ignoring_cooldown(&self, now: Instant) -> bool {
        self.provider.is_healthy() && self.circuit.try_acquire(now)
    }

    /// Whether the target's provider passes its active health checks (or has none).
    pub fn provider_healthy(&self) -> bool {
        self.provider.is_healthy()
    }

    /// The upstream answered with a success (status < 400). `latency`: time to the response
    /// header.
    pub fn on_success(&self, latency: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.latency.record(latency);
        self.circuit.record_success();
    }

    /// The upstream answered, but refused the request itself (400, 401, 413, ...): counted as
    /// an attempt, and as proof the target is up (it closes a half-open circuit).
    pub fn on_client_error(&self, latency: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.latency.record(latency);
        self.circuit.record_success();
    }

    /// The attempt failed at `now`: counts against the circuit; a quota failure also cools
    /// the target down for its `retry_after`.
    pub fn on_failure(&self, failure: Failure, now: Instant) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Failure::Quota { retry_after } = failure {
            let wait = retry_after.unwrap_or(DEFAULT_QUOTA_COOLDOWN).min(MAX_RETRY_AFTER);
            let until = clock::since_epoch(now).saturating_add(clock::nanos(wait));
            self.cool_until.fetch_max(until, Ordering::Relaxed);
        }
        self.circuit.record_failure(now);
        let at_unix_ms = unix_ms();
        self.last_error.store(Some(Arc::new(LastError { message: failure.to_string(), at_unix_ms })));
    }

    /// The target answered that it is not ready yet (a model still loading): an attempt, a
    /// short cool-down ([`DEFAULT_QUOTA_COOLDOWN`]) so the plan tries others first, but no
    /// failure against its circuit: the target is up.
    pub fn on_not_ready(&self, latency: Duration, now: Instant) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.latency.record(latency);
        let until = clock::since_epoch(now).saturating_add(clock::nanos(DEFAULT_QUOTA_COOLDOWN));
        self.cool_until.fetch_max(until, Ordering::Relaxed);
        let at_unix_ms = unix_ms();
        let message = "not ready yet (model loading)".to_string();
        self.last_error.store(Some(Arc::new(LastError { message, at_unix_ms })));
    }

    /// Why the target cannot take a request at `now` ("unhealthy: ...", "circuit open",
    /// "cooling down ..."), or `None` when it can. For the error that names every target.
    pub fn unavailable_reason(&self, now: Instant) -> Option<String> {
        if !self.provider.is_healthy() {
            let why = self.provider.last_error().map(|e| format!(": {}", e.message)).unwrap_or_default();
            return Some(format!("unhealthy (health check failing{why})"));
        }
        if let Some(until) = self.cool_down_until(now) {
            return Some(format!("cooling down after a quota error for {} ms", (until - now).as_millis()));
        }
        if !self.circuit.allows(now) {
            return Some(format!(
                "circuit open after {} consecutive failures",
                self.circuit.consecutive_failures()
            ));
        }
        None
    }

    /// Whether a quota cool-down is running at `now`.
    pub fn cooling_down(&self, now: Instant) -> bool {
        self.cool_until.load(Ordering::Relaxed) > clock::since_epoch(now)
    }

    /// The instant the current cool-down ends, if one is running at `now`.
    pub fn cool_down_until(&self, now: Instant) -> Option<Instant> {
        let until = self.cool_until.load(Ordering::Relaxed);
        (until > clock::since_epoch(now)).then(|| clock::at(until))
    }

    /// The state for `/admin/health`.
    pub fn snapshot(&self) -> TargetHealth {
        let now = Instant::now();
        let circuit = self.circuit.state();
        TargetHealth {
            provider: self.key.provider.clone(),
            model: self.key.model.clone(),
            healthy: self.provider.is_healthy() && circuit == CircuitState::Closed,
            health_check: if self.provider.is_healthy() { "passing" } else { "failing" },
            circuit,
            consecutive_failures: self.circuit.consecutive_failures(),
            cooling_down_ms: self.cool_down_until(now).map(|t| (t - now).as_millis() as u64),
            last_error: self.last_error.load_full().map(|e| (*e).clone()).or_else(|| {
                self.provider.last_error().map(|e| LastError {
                    message: format!("health check: {}", e.message),
                    at_unix_ms: e.at_unix_ms,
                })
            }),
            attempts: self.attempts.load(Ordering::Relaxed),
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latency: self.latency.summary(),
        }
    }
}

// === impl Targets ===

/// The registry: one [`TargetState`] per [`TargetKey`] and one [`ProviderHealth`] per
/// provider name, created on first use and kept across config reloads. Reads are a lock-free
/// `ArcSwap` load; creation (config build time) takes a writer lock.
#[derive(Default)]
pub struct Targets {
    targets: ArcSwap<HashMap<TargetKey, Arc<TargetState>>>,
    providers: ArcSwap<HashMap<String, Arc<ProviderHealth>>>,
    write: Mutex<()>,
}

impl Targets {
    pub fn new() -> Arc<Self> {
        Arc::new(Targets::default())
    }

    /// The state for `key`, created if new; `circuit` (from the current config) is applied
    /// either way, so a reload that changes `limits.circuit_breaker` takes effect.
    pub fn target(&self, key: &TargetKey, circuit: CircuitConfig) -> Arc<TargetState> {
        if let Some(t) = self.targets.load().get(key) {
            t.circuit.set_config(circuit);
            return t.clone();
        }
        let _guard = self.write.lock();
        if let Some(t) = self.targets.load().get(key) {
            t.circuit.set_config(circuit);
            return t.clone();
        }
        let state = Arc::new(TargetState::new(key.clone(), self.provider_locked(&key.provider), circuit));
        let mut map = HashMap::clone(&self.targets.load());
        map.insert(key.clone(), state.clone());
        self.targets.store(Arc::new(map));
        state
    }

    /// The active-health state of provider `name`, created (healthy) if new.
    pub fn provider(&self, name: &str) -> Arc<ProviderHealth> {
        if let Some(p) = self.providers.load().get(name) {
            return p.clone();
        }
        let _guard = self.write.lock();
        self.provider_locked(name)
    }

    fn provider_locked(&self, name: &str) -> Arc<ProviderHealth> {
        if let Some(p) = self.providers.load().get(name) {
            return p.clone();
        }
        let p = Arc::new(ProviderHealth::new());
        let mut map = HashMap::clone(&self.providers.load());
        map.insert(name.to_string(), p.clone());
        self.providers.store(Arc::new(map));
        p
    }

    /// The state for `key` if it exists.
    pub fn get(&self, key: &TargetKey) -> Option<Arc<TargetState>> {
        self.targets.load().get(key).cloned()
    }

    /// Drops state for targets not in `live` (call after a reload, if you want removed
    /// targets forgotten; keeping them is harmless and lets a re-added target resume).
    pub fn retain(&self, live: &[TargetKey]) {
        let _guard = self.write.lock();
        let mut map = HashMap::clone(&self.targets.load());
        map.retain(|k, _| live.contains(k));
        self.targets.store(Arc::new(map));
    }

    /// Every target's state, sorted by provider then model, for `/admin/health`.
    pub fn snapshot(&self) -> Vec<TargetHealth> {
        let map = self.targets.load();
        let mut keys: Vec<&TargetKey> = map.keys().collect();
        keys.sort();
        keys.into_iter().map(|k| map[k].snapshot()).collect()
    }
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets").field("targets", &self.targets.load().len()).finish()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
