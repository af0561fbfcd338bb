//! Routing and resilience: which target of an alias to try next (smooth weighted
//! round-robin over available targets), per-target circuit breakers and quota cool-downs,
//! retry classification and backoff, latency histograms, and active health checks.
//! It makes decisions only: the proxy drives the attempts, sleeps the backoff and reports
//! each outcome back (`TargetState::on_success` / `on_failure` / `on_client_error`).
//!
//! - `selector`: smooth weighted round-robin, lock-free (also a pingora `BackendSelection`).
//! - `router`: one alias's targets, `AliasRouter::pick(tried, last, now)`.
//! - `plan`: `AttemptPlan`, one request's attempt order over an alias and its fallbacks.
//! - `targets`: `Targets`, the per-target state registry that outlives config snapshots.
//! - `circuit`: the breaker state machine (closed → open → half-open → closed).
//! - `retry`: `classify`, `retry_after`, `backoff`.
//! - `latency`: sharded hdrhistogram per target.
//! - `health`: `HealthChecker`, the active health-check background service.

mod circuit;
mod clock;
mod health;
mod latency;
mod plan;
mod retry;
mod router;
mod selector;
mod targets;

#[cfg(test)]
mod circuit_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod router_tests;
#[cfg(test)]
mod selector_tests;
#[cfg(test)]
mod targets_tests;

pub use self::circuit::{CircuitBreaker, CircuitConfig, CircuitState};
pub use self::health::{HealthChecker, HealthTarget};
pub use self::latency::{LatencyHistogram, LatencySummary};
pub use self::plan::{AttemptPlan, BackoffPolicy, Step};
pub use self::retry::{
    backoff, backoff_with, outcome, parse_retry_after, retry_after, Outcome, Retry, DEFAULT_QUOTA_COOLDOWN,
    MAX_RETRY_AFTER,
};
pub use self::router::AliasRouter;
pub use self::selector::{SmoothBackends, SmoothIter, SmoothWeighted};
pub use self::targets::{Failure, LastError, ProviderHealth, TargetHealth, TargetKey, TargetState, Targets};
