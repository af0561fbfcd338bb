//! Test harness: a scriptable HTTP/1.1 mock upstream on loopback, and the real `llm-gateway`
//! binary started on a generated config. Every test gets its own ports and state directory.
#![allow(dead_code)]

pub mod jobs;
pub mod providers;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the mock upstream received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("upstream got JSON")
    }
}

/// What the mock upstream answers.
pub enum Reply {
    /// A complete answer with Content-Length.
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// A chunked answer; each part is sent after waiting for its `Gate` (if any) or delay.
    Stream { status: u16, content_type: String, parts: Vec<(Wait, Vec<u8>)> },
    /// Never answer (for timeouts).
    Hang,
    /// Close the connection without answering.
    Close,
}

pub enum Wait {
    None,
    Delay(Duration),
    /// Wait until the test opens this gate.
    Gate(Arc<tokio::sync::Notify>),
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((k.into(), v.into()));
        }
        self
    }
    pub fn sse(parts: Vec<(Wait, &str)>) -> Reply {
        Reply::Stream {
            status: 200,
            content_type: "text/event-stream".into(),
            parts: parts.into_iter().map(|(w, s)| (w, s.as_bytes().to_vec())).collect(),
        }
    }
}

type Handler = dyn Fn(&Received, usize) -> Reply + Send + Sync;

/// A mock upstream: records every request, answers with `handler(request, n)` (n = 0, 1, ...).
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    count: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    pub async fn start(handler: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, cnt, conns) = (received.clone(), count.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                conns.fetch_add(1, Ordering::SeqCst);
                let (rec, cnt, handler) = (rec.clone(), cnt.clone(), handler.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, rec, cnt, handler).await;
                });
            }
        });
        MockUpstream { addr, received, count, connections, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut sock: TcpStream,
    rec: Arc<Mutex<Vec<Received>>>,
    cnt: Arc<AtomicUsize>,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await? else { return Ok(()) };
        let n = cnt.fetch_add(1, Ordering::SeqCst);
        rec.lock().push(req.clone());
        match handler(&req, n) {
            Reply::Full { status, headers, body } => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                sock.write_all(&bytes).await?;
            }
            Reply::Stream { status, content_type, parts } => {
                let h = format!("HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n");
                sock.write_all(h.as_bytes()).await?;
                for (wait, data) in parts {
                    match wait {
                        Wait::None => {}
                        Wait::Delay(d) => tokio::time::sleep(d).await,
                        Wait::Gate(g) => g.notified().await,
                    }
                    if !data.is_empty() {
                        sock.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
                        sock.write_all(&data).await?;
                        sock.write_all(b"\r\n").await?;
                    }
                }
                sock.write_all(b"0\r\n\r\n").await?;
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Reply::Close => return Ok(()),
        }
    }
}

/// Read one HTTP/1.1 request (Content-Length body) from `sock`; `buf` keeps what was read past
/// it for the next call. `None` when the peer closed the connection.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    sock: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Received>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let mut tmp = [0u8; 65536];
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        let mut tmp = [0u8; 65536];
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    Ok(Some(Received { method, path, headers, body }))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Two distinct free ports (both held while the second is picked): two `free_port` calls can
/// return the same port, and a gateway given one port for both listeners passed the readiness
/// check and then answered a data-plane request from its admin service.
pub fn two_free_ports() -> (u16, u16) {
    let a = StdListener::bind("127.0.0.1:0").unwrap();
    let b = StdListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Whether process `pid` has a listening TCP socket on `port` (the gateway's own check,
/// `server::upgrade::listens`).
pub fn listens(pid: u32, port: u16) -> bool {
    llm_gateway::server::upgrade::listens(pid, port)
}

pub const KEY: &str = "sk-test-key";
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The running gateway binary. Killed on drop.
pub struct Gateway {
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Gateway {
    /// Start on `body` (providers/models/keys...); `listen`, `admin` and `state_dir` are added.
    /// `{KEY_HASH}` in `body` is replaced by the stored form of `KEY`.
    pub async fn start(body: impl std::fmt::Display) -> Gateway {
        Self::start_with_env(body, &[], &[]).await
    }

    /// `start`, with environment variables set (`env`) and removed (`remove`) for the gateway.
    pub async fn start_with_env(
        body: impl std::fmt::Display,
        env: &[(&str, &str)],
        remove: &[&str],
    ) -> Gateway {
        let body = body.to_string();
        let body = body.as_str();
        // Free ports are found by binding port 0 and letting go, so another test can take one
        // before the gateway binds it: if the gateway cannot bind, try other ports.
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let (port, admin_port) = two_free_ports();
            let text = Self::config_text(port, admin_port, &dir.path().join("state"), body);
            std::fs::write(dir.path().join("gateway.yaml"), text).unwrap();
            let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-gateway"));
            for name in remove {
                cmd.env_remove(name);
            }
            let child = cmd
                .args(["run", "-c"])
                .arg(dir.path().join("gateway.yaml"))
                .args(["--threads", "2"])
                .env("LLM_GATEWAY_LOG", "info")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut gw = Gateway { port, admin_port, dir, child };
            if gw.wait_ready().await {
                return gw;
            }
            eprintln!("gateway could not start (port taken?); retrying on other ports. log:\n{}", gw.log());
        }
        panic!("the gateway did not start in three tries");
    }

    /// `body` with `listen`, `state_dir` and (unless `body` has its own `admin:`, whose listen
    /// address may be written `{ADMIN_LISTEN}`) an `admin:` entry with `ADMIN_TOKEN`.
    pub fn config_text(port: u16, admin_port: u16, state: &std::path::Path, body: &str) -> String {
        let admin_listen = format!("127.0.0.1:{admin_port}");
        let admin = if body.starts_with("admin:") || body.contains("\nadmin:") {
            String::new()
        } else {
            format!("admin: {{ listen: \"{admin_listen}\", token: {ADMIN_TOKEN} }}\n")
        };
        format!(
            "listen: \"127.0.0.1:{port}\"\n{admin}state_dir: {}\n{}",
            state.display(),
            body.replace("{KEY_HASH}", &llm_gateway::auth::stored_form(KEY))
                .replace("{ADMIN_LISTEN}", &admin_listen)
        )
    }

    /// Stop this gateway (SIGKILL) and start a new process on the same config and state dir.
    pub async fn restart(mut self) -> Gateway {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("gateway.log")).unwrap();
        self.child = Command::new(env!("CARGO_BIN_EXE_llm-gateway"))
            .args(["run", "-c"])
            .arg(self.config_path())
            .args(["--threads", "2"])
            .env("LLM_GATEWAY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        assert!(self.wait_ready().await, "the restarted gateway did not come up:\n{}", self.log());
        self
    }

    /// Rewrite the config file (hot reload picks it up).
    pub fn write_config(&self, body: impl std::fmt::Display) {
        let text =
            Self::config_text(self.port, self.admin_port, &self.dir.path().join("state"), &body.to_string());
        let tmp = self.dir.path().join("gateway.yaml.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(tmp, self.config_path()).unwrap();
    }

    /// Send SIGTERM (graceful stop).
    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Wait up to `within` for the process to exit; its exit code (`None`: still running, or
    /// killed by a signal).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL the gateway now (no graceful shutdown).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `/proc/<pid>/status` field in kB (e.g. "VmRSS", "VmHWM").
    pub fn proc_kb(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|r| r.trim_start_matches(':').trim().split(' ').next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Wait until both listeners answer. `false` if the gateway exited first.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        // Both listeners: the admin service can come up a moment after the data plane.
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            // Pingora retries a taken port instead of exiting: give up on this one.
            if self.log().contains("is in use, will try again") {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            let data = client.get(self.url("/healthz")).send().await.is_ok_and(|r| r.status() == 200);
            let admin = client.get(self.admin_url("/healthz")).send().await.is_ok_and(|r| r.status() == 200);
            if data && admin {
                // The ports were free when picked, not when bound: the answers may have come
                // from another test's gateway that took them in between (its requests then fail
                // with that gateway's 401s). Only ours counts.
                if listens(self.child.id(), self.port) && listens(self.child.id(), self.admin_port) {
                    return true;
                }
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become ready; log:\n{}", self.log());
    }

    /// Lines of `usage.jsonl`, waiting up to 2 s for `n` of them.
    pub async fn usage_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let path = self.dir.path().join("state/usage.jsonl");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config body built as data (providers, models, keys, limits...) and written out as YAML;
/// tests change it through its fields, never by editing YAML text.
#[derive(Clone, Debug)]
pub struct Cfg(pub serde_json::Value);

impl Cfg {
    /// Merges `fields` into `limits:`.
    pub fn limits(mut self, fields: serde_json::Value) -> Cfg {
        merge(&mut self.0["limits"], fields);
        self
    }

    /// Appends one entry to `models:`.
    pub fn alias(mut self, entry: serde_json::Value) -> Cfg {
        self.models().push(entry);
        self
    }

    /// The entry of `models:` named `alias`.
    pub fn alias_mut(&mut self, alias: &str) -> &mut serde_json::Value {
        self.models().iter_mut().find(|m| m["alias"] == alias).expect("no such alias")
    }

    /// Merges `fields` into every entry of `providers:`.
    pub fn providers_with(mut self, fields: serde_json::Value) -> Cfg {
        if let Some(list) = self.0["providers"].as_array_mut() {
            for p in list {
                merge(p, fields.clone());
            }
        }
        self
    }

    /// The entry of `keys:` with `id`.
    pub fn key_mut(&mut self, id: &str) -> &mut serde_json::Value {
        let keys = self.0["keys"].as_array_mut().expect("keys is a list");
        keys.iter_mut().find(|k| k["id"] == id).expect("no such key")
    }

    fn models(&mut self) -> &mut Vec<serde_json::Value> {
        self.0["models"].as_array_mut().expect("models is a list")
    }
}

impl std::fmt::Display for Cfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_yaml::to_string(&self.0).map_err(|_| std::fmt::Error)?)
    }
}

fn merge(into: &mut serde_json::Value, fields: serde_json::Value) {
    if !into.is_object() {
        *into = serde_json::json!({});
    }
    if let (Some(map), serde_json::Value::Object(fields)) = (into.as_object_mut(), fields) {
        map.extend(fields);
    }
}

/// One openai-kind provider `up` at `upstream`; alias `fast` (priced) and `other`; key `k1`
/// (the test `KEY`) allowed `fast` only.
pub fn openai_config(upstream: &str) -> Cfg {
    Cfg(serde_json::json!({
        "limits": { "upstream_timeout_ms": 2000, "max_body_bytes": 2_097_152 },
        "providers": [ { "name": "up", "kind": "openai", "base_url": upstream, "api_key": "sk-provider-secret" } ],
        "models": [
            { "alias": "fast", "targets": [ { "provider": "up", "model": "gpt-4o-mini" } ],
              "pricing": { "input_per_mtok": 1.0, "output_per_mtok": 2.0 } },
            { "alias": "other", "targets": [ { "provider": "up", "model": "gpt-4o" } ] },
        ],
        "keys": [ { "id": "k1", "hash": "{KEY_HASH}", "models": ["fast"] } ],
    }))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// openai_compatible providers `pa`, `pb`, `pc` at the given upstreams; alias `a` over the
/// first ones with `weights` (target models `m0`, `m1`...); key `k` (the test `KEY`).
pub fn routing_config(upstreams: &[&MockUpstream], weights: &[u32]) -> Cfg {
    const NAMES: [&str; 3] = ["pa", "pb", "pc"];
    let providers: Vec<serde_json::Value> = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| serde_json::json!({ "name": NAMES[i], "kind": "openai_compatible", "base_url": u.url() }))
        .collect();
    let targets: Vec<serde_json::Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| serde_json::json!({ "provider": NAMES[i], "model": format!("m{i}"), "weight": w }))
        .collect();
    Cfg(serde_json::json!({
        "limits": { "upstream_timeout_ms": 1000 },
        "providers": providers,
        "models": [ { "alias": "a", "targets": targets } ],
        "keys": [ { "id": "k", "hash": "{KEY_HASH}" } ],
    }))
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-server` of the test's own on a free loopback port, stopped by PID (on drop too).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` (with a message) when `redis-server` is not installed; `.ci/run` installs it.
    pub async fn start() -> Option<RedisServer> {
        let mut r = RedisServer { port: free_port(), child: None };
        if !r.spawn().await {
            eprintln!("redis-server is not installed: skipping (.ci/run installs it)");
            return None;
        }
        Some(r)
    }

    async fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kill it (SIGKILL, by PID): its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Empty every database (the connections stay up).
    pub async fn flushall(&self) {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        c.write_all(b"*1\r\n$8\r\nFLUSHALL\r\n").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"+OK\r\n");
    }

    /// Start it again on the same port (empty).
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An OpenAI stream of `ticks` "tick " deltas, `every` apart, then the usage chunk (3 input,
/// `ticks` output tokens) and `[DONE]`: a long stream for stop and upgrade tests.
pub fn tick_stream(ticks: usize, every: Duration) -> Reply {
    let tick = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick \"},\"finish_reason\":null}]}\n\n";
    let mut parts: Vec<(Wait, String)> = (0..ticks).map(|_| (Wait::Delay(every), tick.to_string())).collect();
    parts.push((Wait::None, format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":{ticks},\"total_tokens\":{}}}}}\n\n", ticks + 3)));
    parts.push((Wait::None, "data: [DONE]\n\n".to_string()));
    Reply::Stream {
        status: 200,
        content_type: "text/event-stream".into(),
        parts: parts.into_iter().map(|(w, s)| (w, s.into_bytes())).collect(),
    }
}

/// Whether a client's text is a whole `tick_stream` of `ticks` ticks.
pub fn tick_stream_complete(text: &str, ticks: usize) -> bool {
    text.matches("tick ").count() == ticks && text.ends_with("data: [DONE]\n\n")
}

/// Open `n` streamed chat requests to `url` with the test key; each task yields the text the
/// client received (asserting a 200 first).
pub fn open_streams(url: &str, n: usize) -> Vec<tokio::task::JoinHandle<String>> {
    let body = r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    (0..n)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let r = client().post(url).bearer_auth(KEY).body(body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.text().await.unwrap_or_default()
            })
        })
        .collect()
}

/// The venv's python with `sdks` installed, creating it on first use (or when the stamp says
/// another list was installed).
pub fn venv_python(dir: &str, sdks: &[&str]) -> Option<PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(dir);
    let py = venv.join("bin/python");
    let stamp = venv.join(".sdks-installed");
    let want = sdks.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Some(py);
    }
    let ok = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("conformance: python3 -m venv failed (is python3-venv installed?)");
        return None;
    }
    let st = std::process::Command::new(&py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade"])
        .args(sdks)
        .status()
        .expect("pip");
    assert!(st.success(), "pip install of {sdks:?} failed");
    std::fs::write(&stamp, want).unwrap();
    Some(py)
}
