//! Responses the gateway writes itself: JSON bodies and errors in the client's own format,
//! always with `x-request-id` and `x-gateway-error` (so clients can tell them from upstream errors).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use crate::formats::{self, ErrorKind, Format};

/// A gateway-made error: status, class, message.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
}

impl GatewayError {
    pub fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError { status, kind, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::InvalidRequest, message)
    }
}

/// Write a complete JSON answer.
pub async fn json(
    s: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Vec<u8>,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    ctx.status = status;
    let mut h = ResponseHeader::build(status, Some(4 + extra.len()))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    h.insert_header("x-request-id", ctx.request_id.as_str())?;
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    s.write_response_header(Box::new(h), false).await?;
    s.write_response_body(Some(Bytes::from(body)), true).await
}

/// Write an error the gateway raised, in `format`'s envelope.
pub async fn error(
    s: &mut Session,
    ctx: &mut RequestCtx,
    format: Format,
    e: GatewayError,
) -> pingora::Result<()> {
    let body = formats::encode_error(format, e.kind, &e.message);
    ctx.error = Some(e.message);
    let mut extra = vec![("x-gateway-error", "1".to_string())];
    if ctx.attempts > 0 {
        extra.push(("x-gateway-attempts", ctx.attempts.to_string()));
    }
    if e.status == 429 || e.status == 503 {
        extra.push(("retry-after", "1".to_string()));
    }
    json(s, ctx, e.status, body, &extra).await
}
