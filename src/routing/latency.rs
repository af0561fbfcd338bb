//! Latency histogram of one target (`hdrhistogram`), recorded from many threads without a
//! shared lock: a few shards, each a `parking_lot` mutex that a recorder only *tries*, moving
//! on to the next shard when it is busy. Reading merges the shards (admin path only).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Shards per target. Two cores in production-sized boxes contend rarely; four keeps a
/// recorder from ever waiting in practice and costs about 100 KiB per target.
const SHARDS: usize = 4;

/// Highest trackable value: one hour, in microseconds. Larger values are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// Quantiles read from a [`LatencyHistogram`].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A sharded latency histogram: microseconds, 2 significant figures (1% resolution).
pub struct LatencyHistogram {
    shards: [Mutex<Histogram<u64>>; SHARDS],
}

// === impl LatencyHistogram ===

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram { shards: std::array::from_fn(|_| Mutex::new(new_histogram())) }
    }

    /// Records one latency. Never blocks unless every shard is busy at once.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        let start = shard_hint();
        for k in 0..SHARDS {
            if let Some(mut h) = self.shards[(start + k) % SHARDS].try_lock() {
                h.saturating_record(micros);
                return;
            }
        }
        self.shards[start % SHARDS].lock().saturating_record(micros);
    }

    /// Count, p50 and p99 over everything recorded so far.
    pub fn summary(&self) -> LatencySummary {
        let mut all = new_histogram();
        for shard in &self.shards {
            let _ = all.add(&*shard.lock());
        }
        if all.is_empty() {
            return LatencySummary::default();
        }
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        LatencySummary { count: all.len(), p50_ms: ms(0.50), p99_ms: ms(0.99) }
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram").field("summary", &self.summary()).finish()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("static histogram bounds are valid")
}

/// A per-thread starting shard, assigned round-robin as threads first record.
fn shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HINT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    HINT.with(|h| {
        if h.get() == usize::MAX {
            h.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        h.get()
    })
}
