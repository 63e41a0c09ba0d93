//! Locating and verifying model files on disk: the Hugging Face cache layout
//! (`models--org--name/refs/<revision>` → `snapshots/<commit>/<file>`, files usually relative
//! symlinks into `blobs/<etag>`) or a plain directory. Workers only ever read; `docfleet-downloader`
//! writes.
//!
//! This is the one lookup every consumer uses (worker pipelines, the onnxruntime library, the
//! downloader's `verify`), so "present" means the same thing everywhere:
//!
//! - [`Depth::Quick`] (worker start-up, `docfleet-downloader verify`): every needed file is a
//!   regular file after following links, no `.incomplete` download sits beside its blob, and its size
//!   matches the commit's tree listing (`trees/<commit>.json`, the per-commit listing
//!   `huggingface_hub` ≥ 2 keeps and the downloader writes) when there is one. Only `stat` calls.
//! - [`Depth::Hashes`] (`verify --hashes`, `export`): also the content hash. A blob is named by the
//!   hub's ETag, which is the file's sha256 for LFS files and its git blob id (sha1 of
//!   `blob <len>\0<bytes>`) otherwise, so every blob can be checked against its own name; the tree
//!   listing's `lfs_sha256` is checked too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::config::{ModelRepo, ModelsSettings, VlmDtype};
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
    for pattern in repo.allow_patterns.iter().chain(&repo.ignore_patterns) {
        glob(pattern)?;
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

/// A glob as `huggingface_hub` applies `allow_patterns`/`ignore_patterns` (fnmatch: `*` also
/// matches `/`; a pattern ending in `/` means everything below that folder).
fn glob(pattern: &str) -> std::result::Result<globset::GlobMatcher, String> {
    let pattern = if pattern.ends_with('/') { format!("{pattern}*") } else { pattern.to_owned() };
    globset::GlobBuilder::new(&pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("pattern `{pattern}`: {e}"))
}

/// The paths that `allow` (all when empty) selects and `ignore` does not.
pub fn select_paths<'a>(paths: impl IntoIterator<Item = &'a str>, allow: &[String], ignore: &[String]) -> Vec<String> {
    let allow: Vec<_> = allow.iter().filter_map(|p| glob(p).ok()).collect();
    let ignore: Vec<_> = ignore.iter().filter_map(|p| glob(p).ok()).collect();
    paths
        .into_iter()
        .filter(|p| allow.is_empty() || allow.iter().any(|g| g.is_match(p)))
        .filter(|p| !ignore.iter().any(|g| g.is_match(p)))
        .map(str::to_owned)
        .collect()
}

/// The files a repo entry needs out of `available` (a listing of the repo at one commit): the
/// configured `files`, plus what `allow_patterns` selects (everything when neither is set), less
/// `ignore_patterns` (explicitly configured files are always kept).
/// With `repo.onnx_variant`, graphs under `onnx/` of other variants are left out (a published
/// onnx-community repository holds up to eight copies of each graph), and so are the split
/// decoders (`decoder_model`, `decoder_with_past_model`) where the chosen variant has
/// `decoder_model_merged` (Florence-2's repositories publish both; the pipeline loads the merged
/// one unless `vlm.decoder = "split"`, which then lists them in `models.vlm.files`).
pub fn select_files(repo: &ModelRepo, available: &[String]) -> Vec<String> {
    let mut out: BTreeSet<String> = repo.files.iter().cloned().collect();
    if !repo.allow_patterns.is_empty() || repo.files.is_empty() {
        let mut picked =
            select_paths(available.iter().map(String::as_str), &repo.allow_patterns, &repo.ignore_patterns);
        if let Some(variant) = repo.onnx_variant {
            let chosen = variant.resolve(available.iter().map(String::as_str));
            picked.retain(|f| VlmDtype::of_file(f).is_none_or(|d| d == chosen));
            let merged = chosen.file_name("decoder_model_merged");
            if picked.contains(&merged) {
                let split: Vec<String> = ["decoder_model", "decoder_with_past_model"]
                    .iter()
                    .flat_map(|g| {
                        let f = chosen.file_name(g);
                        [format!("{f}_data"), f]
                    })
                    .collect();
                picked.retain(|f| !split.contains(f));
            }
        }
        out.extend(picked);
    }
    out.into_iter().collect()
}

/// Paths of one repo inside the Hugging Face cache (`<cache>/models--org--name`).
#[derive(Debug, Clone)]
pub struct RepoCache {
    /// The cache directory (`HF_HUB_CACHE`).
    pub cache: PathBuf,
    /// `<cache>/models--org--name`.
    pub root: PathBuf,
    pub repo_id: String,
}

impl RepoCache {
    pub fn new(cache: &Path, repo_id: &str) -> Self {
        Self { cache: cache.to_owned(), root: cache.join(repo_folder(repo_id)), repo_id: repo_id.to_owned() }
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `blobs/<etag>`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.blobs().join(etag)
    }

    /// `blobs/<etag>.incomplete`, where `huggingface_hub`, hf-hub and the downloader write a blob
    /// before renaming it into place (and resume from).
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.blobs().join(format!("{etag}.incomplete"))
    }

    /// A blob that exists with no download in progress beside it.
    pub fn has_blob(&self, etag: &str) -> bool {
        self.blob(etag).is_file() && !self.incomplete(etag).exists()
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// `refs/<revision>` (a revision with `/` is nested, as `huggingface_hub` does).
    pub fn ref_path(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    /// The commit a branch or tag points at in this cache, if recorded.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let c = std::fs::read_to_string(self.ref_path(revision)).ok()?;
        let c = c.trim();
        is_commit(c).then(|| c.to_owned())
    }

    /// `trees/<commit>.json`: `huggingface_hub`'s per-commit tree listing cache.
    pub fn tree_listing(&self, commit: &str) -> PathBuf {
        self.root.join("trees").join(format!("{commit}.json"))
    }

    /// The listing of a commit, when one was written (by the downloader or `huggingface_hub`).
    pub fn read_tree_listing(&self, commit: &str) -> Option<TreeListing> {
        let text = std::fs::read(self.tree_listing(commit)).ok()?;
        let listing: TreeListing = serde_json::from_slice(&text).ok()?;
        (listing.format_version == TreeListing::FORMAT_VERSION).then_some(listing)
    }

    /// `<cache>/.locks/models--org--name`, where `huggingface_hub` keeps its per-blob lock files.
    pub fn lock_dir(&self) -> PathBuf {
        self.cache.join(".locks").join(repo_folder(&self.repo_id))
    }

    /// The downloader's private work area inside the repo folder (staging snapshots, wheels being
    /// fetched): on the same filesystem as `snapshots/`, so publishing is a rename.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join(".docfleet")
    }
}

/// The relative symlink target of `snapshots/<commit>/<file>` → `blobs/<etag>`, as
/// `huggingface_hub` writes it (`../../blobs/<etag>` for a top-level file).
pub fn snapshot_link_target(file: &str, etag: &str) -> String {
    format!("{}blobs/{etag}", "../".repeat(file.matches('/').count() + 2))
}

/// `huggingface_hub`'s tree listing cache (`trees/<commit>.json`, format 1): what the hub listed at
/// a commit. The downloader writes one per snapshot; `verify` reads it for sizes and hashes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeListing {
    pub format_version: u32,
    pub files: BTreeMap<String, TreeEntry>,
}

impl TreeListing {
    pub const FORMAT_VERSION: u32 = 1;

    pub fn new(files: BTreeMap<String, TreeEntry>) -> Self {
        Self { format_version: Self::FORMAT_VERSION, files }
    }
}

/// One file of a [`TreeListing`] (field names as `huggingface_hub` writes them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// File size in bytes.
    pub size: u64,
    /// Git blob id (of the LFS pointer for LFS files).
    pub blob_id: String,
    /// sha256 of the content, for LFS files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfs_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xet_hash: Option<String>,
}

impl TreeEntry {
    /// The size of the file's content.
    pub fn content_size(&self) -> u64 {
        self.lfs_size.unwrap_or(self.size)
    }
}

/// Write a file atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), unique_suffix()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Nanoseconds since the epoch, to tell temporary names of one process apart.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Which hash a blob name (the hub's ETag) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// 64 hex digits: sha256 of the content (LFS files, and every blob the downloader names itself).
    Sha256,
    /// 40 hex digits: git blob id, sha1 of `blob <len>\0<content>` (regular git files).
    GitSha1,
}

impl HashKind {
    /// The kind of hash an ETag / blob name is, if it is one.
    pub fn of(etag: &str) -> Option<Self> {
        if !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match etag.len() {
            64 => Some(HashKind::Sha256),
            40 => Some(HashKind::GitSha1),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashKind::Sha256 => "sha256",
            HashKind::GitSha1 => "git blob sha1",
        }
    }
}

/// Lowercase hex sha256 and git blob id of a file, read once.
pub fn hash_file(path: &Path) -> std::io::Result<(String, String)> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = Sha1::new();
    sha1.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
    }
    Ok((hex::encode(sha256.finalize()), hex::encode(sha1.finalize())))
}

/// The git blob id of in-memory bytes.
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(format!("blob {}\0", bytes.len()).as_bytes());
    sha1.update(bytes);
    hex::encode(sha1.finalize())
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
    let rc = RepoCache::new(&cache, &repo.repo_id);
    let commit = if is_commit(&repo.revision) {
        repo.revision.clone()
    } else {
        let ref_path = rc.ref_path(&repo.revision);
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
    Ok(Snapshot { repo_id: repo.repo_id.clone(), revision: repo.revision.clone(), root: rc.snapshot(&commit), commit })
}

/// How thoroughly [`verify`] checks files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Presence, completeness and sizes: `stat` calls only (worker start-up).
    Quick,
    /// Also every file's content hash.
    Hashes,
}

/// One file that failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.file, self.what)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone)]
pub struct Report {
    pub snapshot: Snapshot,
    /// Every file checked.
    pub files: Vec<String>,
    /// Total bytes of the files that are present.
    pub bytes: u64,
    /// Files whose content hash was checked (with [`Depth::Hashes`]).
    pub hashed: usize,
    /// Files with no known hash to check against (plain files without a tree listing entry).
    pub unhashed: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Resolve the snapshot and check the files the repo entry needs, collecting every problem.
/// Errors only when the snapshot cannot be resolved (no ref).
pub fn check(models: &ModelsSettings, name: &str, repo: &ModelRepo, depth: Depth) -> Result<Report> {
    let snapshot = resolve(models, name, repo)?;
    let listing = if repo.dir.is_none() {
        RepoCache::new(&models.cache_dir(), &repo.repo_id).read_tree_listing(&snapshot.commit)
    } else {
        None
    };
    Ok(check_snapshot(snapshot, repo, listing.as_ref(), depth))
}

/// [`check`] for an already resolved snapshot and its tree listing (if any).
pub fn check_snapshot(snapshot: Snapshot, repo: &ModelRepo, listing: Option<&TreeListing>, depth: Depth) -> Report {
    let files = needed_files(&snapshot.root, repo, listing);
    let mut report =
        Report { snapshot, files: Vec::new(), bytes: 0, hashed: 0, unhashed: Vec::new(), problems: Vec::new() };
    if files.is_empty() {
        let what = if report.snapshot.root.is_dir() { "holds no files" } else { "is missing" };
        report.problems.push(Problem { file: ".".into(), what: format!("(snapshot directory {what})") });
        return report;
    }
    for file in &files {
        let entry = listing.and_then(|l| l.files.get(file));
        match check_file(&report.snapshot.file(file), entry, depth) {
            Ok(FileCheck { size, hashed }) => {
                report.bytes += size;
                if hashed {
                    report.hashed += 1;
                } else if depth == Depth::Hashes {
                    report.unhashed.push(file.clone());
                }
            }
            Err(what) => report.problems.push(Problem { file: file.clone(), what }),
        }
    }
    report.files = files;
    report
}

/// The files to check: the configured ones, plus the listing's (or, without a listing, the
/// snapshot directory's) files that the patterns select.
fn needed_files(root: &Path, repo: &ModelRepo, listing: Option<&TreeListing>) -> Vec<String> {
    if !repo.files.is_empty() && repo.allow_patterns.is_empty() {
        return repo.files.clone();
    }
    let available: Vec<String> = match listing {
        Some(l) => l.files.keys().cloned().collect(),
        None => walk_files(root),
    };
    select_files(repo, &available)
}

/// Every file below `root` (following links), as relative `/`-separated paths, sorted.
pub fn walk_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(rel) = path.strip_prefix(root).ok().and_then(Path::to_str) {
                out.push(rel.replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

struct FileCheck {
    size: u64,
    hashed: bool,
}

fn check_file(path: &Path, entry: Option<&TreeEntry>, depth: Depth) -> std::result::Result<FileCheck, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) if path.is_symlink() => return Err("is missing or incomplete (its link points at no blob)".into()),
        Err(_) => return Err("is missing or incomplete".into()),
    };
    if !meta.is_file() {
        return Err("is missing or incomplete (not a regular file)".into());
    }
    // hf-hub, huggingface_hub and the downloader download into `blobs/<etag>.incomplete`; a link
    // to a blob that still has one is a download in progress.
    let real = std::fs::canonicalize(path).map_err(|e| format!("is missing or incomplete ({e})"))?;
    let mut incomplete = real.clone().into_os_string();
    incomplete.push(".incomplete");
    if Path::new(&incomplete).exists() {
        return Err("is missing or incomplete (a download of its blob is in progress)".into());
    }
    let size = meta.len();
    if let Some(entry) = entry.filter(|e| e.content_size() != size) {
        return Err(format!("is damaged: {size} bytes, the tree listing says {}", entry.content_size()));
    }
    if depth == Depth::Quick {
        return Ok(FileCheck { size, hashed: false });
    }
    // The blob's own name when the file is a link into blobs/, then the listing's hashes.
    let blob_name = path.is_symlink().then(|| real.file_name().and_then(|n| n.to_str()).map(str::to_owned)).flatten();
    let mut expected: Vec<(HashKind, String, &str)> = Vec::new();
    if let Some((name, kind)) = blob_name.as_ref().and_then(|n| HashKind::of(n).map(|k| (n, k))) {
        expected.push((kind, name.to_ascii_lowercase(), "its blob name"));
    }
    if let Some(entry) = entry {
        if let Some(sha) = &entry.lfs_sha256 {
            expected.push((HashKind::Sha256, sha.to_ascii_lowercase(), "the tree listing"));
        } else if blob_name.is_none() && HashKind::of(&entry.blob_id) == Some(HashKind::GitSha1) {
            expected.push((HashKind::GitSha1, entry.blob_id.to_ascii_lowercase(), "the tree listing"));
        }
    }
    if expected.is_empty() {
        return Ok(FileCheck { size, hashed: false });
    }
    let (sha256, git) = hash_file(path).map_err(|e| format!("could not be read: {e}"))?;
    for (kind, want, from) in expected {
        let got = if kind == HashKind::Sha256 { &sha256 } else { &git };
        if *got != want {
            return Err(format!("is damaged: {} {got}, {from} says {want}", kind.name()));
        }
    }
    Ok(FileCheck { size, hashed: true })
}

/// Resolve the snapshot and check every needed file; the error names each problem and how to
/// fix it. `Depth::Quick` is what workers run at start-up.
pub fn verify(models: &ModelsSettings, name: &str, repo: &ModelRepo, depth: Depth) -> Result<Snapshot> {
    let report = check(models, name, repo, depth)?;
    if report.problems.is_empty() {
        return Ok(report.snapshot);
    }
    Err(Error::Model(problems_message(name, &report)))
}

/// The message for a failed check, naming the files.
pub fn problems_message(name: &str, report: &Report) -> String {
    const SHOWN: usize = 5;
    let listed: Vec<String> = report.problems.iter().take(SHOWN).map(|p| format!("file {p}")).collect();
    let more = report.problems.len().saturating_sub(SHOWN);
    format!(
        "model `{name}` ({}): {} in {}{}. {}",
        report.snapshot.id(),
        listed.join("; "),
        report.snapshot.root.display(),
        if more > 0 { format!(" (and {more} more)") } else { String::new() },
        how_to_fetch(name)
    )
}

/// Resolve the snapshot and check that every configured file is present and complete (sizes
/// against the tree listing when there is one): [`verify`] at [`Depth::Quick`].
pub fn locate(models: &ModelsSettings, name: &str, repo: &ModelRepo) -> Result<Snapshot> {
    verify(models, name, repo, Depth::Quick)
}

/// The configured files that are absent or incomplete in a snapshot.
pub fn missing_files(snap: &Snapshot, files: &[String]) -> Vec<String> {
    files.iter().filter(|f| check_file(&snap.file(f), None, Depth::Quick).is_err()).cloned().collect()
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

    /// A cache laid out as huggingface_hub writes it; blobs named by their sha256.
    fn write_cache(cache: &Path, files: &[(&str, &[u8])]) -> Vec<String> {
        let folder = cache.join("models--org--model");
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::create_dir_all(folder.join("blobs")).unwrap();
        std::fs::write(folder.join("refs/main"), COMMIT).unwrap();
        let mut etags = Vec::new();
        for (name, bytes) in files {
            let blob = hex::encode(Sha256::digest(bytes));
            std::fs::write(folder.join("blobs").join(&blob), bytes).unwrap();
            let link = folder.join("snapshots").join(COMMIT).join(name);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(snapshot_link_target(name, &blob), &link).unwrap();
            etags.push(blob);
        }
        etags
    }

    #[test]
    fn resolves_branch_through_refs_and_follows_blob_links() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &[("a.onnx", b"aa"), ("sub/b.json", b"{}")]);
        let snap = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx", "sub/b.json"])).unwrap();
        assert_eq!(snap.commit, COMMIT);
        assert_eq!(std::fs::read(snap.file("sub/b.json")).unwrap(), b"{}");
        assert_eq!(snap.id(), format!("org/model@{COMMIT}"));
        let link = std::fs::read_link(snap.file("sub/b.json")).unwrap();
        assert!(link.to_str().unwrap().starts_with("../../../blobs/"), "{link:?}");
    }

    #[test]
    fn missing_file_is_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &[("a.onnx", b"aa")]);
        let err = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx", "rec.onnx"])).unwrap_err().to_string();
        assert!(err.contains("`rec.onnx`") && err.contains("docfleet-downloader"), "{err}");
        assert!(!err.contains("`a.onnx`"), "{err}");
    }

    #[test]
    fn missing_ref_and_incomplete_blob_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx"])).unwrap_err().to_string();
        assert!(err.contains("refs/main"), "{err}");

        let etags = write_cache(dir.path(), &[("a.onnx", b"aa")]);
        std::fs::write(dir.path().join(format!("models--org--model/blobs/{}.incomplete", etags[0])), b"").unwrap();
        let err = locate(&settings(dir.path()), "ocr", &repo(&["a.onnx"])).unwrap_err().to_string();
        assert!(err.contains("missing or incomplete"), "{err}");
    }

    #[test]
    fn pinned_commit_and_plain_directory() {
        let dir = tempfile::tempdir().unwrap();
        let etags = write_cache(dir.path(), &[("a.onnx", b"aa")]);
        std::fs::remove_file(dir.path().join("models--org--model/refs/main")).unwrap();
        let pinned = ModelRepo { revision: COMMIT.into(), ..repo(&["a.onnx"]) };
        assert_eq!(locate(&settings(dir.path()), "ocr", &pinned).unwrap().commit, COMMIT);

        let plain = ModelRepo { dir: Some(dir.path().join("models--org--model/blobs")), ..repo(&[&etags[0]]) };
        assert_eq!(locate(&settings(dir.path()), "ocr", &plain).unwrap().commit, "local");
    }

    #[test]
    fn sizes_from_the_tree_listing_and_hashes_from_blob_names() {
        let dir = tempfile::tempdir().unwrap();
        let etags = write_cache(dir.path(), &[("a.onnx", b"aaaa"), ("c.json", b"{}")]);
        let rc = RepoCache::new(dir.path(), "org/model");
        let mut files = BTreeMap::new();
        files.insert("a.onnx".to_owned(), TreeEntry { size: 4, blob_id: "x".into(), ..TreeEntry::default() });
        files.insert("c.json".to_owned(), TreeEntry { size: 2, blob_id: git_blob_id(b"{}"), ..TreeEntry::default() });
        write_atomic(&rc.tree_listing(COMMIT), &serde_json::to_vec(&TreeListing::new(files.clone())).unwrap()).unwrap();
        let models = settings(dir.path());
        let r = repo(&["a.onnx", "c.json"]);
        let report = check(&models, "ocr", &r, Depth::Hashes).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.hashed, report.bytes), (2, 6));

        // Same size, other bytes: only the hash check sees it, and it names the file.
        std::fs::write(rc.blob(&etags[0]), b"aaab").unwrap();
        assert!(verify(&models, "ocr", &r, Depth::Quick).is_ok());
        let err = verify(&models, "ocr", &r, Depth::Hashes).unwrap_err().to_string();
        assert!(err.contains("`a.onnx` is damaged: sha256"), "{err}");

        // A truncated blob fails the quick check through the listing's size.
        std::fs::write(rc.blob(&etags[0]), b"aa").unwrap();
        let err = locate(&models, "ocr", &r).unwrap_err().to_string();
        assert!(err.contains("`a.onnx` is damaged: 2 bytes, the tree listing says 4"), "{err}");
    }

    #[test]
    fn patterns_select_from_the_listing_or_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        write_cache(dir.path(), &[("a.onnx", b"a"), ("b.onnx", b"b"), ("docs/readme.md", b"r")]);
        let models = settings(dir.path());
        let only_onnx = ModelRepo { allow_patterns: vec!["*.onnx".into()], ..repo(&[]) };
        let report = check(&models, "ocr", &only_onnx, Depth::Quick).unwrap();
        assert_eq!(report.files, ["a.onnx", "b.onnx"]);
        let all_but_docs = ModelRepo { ignore_patterns: vec!["docs/".into()], ..repo(&[]) };
        assert_eq!(check(&models, "ocr", &all_but_docs, Depth::Quick).unwrap().files, ["a.onnx", "b.onnx"]);
        let everything = repo(&[]);
        assert_eq!(check(&models, "ocr", &everything, Depth::Quick).unwrap().files.len(), 3);
        assert_eq!(
            select_paths(["x/y.bin", "y.bin", "z.txt"], &["*.bin".into()], &[]),
            ["x/y.bin", "y.bin"],
            "`*` matches `/` as in fnmatch"
        );
    }

    #[test]
    fn only_the_chosen_onnx_variant_is_selected() {
        use crate::config::OnnxVariant;
        // An onnx-community (transformers.js) listing: every graph in several variants.
        let mut listing: Vec<String> = ["config.json", "tokenizer.json", "chat_template.jinja", "onnx/README.md"]
            .into_iter()
            .map(String::from)
            .collect();
        for graph in ["vision_encoder", "embed_tokens", "decoder_model_merged"] {
            for suffix in ["", "_fp16", "_q4", "_q4f16", "_int8", "_uint8", "_quantized", "_bnb4"] {
                listing.push(format!("onnx/{graph}{suffix}.onnx"));
            }
        }
        listing.push("onnx/decoder_model_merged_fp16.onnx_data".into());
        let graphs = |repo: &ModelRepo| -> Vec<String> {
            select_files(repo, &listing).into_iter().filter(|f| f.ends_with(".onnx") || f.ends_with("_data")).collect()
        };
        let with = |dtype, gpu| ModelRepo { onnx_variant: Some(OnnxVariant { dtype, gpu }), ..repo(&[]) };
        assert_eq!(
            graphs(&with(VlmDtype::Auto, false)),
            ["onnx/decoder_model_merged.onnx", "onnx/embed_tokens.onnx", "onnx/vision_encoder.onnx"]
        );
        assert_eq!(
            graphs(&with(VlmDtype::Auto, true)),
            [
                "onnx/decoder_model_merged_fp16.onnx",
                "onnx/decoder_model_merged_fp16.onnx_data",
                "onnx/embed_tokens_fp16.onnx",
                "onnx/vision_encoder_fp16.onnx"
            ]
        );
        assert_eq!(
            graphs(&with(VlmDtype::Q4, false)),
            ["onnx/decoder_model_merged_q4.onnx", "onnx/embed_tokens_q4.onnx", "onnx/vision_encoder_q4.onnx"],
            "q4 is not q4f16"
        );
        // Shared files stay; without a variant everything is selected, as before.
        let all = select_files(&with(VlmDtype::Int8, false), &listing);
        assert!(all.contains(&"config.json".to_string()) && all.contains(&"onnx/README.md".to_string()));
        assert_eq!(select_files(&repo(&[]), &listing).len(), listing.len());
        // A repository without fp16 graphs falls back to fp32 on a GPU.
        let fp32_only: Vec<String> =
            listing.iter().filter(|f| VlmDtype::of_file(f).is_none_or(|d| d == VlmDtype::Fp32)).cloned().collect();
        let picked = select_files(&with(VlmDtype::Auto, true), &fp32_only);
        assert!(picked.contains(&"onnx/vision_encoder.onnx".to_string()), "{picked:?}");

        // A Florence-2 listing: four graphs plus the split decoders, which the merged one stands for.
        let mut florence: Vec<String> = vec!["config.json".into(), "preprocessor_config.json".into()];
        for graph in ["vision_encoder", "embed_tokens", "encoder_model", "decoder_model", "decoder_with_past_model"]
            .into_iter()
            .chain(["decoder_model_merged"])
        {
            for suffix in ["", "_fp16", "_int8", "_q4"] {
                florence.push(format!("onnx/{graph}{suffix}.onnx"));
            }
        }
        let graphs = |repo: &ModelRepo| -> Vec<String> {
            select_files(repo, &florence).into_iter().filter(|f| f.ends_with(".onnx")).collect()
        };
        assert_eq!(
            graphs(&with(VlmDtype::Int8, false)),
            [
                "onnx/decoder_model_merged_int8.onnx",
                "onnx/embed_tokens_int8.onnx",
                "onnx/encoder_model_int8.onnx",
                "onnx/vision_encoder_int8.onnx"
            ]
        );
        assert_eq!(graphs(&with(VlmDtype::Auto, false)).len(), 4);
        // Without the merged decoder the split ones are kept; files listed by name always are.
        let no_merged: Vec<String> = florence.iter().filter(|f| !f.contains("merged")).cloned().collect();
        assert!(select_files(&with(VlmDtype::Fp32, false), &no_merged).contains(&"onnx/decoder_model.onnx".into()));
        let listed = ModelRepo {
            files: vec!["onnx/decoder_model.onnx".into()],
            allow_patterns: vec!["*".into()],
            ..with(VlmDtype::Fp32, false)
        };
        assert!(select_files(&listed, &florence).contains(&"onnx/decoder_model.onnx".into()));
    }

    #[test]
    fn hash_kinds_and_git_blob_ids() {
        assert_eq!(HashKind::of(&"a".repeat(64)), Some(HashKind::Sha256));
        assert_eq!(HashKind::of(&"0".repeat(40)), Some(HashKind::GitSha1));
        assert_eq!(HashKind::of("xyz"), None);
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(git_blob_id(b"hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert_eq!(snapshot_link_target("a/b/c.bin", "e"), "../../../../blobs/e");
    }

    #[test]
    fn repo_shapes_are_validated() {
        assert!(validate_repo(&repo(&["a.onnx"])).is_ok());
        assert!(validate_repo(&ModelRepo::default()).is_ok());
        assert!(validate_repo(&ModelRepo { repo_id: "a/b/c".into(), ..repo(&[]) }).is_err());
        assert!(validate_repo(&repo(&["../etc/passwd"])).is_err());
        assert!(validate_repo(&repo(&["/abs"])).is_err());
        assert!(validate_repo(&ModelRepo { allow_patterns: vec!["a[".into()], ..repo(&[]) }).is_err());
    }
}
