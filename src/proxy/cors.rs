//! CORS for browser apps calling the data listener directly (`cors:` in the config; off by
//! default). A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here and
//! never forwarded; every answer to an allowed origin carries `Access-Control-Allow-Origin`
//! (the origin itself, with `Vary: Origin`) and exposes the gateway's own headers so browser
//! code can read request ids, rate-limit state and `retry-after`.

use http::HeaderMap;

use crate::config::CorsConfig;

/// Request headers the official SDKs send, always allowed in a preflight.
const SDK_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-goog-api-client",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-request-id",
    "x-gateway-provider",
    "user-agent",
];

/// Header-name prefixes the SDKs use for telemetry (`x-stainless-os`, ...).
const SDK_PREFIXES: &[&str] = &["x-stainless-"];

/// What the browser may read from an answer.
pub const EXPOSE: &str = "x-request-id, x-gateway-provider, x-gateway-model, x-gateway-attempts, \
     x-gateway-error, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, \
     x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, \
     x-ratelimit-reset-tokens";

/// Methods the data listener serves.
pub const METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// What to do with a request, CORS-wise.
#[derive(Debug, PartialEq, Eq)]
pub enum Cors {
    /// No `cors:`, or no `Origin` header: nothing to add.
    None,
    /// An allowed origin: answer normally and add these headers.
    Allowed { origin: String },
    /// A preflight from an allowed origin: answer 204 with these headers, never forward.
    Preflight { origin: String, allow_headers: String, max_age_s: u64 },
    /// A request (or preflight) from an origin or with a header the config does not allow.
    Refused(String),
}

/// Add the CORS headers of an allowed origin to an answer.
pub fn add(origin: Option<&str>, h: &mut super::head::Head) -> pingora::Result<()> {
    use http::header::{HeaderValue, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, VARY};
    if let Some(o) = origin {
        h.set_str(ACCESS_CONTROL_ALLOW_ORIGIN, o)?;
        h.set(VARY, HeaderValue::from_static("origin"));
        h.set(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
    }
    Ok(())
}

/// Decide for a request with `method` and `headers` under `cfg`.
pub fn decide(cfg: Option<&CorsConfig>, method: &http::Method, headers: &HeaderMap) -> Cors {
    let (Some(cfg), Some(origin)) = (cfg, headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok()))
    else {
        return Cors::None;
    };
    let allowed =
        cfg.allow_origins.iter().any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin));
    let preflight = method == http::Method::OPTIONS && headers.contains_key("access-control-request-method");
    if !allowed {
        return if preflight {
            Cors::Refused(format!("origin {origin} is not in cors.allow_origins"))
        } else {
            // Not a browser we serve: answer without CORS headers (the browser hides it).
            Cors::None
        };
    }
    if !preflight {
        return Cors::Allowed { origin: origin.to_string() };
    }
    let requested = headers.get("access-control-request-headers").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut names = Vec::new();
    for name in requested.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()) {
        let ok = SDK_HEADERS.contains(&name.as_str())
            || SDK_PREFIXES.iter().any(|p| name.starts_with(p))
            || cfg.allow_headers.iter().any(|h| h.eq_ignore_ascii_case(&name));
        if !ok {
            return Cors::Refused(format!(
                "request header {name} is not allowed (add it to cors.allow_headers)"
            ));
        }
        names.push(name);
    }
    Cors::Preflight { origin: origin.to_string(), allow_headers: names.join(", "), max_age_s: cfg.max_age_s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(origins: &[&str], extra: &[&str]) -> CorsConfig {
        CorsConfig {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_headers: extra.iter().map(|s| s.to_string()).collect(),
            max_age_s: 600,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn off_or_without_an_origin_nothing_changes() {
        let h = headers(&[("origin", "https://app.example.com")]);
        assert_eq!(decide(None, &http::Method::POST, &h), Cors::None);
        assert_eq!(decide(Some(&cfg(&["*"], &[])), &http::Method::POST, &HeaderMap::new()), Cors::None);
    }

    #[test]
    fn an_allowed_origin_is_echoed_and_others_get_no_headers() {
        let c = cfg(&["https://app.example.com/"], &[]);
        let ok = headers(&[("origin", "https://APP.example.com")]);
        assert_eq!(
            decide(Some(&c), &http::Method::POST, &ok),
            Cors::Allowed { origin: "https://APP.example.com".into() }
        );
        let other = headers(&[("origin", "https://evil.example")]);
        assert_eq!(decide(Some(&c), &http::Method::POST, &other), Cors::None);
    }

    #[test]
    fn a_preflight_allows_the_sdk_headers_and_configured_ones_and_refuses_others() {
        let c = cfg(&["*"], &["x-team"]);
        let h = headers(&[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Authorization, content-type, x-stainless-os, X-Team"),
        ]);
        assert_eq!(
            decide(Some(&c), &http::Method::OPTIONS, &h),
            Cors::Preflight {
                origin: "http://localhost:3000".into(),
                allow_headers: "authorization, content-type, x-stainless-os, x-team".into(),
                max_age_s: 600
            }
        );
        let h = headers(&[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-secret-thing"),
        ]);
        assert!(
            matches!(decide(Some(&c), &http::Method::OPTIONS, &h), Cors::Refused(m) if m.contains("x-secret-thing"))
        );
        let h = headers(&[("origin", "https://evil.example"), ("access-control-request-method", "POST")]);
        let c = cfg(&["https://app.example.com"], &[]);
        assert!(
            matches!(decide(Some(&c), &http::Method::OPTIONS, &h), Cors::Refused(m) if m.contains("evil"))
        );
    }
}
