//! The YAML config as typed data (SPEC section 4). Strict: unknown fields are errors.
//! Parsing only; cross-field validation lives in `validate.rs`, secrets in `secrets.rs`.

use serde::{Deserialize, Serialize};

use super::secrets::Secret;

/// The whole `gateway.yaml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Plain-HTTP data listener, `host:port`. Optional when `tls` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Optional HTTPS data listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsListener>,
    /// The admin listener (admin API, `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminListener>,
    /// Where `usage.jsonl` and `audit.jsonl` live. Default: `/var/lib/llm-gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// 32 bytes, base64: decrypts `enc:` secrets (AES-256-GCM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Secret>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub log: LogConfig,
    /// `redis://host:port` to share limits and spend between instances (not used yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    #[serde(default)]
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub models: Vec<ModelAlias>,
    #[serde(default)]
    pub projects: Vec<Project>,
    #[serde(default)]
    pub keys: Vec<Key>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListener {
    /// HTTPS listen address, `host:port`.
    pub listen: String,
    /// PEM certificate chain path.
    pub cert: String,
    /// PEM private key path.
    pub key: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminListener {
    /// Admin listen address, `host:port` (keep it on loopback or a private network).
    pub listen: String,
    /// Bearer token for the admin API. Without one the admin API answers 401 to everything but `/healthz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, bytes (default 10 MiB); larger gets 413.
    pub max_body_bytes: usize,
    /// Per-attempt upstream timeout, milliseconds (default 120000): time to the response
    /// header, and the longest silence between two body chunks. Expiry gives 504.
    pub upstream_timeout_ms: u64,
    /// TCP + TLS connect timeout per attempt, milliseconds (default 5000).
    pub connect_timeout_ms: u64,
    /// Tries across an alias's targets before its fallbacks (default 3).
    pub max_attempts: u32,
    pub circuit_breaker: CircuitBreaker,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            upstream_timeout_ms: 120_000,
            connect_timeout_ms: 5_000,
            max_attempts: 3,
            circuit_breaker: CircuitBreaker::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Consecutive failures that open a target's circuit (default 5).
    pub failure_threshold: u32,
    /// Seconds an open circuit waits before one half-open probe (default 30).
    pub cooldown_s: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker { failure_threshold: 5, cooldown_s: 30 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// One JSON line per request on the log (default true). Never prompt text unless `bodies`.
    pub requests: bool,
    /// Include request and response bodies in the request log (default false).
    pub bodies: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { requests: true, bodies: false }
    }
}

/// Provider kinds; each owns its URL scheme, auth and wire format (see `providers/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    AzureOpenai,
    Anthropic,
    Gemini,
    Bedrock,
    OpenaiCompatible,
    /// Built in, no network: deterministic echo (stream and non-stream).
    Mock,
}

impl ProviderKind {
    pub const ALL: &'static [&'static str] =
        &["openai", "azure_openai", "anthropic", "gemini", "bedrock", "openai_compatible", "mock"];

    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::AzureOpenai => "azure_openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::OpenaiCompatible => "openai_compatible",
            ProviderKind::Mock => "mock",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Unique name that targets refer to.
    pub name: String,
    pub kind: ProviderKind,
    /// Origin (scheme://host[:port]) plus an optional path prefix; a trailing `/v1` is accepted.
    /// Default per kind (e.g. `https://api.openai.com`); required for azure_openai and openai_compatible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Literal, `env:NAME` or `enc:BASE64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// Azure OpenAI `api-version` (e.g. "2024-10-21"), or "v1" for the `/openai/v1/` form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// AWS region (bedrock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_access_key_id: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_secret_access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_session_token: Option<Secret>,
    /// Active health check (GET `path` every `interval_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Verify the upstream's TLS certificate and hostname (default true).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    /// Seconds between checks (default 15).
    #[serde(default = "default_interval")]
    pub interval_s: u64,
}

fn default_interval() -> u64 {
    15
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelAlias {
    /// The name clients put in `model`.
    pub alias: String,
    /// Weighted round-robin over healthy targets.
    pub targets: Vec<Target>,
    /// Other aliases tried in order when every target failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// `max_tokens` sent to upstreams that require one (Anthropic) when the client gave none
    /// (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A provider `name`.
    pub provider: String,
    /// The provider's model id (deployment name for Azure).
    pub model: String,
    /// Relative weight, 1..=1000 (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub usd: f64,
    pub period: BudgetPeriod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
    Total,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// Public identifier, shown in logs.
    pub id: String,
    /// `sha256:<64 hex>` of the plaintext key (see `llm-gateway hash-key`).
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Aliases this key may use; omitted = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Requests per minute (not enforced yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute (not enforced yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// RFC 3339 time after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// A revoked key is refused (kept for the audit trail).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}
