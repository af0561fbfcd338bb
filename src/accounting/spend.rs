//! Spend rebuilt at start-up from the usage log (SPEC section 6): the sum of `cost_usd` per
//! key and per project over the current period of each budget, read from
//! `state_dir/usage.jsonl` and every rotated sibling (`usage.jsonl.1`, `usage.jsonl.2026-03-01`,
//! ...). Each line is rounded to micro-dollars before it is added, as the live counters do.
//! A line that does not parse (the torn last line after `kill -9`) is skipped; compressed
//! rotations (`.gz`, `.zst`) are not read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::BudgetPeriod;
use crate::limits::{period_start, usd_to_micros, ScopeId, ScopeKind};

const LOG: &str = "usage.jsonl";

/// The fields of a usage line that spend needs.
#[derive(Deserialize)]
struct Line {
    time: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    cost_usd: f64,
}

/// Micro-dollars spent by each wanted scope in the current period (at `now`) of its budget.
/// Every wanted scope is in the answer, 0 when it spent nothing. A missing `dir` or log is
/// no spend; other I/O errors are returned.
pub fn rebuild(
    dir: &Path,
    now: SystemTime,
    wants: &[(ScopeId, BudgetPeriod)],
) -> io::Result<HashMap<ScopeId, u64>> {
    let mut totals: HashMap<ScopeId, u64> = wants.iter().map(|(id, _)| (id.clone(), 0)).collect();
    if wants.is_empty() {
        return Ok(totals);
    }
    // Per kind: scope name -> (its period start, its id).
    let mut keys: HashMap<&str, (SystemTime, &ScopeId)> = HashMap::new();
    let mut projects: HashMap<&str, (SystemTime, &ScopeId)> = HashMap::new();
    for (id, period) in wants {
        let by_kind = match id.kind {
            ScopeKind::Key => &mut keys,
            ScopeKind::Project => &mut projects,
        };
        by_kind.insert(&id.name, (period_start(*period, now), id));
    }
    let earliest = keys.values().chain(projects.values()).map(|(t, _)| *t).min().unwrap_or(UNIX_EPOCH);

    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(totals),
        Err(e) => return Err(e),
    };
    let mut skipped = 0u64;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let rotated = name.strip_prefix(LOG).is_some_and(|rest| rest.starts_with('.'));
        if !(name == LOG || rotated) || name.ends_with(".gz") || name.ends_with(".zst") {
            continue;
        }
        // A file last written before every current period began holds no line we want.
        if entry.metadata()?.modified().is_ok_and(|m| m < earliest) {
            continue;
        }
        let mut reader = BufReader::new(File::open(entry.path())?);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            let Ok(line) = serde_json::from_slice::<Line>(&buf) else {
                if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    skipped += 1;
                }
                continue;
            };
            let Some(at) = parse_time(&line.time) else {
                skipped += 1;
                continue;
            };
            let micros = usd_to_micros(line.cost_usd);
            if micros == 0 {
                continue;
            }
            let scopes = [
                line.key.as_deref().and_then(|k| keys.get(k)),
                line.project.as_deref().and_then(|p| projects.get(p)),
            ];
            for (start, id) in scopes.into_iter().flatten() {
                if at >= *start {
                    if let Some(t) = totals.get_mut(*id) {
                        *t = t.saturating_add(micros);
                    }
                }
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(lines = skipped, dir = %dir.display(), "usage lines that do not parse were skipped in the spend rebuild");
    }
    Ok(totals)
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// 2026-03-04T10:00:00Z, a Wednesday.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_772_618_400)
    }

    fn line(time: &str, key: Option<&str>, project: Option<&str>, cost: f64) -> String {
        serde_json::json!({
            "time": time, "request_id": "r", "key": key, "project": project, "alias": "fast",
            "status": 200, "input_tokens": 10, "output_tokens": 5, "cost_usd": cost
        })
        .to_string()
            + "\n"
    }

    fn write(dir: &Path, name: &str, lines: &[String], tail: &str) {
        let mut f = File::create(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        for l in lines {
            f.write_all(l.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        }
        f.write_all(tail.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn spend_is_summed_per_scope_over_its_current_period_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        // Oldest rotation: last month and yesterday.
        write(
            d,
            "usage.jsonl.2",
            &[
                line("2026-02-27T12:00:00Z", Some("k"), Some("p"), 5.0),
                line("2026-03-03T23:59:59Z", Some("k"), Some("p"), 1.0),
            ],
            "",
        );
        // Dated rotation: this morning.
        write(
            d,
            "usage.jsonl.2026-03-04",
            &[
                line("2026-03-04T00:00:00Z", Some("k"), Some("p"), 0.25),
                line("2026-03-04T01:00:00.123456Z", Some("other"), Some("p"), 2.0),
                line("2026-03-04T01:30:00+01:00", Some("k"), None, 100.0), // 00:30 UTC
            ],
            "",
        );
        // The live file, torn at its end by a kill -9.
        write(
            d,
            "usage.jsonl",
            &[
                line("2026-03-04T09:00:00Z", Some("k"), Some("p"), 0.000_000_6),
                line("2026-03-04T09:00:01Z", Some("k"), Some("p"), 0.000_000_4),
                line("2026-03-04T09:30:00Z", None, None, 7.0),
            ],
            r#"{"time":"2026-03-04T09:59:59Z","key":"k","project":"p","cost_u"#,
        );
        // Not usage logs.
        write(d, "usage.jsonl.3.gz", &[line("2026-03-04T02:00:00Z", Some("k"), Some("p"), 9.0)], "");
        write(d, "audit.jsonl", &[line("2026-03-04T02:00:00Z", Some("k"), Some("p"), 9.0)], "");

        let wants = [
            (ScopeId::key("k"), BudgetPeriod::Daily),
            (ScopeId::project("p"), BudgetPeriod::Monthly),
            (ScopeId::key("idle"), BudgetPeriod::Total),
        ];
        let got = rebuild(d, now(), &wants).unwrap_or_else(|e| panic!("{e}"));
        // Key k today: 0.25 + 100 + 0.000001 (0.0000006 rounds up, 0.0000004 down).
        assert_eq!(got[&ScopeId::key("k")], 100_250_001);
        // Project p this month: 1 + 0.25 + 2 + 0.000001.
        assert_eq!(got[&ScopeId::project("p")], 3_250_001);
        assert_eq!(got[&ScopeId::key("idle")], 0);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_total_budget_counts_every_line_and_a_missing_dir_is_no_spend() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(
            dir.path(),
            "usage.jsonl.1",
            &[
                line("2020-01-01T00:00:00Z", Some("k"), None, 1.5),
                line("2026-03-04T00:00:00Z", Some("k"), None, 1.5),
            ],
            "",
        );
        let wants = [(ScopeId::key("k"), BudgetPeriod::Total)];
        assert_eq!(rebuild(dir.path(), now(), &wants).ok().map(|m| m[&ScopeId::key("k")]), Some(3_000_000));
        let missing = dir.path().join("nope");
        assert_eq!(rebuild(&missing, now(), &wants).ok().map(|m| m[&ScopeId::key("k")]), Some(0));
    }
}
