//! The usage log: one JSON line per finished request in `state_dir/usage.jsonl`, written by
//! one background task and group-committed (flushed and fdatasync'd every `FLUSH_INTERVAL`),
//! so after `kill -9` at most the last interval of lines can be missing. Requests never wait
//! on the disk and never wake the writer: they append their line to a shared buffer that the
//! writer swaps out on its tick (a channel send per request cost a cross-thread wake-up each,
//! which measured as the largest single cost on the hot path).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;

use crate::runtime::RuntimeStore;

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// One finished request (SPEC section 6). Never holds prompt text.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UsageRecord {
    pub time: String,
    pub request_id: String,
    pub key: Option<String>,
    pub project: Option<String>,
    pub alias: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub endpoint: &'static str,
    pub stream: bool,
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    pub latency_ms: f64,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The handle requests use to submit records.
#[derive(Clone)]
pub struct UsageLog {
    pending: Arc<Mutex<Vec<u8>>>,
}

/// The background writer (a Pingora background service).
pub struct UsageWriter {
    pending: Arc<Mutex<Vec<u8>>>,
    store: Arc<RuntimeStore>,
}

// === impl UsageLog ===

impl UsageLog {
    pub fn new(store: Arc<RuntimeStore>) -> (UsageLog, UsageWriter) {
        let pending = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        (UsageLog { pending: pending.clone() }, UsageWriter { pending, store })
    }

    pub fn record(&self, r: &UsageRecord, also_log: bool) {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        if also_log {
            tracing::info!(target: "request", "{}", String::from_utf8_lossy(&line));
        }
        line.push(b'\n');
        self.pending.lock().extend_from_slice(&line);
    }
}

// === impl UsageWriter ===

#[async_trait]
impl BackgroundService for UsageWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut file: Option<(PathBuf, std::fs::File)> = None;
        let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        loop {
            let closing = tokio::select! {
                _ = shutdown.changed() => true,
                _ = tick.tick() => false,
            };
            std::mem::swap(&mut *self.pending.lock(), &mut batch);
            self.flush(&mut file, &mut batch);
            if closing {
                return;
            }
        }
    }
}

impl UsageWriter {
    fn flush(&self, file: &mut Option<(PathBuf, std::fs::File)>, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        let path = PathBuf::from(&self.store.load().snap.state_dir).join("usage.jsonl");
        if file.as_ref().is_none_or(|(p, _)| *p != path) {
            *file = open(&path).map(|f| (path.clone(), f));
        }
        let ok = match file.as_mut() {
            Some((_, f)) => f.write_all(pending).and_then(|_| f.sync_data()).is_ok(),
            None => false,
        };
        if !ok {
            tracing::error!(path = %path.display(), "cannot write the usage log; records follow on the log");
            for line in pending.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                tracing::warn!(target: "usage", "{}", String::from_utf8_lossy(line));
            }
            *file = None;
        }
        pending.clear();
    }
}

fn open(path: &std::path::Path) -> Option<std::fs::File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path).ok()
}
