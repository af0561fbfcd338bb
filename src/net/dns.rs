//! Asynchronous DNS with a small TTL cache. Pingora's `HttpPeer::new("host:port")` resolves
//! with a blocking call and panics on failure, so peers are always built from addresses
//! resolved here. IP literals never touch DNS; a failed refresh keeps serving the stale answer.
//!
//! An expired answer is refreshed by one caller at a time (single flight): the others keep
//! using the stale answer meanwhile instead of all looking the name up at once and waiting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

/// How long an answer is used before it is looked up again.
pub const TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Resolver {
    cache: RwLock<HashMap<(String, u16), Arc<Entry>>>,
}

struct Entry {
    addrs: Vec<SocketAddr>,
    fetched: Instant,
    /// Round-robin over the answer's addresses.
    next: AtomicUsize,
    /// A caller is looking the name up again.
    refreshing: AtomicBool,
}

impl Entry {
    fn new(addrs: Vec<SocketAddr>, fetched: Instant) -> Arc<Entry> {
        Arc::new(Entry { addrs, fetched, next: AtomicUsize::new(0), refreshing: AtomicBool::new(false) })
    }

    fn pick(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs[i % self.addrs.len()]
    }
}

/// Marks an entry's refresh as over when dropped.
struct Refreshing<'a>(&'a Entry);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

// === impl Resolver ===

impl Resolver {
    /// Every address of `host:port`, starting at the next one in round-robin order (for trying
    /// another address when one refuses).
    pub async fn resolve_all(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let first = self.resolve(host, port).await?;
        let mut all = vec![first];
        if let Some(e) = self.cache.read().get(&(host.to_string(), port)) {
            let at = e.addrs.iter().position(|a| *a == first).unwrap_or(0);
            all.extend(e.addrs.iter().cycle().skip(at + 1).take(e.addrs.len() - 1).copied());
        }
        Ok(all)
    }

    /// Answer `host:port` with `addrs` (in this order) until the TTL runs out. For tests.
    #[cfg(test)]
    pub(crate) fn pin(&self, host: &str, port: u16, addrs: Vec<SocketAddr>) {
        self.pin_at(host, port, addrs, Instant::now());
    }

    /// `pin` with the time the answer was fetched (tests of expiry).
    #[cfg(test)]
    fn pin_at(&self, host: &str, port: u16, addrs: Vec<SocketAddr>, fetched: Instant) {
        self.cache.write().insert((host.to_string(), port), Entry::new(addrs, fetched));
    }

    /// One address for `host:port` (round-robin over the answer).
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<SocketAddr> {
        self.resolve_at(host, port, Instant::now()).await
    }

    /// [`Self::resolve`] at time `now` (which decides whether the cached answer expired).
    pub async fn resolve_at(&self, host: &str, port: u16, now: Instant) -> std::io::Result<SocketAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        let cached = self.cache.read().get(&key).cloned();
        if let Some(e) = &cached {
            // Fresh, or expired while another caller already refreshes it: use it.
            if now.saturating_duration_since(e.fetched) < TTL || e.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(e.pick());
            }
        }
        // Clears the refreshing mark however this ends, even if the caller is cancelled.
        let _refresh = cached.as_deref().map(Refreshing);
        match tokio::net::lookup_host((bare, port)).await {
            Ok(it) => {
                let addrs: Vec<SocketAddr> = it.collect();
                if addrs.is_empty() {
                    if let Some(e) = &cached {
                        return Ok(e.pick());
                    }
                    return Err(std::io::Error::other(format!("no address for {host}")));
                }
                let e = Entry::new(addrs, now);
                let a = e.pick();
                self.cache.write().insert(key, e);
                Ok(a)
            }
            Err(err) => match &cached {
                Some(e) => {
                    tracing::warn!(host, "DNS refresh failed, using the previous answer: {err}");
                    Ok(e.pick())
                }
                None => Err(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_are_not_looked_up() {
        let r = Resolver::default();
        assert_eq!(r.resolve("127.0.0.1", 80).await.unwrap(), "127.0.0.1:80".parse().unwrap());
        assert_eq!(r.resolve("[::1]", 81).await.unwrap(), "[::1]:81".parse().unwrap());
        assert!(r.cache.read().is_empty());
    }

    #[tokio::test]
    async fn every_address_is_offered_in_turn() {
        let r = Resolver::default();
        let all = r.resolve_all("localhost", 9).await.unwrap();
        assert!(!all.is_empty() && all.iter().all(|a| a.ip().is_loopback()));
        let mut sorted = all.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "no address twice: {all:?}");
        assert_eq!(r.resolve_all("127.0.0.1", 9).await.unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
    }

    #[tokio::test]
    async fn an_expired_answer_is_refreshed_by_one_caller_while_others_use_it() {
        let r = Resolver::default();
        let stale: SocketAddr = "192.0.2.7:443".parse().unwrap();
        let now = Instant::now();
        let old = now.checked_sub(TTL * 2).unwrap_or(now);
        // `.invalid` never resolves: a caller that looked it up would get the stale answer back
        // only after a failed lookup, and would clear the refreshing mark.
        r.pin_at("gw.invalid", 443, vec![stale], old);
        let e = r.cache.read().get(&("gw.invalid".to_string(), 443)).cloned().unwrap();
        e.refreshing.store(true, Ordering::Release); // another caller is refreshing
        assert_eq!(r.resolve_at("gw.invalid", 443, now).await.unwrap(), stale);
        assert!(e.refreshing.load(Ordering::Acquire), "a second lookup was started");
        // No refresher: this caller looks it up; it fails, the stale answer stays, and the mark
        // is cleared for the next try.
        e.refreshing.store(false, Ordering::Release);
        assert_eq!(r.resolve_at("gw.invalid", 443, now).await.unwrap(), stale);
        assert!(!e.refreshing.load(Ordering::Acquire));
        // A fresh answer is used as it is.
        r.pin_at("fresh.invalid", 443, vec![stale], now);
        assert_eq!(r.resolve_at("fresh.invalid", 443, now + TTL / 2).await.unwrap(), stale);
    }

    #[tokio::test]
    async fn a_refresh_cancelled_mid_lookup_lets_the_next_caller_refresh() {
        let r = Resolver::default();
        let now = Instant::now();
        let old = now.checked_sub(TTL * 2).unwrap_or(now);
        // Polled once (up to the lookup), then dropped. A lookup of `.invalid` can fail fast
        // enough to finish within that one poll (seen under load), so try until one is
        // really cancelled; finished or cancelled, the mark must be clear afterwards.
        let mut cancelled = 0;
        for _ in 0..50 {
            r.pin_at("gone.invalid", 443, vec!["192.0.2.9:443".parse().unwrap()], old);
            let done = tokio::time::timeout(Duration::ZERO, r.resolve_at("gone.invalid", 443, now)).await;
            cancelled += usize::from(done.is_err());
            let e = r.cache.read().get(&("gone.invalid".to_string(), 443)).cloned().unwrap();
            assert!(!e.refreshing.load(Ordering::Acquire), "a cancelled refresh blocked later ones");
            if cancelled >= 3 {
                break;
            }
        }
        assert!(cancelled > 0, "no lookup was ever cancelled mid-way: the test proved nothing");
    }

    #[tokio::test]
    async fn an_expired_answer_is_replaced_by_a_successful_lookup() {
        let r = Resolver::default();
        let now = Instant::now();
        let old = now.checked_sub(TTL * 2).unwrap_or(now);
        r.pin_at("localhost", 9, vec!["192.0.2.1:9".parse().unwrap()], old);
        let a = r.resolve_at("localhost", 9, now).await.unwrap();
        assert!(a.ip().is_loopback(), "{a}");
        let e = r.cache.read().get(&("localhost".to_string(), 9)).cloned().unwrap();
        assert!(!e.refreshing.load(Ordering::Acquire));
        assert_eq!(e.fetched, now);
    }

    #[tokio::test]
    async fn localhost_resolves_and_is_cached() {
        let r = Resolver::default();
        let a = r.resolve("localhost", 9).await.unwrap();
        assert!(a.ip().is_loopback());
        assert_eq!(r.cache.read().len(), 1);
    }
}
