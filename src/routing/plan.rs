//! The attempt order of one request, as a small state machine the proxy drives: the alias's
//! targets (up to `max_attempts`, untried targets first, never the same one twice in a row
//! when another is available), then each fallback alias in turn; how long to wait before
//! each attempt; and what each answer means. It sends nothing and sleeps nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::retry::{backoff, outcome, Outcome, Retry};
use super::router::AliasRouter;
use super::targets::Failure;

/// Backoff settings for retrying a target after a transient error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Cap of the first retry's jittered wait; doubles each retry.
    pub base: Duration,
    /// Largest cap.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { base: Duration::from_millis(100), max: Duration::from_secs(2) }
    }
}

/// One attempt to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The caller's id of the alias (as given to [`AttemptPlan::new`]).
    pub alias: usize,
    /// Position of that alias in the chain (0 = the requested alias).
    pub chain_pos: usize,
    /// Target index within the alias (config order).
    pub target: usize,
    /// Sleep this long before sending (non-zero only when retrying a target this request
    /// already tried after a transient error).
    pub wait: Duration,
}

/// The per-request plan. Build it with the requested alias's router followed by its
/// fallbacks' routers, then loop: `next` → (sleep `wait`) → send → report with
/// `answered` / `failed` → `next` ... until `next` gives `None` or the answer is final.
pub struct AttemptPlan {
    chain: Vec<(usize, Arc<AliasRouter>)>,
    max_attempts: u32,
    deadline: Instant,
    policy: BackoffPolicy,
    pos: usize,
    in_alias: u32,
    tried: Vec<usize>,
    last: Option<usize>,
    last_transient: bool,
    backoffs: u32,
    attempts: u32,
    done: bool,
    /// Panic-mode attempts made: (chain position, target).
    panic_tried: Vec<(usize, usize)>,
}

// === impl AttemptPlan ===

impl AttemptPlan {
    /// `chain`: `(caller's alias id, router)` for the requested alias then its fallbacks, in
    /// order. `max_attempts` (`limits.max_attempts`, at least 1) applies per alias.
    /// `deadline`: no attempt starts (or waits) past it.
    pub fn new(chain: Vec<(usize, Arc<AliasRouter>)>, max_attempts: u32, deadline: Instant) -> Self {
        AttemptPlan {
            chain,
            max_attempts: max_attempts.max(1),
            deadline,
            policy: BackoffPolicy::default(),
            pos: 0,
            in_alias: 0,
            tried: Vec::new(),
            last: None,
            last_transient: false,
            backoffs: 0,
            attempts: 0,
            done: false,
            panic_tried: Vec::new(),
        }
    }

    pub fn with_backoff(mut self, policy: BackoffPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Attempts handed out so far (for `x-gateway-attempts` and the usage line).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next attempt at `now`, or `None`: a final answer was reported, every alias in the
    /// chain is exhausted or has no available target, or the deadline is too close.
    pub fn next(&mut self, now: Instant) -> Option<Step> {
        while !self.done && self.pos < self.chain.len() {
            let (alias, router) = &self.chain[self.pos];
            if self.in_alias < self.max_attempts {
                let pick =
                    router.pick(&self.tried, self.last, now).or_else(|| router.pick(&[], self.last, now));
                if let Some(target) = pick {
                    let revisit = self.tried.contains(&target);
                    let mut wait = Duration::ZERO;
                    if revisit && self.last_transient {
                        let left = self.deadline.saturating_duration_since(now);
                        wait = backoff(self.backoffs, self.policy.base, self.policy.max, left);
                        self.backoffs += 1;
                    }
                    if now + wait >= self.deadline {
                        self.done = true;
                        return None;
                    }
                    let step = Step { alias: *alias, chain_pos: self.pos, target, wait };
                    self.in_alias += 1;
                    self.attempts += 1;
                    if !revisit {
                        self.tried.push(target);
                    }
                    self.last = Some(target);
                    return Some(step);
                }
            }
            self.pos += 1;
            self.in_alias = 0;
            self.tried.clear();
            self.last = None;
            self.last_transient = false;
        }
        self.panic_step(now)
    }

    /// Panic mode: every target of every alias is unavailable, some only because of a quota
    /// cool-down. Rather than failing without trying, attempt the cooling targets, the one whose
    /// cool-down ends first first, each at most once, up to `max_attempts` in all. Health and
    /// open circuits still apply.
    fn panic_step(&mut self, now: Instant) -> Option<Step> {
        if self.done || self.panic_tried.len() as u32 >= self.max_attempts || now >= self.deadline {
            return None;
        }
        for (pos, (alias, router)) in self.chain.iter().enumerate() {
            let skip: Vec<usize> =
                self.panic_tried.iter().filter(|(p, _)| *p == pos).map(|(_, t)| *t).collect();
            if let Some(target) = router.pick_cooling(now, &skip) {
                self.attempts += 1;
                self.pos = self.chain.len();
                self.panic_tried.push((pos, target));
                return Some(Step { alias: *alias, chain_pos: pos, target, wait: Duration::ZERO });
            }
        }
        None
    }

    /// Reports an HTTP answer to `step` (`latency`: time to the response header; `retry`: the
    /// error's class from `formats::classify_upstream_error`, ignored for a success) and
    /// returns what it means. `Success` and `Client` are final (the answer goes to the client
    /// and `next` gives `None`); the others count against the target: call `next`.
    pub fn answered(
        &mut self,
        step: &Step,
        status: u16,
        retry: Retry,
        latency: Duration,
        now: Instant,
    ) -> Outcome {
        let outcome = outcome(status, retry);
        let target = self.chain[step.chain_pos].1.target(step.target);
        match outcome {
            Outcome::Success => {
                target.on_success(latency);
                self.done = true;
            }
            Outcome::Client => {
                target.on_client_error(latency);
                self.done = true;
            }
            Outcome::Quota { retry_after } => self.failed(step, Failure::Quota { retry_after }, now),
            Outcome::Transient => self.failed(step, Failure::Status(status), now),
            Outcome::NotReady => {
                target.on_not_ready(latency, now);
                self.last_transient = true;
            }
        }
        outcome
    }

    /// Reports a failure without a usable answer (connect error, timeout) or a failure the
    /// caller classified itself. The plan moves on at the next `next`.
    pub fn failed(&mut self, step: &Step, failure: Failure, now: Instant) {
        self.chain[step.chain_pos].1.target(step.target).on_failure(failure, now);
        self.last_transient = !matches!(failure, Failure::Quota { .. });
    }
}
