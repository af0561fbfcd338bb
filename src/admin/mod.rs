//! The admin listener: the admin API of SPEC section 5 (CRUD of providers, models, projects and
//! keys written back losslessly to the operator's YAML, config history and rollback, the audit
//! log, live views, OpenAPI) behind admin tokens with roles. Talks to the running gateway only
//! through `ConfigHost` and `LiveViews` (see `host.rs`); the data plane is not here.

mod access;
mod audit;
mod core;
mod dashboard;
mod edit;
mod errors;
mod files;
mod handlers;
mod history;
mod host;
mod routes;
mod secrets;
mod service;
mod timeline;
pub mod usage_index;

#[cfg(test)]
mod admin_tests;

pub use self::{
    access::{Access, Caller},
    audit::{verify_audit, AuditEntry},
    core::{Admin, AdminError, AdminRequest, Clock, ReloadError, Reloaded, MAX_BODY_BYTES},
    edit::{edit_entry, Edit, EditError, Section},
    history::{Source, VersionMeta, KEEP_VERSIONS},
    host::{ConfigHost, LiveViews, RunningText, UsageQuery},
    routes::{openapi, ROUTES},
    secrets::redacted,
    service::AdminService,
};
