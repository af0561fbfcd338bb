//! A deadline on each client request head. Pingora 0.9 bounds only each single read of a
//! request head (its keep-alive timeout, 60 s, re-armed by every byte), so a client sending one
//! byte every 30 s holds a connection and its buffers forever; `HttpServerOptions` has no
//! total deadline for HTTP/1. `HeaderDeadline` wraps the proxy app: each request's turn on a
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

/// The proxy app `A`, with a deadline on each request head.
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
        // Requests a client pipelines (sends before reading the previous answer) are served in
        // order instead of being dropped with the connection (RFC 9112 section 9.3.2).
        session.set_pipelining_enabled(true);
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
}
