//! The HTTPS listener's certificate, reloaded without a restart: a rustls certificate resolver
//! that hands out the current certificate, and a background task that looks at the files every
//! [`CHECK`] (and after each config reload, which may name other files). A new pair is used for
//! new connections; connections already open keep the certificate they shook hands with. A
//! broken new pair (unreadable, not PEM, key not matching) keeps the old one and logs why, once
//! per change.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

use crate::runtime::RuntimeStore;

/// How often the files are looked at.
pub const CHECK: Duration = Duration::from_secs(1);

/// The current certificate, shared by the TLS acceptor and the reloader.
#[derive(Debug)]
pub struct Certs {
    current: ArcSwap<CertifiedKey>,
}

/// What identifies a version of the files: paths, sizes and modification times.
type Stamp = Vec<(String, u64, Option<SystemTime>)>;

/// The background task that reloads [`Certs`].
pub struct CertReloader {
    pub certs: Arc<Certs>,
    pub store: Arc<RuntimeStore>,
}

// === impl Certs ===

impl Certs {
    /// Load `cert` (PEM chain) and `key` (PEM private key).
    pub fn load(cert: &str, key: &str) -> Result<Arc<Certs>, String> {
        Ok(Arc::new(Certs { current: ArcSwap::from_pointee(load(cert, key)?) }))
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Read and check one pair: the chain, the key, and that the key is the chain's.
fn load(cert: &str, key: &str) -> Result<CertifiedKey, String> {
    pingora::tls::install_default_crypto_provider();
    let (chain, key_der) = match pingora::tls::load_certs_and_key_files(cert, key) {
        Ok(Some(pair)) => pair,
        Ok(None) => return Err(format!("no certificate in {cert} or no private key in {key}")),
        Err(e) => return Err(format!("cannot read {cert} / {key}: {e}")),
    };
    if chain.is_empty() {
        return Err(format!("no certificate in {cert}"));
    }
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider installed")?;
    let certified =
        CertifiedKey::from_der(chain, key_der, provider).map_err(|e| format!("{cert} / {key}: {e}"))?;
    certified.keys_match().map_err(|e| format!("{key} is not the key of {cert}: {e}"))?;
    Ok(certified)
}

fn stamp(paths: &[&str]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            (p.to_string(), meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()))
        })
        .collect()
}

// === impl CertReloader ===

#[async_trait]
impl BackgroundService for CertReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let paths = |store: &RuntimeStore| {
            store.load().snap.config.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone()))
        };
        let mut seen = paths(&self.store).map(|(c, k)| stamp(&[&c, &k]));
        let mut tick = tokio::time::interval(CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some((cert, key)) = paths(&self.store) else { continue };
            let now = Some(stamp(&[&cert, &key]));
            if now == seen {
                continue;
            }
            seen = now;
            match load(&cert, &key) {
                Ok(c) => {
                    self.certs.current.store(Arc::new(c));
                    tracing::info!(cert = %cert, "TLS certificate reloaded; new connections use it");
                }
                Err(e) => tracing::warn!("TLS certificate not reloaded, keeping the current one: {e}"),
            }
        }
    }
}
