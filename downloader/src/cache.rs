//! Writing the Hugging Face cache layout. Blobs are written by the sources (`blobs/<etag>.incomplete`,
//! verified, renamed); this module publishes a snapshot: the tree listing, then
//! `snapshots/<commit>/` built aside (relative symlinks, as `huggingface_hub` makes them) and
//! renamed into place in one step, then `refs/<revision>`. A worker resolving the revision sees
//! either the previous state or the complete snapshot, never a part of it.

use std::path::{Path, PathBuf};

use docfleet_core::models::{RepoCache, TreeListing, is_commit, snapshot_link_target, write_atomic};

use crate::{Error, Result};

/// The blob a snapshot file links to (its etag), when it is a link into `blobs/`.
pub fn linked_blob(rc: &RepoCache, commit: &str, file: &str) -> Option<String> {
    let target = std::fs::read_link(rc.snapshot(commit).join(file)).ok()?;
    let name = target.file_name()?.to_str()?.to_owned();
    (target.to_str()? == snapshot_link_target(file, &name)).then_some(name)
}

/// Publish `files` (path → blob etag, every blob already complete) as `snapshots/<commit>`, with
/// `listing` merged into `trees/<commit>.json`, then point `refs/<revision>` at the commit
/// (unless the revision is the commit itself). Files already in an existing snapshot stay.
pub fn publish(
    rc: &RepoCache,
    commit: &str,
    revision: &str,
    files: &[(String, String)],
    listing: &TreeListing,
) -> Result<()> {
    for (file, etag) in files {
        if !rc.has_blob(etag) {
            return Err(Error::Integrity(format!("internal: blob {etag} of `{file}` is not complete; not publishing")));
        }
    }
    write_listing(rc, commit, listing)?;
    let snapshot = rc.snapshot(commit);
    let pending: Vec<&(String, String)> =
        files.iter().filter(|(file, etag)| linked_blob(rc, commit, file).as_deref() != Some(etag.as_str())).collect();
    if !pending.is_empty() {
        let staging = stage(rc, commit, &pending)?;
        let parent = snapshot.parent().expect("snapshots/ parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        match std::fs::rename(&staging, &snapshot) {
            Ok(()) => {}
            Err(_) if snapshot.is_dir() => merge_into_existing(rc, commit, &staging, &snapshot, &pending)?,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(Error::io(format!("publishing {}", snapshot.display()), e));
            }
        }
    }
    if !is_commit(revision) && rc.read_ref(revision).as_deref() != Some(commit) {
        let path = rc.ref_path(revision);
        write_atomic(&path, commit.as_bytes()).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// Point `refs/<revision>` at `commit` (a snapshot that is already complete).
pub fn write_ref(rc: &RepoCache, revision: &str, commit: &str) -> Result<()> {
    if is_commit(revision) || rc.read_ref(revision).as_deref() == Some(commit) {
        return Ok(());
    }
    let path = rc.ref_path(revision);
    write_atomic(&path, commit.as_bytes()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Merge `listing` into `trees/<commit>.json` (entries already there keep hashes ours lack).
pub fn write_listing(rc: &RepoCache, commit: &str, listing: &TreeListing) -> Result<()> {
    let mut merged = rc.read_tree_listing(commit).unwrap_or_else(|| TreeListing::new(Default::default()));
    let before = merged.clone();
    for (path, entry) in &listing.files {
        let mut entry = entry.clone();
        if let Some(old) = merged.files.get(path) {
            if entry.lfs_sha256.is_none() && old.lfs_sha256.is_some() && old.size == entry.size {
                entry.lfs_sha256 = old.lfs_sha256.clone();
                entry.lfs_size = old.lfs_size;
            }
            if entry.xet_hash.is_none() {
                entry.xet_hash = old.xet_hash.clone();
            }
        }
        merged.files.insert(path.clone(), entry);
    }
    if merged == before && rc.tree_listing(commit).is_file() {
        return Ok(());
    }
    let path = rc.tree_listing(commit);
    let json = serde_json::to_vec_pretty(&merged).expect("listing serializes");
    write_atomic(&path, &json).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn unique() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}.{n}", std::process::id())
}

/// Build the links in a private directory beside `snapshots/` (same filesystem). Link texts are
/// computed for the final place, so they resolve once renamed.
fn stage(rc: &RepoCache, commit: &str, files: &[&(String, String)]) -> Result<PathBuf> {
    let staging = rc.work_dir().join("staging").join(format!("{commit}.{}", unique()));
    for (file, etag) in files {
        let link = staging.join(file);
        let dir = link.parent().expect("file in staging");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        std::os::unix::fs::symlink(snapshot_link_target(file, etag), &link)
            .map_err(|e| Error::io(format!("linking {}", link.display()), e))?;
    }
    Ok(staging)
}

/// `snapshots/<commit>` already exists (an earlier, partial download, or `huggingface_hub`'s): copy
/// its entries into the staging directory and swap the two atomically (`renameat2
/// RENAME_EXCHANGE`); where the filesystem cannot, replace file by file (each link still appears
/// whole).
fn merge_into_existing(
    rc: &RepoCache,
    commit: &str,
    staging: &Path,
    snapshot: &Path,
    ours: &[&(String, String)],
) -> Result<()> {
    let ours_set: std::collections::HashSet<&str> = ours.iter().map(|(f, _)| f.as_str()).collect();
    for rel in docfleet_core::models::walk_files(snapshot) {
        if ours_set.contains(rel.as_str()) {
            continue;
        }
        let (from, to) = (snapshot.join(&rel), staging.join(&rel));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let copied = match std::fs::read_link(&from) {
            Ok(target) => std::os::unix::fs::symlink(target, &to),
            Err(_) => std::fs::hard_link(&from, &to).or_else(|_| std::fs::copy(&from, &to).map(|_| ())),
        };
        copied.map_err(|e| Error::io(format!("copying {} into the new snapshot", from.display()), e))?;
    }
    if exchange(staging, snapshot).is_ok() {
        let _ = std::fs::remove_dir_all(staging);
        return Ok(());
    }
    for (file, etag) in ours {
        let dest = snapshot.join(file);
        let tmp =
            dest.with_file_name(format!(".{}.docfleet-{}", dest.file_name().unwrap().to_string_lossy(), unique()));
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        std::os::unix::fs::symlink(snapshot_link_target(file, etag), &tmp)
            .and_then(|()| std::fs::rename(&tmp, &dest))
            .map_err(|e| Error::io(format!("linking {}", dest.display()), e))?;
    }
    let _ = std::fs::remove_dir_all(staging);
    tracing::debug!(repo = %rc.repo_id, commit, "merged into an existing snapshot file by file");
    Ok(())
}

/// Atomically swap two paths (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Remove leftovers of runs that died while staging (only this repo's work area; never blobs).
pub fn clean_work_dir(rc: &RepoCache) {
    let _ = std::fs::remove_dir_all(rc.work_dir().join("staging"));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use docfleet_core::models::TreeEntry;

    use super::*;

    const COMMIT: &str = "1111111111111111111111111111111111111111";

    fn blob(rc: &RepoCache, etag: &str, bytes: &[u8]) {
        std::fs::create_dir_all(rc.blobs()).unwrap();
        std::fs::write(rc.blob(etag), bytes).unwrap();
    }

    fn listing(files: &[(&str, u64)]) -> TreeListing {
        TreeListing::new(
            files
                .iter()
                .map(|(p, s)| (p.to_string(), TreeEntry { size: *s, blob_id: "0".repeat(40), ..TreeEntry::default() }))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn publishes_relative_links_then_the_ref() {
        let dir = tempfile::tempdir().unwrap();
        let rc = RepoCache::new(dir.path(), "org/m");
        blob(&rc, "e1", b"one");
        blob(&rc, "e2", b"two!");
        let files = vec![("a.bin".to_owned(), "e1".to_owned()), ("sub/b.json".to_owned(), "e2".to_owned())];
        publish(&rc, COMMIT, "main", &files, &listing(&[("a.bin", 3), ("sub/b.json", 4)])).unwrap();
        let snap = rc.snapshot(COMMIT);
        assert_eq!(std::fs::read_link(snap.join("sub/b.json")).unwrap(), Path::new("../../../blobs/e2"));
        assert_eq!(std::fs::read(snap.join("a.bin")).unwrap(), b"one");
        assert_eq!(rc.read_ref("main").as_deref(), Some(COMMIT));
        assert_eq!(rc.read_tree_listing(COMMIT).unwrap().files.len(), 2);
        assert_eq!(linked_blob(&rc, COMMIT, "sub/b.json").as_deref(), Some("e2"));
        assert!(!rc.work_dir().join("staging").read_dir().unwrap().any(|_| true), "staging cleaned up");
    }

    #[test]
    fn exchange_swaps_two_directories_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("from_a"), b"a").unwrap();
        std::fs::write(b.join("from_b"), b"b").unwrap();
        exchange(&a, &b).unwrap();
        assert!(a.join("from_b").exists() && !a.join("from_a").exists());
        assert!(b.join("from_a").exists() && !b.join("from_b").exists());
        let err = exchange(&a, &dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn merges_into_an_existing_snapshot_keeping_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let rc = RepoCache::new(dir.path(), "org/m");
        blob(&rc, "e1", b"one");
        blob(&rc, "e2", b"two");
        publish(&rc, COMMIT, COMMIT, &[("a.bin".into(), "e1".into())], &listing(&[("a.bin", 3)])).unwrap();
        assert!(rc.read_ref("main").is_none(), "a pinned commit writes no ref");
        publish(&rc, COMMIT, "v1", &[("b.bin".into(), "e2".into())], &listing(&[("b.bin", 3)])).unwrap();
        let snap = rc.snapshot(COMMIT);
        assert_eq!(std::fs::read(snap.join("a.bin")).unwrap(), b"one");
        assert_eq!(std::fs::read(snap.join("b.bin")).unwrap(), b"two");
        assert_eq!(rc.read_tree_listing(COMMIT).unwrap().files.len(), 2, "listings merge");
        assert_eq!(rc.read_ref("v1").as_deref(), Some(COMMIT));
    }

    #[test]
    fn refuses_an_incomplete_blob() {
        let dir = tempfile::tempdir().unwrap();
        let rc = RepoCache::new(dir.path(), "org/m");
        blob(&rc, "e1", b"one");
        std::fs::write(rc.incomplete("e1"), b"").unwrap();
        let err = publish(&rc, COMMIT, "main", &[("a".into(), "e1".into())], &listing(&[])).unwrap_err();
        assert!(matches!(err, Error::Integrity(_)));
        assert!(!rc.snapshot(COMMIT).exists() && rc.read_ref("main").is_none());
    }
}
