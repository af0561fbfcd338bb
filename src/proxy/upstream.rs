//! One upstream attempt over Pingora's connector (new connections; idle ones are kept in
//! `pool.rs`): resolve (async), build the peer (TLS with SNI
//! and verification, timeouts), send the header with an exact Content-Length and the whole body,
//! read the response header; then hand out body chunks and return the connection to the pool.
//! The head and the body leave in one write (`net::HeldHead` on the pooled stream).
//! The built-in `mock` provider answers here too, in-process, through the same `Upstream` type.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::TransportConnector as Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as Http1Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::upstreams::peer::Peer as _;
use pingora::{ErrorType, OrErr, Result as PResult};

use crate::config::{Limits, Provider, ProviderKind};
use crate::net::{HeldHead, Resolver};
use crate::providers::{mock, MediaOp, Operation, UpstreamRequest};

/// How long a pooled upstream connection may sit idle.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most bytes of an upstream error body (or non-stream body) the gateway reads.
pub const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// Why an attempt failed before a usable response header arrived (or while reading a body).
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttemptError {
    #[error("connect to {provider} failed: {detail}")]
    Connect { provider: String, detail: String },
    #[error("{provider} did not answer within {after:?}")]
    Timeout { provider: String, after: Duration },
    #[error("{provider}: {detail}")]
    Io { provider: String, detail: String },
}

// === impl AttemptError ===

impl AttemptError {
    /// A short, bounded name of the failure (`error.type` of the attempt's span).
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptError::Connect { .. } => "connect",
            AttemptError::Timeout { .. } => "timeout",
            AttemptError::Io { .. } => "io",
        }
    }
}

/// An upstream that has answered with a header.
pub enum Upstream {
    Http {
        session: Box<HttpSession>,
        peer: Box<HttpPeer>,
        header: Box<ResponseHeader>,
        provider: String,
        timeout: Duration,
    },
    Mock {
        status: u16,
        content_type: &'static str,
        chunks: std::vec::IntoIter<Bytes>,
    },
}

// === impl Upstream ===

impl Upstream {
    /// An answer made in-process (the mock provider, translated embeddings).
    pub fn ready(status: u16, content_type: &'static str, body: Vec<u8>) -> Upstream {
        Upstream::Mock { status, content_type, chunks: vec![Bytes::from(body)].into_iter() }
    }

    pub fn status(&self) -> u16 {
        match self {
            Upstream::Http { header, .. } => header.status.as_u16(),
            Upstream::Mock { status, .. } => *status,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Upstream::Http { header, .. } => header.headers.get(name).and_then(|v| v.to_str().ok()),
            Upstream::Mock { content_type, .. } => (name == "content-type").then_some(*content_type),
        }
    }

    pub fn headers(&self) -> Option<&http::HeaderMap> {
        match self {
            Upstream::Http { header, .. } => Some(&header.headers),
            Upstream::Mock { .. } => None,
        }
    }

    /// Whether the body is a stream of events (SSE or AWS event-stream).
    pub fn is_event_stream(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("text/event-stream") || ct.starts_with("application/vnd.amazon.eventstream")
        })
    }

    /// The next body chunk; `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AttemptError> {
        match self {
            Upstream::Mock { chunks, .. } => Ok(chunks.next()),
            Upstream::Http { session, provider, timeout, .. } => {
                session.read_response_body().await.map_err(|e| classify(provider, *timeout, &e))
            }
        }
    }

    /// The body has been read to its end (the last `next_chunk` returned its last bytes).
    /// `false` when that is not known yet: the next `next_chunk` then returns `None`.
    pub fn body_done(&mut self) -> bool {
        match self {
            Upstream::Mock { .. } => false,
            Upstream::Http { session, .. } => session.response_done(),
        }
    }

    /// The whole body, bounded by `max` bytes.
    pub async fn read_to_end(&mut self, max: usize) -> Result<Bytes, AttemptError> {
        let mut buf: Option<bytes::BytesMut> = None;
        let mut first: Option<Bytes> = None;
        while let Some(chunk) = self.next_chunk().await? {
            match (&mut first, &mut buf) {
                (None, None) => first = Some(chunk),
                (Some(f), None) => {
                    let mut b = bytes::BytesMut::with_capacity(f.len() + chunk.len());
                    b.extend_from_slice(f);
                    b.extend_from_slice(&chunk);
                    buf = Some(b);
                }
                (_, Some(b)) => b.extend_from_slice(&chunk),
            }
            let len = buf.as_ref().map(|b| b.len()).or(first.as_ref().map(|f| f.len())).unwrap_or(0);
            if len > max {
                return Err(AttemptError::Io {
                    provider: self.provider().into(),
                    detail: format!("response body over {max} bytes"),
                });
            }
        }
        Ok(match buf {
            Some(b) => b.freeze(),
            None => first.unwrap_or_default(),
        })
    }

    pub fn provider(&self) -> &str {
        match self {
            Upstream::Http { provider, .. } => provider,
            Upstream::Mock { .. } => "mock",
        }
    }

    /// Return the connection to this thread's pool (`pool.rs`; only reused if the body was
    /// read to the end and the answer allows keep-alive).
    pub async fn release(self) {
        if let Upstream::Http { session, peer, .. } = self {
            if let HttpSession::H1(mut h1) = *session {
                h1.respect_keepalive();
                if let Some(stream) = h1.reuse().await {
                    super::pool::put(peer.reuse_hash(), stream);
                }
            }
        }
    }
}

/// Send one attempt with its whole body and wait for the response header.
pub async fn send(
    connector: &Connector,
    resolver: &Resolver,
    provider: &Provider,
    model: &str,
    op: Operation,
    req: &UpstreamRequest,
    limits: &Limits,
) -> Result<Upstream, AttemptError> {
    if provider.kind == ProviderKind::Mock {
        let r = match op {
            Operation::Media(MediaOp::Embeddings) => mock::embeddings(&req.body, model),
            _ => mock::chat(&req.body, model),
        };
        return Ok(Upstream::Mock {
            status: r.status,
            content_type: r.content_type,
            chunks: r.chunks.into_iter(),
        });
    }
    let mut p = open(connector, resolver, provider, limits).await?;
    p.write_header(req, "application/json", Some(req.body.len())).await?;
    if !req.body.is_empty() {
        p.write(req.body.clone()).await?;
    }
    p.finish().await
}

/// A connected upstream whose request is being written (for bodies streamed from the client).
pub struct Pending {
    session: Box<HttpSession>,
    peer: Box<HttpPeer>,
    authority: String,
    provider: String,
    timeout: Duration,
}

/// Connect (or take a pooled connection) for one attempt.
pub async fn open(
    connector: &Connector,
    resolver: &Resolver,
    provider: &Provider,
    limits: &Limits,
) -> Result<Pending, AttemptError> {
    let name = provider.name.clone();
    let ep = provider
        .endpoint
        .as_ref()
        .ok_or_else(|| AttemptError::Connect { provider: name.clone(), detail: "no base_url".into() })?;
    let addrs = resolver.resolve_all(&ep.host, ep.port).await.map_err(|e| AttemptError::Connect {
        provider: name.clone(),
        detail: format!("DNS lookup of {}: {e}", ep.host),
    })?;
    let timeout = limits.upstream_timeout;
    let mut connected = None;
    let mut last_err = None;
    for addr in addrs {
        let peer = peer_for(addr, ep, provider, limits);
        // A pooled connection first. A new one is connected through a boxed future: its
        // state (TCP + TLS handshake, ~9 KB) would otherwise sit inline in every request's
        // future, which is moved (copied) whole and held for the request's life.
        let stream = match super::pool::take(peer.reuse_hash()) {
            Some(s) => Ok(s),
            None => Box::pin(connector.new_stream(&peer)).await,
        };
        match stream {
            Ok(stream) => {
                connected = Some((stream, peer));
                break;
            }
            // Refused or unreachable fails fast: try the next address of the same answer.
            Err(e) if matches!(e.etype(), ErrorType::ConnectRefused | ErrorType::ConnectNoRoute) => {
                last_err = Some(classify(&name, timeout, &e));
            }
            Err(e) => return Err(classify(&name, timeout, &e)),
        }
    }
    let Some((stream, peer)) = connected else {
        return Err(last_err.unwrap_or(AttemptError::Connect { provider: name, detail: "no address".into() }));
    };
    // HTTP/1.1 only (peers offer no ALPN). The request head leaves with the body's first
    // bytes, in one write (see `HeldHead`).
    let mut h1 = Http1Session::new_with_options(HeldHead::for_request(stream), &peer);
    // Every header the gateway passes on from an answer it names itself: no case map.
    h1.set_keep_header_case(false);
    let mut session = HttpSession::H1(h1);
    // The connector does not copy the peer's timeouts onto the session.
    session.set_read_timeout(Some(timeout));
    session.set_write_timeout(Some(timeout));
    Ok(Pending {
        session: Box::new(session),
        peer: Box::new(peer),
        authority: ep.authority.clone(),
        provider: name,
        timeout,
    })
}

// === impl Pending ===

impl Pending {
    /// Write the request header: exact `content_length`, or chunked when it is unknown.
    pub async fn write_header(
        &mut self,
        req: &UpstreamRequest,
        content_type: &str,
        content_length: Option<usize>,
    ) -> Result<(), AttemptError> {
        let header = request_header(&self.authority, req, content_type, content_length)
            .map_err(|e| AttemptError::Io { provider: self.provider.clone(), detail: e.to_string() })?;
        let r: PResult<()> = self.session.write_request_header(Box::new(header)).await;
        r.map_err(|e| classify(&self.provider, self.timeout, &e))
    }

    pub async fn write(&mut self, data: Bytes) -> Result<(), AttemptError> {
        let r: PResult<()> = self.session.write_request_body(data, false).await;
        r.map_err(|e| classify(&self.provider, self.timeout, &e))
    }

    /// End the request body and wait for the response header.
    pub async fn finish(mut self) -> Result<Upstream, AttemptError> {
        let r: PResult<()> = async {
            self.session.finish_request_body().await?;
            self.session.read_response_header().await
        }
        .await;
        r.map_err(|e| classify(&self.provider, self.timeout, &e))?;
        let header = self.session.response_header().cloned().map(Box::new).ok_or_else(|| {
            AttemptError::Io { provider: self.provider.clone(), detail: "no response header".into() }
        })?;
        Ok(Upstream::Http {
            session: self.session,
            peer: self.peer,
            header,
            provider: self.provider,
            timeout: self.timeout,
        })
    }
}

/// The peer for one address of an endpoint: TLS with SNI and verification, and the timeouts.
fn peer_for(
    addr: std::net::SocketAddr,
    ep: &crate::config::Endpoint,
    provider: &Provider,
    limits: &Limits,
) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, ep.tls, ep.sni().to_string());
    let o = &mut peer.options;
    o.connection_timeout = Some(limits.connect_timeout);
    o.total_connection_timeout = Some(limits.connect_timeout);
    o.read_timeout = Some(limits.upstream_timeout);
    o.write_timeout = Some(limits.upstream_timeout);
    o.verify_cert = provider.tls_verify;
    o.verify_hostname = provider.tls_verify;
    peer
}

fn request_header(
    authority: &str,
    req: &UpstreamRequest,
    content_type: &str,
    content_length: Option<usize>,
) -> PResult<RequestHeader> {
    use http::header::{
        HeaderName, HeaderValue, ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING,
        USER_AGENT,
    };
    const USER_AGENT_VALUE: HeaderValue =
        HeaderValue::from_static(concat!("llm-gateway/", env!("CARGO_PKG_VERSION")));
    fn value(v: &str) -> PResult<HeaderValue> {
        HeaderValue::from_str(v).or_err(ErrorType::InvalidHTTPHeader, "invalid header value")
    }
    // Straight into `http`'s map, as `head::Head` does for answers (Pingora's `insert_header`
    // parses every name and copies every value), and without Pingora's case-preserving name
    // map: the names go out as Pingora titles the standard ones (`Host`, `Content-Type`) and
    // lowercase otherwise, which HTTP/1.1 treats alike.
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = req.method.clone();
    parts.uri = http::Uri::try_from(req.path_and_query.as_str())
        .or_err(ErrorType::InvalidHTTPHeader, "invalid request path")?;
    let h = &mut parts.headers;
    h.reserve(5 + req.headers.len());
    h.insert(HOST, value(authority)?);
    h.insert(
        CONTENT_TYPE,
        match content_type {
            "application/json" => HeaderValue::from_static("application/json"),
            other => value(other)?,
        },
    );
    match content_length {
        Some(n) => h.insert(CONTENT_LENGTH, HeaderValue::from(n)),
        None => h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked")),
    };
    h.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    h.insert(USER_AGENT, USER_AGENT_VALUE);
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .or_err(ErrorType::InvalidHTTPHeader, "invalid header name")?;
        h.insert(name, value(v)?);
    }
    Ok(RequestHeader::from(parts))
}

/// What went wrong, for the client and the log: the error type and its context, without the
/// cause chain (which names the gateway's own local address).
fn describe(e: &pingora::Error) -> String {
    match &e.context {
        Some(c) => format!("{}: {}", e.etype.as_str(), c.as_str().trim()),
        None => e.etype.as_str().to_string(),
    }
}

fn classify(provider: &str, timeout: Duration, e: &pingora::Error) -> AttemptError {
    use ErrorType::*;
    let provider = provider.to_string();
    match e.etype() {
        ReadTimedout | WriteTimedout => AttemptError::Timeout { provider, after: timeout },
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
        | TLSHandshakeTimedout | InvalidCert | HandshakeError | SocketError | BindError => {
            AttemptError::Connect { provider, detail: describe(e) }
        }
        _ => AttemptError::Io { provider, detail: describe(e) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_address_moves_on_to_the_next_address_of_the_same_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        });
        let text = format!(
            "listen: 127.0.0.1:1\nproviders: [{{name: p, kind: openai_compatible, base_url: \"http://multi.test:{port}\"}}]\nmodels: [{{alias: a, targets: [{{provider: p, model: m}}]}}]\n"
        );
        let snap = crate::config::load_str(&text).unwrap();
        let resolver = Resolver::default();
        // 127.0.0.2 refuses (the listener is bound to 127.0.0.1 only).
        resolver.pin(
            "multi.test",
            port,
            vec![format!("127.0.0.2:{port}").parse().unwrap(), format!("127.0.0.1:{port}").parse().unwrap()],
        );
        let connector = Connector::new(None);
        let p = open(&connector, &resolver, &snap.providers[0], &snap.limits).await;
        assert!(p.is_ok(), "connected through the second address: {:?}", p.err());
    }

    /// An upstream answer's header read without the case map (the vendored Pingora patch)
    /// reads the same headers; by default the names keep the case they came in.
    #[tokio::test]
    async fn an_answer_read_without_the_case_map_reads_the_same_headers() {
        use tokio::io::AsyncWriteExt;
        for keep in [true, false] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut up, _) = listener.accept().await.unwrap();
                up.write_all(b"HTTP/1.1 200 OK\r\nX-Mixed-Case: v\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")
                    .await
                    .unwrap();
                up
            });
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut h1 = Http1Session::new(Box::new(pingora::protocols::l4::stream::Stream::from(tcp)));
            h1.set_keep_header_case(keep);
            h1.read_response().await.unwrap();
            let h = h1.resp_header().unwrap();
            assert_eq!(h.status, 200);
            assert_eq!(h.headers.get("x-mixed-case").unwrap(), "v");
            assert_eq!(h.headers.get("content-type").unwrap(), "application/json");
            let mut wire = bytes::BytesMut::new();
            h.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire.to_vec()).unwrap();
            assert_eq!(wire.contains("X-Mixed-Case: v"), keep, "{wire}");
            drop(server.await.unwrap());
        }
    }

    /// The upstream request header, built straight into `http`'s map, writes what Pingora's own
    /// `build_no_case` + `insert_header` wrote: same request line, same names and values.
    #[test]
    fn the_request_header_writes_what_pingoras_inserts_wrote() {
        let req = UpstreamRequest {
            method: http::Method::POST,
            path_and_query: "/v1/messages?beta=true".into(),
            headers: vec![("x-api-key", "sk-test".into()), ("anthropic-version", "2023-06-01".into())],
            body: Bytes::new(),
        };
        for (ct, len) in [("application/json", Some(42)), ("multipart/form-data; boundary=b", None)] {
            let ours = request_header("api.test:443", &req, ct, len).unwrap();
            let mut theirs = RequestHeader::build_no_case("POST", b"/v1/messages?beta=true", None).unwrap();
            theirs.insert_header("host", "api.test:443").unwrap();
            theirs.insert_header("content-type", ct).unwrap();
            match len {
                Some(n) => theirs.insert_header("content-length", n.to_string()).unwrap(),
                None => theirs.insert_header("transfer-encoding", "chunked").unwrap(),
            }
            theirs.insert_header("accept-encoding", "identity").unwrap();
            theirs.insert_header("user-agent", concat!("llm-gateway/", env!("CARGO_PKG_VERSION"))).unwrap();
            theirs.insert_header("x-api-key", "sk-test").unwrap();
            theirs.insert_header("anthropic-version", "2023-06-01").unwrap();
            let (mut a, mut b) = (bytes::BytesMut::new(), bytes::BytesMut::new());
            ours.header_to_h1_wire(&mut a);
            theirs.header_to_h1_wire(&mut b);
            assert_eq!(a, b);
            assert_eq!((ours.method.clone(), ours.uri.clone()), (theirs.method.clone(), theirs.uri.clone()));
            assert_eq!(ours.raw_path(), theirs.raw_path());
        }
        let bad = UpstreamRequest { headers: vec![("x-api-key", "a\nb".into())], ..req };
        assert!(request_header("api.test", &bad, "application/json", Some(1)).is_err());
    }

    /// Every request's future holds (and is copied with) the largest state of an attempt, so
    /// connecting a new connection (TCP + TLS, kilobytes of state) must stay boxed, out of it.
    #[test]
    fn an_attempt_does_not_hold_the_connect_state_inline() {
        let snap = crate::config::load_str(
            "listen: 127.0.0.1:1\nproviders: [{name: p, kind: openai_compatible, base_url: \"https://p.test\"}]\nmodels: [{alias: a, targets: [{provider: p, model: m}]}]\n",
        )
        .unwrap();
        let (connector, resolver) = (Connector::new(None), Resolver::default());
        let peer = HttpPeer::new("127.0.0.1:443", true, "p.test".into());
        let connect = std::mem::size_of_val(&connector.new_stream(&peer));
        let open = std::mem::size_of_val(&open(&connector, &resolver, &snap.providers[0], &snap.limits));
        assert!(open < connect, "open's future is {open} bytes; a connect alone is {connect}");
    }
}
