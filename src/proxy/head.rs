//! The headers of the answers the gateway writes, as HTTP/1 text from the start.
//!
//! An answer's head used to be built in `http`'s header map, copied into Pingora's
//! `ResponseHeader`, extended with `Date` and `Connection` (two more map inserts) and then
//! serialised: about 6k instructions per chat answer (`benches/syscalls.sh`, callgrind). Here
//! the status line and each field are written as text into one buffer as they are set, with an
//! index of where each field starts so a field set twice keeps only its last value (a map's
//! `insert`). On HTTP/1 the buffer is what goes out
//! (`write_response_header_raw`, a vendored Pingora patch that adds `Date`, `Connection` and
//! the body framing); on HTTP/2 it becomes a `ResponseHeader` (Pingora's h2 path).
//!
//! Values are checked as `http::HeaderValue` checks them (no control characters but tab), names
//! as tokens (RFC 9110 §5.6.2) and written in lower case. The body framing (`Content-Length`,
//! `Transfer-Encoding`) is not a field here: it is set with [`Head::json_body`],
//! [`Head::content_length`] or [`Head::chunked`] and written with the head, so it always agrees
//! with how Pingora frames the body.

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorType, OrErr};

use super::ctx::RequestCtx;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_GATEWAY_PROVIDER: HeaderName = HeaderName::from_static("x-gateway-provider");
pub const X_GATEWAY_MODEL: HeaderName = HeaderName::from_static("x-gateway-model");
pub const X_GATEWAY_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");

pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
pub const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// Room for the status line, the fields a typical answer carries, and what Pingora appends
/// (`date`, `connection`, the blank line): one allocation per answer.
const TEXT_CAPACITY: usize = 512;

/// An answer's status and headers while they are being put together.
pub struct Head {
    status: StatusCode,
    /// The status line, then each field as `name: value\r\n`.
    text: Vec<u8>,
    /// Where each field's line starts in `text`, in order.
    fields: Vec<u32>,
    content_length: Option<usize>,
    chunked: bool,
}

// === impl Head ===

impl Head {
    /// `status` with room for `capacity` headers.
    pub fn new(status: u16, capacity: usize) -> pingora::Result<Head> {
        let status = StatusCode::from_u16(status).or_err(ErrorType::InternalError, "invalid status")?;
        let mut text = Vec::with_capacity(TEXT_CAPACITY);
        text.extend_from_slice(b"HTTP/1.1 ");
        text.extend_from_slice(status.as_str().as_bytes());
        text.push(b' ');
        text.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        text.extend_from_slice(b"\r\n");
        Ok(Head {
            status,
            text,
            fields: Vec::with_capacity(capacity + 2),
            content_length: None,
            chunked: false,
        })
    }

    /// `status` with the headers every answer the gateway writes carries: `x-request-id`,
    /// `x-gateway-attempts`, the CORS headers of an allowed origin and the rate-limit headers.
    pub fn answer(status: u16, ctx: &RequestCtx, capacity: usize) -> pingora::Result<Head> {
        let mut h = Head::new(status, capacity + 5 + ctx.rate_headers.len())?;
        h.set_str(X_REQUEST_ID, &ctx.request_id)?;
        h.set_bytes(X_GATEWAY_ATTEMPTS.as_str(), itoa::Buffer::new().format(ctx.attempts).as_bytes());
        super::cors::add(ctx.cors_origin.as_deref(), &mut h)?;
        for (k, v) in &ctx.rate_headers {
            h.set_named(k, v)?;
        }
        Ok(h)
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.set_bytes(name.as_str(), value.as_bytes());
    }

    /// Sets `name` to a copy of `value`, refused when it is not a valid header value.
    pub fn set_str(&mut self, name: HeaderName, value: &str) -> pingora::Result<()> {
        // A framing field set here would go out next to the one `write` adds.
        if framing(name.as_str()) {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "the body framing is not set by name");
        }
        if !valid_value(value.as_bytes()) {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "invalid header value");
        }
        self.set_bytes(name.as_str(), value.as_bytes());
        Ok(())
    }

    /// Sets the header named by text (the rare ones without a constant here).
    pub fn set_named(&mut self, name: &str, value: &str) -> pingora::Result<()> {
        if !valid_name(name.as_bytes()) || framing(name) {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "invalid header name");
        }
        if !valid_value(value.as_bytes()) {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "invalid header value");
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.set_bytes(&name.to_ascii_lowercase(), value.as_bytes());
        } else {
            self.set_bytes(name, value.as_bytes());
        }
        Ok(())
    }

    /// Writes `name: value` (a lower-case token and a checked value), replacing an earlier
    /// field of that name.
    fn set_bytes(&mut self, name: &str, value: &[u8]) {
        debug_assert!(valid_name(name.as_bytes()) && !name.bytes().any(|b| b.is_ascii_uppercase()));
        debug_assert!(!framing(name), "the body framing is set with its own methods");
        if let Some(i) = self.find(name) {
            let start = self.fields[i] as usize;
            let end = self.fields.get(i + 1).map_or(self.text.len(), |&e| e as usize);
            self.text.drain(start..end);
            self.fields.remove(i);
            let gone = (end - start) as u32;
            for f in &mut self.fields[i..] {
                *f -= gone;
            }
        }
        self.fields.push(self.text.len() as u32);
        self.text.extend_from_slice(name.as_bytes());
        self.text.extend_from_slice(b": ");
        self.text.extend_from_slice(value);
        self.text.extend_from_slice(b"\r\n");
    }

    /// The index in `fields` of the field named `name` (lower case).
    fn find(&self, name: &str) -> Option<usize> {
        let n = name.as_bytes();
        self.fields.iter().position(|&at| {
            let at = at as usize;
            self.text.get(at + n.len()) == Some(&b':') && &self.text[at..at + n.len()] == n
        })
    }

    /// Each field's name and value, in order.
    fn each(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter().enumerate().map(|(i, &at)| {
            let end = self.fields.get(i + 1).map_or(self.text.len(), |&e| e as usize);
            let line = &self.text[at as usize..end - 2];
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            (&line[..colon], line.get(colon + 2..).unwrap_or_default())
        })
    }

    /// `content-type: application/json` and the body's length.
    pub fn json_body(&mut self, len: usize) {
        self.set(CONTENT_TYPE, APPLICATION_JSON);
        self.content_length(len);
    }

    /// The body is `len` bytes long.
    pub fn content_length(&mut self, len: usize) {
        self.content_length = Some(len);
        self.chunked = false;
    }

    /// The content type of a stream (SSE, or the JSON array Gemini's clients may ask for),
    /// never cached.
    pub fn stream(&mut self, json_array: bool) {
        self.set(CONTENT_TYPE, if json_array { APPLICATION_JSON } else { EVENT_STREAM });
        self.set(CACHE_CONTROL, NO_CACHE);
    }

    /// `transfer-encoding: chunked` (HTTP/1.1).
    pub fn chunked(&mut self) {
        self.chunked = true;
        self.content_length = None;
    }

    /// Writes the head to the client: as text on HTTP/1, through Pingora's `ResponseHeader`
    /// otherwise. 204 and 304 carry no body framing fields (RFC 9110 §8.6, RFC 9112 §6.1).
    pub async fn write(mut self, s: &mut ServerSession) -> pingora::Result<()> {
        if let ServerSession::H1(h1) = s {
            if !matches!(self.status.as_u16(), 204 | 304) {
                if let Some(len) = self.content_length {
                    self.text.extend_from_slice(b"content-length: ");
                    self.text.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
                    self.text.extend_from_slice(b"\r\n");
                } else if self.chunked {
                    self.text.extend_from_slice(b"transfer-encoding: chunked\r\n");
                }
            }
            let header = Box::new(ResponseHeader::build_no_case(self.status, Some(0))?);
            return h1.write_response_header_raw(header, self.text, self.content_length, self.chunked).await;
        }
        let header = self.into_response()?;
        s.write_response_header(header).await
    }

    /// The head as Pingora's `ResponseHeader` (HTTP/2 frames the body itself: no
    /// `transfer-encoding`).
    fn into_response(self) -> pingora::Result<Box<ResponseHeader>> {
        let mut r = ResponseHeader::build_no_case(self.status, Some(self.fields.len() + 1))?;
        for (name, value) in self.each() {
            let name =
                HeaderName::from_bytes(name).or_err(ErrorType::InvalidHTTPHeader, "invalid header name")?;
            let value = HeaderValue::from_bytes(value)
                .or_err(ErrorType::InvalidHTTPHeader, "invalid header value")?;
            r.append_header(name, value)?;
        }
        if let (Some(len), false) = (self.content_length, matches!(self.status.as_u16(), 204 | 304)) {
            r.insert_header(http::header::CONTENT_LENGTH, len)?;
        }
        Ok(Box::new(r))
    }

    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.each()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// A header name: a token (RFC 9110 §5.6.2).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value as `http::HeaderValue` accepts it: visible ASCII, spaces, tabs and obs-text,
/// no other control character.
fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// The fields that frame the body or the connection: set by [`Head`]'s own methods and by
/// Pingora, never by name.
fn framing(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "date"].iter().any(|f| name.eq_ignore_ascii_case(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::l4::stream::Stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The head `h` and `body` written on a real HTTP/1 server session over loopback, in answer
    /// to `request`: the bytes the client reads until the server closes.
    async fn written(request: &'static [u8], h: Head, body: &'static [u8]) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(request).await.unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            out
        });
        let (server, _) = listener.accept().await.unwrap();
        let mut s = ServerSession::new_http1(Box::new(Stream::from(server)));
        assert!(s.read_request().await.unwrap());
        h.write(&mut s).await.unwrap();
        assert_eq!(s.response_written().map(|r| r.status.as_u16()), Some(200));
        s.write_response_body(bytes::Bytes::from_static(body), true).await.unwrap();
        drop(s);
        client.await.unwrap()
    }

    fn parse(wire: &[u8]) -> (u16, Vec<(String, String)>, &[u8]) {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut fields);
        let httparse::Status::Complete(n) = r.parse(wire).unwrap() else { panic!("cut head") };
        let fields = r
            .headers
            .iter()
            .map(|f| (f.name.to_string(), String::from_utf8(f.value.to_vec()).unwrap()))
            .collect();
        (r.code.unwrap(), fields, &wire[n..])
    }

    fn answer() -> Head {
        let mut h = Head::new(200, 4).unwrap();
        h.set_str(X_REQUEST_ID, "req-1").unwrap();
        h.set(X_GATEWAY_ATTEMPTS, HeaderValue::from(2u32));
        h.set_named("X-RateLimit-Remaining-Requests", "9").unwrap();
        h
    }

    #[tokio::test]
    async fn a_json_answer_is_written_as_one_text_head_with_its_length() {
        let mut h = answer();
        h.json_body(17);
        let wire = written(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
            h,
            b"{\"ok\":true,\"n\":1}",
        )
        .await;
        assert!(
            wire.starts_with(b"HTTP/1.1 200 OK\r\nx-request-id: req-1\r\nx-gateway-attempts: 2\r\n"),
            "{}",
            String::from_utf8_lossy(&wire)
        );
        let (status, fields, body) = parse(&wire);
        assert_eq!(status, 200);
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-request-id",
                "x-gateway-attempts",
                "x-ratelimit-remaining-requests",
                "content-type",
                "content-length",
                "date",
                "connection"
            ]
        );
        assert_eq!(fields[4].1, "17");
        assert_eq!(fields[6].1, "keep-alive");
        assert!(fields[5].1.ends_with(" GMT"), "{}", fields[5].1);
        assert_eq!(body, b"{\"ok\":true,\"n\":1}");
    }

    #[tokio::test]
    async fn a_stream_is_chunked_and_an_http10_client_gets_a_close_delimited_body() {
        let mut h = answer();
        h.stream(false);
        h.chunked();
        let wire =
            written(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", h, b"data: 1\n\n").await;
        let (_, fields, body) = parse(&wire);
        assert!(fields.contains(&("transfer-encoding".into(), "chunked".into())));
        assert!(fields.contains(&("cache-control".into(), "no-cache".into())));
        assert!(!fields.iter().any(|(n, _)| n == "content-length"));
        assert_eq!(body, b"9\r\ndata: 1\n\n\r\n0\r\n\r\n");

        // Neither a length nor chunked: the body ends with the connection, which is not kept.
        let mut h = answer();
        h.stream(false);
        let wire =
            written(b"POST / HTTP/1.0\r\nhost: x\r\ncontent-length: 0\r\n\r\n", h, b"data: 1\n\n").await;
        let (_, fields, body) = parse(&wire);
        assert!(fields.contains(&("connection".into(), "close".into())));
        assert!(!fields.iter().any(|(n, _)| n == "transfer-encoding" || n == "content-length"));
        assert_eq!(body, b"data: 1\n\n");
    }

    #[test]
    fn a_field_set_twice_keeps_its_last_value_in_its_new_place() {
        let mut h = answer();
        h.set_str(X_GATEWAY_MODEL, "a").unwrap();
        h.set_str(X_REQUEST_ID, "req-2").unwrap();
        h.set_named("x-ratelimit-remaining-requests", "8").unwrap();
        let fields: Vec<(&[u8], &[u8])> = h.each().collect();
        let want: [(&[u8], &[u8]); 4] = [
            (b"x-gateway-attempts", b"2"),
            (b"x-gateway-model", b"a"),
            (b"x-request-id", b"req-2"),
            (b"x-ratelimit-remaining-requests", b"8"),
        ];
        assert_eq!(fields, want);
        assert_eq!(h.get("X-Request-Id"), Some("req-2"));
        // A name that is a prefix of another is a different field.
        h.set_named("x-request", "p").unwrap();
        assert_eq!(h.get("x-request-id"), Some("req-2"));
        assert_eq!(h.get("x-request"), Some("p"));
    }

    #[test]
    fn the_http2_header_has_the_same_fields_and_no_chunked_framing() {
        let mut h = answer();
        h.json_body(5);
        let r = h.into_response().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.get("x-request-id").unwrap(), "req-1");
        assert_eq!(r.headers.get("x-ratelimit-remaining-requests").unwrap(), "9");
        assert_eq!(r.headers.get("content-length").unwrap(), "5");
        let mut h = answer();
        h.chunked();
        let r = h.into_response().unwrap();
        assert!(r.headers.get("transfer-encoding").is_none());
        assert_eq!(r.headers.len(), 3);
    }

    #[test]
    fn refuses_what_is_not_a_header() {
        let mut h = Head::new(200, 1).unwrap();
        assert!(h.set_str(X_GATEWAY_MODEL, "a\nb").is_err());
        assert!(h.set_str(X_GATEWAY_MODEL, "a\rb").is_err());
        assert!(h.set_str(X_GATEWAY_MODEL, "a\0b").is_err());
        assert!(h.set_named("bad name", "v").is_err());
        assert!(h.set_named("bad:name", "v").is_err());
        assert!(h.set_named("", "v").is_err());
        assert!(h.set_named("Content-Length", "1").is_err(), "framing is not set by name");
        assert!(h.set_named("connection", "close").is_err());
        assert!(h.set_str(http::header::CONTENT_LENGTH, "1").is_err(), "nor through a constant name");
        assert!(h.set_str(http::header::TRANSFER_ENCODING, "chunked").is_err());
        assert!(Head::new(1000, 1).is_err());
        assert_eq!(h.get("x-gateway-model"), None);
        h.set_str(X_GATEWAY_MODEL, "tab\there, obs-text \u{e9}").unwrap();
        assert_eq!(h.get("x-gateway-model"), Some("tab\there, obs-text \u{e9}"));
    }
}
