//! The one `ArcSwap<Snapshot>` every request reads, and the reloader that swaps in a new
//! snapshot when the file changes (polled) or on SIGHUP. A rejected file keeps the old snapshot.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::snapshot::Snapshot;
use super::validate::{load_str, ConfigErrors};

/// How often the file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    path: PathBuf,
    /// Hash of the text the current snapshot was built from (0 = not from the file).
    text_hash: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Applied,
    Unchanged,
}

// === impl ConfigStore ===

impl ConfigStore {
    /// Read and validate `path`; the gateway does not start on an invalid file.
    pub fn open(path: &Path) -> Result<ConfigStore, ConfigErrors> {
        let text = read(path)?;
        let snap = load_str(&text)?;
        Ok(ConfigStore {
            current: ArcSwap::from_pointee(snap),
            path: path.to_path_buf(),
            text_hash: AtomicU64::new(hash(&text)),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// The snapshot for one request: load once, use it for the whole request.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-read the file; swap in a new snapshot if the text changed and is valid.
    pub fn reload(&self) -> Result<Reload, ConfigErrors> {
        let result = read(&self.path).and_then(|text| {
            let h = hash(&text);
            if h == self.text_hash.load(Ordering::Acquire) {
                return Ok(Reload::Unchanged);
            }
            let snap = load_str(&text)?;
            self.current.store(Arc::new(snap));
            self.text_hash.store(h, Ordering::Release);
            Ok(Reload::Applied)
        });
        match &result {
            Ok(Reload::Applied) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %self.path.display(), reloads_ok = self.reloads_ok.load(Ordering::Relaxed), "config reloaded");
            }
            Ok(Reload::Unchanged) => {}
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %self.path.display(),
                    reloads_failed = self.reloads_failed.load(Ordering::Relaxed),
                    "config reload refused, still serving the previous config: {}",
                    e.to_string().replace('\n', "; ")
                );
            }
        }
        result
    }

    /// Swap in a snapshot built elsewhere (admin mutations), recording the text it came from.
    pub fn store(&self, snap: Snapshot, text: &str) {
        self.current.store(Arc::new(snap));
        self.text_hash.store(hash(text), Ordering::Release);
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
    }
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![super::validate::ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })
}

fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Background service: reload on file change (checked every `POLL_INTERVAL`, so editors that
/// write in place or rename over the file both work) and on SIGHUP.
pub struct Reloader(pub Arc<ConfigStore>);

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP: {e}");
                None
            }
        };
        let mut last = stat(self.0.path());
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading config");
                    let _ = self.0.reload();
                }
                _ = tick.tick() => {
                    let now = stat(self.0.path());
                    if now != last {
                        last = now;
                        let _ = self.0.reload();
                    }
                }
            }
        }
    }
}

/// (mtime, size, inode): changes on in-place writes and on rename-over.
fn stat(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}
