//! The admin API's one route table (method + path pattern -> handler, required access, summary),
//! the matcher, and the OpenAPI 3 document generated from the same table.

use http::Method;
use serde_json::{json, Map, Value};

use super::access::Access;
use super::core::{Call, Reply};
use super::dashboard;
use super::edit::Section;
use super::errors::ApiError;
use super::handlers as h;
use super::Admin;

/// The HTTP methods the admin API uses (`http::Method` cannot live in a static table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }
}

/// A route's handler: runs on a blocking thread (mutations fsync).
pub type Handler = fn(&Admin, &Call) -> Result<Reply, ApiError>;

/// One admin route.
pub struct Route {
    pub method: Verb,
    /// `/admin/keys/{id}`: `{name}` matches one path segment.
    pub pattern: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Query parameters (documentation only).
    pub query: &'static [&'static str],
    /// The list a CRUD route acts on.
    pub section: Option<Section>,
    /// Whether the route takes a JSON body (documentation only).
    pub body: bool,
    pub handler: Handler,
}

const fn route(
    method: Verb,
    pattern: &'static str,
    access: Access,
    summary: &'static str,
    handler: Handler,
) -> Route {
    Route { method, pattern, access, summary, query: &[], section: None, body: false, handler }
}

const fn crud(
    method: Verb,
    pattern: &'static str,
    access: Access,
    summary: &'static str,
    section: Section,
    handler: Handler,
) -> Route {
    let body = matches!(method, Verb::Post | Verb::Put);
    Route { method, pattern, access, summary, query: &[], section: Some(section), body, handler }
}

use Access::{Admin as A, AnyToken, KeysRead, KeysWrite, Public, Read, Usage};
use Section::{Keys, Models, Projects, Providers};

/// Every admin route.
pub static ROUTES: &[Route] = &[
    route(
        Verb::Get,
        "/",
        Public,
        "The dashboard page (HTML; asks for a token, then uses this API)",
        dashboard::page,
    ),
    crud(
        Verb::Get,
        "/admin/providers",
        Read,
        "List providers (secrets redacted)",
        Providers,
        h::list_entries,
    ),
    crud(
        Verb::Post,
        "/admin/providers",
        A,
        "Create a provider (literal secrets stored enc: when a master key is set)",
        Providers,
        h::create_entry,
    ),
    crud(
        Verb::Get,
        "/admin/providers/{name}",
        Read,
        "One provider (secrets redacted)",
        Providers,
        h::get_entry,
    ),
    crud(
        Verb::Put,
        "/admin/providers/{name}",
        A,
        "Replace a provider (a secret sent as <redacted> keeps its value)",
        Providers,
        h::replace_entry,
    ),
    crud(Verb::Delete, "/admin/providers/{name}", A, "Delete a provider", Providers, h::delete_entry),
    crud(Verb::Get, "/admin/models", Read, "List model aliases", Models, h::list_entries),
    crud(Verb::Post, "/admin/models", A, "Create a model alias", Models, h::create_entry),
    crud(Verb::Get, "/admin/models/{alias}", Read, "One model alias", Models, h::get_entry),
    crud(Verb::Put, "/admin/models/{alias}", A, "Replace a model alias", Models, h::replace_entry),
    crud(Verb::Delete, "/admin/models/{alias}", A, "Delete a model alias", Models, h::delete_entry),
    crud(Verb::Get, "/admin/projects", Read, "List projects", Projects, h::list_entries),
    crud(Verb::Post, "/admin/projects", A, "Create a project", Projects, h::create_entry),
    crud(Verb::Get, "/admin/projects/{name}", Read, "One project", Projects, h::get_entry),
    crud(Verb::Put, "/admin/projects/{name}", A, "Replace a project", Projects, h::replace_entry),
    crud(Verb::Delete, "/admin/projects/{name}", A, "Delete a project", Projects, h::delete_entry),
    crud(
        Verb::Get,
        "/admin/keys",
        KeysRead,
        "List virtual keys (a project token sees its project's)",
        Keys,
        h::list_entries,
    ),
    crud(
        Verb::Post,
        "/admin/keys",
        KeysWrite,
        "Create a virtual key; the answer holds the plaintext key, once",
        Keys,
        h::create_entry,
    ),
    crud(Verb::Get, "/admin/keys/{id}", KeysRead, "One virtual key", Keys, h::get_entry),
    crud(
        Verb::Put,
        "/admin/keys/{id}",
        KeysWrite,
        "Replace a virtual key (its hash is kept unless given)",
        Keys,
        h::replace_entry,
    ),
    crud(Verb::Delete, "/admin/keys/{id}", KeysWrite, "Delete a virtual key", Keys, h::delete_entry),
    route(
        Verb::Get,
        "/admin/keys/{id}/limits",
        KeysRead,
        "Live limits of a key: RPM/TPM remaining, in flight, spend vs budget",
        h::key_limits,
    ),
    Route {
        query: &["key", "project", "model", "provider", "from", "to", "group_by"],
        ..route(
            Verb::Get,
            "/admin/usage",
            Usage,
            "Requests, tokens and cost, grouped (a project token sees its project's)",
            h::usage,
        )
    },
    Route {
        query: &["from", "to", "actor", "limit"],
        ..route(Verb::Get, "/admin/audit", Read, "Audit log, newest first (never secrets)", h::audit)
    },
    Route {
        query: &["minutes"],
        ..route(
            Verb::Get,
            "/admin/usage/recent",
            Usage,
            "Requests, errors and latency p50/p99 per alias per minute over the last minutes (default 60)",
            h::recent_usage,
        )
    },
    route(Verb::Get, "/admin/config/versions", Read, "Config versions, newest first", h::versions),
    route(
        Verb::Get,
        "/admin/config/versions/{n}",
        Read,
        "One config version (YAML without secrets)",
        h::version,
    ),
    Route {
        query: &["from", "to"],
        ..route(Verb::Get, "/admin/config/diff", Read, "Unified diff between two config versions", h::diff)
    },
    Route {
        body: true,
        ..route(
            Verb::Post,
            "/admin/config/rollback",
            A,
            "Make version n the running config ({\"version\": n}); itself a new version",
            h::rollback,
        )
    },
    route(Verb::Get, "/admin/config", Read, "The running config (secrets redacted)", h::config),
    route(Verb::Post, "/admin/reload", A, "Re-read the config file", h::reload),
    route(Verb::Get, "/admin/log", Read, "The running log filter", h::log_filter),
    Route {
        body: true,
        ..route(
            Verb::Put,
            "/admin/log",
            A,
            "Change the log filter at run time (`{\"filter\": \"debug\"}`, EnvFilter syntax); audited",
            h::set_log_filter,
        )
    },
    route(
        Verb::Get,
        "/admin/health",
        Read,
        "Each provider target: healthy, circuit state, last error, latency",
        h::health,
    ),
    route(Verb::Get, "/admin/openapi.json", AnyToken, "This document", h::openapi),
    route(Verb::Get, "/metrics", Read, "Prometheus metrics (text format)", h::metrics),
];

/// What the matcher found.
pub enum Found {
    Route(&'static Route, Vec<(&'static str, String)>),
    /// The path exists with other methods.
    MethodNotAllowed(Vec<&'static str>),
    Nothing,
}

/// Find the route for a method and path (a trailing `/` is ignored).
pub fn find(method: &Method, path: &str) -> Found {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let mut allowed = Vec::new();
    for r in ROUTES {
        if let Some(params) = match_pattern(r.pattern, path) {
            if r.method.as_str() == method.as_str() {
                return Found::Route(r, params);
            }
            allowed.push(r.method.as_str());
        }
    }
    if allowed.is_empty() {
        Found::Nothing
    } else {
        Found::MethodNotAllowed(allowed)
    }
}

fn match_pattern(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut ps = pattern.split('/');
    let mut xs = path.split('/');
    loop {
        match (ps.next(), xs.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(x)) => {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if x.is_empty() {
                        return None;
                    }
                    params.push((name, percent_decode(x)));
                } else if p != x {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// `%XX` decoding (and `+` as space when `plus` is set, for query strings).
pub fn decode(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_decode(s: &str) -> String {
    decode(s, false)
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The OpenAPI 3.0 document of `ROUTES`.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let mut params: Vec<Value> = r
            .pattern
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(
            r.query
                .iter()
                .map(|q| json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}})),
        );
        let mut responses = Map::new();
        let ok = if r.method == Verb::Post && r.section.is_some() { "201" } else { "200" };
        let ct = if r.access == Access::Public { "text/html" } else { "application/json" };
        responses.insert(ok.into(), json!({"description": "OK", "content": {ct: {}}}));
        responses.insert("401".into(), json!({"description": "missing or unknown admin token"}));
        responses.insert("403".into(), json!({"description": "the token's role may not do this"}));
        if r.body {
            responses.insert("400".into(), json!({"description": "invalid body, or the change would make the config invalid (nothing changed)"}));
            responses.insert("409".into(), json!({"description": "the config file was edited on disk since it was loaded, or the entry exists (nothing changed)"}));
            responses.insert("413".into(), json!({"description": "body over 1 MiB"}));
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": operation_id(r),
            "x-roles": r.access.roles(),
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": []}],
        });
        if r.access == Access::Public {
            op["security"] = json!([]);
            if let Some(map) = op["responses"].as_object_mut() {
                map.retain(|code, _| code == "200");
            }
        }
        if r.body || r.method == Verb::Put {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"type": "object", "description": match r.section {
                    Some(s) => format!("the same object as a `{}` entry of gateway.yaml", s.name()),
                    None => "{\"version\": n}".to_string(),
                }}}}
            });
        }
        let entry = paths.entry(r.pattern.to_string()).or_insert_with(|| json!({}));
        entry[r.method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "llm-gateway admin API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}

fn operation_id(r: &Route) -> String {
    let mut id = r.method.as_str().to_ascii_lowercase();
    for seg in r.pattern.split('/').filter(|s| !s.is_empty() && *s != "admin") {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        id.push('_');
        id.extend(seg.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_capture_segments_and_unknown_methods_are_405() {
        let Found::Route(r, params) = find(&Method::GET, "/admin/keys/search%2Dprod/limits") else {
            panic!()
        };
        assert_eq!(r.pattern, "/admin/keys/{id}/limits");
        assert_eq!(params, vec![("id", "search-prod".to_string())]);
        let Found::Route(r, _) = find(&Method::PUT, "/admin/models/fast/") else { panic!() };
        assert_eq!((r.section, r.access), (Some(Section::Models), Access::Admin));
        assert!(
            matches!(find(&Method::PATCH, "/admin/models/fast"), Found::MethodNotAllowed(m) if m == ["GET", "PUT", "DELETE"])
        );
        assert!(matches!(find(&Method::GET, "/admin/nope"), Found::Nothing));
        assert!(matches!(find(&Method::GET, "/admin/keys//limits"), Found::Nothing));
        let Found::Route(r, _) = find(&Method::GET, "/") else { panic!() };
        assert_eq!(r.access, Access::Public);
        assert!(matches!(find(&Method::POST, "/"), Found::MethodNotAllowed(m) if m == ["GET"]));
        assert!(matches!(find(&Method::GET, "/index.html"), Found::Nothing));
    }

    #[test]
    fn every_route_is_unique_and_in_the_openapi_document() {
        let doc = openapi();
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i].iter().any(|o| o.method == r.method && o.pattern == r.pattern),
                "{} {} twice",
                r.method.as_str(),
                r.pattern
            );
            let op = &doc["paths"][r.pattern][r.method.as_str().to_ascii_lowercase()];
            assert_eq!(op["summary"], r.summary);
            assert_eq!(op["x-roles"], json!(r.access.roles()));
        }
        let op = &doc["paths"]["/admin/keys/{id}"]["put"];
        assert_eq!(op["parameters"][0]["name"], "id");
        assert!(op["requestBody"].is_object());
        assert_eq!(doc["paths"]["/admin/usage"]["get"]["parameters"].as_array().unwrap().len(), 7);
        assert_eq!(doc["paths"]["/"]["get"]["security"], json!([]));
        assert!(doc["paths"]["/"]["get"]["responses"]["200"]["content"]["text/html"].is_object());
        assert!(doc["paths"]["/"]["get"]["responses"]["401"].is_null());
        assert_eq!(doc["paths"]["/admin/keys"]["get"]["security"], json!([{"bearer": []}]));
    }

    #[test]
    fn decoding_handles_escapes_plus_and_stray_percents() {
        assert_eq!(decode("a%20b+c", true), "a b c");
        assert_eq!(decode("a+b", false), "a+b");
        assert_eq!(decode("100%", false), "100%");
        assert_eq!(decode("%zz", false), "%zz");
    }
}
