//! The HTTP/1.1 exchange with an upstream, driven on a connected (or pooled) Pingora stream.
//!
//! Pingora's HTTP/1 client session, which this replaces on the data plane, cost about 14k
//! instructions a request (README "Performance"): the request header went through `http`'s
//! header map and out through Pingora's case map; the answer's header was parsed into a new
//! header map (hashing every name), then copied once more; each read and write registered its
//! own timer; and the head left in a write of its own unless a wrapper held it back. Here:
//! - the request head is written as text, straight into the buffer the body's first bytes join,
//!   so a request leaves in one write (header and body together) whatever its size up to
//!   [`HOLD`];
//! - the answer's header is parsed with `httparse` in place: the head's bytes are kept and a
//!   header is found by a scan of its dozen or so names (the gateway asks for three or four);
//! - one timer covers the end of the request and the answer's header, and a body read registers
//!   one only when the buffer holds nothing to hand out;
//! - body chunks are handed out as slices of the read buffer (no copy), one HTTP chunk at a time
//!   for a chunked body, as Pingora did.
//!
//! Framing follows RFC 9112 §6: no body for 1xx, 204 and 304; `Transfer-Encoding` ending in
//! `chunked` before `Content-Length`; conflicting lengths refused; otherwise read to the close.
//! A connection is offered back to the pool only if the answer was HTTP/1.1 without
//! `Connection: close`, its body was read to its exact end and nothing followed it.

use std::io::{self, Write as _};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::providers::UpstreamRequest;

/// The most bytes of an answer's header (status line and fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields of an answer.
const MAX_FIELDS: usize = 128;
/// Request bytes gathered before a write: a body up to this size leaves with its head.
pub const HOLD: usize = 64 * 1024;
/// The longest chunk-size or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// How much room a read asks for.
const READ_SIZE: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum Error {
    /// No progress within the timeout.
    Timeout,
    /// The upstream closed the connection early; says what was being read.
    Closed(&'static str),
    /// The socket failed.
    Io(io::Error),
    /// The upstream's bytes are not HTTP/1.1 the gateway accepts, or the request cannot be
    /// written (a header with a line break).
    Invalid(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out"),
            Error::Closed(what) => write!(f, "connection closed before {what}"),
            Error::Io(e) => write!(f, "socket error: {e}"),
            Error::Invalid(what) => f.write_str(what),
        }
    }
}

fn invalid(what: impl Into<String>) -> Error {
    Error::Invalid(what.into())
}

/// The request head as HTTP/1.1 text, into `out`: the request line, `Host`, `Content-Type`,
/// the framing (`Content-Length`, or chunked when the length is unknown),
/// `Accept-Encoding: identity`, `User-Agent`, then the request's own headers. A header of the
/// request named like one the gateway sets replaces it; one that would change the framing or
/// the host is refused, as is any name or value that could break the head (CR, LF, NUL).
pub fn request_head(
    out: &mut Vec<u8>,
    authority: &str,
    req: &UpstreamRequest,
    content_type: &str,
    content_length: Option<usize>,
) -> Result<(), Error> {
    const USER_AGENT: &str = concat!("llm-gateway/", env!("CARGO_PKG_VERSION"));
    let path = req.path_and_query.as_bytes();
    if path.first() != Some(&b'/') || !path.iter().all(|&b| b > b' ' && b != 0x7f) {
        return Err(invalid("invalid request path"));
    }
    let own = |name: &str| req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    out.reserve(160 + path.len() + req.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    field_value(out, authority)?;
    if !own("content-type") {
        out.extend_from_slice(b"\r\nContent-Type: ");
        field_value(out, content_type)?;
    }
    match content_length {
        Some(n) => {
            out.extend_from_slice(b"\r\nContent-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        None => out.extend_from_slice(b"\r\nTransfer-Encoding: chunked"),
    }
    if !own("accept-encoding") {
        out.extend_from_slice(b"\r\nAccept-Encoding: identity");
    }
    if !own("user-agent") {
        out.extend_from_slice(b"\r\nUser-Agent: ");
        out.extend_from_slice(USER_AGENT.as_bytes());
    }
    for (name, value) in &req.headers {
        if ["host", "content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f))
        {
            return Err(invalid(format!("the request may not set {name}")));
        }
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(invalid("invalid header name"));
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        field_value(out, value)?;
    }
    out.extend_from_slice(b"\r\n\r\n");
    Ok(())
}

fn field_value(out: &mut Vec<u8>, v: &str) -> Result<(), Error> {
    if !v.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f)) {
        return Err(invalid("invalid header value"));
    }
    out.extend_from_slice(v.as_bytes());
    Ok(())
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An answer's status and header fields, parsed in place: the head's bytes and where each
/// name and value lies in them.
pub struct ResponseHead {
    pub status: u16,
    http10: bool,
    raw: Bytes,
    fields: Vec<[u32; 4]>,
}

impl ResponseHead {
    /// The first value of the field `name` (any case), if it is text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every field, in the order received.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(|[a, b, c, d]| (&self.raw[*a as usize..*b as usize], &self.raw[*c as usize..*d as usize]))
    }

    /// The fields as `http`'s map (for the error path's classification).
    pub fn to_header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::with_capacity(self.fields.len());
        for (n, v) in self.fields() {
            if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(n), http::HeaderValue::from_bytes(v)) {
                map.append(n, v);
            }
        }
        map
    }
}

/// How the rest of the answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
    Done,
}

/// Where a chunked body's reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// At the line break after a chunk's data.
    DataEnd,
    /// In the trailer section after the last chunk.
    Trailer,
}

/// One connection to an upstream: the stream, what has been read from it and not handed out,
/// and the request bytes gathered before a write.
pub struct Conn {
    stream: Stream,
    buf: BytesMut,
    out: Vec<u8>,
    timeout: Duration,
    chunked: bool,
}

impl Conn {
    pub fn new(stream: Stream, timeout: Duration) -> Conn {
        Conn { stream, buf: BytesMut::new(), out: Vec::new(), timeout, chunked: false }
    }

    /// Hold the request head (see [`request_head`]); it leaves with the body's first bytes.
    pub fn start(
        &mut self,
        authority: &str,
        req: &UpstreamRequest,
        content_type: &str,
        content_length: Option<usize>,
    ) -> Result<(), Error> {
        self.out.clear();
        request_head(&mut self.out, authority, req, content_type, content_length)?;
        self.chunked = content_length.is_none();
        Ok(())
    }

    /// Body bytes: held with what went before while that stays under [`HOLD`], written
    /// otherwise (a chunk's framing is added for a chunked request).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            // Writing into a Vec cannot fail.
            let _ = write!(self.out, "{:x}\r\n", data.len());
        }
        if self.out.len() + data.len() <= HOLD {
            self.out.extend_from_slice(data);
        } else {
            let held = std::mem::take(&mut self.out);
            let timeout = self.timeout;
            let stream = &mut self.stream;
            let r = fast_timeout(timeout, async {
                stream.write_all(&held).await?;
                stream.write_all(data).await
            })
            .await;
            self.out = held;
            self.out.clear();
            r.map_err(|_| Error::Timeout)?.map_err(Error::Io)?;
        }
        if self.chunked {
            self.out.extend_from_slice(b"\r\n");
        }
        Ok(())
    }

    /// End the request (the chunked body's last chunk), write what is held and read the
    /// answer's header, under one timeout.
    pub async fn finish(mut self: Box<Self>, head_request: bool) -> Result<Exchange, Error> {
        if self.chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        let timeout = self.timeout;
        let conn = &mut *self;
        let head = fast_timeout(timeout, async {
            let out = std::mem::take(&mut conn.out);
            conn.stream.write_all(&out).await.map_err(Error::Io)?;
            conn.stream.flush().await.map_err(Error::Io)?;
            conn.read_head().await
        })
        .await
        .map_err(|_| Error::Timeout)??;
        let (framing, keep_alive) = framing(&head, head_request)?;
        // Status and framing only: field values can carry what the provider says about the key.
        tracing::trace!(
            status = head.status,
            fields = head.fields.len(),
            ?framing,
            keep_alive,
            "upstream answer header"
        );
        Ok(Exchange { conn: self, head, framing, keep_alive })
    }

    /// Read until a final (non-1xx) answer header is whole, and parse it.
    async fn read_head(&mut self) -> Result<ResponseHead, Error> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&mut self.buf)? {
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue; // an interim answer (100 Continue, 103 Early Hints)
                    }
                    return Ok(head);
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(invalid(format!("the answer's header is over {MAX_HEAD} bytes")));
                }
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed("the answer's header"));
            }
        }
    }

    /// One read into the buffer (no timeout of its own); the bytes read, 0 at the end.
    async fn fill(&mut self) -> Result<usize, Error> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await.map_err(Error::Io)
    }

    /// One read under the timeout.
    async fn fill_timed(&mut self) -> Result<usize, Error> {
        let timeout = self.timeout;
        fast_timeout(timeout, self.fill()).await.map_err(|_| Error::Timeout)?
    }
}

/// The whole head at the front of `buf`, taken out of it; `None` if more bytes are needed.
fn parse_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, Error> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(invalid(format!("the answer has over {MAX_FIELDS} header fields")))
        }
        Err(e) => return Err(invalid(format!("invalid answer header: {e}"))),
    };
    let version = resp.version.unwrap_or(0);
    let status = resp.code.unwrap_or(0);
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    let fields = resp
        .headers
        .iter()
        .map(|h| {
            let (n, v) = (at(h.name.as_bytes()), at(h.value));
            [n, n + h.name.len() as u32, v, v + h.value.len() as u32]
        })
        .collect();
    let raw = buf.split_to(len).freeze();
    Ok(Some(ResponseHead { status, http10: version == 0, raw, fields }))
}

/// The body's framing and whether the connection may be kept (RFC 9112 §6.3, §9.3), from one
/// pass over the fields.
fn framing(head: &ResponseHead, head_request: bool) -> Result<(Framing, bool), Error> {
    let (mut close, mut keep, mut te_last, mut length): (bool, bool, Option<&[u8]>, Option<u64>) =
        (false, false, None, None);
    for (name, value) in head.fields() {
        // The three names differ in length, so the length picks which one to compare.
        match name.len() {
            10 if name.eq_ignore_ascii_case(b"connection") => {
                close |= has_token(value, b"close");
                keep |= has_token(value, b"keep-alive");
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // The last coding of the last field decides.
                te_last =
                    Some(value.rsplit(|&b| b == b',').next().map(<[u8]>::trim_ascii).unwrap_or_default());
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                for part in value.split(|&b| b == b',') {
                    let n = std::str::from_utf8(part.trim_ascii())
                        .ok()
                        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| invalid("invalid Content-Length in the answer"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(invalid("conflicting Content-Length in the answer"));
                    }
                    length = Some(n);
                }
            }
            _ => {}
        }
    }
    // HTTP/1.0 closes unless it says otherwise; 1.1 keeps unless it says otherwise.
    let keep_alive = if head.http10 { keep } else { !close };
    if head.status == 101 {
        return Ok((Framing::Done, false)); // never asked for: the connection is not HTTP any more
    }
    if head_request || (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
        return Ok((Framing::Done, keep_alive));
    }
    if let Some(last) = te_last {
        // Anything but chunked last is read to the close.
        return Ok(if last.eq_ignore_ascii_case(b"chunked") {
            (Framing::Chunked(Chunk::Size), keep_alive)
        } else {
            (Framing::Close, false)
        });
    }
    Ok(match length {
        Some(0) => (Framing::Done, keep_alive),
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::Close, false),
    })
}

fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// An answer whose header has arrived: its body is read through [`Exchange::next_chunk`].
pub struct Exchange {
    conn: Box<Conn>,
    pub head: ResponseHead,
    framing: Framing,
    keep_alive: bool,
}

impl Exchange {
    /// The body has been read to its end.
    pub fn done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// The next piece of the body; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::Length(left) => {
                    if self.conn.buf.is_empty() && self.conn.fill_timed().await? == 0 {
                        return Err(Error::Closed("the answer's body ended"));
                    }
                    let n = (self.conn.buf.len() as u64).min(left) as usize;
                    self.framing =
                        if left == n as u64 { Framing::Done } else { Framing::Length(left - n as u64) };
                    return Ok(Some(self.conn.buf.split_to(n).freeze()));
                }
                Framing::Close => {
                    if self.conn.buf.is_empty() && self.conn.fill_timed().await? == 0 {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.conn.buf.split().freeze()));
                }
                Framing::Chunked(state) => {
                    if let Some(data) = self.dechunk(state)? {
                        return Ok(Some(data));
                    }
                    if self.framing == Framing::Done {
                        return Ok(None);
                    }
                    if self.conn.fill_timed().await? == 0 {
                        return Err(Error::Closed("the answer's last chunk"));
                    }
                }
            }
        }
    }

    /// Advance the chunked reader over the buffer: a chunk's data when some is there, `None`
    /// when more bytes are needed or the body ended (then `framing` is `Done`).
    fn dechunk(&mut self, mut state: Chunk) -> Result<Option<Bytes>, Error> {
        let buf = &mut self.conn.buf;
        loop {
            match state {
                Chunk::Size => {
                    let Some(eol) = line_end(buf)? else { break };
                    let line = &buf[..eol];
                    let digits =
                        line.split(|&b| b == b';').next().map(<[u8]>::trim_ascii).unwrap_or_default();
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .filter(|s| !s.is_empty() && s.len() <= 15)
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or_else(|| invalid("invalid chunk size in the answer"))?;
                    let _ = buf.split_to(eol + 1);
                    state = if size == 0 { Chunk::Trailer } else { Chunk::Data(size) };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        break;
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    state = if left == n as u64 { Chunk::DataEnd } else { Chunk::Data(left - n as u64) };
                    self.framing = Framing::Chunked(state);
                    return Ok(Some(data));
                }
                Chunk::DataEnd => {
                    let Some(eol) = line_end(buf)? else { break };
                    if eol > 1 || (eol == 1 && buf[0] != b'\r') {
                        return Err(invalid("a chunk of the answer is longer than its size"));
                    }
                    let _ = buf.split_to(eol + 1);
                    state = Chunk::Size;
                }
                Chunk::Trailer => {
                    let Some(eol) = line_end(buf)? else { break };
                    let empty = eol == 0 || (eol == 1 && buf[0] == b'\r');
                    let _ = buf.split_to(eol + 1);
                    if empty {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                }
            }
        }
        self.framing = Framing::Chunked(state);
        Ok(None)
    }

    /// The connection, if it may carry another request: the body read to its exact end, the
    /// answer allowing keep-alive, and nothing read beyond it.
    pub fn into_reusable(self) -> Option<Stream> {
        (self.framing == Framing::Done && self.keep_alive && self.conn.buf.is_empty())
            .then_some(self.conn.stream)
    }
}

/// The index of the `\n` ending the first line of `buf`, if there is one.
fn line_end(buf: &[u8]) -> Result<Option<usize>, Error> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i <= MAX_CHUNK_LINE => Ok(Some(i)),
        Some(_) => Err(invalid("a chunk line of the answer is too long")),
        None if buf.len() > MAX_CHUNK_LINE => Err(invalid("a chunk line of the answer is too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
