//! The local directory source (`kind = "local"`, `url = "/path"`): a directory holding the repo's
//! files — an exported snapshot (with `.docfleet-snapshot.json`: the hub's commit and blob names,
//! every file checked against its sha256), or any plain folder (commit derived from the files'
//! paths, sizes and modification times, so an unchanged folder is recognised without reading it;
//! blobs named by sha256).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use docfleet_core::models::{RepoCache, TreeEntry, TreeListing, is_commit, select_files, walk_files};

use crate::fetch::{Ctx, SourceResult, Target, missing_configured, selection_error, snapshot_present};
use crate::manifest::{MANIFEST_NAME, Manifest, synthetic_commit};
use crate::progress::Progress;
use crate::transfer::copy_hashing;
use crate::{Error, Result, cache, check_space, free_bytes};

pub async fn fetch(ctx: &Ctx, t: &Target, rc: &RepoCache, progress: &Progress) -> Result<SourceResult> {
    let repo = t.repo.clone();
    let dir = PathBuf::from(repo.source.url.clone().unwrap_or_default());
    if !dir.is_dir() {
        return Err(Error::NotFound(format!("{} is not a directory (models.{}.source.url)", dir.display(), t.name)));
    }
    let manifest = match std::fs::read(dir.join(MANIFEST_NAME)) {
        Ok(bytes) => Some(
            Manifest::parse(&bytes)
                .map_err(|e| Error::Source(format!("{}: {e}", dir.join(MANIFEST_NAME).display())))?,
        ),
        Err(_) => None,
    };
    let available: Vec<String> = match &manifest {
        Some(m) => m.files.keys().cloned().collect(),
        None => walk_files(&dir).into_iter().filter(|p| p != MANIFEST_NAME && !p.starts_with(".git/")).collect(),
    };
    let selected = select_files(&repo, &available);
    let what = dir.display().to_string();
    if let Some(e) = selection_error(t, &what, &missing_configured(&repo, &available), selected.len()) {
        return Err(e);
    }
    let commit = match &manifest {
        Some(m) => m.commit.clone(),
        None => {
            let mut parts = vec![format!("local\0{}", dir.display())];
            for f in &selected {
                let meta = std::fs::metadata(dir.join(f))
                    .map_err(|e| Error::io(format!("reading {}", dir.join(f).display()), e))?;
                parts.push(format!("{f}\0{}\0{}.{}", meta.len(), meta.mtime(), meta.mtime_nsec()));
            }
            synthetic_commit(&parts.iter().map(String::as_str).collect::<Vec<_>>())
        }
    };
    if is_commit(&repo.revision) && !repo.revision.eq_ignore_ascii_case(&commit) {
        return Err(Error::NotFound(format!(
            "{what} holds commit {commit}, but models.{}.revision pins {}",
            t.name, repo.revision
        )));
    }
    let listing_hint = manifest.as_ref().map(Manifest::listing).or_else(|| rc.read_tree_listing(&commit));
    if let Some(report) = snapshot_present(rc, &commit, &repo, listing_hint.as_ref()) {
        cache::write_ref(rc, &repo.revision, &commit)?;
        return Ok(SourceResult {
            commit,
            source: what,
            files: report.files.len(),
            bytes: report.bytes,
            present: true,
            ..Default::default()
        });
    }
    let sizes: BTreeMap<String, u64> =
        selected.iter().map(|f| (f.clone(), std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0))).collect();
    let total: u64 = sizes.values().sum();
    check_space(total, free_bytes(&rc.root), &rc.cache)?;
    progress.add_total(selected.len() as u64, total);

    let mut files = Vec::new();
    let mut entries = BTreeMap::new();
    let mut copied = 0u64;
    for f in &selected {
        let fp = progress.file(f, sizes[f]);
        let known = manifest.as_ref().map(|m| m.files[f].clone());
        let (src, rc2, f2, known2) = (dir.join(f), rc.clone(), f.clone(), known.clone());
        let (etag, entry, n) = tokio::task::spawn_blocking(move || copy_one(&src, &rc2, &f2, known2.as_ref()))
            .await
            .map_err(|e| Error::Source(format!("copy task: {e}")))??;
        fp.inc(n);
        fp.done();
        copied += n;
        files.push((f.clone(), etag));
        entries.insert(f.clone(), entry);
    }
    let listing = manifest.as_ref().map(Manifest::listing).unwrap_or_else(|| TreeListing::new(entries));
    cache::publish(rc, &commit, &repo.revision, &files, &listing)?;
    let _ = ctx;
    Ok(SourceResult {
        commit,
        source: what,
        files: files.len(),
        files_fetched: files.len(),
        bytes: total,
        bytes_fetched: copied,
        bytes_resumed: 0,
        present: false,
    })
}

/// Copy one file into `blobs/` (hashing as it goes), checked against the manifest when there is one.
fn copy_one(
    src: &Path,
    rc: &RepoCache,
    rel: &str,
    known: Option<&crate::manifest::ManifestFile>,
) -> Result<(String, TreeEntry, u64)> {
    if let Some(k) = known
        && rc.has_blob(&k.etag)
    {
        return Ok((k.etag.clone(), k.tree_entry(), 0));
    }
    let size = std::fs::metadata(src).map_err(|e| Error::io(format!("reading {}", src.display()), e))?.len();
    let input = std::fs::File::open(src).map_err(|e| Error::io(format!("opening {}", src.display()), e))?;
    let tmp =
        rc.blobs().join(format!("local-{}.incomplete", synthetic_commit(&[rel, &std::process::id().to_string()])));
    let w = copy_hashing(input, &tmp, Some(size))?;
    if let Some(k) = known
        && (!w.sha256.eq_ignore_ascii_case(&k.sha256) || w.size != k.size)
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Integrity(format!(
            "{}: sha256 {} ({} bytes), the manifest says {} ({} bytes); nothing was published",
            src.display(),
            w.sha256,
            w.size,
            k.sha256,
            k.size
        )));
    }
    let etag = known.map(|k| k.etag.clone()).unwrap_or_else(|| w.sha256.clone());
    if rc.has_blob(&etag) {
        let _ = std::fs::remove_file(&tmp);
    } else {
        std::fs::rename(&tmp, rc.blob(&etag)).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    }
    let entry = known.map(|k| k.tree_entry()).unwrap_or(TreeEntry {
        size: w.size,
        blob_id: w.git_sha1.clone().unwrap_or_default(),
        lfs_sha256: Some(w.sha256.clone()),
        lfs_size: Some(w.size),
        xet_hash: None,
    });
    Ok((etag, entry, w.size))
}
