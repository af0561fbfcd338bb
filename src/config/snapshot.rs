//! The validated, resolved config the hot path reads: secrets resolved, names turned into
//! indexes, key hashes decoded. One `Snapshot` is swapped in atomically per reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::schema::{Budget, Config, HealthCheck, Pricing, ProviderKind};
use super::secrets::SecretString;

/// A map keyed by SHA-256 digests, hashed by their first 8 bytes rather than by SipHash over
/// all 32: a digest is already uniform, and no caller can choose one (finding a key whose
/// digest starts with given bytes is a preimage search), so flooding one bucket is out of
/// reach. Half a thousand instructions less on every authenticated request.
pub type DigestMap<V> = HashMap<[u8; 32], V, std::hash::BuildHasherDefault<DigestHasher>>;

/// The [`DigestMap`] hasher: the first 8 bytes written, as they are.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }
}

pub struct Snapshot {
    /// The config as written (for `/admin/config`; secrets still as references).
    pub config: Config,
    pub providers: Vec<Provider>,
    pub aliases: Vec<Alias>,
    /// Alias name -> index in `aliases`.
    pub alias_index: HashMap<Box<str>, usize>,
    /// SHA-256 of the plaintext key -> key.
    pub keys: DigestMap<Arc<Key>>,
    pub limits: Limits,
    pub log_requests: bool,
    /// `log.bodies`: the most bytes of each body an access line carries (`None`: no bodies).
    pub log_bodies: Option<usize>,
    pub state_dir: String,
    /// Admin bearer token, when configured.
    pub admin_token: Option<SecretString>,
}

pub struct Limits {
    pub max_body_bytes: usize,
    pub max_body_memory_bytes: usize,
    /// The largest file upload (`/v1/files`, multipart video requests).
    pub max_file_bytes: u64,
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_attempts: u32,
    pub failure_threshold: u32,
    pub cooldown: Duration,
}

pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Where to connect; `None` only for the built-in `mock` kind.
    pub endpoint: Option<Endpoint>,
    pub api_key: Option<SecretString>,
    pub api_version: Option<String>,
    pub region: Option<String>,
    pub aws_access_key_id: Option<SecretString>,
    pub aws_secret_access_key: Option<SecretString>,
    pub aws_session_token: Option<SecretString>,
    pub health_check: Option<HealthCheck>,
    pub tls_verify: bool,
    /// `openai_compatible`: speaks the Responses API natively.
    pub responses: bool,
}

/// A parsed `base_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash and without a trailing `/v1` ("" for none).
    pub path_prefix: String,
    /// The `Host` header value (`host` or `host:port` when the port is not the default).
    pub authority: String,
    /// A hash of what sets this endpoint's connections apart from other endpoints' at one
    /// address (TLS or not, the SNI): the upstream pool's key starts from it.
    pub conn_seed: u64,
}

pub struct Alias {
    pub name: String,
    pub targets: Vec<Target>,
    /// Indexes into `Snapshot::aliases`, in order.
    pub fallbacks: Vec<usize>,
    pub pricing: Option<Pricing>,
    pub default_max_tokens: u32,
}

pub struct Target {
    /// Index into `Snapshot::providers`.
    pub provider: usize,
    pub model: String,
    pub weight: u32,
    /// This target's own prices (win over the alias's).
    pub pricing: Option<Pricing>,
}

#[derive(Debug)]
pub struct Key {
    pub id: String,
    pub project: Option<String>,
    /// Allowed alias indexes; `None` = all.
    pub models: Option<Vec<usize>>,
    pub expires_at: Option<SystemTime>,
    pub revoked: bool,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_parallel: Option<u32>,
    pub budget: Option<Budget>,
}

// === impl Snapshot ===

impl Snapshot {
    pub fn alias(&self, name: &str) -> Option<(usize, &Alias)> {
        self.alias_index.get(name).map(|&i| (i, &self.aliases[i]))
    }
}

impl Key {
    pub fn allows(&self, alias: usize) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(&alias))
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// Parse `scheme://host[:port][/prefix]`. A trailing `/v1` is dropped (the gateway appends API paths).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        if authority.contains('@') || path.contains('?') || path.contains('#') {
            return Err(format!("{url:?}: credentials, query and fragment are not allowed in base_url"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) =
            split_host_port(authority, default_port).ok_or_else(|| format!("{url:?} has an invalid port"))?;
        let mut prefix = path.trim_end_matches('/').to_string();
        if prefix.ends_with("/v1") {
            prefix.truncate(prefix.len() - 3);
        }
        let authority = if port == default_port { host.clone() } else { format!("{host}:{port}") };
        let mut ep = Endpoint { tls, host, port, path_prefix: prefix, authority, conn_seed: 0 };
        ep.conn_seed = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            (ep.tls, ep.sni()).hash(&mut h);
            h.finish()
        };
        Ok(ep)
    }

    /// The SNI / certificate name: the host without IPv6 brackets.
    pub fn sni(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(end) = authority.strip_prefix('[').and_then(|r| r.find(']')) {
        // [v6]:port
        let host = &authority[..end + 2];
        let rest = &authority[end + 2..];
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if rest.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests that share their first 8 bytes share a hash, and the map still tells them apart.
    #[test]
    fn a_digest_map_finds_each_digest_even_when_hashes_collide() {
        let mut m = DigestMap::default();
        let (mut a, mut b) = ([7u8; 32], [7u8; 32]);
        a[31] = 1;
        b[31] = 2;
        m.insert(a, "a");
        m.insert(b, "b");
        m.insert([9u8; 32], "c");
        assert_eq!(
            (m.get(&a), m.get(&b), m.get(&[9u8; 32]), m.get(&[7u8; 32])),
            (Some(&"a"), Some(&"b"), Some(&"c"), None)
        );
    }

    #[test]
    fn base_url_with_trailing_v1_is_not_doubled() {
        let e = Endpoint::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!(e.path_prefix, "");
        assert_eq!((e.tls, e.port, e.authority.as_str()), (true, 443, "api.openai.com"));
    }

    #[test]
    fn base_url_keeps_a_path_prefix_and_a_non_default_port() {
        let e = Endpoint::parse("http://127.0.0.1:8000/proxy/openai/v1").unwrap();
        assert_eq!(e.path_prefix, "/proxy/openai");
        assert_eq!(e.authority, "127.0.0.1:8000");
        assert!(!e.tls);
    }

    #[test]
    fn base_url_must_have_a_scheme() {
        assert!(Endpoint::parse("api.openai.com").is_err());
        assert!(Endpoint::parse("https://host:notaport").is_err());
    }

    #[test]
    fn ipv6_hosts_keep_brackets_in_authority_but_not_in_sni() {
        let e = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!(e.authority, "[::1]:9000");
        assert_eq!(e.sni(), "::1");
    }
}
