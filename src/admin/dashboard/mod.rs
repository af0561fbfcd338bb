//! The dashboard (SPEC section 11): one self-contained page served at `GET /` on the admin
//! listener, embedded in the binary at build time (inline CSS and JS; no CDN, no external
//! fonts, no build step). The page holds no data: it asks for an admin token, keeps it in
//! session storage, and reads and changes everything through the admin API. It is sent with a
//! content security policy that lets only its own script run (by SHA-256), talk only to this
//! listener, and never be framed.

use std::sync::OnceLock;

use base64::Engine as _;
use http::{header, HeaderValue, Response};

use super::core::{Call, Reply};
use super::errors::{bytes_response, ApiError};
use super::host::sha256;
use super::Admin;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");

/// `GET /`.
pub fn page(_admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Page(INDEX_HTML))
}

/// The answer for a page: the HTML with its content security policy and no framing.
pub fn response(html: &'static str) -> Response<Vec<u8>> {
    let mut resp = bytes_response(200, "text/html; charset=utf-8", html.as_bytes().to_vec());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp(html)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// The policy of `INDEX_HTML` (computed once), or of another page.
fn csp(html: &'static str) -> String {
    static INDEX: OnceLock<String> = OnceLock::new();
    if std::ptr::eq(html, INDEX_HTML) {
        INDEX.get_or_init(|| policy(html)).clone()
    } else {
        policy(html)
    }
}

/// Scripts: only the page's inline `<script>` blocks, by hash. Styles may be inline (the page
/// sets a colour per chart series).
fn policy(html: &str) -> String {
    let hashes: Vec<String> = scripts(html)
        .map(|s| {
            format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha256(s.as_bytes())))
        })
        .collect();
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        if hashes.is_empty() { "'none'".to_string() } else { hashes.join(" ") }
    )
}

/// The text of each `<script>…</script>` block.
fn scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script>").skip(1).filter_map(|rest| rest.split_once("</script>").map(|(s, _)| s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_exactly_the_pages_scripts() {
        let p = policy("<p>x</p><script>a()</script><script>b()</script>");
        let a = base64::engine::general_purpose::STANDARD.encode(sha256(b"a()"));
        let b = base64::engine::general_purpose::STANDARD.encode(sha256(b"b()"));
        assert!(p.contains(&format!("script-src 'sha256-{a}' 'sha256-{b}';")), "{p}");
        assert!(!p.contains("script-src 'none';"));
        assert!(policy("<p>no script</p>").contains("script-src 'none';"));
        assert_eq!(scripts(INDEX_HTML).count(), 1, "the page has one inline script");
        assert!(!INDEX_HTML.contains("<script src"), "no external script");
        let r = response(INDEX_HTML);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            !csp.contains("script-src 'unsafe-inline'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(r.body().len(), INDEX_HTML.len());
    }
}
