//! `idefics3`: docfleet's Idefics3 generation (the `vlm` pipeline's decoder-only family) vs Python on
//! the same ONNX files, side by side in one run: (a) a plain numpy + onnxruntime greedy loop over
//! the three graphs (the same steps docfleet runs) and (b) `transformers`' `generate` on the torch
//! checkpoint the export was made from. The model is the SmolVLM-256M-sized random one that
//! `scripts/vlm/make_idefics3.py --bench DIR` writes (hidden sizes of SmolVLM-256M, random weights).
//!
//! Every row generates exactly `--new-tokens` tokens (stop tokens suppressed until then, as
//! `min_new_tokens` does), so every engine does the same work. Pages are `DIR/pages/*.png` in name
//! order, cycled to fill a batch; image splitting is off unless `--split` (as the Python side).
//! Preprocessing is outside the timings on both sides. Rust runs first in this process, then
//! Python in a child process (`scripts/vlm/bench_idefics3_python.py`), never at the same time.

use std::path::{Path, PathBuf};

use anyhow::Context;
use docfleet_core::Settings;
use docfleet_core::config::Limits;
use docfleet_worker::pipeline::vlm::Vlm;
use docfleet_worker::pipeline::vlm::generate::Times;
use docfleet_worker::pipeline::vlm::idefics3::generate::PageInput;
use serde_json::Value;

use crate::summary::{Goal, Headline};

/// The Idefics3 docling prompt, as the Python side uses it.
const PROMPT: &str = "Convert this page to docling.";

struct Figures {
    tokens: usize,
    wall: f64,
    /// Seconds outside `session.run` (None: not measurable, transformers).
    outside: Option<f64>,
    first_row: Vec<i64>,
}

impl Figures {
    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.wall
    }
}

/// A copy of the model directory (links) whose processor config has `do_image_splitting` as asked.
fn with_splitting(model: &Path, split: bool, dir: &Path) -> anyhow::Result<PathBuf> {
    let out = dir.join("model");
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(model)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "preprocessor_config.json" {
            let mut cfg: Value = serde_json::from_slice(&std::fs::read(entry.path())?)?;
            cfg["do_image_splitting"] = Value::Bool(split);
            std::fs::write(out.join(&name), serde_json::to_vec_pretty(&cfg)?)?;
        } else {
            std::os::unix::fs::symlink(entry.path(), out.join(&name))?;
        }
    }
    Ok(out)
}

/// `docfleet-bench idefics3`.
pub fn run(
    model: &Path,
    python: &Path,
    threads: usize,
    batches: &[usize],
    new_tokens: usize,
    split: bool,
    spinning: bool,
) -> anyhow::Result<Vec<Headline>> {
    crate::pyside::require_model(model, "make_idefics3.py --bench")?;
    let tmp = tempfile::tempdir()?;
    let dir = with_splitting(model, split, tmp.path())?;
    let mut settings = Settings::default();
    settings.models.vlm.dir = Some(dir.clone());
    settings.runtime.intra_threads = threads;
    settings.runtime.inter_threads = 0;
    // The same session options on both sides: docfleet's default (no spinning) unless --spinning.
    settings.runtime.intra_op_spinning = spinning;
    let vlm = Vlm::load(&settings).context("loading the model (run scripts/setup/onnxruntime.sh?)")?;
    let engine = vlm.idefics3().context("the bench model is not an Idefics3 export")?.clone();

    let page_files = crate::pyside::pages(model)?;
    let rendered = engine.render(PROMPT)?;
    let mut prepared = Vec::new();
    for file in &page_files {
        let (_, pages) = docfleet_worker::document::rasterize(&std::fs::read(file)?, &Limits::default(), 150.0)?;
        let tiles = engine.tiles(&pages[0].image)?;
        let prompt = engine.prompt_ids(&rendered, tiles.rows, tiles.cols)?;
        prepared.push(PageInput::tiles(prompt, tiles.pixels, tiles.count, engine.tile_side()));
    }
    eprintln!(
        "model {} ({} pages, splitting {}, prompt {} tokens for the first page), {new_tokens} new tokens per row, \
         {threads} onnxruntime threads, spinning {spinning}; {}",
        model.display(),
        prepared.len(),
        if split { "on" } else { "off" },
        prepared[0].prompt.len(),
        crate::summary::machine()
    );

    let mut rust = Vec::new();
    for &batch in batches {
        let inputs: Vec<PageInput> = (0..batch).map(|i| prepared[i % prepared.len()].clone()).collect();
        engine.generate_exactly(&inputs, 2)?; // warm-up
        let (generated, times): (_, Times) = engine.generate_exactly(&inputs, new_tokens)?;
        anyhow::ensure!(generated.iter().all(|g| g.ids.len() == new_tokens), "a row stopped early");
        let wall = times.total.as_secs_f64();
        let f = Figures {
            tokens: batch * new_tokens,
            wall,
            outside: Some(times.host().as_secs_f64()),
            first_row: generated[0].ids.clone(),
        };
        eprintln!(
            "rust batch {batch}: {:.1} tokens/s, vision+embed {:.2} s, decoder {:.2} s, outside session.run {:.3} s \
             ({:.2} %)",
            f.tokens_per_s(),
            times.encoder.as_secs_f64(),
            times.decoder.as_secs_f64(),
            times.host().as_secs_f64(),
            100.0 * times.host().as_secs_f64() / wall.max(f64::MIN_POSITIVE)
        );
        rust.push(f);
    }
    drop(engine);
    drop(vlm);

    let (mut cmd, script) = crate::pyside::command(python, "bench_idefics3_python.py")?;
    let list: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
    cmd.arg(&dir).args([
        "--threads",
        &threads.to_string(),
        "--batches",
        &list.join(","),
        "--new-tokens",
        &new_tokens.to_string(),
    ]);
    if split {
        cmd.arg("--split");
    }
    if spinning {
        cmd.arg("--spinning");
    }
    // The Python side reads the torch checkpoint and pages through the linked directory.
    let reported = crate::pyside::run(cmd, &script, rust.len())?;
    let figures = |v: &Value| {
        let wall = v["wall_s"].as_f64().unwrap_or(f64::NAN);
        Figures {
            tokens: v["tokens"].as_u64().unwrap_or(0) as usize,
            wall,
            outside: v["outside_run_fraction"].as_f64().map(|x| x * wall),
            first_row: serde_json::from_value(v["ids_first_row"].clone()).unwrap_or_default(),
        }
    };
    let ort_loop: Vec<Figures> = reported.ort_loop.iter().map(figures).collect();
    let transformers: Vec<Figures> = reported.transformers.iter().map(figures).collect();

    let pct = |f: &Figures| f.outside.map(|o| format!("{:.1} %", 100.0 * o / f.wall)).unwrap_or_else(|| "–".into());
    println!(
        "| batch | docfleet tokens/s | Python ort loop tokens/s | ratio | transformers tokens/s | ratio | outside \
         session.run: docfleet | ort loop | same ids (ort loop / transformers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut headlines = Vec::new();
    for (((batch, r), o), t) in batches.iter().zip(&rust).zip(&ort_loop).zip(&transformers) {
        let same = |f: &Figures| if f.first_row == r.first_row { "yes" } else { "no" };
        println!(
            "| {batch} | {:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× | {} | {} | {} / {} |",
            r.tokens_per_s(),
            o.tokens_per_s(),
            r.tokens_per_s() / o.tokens_per_s(),
            t.tokens_per_s(),
            r.tokens_per_s() / t.tokens_per_s(),
            pct(r),
            pct(o),
            same(o),
            same(t)
        );
        anyhow::ensure!(
            t.first_row == r.first_row,
            "batch {batch}: docfleet and transformers generated different token ids"
        );
        headlines.push(Headline::ratio(
            format!("idefics3: docfleet vs Python onnxruntime loop, batch {batch}"),
            format!("{:.1} vs {:.1} tokens/s", r.tokens_per_s(), o.tokens_per_s()),
            r.tokens_per_s() / o.tokens_per_s(),
            Goal::AtLeast(1.5),
        ));
        headlines.push(Headline::ratio(
            format!("idefics3: docfleet vs transformers generate, batch {batch}"),
            format!("{:.1} vs {:.1} tokens/s, same ids", r.tokens_per_s(), t.tokens_per_s()),
            r.tokens_per_s() / t.tokens_per_s(),
            Goal::AtLeast(3.0),
        ));
        headlines.push(Headline {
            comparison: format!("idefics3: time outside session.run, batch {batch}"),
            detail: format!("ort loop: {}", pct(o)),
            value: 100.0 * r.outside.unwrap_or(0.0) / r.wall,
            unit: " %",
            goal: Some(Goal::AtMost(5.0)),
        });
    }
    Ok(headlines)
}
