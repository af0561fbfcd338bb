//! Who is calling: virtual keys (SHA-256 hashes, constant-time compare) found in the header
//! the caller's SDK uses. Authorization by model lives with the key (`Key::allows`); limits and
//! budgets live in `limits/`.

mod keys;

pub use self::keys::{authenticate, hash_key, presented_key, stored_form, AuthError};
