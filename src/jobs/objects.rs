//! Who owns each file, batch, fine-tuning job, video and message batch created through the
//! gateway: `state_dir/objects.jsonl`, one JSON line per event, written and synced before the
//! answer that reveals the id leaves the gateway (so a crash never loses an owner), read
//! whole at start. An id with no record, or another owner's, is unknown to the caller (404).
//!
//! Events: `own` (an id and its owner, kind, provider, and the alias whose prices apply),
//! `charged` (a finished job's usage was recorded: never again), `gone` (deleted).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    File,
    Batch,
    FineTuningJob,
    Video,
    MessageBatch,
}

/// What the gateway knows of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub kind: ObjectKind,
    /// `project:<name>` or `key:<id>`.
    pub owner: String,
    pub provider: String,
    /// The alias whose prices apply to its usage (a batch file's, a job's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Unix seconds.
    pub created: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub charged: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Own {
        id: String,
        #[serde(flatten)]
        object: Object,
    },
    Charged {
        id: String,
    },
    Gone {
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
}

/// The ownership record, in memory and in `objects.jsonl`.
pub struct ObjectStore {
    path: PathBuf,
    /// The map and the file, under one lock: events reach the file in the map's order.
    inner: Mutex<HashMap<String, Object>>,
}

impl ObjectStore {
    /// Read `dir/objects.jsonl` (a missing file is an empty record; a torn last line, from a
    /// crash mid-write, is skipped).
    pub fn open(dir: &Path) -> ObjectStore {
        let path = dir.join("objects.jsonl");
        let mut map = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Line>(line) {
                    Ok(Line::Own { id, object }) => {
                        map.insert(id, object);
                    }
                    Ok(Line::Charged { id }) => {
                        if let Some(o) = map.get_mut(&id) {
                            o.charged = true;
                        }
                    }
                    Ok(Line::Gone { id }) => {
                        map.remove(&id);
                    }
                    Err(e) => tracing::warn!("{}: skipped a line: {e}", path.display()),
                }
            }
        }
        ObjectStore { path, inner: Mutex::new(map) }
    }

    /// The object `id` if `owner` owns it.
    pub fn get(&self, id: &str, owner: &str) -> Option<Object> {
        self.inner.lock().get(id).filter(|o| o.owner == owner).cloned()
    }

    /// The object `id`, whoever owns it.
    pub fn find(&self, id: &str) -> Option<Object> {
        self.inner.lock().get(id).cloned()
    }

    /// Keep a record another instance made (read from Redis) in memory, not in the file: that
    /// instance's file and Redis hold it.
    pub fn cache(&self, id: &str, object: Object) {
        self.inner.lock().entry(id.to_string()).or_insert(object);
    }

    /// Whether `owner` owns `id`.
    pub fn owns(&self, id: &str, owner: &str) -> bool {
        self.inner.lock().get(id).is_some_and(|o| o.owner == owner)
    }

    /// Record a new object (durable when this returns `Ok`). An id already recorded keeps its
    /// first owner: a provider never reuses ids, and a second claim must not take one over.
    pub fn own(&self, id: &str, object: Object) -> Result<bool, StoreError> {
        let mut map = self.inner.lock();
        if map.contains_key(id) {
            return Ok(false);
        }
        self.append(&Line::Own { id: id.to_string(), object: object.clone() })?;
        map.insert(id.to_string(), object);
        Ok(true)
    }

    /// Mark a finished job's usage as recorded: `Ok(true)` exactly once per id (durable
    /// before it answers), `Ok(false)` when it already was (or the id is unknown).
    pub fn charge_once(&self, id: &str) -> Result<bool, StoreError> {
        let mut map = self.inner.lock();
        match map.get_mut(id) {
            Some(o) if !o.charged => {
                self.append(&Line::Charged { id: id.to_string() })?;
                o.charged = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Forget a deleted object.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut map = self.inner.lock();
        if map.remove(id).is_some() {
            self.append(&Line::Gone { id: id.to_string() })?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line, appended and synced (object creations are rare; each is worth a sync).
    fn append(&self, line: &Line) -> Result<(), StoreError> {
        let err = |source| StoreError { path: self.path.clone(), source };
        let mut text = serde_json::to_vec(line).map_err(|e| err(std::io::Error::other(e)))?;
        text.push(b'\n');
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path).map_err(err)?;
        f.write_all(&text).and_then(|()| f.sync_data()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(owner: &str) -> Object {
        Object {
            kind: ObjectKind::Batch,
            owner: owner.into(),
            provider: "openai".into(),
            alias: Some("cheap".into()),
            created: 1,
            charged: false,
        }
    }

    #[test]
    fn owners_charges_and_deletions_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(dir.path());
        assert!(s.own("batch_1", obj("project:a")).unwrap());
        assert!(!s.own("batch_1", obj("project:b")).unwrap(), "the first owner keeps it");
        assert!(s.own("file_1", obj("project:a")).unwrap());
        assert!(s.owns("batch_1", "project:a") && !s.owns("batch_1", "project:b"));
        assert!(s.charge_once("batch_1").unwrap());
        assert!(!s.charge_once("batch_1").unwrap(), "charged once");
        s.remove("file_1").unwrap();
        drop(s);
        // A torn last line (a crash mid-write) is skipped.
        let mut f = OpenOptions::new().append(true).open(dir.path().join("objects.jsonl")).unwrap();
        f.write_all(b"{\"op\":\"own\",\"id\":\"x\"").unwrap();
        let s = ObjectStore::open(dir.path());
        assert_eq!(s.get("batch_1", "project:a").map(|o| o.charged), Some(true));
        assert!(!s.charge_once("batch_1").unwrap(), "still charged after a restart");
        assert!(s.get("file_1", "project:a").is_none(), "deleted");
        assert_eq!(s.len(), 1);
    }
}
