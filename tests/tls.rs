//! TLS on both sides of the gateway, with certificates made per test (rcgen):
//! - upstream: the gateway dials an `https://localhost:<port>` provider with SNI `localhost`,
//!   verifies the certificate against the roots in `SSL_CERT_FILE` (Pingora's rustls connector
//!   loads the platform store through rustls-native-certs, which honours that variable), refuses
//!   an untrusted or wrongly named certificate with a 502 before any request is sent, and accepts
//!   any certificate with `tls_verify: false`;
//! - downstream: the `tls:` listener serves HTTP/1.1 and h2 (ALPN), non-stream and SSE.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::rustls::server::Acceptor;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

const COMPLETION: &str = r#"{"id":"chatcmpl-tls","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"over TLS"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

/// Every network step of these tests is bounded by this.
const STEP: Duration = Duration::from_secs(10);

fn init_crypto() {
    // Several tests race to install it; only the first call wins, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn chat_body(model: &str, stream: bool) -> String {
    format!(r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Hello"}}]}}"#)
}

// === certificates ===

/// A private certificate authority.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// A server certificate and its key, issued by a `Ca`.
struct Leaf {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Write the CA certificate as PEM (what `SSL_CERT_FILE` points at).
    fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).unwrap();
    }

    /// A server certificate whose only subject alternative name is DNS:`name`.
    fn issue(&self, name: &str) -> Leaf {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert, key }
    }
}

impl Leaf {
    /// A rustls server config presenting this certificate (ALPN `http/1.1`).
    fn server_config(&self) -> Arc<ServerConfig> {
        init_crypto();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let mut c = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.der().clone()], key)
            .unwrap();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }

    /// Write `cert.pem` and `key.pem` into `dir`; returns their paths.
    fn write_pem(&self, dir: &Path) -> (String, String) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, self.cert.pem()).unwrap();
        std::fs::write(&key, self.key.serialize_pem()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    }
}

// === a TLS mock upstream ===

/// An HTTPS upstream on loopback answering every request with `COMPLETION`. It records the SNI of
/// every ClientHello (also for handshakes the client later aborts), the handshakes that completed
/// and the HTTP requests it read.
struct TlsUpstream {
    port: u16,
    snis: Arc<Mutex<Vec<Option<String>>>>,
    handshakes: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TlsUpstream {
    async fn start(config: Arc<ServerConfig>) -> TlsUpstream {
        let listeners = bind_loopback().await;
        let port = listeners[0].local_addr().unwrap().port();
        let snis = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for listener in listeners {
            let (config, snis, handshakes, received) =
                (config.clone(), snis.clone(), handshakes.clone(), received.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else { return };
                    let (config, snis, handshakes, received) =
                        (config.clone(), snis.clone(), handshakes.clone(), received.clone());
                    tokio::spawn(async move {
                        let Ok(start) = LazyConfigAcceptor::new(Acceptor::default(), sock).await else {
                            return;
                        };
                        snis.lock().push(start.client_hello().server_name().map(str::to_owned));
                        let Ok(tls) = start.into_stream(config).await else { return };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        let _ = serve_http1(tls, received).await;
                    });
                }
            }));
        }
        TlsUpstream { port, snis, handshakes, received, tasks }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn snis(&self) -> Vec<Option<String>> {
        self.snis.lock().clone()
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// 127.0.0.1 and, where the machine has it, [::1] on the same port: `localhost` may resolve to
/// either, and the gateway round-robins over the answer.
async fn bind_loopback() -> Vec<TcpListener> {
    for _ in 0..20 {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        match TcpListener::bind(SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port))).await {
            Ok(v6) => return vec![v4, v6],
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(_) => return vec![v4], // no IPv6 loopback here
        }
    }
    panic!("no port free on both 127.0.0.1 and [::1]");
}

/// A tiny HTTP/1.1 responder (Content-Length bodies, keep-alive).
async fn serve_http1<S>(mut sock: S, received: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await? else { return Ok(()) };
        received.lock().push(req);
        let out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{COMPLETION}",
            COMPLETION.len()
        );
        sock.write_all(out.as_bytes()).await?;
        sock.flush().await?;
    }
}

// === the gateway, started with a chosen trust store ===

/// The gateway with `SSL_CERT_FILE` set to `ca_file` (and `SSL_CERT_DIR` removed), so its
/// upstream trust roots are exactly that file.
async fn trusting_gateway(body: &str, ca_file: &Path) -> Gateway {
    let ca = ca_file.to_str().unwrap();
    Gateway::start_with_env(body, &[("SSL_CERT_FILE", ca)], &["SSL_CERT_DIR"]).await
}

/// A chat request for `alias`: (status, x-gateway-error, body).
async fn chat(gw: &Gateway, alias: &str) -> (u16, Option<String>, String) {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(chat_body(alias, false))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let err = r.headers().get("x-gateway-error").map(|v| v.to_str().unwrap().to_string());
    (status, err, r.text().await.unwrap())
}

fn provider_config(providers: &[(&str, &str, &str)]) -> String {
    let mut s = String::from(
        "limits: { upstream_timeout_ms: 5000, connect_timeout_ms: 3000, max_body_bytes: 1048576 }\nproviders:\n",
    );
    for (name, url, extra) in providers {
        s.push_str(&format!(
            "  - {{ name: {name}, kind: openai, base_url: \"{url}\", api_key: sk-provider-secret {extra} }}\n"
        ));
    }
    s.push_str("models:\n");
    for (name, _, _) in providers {
        s.push_str(&format!(
            "  - {{ alias: {name}, targets: [ {{ provider: {name}, model: gpt-4o-mini }} ] }}\n"
        ));
    }
    s.push_str("keys:\n  - { id: k1, hash: \"{KEY_HASH}\" }\n");
    s
}

fn assert_openai_502(alias: &str, (status, err, body): &(u16, Option<String>, String), log: &str) {
    assert_eq!(*status, 502, "{alias}: {body}\nlog:\n{log}");
    assert_eq!(err.as_deref(), Some("1"), "{alias}: the gateway made this answer itself");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{alias}: {e}: {body}"));
    assert!(v["error"]["message"].is_string(), "{alias}: OpenAI error shape: {v}");
    assert!(v["error"]["type"].is_string(), "{alias}: OpenAI error shape: {v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("TLS") || msg.contains("certificate") || msg.contains("Cert"),
        "{alias}: says why: {msg}"
    );
    assert!(!msg.contains("local address"), "{alias}: the gateway's own address must not leak: {msg}");
}

// === upstream TLS ===

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_uses_sni_and_verifies_the_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("llm-gateway test CA");
    let ca_file = certs.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let up = TlsUpstream::start(ca.issue("localhost").server_config()).await;

    let gw = trusting_gateway(&provider_config(&[("up", &up.url(), "")]), &ca_file).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(chat_body("up", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "log:\n{}", gw.log());
    assert_eq!(r.headers()["x-gateway-provider"], "up");
    assert_eq!(r.text().await.unwrap(), COMPLETION);

    let snis = up.snis();
    assert!(!snis.is_empty());
    assert!(snis.iter().all(|s| s.as_deref() == Some("localhost")), "SNI sent: {snis:?}");
    assert!(up.handshakes() >= 1);
    let got = up.requests();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].method.as_str(), got[0].path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(got[0].header("host"), Some(format!("localhost:{}", up.port).as_str()));
    assert_eq!(got[0].header("authorization"), Some("Bearer sk-provider-secret"));
    assert_eq!(got[0].json()["model"], "gpt-4o-mini");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_with_an_untrusted_or_wrong_name_certificate_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let trusted = Ca::new("trusted test CA");
    let ca_file = certs.path().join("ca.pem");
    trusted.write_pem(&ca_file);
    let untrusted = Ca::new("untrusted test CA");

    // (a) a certificate for the right name from a CA the gateway does not trust;
    // (b) a certificate from the trusted CA for another name;
    // (c) like (a), on a provider with `tls_verify: false`.
    let a = TlsUpstream::start(untrusted.issue("localhost").server_config()).await;
    let b = TlsUpstream::start(trusted.issue("other.example").server_config()).await;
    let c = TlsUpstream::start(untrusted.issue("localhost").server_config()).await;
    let config = provider_config(&[
        ("untrusted", &a.url(), ""),
        ("wrongname", &b.url(), ""),
        ("noverify", &c.url(), ", tls_verify: false"),
    ]);
    let gw = trusting_gateway(&config, &ca_file).await;

    let t = Instant::now();
    let ra = chat(&gw, "untrusted").await;
    let rb = chat(&gw, "wrongname").await;
    assert!(t.elapsed() < Duration::from_secs(3), "a refused certificate fails fast: {:?}", t.elapsed());
    let log = gw.log();
    assert_openai_502("untrusted", &ra, &log);
    assert_openai_502("wrongname", &rb, &log);
    for (name, up) in [("untrusted", &a), ("wrongname", &b)] {
        // The gateway reached the TLS handshake, with the right SNI, and abandoned it.
        let snis = up.snis();
        assert!(!snis.is_empty(), "{name}: no TLS handshake was attempted; log:\n{log}");
        assert!(snis.iter().all(|s| s.as_deref() == Some("localhost")), "{name}: SNI sent: {snis:?}");
        assert_eq!(up.handshakes(), 0, "{name}: the gateway completed a handshake it should refuse");
        assert!(up.requests().is_empty(), "{name}: the upstream got a request: {:?}", up.requests());
    }

    let (status, err, body) = chat(&gw, "noverify").await;
    assert_eq!(status, 200, "{body}\nlog:\n{log}");
    assert_eq!(err, None);
    assert_eq!(body, COMPLETION);
    assert_eq!(c.requests().len(), 1);
    assert!(c.snis().iter().all(|s| s.as_deref() == Some("localhost")), "SNI sent: {:?}", c.snis());
}

// === downstream TLS ===

struct HttpsReply {
    version: hyper::Version,
    status: u16,
    content_type: String,
    body: String,
}

/// Open a TLS connection to the gateway's HTTPS listener trusting only `ca`, offering only `alpn`,
/// and send one chat request over HTTP/1.1 or h2 as negotiated.
async fn https_chat(port: u16, ca: &CertificateDer<'static>, alpn: &[u8], body: String) -> HttpsReply {
    let tls = tokio::time::timeout(STEP, tls_connect(port, ca, alpn)).await.unwrap().unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "negotiated ALPN");
    let io = TokioIo::new(tls);
    let uri = format!("https://localhost:{port}/v1/chat/completions");
    let build = |uri: &str| {
        hyper::Request::post(uri)
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap()
    };
    let send = async {
        if alpn == b"h2" {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(build(&uri)).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            let mut req = build("/v1/chat/completions");
            req.headers_mut().insert("host", format!("localhost:{port}").parse().unwrap());
            send.send_request(req).await.unwrap()
        }
    };
    let resp = tokio::time::timeout(STEP, send).await.expect("answer in time");
    let (version, status) = (resp.version(), resp.status().as_u16());
    let content_type =
        resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = tokio::time::timeout(STEP, resp.into_body().collect()).await.unwrap().unwrap().to_bytes();
    HttpsReply { version, status, content_type, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

async fn tls_connect(
    port: u16,
    ca: &CertificateDer<'static>,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    init_crypto();
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// An HTTPS listener on `tls_port` with `cert`/`key`, alias `fast` on the built-in mock.
fn https_mock_config(tls_port: u16, cert: &str, key: &str) -> String {
    format!(
        r#"tls: {{ listen: "127.0.0.1:{tls_port}", cert: "{cert}", key: "{key}" }}
providers:
  - {{ name: m, kind: mock }}
models:
  - {{ alias: fast, targets: [ {{ provider: m, model: mock-1 }} ] }}
keys:
  - {{ id: k1, hash: "{{KEY_HASH}}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_https_listener_serves_http1_and_h2() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("llm-gateway test CA");
    let (cert, key) = ca.issue("localhost").write_pem(certs.path());
    let tls_port = free_port();
    let gw = Gateway::start(https_mock_config(tls_port, &cert, &key)).await;

    // The listener presents the configured certificate: a client trusting another CA refuses it.
    let other = Ca::new("another CA");
    let refused = tokio::time::timeout(STEP, tls_connect(tls_port, &other.der(), b"h2")).await.unwrap();
    assert!(refused.is_err(), "a certificate from an unknown CA was accepted");

    for (alpn, version) in [(&b"http/1.1"[..], hyper::Version::HTTP_11), (&b"h2"[..], hyper::Version::HTTP_2)]
    {
        let what = String::from_utf8_lossy(alpn);
        let r = https_chat(tls_port, &ca.der(), alpn, chat_body("fast", false)).await;
        assert_eq!(r.version, version, "{what}");
        assert_eq!(r.status, 200, "{what}: {}\nlog:\n{}", r.body, gw.log());
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.body));
        assert_eq!(v["object"], "chat.completion", "{what}: {v}");
        assert!(v["choices"][0]["message"]["content"].is_string(), "{what}: {v}");

        let r = https_chat(tls_port, &ca.der(), alpn, chat_body("fast", true)).await;
        assert_eq!(r.version, version, "{what} stream");
        assert_eq!(r.status, 200, "{what} stream: {}", r.body);
        assert!(r.content_type.starts_with("text/event-stream"), "{what}: {}", r.content_type);
        assert!(r.body.starts_with("data: {"), "{what}: {}", r.body);
        assert!(r.body.contains("chat.completion.chunk"), "{what}: {}", r.body);
        assert!(r.body.ends_with("data: [DONE]\n\n"), "{what}: {:?}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_swapped_on_disk_serves_new_connections_while_old_ones_keep_working() {
    let certs = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (Ca::new("first CA"), Ca::new("renewed CA"));
    let (cert, key) = ca1.issue("localhost").write_pem(certs.path());
    let tls_port = free_port();
    let gw = Gateway::start(https_mock_config(tls_port, &cert, &key)).await;
    // A connection made with the first certificate, kept open across the swap.
    let tls = tls_connect(tls_port, &ca1.der(), b"http/1.1").await.unwrap();
    let (mut old, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let request = || {
        hyper::Request::post("/v1/chat/completions")
            .header("host", format!("localhost:{tls_port}"))
            .header("authorization", format!("Bearer {KEY}"))
            .body(Full::new(Bytes::from(chat_body("fast", false))))
            .unwrap()
    };
    assert_eq!(old.send_request(request()).await.unwrap().status(), 200);

    // certbot-style renewal: new files renamed over the old ones.
    let staging = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = ca2.issue("localhost").write_pem(staging.path());
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    eventually(Duration::from_secs(10), "new connections get the renewed certificate", || async {
        tls_connect(tls_port, &ca2.der(), b"http/1.1").await.is_ok()
    })
    .await;
    assert!(tls_connect(tls_port, &ca1.der(), b"http/1.1").await.is_err(), "the old certificate is gone");
    let r = old.send_request(request()).await.unwrap();
    assert_eq!(r.status(), 200, "the connection opened before the swap keeps working");
    assert_eq!(https_chat(tls_port, &ca2.der(), b"h2", chat_body("fast", false)).await.status, 200);

    // A broken renewal keeps the current certificate and says why.
    std::fs::write(&cert, "not a certificate").unwrap();
    let log = || gw.log();
    eventually(Duration::from_secs(10), "the broken certificate is reported", || async {
        log().contains("TLS certificate not reloaded, keeping the current one")
    })
    .await;
    assert!(tls_connect(tls_port, &ca2.der(), b"http/1.1").await.is_ok(), "still serving the renewed one");
}
