//! The dashboard (SPEC section 11): one self-contained page served at `GET /` on the admin
//! listener, embedded in the binary at build time (inline CSS and JS; no CDN, no external
//! fonts, no build step). The page holds no data: it asks for an admin token, keeps it in
//! session storage, and reads and changes everything through the admin API.

use super::core::{Call, Reply};
use super::errors::ApiError;
use super::Admin;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");

/// `GET /`.
pub fn page(_admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Page(INDEX_HTML))
}
