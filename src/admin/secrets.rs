//! Secrets as the admin API shows and stores them. Answers: every literal secret redacted.
//! Config versions: every literal secret sealed (`enc:` under the master key) or, without a master
//! key (and always for `master_key` itself), replaced by its fingerprint `redacted:sha256:<hex>`;
//! a rollback restores a fingerprint from the running config when one of its secrets matches.

use std::collections::HashMap;

use serde_yaml::Value;

use crate::config::{Config, MasterKey, Secret};

use super::edit::{parse_value, path_string, set_values, value_at, EditError, Seg};
use super::host::{hex, sha256};

/// The prefix of a fingerprinted secret in a config version.
pub const FINGERPRINT_PREFIX: &str = "redacted:sha256:";

/// Provider fields that hold secrets.
pub const PROVIDER_SECRETS: [&str; 4] =
    ["api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"];

/// The config with every literal secret replaced (references like `env:NAME` and `enc:` stay).
pub fn redacted(c: &Config) -> Config {
    let mut c = c.clone();
    let r = |s: &mut Option<Secret>| {
        if let Some(v) = s.as_mut() {
            *v = Secret(v.redacted());
        }
    };
    r(&mut c.master_key);
    if let Some(a) = c.admin.as_mut() {
        r(&mut a.token);
    }
    for p in &mut c.providers {
        r(&mut p.api_key);
        r(&mut p.aws_access_key_id);
        r(&mut p.aws_secret_access_key);
        r(&mut p.aws_session_token);
    }
    if let Some(redis) = c.redis.as_mut() {
        r(&mut redis.password);
        // A password may also sit in the URL (`redis://:pw@host`).
        redis.url = crate::limits::shared::shown_url(&redis.url);
    }
    if let Some(alerts) = c.alerts.as_mut() {
        // Webhook URLs carry their credential in the path (Slack's do): scheme and host only.
        let (scheme, rest) = alerts.webhook.split_once("://").unwrap_or(("", alerts.webhook.as_str()));
        let host = rest.split('/').next().unwrap_or_default();
        alerts.webhook = format!("{scheme}://{host}/<redacted>");
    }
    if let Some(jwt) = c.auth.as_mut().and_then(|a| a.jwt.as_mut()) {
        for k in &mut jwt.keys {
            *k = Secret(k.redacted());
        }
    }
    c
}

/// Whether a secret value is written as a literal (not `env:`, `enc:` or a fingerprint).
pub fn is_literal(s: &str) -> bool {
    !(s.starts_with("env:") || s.starts_with("enc:") || s.starts_with(FINGERPRINT_PREFIX))
}

/// `redacted:sha256:<hex>` of a literal.
pub fn fingerprint(literal: &str) -> String {
    format!("{FINGERPRINT_PREFIX}{}", hex(&sha256(literal.as_bytes())))
}

/// Every string at a secret path of a parsed config, with its path.
pub fn secret_sites(config: &Value) -> Vec<(Vec<Seg>, String)> {
    let mut out = Vec::new();
    let mut push = |path: Vec<Seg>| {
        if let Some(Value::String(s)) = value_at(config, &path) {
            out.push((path, s.clone()));
        }
    };
    let key = |k: &str| Seg::Key(k.to_string());
    push(vec![key("master_key")]);
    push(vec![key("admin"), key("token")]);
    push(vec![key("redis"), key("password")]);
    if let Some(ps) = config.get("providers").and_then(Value::as_sequence) {
        for i in 0..ps.len() {
            for f in PROVIDER_SECRETS {
                push(vec![key("providers"), Seg::Index(i), key(f)]);
            }
        }
    }
    let jwt_keys = [key("auth"), key("jwt"), key("keys")];
    if let Some(ks) = value_at(config, &jwt_keys).and_then(Value::as_sequence) {
        for j in 0..ks.len() {
            let mut p = jwt_keys.to_vec();
            p.push(Seg::Index(j));
            push(p);
        }
    }
    out
}

/// Seals literal secrets for config versions, reusing one `enc:` form per plaintext so that the
/// same secret reads the same in every version (diffs show only real changes).
#[derive(Default)]
pub struct Sealer {
    /// SHA-256 of a plaintext -> the `enc:` form it was sealed to.
    sealed: HashMap<[u8; 32], String>,
}

// === impl Sealer ===

impl Sealer {
    /// Learn the `enc:` forms already used in a stored version, so a restart reuses them.
    pub fn learn(&mut self, version_text: &str, master: Option<&MasterKey>) {
        let (Some(master), Ok(v)) = (master, parse_value(version_text)) else {
            return;
        };
        for (_, s) in secret_sites(&v) {
            if s.starts_with("enc:") {
                if let Ok(plain) = Secret(s.clone()).resolve(Some(master)) {
                    self.sealed.insert(sha256(plain.expose().as_bytes()), s);
                }
            }
        }
    }

    /// The version form of a config text: no literal secret left, comments kept.
    pub fn seal(&mut self, text: &str, master: Option<&MasterKey>) -> Result<String, EditError> {
        let v = parse_value(text)?;
        let mut changes = Vec::new();
        for (path, s) in secret_sites(&v) {
            if !is_literal(&s) {
                continue;
            }
            let is_master_key = path == [Seg::Key("master_key".into())];
            let stored = match master {
                Some(m) if !is_master_key => {
                    self.sealed.entry(sha256(s.as_bytes())).or_insert_with(|| m.encrypt(&s)).clone()
                }
                _ => fingerprint(&s),
            };
            changes.push((path, Value::String(stored)));
        }
        set_values(text, &changes)
    }
}

/// Why a version cannot be restored.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    #[error("{}: the version holds only a fingerprint of this secret and the running config has no secret that matches it; set it in the file instead", .0.join(", "))]
    Unmatched(Vec<String>),
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// Replace every fingerprint in a version's text by the running config's secret with that
/// fingerprint (literals as written, `enc:` values decrypted with `master`).
pub fn unseal(
    version_text: &str,
    running_text: &str,
    master: Option<&MasterKey>,
) -> Result<String, UnsealError> {
    let v = parse_value(version_text)?;
    let wanted: Vec<(Vec<Seg>, String)> =
        secret_sites(&v).into_iter().filter(|(_, s)| s.starts_with(FINGERPRINT_PREFIX)).collect();
    if wanted.is_empty() {
        return Ok(version_text.to_string());
    }
    let mut known: HashMap<String, String> = HashMap::new();
    if let Ok(running) = parse_value(running_text) {
        for (_, s) in secret_sites(&running) {
            if is_literal(&s) {
                known.insert(fingerprint(&s), s);
            } else if s.starts_with("enc:") {
                if let Ok(plain) = Secret(s.clone()).resolve(master) {
                    known.insert(fingerprint(plain.expose()), plain.expose().to_string());
                }
            }
        }
    }
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for (path, fp) in wanted {
        match known.get(&fp) {
            Some(literal) => changes.push((path, Value::String(literal.clone()))),
            None => missing.push(path_string(&path)),
        }
    }
    if !missing.is_empty() {
        return Err(UnsealError::Unmatched(missing));
    }
    Ok(set_values(version_text, &changes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";

    const TEXT: &str = "listen: x\nmaster_key: MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\nadmin:\n  listen: y\n  token: root-secret  # admin\nproviders:\n  - name: a\n    kind: openai\n    api_key: sk-live-1\n  - name: b\n    kind: bedrock\n    aws_access_key_id: env:AKID\n    aws_secret_access_key: sk-live-2\nredis:\n  url: redis://h\n  password: redis-pw\n";

    #[test]
    fn sealing_leaves_no_literal_and_reuses_the_same_enc_form() {
        let m = MasterKey::from_base64(KEY).unwrap();
        let mut sealer = Sealer::default();
        let a = sealer.seal(TEXT, Some(&m)).unwrap();
        for literal in ["root-secret", "sk-live-1", "sk-live-2", "redis-pw", KEY] {
            assert!(!a.contains(literal), "{literal} in {a}");
        }
        assert!(a.contains("env:AKID") && a.contains("# admin"));
        assert!(a.contains(&fingerprint(KEY)), "the master key is only ever fingerprinted");
        assert_eq!(sealer.seal(TEXT, Some(&m)).unwrap(), a, "same secrets, same text");
        // A new process learns the forms from the stored version.
        let mut fresh = Sealer::default();
        fresh.learn(&a, Some(&m));
        assert_eq!(fresh.seal(TEXT, Some(&m)).unwrap(), a);
        // The sealed values decrypt to the literals.
        let v = parse_value(&a).unwrap();
        let sealed = v["providers"][0]["api_key"].as_str().unwrap();
        assert_eq!(Secret(sealed.into()).resolve(Some(&m)).unwrap().expose(), "sk-live-1");
    }

    #[test]
    fn without_a_master_key_fingerprints_restore_from_the_running_config() {
        let text = TEXT.replace("master_key: MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=\n", "");
        let version = Sealer::default().seal(&text, None).unwrap();
        assert!(version.contains(&fingerprint("sk-live-1")) && !version.contains("sk-live-1\n"));
        assert_eq!(unseal(&version, &text, None).unwrap(), text);
        // The running config rotated one secret: rolling back names the field it cannot restore.
        let rotated = text.replace("sk-live-2", "sk-live-3");
        assert_eq!(
            unseal(&version, &rotated, None),
            Err(UnsealError::Unmatched(vec!["providers[1].aws_secret_access_key".into()]))
        );
        // A matching secret is found wherever it now lives in the running config.
        let moved = text
            .replace("password: redis-pw", "password: sk-live-2")
            .replace("aws_secret_access_key: sk-live-2", "aws_secret_access_key: redis-pw");
        assert!(unseal(&version, &moved, None).is_ok());
    }

    #[test]
    fn redacted_hides_every_literal_secret_kind() {
        let c = crate::config::parse(&format!(
            "{TEXT}auth:\n  jwt:\n    issuer: i\n    audience: a\n    keys: [\"hmac:jwt-secret\"]\n"
        ))
        .unwrap();
        let mut c = c;
        c.redis.as_mut().unwrap().url = "redis://:url-pw@cache:6379/0".into();
        c.alerts = Some(crate::config::AlertsConfig {
            webhook: "https://hooks.slack.com/services/T0/B0/hook-secret".into(),
        });
        let shown = serde_json::to_string(&redacted(&c)).unwrap();
        assert!(
            shown.contains("redis://…@cache:6379/0") && shown.contains("https://hooks.slack.com/<redacted>"),
            "{shown}"
        );
        for literal in
            ["root-secret", "sk-live-1", "sk-live-2", "redis-pw", "jwt-secret", KEY, "url-pw", "hook-secret"]
        {
            assert!(!shown.contains(literal), "{literal} in {shown}");
        }
        assert!(shown.contains("env:AKID"));
    }
}
