//! Idle upstream connections, kept per worker thread.
//!
//! The data plane runs one single-threaded runtime per worker thread (`server::run`,
//! `work_stealing: false`), so a request never changes threads and a connection it returns is
//! only ever taken again by a request on the same thread. The pool is therefore a plain
//! thread-local map from the peer's reuse hash to a stack of idle streams: no lock, no
//! allocation once warm, no task per idle connection.
//!
//! Pingora's `TransportConnector` pool, which this replaces on the data plane, cost about 5k
//! instructions per request (README "Performance"): on release it spawned a task per idle
//! connection to watch it (`idle_poll`) and inserted it into a locked LRU and a per-peer node;
//! on reuse it removed the node when emptied, told the watcher to stop and waited on its lock.
//! What the watcher did is done here on demand: a connection the upstream closed while idle (or
//! sent unexpected bytes on) is found and dropped when it is next taken (a non-blocking read,
//! as Pingora's `test_reusable_stream`), and one idle for [`POOL_IDLE_TIMEOUT`] is closed when
//! next looked at: at most once a second on a return to the pool, and on every worker once the
//! data plane is quiet (`server::release`, which calls [`sweep`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::upstream::POOL_IDLE_TIMEOUT;

/// The most idle connections one worker thread keeps (over all peers); one returned beyond it
/// is closed. Pingora's pool had the same bound for the whole process.
pub const MAX_IDLE_PER_THREAD: usize = 1024;

/// How often at most a return to the pool also closes connections idle too long.
const LAZY_SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Idle {
    stream: Stream,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    by_peer: HashMap<u64, Vec<Idle>, BuildHasherDefault<KeyHasher>>,
    count: usize,
    swept: Option<Instant>,
}

/// The map's hasher: the keys are hashes already (`upstream::pool_key`), so a key is its own
/// hash instead of being hashed again with SipHash (~140 instructions per take and per put).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed (`write_u64`); any other input is still mixed in whole.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

thread_local! {
    // Never dropped: at thread exit (the process stopping) the runtime whose reactor the streams
    // are registered with is already gone, and the OS closes the sockets anyway.
    static POOL: ManuallyDrop<RefCell<Pool>> = ManuallyDrop::new(RefCell::new(Pool::default()));
}

/// An idle connection to the peer with reuse hash `key`, most recently returned first, if one
/// is still usable (open, silent, not idle too long); unusable ones met on the way are closed.
pub fn take(key: u64) -> Option<Stream> {
    let mut dead = Vec::new();
    let found = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let p = &mut *p;
        let list = p.by_peer.get_mut(&key)?;
        while let Some(mut idle) = list.pop() {
            p.count -= 1;
            if idle.since.elapsed() < POOL_IDLE_TIMEOUT && reusable(&mut idle.stream) {
                return Some(idle.stream);
            }
            dead.push(idle);
        }
        None
    });
    // Closed outside the borrow.
    drop(dead);
    found
}

/// Return a connection whose last exchange ended cleanly (the caller checked keep-alive).
pub fn put(key: u64, stream: Stream) {
    put_bounded(key, stream, MAX_IDLE_PER_THREAD)
}

fn put_bounded(key: u64, stream: Stream, max: usize) {
    let now = Instant::now();
    let mut dead = Vec::new();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.count >= max {
            dead.push(Idle { stream, since: now });
            return;
        }
        p.by_peer.entry(key).or_default().push(Idle { stream, since: now });
        p.count += 1;
        if p.swept.is_none_or(|t| now.duration_since(t) >= LAZY_SWEEP_EVERY) {
            p.swept = Some(now);
            p.close_expired(now, false, &mut dead);
        }
    });
    drop(dead);
}

/// Close this thread's idle connections that were idle for [`POOL_IDLE_TIMEOUT`] or that the
/// upstream closed (or wrote to) while idle; returns how many are left.
pub fn sweep() -> usize {
    let mut dead = Vec::new();
    let left = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let now = Instant::now();
        p.swept = Some(now);
        p.close_expired(now, true, &mut dead);
        p.count
    });
    drop(dead);
    left
}

// === impl Pool ===

impl Pool {
    /// Move what is to be closed into `dead`: idle too long, and with `probe` also what is no
    /// longer usable.
    fn close_expired(&mut self, now: Instant, probe: bool, dead: &mut Vec<Idle>) {
        let before = dead.len();
        for list in self.by_peer.values_mut() {
            let mut i = 0;
            while i < list.len() {
                let idle = &mut list[i];
                if now.duration_since(idle.since) >= POOL_IDLE_TIMEOUT
                    || (probe && !reusable(&mut idle.stream))
                {
                    dead.push(list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
        }
        self.count -= dead.len() - before;
        // Peers no longer used keep no entry.
        self.by_peer.retain(|_, list| !list.is_empty());
    }
}

/// Whether an idle connection can carry a request: a non-blocking read finds nothing to read.
/// Read end (the upstream closed it), bytes (unexpected data) or an error: not reusable.
fn reusable(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn connected() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Box::new(pingora::protocols::l4::stream::Stream::from(client)), server)
    }

    fn idle_count() -> usize {
        POOL.with(|p| p.borrow().count)
    }

    /// Each test runs on its own thread (a fresh pool); keys are the test's own.
    #[tokio::test]
    async fn a_returned_connection_is_taken_again_for_its_peer_only() {
        let (stream, _server) = connected().await;
        put(1, stream);
        assert_eq!(idle_count(), 1);
        assert!(take(2).is_none(), "another peer's key finds nothing");
        assert!(take(1).is_some(), "its own peer's key takes it");
        assert!(take(1).is_none(), "once");
        assert_eq!(idle_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_or_wrote_to_while_idle_is_not_handed_out() {
        let (closed, server) = connected().await;
        put(7, closed);
        drop(server);
        let (talked, mut server2) = connected().await;
        put(7, talked);
        server2.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let (fine, _server3) = connected().await;
        put(7, fine);
        // Wait until both events reached the client sockets (readiness is edge-triggered).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // Most recent first: `fine` is handed out while the other two wait.
            let s = take(7).expect("the silent connection is usable");
            put(7, s);
            if sweep() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the closed and the written-to connections were not dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(take(7).is_some(), "the silent one is left");
        assert!(take(7).is_none());
    }

    #[tokio::test]
    async fn a_connection_idle_too_long_is_closed_and_the_pool_is_bounded() {
        let (stream, _server) = connected().await;
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let since = Instant::now() - POOL_IDLE_TIMEOUT - Duration::from_secs(1);
            p.by_peer.entry(3).or_default().push(Idle { stream, since });
            p.count += 1;
        });
        assert!(take(3).is_none(), "idle past the timeout: closed, not handed out");
        assert_eq!(idle_count(), 0);

        let mut servers = Vec::new();
        for _ in 0..5 {
            let (s, server) = connected().await;
            servers.push(server);
            put_bounded(4, s, 3);
        }
        assert_eq!(idle_count(), 3, "returns beyond the bound are closed");
        assert_eq!(sweep(), 3, "none idle too long yet");
    }
}
