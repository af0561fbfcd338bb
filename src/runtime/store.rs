//! The one `ArcSwap<Runtime>` every request loads once, and what swaps a new one in: the file
//! watcher (after the file has been stable for [`DEBOUNCE`]), SIGHUP, `POST /admin/reload` and
//! admin mutations. A refused config keeps the running one. A `tokio::sync::watch` tells
//! background tasks (health checks, writers) about each new runtime.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;

use super::{Registries, Runtime};
use crate::config::{self, ConfigError, ConfigErrors, Snapshot};

/// How often the file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long the file must stay unchanged before a file-triggered reload reads it (an editor or
/// a script writing it in several steps is not read half-way).
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// What asked for a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The file changed on disk. A config that would remove every key or every alias is
    /// refused from this trigger (most likely a half-written file).
    File,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload` or an admin mutation.
    Admin,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Applied,
    Unchanged,
}

pub struct RuntimeStore {
    current: ArcSwap<Runtime>,
    tx: watch::Sender<Arc<Runtime>>,
    state_dir: watch::Sender<PathBuf>,
    registries: Registries,
    path: PathBuf,
    /// The text the running config was loaded from, and its SHA-256.
    text: Mutex<(String, [u8; 32])>,
    /// Serialises builds, so two reloads never race on `generation` or `prev`.
    build: Mutex<()>,
    generation: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

// === impl RuntimeStore ===

impl RuntimeStore {
    /// Read and validate `path`; the gateway does not start on an invalid file.
    pub fn open(path: &Path) -> Result<RuntimeStore, ConfigErrors> {
        let text = read(path)?;
        Self::from_text(path, text)
    }

    /// A store over `text` (which `path` is expected to hold).
    pub fn from_text(path: &Path, text: String) -> Result<RuntimeStore, ConfigErrors> {
        let snap = config::load_str(&text)?;
        let jwt = super::jwt_verifier(&snap.config)?;
        let registries = Registries::default();
        let rt = Arc::new(registries.build(snap, None, 1, jwt));
        let (tx, _) = watch::channel(rt.clone());
        let (state_dir, _) = watch::channel(PathBuf::from(&rt.snap.state_dir));
        let digest = sha256(&text);
        Ok(RuntimeStore {
            current: ArcSwap::new(rt),
            tx,
            state_dir,
            registries,
            path: path.to_path_buf(),
            text: Mutex::new((text, digest)),
            build: Mutex::new(()),
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// The runtime for one request: load once, use it for the whole request.
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Follow runtime changes (background tasks).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Runtime>> {
        self.tx.subscribe()
    }

    /// Follow `state_dir` (the usage writer).
    pub fn state_dir_watch(&self) -> watch::Receiver<PathBuf> {
        self.state_dir.subscribe()
    }

    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The YAML text the running config came from, and its SHA-256.
    pub fn running_text(&self) -> (String, [u8; 32]) {
        self.text.lock().clone()
    }

    /// Re-read the file; swap in a new runtime if the text changed and is valid.
    pub fn reload(&self, trigger: Trigger) -> Result<Reload, ConfigErrors> {
        let result = read(&self.path).and_then(|text| {
            if sha256(&text) == self.text.lock().1 {
                return Ok(Reload::Unchanged);
            }
            self.apply(text, trigger).map(|_| Reload::Applied)
        });
        match &result {
            Ok(Reload::Applied) | Ok(Reload::Unchanged) => {}
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %self.path.display(),
                    ?trigger,
                    reloads_failed = self.reloads_failed.load(Ordering::Relaxed),
                    "config reload refused, still serving the previous config: {}",
                    e.to_string().replace('\n', "; ")
                );
            }
        }
        result
    }

    /// Validate `text`, build its runtime and swap it in (it becomes the running text).
    pub fn apply(&self, text: String, trigger: Trigger) -> Result<Arc<Runtime>, ConfigErrors> {
        let snap = config::load_str(&text)?;
        let jwt = super::jwt_verifier(&snap.config)?;
        let _build = self.build.lock();
        let prev = self.load();
        if trigger == Trigger::File {
            refuse_emptying(&prev.snap, &snap)?;
        }
        if snap.config.listen != prev.snap.config.listen
            || snap.config.tls.as_ref().map(|t| &t.listen) != prev.snap.config.tls.as_ref().map(|t| &t.listen)
            || snap.config.admin.as_ref().map(|a| &a.listen)
                != prev.snap.config.admin.as_ref().map(|a| &a.listen)
        {
            tracing::warn!("a listen address changed: it takes effect at the next restart or binary upgrade");
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let rt = Arc::new(self.registries.build(snap, Some(&prev), generation, jwt));
        for w in &rt.warnings {
            tracing::warn!("{w}");
        }
        let digest = sha256(&text);
        *self.text.lock() = (text, digest);
        self.current.store(rt.clone());
        self.tx.send_replace(rt.clone());
        self.state_dir.send_if_modified(|d| {
            let new = PathBuf::from(&rt.snap.state_dir);
            (*d != new).then(|| *d = new).is_some()
        });
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(path = %self.path.display(), ?trigger, generation, "config reloaded");
        Ok(rt)
    }
}

/// A file-triggered reload must not remove every key or every alias at once.
fn refuse_emptying(old: &Snapshot, new: &Snapshot) -> Result<(), ConfigErrors> {
    let mut errs = Vec::new();
    if !old.keys.is_empty() && new.keys.is_empty() {
        errs.push(ConfigError {
            path: "keys".into(),
            message: "this file removes every key; refused from a file change (a half-written file?). \
                      Send SIGHUP or POST /admin/reload if you mean it"
                .into(),
        });
    }
    if !old.aliases.is_empty() && new.aliases.is_empty() {
        errs.push(ConfigError {
            path: "models".into(),
            message:
                "this file removes every model alias; refused from a file change (a half-written file?). \
                      Send SIGHUP or POST /admin/reload if you mean it"
                    .into(),
        });
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errs))
    }
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })
}

pub fn sha256(text: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Background service: reload on file change (checked every [`POLL_INTERVAL`]; in-place writes
/// and rename-over both count; read once the file has been stable for [`DEBOUNCE`]) and on SIGHUP.
pub struct Reloader {
    pub store: Arc<RuntimeStore>,
    /// What a reload does (the admin API's versioned reload when there is one).
    pub reload: Arc<dyn Fn(Trigger) + Send + Sync>,
}

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
        let mut applied = stat(self.store.path());
        let mut seen = applied;
        let mut stable_since = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading config");
                    (self.reload)(Trigger::Signal);
                    applied = stat(self.store.path());
                    seen = applied;
                }
                _ = tick.tick() => {
                    let now = stat(self.store.path());
                    if now != seen {
                        seen = now;
                        stable_since = tokio::time::Instant::now();
                    } else if now != applied && stable_since.elapsed() >= DEBOUNCE {
                        applied = now;
                        (self.reload)(Trigger::File);
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
