//! Tests of `jwt.rs`: each accepted algorithm (inline PEM / hmac and JWKS), each refusal, and
//! key loading errors. Keys are the test-only fixtures under `tests/fixtures/jwt/`.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::JwtClaims;

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://login.example.com/";
const AUD: &str = "llm-gateway";
const HMAC_INLINE: &str = "inline-hmac-secret-for-tests-only-0123456789";
const HMAC_JWKS: &str = "jwks-hmac-secret-for-tests-only-0123456789";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn config(keys: Vec<String>, jwks: bool) -> JwtConfig {
    JwtConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        jwks_file: jwks.then(|| fixture_path("jwks.json")),
        keys: keys.into_iter().map(Secret).collect(),
        claims: JwtClaims { project: "team".into(), models: "llm_models".into(), subject: "sub".into() },
        default_project: None,
    }
}

/// Every kind of key at once: inline RSA, EC, Ed25519 PEMs and an HMAC secret, plus the JWKS.
fn verifier() -> JwtVerifier {
    let keys = vec![
        fixture("rsa_public.pem"),
        fixture("ec_public.pem"),
        fixture("ed25519_public.pem"),
        format!("hmac:{HMAC_INLINE}"),
    ];
    JwtVerifier::new(&config(keys, true), None).unwrap()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "team": "search",
        "exp": NOW + 3600, "nbf": NOW - 10, "iat": NOW - 10,
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rsa_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap()
}

fn rsa2_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture("rsa2_private.pem").as_bytes()).unwrap()
}

fn ec_private() -> EncodingKey {
    EncodingKey::from_ec_pem(fixture("ec_private.pem").as_bytes()).unwrap()
}

fn ed_private() -> EncodingKey {
    EncodingKey::from_ed_pem(fixture("ed25519_private.pem").as_bytes()).unwrap()
}

fn hs(secret: &str) -> EncodingKey {
    EncodingKey::from_secret(secret.as_bytes()).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    B64URL.encode(serde_json::to_vec(v).unwrap())
}

fn alice() -> JwtIdentity {
    JwtIdentity {
        subject: "alice".into(),
        project: "search".into(),
        models: None,
        rpm: None,
        tpm: None,
        max_parallel: None,
    }
}

#[test]
fn every_accepted_algorithm_verifies_with_inline_keys() {
    let v = verifier();
    let c = claims();
    let tokens = [
        ("RS256", sign(Algorithm::RS256, &rsa_private(), None, &c)),
        ("ES256", sign(Algorithm::ES256, &ec_private(), None, &c)),
        ("EdDSA", sign(Algorithm::EdDSA, &ed_private(), None, &c)),
        ("HS256", sign(Algorithm::HS256, &hs(HMAC_INLINE), None, &c)),
    ];
    for (alg, token) in tokens {
        assert!(looks_like_jwt(&token), "{alg}");
        assert_eq!(v.verify(&token, NOW), Ok(alice()), "{alg}");
    }
}

#[test]
fn every_accepted_algorithm_verifies_with_jwks_keys_selected_by_kid() {
    let v = JwtVerifier::new(&config(vec![], true), None).unwrap();
    assert_eq!(v.key_count(), 4, "the `use: enc` key is skipped");
    let c = claims();
    let tokens = [
        ("RS256", sign(Algorithm::RS256, &rsa2_private(), Some("rsa-jwks"), &c)),
        ("ES256", sign(Algorithm::ES256, &ec_private(), Some("ec-jwks"), &c)),
        ("EdDSA", sign(Algorithm::EdDSA, &ed_private(), Some("ed-jwks"), &c)),
        ("HS256", sign(Algorithm::HS256, &hs(HMAC_JWKS), Some("hs-jwks"), &c)),
    ];
    for (alg, token) in tokens {
        assert_eq!(v.verify(&token, NOW), Ok(alice()), "{alg}");
    }
    // Without a kid, every key of the token's algorithm is tried.
    let token = sign(Algorithm::RS256, &rsa2_private(), None, &c);
    assert_eq!(v.verify(&token, NOW), Ok(alice()));
}

#[test]
fn a_kid_selects_its_key_and_an_unmatched_kid_falls_back_to_keys_without_one() {
    let v = verifier();
    let c = claims();
    // Signed by the inline RSA key but naming the JWKS RSA key: only the named key is tried.
    let named = sign(Algorithm::RS256, &rsa_private(), Some("rsa-jwks"), &c);
    assert_eq!(v.verify(&named, NOW), Err(JwtError::Signature));
    // A kid nobody has: the inline (kid-less) RSA key is tried and verifies.
    let other = sign(Algorithm::RS256, &rsa_private(), Some("idp-rotated-2026"), &c);
    assert_eq!(v.verify(&other, NOW), Ok(alice()));
}

#[test]
fn an_unknown_kid_is_refused_when_every_key_has_a_kid() {
    let v = JwtVerifier::new(&config(vec![], true), None).unwrap();
    let token = sign(Algorithm::RS256, &rsa2_private(), Some("nope"), &claims());
    assert_eq!(v.verify(&token, NOW), Err(JwtError::UnknownKey));
}

#[test]
fn a_kid_naming_a_key_of_another_algorithm_is_refused() {
    let v = JwtVerifier::new(&config(vec![], true), None).unwrap();
    let token = sign(Algorithm::ES256, &ec_private(), Some("rsa-jwks"), &claims());
    assert_eq!(v.verify(&token, NOW), Err(JwtError::AlgorithmNotAllowed("ES256".into())));
}

#[test]
fn identity_claims_are_read_under_the_configured_names() {
    let v = verifier();
    let mut c = claims();
    c["llm_models"] = json!(["fast", "claude-haiku"]);
    c["rpm"] = json!(600);
    c["tpm"] = json!(200000);
    c["max_parallel"] = json!(20);
    let token = sign(Algorithm::ES256, &ec_private(), None, &c);
    let id = v.verify(&token, NOW).unwrap();
    assert_eq!(
        id,
        JwtIdentity {
            subject: "alice".into(),
            project: "search".into(),
            models: Some(vec!["fast".into(), "claude-haiku".into()]),
            rpm: Some(600),
            tpm: Some(200_000),
            max_parallel: Some(20),
        }
    );
    c["llm_models"] = json!("fast claude-haiku,gpt");
    let token = sign(Algorithm::ES256, &ec_private(), None, &c);
    assert_eq!(
        v.verify(&token, NOW).unwrap().models,
        Some(vec!["fast".into(), "claude-haiku".into(), "gpt".into()])
    );
}

#[test]
fn expiry_is_checked_with_sixty_seconds_of_leeway() {
    let v = verifier();
    let mut c = claims();
    c["exp"] = json!(NOW - 30);
    let token = sign(Algorithm::EdDSA, &ed_private(), None, &c);
    assert!(v.verify(&token, NOW).is_ok(), "30 s past exp is inside the leeway");
    c["exp"] = json!(NOW - 61);
    let token = sign(Algorithm::EdDSA, &ed_private(), None, &c);
    assert_eq!(v.verify(&token, NOW), Err(JwtError::Expired { exp: NOW - 61, now: NOW }));
}

#[test]
fn a_token_not_yet_valid_is_refused() {
    let v = verifier();
    let mut c = claims();
    c["nbf"] = json!(NOW + 30);
    let token = sign(Algorithm::EdDSA, &ed_private(), None, &c);
    assert!(v.verify(&token, NOW).is_ok(), "30 s early is inside the leeway");
    c["nbf"] = json!(NOW + 61);
    let token = sign(Algorithm::EdDSA, &ed_private(), None, &c);
    assert_eq!(v.verify(&token, NOW), Err(JwtError::NotYetValid { nbf: NOW + 61, now: NOW }));
}

#[test]
fn time_claims_of_the_wrong_type_are_refused_not_skipped() {
    // GHSA-h395-gr6q-cpjc: a string `nbf`/`exp` must not count as absent.
    let v = verifier();
    for (name, value) in [("nbf", json!("99999999999")), ("exp", json!("never")), ("exp", json!(-5))] {
        let mut c = claims();
        c[name] = value;
        let token = sign(Algorithm::HS256, &hs(HMAC_INLINE), None, &c);
        assert_eq!(v.verify(&token, NOW), Err(JwtError::ClaimType(name.into())));
    }
}

#[test]
fn issuer_audience_and_expiry_are_required_and_checked() {
    let v = verifier();
    let hs = hs(HMAC_INLINE);
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com/");
    assert_eq!(
        v.verify(&sign(Algorithm::HS256, &hs, None, &c), NOW),
        Err(JwtError::Issuer { expected: ISS.into() })
    );
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(
        v.verify(&sign(Algorithm::HS256, &hs, None, &c), NOW),
        Err(JwtError::Audience { expected: AUD.into() })
    );
    let mut c = claims();
    c["aud"] = json!(["someone-else", AUD]);
    assert!(v.verify(&sign(Algorithm::HS256, &hs, None, &c), NOW).is_ok(), "one of several audiences");
    for name in ["iss", "aud", "exp", "sub"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, &hs, None, &c), NOW),
            Err(JwtError::MissingClaim(name.into())),
            "{name}"
        );
    }
}

#[test]
fn a_bad_signature_is_refused() {
    let v = verifier();
    // Signed by a key the gateway does not have (rsa2 is only in the JWKS, not loaded here).
    let inline_only = JwtVerifier::new(&config(vec![fixture("rsa_public.pem")], false), None).unwrap();
    let token = sign(Algorithm::RS256, &rsa2_private(), None, &claims());
    assert_eq!(inline_only.verify(&token, NOW), Err(JwtError::Signature));
    // A valid token whose payload was swapped for another project's.
    let token = sign(Algorithm::ES256, &ec_private(), None, &claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims();
    forged["team"] = json!("billing");
    let forged = b64(&forged);
    parts[1] = &forged;
    assert_eq!(v.verify(&parts.join("."), NOW), Err(JwtError::Signature));
    // No signature at all.
    let unsigned = format!("{}.{}.", parts[0], forged);
    assert_eq!(v.verify(&unsigned, NOW), Err(JwtError::Signature));
}

#[test]
fn alg_none_is_refused() {
    let v = verifier();
    let token = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims()));
    assert!(looks_like_jwt(&token), "routed to the JWT check so that it is refused there");
    assert_eq!(v.verify(&token, NOW), Err(JwtError::AlgorithmNotAllowed("none".into())));
    let other = format!("{}.{}.c2ln", b64(&json!({"alg": "RS512"})), b64(&claims()));
    assert_eq!(v.verify(&other, NOW), Err(JwtError::AlgorithmNotAllowed("RS512".into())));
}

#[test]
fn hs256_signed_with_the_rsa_public_key_as_secret_is_refused() {
    // Algorithm confusion: a verifier with only public keys never runs HMAC over their bytes.
    let pem = fixture("rsa_public.pem");
    let v = JwtVerifier::new(&config(vec![pem.clone()], true), None).unwrap_or_else(|e| panic!("{e:?}"));
    let v_public_only = JwtVerifier::new(&config(vec![pem.clone()], false), None).unwrap();
    let forged = sign(Algorithm::HS256, &hs(&pem), None, &claims());
    assert_eq!(v_public_only.verify(&forged, NOW), Err(JwtError::AlgorithmNotAllowed("HS256".into())));
    // With an HMAC key also configured, the forged token is checked against that secret only.
    assert_eq!(v.verify(&forged, NOW), Err(JwtError::Signature));
    let forged_kid = sign(Algorithm::HS256, &hs(&pem), Some("rsa-jwks"), &claims());
    assert_eq!(v.verify(&forged_kid, NOW), Err(JwtError::AlgorithmNotAllowed("HS256".into())));
}

#[test]
fn a_token_without_the_project_claim_uses_the_default_project_or_is_refused() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("team");
    let token = sign(Algorithm::EdDSA, &ed_private(), None, &c);
    let v = verifier();
    assert_eq!(v.verify(&token, NOW), Err(JwtError::NoProject { claim: "team".into() }));
    let mut cfg = config(vec![fixture("ed25519_public.pem")], false);
    cfg.default_project = Some("shared".into());
    let v = JwtVerifier::new(&cfg, None).unwrap();
    assert_eq!(v.verify(&token, NOW).unwrap().project, "shared");
}

#[test]
fn malformed_tokens_are_refused_and_error_messages_never_echo_the_token() {
    let v = verifier();
    let token = sign(Algorithm::ES256, &ec_private(), None, &claims());
    let sig = token.rsplit('.').next().unwrap().to_string();
    let cases = [
        "not-a-jwt".to_string(),
        format!("{token}.extra"),
        format!("{}.{}.{}", "!!", "e30", sig),
        format!("{}.{}.{}", b64(&json!([1, 2])), b64(&claims()), sig),
        format!("{}.{}.{}", b64(&json!({"typ": "JWT"})), b64(&claims()), sig),
        format!("{}.{}.{}", b64(&json!({"alg": "ES256", "crit": ["exp"]})), b64(&claims()), sig),
        "a".repeat(MAX_TOKEN_BYTES + 1),
    ];
    for bad in &cases {
        let e = v.verify(bad, NOW).unwrap_err();
        assert!(matches!(e, JwtError::Malformed(_)), "{e:?}");
    }
    let mut c = claims();
    c["exp"] = json!(NOW - 3600);
    let expired = sign(Algorithm::ES256, &ec_private(), None, &c);
    let msg = v.verify(&expired, NOW).unwrap_err().to_string();
    for part in expired.split('.') {
        assert!(!msg.contains(part), "{msg}");
    }
    let odd_alg = format!("{}.{}.{}", b64(&json!({"alg": "<script>alert(1)</script>"})), b64(&claims()), sig);
    let msg = v.verify(&odd_alg, NOW).unwrap_err().to_string();
    assert!(msg.contains("(unprintable)") && !msg.contains("script"), "{msg}");
}

#[test]
fn looks_like_jwt_routes_tokens_and_not_virtual_keys() {
    let token = sign(Algorithm::HS256, &hs(HMAC_INLINE), None, &claims());
    assert!(looks_like_jwt(&token));
    assert!(!looks_like_jwt("sk-gw-4fT9qZ1abcdefghijklmnopqrstuvwxyzABCDEFG"));
    assert!(!looks_like_jwt("a.b.c"));
    assert!(!looks_like_jwt(&format!("{}.e30.sig", b64(&json!({"typ": "JWT"})))));
    assert!(!looks_like_jwt(&format!("{}.e30", b64(&json!({"alg": "HS256"})))));
    assert!(!looks_like_jwt(&format!("{}.e30.a.b", b64(&json!({"alg": "HS256"})))));
    assert!(looks_like_jwt(&format!("{}.e30.", b64(&json!({"alg": "HS256"})))));
}

#[test]
fn key_loading_reports_every_problem_with_its_path() {
    let short_hmac = "hmac:too-short".to_string();
    let keys = vec![
        fixture("rsa_private.pem"),
        fixture("rsa1024_public.pem"),
        fixture("p384_public.pem"),
        short_hmac,
        "just some text".to_string(),
        fixture("ec_public.pem"),
    ];
    let mut cfg = config(keys, false);
    cfg.jwks_file = Some("/nonexistent/jwks.json".into());
    cfg.issuer = " ".into();
    let errs = JwtVerifier::new(&cfg, None).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "auth.jwt.issuer",
            "auth.jwt.jwks_file",
            "auth.jwt.keys[0]",
            "auth.jwt.keys[1]",
            "auth.jwt.keys[2]",
            "auth.jwt.keys[3]",
            "auth.jwt.keys[4]"
        ]
    );
    let msg = |i: usize| errs[i].1.as_str();
    assert!(msg(1).contains("/nonexistent/jwks.json: cannot read"), "{}", msg(1));
    assert!(msg(2).contains("private key"), "{}", msg(2));
    assert!(msg(3).contains("1024 bits"), "{}", msg(3));
    assert!(msg(4).contains("P-256"), "{}", msg(4));
    assert!(msg(5).contains("at least 32 bytes") && !msg(5).contains("too-short"), "{}", msg(5));
    assert!(msg(6).contains("PEM public key"), "{}", msg(6));

    let none = JwtVerifier::new(&config(vec![], false), None).unwrap_err();
    assert_eq!(
        none,
        [(
            "auth.jwt".to_string(),
            "no keys: set `jwks_file` or `keys` (PEM public keys or hmac:<secret>)".to_string()
        )]
    );
}

#[test]
fn bad_jwks_entries_are_named_by_index_and_kid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let jwks = json!({"keys": [
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "weak", "k": "c2hvcnQ"},
        {"kty": "OKP", "kid": "bad-ed", "crv": "Ed25519", "x": "AAAA"},
        {"kty": "oct", "kid": "dup", "k": B64URL.encode(HMAC_JWKS)},
        {"kty": "oct", "kid": "dup", "k": B64URL.encode(HMAC_JWKS)},
    ]});
    std::fs::write(&path, serde_json::to_vec(&jwks).unwrap()).unwrap();
    let mut cfg = config(vec![], false);
    cfg.jwks_file = Some(path.display().to_string());
    let errs = JwtVerifier::new(&cfg, None).unwrap_err();
    let msgs: Vec<&str> = errs.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(msgs.len(), 5, "{msgs:#?}");
    assert!(errs.iter().all(|(p, _)| p == "auth.jwt.jwks_file"));
    assert!(msgs[0].contains("keys[0] (kid \"p384\")") && msgs[0].contains("P-384"), "{}", msgs[0]);
    assert!(msgs[1].contains("PS256 is not accepted"), "{}", msgs[1]);
    assert!(msgs[2].contains("at least 32 bytes"), "{}", msgs[2]);
    assert!(msgs[3].contains("32 bytes for Ed25519"), "{}", msgs[3]);
    assert!(msgs[4].contains("keys[5]") && msgs[4].contains("twice"), "{}", msgs[4]);
}

#[test]
fn inline_keys_may_be_sealed_under_the_master_key() {
    let master = MasterKey::from_base64("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=").unwrap();
    let sealed_pem = master.encrypt(&fixture("ed25519_public.pem"));
    let sealed_secret = master.encrypt(HMAC_INLINE);
    let cfg = config(vec![sealed_pem, format!("hmac:{sealed_secret}")], false);
    assert!(JwtVerifier::new(&cfg, None).is_err(), "enc: needs the master key");
    let v = JwtVerifier::new(&cfg, Some(&master)).unwrap();
    assert_eq!(v.key_count(), 2);
    let token = sign(Algorithm::EdDSA, &ed_private(), None, &claims());
    assert_eq!(v.verify(&token, NOW), Ok(alice()));
    let token = sign(Algorithm::HS256, &hs(HMAC_INLINE), None, &claims());
    assert_eq!(v.verify(&token, NOW), Ok(alice()));
}

#[test]
fn a_pkcs1_rsa_public_key_is_accepted_too() {
    let v = JwtVerifier::new(&config(vec![fixture("rsa_public_pkcs1.pem")], false), None).unwrap();
    let token = sign(Algorithm::RS256, &rsa_private(), None, &claims());
    assert_eq!(v.verify(&token, NOW), Ok(alice()));
}

/// The whole matrix: each accepted algorithm is accepted, and refused for each failure, with
/// the failure's own error (expired, not yet valid, issuer, audience, a signature that does
/// not verify, a tampered payload, `alg: none` over a token of that algorithm, and HS256
/// signed with that algorithm's public key as the secret: algorithm confusion).
#[test]
fn each_algorithm_is_accepted_and_refused_for_each_failure() {
    let public_only = JwtVerifier::new(
        &config(
            vec![fixture("rsa_public.pem"), fixture("ec_public.pem"), fixture("ed25519_public.pem")],
            false,
        ),
        None,
    )
    .unwrap();
    let with_hmac = verifier();
    let algs: [(&str, Algorithm, EncodingKey, Option<&str>); 4] = [
        ("RS256", Algorithm::RS256, rsa_private(), Some("rsa_public.pem")),
        ("ES256", Algorithm::ES256, ec_private(), Some("ec_public.pem")),
        ("EdDSA", Algorithm::EdDSA, ed_private(), Some("ed25519_public.pem")),
        ("HS256", Algorithm::HS256, hs(HMAC_INLINE), None),
    ];
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    for (name, alg, key, public) in &algs {
        let v = &with_hmac;
        let good = sign(*alg, key, None, &claims());
        assert_eq!(v.verify(&good, NOW), Ok(alice()), "{name} accepted");
        if public.is_some() {
            assert_eq!(public_only.verify(&good, NOW), Ok(alice()), "{name} accepted without any HMAC key");
        }
        let cases: Vec<(&str, String, JwtError)> = vec![
            (
                "expired",
                sign(*alg, key, None, &with(&|c| c["exp"] = json!(NOW - 61))),
                JwtError::Expired { exp: NOW - 61, now: NOW },
            ),
            (
                "nbf",
                sign(*alg, key, None, &with(&|c| c["nbf"] = json!(NOW + 61))),
                JwtError::NotYetValid { nbf: NOW + 61, now: NOW },
            ),
            (
                "iss",
                sign(*alg, key, None, &with(&|c| c["iss"] = json!("https://evil.example.com/"))),
                JwtError::Issuer { expected: ISS.into() },
            ),
            (
                "aud",
                sign(*alg, key, None, &with(&|c| c["aud"] = json!("someone-else"))),
                JwtError::Audience { expected: AUD.into() },
            ),
            ("signature", flip_last_signature_byte(&good), JwtError::Signature),
            (
                "tampered payload",
                swap_payload(&good, &with(&|c| c["team"] = json!("billing"))),
                JwtError::Signature,
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(&json!({"alg": "none", "typ": "JWT"})),
                    good.split('.').nth(1).unwrap()
                ),
                JwtError::AlgorithmNotAllowed("none".into()),
            ),
        ];
        for (failure, token, want) in cases {
            assert_eq!(v.verify(&token, NOW), Err(want), "{name}: {failure}");
        }
        if let Some(pem) = public {
            // Algorithm confusion: the public key's bytes as an HMAC secret.
            let forged = sign(Algorithm::HS256, &hs(&fixture(pem)), None, &claims());
            assert_eq!(
                public_only.verify(&forged, NOW),
                Err(JwtError::AlgorithmNotAllowed("HS256".into())),
                "{name}: confusion"
            );
            assert_eq!(
                v.verify(&forged, NOW),
                Err(JwtError::Signature),
                "{name}: confusion with an HMAC key present"
            );
        }
    }
}

/// The token with the last byte of its signature changed (still valid base64url).
fn flip_last_signature_byte(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut raw = B64URL.decode(sig).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    format!("{head}.{}", B64URL.encode(raw))
}

/// The token with its payload replaced by `claims` (header and signature kept).
fn swap_payload(token: &str, claims: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(claims), parts[2])
}
