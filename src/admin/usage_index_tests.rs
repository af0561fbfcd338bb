//! Tests for `usage_index.rs`: totals per group against a naive reference over generated
//! `UsageRecord` lines, across rotation (rename and copy-truncate), incremental tailing
//! (bytes read counted), partial and bad lines, query parsing. The 1M-line load and query
//! figures are an `#[ignore]`d test:
//! `cargo test --release --lib usage_index::tests::figures -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::*;
use crate::accounting::UsageRecord;

/// 2026-05-01T00:00:00Z.
const T0: i64 = 1_777_593_600;

/// One generated request, as the reference model sees it.
#[derive(Clone, Debug)]
struct Rec {
    secs: i64,
    key: Option<String>,
    project: Option<String>,
    alias: Option<String>,
    model: String,
    provider: String,
    status: u16,
    input: u64,
    output: u64,
    cost_micros: u64,
}

fn generate(rng: &mut fastrand::Rng, n: usize, span_hours: i64) -> Vec<Rec> {
    (0..n)
        .map(|_| {
            let k = rng.usize(0..40);
            let a = rng.usize(0..6);
            let t = rng.usize(0..2);
            Rec {
                secs: T0 + rng.i64(0..span_hours * 3600),
                key: (k != 0).then(|| format!("key-{k}")),
                project: (k != 0).then(|| format!("project-{}", k % 5)),
                alias: (a != 0).then(|| format!("alias-{a}")),
                model: format!("model-{a}-{t}"),
                provider: format!("provider-{}", (a + t) % 4),
                status: [200, 200, 200, 200, 429, 502][rng.usize(0..6)],
                input: rng.u64(0..5000),
                output: rng.u64(0..800),
                cost_micros: rng.u64(0..20_000),
            }
        })
        .collect()
}

fn line(r: &Rec, i: usize) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(r.secs).unwrap()
        + time::Duration::nanoseconds(i as i64 % 1_000_000_000);
    // Every 7th line carries a +02:00 offset, as a foreign writer might.
    let t = if i.is_multiple_of(7) { t.to_offset(time::macros::offset!(+2)) } else { t };
    let rec = UsageRecord {
        time: t.format(&time::format_description::well_known::Rfc3339).unwrap(),
        request_id: format!("req-{i}"),
        key: r.key.clone(),
        project: r.project.clone(),
        alias: r.alias.clone(),
        provider: Some(r.provider.clone()),
        model: Some(r.model.clone()),
        endpoint: "chat_completions",
        status: r.status,
        input_tokens: r.input,
        output_tokens: r.output,
        cached_tokens: r.input / 4,
        reasoning_tokens: 3,
        cost_usd: r.cost_micros as f64 / 1e6,
        latency_ms: 812.5,
        attempts: 1,
        ..Default::default()
    };
    let mut s = serde_json::to_string(&rec).unwrap();
    s.push('\n');
    s
}

fn write(path: &Path, recs: &[Rec], first_index: usize) -> u64 {
    let text: String = recs.iter().enumerate().map(|(i, r)| line(r, first_index + i)).collect();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    text.len() as u64
}

/// The reference: group values as strings (`null` for absent) → (requests, in, out, micros).
fn reference(recs: &[Rec], q: &UsageQuery) -> BTreeMap<Vec<String>, [u64; 4]> {
    let mut out = BTreeMap::new();
    for r in recs {
        let hour = r.secs.div_euclid(3600);
        let keep = q.key.as_ref().is_none_or(|k| r.key.as_ref() == Some(k))
            && q.project.as_ref().is_none_or(|p| r.project.as_ref() == Some(p))
            && q.provider.as_ref().is_none_or(|p| &r.provider == p)
            && q.model.as_ref().is_none_or(|m| r.alias.as_ref() == Some(m) || &r.model == m)
            && q.from.is_none_or(|f| hour >= f.div_euclid(3600))
            && q.to.is_none_or(|t| hour < (t + 3599).div_euclid(3600));
        if !keep {
            continue;
        }
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".into());
        let g: Vec<String> = q
            .group_by
            .iter()
            .map(|by| match by {
                GroupBy::Key => opt(&r.key),
                GroupBy::Project => opt(&r.project),
                GroupBy::Model => r.alias.clone().unwrap_or_else(|| r.model.clone()),
                GroupBy::Provider => r.provider.clone(),
                GroupBy::Status => r.status.to_string(),
                GroupBy::Hour => format_hour(hour as u32),
                GroupBy::Day => format_day((hour / 24) as u32),
            })
            .collect();
        let e: &mut [u64; 4] = out.entry(g).or_default();
        e[0] += 1;
        e[1] += r.input;
        e[2] += r.output;
        e[3] += r.cost_micros;
    }
    out
}

fn actual(report: &UsageReport, q: &UsageQuery) -> BTreeMap<Vec<String>, [u64; 4]> {
    let mut out = BTreeMap::new();
    for g in &report.groups {
        let key: Vec<String> = q
            .group_by
            .iter()
            .map(|by| match &g.fields[by.name()] {
                Value::Null => "null".to_string(),
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .collect();
        let t = &g.totals;
        let prev =
            out.insert(key, [t.requests, t.input_tokens, t.output_tokens, (t.cost_usd * 1e6).round() as u64]);
        assert!(prev.is_none(), "a group appears twice");
    }
    out
}

/// Checks `q` against the reference: every group and the totals.
fn check(index: &UsageIndex, recs: &[Rec], q: &UsageQuery) {
    let report = index.query(q).unwrap();
    let want = reference(recs, q);
    if q.group_by.is_empty() {
        assert!(report.groups.is_empty());
    } else {
        assert_eq!(actual(&report, q), want, "{q:?}");
    }
    let sum = want.values().fold([0u64; 4], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2], a[3] + v[3]]);
    let t = report.totals;
    assert_eq!(
        [t.requests, t.input_tokens, t.output_tokens, (t.cost_usd * 1e6).round() as u64],
        sum,
        "{q:?}"
    );
}

fn queries() -> Vec<(&'static str, UsageQuery)> {
    [
        "",
        "group_by=key",
        "group_by=project,model",
        "group_by=provider,status",
        "group_by=day",
        "group_by=hour,model",
        "project=project-2&group_by=key,day",
        "model=alias-3&group_by=provider",
        "model=model-4-1&group_by=model",
        "key=key-7&provider=provider-1&group_by=status",
        "from=2026-05-02&to=2026-05-03T12:00:00Z&group_by=hour",
        "from=2026-05-01T10:30:00Z&group_by=day",
        "project=nobody&group_by=key",
    ]
    .iter()
    .map(|s| (*s, UsageQuery::parse(s).unwrap()))
    .collect()
}

#[test]
fn totals_per_group_match_the_reference_across_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let recs = generate(&mut rng, 6_000, 96);
    write(&dir.path().join("usage.jsonl.2"), &recs[..2_000], 0);
    write(&dir.path().join("usage.jsonl.1"), &recs[2_000..4_000], 2_000);
    write(&dir.path().join("usage.jsonl"), &recs[4_000..], 4_000);
    std::fs::write(dir.path().join("usage.jsonl.3.gz"), b"\x1f\x8b binary").unwrap();
    std::fs::write(dir.path().join("other.jsonl"), line(&recs[0], 99_999)).unwrap();
    let index = UsageIndex::open(dir.path()).unwrap();
    assert_eq!(index.stats().lines, 6_000);
    assert_eq!(index.stats().bad_lines, 0);
    for (_, q) in queries() {
        check(&index, &recs, &q);
    }
}

#[test]
fn appended_lines_are_read_incrementally_and_rotation_counts_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let active = dir.path().join("usage.jsonl");
    let mut rng = fastrand::Rng::with_seed(11);
    let recs = generate(&mut rng, 4_000, 48);
    let mut bytes = write(&active, &recs[..1_000], 0);
    let index = UsageIndex::open(dir.path()).unwrap();
    assert_eq!(index.stats().bytes, bytes);

    // Appends: only the new bytes are read.
    bytes += write(&active, &recs[1_000..1_500], 1_000);
    check(&index, &recs[..1_500], &UsageQuery::parse("group_by=key").unwrap());
    assert_eq!(index.stats().bytes, bytes, "the old part was not read again");
    check(&index, &recs[..1_500], &UsageQuery::parse("group_by=model").unwrap());
    assert_eq!(index.stats().bytes, bytes, "a query with nothing new reads nothing");

    // More lines land in the active file, then it is renamed away before the index saw them,
    // and a new active file starts.
    bytes += write(&active, &recs[1_500..2_000], 1_500);
    std::fs::rename(&active, dir.path().join("usage.jsonl.1")).unwrap();
    bytes += write(&active, &recs[2_000..2_600], 2_000);
    check(&index, &recs[..2_600], &UsageQuery::parse("group_by=provider,status").unwrap());
    assert_eq!(index.stats().bytes, bytes);
    assert_eq!(index.stats().lines, 2_600);

    // Copy-and-truncate rotation: the copy is the same data, the truncated file starts anew.
    bytes += write(&active, &recs[2_600..3_000], 2_600);
    check(&index, &recs[..3_000], &UsageQuery::default());
    std::fs::rename(dir.path().join("usage.jsonl.1"), dir.path().join("usage.jsonl.2")).unwrap();
    std::fs::copy(&active, dir.path().join("usage.jsonl.1")).unwrap();
    std::fs::OpenOptions::new().write(true).truncate(true).open(&active).unwrap();
    check(&index, &recs[..3_000], &UsageQuery::parse("group_by=day,project").unwrap());
    bytes += write(&active, &recs[3_000..], 3_000);
    for (_, q) in queries() {
        check(&index, &recs, &q);
    }
    assert_eq!(index.stats().bytes, bytes);
    assert_eq!(index.stats().lines, 4_000);
}

#[test]
fn a_line_being_written_is_counted_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let active = dir.path().join("usage.jsonl");
    let recs = generate(&mut fastrand::Rng::with_seed(3), 3, 2);
    let full = line(&recs[0], 0) + &line(&recs[1], 1);
    let (a, b) = full.split_at(full.len() - 40);
    std::fs::write(&active, a).unwrap();
    let index = UsageIndex::open(dir.path()).unwrap();
    assert_eq!(index.query(&UsageQuery::default()).unwrap().totals.requests, 1);
    std::fs::OpenOptions::new().append(true).open(&active).unwrap().write_all(b.as_bytes()).unwrap();
    check(&index, &recs[..2], &UsageQuery::parse("group_by=key").unwrap());
    assert_eq!(index.stats().bad_lines, 0);
}

#[test]
fn bad_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let recs = generate(&mut fastrand::Rng::with_seed(5), 3, 2);
    let text = format!(
        "{}not json\n{{\"time\":\"yesterday\"}}\n\n{}{{\"status\":200}}\n",
        line(&recs[0], 0),
        line(&recs[1], 1)
    );
    std::fs::write(dir.path().join("usage.jsonl"), text).unwrap();
    let index = UsageIndex::open(dir.path()).unwrap();
    check(&index, &recs[..2], &UsageQuery::parse("group_by=status").unwrap());
    assert_eq!(index.stats().bad_lines, 3);
}

#[test]
fn a_missing_state_dir_is_an_empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = UsageIndex::open(dir.path().join("not-yet")).unwrap();
    let r = index.query(&UsageQuery::parse("group_by=key").unwrap()).unwrap();
    assert_eq!(r, UsageReport { totals: UsageTotals::default(), groups: vec![] });
}

#[test]
fn the_answer_has_the_contract_shape() {
    let dir = tempfile::tempdir().unwrap();
    let r = Rec {
        secs: T0 + 3 * 3600 + 5,
        key: Some("k1".into()),
        project: Some("search".into()),
        alias: Some("fast".into()),
        model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        status: 200,
        input: 1000,
        output: 200,
        cost_micros: 270,
    };
    write(&dir.path().join("usage.jsonl"), &[r.clone(), r], 1);
    let index = UsageIndex::open(dir.path()).unwrap();
    let q = UsageQuery::parse("group_by=model,day,hour,status").unwrap();
    let json = serde_json::to_value(index.query(&q).unwrap()).unwrap();
    let totals = serde_json::json!({"requests": 2, "input_tokens": 2000, "output_tokens": 400,
        "cached_tokens": 500, "reasoning_tokens": 6, "cost_usd": 0.00054});
    let mut group = totals.clone();
    group["model"] = "fast".into();
    group["day"] = "2026-05-01".into();
    group["hour"] = "2026-05-01T03:00:00Z".into();
    group["status"] = 200.into();
    assert_eq!(json, serde_json::json!({"totals": totals, "groups": [group]}));
}

#[test]
fn queries_parse_with_percent_encoding_and_refuse_what_they_do_not_know() {
    let q = UsageQuery::parse(
        "?key=jwt%3Aalice&project=my+team&group_by=model,day&group_by=key&from=1777593600&to=2026-05-02",
    )
    .unwrap();
    assert_eq!(q.key.as_deref(), Some("jwt:alice"));
    assert_eq!(q.project.as_deref(), Some("my team"));
    assert_eq!(q.group_by, [GroupBy::Model, GroupBy::Day, GroupBy::Key]);
    assert_eq!((q.from, q.to), (Some(T0), Some(T0 + 86_400)));
    let q = UsageQuery::parse("from=2026-05-01T02:00:00%2B02:00&model=&provider=").unwrap();
    assert_eq!((q.from, q.model, q.provider), (Some(T0), None, None));
    assert!(
        matches!(UsageQuery::parse("grop_by=key"), Err(UsageQueryError::UnknownParam(p)) if p == "grop_by")
    );
    assert!(matches!(UsageQuery::parse("group_by=week"), Err(UsageQueryError::BadGroupBy(p)) if p == "week"));
    assert!(matches!(
        UsageQuery::parse("from=last+tuesday"),
        Err(UsageQueryError::BadTime { param: "from", .. })
    ));
    assert!(matches!(
        UsageQuery::parse("from=2026-05-03&to=2026-05-01"),
        Err(UsageQueryError::EmptyRange { .. })
    ));
}

#[test]
fn times_map_to_utc_hours() {
    let h0 = (T0 / 3600) as u32;
    assert_eq!(hour_of("2026-05-01T00:00:00Z"), Some(h0));
    assert_eq!(hour_of("2026-05-01T13:59:59.999999999Z"), Some(h0 + 13));
    assert_eq!(hour_of("2026-05-01T01:30:00+02:00"), Some(h0 - 1), "23:30 the day before, UTC");
    assert_eq!(hour_of("2026-04-30T22:45:00-01:30"), Some(h0), "00:15 UTC");
    assert_eq!(hour_of("2026-13-01T00:00:00Z"), None);
    assert_eq!(hour_of("yesterday"), None);
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2026, 5, 1) * 86_400, T0);
    assert_eq!(format_hour(h0 + 13), "2026-05-01T13:00:00Z");
    assert_eq!(format_day(h0 / 24 + 31), "2026-06-01");
}

/// Initial load and query latency over 1 million generated lines (about 0.4 GB) in three
/// files, then an incremental refresh after 10,000 appended lines.
#[test]
#[ignore]
fn figures() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    let t = Instant::now();
    let mut bytes = 0;
    // Written in batches so that the test's own data does not inflate the memory figure.
    for (i, name) in ["usage.jsonl.2", "usage.jsonl.1", "usage.jsonl"].into_iter().enumerate() {
        let n = if i == 2 { 200_000 } else { 400_000 };
        for b in 0..n / 10_000 {
            bytes +=
                write(&dir.path().join(name), &generate(&mut rng, 10_000, 24 * 30), i * 400_000 + b * 10_000);
        }
    }
    println!("generated 1,000,000 lines, {:.0} MB, in {:?}", bytes as f64 / 1e6, t.elapsed());
    let before = rss_kib();
    let t = Instant::now();
    let index = UsageIndex::open(dir.path()).unwrap();
    let load = t.elapsed();
    let s = index.stats();
    println!(
        "initial load: {load:?} ({:.0} lines/s, {:.0} MB/s), {} rollup cells",
        s.lines as f64 / load.as_secs_f64(),
        s.bytes as f64 / 1e6 / load.as_secs_f64(),
        s.cells
    );
    assert_eq!(s.lines, 1_000_000);
    println!("resident memory of the index: {} MiB", (rss_kib() - before) / 1024);
    for (text, q) in queries() {
        let t = Instant::now();
        let r = index.query(&q).unwrap();
        println!("query {text:<60} {:>9.2?}  {} groups", t.elapsed(), r.groups.len());
    }
    let more = generate(&mut rng, 10_000, 24 * 30);
    write(&dir.path().join("usage.jsonl"), &more, 1_000_000);
    let t = Instant::now();
    index.refresh().unwrap();
    println!("refresh after 10,000 appended lines: {:?}", t.elapsed());
    let t = Instant::now();
    index.refresh().unwrap();
    println!("refresh with nothing new: {:?}", t.elapsed());
    assert_eq!(index.stats().lines, 1_010_000);
}

/// `VmRSS` of this process in KiB, from /proc.
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}
