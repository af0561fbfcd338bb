//! Responses the gateway writes itself: JSON bodies and errors in the client's own format,
//! always with `x-request-id` and `x-gateway-attempts`; errors also carry `x-gateway-error`
//! (so clients can tell them from upstream errors) and the headers `error::rescue` says are true.

use super::Session;
use bytes::Bytes;

use super::ctx::RequestCtx;
use super::head::Head;
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
    let mut h = Head::answer(status, ctx, 2 + extra.len())?;
    h.json_body(body.len());
    for (k, v) in extra {
        h.set_named(k, v)?;
    }
    let body = Bytes::from(body);
    if ctx.logs_bodies() {
        ctx.response_body = Some(body.clone());
    }
    h.write(s).await?;
    s.write_response_body(body, true).await
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
