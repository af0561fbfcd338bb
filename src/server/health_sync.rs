//! Keeps the active health checks in step with the config: maps each provider's `health_check`
//! to a `routing::HealthTarget` (address resolved asynchronously, the provider's own TLS, SNI
//! and auth headers from its declaration) and hands the list to the checker whenever a new
//! runtime is published (followed through the store's `watch`) or, every minute, an address changes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::Snapshot;
use crate::net::Resolver;
use crate::routing::{HealthChecker, HealthTarget};
use crate::runtime::RuntimeStore;

/// How often addresses are re-resolved (DNS changes) without a config change.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(60);

pub struct HealthSync {
    pub store: Arc<RuntimeStore>,
    pub checker: Arc<HealthChecker>,
    pub resolver: Resolver,
}

#[async_trait]
impl BackgroundService for HealthSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last: Option<Vec<HealthTarget>> = None;
        let mut runtimes = self.store.subscribe();
        let mut tick = tokio::time::interval(RESOLVE_INTERVAL);
        loop {
            let rt = runtimes.borrow_and_update().clone();
            let targets = self.targets(&rt.snap).await;
            if last.as_ref() != Some(&targets) {
                self.checker.update(targets.clone());
                last = Some(targets);
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                r = runtimes.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    }
}

impl HealthSync {
    async fn targets(&self, snap: &Snapshot) -> Vec<HealthTarget> {
        let mut out = Vec::new();
        for p in &snap.providers {
            let (Some(hc), Some(ep)) = (&p.health_check, &p.endpoint) else { continue };
            let addr = match self.resolver.resolve(&ep.host, ep.port).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(provider = %p.name, "health check: cannot resolve {}: {e}", ep.host);
                    continue;
                }
            };
            let scheme = if ep.tls { "https" } else { "http" };
            out.push(HealthTarget {
                provider: p.name.clone(),
                url: format!("{scheme}://{}{}{}", ep.authority, ep.path_prefix, hc.path),
                tls: ep.tls,
                sni: ep.sni().to_string(),
                verify: p.tls_verify,
                addr,
                // Bedrock signs per request (no static header): its health check should name an
                // unauthenticated path.
                headers: crate::providers::spec(p.kind)
                    .auth_headers(p.api_key.as_ref().map(|k| k.expose()))
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                interval: Duration::from_secs(hc.interval_s.max(1)),
            });
        }
        out
    }
}
