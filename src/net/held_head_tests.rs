use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, TimingDigest,
    UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::HeldHead;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A connection that records each write call (one "syscall" each), accepts at most `max`
/// bytes per call, and answers reads with `RESPONSE`.
#[derive(Debug)]
struct Recorder {
    writes: Arc<Mutex<Vec<Vec<u8>>>>,
    max: usize,
    response: io::Cursor<Vec<u8>>,
}

fn recorder(max: usize) -> (Recorder, Arc<Mutex<Vec<Vec<u8>>>>) {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let r = Recorder { writes: writes.clone(), max, response: io::Cursor::new(RESPONSE.to_vec()) };
    (r, writes)
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.response).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut call = Vec::new();
        for b in bufs {
            let room = self.max - call.len();
            call.extend_from_slice(&b[..b.len().min(room)]);
        }
        let n = call.len();
        self.writes.lock().push(call);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Shutdown for Recorder {
    async fn shutdown(&mut self) {}
}
impl UniqueID for Recorder {
    fn id(&self) -> UniqueIDType {
        7
    }
}
impl Ssl for Recorder {}
impl GetTimingDigest for Recorder {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}
impl GetProxyDigest for Recorder {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}
impl GetSocketDigest for Recorder {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}
#[async_trait]
impl Peek for Recorder {}

fn post(framing: (&'static str, &'static str)) -> Box<RequestHeader> {
    let mut h = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    h.insert_header("host", "up.test").unwrap();
    h.insert_header(framing.0, framing.1).unwrap();
    Box::new(h)
}

fn head_bytes(h: &RequestHeader) -> Vec<u8> {
    pingora::protocols::http::v1::client::http_req_header_to_wire(h).unwrap().to_vec()
}

#[tokio::test]
async fn the_head_and_a_known_length_body_leave_in_one_write() {
    let (conn, writes) = recorder(usize::MAX);
    let mut s = HttpSession::new(HeldHead::for_request(Box::new(conn)));
    let req = post(("content-length", "11"));
    let mut expected = head_bytes(&req);
    expected.extend_from_slice(b"{\"a\":\"bcd\"}");
    s.write_request_header(req).await.unwrap();
    assert!(writes.lock().is_empty(), "the head is held");
    s.write_body(b"{\"a\":\"bcd\"}").await.unwrap();
    s.finish_body().await.unwrap();
    assert_eq!(*writes.lock(), vec![expected]);
    // The answer is read as before.
    s.read_response().await.unwrap();
    assert_eq!(s.get_status().map(|c| c.as_u16()), Some(200));
    assert_eq!(s.read_body_bytes().await.unwrap(), Some(Bytes::from_static(b"ok")));
}

#[tokio::test]
async fn a_request_without_a_body_leaves_when_it_is_finished() {
    let (conn, writes) = recorder(usize::MAX);
    let mut s = HttpSession::new(HeldHead::for_request(Box::new(conn)));
    let req = post(("content-length", "0"));
    let expected = head_bytes(&req);
    s.write_request_header(req).await.unwrap();
    s.finish_body().await.unwrap();
    assert_eq!(*writes.lock(), vec![expected]);
}

#[tokio::test]
async fn a_chunked_head_leaves_with_the_first_chunk_and_later_chunks_pass_through() {
    let (conn, writes) = recorder(usize::MAX);
    let mut s = HttpSession::new(HeldHead::for_request(Box::new(conn)));
    let req = post(("transfer-encoding", "chunked"));
    let mut first = head_bytes(&req);
    first.extend_from_slice(b"3\r\nabc\r\n");
    s.write_request_header(req).await.unwrap();
    s.write_body(b"abc").await.unwrap();
    s.write_body(b"de").await.unwrap();
    s.finish_body().await.unwrap();
    let w = writes.lock();
    assert_eq!(w[0], first);
    assert_eq!(w[1..].concat(), b"2\r\nde\r\n0\r\n\r\n");
}

#[tokio::test]
async fn partial_writes_send_every_byte_in_order() {
    let (conn, writes) = recorder(7);
    let mut s = HttpSession::new(HeldHead::for_request(Box::new(conn)));
    let body = b"0123456789abcdefghij";
    let req = post(("content-length", "20"));
    let mut expected = head_bytes(&req);
    expected.extend_from_slice(body);
    s.write_request_header(req).await.unwrap();
    s.write_body(body).await.unwrap();
    s.finish_body().await.unwrap();
    let w = writes.lock();
    assert!(w.iter().all(|c| c.len() <= 7));
    assert_eq!(w.concat(), expected);
}

#[tokio::test]
async fn a_read_sends_a_held_head_first() {
    let (conn, writes) = recorder(usize::MAX);
    let mut s = HttpSession::new(HeldHead::for_request(Box::new(conn)));
    let req = post(("content-length", "0"));
    let expected = head_bytes(&req);
    s.write_request_header(req).await.unwrap();
    // Read without finishing the body: the head must not stay behind.
    s.read_response().await.unwrap();
    assert_eq!(*writes.lock(), vec![expected]);
}

#[test]
fn a_pooled_stream_is_rearmed_not_wrapped_twice() {
    let (conn, _) = recorder(usize::MAX);
    let once = HeldHead::for_request(Box::new(conn));
    let twice = HeldHead::for_request(once);
    let held = twice.as_any().downcast_ref::<HeldHead>().expect("a HeldHead");
    assert!(held.inner.as_any().is::<Recorder>(), "the inner stream is the connection itself");
    assert!(held.holding);
    assert_eq!(twice.id(), 7, "the connection's identity passes through (the pool checks it)");
}
