//! Stored responses (the Responses API's `store`, `previous_response_id` and
//! `GET/DELETE /v1/responses/{id}`): which target created each response and which owner it
//! belongs to (`affinity`), the gateway's own conversation store for translated routes
//! (`conversation`), and reading ids and usage off a Responses answer (`observe`). No I/O on
//! the request path: both stores are in memory, mirrored to `state_dir` by a journal writer.

pub mod affinity;
pub mod conversation;
pub mod journal;
pub mod observe;

use std::path::Path;
use std::time::SystemTime;

use crate::admission::Principal;

pub use self::affinity::{Affinity, AffinityStore};
pub use self::conversation::{Bounds, ConversationStore, HistoryError, Turn};
pub use self::observe::StreamObserver;

/// Shards of each map.
const SHARDS: usize = 16;

/// Both stores, shared by every request.
pub struct Responses {
    pub affinity: AffinityStore,
    pub conversations: ConversationStore,
}

// === impl Responses ===

impl Responses {
    /// Load both stores from `state_dir` (conversations sealed under `master` when given); a
    /// store that cannot be read starts empty and in memory only (logged), rather than keeping
    /// the gateway down.
    pub fn open(state_dir: &Path, now: SystemTime, master: Option<crate::config::MasterKey>) -> Responses {
        let affinity = AffinityStore::open(state_dir, affinity::RETENTION, now).unwrap_or_else(|e| {
            tracing::warn!("stored responses: {e}; kept in memory only");
            AffinityStore::in_memory(affinity::RETENTION)
        });
        let conversations = ConversationStore::open(state_dir, Bounds::default(), now, master)
            .unwrap_or_else(|e| {
                tracing::warn!("stored conversations: {e}; kept in memory only");
                ConversationStore::in_memory(Bounds::default())
            });
        Responses { affinity, conversations }
    }

    pub fn in_memory() -> Responses {
        Responses {
            affinity: AffinityStore::in_memory(affinity::RETENTION),
            conversations: ConversationStore::in_memory(Bounds::default()),
        }
    }
}

/// Who owns the responses a principal creates: its project, else its key.
pub fn owner(p: &Principal) -> String {
    match p.project() {
        Some(project) => format!("project:{project}"),
        None => format!("key:{}", p.id()),
    }
}

fn shard_of(key: &str) -> usize {
    use std::hash::BuildHasher;
    (rustc_hash::FxBuildHasher.hash_one(key) >> 16) as usize % SHARDS
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
