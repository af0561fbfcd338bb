//! The admin API's view of the running gateway: `admin::ConfigHost` (the running text, validate,
//! apply) over the `RuntimeStore`, and `admin::LiveViews` (health, usage, metrics) over the
//! target registry, the usage index and the metrics registry.

use std::path::PathBuf;
use std::sync::Arc;

use crate::admin::usage_index::{self, GroupBy, UsageIndex};
use crate::admin::{ConfigHost, LiveViews, RunningText, UsageQuery};
use crate::config::{self, ConfigErrors};
use crate::routing::Targets;
use crate::runtime::{RuntimeStore, Trigger};
use crate::telemetry::Metrics;

pub struct Host {
    pub store: Arc<RuntimeStore>,
}

impl ConfigHost for Host {
    fn running_text(&self) -> RunningText {
        let (text, sha256) = self.store.running_text();
        RunningText { text: text.into(), sha256 }
    }

    fn validate(&self, text: &str) -> Result<(), ConfigErrors> {
        let snap = config::load_str(text)?;
        crate::runtime::jwt_verifier(&snap.config).map(|_| ())
    }

    fn apply(&self, text: &str) -> Result<(), ConfigErrors> {
        self.store.apply(text.to_string(), Trigger::Admin).map(|_| ())
    }

    fn config_path(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    fn state_dir(&self) -> PathBuf {
        PathBuf::from(&self.store.load().snap.state_dir)
    }
}

pub struct Views {
    pub store: Arc<RuntimeStore>,
    pub targets: Arc<Targets>,
    pub usage: Option<UsageIndex>,
    pub metrics: Arc<Metrics>,
}

impl LiveViews for Views {
    fn health(&self) -> serde_json::Value {
        let rt = self.store.load();
        let backend = match &rt.shared {
            Some(s) => {
                serde_json::json!({ "kind": "redis", "on_error": s.on_error, "redis": s.limits.health() })
            }
            None => serde_json::json!({ "kind": "memory" }),
        };
        serde_json::json!({ "targets": self.targets.snapshot(), "limits_backend": backend })
    }

    /// Live limit state of a key and of its project: RPM/TPM remaining, in flight, spend this
    /// period against the budget.
    fn key_limits(&self, id: &str) -> Option<serde_json::Value> {
        use crate::limits::{BudgetRule, ScopeId, ScopeRules};
        let rt = self.store.load();
        let k = rt.snap.config.keys.iter().find(|k| k.id == id)?;
        let (mono, wall) =
            (crate::admission::mono_ns(std::time::Instant::now()), std::time::SystemTime::now());
        let rules = ScopeRules {
            rpm: k.rpm,
            tpm: k.tpm,
            max_parallel: k.max_parallel,
            budget: k.budget.as_ref().map(BudgetRule::from_config),
        };
        let key_scope = ScopeId::key(k.id.as_str());
        let project =
            k.project.as_deref().and_then(|p| Some((ScopeId::project(p), rt.project_rules.get(p)?)));
        let mut key = rt.limits.state(&key_scope, &rules, mono, wall);
        let mut project_view = project.as_ref().map(|(s, r)| rt.limits.state(s, r, mono, wall));
        // With `redis:` the counters live in Redis (this instance's memory has none of them):
        // read there, as admission does (the scopes that have a limit).
        let mut source = "memory".to_string();
        if let (Some(shared), Ok(handle)) = (&rt.shared, tokio::runtime::Handle::try_current()) {
            let limited = |r: &ScopeRules| {
                r.rpm.is_some() || r.tpm.is_some() || r.max_parallel.is_some() || r.budget.is_some()
            };
            let mut scopes: Vec<(ScopeId, &ScopeRules)> = Vec::with_capacity(2);
            if limited(&rules) {
                scopes.push((key_scope.clone(), &rules));
            }
            if let Some((s, r)) = project.as_ref().filter(|(_, r)| limited(r)) {
                scopes.push((s.clone(), *r));
            }
            if !scopes.is_empty() {
                // Admin handlers run on a blocking thread: waiting here blocks no request.
                match handle.block_on(shared.limits.state(&scopes, wall)) {
                    Ok(views) => {
                        source = "redis".into();
                        for v in views {
                            if v.scope == key_scope {
                                key = v;
                            } else {
                                project_view = Some(v);
                            }
                        }
                    }
                    Err(e) => source = format!("memory ({e})"),
                }
            }
        }
        Some(serde_json::json!({ "key": key, "project": project_view, "source": source }))
    }

    fn usage(&self, q: &UsageQuery) -> Result<serde_json::Value, String> {
        let Some(index) = &self.usage else { return Err("the usage index could not be opened".into()) };
        let group_by = q
            .group_by
            .iter()
            .map(|g| match g.as_str() {
                "key" => Ok(GroupBy::Key),
                "project" => Ok(GroupBy::Project),
                "model" => Ok(GroupBy::Model),
                "provider" => Ok(GroupBy::Provider),
                "status" => Ok(GroupBy::Status),
                "hour" => Ok(GroupBy::Hour),
                "day" => Ok(GroupBy::Day),
                other => Err(format!("unknown group_by {other:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let iq = usage_index::UsageQuery {
            key: q.key.clone(),
            project: q.project.clone(),
            model: q.model.clone(),
            provider: q.provider.clone(),
            from: q.from.map(|t| t.unix_timestamp()),
            to: q.to.map(|t| t.unix_timestamp()),
            group_by,
        };
        index.refresh().map_err(|e| e.to_string())?;
        let report = index.query(&iq).map_err(|e| e.to_string())?;
        serde_json::to_value(report).map_err(|e| e.to_string())
    }

    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}
