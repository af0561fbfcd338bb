//! The proxy's side of routing: builds one `AliasRouter` per alias for each config snapshot
//! (target state, circuits and latency persist in `routing::Targets` across reloads) and wraps
//! `routing::AttemptPlan` for one request, turning attempt results into routing outcomes.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::upstream::AttemptError;
use crate::config::Snapshot;
use crate::routing::{AliasRouter, AttemptPlan, CircuitConfig, Failure, Outcome, TargetKey, Targets};

pub use crate::routing::Step;

/// Routing state shared by all requests.
pub struct Routing {
    pub targets: Arc<Targets>,
    routers: ArcSwap<RouterSet>,
}

/// The routers of one snapshot.
struct RouterSet {
    snap: Weak<Snapshot>,
    routers: Vec<Arc<AliasRouter>>,
}

/// One request's attempts.
pub struct Plan {
    inner: AttemptPlan,
}

// === impl Routing ===

impl Default for Routing {
    fn default() -> Self {
        Routing {
            targets: Targets::new(),
            routers: ArcSwap::from_pointee(RouterSet { snap: Weak::new(), routers: Vec::new() }),
        }
    }
}

impl Routing {
    /// The routers for `snap`, built once per snapshot.
    fn routers(&self, snap: &Arc<Snapshot>) -> Arc<RouterSet> {
        let cur = self.routers.load_full();
        if Weak::ptr_eq(&cur.snap, &Arc::downgrade(snap)) {
            return cur;
        }
        let circuit = CircuitConfig {
            failure_threshold: snap.limits.failure_threshold,
            cooldown: snap.limits.cooldown,
        };
        let routers = snap
            .aliases
            .iter()
            .map(|a| {
                let states = a
                    .targets
                    .iter()
                    .map(|t| {
                        let key = TargetKey::new(snap.providers[t.provider].name.clone(), t.model.clone());
                        self.targets.target(&key, circuit)
                    })
                    .collect();
                let weights: Vec<u32> = a.targets.iter().map(|t| t.weight).collect();
                Arc::new(AliasRouter::new(states, &weights))
            })
            .collect();
        let set = Arc::new(RouterSet { snap: Arc::downgrade(snap), routers });
        self.routers.store(set.clone());
        set
    }

    /// The attempts for a request to `alias` (then its fallbacks). Each attempt may take the
    /// full `upstream_timeout`; the whole request is bounded by `max_attempts` of them.
    pub fn plan(&self, snap: &Arc<Snapshot>, alias: usize) -> Plan {
        let set = self.routers(snap);
        let mut chain = vec![(alias, set.routers[alias].clone())];
        for &f in &snap.aliases[alias].fallbacks {
            if f != alias {
                chain.push((f, set.routers[f].clone()));
            }
        }
        let deadline = Instant::now() + snap.limits.upstream_timeout * snap.limits.max_attempts.max(1);
        Plan { inner: AttemptPlan::new(chain, snap.limits.max_attempts, deadline) }
    }

    /// Whether any target of any alias can take traffic now (for `/readyz`).
    pub fn any_available(&self, snap: &Arc<Snapshot>) -> bool {
        let now = Instant::now();
        self.routers(snap).routers.iter().any(|r| r.targets().iter().any(|t| t.is_available(now)))
    }
}

// === impl Plan ===

impl Plan {
    /// The next attempt, after sleeping its backoff (if any).
    pub async fn next(&mut self) -> Option<Step> {
        let step = self.inner.next(Instant::now())?;
        if !step.wait.is_zero() {
            tokio::time::sleep(step.wait).await;
        }
        Some(step)
    }

    pub fn succeeded(&mut self, step: &Step, latency: Duration) {
        self.inner.answered(step, 200, &http::HeaderMap::new(), None, latency, Instant::now());
    }

    pub fn failed(&mut self, step: &Step, e: &AttemptError) {
        let failure = match e {
            AttemptError::Timeout { .. } => Failure::Timeout,
            _ => Failure::Connect,
        };
        self.inner.failed(step, failure, Instant::now());
    }

    /// The upstream answered `status` (not 2xx): whether to try another attempt.
    pub fn rejected(
        &mut self,
        step: &Step,
        status: u16,
        headers: Option<&http::HeaderMap>,
        error_type: Option<&str>,
        latency: Duration,
    ) -> bool {
        let empty = http::HeaderMap::new();
        let outcome =
            self.inner.answered(step, status, headers.unwrap_or(&empty), error_type, latency, Instant::now());
        matches!(outcome, Outcome::Quota { .. } | Outcome::Transient)
    }
}
