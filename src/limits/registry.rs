//! The registry of limit state per scope, outliving config reloads, and the admission step:
//! [`LimitsRegistry::admit`] checks and charges every scope of a request or none, and the
//! [`Reservation`] it returns is settled exactly once when the answer ends.
//!
//! The map is sharded (`parking_lot::RwLock` per shard, read-locked for a lookup that clones
//! one `Arc`); all counters inside a scope are atomics, so no lock is held while admitting.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::Serialize;

use super::budget::BudgetState;
use super::gcra::{Deny, Gcra, Level};
use super::period::{next_period_start, period_start, rfc3339};
use super::{micros_to_usd, BudgetRule, Demand, Dimension, Refusal, ScopeId, ScopeRules};
use crate::config::BudgetPeriod;

const SHARDS: usize = 32;

/// `retry-after` of a `max_parallel` refusal (SPEC section 3): a slot frees when any request
/// in flight ends, which cannot be predicted.
const PARALLEL_RETRY: Duration = Duration::from_secs(1);

/// Retry hint when a budget refuses only because of other requests' outstanding
/// reservations (they settle at their actual cost, usually below the estimate).
const RESERVED_RETRY: Duration = Duration::from_secs(1);

/// The limit state of every scope seen so far. Create one per process and keep it across
/// config reloads.
#[derive(Debug)]
pub struct LimitsRegistry {
    shards: Box<[Shard]>,
}

type Shard = RwLock<FxHashMap<ScopeId, Arc<ScopeState>>>;

/// The counters of one scope.
#[derive(Debug, Default)]
struct ScopeState {
    rpm: Gcra,
    tpm: Gcra,
    in_flight: AtomicU32,
    budget: BudgetState,
}

/// What one admitted request holds in one scope.
#[derive(Debug)]
struct Held {
    id: ScopeId,
    state: Arc<ScopeState>,
    /// The RPM limit the request was charged under (for a rollback).
    rpm: Option<u64>,
    /// The TPM limit and the tokens reserved under it.
    tpm: Option<u64>,
    tokens: u64,
    /// The budget rule and the micros reserved under it.
    budget: Option<BudgetRule>,
    cost: u64,
}

/// An admitted request's claim on every scope. Carry it to the end of the request and call
/// [`Reservation::settle`] once. Dropping it unsettled (a bug, a panic path) still frees the
/// request's parallel slots and keeps the reserved tokens and cost as charged.
#[derive(Debug)]
#[must_use = "settle the reservation when the request ends"]
pub struct Reservation {
    held: Vec<Held>,
    headers: RateHeaders,
    input_tokens: u64,
}

/// What settling reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settled {
    /// Budget thresholds crossed by this request, each reported once per period: log them,
    /// count them, audit them, send the alert webhook.
    pub alerts: Vec<BudgetAlert>,
}

/// A budget crossed its `alert_at` threshold or its limit in the current period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetAlert {
    pub scope: ScopeId,
    pub kind: super::AlertKind,
    pub spent_micros: u64,
    pub limit_micros: u64,
    pub alert_at: Option<f64>,
    pub period: BudgetPeriod,
    #[serde(serialize_with = "ser_time")]
    pub period_start: SystemTime,
}

/// `x-ratelimit-*` values of the tightest scope per dimension (the one with the fewest
/// remaining); `None` when no scope limits that dimension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Level>,
    pub tokens: Option<Level>,
}

/// Live state of one scope (`GET /admin/keys/{id}/limits`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScopeView {
    pub scope: ScopeId,
    pub rpm: Option<WindowView>,
    pub tpm: Option<WindowView>,
    pub in_flight: u32,
    pub max_parallel: Option<u32>,
    pub budget: Option<BudgetView>,
}

/// One bucket's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WindowView {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the bucket is full again.
    pub reset_ms: u64,
}

/// Spend in the current period against the budget.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetView {
    pub period: BudgetPeriod,
    /// RFC 3339, UTC.
    pub period_start: String,
    /// RFC 3339, UTC; `None` for `total`.
    pub period_end: Option<String>,
    pub limit_micros: u64,
    pub spent_micros: u64,
    /// Estimated cost of requests in flight.
    pub reserved_micros: u64,
    pub remaining_micros: u64,
    /// Display values (USD), derived from the micros.
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub used_ratio: f64,
}

// === impl BudgetView ===

impl BudgetView {
    /// The view of `spent` and `reserved` micro-dollars against `b` in the period of `wall`.
    pub fn new(b: BudgetRule, wall: SystemTime, spent: u64, reserved: u64) -> BudgetView {
        BudgetView {
            period: b.period,
            period_start: rfc3339(period_start(b.period, wall)),
            period_end: next_period_start(b.period, wall).map(rfc3339),
            limit_micros: b.limit_micros,
            spent_micros: spent,
            reserved_micros: reserved,
            remaining_micros: b.limit_micros.saturating_sub(spent + reserved),
            limit_usd: micros_to_usd(b.limit_micros),
            spent_usd: micros_to_usd(spent),
            used_ratio: if b.limit_micros == 0 { 1.0 } else { spent as f64 / b.limit_micros as f64 },
        }
    }
}

// === impl LimitsRegistry ===

impl Default for LimitsRegistry {
    fn default() -> Self {
        LimitsRegistry::new()
    }
}

impl LimitsRegistry {
    pub fn new() -> LimitsRegistry {
        LimitsRegistry { shards: (0..SHARDS).map(|_| RwLock::new(FxHashMap::default())).collect() }
    }

    /// Admit a request against every scope in `scopes` (key, project, ...): each scope's
    /// parallel slot, RPM bucket, TPM bucket and budget. Either every scope admits it and is
    /// charged, or nothing is charged anywhere and the first refusal is returned. A demand
    /// above some scope's capacity is refused as `too_large` before anything is tried.
    pub fn admit(
        &self,
        scopes: &[(ScopeId, &ScopeRules)],
        demand: Demand,
        mono_now_ns: u64,
        wall_now: SystemTime,
    ) -> Result<Reservation, Refusal> {
        for (id, rules) in scopes {
            if let Some(r) = too_large(id, rules, demand) {
                return Err(r);
            }
        }
        let mut held: Vec<Held> = Vec::with_capacity(scopes.len());
        let mut headers = RateHeaders::default();
        for (id, rules) in scopes {
            let state = self.scope(id);
            match take(id, state, rules, demand, mono_now_ns, wall_now, &mut headers) {
                Ok(h) => held.push(h),
                Err(r) => {
                    for h in held.iter().rev() {
                        h.rollback(mono_now_ns);
                    }
                    return Err(r);
                }
            }
        }
        Ok(Reservation { held, headers, input_tokens: demand.input_tokens })
    }

    /// The first scope whose limit the demand exceeds by itself (it can never be admitted,
    /// whatever the backend's state).
    pub fn too_large(scopes: &[(ScopeId, &ScopeRules)], demand: Demand) -> Option<Refusal> {
        scopes.iter().find_map(|(id, rules)| too_large(id, rules, demand))
    }

    /// Rate-limit header values for these scopes now, without charging anything (for
    /// answers that did not go through [`admit`](Self::admit)).
    pub fn rate_headers(&self, scopes: &[(ScopeId, &ScopeRules)], mono_now_ns: u64) -> RateHeaders {
        let mut h = RateHeaders::default();
        for (id, rules) in scopes {
            let state = self.get(id);
            let state = state.as_deref();
            if let Some(l) = rules.rpm {
                h.tighten_requests(state.map_or_else(|| full(l), |s| s.rpm.level(l, mono_now_ns)));
            }
            if let Some(l) = rules.tpm {
                h.tighten_tokens(state.map_or_else(|| full(l), |s| s.tpm.level(l, mono_now_ns)));
            }
        }
        h
    }

    /// Live state of one scope under `rules`. A scope never seen shows full buckets.
    pub fn state(
        &self,
        scope: &ScopeId,
        rules: &ScopeRules,
        mono_now_ns: u64,
        wall_now: SystemTime,
    ) -> ScopeView {
        let state = self.get(scope).unwrap_or_default();
        let window = |l: Level| WindowView {
            limit: l.limit,
            remaining: l.remaining,
            reset_ms: u64::try_from(l.reset.as_millis()).unwrap_or(u64::MAX),
        };
        ScopeView {
            scope: scope.clone(),
            rpm: rules.rpm.map(|l| window(state.rpm.level(l, mono_now_ns))),
            tpm: rules.tpm.map(|l| window(state.tpm.level(l, mono_now_ns))),
            in_flight: state.in_flight.load(Ordering::Acquire),
            max_parallel: rules.max_parallel,
            budget: rules.budget.map(|b| {
                state.budget.roll(b.period, wall_now);
                let (spent, reserved) = state.budget.read();
                BudgetView::new(b, wall_now, spent, reserved)
            }),
        }
    }

    /// Set a scope's spend in the current `period` (at start-up, from the usage log or
    /// Redis). Replaces what the scope had spent this period; reservations are kept.
    pub fn seed_spend(&self, scope: ScopeId, period: BudgetPeriod, micros: u64, wall_now: SystemTime) {
        self.scope(&scope).budget.seed(period, wall_now, micros);
    }

    /// Forget the state of scopes for which `keep` is false and that have nothing in flight
    /// (keys and projects deleted from the config, JWT subjects not seen for a while).
    pub fn prune(&self, keep: impl Fn(&ScopeId) -> bool) {
        for shard in self.shards.iter() {
            shard.write().retain(|id, s| {
                keep(id) || Arc::strong_count(s) > 1 || s.in_flight.load(Ordering::Acquire) > 0
            });
        }
    }

    /// Number of scopes with state.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: &ScopeId) -> &Shard {
        let h = FxBuildHasher.hash_one(id) as usize;
        // The low bits feed the map's own buckets; take high ones for the shard.
        &self.shards[(h >> 16) % SHARDS]
    }

    fn get(&self, id: &ScopeId) -> Option<Arc<ScopeState>> {
        self.shard(id).read().get(id).cloned()
    }

    fn scope(&self, id: &ScopeId) -> Arc<ScopeState> {
        let shard = self.shard(id);
        if let Some(s) = shard.read().get(id) {
            return s.clone();
        }
        shard.write().entry(id.clone()).or_default().clone()
    }
}

/// A refusal that no waiting can clear: the demand is above a limit itself.
fn too_large(id: &ScopeId, rules: &ScopeRules, demand: Demand) -> Option<Refusal> {
    let refuse = |dimension, limit: u64, requested| Refusal {
        dimension,
        scope: id.clone(),
        limit,
        requested,
        remaining: limit,
        retry_after: None,
        too_large: true,
    };
    match *rules {
        ScopeRules { rpm: Some(0), .. } => Some(refuse(Dimension::Rpm, 0, 1)),
        ScopeRules { max_parallel: Some(0), .. } => Some(refuse(Dimension::Parallel, 0, 1)),
        ScopeRules { tpm: Some(l), .. } if demand.tokens > l => {
            Some(refuse(Dimension::Tpm, l, demand.tokens))
        }
        ScopeRules { budget: Some(b), .. } if demand.cost_micros > b.limit_micros => {
            Some(refuse(Dimension::Budget, b.limit_micros, demand.cost_micros))
        }
        _ => None,
    }
}

/// Charge one scope: parallel slot, RPM, TPM, budget, undoing this scope's earlier steps
/// when a later one refuses.
fn take(
    id: &ScopeId,
    state: Arc<ScopeState>,
    rules: &ScopeRules,
    demand: Demand,
    now: u64,
    wall: SystemTime,
    headers: &mut RateHeaders,
) -> Result<Held, Refusal> {
    let refuse = |dimension, limit, requested, remaining, retry_after| Refusal {
        dimension,
        scope: id.clone(),
        limit,
        requested,
        remaining,
        retry_after,
        too_large: false,
    };
    // Parallel: exact CAS, so a full scope never shows a transient over-count.
    let max = rules.max_parallel.unwrap_or(u32::MAX);
    let slot =
        state.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
    if slot.is_err() {
        return Err(refuse(Dimension::Parallel, u64::from(max), 1, 0, Some(PARALLEL_RETRY)));
    }
    let mut held = Held { id: id.clone(), state, rpm: None, tpm: None, tokens: 0, budget: None, cost: 0 };
    let mut requests = None;
    if let Some(l) = rules.rpm {
        match held.state.rpm.take(1, l, now) {
            Ok(level) => {
                held.rpm = Some(l);
                requests = Some(level);
            }
            Err(d) => {
                let remaining = held.state.rpm.level(l, now).remaining;
                held.rollback(now);
                return Err(refuse(Dimension::Rpm, l, 1, remaining, wait(d)));
            }
        }
    }
    let mut tokens = None;
    if let Some(l) = rules.tpm {
        match held.state.tpm.take(demand.tokens, l, now) {
            Ok(level) => {
                held.tpm = Some(l);
                held.tokens = demand.tokens;
                tokens = Some(level);
            }
            Err(d) => {
                let remaining = held.state.tpm.level(l, now).remaining;
                held.rollback(now);
                return Err(refuse(Dimension::Tpm, l, demand.tokens, remaining, wait(d)));
            }
        }
    }
    if let Some(b) = rules.budget {
        held.state.budget.roll(b.period, wall);
        match held.state.budget.reserve(demand.cost_micros, b.limit_micros) {
            Ok(()) => {
                held.budget = Some(b);
                held.cost = demand.cost_micros;
            }
            Err(over) => {
                held.rollback(now);
                let retry = if over.spent.saturating_add(demand.cost_micros) <= b.limit_micros {
                    Some(RESERVED_RETRY)
                } else {
                    next_period_start(b.period, wall)
                        .map(|t| t.duration_since(wall).unwrap_or(Duration::ZERO).max(Duration::from_secs(1)))
                };
                let remaining = b.limit_micros.saturating_sub(over.committed);
                return Err(refuse(Dimension::Budget, b.limit_micros, demand.cost_micros, remaining, retry));
            }
        }
    }
    if let Some(l) = requests {
        headers.tighten_requests(l);
    }
    if let Some(l) = tokens {
        headers.tighten_tokens(l);
    }
    Ok(held)
}

fn wait(d: Deny) -> Option<Duration> {
    match d {
        Deny::Wait(d) => Some(d),
        Deny::TooLarge => None,
    }
}

fn full(limit: u64) -> Level {
    Level { limit, remaining: limit, reset: Duration::ZERO }
}

// === impl Held ===

impl Held {
    /// Undo what this scope took (a later scope refused the request).
    fn rollback(&self, now: u64) {
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(l) = self.rpm {
            self.state.rpm.refund(1, l, now);
        }
        if let Some(l) = self.tpm {
            self.state.tpm.refund(self.tokens, l, now);
        }
        if self.budget.is_some() {
            self.state.budget.release(self.cost);
        }
    }
}

// === impl Reservation ===

impl Reservation {
    /// Rate-limit header values computed at admission.
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// The input tokens counted at admission ([`Demand::input_tokens`]): the least a request
    /// that got an answer is charged when the provider reported no usage.
    pub fn counted_input_tokens(&self) -> u64 {
        self.input_tokens
    }

    /// Tokens reserved per scope (the same demand in every scope that has a TPM limit).
    pub fn reserved_tokens(&self) -> u64 {
        self.held.iter().map(|h| h.tokens).max().unwrap_or(0)
    }

    /// End the request (finished, failed, or the client went away): free its parallel
    /// slots, replace the reserved tokens by `actual_tokens` (input + output the provider
    /// reported; a refund or an extra charge) and the reserved cost by `actual_cost_micros`,
    /// in the period of `wall_now`. Budget crossings are reported once per period.
    pub fn settle(
        mut self,
        actual_tokens: u64,
        actual_cost_micros: u64,
        mono_now_ns: u64,
        wall_now: SystemTime,
    ) -> Settled {
        let mut alerts = Vec::new();
        for h in std::mem::take(&mut self.held) {
            h.state.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some(l) = h.tpm {
                if actual_tokens < h.tokens {
                    h.state.tpm.refund(h.tokens - actual_tokens, l, mono_now_ns);
                } else if actual_tokens > h.tokens {
                    h.state.tpm.force(actual_tokens - h.tokens, l, mono_now_ns);
                }
            }
            if let Some(b) = h.budget {
                let period = h.state.budget.roll(b.period, wall_now);
                let spent = h.state.budget.settle(h.cost, actual_cost_micros);
                for kind in h
                    .state
                    .budget
                    .crossings(period, spent, b.alert_micros(), b.limit_micros)
                    .into_iter()
                    .flatten()
                {
                    alerts.push(BudgetAlert {
                        scope: h.id.clone(),
                        kind,
                        spent_micros: spent,
                        limit_micros: b.limit_micros,
                        alert_at: b.alert_at,
                        period: b.period,
                        period_start: period_start(b.period, wall_now),
                    });
                }
            }
        }
        Settled { alerts }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        tracing::warn!(
            scopes = self.held.len(),
            "limits reservation dropped without settle: slots freed, reserved tokens and cost kept as charged"
        );
        for h in self.held.drain(..) {
            h.state.in_flight.fetch_sub(1, Ordering::AcqRel);
            if h.budget.is_some() {
                // Conservative: the estimate becomes spend (it ends with the period instead
                // of pinning the budget forever as an orphan reservation would).
                h.state.budget.settle(h.cost, h.cost);
            }
        }
    }
}

// === impl RateHeaders ===

impl RateHeaders {
    pub(crate) fn tighten_requests(&mut self, l: Level) {
        if self.requests.is_none_or(|r| l.remaining < r.remaining) {
            self.requests = Some(l);
        }
    }

    pub(crate) fn tighten_tokens(&mut self, l: Level) {
        if self.tokens.is_none_or(|r| l.remaining < r.remaining) {
            self.tokens = Some(l);
        }
    }

    /// The OpenAI-style header names and values (resets as `1s`, `6m0s`, `250ms`).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::with_capacity(6);
        if let Some(r) = self.requests {
            v.push(("x-ratelimit-limit-requests", r.limit.to_string()));
            v.push(("x-ratelimit-remaining-requests", r.remaining.to_string()));
            v.push(("x-ratelimit-reset-requests", go_duration(r.reset)));
        }
        if let Some(t) = self.tokens {
            v.push(("x-ratelimit-limit-tokens", t.limit.to_string()));
            v.push(("x-ratelimit-remaining-tokens", t.remaining.to_string()));
            v.push(("x-ratelimit-reset-tokens", go_duration(t.reset)));
        }
        v
    }
}

/// A duration the way OpenAI writes its reset headers (Go's `Duration.String`, at
/// millisecond precision): `0s`, `250ms`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
