//! `docfleet-bench`: benchmarks run side by side in one process, printed as ratios.
//!
//! `plumbing`: N `inspect` jobs through `docfleet-worker` against LocalStack, beside a raw
//! aws-sdk loop doing the same I/O per message (receive → get input → put result → batched
//! delete) with the same concurrency. Both stop on the first empty receive (1 s long poll) once
//! the queue is empty, so both pay the same tail.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use clap::{Parser, Subcommand};
use docfleet_tests::{Fixture, repo_root, run_with_timeout, text};
use futures::StreamExt;
use summary::{Goal, Headline};

mod downloader;
mod fleet;
mod florence2;
mod idefics3;
mod ocr;
mod ocr_layout;
mod openai;
mod pyside;
mod qwen2vl;
mod scaler;
mod stats;
mod summary;
mod vlm;
mod worker;

#[derive(Parser)]
#[command(name = "docfleet-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every comparison of BENCHMARKS.md in one run, one after the other (fleet, ocr, plumbing,
    /// downloader, vlm, each with its defaults), then one table of their headline ratios against
    /// the goals. A comparison whose prerequisites are missing is reported as skipped, with why.
    All {
        /// Jobs per side for `plumbing`.
        #[arg(long, default_value_t = 2000)]
        plumbing_jobs: usize,
        /// Documents and worker concurrency for `fleet`.
        #[arg(long, default_value_t = 42)]
        fleet_docs: usize,
        #[arg(long, default_value_t = 4)]
        fleet_concurrency: usize,
        /// Timed runs per side for `downloader`.
        #[arg(long, default_value_t = 3)]
        downloader_runs: usize,
    },
    /// docfleet-worker (inspect) vs a raw aws-sdk receive → get → put → delete loop, LocalStack.
    Plumbing {
        /// Jobs per side.
        #[arg(long, default_value_t = 2000)]
        jobs: usize,
        /// Concurrent jobs (worker.concurrency, and raw loop tasks).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// The `ocr` fleet end to end on LocalStack vs its models alone (recorded inputs replayed
    /// through the sessions), and worker cold start to first result. Needs the setup script's
    /// onnxruntime and PP-OCR models (`eval "$(scripts/setup/onnxruntime.sh)"`).
    Fleet {
        /// One-page documents (cycling through the benchmark pages).
        #[arg(long, default_value_t = 42)]
        docs: usize,
        /// worker.concurrency.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    /// One docfleet-worker on `inspect`: jobs/s and p50/p99 job latency per concurrency level,
    /// plus the heartbeat's SQS calls per job.
    Worker {
        /// Jobs per concurrency level.
        #[arg(long, default_value_t = 500)]
        jobs: usize,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        concurrency: Vec<usize>,
    },
    /// The Rust `ocr` pipeline vs Python rapidocr-onnxruntime: pages/s, peak RSS, model vs
    /// pre/post time, cold start. Needs `scripts/setup/onnxruntime.sh` and the rapidocr venv.
    Ocr {
        /// onnxruntime intra-op threads on both sides.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Passes over the page set after the first (cold) page.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Python of a venv with rapidocr-onnxruntime 1.4.4 (tests/fixtures/ocr/README.md).
        #[arg(long, default_value = "~/.cache/docfleet/ocr-venv/bin/python")]
        python: String,
    },
    /// The `ocr` pipeline with the layout model on and off vs Python rapidocr 3.10 on the
    /// reading-order fixtures: pages/s, peak RSS, cold start. Needs `scripts/setup/onnxruntime.sh`
    /// and the rapidocr 3.10 venv (scripts/ocr/requirements-v6.txt).
    OcrLayout {
        /// onnxruntime intra-op threads on every side.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Passes over the page set after the first (cold) page.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Rounds of the three sides, each round in a rotated order; figures are medians.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// `ocr.models` of the Rust sides (`v6` is the set rapidocr 3.10 runs).
        #[arg(long, default_value = "v6")]
        models: String,
        /// Python of a venv with rapidocr 3.10.0.
        #[arg(long, default_value = "~/.cache/docfleet/ocr-v6-venv/bin/python")]
        python: String,
    },
    /// docfleet-scaler: metric request latency p50/p99 at a fixed rate per API, SQS calls per
    /// minute, and HPA-simulation drain time with and without pod-deletion-cost (LocalStack).
    Scaler {
        /// Requests per second on each API.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Seconds per API.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Jobs in each HPA-simulation burst.
        #[arg(long, default_value_t = 160)]
        jobs: usize,
        /// HPA-simulation rounds (each: with, then without pod-deletion-cost).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Only the latency part.
        #[arg(long)]
        skip_hpa: bool,
    },
    /// The Rust `vlm` generation loop vs transformers' generate on optimum's onnxruntime sessions:
    /// tokens/s, images/s and time outside session.run per batch size. Needs
    /// `scripts/setup/onnxruntime.sh` and the vlm venv (tests/fixtures/vlm/README.md).
    Vlm {
        /// Model directory (optimum export); default: the tiny test model.
        #[arg(long, default_value = "tests/fixtures/vlm/tiny-ved/merged")]
        model: String,
        /// onnxruntime intra-op threads on both sides.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed passes over the 8 images after a warm-up pass.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        batch: Vec<usize>,
        /// Python of the vlm venv (transformers, optimum, onnxruntime 1.32.0).
        #[arg(long, default_value = "~/.cache/docfleet/vlm-venv/bin/python")]
        python: String,
    },
    /// docfleet's Qwen2-VL generation vs a Python onnxruntime loop on the same graphs and
    /// transformers' generate: tokens/s per batch size and per image tokens per page, on the random
    /// model `scripts/vlm/bench_qwen2vl.py make DIR` writes.
    Qwen2vl {
        /// The bench model directory.
        #[arg(long, default_value = "~/.cache/docfleet/qwen2vl-bench")]
        model: String,
        /// onnxruntime (and torch) intra-op threads on every side.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Rows `BATCH:MAX_PIXELS` (`vlm.max_pixels`: 784 pixels per image token), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1:200704,4:200704,8:200704,1:50176,1:451584")]
        rows: Vec<String>,
        /// Tokens generated per page (stop tokens suppressed until then).
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        /// onnxruntime's intra-op threads spin between operators on both sides.
        #[arg(long)]
        spinning: bool,
        /// Python of the vlm venv (torch, transformers, onnxruntime).
        #[arg(long, default_value = "~/.cache/docfleet/vlm-venv/bin/python")]
        python: String,
    },
    /// docfleet's Florence-2 generation vs a Python onnxruntime loop on the same graphs and
    /// transformers' generate: tokens/s per batch size, on the Florence-2-base-sized random model
    /// `scripts/vlm/bench_florence2.py make DIR` writes.
    Florence2 {
        /// The bench model directory.
        #[arg(long, default_value = "~/.cache/docfleet/florence2-bench")]
        model: String,
        /// onnxruntime (and torch) intra-op threads on every side.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        batch: Vec<usize>,
        /// Tokens generated per page (the stop token held back until the last).
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        /// The Florence-2 task token.
        #[arg(long, default_value = "<OCR>")]
        task: String,
        /// onnxruntime's intra-op threads spin between operators on both sides.
        #[arg(long)]
        spinning: bool,
        /// Python of the vlm venv (torch, transformers, onnxruntime).
        #[arg(long, default_value = "~/.cache/docfleet/vlm-venv/bin/python")]
        python: String,
    },
    /// docfleet's Idefics3 generation vs a Python onnxruntime loop on the same graphs and
    /// transformers' generate: tokens/s per batch size and time outside session.run, on the
    /// SmolVLM-256M-sized random model `scripts/vlm/make_idefics3.py --bench DIR` writes.
    Idefics3 {
        /// The bench model directory.
        #[arg(long, default_value = "~/.cache/docfleet/idefics3-bench")]
        model: String,
        /// onnxruntime (and torch) intra-op threads on every side.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Batch sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        batch: Vec<usize>,
        /// Tokens generated per row (stop tokens suppressed until then).
        #[arg(long, default_value_t = 16)]
        new_tokens: usize,
        /// Image splitting on (13 tiles for an A4 page) instead of the global image alone.
        #[arg(long)]
        split: bool,
        /// onnxruntime's intra-op threads spin between operators on both sides (onnxruntime's
        /// default; docfleet's `runtime.intra_op_spinning` default is off, and so is the bench's).
        #[arg(long)]
        spinning: bool,
        /// Python of the vlm venv (torch, transformers, onnxruntime).
        #[arg(long, default_value = "~/.cache/docfleet/vlm-venv/bin/python")]
        python: String,
    },
    /// The vlm pipeline's `openai` engine on LocalStack vs a plain client loop sending the same
    /// pages to the same `transformers serve` (tiny Qwen2-VL, CPU) with the same concurrency, per
    /// max_in_flight level. Needs the serve venv (scripts/setup/serve.sh, run on first use).
    Openai {
        /// One-page documents per side and level.
        #[arg(long, default_value_t = 48)]
        pages: usize,
        /// vlm.server.max_in_flight levels (= worker.concurrency = client loop concurrency).
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
        max_in_flight: Vec<usize>,
        /// Tokens asked per page.
        #[arg(long, default_value_t = 12)]
        max_tokens: u32,
        /// The server's torch threads (OMP_NUM_THREADS).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Start transformers serve with --continuous-batching (paged attention).
        #[arg(long)]
        continuous_batching: bool,
        /// Python of the serve venv [default: DOCFLEET_SERVE_PYTHON, else scripts/setup/serve.sh].
        #[arg(long)]
        python: Option<std::path::PathBuf>,
    },
    /// docfleet-downloader vs Python huggingface_hub.snapshot_download on one fake hub: wall time
    /// for 3 large files and for many small ones. Needs the release docfleet-downloader and
    /// scripts/setup/hfhub.sh (run on first use).
    Downloader {
        /// Timed runs per side and case (after one warm-up each).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Size of each of the 3 large files, MB.
        #[arg(long, default_value_t = 200)]
        large_mb: usize,
        /// Number of small files.
        #[arg(long, default_value_t = 200)]
        small_files: usize,
        /// Parallel downloads on both sides.
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Python with huggingface_hub [default: scripts/setup/hfhub.sh's venv].
        #[arg(long)]
        python: Option<std::path::PathBuf>,
    },
    /// (internal) The Rust side of `ocr`, in its own process.
    #[command(hide = true)]
    OcrChild {
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        repeat: usize,
        pages: Vec<std::path::PathBuf>,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let headlines = match Cli::parse().command {
        Command::All { plumbing_jobs, fleet_docs, fleet_concurrency, downloader_runs } => {
            return all(plumbing_jobs, fleet_docs, fleet_concurrency, downloader_runs).await;
        }
        Command::Plumbing { jobs, concurrency } => plumbing(jobs, concurrency).await?,
        Command::Worker { jobs, concurrency } => return worker::run(jobs, &concurrency).await,
        Command::Fleet { docs, concurrency } => fleet::run(docs, concurrency).await?,
        Command::Ocr { threads, repeat, python } => ocr_bench(threads, repeat, expand_home(&python)).await?,
        Command::OcrLayout { threads, repeat, rounds, models, python } => {
            let python = expand_home(&python);
            tokio::task::spawn_blocking(move || ocr_layout::run(threads, repeat, rounds, &models, &python)).await??
        }
        Command::OcrChild { threads, repeat, pages } => return ocr::child(threads, repeat, &pages),
        Command::Vlm { model, threads, repeat, batch, python } => {
            vlm_bench(expand_home(&model), expand_home(&python), threads, repeat, batch).await?
        }
        Command::Idefics3 { model, threads, batch, new_tokens, split, spinning, python } => {
            let (model, python) = (expand_home(&model), expand_home(&python));
            tokio::task::spawn_blocking(move || {
                idefics3::run(&model, &python, threads, &batch, new_tokens, split, spinning)
            })
            .await??
        }
        Command::Qwen2vl { model, threads, rows, new_tokens, spinning, python } => {
            let (model, python) = (expand_home(&model), expand_home(&python));
            let rows = rows
                .iter()
                .map(|r| {
                    let (b, p) = r.split_once(':').with_context(|| format!("row {r:?}: BATCH:MAX_PIXELS"))?;
                    Ok((b.parse()?, p.parse()?))
                })
                .collect::<anyhow::Result<Vec<(usize, u64)>>>()?;
            tokio::task::spawn_blocking(move || qwen2vl::run(&model, &python, threads, &rows, new_tokens, spinning))
                .await??
        }
        Command::Florence2 { model, threads, batch, new_tokens, task, spinning, python } => {
            let (model, python) = (expand_home(&model), expand_home(&python));
            tokio::task::spawn_blocking(move || {
                florence2::run(&model, &python, threads, &batch, new_tokens, &task, spinning)
            })
            .await??
        }
        Command::Openai { pages, max_in_flight, max_tokens, threads, continuous_batching, python } => {
            openai::run(pages, &max_in_flight, max_tokens, threads, continuous_batching, python).await?
        }
        Command::Downloader { runs, large_mb, small_files, workers, python } => {
            tokio::task::spawn_blocking(move || downloader::run(runs, large_mb, small_files, workers, python)).await??
        }
        Command::Scaler { rate, seconds, jobs, rounds, skip_hpa } => {
            return scaler::run(rate, seconds, jobs, rounds, skip_hpa).await;
        }
    };
    summary::print(&[headlines.into_iter().map(Ok).collect()]);
    Ok(())
}

async fn ocr_bench(threads: usize, repeat: usize, python: std::path::PathBuf) -> anyhow::Result<Vec<Headline>> {
    tokio::task::spawn_blocking(move || ocr::run(threads, repeat, &python)).await?
}

async fn vlm_bench(
    model: std::path::PathBuf,
    python: std::path::PathBuf,
    threads: usize,
    repeat: usize,
    batch: Vec<usize>,
) -> anyhow::Result<Vec<Headline>> {
    let model = docfleet_tests::repo_root().join(model);
    tokio::task::spawn_blocking(move || vlm::run(&model, &python, threads, repeat, &batch)).await?
}

/// `~` expanded against `$HOME`.
fn expand_home(path: &str) -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    std::path::PathBuf::from(path.replacen('~', &home, 1))
}

/// `docfleet-bench all`: each comparison with its defaults, one after the other, then the summary.
async fn all(
    plumbing_jobs: usize,
    fleet_docs: usize,
    fleet_concurrency: usize,
    downloader_runs: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("{}", summary::machine());
    let mut sections: Vec<Vec<anyhow::Result<Headline>>> = Vec::new();
    let mut record = |name: &'static str, r: anyhow::Result<Vec<Headline>>| match r {
        Ok(h) => sections.push(h.into_iter().map(Ok).collect()),
        Err(e) => {
            eprintln!("{name}: skipped: {e:#}");
            sections.push(vec![Err(e.context(name))]);
        }
    };
    println!("\n## fleet");
    record("fleet", fleet::run(fleet_docs, fleet_concurrency).await);
    println!("\n## ocr");
    record("ocr", ocr_bench(2, 3, expand_home("~/.cache/docfleet/ocr-venv/bin/python")).await);
    println!("\n## plumbing");
    record("plumbing", plumbing(plumbing_jobs, 8).await);
    println!("\n## downloader");
    record(
        "downloader",
        tokio::task::spawn_blocking(move || downloader::run(downloader_runs, 200, 200, 8, None)).await?,
    );
    println!("\n## vlm");
    record(
        "vlm",
        vlm_bench(
            "tests/fixtures/vlm/tiny-ved/merged".into(),
            expand_home("~/.cache/docfleet/vlm-venv/bin/python"),
            2,
            5,
            vec![1, 4, 8],
        )
        .await,
    );
    println!("\n## summary ({:.0} s in all)\n", started.elapsed().as_secs_f64());
    summary::print(&sections);
    Ok(())
}

/// The fixture's worker command, plus the `DOCFLEET__{WORKER,OCR,VLM,RUNTIME}__*` settings of the
/// bench's own environment (to compare variants, e.g. `DOCFLEET__WORKER__DECODE_AHEAD=0`); the
/// bench's own settings (concurrency, batching) win.
pub(crate) fn worker_command(fx: &Fixture) -> std::process::Command {
    const PASSED: [&str; 4] = ["DOCFLEET__WORKER__", "DOCFLEET__OCR__", "DOCFLEET__VLM__", "DOCFLEET__RUNTIME__"];
    let mut cmd = fx.command("docfleet-worker");
    for (k, v) in std::env::vars_os() {
        if PASSED.iter().any(|p| k.to_string_lossy().starts_with(p)) {
            cmd.env(k, v);
        }
    }
    cmd
}

/// Upload `n` copies of a small document and return their keys (not timed).
pub(crate) async fn seed_inputs(fx: &Fixture, n: usize, doc: &[u8]) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("bench/doc-{i:05}.webp")).collect();
    futures::stream::iter(keys.clone())
        .map(|k| {
            let body = doc.to_vec();
            async move { fx.put_input(&k, body).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    keys
}

/// Upload one input per page as `bench/page-NNNN.png`; their keys (not timed).
pub(crate) async fn put_pages(fx: &Fixture, pages: &[Vec<u8>]) -> Vec<String> {
    let keys: Vec<String> = (0..pages.len()).map(|i| format!("bench/page-{i:04}.png")).collect();
    futures::stream::iter(keys.iter().zip(pages.iter().cloned()))
        .map(|(k, b)| async move { fx.put_input(k, b).await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    keys
}

/// The `completed_at_ms` of every result record under `results/`, checking there is one per job.
pub(crate) async fn completed_at(fx: &Fixture, jobs: usize) -> anyhow::Result<Vec<f64>> {
    let keys: Vec<String> = fx.output_keys("results/").await.into_iter().filter(|k| k.ends_with(".json")).collect();
    anyhow::ensure!(keys.len() == jobs, "{} results for {jobs} jobs", keys.len());
    Ok(futures::stream::iter(keys)
        .map(|k| async move { fx.output_json(&k).await["completed_at_ms"].as_f64().unwrap_or(f64::NAN) })
        .buffer_unordered(16)
        .collect()
        .await)
}

/// One job per key (on `pipeline`, else the worker's default), sent in batches of ten.
pub(crate) async fn send_jobs(fx: &Fixture, keys: &[String], pipeline: Option<&str>) -> Duration {
    let started = Instant::now();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut job = serde_json::json!({"version": 1, "job_id": format!("bench-{i}"), "input": {"bucket": fx.input_bucket, "key": k}});
            if let Some(p) = pipeline {
                job["pipeline"] = p.into();
            }
            job.to_string()
        })
        .collect();
    futures::stream::iter(bodies.chunks(10).map(|c| c.to_vec()))
        .map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            fx.sqs.send_message_batch().queue_url(&fx.queue_url).set_entries(Some(entries)).send().await.unwrap();
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

async fn raw_loop(fx: &Fixture, concurrency: usize) -> anyhow::Result<u64> {
    let tasks = (0..concurrency).map(|_| async {
        let mut done = 0u64;
        loop {
            let out = fx
                .sqs
                .receive_message()
                .queue_url(&fx.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                let (v, inflight, _) = fx.depth(&fx.queue_url).await;
                if v + inflight == 0 {
                    return anyhow::Ok(done);
                }
                continue;
            }
            let mut entries = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                let job: serde_json::Value = serde_json::from_str(m.body().unwrap_or_default())?;
                let key = job["input"]["key"].as_str().context("key")?;
                let obj = fx.s3.get_object().bucket(&fx.input_bucket).key(key).send().await?;
                let bytes = obj.body.collect().await?.into_bytes();
                let result = serde_json::json!({"job_id": job["job_id"], "bytes": bytes.len()});
                fx.s3
                    .put_object()
                    .bucket(&fx.output_bucket)
                    .key(format!("results/raw/{key}.json"))
                    .body(serde_json::to_vec(&result)?.into())
                    .send()
                    .await?;
                entries.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap())
                        .build()?,
                );
            }
            done += entries.len() as u64;
            fx.sqs.delete_message_batch().queue_url(&fx.queue_url).set_entries(Some(entries)).send().await?;
        }
    });
    let counts = futures::future::try_join_all(tasks).await?;
    Ok(counts.into_iter().sum())
}

async fn plumbing(jobs: usize, concurrency: usize) -> anyhow::Result<Vec<Headline>> {
    let doc = std::fs::read(repo_root().join("samples/receipt.webp"))?;
    let fleet = Fixture::new("bench-fleet", 5, 120).await;
    let raw = Fixture::new("bench-raw", 5, 120).await;
    let fleet_keys = seed_inputs(&fleet, jobs, &doc).await;
    let raw_keys = seed_inputs(&raw, jobs, &doc).await;
    let send_fleet = send_jobs(&fleet, &fleet_keys, None).await;
    let send_raw = send_jobs(&raw, &raw_keys, None).await;

    let started = Instant::now();
    let out = run_with_timeout(
        worker_command(&fleet)
            .env("RUST_LOG", "warn")
            .env("DOCFLEET__WORKER__CONCURRENCY", concurrency.to_string())
            .arg("--exit-when-empty"),
        Duration::from_secs(1800),
    );
    let fleet_secs = started.elapsed().as_secs_f64();
    let (_, stderr) = text(&out);
    anyhow::ensure!(out.status.success(), "worker failed: {stderr}");
    let results = fleet.output_keys("results/").await.len();
    anyhow::ensure!(results == jobs, "docfleet wrote {results} results for {jobs} jobs");

    let started = Instant::now();
    let raw_done = raw_loop(&raw, concurrency).await?;
    let raw_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(raw_done as usize == jobs, "raw loop handled {raw_done} of {jobs}");

    let fleet_rate = jobs as f64 / fleet_secs;
    let raw_rate = jobs as f64 / raw_secs;
    println!("plumbing: {jobs} jobs per side, concurrency {concurrency}, LocalStack at {}", fleet.endpoint);
    println!(
        "  send (SendMessageBatch, 8 in flight): fleet queue {:.2} s, raw queue {:.2} s",
        send_fleet.as_secs_f64(),
        send_raw.as_secs_f64()
    );
    println!("  docfleet-worker (inspect): {fleet_secs:.2} s  {fleet_rate:.1} msgs/s");
    println!("  raw aws-sdk loop:          {raw_secs:.2} s  {raw_rate:.1} msgs/s");
    println!("  ratio docfleet / raw: {:.3}", fleet_rate / raw_rate);
    Ok(vec![Headline::ratio(
        "plumbing: inspect msgs/s vs raw aws-sdk loop",
        format!("{fleet_rate:.1} vs {raw_rate:.1} msgs/s, {jobs} jobs, concurrency {concurrency}"),
        fleet_rate / raw_rate,
        Goal::AtLeast(0.9),
    )])
}
