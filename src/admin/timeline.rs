//! `GET /admin/usage/recent`: requests, errors and latency (p50/p99) per alias per minute over
//! the last `minutes` (the dashboard's charts). The hourly index (`usage_index.rs`) has hour
//! resolution and no latency, so this reads the usage log itself: the tail of
//! `state_dir/usage.jsonl` and of any rotated `usage.jsonl.*` written during the window (not
//! compressed ones), read backwards 1 MiB at a time until a chunk's first line is older than
//! the window or `MAX_TAIL_BYTES` is read, so a poll costs about the window's bytes, never the
//! whole log; lines outside the window skip the JSON parse. Only complete lines count. Blocking file I/O: call from a blocking thread.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::audit::format_time;
use super::usage_index::{minute_of, ACTIVE_FILE};

/// The longest window (`minutes`) a query may ask for.
pub const MAX_MINUTES: u32 = 1440;
/// The most bytes read from the end of one file.
pub const MAX_TAIL_BYTES: u64 = 64 << 20;
/// Bytes read per step backwards.
const CHUNK: u64 = 1 << 20;
/// Rotated files with these endings are compressed and not read.
const COMPRESSED: &[&str] = &[".gz", ".zst", ".xz", ".bz2"];

/// Why the recent usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What the reader keeps of a usage line.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default, borrow)]
    alias: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    project: Option<Cow<'a, str>>,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    latency_ms: f64,
}

/// One minute of one alias.
#[derive(Default)]
struct Minute {
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
}

/// Per alias, per minute (unix minute) of the window.
#[derive(Default)]
pub struct Timeline {
    from: i64,
    to: i64,
    project: Option<String>,
    series: BTreeMap<String, BTreeMap<i64, Minute>>,
}

// === impl Timeline ===

impl Timeline {
    /// An empty timeline of the `minutes` whole minutes ending with the one holding `now`,
    /// counting only lines of `project` when given.
    pub fn new(now: OffsetDateTime, minutes: u32, project: Option<String>) -> Timeline {
        let minutes = i64::from(minutes.clamp(1, MAX_MINUTES));
        let to = now.unix_timestamp().div_euclid(60) + 1;
        Timeline { from: to - minutes, to, project, series: BTreeMap::new() }
    }

    /// Count the complete lines of `text` that fall in the window. Returns the minute of the
    /// first line that has a time (to know whether an earlier part of the file is needed).
    pub fn add_lines(&mut self, text: &[u8]) -> Option<i64> {
        let mut first = None;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // The writer puts `time` first: lines outside the window skip the JSON parse.
            let quick = line
                .strip_prefix(br#"{"time":""#)
                .and_then(|rest| rest.iter().position(|&b| b == b'"').map(|end| &rest[..end]))
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(minute_of);
            if let Some(minute) = quick {
                first.get_or_insert(minute);
                if minute < self.from || minute >= self.to {
                    continue;
                }
            }
            let Ok(l) = serde_json::from_slice::<Line<'_>>(line) else { continue };
            let Some(minute) = minute_of(&l.time) else { continue };
            first.get_or_insert(minute);
            if minute < self.from || minute >= self.to {
                continue;
            }
            if self.project.is_some() && l.project.as_deref() != self.project.as_deref() {
                continue;
            }
            let name = l.alias.or(l.model).map_or_else(|| "(none)".to_string(), Cow::into_owned);
            let m = self.series.entry(name).or_default().entry(minute).or_default();
            m.requests += 1;
            if l.status == 0 || l.status >= 400 {
                m.errors += 1;
            }
            if l.latency_ms.is_finite() && l.latency_ms >= 0.0 {
                m.latencies.push(l.latency_ms);
            }
        }
        first
    }

    /// Read the window's lines from `state_dir` (the active usage log and rotated ones written
    /// since the window began).
    pub fn read_dir(&mut self, state_dir: &Path) -> Result<(), TimelineError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TimelineError::Io { path, source }
        };
        let entries = match std::fs::read_dir(state_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(state_dir)(e)),
        };
        let since = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(self.from * 60).unwrap_or(0));
        for entry in entries {
            let entry = entry.map_err(io(state_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rotated =
                name.starts_with(&format!("{ACTIVE_FILE}.")) && !COMPRESSED.iter().any(|c| name.ends_with(c));
            if name != ACTIVE_FILE && !rotated {
                continue;
            }
            let path = entry.path();
            let modified = entry.metadata().and_then(|m| m.modified()).map_err(io(&path))?;
            if rotated && modified < since {
                continue;
            }
            self.read_file(&path).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Read one file backwards, a chunk at a time, until a chunk's first line is older than the
    /// window, the file's start, or `MAX_TAIL_BYTES`. Each line is parsed once.
    fn read_file(&mut self, path: &Path) -> std::io::Result<()> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let stop = len.saturating_sub(MAX_TAIL_BYTES);
        let mut end = len;
        // Bytes after the chunk being read that begin a line not yet complete in what was read.
        let mut carry: Vec<u8> = Vec::new();
        let mut first_chunk = true;
        while end > stop {
            let start = end.saturating_sub(CHUNK).max(stop);
            file.seek(SeekFrom::Start(start))?;
            let mut buf = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0) + carry.len());
            file.by_ref().take(end - start).read_to_end(&mut buf)?;
            if first_chunk {
                // A line still being written (no newline yet) is not counted.
                buf.truncate(buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
                first_chunk = false;
            }
            buf.extend_from_slice(&carry);
            // Before the first newline: the end of a line that starts in an earlier chunk.
            let split = if start == 0 {
                0
            } else {
                buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |i| i + 1)
            };
            carry = buf[..split].to_vec();
            let first = self.add_lines(&buf[split..]);
            end = start;
            if first.is_some_and(|m| m < self.from) {
                break;
            }
        }
        Ok(())
    }

    /// `{"from", "to", "minutes", "step_seconds": 60, "aliases": [{"alias", "requests",
    /// "errors", "points": [{"t", "requests", "errors", "p50_ms", "p99_ms"}]}]}`; only minutes
    /// with requests are points, oldest first.
    pub fn into_json(self) -> Value {
        let stamp = |minute: i64| {
            OffsetDateTime::from_unix_timestamp(minute * 60).map(format_time).unwrap_or_default()
        };
        let aliases: Vec<Value> = self
            .series
            .into_iter()
            .map(|(alias, minutes)| {
                let (mut requests, mut errors) = (0, 0);
                let points: Vec<Value> = minutes
                    .into_iter()
                    .map(|(minute, mut m)| {
                        requests += m.requests;
                        errors += m.errors;
                        m.latencies.sort_by(f64::total_cmp);
                        json!({
                            "t": stamp(minute),
                            "requests": m.requests,
                            "errors": m.errors,
                            "p50_ms": percentile(&m.latencies, 50),
                            "p99_ms": percentile(&m.latencies, 99),
                        })
                    })
                    .collect();
                json!({ "alias": alias, "requests": requests, "errors": errors, "points": points })
            })
            .collect();
        json!({
            "from": stamp(self.from),
            "to": stamp(self.to),
            "minutes": self.to - self.from,
            "step_seconds": 60,
            "aliases": aliases,
        })
    }
}

/// Nearest-rank percentile of sorted values (`null` when there are none).
fn percentile(sorted: &[f64], p: usize) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    json!(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    fn line(time: &str, alias: &str, status: u16, latency: f64) -> String {
        format!(
            "{{\"time\":\"{time}\",\"request_id\":\"r\",\"alias\":\"{alias}\",\"project\":\"p\",\"status\":{status},\"latency_ms\":{latency}}}\n"
        )
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-05-01T13:45:30Z", &Rfc3339).unwrap()
    }

    #[test]
    fn buckets_per_alias_and_minute_with_errors_and_percentiles() {
        let mut text = String::new();
        for i in 0..100 {
            text += &line("2026-05-01T13:44:10.5Z", "fast", if i < 3 { 502 } else { 200 }, f64::from(i + 1));
        }
        text += &line("2026-05-01T13:45:01Z", "fast", 200, 7.0);
        text += &line("2026-05-01T14:45:01+01:00", "slow", 429, 3.0); // 13:45 UTC
        text += &line("2026-05-01T12:45:59Z", "fast", 200, 1.0); // one minute before the window
        text += &line("2026-05-01T13:46:00Z", "fast", 200, 1.0); // after the window
        text += "not json\n";
        let mut t = Timeline::new(now(), 60, None);
        assert_eq!(t.add_lines(text.as_bytes()), Some(29_627_384));
        let v = t.into_json();
        assert_eq!(v["from"], "2026-05-01T12:46:00.000Z");
        assert_eq!(v["to"], "2026-05-01T13:46:00.000Z");
        assert_eq!(v["minutes"], 60);
        let fast = &v["aliases"][0];
        assert_eq!(
            (fast["alias"].as_str(), fast["requests"].as_u64(), fast["errors"].as_u64()),
            (Some("fast"), Some(101), Some(3))
        );
        assert_eq!(
            fast["points"][0],
            json!({"t": "2026-05-01T13:44:00.000Z", "requests": 100, "errors": 3, "p50_ms": 50.0, "p99_ms": 99.0})
        );
        assert_eq!(fast["points"][1]["requests"], 1);
        assert_eq!(fast["points"][1]["p99_ms"], 7.0);
        assert_eq!(v["aliases"][1]["alias"], "slow");
        assert_eq!(v["aliases"][1]["errors"], 1);
    }

    #[test]
    fn a_project_sees_its_own_lines_only() {
        let text = line("2026-05-01T13:44:10Z", "fast", 200, 1.0).replace("\"p\"", "\"other\"")
            + &line("2026-05-01T13:44:10Z", "fast", 200, 1.0);
        let mut t = Timeline::new(now(), 60, Some("p".into()));
        t.add_lines(text.as_bytes());
        assert_eq!(t.into_json()["aliases"][0]["requests"], 1);
    }

    #[test]
    fn reads_active_and_recent_rotated_files_backwards_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        // Over 1 MiB of old lines, then over 1 MiB of the window's: lines cross chunk boundaries.
        let mut old = String::new();
        while old.len() < 1_300_000 {
            old += &line("2026-05-01T11:00:00Z", "fast", 200, 1.0);
        }
        let mut recent = String::new();
        for _ in 0..20_000 {
            recent += &line("2026-05-01T13:00:00Z", "fast", 200, 2.0);
        }
        assert!(recent.len() > 1 << 20);
        std::fs::write(dir.path().join("usage.jsonl"), format!("{old}{recent}{{\"time\":\"2026-05-01T13:"))
            .unwrap();
        std::fs::write(dir.path().join("usage.jsonl.1"), line("2026-05-01T13:10:00Z", "slow", 500, 5.0))
            .unwrap();
        std::fs::write(dir.path().join("usage.jsonl.2.gz"), line("2026-05-01T13:10:00Z", "gz", 200, 5.0))
            .unwrap();
        let mut t = Timeline::new(now(), 60, None);
        t.read_dir(dir.path()).unwrap();
        let v = t.into_json();
        let names: Vec<&str> =
            v["aliases"].as_array().unwrap().iter().map(|a| a["alias"].as_str().unwrap()).collect();
        assert_eq!(names, ["fast", "slow"]);
        assert_eq!(v["aliases"][0]["requests"], 20_000);
        assert_eq!(v["aliases"][1]["errors"], 1);
        let mut empty = Timeline::new(now(), 60, None);
        empty.read_dir(&dir.path().join("missing")).unwrap();
        assert_eq!(empty.into_json()["aliases"], json!([]));
    }

    /// Cost of one dashboard poll. Run with
    /// `cargo test --lib admin::timeline::tests::figures -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn figures() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..500_000u32 {
            // 400k lines of the day before, then 100k in the last hour over 4 aliases.
            let (time, alias) = if i < 400_000 {
                ("2026-04-30T13:00:00Z".to_string(), "old")
            } else {
                (format!("2026-05-01T13:{:02}:00Z", (i % 46)), ["a", "b", "c", "d"][(i % 4) as usize])
            };
            text += &line(&time, alias, 200, f64::from(i % 997));
        }
        std::fs::write(dir.path().join("usage.jsonl"), &text).unwrap();
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = std::time::Instant::now();
            let mut t = Timeline::new(now(), 60, None);
            t.read_dir(dir.path()).unwrap();
            let v = t.into_json();
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(
                v["aliases"].as_array().unwrap().iter().map(|a| a["requests"].as_u64().unwrap()).sum::<u64>(),
                100_000
            );
        }
        times.sort_by(f64::total_cmp);
        println!(
            "timeline: {} MiB log, 100k lines in the window: min {:.0} / median {:.0} / max {:.0} ms per poll",
            text.len() >> 20, times[0], times[2], times[4]
        );
    }
}
