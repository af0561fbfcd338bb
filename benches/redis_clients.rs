//! `redis` (the client the shared limits use, with its tokio `ConnectionManager`) against `fred`
//! (dev-dependency only) on exactly the shared-limits workload (issue 14): per request one
//! `admit` and one `settle` call of `src/limits/shared.lua` by EVALSHA, with the KEYS/ARGV
//! `SharedLimits::admit`/`settle` build for one key scope with rpm, tpm, max_parallel and a
//! budget (all too high to ever refuse).
//!
//! A `redis-server` of this run listens on a free loopback port (stopped by PID at the end). The
//! clients run on a multi-thread tokio runtime with one worker (the gateway's per-core figure),
//! each with one connection shared by all tasks, at concurrency 1 (one task, sequential) and 64
//! (64 tasks), each run `--secs` long; the two clients alternate over `--rounds` rounds so
//! background noise hits both. Per run: calls/s (one call = one EVALSHA), p50/p99 latency of a
//! call, CPU µs per call of this process (getrusage RUSAGE_SELF, user + system) and, for
//! context, of the redis-server (from /proc/<pid>/stat, 10 ms ticks); then per client and
//! concurrency the median and the best of the rounds (noise only ever adds CPU).
//!
//! Not measured: the breaker, `tokio::time::timeout` and reply decoding into `RateHeaders` of
//! `SharedLimits` (the same code whichever client answers).
//!
//! Run: `nice -n 10 cargo bench --bench redis_clients` (after `--`: `--secs 3 --rounds 3`).

#[path = "support/proc.rs"]
mod proc_stat;
use proc_stat::cpu_ticks;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fred::prelude::{Builder, ClientLike, Config as FredConfig};
use fred::types::scripts::Script as FredScript;
use hdrhistogram::Histogram;
use llm_gateway::config::BudgetPeriod;
use llm_gateway::limits::next_period_start;
use nix::sys::resource::{getrusage, UsageWho};

const SCRIPT: &str = include_str!("../src/limits/shared.lua");
const CONCURRENCY: [usize; 2] = [1, 64];
/// The timeout the clients are configured with (the gateway's is `redis.timeout_ms`, 50 ms by
/// default; longer here so a noisy box never turns a slow answer into an error).
const TIMEOUT: Duration = Duration::from_secs(1);

/// The limits of the one scope: too high to refuse.
const RPM: i64 = 1_000_000_000;
const TPM: i64 = 1_000_000_000_000;
const MAX_PARALLEL: i64 = 1_000;
const BUDGET_MICROS: i64 = 1_000_000_000_000_000;
/// `BudgetRule::alert_micros` of `alert_at: 0.8`.
const ALERT_MICROS: i64 = BUDGET_MICROS / 10 * 8;
const LEASE_US: i64 = 600_000_000;
/// A request's demand, then what it used.
const TOKENS: i64 = 1_500;
const COST: i64 = 2_000;
const ACTUAL_TOKENS: i64 = 1_200;
const ACTUAL_COST: i64 = 1_700;

/// What one request sends, as `SharedLimits` builds it: the scope's four keys, the budget
/// period's ttl, and a unique in-flight id.
struct Workload {
    keys: [String; 4],
    ttl_ms: i64,
    next_id: AtomicU64,
}

impl Workload {
    /// The key scope `bench` (tag `k:bench`) with a monthly budget.
    fn new() -> Workload {
        let wall = SystemTime::now();
        let base = "llmgw:v1:{k:bench}:k:bench";
        // `period_id(Monthly, wall)` has this shape (kind in the top byte, then a month index).
        let period = (3u64 << 56) | 24_317;
        let ttl_ms = next_period_start(BudgetPeriod::Monthly, wall)
            .and_then(|end| end.duration_since(wall).ok())
            .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1));
        Workload {
            keys: [
                format!("{base}:rpm"),
                format!("{base}:tpm"),
                format!("{base}:par"),
                format!("{base}:bud:{period:x}"),
            ],
            ttl_ms,
            next_id: AtomicU64::new(0),
        }
    }

    /// A unique 24-hex-digit id (the length of `request_id()`'s).
    fn id(&self) -> String {
        format!("{:024x}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// One of the two clients, with its one shared connection.
#[derive(Clone)]
enum Client {
    Redis { conn: redis::aio::ConnectionManager, script: Arc<redis::Script> },
    Fred { client: fred::clients::Client, script: Arc<FredScript> },
}

// === impl Client ===

impl Client {
    fn name(&self) -> &'static str {
        match self {
            Client::Redis { .. } => "redis",
            Client::Fred { .. } => "fred",
        }
    }

    /// `redis` as `SharedLimits::new` configures it.
    async fn redis(url: &str) -> Client {
        let client = redis::Client::open(url).expect("redis url");
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_with_config(config).await.expect("redis connect");
        Client::Redis { conn, script: Arc::new(redis::Script::new(SCRIPT)) }
    }

    /// `fred` with the same timeouts; one connection (a `Client`, not a pool), auto-pipelined.
    async fn fred(url: &str) -> Client {
        let config = FredConfig::from_url(url).expect("fred url");
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = TIMEOUT)
            .with_performance_config(|p| p.default_command_timeout = TIMEOUT)
            .build()
            .expect("fred client");
        client.init().await.expect("fred connect");
        Client::Fred { client, script: Arc::new(FredScript::from_lua(SCRIPT)) }
    }

    /// One request: `admit` then `settle`, each timed into `hist`.
    async fn request(&self, w: &Workload, hist: &mut Histogram<u64>) {
        let id = w.id();
        let t = Instant::now();
        self.admit(w, &id).await;
        let _ = hist.record(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        self.settle(w, &id).await;
        let _ = hist.record(t.elapsed().as_micros() as u64);
    }

    async fn admit(&self, w: &Workload, id: &str) {
        let admitted = match self {
            Client::Redis { conn, script } => {
                let mut inv = script.prepare_invoke();
                inv.arg("admit").arg(1).arg(id).arg(TOKENS).arg(COST).arg(LEASE_US);
                for k in &w.keys {
                    inv.key(k);
                }
                inv.arg(RPM).arg(TPM).arg(MAX_PARALLEL).arg(BUDGET_MICROS).arg(w.ttl_ms);
                let answer: Vec<redis::Value> =
                    inv.invoke_async(&mut conn.clone()).await.expect("redis admit");
                matches!(answer.first(), Some(redis::Value::Int(1)))
            }
            Client::Fred { client, script } => {
                use fred::prelude::Value;
                let args: Vec<Value> = vec![
                    "admit".into(),
                    1.into(),
                    id.into(),
                    TOKENS.into(),
                    COST.into(),
                    LEASE_US.into(),
                    RPM.into(),
                    TPM.into(),
                    MAX_PARALLEL.into(),
                    BUDGET_MICROS.into(),
                    w.ttl_ms.into(),
                ];
                let keys: Vec<&str> = w.keys.iter().map(String::as_str).collect();
                let answer: Vec<Value> =
                    script.evalsha_with_reload(client, keys, args).await.expect("fred admit");
                matches!(answer.first(), Some(Value::Integer(1)))
            }
        };
        assert!(admitted, "{}: admit refused (the limits are meant to be too high)", self.name());
    }

    async fn settle(&self, w: &Workload, id: &str) {
        let rows: Vec<Vec<i64>> = match self {
            Client::Redis { conn, script } => {
                let mut inv = script.prepare_invoke();
                inv.arg("settle").arg(1).arg(id).arg(TOKENS).arg(ACTUAL_TOKENS).arg(COST).arg(ACTUAL_COST);
                for k in &w.keys {
                    inv.key(k);
                }
                inv.arg(TPM).arg(BUDGET_MICROS).arg(ALERT_MICROS).arg(w.ttl_ms);
                inv.invoke_async(&mut conn.clone()).await.expect("redis settle")
            }
            Client::Fred { client, script } => {
                use fred::prelude::Value;
                let args: Vec<Value> = vec![
                    "settle".into(),
                    1.into(),
                    id.into(),
                    TOKENS.into(),
                    ACTUAL_TOKENS.into(),
                    COST.into(),
                    ACTUAL_COST.into(),
                    TPM.into(),
                    BUDGET_MICROS.into(),
                    ALERT_MICROS.into(),
                    w.ttl_ms.into(),
                ];
                let keys: Vec<&str> = w.keys.iter().map(String::as_str).collect();
                script.evalsha_with_reload(client, keys, args).await.expect("fred settle")
            }
        };
        assert_eq!(rows.len(), 1, "{}: one row per scope", self.name());
    }
}

/// The figures of one run.
struct Run {
    calls: u64,
    calls_per_s: f64,
    hist: Histogram<u64>,
    cpu_us_per_call: f64,
    server_cpu_us_per_call: f64,
}

/// `concurrency` tasks sharing `client`, each making requests until `secs` have passed.
fn run(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    w: &Arc<Workload>,
    concurrency: usize,
    secs: f64,
    server_pid: u32,
) -> Run {
    let (cpu0, server0) = (own_cpu_us(), cpu_ticks(server_pid));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let hist = rt.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, w) = (client.clone(), w.clone());
                tokio::spawn(async move {
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
                    while Instant::now() < deadline {
                        client.request(&w, &mut hist).await;
                    }
                    hist
                })
            })
            .collect();
        let mut all = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).unwrap();
        for t in tasks {
            all.add(t.await.expect("bench task")).unwrap();
        }
        all
    });
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu, server) = (own_cpu_us() - cpu0, cpu_ticks(server_pid) - server0);
    let calls = hist.len();
    Run {
        calls,
        calls_per_s: calls as f64 / elapsed,
        cpu_us_per_call: cpu as f64 / calls as f64,
        server_cpu_us_per_call: server as f64 * 10_000.0 / calls as f64,
        hist,
    }
}

fn main() {
    let mut secs = 3.0;
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs <seconds>"),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).expect("--rounds <n>"),
            _ => {} // `cargo bench` passes `--bench`
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut server = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let (redis, fred) = rt.block_on(async {
        server.wait_ready().await;
        (Client::redis(&url).await, Client::fred(&url).await)
    });
    let w = Arc::new(Workload::new());
    let pid = server.pid();

    // Warm up both (script loaded, connections and allocator settled).
    for c in [&redis, &fred] {
        run(&rt, c, &w, 64, 0.5, pid);
    }

    println!(
        "{:<6} {:>5} {:>5} {:>10} {:>9} {:>9} {:>13} {:>13}",
        "client", "conc", "round", "calls/s", "p50 µs", "p99 µs", "cpu µs/call", "server µs/call"
    );
    let mut results: Vec<(&'static str, usize, Run)> = Vec::new();
    for round in 0..rounds {
        for &conc in &CONCURRENCY {
            let order = if round % 2 == 0 { [&redis, &fred] } else { [&fred, &redis] };
            for c in order {
                server.flushall(&rt);
                let r = run(&rt, c, &w, conc, secs, pid);
                println!(
                    "{:<6} {:>5} {:>5} {:>10.0} {:>9} {:>9} {:>13.1} {:>13.1}",
                    c.name(),
                    conc,
                    round + 1,
                    r.calls_per_s,
                    r.hist.value_at_quantile(0.5),
                    r.hist.value_at_quantile(0.99),
                    r.cpu_us_per_call,
                    r.server_cpu_us_per_call
                );
                results.push((c.name(), conc, r));
            }
        }
    }

    // Noise from other work on the box only ever adds CPU and takes throughput: the best round
    // is the closest to the client's own cost, the median says how typical it is.
    println!("\nmedian (best) of {rounds} rounds; a call is one EVALSHA, a request two (admit + settle):");
    println!(
        "| client | concurrency | calls/s | p50 µs | p99 µs | client CPU µs/call | redis-server CPU µs/call |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &conc in &CONCURRENCY {
        for name in ["redis", "fred"] {
            let runs: Vec<&Run> =
                results.iter().filter(|r| r.0 == name && r.1 == conc).map(|r| &r.2).collect();
            let all = |f: &dyn Fn(&Run) -> f64| -> Vec<f64> { runs.iter().map(|r| f(r)).collect() };
            let rate = all(&|r| r.calls_per_s);
            let cpu = all(&|r| r.cpu_us_per_call);
            println!(
                "| {name} | {conc} | {:.0} ({:.0}) | {:.0} | {:.0} | {:.1} ({:.1}) | {:.1} |",
                median(rate.clone()),
                rate.iter().copied().fold(0.0, f64::max),
                median(all(&|r| r.hist.value_at_quantile(0.5) as f64)),
                median(all(&|r| r.hist.value_at_quantile(0.99) as f64)),
                median(cpu.clone()),
                cpu.iter().copied().fold(f64::INFINITY, f64::min),
                median(all(&|r| r.server_cpu_us_per_call)),
            );
        }
    }
    let total: u64 = results.iter().map(|r| r.2.calls).sum();
    println!("({total} calls measured, {secs} s per run)");
    server.stop();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// User + system CPU time of this process (every thread), µs.
fn own_cpu_us() -> i64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
    us(u.user_time()) + us(u.system_time())
}

/// A `redis-server` of this run (as `tests/common` starts one), stopped by PID.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

// === impl RedisServer ===

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        RedisServer { port, child: Some(child) }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Empty the data between runs (the script cache stays), so each run starts alike.
    fn flushall(&self, rt: &tokio::runtime::Runtime) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        rt.block_on(async {
            let mut c = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
            c.write_all(b"*1\r\n$8\r\nFLUSHALL\r\n").await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"+OK\r\n");
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
