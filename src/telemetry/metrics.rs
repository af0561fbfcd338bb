//! The Prometheus metrics of SPEC section 7 (`llm_gateway_` prefix) on the maintained
//! `prometheus-client` crate, and their text exposition for the admin `/metrics`.
//! Does not serve HTTP and does not decide what happened: callers report outcomes.
//!
//! Label values are bounded: alias, provider, project, key and target names are looked up in
//! the set known from the config (`KnownNames`, refreshed by `Metrics::set_known` on reload);
//! anything else is recorded as `other`, and an empty name as `none`. Client-supplied model
//! names and JWT subjects therefore never become series.
//!
//! Hot path: `record_request` does one `ArcSwap` load, two short hash lookups on `&str` (no
//! allocation) and atomic adds on handles resolved once per (alias, provider, status) and
//! cached in `OnceLock` slots. Histograms are lock-free (`instruments::AtomicHistogram`).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::instruments::{AtomicHistogram, Labels, MicroCounter};
use crate::config::Config;

/// `Content-Type` of `Metrics::encode`'s answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Label value for a name that is not in the config.
pub const OTHER: &str = "other";
/// Label value for an empty name (e.g. no provider was chosen before the request failed).
pub const NONE: &str = "none";

/// `request_duration_seconds` bounds (µs): LLM calls run from tens of ms to minutes.
const DURATION_BOUNDS_US: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    20_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
];
/// `upstream_ttfb_seconds` bounds (µs).
const TTFB_BOUNDS_US: &[u64] = &[
    10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
    30_000_000,
];
/// `gateway_overhead_seconds` bounds (µs): the gateway's own time is sub-millisecond.
const OVERHEAD_BOUNDS_US: &[u64] =
    &[50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000];

/// Status codes that get their own `status` label value; any other code is recorded by
/// class (`1xx` … `5xx`), and a code outside 100..=599 as `other`.
const STATUS_CODES: [u16; 18] =
    [200, 201, 204, 400, 401, 403, 404, 408, 409, 413, 422, 429, 499, 500, 501, 502, 503, 504];
const STATUS_LABELS: [&str; 24] = [
    "200", "201", "204", "400", "401", "403", "404", "408", "409", "413", "422", "429", "499", "500", "501",
    "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx", OTHER,
];

/// The config names that may appear as label values.
#[derive(Clone, Debug, Default)]
pub struct KnownNames {
    pub aliases: Vec<String>,
    pub providers: Vec<String>,
    pub projects: Vec<String>,
    /// Virtual key ids from the config (for `budget_used_ratio{scope="key"}` only).
    pub keys: Vec<String>,
    /// Targets as `provider/model`, the config's own pair (for `circuit_open`).
    pub targets: Vec<String>,
}

/// Token counts of one request, for `tokens_total{direction}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// One finished request, as the proxy reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSample<'a> {
    /// The config alias the request was routed by (`""` when it failed before routing).
    pub alias: &'a str,
    /// The provider that served the last attempt (`""` when none was tried).
    pub provider: &'a str,
    pub project: &'a str,
    pub status: u16,
    /// Whole request, first byte in to last byte out.
    pub total: Duration,
    /// Time spent waiting on upstreams (connect + request + response, all attempts). The
    /// rest of `total` is the gateway's own time (`gateway_overhead_seconds`).
    pub upstream: Duration,
    /// Time to the upstream's first response byte, when an upstream answered.
    pub ttfb: Option<Duration>,
    pub tokens: TokenCounts,
    pub cost_micros: u64,
}

/// The refused dimension of a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitKind {
    Rpm = 0,
    Tpm = 1,
    Parallel = 2,
    Budget = 3,
}

/// The scope of a budget gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetScope {
    Key,
    Project,
}

/// The metrics registry and its pre-resolved handles. One per process, shared by `Arc`.
pub struct Metrics {
    registry: Registry,
    f: Families,
    resolved: ArcSwap<Resolved>,
    overhead: AtomicHistogram,
    tokens: [Counter; 4],
    ratelimited: [Counter; 4],
    reloads: [Counter; 2],
    alerts: [Counter; ALERT_KINDS.len()],
    active: Gauge,
    backend_errors: Counter,
}

/// The `kind` label values of `alerts_total`, in `AlertKind` order.
const ALERT_KINDS: [&str; 6] =
    ["budget_alert", "budget_exhausted", "circuit_open", "circuit_close", "alias_down", "reload_failed"];

/// Decrements `active_requests` when dropped (hold it in the request context).
#[derive(Debug)]
pub struct ActiveRequest(Gauge);

type HistogramFamily<const N: usize> = Family<Labels<N>, AtomicHistogram, fn() -> AtomicHistogram>;
type RatioGauge = Gauge<f64, AtomicU64>;

/// The labelled families, kept to create series from.
#[derive(Clone)]
struct Families {
    requests: Family<Labels<3>, Counter>,
    duration: HistogramFamily<2>,
    ttfb: HistogramFamily<1>,
    cost: Family<Labels<1>, MicroCounter>,
    budget: Family<Labels<2>, RatioGauge>,
    healthy: Family<Labels<1>, Gauge>,
    circuit: Family<Labels<1>, Gauge>,
}

/// Handles resolved for one `KnownNames`; replaced whole on `set_known`.
struct Resolved {
    aliases: Names,
    providers: Names,
    projects: Names,
    keys: Names,
    targets: Names,
    /// Per (alias, provider), created on first use.
    cells: Box<[OnceLock<Box<Cell>>]>,
    ttfb: Box<[OnceLock<AtomicHistogram>]>,
    cost: Box<[OnceLock<MicroCounter>]>,
    budget_keys: Box<[OnceLock<RatioGauge>]>,
    budget_projects: Box<[OnceLock<RatioGauge>]>,
    healthy: Box<[OnceLock<Gauge>]>,
    circuit: Box<[OnceLock<Gauge>]>,
}

/// Series of one (alias, provider) pair.
struct Cell {
    duration: AtomicHistogram,
    statuses: [OnceLock<Counter>; STATUS_LABELS.len()],
}

/// A bounded name table: the known names, then `other`, then `none`.
struct Names {
    index: foldhash::HashMap<Box<str>, usize>,
    values: Vec<Arc<str>>,
}

// === impl KnownNames ===

impl KnownNames {
    /// Every alias, provider, project, key id and target named by `cfg`.
    pub fn from_config(cfg: &Config) -> KnownNames {
        KnownNames {
            aliases: cfg.models.iter().map(|m| m.alias.clone()).collect(),
            providers: cfg.providers.iter().map(|p| p.name.clone()).collect(),
            projects: cfg.projects.iter().map(|p| p.name.clone()).collect(),
            keys: cfg.keys.iter().map(|k| k.id.clone()).collect(),
            targets: cfg
                .models
                .iter()
                .flat_map(|m| m.targets.iter().map(|t| target_label(&t.provider, &t.model)))
                .collect(),
        }
    }
}

/// The `circuit_open{target}` value of a target: `provider/model`.
pub fn target_label(provider: &str, model: &str) -> String {
    format!("{provider}/{model}")
}

// === impl Metrics ===

impl Metrics {
    pub fn new(known: &KnownNames) -> Metrics {
        let mut registry = Registry::with_prefix("llm_gateway");
        let f = Families {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            ttfb: Family::new_with_constructor(ttfb_histogram),
            cost: Family::default(),
            budget: Family::default(),
            healthy: Family::default(),
            circuit: Family::default(),
        };
        let overhead = AtomicHistogram::new(OVERHEAD_BOUNDS_US);
        let tokens_family = Family::<Labels<1>, Counter>::default();
        let ratelimited_family = Family::<Labels<1>, Counter>::default();
        let reloads_family = Family::<Labels<1>, Counter>::default();
        let alerts_family = Family::<Labels<1>, Counter>::default();
        let one = |fam: &Family<Labels<1>, Counter>, name: &'static str, value: &str| {
            fam.get_or_create_owned(&Labels([(name, Arc::from(value))]))
        };
        let tokens = ["input", "output", "cached", "reasoning"].map(|d| one(&tokens_family, "direction", d));
        let ratelimited = ["rpm", "tpm", "parallel", "budget"].map(|k| one(&ratelimited_family, "kind", k));
        let reloads = ["ok", "error"].map(|r| one(&reloads_family, "result", r));
        let alerts = ALERT_KINDS.map(|k| one(&alerts_family, "kind", k));
        let active = Gauge::default();
        let backend_errors = Counter::default();

        registry.register("requests", "Requests finished, by alias, provider and status", f.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Whole request time, first byte in to last byte out",
            f.duration.clone(),
        );
        registry.register("upstream_ttfb_seconds", "Time to the upstream's first byte", f.ttfb.clone());
        registry.register(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself (request time minus upstream time)",
            overhead.clone(),
        );
        registry.register("tokens", "Tokens reported by providers, by direction", tokens_family);
        registry.register("cost_usd", "Spend in US dollars, by project", f.cost.clone());
        registry.register("ratelimited", "Requests refused by a limit, by kind", ratelimited_family);
        registry.register("budget_used_ratio", "Spend this period over budget", f.budget.clone());
        registry.register("upstream_healthy", "1 when the provider passes health checks", f.healthy.clone());
        registry.register("circuit_open", "1 while the target's circuit breaker is open", f.circuit.clone());
        registry.register("active_requests", "Requests in flight", active.clone());
        registry.register("config_reloads", "Config reloads, by result", reloads_family);
        registry.register(
            "alerts",
            "Operational events raised (budget alert or exhausted, circuit open or closed, alias down, reload failed)",
            alerts_family,
        );
        registry.register(
            "limits_backend_errors",
            "Limits backend (Redis) calls that failed or timed out",
            backend_errors.clone(),
        );

        let resolved = ArcSwap::from_pointee(Resolved::new(known));
        Metrics {
            registry,
            f,
            resolved,
            overhead,
            tokens,
            ratelimited,
            reloads,
            alerts,
            active,
            backend_errors,
        }
    }

    /// Replaces the known names (call on every config reload). Series recorded so far keep
    /// their values; gauges of names no longer in the config are removed.
    pub fn set_known(&self, known: &KnownNames) {
        let next = Resolved::new(known);
        let prev = self.resolved.swap(Arc::new(next));
        let cur = self.resolved.load();
        // A config name that is not in the new config (never `other` or `none`).
        let gone = |old: &Names, new: &Names, i: usize| {
            let v = &old.values[i];
            (i < old.len() - 2 && !new.index.contains_key(&**v)).then(|| v.clone())
        };
        for (i, slot) in prev.healthy.iter().enumerate() {
            if let (Some(_), Some(v)) = (slot.get(), gone(&prev.providers, &cur.providers, i)) {
                self.f.healthy.remove(&Labels([("provider", v)]));
            }
        }
        for (i, slot) in prev.circuit.iter().enumerate() {
            if let (Some(_), Some(v)) = (slot.get(), gone(&prev.targets, &cur.targets, i)) {
                self.f.circuit.remove(&Labels([("target", v)]));
            }
        }
        for (i, slot) in prev.budget_keys.iter().enumerate() {
            if let (Some(_), Some(v)) = (slot.get(), gone(&prev.keys, &cur.keys, i)) {
                self.f.budget.remove(&Labels([("scope", Arc::from("key")), ("name", v)]));
            }
        }
        for (i, slot) in prev.budget_projects.iter().enumerate() {
            if let (Some(_), Some(v)) = (slot.get(), gone(&prev.projects, &cur.projects, i)) {
                self.f.budget.remove(&Labels([("scope", Arc::from("project")), ("name", v)]));
            }
        }
    }

    /// Records one finished request: count, duration, TTFB, overhead, tokens and cost.
    pub fn record_request(&self, s: &RequestSample<'_>) {
        let r = self.resolved.load();
        let a = r.aliases.get(s.alias);
        let p = r.providers.get(s.provider);
        let cell = r.cells[a * r.providers.len() + p].get_or_init(|| {
            let labels =
                Labels([("alias", r.aliases.values[a].clone()), ("provider", r.providers.values[p].clone())]);
            Box::new(Cell {
                duration: self.f.duration.get_or_create_owned(&labels),
                statuses: std::array::from_fn(|_| OnceLock::new()),
            })
        });
        let si = status_slot(s.status);
        cell.statuses[si]
            .get_or_init(|| {
                self.f.requests.get_or_create_owned(&Labels([
                    ("alias", r.aliases.values[a].clone()),
                    ("provider", r.providers.values[p].clone()),
                    ("status", Arc::from(STATUS_LABELS[si])),
                ]))
            })
            .inc();
        cell.duration.observe(s.total);
        self.overhead.observe(s.total.saturating_sub(s.upstream));
        if let Some(ttfb) = s.ttfb {
            r.ttfb[p]
                .get_or_init(|| {
                    self.f.ttfb.get_or_create_owned(&Labels([("provider", r.providers.values[p].clone())]))
                })
                .observe(ttfb);
        }
        let t = &s.tokens;
        for (counter, n) in self.tokens.iter().zip([t.input, t.output, t.cached, t.reasoning]) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        if s.cost_micros > 0 {
            let j = r.projects.get(s.project);
            r.cost[j]
                .get_or_init(|| {
                    self.f.cost.get_or_create_owned(&Labels([("project", r.projects.values[j].clone())]))
                })
                .add(s.cost_micros);
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start_request(&self) -> ActiveRequest {
        self.active.inc();
        ActiveRequest(self.active.clone())
    }

    /// Counts a request refused by a limit.
    pub fn ratelimited(&self, kind: RateLimitKind) {
        self.ratelimited[kind as usize].inc();
    }

    /// Sets `budget_used_ratio{scope, name}` (spend this period / budget). `name` is a key id
    /// or project name from the config; other names are recorded as `other`.
    pub fn set_budget_used(&self, scope: BudgetScope, name: &str, ratio: f64) {
        let r = self.resolved.load();
        let (names, slots, scope_label) = match scope {
            BudgetScope::Key => (&r.keys, &r.budget_keys, "key"),
            BudgetScope::Project => (&r.projects, &r.budget_projects, "project"),
        };
        let i = names.get(name);
        slots[i]
            .get_or_init(|| {
                self.f.budget.get_or_create_owned(&Labels([
                    ("scope", Arc::from(scope_label)),
                    ("name", names.values[i].clone()),
                ]))
            })
            .set(ratio);
    }

    /// Sets `upstream_healthy{provider}` to 1 or 0.
    pub fn set_upstream_healthy(&self, provider: &str, healthy: bool) {
        let r = self.resolved.load();
        let i = r.providers.get(provider);
        r.healthy[i]
            .get_or_init(|| {
                self.f.healthy.get_or_create_owned(&Labels([("provider", r.providers.values[i].clone())]))
            })
            .set(i64::from(healthy));
    }

    /// Sets `circuit_open{target}` to 1 or 0; `target` is `target_label(provider, model)`.
    pub fn set_circuit_open(&self, target: &str, open: bool) {
        let r = self.resolved.load();
        let i = r.targets.get(target);
        r.circuit[i]
            .get_or_init(|| {
                self.f.circuit.get_or_create_owned(&Labels([("target", r.targets.values[i].clone())]))
            })
            .set(i64::from(open));
    }

    /// Counts a config reload attempt (`result` ok or error).
    pub fn config_reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }

    /// Counts an operational event (`alerts_total{kind}`).
    pub fn alert_raised(&self, kind: super::AlertKind) {
        let i = match kind {
            super::AlertKind::BudgetAlert => 0,
            super::AlertKind::BudgetExhausted => 1,
            super::AlertKind::CircuitOpen => 2,
            super::AlertKind::CircuitClose => 3,
            super::AlertKind::AliasDown => 4,
            super::AlertKind::ReloadFailed => 5,
        };
        self.alerts[i].inc();
    }

    /// Counts a failed or timed-out call to the limits backend.
    pub fn limits_backend_error(&self) {
        self.backend_errors.inc();
    }

    /// Counts `n` failed or timed-out calls to the limits backend.
    pub fn limits_backend_errors(&self, n: u64) {
        self.backend_errors.inc_by(n);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a metric type.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }
}

fn duration_histogram() -> AtomicHistogram {
    AtomicHistogram::new(DURATION_BOUNDS_US)
}

fn ttfb_histogram() -> AtomicHistogram {
    AtomicHistogram::new(TTFB_BOUNDS_US)
}

/// The `STATUS_LABELS` index of a status code.
fn status_slot(status: u16) -> usize {
    match STATUS_CODES.iter().position(|&c| c == status) {
        Some(i) => i,
        None if (100..600).contains(&status) => STATUS_CODES.len() + usize::from(status / 100) - 1,
        None => STATUS_LABELS.len() - 1,
    }
}

// === impl ActiveRequest ===

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl Resolved ===

impl Resolved {
    fn new(k: &KnownNames) -> Resolved {
        let aliases = Names::new(&k.aliases);
        let providers = Names::new(&k.providers);
        let projects = Names::new(&k.projects);
        let keys = Names::new(&k.keys);
        let targets = Names::new(&k.targets);
        Resolved {
            cells: slots(aliases.len() * providers.len()),
            ttfb: slots(providers.len()),
            cost: slots(projects.len()),
            budget_keys: slots(keys.len()),
            budget_projects: slots(projects.len()),
            healthy: slots(providers.len()),
            circuit: slots(targets.len()),
            aliases,
            providers,
            projects,
            keys,
            targets,
        }
    }
}

fn slots<T>(n: usize) -> Box<[OnceLock<T>]> {
    (0..n).map(|_| OnceLock::new()).collect()
}

// === impl Names ===

impl Names {
    fn new(list: &[String]) -> Names {
        let mut index = foldhash::HashMap::with_capacity_and_hasher(list.len(), Default::default());
        let mut values: Vec<Arc<str>> = Vec::with_capacity(list.len() + 2);
        for name in list {
            // `other` and `none` are reserved for the overflow values.
            if name.is_empty() || name == OTHER || name == NONE || index.contains_key(name.as_str()) {
                continue;
            }
            index.insert(Box::from(name.as_str()), values.len());
            values.push(Arc::from(name.as_str()));
        }
        values.push(Arc::from(OTHER));
        values.push(Arc::from(NONE));
        Names { index, values }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn get(&self, name: &str) -> usize {
        if name.is_empty() {
            return self.values.len() - 1;
        }
        self.index.get(name).copied().unwrap_or(self.values.len() - 2)
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
