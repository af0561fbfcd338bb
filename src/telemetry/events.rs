//! Operational events (budget crossings, circuits, alias down, failed reloads): the raising
//! side. `Events::raise` never blocks; the delivering task (`server::events::Watch`) logs,
//! counts, audits and posts them to the webhook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::{AlertEvent, AlertKind};
use crate::limits::{BudgetAlert, ScopeKind};

/// Events waiting for the task; beyond this they are dropped and counted (never blocks).
const QUEUE: usize = 1024;

/// The raising side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<AlertEvent>,
    dropped: Arc<AtomicU64>,
}

/// The receiving end, for the delivering task.
pub struct EventReceiver(pub mpsc::Receiver<AlertEvent>);

// === impl Events ===

impl Events {
    /// A raising handle and the receiver the delivering task (`server::events::Watch`) takes.
    pub fn new() -> (Events, EventReceiver) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Events { tx, dropped: Arc::new(AtomicU64::new(0)) }, EventReceiver(rx))
    }

    /// Queues an event without waiting; a full queue drops it (counted, logged at powers of 2).
    pub fn raise(&self, ev: AlertEvent) {
        if self.tx.try_send(ev).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped_total = n, "event queue full; event dropped");
            }
        }
    }

    /// The budget crossings a settled reservation reported.
    pub fn budget(&self, alerts: Vec<BudgetAlert>) {
        for a in alerts {
            self.raise(budget_event(&a, SystemTime::now()));
        }
    }
}

/// The event for one budget crossing: subject `key:<id>` or `project:<name>`.
pub fn budget_event(a: &BudgetAlert, now: SystemTime) -> AlertEvent {
    let scope = match a.scope.kind {
        ScopeKind::Key => format!("key:{}", a.scope.name),
        ScopeKind::Project => format!("project:{}", a.scope.name),
    };
    let usd = |m: u64| m as f64 / 1e6;
    let (kind, detail) = match a.kind {
        crate::limits::AlertKind::Threshold => (
            AlertKind::BudgetAlert,
            format!(
                "spent ${:.6} of ${:.6} this {:?} period (alert_at {})",
                usd(a.spent_micros),
                usd(a.limit_micros),
                a.period,
                a.alert_at.unwrap_or_default()
            ),
        ),
        crate::limits::AlertKind::Exhausted => (
            AlertKind::BudgetExhausted,
            format!(
                "spent ${:.6} of ${:.6} this {:?} period; refused until the period ends",
                usd(a.spent_micros),
                usd(a.limit_micros),
                a.period
            ),
        ),
    };
    AlertEvent::new(kind, scope, detail, now)
}
