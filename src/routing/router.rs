//! One alias's targets and their smooth weighted round-robin: which target to try next,
//! given what this request already tried. Built once per config snapshot from shared
//! [`TargetState`]s; it holds no per-request state (that is the caller's `tried`/`last`).

use std::sync::Arc;
use std::time::Instant;

use super::selector::SmoothWeighted;
use super::targets::TargetState;

/// The targets of one alias, in config order, with their weights.
#[derive(Debug)]
pub struct AliasRouter {
    targets: Box<[Arc<TargetState>]>,
    selector: SmoothWeighted,
}

// === impl AliasRouter ===

impl AliasRouter {
    /// `targets[i]` has weight `weights[i]` (extra weights or targets are ignored).
    pub fn new(targets: Vec<Arc<TargetState>>, weights: &[u32]) -> Self {
        let n = targets.len().min(weights.len());
        AliasRouter {
            selector: SmoothWeighted::new(&weights[..n]),
            targets: targets.into_iter().take(n).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The state of target `i` (config order), for `on_success`/`on_failure`.
    pub fn target(&self, i: usize) -> &Arc<TargetState> {
        &self.targets[i]
    }

    pub fn targets(&self) -> &[Arc<TargetState>] {
        &self.targets
    }

    /// The next target index to try at `now`, or `None` when no target can take it.
    ///
    /// Candidates are the targets that are available (healthy, not cooling down, circuit
    /// closed or ready for its probe) and not in `tried`. `last` (the target this request
    /// just failed on) is skipped too, unless it is the only candidate left: so a retry never
    /// hits the same target twice in a row when another is available, and a single-target
    /// alias can still retry its one target (pass it in `last`, not in `tried`). Among the
    /// candidates the choice is smooth weighted round-robin, shared by all requests. The
    /// chosen target's circuit is claimed (`try_acquire`): a half-open target is returned
    /// to exactly one request, its probe.
    pub fn pick(&self, tried: &[usize], last: Option<usize>, now: Instant) -> Option<usize> {
        let n = self.targets.len();
        let mut excluded: u64 = 0; // bit per target, for the first 64 (more is not realistic)
        let bit = |i: usize| if i < 64 { 1u64 << i } else { 0 };
        for &t in tried {
            excluded |= bit(t);
        }
        for _ in 0..=n {
            let avail =
                |i: usize| excluded & bit(i) == 0 && !tried.contains(&i) && self.targets[i].is_available(now);
            let others = |i: usize| Some(i) != last && avail(i);
            let i = self.selector.pick(others).or_else(|| last.filter(|&l| l < n && avail(l)))?;
            if self.targets[i].try_acquire(now) {
                return Some(i);
            }
            // Lost the half-open probe to another request (or it just closed): try the rest.
            excluded |= bit(i);
            if i >= 64 {
                return None;
            }
        }
        None
    }

    /// Panic mode: when no target is available, the one whose quota cool-down ends first among
    /// those that are otherwise usable (healthy, circuit allowing). Claims it like `pick`.
    pub fn pick_cooling(&self, now: Instant, skip: &[usize]) -> Option<usize> {
        let mut order: Vec<(Instant, usize)> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .filter_map(|(i, t)| t.cool_down_until(now).map(|until| (until, i)))
            .collect();
        order.sort();
        order.into_iter().map(|(_, i)| i).find(|&i| self.targets[i].try_acquire_ignoring_cooldown(now))
    }
}
