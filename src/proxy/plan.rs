//! The order of attempts for one request: the alias's targets (chosen by `routing`), up to
//! `limits.max_attempts`, then each fallback alias in turn. The proxy reports each attempt's
//! outcome back here so target health, circuits and cool-downs learn from it.

use std::time::{Duration, Instant};

use super::upstream::AttemptError;
use crate::config::Snapshot;

/// One attempt: which alias (the requested one or a fallback) and which of its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub alias: usize,
    pub target: usize,
}

/// Routing state shared by all requests (outlives config snapshots).
#[derive(Default)]
pub struct Routing {}

pub struct Plan {
    /// The requested alias, then its fallbacks.
    chain: Vec<usize>,
    pos: usize,
    tried: Vec<usize>,
    max_attempts: u32,
    targets_per_alias: Vec<usize>,
}

impl Routing {
    pub fn plan(&self, snap: &Snapshot, alias: usize) -> Plan {
        let mut chain = vec![alias];
        chain.extend(snap.aliases[alias].fallbacks.iter().copied().filter(|&f| f != alias));
        let targets_per_alias = chain.iter().map(|&a| snap.aliases[a].targets.len()).collect();
        Plan { chain, pos: 0, tried: Vec::new(), max_attempts: snap.limits.max_attempts, targets_per_alias }
    }
}

impl Plan {
    pub fn next(&mut self, _now: Instant) -> Option<Step> {
        while self.pos < self.chain.len() {
            let n = self.targets_per_alias[self.pos];
            if (self.tried.len() as u32) < self.max_attempts && self.tried.len() < n {
                let t = self.tried.len();
                self.tried.push(t);
                return Some(Step { alias: self.chain[self.pos], target: t });
            }
            self.pos += 1;
            self.tried.clear();
        }
        None
    }

    pub fn succeeded(&mut self, _step: &Step, _latency: Duration) {}

    pub fn failed(&mut self, _step: &Step, _e: &AttemptError, _retry_after: Option<Duration>) {}

    /// The upstream answered `status` (not 2xx): whether to try the next target.
    pub fn rejected(
        &mut self,
        _step: &Step,
        status: u16,
        _headers: Option<&http::HeaderMap>,
        _retry_after: Option<&str>,
    ) -> bool {
        status == 408 || status == 429 || status >= 500
    }
}
