//! Network helpers the proxy needs that Pingora leaves to us: asynchronous DNS, a deadline on
//! request heads, and a check of the TLS trust roots Pingora will load.

mod dns;
mod header_deadline;

pub use self::dns::Resolver;
pub use self::header_deadline::{client_session, head_received, HeaderDeadline};

/// Pingora's rustls connector loads trust roots from `SSL_CERT_FILE` / `SSL_CERT_DIR` when set
/// (replacing the system store) and panics at startup if they cannot be read. Check first and
/// say what is wrong instead.
pub fn check_trust_roots() -> Result<(), String> {
    if let Ok(file) = std::env::var("SSL_CERT_FILE") {
        std::fs::File::open(&file).map_err(|e| format!("SSL_CERT_FILE={file} cannot be read: {e}"))?;
    }
    if let Ok(dir) = std::env::var("SSL_CERT_DIR") {
        for d in dir.split(':').filter(|d| !d.is_empty()) {
            std::fs::read_dir(d).map_err(|e| format!("SSL_CERT_DIR entry {d} cannot be read: {e}"))?;
        }
    }
    Ok(())
}
