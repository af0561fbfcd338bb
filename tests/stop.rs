//! A graceful stop keeps streams: SIGTERM during 100 long streams lets every one finish (all
//! events and `[DONE]`), writes every usage line, refuses new connections, and exits 0 as soon
//! as the last stream is accounted — within `limits.shutdown_grace_s`, not after it.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_100_long_streams_finishes_them_all_writes_every_line_and_exits_0() {
    let up = MockUpstream::start(|_, _| tick_stream(10, Duration::from_millis(200))).await;
    let cfg = openai_config(&up.url()).limits(serde_json::json!({ "shutdown_grace_s": 20 }));
    let mut gw = Gateway::start(&cfg).await;
    let url = gw.url("/v1/chat/completions");
    let streams = open_streams(&url, 100);
    eventually(Duration::from_secs(10), "all 100 streams reached the upstream", || async {
        up.count() == 100
    })
    .await;
    let stop = Instant::now();
    gw.sigterm();
    let code = gw.wait_exit(Duration::from_secs(20)).await;
    let took = stop.elapsed();
    let mut complete = 0;
    for s in streams {
        let text = s.await.unwrap();
        if tick_stream_complete(&text, 10) {
            complete += 1;
        }
    }
    let usage = std::fs::read_to_string(gw.dir.path().join("state/usage.jsonl")).unwrap_or_default();
    let lines: Vec<serde_json::Value> = usage.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    eprintln!("SIGTERM with 100 streams of 2 s in flight: {complete} complete, {} usage lines, exit {code:?} after {took:?}", lines.len());
    assert_eq!(complete, 100, "every stream completes");
    assert_eq!(lines.len(), 100, "every usage line is written");
    assert!(lines.iter().all(|l| l["status"] == 200 && l["output_tokens"] == 10), "{:?}", lines.first());
    assert_eq!(code, Some(0), "exit 0; log:\n{}", gw.log());
    assert!(took < Duration::from_secs(10), "exits when the streams end, not after the grace: {took:?}");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.is_err(), "no longer listening");
}

/// A kept-alive client connection idle between requests is closed as soon as the service
/// stops (the data plane's stop wake-up, registered once per connection), while a stream on
/// another connection still runs to its end: the idle one is not kept until the process exits.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_an_idle_kept_alive_connection_while_a_stream_finishes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let up = MockUpstream::start(|r, _| {
        if String::from_utf8_lossy(&r.body).contains("\"stream\":true") {
            tick_stream(10, Duration::from_millis(300))
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let cfg = openai_config(&up.url()).limits(serde_json::json!({ "shutdown_grace_s": 20 }));
    let mut gw = Gateway::start(&cfg).await;
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    // Two requests on the connection: the second is served in the same data-plane call.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The answer is complete when its declared length has arrived.
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let n = c.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the connection closed before the answer ended: {}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .expect("a content-length");
                    if got.len() >= end + 4 + len {
                        return text;
                    }
                }
            }
        });
        answers.push(done.await.expect("an answer within 10 s"));
    }
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("connection: keep-alive\r\n"), "{a}");
        assert!(a.contains("\"content\":\"ok\""), "{a}");
    }
    // A 3 s stream on another connection keeps the process running after the stop.
    let streams = open_streams(&gw.url("/v1/chat/completions"), 1);
    eventually(Duration::from_secs(10), "the stream reached the upstream", || async { up.count() == 3 })
        .await;
    let stop = Instant::now();
    gw.sigterm();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_millis(1500), c.read(&mut buf))
        .await
        .expect("the idle connection is closed at the stop, not when the stream ends")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without another answer: {:?}", String::from_utf8_lossy(&buf[..n]));
    let closed = stop.elapsed();
    let text = streams.into_iter().next().unwrap().await.unwrap();
    assert!(tick_stream_complete(&text, 10), "the stream still completes: {text}");
    let code = gw.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "exit 0; log:\n{}", gw.log());
    eprintln!("idle connection closed {closed:?} after SIGTERM; exit after {:?}", stop.elapsed());
}
