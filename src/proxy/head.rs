//! The headers of the answers the gateway writes, built straight into `http`'s header map.
//!
//! Pingora's `ResponseHeader::insert_header` parses the name from text on every call (and
//! copies a custom name such as `x-request-id` into a new allocation) and copies the value into
//! another: about 400 instructions a header, a dozen headers a request. Here the names are
//! constants, fixed values are static, and the map becomes a `ResponseHeader` once, when it is
//! written (the same no-case header `ResponseHeader::build_no_case` makes).

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, OrErr};

use super::ctx::RequestCtx;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_GATEWAY_PROVIDER: HeaderName = HeaderName::from_static("x-gateway-provider");
pub const X_GATEWAY_MODEL: HeaderName = HeaderName::from_static("x-gateway-model");
pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");

pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
pub const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
pub const CHUNKED: HeaderValue = HeaderValue::from_static("chunked");

/// An answer's status and headers while they are being put together.
pub struct Head(http::response::Parts);

// === impl Head ===

impl Head {
    /// `status` with room for `capacity` headers.
    pub fn new(status: u16, capacity: usize) -> pingora::Result<Head> {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = StatusCode::from_u16(status).or_err(ErrorType::InternalError, "invalid status")?;
        parts.headers.reserve(capacity);
        Ok(Head(parts))
    }

    /// `status` with the headers every answer the gateway writes carries: `x-request-id`,
    /// `x-gateway-attempts`, the CORS headers of an allowed origin and the rate-limit headers.
    pub fn answer(status: u16, ctx: &RequestCtx, capacity: usize) -> pingora::Result<Head> {
        let mut h = Head::new(status, capacity + 5 + ctx.rate_headers.len())?;
        h.set_str(X_REQUEST_ID, &ctx.request_id)?;
        h.set(X_GATEWAY_ATTEMPTS, HeaderValue::from(ctx.attempts));
        super::cors::add(ctx.cors_origin.as_deref(), &mut h)?;
        for (k, v) in &ctx.rate_headers {
            h.set_named(k, v)?;
        }
        Ok(h)
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.headers.insert(name, value);
    }

    /// Sets `name` to a copy of `value`, refused when it is not a valid header value.
    pub fn set_str(&mut self, name: HeaderName, value: &str) -> pingora::Result<()> {
        let v = HeaderValue::from_str(value).or_err(ErrorType::InvalidHTTPHeader, "invalid header value")?;
        self.set(name, v);
        Ok(())
    }

    /// Sets the header named by text (the rare ones without a constant here).
    pub fn set_named(&mut self, name: &str, value: &str) -> pingora::Result<()> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid header name"))?;
        self.set_str(n, value)
    }

    /// `content-type: application/json` and the body's length.
    pub fn json_body(&mut self, len: usize) {
        self.set(CONTENT_TYPE, APPLICATION_JSON);
        self.set(CONTENT_LENGTH, HeaderValue::from(len));
    }

    /// The content type of a stream (SSE, or the JSON array Gemini's clients may ask for),
    /// never cached.
    pub fn stream(&mut self, json_array: bool) {
        self.set(CONTENT_TYPE, if json_array { APPLICATION_JSON } else { EVENT_STREAM });
        self.set(CACHE_CONTROL, NO_CACHE);
    }

    /// `transfer-encoding: chunked`.
    pub fn chunked(&mut self) {
        self.set(TRANSFER_ENCODING, CHUNKED);
    }

    /// The header as Pingora writes it.
    pub fn into_response(self) -> Box<ResponseHeader> {
        Box::new(ResponseHeader::from(self.0))
    }

    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header built here writes the same bytes as one built with Pingora's own inserts.
    #[test]
    fn writes_what_pingora_inserts_write() {
        let mut ours = Head::new(200, 4).unwrap();
        ours.set_str(X_REQUEST_ID, "req-1").unwrap();
        ours.set(X_GATEWAY_ATTEMPTS, HeaderValue::from(2u32));
        ours.json_body(17);
        ours.set_named("x-ratelimit-remaining-requests", "9").unwrap();
        let ours = ours.into_response();

        let mut theirs = ResponseHeader::build_no_case(200, Some(4)).unwrap();
        theirs.insert_header("x-request-id", "req-1").unwrap();
        theirs.insert_header("x-gateway-attempts", "2").unwrap();
        theirs.insert_header("content-type", "application/json").unwrap();
        theirs.insert_header("content-length", "17").unwrap();
        theirs.insert_header("x-ratelimit-remaining-requests", "9").unwrap();

        let (mut a, mut b) = (bytes::BytesMut::new(), bytes::BytesMut::new());
        ours.header_to_h1_wire(&mut a);
        theirs.header_to_h1_wire(&mut b);
        assert_eq!(a, b);
        assert!(std::str::from_utf8(&a).unwrap().contains("x-request-id: req-1\r\n"));
        assert_eq!(ours.status, theirs.status);
        assert_eq!(ours.version, theirs.version);
    }

    #[test]
    fn refuses_what_is_not_a_header() {
        let mut h = Head::new(200, 1).unwrap();
        assert!(h.set_str(X_GATEWAY_MODEL, "a\nb").is_err());
        assert!(h.set_named("bad name", "v").is_err());
        assert!(Head::new(1000, 1).is_err());
        assert_eq!(h.get("x-gateway-model"), None);
    }
}
