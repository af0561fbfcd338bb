//! One upstream attempt over Pingora's connector: resolve (async), build the peer (TLS with SNI
//! and verification, timeouts), send the header with an exact Content-Length and the whole body,
//! read the response header; then hand out body chunks and return the connection to the pool.
//! The built-in `mock` provider answers here too, in-process, through the same `Upstream` type.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{ErrorType, Result as PResult};

use crate::config::{Limits, Provider, ProviderKind};
use crate::net::Resolver;
use crate::providers::{mock, UpstreamRequest};

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

    fn provider(&self) -> &str {
        match self {
            Upstream::Http { provider, .. } => provider,
            Upstream::Mock { .. } => "mock",
        }
    }

    /// Return the connection to the pool (only reused if the body was read to the end).
    pub async fn release(self, connector: &Connector) {
        if let Upstream::Http { session, peer, .. } = self {
            connector.release_http_session(*session, &*peer, Some(POOL_IDLE_TIMEOUT)).await;
        }
    }
}

/// Send one attempt and wait for the response header.
pub async fn send(
    connector: &Connector,
    resolver: &Resolver,
    provider: &Provider,
    model: &str,
    req: &UpstreamRequest,
    limits: &Limits,
) -> Result<Upstream, AttemptError> {
    if provider.kind == ProviderKind::Mock {
        let r = mock::chat(&req.body, model);
        return Ok(Upstream::Mock {
            status: r.status,
            content_type: r.content_type,
            chunks: r.chunks.into_iter(),
        });
    }
    let name = provider.name.clone();
    let ep = provider
        .endpoint
        .as_ref()
        .ok_or_else(|| AttemptError::Connect { provider: name.clone(), detail: "no base_url".into() })?;
    let addr = resolver.resolve(&ep.host, ep.port).await.map_err(|e| AttemptError::Connect {
        provider: name.clone(),
        detail: format!("DNS lookup of {}: {e}", ep.host),
    })?;
    let mut peer = HttpPeer::new(addr, ep.tls, ep.sni().to_string());
    let o = &mut peer.options;
    o.connection_timeout = Some(limits.connect_timeout);
    o.total_connection_timeout = Some(limits.connect_timeout);
    o.read_timeout = Some(limits.upstream_timeout);
    o.write_timeout = Some(limits.upstream_timeout);
    o.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    o.verify_cert = provider.tls_verify;
    o.verify_hostname = provider.tls_verify;
    let timeout = limits.upstream_timeout;

    let (mut session, _reused) =
        connector.get_http_session(&peer).await.map_err(|e| classify(&name, timeout, &e))?;
    // The connector does not copy the peer's timeouts onto the session.
    session.set_read_timeout(Some(timeout));
    session.set_write_timeout(Some(timeout));
    let header = request_header(&ep.authority, req)
        .map_err(|e| AttemptError::Io { provider: name.clone(), detail: e.to_string() })?;
    let io = async {
        session.write_request_header(Box::new(header)).await?;
        if !req.body.is_empty() {
            session.write_request_body(req.body.clone(), true).await?;
        }
        session.finish_request_body().await?;
        session.read_response_header().await
    };
    let sent: PResult<()> = io.await;
    sent.map_err(|e| classify(&name, timeout, &e))?;
    let header = session
        .response_header()
        .cloned()
        .map(Box::new)
        .ok_or_else(|| AttemptError::Io { provider: name.clone(), detail: "no response header".into() })?;
    Ok(Upstream::Http { session: Box::new(session), peer: Box::new(peer), header, provider: name, timeout })
}

fn request_header(authority: &str, req: &UpstreamRequest) -> PResult<RequestHeader> {
    let mut h = RequestHeader::build("POST", req.path_and_query.as_bytes(), Some(6 + req.headers.len()))?;
    h.insert_header("host", authority)?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", req.body.len().to_string())?;
    h.insert_header("accept-encoding", "identity")?;
    h.insert_header("user-agent", concat!("llm-gateway/", env!("CARGO_PKG_VERSION")))?;
    for (k, v) in &req.headers {
        h.insert_header(*k, v.as_str())?;
    }
    Ok(h)
}

fn classify(provider: &str, timeout: Duration, e: &pingora::Error) -> AttemptError {
    use ErrorType::*;
    let provider = provider.to_string();
    match e.etype() {
        ReadTimedout | WriteTimedout => AttemptError::Timeout { provider, after: timeout },
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
        | TLSHandshakeTimedout | InvalidCert | HandshakeError | SocketError | BindError => {
            AttemptError::Connect { provider, detail: e.to_string() }
        }
        _ => AttemptError::Io { provider, detail: e.to_string() },
    }
}
