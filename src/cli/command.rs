//! The operator subcommands of SPEC section 2 that are clients or tools rather than the server:
//! `key`, `master-key`, `usage`, `health`, `config`, `audit`. Their arguments (clap), and `run`,
//! which does one of them and writes its answer. Admin API calls go through `client.rs`; tables
//! are drawn by `table.rs`. The binary only parses and calls `main`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::audit::{verify_chain, ChainCheck};
use super::client::{AdminClient, ClientError, DEFAULT_ADMIN_URL};
use super::keygen::{new_master_key, new_virtual_key, RngError};
use super::table::{cell, Table};

/// Environment variable naming the admin listener URL.
pub const ADMIN_URL_ENV: &str = "LLM_GATEWAY_ADMIN_URL";
/// Environment variable holding the admin token (never taken from argv).
pub const ADMIN_TOKEN_ENV: &str = "LLM_GATEWAY_ADMIN_TOKEN";

/// The client and tool subcommands; `main.rs` flattens them into its own.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Virtual keys: create (admin API, or --offline), list, revoke.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a fresh master key (32 random bytes, base64) for LLM_GATEWAY_MASTER_KEY.
    MasterKey,
    /// Requests, tokens and cost from the admin API.
    Usage(UsageArgs),
    /// Every provider target: healthy, circuit state, last error, latency (admin API).
    Health {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Config history: versions, diff, rollback (admin API).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The audit log of admin changes.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Where the admin API is and how to print its answer. The token comes from
/// LLM_GATEWAY_ADMIN_TOKEN only, so it never shows in `ps`.
#[derive(Debug, Default, Args)]
pub struct AdminArgs {
    /// Admin listener URL (default: $LLM_GATEWAY_ADMIN_URL, else http://127.0.0.1:8081).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Print the admin API's raw JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key through the admin API (its answer holds the plaintext, shown once), or with
    /// --offline print a new random key and its sha256: stored form, without the API.
    Create(KeyCreateArgs),
    /// List the keys (ids, projects, limits; never plaintexts, which are not stored).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a key: GET /admin/keys/{id}, then PUT it back with `revoked: true` (the entry is
    /// kept for the audit trail; delete it from the YAML or with the API to remove it).
    Revoke {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Default, Args)]
pub struct KeyCreateArgs {
    /// No admin API: print a new key and its stored form (with --id, a YAML entry for `keys:`).
    #[arg(long)]
    pub offline: bool,
    /// Public identifier, shown in logs (the API may pick one when absent).
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    /// Aliases the key may use, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// Budget in USD per --budget-period.
    #[arg(long, requires = "budget_period")]
    pub budget_usd: Option<f64>,
    #[arg(long, requires = "budget_usd", value_parser = ["daily", "weekly", "monthly", "total"])]
    pub budget_period: Option<String>,
    /// RFC 3339 time after which the key is refused.
    #[arg(long)]
    pub expires_at: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Default, Args)]
pub struct UsageArgs {
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    /// Start (RFC 3339 time or date, inclusive).
    #[arg(long)]
    pub from: Option<String>,
    /// End (RFC 3339 time or date).
    #[arg(long)]
    pub to: Option<String>,
    /// Comma-separated: key, project, model, provider, status, hour, day.
    #[arg(long, value_name = "FIELDS")]
    pub group_by: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The stored config versions (number, time, source, actor, sha256).
    Versions {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// What changed from version A to version B.
    Diff {
        a: u64,
        b: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make version N the running config (itself a new version, audited).
    Rollback {
        version: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: prints `ok: N lines`, or `broken at line N: ...` and exits 1.
    Verify {
        #[arg(long, default_value = "state/audit.jsonl")]
        file: PathBuf,
    },
}

/// What the process environment gives the commands. `Debug` hides the token.
#[derive(Clone, Default)]
pub struct Env {
    /// LLM_GATEWAY_ADMIN_URL.
    pub admin_url: Option<String>,
    /// LLM_GATEWAY_ADMIN_TOKEN.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("admin_url", &self.admin_url)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Env {
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Env { admin_url: var(ADMIN_URL_ENV), admin_token: var(ADMIN_TOKEN_ENV) }
    }
}

/// A command that ran to its end: did what it checks hold (exit 0) or not (exit 1)?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("LLM_GATEWAY_ADMIN_TOKEN is not set: export an admin token (admin.token in the config) to use the admin API")]
    NoToken,
    #[error(transparent)]
    Rng(#[from] RngError),
    #[error("{file}: cannot read: {source}")]
    ReadFile { file: String, source: std::io::Error },
    #[error("the admin API answer has an unexpected shape: {0}")]
    Shape(String),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Run `cmd` with the process environment, print to stdout, errors to stderr; the exit code.
pub fn main(cmd: Command) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match run(cmd, &Env::from_process(), &mut stdout) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("llm-gateway: {e}");
            ExitCode::from(1)
        }
    }
}

/// Do `cmd`, writing its answer to `out`.
pub fn run(cmd: Command, env: &Env, out: &mut dyn Write) -> Result<Outcome, CliError> {
    match cmd {
        Command::Key(KeyCommand::Create(args)) if args.offline => key_create_offline(&args, out)?,
        Command::Key(KeyCommand::Create(args)) => key_create(&args, env, out)?,
        Command::Key(KeyCommand::List { admin }) => key_list(&admin, env, out)?,
        Command::Key(KeyCommand::Revoke { id, admin }) => key_revoke(&id, &admin, env, out)?,
        Command::MasterKey => writeln!(out, "{}", new_master_key()?)?,
        Command::Usage(args) => usage(&args, env, out)?,
        Command::Health { admin } => health(&admin, env, out)?,
        Command::Config(ConfigCommand::Versions { admin }) => config_versions(&admin, env, out)?,
        Command::Config(ConfigCommand::Diff { a, b, admin }) => config_diff(a, b, &admin, env, out)?,
        Command::Config(ConfigCommand::Rollback { version, admin }) => {
            config_rollback(version, &admin, env, out)?
        }
        Command::Audit(AuditCommand::Verify { file }) => return audit_verify(&file, out),
    }
    Ok(Outcome::Success)
}

// === key ===

/// The key entry the create arguments describe (the YAML entry, without `hash`).
fn key_entry(args: &KeyCreateArgs) -> Map<String, Value> {
    let mut e = Map::new();
    if let Some(id) = &args.id {
        e.insert("id".into(), json!(id));
    }
    if let Some(p) = &args.project {
        e.insert("project".into(), json!(p));
    }
    if !args.models.is_empty() {
        e.insert("models".into(), json!(args.models));
    }
    if let Some(n) = args.rpm {
        e.insert("rpm".into(), json!(n));
    }
    if let Some(n) = args.tpm {
        e.insert("tpm".into(), json!(n));
    }
    if let Some(n) = args.max_parallel {
        e.insert("max_parallel".into(), json!(n));
    }
    if let (Some(usd), Some(period)) = (args.budget_usd, &args.budget_period) {
        e.insert("budget".into(), json!({"usd": usd, "period": period}));
    }
    if let Some(t) = &args.expires_at {
        e.insert("expires_at".into(), json!(t));
    }
    e
}

fn key_create_offline(args: &KeyCreateArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let key = new_virtual_key()?;
    let hash = crate::auth::stored_form(&key);
    if args.admin.json {
        writeln!(out, "{}", json!({"key": key, "hash": hash}))?;
        return Ok(());
    }
    writeln!(out, "key:  {key}")?;
    writeln!(out, "hash: {hash}")?;
    if args.id.is_some() {
        // id and hash first, as in the shipped config; then the rest.
        let mut entry = key_entry(args);
        let mut ordered = serde_yaml::Mapping::new();
        for (k, v) in [("id", entry.remove("id")), ("hash", Some(json!(hash)))] {
            if let Some(v) = v {
                ordered.insert(k.into(), serde_yaml::to_value(v).unwrap_or_default());
            }
        }
        for (k, v) in entry {
            ordered.insert(k.into(), serde_yaml::to_value(v).unwrap_or_default());
        }
        let yaml = serde_yaml::to_string(&vec![ordered]).unwrap_or_default();
        writeln!(out, "\n# add under `keys:` in the config:")?;
        write!(out, "{yaml}")?;
    }
    writeln!(out, "\nThe key is shown only this once; the config stores only its hash.")?;
    Ok(())
}

fn key_create(args: &KeyCreateArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(&args.admin, env)?;
    let body = Value::Object(key_entry(args));
    let Some(v) = call(&client, "POST", "/admin/keys", Some(&body), args.admin.json, out)? else {
        return Ok(());
    };
    match (v.get("id").and_then(Value::as_str), v.get("key").and_then(Value::as_str)) {
        (Some(id), Some(key)) => {
            writeln!(out, "id:   {id}")?;
            writeln!(out, "key:  {key}")?;
            writeln!(out, "\nThe key is shown only this once; store it now.")?;
        }
        _ => writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap_or_default())?,
    }
    Ok(())
}

fn key_list(admin: &AdminArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(admin, env)?;
    let Some(v) = call(&client, "GET", "/admin/keys", None, admin.json, out)? else { return Ok(()) };
    let items = list_of(&v, &["keys", "data", "items"])?;
    if items.is_empty() {
        writeln!(out, "(no keys)")?;
        return Ok(());
    }
    let preferred =
        ["id", "project", "models", "rpm", "tpm", "max_parallel", "budget", "expires_at", "revoked"];
    write!(out, "{}", Table::from_objects(items, &preferred, &["hash"]).render())?;
    Ok(())
}

fn key_revoke(id: &str, admin: &AdminArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(admin, env)?;
    let path = format!("/admin/keys/{}", encode(id));
    let mut entry = client.json("GET", &path, None)?;
    let Some(fields) = entry.as_object_mut() else {
        return Err(CliError::Shape(format!("GET {path} did not answer a JSON object")));
    };
    if fields.get("revoked") == Some(&Value::Bool(true)) {
        writeln!(out, "key {id} was already revoked")?;
        return Ok(());
    }
    fields.insert("revoked".into(), Value::Bool(true));
    if call(&client, "PUT", &path, Some(&entry), admin.json, out)?.is_some() {
        writeln!(out, "revoked key {id}")?;
    }
    Ok(())
}

// === usage, health ===

/// Totals fields of `/admin/usage`, in display order.
const USAGE_TOTALS: [&str; 4] = ["requests", "input_tokens", "output_tokens", "cost_usd"];

fn usage(args: &UsageArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(&args.admin, env)?;
    let params = [
        ("key", &args.key),
        ("project", &args.project),
        ("model", &args.model),
        ("provider", &args.provider),
        ("from", &args.from),
        ("to", &args.to),
        ("group_by", &args.group_by),
    ];
    let query: Vec<String> =
        params.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    let path = if query.is_empty() {
        "/admin/usage".to_string()
    } else {
        format!("/admin/usage?{}", query.join("&"))
    };
    let Some(v) = call(&client, "GET", &path, None, args.admin.json, out)? else { return Ok(()) };
    write!(out, "{}", usage_table(&v, args.group_by.as_deref())?.render())?;
    Ok(())
}

/// `{"totals": {...}, "groups": [{<group fields>, ...totals}]}` as a table with a TOTAL row.
pub fn usage_table(v: &Value, group_by: Option<&str>) -> Result<Table, CliError> {
    let totals = v.get("totals").ok_or_else(|| CliError::Shape("no `totals` in the usage answer".into()))?;
    let groups = match v.get("groups") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(g)) => g.as_slice(),
        Some(_) => return Err(CliError::Shape("`groups` is not a list".into())),
    };
    let mut fields: Vec<String> = match group_by {
        Some(g) => g.split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect(),
        None => Vec::new(),
    };
    for g in groups {
        if let Value::Object(m) = g {
            for k in m.keys() {
                if !USAGE_TOTALS.contains(&k.as_str()) && !fields.contains(k) {
                    fields.push(k.clone());
                }
            }
        }
    }
    if groups.is_empty() {
        fields.clear();
    }
    let headers =
        fields.iter().map(|f| f.to_uppercase()).chain(USAGE_TOTALS.iter().map(|t| t.to_uppercase()));
    let mut table = Table::new(headers);
    let numbers =
        |row: &Value| USAGE_TOTALS.iter().map(|t| money_or_cell(t, row.get(*t))).collect::<Vec<_>>();
    for g in groups {
        let mut row: Vec<String> = fields.iter().map(|f| g.get(f).map(cell).unwrap_or_default()).collect();
        row.extend(numbers(g));
        table.push(row);
    }
    let mut total: Vec<String> = vec![String::new(); fields.len()];
    if let Some(first) = total.first_mut() {
        *first = "TOTAL".into();
    }
    total.extend(numbers(totals));
    table.push(total);
    Ok(table)
}

/// `cost_usd` numbers with six decimals (micro-dollars); everything else as a cell.
fn money_or_cell(field: &str, v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(n)) if field == "cost_usd" => match n.as_f64() {
            Some(f) => format!("{f:.6}"),
            None => n.to_string(),
        },
        Some(v) => cell(v),
        None => String::new(),
    }
}

fn health(admin: &AdminArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(admin, env)?;
    let Some(v) = call(&client, "GET", "/admin/health", None, admin.json, out)? else { return Ok(()) };
    let items = list_of(&v, &["targets", "data"])?;
    if items.is_empty() {
        writeln!(out, "(no targets)")?;
        return Ok(());
    }
    let preferred = ["provider", "model", "healthy", "circuit", "last_error", "p50_ms", "p99_ms"];
    write!(out, "{}", Table::from_objects(items, &preferred, &[]).render())?;
    Ok(())
}

// === config history ===

fn config_versions(admin: &AdminArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(admin, env)?;
    let Some(v) = call(&client, "GET", "/admin/config/versions", None, admin.json, out)? else {
        return Ok(());
    };
    let items = list_of(&v, &["versions", "data"])?;
    if items.is_empty() {
        writeln!(out, "(no versions)")?;
        return Ok(());
    }
    let preferred = ["version", "time", "source", "actor", "sha256"];
    write!(out, "{}", Table::from_objects(items, &preferred, &["yaml", "config", "content"]).render())?;
    Ok(())
}

fn config_diff(a: u64, b: u64, admin: &AdminArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(admin, env)?;
    let r = client.checked("GET", &format!("/admin/config/diff?from={a}&to={b}"), None)?;
    let is_json = r.content_type.as_deref().is_some_and(|t| t.contains("json"));
    let text = match serde_json::from_slice::<Value>(&r.body) {
        Ok(v) if is_json && !admin.json => match v {
            Value::String(s) => s,
            Value::Object(ref m) if m.get("diff").is_some_and(Value::is_string) => {
                m.get("diff").and_then(Value::as_str).unwrap_or_default().to_string()
            }
            other => serde_json::to_string_pretty(&other).unwrap_or_default(),
        },
        _ => String::from_utf8_lossy(&r.body).into_owned(),
    };
    write!(out, "{text}")?;
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

fn config_rollback(version: u64, admin: &AdminArgs, env: &Env, out: &mut dyn Write) -> Result<(), CliError> {
    let client = connect(admin, env)?;
    let body = json!({ "version": version });
    let Some(v) = call(&client, "POST", "/admin/config/rollback", Some(&body), admin.json, out)? else {
        return Ok(());
    };
    match v.get("version").and_then(Value::as_u64) {
        Some(now) if now != version => {
            writeln!(out, "rolled back to version {version}; the running config is now version {now}")?
        }
        _ => writeln!(out, "rolled back to version {version}")?,
    }
    Ok(())
}

// === audit ===

fn audit_verify(file: &std::path::Path, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let bytes = std::fs::read(file)
        .map_err(|source| CliError::ReadFile { file: file.display().to_string(), source })?;
    match verify_chain(&bytes) {
        ChainCheck::Intact { lines } => {
            writeln!(out, "ok: {lines} lines")?;
            Ok(Outcome::Success)
        }
        ChainCheck::Broken { line, problem } => {
            writeln!(out, "broken at line {line}: {problem}")?;
            Ok(Outcome::Failure)
        }
    }
}

// === helpers ===

fn connect(admin: &AdminArgs, env: &Env) -> Result<AdminClient, CliError> {
    let url = admin.admin.as_deref().or(env.admin_url.as_deref()).unwrap_or(DEFAULT_ADMIN_URL);
    let token = env.admin_token.clone().ok_or(CliError::NoToken)?;
    Ok(AdminClient::new(url, token)?)
}

/// Call the API and require 2xx. With `raw` the answer body is written to `out` as it came and
/// `None` returned; otherwise the parsed JSON.
fn call(
    client: &AdminClient,
    method: &str,
    path: &str,
    body: Option<&Value>,
    raw: bool,
    out: &mut dyn Write,
) -> Result<Option<Value>, CliError> {
    if raw {
        let r = client.checked(method, path, body)?;
        out.write_all(&r.body)?;
        if !r.body.ends_with(b"\n") {
            writeln!(out)?;
        }
        return Ok(None);
    }
    Ok(Some(client.json(method, path, body)?))
}

/// The list in an answer: the answer itself, or its first array field among `names`.
fn list_of<'a>(v: &'a Value, names: &[&str]) -> Result<&'a [Value], CliError> {
    if let Value::Array(items) = v {
        return Ok(items);
    }
    names
        .iter()
        .find_map(|n| v.get(*n).and_then(Value::as_array))
        .map(Vec::as_slice)
        .ok_or_else(|| CliError::Shape(format!("expected a list (or an object with one of {names:?})")))
}

/// Percent-encode a path segment or query value (RFC 3986 unreserved characters pass).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
