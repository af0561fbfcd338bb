//! The audit log `state_dir/audit.jsonl`: one JSON line per admin mutation, rollback or config
//! change from the file, each carrying `prev_hash`, the lowercase hex SHA-256 of the previous
//! line's exact bytes (64 zeros on the first line), so editing or deleting a line breaks the
//! chain (`verify_audit`). Lines are fsynced before the API answers. Never holds a secret: the
//! diff is between config versions, which hold none (see `secrets.rs`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::files::append_line;
use super::host::{hex, sha256};

/// `prev_hash` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit line (fields in this order).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The admin token id, or `file` for a change made by editing the file.
    pub actor: String,
    /// e.g. `keys.create`, `models.update`, `providers.delete`, `config.rollback`, `config.reload`.
    pub action: String,
    /// The admin API path (or the config file's path for a file change).
    pub path: String,
    /// The entry acted on (key id, alias, ...), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Unified diff between the previous and the new config version (no secrets).
    pub diff: String,
    /// The config version this change produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// What happened, for an event the gateway raised itself (actor `gateway`, action
    /// `alert.<kind>`: a budget crossing, a circuit opening, a failed reload...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub prev_hash: String,
}

/// Filters of `GET /admin/audit`.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub actor: Option<String>,
    pub limit: usize,
}

/// The writer: knows the hash of the last line.
pub struct AuditLog {
    path: PathBuf,
    last: [u8; 32],
    first: bool,
}

// === impl AuditLog ===

impl AuditLog {
    /// Open (or start) the log; chains on its last line. A last line cut short by a crash is
    /// closed with a newline (and stays, for `verify` to report).
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut log = AuditLog { path: path.to_path_buf(), last: [0; 32], first: true };
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if !body.is_empty() {
            let last_line = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
            log.last = sha256(last_line);
            log.first = false;
            if !bytes.ends_with(b"\n") {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
                f.write_all(b"\n")?;
                f.sync_data()?;
            }
        }
        Ok(log)
    }

    /// Append one entry (its `prev_hash` is set here) and fsync. Returns the line written.
    pub fn append(&mut self, mut entry: AuditEntry) -> std::io::Result<String> {
        entry.prev_hash = if self.first { GENESIS.to_string() } else { hex(&self.last) };
        let line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
        append_line(&self.path, line.as_bytes())?;
        self.last = sha256(line.as_bytes());
        self.first = false;
        Ok(line)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Entries matching `filter`, newest first (unparseable lines are skipped).
pub fn read_entries(path: &Path, filter: &AuditFilter) -> std::io::Result<Vec<AuditEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let rfc = time::format_description::well_known::Rfc3339;
    let mut out = Vec::new();
    for line in text.lines().rev() {
        let Ok(entry) = serde_json::from_str::<AuditEntry>(line) else {
            continue;
        };
        if filter.actor.as_deref().is_some_and(|a| a != entry.actor) {
            continue;
        }
        if filter.from.is_some() || filter.to.is_some() {
            let Ok(t) = OffsetDateTime::parse(&entry.time, &rfc) else {
                continue;
            };
            if filter.from.is_some_and(|f| t < f) || filter.to.is_some_and(|to| t >= to) {
                continue;
            }
        }
        out.push(entry);
        if filter.limit > 0 && out.len() >= filter.limit {
            break;
        }
    }
    Ok(out)
}

/// Check the hash chain of an audit log. `Ok(number of lines)`, or the 1-based number of the
/// first line that was changed (or after which a line was removed) and what is wrong.
pub fn verify_audit(path: &Path) -> Result<usize, (usize, String)> {
    let bytes = std::fs::read(path).map_err(|e| (0, format!("cannot read {}: {e}", path.display())))?;
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if body.is_empty() {
        return Ok(0);
    }
    let mut prev: Option<[u8; 32]> = None;
    let mut count = 0;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let entry: AuditEntry = serde_json::from_slice(line)
            .map_err(|e| (n, format!("line {n} is not an audit entry ({e}): it was changed or cut short")))?;
        let expected = prev.map(|p| hex(&p)).unwrap_or_else(|| GENESIS.to_string());
        if entry.prev_hash != expected {
            return Err(match n {
                1 => (1, "line 1 was changed, or lines before it were removed: its prev_hash is not 64 zeros".into()),
                _ => (
                    n - 1,
                    format!(
                        "line {} was changed, or a line after it was removed: its SHA-256 does not match the prev_hash of line {n}",
                        n - 1
                    ),
                ),
            });
        }
        prev = Some(sha256(line));
        count = n;
    }
    Ok(count)
}

/// RFC 3339 UTC with milliseconds.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, time: &str) -> AuditEntry {
        AuditEntry {
            time: time.into(),
            actor: actor.into(),
            action: "keys.create".into(),
            path: "/admin/keys".into(),
            target: Some("k".into()),
            diff: "+  - id: k\n".into(),
            version: Some(1),
            detail: None,
            prev_hash: String::new(),
        }
    }

    fn write_five(path: &Path) {
        let mut log = AuditLog::open(path).unwrap();
        for (i, actor) in ["alice", "bob", "alice", "carol", "bob"].iter().enumerate() {
            log.append(entry(actor, &format!("2026-01-0{}T00:00:00.000Z", i + 1))).unwrap();
        }
    }

    #[test]
    fn the_chain_verifies_across_reopen_and_names_a_changed_middle_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        write_five(&p);
        // Reopening chains on the last line.
        AuditLog::open(&p).unwrap().append(entry("dave", "2026-01-06T00:00:00.000Z")).unwrap();
        assert_eq!(verify_audit(&p), Ok(6));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.lines().next().unwrap().ends_with(&format!("\"prev_hash\":\"{GENESIS}\"}}")));

        // One byte of line 3 (its actor), still valid JSON.
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[2] = lines[2].replacen("alice", "alicf", 1);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        let (line, why) = verify_audit(&p).unwrap_err();
        assert_eq!(line, 3, "{why}");
        assert!(why.contains("line 3"));

        // A byte that breaks the JSON of line 2.
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[1].insert(5, '"');
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        assert_eq!(verify_audit(&p).unwrap_err().0, 2);

        // A deleted line.
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.remove(3);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        assert_eq!(verify_audit(&p).unwrap_err().0, 3);
    }

    #[test]
    fn reading_filters_by_actor_and_time_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        write_five(&p);
        let rfc = time::format_description::well_known::Rfc3339;
        let all = read_entries(&p, &AuditFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
            ["bob", "carol", "alice", "bob", "alice"]
        );
        let f = AuditFilter { actor: Some("alice".into()), ..AuditFilter::default() };
        assert_eq!(
            read_entries(&p, &f).unwrap().iter().map(|e| e.time.as_str()).collect::<Vec<_>>(),
            ["2026-01-03T00:00:00.000Z", "2026-01-01T00:00:00.000Z"]
        );
        let f = AuditFilter {
            from: Some(OffsetDateTime::parse("2026-01-02T00:00:00Z", &rfc).unwrap()),
            to: Some(OffsetDateTime::parse("2026-01-04T00:00:00Z", &rfc).unwrap()),
            ..AuditFilter::default()
        };
        assert_eq!(
            read_entries(&p, &f).unwrap().iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        let f = AuditFilter { limit: 2, ..AuditFilter::default() };
        assert_eq!(read_entries(&p, &f).unwrap().len(), 2);
    }

    #[test]
    fn times_are_utc_with_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_456_789).unwrap();
        assert_eq!(format_time(t), "2026-01-01T00:00:00.123Z");
    }
}
