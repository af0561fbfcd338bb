//! Asynchronous DNS with a small TTL cache. Pingora's `HttpPeer::new("host:port")` resolves
//! with a blocking call and panics on failure, so peers are always built from addresses
//! resolved here. IP literals never touch DNS; a failed refresh keeps serving the stale answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

impl Entry {
    fn pick(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.addrs[i % self.addrs.len()]
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
        let e = Arc::new(Entry { addrs, fetched: Instant::now(), next: AtomicUsize::new(0) });
        self.cache.write().insert((host.to_string(), port), e);
    }

    /// One address for `host:port` (round-robin over the answer).
    pub async fn resolve(&self, host: &str, port: u16) -> std::io::Result<SocketAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        let cached = self.cache.read().get(&key).cloned();
        if let Some(e) = &cached {
            if e.fetched.elapsed() < TTL {
                return Ok(e.pick());
            }
        }
        match tokio::net::lookup_host((bare, port)).await {
            Ok(it) => {
                let addrs: Vec<SocketAddr> = it.collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::other(format!("no address for {host}")));
                }
                let e = Arc::new(Entry { addrs, fetched: Instant::now(), next: AtomicUsize::new(0) });
                let a = e.pick();
                self.cache.write().insert(key, e);
                Ok(a)
            }
            Err(err) => match cached {
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
    async fn localhost_resolves_and_is_cached() {
        let r = Resolver::default();
        let a = r.resolve("localhost", 9).await.unwrap();
        assert!(a.ip().is_loopback());
        assert_eq!(r.cache.read().len(), 1);
    }
}
