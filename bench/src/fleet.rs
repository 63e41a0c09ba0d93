//! `fleet`: the `ocr` fleet end to end against its own models alone, and worker cold start.
//!
//! 1. Model alone (the physical limit of this machine): the documents are read once in this
//!    process by the `ocr` engine with every model's inputs recorded; then each model's recorded
//!    inputs are replayed through its sessions (all queued at once, run side by side, each call as
//!    the pipeline made it) and timed. Model-only pages/s = pages ÷ the sum of the three replays.
//! 2. Fleet: the same documents as PNG objects in LocalStack S3, one `ocr` job each on LocalStack
//!    SQS, one `docfleet-worker --exit-when-empty` process. Steady pages/s from the first result
//!    to the last (result records' `completed_at_ms`); wall pages/s from process spawn to exit.
//! 3. Cold start: process spawn → the first result record written (`completed_at_ms`).
//!
//! The two sides run one after the other, so they never share the cores.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use docfleet_core::Settings;
use docfleet_tests::{Fixture, run_with_timeout, text};
use docfleet_worker::pipeline::ocr::OcrEngine;

use crate::summary::{Goal, Headline};

/// One model's replay: (model file, calls, seconds).
type Replay = (String, usize, f64);

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

pub async fn run(docs: usize, concurrency: usize) -> anyhow::Result<Vec<Headline>> {
    let dir = tempfile::tempdir()?;
    let pages = crate::ocr::prepare_pages(dir.path())?;
    let bytes: Vec<Vec<u8>> = pages.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let docs_bytes: Vec<Vec<u8>> = (0..docs).map(|i| bytes[i % bytes.len()].clone()).collect();
    println!(
        "fleet: {docs} one-page documents ({} distinct pages), ocr pipeline, worker concurrency {concurrency}",
        bytes.len()
    );

    // --- 1. The models alone.
    let engine_docs = docs_bytes.clone();
    let (pipeline_secs, replays) = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, Vec<Replay>)> {
        let settings = Settings::default();
        let engine = OcrEngine::load(&settings)
            .map_err(|e| anyhow::anyhow!("{e} (run `eval \"$(scripts/setup/onnxruntime.sh)\"` first)"))?;
        engine.read_document(&engine_docs[0])?; // warm-up, not recorded
        for m in engine.models() {
            m.record_inputs(true);
        }
        let started = Instant::now();
        for d in &engine_docs {
            engine.read_document(d)?;
        }
        let pipeline_secs = started.elapsed().as_secs_f64();
        let mut replays = Vec::new();
        for m in engine.models() {
            let inputs = m.record_inputs(false);
            let started = Instant::now();
            let pending: Vec<_> = inputs.iter().map(|(shape, data)| m.submit_alone(shape, data)).collect();
            for p in pending {
                p.wait()?;
            }
            let name = m.id.rsplit('/').next().unwrap_or(&m.id).to_owned();
            replays.push((name, inputs.len(), started.elapsed().as_secs_f64()));
        }
        Ok((pipeline_secs, replays))
    })
    .await??;
    let model_secs: f64 = replays.iter().map(|r| r.2).sum();
    let model_rate = docs as f64 / model_secs;
    for (name, calls, secs) in &replays {
        println!("  model alone: {name:<40} {calls:>5} calls  {secs:>7.2} s");
    }
    println!("  model alone, all stages:   {model_secs:>7.2} s  {model_rate:>6.2} pages/s");
    println!(
        "  in-process pipeline, one document at a time: {pipeline_secs:>7.2} s  {:>6.2} pages/s",
        docs as f64 / pipeline_secs
    );

    // --- 2. The fleet on LocalStack, with and without cross-job batching.
    let mut headlines = Vec::new();
    for batching in [false, true] {
        let (steady, cold) = fleet(&docs_bytes, concurrency, batching).await?;
        println!("  ratio fleet steady / model alone (batch_across_jobs = {batching}): {:.3}", steady / model_rate);
        headlines.push(Headline::ratio(
            format!("fleet: ocr on LocalStack vs models alone, batch_across_jobs = {batching}"),
            format!("{steady:.2} vs {model_rate:.2} pages/s, {docs} pages, concurrency {concurrency}"),
            steady / model_rate,
            Goal::AtLeast(0.95),
        ));
        headlines.push(Headline::seconds(
            format!("worker cold start to first result, batch_across_jobs = {batching}"),
            "process spawn → first ocr result written",
            cold,
            Some(Goal::AtMost(2.0)),
        ));
    }
    Ok(headlines)
}

/// One fleet run; returns its steady pages/s and cold start seconds.
async fn fleet(docs_bytes: &[Vec<u8>], concurrency: usize, batching: bool) -> anyhow::Result<(f64, f64)> {
    let docs = docs_bytes.len();
    let fx = Fixture::new(&format!("bench-fleet-ocr-{batching}"), 5, 300).await;
    let keys = crate::put_pages(&fx, docs_bytes).await;
    crate::send_jobs(&fx, &keys, Some("ocr")).await;
    let mut cmd = crate::worker_command(&fx);
    for var in ["ORT_DYLIB_PATH", "HF_HUB_CACHE", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .env("DOCFLEET__WORKER__CONCURRENCY", concurrency.to_string())
        .env("DOCFLEET__OCR__BATCH_ACROSS_JOBS", batching.to_string())
        .arg("--exit-when-empty");
    let spawned_ms = now_ms();
    let started = Instant::now();
    let out = run_with_timeout(&mut cmd, Duration::from_secs(1800));
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "worker failed: {}", text(&out).1);
    let mut completed = crate::completed_at(&fx, docs).await?;
    completed.sort_by(f64::total_cmp);
    let cold = (completed[0] - spawned_ms) / 1e3;
    let span = (completed[docs - 1] - completed[0]) / 1e3;
    let steady = (docs - 1) as f64 / span;
    println!("  fleet, batch_across_jobs = {batching}:");
    println!("    wall (spawn → exit):            {wall:>7.2} s  {:>6.2} pages/s", docs as f64 / wall);
    println!("    steady (first → last result):   {span:>7.2} s  {steady:>6.2} pages/s");
    println!("    cold start (spawn → first result): {cold:.2} s");
    Ok((steady, cold))
}
