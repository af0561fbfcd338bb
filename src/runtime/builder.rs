//! Builds a [`Runtime`] from a validated snapshot. State that must survive a reload lives in
//! [`Registries`] (target circuits, latency and health in `routing::Targets`); an alias whose
//! targets and weights did not change keeps its router, so its smooth weighted round-robin
//! sequence goes on where it was.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::Runtime;
use crate::config::{Config, Snapshot};
use crate::limits::shared::SharedLimits;
use crate::routing::{AliasRouter, CircuitConfig, TargetKey, Targets};

/// State that outlives reloads.
pub struct Registries {
    pub targets: Arc<Targets>,
    pub limits: Arc<crate::limits::LimitsRegistry>,
    /// Request-body bytes held in memory, process-wide.
    pub body_memory: Arc<crate::limits::body_memory::BodyMemory>,
    /// The Redis backend and the settings it was made with (kept while they do not change, so
    /// a reload does not reconnect).
    shared: parking_lot::Mutex<Option<(String, Arc<SharedLimits>)>>,
}

/// What identifies an alias's router: its targets (provider, model) and weights, in order.
type RouterSig = Vec<(TargetKey, u32)>;

// === impl Registries ===

impl Default for Registries {
    fn default() -> Self {
        Registries {
            targets: Targets::new(),
            limits: Arc::new(crate::limits::LimitsRegistry::new()),
            body_memory: crate::limits::body_memory::BodyMemory::new(),
            shared: parking_lot::Mutex::new(None),
        }
    }
}

impl Registries {
    /// Build the runtime for `snap`, reusing `prev`'s routers for unchanged aliases.
    pub fn build(
        &self,
        snap: Snapshot,
        prev: Option<&Runtime>,
        generation: u64,
        jwt: Option<Arc<crate::auth::JwtVerifier>>,
    ) -> Runtime {
        let circuit = CircuitConfig {
            failure_threshold: snap.limits.failure_threshold,
            cooldown: snap.limits.cooldown,
        };
        let mut old: HashMap<RouterSig, Arc<AliasRouter>> = HashMap::new();
        if let Some(p) = prev {
            for (a, r) in p.snap.aliases.iter().enumerate().filter_map(|(i, a)| Some((a, p.routers.get(i)?)))
            {
                old.insert(signature(&p.snap, a), r.clone());
            }
        }
        let mut live = Vec::new();
        let routers = snap
            .aliases
            .iter()
            .map(|a| {
                let sig = signature(&snap, a);
                live.extend(sig.iter().map(|(k, _)| k.clone()));
                // Circuit settings may have changed: apply them to the shared target states.
                let states: Vec<_> = sig.iter().map(|(k, _)| self.targets.target(k, circuit)).collect();
                if let Some(r) = old.get(&sig) {
                    return r.clone();
                }
                let weights: Vec<u32> = sig.iter().map(|(_, w)| *w).collect();
                Arc::new(AliasRouter::new(states, &weights))
            })
            .collect();
        self.targets.retain(&live);
        let warnings = unenforced_fields(&snap.config);
        let project_rules = snap
            .config
            .projects
            .iter()
            .map(|p| (p.name.clone(), crate::limits::ScopeRules::from_project(p)))
            .collect();
        let shared = self.shared(&snap.config);
        // Admission counts tokens only for TPM limits and budgets: load the vocabularies
        // (~60 MiB, ~0.5 s) before the first such request, and not at all without them
        // (`count_tokens` and preflight then load one on first use).
        if needs_tokenizer(&snap.config) {
            if let Err(e) = crate::limits::tokens::warm() {
                tracing::warn!("tokenizer: {e}");
            }
        }
        Runtime {
            snap,
            routers,
            generation,
            warnings,
            jwt,
            project_rules,
            limits: self.limits.clone(),
            body_memory: self.body_memory.clone(),
            shared,
        }
    }

    /// The Redis backend for `redis:` (the previous one when its settings did not change).
    /// A URL Redis cannot use is logged and limits stay in memory.
    fn shared(&self, c: &Config) -> Option<super::Shared> {
        let r = c.redis.as_ref()?;
        let master = c
            .master_key
            .as_ref()
            .and_then(|m| m.resolve(None).ok())
            .and_then(|v| crate::config::MasterKey::from_base64(v.expose()).ok());
        let password = match r.password.as_ref().map(|p| p.resolve(master.as_ref())).transpose() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("redis.password: {e}; limits stay in this instance's memory");
                return None;
            }
        };
        let password = password.as_ref().map(|p| p.expose().to_string());
        let sig = format!(
            "{}|{}|{}|{}",
            r.url,
            password.as_deref().map(crate::auth::stored_form).unwrap_or_default(),
            r.timeout_ms,
            r.slot_lease_s
        );
        let mut slot = self.shared.lock();
        let limits = match slot.as_ref() {
            Some((s, l)) if *s == sig => l.clone(),
            _ => {
                let made = SharedLimits::new(
                    &r.url,
                    password.as_deref(),
                    Duration::from_millis(r.timeout_ms.max(1)),
                    Duration::from_secs(r.slot_lease_s.max(1)),
                );
                match made {
                    Ok(l) => {
                        *slot = Some((sig, l.clone()));
                        l
                    }
                    Err(e) => {
                        tracing::error!("{e}; limits stay in this instance's memory");
                        return None;
                    }
                }
            }
        };
        Some(super::Shared { limits, on_error: r.on_error })
    }
}

fn signature(snap: &Snapshot, a: &crate::config::Alias) -> RouterSig {
    a.targets
        .iter()
        .map(|t| (TargetKey::new(snap.providers[t.provider].name.clone(), t.model.clone()), t.weight))
        .collect()
}

/// The JWT verifier of `auth.jwt` (keys and JWKS file loaded), or the config errors it found.
pub fn jwt_verifier(
    c: &Config,
) -> Result<Option<Arc<crate::auth::JwtVerifier>>, crate::config::ConfigErrors> {
    let Some(cfg) = c.auth.as_ref().and_then(|a| a.jwt.as_ref()) else { return Ok(None) };
    let master = c
        .master_key
        .as_ref()
        .and_then(|m| m.resolve(None).ok())
        .and_then(|v| crate::config::MasterKey::from_base64(v.expose()).ok());
    crate::auth::JwtVerifier::new(cfg, master.as_ref()).map(|v| Some(Arc::new(v))).map_err(|errs| {
        crate::config::ConfigErrors(
            errs.into_iter().map(|(path, message)| crate::config::ConfigError { path, message }).collect(),
        )
    })
}

/// Config fields that are accepted but not enforced by this build, one line per field and
/// entry ("keys[2].rpm is not enforced yet"), so nothing is silently ignored.
/// Whether admission will count tokens: a TPM limit or a budget on any key or project.
pub fn needs_tokenizer(c: &Config) -> bool {
    c.keys.iter().any(|k| k.tpm.is_some() || k.budget.is_some())
        || c.projects.iter().any(|p| p.tpm.is_some() || p.budget.is_some())
}

pub fn unenforced_fields(_c: &Config) -> Vec<String> {
    // Every field of this build is enforced (`jobs:` was the last, until the job APIs).
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &str, projects: &str) -> Config {
        let text = format!(
            "providers: [ {{ name: m, kind: mock }} ]\nmodels: [ {{ alias: a, targets: [ {{ provider: m, model: x }} ] }} ]\nprojects: [{projects}]\nkeys: [{keys}]\n"
        );
        crate::config::parse(&text).unwrap()
    }

    #[test]
    fn the_tokenizer_is_needed_for_tpm_and_budgets_only() {
        let hash = "sha256:82dae6d443609cfcb4e698af21391e5132c679ce83b37086ada791a0fb2a43ee";
        assert!(!needs_tokenizer(&config(
            &format!("{{ id: k, hash: \"{hash}\", rpm: 5, max_parallel: 2 }}"),
            "{ name: p, rpm: 9 }"
        )));
        assert!(needs_tokenizer(&config(&format!("{{ id: k, hash: \"{hash}\", tpm: 500 }}"), "")));
        assert!(needs_tokenizer(&config(
            &format!("{{ id: k, hash: \"{hash}\" }}"),
            "{ name: p, budget: { usd: 5, period: daily } }"
        )));
    }
}
