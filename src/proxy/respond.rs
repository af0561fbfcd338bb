//! Responses the gateway writes itself: JSON bodies and errors in the client's own format,
//! always with `x-request-id` and `x-gateway-attempts`; errors also carry `x-gateway-error`
//! (so clients can tell them from upstream errors) and the headers `error::rescue` says are true.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::error::{rescue, GatewayError};
use crate::formats::{self, Format};
use crate::telemetry::RateLimitKind;

/// Write a complete JSON answer.
pub async fn json(
    s: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    ctx.status = status;
    let mut h = ResponseHeader::build_no_case(status, Some(5 + extra.len()))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    h.insert_header("x-gateway-attempts", ctx.attempts.to_string())?;
    super::cors::add(ctx.cors_origin.as_deref(), &mut h)?;
    for (k, v) in extra.iter().chain(ctx.rate_headers.iter()) {
        h.insert_header(*k, v.as_str())?;
    }
    let body = Bytes::from(body);
    if ctx.logs_bodies() {
        ctx.response_body = Some(body.clone());
    }
    s.write_response_header(Box::new(h), false).await?;
    s.write_response_body(Some(body), true).await
}

/// Write an error the gateway raised, in `format`'s envelope.
pub async fn error(
    s: &mut Session,
    ctx: &mut RequestCtx,
    format: Format,
    e: GatewayError,
) -> pingora::Result<()> {
    ctx.refused = match &e {
        GatewayError::RateLimited { dimension: "tpm", .. } | GatewayError::TokensExceedLimit { .. } => {
            Some(RateLimitKind::Tpm)
        }
        GatewayError::RateLimited { .. } => Some(RateLimitKind::Rpm),
        GatewayError::BudgetExceeded { .. } => Some(RateLimitKind::Budget),
        GatewayError::TooManyInFlight { .. } => Some(RateLimitKind::Parallel),
        _ => None,
    };
    let r = rescue(&e);
    let body = formats::encode_error(format, r.kind, &r.message);
    ctx.error = Some(r.message);
    let mut extra = r.headers;
    extra.push(("x-gateway-error", "1".to_string()));
    json(s, ctx, r.status, body, &extra).await
}
