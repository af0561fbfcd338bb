//! Lock-free metric types that `prometheus-client` does not ship, plugged into its registry:
//! an atomic histogram of durations (its own `Histogram` takes a mutex per observation) and a
//! micro-dollar counter (money stays an integer; the exposition shows dollars). Also the
//! label-set type every family here uses. No registry, no names: see `metrics.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A fixed set of labels whose names are static and whose values are shared strings, so a
/// series is keyed without allocating once its values exist.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Labels<const N: usize>(pub [(&'static str, Arc<str>); N]);

/// A histogram of durations with fixed upper bounds, counted in microseconds with atomics
/// only (one `fetch_add` on a bucket and one on the sum per observation).
#[derive(Clone, Debug)]
pub(crate) struct AtomicHistogram(Arc<HistogramInner>);

#[derive(Debug)]
pub(crate) struct HistogramInner {
    /// Upper bounds in microseconds, ascending; the `+Inf` bucket is implicit.
    bounds_us: &'static [u64],
    /// Non-cumulative counts, `bounds_us.len() + 1` of them (the last is `+Inf`).
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// A monotonic amount of money in integer micro-dollars, exposed as a dollar counter.
#[derive(Clone, Debug, Default)]
pub(crate) struct MicroCounter(Arc<AtomicU64>);

// === impl Labels ===

impl<const N: usize> EncodeLabelSet for Labels<N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (name, value) in &self.0 {
            (*name, &**value).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

// === impl AtomicHistogram ===

impl AtomicHistogram {
    pub(crate) fn new(bounds_us: &'static [u64]) -> AtomicHistogram {
        let counts = (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram(Arc::new(HistogramInner { bounds_us, counts, sum_us: AtomicU64::new(0) }))
    }

    pub(crate) fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let inner = &*self.0;
        // A value equal to a bound belongs to that bucket (`le`).
        let i = inner.bounds_us.partition_point(|&b| b < us);
        if let Some(c) = inner.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        inner.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        // The encoder takes per-bucket counts and accumulates them itself.
        let mut total = 0u64;
        let mut buckets = Vec::with_capacity(inner.counts.len());
        for (i, c) in inner.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            total += n;
            let le = inner.bounds_us.get(i).map_or(f64::INFINITY, |&b| b as f64 / 1e6);
            buckets.push((le, n));
        }
        let sum = inner.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

// === impl MicroCounter ===

impl MicroCounter {
    pub(crate) fn add(&self, micros: u64) {
        self.0.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn micros(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for MicroCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for MicroCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let dollars = self.micros() as f64 / 1e6;
        encoder.encode_counter::<NoLabelSet, f64, f64>(&dollars, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}
