//! `ocr-layout`: pages/s of the `ocr` pipeline with the layout model on and off (reading order,
//! blocks and Markdown either way) vs Python rapidocr 3.10.0 (PP-OCRv6, its defaults), on the
//! reading-order fixtures (`tests/fixtures/ocr/layout`, the twelve pages of `expected.json`).
//! Each side runs in its own process, one after the other, with the same onnxruntime threads;
//! the Rust sides reuse `ocr-child` with `DOCFLEET__OCR__LAYOUT` and `DOCFLEET__OCR__MODELS`
//! set, so `ocr.models` is the one rapidocr 3.10 uses (`v6`) unless `--models` says otherwise.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use docfleet_tests::repo_root;
use serde_json::Value;

use crate::stats::median;
use crate::summary::{Goal, Headline};

/// rapidocr 3.10 with its defaults (PP-OCRv6 small), `threads` onnxruntime threads.
const PYTHON: &str = r#"
import json, sys, time
from rapidocr import RapidOCR
threads, repeat, pages = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
engine = RapidOCR(params={"EngineConfig.onnxruntime.intra_op_num_threads": threads,
                          "EngineConfig.onnxruntime.inter_op_num_threads": 1})
engine(pages[0])
print(json.dumps({"event": "first"}), flush=True)
t = time.perf_counter()
n = 0
for _ in range(repeat):
    for p in pages:
        engine(p)
        n += 1
wall = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"event": "done", "pages": n, "wall_s": wall, "peak_rss_kib": int(hwm)}), flush=True)
"#;

/// One side's `done` report and its cold start (spawn → first page read).
struct Side {
    report: Value,
    cold_start: Duration,
}

fn measure(mut cmd: Command) -> anyhow::Result<Side> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("spawn")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut cold_start, mut report) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        match v["event"].as_str() {
            Some("first") => cold_start = Some(started.elapsed()),
            Some("done") => report = Some(v),
            _ => {}
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(Side { report: report.context("no report")?, cold_start: cold_start.context("no first page")? })
}

/// The fixture pages, in `expected.json`'s order.
fn pages() -> anyhow::Result<Vec<PathBuf>> {
    let dir = repo_root().join("tests/fixtures/ocr/layout");
    let expected: Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json"))?)?;
    let pages = expected["pages"].as_array().context("expected.json: no pages")?;
    Ok(pages.iter().filter_map(|p| p["file"].as_str()).map(|f| dir.join(f)).collect())
}

/// `docfleet-bench ocr-layout`: `rounds` rounds of the three sides, each round in a rotated order
/// (round r starts with side r mod 3), so a slow spell of a shared machine does not always land
/// on the same side; the figures are medians over the rounds, and the ratio is the median of the
/// rounds' own ratios (each round's sides ran minutes apart, not hours).
pub fn run(threads: usize, repeat: usize, rounds: usize, models: &str, python: &Path) -> anyhow::Result<Vec<Headline>> {
    let pages = pages()?;
    let rounds = rounds.max(1);
    eprintln!(
        "{} pages, {repeat} passes, {rounds} rounds, {threads} onnxruntime threads, ocr.models = {models}",
        pages.len()
    );
    if !python.exists() {
        bail!(
            "{} is missing: create the rapidocr 3.10 venv (`python3.11 -m venv ~/.cache/docfleet/ocr-v6-venv && ~/.cache/docfleet/ocr-v6-venv/bin/pip install -r scripts/ocr/requirements-v6.txt`)",
            python.display()
        );
    }
    let side = |which: usize| -> anyhow::Result<Side> {
        if which == 2 {
            let mut py = Command::new(python);
            py.arg("-c").arg(PYTHON).arg(threads.to_string()).arg(repeat.to_string()).args(&pages);
            return measure(py).context("the Python side");
        }
        let layout = which == 0;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env("DOCFLEET__OCR__LAYOUT", layout.to_string())
            .env("DOCFLEET__OCR__MODELS", models)
            .arg("ocr-child")
            .arg("--threads")
            .arg(threads.to_string())
            .arg("--repeat")
            .arg(repeat.to_string())
            .args(&pages);
        measure(cmd).with_context(|| format!("the Rust side, layout {layout}"))
    };
    // results[side][round]: 0 layout on, 1 layout off, 2 rapidocr.
    let mut results: [Vec<Side>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for r in 0..rounds {
        let mut got: [Option<Side>; 3] = [None, None, None];
        for k in 0..3 {
            let which = (r + k) % 3;
            got[which] = Some(side(which)?);
        }
        for (which, s) in got.into_iter().enumerate() {
            results[which].push(s.expect("every side ran"));
        }
    }
    let pps = |s: &Side| s.report["pages"].as_f64().unwrap_or(0.0) / s.report["wall_s"].as_f64().unwrap_or(f64::NAN);
    if rounds > 1 {
        eprintln!("per round, pages/s (layout on / layout off / rapidocr 3.10) and on ÷ rapidocr:");
        for (r, ((on, off), py)) in results[0].iter().zip(&results[1]).zip(&results[2]).enumerate() {
            let (a, b, c) = (pps(on), pps(off), pps(py));
            eprintln!("  round {}: {a:.2} / {b:.2} / {c:.2}, {:.2}×", r + 1, a / c);
        }
    }
    let ratios: Vec<f64> = (0..rounds).map(|r| pps(&results[0][r]) / pps(&results[2][r])).collect();
    let on_off: Vec<f64> = (0..rounds).map(|r| pps(&results[0][r]) / pps(&results[1][r])).collect();
    let spread = |xs: &[f64]| {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if xs.len() > 1 { format!(", rounds {lo:.2}–{hi:.2}×") } else { String::new() }
    };
    let med = |which: usize| median(&results[which].iter().map(pps).collect::<Vec<_>>());
    // Per side, the round closest to its median pages/s stands for its details (RSS, cold
    // start, stage times).
    let pick = |which: usize| -> &Side {
        let m = med(which);
        results[which]
            .iter()
            .min_by(|a, b| (pps(a) - m).abs().total_cmp(&(pps(b) - m).abs()))
            .expect("at least one round")
    };
    let (on, off, py) = (pick(0), pick(1), pick(2));
    let rss = |s: &Side| s.report["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    println!("| | docfleet ocr, layout on | docfleet ocr, layout off | rapidocr 3.10 (Python) |");
    println!("|---|---|---|---|");
    println!(
        "| pages/s (warm{}) | {:.2} | {:.2} | {:.2} |",
        if rounds > 1 { ", median" } else { "" },
        med(0),
        med(1),
        med(2)
    );
    println!("| peak RSS | {:.0} MiB | {:.0} MiB | {:.0} MiB |", rss(on), rss(off), rss(py));
    println!(
        "| cold start to first result | {:.2} s | {:.2} s | {:.2} s |",
        on.cold_start.as_secs_f64(),
        off.cold_start.as_secs_f64(),
        py.cold_start.as_secs_f64()
    );
    // The layout detector's own cost per page (its session run, and its resize/decoding/NMS), and
    // what it adds to the wall time per page.
    let per_page = |s: &Side, key: &str| {
        s.report["stages_ms"][key].as_f64().unwrap_or(f64::NAN) / s.report["pages"].as_f64().unwrap_or(f64::NAN)
    };
    let wall_ms = |which: usize| 1e3 / med(which);
    println!(
        "| layout detector per page | {:.0} ms model + {:.0} ms pre/post | – | – |",
        per_page(on, "regions_model"),
        per_page(on, "regions_pre_post")
    );
    println!("| wall time per page, layout on − off | {:.0} ms | | |", wall_ms(0) - wall_ms(1));
    for (name, side) in [("layout on", on), ("layout off", off)] {
        eprintln!("stages in ms, summed over {} pages, {name}: {}", side.report["pages"], side.report["stages_ms"]);
    }
    let same = format!("{} pages × {repeat}, {threads} threads, ocr.models = {models}", pages.len());
    let of_rounds = if rounds > 1 { format!(" (medians of {rounds} rounds)") } else { String::new() };
    Ok(vec![
        Headline::ratio(
            "ocr-layout: pages/s, layout on vs rapidocr 3.10",
            format!("{:.2} vs {:.2} pages/s{of_rounds}, {same}{}", med(0), med(2), spread(&ratios)),
            median(&ratios),
            Goal::AtLeast(1.5),
        ),
        Headline::ratio(
            "ocr-layout: pages/s, layout on vs off",
            format!("{:.2} vs {:.2} pages/s{of_rounds}{}", med(0), med(1), spread(&on_off)),
            median(&on_off),
            Goal::AtLeast(0.7),
        ),
    ])
}
