//! A cap on the bytes of request bodies the gateway holds in memory at once, process-wide
//! (`limits.max_body_memory_bytes`). Each body is bounded by `limits.max_body_bytes`; without a
//! total, many concurrent large bodies could still take all memory. A body reserves its bytes
//! before they are buffered (its declared length, or each chunk as it arrives) and gives them
//! back when its request ends; a reservation past the cap is refused (the caller answers 503
//! with `retry-after`). One atomic counter: no lock, and the cap is read per request, so a
//! reload changes it at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The bytes held now, shared by every runtime of the process.
#[derive(Debug, Default)]
pub struct BodyMemory {
    held: AtomicUsize,
}

/// Bytes one request holds; given back on drop.
#[derive(Debug)]
pub struct BodyHold {
    memory: Arc<BodyMemory>,
    bytes: usize,
}

// === impl BodyMemory ===

impl BodyMemory {
    pub fn new() -> Arc<BodyMemory> {
        Arc::new(BodyMemory::default())
    }

    /// Bytes held by all requests now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// An empty hold, to grow with [`BodyHold::grow`].
    pub fn hold(self: &Arc<Self>) -> BodyHold {
        BodyHold { memory: self.clone(), bytes: 0 }
    }
}

// === impl BodyHold ===

impl BodyHold {
    /// Reserve `bytes` more, unless that would take the process past `cap`.
    pub fn grow(&mut self, bytes: usize, cap: usize) -> bool {
        let m = &self.memory.held;
        let mut now = m.load(Ordering::Relaxed);
        loop {
            let Some(next) = now.checked_add(bytes).filter(|n| *n <= cap) else { return false };
            match m.compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.bytes += bytes;
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        self.memory.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_add_up_to_the_cap_and_are_given_back_on_drop() {
        let m = BodyMemory::new();
        let mut a = m.hold();
        assert!(a.grow(600, 1000));
        let mut b = m.hold();
        assert!(!b.grow(600, 1000), "600 + 600 is past the cap");
        assert!(b.grow(400, 1000), "exactly the cap is allowed");
        assert_eq!((m.held(), a.bytes(), b.bytes()), (1000, 600, 400));
        drop(a);
        assert_eq!(m.held(), 400);
        assert!(b.grow(600, 1000), "a's bytes came back");
        drop(b);
        assert_eq!(m.held(), 0);
    }

    #[test]
    fn concurrent_holds_never_pass_the_cap() {
        let m = BodyMemory::new();
        let granted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let mut holds = Vec::new();
                    for _ in 0..1000 {
                        let mut h = m.hold();
                        if h.grow(7, 10_000) {
                            granted.fetch_add(7, Ordering::Relaxed);
                            holds.push(h);
                        }
                    }
                    assert!(m.held() <= 10_000);
                    holds
                });
            }
        });
        // Every thread's holds were dropped at the end of its closure.
        assert_eq!(m.held(), 0);
        assert!(granted.load(Ordering::Relaxed) >= 10_000 - 7 * 8);
    }
}
