//! One `writev` per upstream request: a wrapper around a pooled upstream stream that holds the
//! request head Pingora's HTTP/1 client writes (and flushes) until the first body write or the
//! next flush, then sends both in one vectored write. Pingora still frames the whole exchange
//! (Content-Length accounting, chunked encoding, keep-alive); only the moment the head's bytes
//! reach the socket moves. Does not buffer bodies: after the head has gone, writes pass through.
//!
//! Why: `v1::client::HttpSession::write_request_header` flushes the head before the body can
//! be written, and the connector's streams have no write buffer, so a request cost two `sendto`
//! (head, body) and the upstream two wake-ups. The wrapper stays on the stream in the pool and
//! is re-armed for each request by `for_request`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that holds what is written up to the first flush (the request head) and sends it
/// with the next write.
#[derive(Debug)]
pub struct HeldHead {
    inner: Stream,
    /// Bytes written but not yet sent (the head).
    held: BytesMut,
    /// Writes are held until the next flush (the head is being written).
    holding: bool,
}

// === impl HeldHead ===

impl HeldHead {
    /// `stream`, ready for the next request: wrapped on first use (the wrapper then stays on the
    /// stream in the pool), and set to hold the request head that is written next.
    pub fn for_request(stream: Stream) -> Stream {
        let mut held = if stream.as_any().is::<HeldHead>() {
            match stream.into_any().downcast::<HeldHead>() {
                Ok(h) => h,
                Err(_) => unreachable!("checked with is::<HeldHead>()"),
            }
        } else {
            Box::new(HeldHead { inner: stream, held: BytesMut::new(), holding: false })
        };
        held.held.clear();
        held.holding = true;
        held
    }

    /// Send what is held (alone), before a read, a flush or a shutdown.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.holding = false;
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Send what is held followed by `bufs`; returns how much of `bufs` was sent.
    fn poll_send_with(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        while !self.held.is_empty() {
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(IoSlice::new(&self.held));
            slices.extend(bufs.iter().map(|b| IoSlice::new(b)));
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let head = self.held.len();
            if n < head {
                self.held.advance(n);
                continue;
            }
            self.held.clear();
            let sent = n - head;
            if sent > 0 || bufs.iter().all(|b| b.is_empty()) {
                return Poll::Ready(Ok(sent));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl AsyncRead for HeldHead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Whoever reads expects the request to be out.
        if self.holding || !self.held.is_empty() {
            ready!(self.poll_send_held(cx))?;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HeldHead {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.holding {
            self.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        if self.held.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        self.poll_send_with(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.holding {
            let mut n = 0;
            for b in bufs {
                self.held.extend_from_slice(b);
                n += b.len();
            }
            return Poll::Ready(Ok(n));
        }
        if self.held.is_empty() {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        self.poll_send_with(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// The flush that ends the head only stops holding: the head leaves with the next write
    /// (the body), or with the next flush when no body write comes.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.holding {
            self.holding = false;
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeldHead {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeldHead {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeldHead {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeldHead {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeldHead {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeldHead {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeldHead {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
#[path = "held_head_tests.rs"]
mod tests;
