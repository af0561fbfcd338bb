//! The one admission step every endpoint passes before any upstream I/O:
//! principal (virtual key today; JWT produces the same [`Principal`]) → alias → allow-list →
//! body validation → (limits and budget reservation plug in here) → an [`Admission`] the proxy
//! carries to the end, where accounting runs exactly once.

pub(crate) mod validate;

pub use self::validate::{peek_checked, validate, Shape};

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::accounting::{estimate_micros, resolve_price, MediaUnits};
use crate::auth;
use crate::config::Key;
use crate::config::RedisOnError;
use crate::error::GatewayError;
use crate::formats::Format;
use crate::limits::{tokens, Demand, Dimension, Hold, LimitsRegistry, Refusal, ScopeId, ScopeRules};
use crate::runtime::Runtime;

/// Who is calling: the identity every later step (limits, accounting) reads.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The key entry (a virtual key; for JWT callers, one made from the token's claims).
    pub key: Arc<Key>,
}

/// A request that passed admission.
#[derive(Debug)]
pub struct Admission {
    pub principal: Principal,
    /// The alias index (`None` for endpoints without a model, such as `/v1/models`).
    pub alias: Option<usize>,
    /// What the limits reserved for it (RPM, TPM, in-flight slot, budget; in memory or in
    /// Redis), settled exactly once by the account step.
    pub reservation: Option<Hold>,
}

// === impl Principal ===

impl Principal {
    pub fn id(&self) -> &str {
        &self.key.id
    }

    pub fn project(&self) -> Option<&str> {
        self.key.project.as_deref()
    }

    pub fn allows(&self, alias: usize) -> bool {
        self.key.allows(alias)
    }
}

/// Step 1: who is calling, from the header the caller's SDK uses.
pub fn authenticate(
    rt: &Runtime,
    headers: &HeaderMap,
    query: Option<&str>,
    now: SystemTime,
) -> Result<Principal, GatewayError> {
    let presented = auth::presented_key(headers, query);
    if let (Some(jwt), Some(token)) = (&rt.jwt, presented) {
        if auth::looks_like_jwt(token) {
            let unix = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let id = jwt
                .verify(token, unix)
                .map_err(|e| GatewayError::Unauthenticated(format!("invalid JWT: {e}")))?;
            return Ok(Principal { key: Arc::new(key_of_jwt(rt, id)) });
        }
    }
    auth::authenticate(&rt.snap, presented, now)
        .map(|key| Principal { key })
        .map_err(|e| GatewayError::Unauthenticated(e.to_string()))
}

/// The key entry a verified JWT stands for: id `jwt:<sub>`, its project, and its `models` claim
/// as an allow-list of aliases (names that are not aliases allow nothing).
fn key_of_jwt(rt: &Runtime, id: auth::JwtIdentity) -> Key {
    let models =
        id.models.map(|names| names.iter().filter_map(|n| rt.snap.alias(n).map(|(i, _)| i)).collect());
    Key {
        id: format!("jwt:{}", id.subject),
        project: Some(id.project),
        models,
        expires_at: None,
        revoked: false,
        rpm: id.rpm,
        tpm: id.tpm,
        max_parallel: id.max_parallel,
        budget: None,
    }
}

/// A request body for [`admit`]: its bytes, and whether its shape is already known to pass
/// [`validate`], read in the same pass as its routing facts ([`peek_checked`]).
#[derive(Clone, Copy, Debug)]
pub struct Body<'a> {
    pub bytes: &'a [u8],
    pub checked: bool,
}

impl<'a> Body<'a> {
    /// A body `admit` checks.
    pub fn unchecked(bytes: &'a [u8]) -> Self {
        Body { bytes, checked: false }
    }
}

/// Steps 2-5: the alias `model` names, the principal's allow-list, the body's shape, and the
/// limits (one Redis round trip when `redis:` is set, bounded by its `timeout_ms`).
pub async fn admit(
    rt: &Runtime,
    principal: Principal,
    model: &str,
    shape: Shape,
    body: Option<Body<'_>>,
    model_in_path: bool,
) -> Result<Admission, GatewayError> {
    let alias = resolve_alias(rt, &principal, model)?;
    if let Some(b) = body.filter(|b| !b.checked) {
        validate(shape, b.bytes, model_in_path)?;
    }
    let reservation = reserve(rt, &principal, alias, shape, body.map(|b| b.bytes)).await?;
    Ok(Admission { principal, alias: Some(alias), reservation })
}

/// The monotonic clock the limits run on (nanoseconds since the first call).
pub fn mono_ns(now: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    now.saturating_duration_since(origin).as_nanos() as u64
}

/// The limit scopes of a principal: its key, and its project when the project has rules.
pub fn scopes<'a>(
    rt: &'a Runtime,
    principal: &Principal,
    key_rules: &'a ScopeRules,
) -> Vec<(ScopeId, &'a ScopeRules)> {
    let mut out = Vec::with_capacity(2);
    if key_rules.rpm.is_some()
        || key_rules.tpm.is_some()
        || key_rules.max_parallel.is_some()
        || key_rules.budget.is_some()
    {
        out.push((ScopeId::key(principal.id()), key_rules));
    }
    if let Some((name, rules)) = principal.project().and_then(|p| rt.project_rules.get_key_value(p)) {
        if rules.rpm.is_some()
            || rules.tpm.is_some()
            || rules.max_parallel.is_some()
            || rules.budget.is_some()
        {
            out.push((ScopeId::project(name.as_str()), rules));
        }
    }
    out
}

/// Step 5: reserve RPM, TPM (counted input + output cap), an in-flight slot and the estimated
/// cost in every scope of the principal, all or none. `None` when no scope has a limit (or
/// Redis cannot answer and `on_error` is `open`).
async fn reserve(
    rt: &Runtime,
    principal: &Principal,
    alias: usize,
    shape: Shape,
    body: Option<&[u8]>,
) -> Result<Option<Hold>, GatewayError> {
    let key_rules = key_rules(&principal.key);
    let scopes = scopes(rt, principal, &key_rules);
    if scopes.is_empty() {
        return Ok(None);
    }
    let needs_tokens = scopes.iter().any(|(_, r)| r.tpm.is_some());
    let needs_cost = scopes.iter().any(|(_, r)| r.budget.is_some());
    let a = &rt.snap.aliases[alias];
    let (format, is_chat) = match shape {
        Shape::Chat(f) => (f, true),
        Shape::CountTokens => (Format::Anthropic, true),
        Shape::Media(_) => (Format::OpenAiChat, false),
    };
    let (mut input, mut cap) = (0, 0);
    if (needs_tokens || needs_cost) && is_chat {
        if let (Some(b), Some(t)) = (body, a.targets.first()) {
            let kind = rt.snap.providers[t.provider].kind;
            let (n, c) =
                tokens::input_and_cap(format, b, tokens::TokenizerFamily::for_target(kind, &t.model));
            input = n;
            cap = c.unwrap_or(u64::from(a.default_max_tokens));
        }
    }
    let cost_micros = if needs_cost {
        a.targets
            .first()
            .and_then(|t| resolve_price(t.pricing.as_ref(), a.pricing.as_ref(), &t.model))
            .map(|p| estimate_micros(&p, input, cap, MediaUnits::default()))
            .unwrap_or(0)
    } else {
        0
    };
    let demand = Demand { tokens: input + cap, cost_micros, input_tokens: input };
    reserve_demand(rt, &scopes, demand).await
}

/// The limits of a key as a scope's rules.
pub fn key_rules(k: &Key) -> ScopeRules {
    ScopeRules {
        rpm: k.rpm,
        tpm: k.tpm,
        max_parallel: k.max_parallel,
        budget: k.budget.as_ref().map(crate::limits::BudgetRule::from_config),
    }
}

/// Admission for a job call (files, batches, fine-tuning, videos, message batches): the
/// caller's limits take the request (RPM, an in-flight slot, a budget that is not exhausted)
/// with no token or cost estimate; a finished job's reported usage settles against the
/// budgets when it is first read.
pub async fn admit_job(rt: &Runtime, principal: Principal) -> Result<Admission, GatewayError> {
    let key_rules = key_rules(&principal.key);
    let scopes = scopes(rt, &principal, &key_rules);
    let reservation =
        if scopes.is_empty() { None } else { reserve_demand(rt, &scopes, Demand::default()).await? };
    Ok(Admission { principal, alias: None, reservation })
}

/// Take `demand` in every scope, in Redis when `redis:` is set, else in this instance.
async fn reserve_demand(
    rt: &Runtime,
    scopes: &[(ScopeId, &ScopeRules)],
    demand: Demand,
) -> Result<Option<Hold>, GatewayError> {
    if let Some(shared) = &rt.shared {
        if let Some(r) = LimitsRegistry::too_large(scopes, demand) {
            return Err(refused(r));
        }
        match shared.limits.admit(scopes, demand, SystemTime::now()).await {
            Ok(Ok(r)) => return Ok(Some(Hold::Shared(r))),
            Ok(Err(r)) => return Err(refused(r)),
            Err(e) => match shared.on_error {
                RedisOnError::Open => {
                    tracing::debug!("{e}; admitted without limits (on_error: open)");
                    return Ok(None);
                }
                RedisOnError::Closed => {
                    return Err(GatewayError::LimitsUnavailable {
                        retry_after: crate::limits::shared::BREAKER_OPEN,
                    })
                }
                // This instance's own counters until Redis is back.
                RedisOnError::Local => {}
            },
        }
    }
    rt.limits
        .admit(scopes, demand, mono_ns(Instant::now()), SystemTime::now())
        .map(|r| Some(Hold::Local(r)))
        .map_err(refused)
}

/// A refusal of the limits as the gateway's error.
fn refused(r: Refusal) -> GatewayError {
    let scope = r.scope.to_string();
    match r.dimension {
        Dimension::Tpm if r.too_large => {
            GatewayError::TokensExceedLimit { needed: r.requested, limit: r.limit, scope }
        }
        Dimension::Rpm | Dimension::Tpm => GatewayError::RateLimited {
            dimension: if r.dimension == Dimension::Rpm { "rpm" } else { "tpm" },
            scope,
            limit: r.limit,
            retry_after: r.retry_after.unwrap_or(Duration::from_secs(1)),
        },
        Dimension::Parallel => GatewayError::TooManyInFlight { scope, limit: r.limit as u32 },
        Dimension::Budget => GatewayError::BudgetExceeded {
            scope,
            spent_usd: (r.limit.saturating_sub(r.remaining)) as f64 / 1e6,
            limit_usd: r.limit as f64 / 1e6,
            retry_after: r.retry_after,
        },
    }
}

/// The alias index for `model`: 404 when it does not exist, 403 when the principal may not use it.
pub fn resolve_alias(rt: &Runtime, principal: &Principal, model: &str) -> Result<usize, GatewayError> {
    let Some((idx, _)) = rt.snap.alias(model) else {
        return Err(GatewayError::UnknownModel { model: model.to_string() });
    };
    if !principal.allows(idx) {
        return Err(GatewayError::ModelNotAllowed {
            model: model.to_string(),
            key: principal.id().to_string(),
        });
    }
    Ok(idx)
}

/// An admission for endpoints without a model (`/v1/models`).
pub fn admit_without_model(principal: Principal) -> Admission {
    Admission { principal, alias: None, reservation: None }
}
