//! New secrets from the OS RNG: virtual keys (`sk-gw-` + 32 bytes in base62, SPEC section 5)
//! and master keys (32 bytes, base64). Nothing here stores or prints them.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// Every virtual key starts with this.
pub const KEY_PREFIX: &str = "sk-gw-";
/// Digits of a 32-byte number in base62: 62^43 > 2^256 > 62^42.
pub const BASE62_LEN_32: usize = 43;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The OS random number generator failed (it does not, on a working system).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RngError;

/// A new virtual key: `sk-gw-` + 32 random bytes in base62 (always 49 characters).
pub fn new_virtual_key() -> Result<String, RngError> {
    let bytes = random_32()?;
    Ok(format!("{KEY_PREFIX}{}", base62_32(&bytes)))
}

/// A new master key: 32 random bytes, base64 (what `master_key` / LLM_GATEWAY_MASTER_KEY take).
pub fn new_master_key() -> Result<String, RngError> {
    Ok(B64.encode(random_32()?))
}

fn random_32() -> Result<[u8; 32], RngError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| RngError)?;
    Ok(bytes)
}

/// 32 bytes (big-endian number) in base62, zero-padded to 43 digits so every key has one length.
pub fn base62_32(bytes: &[u8; 32]) -> String {
    let mut num = bytes.to_vec();
    let mut digits = Vec::with_capacity(BASE62_LEN_32);
    while num.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.resize(BASE62_LEN_32, b'0');
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MasterKey;

    /// The inverse of `base62_32`, for the round trip.
    fn decode(s: &str) -> [u8; 32] {
        let mut num = [0u8; 32];
        for c in s.bytes() {
            let mut carry = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
            for b in num.iter_mut().rev() {
                let acc = u32::from(*b) * 62 + carry;
                *b = (acc & 0xff) as u8;
                carry = acc >> 8;
            }
            assert_eq!(carry, 0, "overflow");
        }
        num
    }

    #[test]
    fn base62_has_a_fixed_width_and_round_trips() {
        assert_eq!(base62_32(&[0; 32]), "0".repeat(43));
        let mut one = [0u8; 32];
        one[31] = 61;
        assert_eq!(base62_32(&one), format!("{}z", "0".repeat(42)));
        one[31] = 62;
        assert_eq!(base62_32(&one), format!("{}10", "0".repeat(41)));
        let max = base62_32(&[0xff; 32]);
        assert_eq!(max.len(), 43);
        assert_eq!(decode(&max), [0xff; 32]);
        let mixed: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        assert_eq!(decode(&base62_32(&mixed)), mixed);
    }

    #[test]
    fn virtual_keys_are_prefixed_base62_and_differ() {
        let a = new_virtual_key().unwrap();
        let b = new_virtual_key().unwrap();
        assert_ne!(a, b);
        for k in [&a, &b] {
            assert_eq!(k.len(), KEY_PREFIX.len() + BASE62_LEN_32, "{k}");
            assert!(k.starts_with(KEY_PREFIX));
            assert!(k[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_alphanumeric()), "{k}");
        }
    }

    #[test]
    fn master_keys_are_accepted_by_the_config() {
        let k = new_master_key().unwrap();
        assert_eq!(B64.decode(&k).unwrap().len(), 32);
        assert!(MasterKey::from_base64(&k).is_ok());
        assert_ne!(k, new_master_key().unwrap());
    }
}
