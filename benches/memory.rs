//! Memory under load, in one run: the gateway's idle RSS, its RSS while holding thousands of
//! concurrent slow SSE streams (with the count of streams that did not complete), and its RSS
//! after a soak of mixed traffic, back at idle, against its pre-load level. "Back at idle" is
//! read 5 s after the soak, again once the upstream connections the soak left in the pool have
//! been closed for idleness (60 s), and once the timers of its upstream reads have ended (120 s,
//! the shipped default `limits.upstream_timeout_ms`, which the bench's config keeps), each after
//! the gateway's release that follows (`server::release::SCHEDULE`).
//!
//! Run: `cargo bench --bench memory` (options after `--`: `--streams 5000` concurrent streams,
//! `--stream-s 20` how long each stream lasts, `--idle-s 0` how long to watch RSS idle after
//! the streams (a sample every 30 s), `--soak-s 600` the soak, `--settle-s 0` how long to keep
//! reading RSS after the soak beyond its two readings (after each release), `--threads 2` the
//! gateway's worker threads, `--bin PATH` another gateway binary, `--wrap "CMD ARGS"` a command
//! to run it under, e.g. `--wrap "env MIMALLOC_PURGE_DELAY=0"` or `--wrap heaptrack`: RSS is then
//! read from the last process in its chain of children, the gateway; `--smaps DIR` keeps a copy
//! of its /proc/<pid>/smaps at each idle reading and its log, for
//! `benches/support/smaps_diff.py`). The gateway is the release binary (or `--bin`) on a mock
//! upstream of this
//! process (OpenAI SSE, one event per second per stream), with the access log on (at the
//! default `info` level, written to a file) and usage lines written, as in production.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_gateway::server::release::SCHEDULE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-bench";
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}"#;
const TICK: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick \"},\"finish_reason\":null}]}\n\n";
const LAST: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5,\"total_tokens\":10}}\n\ndata: [DONE]\n\n";

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let streams: usize = arg("--streams", 5000);
    let stream_s: u64 = arg("--stream-s", 20);
    let soak_s: u64 = arg("--soak-s", 600);
    let idle_s: u64 = arg("--idle-s", 0);
    let threads: usize = arg("--threads", 2);
    let bin: String = arg("--bin", env!("CARGO_BIN_EXE_llm-gateway").to_string());
    let wrap: String = arg("--wrap", String::new());
    // `--smaps DIR`: a copy of the gateway's /proc/<pid>/smaps at each idle reading, to see
    // which mappings hold what stays (`benches/support/smaps_diff.py DIR/a DIR/b`), and the
    // gateway's log (its stderr) at the end.
    let smaps: String = arg("--smaps", String::new());
    let snapshot = |pid: u32, label: &str| {
        if !smaps.is_empty() {
            let _ = std::fs::create_dir_all(&smaps);
            let _ = std::fs::copy(format!("/proc/{pid}/smaps"), format!("{smaps}/{label}.smaps"));
        }
    };
    let mock = start_mock(Duration::from_secs(1), stream_s).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), mock, threads, &bin, &wrap);
    let pid = gw.pid;
    println!("memory: {streams} streams of {stream_s} s, soak {soak_s} s, gateway --threads {threads}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_start = kb(pid, "VmRSS");
    // One request of each kind, so first-use allocations are not counted as load.
    assert!(chat(gw.addr).await, "a warm-up request failed");
    assert!(stream(gw.addr, stream_s + 30).await, "a warm-up stream failed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = kb(pid, "VmRSS");
    snapshot(pid, "0-idle");
    println!(
        "idle RSS: {} MiB at start, {} MiB after one request of each kind (anonymous {} MiB, file {} MiB)",
        mib(idle_start),
        mib(idle),
        mib(kb(pid, "RssAnon")),
        mib(kb(pid, "RssFile"))
    );

    // N concurrent slow streams, opened over ~2 s.
    let t = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(streams);
    for i in 0..streams {
        let (done, failed) = (done.clone(), failed.clone());
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(400 * i as u64)).await;
            if stream(addr, stream_s + 60).await {
                done.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut peak = 0;
    while done.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < streams {
        peak = peak.max(kb(pid, "VmRSS"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{streams} concurrent streams: peak RSS {} MiB (VmHWM {} MiB), {} complete, {} failed, {:.1} s",
        mib(peak),
        mib(kb(pid, "VmHWM")),
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_streams = kb(pid, "VmRSS");
    println!("after the streams, idle: {} MiB", mib(after_streams));
    // RSS while idle after the load (does the allocator give it back, or does it drift?).
    let mut watched = 0;
    while watched < idle_s {
        let step = (idle_s - watched).min(30);
        tokio::time::sleep(Duration::from_secs(step)).await;
        watched += step;
        snapshot(pid, &format!("1-streams-{}s", watched + 5));
        println!(
            "idle {} s after the streams: RSS {} MiB (anonymous {} MiB, of it in huge pages {} MiB), {} sockets open",
            watched + 5,
            mib(kb(pid, "VmRSS")),
            mib(kb(pid, "RssAnon")),
            mib(smaps_kb(pid, "AnonHugePages")),
            sockets(pid)
        );
    }

    // Soak: 200 streams at a time plus JSON requests at ~500/s, for soak_s seconds.
    let until = Instant::now() + Duration::from_secs(soak_s);
    let served = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut soakers = Vec::new();
    for _ in 0..200 {
        let (served, errors, addr) = (served.clone(), errors.clone(), gw.addr);
        soakers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let ok = stream(addr, stream_s + 60).await;
                (if ok { &served } else { &errors }).fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..10 {
        let (served, errors, addr) = (served.clone(), errors.clone(), gw.addr);
        soakers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let ok = chat(addr).await;
                (if ok { &served } else { &errors }).fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut soak_peak = 0;
    while Instant::now() < until {
        soak_peak = soak_peak.max(kb(pid, "VmRSS"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for s in soakers {
        let _ = s.await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_soak = kb(pid, "VmRSS");
    snapshot(pid, "2-soak-5s");
    println!(
        "soak {soak_s} s: {} requests, {} errors, peak RSS {} MiB; 5 s after: {} MiB ({:+.1}% vs pre-load {} MiB), {} sockets open",
        served.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        mib(soak_peak),
        mib(after_soak),
        (after_soak as f64 / idle as f64 - 1.0) * 100.0,
        mib(idle),
        sockets(pid)
    );
    // Back at idle: once the upstream connections the load left in the pool have been closed for
    // idleness (the gateway's second release), and once the timers of its upstream reads have
    // ended (the default 120 s upstream timeout; its third release).
    // `--settle-s N`: then after each later release up to N s after the soak.
    let settle_s: u64 = arg("--settle-s", 0);
    let later = (3..SCHEDULE.count)
        .take_while(|&i| (SCHEDULE.mark(i) + Duration::from_secs(5)).as_secs() <= settle_s);
    let mut waited = Duration::from_secs(5);
    for (i, what) in
        [(1, "pool closed"), (2, "read timers ended")].into_iter().chain(later.map(|i| (i, "later")))
    {
        let at = SCHEDULE.mark(i) + Duration::from_secs(5);
        tokio::time::sleep(at.saturating_sub(waited)).await;
        waited = at;
        let settled = kb(pid, "VmRSS");
        snapshot(pid, &format!("3-soak-{}s", at.as_secs()));
        println!(
            "back at idle, {} s after the soak ({what}): {} MiB (anonymous {} MiB, file {} MiB; {:+.1}% vs pre-load {} MiB), {} sockets open",
            at.as_secs(),
            mib(settled),
            mib(kb(pid, "RssAnon")),
            mib(kb(pid, "RssFile")),
            (settled as f64 / idle as f64 - 1.0) * 100.0,
            mib(idle),
            sockets(pid)
        );
    }
    if !smaps.is_empty() {
        let _ = std::fs::copy(dir.path().join("gateway.log"), format!("{smaps}/gateway.log"));
    }
}

/// Sockets the process has open (listeners included).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// One streamed chat completion on a new connection; true when it ends with `[DONE]`.
async fn stream(addr: SocketAddr, within_s: u64) -> bool {
    let body = r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    exchange(addr, body, b"data: [DONE]\n\n", within_s).await
}

async fn chat(addr: SocketAddr) -> bool {
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    exchange(addr, body, b"\"chat.completion\"", 10).await
}

async fn exchange(addr: SocketAddr, body: &str, needle: &[u8], within_s: u64) -> bool {
    let go = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Some(got.starts_with(b"HTTP/1.1 200") && got.windows(needle.len()).any(|w| w == needle))
    };
    tokio::time::timeout(Duration::from_secs(within_s), go).await.ok().flatten().unwrap_or(false)
}

/// The upstream: JSON requests answered at once; streams send one event per `every` for
/// `events` events, then usage and `[DONE]` (chunked, as real providers do).
async fn start_mock(every: Duration, events: u64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                loop {
                    let Some(len) = request_len(&buf) else {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                        continue;
                    };
                    let is_stream = String::from_utf8_lossy(&buf[..len]).contains("\"stream\":true");
                    buf.drain(..len);
                    if !is_stream {
                        let r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{COMPLETION}",
                            COMPLETION.len()
                        );
                        if s.write_all(r.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for _ in 0..events {
                        tokio::time::sleep(every).await;
                        if s.write_all(format!("{:x}\r\n{TICK}\r\n", TICK.len()).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let end = format!("{:x}\r\n{LAST}\r\n0\r\n\r\n", LAST.len());
                    if s.write_all(end.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The length of the first whole request in `b` (header + content-length body).
fn request_len(b: &[u8]) -> Option<usize> {
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (b.len() >= end + len).then_some(end + len)
}

struct Proc {
    child: Child,
    addr: SocketAddr,
    /// The gateway's own pid (not the wrapper's).
    pid: u32,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Under a wrapper, stop the gateway itself first (SIGTERM: a profiler sees a normal
        // exit and writes its data), and give the wrapper a while to exit after it.
        if self.pid != self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::SIGTERM,
            );
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(60) && matches!(self.child.try_wait(), Ok(None)) {
                pause();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(dir: &std::path::Path, mock: SocketAddr, threads: usize, bin: &str, wrap: &str) -> Proc {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cfg = format!(
        "listen: \"{addr}\"\nstate_dir: {}\nproviders:\n  - {{ name: up, kind: openai_compatible, base_url: \"http://{mock}\" }}\nmodels:\n  - {{ alias: fast, targets: [ {{ provider: up, model: gpt-4o-mini }} ], pricing: {{ input_per_mtok: 1, output_per_mtok: 2 }} }}\nkeys:\n  - {{ id: bench, hash: \"{}\" }}\n",
        dir.join("state").display(),
        llm_gateway::auth::stored_form(KEY)
    );
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let mut cmd = match wrap.split_whitespace().collect::<Vec<_>>().split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .args(["run", "--threads", &threads.to_string(), "-c"])
        .arg(&path)
        .env("LLM_GATEWAY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start gateway");
    let t = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "the gateway did not open {addr}");
        pause();
    }
    let pid = gateway_pid(child.id(), bin);
    Proc { child, addr, pid }
}

/// The gateway's pid under a `--wrap` command: the first process, `pid` or one of its
/// descendants, that runs `bin` (`pid` itself without a wrapper, or when the wrapper exec()s).
fn gateway_pid(pid: u32, bin: &str) -> u32 {
    let bin = std::fs::canonicalize(bin).unwrap_or_default();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|exe| exe == bin) {
            return p;
        }
        let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        todo.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
    }
    pid
}

// A bench process polling a port: blocking is fine here.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(Duration::from_millis(50));
}

/// A field of `/proc/<pid>/status`, in KiB.
fn kb(pid: u32, field: &str) -> u64 {
    proc_kb(pid, "status", field)
}

/// A field of `/proc/<pid>/smaps_rollup`, in KiB.
fn smaps_kb(pid: u32, field: &str) -> u64 {
    proc_kb(pid, "smaps_rollup", field)
}

/// A `Field:  N kB` line of `/proc/<pid>/<file>`.
fn proc_kb(pid: u32, file: &str, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}
