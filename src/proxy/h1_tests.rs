//! The upstream HTTP/1.1 exchange against a real loopback socket that answers with given bytes,
//! cut into given pieces.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn req(headers: Vec<(&'static str, String)>) -> UpstreamRequest {
    UpstreamRequest {
        method: http::Method::POST,
        path_and_query: "/v1/messages?beta=true".into(),
        headers,
        body: Bytes::new(),
    }
}

/// A server that reads one request (head and Content-Length or chunked body, as raw bytes),
/// then writes `pieces` one by one (flushing each, so each can arrive in a read of its own),
/// then waits for the client to close. Returns the port and a handle yielding the request bytes.
async fn server(pieces: Vec<Vec<u8>>) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while !request_complete(&got) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before its request was whole: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        for p in pieces {
            s.write_all(&p).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Keep the connection open until the client closes it (or 5 s pass).
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        got
    });
    (port, task)
}

fn request_complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let body = &got[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap())
        .unwrap_or(0);
    body.len() >= len
}

async fn connect(port: u16, timeout: Duration) -> Box<Conn> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
    Box::new(Conn::new(stream, timeout))
}

/// Send `body` (Content-Length), read the answer: its head, its body and whether it may be reused.
async fn exchange(pieces: Vec<&[u8]>, body: &[u8]) -> Result<(ResponseHead, Vec<u8>, Vec<u8>), Error> {
    let (port, srv) = server(pieces.into_iter().map(<[u8]>::to_vec).collect()).await;
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start("api.test", &req(vec![]), "application/json", Some(body.len())).unwrap();
    conn.write(body).await.unwrap();
    let mut ex = conn.finish(false).await?;
    let mut got = Vec::new();
    let read = async {
        while let Some(c) = ex.next_chunk().await? {
            got.extend_from_slice(&c);
        }
        Ok::<_, Error>(())
    }
    .await;
    let done = ex.done();
    let Exchange { head, conn, .. } = ex;
    drop(conn); // closed: the server stops waiting
    let sent = srv.await.unwrap();
    read?;
    assert!(done, "the body was read to its end");
    Ok((head, got, sent))
}

async fn reusable(pieces: Vec<&[u8]>) -> bool {
    let (port, _srv) = server(pieces.into_iter().map(<[u8]>::to_vec).collect()).await;
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start("api.test", &req(vec![]), "application/json", Some(0)).unwrap();
    let mut ex = conn.finish(false).await.unwrap();
    while ex.next_chunk().await.unwrap().is_some() {}
    ex.into_reusable().is_some()
}

#[test]
fn the_request_head_is_plain_http_1_1_text() {
    let r = req(vec![("x-api-key", "sk-test".into()), ("anthropic-version", "2023-06-01".into())]);
    let mut out = Vec::new();
    request_head(&mut out, "api.test:443", &r, "application/json", Some(42)).unwrap();
    let ua = concat!("llm-gateway/", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "POST /v1/messages?beta=true HTTP/1.1\r\nHost: api.test:443\r\nContent-Type: application/json\r\n\
             Content-Length: 42\r\nAccept-Encoding: identity\r\nUser-Agent: {ua}\r\nx-api-key: sk-test\r\n\
             anthropic-version: 2023-06-01\r\n\r\n"
        )
    );
    let mut out = Vec::new();
    request_head(
        &mut out,
        "h",
        &req(vec![("accept-encoding", "gzip".into())]),
        "multipart/form-data; boundary=b",
        None,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\r\nTransfer-Encoding: chunked\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Type: multipart/form-data; boundary=b\r\n"), "{text}");
    assert!(text.contains("\r\naccept-encoding: gzip\r\n") && !text.contains("identity"), "replaced: {text}");
}

#[test]
fn a_request_head_that_could_break_the_framing_is_refused() {
    let refused = |r: UpstreamRequest, ct: &str| request_head(&mut Vec::new(), "h", &r, ct, Some(1)).is_err();
    assert!(refused(req(vec![("x-api-key", "a\r\nx-evil: 1".into())]), "application/json"));
    assert!(refused(req(vec![("x-api-key", "a\nb".into())]), "application/json"));
    assert!(refused(req(vec![("bad name", "v".into())]), "application/json"));
    assert!(refused(req(vec![("content-length", "5".into())]), "application/json"));
    assert!(refused(req(vec![("Transfer-Encoding", "chunked".into())]), "application/json"));
    assert!(refused(req(vec![("host", "elsewhere".into())]), "application/json"));
    assert!(refused(req(vec![]), "text/plain\r\nx: y"));
    let path = |p: &str| UpstreamRequest { path_and_query: p.into(), ..req(vec![]) };
    assert!(refused(path("/a b"), "application/json"));
    assert!(refused(path("/a\r\nb"), "application/json"));
    assert!(refused(path("v1/x"), "application/json"));
    assert!(!refused(path("/v1/models/m:generateContent?alt=sse"), "application/json"));
}

#[tokio::test]
async fn a_content_length_body_is_read_to_its_exact_end_and_the_connection_is_kept() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nX-Mixed-Case: v\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"xyz\"}";
    let (head, body, sent) = exchange(vec![answer], b"{\"q\":1}").await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.get("x-mixed-case"), Some("v"));
    assert_eq!(head.get("CONTENT-TYPE"), Some("application/json"));
    assert_eq!(head.get("missing"), None);
    assert_eq!(body, b"{\"a\":\"xyz\"}");
    let sent = String::from_utf8(sent).unwrap();
    assert!(sent.starts_with("POST /v1/messages?beta=true HTTP/1.1\r\n"), "{sent}");
    assert!(sent.contains("\r\nContent-Length: 7\r\n") && sent.ends_with("\r\n\r\n{\"q\":1}"), "{sent}");
    let map = head.to_header_map();
    assert_eq!(map.get("x-mixed-case").unwrap(), "v");
    assert_eq!(map.len(), 3);
    assert!(reusable(vec![answer]).await);
}

#[tokio::test]
async fn a_head_and_body_cut_at_every_byte_read_the_same() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    for cut in 1..answer.len() {
        let (head, body, ..) = exchange(vec![&answer[..cut], &answer[cut..]], b"").await.unwrap();
        assert_eq!((head.status, body.as_slice()), (200, &b"hello"[..]), "cut at {cut}");
    }
}

#[tokio::test]
async fn a_chunked_body_with_extensions_and_trailers_is_decoded_wherever_it_is_cut() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\n, abcdefghijklmnopqrstuvwx\r\n0\r\nx-trailer: t\r\n\r\n";
    let want: &[u8] = b"hello, abcdefghijklmnopqrstuvwx";
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for cut in head_end..answer.len() {
        let (_, body, ..) = exchange(vec![&answer[..cut], &answer[cut..]], b"").await.unwrap();
        assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(want), "cut at {cut}");
    }
    assert!(reusable(vec![answer]).await, "a chunked body read to its end keeps the connection");
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let (head, body, ..) = exchange(
        vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!((head.status, body.as_slice()), (201, &b"ok"[..]));
    assert_eq!(head.get("link"), None);
}

#[tokio::test]
async fn a_body_without_a_length_is_read_to_the_close_and_the_connection_is_not_kept() {
    let (port, _srv) = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let srv = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n")
                .await
                .unwrap();
            s.write_all(b"data: 2\n\n").await.unwrap();
            // dropped: closed
        });
        (port, srv)
    };
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start("h", &req(vec![]), "application/json", Some(0)).unwrap();
    let mut ex = conn.finish(false).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = ex.next_chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert_eq!(got, b"data: 1\n\ndata: 2\n\n");
    assert!(ex.into_reusable().is_none());
}

#[tokio::test]
async fn keep_alive_follows_the_version_and_connection_header() {
    assert!(!reusable(vec![b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]).await);
    assert!(!reusable(vec![b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"]).await);
    assert!(reusable(vec![b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"]).await);
    assert!(reusable(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]).await);
    // Bytes after the body: the connection's state is unknown, so it is not kept.
    assert!(!reusable(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy"]).await);
}

#[tokio::test]
async fn bad_answers_are_errors_not_guesses() {
    let bad = |a: &'static [u8]| async move { exchange(vec![a], b"").await.err().map(|e| e.to_string()) };
    let e = bad(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").await;
    assert!(e.as_deref().is_some_and(|e| e.contains("conflicting Content-Length")), "{e:?}");
    let e = bad(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").await;
    assert!(e.as_deref().is_some_and(|e| e.contains("invalid Content-Length")), "{e:?}");
    let e = bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await;
    assert!(e.as_deref().is_some_and(|e| e.contains("invalid chunk size")), "{e:?}");
    let e = bad(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n").await;
    assert!(e.as_deref().is_some_and(|e| e.contains("longer than its size")), "{e:?}");
    let e = bad(b"SMTP ready\r\n\r\n").await;
    assert!(e.as_deref().is_some_and(|e| e.contains("invalid answer header")), "{e:?}");
}

#[tokio::test]
async fn an_answer_cut_short_says_what_was_missing() {
    for (answer, what) in [
        (&b"HTTP/1.1 200 OK\r\nContent-Le"[..], "the answer's header"),
        (&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..], "the answer's body ended"),
        (
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"[..],
            "the answer's last chunk",
        ),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = answer.to_vec();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(&answer).await.unwrap();
        });
        let mut conn = connect(port, Duration::from_secs(5)).await;
        conn.start("h", &req(vec![]), "application/json", Some(0)).unwrap();
        let e = match conn.finish(false).await {
            Err(e) => e,
            Ok(mut ex) => loop {
                match ex.next_chunk().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("a cut answer read as whole"),
                    Err(e) => break e,
                }
            },
        };
        assert!(matches!(e, Error::Closed(w) if w == what), "{e}: want {what}");
    }
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let mut conn = connect(port, Duration::from_millis(200)).await;
    conn.start("h", &req(vec![]), "application/json", Some(0)).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(conn.finish(false).await, Err(Error::Timeout)));
    assert!(started.elapsed() < Duration::from_secs(3));
    srv.abort();
}

#[tokio::test]
async fn a_small_request_leaves_in_one_write_and_a_large_or_chunked_one_whole() {
    // Small: head and body in the held buffer until finish.
    let (port, srv) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()]).await;
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start("h", &req(vec![]), "application/json", Some(3)).unwrap();
    conn.write(b"abc").await.unwrap();
    assert!(conn.out.ends_with(b"\r\n\r\nabc"), "held with its head");
    drop(conn.finish(false).await.unwrap());
    assert!(srv.await.unwrap().ends_with(b"\r\n\r\nabc"));

    // Large: over HOLD, written through; the upstream gets every byte.
    let big: Vec<u8> = (0..HOLD * 3 + 17).map(|i| b'a' + (i % 26) as u8).collect();
    let (port, srv) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()]).await;
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start("h", &req(vec![]), "application/json", Some(big.len())).unwrap();
    conn.write(&big).await.unwrap();
    drop(conn.finish(false).await.unwrap());
    let sent = srv.await.unwrap();
    assert!(sent.ends_with(&big));

    // Chunked: each write is one chunk, then the last chunk.
    let (port, srv) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()]).await;
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start("h", &req(vec![]), "multipart/form-data; boundary=b", None).unwrap();
    conn.write(b"hello").await.unwrap();
    conn.write(b"").await.unwrap();
    conn.write(&big).await.unwrap();
    drop(conn.finish(false).await.unwrap());
    let sent = srv.await.unwrap();
    let mut want = b"\r\n\r\n5\r\nhello\r\n".to_vec();
    want.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
    want.extend_from_slice(&big);
    want.extend_from_slice(b"\r\n0\r\n\r\n");
    assert!(sent.ends_with(&want), "chunked framing");
}

#[tokio::test]
async fn a_head_request_or_a_304_has_no_body() {
    let (port, _srv) = server(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec()]).await;
    let mut conn = connect(port, Duration::from_secs(5)).await;
    conn.start(
        "h",
        &UpstreamRequest { method: http::Method::HEAD, ..req(vec![]) },
        "application/json",
        Some(0),
    )
    .unwrap();
    let mut ex = conn.finish(true).await.unwrap();
    assert!(ex.done());
    assert!(ex.next_chunk().await.unwrap().is_none());
    assert!(ex.into_reusable().is_some());
    let (head, body, ..) =
        exchange(vec![b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"], b"").await.unwrap();
    assert_eq!((head.status, body.len()), (304, 0));
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
    while answer.len() <= MAX_HEAD {
        answer.extend_from_slice(
            b"X-Pad: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    let answer: &'static [u8] = answer.leak();
    let e = exchange(vec![answer], b"").await.err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("header fields") || e.contains("bytes")), "{e:?}");
}
