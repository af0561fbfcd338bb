//! One upstream attempt: resolve (async), take an idle connection from this thread's pool
//! (`pool.rs`) or connect a new one through Pingora's connector (TLS with SNI and verification,
//! timeouts), then drive the HTTP/1.1 exchange on it (`h1.rs`: the head and the body leave in
//! one write, the answer's header is parsed in place), hand out body chunks and return the
//! connection to the pool.
//! The built-in `mock` provider answers here too, in-process, through the same `Upstream` type.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::TransportConnector as Connector;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;

use super::h1::{self, Conn, Exchange};
use crate::config::{Limits, Provider, ProviderKind};
use crate::net::Resolver;
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
        exchange: Box<Exchange>,
        /// The pool's key for the connection (the peer's reuse hash).
        reuse: u64,
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
            Upstream::Http { exchange, .. } => exchange.head.status,
            Upstream::Mock { status, .. } => *status,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Upstream::Http { exchange, .. } => exchange.head.get(name),
            Upstream::Mock { content_type, .. } => (name == "content-type").then_some(*content_type),
        }
    }

    /// The answer's header fields as `http`'s map (built on each call: for the error path).
    pub fn headers(&self) -> Option<http::HeaderMap> {
        match self {
            Upstream::Http { exchange, .. } => Some(exchange.head.to_header_map()),
            Upstream::Mock { .. } => None,
        }
    }

    /// Whether the body is a stream of events (SSE or AWS event-stream).
    pub fn is_event_stream(&self) -> bool {
        let starts =
            |ct: &str, mime: &str| ct.get(..mime.len()).is_some_and(|p| p.eq_ignore_ascii_case(mime));
        self.header("content-type").is_some_and(|ct| {
            starts(ct, "text/event-stream") || starts(ct, "application/vnd.amazon.eventstream")
        })
    }

    /// The next body chunk; `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AttemptError> {
        match self {
            Upstream::Mock { chunks, .. } => Ok(chunks.next()),
            Upstream::Http { exchange, provider, timeout, .. } => {
                exchange.next_chunk().await.map_err(|e| exchange_error(provider, *timeout, e))
            }
        }
    }

    /// The body has been read to its end (the last `next_chunk` returned its last bytes).
    /// `false` when that is not known yet: the next `next_chunk` then returns `None`.
    pub fn body_done(&mut self) -> bool {
        match self {
            Upstream::Mock { .. } => false,
            Upstream::Http { exchange, .. } => exchange.done(),
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
    pub fn release(self) {
        if let Upstream::Http { exchange, reuse, .. } = self {
            if let Some(stream) = exchange.into_reusable() {
                super::pool::put(reuse, stream);
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
    p.write_header(req, "application/json", Some(req.body.len()))?;
    p.write(&req.body).await?;
    p.finish().await
}

/// A connected upstream whose request is being written (for bodies streamed from the client).
pub struct Pending {
    conn: Box<Conn>,
    reuse: u64,
    authority: String,
    provider: String,
    timeout: Duration,
    head_request: bool,
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
        // A pooled connection first; the peer is built only to connect a new one. A new one is
        // connected through a boxed future: its state (TCP + TLS handshake, ~9 KB) would
        // otherwise sit inline in every request's future, which is moved (copied) whole and
        // held for the request's life.
        let reuse = pool_key(addr, ep, provider);
        let stream = match super::pool::take(reuse) {
            Some(s) => Ok(s),
            None => Box::pin(connector.new_stream(&peer_for(addr, ep, provider, limits))).await,
        };
        match stream {
            Ok(stream) => {
                connected = Some((stream, reuse));
                break;
            }
            // Refused or unreachable fails fast: try the next address of the same answer.
            Err(e) if matches!(e.etype(), ErrorType::ConnectRefused | ErrorType::ConnectNoRoute) => {
                last_err = Some(classify(&name, timeout, &e));
            }
            Err(e) => return Err(classify(&name, timeout, &e)),
        }
    }
    let Some((stream, reuse)) = connected else {
        return Err(last_err.unwrap_or(AttemptError::Connect { provider: name, detail: "no address".into() }));
    };
    // HTTP/1.1 only (peers offer no ALPN).
    Ok(Pending {
        conn: Box::new(Conn::new(stream, timeout)),
        reuse,
        authority: ep.authority.clone(),
        provider: name,
        timeout,
        head_request: false,
    })
}

// === impl Pending ===

impl Pending {
    /// The request header: exact `content_length`, or chunked when it is unknown. It is held,
    /// and leaves with the body's first bytes.
    pub fn write_header(
        &mut self,
        req: &UpstreamRequest,
        content_type: &str,
        content_length: Option<usize>,
    ) -> Result<(), AttemptError> {
        self.head_request = req.method == http::Method::HEAD;
        self.conn
            .start(&self.authority, req, content_type, content_length)
            .map_err(|e| AttemptError::Io { provider: self.provider.clone(), detail: e.to_string() })
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), AttemptError> {
        self.conn.write(data).await.map_err(|e| exchange_error(&self.provider, self.timeout, e))
    }

    /// End the request body and wait for the response header.
    pub async fn finish(self) -> Result<Upstream, AttemptError> {
        let Pending { conn, reuse, provider, timeout, head_request, .. } = self;
        match conn.finish(head_request).await {
            Ok(exchange) => Ok(Upstream::Http { exchange: Box::new(exchange), reuse, provider, timeout }),
            Err(e) => Err(exchange_error(&provider, timeout, e)),
        }
    }
}

/// The pool's key for the connections [`peer_for`] makes: what tells them apart (the
/// address, TLS or not, the SNI, the verification), not the timeouts. Building the peer only
/// to hash it cost ~600 instructions and an allocation per request, hashing these fields ~500.
/// For one endpoint and verification setting the key is a bijection of an IPv4 address and
/// port, so two such addresses never share a key; endpoints differ by their random-looking
/// `conn_seed`.
fn pool_key(addr: std::net::SocketAddr, ep: &crate::config::Endpoint, provider: &Provider) -> u64 {
    const MIX: u64 = 0x9E37_79B9_7F4A_7C15; // odd: multiplying by it is a bijection
    let seed = (ep.conn_seed ^ u64::from(provider.tls_verify)).rotate_left(29);
    let bits = match addr {
        std::net::SocketAddr::V4(a) => (u64::from(a.ip().to_bits()) << 16) | u64::from(a.port()),
        std::net::SocketAddr::V6(a) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            (a.ip(), a.port()).hash(&mut h);
            h.finish()
        }
    };
    seed ^ bits.wrapping_mul(MIX)
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

/// What went wrong, for the client and the log: the error type and its context, without the
/// cause chain (which names the gateway's own local address).
fn describe(e: &pingora::Error) -> String {
    match &e.context {
        Some(c) => format!("{}: {}", e.etype.as_str(), c.as_str().trim()),
        None => e.etype.as_str().to_string(),
    }
}

fn exchange_error(provider: &str, timeout: Duration, e: h1::Error) -> AttemptError {
    match e {
        h1::Error::Timeout => AttemptError::Timeout { provider: provider.to_string(), after: timeout },
        e => AttemptError::Io { provider: provider.to_string(), detail: e.to_string() },
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

    /// The pool key tells apart every connection `peer_for` could make differently: address,
    /// port, TLS, SNI and verification; the same peer always gets the same key.
    #[test]
    fn the_pool_key_differs_for_every_peer_that_differs() {
        let snap = |url: &str, verify: bool| {
            crate::config::load_str(&format!(
                "listen: 127.0.0.1:1\nproviders: [{{name: p, kind: openai_compatible, base_url: \"{url}\", tls_verify: {verify}}}]\nmodels: [{{alias: a, targets: [{{provider: p, model: m}}]}}]\n"
            ))
            .unwrap()
        };
        let key = |url: &str, verify: bool, addr: &str| {
            let s = snap(url, verify);
            let p = &s.providers[0];
            pool_key(addr.parse().unwrap(), p.endpoint.as_ref().unwrap(), p)
        };
        let base = key("https://a.test", true, "10.0.0.1:443");
        assert_eq!(base, key("https://a.test", true, "10.0.0.1:443"), "the same peer, the same key");
        let others = [
            key("https://a.test", true, "10.0.0.2:443"),
            key("https://a.test", true, "10.0.0.1:444"),
            key("https://b.test", true, "10.0.0.1:443"),
            key("http://a.test:443", true, "10.0.0.1:443"),
            key("https://a.test", false, "10.0.0.1:443"),
            key("https://a.test", true, "[::1]:443"),
            key("https://a.test", true, "[::2]:443"),
        ];
        let mut all = others.to_vec();
        all.push(base);
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            others.len() + 1,
            "every differing peer has its own key: {others:x?} vs {base:x}"
        );
    }
}
