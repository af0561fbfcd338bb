//! One `Runtime` per config: the validated snapshot plus everything derived from it (alias
//! routers today; price table and limit rules plug in here), built once per load by
//! [`Registries::build`], which carries over the long-lived state of unchanged entries
//! (round-robin positions, circuits and latency of targets) from registries that outlive
//! reloads. The [`RuntimeStore`] holds the one `ArcSwap<Runtime>` every request loads once,
//! and a `tokio::sync::watch` that background tasks follow instead of polling.

mod builder;
mod store;

pub use self::{
    builder::{jwt_verifier, unenforced_fields, Registries},
    store::{Reload, Reloader, RuntimeStore, Trigger, DEBOUNCE, POLL_INTERVAL},
};

use std::sync::Arc;
use std::time::Instant;

use crate::config::Snapshot;
use crate::routing::AliasRouter;

/// A config, ready to serve: built once per load, shared by every request that started on it.
pub struct Runtime {
    pub snap: Snapshot,
    /// One router per alias, same index as `snap.aliases`.
    pub routers: Vec<Arc<AliasRouter>>,
    /// Counts loads since start (1 = the config the process started with).
    pub generation: u64,
    /// Config fields that are accepted but not enforced, one line each.
    pub warnings: Vec<String>,
    /// `auth.jwt`, its keys loaded (the JWKS file is re-read at every load).
    pub jwt: Option<Arc<crate::auth::JwtVerifier>>,
    /// Limit rules of each project, by name.
    pub project_rules: std::collections::HashMap<String, crate::limits::ScopeRules>,
    /// Counters of every key and project (outlive reloads: shared with the registries).
    pub limits: Arc<crate::limits::LimitsRegistry>,
    /// Request-body bytes held in memory, process-wide (`limits.max_body_memory_bytes`).
    pub body_memory: Arc<crate::limits::body_memory::BodyMemory>,
    /// `redis:`: limits shared by every instance, and what to do when Redis cannot answer.
    pub shared: Option<Shared>,
}

/// The Redis backend of a runtime (kept across reloads while `redis:` is unchanged).
#[derive(Clone, Debug)]
pub struct Shared {
    pub limits: Arc<crate::limits::shared::SharedLimits>,
    pub on_error: crate::config::RedisOnError,
}

// === impl Runtime ===

impl Runtime {
    /// Whether any target of any alias can take traffic now (for `/readyz`).
    pub fn any_available(&self, now: Instant) -> bool {
        self.routers.iter().any(|r| r.targets().iter().any(|t| t.is_available(now)))
    }
}
