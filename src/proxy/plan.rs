//! The proxy's side of routing: wraps `routing::AttemptPlan` for one request over the runtime's
//! routers (built once per config by `runtime::Registries`), turning attempt results into
//! routing outcomes and keeping the report of every target tried or skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::upstream::AttemptError;
use crate::error::TargetReport;
use crate::formats::UpstreamErrorClass;
use crate::routing::{AttemptPlan, Failure, Outcome, Retry};
use crate::runtime::Runtime;

pub use crate::routing::Step;

/// One request's attempts.
pub struct Plan {
    inner: AttemptPlan,
    rt: Arc<Runtime>,
    chain: Vec<usize>,
    /// Every target this request tried, and how it went.
    pub report: Vec<TargetReport>,
    pub timed_out: bool,
    /// Pinned to this target of `chain[0]` (a stored response lives there): the inner plan
    /// runs over a one-target router whose index 0 stands for it.
    pinned: Option<usize>,
    /// When the plan was made, for its first attempt's `next` (one clock read less per
    /// request: the first attempt follows at once).
    made: Option<Instant>,
    /// When the current attempt began (after its backoff, if any).
    step_at: Instant,
}

// === impl Plan ===

impl Plan {
    /// The attempts for a request to `alias` (then its fallbacks). Each attempt may take the
    /// full `upstream_timeout`; the whole request is bounded by `max_attempts` of them.
    pub fn new(rt: &Arc<Runtime>, alias: usize) -> Plan {
        let snap = &rt.snap;
        let mut chain = vec![alias];
        chain.extend(snap.aliases[alias].fallbacks.iter().copied().filter(|&f| f != alias));
        let routers = chain.iter().map(|&a| (a, rt.routers[a].clone())).collect();
        let now = Instant::now();
        let deadline = now + snap.limits.upstream_timeout * snap.limits.max_attempts.max(1);
        Plan {
            inner: AttemptPlan::new(routers, snap.limits.max_attempts, deadline),
            rt: rt.clone(),
            chain,
            report: Vec::new(),
            timed_out: false,
            pinned: None,
            made: Some(now),
            step_at: now,
        }
    }

    /// The attempts for a request that must reach target `target` of `alias` and no other (a
    /// follow-up to a response stored in that provider account): no other target, no
    /// fallback. The target's health and circuit are its shared ones.
    pub fn pinned(rt: &Arc<Runtime>, alias: usize, target: usize) -> Plan {
        let snap = &rt.snap;
        let state = rt.routers[alias].target(target).clone();
        let router = Arc::new(crate::routing::AliasRouter::new(vec![state], &[1]));
        let now = Instant::now();
        let deadline = now + snap.limits.upstream_timeout * snap.limits.max_attempts.max(1);
        Plan {
            inner: AttemptPlan::new(vec![(alias, router)], snap.limits.max_attempts, deadline),
            rt: rt.clone(),
            chain: vec![alias],
            report: Vec::new(),
            timed_out: false,
            pinned: Some(target),
            made: Some(now),
            step_at: now,
        }
    }

    /// The inner plan's view of `step` (index 0 of the one-target router when pinned).
    fn inner_step(&self, step: &Step) -> Step {
        let mut s = *step;
        if self.pinned.is_some() {
            s.target = 0;
        }
        s
    }

    /// The next attempt, after sleeping its backoff (if any).
    pub async fn next(&mut self) -> Option<Step> {
        let now = self.made.take().unwrap_or_else(Instant::now);
        let mut step = self.inner.next(now)?;
        if let Some(t) = self.pinned {
            step.target = t;
        }
        self.step_at = now;
        if !step.wait.is_zero() {
            tokio::time::sleep(step.wait).await;
            self.step_at = Instant::now();
        }
        Some(step)
    }

    /// When the attempt `next` last gave began: the clock read `next` made, or the end of the
    /// attempt's backoff.
    pub fn step_started(&self) -> Instant {
        self.step_at
    }

    /// `provider/model` of a step's target.
    pub fn name(&self, step: &Step) -> String {
        let snap = &self.rt.snap;
        let t = &snap.aliases[step.alias].targets[step.target];
        format!("{}/{}", snap.providers[t.provider].name, t.model)
    }

    /// Record that `step` was not sent or failed without an upstream verdict (e.g. the request
    /// cannot be translated for it): the plan moves on, the target's health is untouched.
    pub fn skipped(&mut self, step: &Step, why: impl Into<String>) {
        let target = self.name(step);
        self.report.push(TargetReport { target, outcome: why.into() });
    }

    pub fn succeeded(&mut self, step: &Step, latency: Duration) {
        let step = self.inner_step(step);
        self.inner.answered(&step, 200, Retry::No, latency, Instant::now());
    }

    pub fn failed(&mut self, step: &Step, e: &AttemptError) {
        let failure = match e {
            AttemptError::Timeout { .. } => {
                self.timed_out = true;
                Failure::Timeout
            }
            _ => Failure::Connect,
        };
        let target = self.name(step);
        self.report.push(TargetReport { target, outcome: e.to_string() });
        let step = self.inner_step(step);
        self.inner.failed(&step, failure, Instant::now());
    }

    /// The upstream answered `status` (not 2xx), classified by the one error table
    /// (`formats::classify_upstream_error`): whether to try another attempt.
    pub fn rejected(
        &mut self,
        step: &Step,
        status: u16,
        class: &UpstreamErrorClass,
        latency: Duration,
    ) -> bool {
        let target = self.name(step);
        let outcome = match &class.provider_code {
            Some(code) => format!("HTTP {status} ({code})"),
            None => format!("HTTP {status}"),
        };
        self.report.push(TargetReport { target, outcome });
        let step = self.inner_step(step);
        let outcome = self.inner.answered(&step, status, class.retry, latency, Instant::now());
        !matches!(outcome, Outcome::Success | Outcome::Client)
    }

    /// The report, completed with every target of the chain that was never tried and why.
    pub fn into_report(mut self) -> (Vec<TargetReport>, bool) {
        let now = Instant::now();
        for &a in &self.chain {
            let router = &self.rt.routers[a];
            let alias = &self.rt.snap.aliases[a];
            for (i, t) in alias.targets.iter().enumerate() {
                if self.pinned.is_some_and(|p| p != i) {
                    continue;
                }
                let name = format!("{}/{}", self.rt.snap.providers[t.provider].name, t.model);
                if self.report.iter().any(|r| r.target == name) {
                    continue;
                }
                let why = router
                    .target(i)
                    .unavailable_reason(now)
                    .map(|r| format!("skipped: {r}"))
                    .unwrap_or_else(|| "not tried (attempts or time exhausted)".into());
                self.report.push(TargetReport { target: name, outcome: why });
            }
        }
        (self.report, self.timed_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pinned_plan_tries_only_its_target_and_reports_only_it() {
        let text = "listen: 127.0.0.1:1\nlimits: { max_attempts: 3, circuit_breaker: { failure_threshold: 3 } }\nproviders: [{name: a, kind: mock}, {name: b, kind: mock}]\nmodels: [{alias: x, targets: [{provider: a, model: m0}, {provider: b, model: m1}]}]\n";
        let store =
            crate::runtime::RuntimeStore::from_text(std::path::Path::new("x.yaml"), text.into()).unwrap();
        let rt = store.load();
        let mut plan = Plan::pinned(&rt, 0, 1);
        let mut seen = Vec::new();
        while let Some(step) = plan.next().await {
            seen.push(step.target);
            let e = AttemptError::Connect { provider: "b".into(), detail: "refused".into() };
            plan.failed(&step, &e);
        }
        assert_eq!(seen, vec![1, 1, 1], "the pinned target only, up to max_attempts");
        let (report, _) = plan.into_report();
        assert!(report.iter().all(|r| r.target == "b/m1"), "{report:?}");
        // The failures landed on the target's shared state: its circuit is open for everyone.
        let now = Instant::now();
        assert!(!rt.routers[0].target(1).is_available(now), "target 1 circuit open");
        assert!(rt.routers[0].target(0).is_available(now), "target 0 untouched");
    }
}
