//! Telemetry: Prometheus metrics, the per-request access log line, redaction of secrets in
//! everything that is logged, and the alert webhook. Observes only: nothing here decides how
//! a request is served.
//!
//! - `metrics`: the SPEC section 7 families, bounded labels, text exposition.
//! - `redact`: the one redaction used by every log line (URLs, headers, free text).
//! - `access_log`: the JSON access line (`target: "access"`), logging setup with a reload handle.
//! - `alerts`: webhook events (budget, circuit, alias down, reload failed), never blocking.
//! - `otel`: OpenTelemetry export (a span per request, attempts as children, GenAI metrics).

mod instruments;

pub mod access_log;
pub mod alerts;
pub mod events;
pub mod metrics;
pub mod otel;
pub mod redact;

pub use self::access_log::{init_logging, AccessLine, LogHandle};
pub use self::alerts::{AlertEvent, AlertKind, Alerts};
pub use self::events::Events;
pub use self::metrics::{
    ActiveRequest, BudgetScope, KnownNames, Metrics, RateLimitKind, RequestSample, TokenCounts,
};
pub use self::otel::{Attempt, Otel, OtelError, RequestTrace};
pub use self::redact::{redact_header, redact_text, redact_url};
