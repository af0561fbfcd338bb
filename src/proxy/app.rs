//! The data plane's Pingora app: the requests of a client connection one at a time, each read,
//! served whole by [`Gateway`] and accounted; a kept-alive connection's next request is served
//! in the same call (Pingora's loop would box a new call per request).
//!
//! This gateway answers every request itself (it reads the body, drives the upstream attempts
//! with Pingora's connector and writes the answer), so it does not run on `pingora-proxy`'s
//! `HttpProxy`: that layer's cache, upstream and module phases were never reached, yet each
//! request paid for setting them up (a proxy `Session` with its module contexts, the response
//! compression module's filters on every header and body write). What it did that this
//! gateway needs is here: the biased read of the next request head against the service's stop,
//! a 400 for a malformed head, no `CONNECT`, no keep-alive once stopping, the error answer
//! when serving failed before an answer was written, and the connection's reuse.
//!
//! The deadline on each request head (`limits.header_timeout_ms`, what `net::HeaderDeadline`
//! gives the admin listener) is part of the same read: Pingora 0.9 bounds only each single
//! read of a head, so a client sending a byte every 30 s would hold a connection forever. The
//! turn of a request (from accept, or from the end of the previous answer on a kept-alive
//! connection) that has no complete head within the deadline closes the connection without an
//! answer; so does an idle kept-alive connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorSource, ErrorType};
use tokio::sync::Notify;

use super::Gateway;

/// The data plane's [`HttpServerApp`] around the [`Gateway`].
pub struct DataPlane {
    gateway: Gateway,
    /// Set by `http_cleanup` (the service is stopping); wakes connections idle between
    /// requests so they close instead of waiting for a next request.
    stopping: AtomicBool,
    stop: Notify,
}

// === impl DataPlane ===

impl DataPlane {
    pub fn new(gateway: Gateway) -> DataPlane {
        DataPlane { gateway, stopping: AtomicBool::new(false), stop: Notify::new() }
    }

    /// Resolves once the service is stopping.
    async fn stopped(&self) {
        let notified = self.stop.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a stop between the two still wakes this waiter.
        notified.as_mut().enable();
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

#[async_trait]
impl HttpServerApp for DataPlane {
    /// Serves every request of the connection: Pingora's own loop would call this (and box its
    /// future, `async_trait`) once per request of a kept-alive connection.
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // One registration for the stop for the connection's life, not one per request (each
        // is a lock, a list insert and a removal).
        let stop = self.stopped();
        tokio::pin!(stop);
        loop {
            if !self.serve(&mut session, shutdown, stop.as_mut()).await {
                return None;
            }
            // Boxed: the `finish` state would otherwise be room in this future for as long
            // as a stream is served (README "Memory").
            if let ServerSession::H1(h1) = &mut session {
                // The session is reset in place for the next request: what Pingora's loop does
                // with a reused stream (a new session, given the keep-alive settings and any
                // pipelined bytes of the previous one) without building and moving a new one
                // (`vendor/README.md`).
                if !matches!(Box::pin(h1.finish_and_reset()).await, Ok(true)) {
                    return None;
                }
                continue;
            }
            // HTTP/2 (a stream per request, no reuse here) and anything else: Pingora's finish.
            let settings = HttpPersistentSettings::for_session(&session);
            let reusable = Box::pin(session.finish()).await.ok().flatten()?;
            let (stream, settings) = ReusedHttpStream::from_reusable_stream(reusable, settings).consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }

    async fn http_cleanup(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
    }
}

impl DataPlane {
    /// One request of the connection, read, served and accounted: `true` when the connection
    /// may be kept for the next one. `stop` resolves once the service is stopping.
    async fn serve(
        &self,
        session: &mut ServerSession,
        shutdown: &ShutdownWatch,
        stop: Pin<&mut (impl Future<Output = ()> + Send)>,
    ) -> bool {
        crate::net::client_session(session);
        // Read per request: reloadable.
        let limit = Duration::from_millis(self.gateway.store.load().snap.config.limits.header_timeout_ms);
        let read = tokio::select! {
            // Biased: a request already buffered is served, not dropped, when the stop comes.
            biased;
            read = session.read_request() => read,
            () = stop => return false,
            // Pingora's shared 10 ms timer wheel, not a tokio timer: on a single-threaded runtime
            // registering a tokio timer earlier than the driver's next wake-up wakes the driver
            // (an eventfd write, one syscall per request).
            () = pingora::prelude::fast_timeout::fast_sleep(limit) => {
                // Dropping the session closes the connection.
                tracing::debug!("closed a client connection: no complete request head within {limit:?}");
                return false;
            }
        };
        match read {
            Ok(true) => {}
            // The client closed the connection between requests.
            Ok(false) => return false,
            Err(e) => {
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                tracing::debug!("closed a client connection: reading a request head failed: {e}");
                session.shutdown().await;
                return false;
            }
        }
        // Tunnels are not proxied (a CONNECT's framing is not a request's).
        if session.req_header().method == http::Method::CONNECT {
            let _ = session.respond_error(405).await;
            session.shutdown().await;
            return false;
        }
        if *shutdown.borrow() {
            // Stopping: this request is served, the connection is not kept.
            session.set_keepalive(None);
        }
        let gateway = &self.gateway;
        let mut ctx = gateway.new_ctx();
        match gateway.request_filter(session, &mut ctx).await {
            Ok(()) => {
                gateway.logging(session, None, &mut ctx);
                true
            }
            Err(e) => {
                // Nearly always the client went away while the answer was written; otherwise
                // (an answer not yet begun) the client gets a bare error status.
                let status = failure_status(&e);
                if status > 0 && session.response_written().is_none() {
                    let _ = session.respond_error(status).await;
                }
                tracing::debug!("serving a request failed: {e}");
                gateway.logging(session, Some(&e), &mut ctx);
                session.on_proxy_failure(e);
                false
            }
        }
    }
}

/// The status a failed request is answered with, 0 for none (the client is gone): Pingora's
/// choice for a failed proxy phase.
fn failure_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use pingora::protocols::l4::stream::Stream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One session serves three requests of a kept-alive connection, reset in place after each:
    /// each request is read whole and fresh (its own head and body, no answer yet written),
    /// the keep-alive settings and the reuse count carry over as Pingora's loop carries them,
    /// and `Connection: close` ends it.
    #[tokio::test]
    async fn a_kept_alive_session_is_reset_in_place_for_each_next_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut out = Vec::new();
            for req in [
                &b"POST /one HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nfirst"[..],
                b"POST /two HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n",
                b"GET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            ] {
                c.write_all(req).await.unwrap();
                // The answer (`ok`, two bytes, after its head) before the next request.
                let mut buf = [0u8; 1024];
                let mut got = Vec::new();
                while !got.ends_with(b"\r\n\r\nok") {
                    let n = c.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed early after {:?}", String::from_utf8_lossy(&got));
                    got.extend_from_slice(&buf[..n]);
                }
                out.push(String::from_utf8(got).unwrap());
            }
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "nothing after the last answer");
            out
        });
        let (server, _) = listener.accept().await.unwrap();
        let mut session = ServerSession::new_http1(Box::new(Stream::from(server)));
        session.set_keepalive(Some(60));
        let ServerSession::H1(s) = &mut session else { unreachable!() };
        s.set_keepalive_reuses_remaining(Some(10));
        let mut seen = Vec::new();
        for round in 0..3 {
            assert!(session.read_request().await.unwrap());
            assert!(session.response_written().is_none(), "round {round}: a fresh session");
            let path = session.req_header().uri.path().to_string();
            let mut body = Vec::new();
            while let Some(b) = session.read_request_body().await.unwrap() {
                body.extend_from_slice(&b);
            }
            seen.push((path, String::from_utf8(body).unwrap()));
            let mut head = pingora::http::ResponseHeader::build(200, None).unwrap();
            head.insert_header("content-length", "2").unwrap();
            session.write_response_header(Box::new(head)).await.unwrap();
            session.write_response_body(bytes::Bytes::from_static(b"ok"), true).await.unwrap();
            // What Pingora's loop would carry to the next session (`HttpPersistentSettings`).
            let keepalive = session.get_keepalive();
            let ServerSession::H1(s) = &mut session else { unreachable!() };
            let kept = s.finish_and_reset().await.unwrap();
            assert_eq!(kept, round < 2, "round {round}: kept unless the client asked to close");
            if kept {
                assert_eq!(s.get_keepalive_reuses_remaining(), Some(9 - round), "one reuse fewer each time");
                assert_eq!(session.get_keepalive(), keepalive, "the keep-alive timeout carries over");
            }
        }
        drop(session);
        let answers = client.await.unwrap();
        assert_eq!(
            seen,
            [
                ("/one".into(), "first".into()),
                ("/two".into(), "second".into()),
                ("/three".into(), String::new())
            ]
        );
        assert!(answers.iter().all(|a| a.starts_with("HTTP/1.1 200")), "{answers:?}");
        assert!(answers[2].to_ascii_lowercase().contains("connection: close"), "{}", answers[2]);
    }

    #[test]
    fn a_failure_is_answered_like_pingora_answered_it() {
        let gone = Error::new(ErrorType::WriteError).into_down();
        assert_eq!(failure_status(&gone), 0, "the client is gone: no answer");
        let bad_body = Error::new(ErrorType::InvalidHTTPHeader).into_down();
        assert_eq!(failure_status(&bad_body), 400);
        assert_eq!(failure_status(&Error::new(ErrorType::ConnectTimedout).into_up()), 502);
        assert_eq!(failure_status(&Error::new(ErrorType::InternalError)), 500);
        assert_eq!(failure_status(&Error::new(ErrorType::HTTPStatus(413))), 413);
    }
}
