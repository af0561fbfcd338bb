//! Operational events: budget crossings (raised by the account step), circuits opening and
//! closing, an alias with no available target, a refused config reload. Each event is
//! delivered once, off the request path, to four places: a WARN log line, the
//! `alerts_total{kind}` counter, an audit line (actor `gateway`, when the admin API keeps an
//! audit log) and the alert webhook (`alerts.webhook`, when configured).
//!
//! One background task ([`Watch`]) does the delivering and also watches the routers every
//! [`TICK`]: circuit transitions are read from the breakers' monotonic counters (so an
//! opening between two looks is still seen), provider health and circuit state feed the
//! `upstream_healthy` / `circuit_open` gauges, budgets feed `budget_used_ratio`, and every new
//! runtime (file, SIGHUP or admin API) updates the metrics' known names and the webhook URL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::admin::Admin;
use crate::limits::{BudgetRule, ScopeId, ScopeKind, ScopeRules};
use crate::routing::CircuitState;
use crate::runtime::{Runtime, RuntimeStore};
use crate::telemetry::events::EventReceiver;
use crate::telemetry::metrics::target_label;
use crate::telemetry::metrics::BudgetScope;
use crate::telemetry::{redact_text, AlertEvent, AlertKind, Alerts, KnownNames, Metrics};

/// How often routers and budgets are looked at.
pub const TICK: Duration = Duration::from_millis(250);

/// The delivering and watching task.
pub struct Watch {
    rx: parking_lot::Mutex<Option<tokio::sync::mpsc::Receiver<AlertEvent>>>,
    store: Arc<RuntimeStore>,
    metrics: Arc<Metrics>,
    alerts: Alerts,
    audit: Option<Arc<Admin>>,
    /// Spend rebuilt from the usage log at start, to seed Redis where it has none.
    seed: parking_lot::Mutex<Vec<(ScopeId, u64)>>,
}

/// What the watcher remembers between ticks.
#[derive(Default)]
struct Seen {
    /// (opened, closed) counts of each target's breaker, by `provider/model`.
    circuits: HashMap<String, (u64, u64)>,
    /// Aliases that had no available target at the last tick.
    down: HashMap<String, bool>,
    /// Failed Redis calls already counted in the metric.
    backend_errors: u64,
}

// === impl Watch ===

impl Watch {
    /// The task delivering what `events` raises (see `telemetry::Events::new`) and watching `store`.
    pub fn new(
        rx: EventReceiver,
        store: Arc<RuntimeStore>,
        metrics: Arc<Metrics>,
        alerts: Alerts,
        audit: Option<Arc<Admin>>,
        seed: Vec<(ScopeId, u64)>,
    ) -> Watch {
        let seed = parking_lot::Mutex::new(seed);
        Watch { rx: parking_lot::Mutex::new(Some(rx.0)), store, metrics, alerts, audit, seed }
    }

    /// Redis is the source of truth for spend: each budget scope's period is seeded from the
    /// usage log only where Redis has nothing yet.
    async fn seed_shared(&self) {
        let rt = self.store.load();
        let Some(shared) = &rt.shared else { return };
        let seed = std::mem::take(&mut *self.seed.lock());
        for (scope, micros) in seed {
            let (rules, tag) = match scope.kind {
                ScopeKind::Key => {
                    let Some(k) = rt.snap.keys.values().find(|k| *k.id == *scope.name).cloned() else {
                        continue;
                    };
                    let rules = ScopeRules {
                        rpm: k.rpm,
                        tpm: k.tpm,
                        max_parallel: k.max_parallel,
                        budget: k.budget.as_ref().map(BudgetRule::from_config),
                    };
                    // The same tag admission uses: the scopes a request of this key has.
                    let principal = crate::admission::Principal { key: k.clone() };
                    let tag =
                        crate::limits::shared::tag_of(&crate::admission::scopes(&rt, &principal, &rules));
                    (rules, tag)
                }
                ScopeKind::Project => {
                    let Some(r) = rt.project_rules.get(&*scope.name) else { continue };
                    (r.clone(), format!("p:{}", scope.name))
                }
            };
            match shared.limits.seed_spend(&scope, &tag, &rules, micros, SystemTime::now()).await {
                Ok(true) => {
                    tracing::info!(%scope, spent_micros = micros, "redis had no spend this period: seeded from the usage log")
                }
                Ok(false) => tracing::info!(%scope, "spend this period read from redis"),
                Err(e) => tracing::warn!(%scope, "cannot seed spend in redis: {e}"),
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Watch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().take() else { return };
        let mut runtimes = self.store.subscribe();
        let mut seen = Seen::default();
        self.on_runtime(&self.store.load());
        self.seed_shared().await;
        let _ = self.scan(&self.store.load(), &mut seen, false);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(ev) = rx.recv() => self.deliver(ev).await,
                _ = tick.tick() => {
                    for ev in self.scan(&self.store.load(), &mut seen, true) {
                        self.deliver(ev).await;
                    }
                }
                Ok(()) = runtimes.changed() => {
                    let rt = runtimes.borrow_and_update().clone();
                    self.on_runtime(&rt);
                }
                _ = shutdown.changed() => break,
            }
        }
        // Deliver what is queued (log, metric and audit at once; the webhook worker has its
        // own drain).
        while let Ok(ev) = rx.try_recv() {
            self.deliver(ev).await;
        }
    }
}

impl Watch {
    /// A new runtime: bounded metric labels follow the config, and so does the webhook.
    fn on_runtime(&self, rt: &Runtime) {
        let cfg = &rt.snap.config;
        self.metrics.set_known(&KnownNames::from_config(cfg));
        if let Err(e) = self.alerts.set_config(cfg.alerts.as_ref()) {
            tracing::warn!("alerts: {e}");
        }
    }

    async fn deliver(&self, ev: AlertEvent) {
        let detail = redact_text(&ev.detail).into_owned();
        tracing::warn!(kind = ev.kind.as_str(), subject = %ev.subject, "{detail}");
        self.metrics.alert_raised(ev.kind);
        if let Some(admin) = &self.audit {
            let (admin, kind, subject, d) =
                (admin.clone(), ev.kind.as_str(), ev.subject.clone(), detail.clone());
            // The audit line is fsynced: off the async workers.
            let written = tokio::task::spawn_blocking(move || admin.record_event(kind, &subject, &d)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("cannot audit the {} event: {e}", ev.kind.as_str()),
                Err(e) => tracing::error!("cannot audit the {} event: {e}", ev.kind.as_str()),
            }
        }
        self.alerts.send(AlertEvent { detail, ..ev });
    }

    /// One look at every target, provider, alias and budget of `rt`; the events it saw. With
    /// `report` false (the first look) transitions are only remembered, not raised.
    fn scan(&self, rt: &Runtime, seen: &mut Seen, report: bool) -> Vec<AlertEvent> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let snap = &rt.snap;
        let mut out = Vec::new();
        for (a, router) in rt.routers.iter().enumerate() {
            let alias = &snap.aliases[a];
            let mut reasons = Vec::new();
            for (i, t) in alias.targets.iter().enumerate() {
                let state = router.target(i);
                let label = target_label(&snap.providers[t.provider].name, &t.model);
                let circuit = state.circuit();
                self.metrics.set_circuit_open(&label, circuit.state() != CircuitState::Closed);
                let now_counts = circuit.transitions();
                let (was_opened, was_closed) =
                    seen.circuits.insert(label.clone(), now_counts).unwrap_or(now_counts);
                if report && now_counts.0 > was_opened {
                    let n = circuit.config().failure_threshold;
                    let last = state.snapshot().last_error.map(|e| e.message).unwrap_or_default();
                    let detail =
                        format!("circuit opened (threshold {n} consecutive failures); last error: {last}");
                    out.push(AlertEvent::new(AlertKind::CircuitOpen, label.clone(), detail, wall));
                }
                if report && now_counts.1 > was_closed {
                    let detail = "a probe succeeded; the circuit closed".to_string();
                    out.push(AlertEvent::new(AlertKind::CircuitClose, label.clone(), detail, wall));
                }
                if let Some(r) = state.unavailable_reason(now) {
                    reasons.push(format!("{label}: {r}"));
                }
                self.metrics.set_upstream_healthy(&snap.providers[t.provider].name, state.provider_healthy());
            }
            let down = !alias.targets.is_empty() && reasons.len() == alias.targets.len();
            let was_down = seen.down.insert(alias.name.clone(), down).unwrap_or(false);
            if report && down && !was_down {
                let detail = format!("no target can take traffic: {}", reasons.join("; "));
                out.push(AlertEvent::new(AlertKind::AliasDown, alias.name.clone(), detail, wall));
            }
            if report && !down && was_down {
                tracing::info!(alias = %alias.name, "alias available again");
            }
        }
        self.budgets(rt, now, wall);
        if let Some(shared) = &rt.shared {
            let errors = shared.limits.health().errors;
            if errors > seen.backend_errors {
                self.metrics.limits_backend_errors(errors - seen.backend_errors);
                seen.backend_errors = errors;
            }
        }
        out
    }

    /// `budget_used_ratio` of every key and project with a budget.
    fn budgets(&self, rt: &Runtime, now: Instant, wall: SystemTime) {
        let mono = crate::admission::mono_ns(now);
        for k in &rt.snap.config.keys {
            let Some(b) = &k.budget else { continue };
            let rules = ScopeRules { budget: Some(BudgetRule::from_config(b)), ..ScopeRules::default() };
            if let Some(v) = rt.limits.state(&ScopeId::key(k.id.as_str()), &rules, mono, wall).budget {
                self.metrics.set_budget_used(BudgetScope::Key, &k.id, v.used_ratio);
            }
        }
        for (name, rules) in &rt.project_rules {
            if rules.budget.is_none() {
                continue;
            }
            if let Some(v) = rt.limits.state(&ScopeId::project(name.as_str()), rules, mono, wall).budget {
                self.metrics.set_budget_used(BudgetScope::Project, name, v.used_ratio);
            }
        }
    }
}
