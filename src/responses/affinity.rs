//! Which target created each stored response, and which owner (project) it belongs to: a
//! response stored by a provider lives in that one account, so follow-ups and reads must go
//! back there, and only for the owner. A sharded map (read-locked per lookup), mirrored to
//! `state_dir/responses.jsonl` (append-only, loaded at start, compacted when mostly dead),
//! bounded by age (`RETENTION`, 30 days).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::journal::{Journal, JournalError};
use super::{shard_of, unix, SHARDS};

/// How long a record is kept by default (OpenAI keeps stored responses for 30 days).
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The journal file under `state_dir`.
pub const FILE_NAME: &str = "responses.jsonl";

/// Expired records are swept after this many inserts.
const SWEEP_EVERY: u64 = 4096;

/// Where a response was created and who owns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Affinity {
    /// `project:<name>` or `key:<id>` (see `super::owner`).
    pub owner: String,
    /// The provider (config name) and upstream model that created it.
    pub provider: String,
    pub model: String,
    /// The alias the request named.
    pub alias: String,
    /// Unix seconds.
    pub created: u64,
}

/// One journal line: a record, or the deletion of one.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Deleted {
        id: String,
        deleted: bool,
    },
    Record {
        id: String,
        #[serde(flatten)]
        a: Affinity,
    },
}

type Shard = RwLock<FxHashMap<String, Affinity>>;

pub struct AffinityStore {
    shards: Box<[Shard]>,
    retention: Duration,
    journal: Option<Journal>,
    inserts: AtomicU64,
}

// === impl AffinityStore ===

impl AffinityStore {
    /// A store kept in memory only (tests, or no usable state dir).
    pub fn in_memory(retention: Duration) -> AffinityStore {
        AffinityStore {
            shards: (0..SHARDS).map(|_| RwLock::new(FxHashMap::default())).collect(),
            retention,
            journal: None,
            inserts: AtomicU64::new(0),
        }
    }

    /// Load `state_dir/responses.jsonl` (records older than `retention` at `now` are dropped;
    /// the file is compacted when most of its lines are dead).
    pub fn open(
        state_dir: &Path,
        retention: Duration,
        now: SystemTime,
    ) -> Result<AffinityStore, JournalError> {
        let mut store = AffinityStore::in_memory(retention);
        let journal = Journal::new(state_dir.join(FILE_NAME));
        let text = journal.read()?;
        let mut lines = 0usize;
        for l in text.lines() {
            lines += 1;
            match serde_json::from_str::<Line>(l) {
                Ok(Line::Deleted { id, .. }) => {
                    store.shard(&id).write().remove(&id);
                }
                Ok(Line::Record { id, a }) => {
                    if !store.expired(&a, now) {
                        store.shard(&id).write().insert(id, a);
                    }
                }
                Err(_) => {} // a torn last line after a crash
            }
        }
        let live = store.len();
        if lines > 2 * live + 64 {
            let mut out = Vec::with_capacity(live * 160);
            for shard in store.shards.iter() {
                for (id, a) in shard.read().iter() {
                    let _ = serde_json::to_writer(&mut out, &Line::Record { id: id.clone(), a: a.clone() });
                    out.push(b'\n');
                }
            }
            journal.rewrite(&out)?;
        }
        store.journal = Some(journal);
        Ok(store)
    }

    fn shard(&self, id: &str) -> &Shard {
        &self.shards[shard_of(id)]
    }

    fn expired(&self, a: &Affinity, now: SystemTime) -> bool {
        unix(now).saturating_sub(a.created) > self.retention.as_secs()
    }

    /// Record that `id` was created by `a.provider`/`a.model` for `a.owner`.
    pub fn record(&self, id: &str, a: Affinity, now: SystemTime) {
        if let Some(j) = &self.journal {
            if let Ok(line) = serde_json::to_vec(&Line::Record { id: id.to_string(), a: a.clone() }) {
                j.append(&line);
            }
        }
        self.shard(id).write().insert(id.to_string(), a);
        if self.inserts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
    }

    /// The record of `id` when `owner` owns it and it has not expired (another owner's id
    /// reads as unknown).
    pub fn get(&self, id: &str, owner: &str, now: SystemTime) -> Option<Affinity> {
        let shard = self.shard(id).read();
        let a = shard.get(id)?;
        (a.owner == owner && !self.expired(a, now)).then(|| a.clone())
    }

    /// Keep a record another instance made (read from Redis) in memory, not in the journal:
    /// that instance's journal and Redis hold it.
    pub fn cache(&self, id: &str, a: Affinity) {
        self.shard(id).write().entry(id.to_string()).or_insert(a);
    }

    /// How long a record is kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Forget `id` (its owner deleted it). `false` when `owner` has no such record.
    pub fn remove(&self, id: &str, owner: &str) -> bool {
        let mut shard = self.shard(id).write();
        if shard.get(id).is_none_or(|a| a.owner != owner) {
            return false;
        }
        shard.remove(id);
        drop(shard);
        if let Some(j) = &self.journal {
            if let Ok(line) = serde_json::to_vec(&Line::Deleted { id: id.to_string(), deleted: true }) {
                j.append(&line);
            }
        }
        true
    }

    /// Drop every expired record.
    pub fn sweep(&self, now: SystemTime) {
        for shard in self.shards.iter() {
            shard.write().retain(|_, a| unix(now).saturating_sub(a.created) <= self.retention.as_secs());
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write pending journal lines now (tests, shutdown).
    pub fn flush(&self) -> Result<(), JournalError> {
        self.journal.as_ref().map(Journal::flush).unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: &str, provider: &str, created: u64) -> Affinity {
        Affinity {
            owner: owner.into(),
            provider: provider.into(),
            model: "m".into(),
            alias: "a".into(),
            created,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn only_the_owner_finds_a_record_and_only_until_it_expires() {
        let s = AffinityStore::in_memory(Duration::from_secs(100));
        s.record("resp_1", rec("project:a", "pa", 1000), at(1000));
        assert_eq!(s.get("resp_1", "project:a", at(1050)).map(|a| a.provider), Some("pa".into()));
        assert_eq!(s.get("resp_1", "project:b", at(1050)), None);
        assert_eq!(s.get("resp_2", "project:a", at(1050)), None);
        assert_eq!(s.get("resp_1", "project:a", at(1101)), None, "expired");
        assert!(!s.remove("resp_1", "project:b"));
        assert!(s.remove("resp_1", "project:a"));
        assert_eq!(s.get("resp_1", "project:a", at(1050)), None);
        s.record("resp_3", rec("project:a", "pa", 1000), at(1000));
        s.sweep(at(2000));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn records_and_deletions_survive_a_restart_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let ret = Duration::from_secs(1000);
        let s = AffinityStore::open(dir.path(), ret, at(5000)).unwrap();
        s.record("resp_old", rec("key:k", "pa", 3000), at(5000));
        s.record("resp_a", rec("key:k", "pa", 5000), at(5000));
        s.record("resp_b", rec("project:p", "pb", 5000), at(5000));
        s.record("resp_gone", rec("key:k", "pb", 5000), at(5000));
        assert!(s.remove("resp_gone", "key:k"));
        s.flush().unwrap();
        drop(s);
        let s = AffinityStore::open(dir.path(), ret, at(5100)).unwrap();
        assert_eq!(s.len(), 2, "resp_old expired, resp_gone deleted");
        assert_eq!(s.get("resp_a", "key:k", at(5100)), Some(rec("key:k", "pa", 5000)));
        assert_eq!(s.get("resp_b", "project:p", at(5100)).map(|a| a.provider), Some("pb".into()));
        assert_eq!(s.get("resp_gone", "key:k", at(5100)), None);
    }

    #[test]
    fn a_mostly_dead_journal_is_compacted_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = AffinityStore::open(dir.path(), Duration::from_secs(10), at(0)).unwrap();
        for i in 0..200 {
            s.record(&format!("resp_{i}"), rec("key:k", "pa", 0), at(0));
        }
        s.record("resp_live", rec("key:k", "pa", 100), at(100));
        s.flush().unwrap();
        drop(s);
        let s = AffinityStore::open(dir.path(), Duration::from_secs(10), at(105)).unwrap();
        assert_eq!(s.len(), 1);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("resp_live"));
    }
}
