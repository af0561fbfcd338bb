//! The admin route handlers: CRUD of providers, models, projects and keys (with project-token
//! scoping of keys), live views, config history and rollback, audit, config, reload, OpenAPI.
//! Each runs on a blocking thread; mutations go through `Admin::mutate`.

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value as Json};
use serde_yaml::{Mapping as YMapping, Value};
use time::OffsetDateTime;

use crate::config::{Config, KeyEntry, ModelAlias, Project, ProviderEntry};

use super::audit::{read_entries, AuditFilter};
use super::core::{Call, Change, Reply, Running};
use super::edit::{edit_entry, Edit, Section};
use super::errors::ApiError;
use super::history::{unified_diff, Source, VersionMeta};
use super::host::UsageQuery;
use super::routes;
use super::secrets::{is_literal, redacted, unseal, FINGERPRINT_PREFIX, PROVIDER_SECRETS};
use super::timeline::{Timeline, MAX_MINUTES};
use super::Admin;

/// What a GET shows for a literal secret, and what a PUT may send back to keep the value.
const REDACTED: &str = "<redacted>";

// === CRUD ===

pub fn list_entries(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let section = section(call)?;
    let running = admin.running()?;
    let entries: Vec<Json> = entries(&redacted(&running.config), section)
        .into_iter()
        .filter(|(_, e)| !call.is_project() || owns(call, e))
        .map(|(_, e)| e)
        .collect();
    Ok(Reply::Json(200, json!({ section.name(): entries })))
}

pub fn get_entry(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let section = section(call)?;
    let running = admin.running()?;
    let entry = find(&redacted(&running.config), section, call.param(param(section)))?;
    scope(call, section, &entry)?;
    Ok(Reply::Json(200, entry))
}

pub fn create_entry(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let section = section(call)?;
    let mut body = body_object(&call.body)?;
    let mut plaintext = None;
    let mut id = String::new();
    let committed = admin.mutate(call, Source::Api, |running, _| {
        if section == Section::Keys {
            force_project(call, &mut body)?;
            if !body.contains_key("id") {
                body = with_first(body.clone(), "id", Value::String(format!("key-{}", random_base62(8)?)));
            }
            if !body.contains_key("hash") {
                let key = format!("sk-gw-{}", random_base62(32)?);
                body = with_second(body.clone(), "hash", Value::String(crate::auth::stored_form(&key)));
                plaintext = Some(key);
            }
        }
        if section == Section::Providers {
            seal_provider_secrets(&mut body, None, running)?;
        }
        id = entry_id(section, &body)?;
        check_entry(section, &body)?;
        Ok(Change {
            text: edit_entry(&running.text, section, Edit::Create(&body))?,
            action: format!("{}.create", section.name()),
            target: Some(id.clone()),
        })
    })?;
    let running = admin.running()?;
    let mut answer = find(&redacted(&running.config), section, &id)?;
    if let Some(key) = plaintext {
        answer["key"] = Json::String(key);
    }
    answer["version"] = json!(committed.version);
    Ok(Reply::Json(201, answer))
}

pub fn replace_entry(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let section = section(call)?;
    let id = call.param(param(section)).to_string();
    let mut body = body_object(&call.body)?;
    let committed = admin.mutate(call, Source::Api, |running, _| {
        let existing = raw_entry(running, section, &id)?;
        scope(call, section, &serde_json::to_value(&existing).unwrap_or_default())?;
        match body.get(section.id_field()) {
            None => body = with_first(body.clone(), section.id_field(), Value::String(id.clone())),
            Some(Value::String(s)) if *s == id => {}
            Some(_) => {
                return Err(ApiError::BadRequest(format!(
                    "`{}` in the body must be {id:?} (to rename, create the new entry and delete this one)",
                    section.id_field()
                )))
            }
        }
        if section == Section::Keys {
            force_project(call, &mut body)?;
            if !body.contains_key("hash") {
                if let Some(h) = existing.get("hash") {
                    body = with_second(body.clone(), "hash", h.clone());
                }
            }
        }
        if section == Section::Providers {
            seal_provider_secrets(&mut body, Some(&existing), running)?;
        }
        check_entry(section, &body)?;
        Ok(Change {
            text: edit_entry(&running.text, section, Edit::Replace(&id, &body))?,
            action: format!("{}.update", section.name()),
            target: Some(id.clone()),
        })
    })?;
    let running = admin.running()?;
    let mut answer = find(&redacted(&running.config), section, &id)?;
    answer["version"] = json!(committed.version);
    Ok(Reply::Json(200, answer))
}

pub fn delete_entry(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let section = section(call)?;
    let id = call.param(param(section)).to_string();
    let committed = admin.mutate(call, Source::Api, |running, _| {
        let existing = raw_entry(running, section, &id)?;
        scope(call, section, &serde_json::to_value(&existing).unwrap_or_default())?;
        Ok(Change {
            text: edit_entry(&running.text, section, Edit::Delete(&id))?,
            action: format!("{}.delete", section.name()),
            target: Some(id.clone()),
        })
    })?;
    Ok(Reply::Json(200, json!({"deleted": id, "version": committed.version})))
}

// === Live views ===

pub fn key_limits(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let running = admin.running()?;
    let id = call.param("id");
    let entry = find(&redacted(&running.config), Section::Keys, id)?;
    scope(call, Section::Keys, &entry)?;
    let limits = admin
        .views()
        .key_limits(id)
        .ok_or_else(|| ApiError::NotFound(format!("no live limits for key {id:?}")))?;
    Ok(Reply::Json(200, limits))
}

pub fn usage(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let owned = |name: &str| call.query(name).map(str::to_string);
    let mut q = UsageQuery {
        key: owned("key"),
        project: owned("project"),
        model: owned("model"),
        provider: owned("provider"),
        from: time_param(call, "from")?,
        to: time_param(call, "to")?,
        group_by: Vec::new(),
    };
    for g in call.query("group_by").unwrap_or_default().split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !UsageQuery::GROUP_BY.contains(&g) {
            return Err(ApiError::BadRequest(format!(
                "group_by: unknown {g:?}; use any of {}",
                UsageQuery::GROUP_BY.join(", ")
            )));
        }
        q.group_by.push(g.to_string());
    }
    if call.is_project() {
        let mine = call.caller.project.clone();
        if q.project.is_some() && q.project != mine {
            return Err(ApiError::Forbidden(format!(
                "token {:?} reads the usage of project {:?} only",
                call.caller.id,
                mine.unwrap_or_default()
            )));
        }
        if mine.is_none() {
            return Err(ApiError::Forbidden(format!("token {:?} has no project", call.caller.id)));
        }
        q.project = mine;
    }
    admin.views().usage(&q).map(|v| Reply::Json(200, v)).map_err(ApiError::Internal)
}

/// `GET /admin/usage/recent?minutes=`: per alias per minute (a project token: its project's).
pub fn recent_usage(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let minutes = match call.query("minutes") {
        None => 60,
        Some(m) => m.parse::<u32>().ok().filter(|m| (1..=MAX_MINUTES).contains(m)).ok_or_else(|| {
            ApiError::BadRequest(format!("minutes: {m:?} is not a whole number from 1 to {MAX_MINUTES}"))
        })?,
    };
    let project = if call.is_project() {
        Some(
            call.caller
                .project
                .clone()
                .ok_or_else(|| ApiError::Forbidden(format!("token {:?} has no project", call.caller.id)))?,
        )
    } else {
        None
    };
    let mut t = Timeline::new(admin.now(), minutes, project);
    t.read_dir(&admin.state_dir()).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Reply::Json(200, t.into_json()))
}

pub fn health(admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Json(200, admin.views().health()))
}

pub fn metrics(admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Text(200, "text/plain; version=0.0.4", admin.views().metrics_text()))
}

// === Config, history, audit ===

pub fn config(admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    let running = admin.running()?;
    Ok(Reply::Json(200, serde_json::to_value(redacted(&running.config)).unwrap_or_default()))
}

pub fn reload(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    use super::core::{ReloadError, Reloaded};
    match admin.reload_from_file(Source::File, &call.caller.id) {
        Ok(Reloaded::Unchanged) => Ok(Reply::Json(200, json!({"reloaded": false}))),
        Ok(Reloaded::Applied { version }) => {
            Ok(Reply::Json(200, json!({"reloaded": true, "version": version})))
        }
        Err(ReloadError::Invalid(e)) => Err(ApiError::Invalid(e)),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// `GET /admin/log`: the running log filter.
pub fn log_filter(_admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    let Some(log) = crate::telemetry::access_log::installed() else {
        return Err(ApiError::Internal("no logger installed in this process".into()));
    };
    Ok(Reply::Json(200, json!({ "filter": log.current() })))
}

/// `PUT /admin/log` `{"filter": "debug"}`: replace the log filter now (not persisted: a
/// restart uses `LLM_GATEWAY_LOG` again). Audited with the token that did it.
pub fn set_log_filter(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let body: Json = serde_json::from_slice(&call.body)
        .map_err(|e| ApiError::BadRequest(format!("body must be JSON: {e}")))?;
    let Some(filter) = body.get("filter").and_then(Json::as_str) else {
        return Err(ApiError::BadRequest(
            "`filter` (a string such as \"info\" or \"debug,pingora=info\") is required".into(),
        ));
    };
    let Some(log) = crate::telemetry::access_log::installed() else {
        return Err(ApiError::Internal("no logger installed in this process".into()));
    };
    let before = log.current();
    log.set_filter(filter).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let after = log.current();
    admin
        .record_action(&call.caller.id, "log.set", "/admin/log", &format!("{before} -> {after}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::warn!(by = %call.caller.id, "log filter changed: {before} -> {after}");
    Ok(Reply::Json(200, json!({ "filter": after, "previous": before })))
}

pub fn versions(admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    let list: Vec<VersionMeta> = admin.with_history(|h| h.list().iter().rev().cloned().collect());
    Ok(Reply::Json(200, json!({ "versions": list })))
}

pub fn version(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let n = version_number(call.param("n"), "n")?;
    let (meta, text) = admin.with_history(|h| (h.get(n).cloned(), h.text(n)));
    let text = text.map_err(|e| ApiError::Internal(e.to_string()))?;
    let (Some(meta), Some(text)) = (meta, text) else {
        return Err(ApiError::NotFound(format!("no config version {n}")));
    };
    let mut answer = serde_json::to_value(meta).unwrap_or_default();
    answer["yaml"] = Json::String(text);
    Ok(Reply::Json(200, answer))
}

pub fn diff(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let latest = admin.with_history(|h| h.latest().map(|m| m.version)).unwrap_or(0);
    let to = match call.query("to") {
        Some(s) => version_number(s, "to")?,
        None => latest,
    };
    let from = match call.query("from") {
        Some(s) => version_number(s, "from")?,
        None => to.saturating_sub(1),
    };
    let (a, b) = admin.with_history(|h| (h.text(from), h.text(to)));
    let missing = |n: u64| ApiError::NotFound(format!("no config version {n}"));
    let a = a.map_err(|e| ApiError::Internal(e.to_string()))?.ok_or_else(|| missing(from))?;
    let b = b.map_err(|e| ApiError::Internal(e.to_string()))?.ok_or_else(|| missing(to))?;
    let d = unified_diff(&a, &b, &format!("v{from}"), &format!("v{to}"));
    Ok(Reply::Json(200, json!({"from": from, "to": to, "diff": d})))
}

pub fn rollback(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let body: Json = serde_json::from_slice(&call.body)
        .map_err(|e| ApiError::BadRequest(format!("body must be JSON {{\"version\": n}}: {e}")))?;
    let n = body.get("version").and_then(Json::as_u64).ok_or_else(|| {
        ApiError::BadRequest("body must be {\"version\": n} with n a version number".into())
    })?;
    let committed = admin.mutate(call, Source::Rollback, |running, history| {
        let text = history
            .text(n)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| ApiError::NotFound(format!("no config version {n}")))?;
        let text = unseal(&text, &running.text, running.master.as_ref()).map_err(|e| match e {
            super::secrets::UnsealError::Edit(e) => ApiError::from(e),
            e => ApiError::BadRequest(e.to_string()),
        })?;
        Ok(Change { text, action: "config.rollback".into(), target: Some(format!("v{n}")) })
    })?;
    Ok(Reply::Json(
        200,
        json!({"rolled_back_to": n, "version": committed.version, "changed": committed.changed}),
    ))
}

pub fn audit(admin: &Admin, call: &Call) -> Result<Reply, ApiError> {
    let limit = match call.query("limit") {
        Some(s) => {
            s.parse::<usize>().map_err(|_| ApiError::BadRequest(format!("limit: {s:?} is not a number")))?
        }
        None => 1000,
    };
    let filter = AuditFilter {
        from: time_param(call, "from")?,
        to: time_param(call, "to")?,
        actor: call.query("actor").map(str::to_string),
        limit,
    };
    let entries =
        read_entries(&admin.audit_path(), &filter).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Reply::Json(200, json!({ "entries": entries })))
}

pub fn openapi(_admin: &Admin, _call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Json(200, routes::openapi()))
}

// === Helpers ===

fn section(call: &Call) -> Result<Section, ApiError> {
    call.section.ok_or_else(|| ApiError::Internal("route without a section".into()))
}

/// The path parameter naming an entry.
fn param(section: Section) -> &'static str {
    match section {
        Section::Providers | Section::Projects => "name",
        Section::Models => "alias",
        Section::Keys => "id",
    }
}

/// Every entry of a section of a (redacted) typed config, with its id, as JSON.
fn entries(config: &Config, section: Section) -> Vec<(String, Json)> {
    fn all<T: serde::Serialize>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<(String, Json)> {
        items.iter().map(|e| (id(e).to_string(), serde_json::to_value(e).unwrap_or_default())).collect()
    }
    match section {
        Section::Providers => all(&config.providers, |p| &p.name),
        Section::Models => all(&config.models, |m| &m.alias),
        Section::Projects => all(&config.projects, |p| &p.name),
        Section::Keys => all(&config.keys, |k| &k.id),
    }
}

fn find(config: &Config, section: Section, id: &str) -> Result<Json, ApiError> {
    entries(config, section)
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, e)| e)
        .ok_or_else(|| ApiError::NotFound(format!("{} has no entry {id:?}", section.name())))
}

/// The entry as written in the running file.
fn raw_entry(running: &Running, section: Section, id: &str) -> Result<YMapping, ApiError> {
    running
        .value
        .get(section.name())
        .and_then(Value::as_sequence)
        .and_then(|s| s.iter().find(|e| e.get(section.id_field()).and_then(Value::as_str) == Some(id)))
        .and_then(Value::as_mapping)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("{} has no entry {id:?}", section.name())))
}

/// Whether a key entry belongs to a project caller's project.
fn owns(call: &Call, entry: &Json) -> bool {
    call.caller.project.is_some()
        && entry.get("project").and_then(Json::as_str) == call.caller.project.as_deref()
}

/// Project tokens reach only their own project's keys.
fn scope(call: &Call, section: Section, entry: &Json) -> Result<(), ApiError> {
    if !call.is_project() || (section == Section::Keys && owns(call, entry)) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "token {:?} manages the keys of project {:?} only",
        call.caller.id,
        call.caller.project.clone().unwrap_or_default()
    )))
}

/// For a project token: set the key's project to the token's, refusing another one.
fn force_project(call: &Call, body: &mut YMapping) -> Result<Option<String>, ApiError> {
    if !call.is_project() {
        return Ok(None);
    }
    let mine = call
        .caller
        .project
        .clone()
        .ok_or_else(|| ApiError::Forbidden(format!("token {:?} has no project", call.caller.id)))?;
    match body.get("project") {
        None | Some(Value::Null) => {
            body.insert(Value::String("project".into()), Value::String(mine.clone()));
        }
        Some(Value::String(p)) if *p == mine => {}
        Some(_) => {
            return Err(ApiError::Forbidden(format!(
                "token {:?} manages the keys of project {mine:?} only",
                call.caller.id
            )))
        }
    }
    Ok(Some(mine))
}

/// A JSON object body, its field order kept.
fn body_object(body: &[u8]) -> Result<YMapping, ApiError> {
    let json: Json =
        serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
    if !json.is_object() {
        return Err(ApiError::BadRequest(
            "body must be a JSON object (the same object as the YAML entry)".into(),
        ));
    }
    // JSON is YAML: parsing it as YAML keeps the field order the caller wrote.
    let value = match serde_yaml::from_slice::<Value>(body) {
        Ok(v) if v.is_mapping() => v,
        _ => serde_yaml::to_value(&json).map_err(|e| ApiError::BadRequest(e.to_string()))?,
    };
    match value {
        Value::Mapping(m) => Ok(m),
        _ => Err(ApiError::BadRequest("body must be a JSON object".into())),
    }
}

fn entry_id(section: Section, body: &YMapping) -> Result<String, ApiError> {
    match body.get(section.id_field()) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(ApiError::BadRequest(format!("`{}` is required (a non-empty string)", section.id_field()))),
    }
}

/// The entry must deserialize as its schema type (unknown fields, wrong types).
fn check_entry(section: Section, body: &YMapping) -> Result<(), ApiError> {
    fn check<T: serde::de::DeserializeOwned>(section: Section, v: Value) -> Result<(), ApiError> {
        serde_path_to_error::deserialize::<_, T>(v).map(drop).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { String::new() } else { format!("{path}: ") };
            ApiError::BadRequest(format!("{} entry: {at}{}", section.name(), e.into_inner()))
        })
    }
    let v = Value::Mapping(body.clone());
    match section {
        Section::Providers => check::<ProviderEntry>(section, v),
        Section::Models => check::<ModelAlias>(section, v),
        Section::Projects => check::<Project>(section, v),
        Section::Keys => check::<KeyEntry>(section, v),
    }
}

/// Provider secrets sent in clear are stored `enc:` under the master key (when one is set);
/// `<redacted>` keeps the current value.
fn seal_provider_secrets(
    body: &mut YMapping,
    existing: Option<&YMapping>,
    running: &Running,
) -> Result<(), ApiError> {
    for field in PROVIDER_SECRETS {
        let Some(Value::String(s)) = body.get(field).cloned() else { continue };
        let value = if s == REDACTED {
            existing.and_then(|e| e.get(field)).cloned().ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{field}: {REDACTED:?} keeps the current value, and there is none; send the secret"
                ))
            })?
        } else if s.starts_with(FINGERPRINT_PREFIX) {
            return Err(ApiError::BadRequest(format!(
                "{field}: send the secret, env:NAME or enc:..., not a fingerprint"
            )));
        } else if is_literal(&s) {
            match &running.master {
                Some(m) => Value::String(m.encrypt(&s)),
                None => continue,
            }
        } else {
            continue;
        };
        body.insert(Value::String(field.into()), value);
    }
    Ok(())
}

/// `m` with `key` first.
fn with_first(m: YMapping, key: &str, value: Value) -> YMapping {
    let mut out = YMapping::new();
    out.insert(Value::String(key.into()), value);
    out.extend(m.into_iter().filter(|(k, _)| k.as_str() != Some(key)));
    out
}

/// `m` with `key` right after its first field.
fn with_second(m: YMapping, key: &str, value: Value) -> YMapping {
    let mut out = YMapping::new();
    let mut rest = m.into_iter().filter(|(k, _)| k.as_str() != Some(key));
    if let Some((k, v)) = rest.next() {
        out.insert(k, v);
    }
    out.insert(Value::String(key.into()), value);
    out.extend(rest);
    out
}

/// `n` random bytes from the OS RNG, written base62 (`n = 32` gives 43 characters).
pub fn random_base62(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("the OS random generator failed".into()))?;
    Ok(base62(&bytes))
}

/// Big-endian bytes as a base62 number, zero-padded to the width of the largest `len`-byte value.
pub fn base62(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // 62^width >= 256^len: width = ceil(len * 8 / log2(62)).
    let width = (bytes.len() * 8 * 1000).div_ceil(5954);
    let mut num = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while digits.len() < width {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        digits.push(ALPHABET[rem as usize]);
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn version_number(s: &str, name: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::BadRequest(format!("{name}: {s:?} is not a version number")))
}

/// A time query parameter: RFC 3339, or a date `YYYY-MM-DD` (midnight UTC).
fn time_param(call: &Call, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    let Some(s) = call.query(name) else { return Ok(None) };
    parse_time(s).map(Some).ok_or_else(|| {
        ApiError::BadRequest(format!("{name}: {s:?} is not an RFC 3339 time or a YYYY-MM-DD date"))
    })
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|d| d.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_is_fixed_width_and_exact() {
        assert_eq!(base62(&[0; 32]).len(), 43);
        assert_eq!(base62(&[0xff; 32]).len(), 43);
        assert_eq!(base62(&[0, 61]), "00z");
        assert_eq!(base62(&[0, 62]), "010");
        assert_eq!(base62(&[1, 0]), "048"); // 256 = 4*62 + 8
        let a = random_base62(32).unwrap();
        let b = random_base62(32).unwrap();
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn times_parse_as_rfc3339_or_dates() {
        assert_eq!(parse_time("2026-03-01").unwrap().unix_timestamp(), 1_772_323_200);
        assert_eq!(parse_time("2026-03-01T00:00:01Z").unwrap().unix_timestamp(), 1_772_323_201);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn field_order_helpers_put_id_and_hash_first() {
        let m: YMapping = serde_yaml::from_str("project: p\nmodels: [a]\n").unwrap();
        let m = with_first(m, "id", Value::String("k".into()));
        let m = with_second(m, "hash", Value::String("h".into()));
        let keys: Vec<&str> = m.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["id", "hash", "project", "models"]);
    }
}
