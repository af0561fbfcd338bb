//! An append-only JSON-lines file under `state_dir`, group-committed: callers push a line into
//! a shared buffer (no disk I/O on the request path) and one background task (started on the
//! runtime of the first append, writing on a blocking thread) writes the buffer out every
//! [`FLUSH_INTERVAL`]. Outside a runtime an append is written at once. Read whole at start; rewritten (temp file + rename) when
//! the store compacts it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use parking_lot::Mutex;

/// How often pending lines reach the file (at most this much is lost on `kill -9`).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One journal file. Cheap to share behind the store that owns it.
pub struct Journal {
    shared: Arc<Shared>,
    flusher: Once,
}

struct Shared {
    path: PathBuf,
    /// Lines appended and not yet written.
    pending: Mutex<Vec<u8>>,
    /// The open file; held by whoever writes, so batches never interleave.
    file: Mutex<Option<File>>,
}

// === impl Journal ===

impl Journal {
    pub fn new(path: PathBuf) -> Journal {
        Journal {
            shared: Arc::new(Shared { path, pending: Mutex::new(Vec::new()), file: Mutex::new(None) }),
            flusher: Once::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The file's text (a missing file is empty).
    pub fn read(&self) -> Result<String, JournalError> {
        match std::fs::read_to_string(&self.shared.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.shared.io(e)),
        }
    }

    /// Queue one line (without its newline). Written by the flusher task.
    pub fn append(&self, line: &[u8]) {
        {
            let mut p = self.shared.pending.lock();
            p.extend_from_slice(line);
            p.push(b'\n');
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => self.flusher.call_once(|| spawn_flusher(&rt, Arc::downgrade(&self.shared))),
            Err(_) => {
                if let Err(e) = self.shared.flush() {
                    tracing::warn!("stored responses: {e}");
                }
            }
        }
    }

    /// Write whatever is pending now.
    pub fn flush(&self) -> Result<(), JournalError> {
        self.shared.flush()
    }

    /// Replace the file's content with `text` (pending lines are written after it).
    pub fn rewrite(&self, text: &[u8]) -> Result<(), JournalError> {
        let s = &self.shared;
        let mut file = s.file.lock();
        if let Some(dir) = s.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| s.io(e))?;
        }
        let tmp = s.path.with_extension("jsonl.tmp");
        let mut f = File::create(&tmp).map_err(|e| s.io(e))?;
        f.write_all(text).and_then(|()| f.sync_all()).map_err(|e| s.io(e))?;
        std::fs::rename(&tmp, &s.path).map_err(|e| s.io(e))?;
        *file = None; // reopened (append) at the next flush
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.shared.flush() {
            tracing::warn!("{e}");
        }
    }
}

// === impl Shared ===

impl Shared {
    fn io(&self, source: std::io::Error) -> JournalError {
        JournalError::Io { path: self.path.clone(), source }
    }

    fn flush(&self) -> Result<(), JournalError> {
        let mut file = self.file.lock();
        let batch = std::mem::take(&mut *self.pending.lock());
        if batch.is_empty() {
            return Ok(());
        }
        if file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            }
            let f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.io(e))?;
            *file = Some(f);
        }
        let r = file.as_mut().map(|f| f.write_all(&batch)).unwrap_or(Ok(()));
        if let Err(e) = r {
            // Keep the lines for the next try, before anything appended since.
            let mut p = self.pending.lock();
            let later = std::mem::replace(&mut *p, batch);
            p.extend_from_slice(&later);
            *file = None;
            return Err(self.io(e));
        }
        Ok(())
    }
}

/// The background writer: flushes every `FLUSH_INTERVAL` until the journal is dropped.
fn spawn_flusher(rt: &tokio::runtime::Handle, shared: Weak<Shared>) {
    rt.spawn(async move {
        loop {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            let Some(s) = shared.upgrade() else { return };
            if s.pending.lock().is_empty() {
                continue;
            }
            match tokio::task::spawn_blocking(move || s.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("stored responses: {e}"),
                Err(e) => tracing::warn!("stored responses: the journal writer failed: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_on_flush_and_a_rewrite_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("sub/j.jsonl"));
        assert_eq!(j.read().unwrap(), "");
        j.append(b"{\"a\":1}");
        j.append(b"{\"a\":2}");
        j.flush().unwrap();
        assert_eq!(j.read().unwrap(), "{\"a\":1}\n{\"a\":2}\n");
        j.rewrite(b"{\"a\":2}\n").unwrap();
        j.append(b"{\"a\":3}");
        j.flush().unwrap();
        assert_eq!(j.read().unwrap(), "{\"a\":2}\n{\"a\":3}\n");
    }

    #[tokio::test]
    async fn the_background_writer_flushes_without_being_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let j = Journal::new(path.clone());
        j.append(b"x");
        assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), "", "not on the caller's path");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap_or_default() != "x\n" {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn outside_a_runtime_an_append_is_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("j.jsonl"));
        j.append(b"y");
        assert_eq!(j.read().unwrap(), "y\n");
    }
}
