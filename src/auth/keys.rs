//! Virtual keys: where a key is found in a request, its stored form, and the lookup.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

use crate::config::{Key, Snapshot};

/// Why a request is not authenticated (every case is a 401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send it as `Authorization: Bearer <key>`, `x-api-key`, `api-key`, `x-goog-api-key` or `?key=`")]
    Missing,
    #[error("invalid API key")]
    Unknown,
    #[error("API key {0:?} has been revoked")]
    Revoked(String),
    #[error("API key {0:?} has expired")]
    Expired(String),
}

/// SHA-256 of a plaintext key.
pub fn hash_key(plaintext: &str) -> [u8; 32] {
    let d = digest(&SHA256, plaintext.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The form stored in the config: `sha256:<64 hex>`.
pub fn stored_form(plaintext: &str) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash_key(plaintext) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The key a request presents, in the header its SDK uses: `Authorization: Bearer` (OpenAI,
/// current Anthropic SDKs), `x-api-key` (older Anthropic SDKs), `api-key` (Azure SDK),
/// `x-goog-api-key` or the `key` query parameter (Google SDK).
pub fn presented_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    for name in ["x-api-key", "api-key", "x-goog-api-key"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            if !v.is_empty() {
                return Some(v.trim());
            }
        }
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("key=")).filter(|k| !k.is_empty())
}

/// Find the key, refusing revoked and expired ones.
pub fn authenticate(
    snap: &Snapshot,
    presented: Option<&str>,
    now: SystemTime,
) -> Result<Arc<Key>, AuthError> {
    let presented = presented.ok_or(AuthError::Missing)?;
    let h = hash_key(presented);
    let key = snap
        .keys
        .get_key_value(&h)
        .filter(|(stored, _)| bool::from(stored.ct_eq(&h)))
        .map(|(_, k)| k)
        .ok_or(AuthError::Unknown)?;
    if key.revoked {
        return Err(AuthError::Revoked(key.id.clone()));
    }
    if key.expires_at.is_some_and(|t| now >= t) {
        return Err(AuthError::Expired(key.id.clone()));
    }
    Ok(key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap() -> Snapshot {
        let text = format!(
            "listen: 127.0.0.1:1\nproviders: [{{name: m, kind: mock}}]\nmodels: [{{alias: a, targets: [{{provider: m, model: x}}]}}]\nkeys:\n  - {{id: live, hash: \"{}\"}}\n  - {{id: old, hash: \"{}\", expires_at: 2020-01-01T00:00:00Z}}\n  - {{id: gone, hash: \"{}\", revoked: true}}\n",
            stored_form("sk-live"),
            stored_form("sk-old"),
            stored_form("sk-gone")
        );
        crate::config::load_str(&text).unwrap()
    }

    #[test]
    fn the_stored_form_is_sha256_hex() {
        assert_eq!(
            stored_form("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keys_are_found_in_every_sdk_header() {
        for (name, value) in [
            ("authorization", "Bearer sk-1"),
            ("authorization", "bearer sk-1"),
            ("x-api-key", "sk-1"),
            ("api-key", "sk-1"),
            ("x-goog-api-key", "sk-1"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            assert_eq!(presented_key(&h, None), Some("sk-1"), "{name}");
        }
        assert_eq!(presented_key(&HeaderMap::new(), Some("alt=sse&key=sk-2")), Some("sk-2"));
        assert_eq!(presented_key(&HeaderMap::new(), Some("alt=sse")), None);
    }

    #[test]
    fn live_expired_revoked_and_unknown_keys() {
        let s = snap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(authenticate(&s, Some("sk-live"), now).unwrap().id, "live");
        assert_eq!(authenticate(&s, Some("sk-old"), now).unwrap_err(), AuthError::Expired("old".into()));
        assert_eq!(authenticate(&s, Some("sk-gone"), now).unwrap_err(), AuthError::Revoked("gone".into()));
        assert_eq!(authenticate(&s, Some("sk-nope"), now).unwrap_err(), AuthError::Unknown);
        assert_eq!(authenticate(&s, None, now).unwrap_err(), AuthError::Missing);
    }
}
