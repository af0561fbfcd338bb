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
    /// Share limits and spend between instances through Redis (SPEC section 9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// Other ways to authenticate besides virtual keys (JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// CORS for browser apps calling the data listener directly (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// Where alert events (budget, circuit, alias down, reload failed) are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsConfig>,
    /// OpenTelemetry export over OTLP/HTTP (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otel: Option<OtelConfig>,
    /// Where Files, Batches, fine-tuning and videos go (SPEC section 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobsConfig>,
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
    /// More admin tokens, with roles; their ids appear in the audit log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<AdminToken>,
}

/// One admin API token: stored hashed like a virtual key.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Shown in the audit log as the actor.
    pub id: String,
    /// `sha256:<64 hex>` of the token.
    pub hash: String,
    pub role: AdminRole,
    /// The project a `project` token manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// What an admin token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Everything.
    Admin,
    /// GET only (secrets redacted as always).
    Viewer,
    /// The keys of one project, and that project's usage.
    Project,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted, bytes (default 10 MiB); larger gets 413.
    pub max_body_bytes: usize,
    /// Bytes of request bodies held in memory at once, all requests together (default 512 MiB);
    /// a body that would pass it gets 503 with `retry-after`.
    pub max_body_memory_bytes: usize,
    /// Per-attempt upstream timeout, milliseconds (default 120000): time to the response
    /// header, and the longest silence between two body chunks. Expiry gives 504.
    pub upstream_timeout_ms: u64,
    /// TCP + TLS connect timeout per attempt, milliseconds (default 5000).
    pub connect_timeout_ms: u64,
    /// Tries across an alias's targets before its fallbacks (default 3).
    pub max_attempts: u32,
    pub circuit_breaker: CircuitBreaker,
    /// Largest upload to `/v1/files`, bytes (default 512 MiB; streamed, never held whole).
    pub max_file_bytes: u64,
    /// SIGTERM / upgrade: seconds in-flight requests and streams get to finish (default 30).
    pub shutdown_grace_s: u64,
    /// Time a client has for each complete request head, milliseconds (default 10000); also
    /// how long a kept-alive connection may sit idle. A client dribbling a head is cut.
    pub header_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_body_memory_bytes: 512 * 1024 * 1024,
            upstream_timeout_ms: 120_000,
            connect_timeout_ms: 5_000,
            max_attempts: 3,
            circuit_breaker: CircuitBreaker::default(),
            max_file_bytes: 512 * 1024 * 1024,
            shutdown_grace_s: 30,
            header_timeout_ms: 10_000,
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
    /// Include request and response bodies in the request log (default false). Each is cut
    /// at `body_max_bytes` and passes through the log's secret masking.
    pub bodies: bool,
    /// The most bytes of each body an access line carries (default 8192).
    pub body_max_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { requests: true, bodies: false, body_max_bytes: 8192 }
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
    /// `openai_compatible` only: the server speaks the Responses API natively (e.g. vLLM).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub responses: bool,
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
    /// This target's own prices (win over the alias's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// USD per million input tokens (cached ones excluded when `cached_input_per_mtok` is set).
    #[serde(default)]
    pub input_per_mtok: f64,
    /// USD per million output tokens (reasoning tokens included).
    #[serde(default)]
    pub output_per_mtok: f64,
    /// USD per million cache-read input tokens (OpenAI cached, Anthropic cache_read, Gemini cached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// USD per million cache-write input tokens (Anthropic cache_creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
    /// Long-context tier: these prices apply to the whole request when its input exceeds 200k tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above_200k: Option<TierPricing>,
    /// Batch prices (OpenAI Batch API, Anthropic Message Batches): a finished batch's
    /// reported usage is priced at these; without them, at the prices above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<TierPricing>,
    /// USD per image generated or edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_image: Option<f64>,
    /// USD per second of audio (transcription input, speech output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_audio_second: Option<f64>,
    /// USD per second of generated video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_video_second: Option<f64>,
}

/// Prices of the long-context tier.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierPricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Requests per minute shared by the project's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute shared by the project's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once across the project's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The budget in USD per period.
    pub usd: f64,
    /// UTC periods: daily, weekly (from Monday), monthly, or total (never resets).
    pub period: BudgetPeriod,
    /// Fraction (0..1) of the budget at which an alert fires, once per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_at: Option<f64>,
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
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute (input reserved at admission + output cap, reconciled with usage).
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
    /// Requests in flight at once (streams count until they end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

/// `redis:`: limits and spend shared by every instance (SPEC section 9).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS). Put the password in `password`, not here.
    pub url: String,
    /// Literal, `env:NAME` or `enc:BASE64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// What to do when Redis cannot answer within `timeout_ms` (default `local`).
    #[serde(default)]
    pub on_error: RedisOnError,
    /// Longest a request waits on Redis, milliseconds (default 50).
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
    /// Lease of an in-flight slot, seconds (default 600): the slot of an instance that died
    /// mid-request is freed when it ends. Set it above your longest request.
    #[serde(default = "default_slot_lease")]
    pub slot_lease_s: u64,
}

fn default_slot_lease() -> u64 {
    600
}

fn default_redis_timeout() -> u64 {
    50
}

/// Behaviour while Redis is unreachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisOnError {
    /// Admit without limits.
    Open,
    /// Refuse with 503 and `retry-after`.
    Closed,
    /// Enforce each instance's own in-memory counters until Redis is back.
    #[default]
    Local,
}

/// `auth:`: authentication besides virtual keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
}

/// `auth.jwt`: JWT bearer tokens (RS256, ES256, HS256, EdDSA).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    /// A JWKS file (re-read with every config reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// Inline PEM public keys, or HMAC secrets written `hmac:<secret>` (literal, env: or enc:).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<Secret>,
    /// Which claims carry the project, allowed models and subject.
    #[serde(default)]
    pub claims: JwtClaims,
    /// Project for a token without the project claim; without it such a token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_project: Option<String>,
}

/// Claim names read from a JWT.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtClaims {
    pub project: String,
    pub models: String,
    pub subject: String,
}

impl Default for JwtClaims {
    fn default() -> Self {
        JwtClaims { project: "project".into(), models: "models".into(), subject: "sub".into() }
    }
}

/// `cors:`: answer browser preflights on the data listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins (`*` for any).
    pub allow_origins: Vec<String>,
    /// Extra request headers allowed besides the SDKs' auth headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// How long a browser may cache a preflight answer (default 600).
    #[serde(default = "default_cors_max_age")]
    pub max_age_s: u64,
}

fn default_cors_max_age() -> u64 {
    600
}

/// `alerts:`: events posted as JSON (with a Slack-compatible `text`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub webhook: String,
}

/// `otel:`: OpenTelemetry export over OTLP/HTTP.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtelConfig {
    /// Collector base URL, e.g. `http://127.0.0.1:4318` (`/v1/traces` and `/v1/metrics` are
    /// appended). Plain `http://`: run the collector (or its agent) next to the gateway.
    pub endpoint: String,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How often batched spans and the metrics are sent, in milliseconds (default 5000).
    #[serde(default = "default_otel_export_interval_ms")]
    pub export_interval_ms: u64,
}

fn default_service_name() -> String {
    "llm-gateway".into()
}

fn default_otel_export_interval_ms() -> u64 {
    5000
}

/// `jobs:`: the providers that serve the job APIs.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// An OpenAI-family provider for files, batches, fine-tuning and videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// An `anthropic` provider for message batches (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_provider: Option<String>,
}
