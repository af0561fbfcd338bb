//! The per-request state shared by the hooks: one plain struct, grouped by phase.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Key, Snapshot};
use crate::formats::{Format, Usage};

#[derive(Default)]
pub struct RequestCtx {
    // --- request
    pub started: Option<Instant>,
    pub request_id: String,
    /// The config this request uses from start to end (loaded once).
    pub snap: Option<Arc<Snapshot>>,
    pub endpoint: &'static str,
    pub client_format: Option<Format>,
    pub stream: bool,
    // --- auth
    pub key: Option<Arc<Key>>,
    // --- route
    pub alias: Option<usize>,
    pub provider: Option<String>,
    pub model: Option<String>,
    // --- attempts
    pub attempts: u32,
    pub attempt_log: Vec<String>,
    // --- outcome
    pub status: u16,
    pub usage: Usage,
    pub error: Option<String>,
}
