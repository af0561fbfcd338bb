//! Parse and validate a config as a whole, collecting every error with its YAML path
//! (`models[2].targets[0].provider: unknown provider "opnai"; did you mean "openai"?`).
//! `llm-gateway check`, startup, hot reload and admin mutations all go through `load_str`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::schema::{Config, ProviderKind};
use super::secrets::{MasterKey, Secret, SecretString};
use super::snapshot::{self, Endpoint, Snapshot};

/// One problem in a config, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// YAML path, e.g. `models[2].targets[0].provider` ("" for the whole file).
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every error of one config, one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parse YAML text into the typed config. A YAML syntax error is reported alone; otherwise
/// every entry of `providers`, `models`, `projects` and `keys` is read on its own so that one
/// run reports a type error in each of them, with its path.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError { path: String::new(), message: format!("not valid YAML: {e}") }])
    })?;
    if value.is_null() {
        value = serde_yaml::Value::Mapping(Default::default());
    }
    let mut errs = Vec::new();
    let mut lists: Vec<(&str, Vec<serde_yaml::Value>)> = Vec::new();
    if let serde_yaml::Value::Mapping(m) = &mut value {
        for name in ["providers", "models", "projects", "keys"] {
            if let Some(serde_yaml::Value::Sequence(items)) = m.get(name) {
                lists.push((name, items.clone()));
                m.remove(name);
            }
        }
    }
    let mut config = match typed::<Config>(value) {
        Ok(c) => Some(c),
        Err((path, message)) => {
            errs.push(ConfigError { path, message });
            None
        }
    };
    for (name, items) in lists {
        for (i, item) in items.into_iter().enumerate() {
            let at = |(p, message): (String, String)| ConfigError {
                path: if p.is_empty() { format!("{name}[{i}]") } else { format!("{name}[{i}].{p}") },
                message,
            };
            let c = config.as_mut();
            match name {
                "providers" => match typed(item) {
                    Ok(v) => {
                        if let Some(c) = c {
                            c.providers.push(v)
                        }
                    }
                    Err(e) => errs.push(at(e)),
                },
                "models" => match typed(item) {
                    Ok(v) => {
                        if let Some(c) = c {
                            c.models.push(v)
                        }
                    }
                    Err(e) => errs.push(at(e)),
                },
                "projects" => match typed(item) {
                    Ok(v) => {
                        if let Some(c) = c {
                            c.projects.push(v)
                        }
                    }
                    Err(e) => errs.push(at(e)),
                },
                _ => match typed(item) {
                    Ok(v) => {
                        if let Some(c) = c {
                            c.keys.push(v)
                        }
                    }
                    Err(e) => errs.push(at(e)),
                },
            }
        }
    }
    match config {
        Some(c) if errs.is_empty() => Ok(c),
        _ => Err(ConfigErrors(errs)),
    }
}

/// Deserialize one YAML value, turning the first error into (path, message).
fn typed<T: serde::de::DeserializeOwned>(v: serde_yaml::Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let mut message = e.into_inner().to_string();
        // The YAML error repeats the (parent) path before ": "; keep only the message.
        if let Some((head, rest)) = message.split_once(": ") {
            if !head.contains(' ') {
                message = rest.to_string();
            }
        }
        (path, message)
    })
}

/// How secrets are treated while building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// Resolve `env:` and `enc:` values (run, reload, admin mutations).
    Resolve,
    /// Check their syntax only (`check --no-secrets`, e.g. in CI without the environment).
    Skip,
}

/// Parse, validate and resolve: the one entry point for text.
pub fn load_str(text: &str) -> Result<Snapshot, ConfigErrors> {
    build(parse(text)?)
}

/// Validate a typed config as a whole and build its runtime snapshot.
pub fn build(config: Config) -> Result<Snapshot, ConfigErrors> {
    build_with(config, Secrets::Resolve)
}

/// [`build`], choosing how secrets are treated.
pub fn build_with(config: Config, secrets: Secrets) -> Result<Snapshot, ConfigErrors> {
    let mut errs = Errors::default();

    if config.listen.is_none() && config.tls.is_none() {
        errs.push("listen", "set `listen` (plain HTTP) or `tls` (HTTPS) so the gateway has a data listener");
    }
    check_addr(&mut errs, "listen", config.listen.as_deref());
    if let Some(t) = &config.tls {
        check_addr(&mut errs, "tls.listen", Some(&t.listen));
    }
    if let Some(a) = &config.admin {
        check_addr(&mut errs, "admin.listen", Some(&a.listen));
    }
    let l = &config.limits;
    if l.max_body_bytes == 0 {
        errs.push("limits.max_body_bytes", "0 is not allowed; use a size in bytes such as 10485760");
    }
    if l.max_body_memory_bytes < l.max_body_bytes {
        errs.push(
            "limits.max_body_memory_bytes",
            format!("{} is below limits.max_body_bytes ({}): no body of the largest allowed size could ever be read", l.max_body_memory_bytes, l.max_body_bytes),
        );
    }
    if l.upstream_timeout_ms == 0 {
        errs.push("limits.upstream_timeout_ms", "0 is not allowed; use milliseconds such as 120000");
    }
    if l.max_attempts == 0 {
        errs.push("limits.max_attempts", "0 is not allowed; use 1 for no retries");
    }
    if l.circuit_breaker.failure_threshold == 0 {
        errs.push("limits.circuit_breaker.failure_threshold", "0 is not allowed; use 1 or more");
    }

    if l.header_timeout_ms == 0 {
        errs.push("limits.header_timeout_ms", "0 is not allowed; use milliseconds such as 10000");
    }
    if l.shutdown_grace_s == 0 {
        errs.push("limits.shutdown_grace_s", "0 is not allowed; use seconds such as 30");
    }
    if l.max_file_bytes == 0 {
        errs.push("limits.max_file_bytes", "0 is not allowed; use a size in bytes such as 536870912");
    }
    if let Some(o) = &config.otel {
        if !crate::telemetry::otel::endpoint_ok(&o.endpoint) {
            errs.push("otel.endpoint", format!("{:?} {}", o.endpoint, crate::telemetry::otel::ENDPOINT_RULE));
        }
        if o.export_interval_ms == 0 {
            errs.push("otel.export_interval_ms", "0 is not allowed; use milliseconds such as 5000");
        }
    }
    if let Some(r) = &config.redis {
        if !(r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
            errs.push("redis.url", format!("{:?} must start with redis:// or rediss://", r.url));
        }
        if r.timeout_ms == 0 {
            errs.push("redis.timeout_ms", "0 is not allowed; use milliseconds such as 50");
        }
    }
    let skip = secrets == Secrets::Skip;
    let master = config.master_key.as_ref().filter(|_| !skip).and_then(|m| match m.resolve(None) {
        Ok(v) => match MasterKey::from_base64(v.expose()) {
            Ok(k) => Some(k),
            Err(e) => {
                errs.push("master_key", e);
                None
            }
        },
        Err(e) => {
            errs.push("master_key", e);
            None
        }
    });
    let resolve = |errs: &mut Errors, path: String, s: &Option<Secret>| -> Option<SecretString> {
        let s = s.as_ref()?;
        if skip {
            return None;
        }
        match s.resolve(master.as_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                errs.push(path, e);
                None
            }
        }
    };
    let admin_token = config.admin.as_ref().and_then(|a| resolve(&mut errs, "admin.token".into(), &a.token));

    // Providers.
    let mut provider_index: HashMap<&str, usize> = HashMap::new();
    let mut providers = Vec::with_capacity(config.providers.len());
    for (i, p) in config.providers.iter().enumerate() {
        let at = |f: &str| format!("providers[{i}].{f}");
        if p.name.is_empty() {
            errs.push(at("name"), "must not be empty");
        } else if provider_index.insert(&p.name, i).is_some() {
            errs.push(at("name"), format!("duplicate provider name {:?}", p.name));
        }
        let endpoint = match (p.kind, p.base_url.as_deref()) {
            (ProviderKind::Mock, None) => None,
            (_, Some(url)) => match Endpoint::parse(url) {
                Ok(e) => Some(e),
                Err(e) => {
                    errs.push(at("base_url"), e);
                    None
                }
            },
            (kind, None) => match crate::providers::spec(kind).default_base_url(p.region.as_deref()) {
                Some(url) => Endpoint::parse(&url).ok(),
                None => {
                    errs.push(at("base_url"), format!("required for kind {}", kind.name()));
                    None
                }
            },
        };
        if p.responses && p.kind != ProviderKind::OpenaiCompatible {
            errs.push(at("responses"), "only for kind openai_compatible (the others declare it themselves)");
        }
        match p.kind {
            kind if crate::providers::spec(kind).api_key_required && p.api_key.is_none() => {
                errs.push(
                    at("api_key"),
                    format!("required for kind {} (literal, env:NAME or enc:...)", p.kind.name()),
                );
            }
            ProviderKind::AzureOpenai if p.api_version.is_none() => {
                errs.push(at("api_version"), "required for azure_openai (e.g. \"2024-10-21\", or \"v1\")");
            }
            ProviderKind::Bedrock if p.region.is_none() => {
                errs.push(at("region"), "required for bedrock (e.g. us-east-1)");
            }
            _ => {}
        }
        if let Some(h) = &p.health_check {
            if !h.path.starts_with('/') {
                errs.push(at("health_check.path"), format!("{:?} must start with /", h.path));
            }
            if h.interval_s == 0 {
                errs.push(at("health_check.interval_s"), "0 is not allowed; use seconds such as 15");
            }
        }
        providers.push(snapshot::Provider {
            name: p.name.clone(),
            kind: p.kind,
            endpoint,
            api_key: resolve(&mut errs, at("api_key"), &p.api_key),
            api_version: p.api_version.clone(),
            region: p.region.clone(),
            aws_access_key_id: resolve(&mut errs, at("aws_access_key_id"), &p.aws_access_key_id),
            aws_secret_access_key: resolve(&mut errs, at("aws_secret_access_key"), &p.aws_secret_access_key),
            aws_session_token: resolve(&mut errs, at("aws_session_token"), &p.aws_session_token),
            health_check: p.health_check.clone(),
            tls_verify: p.tls_verify,
            responses: p.responses,
        });
    }

    // Aliases: names first, so fallbacks can refer forward.
    let mut alias_index: HashMap<Box<str>, usize> = HashMap::new();
    for (i, m) in config.models.iter().enumerate() {
        if m.alias.is_empty() {
            errs.push(format!("models[{i}].alias"), "must not be empty");
        } else if alias_index.insert(m.alias.as_str().into(), i).is_some() {
            errs.push(format!("models[{i}].alias"), format!("duplicate alias {:?}", m.alias));
        }
    }
    let provider_names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    // `jobs:` names providers that serve the job APIs.
    if let Some(j) = &config.jobs {
        use crate::jobs::Api;
        for (field, name, api) in [
            ("jobs.provider", &j.provider, Api::Files),
            ("jobs.anthropic_provider", &j.anthropic_provider, Api::MessageBatches),
        ] {
            let Some(name) = name else { continue };
            match config.providers.iter().find(|p| &p.name == name) {
                None => errs.push(field, unknown("provider", name, &provider_names)),
                Some(p) if !crate::providers::spec(p.kind).jobs.contains(&api) => errs.push(
                    field,
                    format!(
                        "provider {name:?} is of kind {}, which does not serve {}",
                        p.kind.name(),
                        api.name()
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    let alias_names: Vec<&str> = config.models.iter().map(|m| m.alias.as_str()).collect();
    let mut aliases = Vec::with_capacity(config.models.len());
    for (i, m) in config.models.iter().enumerate() {
        if m.targets.is_empty() {
            errs.push(format!("models[{i}].targets"), "needs at least one target");
        }
        let mut targets = Vec::with_capacity(m.targets.len());
        for (j, t) in m.targets.iter().enumerate() {
            let at = |f: &str| format!("models[{i}].targets[{j}].{f}");
            let provider = match provider_index.get(t.provider.as_str()) {
                Some(&p) => p,
                None => {
                    errs.push(at("provider"), unknown("provider", &t.provider, &provider_names));
                    usize::MAX
                }
            };
            if t.model.is_empty() {
                errs.push(at("model"), "must not be empty");
            } else if t.model.chars().any(|c| c.is_control()) {
                errs.push(at("model"), "must not contain control characters (CR, LF, ...)");
            }
            if let Some(p) = &t.pricing {
                check_pricing(&mut errs, at("pricing"), p);
            }
            if !(1..=1000).contains(&t.weight) {
                errs.push(
                    at("weight"),
                    format!("{} is not allowed; use 1..=1000 or remove the target", t.weight),
                );
            }
            targets.push(snapshot::Target {
                provider,
                model: t.model.clone(),
                weight: t.weight,
                pricing: t.pricing.clone(),
            });
        }
        let mut fallbacks = Vec::new();
        for (j, f) in m.fallbacks.iter().enumerate() {
            match alias_index.get(f.as_str()) {
                Some(&k) if k == i => {
                    errs.push(format!("models[{i}].fallbacks[{j}]"), "an alias cannot fall back to itself")
                }
                Some(&k) => fallbacks.push(k),
                None => errs.push(format!("models[{i}].fallbacks[{j}]"), unknown("alias", f, &alias_names)),
            }
        }
        if let Some(p) = &m.pricing {
            check_pricing(&mut errs, format!("models[{i}].pricing"), p);
        }
        aliases.push(snapshot::Alias {
            name: m.alias.clone(),
            targets,
            fallbacks,
            pricing: m.pricing.clone(),
            default_max_tokens: m.default_max_tokens.unwrap_or(4096),
        });
    }

    // Projects and keys.
    let mut project_names = HashSet::new();
    for (i, p) in config.projects.iter().enumerate() {
        if !project_names.insert(p.name.as_str()) {
            errs.push(format!("projects[{i}].name"), format!("duplicate project {:?}", p.name));
        }
        if let Some(b) = &p.budget {
            check_budget(&mut errs, format!("projects[{i}].budget"), b);
        }
        check_limits(&mut errs, &format!("projects[{i}]"), p.rpm, p.tpm, p.max_parallel);
    }
    let projects: Vec<&str> = config.projects.iter().map(|p| p.name.as_str()).collect();
    let mut keys = super::snapshot::DigestMap::default();
    let mut key_ids = HashSet::new();
    for (i, k) in config.keys.iter().enumerate() {
        let at = |f: &str| format!("keys[{i}].{f}");
        if k.id.is_empty() {
            errs.push(at("id"), "must not be empty");
        } else if !key_ids.insert(k.id.as_str()) {
            errs.push(at("id"), format!("duplicate key id {:?}", k.id));
        }
        let hash = match parse_key_hash(&k.hash) {
            Ok(h) => Some(h),
            Err(e) => {
                errs.push(at("hash"), e);
                None
            }
        };
        if let Some(p) = &k.project {
            if !project_names.contains(p.as_str()) {
                errs.push(at("project"), unknown("project", p, &projects));
            }
        }
        let models = k.models.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(j, m)| match alias_index.get(m.as_str()) {
                    Some(&a) => Some(a),
                    None => {
                        errs.push(format!("keys[{i}].models[{j}]"), unknown("alias", m, &alias_names));
                        None
                    }
                })
                .collect()
        });
        let expires_at = k.expires_at.as_deref().and_then(|s| match parse_rfc3339(s) {
            Ok(t) => Some(t),
            Err(e) => {
                errs.push(at("expires_at"), e);
                None
            }
        });
        if let Some(b) = &k.budget {
            check_budget(&mut errs, at("budget"), b);
        }
        check_limits(&mut errs, &format!("keys[{i}]"), k.rpm, k.tpm, k.max_parallel);
        if let Some(h) = hash {
            if keys.contains_key(&h) {
                errs.push(at("hash"), "the same key hash appears twice");
            }
            keys.insert(
                h,
                Arc::new(snapshot::Key {
                    id: k.id.clone(),
                    project: k.project.clone(),
                    models,
                    expires_at,
                    revoked: k.revoked,
                    rpm: k.rpm,
                    tpm: k.tpm,
                    max_parallel: k.max_parallel,
                    budget: k.budget.clone(),
                }),
            );
        }
    }

    if !errs.0.is_empty() {
        return Err(ConfigErrors(errs.0));
    }
    let limits = snapshot::Limits {
        max_body_bytes: l.max_body_bytes,
        max_body_memory_bytes: l.max_body_memory_bytes,
        max_file_bytes: l.max_file_bytes,
        upstream_timeout: Duration::from_millis(l.upstream_timeout_ms),
        connect_timeout: Duration::from_millis(l.connect_timeout_ms.max(1)),
        max_attempts: l.max_attempts,
        failure_threshold: l.circuit_breaker.failure_threshold,
        cooldown: Duration::from_secs(l.circuit_breaker.cooldown_s),
    };
    Ok(Snapshot {
        log_requests: config.log.requests,
        log_bodies: (config.log.requests && config.log.bodies).then_some(config.log.body_max_bytes),
        state_dir: config.state_dir.clone().unwrap_or_else(|| "/var/lib/llm-gateway".to_string()),
        config,
        providers,
        aliases,
        alias_index,
        keys,
        limits,
        admin_token,
    })
}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into() });
    }
}

fn check_addr(errs: &mut Errors, path: &str, addr: Option<&str>) {
    if let Some(a) = addr {
        if a.parse::<std::net::SocketAddr>().is_err() {
            errs.push(path, format!("{a:?} is not an ip:port address such as \"0.0.0.0:8080\""));
        }
    }
}

fn check_budget(errs: &mut Errors, path: String, b: &super::schema::Budget) {
    if !(b.usd.is_finite() && b.usd >= 0.0) {
        errs.push(format!("{path}.usd"), format!("{} is not allowed; use a USD amount >= 0", b.usd));
    }
    if let Some(a) = b.alert_at {
        if !(a > 0.0 && a <= 1.0) {
            errs.push(
                format!("{path}.alert_at"),
                format!("{a} is not allowed; use a fraction in (0, 1] such as 0.8"),
            );
        }
    }
}

fn check_limits(errs: &mut Errors, at: &str, rpm: Option<u64>, tpm: Option<u64>, parallel: Option<u32>) {
    for (name, v) in [("rpm", rpm), ("tpm", tpm), ("max_parallel", parallel.map(u64::from))] {
        if v == Some(0) {
            errs.push(format!("{at}.{name}"), "0 is not allowed; remove the field for no limit");
        }
    }
}

fn check_pricing(errs: &mut Errors, path: String, p: &super::schema::Pricing) {
    let tier = p.above_200k.as_ref();
    let all = [
        Some(p.input_per_mtok),
        Some(p.output_per_mtok),
        p.cached_input_per_mtok,
        p.cache_write_per_mtok,
        p.per_image,
        p.per_audio_second,
        p.per_video_second,
        tier.map(|t| t.input_per_mtok),
        tier.map(|t| t.output_per_mtok),
        tier.and_then(|t| t.cached_input_per_mtok),
    ];
    if all.into_iter().flatten().any(|v| !(v.is_finite() && v >= 0.0)) {
        errs.push(path, "prices must be finite and >= 0");
    }
}

/// `sha256:<64 hex>` -> the 32 bytes.
pub fn parse_key_hash(s: &str) -> Result<[u8; 32], String> {
    let hex = s
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{s:?} must be \"sha256:<64 hex digits>\" (see `llm-gateway hash-key`)"))?;
    if hex.len() != 64 {
        return Err(format!("expected 64 hex digits after sha256:, got {}", hex.len()));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| format!("{s:?} is not hex"))?;
    }
    Ok(out)
}

fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2027-01-01T00:00:00Z ({e})"))?;
    let secs = t.unix_timestamp();
    Ok(if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH
    })
}

fn unknown(what: &str, name: &str, known: &[&str]) -> String {
    let best =
        known.iter().map(|k| (edit_distance(name, k), *k)).filter(|(d, _)| *d <= 2.max(name.len() / 3)).min();
    match best {
        Some((_, k)) => format!("unknown {what} {name:?}; did you mean {k:?}?"),
        None if known.is_empty() => format!("unknown {what} {name:?}; none are defined"),
        None => format!("unknown {what} {name:?}; known: {}", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
