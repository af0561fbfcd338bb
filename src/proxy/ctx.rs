//! The per-request state shared by the hooks: one plain struct, grouped by phase.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::admission::{Admission, Principal};
use crate::formats::{Format, Usage};
use crate::runtime::Runtime;

#[derive(Default)]
pub struct RequestCtx {
    // --- request
    pub started: Option<Instant>,
    pub request_id: String,
    /// The runtime this request uses from start to end (loaded once).
    pub rt: Option<Arc<Runtime>>,
    pub endpoint: &'static str,
    pub client_format: Option<Format>,
    pub stream: bool,
    /// The browser origin `cors:` allows for this request (its answer carries CORS headers).
    pub cors_origin: Option<String>,
    // --- admission
    /// The caller, once authenticated (kept even when a later admission step refuses, so the
    /// refusal is accounted to it).
    pub principal: Option<Principal>,
    /// The limit that refused the request, if one did (counted in `ratelimited_total`).
    pub refused: Option<crate::telemetry::RateLimitKind>,
    pub admission: Option<Admission>,
    /// `x-ratelimit-*` headers of the scopes that admitted the request.
    pub rate_headers: Vec<(&'static str, String)>,
    /// The alias the request named, once resolved.
    pub alias: Option<usize>,
    // --- route
    /// (alias, target) that answered: the request is priced by it (a fallback's own price).
    pub served: Option<(usize, usize)>,
    pub provider: Option<String>,
    pub model: Option<String>,
    // --- attempts
    pub attempts: u32,
    /// Time spent waiting on upstreams, all attempts (the rest of the request is overhead).
    pub upstream_time: std::time::Duration,
    /// Time to the answering upstream's response header.
    pub ttfb: Option<std::time::Duration>,
    pub attempt_log: Vec<String>,
    /// Keep typed attempts (`otel:` is on): each a child span of the request's.
    pub trace_attempts: bool,
    pub attempt_trace: Vec<crate::telemetry::Attempt>,
    // --- outcome
    pub status: u16,
    pub usage: Usage,
    /// A finished job's cost, charged by the read that saw it finished (micro-USD); replaces
    /// the price of `usage`, and its tokens do not count against TPM.
    pub job_micros: Option<u64>,
    /// Images an image endpoint answered with (priced at `per_image`).
    pub images: u64,
    pub error: Option<String>,
    // --- `log.bodies` (kept only when it is on; cheap clones of the buffers already held)
    pub request_body: Option<bytes::Bytes>,
    /// The request body's bytes reserved against `limits.max_body_memory_bytes` (given back
    /// when the request ends).
    pub body_hold: Option<crate::limits::body_memory::BodyHold>,
    pub response_body: Option<bytes::Bytes>,
}

impl RequestCtx {
    /// Whether this request's access line carries bodies (`log.bodies`).
    pub fn logs_bodies(&self) -> bool {
        self.rt.as_ref().is_some_and(|rt| rt.snap.log_bodies.is_some())
    }
}

// === impl RequestCtx ===

impl RequestCtx {
    /// One attempt, begun at `started`, is over (or, with `error_type` None, is the one that
    /// answers and lasts until the request ends): kept for the OpenTelemetry export when on.
    pub fn attempt_done(
        &mut self,
        provider: &crate::config::Provider,
        model: &str,
        started: Instant,
        status: u16,
        error_type: Option<&'static str>,
    ) {
        if !self.trace_attempts {
            return;
        }
        let took = started.elapsed();
        self.attempt_trace.push(crate::telemetry::Attempt {
            provider: provider.name.clone(),
            kind: provider.kind,
            model: model.to_string(),
            start: SystemTime::now().checked_sub(took).unwrap_or(SystemTime::UNIX_EPOCH),
            duration: error_type.map(|_| took),
            status,
            error_type,
        });
    }
}
