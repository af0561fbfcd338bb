//! Issue 9 (hardening), from outside: the real gateway over HTTP against mock upstreams on
//! loopback, each test a defect that was observed (multipart with two `model` parts, passthrough
//! answers that are not what they claim, client that goes away, slow request heads, keys in logs).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Aliases `stt` (allowed) and `stt-dear` (not allowed for the key).
fn stt_config(up: &MockUpstream) -> String {
    format!(
        r#"limits: {{ upstream_timeout_ms: 5000, max_body_bytes: 20971520 }}
providers:
  - {{ name: up, kind: openai, base_url: "{}", api_key: sk-provider-secret }}
models:
  - {{ alias: stt, targets: [ {{ provider: up, model: whisper-1 }} ] }}
  - {{ alias: stt-dear, targets: [ {{ provider: up, model: whisper-dear }} ] }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}", models: [stt] }}
"#,
        up.url()
    )
}

fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, value) in parts {
        body.extend_from_slice(b"--BOUNDARY\r\n");
        body.extend_from_slice(headers.as_bytes());
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--BOUNDARY--\r\n");
    body
}

const MODEL: &str = "Content-Disposition: form-data; name=\"model\"";
const FILE: &str =
    "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav";

/// A key allowed only `stt` must not reach the provider with another model by adding a
/// second `model` part: before the second part or after a megabyte of file, the form is a 400
/// in OpenAI's shape and the provider never receives a complete request.
#[tokio::test(flavor = "multi_thread")]
async fn a_form_with_two_model_parts_is_refused_before_the_provider_sees_it() {
    let up = MockUpstream::start(|r, _| Reply::json(200, &format!(r#"{{"text":"{} bytes"}}"#, r.body.len())))
        .await;
    let gw = Gateway::start(&stt_config(&up)).await;
    let c = client();
    let audio = vec![7u8; 1 << 20];
    let send = |body: Vec<u8>| {
        c.post(gw.url("/v1/audio/transcriptions"))
            .bearer_auth(KEY)
            .header("content-type", "multipart/form-data; boundary=BOUNDARY")
            .body(body)
            .send()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "second model right after the first",
            form(&[(MODEL, b"stt"), (MODEL, b"whisper-dear"), (FILE, b"RIFF")]),
        ),
        (
            "second model after a 1 MiB file",
            form(&[(MODEL, b"stt"), (FILE, &audio), (MODEL, b"whisper-dear")]),
        ),
        (
            "second model spelled differently",
            form(&[
                (MODEL, b"stt"),
                (FILE, &audio),
                ("content-disposition: form-data; name=model", b"stt-dear"),
            ]),
        ),
    ];
    for (what, body) in cases {
        let r = send(body).await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{what}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("model"), "{what}: {v}");
        assert_eq!(up.count(), 0, "{what}: the provider received a complete request");
    }
    // One model part still goes through, rewritten.
    let r = send(form(&[(MODEL, b"stt"), (FILE, &audio)])).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
    let got = &up.requests()[0].body;
    assert!(got.windows(9).any(|w| w == b"whisper-1"));
    assert!(!got.windows(12).any(|w| w == b"whisper-dear"));
    let usage = gw.usage_lines(4).await;
    let statuses: Vec<u64> = usage.iter().map(|u| u["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![400, 400, 400, 200]);
}

/// An upstream that answers the n-th request with `replies[n % len]`, raw bytes, then closes
/// the connection. Counts requests.
async fn raw_upstream(replies: Vec<Vec<u8>>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let (replies, n) = (std::sync::Arc::new(replies), count.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (replies, n) = (replies.clone(), n.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Ok(Some(_)) = read_request(&mut sock, &mut buf).await {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    let _ = sock.write_all(&replies[i % replies.len()]).await;
                    let _ = sock.shutdown().await;
                }
            });
        }
    });
    (url, count)
}

const OK: &str = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
const OK_SSE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";

/// `bad` first, then the fallback alias `good`; `solo` has only `bad`.
fn failover_config(bad: &str, good: &str) -> String {
    format!(
        r#"limits: {{ upstream_timeout_ms: 3000, max_attempts: 1, circuit_breaker: {{ failure_threshold: 100, cooldown_s: 1 }} }}
providers:
  - {{ name: pa, kind: openai_compatible, base_url: "{bad}" }}
  - {{ name: pb, kind: openai_compatible, base_url: "{good}" }}
models:
  - alias: a
    targets: [ {{ provider: pa, model: m-bad }} ]
    fallbacks: [good]
  - alias: good
    targets: [ {{ provider: pb, model: m-good }} ]
  - alias: solo
    targets: [ {{ provider: pa, model: m-bad }} ]
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
"#
    )
}

fn head(status: u16, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} OK\r\n{headers}\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// A same-format (passthrough) 2xx that is not a usable answer is the target's failure: the
/// next target answers, and when none can the client gets a 502 naming the target, logged
/// as 502, never a 200 with 0 tokens.
#[tokio::test(flavor = "multi_thread")]
async fn a_passthrough_answer_that_is_not_valid_fails_over_instead_of_reaching_the_client() {
    let json = "content-type: application/json\r\n";
    let cases: Vec<(&str, bool, Vec<u8>)> = vec![
        ("truncated JSON", false, head(200, &format!("{json}content-length: 30\r\n"), &OK.as_bytes()[..30])),
        (
            "body shorter than content-length",
            false,
            head(200, &format!("{json}content-length: 400\r\n"), &OK.as_bytes()[..60]),
        ),
        (
            "html page",
            false,
            head(200, "content-type: text/html\r\ncontent-length: 17\r\n", b"<html>oops</html>"),
        ),
        ("plain text", false, head(200, "content-type: text/plain\r\ncontent-length: 2\r\n", b"ok")),
        (
            "gzip not asked for",
            false,
            head(
                200,
                &format!("{json}content-encoding: gzip\r\ncontent-length: 10\r\n"),
                b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
            ),
        ),
        ("empty body", false, head(200, &format!("{json}content-length: 0\r\n"), b"")),
        (
            "chunked body cut short",
            false,
            head(200, &format!("{json}transfer-encoding: chunked\r\n"), b"40\r\n{\"id\":\"c\",\"choices\""),
        ),
        (
            "gzip stream not asked for",
            true,
            head(
                200,
                "content-type: text/event-stream\r\ncontent-encoding: gzip\r\ncontent-length: 10\r\n",
                b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
            ),
        ),
        (
            "whole JSON for a stream",
            true,
            head(200, &format!("{json}content-length: {}\r\n", OK.len()), OK.as_bytes()),
        ),
    ];
    let (bad, bad_count) = raw_upstream(cases.iter().map(|c| c.2.clone()).collect()).await;
    let good = MockUpstream::start(|r, _| {
        if r.json()["stream"] == true {
            Reply::sse(vec![(Wait::None, OK_SSE)])
        } else {
            Reply::json(200, OK)
        }
    })
    .await;
    let gw = Gateway::start(&failover_config(&bad, &good.url())).await;
    let c = client();
    for (i, (what, stream, _)) in cases.iter().enumerate() {
        let body =
            format!(r#"{{"model":"a","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let r = c.post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(r.headers()["x-gateway-provider"], "pb", "{what}: the bad answer reached the client");
        assert_eq!(r.headers()["x-gateway-attempts"], "2", "{what}");
        let text = r.text().await.unwrap();
        if *stream {
            assert!(text.contains("\"content\":\"ok\"") && text.contains("[DONE]"), "{what}: {text}");
        } else {
            assert_eq!(text, OK, "{what}");
        }
        assert_eq!(bad_count.load(std::sync::atomic::Ordering::SeqCst), i + 1, "{what}");
        assert_eq!(good.count(), i + 1, "{what}");
    }
    let usage = gw.usage_lines(cases.len()).await;
    assert_eq!(usage.len(), cases.len());
    for u in &usage {
        assert_eq!((u["status"].as_u64(), u["provider"].as_str()), (Some(200), Some("pb")), "{u}");
        assert_eq!((u["input_tokens"].as_u64(), u["output_tokens"].as_u64()), (Some(3), Some(2)), "{u}");
    }

    // No other target: a 502 naming the target and what was wrong, logged as a 502.
    let r = c
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(r#"{"model":"solo","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("pa/m-bad") && msg.contains("not JSON"), "{msg}");
    let usage = gw.usage_lines(cases.len() + 1).await;
    let last = usage.last().unwrap();
    assert_eq!((last["status"].as_u64(), last["input_tokens"].as_u64()), (Some(502), Some(0)), "{last}");
}

/// A client that goes away from a non-stream request: the upstream call is cancelled (its
/// connection closed long before the answer was due) and the usage line says 499, not 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_cancels_the_upstream_call_and_is_logged_as_499() {
    use std::sync::Arc;
    let received = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let closed = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", listener.local_addr().unwrap());
    let (rec, clo) = (received.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (rec, clo) = (rec.clone(), clo.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Ok(Some(_)) = read_request(&mut sock, &mut buf).await {
                    *rec.lock() = Some(Instant::now());
                    let mut one = [0u8; 1];
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(8)) => {
                            let _ = sock.write_all(&head(200, &format!("content-type: application/json\r\ncontent-length: {}\r\n", OK.len()), OK.as_bytes())).await;
                        }
                        _ = sock.read(&mut one) => { *clo.lock() = Some(Instant::now()); }
                    }
                }
            });
        }
    });
    // The upstream timeout is well past the 4 s the test waits: only the client leaving can
    // end the upstream call in time.
    let cfg = openai_config(&up_url).limits(serde_json::json!({ "upstream_timeout_ms": 10000 }));
    let gw = Gateway::start(&cfg).await;
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.lock().is_none() {
        assert!(Instant::now() < deadline, "the upstream never got the request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(sock);
    let gone = Instant::now();
    let deadline = gone + Duration::from_secs(4);
    let closed_at = loop {
        if let Some(t) = *closed.lock() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream call was not cancelled within 4 s of the client leaving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let after = closed_at.saturating_duration_since(gone);
    println!("upstream connection closed {after:?} after the client left");
    assert!(after < Duration::from_secs(2), "{after:?}");
    let usage = gw.usage_lines(1).await;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["status"], 499, "{}", usage[0]);
    assert!(usage[0]["error"].as_str().unwrap_or("").contains("client went away"), "{}", usage[0]);
}

/// No key in any log line at any level: with `trace` on, a Gemini stream named with `?key=`
/// that the client drops, and one request per way of sending a key, then not one byte of the
/// virtual key or of any provider key may be in the captured stderr.
#[tokio::test(flavor = "multi_thread")]
async fn no_key_reaches_the_log_at_trace_level() {
    // Not shaped like any known token (no `sk-`, `AIza`…): only redaction by place can hide them.
    const VKEY: &str = "plainvirtualkey4242";
    const PROVIDER_KEYS: [&str; 4] =
        ["provsecretOA0001", "anthsecretAN0002", "gemsecretGM0003", "azsecretAZ0004"];
    let openai = common::providers::openai().await;
    let anthropic = common::providers::anthropic().await;
    let gemini = MockUpstream::start(|r, _| {
        let chunk = r#"data: {"candidates":[{"content":{"role":"model","parts":[{"text":"hi "}]},"index":0}]}"#;
        if r.path.contains(":streamGenerateContent") {
            // Slow: an event every 100 ms for 3 s, so the gateway is still writing when the
            // client has gone.
            let parts: Vec<(Wait, Vec<u8>)> =
                (0..30).map(|_| (Wait::Delay(Duration::from_millis(100)), format!("{chunk}\n\n").into_bytes())).collect();
            return Reply::Stream { status: 200, content_type: "text/event-stream".into(), parts };
        }
        Reply::json(
            200,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":4}}"#,
        )
    })
    .await;
    let cfg = format!(
        r#"limits: {{ upstream_timeout_ms: 5000 }}
providers:
  - {{ name: oa, kind: openai, base_url: "{}", api_key: {} }}
  - {{ name: an, kind: anthropic, base_url: "{}", api_key: {} }}
  - {{ name: gm, kind: gemini, base_url: "{}", api_key: {} }}
  - {{ name: az, kind: azure_openai, base_url: "{}", api_key: {}, api_version: "2024-10-21" }}
models:
  - {{ alias: o, targets: [ {{ provider: oa, model: gpt-4o-mini }} ] }}
  - {{ alias: an, targets: [ {{ provider: an, model: claude-3-5-haiku-latest }} ] }}
  - {{ alias: g, targets: [ {{ provider: gm, model: gemini-2.0-flash }} ] }}
  - {{ alias: az, targets: [ {{ provider: az, model: my-deploy }} ] }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
  - {{ id: k2, hash: "{}" }}
"#,
        openai.url(),
        PROVIDER_KEYS[0],
        anthropic.url(),
        PROVIDER_KEYS[1],
        gemini.url(),
        PROVIDER_KEYS[2],
        openai.url(),
        PROVIDER_KEYS[3],
        llm_gateway::auth::stored_form(VKEY),
    );
    let gw = Gateway::start_with_env(&cfg, &[("LLM_GATEWAY_LOG", "trace")], &[]).await;
    let c = client();

    // The dropped Gemini stream, key in the URL.
    let mut r = c
        .post(gw.url(&format!("/v1beta/models/g:streamGenerateContent?alt=sse&key={VKEY}")))
        .body(r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);

    let chat = r#"{"model":"MODEL","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
    let gem = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let calls: Vec<(String, &str, String, String)> = vec![
        (
            "/v1/chat/completions".into(),
            "authorization",
            format!("Bearer {VKEY}"),
            chat.replace("MODEL", "o"),
        ),
        ("/v1/messages".into(), "x-api-key", VKEY.into(), chat.replace("MODEL", "an")),
        ("/v1beta/models/g:generateContent".into(), "x-goog-api-key", VKEY.into(), gem.into()),
        ("/v1/chat/completions".into(), "api-key", VKEY.into(), chat.replace("MODEL", "az")),
        (format!("/v1beta/models/g:generateContent?key={VKEY}"), "x-other", "1".into(), gem.into()),
    ];
    for (path, header, value, body) in &calls {
        let r = c.post(gw.url(path)).header(*header, value).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} with {header}: {}", r.text().await.unwrap());
    }
    // Every request has finished, the dropped stream included (its line comes when the
    // gateway notices the client is gone).
    let usage = gw.usage_lines(calls.len() + 1).await;
    assert_eq!(usage.len(), calls.len() + 1);
    let log = gw.log();
    let trace_lines = log.lines().filter(|l| l.contains("TRACE")).count();
    println!("captured {} log lines ({trace_lines} at TRACE), {} bytes", log.lines().count(), log.len());
    assert!(trace_lines > 20, "trace logging was on: {trace_lines} TRACE lines");
    assert!(log.contains("key=***"), "the URL with the key was logged, masked");
    // Pingora's own lines about the dropped stream (its header dump; an ERROR line if a write
    // to the gone client fails) name the URL, with the key masked.
    let stream_lines: Vec<&str> =
        log.lines().filter(|l| l.contains("streamGenerateContent") && l.contains("key=")).collect();
    assert!(
        !stream_lines.is_empty() && stream_lines.iter().all(|l| l.contains("key=***")),
        "{stream_lines:?}"
    );
    for secret in std::iter::once(VKEY).chain(PROVIDER_KEYS) {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
        assert!(hits.is_empty(), "{secret} appears {} times, e.g. {}", hits.len(), hits[0]);
    }
}

/// Seconds until the gateway closes `sock` (reads return 0 or fail), while `dribble` bytes
/// are sent one every `every`; `None` if still open after `give_up`.
async fn closed_after(
    sock: &mut tokio::net::TcpStream,
    dribble: &[u8],
    every: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut next = 0;
    let mut buf = [0u8; 256];
    while start.elapsed() < give_up {
        if next < dribble.len() && sock.write_all(&dribble[next..next + 1]).await.is_err() {
            return Some(start.elapsed());
        }
        next += 1;
        match tokio::time::timeout(every, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {} // an answer would be a bug the caller sees via the timing
            Err(_) => {}
        }
    }
    None
}

/// A client dribbling its request head (a byte every 300 ms) is cut at the header deadline
/// (`limits.header_timeout_ms`, 1 s here), and so is a connection that sends nothing; a
/// request whose head arrived in time is not cut however long its upstream takes.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_dribbling_its_request_head_is_cut_at_the_header_deadline() {
    let up = MockUpstream::start(|_, _| Reply::Stream {
        status: 200,
        content_type: "application/json".into(),
        parts: vec![(Wait::Delay(Duration::from_millis(2500)), OK.as_bytes().to_vec())],
    })
    .await;
    let cfg = openai_config(&up.url())
        .limits(serde_json::json!({ "header_timeout_ms": 1000, "upstream_timeout_ms": 5000 }));
    let gw = Gateway::start(&cfg).await;
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-length: 2\r\n\r\n{{}}");

    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let cut =
        closed_after(&mut sock, head.as_bytes(), Duration::from_millis(300), Duration::from_secs(8)).await;
    println!("dribbling client cut after {cut:?}");
    let cut = cut.expect("a client sending a byte every 300 ms was not cut within 8 s");
    assert!(cut >= Duration::from_millis(900) && cut < Duration::from_millis(2500), "{cut:?}");

    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    let cut = closed_after(&mut idle, b"", Duration::from_millis(100), Duration::from_secs(8)).await;
    println!("silent connection cut after {cut:?}");
    assert!(cut.is_some_and(|c| c < Duration::from_millis(2500)), "{cut:?}");

    // The admin listener has the same deadline.
    let admin_head =
        format!("GET /admin/health HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\r\n");
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", gw.admin_port)).await.unwrap();
    let cut =
        closed_after(&mut sock, admin_head.as_bytes(), Duration::from_millis(300), Duration::from_secs(8))
            .await;
    println!("dribbling admin client cut after {cut:?}");
    let cut = cut.expect("an admin client sending a byte every 300 ms was not cut within 8 s");
    assert!(cut >= Duration::from_millis(900) && cut < Duration::from_millis(2500), "{cut:?}");
    let r = client().get(gw.admin_url("/admin/health")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "a prompt admin request is served");

    // A head that arrived in time: the 2.5 s upstream wait is not the client's.
    let started = Instant::now();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), OK);
    assert!(started.elapsed() >= Duration::from_millis(2500));
}

/// Send raw bytes to the gateway and read its answer to the end (the connection closes).
async fn raw_exchange(gw: &Gateway, request: &[u8]) -> String {
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            // A complete answer with a body: done.
            Err(_) if out.windows(4).any(|w| w == b"\r\n\r\n") => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request body with broken chunked framing is a 400 in the caller's own shape (OpenAI,
/// Anthropic), not an empty 500, and nothing is sent upstream.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_chunked_request_body_is_a_400_in_the_callers_shape() {
    let up = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    for (path, shape) in
        [("/v1/chat/completions", r#""type":"invalid_request_error""#), ("/v1/messages", r#""type":"error""#)]
    {
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{{\"model\":\"fast\"}}\r\n0\r\n\r\n"
        );
        let answer = raw_exchange(&gw, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains(shape), "{path}: {answer}");
        assert!(answer.contains("request body could not be read"), "{path}: {answer}");
    }
    assert_eq!(up.count(), 0);
    // An upload whose framing breaks after its `model` part, while it is being forwarded.
    let part = "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nfast\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF";
    let req = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: multipart/form-data; boundary=B\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{part}\r\nzz\r\nmore\r\n0\r\n\r\n",
        part.len()
    );
    let answer = raw_exchange(&gw, req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "upload: {answer}");
    assert!(
        answer.contains("invalid_request_error") && answer.contains("could not be read"),
        "upload: {answer}"
    );
}

/// An upstream redirect is not passed on (a 302 without the gateway's say-so would send the
/// client to the provider): it is the target's failure, the next target answers, and with no
/// other target the client gets a 502.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_redirect_fails_over_and_is_never_passed_on() {
    let redirect =
        head(302, "location: https://provider.example/elsewhere?sig=abc\r\ncontent-length: 0\r\n", b"");
    let (bad, bad_count) = raw_upstream(vec![redirect]).await;
    let good = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let gw = Gateway::start(&failover_config(&bad, &good.url())).await;
    let c = client();
    let send = |model: &str| {
        c.post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .body(format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#))
            .send()
    };
    let r = send("a").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gateway-provider"], "pb");
    let r = send("solo").await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("location").is_none());
    let text = r.text().await.unwrap();
    assert!(text.contains("redirect") && !text.contains("provider.example"), "{text}");
    assert_eq!(bad_count.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// An upstream that sends its header and then stalls its body past the upstream timeout is a
/// timeout: 504, not 502.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_upstream_body_is_a_504() {
    let up = MockUpstream::start(|_, _| Reply::Stream {
        status: 200,
        content_type: "application/json".into(),
        parts: vec![
            (Wait::None, b"{\"id\":".to_vec()),
            (Wait::Delay(Duration::from_secs(6)), b"\"c\"}".to_vec()),
        ],
    })
    .await;
    let cfg = openai_config(&up.url()).limits(serde_json::json!({ "upstream_timeout_ms": 1000 }));
    let gw = Gateway::start(&cfg).await;
    let started = Instant::now();
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504, "{}", r.text().await.unwrap_or_default());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// An HTTP/1.0 client cannot read chunked framing: its stream comes close-delimited.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_1_0_client_gets_its_stream_without_chunked_framing() {
    let up = MockUpstream::start(|_, _| Reply::sse(vec![(Wait::None, OK_SSE)])).await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let body = r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(&gw, req.as_bytes()).await;
    let (head, rest) = answer.split_once("\r\n\r\n").expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");
    assert!(rest.starts_with("data: {"), "the body is the events themselves: {rest:?}");
    assert!(rest.contains("\"content\":\"ok\"") && rest.trim_end().ends_with("data: [DONE]"), "{rest:?}");
}

/// Requests pipelined on one connection are all answered, in order.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_all_answered_in_order() {
    let up = MockUpstream::start(|r, _| {
        let n = r.json()["messages"][0]["content"].as_str().unwrap_or("").to_string();
        Reply::json(200, &OK.replace("\"ok\"", &format!("\"answer {n}\"")))
    })
    .await;
    let gw = Gateway::start(&openai_config(&up.url())).await;
    let mut all = Vec::new();
    for n in 1..=3 {
        let body = format!(r#"{{"model":"fast","messages":[{{"role":"user","content":"{n}"}}]}}"#);
        all.extend_from_slice(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    all.extend_from_slice(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", gw.port)).await.unwrap();
    sock.write_all(&all).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let answers: Vec<usize> = ["answer 1", "answer 2", "answer 3", "\"status\":\"ok\""]
        .iter()
        .map(|a| text.find(a).unwrap_or_else(|| panic!("{a} missing from {text}")))
        .collect();
    assert!(answers.windows(2).all(|w| w[0] < w[1]), "out of order: {text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 4, "{text}");
}

/// A translated non-stream answer that is JSON but cannot be translated is the target's
/// failure: the fallback answers (it used to be a 502 with the fallback untried).
#[tokio::test(flavor = "multi_thread")]
async fn an_untranslatable_answer_fails_over_to_the_next_target() {
    let bad =
        MockUpstream::start(|_, _| Reply::json(200, r#"{"id":"msg_1","type":"message","content":5}"#)).await;
    let good = MockUpstream::start(|_, _| Reply::json(200, OK)).await;
    let cfg = format!(
        r#"limits: {{ upstream_timeout_ms: 3000, max_attempts: 1 }}
providers:
  - {{ name: pa, kind: anthropic, base_url: "{}", api_key: k1 }}
  - {{ name: pb, kind: openai_compatible, base_url: "{}" }}
models:
  - {{ alias: a, targets: [ {{ provider: pa, model: claude-x }} ], fallbacks: [good] }}
  - {{ alias: good, targets: [ {{ provider: pb, model: m-good }} ] }}
keys:
  - {{ id: k, hash: "{{KEY_HASH}}" }}
"#,
        bad.url(),
        good.url()
    );
    let gw = Gateway::start(&cfg).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(r#"{"model":"a","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-gateway-provider"], "pb");
    assert_eq!(r.text().await.unwrap(), OK);
    assert_eq!((bad.count(), good.count()), (1, 1));
    let usage = gw.usage_lines(1).await;
    let log = usage[0]["attempt_log"].to_string();
    assert!(log.contains("cannot translate"), "{log}");
}

/// A client that leaves a stream while the upstream is silent: the upstream connection is
/// closed at once (not when the next event would have come), and the usage line says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_a_silent_stream_closes_the_upstream_call() {
    use std::sync::Arc;
    let closed = Arc::new(parking_lot::Mutex::new(None::<Instant>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", listener.local_addr().unwrap());
    let clo = closed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let clo = clo.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Ok(Some(_)) = read_request(&mut sock, &mut buf).await {
                    let first = OK_SSE.split_inclusive("\n\n").next().unwrap();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                        first.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let mut one = [0u8; 1];
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(8)) => {}
                        _ = sock.read(&mut one) => { *clo.lock() = Some(Instant::now()); }
                    }
                }
            });
        }
    });
    let cfg = openai_config(&up_url).limits(serde_json::json!({ "upstream_timeout_ms": 10000 }));
    let gw = Gateway::start(&cfg).await;
    let mut r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(r#"{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    let gone = Instant::now();
    while closed.lock().is_none() {
        assert!(gone.elapsed() < Duration::from_secs(4), "the upstream stream was not closed within 4 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let usage = gw.usage_lines(1).await;
    assert_eq!(usage.len(), 1);
    assert!(usage[0]["error"].as_str().unwrap_or("").contains("client went away"), "{}", usage[0]);
}

/// Request bodies held at once have a process-wide cap (`limits.max_body_memory_bytes`): while
/// one 700 KB body waits on its upstream, a second one would pass the 1 MiB cap and gets 503
/// with `retry-after` in the caller's shape, never reaching the upstream; once the first
/// request ends its bytes are given back and the same body is served.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_held_at_once_are_capped_and_given_back() {
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    let up = MockUpstream::start(move |_, n| Reply::Stream {
        status: 200,
        content_type: "application/json".into(),
        parts: vec![(if n == 0 { Wait::Gate(g.clone()) } else { Wait::None }, OK.as_bytes().to_vec())],
    })
    .await;
    let cfg = openai_config(&up.url())
        .limits(serde_json::json!({ "max_body_bytes": 1_048_576, "max_body_memory_bytes": 1_048_576 }));
    let gw = Gateway::start(&cfg).await;
    let big =
        format!(r#"{{"model":"fast","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(700_000));
    let first = {
        let (url, big) = (gw.url("/v1/chat/completions"), big.clone());
        tokio::spawn(async move {
            let r = client().post(url).bearer_auth(KEY).body(big).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    eventually(Duration::from_secs(10), "the first body reached the upstream", || async { up.count() == 1 })
        .await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("limits.max_body_memory_bytes (1048576)"), "{v}");
    assert_eq!(up.count(), 1, "the refused body never reached the upstream");
    // A small body still fits next to the held one.
    let small = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let r = client().post(gw.url("/v1/chat/completions")).bearer_auth(KEY).body(small).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gate.notify_one();
    assert_eq!(first.await.unwrap(), (reqwest::StatusCode::OK, OK.to_string()));
    // The first request gives its bytes back when it is accounted, just after its last byte.
    eventually(Duration::from_secs(5), "the first body's bytes were given back", || async {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .body(big.clone())
            .send()
            .await
            .unwrap();
        r.status() == 200
    })
    .await;
    assert_eq!(up.count(), 3, "the refused body never reached the upstream; the last one did");
}
