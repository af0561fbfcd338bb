//! JWT bearer tokens (SPEC section 3, config `auth.jwt`): the verification keys, loaded once per
//! config load from a JWKS file and/or inline PEM public keys and `hmac:` secrets, and the check
//! of one token against them. Signatures are checked by the `jsonwebtoken` crate; the header,
//! the claims and the clock are read here, so that time is an argument and every failure has its
//! own error. Not here: where a bearer is found (`keys.rs`), limits, or usage accounting.
//!
//! Rules: RS256, ES256 (P-256), HS256 and EdDSA (Ed25519) only; a token's `alg` must be the one
//! algorithm of the key that checks it, so an HMAC token is never checked against a public key's
//! bytes and `alg: none` is refused. `iss`, `aud` and `exp` are required, `nbf` is checked when
//! present, both times with 60 s leeway. A `kid` selects the key with that `kid`; keys without a
//! `kid` (inline ones) are tried for any token of their algorithm whose `kid` matches no key.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Map, Value};

use crate::config::{JwtClaims, JwtConfig, MasterKey, Secret};

/// Clock skew allowed on `exp` and `nbf`, seconds.
pub const LEEWAY_S: u64 = 60;
/// Longest token looked at; anything longer is malformed (no IdP issues 16 KiB tokens).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Shortest HS256 secret accepted: the hash output size (RFC 7518 section 3.2).
pub const MIN_HMAC_BYTES: usize = 32;
/// Smallest RSA modulus accepted, bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Optional numeric claims of fixed names that narrow the caller's limits.
const CLAIM_RPM: &str = "rpm";
const CLAIM_TPM: &str = "tpm";
const CLAIM_MAX_PARALLEL: &str = "max_parallel";

/// Who a verified token says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The subject claim (`cfg.claims.subject`); usage lines show it as key id `jwt:<subject>`.
    pub subject: String,
    /// The project claim (`cfg.claims.project`), or `default_project` when the token has none.
    pub project: String,
    /// Aliases the token allows (`cfg.claims.models`: a JSON array of strings, or one string of
    /// names separated by spaces or commas); `None` = all.
    pub models: Option<Vec<String>>,
    /// Requests per minute (claim `rpm`).
    pub rpm: Option<u64>,
    /// Tokens per minute (claim `tpm`).
    pub tpm: Option<u64>,
    /// Requests in flight at once (claim `max_parallel`).
    pub max_parallel: Option<u32>,
}

/// Why a JWT is refused (every case is a 401). Messages are safe to show a client: they never
/// contain the token, and name only claim names, configured values and times.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed JWT: {0}")]
    Malformed(&'static str),
    #[error(
        "JWT algorithm {0} is not accepted here (RS256, ES256, HS256 or EdDSA, matching a configured key)"
    )]
    AlgorithmNotAllowed(String),
    #[error("no configured key matches the JWT's `kid`")]
    UnknownKey,
    #[error("JWT signature does not verify")]
    Signature,
    #[error("JWT has no `{0}` claim")]
    MissingClaim(String),
    #[error("JWT claim `{0}` has the wrong type")]
    ClaimType(String),
    #[error("JWT expired at {exp} (now {now}, {LEEWAY_S} s leeway)")]
    Expired { exp: u64, now: u64 },
    #[error("JWT is not valid before {nbf} (now {now}, {LEEWAY_S} s leeway)")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("JWT issuer is not {expected:?}")]
    Issuer { expected: String },
    #[error("JWT audience does not include {expected:?}")]
    Audience { expected: String },
    #[error("JWT has no `{claim}` claim naming a project, and no default project is configured")]
    NoProject { claim: String },
}

/// The keys and rules of `auth.jwt`, ready to check tokens. Built once per config load.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    claims: JwtClaims,
    default_project: Option<String>,
    keys: Vec<VerifyKey>,
}

/// One verification key and the one algorithm it checks.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A config problem: (YAML path, what is wrong and how to fix it).
type Problem = (String, String);

// === impl JwtVerifier ===

impl JwtVerifier {
    /// Load the keys of `cfg`: the JWKS file (read now, so a config reload re-reads it) and the
    /// inline `keys` (resolved with `master` when `enc:`). Every problem is returned at once,
    /// each with its YAML path (`auth.jwt.keys[1]`, `auth.jwt.jwks_file`, ...). A relative
    /// `jwks_file` is relative to the working directory.
    pub fn new(cfg: &JwtConfig, master: Option<&MasterKey>) -> Result<JwtVerifier, Vec<(String, String)>> {
        let mut errs: Vec<Problem> = Vec::new();
        if cfg.issuer.trim().is_empty() {
            errs.push((
                "auth.jwt.issuer".into(),
                "must not be empty: set the `iss` your identity provider puts in its tokens".into(),
            ));
        }
        if cfg.audience.trim().is_empty() {
            errs.push((
                "auth.jwt.audience".into(),
                "must not be empty: set the `aud` your tokens are issued for".into(),
            ));
        }
        for (name, value) in [
            ("project", &cfg.claims.project),
            ("models", &cfg.claims.models),
            ("subject", &cfg.claims.subject),
        ] {
            if value.trim().is_empty() {
                errs.push((
                    format!("auth.jwt.claims.{name}"),
                    "must name a claim (or be left out for the default)".into(),
                ));
            }
        }
        let mut keys = Vec::new();
        if let Some(file) = &cfg.jwks_file {
            match std::fs::read(file) {
                Ok(bytes) => load_jwks(file, &bytes, &mut keys, &mut errs),
                Err(e) => errs.push(("auth.jwt.jwks_file".into(), format!("{file}: cannot read: {e}"))),
            }
        }
        for (i, secret) in cfg.keys.iter().enumerate() {
            match inline_key(secret, master) {
                Ok(k) => keys.push(k),
                Err(problem) => errs.push((format!("auth.jwt.keys[{i}]"), problem)),
            }
        }
        if cfg.jwks_file.is_none() && cfg.keys.is_empty() {
            errs.push((
                "auth.jwt".into(),
                "no keys: set `jwks_file` or `keys` (PEM public keys or hmac:<secret>)".into(),
            ));
        } else if errs.is_empty() && keys.is_empty() {
            errs.push((
                "auth.jwt.jwks_file".into(),
                "holds no signing key (`use: enc` keys are skipped)".into(),
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(JwtVerifier {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            claims: cfg.claims.clone(),
            default_project: cfg.default_project.clone(),
            keys,
        })
    }

    /// How many verification keys were loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Check `token` at time `now_unix` (seconds since the epoch): header, key choice, signature,
    /// then `iss`, `aud`, `exp`, `nbf` and the identity claims. The signature is checked before
    /// any claim is read.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<JwtIdentity, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed("longer than 16 KiB"));
        }
        let (header_b64, payload_b64, signature_b64) =
            split(token).ok_or(JwtError::Malformed("not three base64url segments"))?;
        let header = decode_object(header_b64)
            .ok_or(JwtError::Malformed("the header is not a base64url JSON object"))?;
        if header.contains_key("crit") {
            return Err(JwtError::Malformed("critical header extensions (`crit`) are not supported"));
        }
        let alg = match header.get("alg") {
            Some(Value::String(a)) => {
                algorithm(a).ok_or_else(|| JwtError::AlgorithmNotAllowed(printable(a)))?
            }
            Some(_) => return Err(JwtError::Malformed("the header's `alg` is not a string")),
            None => return Err(JwtError::Malformed("the header has no `alg`")),
        };
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(JwtError::Malformed("the header's `kid` is not a string")),
        };
        let candidates = self.candidates(alg, kid)?;
        if signature_b64.is_empty() {
            return Err(JwtError::Signature);
        }
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        let verified = candidates.iter().any(|k| {
            matches!(jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), &k.key, alg), Ok(true))
        });
        if !verified {
            return Err(JwtError::Signature);
        }
        let claims = decode_object(payload_b64)
            .ok_or(JwtError::Malformed("the payload is not a base64url JSON object"))?;
        self.check_claims(&claims, now_unix)?;
        self.identity(&claims)
    }

    /// The keys that may check a token of `alg` with `kid`.
    fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Result<Vec<&VerifyKey>, JwtError> {
        if !self.keys.iter().any(|k| k.alg == alg) {
            // Includes HS256 against public keys only: algorithm confusion is refused here.
            return Err(JwtError::AlgorithmNotAllowed(alg_name(alg).into()));
        }
        if let Some(kid) = kid {
            if let Some(k) = self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                if k.alg != alg {
                    return Err(JwtError::AlgorithmNotAllowed(alg_name(alg).into()));
                }
                return Ok(vec![k]);
            }
            let unnamed: Vec<&VerifyKey> =
                self.keys.iter().filter(|k| k.alg == alg && k.kid.is_none()).collect();
            if unnamed.is_empty() {
                return Err(JwtError::UnknownKey);
            }
            return Ok(unnamed);
        }
        Ok(self.keys.iter().filter(|k| k.alg == alg).collect())
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), JwtError> {
        match claims.get("iss") {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("iss".into())),
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(_)) => return Err(JwtError::Issuer { expected: self.issuer.clone() }),
            Some(_) => return Err(JwtError::ClaimType("iss".into())),
        }
        let audience_ok = match claims.get("aud") {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim("aud".into())),
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(self.audience.as_str())),
            Some(_) => return Err(JwtError::ClaimType("aud".into())),
        };
        if !audience_ok {
            return Err(JwtError::Audience { expected: self.audience.clone() });
        }
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        if now >= exp.saturating_add(LEEWAY_S) {
            return Err(JwtError::Expired { exp, now });
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now.saturating_add(LEEWAY_S) < nbf {
                return Err(JwtError::NotYetValid { nbf, now });
            }
        }
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<JwtIdentity, JwtError> {
        let names = &self.claims;
        let subject = match claims.get(&names.subject) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(JwtError::MissingClaim(names.subject.clone()))
            }
            Some(_) => return Err(JwtError::ClaimType(names.subject.clone())),
        };
        let project = match claims.get(&names.project) {
            Some(Value::String(p)) if !p.is_empty() => p.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => match &self.default_project {
                Some(p) => p.clone(),
                None => return Err(JwtError::NoProject { claim: names.project.clone() }),
            },
            Some(_) => return Err(JwtError::ClaimType(names.project.clone())),
        };
        let models = match claims.get(&names.models) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                s.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|m| m.as_str().map(String::from))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| JwtError::ClaimType(names.models.clone()))?,
            ),
            Some(_) => return Err(JwtError::ClaimType(names.models.clone())),
        };
        let max_parallel = match unsigned(claims, CLAIM_MAX_PARALLEL)? {
            Some(n) => Some(u32::try_from(n).map_err(|_| JwtError::ClaimType(CLAIM_MAX_PARALLEL.into()))?),
            None => None,
        };
        Ok(JwtIdentity {
            subject,
            project,
            models,
            rpm: unsigned(claims, CLAIM_RPM)?,
            tpm: unsigned(claims, CLAIM_TPM)?,
            max_parallel,
        })
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{}:{}", alg_name(k.alg), k.kid.as_deref().unwrap_or("-")))
            .collect();
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

/// Cheap test of whether a bearer is a JWT rather than a virtual key: three base64url segments
/// (the signature may be empty) whose first decodes to a JSON object with an `alg`. Says
/// nothing about validity.
pub fn looks_like_jwt(bearer: &str) -> bool {
    if bearer.len() > MAX_TOKEN_BYTES {
        return false;
    }
    match split(bearer) {
        Some((header, _, _)) => decode_object(header).is_some_and(|h| h.contains_key("alg")),
        None => false,
    }
}

/// `header.payload.signature`, each segment base64url characters only; header and payload non-empty.
fn split(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || p.is_empty() {
        return None;
    }
    let b64url = |seg: &str| seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (b64url(h) && b64url(p) && b64url(s)).then_some((h, p, s))
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = B64URL.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The accepted algorithms, by their JOSE names.
fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "HS256" => Some(Algorithm::HS256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::HS256 => "HS256",
        Algorithm::EdDSA => "EdDSA",
        _ => "other",
    }
}

/// An `alg` value fit to put in an error message: short ASCII names as they are, anything else hidden.
fn printable(alg: &str) -> String {
    if alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        alg.to_string()
    } else {
        "(unprintable)".to_string()
    }
}

/// A NumericDate claim (seconds since the epoch; fractions allowed and dropped).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(JwtError::ClaimType(name.into())),
        },
        Some(_) => Err(JwtError::ClaimType(name.into())),
    }
}

/// An optional non-negative integer claim.
fn unsigned(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| JwtError::ClaimType(name.into())),
    }
}

// === key loading ===

/// Read a JWKS document; keys with `use: enc` are skipped, every other key must be usable.
fn load_jwks(file: &str, bytes: &[u8], keys: &mut Vec<VerifyKey>, errs: &mut Vec<Problem>) {
    let path = || "auth.jwt.jwks_file".to_string();
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return errs.push((path(), format!("{file}: not JSON: {e}"))),
    };
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return errs.push((path(), format!("{file}: not a JWKS: expected {{\"keys\": [...]}}")));
    };
    let first_new = keys.len();
    for (i, jwk) in list.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str);
        let name = match kid {
            Some(k) => format!("{file}: keys[{i}] (kid {k:?})"),
            None => format!("{file}: keys[{i}]"),
        };
        match jwk_key(jwk) {
            Ok(Some(k)) => {
                if k.kid.is_some() && keys[first_new..].iter().any(|other| other.kid == k.kid) {
                    errs.push((path(), format!("{name}: the same kid appears twice")));
                } else {
                    keys.push(k);
                }
            }
            Ok(None) => {}
            Err(problem) => errs.push((path(), format!("{name}: {problem}"))),
        }
    }
}

/// One JWK; `Ok(None)` for an encryption key.
fn jwk_key(jwk: &Value) -> Result<Option<VerifyKey>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("use") == Some("enc") {
        return Ok(None);
    }
    let kid = match jwk.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err("`kid` is not a string".into()),
    };
    let required = |name: &str| field(name).ok_or_else(|| format!("`{name}` is missing"));
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        B64URL.decode(required(name)?).map_err(|_| format!("`{name}` is not base64url"))
    };
    let (alg, key) = match required("kty")? {
        "RSA" => {
            check_alg(field("alg"), &["RS256"])?;
            let (n, e) = (bytes("n")?, bytes("e")?);
            check_rsa(rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            ))?;
            (Algorithm::RS256, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            check_alg(field("alg"), &["ES256"])?;
            let crv = required("crv")?;
            if crv != "P-256" {
                return Err(format!("curve {crv} is not accepted: ES256 needs P-256"));
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("`x` and `y` must be 32 bytes each for P-256".into());
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = DecodingKey::from_ec_der(&point);
            probe(&key, Algorithm::ES256)?;
            (Algorithm::ES256, key)
        }
        "OKP" => {
            check_alg(field("alg"), &["EdDSA", "Ed25519"])?;
            let crv = required("crv")?;
            if crv != "Ed25519" {
                return Err(format!("curve {crv} is not accepted: EdDSA needs Ed25519"));
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("`x` must be 32 bytes for Ed25519".into());
            }
            let key = DecodingKey::from_ed_der(&x);
            probe(&key, Algorithm::EdDSA)?;
            (Algorithm::EdDSA, key)
        }
        "oct" => {
            check_alg(field("alg"), &["HS256"])?;
            (Algorithm::HS256, hmac_key(&bytes("k")?)?)
        }
        other => return Err(format!("key type {other:?} is not accepted (RSA, EC, OKP or oct)")),
    };
    Ok(Some(VerifyKey { kid, alg, key }))
}

/// One inline `auth.jwt.keys` entry: a PEM public key, or `hmac:<secret>` (the secret itself may
/// be `env:` or `enc:`; the whole entry may be too).
fn inline_key(secret: &Secret, master: Option<&MasterKey>) -> Result<VerifyKey, String> {
    let resolved = secret.resolve(master)?;
    let text = resolved.expose().trim();
    if let Some(rest) = text.strip_prefix("hmac:") {
        let inner = Secret(rest.to_string()).resolve(master)?;
        let key = hmac_key(inner.expose().as_bytes())?;
        return Ok(VerifyKey { kid: None, alg: Algorithm::HS256, key });
    }
    if !text.starts_with("-----BEGIN ") {
        return Err("expected a PEM public key (-----BEGIN PUBLIC KEY-----) or hmac:<secret>".into());
    }
    if text.starts_with("-----BEGIN CERTIFICATE-----") {
        return Err(
            "is a certificate: configure its public key (openssl x509 -in cert.pem -pubkey -noout)".into()
        );
    }
    if text.lines().next().is_some_and(|l| l.contains("PRIVATE KEY")) {
        return Err("is a private key: configure its public half (openssl pkey -in key.pem -pubout)".into());
    }
    let pem = text.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let der = key.try_get_as_bytes().map_err(|_| "unreadable RSA key".to_string())?;
        check_rsa(rsa::pkcs1::DecodeRsaPublicKey::from_pkcs1_der(der))?;
        return Ok(VerifyKey { kid: None, alg: Algorithm::RS256, key });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // An uncompressed P-256 point is 65 bytes; P-384 and others are refused.
        if key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(65) {
            return Err("only P-256 EC keys (ES256) are accepted".into());
        }
        probe(&key, Algorithm::ES256)?;
        return Ok(VerifyKey { kid: None, alg: Algorithm::ES256, key });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        if key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(32) {
            return Err("not an Ed25519 public key".into());
        }
        probe(&key, Algorithm::EdDSA)?;
        return Ok(VerifyKey { kid: None, alg: Algorithm::EdDSA, key });
    }
    Err("not a PEM public key of a supported type (RSA, EC P-256 or Ed25519)".into())
}

fn hmac_key(secret: &[u8]) -> Result<DecodingKey, String> {
    if secret.len() < MIN_HMAC_BYTES {
        return Err(format!(
            "an HS256 secret must be at least {MIN_HMAC_BYTES} bytes, this one has {}",
            secret.len()
        ));
    }
    DecodingKey::from_secret(secret).map_err(|_| "unusable HMAC secret".to_string())
}

fn check_alg(alg: Option<&str>, allowed: &[&str]) -> Result<(), String> {
    match alg {
        Some(a) if !allowed.contains(&a) => {
            Err(format!("algorithm {a} is not accepted (RS256, ES256, HS256 or EdDSA)"))
        }
        _ => Ok(()),
    }
}

fn check_rsa<E>(parsed: Result<rsa::PublicKey, E>) -> Result<(), String> {
    let key = parsed.map_err(|_| "not a valid RSA public key".to_string())?;
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!("RSA key of {bits} bits: at least {MIN_RSA_BITS} are required"));
    }
    Ok(())
}

/// Make the crypto backend parse `key` now, so a bad EC or Ed25519 key is a config error rather
/// than a refused token later: a parse failure is an `Err`, a parsed key with a dummy signature `Ok(false)`.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    match jsonwebtoken::crypto::verify("AA", b"probe", key, alg) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("not a valid {} public key", alg_name(alg))),
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
