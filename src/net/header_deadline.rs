//! A deadline on each client request head. Pingora 0.9 bounds only each single read of a
//! request head (its keep-alive timeout, 60 s, re-armed by every byte), so a client sending one
//! byte every 30 s holds a connection and its buffers forever; `HttpServerOptions` has no
//! total deadline for HTTP/1. `HeaderDeadline` wraps the admin listener's app (the data plane
//! has the same deadline in its own head read, `proxy::DataPlane`): each request's turn on a
//! connection (from accept, or from the end of the previous answer on a kept-alive one) must
//! reach the service's `request_filter` - which calls `head_received` - within the deadline,
//! else the connection is closed without an answer. So an idle kept-alive connection is also
//! closed after the deadline. The deadline is read per request (`limits.header_timeout_ms`,
//! reloadable) through the function the app is built with. The wrapper also turns on Pingora's
//! HTTP/1.1 pipelining for each session (off by default: pipelined requests were dropped).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

tokio::task_local! {
    /// Set once the current request's head has been read (see `head_received`).
    static HEAD_READ: Cell<bool>;
}

/// Tell the deadline of the current request that its head has arrived. Called first thing by
/// the service for every request; a no-op outside a `HeaderDeadline`.
pub fn head_received() {
    let _ = HEAD_READ.try_with(|h| h.set(true));
}

/// How every client session of the gateway (data plane and admin) is read.
pub fn client_session(session: &mut ServerSession) {
    // Requests a client pipelines (sends before reading the previous answer) are served in
    // order instead of being dropped with the connection (RFC 9112 section 9.3.2).
    session.set_pipelining_enabled(true);
    // The gateway never writes a client's header names back out (it builds every upstream
    // request itself), so the request header needs no second map keeping their case.
    session.set_keep_header_case(false);
}

/// The app `A`, with a deadline on each request head.
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    deadline: Box<dyn Fn() -> Duration + Send + Sync>,
}

// === impl HeaderDeadline ===

impl<A> HeaderDeadline<A> {
    /// `deadline` is asked once per request for the time its head may take.
    pub fn new(inner: A, deadline: impl Fn() -> Duration + Send + Sync + 'static) -> HeaderDeadline<A> {
        HeaderDeadline { inner: Arc::new(inner), deadline: Box::new(deadline) }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for HeaderDeadline<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        client_session(&mut session);
        let limit = (self.deadline)();
        let work = self.inner.process_new_http(session, shutdown);
        HEAD_READ
            .scope(Cell::new(false), async move {
                tokio::select! {
                    out = work => out,
                    () = expire(limit) => {
                        // Dropping `work` closes the connection.
                        tracing::debug!("closed a client connection: no complete request head within {limit:?}");
                        None
                    }
                }
            })
            .await
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.inner.clone().process_custom_session(stream, shutdown).await
    }
}

/// Resolves when `limit` has passed without the head arriving; never once it has.
async fn expire(limit: Duration) {
    tokio::time::sleep(limit).await;
    if HEAD_READ.try_with(Cell::get).unwrap_or(true) {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_fires_only_while_the_head_is_missing() {
        let missing = HEAD_READ.scope(Cell::new(false), async {
            tokio::time::timeout(Duration::from_secs(1), expire(Duration::from_millis(10))).await
        });
        assert!(missing.await.is_ok(), "no head: the deadline fires");
        let read = HEAD_READ.scope(Cell::new(false), async {
            head_received();
            tokio::time::timeout(Duration::from_millis(100), expire(Duration::from_millis(10))).await
        });
        assert!(read.await.is_err(), "head read: the deadline never fires");
        // Outside a scope nothing happens and nothing panics.
        head_received();
    }

    /// With `set_keep_header_case(false)` (the vendored Pingora patch) a request header has no
    /// case map: its names read the same, and would be written lowercase; by default they keep
    /// the case they came in.
    #[tokio::test]
    async fn a_request_read_without_the_case_map_reads_the_same_headers() {
        use tokio::io::AsyncWriteExt;
        for keep in [true, false] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            client
                .write_all(
                    b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nX-Mixed-Case: v\r\nAuthorization: Bearer k\r\n\r\n",
                )
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let mut session =
                ServerSession::new_http1(Box::new(pingora::protocols::l4::stream::Stream::from(server)));
            session.set_keep_header_case(keep);
            assert!(session.read_request().await.unwrap());
            let h = session.req_header();
            assert_eq!(h.headers.get("x-mixed-case").unwrap(), "v");
            assert_eq!(h.headers.get("authorization").unwrap(), "Bearer k");
            let mut wire = bytes::BytesMut::new();
            h.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire.to_vec()).unwrap();
            assert_eq!(wire.contains("X-Mixed-Case: v"), keep, "{wire}");
            assert_eq!(wire.contains("x-mixed-case: v"), !keep, "{wire}");
        }
    }
}
