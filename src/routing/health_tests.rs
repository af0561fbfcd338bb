//! Tests for `health.rs` against a tiny HTTP/1.1 server on 127.0.0.1 (no external network).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::circuit::CircuitConfig;
use super::health::{HealthChecker, HealthTarget};
use super::targets::{TargetKey, Targets};

/// Answers the `n`-th request with `statuses[n]` (the last one repeats) and keeps each
/// request head.
struct Upstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
}

async fn upstream(statuses: &'static [u16]) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let (h, s) = (heads.clone(), served.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (h, s) = (h.clone(), s.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.lock().push(String::from_utf8_lossy(&buf).into_owned());
                let n = s.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Upstream { addr, heads, served }
}

fn target(addr: SocketAddr, interval: Duration) -> HealthTarget {
    HealthTarget {
        provider: "local".into(),
        url: format!("http://{addr}/v1/models"),
        tls: false,
        sni: "127.0.0.1".into(),
        verify: true,
        addr,
        headers: vec![("authorization".into(), "Bearer sk-test".into())],
        interval,
    }
}

#[tokio::test]
async fn a_200_then_a_503_flips_the_provider_to_unhealthy_and_back() {
    let up = upstream(&[200, 503, 200]).await;
    let reg = Targets::new();
    let state = reg.target(&TargetKey::new("local", "m"), CircuitConfig::default());
    let checker = HealthChecker::new(reg.clone(), vec![target(up.addr, Duration::from_secs(60))]);
    let now = Instant::now();

    assert!(state.is_available(now), "new providers start healthy");
    checker.check_all_once().await;
    assert!(state.is_available(now));
    checker.check_all_once().await;
    assert!(!state.is_available(now));
    assert!(!state.snapshot().healthy);
    let err = state.snapshot().last_error.unwrap();
    assert!(err.message.contains("503"), "{}", err.message);
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(
        err.at_unix_ms > wall - 60_000 && err.at_unix_ms <= wall,
        "when the check failed: {}",
        err.at_unix_ms
    );
    checker.check_all_once().await;
    assert!(state.is_available(now));

    let head = up.heads.lock()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /v1/models http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {}", up.addr)), "{head}");
    assert!(head.contains("authorization: bearer sk-test"), "{head}");
}

#[tokio::test]
async fn a_refused_connection_is_unhealthy() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let reg = Targets::new();
    let checker = HealthChecker::new(reg.clone(), vec![target(addr, Duration::from_secs(60))]);
    checker.check_all_once().await;
    assert!(!reg.provider("local").is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_service_checks_on_its_interval_and_stops_on_shutdown() {
    let up = upstream(&[200, 503]).await;
    let reg = Targets::new();
    let checker = Arc::new(HealthChecker::new(reg.clone(), vec![target(up.addr, Duration::from_secs(1))]));
    let (stop, watch) = tokio::sync::watch::channel(false);
    let task = {
        let checker = checker.clone();
        tokio::spawn(async move { checker.start(watch).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while reg.provider("local").is_healthy() || up.served.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "health never flipped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task).await.expect("service stops").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_only_changes_headers_rebuilds_the_check_at_once() {
    let up = upstream(&[200]).await;
    let reg = Targets::new();
    let checker = Arc::new(HealthChecker::new(reg.clone(), vec![target(up.addr, Duration::from_secs(3600))]));
    let (stop, watch) = tokio::sync::watch::channel(false);
    let task = {
        let checker = checker.clone();
        tokio::spawn(async move { checker.start(watch).await })
    };
    let wait_for = |n: usize| {
        let served = up.served.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while served.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "no check number {n}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(1).await;
    let mut changed = target(up.addr, Duration::from_secs(3600));
    changed.headers = vec![("x-api-key".into(), "rotated".into())];
    checker.update(vec![changed]);
    wait_for(2).await;
    assert!(up.heads.lock()[1].contains("rotated"));
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn removing_a_check_marks_the_provider_healthy() {
    let up = upstream(&[503]).await;
    let reg = Targets::new();
    let checker = HealthChecker::new(reg.clone(), vec![target(up.addr, Duration::from_secs(60))]);
    checker.check_all_once().await;
    assert!(!reg.provider("local").is_healthy());
    checker.update(vec![]);
    assert!(reg.provider("local").is_healthy());
}

#[tokio::test]
async fn each_provider_connects_with_its_own_tls_and_sni() {
    // A TCP server that keeps the first bytes it receives: a TLS ClientHello carries the SNI
    // in clear. It never answers the handshake, so the check must fail.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).await.unwrap_or(0);
        let _ = tx.send(buf[..n].to_vec());
    });
    let reg = Targets::new();
    let mut tls = target(addr, Duration::from_secs(60));
    tls.provider = "tls-provider".into();
    tls.url = "https://api.example.test/v1/models".into();
    tls.tls = true;
    tls.sni = "api.example.test".into();
    let plain = target(addr, Duration::from_secs(60));
    let checker = HealthChecker::new(reg.clone(), vec![tls]);
    tokio::time::timeout(Duration::from_secs(15), checker.check_all_once()).await.unwrap();
    let hello = tokio::time::timeout(Duration::from_secs(5), rx).await.unwrap().unwrap();
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
    assert!(hello.windows(16).any(|w| w == b"api.example.test"), "SNI sent");
    assert!(!reg.provider("tls-provider").is_healthy());
    assert!(reg.provider(&plain.provider).is_healthy(), "other providers are untouched");
}
