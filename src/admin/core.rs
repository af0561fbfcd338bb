//! The admin API core: authenticate, route, run the handler on a blocking thread; and the one
//! mutation pipeline every change goes through (serialised; 409 when the file changed on disk;
//! lossless edit; validate; swap in; write the file atomically; store a config version; append an
//! fsynced audit line; all before the answer). File-sourced changes (edit, SIGHUP, start) are
//! recorded through the same lock (`reload_from_file`, `record_version`).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{HeaderMap, Method, Response};
use parking_lot::Mutex;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::config::{parse, AdminRole, Config, ConfigErrors, MasterKey};

use super::access::{bearer, Access, Caller, Credentials};
use super::audit::{format_time, AuditEntry, AuditLog};
use super::dashboard;
use super::edit::{parse_value, EditError, Section};
use super::errors::{bytes_response, json_response, ApiError};
use super::files::write_atomic;
use super::history::{unified_diff, History, Source};
use super::host::{sha256, ConfigHost, LiveViews, RunningText};
use super::routes::{self, decode, Found};
use super::secrets::Sealer;

/// Largest admin request body (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The time source (tests inject one).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// One admin request, body read whole.
#[derive(Clone, Debug)]
pub struct AdminRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What a handler gets: the caller, the path parameters, the query and the body.
pub struct Call {
    pub caller: Caller,
    pub params: Vec<(&'static str, String)>,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub path: String,
    pub section: Option<Section>,
}

impl Call {
    /// A path parameter (`""` when the route has none by that name).
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str())
    }

    /// A query parameter (the first, when repeated; empty values are absent).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    pub fn is_project(&self) -> bool {
        self.caller.role == AdminRole::Project
    }
}

/// A handler's answer.
pub enum Reply {
    Json(u16, Value),
    Text(u16, &'static str, String),
    /// The dashboard page (sent with a content security policy and no framing).
    Page(&'static str),
}

/// A change a mutation wants: the new file text and how to audit it.
pub struct Change {
    pub text: String,
    pub action: String,
    pub target: Option<String>,
}

/// What a mutation did.
pub struct Committed {
    /// The version now running (`None` only before any version exists).
    pub version: Option<u64>,
    /// False when the new text equals the running text (nothing written, no version).
    pub changed: bool,
}

/// The running config as the admin API needs it, cached per running text.
pub struct Running {
    pub sha256: [u8; 32],
    pub text: Arc<str>,
    pub config: Config,
    /// The YAML as parsed (exactly what the file says, for lossless edits).
    pub value: serde_yaml::Value,
    pub master: Option<MasterKey>,
    creds: Credentials,
}

impl Running {
    fn build(rt: RunningText) -> Result<Running, ConfigErrors> {
        let config = parse(&rt.text)?;
        let value = parse_value(&rt.text).map_err(|e| {
            ConfigErrors(vec![crate::config::ConfigError { path: String::new(), message: e.to_string() }])
        })?;
        let master = config
            .master_key
            .as_ref()
            .and_then(|m| m.resolve(None).ok())
            .and_then(|m| MasterKey::from_base64(m.expose()).ok());
        let creds = Credentials::from_config(&config, master.as_ref());
        Ok(Running { sha256: rt.sha256, text: rt.text, config, value, master, creds })
    }
}

/// Why the admin API could not start or record a version.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the running config does not parse: {0}")]
    Config(ConfigErrors),
    #[error("cannot store a config version: {0}")]
    Edit(#[from] EditError),
}

/// What `reload_from_file` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The file's text is the running text.
    Unchanged,
    /// The file was valid and is now the running config (`version` is its config version).
    Applied { version: Option<u64> },
}

/// Why `reload_from_file` kept the running config.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("the file was applied but not recorded: {0}")]
    Record(AdminError),
}

/// History, audit log and secret sealer: only touched under the mutation lock.
struct State {
    history: History,
    audit: AuditLog,
    sealer: Sealer,
    /// The sealed (version) form of the last text recorded, by the SHA-256 of that text.
    last_sealed: Option<([u8; 32], String)>,
}

impl State {
    /// The version form of `text`, reusing the last one computed when it is the same text.
    fn seal(&mut self, text: &str, sha: [u8; 32], master: Option<&MasterKey>) -> Result<String, EditError> {
        match &self.last_sealed {
            Some((s, sealed)) if *s == sha => Ok(sealed.clone()),
            _ => self.sealer.seal(text, master),
        }
    }
}

/// The admin API. Cheap to share (`Arc<Admin>`); the Pingora service is `AdminService`.
pub struct Admin {
    host: Arc<dyn ConfigHost>,
    views: Arc<dyn LiveViews>,
    /// Serialises every change (API mutations, rollbacks, file reloads).
    state: Mutex<State>,
    running: ArcSwapOption<Running>,
    clock: Clock,
}

// === impl Admin ===

impl Admin {
    /// Open the history (`state_dir/config/`) and the audit log (`state_dir/audit.jsonl`), and
    /// record the running config as a version (source `start`) unless it is the latest one.
    pub fn new(host: Arc<dyn ConfigHost>, views: Arc<dyn LiveViews>) -> Result<Arc<Admin>, AdminError> {
        Admin::with_clock(host, views, Arc::new(OffsetDateTime::now_utc))
    }

    /// `new` with a time source.
    pub fn with_clock(
        host: Arc<dyn ConfigHost>,
        views: Arc<dyn LiveViews>,
        clock: Clock,
    ) -> Result<Arc<Admin>, AdminError> {
        let state_dir = host.state_dir();
        let io = |path: PathBuf| move |source| AdminError::Io { path, source };
        let dir = state_dir.join("config");
        let history = History::open(&dir).map_err(io(dir.clone()))?;
        let audit_path = state_dir.join("audit.jsonl");
        let audit = AuditLog::open(&audit_path).map_err(io(audit_path.clone()))?;
        let running = Arc::new(Running::build(host.running_text()).map_err(AdminError::Config)?);
        let mut sealer = Sealer::default();
        if let Some(latest) = history.latest() {
            let text = history.text(latest.version).map_err(io(dir.clone()))?;
            sealer.learn(text.as_deref().unwrap_or_default(), running.master.as_ref());
        }
        let admin = Arc::new(Admin {
            host,
            views,
            state: Mutex::new(State { history, audit, sealer, last_sealed: None }),
            running: ArcSwapOption::from(Some(running.clone())),
            clock,
        });
        {
            let mut state = admin.state.lock();
            admin.record(&mut state, &running.text, Source::Start, "file")?;
        }
        Ok(admin)
    }

    /// Answer one request. Never panics; every refusal changes nothing.
    pub async fn handle(self: &Arc<Self>, req: AdminRequest) -> Response<Vec<u8>> {
        match self.dispatch(req).await {
            Ok(Reply::Json(status, v)) => json_response(status, &v),
            Ok(Reply::Text(status, ct, s)) => bytes_response(status, ct, s.into_bytes()),
            Ok(Reply::Page(html)) => dashboard::response(html),
            Err(e) => e.response(),
        }
    }

    async fn dispatch(self: &Arc<Self>, req: AdminRequest) -> Result<Reply, ApiError> {
        if req.method == Method::GET && req.path == "/healthz" {
            return Ok(Reply::Json(200, json!({"status": "ok"})));
        }
        let running = self.running()?;
        if let Found::Route(route, params) = routes::find(&req.method, &req.path) {
            if route.access == Access::Public {
                // No token needed (and none looked at): the page asks for one itself.
                let anonymous = Caller { id: String::new(), role: AdminRole::Viewer, project: None };
                let call = Call {
                    caller: anonymous,
                    params,
                    query: parse_query(req.query.as_deref()),
                    body: Vec::new(),
                    path: req.path,
                    section: None,
                };
                return (route.handler)(self, &call);
            }
        }
        let caller = req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .and_then(|t| running.creds.authenticate(t))
            .ok_or(ApiError::Unauthorized)?;
        let (route, params) = match routes::find(&req.method, &req.path) {
            Found::Route(r, p) => (r, p),
            Found::MethodNotAllowed(allow) => {
                return Err(ApiError::MethodNotAllowed {
                    method: req.method.to_string(),
                    path: req.path,
                    allow: allow.join(", "),
                })
            }
            Found::Nothing => {
                return Err(ApiError::NotFound(format!("no admin route {} {}", req.method, req.path)))
            }
        };
        if !route.access.allows(caller.role) {
            return Err(ApiError::Forbidden(format!(
                "token {:?} (role {}) may not {} {}",
                caller.id,
                role_name(caller.role),
                req.method,
                req.path
            )));
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::TooLarge(MAX_BODY_BYTES));
        }
        let call = Call {
            caller,
            params,
            query: parse_query(req.query.as_deref()),
            body: req.body,
            path: req.path,
            section: route.section,
        };
        let admin = self.clone();
        let handler = route.handler;
        tokio::task::spawn_blocking(move || handler(&admin, &call))
            .await
            .map_err(|e| ApiError::Internal(format!("admin handler failed: {e}")))?
    }

    /// The running config (parsed once per running text).
    pub(crate) fn running(&self) -> Result<Arc<Running>, ApiError> {
        let rt = self.host.running_text();
        if let Some(r) = self.running.load_full() {
            if r.sha256 == rt.sha256 {
                return Ok(r);
            }
        }
        let r = Arc::new(
            Running::build(rt)
                .map_err(|e| ApiError::Internal(format!("the running config does not parse: {e}")))?,
        );
        self.running.store(Some(r.clone()));
        Ok(r)
    }

    /// The time now, from the injected clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// `state_dir` (the usage log lives there).
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.host.state_dir()
    }

    pub(crate) fn views(&self) -> &dyn LiveViews {
        &*self.views
    }

    /// Read the history (under the lock, so never mid-write).
    pub(crate) fn with_history<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        f(&self.state.lock().history)
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> PathBuf {
        self.state.lock().audit.path().to_path_buf()
    }

    /// Make one change through the pipeline. `f` sees the running config (equal to the file)
    /// and the history, and returns the new file text.
    pub(crate) fn mutate(
        &self,
        call: &Call,
        source: Source,
        f: impl FnOnce(&Running, &History) -> Result<Change, ApiError>,
    ) -> Result<Committed, ApiError> {
        let mut state = self.state.lock();
        let running = self.running()?;
        let path = self.host.config_path();
        let file = std::fs::read(&path).map_err(|e| {
            ApiError::Internal(format!("cannot read {}: {e}; nothing was changed", path.display()))
        })?;
        if sha256(&file) != running.sha256 {
            return Err(ApiError::Conflict(format!(
                "{} was changed on disk since it was loaded; nothing was changed (the edit is kept). \
                 Apply it with POST /admin/reload (or undo it), then retry",
                path.display()
            )));
        }
        let change = f(&running, &state.history)?;
        if *change.text == *running.text {
            return Ok(Committed { version: state.history.latest().map(|m| m.version), changed: false });
        }
        let version =
            self.commit(&mut state, &running, &change, source, &call.caller.id, &call.path, Some(&path))?;
        Ok(Committed { version: Some(version), changed: true })
    }

    /// Validate, swap in, write the file (when `file` is given), store the version, audit.
    /// Any failure after the swap puts the previous config and file back.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        state: &mut State,
        old: &Running,
        change: &Change,
        source: Source,
        actor: &str,
        api_path: &str,
        file: Option<&PathBuf>,
    ) -> Result<u64, ApiError> {
        let new_text = change.text.as_str();
        self.host.validate(new_text).map_err(ApiError::Invalid)?;
        let new_running = Running::build(RunningText::new(new_text)).map_err(ApiError::Invalid)?;
        let prev_stored = state.seal(&old.text, old.sha256, old.master.as_ref())?;
        let stored = state.sealer.seal(new_text, new_running.master.as_ref())?;
        let new_sha = new_running.sha256;
        self.host.apply(new_text).map_err(ApiError::Invalid)?;
        self.running.store(Some(Arc::new(new_running)));
        let undo = |wrote: bool| {
            if wrote {
                if let Some(p) = file {
                    let _ = write_atomic(p, old.text.as_bytes());
                }
            }
            let _ = self.host.apply(&old.text);
        };
        if let Some(p) = file {
            if let Err(e) = write_atomic(p, new_text.as_bytes()) {
                undo(false);
                return Err(ApiError::Internal(format!(
                    "cannot write {}: {e}; the change was undone",
                    p.display()
                )));
            }
        }
        let prev_version = state.history.latest().map(|m| m.version);
        let time = format_time((self.clock)());
        let meta = match state.history.store(&stored, source, actor, time.clone()) {
            Ok(m) => m,
            Err(e) => {
                undo(true);
                return Err(ApiError::Internal(format!(
                    "cannot store the config version: {e}; the change was undone"
                )));
            }
        };
        let a = prev_version.map_or_else(|| "running".to_string(), |v| format!("v{v}"));
        let entry = AuditEntry {
            time,
            actor: actor.to_string(),
            action: change.action.clone(),
            path: api_path.to_string(),
            target: change.target.clone(),
            diff: unified_diff(&prev_stored, &stored, &a, &format!("v{}", meta.version)),
            version: Some(meta.version),
            detail: None,
            prev_hash: String::new(),
        };
        if let Err(e) = state.audit.append(entry) {
            state.history.forget_latest();
            undo(true);
            return Err(ApiError::Internal(format!(
                "cannot append to the audit log: {e}; the change was undone"
            )));
        }
        state.last_sealed = Some((new_sha, stored));
        Ok(meta.version)
    }

    /// Append an audit line for an operational action of a token that is not a config change
    /// (e.g. `log.set`): actor the token id, `detail` what changed.
    pub fn record_action(
        &self,
        actor: &str,
        action: &str,
        path: &str,
        detail: &str,
    ) -> Result<(), AdminError> {
        self.append_audit(actor, action.to_string(), path, None, detail)
    }

    /// Append an audit line for an event the gateway raised itself (actor `gateway`, action
    /// `alert.<kind>`, `target` the budget scope, target or alias, `detail` what happened).
    /// Serialised with mutations; fsyncs, so call it off the request path.
    pub fn record_event(&self, kind: &str, target: &str, detail: &str) -> Result<(), AdminError> {
        self.append_audit("gateway", format!("alert.{kind}"), "", Some(target), detail)
    }

    /// One audit line that is not a config version (no diff, no version).
    fn append_audit(
        &self,
        actor: &str,
        action: String,
        path: &str,
        target: Option<&str>,
        detail: &str,
    ) -> Result<(), AdminError> {
        let mut state = self.state.lock();
        let entry = AuditEntry {
            time: format_time((self.clock)()),
            actor: actor.to_string(),
            action,
            path: path.to_string(),
            target: target.map(str::to_string),
            diff: String::new(),
            version: None,
            detail: Some(detail.to_string()),
            prev_hash: String::new(),
        };
        let audit_path = state.audit.path().to_path_buf();
        state.audit.append(entry).map_err(|source| AdminError::Io { path: audit_path, source })?;
        Ok(())
    }

    /// Record `text`, already the running config, as a version with an audit line (actor
    /// `actor`), unless it is the latest version already. Returns the new version number.
    fn record(
        &self,
        state: &mut State,
        text: &str,
        source: Source,
        actor: &str,
    ) -> Result<Option<u64>, AdminError> {
        let running = Running::build(RunningText::new(text)).map_err(AdminError::Config)?;
        let stored = state.seal(text, running.sha256, running.master.as_ref())?;
        state.last_sealed = Some((running.sha256, stored.clone()));
        let dir = self.host.state_dir().join("config");
        let io = |source| AdminError::Io { path: dir.clone(), source };
        let prev = match state.history.latest() {
            Some(m) => Some((m.version, state.history.text(m.version).map_err(io)?.unwrap_or_default())),
            None => None,
        };
        if prev.as_ref().is_some_and(|(_, t)| *t == stored) {
            return Ok(None);
        }
        let time = format_time((self.clock)());
        let meta = state.history.store(&stored, source, actor, time.clone()).map_err(io)?;
        let (a, prev_text) = match &prev {
            Some((v, t)) => (format!("v{v}"), t.as_str()),
            None => ("empty".to_string(), ""),
        };
        let action = match source {
            Source::Start => "config.start",
            Source::Sighup => "config.sighup",
            Source::Rollback => "config.rollback",
            Source::Api | Source::File => "config.reload",
        };
        let entry = AuditEntry {
            time,
            actor: actor.to_string(),
            action: action.into(),
            path: self.host.config_path().display().to_string(),
            target: None,
            diff: unified_diff(prev_text, &stored, &a, &format!("v{}", meta.version)),
            version: Some(meta.version),
            detail: None,
            prev_hash: String::new(),
        };
        let audit_path = state.audit.path().to_path_buf();
        state.audit.append(entry).map_err(|source| AdminError::Io { path: audit_path, source })?;
        Ok(Some(meta.version))
    }

    /// Record a config that became the running config outside the admin API (the runtime
    /// re-read the file, or SIGHUP): a new version and an audit line, unless `text` is the latest
    /// version. Prefer `reload_from_file`, which also takes the mutation lock around the swap.
    pub fn record_version(&self, text: &str, source: Source, actor: &str) -> Result<Option<u64>, AdminError> {
        let mut state = self.state.lock();
        self.record(&mut state, text, source, actor)
    }

    /// Re-read the config file and, if its text differs from the running text and is valid,
    /// swap it in and record it (version + audit line, actor `actor`: `file` for the reloader,
    /// the token id for `POST /admin/reload`). Serialised with API mutations, so a reload never
    /// interleaves with a write-back. An invalid file keeps the running config.
    pub fn reload_from_file(&self, source: Source, actor: &str) -> Result<Reloaded, ReloadError> {
        let mut state = self.state.lock();
        let path = self.host.config_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ReloadError::Read { path: path.clone(), source })?;
        if sha256(text.as_bytes()) == self.host.running_text().sha256 {
            return Ok(Reloaded::Unchanged);
        }
        self.host.apply(&text).map_err(ReloadError::Invalid)?;
        let version = self.record(&mut state, &text, source, actor).map_err(ReloadError::Record)?;
        Ok(Reloaded::Applied { version })
    }
}

pub(crate) fn role_name(role: AdminRole) -> &'static str {
    match role {
        AdminRole::Admin => "admin",
        AdminRole::Viewer => "viewer",
        AdminRole::Project => "project",
    }
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k, true), decode(v, true)),
            None => (decode(kv, true), String::new()),
        })
        .collect()
}
