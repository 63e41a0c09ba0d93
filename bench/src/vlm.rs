//! `vlm`: the Rust `vlm` generation loop vs `transformers`' `generate` driving optimum's
//! onnxruntime sessions (`ORTModelForVision2Seq`), side by side in one run: the same ONNX files,
//! the same onnxruntime library version and thread count, the same pixel values (preprocessed
//! here and handed to Python as `.npy`), greedy search with the model's generation config. Rust
//! runs first in this process, then Python in a child process, never at the same time.
//!
//! Per batch size: tokens/s and images/s over `--repeat` passes after a warm-up pass, and the
//! time outside `session.run` (Rust: the whole loop minus the encoder and decoder runs; Python:
//! wall minus the time inside `InferenceSession.run`). Both sides' ids are compared.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use docfleet_core::Settings;
use docfleet_core::config::Limits;
use docfleet_worker::pipeline::vlm::VlmEngine;
use docfleet_worker::pipeline::vlm::generate::Times;
use serde_json::Value;

use crate::summary::{Goal, Headline};

/// Fixture images (the generation set, then the preprocessing set), as the pipeline reads them.
const IMAGES: &[&str] = &[
    "images/receipt.png",
    "images/banner.png",
    "images/noise.png",
    "images/small.png",
    "preprocess/images/tall_receipt.png",
    "preprocess/images/wide_strip.png",
    "preprocess/images/exact.png",
    "preprocess/images/landscape.png",
];

/// One side's figures for one batch size.
struct Figures {
    images: usize,
    tokens: usize,
    wall: f64,
    /// Seconds outside `session.run`.
    outside: f64,
    ids: Vec<Vec<i64>>,
}

impl Figures {
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.wall
    }
    fn images_per_s(&self) -> f64 {
        self.images as f64 / self.wall
    }
    fn outside_pct(&self) -> f64 {
        100.0 * self.outside / self.wall
    }
}

fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> anyhow::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for v in data {
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(path, bytes)?;
    Ok(())
}

/// `docfleet-bench vlm`.
pub fn run(
    model: &Path,
    python: &Path,
    threads: usize,
    repeat: usize,
    batches: &[usize],
) -> anyhow::Result<Vec<Headline>> {
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mut settings = Settings::default();
    settings.models.vlm.dir = Some(model.to_owned());
    settings.runtime.intra_threads = threads;
    settings.runtime.inter_threads = 0;
    let engine = VlmEngine::load(&settings).context("loading the model (run scripts/setup/onnxruntime.sh?)")?;
    let info = engine.model_info();

    // The same inputs for both sides.
    let fixtures = docfleet_tests::repo_root().join("tests/fixtures/vlm");
    let mut pixels = Vec::new();
    for name in IMAGES {
        let bytes = std::fs::read(fixtures.join(name))?;
        let (_, pages) = docfleet_worker::document::rasterize(&bytes, &Limits::default(), 150.0)?;
        pixels.extend(engine.pixel_values(&pages[0].image)?);
    }
    let per_image = pixels.len() / IMAGES.len();
    let [w, h] =
        [info["input_size"][0].as_u64().unwrap_or(0) as usize, info["input_size"][1].as_u64().unwrap_or(0) as usize];
    let dir = tempfile::tempdir()?;
    let npy = dir.path().join("pixel_values.npy");
    write_npy(&npy, &[IMAGES.len(), 3, h, w], &pixels)?;
    let prompt = engine.prompt_ids(None)?;
    let limit = engine.token_limit(prompt.len(), None);
    eprintln!(
        "model {} ({} decoder, {}x{} input), {} images, {repeat} passes after a warm-up, {threads} onnxruntime threads, \
         {} cores: {machine}; token limit {limit}",
        info["id"],
        info["layout"],
        w,
        h,
        IMAGES.len(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let mut rust = Vec::new();
    for &batch in batches {
        let pass = |times: &mut Times| -> anyhow::Result<(usize, Vec<Vec<i64>>)> {
            let mut ids = Vec::new();
            for chunk in pixels.chunks(batch * per_image) {
                let n = chunk.len() / per_image;
                let (generated, t) = engine.generate(chunk, n, &prompt, limit)?;
                times.encoder += t.encoder;
                times.decoder += t.decoder;
                times.total += t.total;
                times.steps += t.steps;
                ids.extend(generated.into_iter().map(|g| g.ids));
            }
            Ok((ids.iter().map(Vec::len).sum(), ids))
        };
        let (_, first) = pass(&mut Times::default())?;
        let mut times = Times::default();
        let mut tokens = 0;
        for _ in 0..repeat {
            tokens += pass(&mut times)?.0;
        }
        let wall = times.total.as_secs_f64();
        rust.push(Figures {
            images: repeat * IMAGES.len(),
            tokens,
            wall,
            outside: times.host().as_secs_f64(),
            ids: first,
        });
        let f = rust.last().expect("pushed");
        eprintln!(
            "rust batch {batch}: {:.1} tokens/s, {:.2} images/s, encoder {:.2} s, decoder {:.2} s, outside session.run \
             {:.3} s ({:.2} %, {:.1} µs per token)",
            f.tokens_per_s(),
            f.images_per_s(),
            times.encoder.as_secs_f64(),
            times.decoder.as_secs_f64(),
            f.outside,
            f.outside_pct(),
            1e6 * f.outside / f.tokens as f64
        );
    }
    drop(engine);

    if !python.exists() {
        bail!(
            "{} is missing: create the venv as tests/fixtures/vlm/README.md describes (`python3.11 -m venv \
             ~/.cache/docfleet/vlm-venv && ~/.cache/docfleet/vlm-venv/bin/pip install -r scripts/vlm/requirements.txt`)",
            python.display()
        );
    }
    let script = docfleet_tests::repo_root().join("scripts/vlm/bench_python.py");
    let list: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
    let out = Command::new(python)
        .arg(&script)
        .arg(model)
        .arg(&npy)
        .arg(threads.to_string())
        .arg(repeat.to_string())
        .arg(list.join(","))
        .stderr(Stdio::inherit())
        .output()
        .context("running the Python side")?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), out.status);
    }
    let mut python_figs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let wall = v["wall_s"].as_f64().unwrap_or(f64::NAN);
        let ids: Vec<Vec<i64>> = serde_json::from_value(v["ids"].clone()).unwrap_or_default();
        python_figs.push(Figures {
            images: v["images"].as_u64().unwrap_or(0) as usize,
            tokens: v["tokens"].as_u64().unwrap_or(0) as usize,
            wall,
            outside: wall - v["inside_run_s"].as_f64().unwrap_or(f64::NAN),
            ids,
        });
    }
    if python_figs.len() != rust.len() {
        bail!("the Python side reported {} batch sizes, expected {}", python_figs.len(), rust.len());
    }

    println!(
        "| batch | Rust tokens/s | Python tokens/s | ratio | Rust images/s | Python images/s | outside session.run: Rust | Python | same ids |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((batch, r), p) in batches.iter().zip(&rust).zip(&python_figs) {
        println!(
            "| {batch} | {:.1} | {:.1} | {:.2}× | {:.2} | {:.2} | {:.2} % ({:.0} µs/token) | {:.1} % ({:.0} µs/token) | {} |",
            r.tokens_per_s(),
            p.tokens_per_s(),
            r.tokens_per_s() / p.tokens_per_s(),
            r.images_per_s(),
            p.images_per_s(),
            r.outside_pct(),
            1e6 * r.outside / r.tokens as f64,
            p.outside_pct(),
            1e6 * p.outside / p.tokens as f64,
            if r.ids == p.ids { "yes" } else { "NO" }
        );
    }
    let model_name = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut headlines = Vec::new();
    for ((batch, r), p) in batches.iter().zip(&rust).zip(&python_figs) {
        anyhow::ensure!(r.ids == p.ids, "batch {batch}: Rust and Python generated different token ids");
        headlines.push(Headline {
            comparison: format!("vlm: Rust tokens/s vs transformers generate, batch {batch}"),
            detail: format!(
                "{:.0} vs {:.0} tokens/s ({model_name}), same token ids",
                r.tokens_per_s(),
                p.tokens_per_s()
            ),
            value: r.tokens_per_s() / p.tokens_per_s(),
            unit: "×",
            goal: None,
        });
        headlines.push(Headline {
            comparison: format!("vlm: time outside session.run, batch {batch}"),
            detail: format!("Python: {:.1} %", p.outside_pct()),
            value: r.outside_pct(),
            unit: " %",
            goal: Some(Goal::AtMost(5.0)),
        });
    }
    Ok(headlines)
}
