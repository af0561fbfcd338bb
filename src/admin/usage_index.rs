//! The `/admin/usage` engine: an in-memory hourly rollup of `state_dir/usage.jsonl` and its
//! rotated siblings (every file named `usage.jsonl.*`; compressed ones are skipped), built
//! once at start and then kept current by tailing: each `refresh` reads only bytes not read
//! before. A file is recognised by its first line (time and request id make it unique), not
//! by name or inode: a renamed file (rotation) continues where it stopped, a copy made by
//! copy-and-truncate rotation is not counted twice, and a truncated or replaced file (its
//! first line changed) is read from its start. Only complete lines are consumed; a line still
//! being written is read on the next refresh.
//!
//! Rollup cell: hour × key × project × alias × model × provider × status, holding requests,
//! tokens and cost in integer micro-dollars. Queries (`UsageQuery`) filter and group cells;
//! time filters therefore have hour resolution (`from` rounds down to its hour, `to` up).
//! File I/O is blocking: call `refresh`/`query` from `spawn_blocking` on an async runtime.
//! Does not write the usage log (see `accounting/usage_log.rs`) and does not check roles.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The active file's name; rotated files start with this plus a dot.
pub const ACTIVE_FILE: &str = "usage.jsonl";
/// Rotated files with these endings are compressed and not read.
const COMPRESSED: &[&str] = &[".gz", ".zst", ".xz", ".bz2"];
/// Bytes read per `read` call while loading.
const CHUNK: usize = 4 << 20;
/// At most this many bytes of a file's first line identify it.
const HEAD: usize = 256;

/// What to report: filters (all optional, ANDed) and the grouping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageQuery {
    pub key: Option<String>,
    pub project: Option<String>,
    /// Matches the alias the client asked for or the concrete upstream model.
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Unix seconds, inclusive (rounded down to its hour).
    pub from: Option<i64>,
    /// Unix seconds, exclusive (rounded up to an hour).
    pub to: Option<i64>,
    pub group_by: Vec<GroupBy>,
}

/// A `group_by` dimension. `Model` groups by the alias (the name clients use), or by the
/// upstream model for lines without an alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    Project,
    Model,
    Provider,
    Status,
    Hour,
    Day,
}

/// The answer: `{"totals": {...}, "groups": [{<group_by fields>, ...totals}]}`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UsageReport {
    pub totals: UsageTotals,
    pub groups: Vec<UsageGroup>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct UsageTotals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
}

/// One group: its `group_by` fields (in `group_by` order; absent values are `null`) and totals.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UsageGroup {
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// Figures about the index (for logs and the load benchmark).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub lines: u64,
    pub bad_lines: u64,
    pub bytes: u64,
    pub cells: u64,
    pub files: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageQueryError {
    #[error("unknown usage parameter {0:?}; use key, project, model, provider, from, to, group_by")]
    UnknownParam(String),
    #[error("group_by={0:?} is not a dimension; use key, project, model, provider, status, hour, day")]
    BadGroupBy(String),
    #[error("{param}={value:?} is not a time; use RFC 3339 (2026-05-01T00:00:00Z), a date (2026-05-01) or unix seconds")]
    BadTime { param: &'static str, value: String },
    #[error("from ({from}) is after to ({to})")]
    EmptyRange { from: i64, to: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum UsageIndexError {
    #[error("usage log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The index over one state directory.
pub struct UsageIndex {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    syms: Interner,
    hours: BTreeMap<u32, FastMap<Dims, Totals>>,
    /// Read offset of each file, by its head (the start of its first line).
    files: HashMap<Vec<u8>, u64>,
    stats: IndexStats,
}

/// One rollup cell's coordinates (interned strings; 0 = absent).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Dims {
    key: u32,
    project: u32,
    alias: u32,
    model: u32,
    provider: u32,
    status: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    requests: u64,
    input: u64,
    output: u64,
    cached: u64,
    reasoning: u64,
    cost_micros: u64,
}

#[derive(Default)]
struct Interner {
    ids: FastMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

/// The fields of a usage line the index reads (the rest is skipped).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    project: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    alias: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    provider: Option<Cow<'a, str>>,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
    #[serde(default)]
    cost_usd: f64,
}

// === impl UsageIndex ===

impl UsageIndex {
    /// Loads every usage file under `state_dir` (a missing directory is an empty index).
    pub fn open(state_dir: impl Into<PathBuf>) -> Result<UsageIndex, UsageIndexError> {
        let index = UsageIndex { dir: state_dir.into(), state: Mutex::new(State::default()) };
        index.refresh()?;
        Ok(index)
    }

    /// Reads what was appended since the last call, and any new or replaced file.
    pub fn refresh(&self) -> Result<(), UsageIndexError> {
        // Two names with one head are the same data (a copy before its original is
        // truncated): read the longer one.
        let mut by_head: HashMap<Vec<u8>, FileInfo> = HashMap::new();
        for f in self.list()? {
            let Some(head) = head_of(&f.path)? else { continue };
            match by_head.get(&head) {
                Some(seen) if seen.len >= f.len => {}
                _ => {
                    by_head.insert(head, f);
                }
            }
        }
        let mut st = self.state.lock();
        st.files.retain(|head, _| by_head.contains_key(head));
        for (head, f) in by_head {
            let from = st.files.get(&head).copied().unwrap_or(0);
            if f.len > from {
                let offset = st.read_file(&f.path, from)?;
                st.files.insert(head, offset);
            }
        }
        st.stats.files = st.files.len() as u64;
        Ok(())
    }

    /// Refreshes, then answers `q`.
    pub fn query(&self, q: &UsageQuery) -> Result<UsageReport, UsageIndexError> {
        self.refresh()?;
        Ok(self.state.lock().query(q))
    }

    pub fn stats(&self) -> IndexStats {
        let st = self.state.lock();
        IndexStats { cells: st.hours.values().map(|h| h.len() as u64).sum(), ..st.stats }
    }

    /// `usage.jsonl` and `usage.jsonl.*` with their sizes.
    fn list(&self) -> Result<Vec<FileInfo>, UsageIndexError> {
        let io = |source| UsageIndexError::Io { path: self.dir.clone(), source };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let rotated = name.strip_prefix(ACTIVE_FILE).is_some_and(|r| r.starts_with('.'));
            if !(name == ACTIVE_FILE || rotated) || COMPRESSED.iter().any(|c| name.ends_with(c)) {
                continue;
            }
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() > 0 => out.push(FileInfo { len: m.len(), path }),
                Ok(_) => {}
                // Rotated away or deleted between the listing and now: the next refresh sees it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(UsageIndexError::Io { path, source: e }),
            }
        }
        Ok(out)
    }
}

struct FileInfo {
    len: u64,
    path: PathBuf,
}

/// The start of `path`'s first line (at most `HEAD` bytes), `None` for a file that is gone or
/// empty. Bytes of an append-only file never change, so the head is stable once read.
fn head_of(path: &Path) -> Result<Option<Vec<u8>>, UsageIndexError> {
    let mut buf = vec![0u8; HEAD];
    let n = match File::open(path).and_then(|mut f| read_full(&mut f, &mut buf)) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UsageIndexError::Io { path: path.to_path_buf(), source: e }),
    };
    buf.truncate(memchr::memchr(b'\n', &buf[..n]).unwrap_or(n));
    Ok((!buf.is_empty()).then_some(buf))
}

// === impl State ===

impl State {
    /// Reads complete lines of `path` from `from`; returns the offset after the last one.
    fn read_file(&mut self, path: &Path, from: u64) -> Result<u64, UsageIndexError> {
        let io = |source| UsageIndexError::Io { path: path.to_path_buf(), source };
        let mut f = File::open(path).map_err(io)?;
        f.seek(SeekFrom::Start(from)).map_err(io)?;
        let mut offset = from;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let Some(last_nl) = memchr::memrchr(b'\n', &buf) else { continue };
            for line in buf[..last_nl].split(|&b| b == b'\n') {
                self.add_line(line);
            }
            offset += last_nl as u64 + 1;
            self.stats.bytes += last_nl as u64 + 1;
            buf.drain(..=last_nl);
        }
        Ok(offset)
    }

    fn add_line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let parsed = serde_json::from_slice::<Line<'_>>(line).ok().and_then(|l| Some((hour_of(&l.time)?, l)));
        let Some((hour, l)) = parsed else {
            self.stats.bad_lines += 1;
            return;
        };
        let mut sym = |s: &Option<Cow<'_, str>>| s.as_deref().map_or(0, |s| self.syms.intern(s));
        let dims = Dims {
            key: sym(&l.key),
            project: sym(&l.project),
            alias: sym(&l.alias),
            model: sym(&l.model),
            provider: sym(&l.provider),
            status: l.status,
        };
        let cost =
            if l.cost_usd.is_finite() && l.cost_usd > 0.0 { (l.cost_usd * 1e6).round() as u64 } else { 0 };
        let t = self.hours.entry(hour).or_default().entry(dims).or_default();
        t.requests += 1;
        t.input += l.input_tokens;
        t.output += l.output_tokens;
        t.cached += l.cached_tokens;
        t.reasoning += l.reasoning_tokens;
        t.cost_micros += cost;
        self.stats.lines += 1;
    }

    fn query(&self, q: &UsageQuery) -> UsageReport {
        let empty = UsageReport { totals: UsageTotals::default(), groups: Vec::new() };
        // A filter naming a value never seen matches nothing.
        let filter = |v: &Option<String>| match v {
            None => Some(None),
            Some(s) => self.syms.get(s).map(Some),
        };
        let (Some(key), Some(project), Some(model), Some(provider)) =
            (filter(&q.key), filter(&q.project), filter(&q.model), filter(&q.provider))
        else {
            return empty;
        };
        let lo = q.from.map_or(0, |s| (s.div_euclid(3600)).clamp(0, u32::MAX as i64) as u32);
        let hi = q.to.map_or(u32::MAX, |s| ((s + 3599).div_euclid(3600)).clamp(0, u32::MAX as i64) as u32);
        if lo >= hi {
            return empty;
        }
        let mut total = Totals::default();
        let mut groups: FastMap<[u32; 7], Totals> = FastMap::default();
        for (&hour, cells) in self.hours.range(lo..hi) {
            for (d, t) in cells {
                let matches = key.is_none_or(|k| d.key == k)
                    && project.is_none_or(|p| d.project == p)
                    && provider.is_none_or(|p| d.provider == p)
                    && model.is_none_or(|m| d.alias == m || d.model == m);
                if !matches {
                    continue;
                }
                total.add(t);
                if q.group_by.is_empty() {
                    continue;
                }
                let mut g = [0u32; 7];
                for (slot, by) in g.iter_mut().zip(&q.group_by) {
                    *slot = match by {
                        GroupBy::Key => d.key,
                        GroupBy::Project => d.project,
                        GroupBy::Model => {
                            if d.alias != 0 {
                                d.alias
                            } else {
                                d.model
                            }
                        }
                        GroupBy::Provider => d.provider,
                        GroupBy::Status => u32::from(d.status),
                        GroupBy::Hour => hour,
                        GroupBy::Day => hour / 24,
                    };
                }
                groups.entry(g).or_default().add(t);
            }
        }
        let mut rows: Vec<(Vec<serde_json::Value>, Totals)> = groups
            .into_iter()
            .map(|(g, t)| (q.group_by.iter().zip(g).map(|(by, v)| self.field(*by, v)).collect(), t))
            .collect();
        rows.sort_by(|a, b| cmp_values(&a.0, &b.0));
        let groups = rows
            .into_iter()
            .map(|(values, t)| UsageGroup {
                fields: q.group_by.iter().map(|by| by.name().to_string()).zip(values).collect(),
                totals: t.report(),
            })
            .collect();
        UsageReport { totals: total.report(), groups }
    }

    /// The JSON value of one group field.
    fn field(&self, by: GroupBy, v: u32) -> serde_json::Value {
        use serde_json::Value;
        match by {
            GroupBy::Status => Value::from(v),
            GroupBy::Hour => Value::from(format_hour(v)),
            GroupBy::Day => Value::from(format_day(v)),
            _ if v == 0 => Value::Null,
            _ => Value::from(self.syms.name(v)),
        }
    }
}

/// Orders group rows field by field: null first, numbers numerically, strings bytewise.
fn cmp_values(a: &[serde_json::Value], b: &[serde_json::Value]) -> std::cmp::Ordering {
    use serde_json::Value;
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
            (Value::Null, _) => std::cmp::Ordering::Less,
            (_, Value::Null) => std::cmp::Ordering::Greater,
            (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
            (Value::String(x), Value::String(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        };
        if o.is_ne() {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

// === impl Totals ===

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.input += o.input;
        self.output += o.output;
        self.cached += o.cached;
        self.reasoning += o.reasoning;
        self.cost_micros += o.cost_micros;
    }

    fn report(&self) -> UsageTotals {
        UsageTotals {
            requests: self.requests,
            input_tokens: self.input,
            output_tokens: self.output,
            cached_tokens: self.cached,
            reasoning_tokens: self.reasoning,
            cost_usd: self.cost_micros as f64 / 1e6,
        }
    }
}

// === impl Interner ===

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        self.names.push(Box::from(s));
        let id = self.names.len() as u32; // ids start at 1; 0 means absent
        self.ids.insert(Box::from(s), id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn name(&self, id: u32) -> &str {
        id.checked_sub(1).and_then(|i| self.names.get(i as usize)).map_or("", |s| s)
    }
}

// === impl GroupBy ===

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "key" => GroupBy::Key,
            "project" => GroupBy::Project,
            "model" => GroupBy::Model,
            "provider" => GroupBy::Provider,
            "status" => GroupBy::Status,
            "hour" => GroupBy::Hour,
            "day" => GroupBy::Day,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Key => "key",
            GroupBy::Project => "project",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Status => "status",
            GroupBy::Hour => "hour",
            GroupBy::Day => "day",
        }
    }
}

// === impl UsageQuery ===

impl UsageQuery {
    /// Parses `key=&project=&model=&provider=&from=&to=&group_by=a,b` (percent-encoded; an
    /// empty value is no filter; `group_by` may repeat). Unknown parameters are refused.
    pub fn parse(query: &str) -> Result<UsageQuery, UsageQueryError> {
        let mut q = UsageQuery::default();
        for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw);
            let text = Some(value.to_string()).filter(|v| !v.is_empty());
            match &*percent_decode(name) {
                "key" => q.key = text,
                "project" => q.project = text,
                "model" => q.model = text,
                "provider" => q.provider = text,
                "from" => q.from = text.map(|v| parse_time("from", &v)).transpose()?,
                "to" => q.to = text.map(|v| parse_time("to", &v)).transpose()?,
                "group_by" => {
                    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let by = GroupBy::parse(part)
                            .ok_or_else(|| UsageQueryError::BadGroupBy(part.to_string()))?;
                        if !q.group_by.contains(&by) {
                            q.group_by.push(by);
                        }
                    }
                }
                other => return Err(UsageQueryError::UnknownParam(other.to_string())),
            }
        }
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if from > to {
                return Err(UsageQueryError::EmptyRange { from, to });
            }
        }
        Ok(q)
    }
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// RFC 3339, a date (midnight UTC), or unix seconds.
fn parse_time(param: &'static str, v: &str) -> Result<i64, UsageQueryError> {
    let bad = || UsageQueryError::BadTime { param, value: v.to_string() };
    if let Ok(secs) = v.parse::<i64>() {
        return Ok(secs);
    }
    if v.len() == 10 {
        let b = v.as_bytes();
        let date = (|| {
            if b[4] != b'-' || b[7] != b'-' {
                return None;
            }
            Some((num(&b[0..4])? as i64, num(&b[5..7])?, num(&b[8..10])?))
        })();
        let (y, m, d) =
            date.filter(|&(_, m, d)| (1..=12).contains(&m) && (1..=31).contains(&d)).ok_or_else(bad)?;
        return Ok(days_from_civil(y, m, d) * 86_400);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| bad())
}

// === time helpers ===

/// Hours since the epoch of an RFC 3339 time (`2026-05-01T13:45:07.123Z`, `…+02:00`).
fn hour_of(t: &str) -> Option<u32> {
    u32::try_from(minute_of(t)?.div_euclid(60)).ok()
}

/// Minutes since the epoch of an RFC 3339 time (seconds and fractions dropped).
pub(crate) fn minute_of(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])? as i64, num(&b[5..7])?, num(&b[8..10])?);
    let (h, mi) = (num(&b[11..13])? as i64, num(&b[14..16])? as i64);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    let offset_min = match b[b.len() - 1] {
        b'Z' | b'z' => 0,
        _ => {
            let o = &b[b.len() - 6..];
            if o[3] != b':' {
                return None;
            }
            let m = num(&o[1..3])? as i64 * 60 + num(&o[4..6])? as i64;
            match o[0] {
                b'+' => m,
                b'-' => -m,
                _ => return None,
            }
        }
    };
    Some(days_from_civil(y, mo, d) * 1440 + h * 60 + mi - offset_min)
}

fn num(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_hour(hour: u32) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::from(hour) * 3600)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}T{:02}:00:00Z", t.year(), u8::from(t.month()), t.day(), t.hour())
}

fn format_day(day: u32) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::from(day) * 86_400)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

#[cfg(test)]
#[path = "usage_index_tests.rs"]
mod tests;
