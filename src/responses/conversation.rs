//! The gateway's own conversation store, for Responses requests served by a translated route
//! (Anthropic, Gemini, Bedrock, Chat-only upstreams keep no responses): each response's input
//! items and the response itself (its output items), per owner, so `previous_response_id` can
//! be honoured by prepending the stored history. Bounded per owner by turns, bytes and age
//! (oldest dropped first), and in all by bytes (a turn that would pass that is not kept);
//! mirrored to `state_dir/conversations.jsonl`, each line sealed under the config's
//! `master_key` when one is set (AES-256-GCM, the `enc:` form of config secrets). `store: false`
//! turns are never given to it.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::journal::{Journal, JournalError};
use super::{shard_of, unix, SHARDS};
use crate::config::{MasterKey, Secret};

/// The journal file under `state_dir`.
pub const FILE_NAME: &str = "conversations.jsonl";

/// What each owner may keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_turns: usize,
    /// Serialised size of the kept turns.
    pub max_bytes: usize,
    pub max_age: Duration,
    /// Serialised size of every owner's turns together.
    pub max_total_bytes: usize,
}

impl Default for Bounds {
    /// 10,000 turns, 64 MiB and 30 days per owner; 1 GiB in all.
    fn default() -> Self {
        Bounds {
            max_turns: 10_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: super::affinity::RETENTION,
            max_total_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// One stored response and the input that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The response this one continued (`previous_response_id`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// Unix seconds.
    pub created: u64,
    /// The request's own input items (a string input as one user message).
    pub input: Vec<Value>,
    /// The response object as the client received it (its `output` is replayed).
    pub response: Value,
}

/// Why the history of a response cannot be rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("Previous response with id '{0}' not found.")]
    NotFound(String),
    /// A response earlier in the chain was dropped (age or size bounds).
    #[error("Previous response with id '{0}' is no longer stored (its conversation was trimmed).")]
    Trimmed(String),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Deleted {
        id: String,
        owner: String,
        deleted: bool,
    },
    Turn {
        id: String,
        owner: String,
        #[serde(flatten)]
        turn: Turn,
    },
}

#[derive(Default)]
struct Owned {
    turns: FxHashMap<String, (Arc<Turn>, usize)>,
    /// Ids oldest first (an id already removed is skipped when reached).
    order: VecDeque<String>,
    bytes: usize,
}

type Shard = RwLock<FxHashMap<String, Arc<Mutex<Owned>>>>;

pub struct ConversationStore {
    shards: Box<[Shard]>,
    bounds: Bounds,
    journal: Option<Journal>,
    /// Seals journal lines at rest.
    master: Option<MasterKey>,
    /// Bytes of every owner's turns.
    total: AtomicUsize,
    puts: AtomicU64,
}

/// Expired turns of every owner are swept after this many puts.
const SWEEP_EVERY: u64 = 1024;

// === impl ConversationStore ===

impl ConversationStore {
    pub fn in_memory(bounds: Bounds) -> ConversationStore {
        ConversationStore {
            shards: (0..SHARDS).map(|_| RwLock::new(FxHashMap::default())).collect(),
            bounds,
            journal: None,
            master: None,
            total: AtomicUsize::new(0),
            puts: AtomicU64::new(0),
        }
    }

    /// Load `state_dir/conversations.jsonl` (applying the bounds at `now`); compacted when most
    /// of its lines are dead. With `master`, lines are sealed under it (and sealed lines that
    /// do not open with it, or without one, are skipped).
    pub fn open(
        state_dir: &Path,
        bounds: Bounds,
        now: SystemTime,
        master: Option<MasterKey>,
    ) -> Result<ConversationStore, JournalError> {
        let mut store = ConversationStore::in_memory(bounds);
        store.master = master;
        let journal = Journal::new(state_dir.join(FILE_NAME));
        let text = journal.read()?;
        let mut lines = 0usize;
        let mut unreadable = 0usize;
        for l in text.lines() {
            lines += 1;
            let Some(opened) = store.unseal(l) else {
                unreadable += 1;
                continue;
            };
            let l = opened.as_str();
            match serde_json::from_str::<Line>(l) {
                Ok(Line::Deleted { id, owner, .. }) => {
                    store.remove(&owner, &id);
                }
                Ok(Line::Turn { id, owner, turn }) => {
                    store.insert(&owner, id, turn, l.len(), now);
                }
                Err(_) => {}
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "stored conversations: sealed lines that do not open with this master_key were skipped"
            );
        }
        let live: usize = store.count();
        if unreadable == 0 && lines > 2 * live + 64 {
            let mut out = Vec::new();
            for shard in store.shards.iter() {
                for (owner, o) in shard.read().iter() {
                    let o = o.lock();
                    for id in &o.order {
                        if let Some((t, _)) = o.turns.get(id) {
                            let line =
                                Line::Turn { id: id.clone(), owner: owner.clone(), turn: (**t).clone() };
                            if let Ok(l) = serde_json::to_vec(&line) {
                                out.extend_from_slice(&store.seal(l));
                                out.push(b'\n');
                            }
                        }
                    }
                }
            }
            journal.rewrite(&out)?;
        }
        store.journal = Some(journal);
        Ok(store)
    }

    /// A journal line as written: sealed under the master key when there is one.
    fn seal(&self, line: Vec<u8>) -> Vec<u8> {
        match (&self.master, String::from_utf8(line)) {
            (Some(k), Ok(text)) => {
                serde_json::to_vec(&serde_json::json!({ "sealed": k.encrypt(&text) })).unwrap_or_default()
            }
            (_, Ok(text)) => text.into_bytes(),
            (_, Err(e)) => e.into_bytes(),
        }
    }

    /// A journal line as read: opened when sealed (`None` when it cannot be).
    fn unseal(&self, line: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Sealed {
            sealed: String,
        }
        if !line.starts_with("{\"sealed\":") {
            return Some(line.to_string());
        }
        let s = serde_json::from_str::<Sealed>(line).ok()?;
        Secret(s.sealed).resolve(self.master.as_ref()).ok().map(|p| p.expose().to_string())
    }

    fn owned(&self, owner: &str) -> Option<Arc<Mutex<Owned>>> {
        self.shards[shard_of(owner)].read().get(owner).cloned()
    }

    fn owned_or_new(&self, owner: &str) -> Arc<Mutex<Owned>> {
        if let Some(o) = self.owned(owner) {
            return o;
        }
        self.shards[shard_of(owner)].write().entry(owner.to_string()).or_default().clone()
    }

    /// Keep a turn; `false` when the store as a whole is full.
    fn insert(&self, owner: &str, id: String, turn: Turn, bytes: usize, now: SystemTime) -> bool {
        let o = self.owned_or_new(owner);
        let mut o = o.lock();
        let before = o.bytes;
        if let Some((_, old)) = o.turns.remove(&id) {
            o.bytes -= old;
            o.order.retain(|x| x != &id);
        }
        self.trim(&mut o, now);
        let fits =
            self.total.load(Ordering::Relaxed) + o.bytes + bytes <= self.bounds.max_total_bytes + before;
        if fits {
            o.order.push_back(id.clone());
            o.turns.insert(id, (Arc::new(turn), bytes));
            o.bytes += bytes;
            self.trim(&mut o, now);
        }
        self.account(before, o.bytes);
        fits
    }

    /// An owner went from `before` to `after` bytes.
    fn account(&self, before: usize, after: usize) {
        if after >= before {
            self.total.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Drop expired turns of every owner (and owners left with none).
    pub fn sweep(&self, now: SystemTime) {
        for shard in self.shards.iter() {
            shard.write().retain(|_, owned| {
                let mut o = owned.lock();
                let before = o.bytes;
                self.trim(&mut o, now);
                self.account(before, o.bytes);
                // An owner another request holds (about to insert) stays.
                !o.turns.is_empty() || Arc::strong_count(owned) > 1
            });
        }
    }

    /// Bytes kept, all owners.
    pub fn bytes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Drop the oldest turns until the owner is within its bounds.
    fn trim(&self, o: &mut Owned, now: SystemTime) {
        let b = self.bounds;
        let oldest = unix(now).saturating_sub(b.max_age.as_secs());
        while let Some(id) = o.order.front() {
            let over = o.turns.len() > b.max_turns || o.bytes > b.max_bytes;
            let stale = o.turns.get(id).map(|(t, _)| t.created < oldest);
            match stale {
                None => {}
                Some(stale) if over || stale => {
                    if let Some((_, n)) = o.turns.remove(id) {
                        o.bytes -= n;
                    }
                }
                Some(_) => break,
            }
            o.order.pop_front();
        }
    }

    /// Keep `turn` as response `id` of `owner`.
    pub fn put(&self, owner: &str, id: &str, turn: Turn, now: SystemTime) {
        let line = Line::Turn { id: id.to_string(), owner: owner.to_string(), turn };
        let bytes = serde_json::to_vec(&line).unwrap_or_default();
        let Line::Turn { id, turn, .. } = line else { return };
        if !self.insert(owner, id, turn, bytes.len(), now) {
            tracing::warn!(
                max_total_bytes = self.bounds.max_total_bytes,
                "stored conversations are full: a turn was not kept"
            );
            return;
        }
        if let Some(j) = &self.journal {
            j.append(&self.seal(bytes));
        }
        if self.puts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
    }

    /// Response `id` of `owner`, unless expired (another owner's id reads as unknown).
    pub fn get(&self, owner: &str, id: &str, now: SystemTime) -> Option<Arc<Turn>> {
        let o = self.owned(owner)?;
        let o = o.lock();
        let (t, _) = o.turns.get(id)?;
        (unix(now).saturating_sub(t.created) <= self.bounds.max_age.as_secs()).then(|| t.clone())
    }

    /// Forget response `id` of `owner`; `false` when there is none.
    pub fn remove(&self, owner: &str, id: &str) -> bool {
        let Some(o) = self.owned(owner) else { return false };
        let removed = {
            let mut o = o.lock();
            match o.turns.remove(id) {
                Some((_, n)) => {
                    o.bytes -= n;
                    self.account(n, 0);
                    true
                }
                None => false,
            }
        };
        if removed {
            if let Some(j) = &self.journal {
                let line = Line::Deleted { id: id.to_string(), owner: owner.to_string(), deleted: true };
                if let Ok(l) = serde_json::to_vec(&line) {
                    j.append(&self.seal(l));
                }
            }
        }
        removed
    }

    /// Every item of the conversation up to and including response `id`, oldest first: each
    /// turn's input items, then its response's output items.
    pub fn history(&self, owner: &str, id: &str, now: SystemTime) -> Result<Vec<Value>, HistoryError> {
        let mut chain = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(cur) = next {
            let Some(t) = self.get(owner, &cur, now) else {
                return Err(if chain.is_empty() {
                    HistoryError::NotFound(cur)
                } else {
                    HistoryError::Trimmed(id.to_string())
                });
            };
            if chain.len() > self.bounds.max_turns {
                return Err(HistoryError::Trimmed(id.to_string())); // a cycle cannot be real
            }
            next = t.prev.clone();
            chain.push(t);
        }
        let mut items = Vec::new();
        for t in chain.iter().rev() {
            items.extend(t.input.iter().cloned());
            if let Some(out) = t.response.get("output").and_then(Value::as_array) {
                items.extend(out.iter().cloned());
            }
        }
        Ok(items)
    }

    /// Turns kept, all owners.
    pub fn count(&self) -> usize {
        self.shards.iter().map(|s| s.read().values().map(|o| o.lock().turns.len()).sum::<usize>()).sum()
    }

    pub fn flush(&self) -> Result<(), JournalError> {
        self.journal.as_ref().map(Journal::flush).unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn turn(prev: Option<&str>, created: u64, said: &str, answered: &str) -> Turn {
        Turn {
            prev: prev.map(str::to_string),
            created,
            input: vec![json!({"type": "message", "role": "user", "content": said})],
            response: json!({"id": "x", "output": [{"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": answered}]}]}),
        }
    }

    fn texts(items: &[Value]) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                i["content"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i["content"][0]["text"].to_string())
            })
            .collect()
    }

    #[test]
    fn history_is_every_earlier_input_and_output_in_order() {
        let s = ConversationStore::in_memory(Bounds::default());
        s.put("p", "r1", turn(None, 10, "one", "1"), at(10));
        s.put("p", "r2", turn(Some("r1"), 11, "two", "2"), at(11));
        s.put("p", "r3", turn(Some("r2"), 12, "three", "3"), at(12));
        let h = s.history("p", "r3", at(13)).unwrap();
        assert_eq!(texts(&h), ["one", "\"1\"", "two", "\"2\"", "three", "\"3\""]);
        assert_eq!(s.history("p", "r1", at(13)).unwrap().len(), 2);
        assert_eq!(s.history("q", "r3", at(13)), Err(HistoryError::NotFound("r3".into())), "other owner");
        assert!(s.remove("p", "r2"));
        assert_eq!(s.history("p", "r3", at(13)), Err(HistoryError::Trimmed("r3".into())));
    }

    #[test]
    fn each_owner_is_bounded_by_turns_bytes_and_age() {
        let b = Bounds {
            max_turns: 2,
            max_bytes: 100_000,
            max_age: Duration::from_secs(50),
            max_total_bytes: 1 << 30,
        };
        let s = ConversationStore::in_memory(b);
        for i in 0..4 {
            s.put("p", &format!("r{i}"), turn(None, 100 + i, "x", "y"), at(100 + i));
        }
        s.put("q", "q0", turn(None, 100, "x", "y"), at(100));
        assert_eq!(s.count(), 3, "two for p, one for q");
        assert!(s.get("p", "r1", at(104)).is_none());
        assert!(s.get("p", "r3", at(104)).is_some());
        assert!(s.get("p", "r3", at(160)).is_none(), "older than max_age");
        let b = Bounds {
            max_turns: 100,
            max_bytes: 600,
            max_age: Duration::from_secs(50),
            max_total_bytes: 1 << 30,
        };
        let s = ConversationStore::in_memory(b);
        for i in 0..10 {
            s.put("p", &format!("r{i}"), turn(None, 100, "x", "y"), at(100));
        }
        let kept = s.count();
        assert!((2..10).contains(&kept), "bytes bound the owner: {kept}");
        assert!(s.get("p", "r9", at(100)).is_some(), "the newest stays");
    }

    #[test]
    fn the_whole_store_is_bounded_and_sweeps_expired_turns_of_idle_owners() {
        let b = Bounds {
            max_turns: 100,
            max_bytes: 100_000,
            max_age: Duration::from_secs(50),
            max_total_bytes: 1000,
        };
        let s = ConversationStore::in_memory(b);
        let mut kept = 0;
        for i in 0..20 {
            s.put(&format!("owner{i}"), "r", turn(None, 100, "x", "y"), at(100));
            kept += usize::from(s.get(&format!("owner{i}"), "r", at(100)).is_some());
        }
        assert!((1..20).contains(&kept), "some kept, then full: {kept}");
        assert!(s.bytes() <= 1000, "{}", s.bytes());
        assert!(s.get("owner19", "r", at(100)).is_none(), "not kept once full");
        assert!(s.remove("owner0", "r"));
        let after_remove = s.bytes();
        s.put("late", "r", turn(None, 100, "x", "y"), at(100));
        assert!(s.get("late", "r", at(100)).is_some(), "room again after a delete");
        assert!(s.bytes() > after_remove);
        s.sweep(at(151));
        assert_eq!((s.count(), s.bytes()), (0, 0), "every turn expired");
    }

    #[test]
    fn with_a_master_key_the_journal_holds_no_plaintext_and_reopens_only_with_that_key() {
        const KEY: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";
        let key = || Some(MasterKey::from_base64(KEY).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let s = ConversationStore::open(dir.path(), Bounds::default(), at(10), key()).unwrap();
        s.put("p", "r1", turn(None, 10, "my secret plan", "ok"), at(10));
        s.put("p", "r2", turn(Some("r1"), 11, "more", "fine"), at(11));
        s.flush().unwrap();
        drop(s);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!text.contains("secret") && !text.contains("\"p\""), "{text}");
        let s = ConversationStore::open(dir.path(), Bounds::default(), at(20), key()).unwrap();
        assert_eq!(
            texts(&s.history("p", "r2", at(20)).unwrap()),
            ["my secret plan", "\"ok\"", "more", "\"fine\""]
        );
        drop(s);
        let s = ConversationStore::open(dir.path(), Bounds::default(), at(20), None).unwrap();
        assert_eq!(s.count(), 0, "sealed lines need the key");
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 2, "and are not compacted away without it");
    }

    #[test]
    fn turns_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = ConversationStore::open(dir.path(), Bounds::default(), at(10), None).unwrap();
        s.put("p", "r1", turn(None, 10, "one", "1"), at(10));
        s.put("p", "r2", turn(Some("r1"), 11, "two", "2"), at(11));
        s.put("p", "gone", turn(None, 11, "x", "y"), at(11));
        assert!(s.remove("p", "gone"));
        s.flush().unwrap();
        drop(s);
        let s = ConversationStore::open(dir.path(), Bounds::default(), at(20), None).unwrap();
        assert_eq!(s.count(), 2);
        assert_eq!(texts(&s.history("p", "r2", at(20)).unwrap()), ["one", "\"1\"", "two", "\"2\""]);
    }
}
