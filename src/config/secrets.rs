//! Secret values in the config: a literal, `env:NAME`, or `enc:BASE64` (AES-256-GCM under the
//! master key). Resolved once at load; the plaintext never appears in `Debug`, logs or admin answers.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// A secret as written in the YAML (the reference, not the value).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Secret {
    /// Whether resolving needs the master key.
    pub fn is_encrypted(&self) -> bool {
        self.0.starts_with("enc:")
    }

    /// The form shown by the admin API: references (`env:`, `enc:`) as written, literals hidden.
    pub fn redacted(&self) -> String {
        if self.0.starts_with("env:") || self.0.starts_with("enc:") {
            self.0.clone()
        } else {
            "<redacted>".to_string()
        }
    }

    /// Resolve to the plaintext. `master` is the decoded master key, when configured.
    pub fn resolve(&self, master: Option<&MasterKey>) -> Result<SecretString, String> {
        if let Some(name) = self.0.strip_prefix("env:") {
            return match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(SecretString(v)),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            };
        }
        if let Some(blob) = self.0.strip_prefix("enc:") {
            let key = master.ok_or_else(|| {
                "an enc: secret needs `master_key` (32 bytes, base64) in the config".to_string()
            })?;
            return key.decrypt(blob).map(SecretString);
        }
        Ok(SecretString(self.0.clone()))
    }
}

/// A resolved secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The AES-256-GCM key that seals `enc:` secrets. Wire form: base64(nonce || ciphertext || tag).
pub struct MasterKey(LessSafeKey);

// === impl MasterKey ===

impl MasterKey {
    /// Parse the configured master key: exactly 32 bytes, base64.
    pub fn from_base64(s: &str) -> Result<Self, String> {
        let bytes = B64.decode(s.trim()).map_err(|e| format!("master key is not valid base64: {e}"))?;
        if bytes.len() != 32 {
            return Err(format!("master key must be 32 bytes, got {}", bytes.len()));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "bad master key".to_string())?;
        Ok(MasterKey(LessSafeKey::new(key)))
    }

    /// Seal a plaintext; returns the `enc:` string to put in the YAML.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("system RNG");
        let mut buf = plaintext.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .expect("AES-GCM seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("enc:{}", B64.encode(out))
    }

    fn decrypt(&self, blob: &str) -> Result<String, String> {
        let bytes = B64.decode(blob.trim()).map_err(|e| format!("enc: value is not valid base64: {e}"))?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err("enc: value is too short".into());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| "enc: value does not decrypt with this master key".to_string())?;
        String::from_utf8(plain.to_vec()).map_err(|_| "enc: plaintext is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="; // "0123...01" (32 bytes)

    #[test]
    fn encrypted_secrets_round_trip_under_the_master_key() {
        let k = MasterKey::from_base64(KEY).unwrap();
        let sealed = k.encrypt("sk-live-123");
        assert!(sealed.starts_with("enc:"));
        let s = Secret(sealed);
        assert_eq!(s.resolve(Some(&k)).unwrap().expose(), "sk-live-123");
    }

    #[test]
    fn an_encrypted_secret_without_a_master_key_is_a_clear_error() {
        let k = MasterKey::from_base64(KEY).unwrap();
        let s = Secret(k.encrypt("x"));
        assert!(s.resolve(None).unwrap_err().contains("master_key"));
    }

    #[test]
    fn a_tampered_ciphertext_is_refused() {
        let k = MasterKey::from_base64(KEY).unwrap();
        let mut sealed = k.encrypt("secret");
        sealed.pop();
        sealed.push('A');
        assert!(Secret(sealed).resolve(Some(&k)).is_err());
    }

    #[test]
    fn literals_are_redacted_and_references_are_shown() {
        assert_eq!(Secret("sk-abc".into()).redacted(), "<redacted>");
        assert_eq!(Secret("env:OPENAI_API_KEY".into()).redacted(), "env:OPENAI_API_KEY");
        assert_eq!(format!("{:?}", Secret("sk-abc".into())), "<redacted>");
    }

    #[test]
    fn a_missing_environment_variable_is_named() {
        let e = Secret("env:LLM_GATEWAY_TEST_SURELY_UNSET".into()).resolve(None).unwrap_err();
        assert!(e.contains("LLM_GATEWAY_TEST_SURELY_UNSET"));
    }
}
