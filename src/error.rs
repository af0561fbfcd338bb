//! The gateway's own errors: one enum whose variants carry the values, and one [`rescue`] that
//! turns any of them into a status, an error class (rendered by `formats::encode_error` in the
//! caller's own shape) and the headers that are true for it (`retry-after` only on refusals that
//! can clear, `allow` on 405).

use std::time::Duration;

use crate::formats::ErrorKind;

/// Why one target was not used or failed, for the 502 that names every target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetReport {
    /// `provider/model`.
    pub target: String,
    /// What happened: "circuit open", "unhealthy: ...", "HTTP 503", "connect refused", ...
    pub outcome: String,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("key {key:?} may not use model {model:?}")]
    ModelNotAllowed { model: String, key: String },
    #[error("model {model:?} does not exist (no such alias)")]
    UnknownModel { model: String },
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed on {path}; use {allow}")]
    MethodNotAllowed { method: String, path: String, allow: &'static str },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("`{field}` is required")]
    MissingField { field: &'static str },
    #[error("`{field}`: {problem}")]
    InvalidField { field: String, problem: String },
    #[error("request body is larger than {limit} ({max} bytes)")]
    BodyTooLarge { limit: &'static str, max: u64 },
    #[error("request body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("{dimension} limit of {scope} reached ({limit} per minute); retry in {}s", retry_after.as_secs().max(1))]
    RateLimited { dimension: &'static str, scope: String, limit: u64, retry_after: Duration },
    #[error("this request needs {needed} tokens but {scope} allows {limit} tokens per minute; lower max_tokens or the prompt")]
    TokensExceedLimit { needed: u64, limit: u64, scope: String },
    #[error("budget of {scope} is exhausted for this period ({spent_usd:.6} of {limit_usd:.6} USD)")]
    BudgetExceeded { scope: String, spent_usd: f64, limit_usd: f64, retry_after: Option<Duration> },
    #[error("too many requests in flight for {scope} (max_parallel {limit})")]
    TooManyInFlight { scope: String, limit: u32 },
    #[error("the gateway holds {held} bytes of request bodies and this one would pass limits.max_body_memory_bytes ({cap}); retry shortly")]
    BodyMemoryFull { held: u64, cap: u64 },
    #[error("the limits backend is unavailable")]
    LimitsUnavailable { retry_after: Duration },
    #[error("{0}")]
    Unsupported(String),
    /// An object (file, batch, job, video) that does not exist for the caller: another
    /// project's is answered the same way, so existence is not revealed.
    #[error("{0}")]
    NotFound(String),
    /// A browser request from an origin (or with a header) `cors:` does not allow.
    #[error("CORS: {0}")]
    CorsRefused(String),
    #[error("all targets failed after {attempts} attempt(s): {}", describe(tried))]
    AllTargetsFailed { attempts: u32, tried: Vec<TargetReport>, timed_out: bool },
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

fn describe(tried: &[TargetReport]) -> String {
    if tried.is_empty() {
        return "no target is configured".into();
    }
    tried.iter().map(|t| format!("{}: {}", t.target, t.outcome)).collect::<Vec<_>>().join("; ")
}

/// How an error is answered.
#[derive(Debug)]
pub struct Rescue {
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

/// The one mapping from a gateway error to its answer.
pub fn rescue(e: &GatewayError) -> Rescue {
    use GatewayError as G;
    let retry = |d: Duration| vec![("retry-after", d.as_secs().max(1).to_string())];
    let (status, kind, headers) = match e {
        G::Unauthenticated(_) => (401, ErrorKind::Authentication, vec![]),
        G::ModelNotAllowed { .. } | G::CorsRefused(_) => (403, ErrorKind::PermissionDenied, vec![]),
        G::UnknownModel { .. } | G::NoRoute { .. } | G::NotFound(_) => (404, ErrorKind::NotFound, vec![]),
        G::MethodNotAllowed { allow, .. } => {
            (405, ErrorKind::InvalidRequest, vec![("allow", allow.to_string())])
        }
        G::InvalidRequest(_)
        | G::MissingField { .. }
        | G::InvalidField { .. }
        | G::BodyUnreadable(_)
        | G::TokensExceedLimit { .. }
        | G::Unsupported(_) => (400, ErrorKind::InvalidRequest, vec![]),
        G::BodyTooLarge { .. } => (413, ErrorKind::RequestTooLarge, vec![]),
        G::RateLimited { retry_after, .. } => (429, ErrorKind::RateLimited, retry(*retry_after)),
        G::BudgetExceeded { retry_after, .. } => {
            (429, ErrorKind::BudgetExceeded, retry_after.map(retry).unwrap_or_default())
        }
        G::TooManyInFlight { .. } => (429, ErrorKind::RateLimited, retry(Duration::from_secs(1))),
        G::LimitsUnavailable { retry_after } => (503, ErrorKind::Overloaded, retry(*retry_after)),
        G::BodyMemoryFull { .. } => (503, ErrorKind::Overloaded, retry(Duration::from_secs(1))),
        G::AllTargetsFailed { timed_out: true, .. } => (504, ErrorKind::UpstreamTimeout, vec![]),
        G::AllTargetsFailed { .. } | G::Upstream(_) => (502, ErrorKind::UpstreamError, vec![]),
        G::Internal(_) => (500, ErrorKind::Internal, vec![]),
    };
    Rescue { status, kind, message: e.to_string(), headers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_only_where_it_is_true() {
        let r = rescue(&GatewayError::RateLimited {
            dimension: "rpm",
            scope: "key demo".into(),
            limit: 60,
            retry_after: Duration::from_millis(2500),
        });
        assert_eq!((r.status, r.headers.clone()), (429, vec![("retry-after", "2".to_string())]));
        let r = rescue(&GatewayError::AllTargetsFailed { attempts: 2, tried: vec![], timed_out: false });
        assert_eq!(r.status, 502);
        assert!(r.headers.is_empty());
        let r = rescue(&GatewayError::MissingField { field: "messages" });
        assert_eq!((r.status, r.message.as_str()), (400, "`messages` is required"));
    }

    #[test]
    fn the_502_names_every_target_and_why() {
        let e = GatewayError::AllTargetsFailed {
            attempts: 1,
            tried: vec![
                TargetReport { target: "a/m1".into(), outcome: "HTTP 503".into() },
                TargetReport { target: "b/m2".into(), outcome: "skipped: circuit open".into() },
            ],
            timed_out: false,
        };
        assert_eq!(
            e.to_string(),
            "all targets failed after 1 attempt(s): a/m1: HTTP 503; b/m2: skipped: circuit open"
        );
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let r = rescue(&GatewayError::MethodNotAllowed {
            method: "GET".into(),
            path: "/v1/chat/completions".into(),
            allow: "POST",
        });
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, vec![("allow", "POST".to_string())]);
    }
}
