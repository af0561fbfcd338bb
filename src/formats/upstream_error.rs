//! The one table of upstream errors: what an error answer (status, body, Bedrock's
//! `x-amzn-errortype`) means, as an `ErrorKind` for the client and a `Retry` decision for
//! routing. Every format's `decode_error` is this module seen from that format, so the
//! client's error class and the retry decision can never disagree.
//!
//! | provider error | kind | retry |
//! |---|---|---|
//! | 429, OpenAI `rate_limit_exceeded`/`rate_limit_error`, Anthropic `rate_limit_error`, Gemini `RESOURCE_EXHAUSTED`, Bedrock `Throttling`/`ServiceQuotaExceeded`/`TooManyRequests`/`LimitExceeded` | `RateLimited` | `Quota` |
//! | OpenAI `insufficient_quota`, Anthropic `billing_error`, 402 | `BudgetExceeded` | `Quota` |
//! | 503, 529, Anthropic `overloaded_error`, Gemini `UNAVAILABLE`, OpenAI `server_is_overloaded`, Bedrock `ServiceUnavailable` | `Overloaded` | `Quota` |
//! | Bedrock `ModelNotReady` (the model is loading) | `Overloaded` | `SameTargetLater` |
//! | 500/502, `api_error`, `server_error`, Gemini `INTERNAL`/`UNKNOWN`, Bedrock `InternalServer`/`ModelError`/`ModelStreamError` | `UpstreamError` | `NextTarget` |
//! | 408, 504, Anthropic `timeout_error`, Gemini `DEADLINE_EXCEEDED`, Bedrock `ModelTimeout` | `UpstreamTimeout` | `NextTarget` |
//! | 401, 403, 404 (the gateway's provider key or model mapping, not the client) | `Authentication`, `PermissionDenied`, `NotFound` | `NextTarget` |
//! | 400, 413, 422, `invalid_request_error`, `context_length_exceeded`, Gemini `INVALID_ARGUMENT`, Bedrock `Validation` | `InvalidRequest`, `RequestTooLarge` | `No` |
//!
//! A provider's named error type wins over the HTTP status (Gemini answers quota errors with
//! 429 *or* 400 `RESOURCE_EXHAUSTED`; Bedrock `ModelNotReady` comes as 429), except for
//! OpenAI, whose `type` is coarse (`invalid_request_error` also comes with 401 and 404): there a
//! specific `code` wins, then the status, then the `type`.

use std::time::Duration;

use serde_json::Value;

use super::{anthropic, bedrock, gemini, kind_for_status, ErrorKind, Format};

/// What routing should do after an upstream error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The request itself is at fault (another target would say the same): the answer goes
    /// to the client.
    No,
    /// The target is temporarily unable but not broken (a model still loading): retry after
    /// a backoff, here or elsewhere, without counting it against the target's health.
    SameTargetLater,
    /// The target failed (server error, timeout, or the gateway's own credentials or model
    /// mapping for it): try the next target, count a failure for its circuit breaker.
    NextTarget,
    /// Rate, quota or capacity limit: switch target at once and cool this one down for
    /// `retry_after` (the upstream's `retry-after`, when it sent one).
    Quota { retry_after: Option<Duration> },
}

/// One upstream error answer, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamErrorClass {
    /// The error class for the client (and its status, `status_for(kind)`).
    pub kind: ErrorKind,
    pub retry: Retry,
    /// The upstream's message (or its body text when it had none).
    pub message: String,
    /// The provider's own error name, when it gave one: OpenAI `code` (else `type`),
    /// Anthropic `error.type`, Gemini `error.status`, Bedrock's exception name.
    pub provider_code: Option<String>,
}

/// Classify an upstream error answer in `format`. `retry_after` is what the upstream's
/// `retry-after`/`retry-after-ms` headers ask for (parsed by the caller, who has the clock);
/// `amzn_error_type` is Bedrock's `x-amzn-errortype` header, if any. Pure; never fails (an
/// unreadable body falls back to the status).
pub fn classify_upstream_error(
    format: Format,
    status: u16,
    retry_after: Option<Duration>,
    amzn_error_type: Option<&str>,
    body: &[u8],
) -> UpstreamErrorClass {
    let (kind, message, provider_code) = decode(format, status, amzn_error_type, body);
    let retry = retry_for(kind, provider_code.as_deref(), retry_after);
    UpstreamErrorClass { kind, retry, message, provider_code }
}

/// The retry decision for an error of class `kind` (see the table in the module doc).
pub fn retry_for(kind: ErrorKind, provider_code: Option<&str>, retry_after: Option<Duration>) -> Retry {
    if provider_code.is_some_and(|c| c.eq_ignore_ascii_case("ModelNotReadyException")) {
        return Retry::SameTargetLater;
    }
    match kind {
        ErrorKind::RateLimited | ErrorKind::BudgetExceeded | ErrorKind::Overloaded => {
            Retry::Quota { retry_after }
        }
        ErrorKind::UpstreamError
        | ErrorKind::UpstreamTimeout
        | ErrorKind::Authentication
        | ErrorKind::PermissionDenied
        | ErrorKind::NotFound => Retry::NextTarget,
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge | ErrorKind::Internal => Retry::No,
    }
}

/// (kind, message, provider code) of an error body in `format`.
pub(crate) fn decode(
    format: Format,
    status: u16,
    amzn_error_type: Option<&str>,
    body: &[u8],
) -> (ErrorKind, String, Option<String>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = || String::from_utf8_lossy(body).trim().to_owned();
    match format {
        Format::OpenAiChat | Format::OpenAiResponses => {
            let e = match v.get("error") {
                Some(e) if !e.is_null() => e,
                _ => &v,
            };
            let message = str_at(e, "message").or_else(|| e.as_str()).map_or_else(text, str::to_owned);
            let code = str_at(e, "code").filter(|c| !c.is_empty());
            let ty = str_at(e, "type").filter(|t| !t.is_empty());
            (openai_kind(status, code, ty), message, code.or(ty).map(str::to_owned))
        }
        Format::Anthropic => {
            let e = v.get("error").unwrap_or(&Value::Null);
            let message = str_at(e, "message").map_or_else(text, str::to_owned);
            let ty = str_at(e, "type");
            let kind = ty.and_then(anthropic::kind_for_type).unwrap_or_else(|| kind_for_status(status));
            (kind, message, ty.map(str::to_owned))
        }
        Format::Gemini => {
            // The JSON-array stream form wraps errors in an array.
            let v = v.get(0).unwrap_or(&v);
            let e = v.get("error").unwrap_or(&Value::Null);
            let message = str_at(e, "message").map_or_else(text, str::to_owned);
            let name = str_at(e, "status");
            let kind = name.and_then(gemini::kind_from_status_name).unwrap_or_else(|| {
                let code = e.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok());
                kind_for_status(code.unwrap_or(status))
            });
            (kind, message, name.map(str::to_owned))
        }
        Format::Bedrock => {
            let message = ["message", "Message", "errorMessage"]
                .iter()
                .find_map(|k| str_at(&v, k))
                .map_or_else(text, str::to_owned);
            let name = amzn_error_type.or_else(|| str_at(&v, "__type")).map(bedrock::short_exception_name);
            let kind = name.and_then(bedrock::exception_kind).unwrap_or_else(|| kind_for_status(status));
            let message = match (name, message.is_empty()) {
                (Some(n), true) if !n.is_empty() => n.to_owned(),
                (Some(n), false) if !n.is_empty() => format!("{n}: {message}"),
                _ if message.is_empty() => format!("Bedrock returned HTTP {status}"),
                _ => message,
            };
            (kind, message, name.filter(|n| !n.is_empty()).map(str::to_owned))
        }
    }
}

/// OpenAI's error table (Chat and Responses, and OpenAI-compatible servers): a specific
/// `code` first, then the HTTP status, then the coarse `type`.
pub(crate) fn openai_kind(status: u16, code: Option<&str>, ty: Option<&str>) -> ErrorKind {
    let by_code = code.and_then(|c| {
        Some(match c {
            "insufficient_quota" => ErrorKind::BudgetExceeded,
            "rate_limit_exceeded" => ErrorKind::RateLimited,
            "invalid_api_key" => ErrorKind::Authentication,
            "model_not_found" => ErrorKind::NotFound,
            "context_length_exceeded" | "string_above_max_length" => ErrorKind::InvalidRequest,
            "server_is_overloaded" | "overloaded" => ErrorKind::Overloaded,
            "server_error" => ErrorKind::UpstreamError,
            _ => return None,
        })
    });
    let by_status =
        (status >= 400).then(|| kind_for_status(status)).filter(|k| *k != ErrorKind::UpstreamError);
    let by_type = || {
        Some(match ty? {
            "insufficient_quota" => ErrorKind::BudgetExceeded,
            "rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens" => ErrorKind::RateLimited,
            "invalid_request_error" => ErrorKind::InvalidRequest,
            "authentication_error" => ErrorKind::Authentication,
            "permission_error" => ErrorKind::PermissionDenied,
            "not_found_error" => ErrorKind::NotFound,
            "overloaded_error" => ErrorKind::Overloaded,
            "server_error" | "api_error" => ErrorKind::UpstreamError,
            _ => return None,
        })
    };
    by_code.or(by_status).or_else(by_type).unwrap_or_else(|| kind_for_status(status))
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

#[cfg(test)]
#[path = "upstream_error_tests.rs"]
mod tests;
