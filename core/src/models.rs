//! Locating model files on disk: the Hugging Face cache layout
//! (`models--org--name/refs/<revision>` → `snapshots/<commit>/<file>`, files usually relative
//! symlinks into `blobs/`) or a plain directory. Workers only ever read; `docfleet-downloader` writes.
//!
//! This is the one lookup every consumer uses (worker pipelines, the onnxruntime library, the
//! downloader's `verify`), so "present" means the same thing everywhere.

use std::path::{Path, PathBuf};

use crate::config::{ModelRepo, ModelsSettings};
use crate::{Error, Result};

/// The cache folder name of a model repo: `org/name` → `models--org--name`.
pub fn repo_folder(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// True for a full 40-hex commit id.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Check a repo entry's shape (used by config validation). An entry with neither `repo_id` nor
/// `dir` is "not configured" and valid.
pub fn validate_repo(repo: &ModelRepo) -> std::result::Result<(), String> {
    if repo.repo_id.is_empty() && repo.dir.is_none() {
        return Ok(());
    }
    if !repo.repo_id.is_empty() {
        let parts: Vec<&str> = repo.repo_id.split('/').collect();
        let ok_part = |p: &&str| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() > 2 || !parts.iter().all(ok_part) {
            return Err(format!("repo_id `{}` is not of the form `org/name`", repo.repo_id));
        }
        if repo.revision.trim().is_empty() {
            return Err("revision must not be empty".into());
        }
        if repo.revision.contains("..") || repo.revision.starts_with('/') {
            return Err(format!("revision `{}` is not a branch, tag or commit", repo.revision));
        }
    }
    for file in &repo.files {
        validate_relative(file)?;
    }
    Ok(())
}

/// A file name inside a snapshot: relative, no `..`, no empty or absolute components.
pub fn validate_relative(file: &str) -> std::result::Result<(), String> {
    let bad = file.is_empty()
        || file.starts_with('/')
        || file.contains('\\')
        || file.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || file.chars().any(char::is_control);
    if bad { Err(format!("file `{file}` must be a relative path inside the repository")) } else { Ok(()) }
}

/// A resolved snapshot: where the files are and which commit they belong to.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub repo_id: String,
    /// The configured revision (branch, tag or commit).
    pub revision: String,
    /// The commit the revision resolved to (`local` for a plain directory).
    pub commit: String,
    /// The snapshot directory (or the plain directory).
    pub root: PathBuf,
}

impl Snapshot {
    /// Path of a file inside the snapshot (not checked; see [`locate`]).
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `repo@commit`, for result records and logs.
    pub fn id(&self) -> String {
        format!("{}@{}", self.repo_id, self.commit)
    }
}

/// Where a repo's snapshot for `repo.revision` is (or would be) in the cache, without checking files.
/// A branch or tag is resolved through `refs/<revision>`; a missing ref is an error.
pub fn resolve(models: &ModelsSettings, name: &str, repo: &ModelRepo) -> Result<Snapshot> {
    if let Some(dir) = &repo.dir {
        return Ok(Snapshot {
            repo_id: if repo.repo_id.is_empty() { dir.display().to_string() } else { repo.repo_id.clone() },
            revision: repo.revision.clone(),
            commit: "local".into(),
            root: dir.clone(),
        });
    }
    if repo.repo_id.is_empty() {
        return Err(Error::Model(format!(
            "model `{name}` is not configured (set models.{name}.repo_id or models.{name}.dir)"
        )));
    }
    let cache = models.cache_dir();
    let folder = cache.join(repo_folder(&repo.repo_id));
    let commit = if is_commit(&repo.revision) {
        repo.revision.clone()
    } else {
        let ref_path = folder.join("refs").join(&repo.revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(c) if is_commit(c.trim()) => c.trim().to_owned(),
            Ok(c) => return Err(Error::Model(format!("{} holds `{}`, not a commit id", ref_path.display(), c.trim()))),
            Err(_) => {
                return Err(Error::Model(format!(
                    "model `{name}` ({}@{}) is not in the cache {}: {} is missing. {}",
                    repo.repo_id,
                    repo.revision,
                    cache.display(),
                    ref_path.display(),
                    how_to_fetch(name)
                )));
            }
        }
    };
    Ok(Snapshot {
        repo_id: repo.repo_id.clone(),
        revision: repo.revision.clone(),
        root: folder.join("snapshots").join(&commit),
        commit,
    })
}

/// Resolve the snapshot and check that every configured file is present and complete
/// (a regular file after following symlinks, with no `.incomplete` download beside its blob).
/// The error names the first missing file and how to get it.
pub fn locate(models: &ModelsSettings, name: &str, repo: &ModelRepo) -> Result<Snapshot> {
    let snap = resolve(models, name, repo)?;
    let missing = missing_files(&snap, &repo.files);
    if let Some(first) = missing.first() {
        return Err(Error::Model(format!(
            "model `{name}` ({}): file `{first}` is missing or incomplete in {}{}. {}",
            snap.id(),
            snap.root.display(),
            if missing.len() > 1 { format!(" (and {} more)", missing.len() - 1) } else { String::new() },
            how_to_fetch(name)
        )));
    }
    Ok(snap)
}

/// The configured files that are absent or incomplete in a snapshot.
pub fn missing_files(snap: &Snapshot, files: &[String]) -> Vec<String> {
    files.iter().filter(|f| !is_complete(&snap.file(f))).cloned().collect()
}

fn is_complete(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else { return false };
    if !meta.is_file() {
        return false;
    }
    // hf-hub and huggingface_hub download into `blobs/<etag>.incomplete`; a link to a blob that
    // still has one is a download in progress.
    match std::fs::canonicalize(path) {
        Ok(real) => {
            let mut incomplete = real.into_os_string();
            incomplete.push(".incomplete");
            !Path::new(&incomplete).exists()
        }
        Err(_) => false,
    }
}

fn how_to_fetch(name: &str) -> String {
    format!(
        "Fetch it with `docfleet-downloader` (same profile and config as the worker), or point \
         models.{name}.dir at a directory holding the files"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cache: &Path) -> ModelsSettings {
        ModelsSettings { cache_dir: Some(cache.to_owned()), ..ModelsSettings::default() }
    }

    fn repo(files: &[&str]) -> ModelRepo {
        ModelRepo {
            repo_id: "org/model".into(),
            revision: "main".into(),
            files: files.iter().map(|s| s.to_string()).collect(),
            ..ModelRepo::default()
        }
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn write_cache(cache: &Path, files: &[(&str, &[u8])]) {
        let folder = cache.join("models--org--model");
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::create_dir_all(folder.join("blobs")).unwrap();
        std::fs::write(folder.join("refs/main"), COMMIT).unwrap();
        for (i, (name, bytes)) in files.iter().enumerate() {
            let blob = format!("blob{i}");
            std::fs::write(folder.join("blobs").join(&blob), bytes).unwrap();
            let link = folder.join("snapshots").join(COMMIT).join(name);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = name.matches('/').count() + 2;
            let target = format!("{}blobs/{blob}", "../".repeat(depth));
            std::os::unix::fs::symlink(target, &link).unwrap();
        }
    }

    #[test]
    fn resolves_branch_through_refs_and_follows_blob_links() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &[("a.onnx", b"aa"), ("sub/b.json", b"{}")]);
        let snap = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx", "sub/b.json"])).unwrap();
        assert_eq!(snap.commit, COMMIT);
        assert_eq!(std::fs::read(snap.file("sub/b.json")).unwrap(), b"{}");
        assert_eq!(snap.id(), format!("org/model@{COMMIT}"));
    }

    #[test]
    fn missing_file_is_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &[("a.onnx", b"aa")]);
        let err = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx", "rec.onnx"])).unwrap_err().to_string();
        assert!(err.contains("`rec.onnx`") && err.contains("docfleet-downloader"), "{err}");
    }

    #[test]
    fn missing_ref_and_incomplete_blob_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx"])).unwrap_err().to_string();
        assert!(err.contains("refs/main"), "{err}");

        write_cache(dir.path(), &[("a.onnx", b"aa")]);
        std::fs::write(dir.path().join("models--org--model/blobs/blob0.incomplete"), b"").unwrap();
        let err = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx"])).unwrap_err().to_string();
        assert!(err.contains("missing or incomplete"), "{err}");
    }

    #[test]
    fn pinned_commit_and_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &[("a.onnx", b"aa")]);
        std::fs::remove_file(dir.path().join("models--org--model/refs/main")).unwrap();
        let pinned = ModelRepo { revision: COMMIT.into(), ..repo(&["a.onnx"]) };
        assert_eq!(locate(&settings(dir.path()), "ocr", &pinned).unwrap().commit, COMMIT);

        let plain = ModelRepo { dir: Some(dir.path().join("models--org--model/blobs")), ..repo(&["blob0"]) };
        assert_eq!(locate(&settings(dir.path()), "ocr", &plain).unwrap().commit, "local");
    }

    #[test]
    fn repo_shapes_are_validated() {
        assert!(validate_repo(&repo(&["a.onnx"])).is_ok());
        assert!(validate_repo(&ModelRepo::default()).is_ok());
        assert!(validate_repo(&ModelRepo { repo_id: "a/b/c".into(), ..repo(&[]) }).is_err());
        assert!(validate_repo(&repo(&["../etc/passwd"])).is_err());
        assert!(validate_repo(&repo(&["/abs"])).is_err());
    }
}
