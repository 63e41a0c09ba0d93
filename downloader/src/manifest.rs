//! The manifest of an exported snapshot (`.docfleet-snapshot.json` at the root of an S3 mirror or
//! a local directory): the repo, the commit and, per file, its size, blob name (the hub's ETag)
//! and hashes. A mirror read through it yields the same cache as the hub would: same commit, same
//! blob names, same tree listing. `export` writes it last, so a mirror with a manifest is complete.

use std::collections::BTreeMap;

use docfleet_core::models::{HashKind, TreeEntry, TreeListing};
use serde::{Deserialize, Serialize};

/// Object / file name of the manifest at the snapshot root.
pub const MANIFEST_NAME: &str = ".docfleet-snapshot.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub repo_id: String,
    pub commit: String,
    pub files: BTreeMap<String, ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub size: u64,
    /// The blob name in the cache (the hub's ETag).
    pub etag: String,
    pub sha256: String,
    /// The git blob id the hub listed (of the LFS pointer for LFS files).
    pub blob_id: String,
    /// Whether the hub stores it in LFS.
    #[serde(default)]
    pub lfs: bool,
}

impl Manifest {
    pub const FORMAT_VERSION: u32 = 1;

    /// The tree listing the cache gets for this snapshot.
    pub fn listing(&self) -> TreeListing {
        TreeListing::new(self.files.iter().map(|(path, f)| (path.clone(), f.tree_entry())).collect())
    }

    /// Parse and check a manifest (every etag a hash, every path relative).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("not a snapshot manifest: {e}"))?;
        if m.format_version != Self::FORMAT_VERSION {
            return Err(format!(
                "manifest format {} (this downloader reads {})",
                m.format_version,
                Self::FORMAT_VERSION
            ));
        }
        if !docfleet_core::models::is_commit(&m.commit) {
            return Err(format!("manifest commit `{}` is not a 40-hex commit id", m.commit));
        }
        for (path, f) in &m.files {
            docfleet_core::models::validate_relative(path)?;
            if HashKind::of(&f.etag).is_none() || HashKind::of(&f.sha256) != Some(HashKind::Sha256) {
                return Err(format!("manifest entry `{path}` has no usable etag/sha256"));
            }
        }
        Ok(m)
    }
}

impl ManifestFile {
    pub fn tree_entry(&self) -> TreeEntry {
        TreeEntry {
            size: self.size,
            blob_id: self.blob_id.clone(),
            lfs_sha256: self.lfs.then(|| self.sha256.clone()),
            lfs_size: self.lfs.then_some(self.size),
            xet_hash: None,
        }
    }
}

/// A 40-hex id derived from `parts` (sha1), for sources without git commits: the same inputs
/// always give the same snapshot.
pub fn synthetic_commit(parts: &[&str]) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_listing() {
        let mut files = BTreeMap::new();
        files.insert(
            "model.onnx".to_owned(),
            ManifestFile { size: 3, etag: "a".repeat(64), sha256: "a".repeat(64), blob_id: "b".repeat(40), lfs: true },
        );
        let m = Manifest { format_version: 1, repo_id: "org/m".into(), commit: "c".repeat(40), files };
        let back = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        let entry = &back.listing().files["model.onnx"];
        assert_eq!((entry.lfs_sha256.as_deref(), entry.lfs_size), (Some("a".repeat(64).as_str()), Some(3)));
        let bad = serde_json::to_vec(&Manifest { commit: "main".into(), ..m.clone() }).unwrap();
        assert!(Manifest::parse(&bad).unwrap_err().contains("commit"));
    }

    #[test]
    fn synthetic_commits_are_stable_40_hex() {
        let c = synthetic_commit(&["a", "b"]);
        assert!(docfleet_core::models::is_commit(&c));
        assert_eq!(c, synthetic_commit(&["a", "b"]));
        assert_ne!(c, synthetic_commit(&["a", "c"]));
    }
}
