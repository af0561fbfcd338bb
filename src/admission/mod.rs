//! The one admission step every endpoint passes before any upstream I/O:
//! principal (virtual key today; JWT produces the same [`Principal`]) → alias → allow-list →
//! body validation → (limits and budget reservation plug in here) → an [`Admission`] the proxy
//! carries to the end, where accounting runs exactly once.

mod validate;

pub use self::validate::{validate, Shape};

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use crate::auth;
use crate::config::Key;
use crate::error::GatewayError;
use crate::runtime::Runtime;

/// Who is calling: the identity every later step (limits, accounting) reads.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The key entry (a virtual key; for JWT callers, one made from the token's claims).
    pub key: Arc<Key>,
}

/// A request that passed admission.
#[derive(Clone, Debug)]
pub struct Admission {
    pub principal: Principal,
    /// The alias index (`None` for endpoints without a model, such as `/v1/models`).
    pub alias: Option<usize>,
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

/// Steps 2-4: the alias `model` names, the principal's allow-list, and the body's shape.
pub fn admit(
    rt: &Runtime,
    principal: Principal,
    model: &str,
    shape: Shape,
    body: Option<&[u8]>,
    model_in_path: bool,
) -> Result<Admission, GatewayError> {
    let alias = resolve_alias(rt, &principal, model)?;
    if let Some(b) = body {
        validate(shape, b, model_in_path)?;
    }
    Ok(Admission { principal, alias: Some(alias) })
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
    Admission { principal, alias: None }
}
