//! Tests for `alerts.rs` against a local webhook receiver on 127.0.0.1:0 (plain and TLS):
//! one post per event, retries after 5xx, no retry after a 4xx, the queue bound, the body.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;

/// Every wait in these tests polls until this deadline.
const DEADLINE: Duration = Duration::from_secs(10);

/// A webhook receiver: records each request's path and body, answers from a script of
/// status codes (then 200).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Receiver, u16) {
        let r =
            Receiver { script: Arc::new(Mutex::new(script.iter().copied().collect())), ..Default::default() };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let r2 = r.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let r = r2.clone();
                tokio::spawn(async move { r.serve(s).await });
            }
        });
        (r, port)
    }

    async fn start_tls(config: Arc<tokio_rustls::rustls::ServerConfig>) -> (Receiver, u16) {
        let r = Receiver::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let r2 = r.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (r, acceptor) = (r2.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        r.serve(tls).await;
                    }
                });
            }
        });
        (r, port)
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, len) = loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap();
                break (i + 4, len);
            }
        };
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let path = head.split_whitespace().nth(1).unwrap().to_string();
        assert!(head.starts_with("POST "), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
        let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
        let status = self.script.lock().pop_front().unwrap_or(200);
        self.got.lock().push((path, body));
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    fn subjects(&self) -> Vec<String> {
        self.got.lock().iter().map(|(_, b)| b["subject"].as_str().unwrap().to_string()).collect()
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn fast() -> AlertOptions {
    AlertOptions {
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..Default::default()
    }
}

fn webhook(url: String) -> AlertsConfig {
    AlertsConfig { webhook: url }
}

fn event(subject: &str) -> AlertEvent {
    AlertEvent::new(
        AlertKind::CircuitOpen,
        subject,
        "5 consecutive failures",
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
}

#[tokio::test]
async fn each_send_is_posted_once_in_order() {
    let (rx, port) = Receiver::start(&[]).await;
    let (alerts, worker) =
        Alerts::new(Some(&webhook(format!("http://127.0.0.1:{port}/hooks/T1/abc"))), fast()).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    for s in ["a", "b", "c"] {
        assert!(alerts.send(event(s)));
    }
    wait_until("3 deliveries", || alerts.delivered() == 3).await;
    assert_eq!(rx.subjects(), ["a", "b", "c"]);
    assert!(rx.got.lock().iter().all(|(p, _)| p == "/hooks/T1/abc"));
    assert_eq!((alerts.dropped(), alerts.failed()), (0, 0));
}

#[tokio::test]
async fn a_5xx_is_retried_until_accepted() {
    let (rx, port) = Receiver::start(&[500, 503]).await;
    let (alerts, worker) = Alerts::new(Some(&webhook(format!("http://127.0.0.1:{port}/"))), fast()).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    alerts.send(event("x"));
    alerts.send(event("y"));
    wait_until("2 deliveries", || alerts.delivered() == 2).await;
    assert_eq!(rx.subjects(), ["x", "x", "x", "y"], "x answered 500, 503, then 200");
    assert_eq!(alerts.failed(), 0);
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_attempts_are_bounded() {
    let (rx, port) = Receiver::start(&[400, 500, 500, 500]).await;
    let opts = AlertOptions { max_attempts: 3, ..fast() };
    let (alerts, worker) = Alerts::new(Some(&webhook(format!("http://127.0.0.1:{port}/"))), opts).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    alerts.send(event("refused"));
    alerts.send(event("flaky"));
    alerts.send(event("fine"));
    wait_until("1 delivery", || alerts.delivered() == 1).await;
    assert_eq!(alerts.failed(), 2);
    assert_eq!(rx.subjects(), ["refused", "flaky", "flaky", "flaky", "fine"]);
}

#[tokio::test]
async fn a_full_queue_drops_new_events_and_counts_them() {
    let (rx, port) = Receiver::start(&[]).await;
    let opts = AlertOptions { queue: 4, ..fast() };
    let (alerts, worker) = Alerts::new(Some(&webhook(format!("http://127.0.0.1:{port}/"))), opts).unwrap();
    // The worker is not running yet: the queue fills.
    let accepted: Vec<bool> = (0..10).map(|i| alerts.send(event(&format!("e{i}")))).collect();
    assert_eq!(accepted, [true, true, true, true, false, false, false, false, false, false]);
    assert_eq!(alerts.dropped(), 6);
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    wait_until("4 deliveries", || alerts.delivered() == 4).await;
    assert_eq!(rx.subjects(), ["e0", "e1", "e2", "e3"]);
}

#[tokio::test]
async fn without_a_webhook_send_is_a_no_op_until_one_is_configured() {
    let (rx, port) = Receiver::start(&[]).await;
    let (alerts, worker) = Alerts::new(None, fast()).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    assert!(!alerts.send(event("lost")));
    assert_eq!(alerts.dropped(), 0);
    alerts.set_config(Some(&webhook(format!("http://127.0.0.1:{port}/new")))).unwrap();
    assert!(alerts.send(event("kept")));
    wait_until("1 delivery", || alerts.delivered() == 1).await;
    assert_eq!(rx.subjects(), ["kept"]);
}

#[tokio::test]
async fn the_body_is_slack_compatible_and_redacted() {
    let (rx, port) = Receiver::start(&[]).await;
    let (alerts, worker) = Alerts::new(Some(&webhook(format!("http://127.0.0.1:{port}/"))), fast()).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    let ev = AlertEvent::new(
        AlertKind::ReloadFailed,
        "conf/gateway.yaml",
        "providers[0].api_key: sk-proj-AbCdEf0123456789_xyz is a literal",
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    alerts.send(ev);
    wait_until("1 delivery", || alerts.delivered() == 1).await;
    let body = rx.got.lock()[0].1.clone();
    assert_eq!(
        body,
        serde_json::json!({
            "text": "[llm-gateway] config reload failed: conf/gateway.yaml — providers[0].api_key: sk-proj-*** is a literal",
            "kind": "reload_failed",
            "subject": "conf/gateway.yaml",
            "detail": "providers[0].api_key: sk-proj-*** is a literal",
            "time": "2023-11-14T22:13:20Z",
            "source": "llm-gateway",
        })
    );
}

#[tokio::test]
async fn https_webhooks_are_posted_over_tls() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
        tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()),
    );
    let server = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let (rx, port) = Receiver::start_tls(Arc::new(server)).await;
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let opts = AlertOptions { tls_roots: Some(Arc::new(roots)), ..fast() };
    let (alerts, worker) =
        Alerts::new(Some(&webhook(format!("https://127.0.0.1:{port}/secure"))), opts).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(worker.run(shutdown));
    alerts.send(event("tls"));
    wait_until("1 delivery", || alerts.delivered() == 1).await;
    assert_eq!(rx.subjects(), ["tls"]);
    assert_eq!(rx.got.lock()[0].0, "/secure");
}

#[tokio::test]
async fn shutdown_drains_what_is_queued() {
    let (rx, port) = Receiver::start(&[]).await;
    let (alerts, worker) = Alerts::new(Some(&webhook(format!("http://127.0.0.1:{port}/"))), fast()).unwrap();
    alerts.send(event("1"));
    alerts.send(event("2"));
    let (stop, shutdown) = watch::channel(false);
    stop.send(true).unwrap();
    worker.run(shutdown).await;
    assert_eq!(alerts.delivered(), 2);
    assert_eq!(rx.subjects(), ["1", "2"]);
}

#[test]
fn bad_webhook_urls_are_refused_without_echoing_the_secret_path() {
    for (url, why) in [
        ("ftp://relay/x", "scheme"),
        ("hooks.example.com/x", "not a URL"),
        ("https://user:pw@relay/x", "user:password"),
    ] {
        let err = Endpoint::parse(url).unwrap_err().to_string();
        assert!(err.contains(why), "{url}: {err}");
        assert!(!err.contains("/x") && !err.contains("pw"), "{url}: {err}");
    }
    let ep = Endpoint::parse("https://hooks.slack.com/services/T0/B0/SECRET").unwrap();
    assert_eq!(
        (ep.host.as_str(), ep.port, ep.path.as_str()),
        ("hooks.slack.com", 443, "/services/T0/B0/SECRET")
    );
    assert_eq!(ep.shown(), "https://hooks.slack.com/…");
    assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
    assert_eq!(status_of(b"garbage"), None);
}
