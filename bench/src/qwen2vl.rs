//! `qwen2vl`: docfleet's Qwen2-VL generation (the decoder-only engine with the family's
//! preprocessing, `<|image_pad|>` expansion and M-RoPE positions) vs Python on the same ONNX files,
//! side by side in one run: a plain numpy + onnxruntime greedy loop over the three graphs and
//! `transformers`' `generate` on the torch checkpoint (`scripts/vlm/bench_qwen2vl.py run`). The model is
//! the random one `scripts/vlm/bench_qwen2vl.py make DIR` writes.
//!
//! Rows are `BATCH:MAX_PIXELS`: pages `DIR/pages/*.png` in name order cycled to fill the batch, at most
//! MAX_PIXELS per page (`vlm.max_pixels` here, the processor's `max_pixels` in Python: the same image
//! tokens on both sides). Every row generates exactly `--new-tokens` tokens per page. Preprocessing
//! is outside the timings. Rust runs first, then Python in a child process.

use std::path::Path;

use anyhow::Context;
use docfleet_core::Settings;
use docfleet_core::config::Limits;
use docfleet_worker::pipeline::vlm::Vlm;
use docfleet_worker::pipeline::vlm::idefics3::generate::PageInput;
use serde_json::Value;

use crate::summary::{Goal, Headline};

/// make_qwen2vl.py's task prompt, as the Python side uses it.
const PROMPT: &str = "Read the text on this page.";

struct Row {
    /// Image tokens of each page of the row, as that side's preprocessing gave them.
    image_tokens: Vec<usize>,
    tokens_per_s: f64,
    wall: f64,
    outside: Option<f64>,
    ids: Vec<Vec<i64>>,
}

/// `docfleet-bench qwen2vl`.
pub fn run(
    model: &Path,
    python: &Path,
    threads: usize,
    rows: &[(usize, u64)],
    new_tokens: usize,
    spinning: bool,
) -> anyhow::Result<Vec<Headline>> {
    crate::pyside::require_model(model, "bench_qwen2vl.py make")?;
    let mut pages = Vec::new();
    let files = crate::pyside::pages(model)?;
    for file in &files {
        let (_, mut raster) = docfleet_worker::document::rasterize(&std::fs::read(file)?, &Limits::default(), 150.0)?;
        pages.push(raster.remove(0).image);
    }
    eprintln!(
        "model {} ({} pages), {new_tokens} new tokens per page, {threads} onnxruntime threads, spinning {spinning}; {}",
        model.display(),
        pages.len(),
        crate::summary::machine()
    );

    let mut rust = Vec::new();
    for &(batch, max_pixels) in rows {
        let mut settings = Settings::default();
        settings.models.vlm.dir = Some(model.to_path_buf());
        settings.runtime.intra_threads = threads;
        settings.runtime.inter_threads = 0;
        settings.runtime.intra_op_spinning = spinning;
        settings.vlm.max_pixels = max_pixels;
        let vlm = Vlm::load(&settings).context("loading the model (run scripts/setup/onnxruntime.sh?)")?;
        let engine = vlm.idefics3().context("the bench model is not a decoder-only export")?.clone();
        let rendered = engine.render(PROMPT)?;
        let mut inputs: Vec<PageInput> = Vec::new();
        let mut tokens = Vec::new();
        for i in 0..batch {
            let (input, n, _, _) = engine
                .qwen_page(&pages[i % pages.len()], &rendered)?
                .context("the bench model is not a Qwen2-VL export")?;
            inputs.push(input);
            tokens.push(n);
        }
        engine.generate_exactly(&inputs, 2)?; // warm-up
        let (generated, times) = engine.generate_exactly(&inputs, new_tokens)?;
        anyhow::ensure!(generated.iter().all(|g| g.ids.len() == new_tokens), "a row stopped early");
        let wall = times.total.as_secs_f64();
        eprintln!(
            "rust batch {batch}, max_pixels {max_pixels} (image tokens {tokens:?}): {:.1} tokens/s, vision+embed \
             {:.2} s, decoder {:.2} s, outside session.run {:.2} %",
            (batch * new_tokens) as f64 / wall,
            times.encoder.as_secs_f64(),
            times.decoder.as_secs_f64(),
            100.0 * times.host().as_secs_f64() / wall.max(f64::MIN_POSITIVE)
        );
        rust.push(Row {
            image_tokens: tokens.clone(),
            tokens_per_s: (batch * new_tokens) as f64 / wall,
            wall,
            outside: Some(times.host().as_secs_f64()),
            ids: generated.into_iter().map(|g| g.ids).collect(),
        });
    }

    let (mut cmd, script) = crate::pyside::command(python, "bench_qwen2vl.py")?;
    let list: Vec<String> = rows.iter().map(|(b, p)| format!("{b}:{p}")).collect();
    cmd.arg("run").arg(model).args([
        "--threads",
        &threads.to_string(),
        "--rows",
        &list.join(","),
        "--new-tokens",
        &new_tokens.to_string(),
    ]);
    if spinning {
        cmd.arg("--spinning");
    }
    let reported = crate::pyside::run(cmd, &script, rust.len())?;
    let row = |v: &Value| {
        let wall = v["wall_s"].as_f64().unwrap_or(f64::NAN);
        Row {
            image_tokens: serde_json::from_value(v["image_tokens"].clone()).unwrap_or_default(),
            tokens_per_s: v["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            wall,
            outside: v["outside_run_fraction"].as_f64().map(|x| x * wall),
            ids: serde_json::from_value(v["ids"].clone()).unwrap_or_default(),
        }
    };
    let ort_loop: Vec<Row> = reported.ort_loop.iter().map(row).collect();
    let transformers: Vec<Row> = reported.transformers.iter().map(row).collect();

    for (r, o) in rust.iter().zip(&ort_loop) {
        anyhow::ensure!(
            r.image_tokens == o.image_tokens,
            "the Python processor gave image tokens {:?}, docfleet {:?}",
            o.image_tokens,
            r.image_tokens
        );
    }
    let pct = |r: &Row| r.outside.map(|o| format!("{:.1} %", 100.0 * o / r.wall)).unwrap_or_else(|| "–".into());
    println!(
        "| batch | max_pixels | image tokens per page | docfleet tokens/s | Python ort loop | ratio | transformers | \
         ratio | docfleet s | outside session.run: docfleet / ort loop | same ids (ort loop / transformers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut headlines = Vec::new();
    for (i, ((r, o), t)) in rust.iter().zip(&ort_loop).zip(&transformers).enumerate() {
        let (batch, max_pixels) = rows[i];
        let same = |x: &Row| if x.ids == r.ids { "yes" } else { "no" };
        let tokens: Vec<String> = r.image_tokens.iter().map(|n| n.to_string()).collect();
        println!(
            "| {batch} | {max_pixels} | {} | {:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× | {:.2} | {} / {} | {} / {} |",
            tokens.join(", "),
            r.tokens_per_s,
            o.tokens_per_s,
            r.tokens_per_s / o.tokens_per_s,
            t.tokens_per_s,
            r.tokens_per_s / t.tokens_per_s,
            r.wall,
            pct(r),
            pct(o),
            same(o),
            same(t)
        );
        anyhow::ensure!(t.ids == r.ids, "row {batch}:{max_pixels}: docfleet and transformers generated different ids");
        headlines.push(Headline::ratio(
            format!("qwen2vl: docfleet vs Python onnxruntime loop, batch {batch}, max_pixels {max_pixels}"),
            format!("{:.1} vs {:.1} tokens/s", r.tokens_per_s, o.tokens_per_s),
            r.tokens_per_s / o.tokens_per_s,
            Goal::AtLeast(1.0),
        ));
        headlines.push(Headline::ratio(
            format!("qwen2vl: docfleet vs transformers generate, batch {batch}, max_pixels {max_pixels}"),
            format!("{:.1} vs {:.1} tokens/s, same ids", r.tokens_per_s, t.tokens_per_s),
            r.tokens_per_s / t.tokens_per_s,
            Goal::AtLeast(1.0),
        ));
    }
    Ok(headlines)
}
