//! `ocr`: the Rust `ocr` pipeline vs Python `rapidocr-onnxruntime` 1.4.4, side by side in one run:
//! the same page images (PNG files both read), the same onnxruntime thread count, one process
//! each, run one after the other so they never share the cores.
//!
//! Pages: the committed OCR fixtures' full pages (paragraph, two-column, rotated) and the three
//! A4 pages of `doc_three_pages.pdf` rendered at 150 dpi by docfleet's PDF renderer, saved as PNG.
//!
//! Per side: cold start (process spawn → first page's result, models loaded from the cache),
//! pages/s over `--repeat` passes after that first page, peak RSS (VmHWM of the process), and
//! for Rust the model-only time (sum of onnxruntime session runs) vs pre/post-processing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use docfleet_core::config::Limits;
use docfleet_worker::pipeline::ocr::{OcrEngine, Timings};
use serde_json::{Value, json};

use crate::summary::{Goal, Headline};

/// Full pages of the OCR fixtures used as they are (raster).
const RASTER_PAGES: &[&str] = &["page_paragraph.png", "page_two_column.png", "page_rot180.png", "page_rot90cw.png"];

/// The Python side: rapidocr-onnxruntime with its default config, `threads` onnxruntime threads.
const PYTHON: &str = r#"
import json, sys, time
t0 = time.perf_counter()
from rapidocr_onnxruntime import RapidOCR
threads, repeat, pages = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
engine(pages[0])
print(json.dumps({"event": "first"}), flush=True)
t = time.perf_counter()
n = 0
elapse = [0.0, 0.0, 0.0]
for _ in range(repeat):
    for p in pages:
        _, e = engine(p)
        n += 1
        for i, v in enumerate(e or [0, 0, 0]):
            elapse[i] += v or 0.0
wall = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"event": "done", "pages": n, "wall_s": wall, "stage_s": elapse, "peak_rss_kib": int(hwm)}), flush=True)
"#;

/// Render the page set into `dir` (not timed).
pub(crate) fn prepare_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let fixtures = docfleet_tests::repo_root().join("tests/fixtures/ocr");
    let mut pages = Vec::new();
    let pdf = std::fs::read(fixtures.join("doc_three_pages.pdf"))?;
    let (_, rendered) = docfleet_worker::document::rasterize(&pdf, &Limits::default(), 150.0)?;
    for (i, page) in rendered.iter().enumerate() {
        let path = dir.join(format!("a4_150dpi_page{}.png", i + 1));
        page.image.save(&path)?;
        pages.push(path);
    }
    for name in RASTER_PAGES {
        let path = dir.join(name);
        std::fs::copy(fixtures.join(name), &path)?;
        pages.push(path);
    }
    Ok(pages)
}

/// One side's figures.
#[derive(Debug)]
struct Side {
    cold_start: Duration,
    report: Value,
}

/// Run a child that prints `{"event":"first"}` after its first page and a final JSON line.
fn measure(mut cmd: Command) -> anyhow::Result<Side> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("spawn")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut cold_start = None;
    let mut report = None;
    for line in lines.by_ref() {
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
        bail!("{cmd:?} failed: {status}");
    }
    Ok(Side {
        cold_start: cold_start.context("child never reported its first page")?,
        report: report.context("child never reported its totals")?,
    })
}

/// `docfleet-bench ocr`.
pub fn run(threads: usize, repeat: usize, python: &Path) -> anyhow::Result<Vec<Headline>> {
    let dir = tempfile::tempdir()?;
    let pages = prepare_pages(dir.path())?;
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    eprintln!(
        "{} pages ({} A4 at 150 dpi + {} raster), {repeat} passes, {threads} onnxruntime threads, {} cores: {machine}",
        pages.len(),
        pages.len() - RASTER_PAGES.len(),
        RASTER_PAGES.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let mut rust = Command::new(std::env::current_exe()?);
    rust.arg("ocr-child")
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--repeat")
        .arg(repeat.to_string())
        .args(&pages);
    let rust = measure(rust).context("the Rust side")?;

    if !python.exists() {
        bail!(
            "{} is missing: create the rapidocr venv as tests/fixtures/ocr/README.md describes (`python3.11 -m venv ~/.cache/docfleet/ocr-venv && ~/.cache/docfleet/ocr-venv/bin/pip install -r scripts/ocr/requirements.txt`)",
            python.display()
        );
    }
    let mut py = Command::new(python);
    py.arg("-c").arg(PYTHON).arg(threads.to_string()).arg(repeat.to_string()).args(&pages);
    let py = measure(py).context("the Python side")?;

    let pps = |s: &Side| s.report["pages"].as_f64().unwrap_or(0.0) / s.report["wall_s"].as_f64().unwrap_or(f64::NAN);
    let rss = |s: &Side| s.report["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let (r_pps, p_pps) = (pps(&rust), pps(&py));
    let (r_rss, p_rss) = (rss(&rust), rss(&py));
    let model_s = rust.report["model_s"].as_f64().unwrap_or(f64::NAN);
    let pre_post_s = rust.report["pre_post_s"].as_f64().unwrap_or(f64::NAN);
    let decode_s = rust.report["decode_s"].as_f64().unwrap_or(f64::NAN);
    let wall_s = rust.report["wall_s"].as_f64().unwrap_or(f64::NAN);
    println!("| | Rust `ocr` | Python rapidocr-onnxruntime 1.4.4 | ratio |");
    println!("|---|---|---|---|");
    println!("| pages/s (warm) | {r_pps:.2} | {p_pps:.2} | {:.2}× |", r_pps / p_pps);
    println!("| peak RSS | {r_rss:.0} MiB | {p_rss:.0} MiB | {:.2}× |", r_rss / p_rss);
    println!(
        "| cold start to first result | {:.2} s | {:.2} s | {:.2}× |",
        rust.cold_start.as_secs_f64(),
        py.cold_start.as_secs_f64(),
        rust.cold_start.as_secs_f64() / py.cold_start.as_secs_f64()
    );
    println!(
        "| Rust time split | model (session runs) {model_s:.2} s, pre/post {pre_post_s:.2} s = {:.1} % of model, PNG decode {decode_s:.2} s, wall {wall_s:.2} s | | |",
        100.0 * pre_post_s / model_s
    );
    let stages = &py.report["stage_s"];
    println!(
        "| Python stage times (RapidOCR's own, incl. its pre/post) | det {:.2} s, cls {:.2} s, rec {:.2} s, wall {:.2} s | | |",
        stages[0].as_f64().unwrap_or(0.0),
        stages[1].as_f64().unwrap_or(0.0),
        stages[2].as_f64().unwrap_or(0.0),
        py.report["wall_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "{}",
        json!({"rust": rust.report, "python": py.report, "rust_cold_start_s": rust.cold_start.as_secs_f64(), "python_cold_start_s": py.cold_start.as_secs_f64()})
    );
    let same = format!("{} pages × {repeat}, {threads} threads each", pages.len());
    Ok(vec![
        Headline::ratio(
            "ocr: Rust pages/s vs rapidocr-onnxruntime",
            format!("{r_pps:.2} vs {p_pps:.2} pages/s, {same}"),
            r_pps / p_pps,
            Goal::AtLeast(1.5),
        ),
        Headline::ratio(
            "ocr: Rust peak RSS vs rapidocr-onnxruntime",
            format!("{r_rss:.0} vs {p_rss:.0} MiB"),
            r_rss / p_rss,
            Goal::AtMost(0.5),
        ),
        Headline::seconds(
            "ocr: Rust cold start to first page",
            format!("Python: {:.2} s", py.cold_start.as_secs_f64()),
            rust.cold_start.as_secs_f64(),
            Some(Goal::AtMost(2.0)),
        ),
    ])
}

/// The Rust side, in its own process: load the engine from the model cache (as the worker does),
/// read the first page, then `repeat` passes over all pages.
pub fn child(threads: usize, repeat: usize, pages: &[PathBuf]) -> anyhow::Result<()> {
    // The worker's configuration (profile, DOCFLEET__ variables), with the benchmark's threads.
    let mut settings = docfleet_core::config::load(&docfleet_core::config::LoadOptions::default())?.settings;
    settings.runtime.intra_threads = threads;
    settings.runtime.inter_threads = 1;
    let engine = OcrEngine::load(&settings)?;
    let first = pages.first().context("no pages")?;
    engine.read_document(&std::fs::read(first)?)?;
    println!("{}", json!({"event": "first"}));
    let bytes: Vec<Vec<u8>> = pages.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut total = Timings::default();
    let mut n = 0;
    for _ in 0..repeat {
        for doc in &bytes {
            let (_, _, t) = engine.read_document_timed(doc)?;
            total.add(&t);
            n += 1;
        }
    }
    let wall = started.elapsed();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!(
        "{}",
        json!({
            "event": "done",
            "pages": n,
            "wall_s": wall.as_secs_f64(),
            "model_s": total.model().as_secs_f64(),
            "pre_post_s": total.pre_post().as_secs_f64(),
            "decode_s": total.decode.as_secs_f64(),
            "stages_ms": total.to_json(Some(wall)),
            "peak_rss_kib": hwm,
        })
    );
    Ok(())
}
