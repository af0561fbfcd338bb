//! Limits of SPEC section 8, in memory: per-scope (key, project) RPM and TPM buckets (GCRA,
//! lock-free), requests in flight, and budgets in integer micro-dollars per UTC period, all
//! checked and charged together (every scope or none). Plus input token counting
//! (`tokens`), which sizes the TPM reservation.
//!
//! Pure and synchronous: no I/O, no config lookups, no clock reads. Callers pass the rules of
//! each scope (plain data built from config) and the time on every call, so the state in
//! [`LimitsRegistry`] outlives config reloads and a changed rule applies on the next request.
//! A Redis backend will sit behind the same data in / data out API.
//!
//! Not here: which scopes a request has (auth), prices (`accounting::pricing`), rebuilding
//! spend from the usage log (`accounting::spend`), HTTP statuses and headers (the proxy).

pub mod body_memory;
mod bpe;
mod budget;
mod gcra;
mod period;
mod registry;
pub mod shared;
pub mod tokens;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, BudgetPeriod};

pub use self::{
    budget::Crossing as AlertKind,
    gcra::{Level, WINDOW},
    period::{next_period_start, period_start, rfc3339, rfc3339_fraction},
    registry::{
        go_duration, BudgetAlert, BudgetView, LimitsRegistry, RateHeaders, Reservation, ScopeView, Settled,
        WindowView,
    },
};

/// Whose limits these are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Key,
    Project,
}

/// One scope: a key id (or `jwt:<sub>`) or a project name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ScopeId {
    pub kind: ScopeKind,
    #[serde(serialize_with = "ser_str")]
    pub name: Arc<str>,
}

fn ser_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// The limits of one scope, built from config. `None` = unlimited in that dimension.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeRules {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute (input + output cap reserved, reconciled with actual usage).
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u32>,
    pub budget: Option<BudgetRule>,
}

/// A budget in micro-dollars per UTC period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetRule {
    pub limit_micros: u64,
    pub period: BudgetPeriod,
    /// Fraction (0..1] of the limit at which an alert is reported, once per period.
    pub alert_at: Option<f64>,
}

/// What admission holds for a request until the account step settles it: a reservation in
/// this instance's memory, or one in Redis shared by every instance.
#[derive(Debug)]
pub enum Hold {
    Local(Reservation),
    Shared(shared::SharedReservation),
}

impl Hold {
    /// Rate-limit header values computed at admission.
    pub fn headers(&self) -> &RateHeaders {
        match self {
            Hold::Local(r) => r.headers(),
            Hold::Shared(r) => r.headers(),
        }
    }

    /// Input tokens counted at admission (0 when no limit needed them counted).
    pub fn counted_input_tokens(&self) -> u64 {
        match self {
            Hold::Local(r) => r.counted_input_tokens(),
            Hold::Shared(r) => r.counted_input_tokens(),
        }
    }

    /// Tokens reserved (the TPM demand), 0 when no scope limits tokens.
    pub fn reserved_tokens(&self) -> u64 {
        match self {
            Hold::Local(r) => r.reserved_tokens(),
            Hold::Shared(r) => r.reserved_tokens(),
        }
    }
}

/// What one request asks for at admission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// Estimated tokens: counted input + the output cap.
    pub tokens: u64,
    /// Estimated cost in micro-dollars (input + output cap at the alias's prices).
    pub cost_micros: u64,
    /// The counted input part of `tokens`: what the request is charged at least when the
    /// provider never reports usage (the client went away mid-stream).
    pub input_tokens: u64,
}

/// The dimension that refused a request (`ratelimited_total{kind}` label values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Rpm,
    Tpm,
    Parallel,
    Budget,
}

/// Why a request was not admitted. Nothing was charged to any scope. (The rate-limit
/// headers of the 429 come from [`LimitsRegistry::rate_headers`].)
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct Refusal {
    pub dimension: Dimension,
    pub scope: ScopeId,
    /// The scope's limit in the dimension's unit (requests, tokens, requests in flight, micros).
    pub limit: u64,
    /// What this request asked for in that unit.
    pub requested: u64,
    /// What the scope had left when it refused.
    pub remaining: u64,
    /// The real time until this demand could be admitted; `None` when waiting cannot help
    /// (`too_large`, or a `total` budget that is spent).
    pub retry_after: Option<Duration>,
    /// The demand exceeds the limit itself: it can never be admitted (the proxy answers 400
    /// for TPM, naming the numbers, instead of a 429 that can never clear).
    pub too_large: bool,
}

// === impl ScopeId ===

impl ScopeId {
    pub fn key(name: impl Into<Arc<str>>) -> ScopeId {
        ScopeId { kind: ScopeKind::Key, name: name.into() }
    }

    pub fn project(name: impl Into<Arc<str>>) -> ScopeId {
        ScopeId { kind: ScopeKind::Project, name: name.into() }
    }
}

impl fmt::Display for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ScopeKind::Key => write!(f, "key {}", self.name),
            ScopeKind::Project => write!(f, "project {}", self.name),
        }
    }
}

// === impl ScopeRules ===

impl ScopeRules {
    /// The rules of a `keys:` entry.
    pub fn from_key(k: &config::KeyEntry) -> ScopeRules {
        ScopeRules {
            rpm: k.rpm,
            tpm: k.tpm,
            max_parallel: k.max_parallel,
            budget: k.budget.as_ref().map(BudgetRule::from_config),
        }
    }

    /// The rules of a `projects:` entry.
    pub fn from_project(p: &config::Project) -> ScopeRules {
        ScopeRules {
            rpm: p.rpm,
            tpm: p.tpm,
            max_parallel: p.max_parallel,
            budget: p.budget.as_ref().map(BudgetRule::from_config),
        }
    }
}

// === impl BudgetRule ===

impl BudgetRule {
    pub fn from_config(b: &config::Budget) -> BudgetRule {
        BudgetRule { limit_micros: usd_to_micros(b.usd), period: b.period, alert_at: b.alert_at }
    }

    /// The alert threshold in micros.
    fn alert_micros(&self) -> Option<u64> {
        self.alert_at.map(|f| usd_to_micros(self.limit_micros as f64 * f.clamp(0.0, 1.0) / 1e6))
    }
}

/// USD to integer micro-dollars, rounded to the nearest; negative and NaN give 0.
pub fn usd_to_micros(usd: f64) -> u64 {
    let m = (usd * 1e6).round();
    if m.is_finite() && m > 0.0 {
        m as u64
    } else {
        0
    }
}

/// Micro-dollars as USD, for display only (JSON answers, logs). Never add these up.
pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

// === impl Refusal ===

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scope;
        match (self.dimension, self.too_large) {
            (Dimension::Tpm, true) => write!(
                f,
                "this request needs {} tokens (input + output cap), more than the {} tokens per minute \
                 allowed for {s}; lower max_tokens or shorten the prompt",
                self.requested, self.limit
            ),
            (Dimension::Budget, true) => write!(
                f,
                "this request may cost up to ${:.6}, more than the whole budget of ${:.6} of {s}; lower max_tokens",
                micros_to_usd(self.requested),
                micros_to_usd(self.limit)
            ),
            (Dimension::Rpm, _) => write!(f, "rate limit of {} requests per minute reached for {s}", self.limit),
            (Dimension::Tpm, false) => write!(
                f,
                "rate limit of {} tokens per minute reached for {s}: {} requested, {} left",
                self.limit, self.requested, self.remaining
            ),
            (Dimension::Parallel, _) => {
                write!(f, "{s} already has {} requests in flight, its max_parallel", self.limit)
            }
            (Dimension::Budget, false) => write!(
                f,
                "budget of ${:.2} exhausted for {s}: ${:.6} left, this request may cost up to ${:.6}",
                micros_to_usd(self.limit),
                micros_to_usd(self.remaining),
                micros_to_usd(self.requested)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_become_whole_micros_without_drift() {
        assert_eq!(usd_to_micros(50.0), 50_000_000);
        assert_eq!(usd_to_micros(0.000_000_4), 0);
        assert_eq!(usd_to_micros(0.000_000_6), 1);
        assert_eq!(usd_to_micros(-3.0), 0);
        assert_eq!(usd_to_micros(f64::NAN), 0);
        let r = BudgetRule { limit_micros: 50_000_000, period: BudgetPeriod::Daily, alert_at: Some(0.8) };
        assert_eq!(r.alert_micros(), Some(40_000_000));
    }

    #[test]
    fn rules_come_from_key_and_project_entries() {
        let k: config::KeyEntry = serde_json::from_value(serde_json::json!({
            "id": "k", "hash": "sha256:00", "rpm": 600, "tpm": 200000, "max_parallel": 20,
            "budget": {"usd": 50, "period": "daily", "alert_at": 0.8}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let r = ScopeRules::from_key(&k);
        assert_eq!(r.rpm, Some(600));
        assert_eq!(r.tpm, Some(200_000));
        assert_eq!(r.max_parallel, Some(20));
        assert_eq!(
            r.budget,
            Some(BudgetRule { limit_micros: 50_000_000, period: BudgetPeriod::Daily, alert_at: Some(0.8) })
        );
        let p: config::Project = serde_json::from_value(serde_json::json!({
            "name": "search", "budget": {"usd": 500, "period": "monthly"}, "rpm": 6000
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let r = ScopeRules::from_project(&p);
        assert_eq!((r.rpm, r.tpm, r.max_parallel), (Some(6000), None, None));
        assert_eq!(r.budget.map(|b| b.limit_micros), Some(500_000_000));
    }

    #[test]
    fn a_too_large_refusal_names_the_numbers() {
        let r = Refusal {
            dimension: Dimension::Tpm,
            scope: ScopeId::key("search-prod"),
            limit: 200_000,
            requested: 250_000,
            remaining: 200_000,
            retry_after: None,
            too_large: true,
        };
        let m = r.to_string();
        assert!(
            m.contains("250000 tokens")
                && m.contains("200000 tokens per minute")
                && m.contains("key search-prod"),
            "{m}"
        );
    }
}
