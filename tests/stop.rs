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
