//! Who is calling: virtual keys (SHA-256 hashes, constant-time compare) found in the header
//! the caller's SDK uses, or a JWT bearer checked against `auth.jwt` (`jwt.rs`). Authorization
//! by model lives with the key (`Key::allows`); limits and budgets live in `limits/`.

mod jwt;
mod keys;

pub use self::jwt::{looks_like_jwt, JwtError, JwtIdentity, JwtVerifier, LEEWAY_S as JWT_LEEWAY_S};
pub use self::keys::{authenticate, hash_key, presented_key, stored_form, AuthError};
