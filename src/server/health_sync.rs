//! Keeps the active health checks in step with the config: maps each provider's `health_check`
//! to a `routing::HealthTarget` (address resolved asynchronously, the provider's own TLS, SNI
//! and auth header) and hands the list to the checker whenever the snapshot or an address changes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{ConfigStore, Provider, ProviderKind, Snapshot};
use crate::net::Resolver;
use crate::routing::{HealthChecker, HealthTarget};

/// How often the snapshot is compared (reloads) and addresses re-resolved (DNS changes).
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

pub struct HealthSync {
    pub store: Arc<ConfigStore>,
    pub checker: Arc<HealthChecker>,
    pub resolver: Resolver,
}

#[async_trait]
impl BackgroundService for HealthSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last: Option<Vec<HealthTarget>> = None;
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let snap = self.store.load();
            let targets = self.targets(&snap).await;
            if last.as_ref() != Some(&targets) {
                self.checker.update(targets.clone());
                last = Some(targets);
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
                headers: auth_headers(p),
                interval: Duration::from_secs(hc.interval_s.max(1)),
            });
        }
        out
    }
}

/// The header a provider authenticates with (Bedrock signs per request: no header, so its
/// health check should name an unauthenticated path).
fn auth_headers(p: &Provider) -> Vec<(String, String)> {
    let Some(key) = p.api_key.as_ref().map(|k| k.expose().to_string()) else { return Vec::new() };
    match p.kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            vec![("authorization".into(), format!("Bearer {key}"))]
        }
        ProviderKind::AzureOpenai => vec![("api-key".into(), key)],
        ProviderKind::Anthropic => vec![
            ("x-api-key".into(), key),
            ("anthropic-version".into(), crate::providers::ANTHROPIC_API_VERSION.into()),
        ],
        ProviderKind::Gemini => vec![("x-goog-api-key".into(), key)],
        ProviderKind::Bedrock | ProviderKind::Mock => Vec::new(),
    }
}
