use std::time::{Duration, Instant, UNIX_EPOCH};

use super::*;

/// 2026-03-04T05:06:07Z and the next day.
const DAY1: u64 = 1_772_600_767;
const DAY2: u64 = DAY1 + 86_400;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn rec(id: usize) -> UsageRecord {
    UsageRecord { request_id: format!("r{id}"), endpoint: "chat", status: 200, ..UsageRecord::default() }
}

fn log_in(dir: &Path, rotation: Rotation) -> (UsageLog, UsageWriter, watch::Sender<PathBuf>) {
    let (tx, rx) = watch::channel(dir.to_owned());
    let (log, writer) = UsageLog::with_rotation(rx, rotation);
    (log, writer, tx)
}

/// Request ids of every line in `files`, in order; every line must be whole JSON.
fn ids(files: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends inside a line", f.display());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push(v["request_id"].as_str().unwrap().to_owned());
        }
    }
    out
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r{i}")).collect()
}

// Polls with a deadline (a test thread, not the runtime).
#[allow(clippy::disallowed_methods)]
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn records_carry_the_spec_fields() {
    let r = UsageRecord {
        cache_write_tokens: 3,
        cost_micros: 1_250,
        cost_usd: 0.00125,
        ttfb_ms: Some(12.5),
        ..rec(1)
    };
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!((v["cache_write_tokens"].as_u64(), v["cost_micros"].as_u64()), (Some(3), Some(1_250)));
    assert_eq!(v["ttfb_ms"].as_f64(), Some(12.5));
    let v = serde_json::to_value(rec(2)).unwrap();
    assert!(v.get("ttfb_ms").is_none());
}

/// `write_line` writes what the derived `Serialize` writes, for a record with every optional
/// field set and for one with none (a field added to the struct but not to `write_line` fails
/// here), and text that needs escaping.
#[test]
fn lines_are_the_bytes_serde_writes() {
    let full = UsageRecord {
        time: "2026-12-01T10:00:00.123Z".into(),
        request_id: "req \"quoted\" \\ \n é".into(),
        key: Some("k1".into()),
        project: Some("p\u{1}".into()),
        alias: Some("fast".into()),
        provider: Some("openai".into()),
        model: Some("gpt-4o-mini".into()),
        endpoint: "chat",
        stream: true,
        status: 429,
        input_tokens: u64::MAX,
        output_tokens: 2,
        cached_tokens: 3,
        cache_write_tokens: 4,
        reasoning_tokens: 5,
        cost_micros: 1_250,
        cost_usd: 0.00125,
        latency_ms: 12.75,
        ttfb_ms: Some(f64::NAN),
        attempts: 3,
        attempt_log: vec!["openai/a: 503".into(), "b: \"x\"".into()],
        error: Some("upstream said \"no\"".into()),
    };
    for r in [full, UsageRecord::default(), UsageRecord { cost_usd: 1e21, latency_ms: 0.1, ..rec(3) }] {
        let mut line = Vec::new();
        r.write_line(&mut line);
        let mut want = serde_json::to_vec(&r).unwrap();
        want.push(b'\n');
        assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(want).unwrap());
    }
}

#[test]
fn the_file_rotates_by_size_without_losing_or_splitting_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let line_len = serde_json::to_vec(&rec(10)).unwrap().len() as u64 + 1;
    let (log, _w, _tx) = log_in(dir.path(), Rotation { max_bytes: 3 * line_len, daily: false });
    for i in 10..40 {
        log.record(&rec(i));
        if i % 2 == 0 {
            log.flush_at(at(DAY1 + i as u64));
        }
    }
    log.flush_at(at(DAY1 + 100));
    let files = log_files(dir.path()).unwrap();
    assert!(files.len() >= 10, "{files:?}");
    assert_eq!(ids(&files), expected(10..40));
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 3 * line_len, "{}", f.display());
    }
    let first = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(first, "usage.jsonl.20260304T050621Z"); // the third batch (r13, r14) no longer fitted
}

#[test]
fn a_batch_bigger_than_the_limit_goes_whole_into_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _w, _tx) = log_in(dir.path(), Rotation { max_bytes: 10, daily: false });
    log.record(&rec(1));
    log.flush_at(at(DAY1));
    for i in 2..6 {
        log.record(&rec(i));
    }
    log.flush_at(at(DAY1));
    let files = log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(ids(&files[1..]), expected(2..6));
    assert_eq!(ids(&files), expected(1..6));
}

#[test]
fn the_file_rotates_at_the_utc_day_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _w, _tx) = log_in(dir.path(), Rotation::default());
    log.record(&rec(1));
    log.flush_at(at(DAY1));
    log.record(&rec(2));
    log.flush_at(at(DAY1 + 60));
    log.record(&rec(3));
    log.flush_at(at(DAY2));
    let files = log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].ends_with("usage.jsonl.20260305T050607Z"), "{files:?}");
    assert_eq!(ids(&files[..1]), expected(1..3));
    assert_eq!(ids(&files[1..]), expected(3..4));
}

#[test]
fn a_file_left_from_an_earlier_day_is_rotated_before_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, format!("{}\n", serde_json::to_string(&rec(0)).unwrap())).unwrap();
    File::options().write(true).open(&path).unwrap().set_modified(at(DAY1)).unwrap();
    let (log, _w, _tx) = log_in(dir.path(), Rotation::default());
    log.record(&rec(1));
    log.flush_at(at(DAY2));
    let files = log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(ids(&files[..1]), expected(0..1));
    assert_eq!(ids(&files[1..]), expected(1..2));
}

#[test]
fn reopen_follows_an_external_rename() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _w, _tx) = log_in(dir.path(), Rotation::default());
    log.record(&rec(1));
    log.flush_at(at(DAY1));
    // logrotate renames the file; lines keep going to the renamed file until reopen.
    let moved = dir.path().join("usage.jsonl.1");
    std::fs::rename(dir.path().join(FILE_NAME), &moved).unwrap();
    log.record(&rec(2));
    log.flush_at(at(DAY1));
    log.reopen();
    log.record(&rec(3));
    log.flush_at(at(DAY1));
    assert_eq!(ids(std::slice::from_ref(&moved)), expected(1..3));
    assert_eq!(ids(&[dir.path().join(FILE_NAME)]), expected(3..4));
}

#[test]
fn a_new_state_dir_takes_effect_at_the_next_batch() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log, _w, tx) = log_in(a.path(), Rotation::default());
    log.record(&rec(1));
    log.flush_at(at(DAY1));
    tx.send(b.path().join("nested")).unwrap();
    log.record(&rec(2));
    log.flush_at(at(DAY1));
    assert_eq!(ids(&log_files(a.path()).unwrap()), expected(1..2));
    assert_eq!(ids(&log_files(&b.path().join("nested")).unwrap()), expected(2..3));
}

#[test]
fn close_and_dropping_the_last_handle_write_everything_pending() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _w, _tx) = log_in(dir.path(), Rotation::default());
    let clone = log.clone();
    log.record(&rec(1));
    drop(log);
    // A clone is still alive: nothing forced yet.
    assert!(log_files(dir.path()).unwrap().is_empty());
    clone.record(&rec(2));
    drop(clone);
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(1..3));

    let dir = tempfile::tempdir().unwrap();
    let (log, _w, _tx) = log_in(dir.path(), Rotation::default());
    log.record(&rec(1));
    log.close();
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(1..2));
    // After close a record is written at once.
    log.record(&rec(2));
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(1..3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_flushing_after_shutdown_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, writer, _tx) = log_in(dir.path(), Rotation::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move { writer.start(shutdown_rx).await });
    log.record(&rec(1));
    let files = |d: &Path| log_files(d).map(|f| ids(&f)).unwrap_or_default();
    let p = dir.path().to_owned();
    tokio::task::spawn_blocking(move || wait_for("the first line", || files(&p).len() == 1)).await.unwrap();

    // Shutdown starts: requests still finishing in the grace period are recorded.
    shutdown_tx.send(true).unwrap();
    log.record(&rec(2));
    let p = dir.path().to_owned();
    tokio::task::spawn_blocking(move || wait_for("a line after shutdown", || files(&p).len() == 2))
        .await
        .unwrap();
    assert!(!task.is_finished(), "the writer stopped at the shutdown signal");

    // The data plane has drained: close writes the rest at once, and the writer ends.
    log.record(&rec(3));
    log.close();
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(1..4));
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    drop(shutdown_tx);
}

#[test]
fn log_files_lists_rotated_files_in_time_order_then_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "usage.jsonl",
        "usage.jsonl.20260305T000000Z",
        "usage.jsonl.20260304T235959Z-12",
        "usage.jsonl.20260304T235959Z",
        "usage.jsonl.20260304T235959Z-2",
        "usage.jsonl.20260304T235959Z.gz",
        "usage.jsonl.1",
        "audit.jsonl",
    ] {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    let names: Vec<String> = log_files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "usage.jsonl.20260304T235959Z",
            "usage.jsonl.20260304T235959Z-2",
            "usage.jsonl.20260304T235959Z-12",
            "usage.jsonl.20260305T000000Z",
            "usage.jsonl",
        ]
    );
}

/// A batch is written whole; the next one starts with room for as much (so steady load does
/// not regrow it by doubling every interval), within `BATCH_ROOM_MAX`, and a quiet interval
/// after a burst starts the following one at `BATCH_CAPACITY` again.
#[test]
fn the_next_batch_has_room_for_the_last_and_a_burst_room_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _writer, _tx) = log_in(dir.path(), Rotation::default());
    let burst = 2_000;
    for i in 0..burst {
        log.record(&rec(i));
    }
    let burst_len = log.shared.pending.lock().len();
    assert!(burst_len > BATCH_CAPACITY);
    log.flush_at(at(DAY1));
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(0..burst));
    assert!(log.shared.pending.lock().capacity() >= burst_len, "room for another burst");

    log.record(&rec(burst));
    log.flush_at(at(DAY1));
    assert_eq!(log.shared.pending.lock().capacity(), BATCH_CAPACITY, "after a quiet interval, small again");
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(0..burst + 1));
}

/// Under steady load the buffer a batch was written from takes the next lines (its pages are
/// resident already), and an interval with nothing to write drops it.
#[test]
fn a_written_batch_buffer_takes_the_next_lines_under_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _writer, _tx) = log_in(dir.path(), Rotation::default());
    let burst = 1_000;
    for i in 0..burst {
        log.record(&rec(i));
    }
    let first = log.shared.pending.lock().as_ptr();
    log.flush_at(at(DAY1));
    for i in burst..2 * burst {
        log.record(&rec(i));
    }
    log.flush_at(at(DAY1));
    assert_eq!(log.shared.pending.lock().as_ptr(), first, "the first batch's buffer is reused");
    assert!(log.shared.sink.lock().spare.capacity() > 0);
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(0..2 * burst));

    log.flush_at(at(DAY1));
    assert_eq!(log.shared.sink.lock().spare.capacity(), 0, "quiet: the spare is dropped");
}

/// A write without a sync puts the lines in the file at once (a `kill -9` cannot lose them);
/// the sync makes them durable, and a rotation or a reopen syncs the old file before leaving it.
#[test]
fn writes_reach_the_file_at_once_and_syncs_settle_them_before_the_file_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let line_len = serde_json::to_vec(&rec(10)).unwrap().len() as u64 + 1;
    let (log, _w, _tx) = log_in(dir.path(), Rotation { max_bytes: 4 * line_len, daily: false });
    let unsynced = |log: &UsageLog| {
        let sink = log.shared.sink.lock();
        sink.size - sink.synced
    };
    let settled = |log: &UsageLog| log.shared.sink.lock().settled_total;
    log.record(&rec(10));
    log.record(&rec(11));
    log.write_at(at(DAY1));
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(10..12), "written before any sync");
    assert_eq!(unsynced(&log), 2 * line_len);

    log.flush_at(at(DAY1));
    assert_eq!(unsynced(&log), 0);

    // Two more unsynced lines, then a batch that does not fit: the full file is synced, then
    // renamed, and the new file starts settled.
    for i in 12..14 {
        log.record(&rec(i));
    }
    log.write_at(at(DAY1 + 1));
    assert_eq!(unsynced(&log), 2 * line_len);
    let before = settled(&log);
    log.record(&rec(14));
    log.write_at(at(DAY1 + 2));
    let files = log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(ids(&files), expected(10..15));
    assert_eq!(
        settled(&log) - before,
        2 * line_len,
        "the old file's unsynced lines were synced before the rename"
    );
    assert_eq!(unsynced(&log), line_len, "only the new file's unsynced line");

    // A reopen (SIGHUP) syncs before it leaves the file; a sync with nothing pending settles.
    let before = settled(&log);
    log.reopen();
    log.record(&rec(15));
    log.write_at(at(DAY1 + 3));
    assert_eq!(settled(&log) - before, line_len, "the reopened file's unsynced line was synced first");
    assert_eq!(unsynced(&log), line_len);
    log.flush_at(at(DAY1 + 3));
    assert_eq!(unsynced(&log), 0);
    log.record(&rec(16));
    log.write_at(at(DAY1 + 4));
    log.flush_at(at(DAY1 + 4));
    assert_eq!(unsynced(&log), 0, "a sync with nothing pending settles what was written");
    assert_eq!(ids(&log_files(dir.path()).unwrap()), expected(10..17));
}
