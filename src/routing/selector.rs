//! Smooth weighted round-robin (nginx's algorithm), lock-free, with a per-pick accept
//! predicate. It knows indexes and weights only: which targets are available is the caller's
//! predicate (see `router.rs`), and what a target is lives in `targets.rs`.
//!
//! Why not `pingora_load_balancing::selection::RoundRobin` (`Weighted<RoundRobin>`)?
//! Measured on 0.9.1 (`selector_tests.rs`): it repeats each backend `weight` times in a table
//! and walks it with one counter, so weights 3:1 come out as runs `A A A B A A A B`; its
//! fallback iteration (what `select_with` walks when `accept` says no) is uniform, ignoring
//! weights; and `Backend` identity is `addr + weight` only, so two models on one provider
//! (same address, same weight) collapse into one backend. Here picks interleave (`A A B A`),
//! a skipped target's share goes to the others in their weight ratio, and the items are
//! plain indexes. [`SmoothWeighted`] also implements pingora's [`BackendSelection`], so it
//! can drive a `LoadBalancer<SmoothWeighted>` where addresses are the unit.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;

/// Smooth weighted round-robin state over `n` items.
///
/// Each pick adds every accepted item's weight to its `current` counter, chooses the largest
/// (lowest index on ties) and subtracts the accepted total from it. Counters are atomics:
/// concurrent picks may see each other half-way, which can only change *which* item wins a
/// close race, never the long-run proportions (every add and subtract lands exactly once).
#[derive(Debug)]
pub struct SmoothWeighted {
    weights: Box<[i64]>,
    current: Box<[AtomicI64]>,
}

// === impl SmoothWeighted ===

impl SmoothWeighted {
    /// Weights per item, in order. A weight of `0` is never picked.
    pub fn new(weights: &[u32]) -> Self {
        SmoothWeighted {
            weights: weights.iter().map(|&w| i64::from(w)).collect(),
            current: weights.iter().map(|_| AtomicI64::new(0)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    pub fn weight(&self, i: usize) -> u32 {
        self.weights.get(i).map_or(0, |&w| w as u32)
    }

    /// The next item among those `accept` says yes to, or `None` if it says no to all.
    /// `accept` is called at most once per item, in index order.
    pub fn pick(&self, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, (&w, cur)) in self.weights.iter().zip(self.current.iter()).enumerate() {
            if w <= 0 || !accept(i) {
                continue;
            }
            total += w;
            let c = cur.fetch_add(w, Ordering::Relaxed) + w;
            if best.is_none_or(|(_, b)| c > b) {
                best = Some((i, c));
            }
        }
        let (i, _) = best?;
        self.current[i].fetch_sub(total, Ordering::Relaxed);
        Some(i)
    }
}

// === impl BackendSelection for SmoothWeighted ===

/// Pingora's selection trait, for use as `LoadBalancer<SmoothWeighted>`: the first backend
/// yielded is the smooth pick over all backends; each further `next()` (what `select_with`
/// calls when `accept` rejects one) is the smooth pick among those not yet yielded, so
/// fallbacks stay weighted. Backends are pingora's ordered set (address, then weight).
pub struct SmoothBackends {
    backends: Box<[Backend]>,
    selector: SmoothWeighted,
}

impl BackendSelection for SmoothBackends {
    type Iter = SmoothIter;
    type Config = ();

    fn build(backends: &BTreeSet<Backend>) -> Self {
        let backends: Box<[Backend]> = backends.iter().cloned().collect();
        let weights: Vec<u32> =
            backends.iter().map(|b| u32::try_from(b.weight).unwrap_or(u32::MAX)).collect();
        SmoothBackends { selector: SmoothWeighted::new(&weights), backends }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> SmoothIter {
        SmoothIter { sel: self.clone(), yielded: vec![false; self.backends.len()] }
    }
}

/// Iterator of [`SmoothBackends`]: weighted picks without repeats.
pub struct SmoothIter {
    sel: Arc<SmoothBackends>,
    yielded: Vec<bool>,
}

impl BackendIter for SmoothIter {
    fn next(&mut self) -> Option<&Backend> {
        let yielded = &self.yielded;
        let i = self.sel.selector.pick(|i| !yielded[i])?;
        self.yielded[i] = true;
        self.sel.backends.get(i)
    }
}
