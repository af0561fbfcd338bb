//! Active health checks: a Pingora background service that GETs each provider's
//! `health_check.path` every `interval_s`, with that provider's own TLS, SNI and auth
//! headers, and marks the provider healthy or unhealthy in [`Targets`]. Each check is
//! pingora-load-balancing's `HttpHealthCheck` with a per-provider peer template (pingora's
//! `LoadBalancer` has one template for all backends, so it cannot mix TLS/SNI). It does not
//! read the config: the caller maps providers to [`HealthTarget`]s (addresses resolved) and
//! calls [`HealthChecker::update`] on every reload, metadata-only changes included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_core::{Error, ErrorType};
use pingora_http::RequestHeader;
use pingora_load_balancing::health_check::{HealthCheck, HttpHealthCheck};
use pingora_load_balancing::Backend;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::targets::Targets;

/// One provider's active health check, as mapped from the config by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTarget {
    /// Provider name (the `TargetKey::provider` of its targets).
    pub provider: String,
    /// `scheme://host[:port]/path`: the provider's `base_url` joined with `health_check.path`.
    /// Its authority is sent as `Host`; its scheme is informational (see `tls`).
    pub url: String,
    /// Connect with TLS.
    pub tls: bool,
    /// TLS server name (normally the URL's host). Always set it: rustls fails on an empty SNI.
    pub sni: String,
    /// Verify the upstream certificate and hostname (the provider's `tls_verify`).
    pub verify: bool,
    /// The address to connect to, resolved by the caller (no DNS here).
    pub addr: SocketAddr,
    /// Extra request headers, e.g. the provider's auth header.
    pub headers: Vec<(String, String)>,
    /// Time between checks (`health_check.interval_s`).
    pub interval: Duration,
}

/// Deadline of one whole check (connect, TLS, request, response header, body).
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A check ready to run: pingora's `HttpHealthCheck` built from one [`HealthTarget`].
struct Check {
    target: HealthTarget,
    hc: HttpHealthCheck,
    backend: Backend,
}

/// The background service. Share it with `background_service("health", checker)` and keep
/// `.task()` (an `Arc<HealthChecker>`) to call [`Self::update`] on reloads.
pub struct HealthChecker {
    targets: Arc<Targets>,
    checks: ArcSwap<Vec<Arc<Check>>>,
    changed: Notify,
}

// === impl HealthChecker ===

impl HealthChecker {
    pub fn new(targets: Arc<Targets>, checks: Vec<HealthTarget>) -> Self {
        let checker =
            HealthChecker { targets, checks: ArcSwap::from_pointee(Vec::new()), changed: Notify::new() };
        checker.update(checks);
        checker
    }

    /// Replaces the set of checks (config reload). A provider whose check changed in any
    /// way (address, TLS, SNI, headers, path, interval) is rebuilt and checked right away;
    /// an unchanged one keeps its schedule; a provider whose check was removed is marked
    /// healthy (no active check means no active verdict). Health state is kept throughout.
    pub fn update(&self, targets: Vec<HealthTarget>) {
        let old = self.checks.load_full();
        let mut next = Vec::with_capacity(targets.len());
        for t in targets {
            if let Some(same) = old.iter().find(|c| c.target == t) {
                next.push(same.clone());
                continue;
            }
            match Check::new(t) {
                Ok(c) => next.push(Arc::new(c)),
                Err(e) => tracing::warn!(error = %e, "health check not started"),
            }
        }
        for gone in old.iter().filter(|o| !next.iter().any(|n| n.target.provider == o.target.provider)) {
            self.targets.provider(&gone.target.provider).set(true, None);
        }
        self.checks.store(Arc::new(next));
        self.changed.notify_one();
    }

    /// Runs every check once, now, and records the results (what the loop does when due).
    pub async fn check_all_once(&self) {
        let checks = self.checks.load_full();
        self.run(checks.iter().cloned().collect()).await;
    }

    async fn run(&self, due: Vec<Arc<Check>>) {
        let mut set = JoinSet::new();
        for check in due {
            set.spawn(async move {
                let result = match tokio::time::timeout(CHECK_TIMEOUT, check.hc.check(&check.backend)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}")),
                };
                (check, result)
            });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((check, result)) = joined else { continue };
            let provider = &check.target.provider;
            let healthy = result.is_ok();
            if self.targets.provider(provider).set(healthy, result.as_ref().err().cloned()) {
                match &result {
                    Ok(()) => tracing::info!(provider = %provider, "health check passing again"),
                    Err(e) => {
                        tracing::warn!(provider = %provider, url = %check.target.url, error = %e, "health check failing")
                    }
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // When each check is next due. Keyed by provider, and remembering *which* check was
        // scheduled: a rebuilt check (any change) or a new provider is due at once.
        let mut due: HashMap<String, (Arc<Check>, Instant)> = HashMap::new();
        loop {
            let checks = self.checks.load_full();
            let now = Instant::now();
            due.retain(|p, (c, _)| checks.iter().any(|n| &n.target.provider == p && Arc::ptr_eq(n, c)));
            let ready: Vec<Arc<Check>> = checks
                .iter()
                .filter(|c| due.get(&c.target.provider).is_none_or(|(_, t)| *t <= now))
                .cloned()
                .collect();
            if !ready.is_empty() {
                tokio::select! {
                    _ = self.run(ready.clone()) => {}
                    _ = shutdown.changed() => return,
                }
                let done = Instant::now();
                for c in ready {
                    let next = done + c.target.interval.max(Duration::from_secs(1));
                    due.insert(c.target.provider.clone(), (c, next));
                }
            }
            let wake = due.values().map(|(_, t)| *t).min().unwrap_or_else(|| now + Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = self.changed.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

// === impl Check ===

impl Check {
    fn new(target: HealthTarget) -> Result<Self, String> {
        let uri: http::Uri =
            target.url.parse().map_err(|e| format!("{}: bad url {:?}: {e}", target.provider, target.url))?;
        let host = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_else(|| target.sni.clone());
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let mut hc = HttpHealthCheck::new(&host, target.tls);
        hc.peer_template.sni = target.sni.clone();
        hc.peer_template.options.verify_cert = target.verify;
        hc.peer_template.options.verify_hostname = target.verify;
        hc.peer_template.options.connection_timeout = Some(Duration::from_secs(3));
        hc.peer_template.options.total_connection_timeout = Some(Duration::from_secs(5));
        hc.peer_template.options.read_timeout = Some(Duration::from_secs(5));
        hc.peer_template.options.write_timeout = Some(Duration::from_secs(5));
        let bad = |e: Box<Error>| format!("{}: health check request: {e}", target.provider);
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(bad)?;
        req.insert_header("host", &host).map_err(bad)?;
        req.insert_header("accept-encoding", "identity").map_err(bad)?;
        req.insert_header("user-agent", "llm-gateway-health-check").map_err(bad)?;
        for (k, v) in &target.headers {
            req.insert_header(k.clone(), v).map_err(bad)?;
        }
        hc.req = req;
        hc.validator = Some(Box::new(|resp| {
            if resp.status.is_success() {
                Ok(())
            } else {
                let status = resp.status.as_u16();
                Error::e_explain(ErrorType::CustomCode("non 2xx", status), format!("answered {status}"))
            }
        }));
        let backend = Backend {
            addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(target.addr),
            weight: 1,
            ext: http::Extensions::new(),
        };
        Ok(Check { target, hc, backend })
    }
}
