//! Memory back to the OS after a burst: once the data plane has been quiet for a while (no
//! request started, none in flight), each data-plane worker thread (one single-threaded
//! runtime each, noted in [`Workers`] as it serves its first request) runs the allocator's
//! collect hook once, then this service's own thread and those of the background
//! services wrapped in [`Tracked`] (the ones that allocate under load). Not the allocator
//! itself: the hook comes from the binary (`main.rs`, which owns the `#[global_allocator]`);
//! this module only decides when and where.
//!
//! Why: mimalloc keeps freed memory per thread. A block freed by another thread than the one
//! that allocated it (a usage batch a worker filled and the writer's thread freed, state a
//! request hands to a background service) waits on its page until the
//! owning thread allocates again, and pages it has emptied are given back (purged) only
//! during later allocator calls. A fully idle process makes none, so after a burst RSS stayed
//! where the burst left it (README "Memory"). One collect per worker thread, after the
//! burst, settles both; under traffic nothing runs.
//!
//! It runs more than once per burst: `QUIET` after it, then every `POOL_IDLE_TIMEOUT` while the
//! data plane stays quiet, up to `SCHEDULE.count` times. State a burst leaves behind ends later
//! than the burst: pooled upstream connections close after `POOL_IDLE_TIMEOUT` idle (each held
//! about 5 KiB resident, and the pool holds up to 1,024), and the timer of every upstream read
//! stays registered until its deadline (`limits.upstream_timeout_ms`, 120 s by default). What
//! they free after the burst's collect waits for the next one.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::runtime::Handle;

use crate::proxy::{Counters, POOL_IDLE_TIMEOUT};

/// How often the request counters are looked at.
const TICK: Duration = Duration::from_secs(1);
/// How long the data plane must be quiet before memory is released.
pub const QUIET: Duration = Duration::from_secs(3);
/// When memory is released after a burst: once it is over, then every minute while it stays
/// quiet, for 15 minutes (3 s, 63 s, 123 s, ..., 903 s after the last request).
pub const SCHEDULE: Schedule = Schedule { first: QUIET, every: POOL_IDLE_TIMEOUT, count: 16 };

/// Release marks: `first`, then every `every`, `count` in all, counted from the end of a burst.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub first: Duration,
    pub every: Duration,
    pub count: u32,
}

impl Schedule {
    /// The `i`-th mark (from 0).
    pub fn mark(&self, i: u32) -> Duration {
        self.first + self.every * i
    }
}

/// The data plane's worker runtimes, each noted by the first request it serves.
#[derive(Default)]
pub struct Workers {
    handles: Mutex<Vec<Handle>>,
}

thread_local! {
    /// Whether this thread's runtime is in the data plane's [`Workers`].
    static NOTED: Cell<bool> = const { Cell::new(false) };
}

// === impl Workers ===

impl Workers {
    /// Note the runtime of the calling thread (a data-plane worker serving a request); a
    /// thread-local check after its first time.
    #[inline]
    pub fn note(&self) {
        if !NOTED.get() {
            NOTED.set(true);
            if let Ok(h) = Handle::try_current() {
                self.handles.lock().push(h);
            }
        }
    }

    /// The runtimes noted so far.
    pub fn handles(&self) -> Vec<Handle> {
        self.handles.lock().clone()
    }
}

/// The runtimes of the background services that allocate while the data plane is busy (the
/// usage log writer, the events watcher): once a burst is over the hook runs on their threads
/// too, after the workers. Filled by [`Tracked`] as each service starts.
pub type Background = Arc<Mutex<Vec<Handle>>>;

/// A background service whose thread the release visits too: records its runtime in
/// `threads`, then runs it. For services that implement `start` (the default
/// `start_with_ready_notifier`).
pub struct Tracked<S> {
    pub service: S,
    pub threads: Background,
}

#[async_trait]
impl<S: BackgroundService + Send + Sync> BackgroundService for Tracked<S> {
    async fn start(&self, shutdown: ShutdownWatch) {
        if let Ok(h) = Handle::try_current() {
            self.threads.lock().push(h);
        }
        self.service.start(shutdown).await
    }
}

/// Runs `hook` on every worker of the data-plane runtime once a burst is over.
pub struct Release {
    pub counters: Arc<Counters>,
    /// The data-plane worker runtimes, noted by the gateway as they serve.
    pub workers: Arc<Workers>,
    /// The allocator's collect, run on each worker thread.
    pub hook: fn(),
    /// Background services' runtimes the hook also runs on ([`Tracked`]).
    pub background: Background,
}

#[async_trait]
impl BackgroundService for Release {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut quiet = Quiet::new(SCHEDULE);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            let requests = self.counters.requests.load(Ordering::Relaxed);
            let active = self.counters.active.load(Ordering::Acquire);
            if !quiet.observe(requests, active, Instant::now()) {
                continue;
            }
            let started = Instant::now();
            let reached = on_every_worker(&self.workers, self.hook).await;
            // This service's own thread, then each tracked background service's.
            (self.hook)();
            on_background(&self.background, self.hook).await;
            tracing::debug!(
                reached,
                took_us = started.elapsed().as_micros() as u64,
                "data plane quiet: freed memory returned to the OS"
            );
        }
    }
}

/// Run `hook` once on the thread of each data-plane worker runtime (each is single-threaded:
/// a task spawned on it runs on its thread); returns on how many it ran.
async fn on_every_worker(workers: &Workers, hook: fn()) -> usize {
    let mut ran = 0;
    for h in workers.handles() {
        let run = async move {
            // The worker's idle upstream connections past their idle time go first.
            crate::proxy::sweep_idle_upstreams();
            hook()
        };
        ran += usize::from(h.spawn(run).await.is_ok());
    }
    ran
}

/// Run `hook` once on the thread of each runtime in `threads` ([`Tracked`] services); returns
/// on how many it ran.
async fn on_background(threads: &Background, hook: fn()) -> usize {
    let handles: Vec<Handle> = threads.lock().clone();
    let mut ran = 0;
    for h in handles {
        ran += usize::from(h.spawn(async move { hook() }).await.is_ok());
    }
    ran
}

/// Decides when a burst is over: `observe` is true once the data plane was last seen busy (a
/// request started since the last look, or one in flight) as long ago as each mark of the
/// schedule, once per mark and burst, and only after some traffic.
#[derive(Debug)]
pub struct Quiet {
    schedule: Schedule,
    last_requests: u64,
    busy_at: Option<Instant>,
    /// The mark to fire next; `None` until traffic is seen, and once all have fired.
    next: Option<u32>,
}

// === impl Quiet ===

impl Quiet {
    pub fn new(schedule: Schedule) -> Quiet {
        Quiet { schedule, last_requests: 0, busy_at: None, next: None }
    }

    /// Look at the counters (requests started so far, requests in flight) at `now`.
    pub fn observe(&mut self, requests: u64, active: i64, now: Instant) -> bool {
        if requests != self.last_requests || active > 0 {
            if requests != self.last_requests && self.schedule.count > 0 {
                self.next = Some(0);
            }
            self.last_requests = requests;
            self.busy_at = Some(now);
            return false;
        }
        let (Some(i), Some(busy_at)) = (self.next, self.busy_at) else { return false };
        if now.duration_since(busy_at) < self.schedule.mark(i) {
            return false;
        }
        // After a long pause (a suspended VM), skip the marks already passed: one collect.
        let quiet = now.duration_since(busy_at);
        let mut n = i + 1;
        while n < self.schedule.count && self.schedule.mark(n) <= quiet {
            n += 1;
        }
        self.next = Some(n).filter(|&n| n < self.schedule.count);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Schedule = Schedule { first: Duration::from_secs(3), every: Duration::ZERO, count: 1 };

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn fires_once_after_a_burst_has_been_quiet_long_enough() {
        let t0 = Instant::now();
        let mut q = Quiet::new(AFTER);
        assert!(!q.observe(10, 2, at(t0, 0)), "traffic, last seen busy");
        assert!(!q.observe(10, 0, at(t0, 1)), "quiet for 1 s");
        assert!(!q.observe(10, 0, at(t0, 2)), "quiet for 2 s");
        assert!(q.observe(10, 0, at(t0, 3)), "quiet for 3 s");
        assert!(!q.observe(10, 0, at(t0, 4)), "once per burst");
        assert!(!q.observe(10, 0, at(t0, 60)), "still once");
    }

    /// What the tracked service's hook saw: the name of the thread it ran on.
    static RAN_ON: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn record_thread() {
        RAN_ON.lock().push(std::thread::current().name().unwrap_or("").to_owned());
    }

    /// Stands for a background service: runs until shutdown.
    struct Idle;

    #[async_trait]
    impl BackgroundService for Idle {
        async fn start(&self, mut shutdown: ShutdownWatch) {
            let _ = shutdown.changed().await;
        }
    }

    #[test]
    fn the_hook_runs_on_the_thread_of_each_tracked_service() {
        let threads = Background::default();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let bg = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tracked-bg")
            .enable_all()
            .build()
            .unwrap();
        let tracked = Arc::new(Tracked { service: Idle, threads: threads.clone() });
        let running = bg.spawn({
            let tracked = tracked.clone();
            async move { tracked.start(shutdown).await }
        });
        let t0 = Instant::now();
        while threads.lock().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(5), "the tracked service never registered");
            std::thread::yield_now();
        }
        let here = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(here.block_on(on_background(&threads, record_thread)), 1);
        assert_eq!(*RAN_ON.lock(), ["tracked-bg"], "ran on the tracked service's thread");
        stop.send(true).unwrap();
        bg.block_on(running).unwrap();
    }

    #[test]
    fn never_fires_without_traffic() {
        let t0 = Instant::now();
        let mut q = Quiet::new(AFTER);
        for s in 0..10 {
            assert!(!q.observe(0, 0, at(t0, s)));
        }
    }

    #[test]
    fn a_request_in_flight_or_a_new_one_restarts_the_wait() {
        let t0 = Instant::now();
        let mut q = Quiet::new(AFTER);
        assert!(!q.observe(1, 0, at(t0, 0)));
        assert!(!q.observe(1, 0, at(t0, 2)));
        assert!(!q.observe(1, 1, at(t0, 3)), "a long stream is still open");
        assert!(!q.observe(1, 0, at(t0, 4)));
        assert!(!q.observe(2, 0, at(t0, 6)), "another request started");
        assert!(!q.observe(2, 0, at(t0, 7)));
        assert!(!q.observe(2, 0, at(t0, 8)), "2 s after the last request");
        assert!(q.observe(2, 0, at(t0, 9)), "3 s after it");
        assert!(!q.observe(3, 0, at(t0, 11)), "the next burst");
        assert!(!q.observe(3, 0, at(t0, 13)));
        assert!(q.observe(3, 0, at(t0, 14)), "fires again 3 s after it");
    }

    #[test]
    fn fires_at_each_mark_and_again_for_the_next_burst() {
        let schedule = Schedule { first: Duration::from_secs(3), every: Duration::from_secs(60), count: 3 };
        let t0 = Instant::now();
        let mut q = Quiet::new(schedule);
        assert!(!q.observe(5, 1, at(t0, 0)));
        assert!(!q.observe(5, 0, at(t0, 2)));
        assert!(q.observe(5, 0, at(t0, 3)), "the burst is over");
        assert!(!q.observe(5, 0, at(t0, 4)));
        assert!(!q.observe(5, 0, at(t0, 62)));
        assert!(q.observe(5, 0, at(t0, 63)), "the pool it left has been closed");
        assert!(!q.observe(5, 0, at(t0, 64)), "once per mark");
        assert!(q.observe(5, 0, at(t0, 123)), "its timers have ended");
        assert!(!q.observe(5, 0, at(t0, 183)), "three marks in all");
        assert!(!q.observe(5, 0, at(t0, 600)));
        assert!(!q.observe(6, 0, at(t0, 601)), "the next burst");
        assert!(!q.observe(6, 0, at(t0, 603)));
        assert!(q.observe(6, 0, at(t0, 604)));
        assert!(!q.observe(7, 0, at(t0, 610)), "traffic again before the second mark");
        assert!(q.observe(7, 0, at(t0, 613)), "counts from the first mark again");
        assert!(q.observe(7, 0, at(t0, 673)));
    }

    #[test]
    fn a_long_pause_fires_once_not_once_per_missed_mark() {
        let schedule = Schedule { first: Duration::from_secs(3), every: Duration::from_secs(60), count: 4 };
        let t0 = Instant::now();
        let mut q = Quiet::new(schedule);
        assert!(!q.observe(1, 0, at(t0, 0)));
        assert!(q.observe(1, 0, at(t0, 130)), "marks 0, 1 and 2 have passed");
        assert!(!q.observe(1, 0, at(t0, 131)));
        assert!(q.observe(1, 0, at(t0, 183)), "the last mark");
        assert!(!q.observe(1, 0, at(t0, 243)));
    }

    #[test]
    fn the_schedule_outlasts_the_pool_and_the_default_upstream_timeout() {
        assert_eq!(SCHEDULE.mark(0), QUIET);
        assert!(SCHEDULE.mark(1) > POOL_IDLE_TIMEOUT);
        let default_timeout =
            Duration::from_millis(crate::config::LimitsConfig::default().upstream_timeout_ms);
        assert!(SCHEDULE.mark(SCHEDULE.count - 1) > default_timeout);
    }

    /// Two single-threaded runtimes on threads of their own, as Pingora runs the data plane
    /// (`work_stealing: false`), each noted by a task it ran: the hook runs once on each thread.
    #[test]
    fn the_hook_runs_on_every_worker() {
        static THREADS: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());
        fn hook() {
            THREADS.lock().push(std::thread::current().id());
        }
        let workers = Arc::new(Workers::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut threads = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (workers, mut stopped) = (workers.clone(), stopped.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    workers.note();
                    workers.note(); // noted once per thread
                    tx.send(std::thread::current().id()).unwrap();
                    let _ = stopped.changed().await;
                });
            }));
            ids.push(rx.recv().unwrap());
        }
        assert_eq!(workers.handles().len(), 2);
        let here = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(here.block_on(on_every_worker(&workers, hook)), 2);
        let ran = THREADS.lock().clone();
        assert_eq!(ran.len(), 2, "{ran:?}");
        assert!(ids.iter().all(|id| ran.contains(id)), "once on each worker's thread: {ran:?} {ids:?}");
        stop.send(true).unwrap();
        for t in threads {
            t.join().unwrap();
        }
    }
}
