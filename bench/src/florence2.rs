//! `florence2`: docfleet's Florence-2 generation (the encoder-decoder engine with the family's
//! 768 × 768 preprocessing, task question and `inputs_embeds` decoder) vs Python on the same ONNX
//! files, side by side in one run: a plain numpy + onnxruntime greedy loop over the four graphs and
//! `transformers`' `generate` on the torch checkpoint (`scripts/vlm/bench_florence2.py run`). The model
//! is the Florence-2-base-sized random one `scripts/vlm/bench_florence2.py make DIR` writes.
//!
//! Per batch size: pages `DIR/pages/*.png` in name order cycled to fill the batch, every page
//! exactly `--new-tokens` tokens (the last the generation config's forced EOS). Image tokens per
//! page are fixed by the processor (577 at 768 × 768), so there is no image-token axis as for
//! Qwen2-VL. Preprocessing is outside the timings. Rust runs first, then Python in a child process.

use std::path::Path;

use anyhow::Context;
use docfleet_core::Settings;
use docfleet_core::config::Limits;
use docfleet_worker::pipeline::vlm::Vlm;
use serde_json::Value;

use crate::summary::{Goal, Headline};

struct Row {
    tokens_per_s: f64,
    wall: f64,
    /// Seconds of the vision encoder, question embedding and encoder (docfleet, ort loop).
    encoder: Option<f64>,
    outside: Option<f64>,
    ids: Vec<Vec<i64>>,
}

/// `docfleet-bench florence2`.
pub fn run(
    model: &Path,
    python: &Path,
    threads: usize,
    batches: &[usize],
    new_tokens: usize,
    task: &str,
    spinning: bool,
) -> anyhow::Result<Vec<Headline>> {
    crate::pyside::require_model(model, "bench_florence2.py make")?;
    let files = crate::pyside::pages(model)?;

    let mut settings = Settings::default();
    settings.models.vlm.dir = Some(model.to_path_buf());
    settings.runtime.intra_threads = threads;
    settings.runtime.inter_threads = 0;
    settings.runtime.intra_op_spinning = spinning;
    let vlm = Vlm::load(&settings).context("loading the model (run scripts/setup/onnxruntime.sh?)")?;
    let engine = vlm.florence2().context("the bench model is not a Florence-2 export")?.clone();
    let mut pixels = Vec::new();
    for file in &files {
        let (_, mut raster) = docfleet_worker::document::rasterize(&std::fs::read(file)?, &Limits::default(), 150.0)?;
        pixels.push(engine.pixel_values(&raster.remove(0).image)?);
    }
    let question = engine.task_ids(task, None)?;
    eprintln!(
        "model {} ({} pages), task {task} ({} question tokens), {new_tokens} new tokens per page, {threads} \
         onnxruntime threads, spinning {spinning}; {}",
        model.display(),
        files.len(),
        question.len(),
        crate::summary::machine()
    );

    let mut rust = Vec::new();
    for &batch in batches {
        let flat: Vec<f32> = (0..batch).flat_map(|i| pixels[i % pixels.len()].iter().copied()).collect();
        engine.generate_exactly(&flat, batch, &question, 2)?; // warm-up
        let (generated, times) = engine.generate_exactly(&flat, batch, &question, new_tokens)?;
        anyhow::ensure!(generated.iter().all(|g| g.ids.len() == new_tokens), "a row stopped early");
        let wall = times.total.as_secs_f64();
        eprintln!(
            "rust batch {batch}: {:.1} tokens/s, vision+encoder {:.2} s, decoder {:.2} s, outside session.run {:.2} %",
            (batch * new_tokens) as f64 / wall,
            times.encoder.as_secs_f64(),
            times.decoder.as_secs_f64(),
            100.0 * times.host().as_secs_f64() / wall.max(f64::MIN_POSITIVE)
        );
        rust.push(Row {
            tokens_per_s: (batch * new_tokens) as f64 / wall,
            wall,
            encoder: Some(times.encoder.as_secs_f64()),
            outside: Some(times.host().as_secs_f64()),
            ids: generated.into_iter().map(|g| g.ids).collect(),
        });
    }
    drop(vlm);
    drop(engine);

    let (mut cmd, script) = crate::pyside::command(python, "bench_florence2.py")?;
    let list: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
    cmd.arg("run").arg(model).args([
        "--threads",
        &threads.to_string(),
        "--batches",
        &list.join(","),
        "--new-tokens",
        &new_tokens.to_string(),
        "--task",
        task,
    ]);
    if spinning {
        cmd.arg("--spinning");
    }
    let rows = crate::pyside::run(cmd, &script, rust.len())?;
    let row = |v: &Value| {
        let wall = v["wall_s"].as_f64().unwrap_or(f64::NAN);
        Row {
            tokens_per_s: v["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            wall,
            encoder: v["encoder_s"].as_f64(),
            outside: v["outside_run_fraction"].as_f64().map(|x| x * wall),
            ids: serde_json::from_value(v["ids"].clone()).unwrap_or_default(),
        }
    };
    let ort_loop: Vec<Row> = rows.ort_loop.iter().map(row).collect();
    let transformers: Vec<Row> = rows.transformers.iter().map(row).collect();

    let pct = |r: &Row| r.outside.map(|o| format!("{:.1} %", 100.0 * o / r.wall)).unwrap_or_else(|| "–".into());
    let secs = |x: Option<f64>| x.map(|s| format!("{s:.2}")).unwrap_or_else(|| "–".into());
    println!(
        "| batch | docfleet tokens/s | Python ort loop | ratio | transformers | ratio | docfleet s (vision+encoder) | \
         ort loop s (vision+encoder) | outside session.run: docfleet / ort loop | same ids (ort loop / transformers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut headlines = Vec::new();
    for ((&batch, r), (o, t)) in batches.iter().zip(&rust).zip(ort_loop.iter().zip(&transformers)) {
        let same = |x: &Row| if x.ids == r.ids { "yes" } else { "no" };
        println!(
            "| {batch} | {:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× | {:.2} ({}) | {:.2} ({}) | {} / {} | {} / {} |",
            r.tokens_per_s,
            o.tokens_per_s,
            r.tokens_per_s / o.tokens_per_s,
            t.tokens_per_s,
            r.tokens_per_s / t.tokens_per_s,
            r.wall,
            secs(r.encoder),
            o.wall,
            secs(o.encoder),
            pct(r),
            pct(o),
            same(o),
            same(t)
        );
        anyhow::ensure!(t.ids == r.ids, "batch {batch}: docfleet and transformers generated different ids");
        headlines.push(Headline::ratio(
            format!("florence2: docfleet vs Python onnxruntime loop, batch {batch}"),
            format!("{:.1} vs {:.1} tokens/s", r.tokens_per_s, o.tokens_per_s),
            r.tokens_per_s / o.tokens_per_s,
            Goal::AtLeast(1.0),
        ));
        headlines.push(Headline::ratio(
            format!("florence2: docfleet vs transformers generate, batch {batch}"),
            format!("{:.1} vs {:.1} tokens/s, same ids", r.tokens_per_s, t.tokens_per_s),
            r.tokens_per_s / t.tokens_per_s,
            Goal::AtLeast(1.0),
        ));
    }
    Ok(headlines)
}
