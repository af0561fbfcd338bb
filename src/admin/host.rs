//! The seam between the admin API and the running gateway: what the admin API needs from the
//! config runtime (`ConfigHost`) and from the live data plane (`LiveViews`). The lead's runtime
//! implements both; the admin API never touches the runtime's internals.

use std::path::PathBuf;
use std::sync::Arc;

use ring::digest::{digest, SHA256};
use time::OffsetDateTime;

use crate::config::ConfigErrors;

/// The YAML text the running config was built from, and its SHA-256.
#[derive(Clone, Debug)]
pub struct RunningText {
    pub text: Arc<str>,
    pub sha256: [u8; 32],
}

impl RunningText {
    pub fn new(text: impl Into<Arc<str>>) -> RunningText {
        let text = text.into();
        let sha256 = sha256(text.as_bytes());
        RunningText { text, sha256 }
    }
}

/// The running config, as the admin API sees it. Implemented by the gateway's runtime store.
///
/// Every call is cheap except `apply`, which builds a new runtime and swaps it in. The admin API
/// serialises its own calls to `apply` (one mutation at a time); the runtime need not.
pub trait ConfigHost: Send + Sync {
    /// The YAML text the running config was loaded from, and its SHA-256.
    fn running_text(&self) -> RunningText;
    /// Parse and validate `text` exactly like `llm-gateway check` does (no swap).
    fn validate(&self, text: &str) -> Result<(), ConfigErrors>;
    /// Validate, build and swap in a runtime from `text`; remember `text` as the running text.
    /// On error the running config is unchanged.
    fn apply(&self, text: &str) -> Result<(), ConfigErrors>;
    /// The config file mutations are written back to.
    fn config_path(&self) -> PathBuf;
    /// `state_dir` (config versions under `config/`, `audit.jsonl`).
    fn state_dir(&self) -> PathBuf;
}

/// Live data-plane state the admin API shows but does not own.
pub trait LiveViews: Send + Sync {
    /// `GET /admin/health`: each provider target (healthy, circuit, last error, latency).
    fn health(&self) -> serde_json::Value;
    /// `GET /admin/keys/{id}/limits`: RPM/TPM remaining, in flight, spend vs budget. `None` when
    /// the key has no live state (unknown to the runtime).
    fn key_limits(&self, id: &str) -> Option<serde_json::Value>;
    /// `GET /admin/usage`: `{"totals": {...}, "groups": [...]}` (SPEC section 5).
    fn usage(&self, query: &UsageQuery) -> Result<serde_json::Value, String>;
    /// `GET /metrics`: Prometheus text format.
    fn metrics_text(&self) -> String;
}

/// `GET /admin/usage` parameters, checked (times parsed, `group_by` names known). A `project`
/// token's query always carries its own project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageQuery {
    pub key: Option<String>,
    pub project: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Inclusive lower bound.
    pub from: Option<OffsetDateTime>,
    /// Exclusive upper bound.
    pub to: Option<OffsetDateTime>,
    /// Any of `key`, `project`, `model`, `provider`, `status`, `hour`, `day`, in the order given.
    pub group_by: Vec<String>,
}

impl UsageQuery {
    /// The names `group_by` accepts.
    pub const GROUP_BY: &'static [&'static str] =
        &["key", "project", "model", "provider", "status", "hour", "day"];
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
