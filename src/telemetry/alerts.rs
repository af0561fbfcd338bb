//! Alert webhook (`alerts: {webhook: URL}`): budget alert/exhausted, circuit open/close,
//! alias down and failed reloads, posted as JSON with a Slack-compatible `text` field.
//! `Alerts::send` never blocks: events go into a bounded queue (`try_send`; when the queue is
//! full the new event is dropped and counted), and one background task (`AlertWorker`, a
//! Pingora background service) posts them in order with retries and exponential backoff.
//!
//! Transport: plain HTTP/1.1 over a tokio `TcpStream` for `http://`, and rustls (the TLS
//! stack Pingora already links, with the OS trust store) for `https://`. Host names are
//! resolved with the gateway's async resolver. One connection per post (`Connection: close`).
//! The webhook URL is treated as a secret (Slack's are): only its scheme and host are logged.
//! Does not decide when to alert: callers (budgets, circuits, reload) call `send`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::{ClientConfig, RootCertStore, ServerName, TlsConnector};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::redact::redact_text;
use crate::config::AlertsConfig;
use crate::net::Resolver;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A budget crossed its `alert_at` ratio (once per period).
    BudgetAlert,
    /// A budget is spent; requests of its scope are refused until the period ends.
    BudgetExhausted,
    CircuitOpen,
    CircuitClose,
    /// Every target of an alias is unavailable.
    AliasDown,
    /// A changed config file was rejected; the running config stays.
    ReloadFailed,
}

/// One alert. `subject` names the thing (key id, project, target, alias, file path).
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    pub kind: AlertKind,
    pub subject: String,
    pub detail: String,
    pub time: SystemTime,
}

/// Queue and retry settings. Defaults: queue 256 events, 5 attempts per event, backoff 500 ms
/// doubling to at most 30 s, 5 s per attempt (connect, send and status line).
#[derive(Clone, Debug)]
pub struct AlertOptions {
    pub queue: usize,
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    /// Trust anchors for `https://` webhooks; `None` = the OS trust store.
    pub tls_roots: Option<Arc<RootCertStore>>,
}

/// The sending side, cheap to clone; hand it to whatever raises alerts.
#[derive(Clone)]
pub struct Alerts {
    shared: Arc<Shared>,
    tx: mpsc::Sender<AlertEvent>,
}

/// The delivering side: run it once (`run`, or as a Pingora background service).
pub struct AlertWorker {
    rx: parking_lot::Mutex<Option<mpsc::Receiver<AlertEvent>>>,
    shared: Arc<Shared>,
    opts: AlertOptions,
}

struct Shared {
    endpoint: ArcSwapOption<Endpoint>,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

/// A parsed webhook URL.
#[derive(Debug)]
struct Endpoint {
    tls: bool,
    host: String,
    port: u16,
    /// `host[:port]` for the `Host` header.
    authority: String,
    path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts.webhook {shown}: {reason}; use http://host[:port]/path or https://…")]
    InvalidUrl { shown: String, reason: &'static str },
    #[error("webhook {shown}: {source}")]
    Io { shown: String, source: std::io::Error },
    #[error("webhook {shown}: no answer within {timeout:?}")]
    Timeout { shown: String, timeout: Duration },
    #[error("webhook {shown}: TLS setup failed: {reason}")]
    Tls { shown: String, reason: String },
    #[error("webhook {shown}: not an HTTP answer")]
    BadAnswer { shown: String },
}

/// How long queued events may still be posted once shutdown starts (one attempt each).
const DRAIN_BUDGET: Duration = Duration::from_secs(2);

// === impl AlertKind ===

impl AlertKind {
    /// The snake_case name (the webhook's `kind`, the metric label, the audit action suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BudgetAlert => "budget_alert",
            AlertKind::BudgetExhausted => "budget_exhausted",
            AlertKind::CircuitOpen => "circuit_open",
            AlertKind::CircuitClose => "circuit_close",
            AlertKind::AliasDown => "alias_down",
            AlertKind::ReloadFailed => "reload_failed",
        }
    }

    fn title(self) -> &'static str {
        match self {
            AlertKind::BudgetAlert => "budget alert",
            AlertKind::BudgetExhausted => "budget exhausted",
            AlertKind::CircuitOpen => "circuit open",
            AlertKind::CircuitClose => "circuit closed",
            AlertKind::AliasDown => "alias down",
            AlertKind::ReloadFailed => "config reload failed",
        }
    }
}

// === impl AlertEvent ===

impl AlertEvent {
    pub fn new(
        kind: AlertKind,
        subject: impl Into<String>,
        detail: impl Into<String>,
        time: SystemTime,
    ) -> Self {
        AlertEvent { kind, subject: subject.into(), detail: detail.into(), time }
    }

    /// The webhook body: `{"text", "kind", "subject", "detail", "time", "source"}`, every
    /// string redacted. `text` is what Slack (and Mattermost, Teams' Slack shim …) shows.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            text: String,
            kind: AlertKind,
            subject: &'a str,
            detail: &'a str,
            time: String,
            source: &'static str,
        }
        let subject = redact_text(&self.subject);
        let detail = redact_text(&self.detail);
        let text = if detail.is_empty() {
            format!("[llm-gateway] {}: {}", self.kind.title(), subject)
        } else {
            format!("[llm-gateway] {}: {} — {}", self.kind.title(), subject, detail)
        };
        let time = time::OffsetDateTime::from(self.time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let body =
            Body { text, kind: self.kind, subject: &subject, detail: &detail, time, source: "llm-gateway" };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

// === impl AlertOptions ===

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            queue: 256,
            max_attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            tls_roots: None,
        }
    }
}

// === impl Alerts ===

impl Alerts {
    /// A sender and its worker. With `cfg` `None` every `send` is a no-op until
    /// `set_config` names a webhook.
    pub fn new(cfg: Option<&AlertsConfig>, opts: AlertOptions) -> Result<(Alerts, AlertWorker), AlertError> {
        let endpoint = cfg.map(|c| Endpoint::parse(&c.webhook)).transpose()?;
        let shared = Arc::new(Shared {
            endpoint: ArcSwapOption::from(endpoint.map(Arc::new)),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let worker = AlertWorker { rx: parking_lot::Mutex::new(Some(rx)), shared: shared.clone(), opts };
        Ok((Alerts { shared, tx }, worker))
    }

    /// Points at a new webhook (or none) after a config reload. Queued events go to the new one.
    pub fn set_config(&self, cfg: Option<&AlertsConfig>) -> Result<(), AlertError> {
        let endpoint = cfg.map(|c| Endpoint::parse(&c.webhook)).transpose()?;
        self.shared.endpoint.store(endpoint.map(Arc::new));
        Ok(())
    }

    /// Queues `ev` for delivery without waiting. `false` when no webhook is configured or
    /// the queue is full (the event is dropped and counted in `dropped`).
    pub fn send(&self, ev: AlertEvent) -> bool {
        if self.shared.endpoint.load().is_none() {
            return false;
        }
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(e) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let ev = match &e {
                    mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
                };
                // Logged at 1, 2, 4, 8 … drops, so a storm does not flood the log.
                if n.is_power_of_two() {
                    tracing::warn!(
                        kind = ev.kind.title(),
                        dropped_total = n,
                        "alert queue full; alert dropped"
                    );
                }
                false
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events the webhook accepted (2xx).
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    /// Events given up on (a permanent 4xx, or every attempt failed).
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

// === impl AlertWorker ===

#[async_trait]
impl BackgroundService for AlertWorker {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(rx) = self.rx.lock().take() else {
            return;
        };
        Delivery::new(&self.shared, &self.opts).run(rx, shutdown).await;
    }
}

impl AlertWorker {
    /// Delivers queued events until `shutdown` fires (then drains what is queued, one attempt
    /// each, for at most 2 s) or every `Alerts` handle is gone.
    pub async fn run(self, shutdown: ShutdownWatch) {
        let Some(rx) = self.rx.lock().take() else {
            return;
        };
        Delivery::new(&self.shared, &self.opts).run(rx, shutdown).await;
    }
}

/// The worker's state while running.
struct Delivery<'a> {
    shared: &'a Shared,
    opts: &'a AlertOptions,
    resolver: Resolver,
    tls: Option<TlsConnector>,
}

/// What one attempt's answer means.
enum Verdict {
    Delivered,
    Retry(String),
    GiveUp(String),
}

impl<'a> Delivery<'a> {
    fn new(shared: &'a Shared, opts: &'a AlertOptions) -> Self {
        Delivery { shared, opts, resolver: Resolver::default(), tls: None }
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<AlertEvent>, mut shutdown: ShutdownWatch) {
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
                _ = shutdown.changed() => break,
            };
            self.deliver(&ev, self.opts.max_attempts, Some(&mut shutdown)).await;
        }
        let deadline = tokio::time::Instant::now() + DRAIN_BUDGET;
        while let Ok(ev) = rx.try_recv() {
            if tokio::time::timeout_at(deadline, self.deliver(&ev, 1, None)).await.is_err() {
                break;
            }
        }
    }

    async fn deliver(&mut self, ev: &AlertEvent, attempts: u32, mut shutdown: Option<&mut ShutdownWatch>) {
        let body = ev.to_json();
        let mut backoff = self.opts.first_backoff;
        for attempt in 1..=attempts.max(1) {
            let Some(ep) = self.shared.endpoint.load_full() else {
                return; // the webhook was removed from the config
            };
            let verdict = match self.post(&ep, &body).await {
                Ok(status) if (200..300).contains(&status) => Verdict::Delivered,
                Ok(status) if status == 408 || status == 429 || status >= 500 => {
                    Verdict::Retry(format!("status {status}"))
                }
                Ok(status) => Verdict::GiveUp(format!("status {status}")),
                Err(e) => Verdict::Retry(e.to_string()),
            };
            let why = match verdict {
                Verdict::Delivered => {
                    self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Verdict::GiveUp(why) => {
                    self.give_up(ev, &ep, attempt, &why);
                    return;
                }
                Verdict::Retry(why) => why,
            };
            if attempt == attempts.max(1) {
                self.give_up(ev, &ep, attempt, &why);
                return;
            }
            tracing::debug!(webhook = %ep.shown(), attempt, error = %why, "alert post failed; retrying");
            let sleep = tokio::time::sleep(backoff);
            match shutdown.as_deref_mut() {
                Some(s) => {
                    tokio::select! {
                        _ = sleep => {}
                        _ = s.changed() => {
                            self.give_up(ev, &ep, attempt, "shutting down");
                            return;
                        }
                    }
                }
                None => sleep.await,
            }
            backoff = (backoff * 2).min(self.opts.max_backoff);
        }
    }

    fn give_up(&self, ev: &AlertEvent, ep: &Endpoint, attempts: u32, why: &str) {
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(webhook = %ep.shown(), kind = ev.kind.title(), attempts, error = %why, "alert not delivered");
    }

    /// One POST; the answer's status code.
    async fn post(&mut self, ep: &Endpoint, body: &[u8]) -> Result<u16, AlertError> {
        let timeout = self.opts.attempt_timeout;
        let request = ep.request(body);
        let attempt = async {
            let io = |source| AlertError::Io { shown: ep.shown(), source };
            let addr = self.resolver.resolve(&ep.host, ep.port).await.map_err(io)?;
            let tcp = TcpStream::connect(addr).await.map_err(io)?;
            let _ = tcp.set_nodelay(true);
            if ep.tls {
                let connector = self.connector(ep)?;
                let name =
                    ServerName::try_from(ep.host.trim_start_matches('[').trim_end_matches(']').to_string())
                        .map_err(|e| AlertError::Tls { shown: ep.shown(), reason: e.to_string() })?;
                let tls = connector.connect(name, tcp).await.map_err(io)?;
                exchange(tls, &request, ep).await
            } else {
                exchange(tcp, &request, ep).await
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| AlertError::Timeout { shown: ep.shown(), timeout })?
    }

    fn connector(&mut self, ep: &Endpoint) -> Result<TlsConnector, AlertError> {
        if let Some(c) = &self.tls {
            return Ok(c.clone());
        }
        pingora::tls::install_default_crypto_provider();
        let roots = match &self.opts.tls_roots {
            Some(r) => r.clone(),
            None => {
                let mut store = RootCertStore::empty();
                let certs = pingora::tls::load_native_certs().map_err(|e| AlertError::Tls {
                    shown: ep.shown(),
                    reason: format!("OS trust store: {e}"),
                })?;
                store.add_parsable_certificates(certs);
                Arc::new(store)
            }
        };
        let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let c = TlsConnector::from(Arc::new(config));
        self.tls = Some(c.clone());
        Ok(c)
    }
}

/// Writes the request and reads the status line of the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
    ep: &Endpoint,
) -> Result<u16, AlertError> {
    let io = |source| AlertError::Io { shown: ep.shown(), source };
    s.write_all(request).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = s.shutdown().await;
    status_of(&buf).ok_or_else(|| AlertError::BadAnswer { shown: ep.shown() })
}

/// The status code of `HTTP/1.x NNN ...`.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok().filter(|s| (100..600).contains(s))
}

// === impl Endpoint ===

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, AlertError> {
        let shown = shown_url(url);
        let bad = |reason| AlertError::InvalidUrl { shown: shown.clone(), reason };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user:password@ is not supported; put the token in the path or query"));
        }
        let host = authority.host().to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(Endpoint { tls, host, port, authority: authority.as_str().to_string(), path })
    }

    /// Scheme and host only: the path of a webhook URL is often its secret.
    fn shown(&self) -> String {
        format!("{}://{}/…", if self.tls { "https" } else { "http" }, self.authority)
    }

    fn request(&self, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: llm-gateway\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }
}

/// `scheme://host/…` of a URL that may not parse, for error messages.
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host);
            format!("{scheme}://{host}/…")
        }
        None => "(not a URL)".to_string(),
    }
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
