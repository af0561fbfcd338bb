//! Configuration: the typed YAML schema, whole-config validation with YAML paths, secrets
//! (`env:` / `enc:`) and the resolved snapshot a `runtime::Runtime` is built from.
//! No request handling here.

mod schema;
mod secrets;
mod snapshot;
mod validate;

pub use self::{
    schema::{
        AdminListener, AdminRole, AdminToken, AlertsConfig, AuthConfig, Budget, BudgetPeriod, CircuitBreaker,
        Config, CorsConfig, HealthCheck, JobsConfig, JwtClaims, JwtConfig, Key as KeyEntry,
        Limits as LimitsConfig, LogConfig, ModelAlias, OtelConfig, Pricing, Project,
        Provider as ProviderEntry, ProviderKind, RedisConfig, RedisOnError, Target as TargetEntry,
        TierPricing, TlsListener,
    },
    secrets::{MasterKey, Secret, SecretString},
    snapshot::{Alias, Endpoint, Key, Limits, Provider, Snapshot, Target},
    validate::{build, build_with, load_str, parse, parse_key_hash, ConfigError, ConfigErrors, Secrets},
};
