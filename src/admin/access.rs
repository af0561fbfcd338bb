//! Who is calling the admin API and what they may do: admin tokens (`admin.token` is role admin
//! with id "admin"; `admin.tokens` carry their own id, role and project) compared in constant
//! time on their SHA-256, and the route access levels. No routing here (see `routes.rs`).

use subtle::ConstantTimeEq;

use crate::config::{parse_key_hash, AdminRole, Config, MasterKey};

use super::host::sha256;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `admin` for `admin.token`, else the `admin.tokens` entry's id. The audit log's actor.
    pub id: String,
    pub role: AdminRole,
    /// The project a `project` token manages.
    pub project: Option<String>,
}

/// What a route requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token at all: the dashboard page (`GET /`), which holds no data and asks for a token.
    Public,
    /// Any valid token (`/admin/openapi.json`).
    AnyToken,
    /// Admin and viewer (reads of the whole config, health, history, audit, metrics).
    Read,
    /// Admin only (mutations other than keys, rollback, reload).
    Admin,
    /// Admin and viewer; a project token for its own project's keys (checked by the handler).
    KeysRead,
    /// Admin; a project token for its own project's keys (checked by the handler).
    KeysWrite,
    /// Admin and viewer; a project token for its own project's usage.
    Usage,
}

impl Access {
    /// Whether `role` may call a route with this access at all (project scoping aside).
    pub fn allows(self, role: AdminRole) -> bool {
        matches!(
            (self, role),
            (_, AdminRole::Admin)
                | (Access::Public | Access::AnyToken, _)
                | (Access::Read | Access::KeysRead | Access::Usage, AdminRole::Viewer)
                | (Access::KeysRead | Access::KeysWrite | Access::Usage, AdminRole::Project)
        )
    }

    /// The roles this access admits, for the OpenAPI document.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Access::Public => &["anyone (no token)"],
            Access::AnyToken => &["admin", "viewer", "project"],
            Access::Read => &["admin", "viewer"],
            Access::Admin => &["admin"],
            Access::KeysRead | Access::Usage => &["admin", "viewer", "project (own project)"],
            Access::KeysWrite => &["admin", "project (own project)"],
        }
    }
}

/// The admin tokens of one running config, as SHA-256 digests.
#[derive(Default)]
pub struct Credentials {
    tokens: Vec<(Caller, [u8; 32])>,
}

// === impl Credentials ===

impl Credentials {
    /// From the running config. `admin.token` is resolved (`env:`/`enc:`); entries that do not
    /// resolve or parse are skipped (the config validated, so that means a vanished env var).
    pub fn from_config(config: &Config, master: Option<&MasterKey>) -> Credentials {
        let mut tokens = Vec::new();
        let Some(admin) = &config.admin else {
            return Credentials { tokens };
        };
        if let Some(Ok(t)) = admin.token.as_ref().map(|t| t.resolve(master)) {
            let caller = Caller { id: "admin".into(), role: AdminRole::Admin, project: None };
            tokens.push((caller, sha256(t.expose().as_bytes())));
        }
        for t in &admin.tokens {
            if let Ok(h) = parse_key_hash(&t.hash) {
                tokens.push((Caller { id: t.id.clone(), role: t.role, project: t.project.clone() }, h));
            }
        }
        Credentials { tokens }
    }

    /// The caller presenting `token`. Every configured token is compared (in constant time) so
    /// the timing does not tell which one matched or how close a guess came.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (caller, hash) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let v = value.trim();
    (v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| v[7..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdminListener, AdminToken, Secret};

    fn config() -> Config {
        Config {
            admin: Some(AdminListener {
                listen: "127.0.0.1:1".into(),
                token: Some(Secret("root-token".into())),
                tokens: vec![
                    AdminToken {
                        id: "vera".into(),
                        hash: crate::auth::stored_form("viewer-token"),
                        role: AdminRole::Viewer,
                        project: None,
                    },
                    AdminToken {
                        id: "search-lead".into(),
                        hash: crate::auth::stored_form("project-token"),
                        role: AdminRole::Project,
                        project: Some("search".into()),
                    },
                ],
            }),
            ..Config::default()
        }
    }

    #[test]
    fn each_token_is_its_own_caller_and_wrong_tokens_are_nobody() {
        let c = Credentials::from_config(&config(), None);
        assert_eq!(
            c.authenticate("root-token").map(|c| (c.id, c.role)),
            Some(("admin".into(), AdminRole::Admin))
        );
        assert_eq!(
            c.authenticate("viewer-token").map(|c| (c.id, c.role)),
            Some(("vera".into(), AdminRole::Viewer))
        );
        let p = c.authenticate("project-token").unwrap();
        assert_eq!(
            (p.id.as_str(), p.role, p.project.as_deref()),
            ("search-lead", AdminRole::Project, Some("search"))
        );
        assert_eq!(c.authenticate("root-token "), None);
        assert_eq!(c.authenticate(""), None);
        assert_eq!(c.authenticate("sha256:whatever"), None);
    }

    #[test]
    fn roles_admit_exactly_their_access_levels() {
        use AdminRole::*;
        let table = [
            (Access::AnyToken, [true, true, true]),
            (Access::Read, [true, true, false]),
            (Access::Admin, [true, false, false]),
            (Access::KeysRead, [true, true, true]),
            (Access::KeysWrite, [true, false, true]),
            (Access::Usage, [true, true, true]),
        ];
        for (access, expect) in table {
            assert_eq!(
                [access.allows(Admin), access.allows(Viewer), access.allows(Project)],
                expect,
                "{access:?}"
            );
        }
    }

    #[test]
    fn bearer_is_case_insensitive_and_trimmed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
