//! `downloader`: wall time of `docfleet-downloader fetch` vs Python
//! `huggingface_hub.snapshot_download` on the same fake hub (tests/src/fakehub.rs, 127.0.0.1), the
//! same files, the same parallelism (8 workers each, both their defaults), side by side in one run:
//!
//! - (a) 3 files of `--large-mb` MB each (LFS: HEAD, 302 to the fake CDN on a second port, GET);
//! - (b) `--small-files` files of 1–64 KiB (regular files: HEAD, GET).
//!
//! Each run starts from an empty cache and is timed from process spawn to exit (so Python's
//! import time and our process start are in), the sides alternate, and the median is compared.
//! docfleet's time includes what Python does not do: sha256 / git blob id verification of every
//! file and the atomic snapshot publish. The files are generated in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use docfleet_tests::fakehub::FakeHub;
use docfleet_tests::{bin, hfhub_python, run_with_timeout, text};

use crate::stats::median;
use crate::summary::{Goal, Headline};

const PYTHON: &str = r#"
import sys
from huggingface_hub import snapshot_download
snapshot_download(sys.argv[1], max_workers=int(sys.argv[2]))
"#;

/// Deterministic, incompressible bytes.
fn fill(path: &Path, seed: u64, len: usize) -> anyhow::Result<()> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; len];
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, buf)?;
    Ok(())
}

fn dir_bytes(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = std::fs::metadata(&p) {
                n += 1;
                bytes += m.len();
            }
        }
    }
    (n, bytes)
}

/// One timed download into a fresh cache; checks the snapshot afterwards (not timed).
fn timed(
    side: &str,
    repo: &str,
    hub: &FakeHub,
    work: &Path,
    python: &Path,
    workers: usize,
    expect: (usize, u64),
) -> anyhow::Result<f64> {
    let cache = work.join(format!("cache-{side}"));
    let _ = std::fs::remove_dir_all(&cache);
    let mut cmd = if side == "docfleet" {
        let mut c = Command::new(bin("docfleet-downloader"));
        c.args(["fetch", "--repo", repo, "--progress", "none", "--max-workers", &workers.to_string()]);
        c.env("RUST_LOG", "warn").env("DOCFLEET_PROFILE", "local-dev");
        c
    } else {
        let mut c = Command::new(python);
        c.args(["-c", PYTHON, repo, &workers.to_string()]);
        c.env("HF_HUB_DISABLE_PROGRESS_BARS", "1").env("HF_HUB_DISABLE_TELEMETRY", "1");
        c
    };
    cmd.env("HF_HUB_CACHE", &cache).env("HF_ENDPOINT", &hub.url).env("HOME", work).stdin(Stdio::null());
    let started = Instant::now();
    let out = run_with_timeout(&mut cmd, Duration::from_secs(600));
    let secs = started.elapsed().as_secs_f64();
    let (stdout, stderr) = text(&out);
    if !out.status.success() {
        bail!("{side} failed on {repo}:\n{stdout}\n{stderr}");
    }
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let commit = &hub.repo(repo).commit;
    let got = dir_bytes(&folder.join("snapshots").join(commit));
    if got != expect {
        bail!("{side} left {got:?} (files, bytes) in the snapshot of {repo}, expected {expect:?}");
    }
    std::fs::remove_dir_all(&cache).ok();
    Ok(secs)
}

pub fn run(
    runs: usize,
    large_mb: usize,
    small_files: usize,
    workers: usize,
    python: Option<PathBuf>,
) -> anyhow::Result<Vec<Headline>> {
    let python = python.unwrap_or_else(hfhub_python);
    let work = tempfile::Builder::new().prefix("docfleet-bench-dl-").tempdir()?;
    let large = work.path().join("src-large");
    let small = work.path().join("src-small");
    eprintln!("generating 3 × {large_mb} MB and {small_files} small files in {} ...", work.path().display());
    for i in 0..3 {
        fill(&large.join(format!("model-{i:05}-of-00003.safetensors")), i as u64 + 1, large_mb * 1_000_000)?;
    }
    for i in 0..small_files {
        // 1–64 KiB, spread deterministically; a few nested folders like tokenizer/ and configs/.
        let size = 1024 + (i * 7919) % (63 * 1024);
        let name = match i % 4 {
            0 => format!("configs/config-{i:03}.json"),
            1 => format!("tokenizer/part-{i:03}.txt"),
            _ => format!("file-{i:03}.bin"),
        };
        fill(&small.join(name), 1000 + i as u64, size)?;
    }
    let hub = FakeHub::builder().repo("bench/large", &large).repo("bench/small", &small).lfs_threshold(1 << 20).start();
    let cases = [("bench/large", dir_bytes(&large)), ("bench/small", dir_bytes(&small))];
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let py_version = Command::new(&python)
        .args(["-c", "import huggingface_hub, sys; print(huggingface_hub.__version__, sys.version.split()[0])"])
        .output()
        .context("python")?;
    println!(
        "downloader: docfleet-downloader vs huggingface_hub.snapshot_download (huggingface_hub {}), fake hub on 127.0.0.1, \
         {workers} workers each, {runs} runs per side (alternating, fresh cache each), {} cores ({cpu})",
        String::from_utf8_lossy(&py_version.stdout).trim().replace(' ', ", Python "),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let mut headlines = Vec::new();
    for (repo, expect) in cases {
        // One untimed warm-up per side (page cache of the sources, pip's bytecode).
        timed("python", repo, &hub, work.path(), &python, workers, expect)?;
        timed("docfleet", repo, &hub, work.path(), &python, workers, expect)?;
        let (mut py, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            py.push(timed("python", repo, &hub, work.path(), &python, workers, expect)?);
            rs.push(timed("docfleet", repo, &hub, work.path(), &python, workers, expect)?);
        }
        let (py_min, rs_min) =
            (py.iter().cloned().fold(f64::MAX, f64::min), rs.iter().cloned().fold(f64::MAX, f64::min));
        let (py_med, rs_med) = (median(&py), median(&rs));
        let mb = expect.1 as f64 / 1e6;
        println!(
            "  {repo}: {} files, {:.1} MB\n    huggingface_hub: median {py_med:.3} s (min {py_min:.3})  {:.0} MB/s\n    docfleet:        median {rs_med:.3} s (min {rs_min:.3})  {:.0} MB/s\n    ratio docfleet / python (median): {:.2}x",
            expect.0,
            mb,
            mb / py_med,
            mb / rs_med,
            rs_med / py_med
        );
        headlines.push(Headline::ratio(
            format!("downloader: time vs snapshot_download, {repo}"),
            format!("{rs_med:.3} vs {py_med:.3} s median, {} files, {mb:.1} MB", expect.0),
            rs_med / py_med,
            Goal::AtMost(1.0),
        ));
    }
    Ok(headlines)
}
