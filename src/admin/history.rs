//! Config history under `state_dir/config/`: every config that became the running config, as a
//! numbered version (`000042.yaml`, the full YAML with secrets sealed or fingerprinted, and
//! `000042.json`, its metadata: SHA-256, source, actor, time). The newest `KEEP_VERSIONS` are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::{sync_dir, write_atomic};
use super::host::{hex, sha256};

/// How many versions are kept (older ones are deleted as new ones arrive).
pub const KEEP_VERSIONS: usize = 100;

/// What made a config the running config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An admin API mutation.
    Api,
    /// The config file changed on disk (or `POST /admin/reload`).
    File,
    /// SIGHUP re-read the file.
    Sighup,
    /// `POST /admin/config/rollback`.
    Rollback,
    /// The config the gateway started with.
    Start,
}

/// One version's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct VersionMeta {
    pub version: u64,
    /// Lowercase hex SHA-256 of the stored YAML.
    pub sha256: String,
    pub source: Source,
    /// Admin token id, or `file`.
    pub actor: String,
    /// RFC 3339 UTC.
    pub time: String,
    /// Size of the stored YAML.
    pub bytes: usize,
}

/// The versions on disk, oldest first.
pub struct History {
    dir: PathBuf,
    versions: Vec<VersionMeta>,
}

// === impl History ===

impl History {
    /// Open (creating) the directory and index the versions in it.
    pub fn open(dir: &Path) -> std::io::Result<History> {
        std::fs::create_dir_all(dir)?;
        let mut versions = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let Ok(meta) = serde_json::from_slice::<VersionMeta>(&bytes) else { continue };
            if Self::yaml_path(dir, meta.version).exists() {
                versions.push(meta);
            }
        }
        versions.sort_by_key(|m| m.version);
        Ok(History { dir: dir.to_path_buf(), versions })
    }

    /// Oldest first.
    pub fn list(&self) -> &[VersionMeta] {
        &self.versions
    }

    pub fn latest(&self) -> Option<&VersionMeta> {
        self.versions.last()
    }

    pub fn get(&self, version: u64) -> Option<&VersionMeta> {
        self.versions.iter().find(|m| m.version == version)
    }

    /// The stored YAML of a version (`None` when there is no such version).
    pub fn text(&self, version: u64) -> std::io::Result<Option<String>> {
        if self.get(version).is_none() {
            return Ok(None);
        }
        std::fs::read_to_string(Self::yaml_path(&self.dir, version)).map(Some)
    }

    /// Store a new version (YAML, then its metadata, both durable), then prune the oldest.
    pub fn store(
        &mut self,
        text: &str,
        source: Source,
        actor: &str,
        time: String,
    ) -> std::io::Result<VersionMeta> {
        let version = self.latest().map_or(1, |m| m.version + 1);
        let meta = VersionMeta {
            version,
            sha256: hex(&sha256(text.as_bytes())),
            source,
            actor: actor.to_string(),
            time,
            bytes: text.len(),
        };
        write_atomic(&Self::yaml_path(&self.dir, version), text.as_bytes())?;
        let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
        write_atomic(&Self::meta_path(&self.dir, version), &json)?;
        self.versions.push(meta.clone());
        while self.versions.len() > KEEP_VERSIONS {
            let old = self.versions.remove(0);
            let _ = std::fs::remove_file(Self::meta_path(&self.dir, old.version));
            let _ = std::fs::remove_file(Self::yaml_path(&self.dir, old.version));
        }
        Ok(meta)
    }

    /// Undo `store` of the latest version (when what follows it failed).
    pub fn forget_latest(&mut self) {
        if let Some(m) = self.versions.pop() {
            let _ = std::fs::remove_file(Self::meta_path(&self.dir, m.version));
            let _ = std::fs::remove_file(Self::yaml_path(&self.dir, m.version));
            let _ = sync_dir(&self.dir);
        }
    }

    fn yaml_path(dir: &Path, version: u64) -> PathBuf {
        dir.join(format!("{version:06}.yaml"))
    }

    fn meta_path(dir: &Path, version: u64) -> PathBuf {
        dir.join(format!("{version:06}.json"))
    }
}

/// A unified line diff of two texts (3 lines of context), headed `a` and `b`.
pub fn unified_diff(old: &str, new: &str, a: &str, b: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(a, b).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_kept_across_reopen_and_pruned_to_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        assert!(h.latest().is_none());
        for i in 0..KEEP_VERSIONS + 5 {
            let m = h.store(&format!("listen: x{i}\n"), Source::Api, "alice", "t".into()).unwrap();
            assert_eq!(m.version, i as u64 + 1);
        }
        let h = History::open(dir.path()).unwrap();
        assert_eq!(h.list().len(), KEEP_VERSIONS);
        assert_eq!(h.list()[0].version, 6);
        assert_eq!(h.latest().unwrap().version, KEEP_VERSIONS as u64 + 5);
        assert_eq!(h.text(6).unwrap().as_deref(), Some("listen: x5\n"));
        assert_eq!(h.text(5).unwrap(), None);
        assert_eq!(h.get(6).unwrap().sha256, hex(&sha256(b"listen: x5\n")));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2 * KEEP_VERSIONS);
    }

    #[test]
    fn the_diff_is_a_unified_line_diff() {
        let d = unified_diff("a: 1\nb: 2\nc: 3\n", "a: 1\nb: 5\nc: 3\n", "v1", "v2");
        assert!(d.starts_with("--- v1\n+++ v2\n@@ -1,3 +1,3 @@\n"), "{d}");
        assert!(d.contains("\n-b: 2\n+b: 5\n"), "{d}");
    }
}
