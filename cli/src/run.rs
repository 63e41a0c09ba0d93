//! `docfleet run DIR`: the local main job. Enqueue every document, run an in-process worker until
//! the queue is drained, write each document's result (or error record) under `--out`, and print
//! a summary.
//!
//! Exit status: 0 every document has a result, 2 some documents failed (their error records are
//! under `--out`), 1 an error, or every document failed.
//!
//! On the embedded queue a run sends its jobs to a queue of its own in the same file, so jobs an
//! earlier `enqueue` left waiting are neither processed nor mixed into its table (it says how many
//! wait); dead letters still go to the shared DLQ.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use comfy_table::Table;
use docfleet_core::config::{Loaded, QueueBackend, Settings};
use docfleet_core::keys::{RENDITIONS, error_key_for, rendition_key_for, result_key_for};
use docfleet_core::queue::local::DeadLetter;
use docfleet_core::queue::{LocalQueue, Queue, RedriveReport};
use docfleet_core::{Backends, Error};
use docfleet_worker::{Pipelines, StopWhen, Worker};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::enqueue;
use crate::results::write_under;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pipeline to run (`inspect` for format and page checks only).
    #[arg(long, default_value = "ocr")]
    pub pipeline: String,
    /// Pipeline parameters, a JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Where results are written: `<out>/<document path>.<pipeline>.json` (`.error.json` on
    /// failure), with the pipeline's renditions beside it (`.<pipeline>.txt`, `.<pipeline>.md`).
    #[arg(long, default_value = crate::results::DEFAULT_OUT)]
    pub out: PathBuf,
    /// One JSON object per document on stdout (document, status, detail, files) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write `<out>/report.html`: one self-contained page with every page image, the boxes
    /// the pipeline found drawn over it and the text beside it.
    #[arg(long)]
    pub report: bool,
    /// Documents: files or directories.
    #[arg(required = true, value_name = "DIR|FILE")]
    pub inputs: Vec<String>,
}

/// `models.fetch_missing` (the `local-dev` profile): fetch what `pipeline` needs and the cache
/// lacks (its model, and onnxruntime's library unless `runtime.dylib_path` / `ORT_DYLIB_PATH`
/// name one) through the downloader, with its progress on stderr. What is present is left alone,
/// so later runs touch no network; with `HF_HUB_OFFLINE=1` a missing model is an error.
async fn fetch_missing(settings: &Settings, pipeline: &str) -> anyhow::Result<()> {
    let model = match pipeline {
        "ocr" if settings.ocr.enabled => settings.ocr.models.slot(),
        "vlm" if docfleet_worker::pipeline::vlm::configured(settings) => "vlm",
        _ => return Ok(()),
    };
    let mut names = vec![model];
    if settings.runtime.dylib_path.is_none() && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        names.insert(0, "onnxruntime");
    }
    let mut fetched = docfleet_downloader::fetch::ensure(settings, &names)
        .await
        .with_context(|| format!("fetching the models of pipeline `{pipeline}` (models.fetch_missing)"))?;
    // The layout model is optional: failing to fetch it leaves the pipeline without regions.
    if pipeline == "ocr" && settings.ocr.layout && !settings.models.layout.repo_id.is_empty() {
        match docfleet_downloader::fetch::ensure(settings, &["layout"]).await {
            Ok(more) => fetched.extend(more),
            Err(e) => eprintln!("warning: cannot fetch the layout model (ocr.layout), reading without regions: {e:#}"),
        }
    }
    for o in fetched {
        eprintln!(
            "fetched model `{}` ({} from {}): {} files, {:.1} MB into {}",
            o.name,
            o.repo_id,
            o.source,
            o.files,
            o.bytes as f64 / 1e6,
            o.path
        );
    }
    Ok(())
}

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
}

/// `settings` with only `pipeline`'s model enabled, so a run loads (and warns about) nothing else.
fn only_pipeline(settings: &Settings, pipeline: &str) -> Settings {
    let mut s = settings.clone();
    if pipeline != "ocr" {
        s.ocr.enabled = false;
    }
    if pipeline != "vlm" {
        s.models.vlm.repo_id.clear();
        s.models.vlm.dir = None;
    }
    s
}

/// The backends a run uses: on the embedded queue, a job queue of the run's own
/// (`<queue.name>.run-<id>` in the same file) with the shared DLQ; `shared` is the configured job
/// queue. On SQS the run shares the configured queue.
struct RunBackends {
    backends: Backends,
    shared: Option<Arc<dyn Queue>>,
}

fn run_backends(settings: &Settings, backends: Backends) -> anyhow::Result<RunBackends> {
    if settings.queue.backend != QueueBackend::Local {
        return Ok(RunBackends { backends, shared: None });
    }
    let q = &settings.queue;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{}.run-{}", q.name, &id[..12]);
    let dead_letter = DeadLetter { queue: q.dlq_name.clone(), max_receive_count: q.max_receive_count };
    let own = LocalQueue::open(&q.local_path, &name, Some(dead_letter))
        .with_context(|| format!("opening this run's queue in {}", q.local_path.display()))?;
    let shared = backends.queue.clone();
    Ok(RunBackends { backends: Backends { queue: Arc::new(own), ..backends }, shared: Some(shared) })
}

pub async fn run(loaded: Loaded, args: Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let pipeline = args.pipeline.clone();
    docfleet_core::keys::validate_pipeline_name(&pipeline)?;
    if let Some(problem) = enqueue::pipeline_problem(&loaded.settings, &pipeline) {
        bail!("{problem}");
    }
    let settings = only_pipeline(&loaded.settings, &pipeline);
    let RunBackends { backends, shared } = run_backends(&settings, crate::connect(&settings, &loaded.profile).await?)?;
    // `models.offline` (the workers' switch) wins over `models.fetch_missing`: nothing is fetched.
    if settings.models.fetch_missing && !settings.models.offline {
        fetch_missing(&settings, &pipeline).await?;
    }
    let pipelines = Pipelines::builtin(&settings);
    pipelines.get(&pipeline)?;

    let enqueue_args = enqueue::Args {
        pipeline: Some(pipeline.clone()),
        params: args.params.clone(),
        output_prefix: None,
        force: true,
        inputs: args.inputs.clone(),
    };
    let waiting = shared.as_ref().unwrap_or(&backends.queue).depth().await?.total();
    if waiting > 0 {
        match &shared {
            Some(shared) => eprintln!(
                "note: {waiting} jobs from earlier are waiting in queue `{}`; this run processes only its own \
                 (`docfleet-worker --exit-when-empty` processes those)",
                shared.name()
            ),
            None => eprintln!(
                "note: {waiting} jobs from earlier were already in queue `{}`; they are processed too but not listed here",
                backends.queue.name()
            ),
        }
    }
    let report = enqueue::run(&settings, &backends, &enqueue_args).await?;
    eprintln!("{report}; processing with profile `{}`", loaded.profile);

    let worker = Worker::new(settings.clone(), backends.clone(), pipelines);
    let shutdown = CancellationToken::new();
    docfleet_worker::shutdown::install(shutdown.clone());
    let bar = indicatif::ProgressBar::new(report.jobs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(pipeline.clone());
    let ticker = {
        let (worker, bar) = (worker.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                let s = worker.stats();
                bar.set_position(s.jobs_succeeded + s.jobs_failed + s.invalid_messages);
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
    };
    let summary = worker.run(shutdown.clone(), StopWhen::Drained).await;
    ticker.abort();
    bar.finish_and_clear();
    let summary = summary?;

    let store = &settings.store;
    let mut table = Table::new();
    table.set_header(vec!["document", "status", "detail"]);
    let (mut ok, mut failed, mut missing) = (0u64, 0u64, 0u64);
    let mut entries = Vec::new();
    for job in &report.jobs {
        let o = &job.object;
        let rel = o.key.strip_prefix(&format!("{}/", store.input_prefix.trim_end_matches('/'))).unwrap_or(&o.key);
        let result_key = result_key_for(&store.results_prefix, &pipeline, &o.bucket, &o.key);
        let error_key = error_key_for(&store.errors_prefix, &pipeline, &o.bucket, &o.key);
        let mut files = Vec::new();
        let mut result = None;
        let (status, detail) = match backends.store.get(&store.output_bucket, &result_key, u64::MAX).await {
            Ok(body) => {
                files.push(write_under(&args.out, &format!("{rel}.{pipeline}.json"), &body)?);
                for ext in RENDITIONS {
                    let key = rendition_key_for(&result_key, ext);
                    match backends.store.get(&store.output_bucket, &key, u64::MAX).await {
                        Ok(text) => files.push(write_under(&args.out, &format!("{rel}.{pipeline}.{ext}"), &text)?),
                        Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                ok += 1;
                let record: Value = serde_json::from_slice(&body)?;
                let detail = describe(&record);
                result = args.report.then_some(record);
                ("ok", detail)
            }
            Err(Error::NotFound { .. }) => match backends.store.get(&store.output_bucket, &error_key, u64::MAX).await {
                Ok(body) => {
                    files.push(write_under(&args.out, &format!("{rel}.error.json"), &body)?);
                    failed += 1;
                    let v: Value = serde_json::from_slice(&body)?;
                    ("error", v["error"]["message"].as_str().unwrap_or("").to_owned())
                }
                Err(Error::NotFound { .. }) => {
                    missing += 1;
                    ("missing", "no result and no error record".to_owned())
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        if args.json {
            let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            let line = serde_json::json!({"document": rel, "source": job.source, "status": status, "detail": detail, "files": files});
            println!("{line}");
        } else if status != "ok" {
            eprintln!("{status}: {} ({rel}): {detail}", job.source);
        }
        table.add_row(vec![rel.to_owned(), status.to_owned(), detail.clone()]);
        if args.report {
            entries.push(crate::report::Entry { name: rel.to_owned(), object: o.clone(), status, detail, result });
        }
    }
    if !args.json {
        println!("{table}");
    }
    let secs = started.elapsed().as_secs_f64();
    let mut totals = Table::new();
    totals.set_header(vec!["documents", "results", "errors", "missing", "time", "docs/s"]);
    totals.add_row(vec![
        report.jobs.len().to_string(),
        ok.to_string(),
        failed.to_string(),
        missing.to_string(),
        format!("{secs:.2} s"),
        format!("{:.1}", report.jobs.len() as f64 / secs.max(1e-9)),
    ]);
    if args.json {
        eprintln!("{totals}");
    } else {
        println!("{totals}");
    }
    eprintln!("results in {} (pipeline `{pipeline}`, {} messages handled)", args.out.display(), summary.messages);
    if args.report {
        let path = crate::report::write(&args.out, &settings, backends.store.as_ref(), &pipeline, &entries).await?;
        eprintln!("report in {}", path.display());
    }
    if shutdown.is_cancelled() {
        // This run's unprocessed jobs go back to the shared queue rather than stay in a queue
        // nobody reads.
        if let Some(shared) = &shared {
            match backends.queue.redrive_to(shared.as_ref()).await {
                Ok(RedriveReport::Moved(n)) if n > 0 => {
                    eprintln!("moved {n} unprocessed jobs of this run to queue `{}`", shared.name())
                }
                Ok(_) => {}
                Err(e) => eprintln!("warning: could not move this run's unprocessed jobs to `{}`: {e}", shared.name()),
            }
        }
        bail!("interrupted before the queue was drained");
    }
    if missing > 0 {
        bail!("{missing} documents have neither a result nor an error record");
    }
    Ok(Outcome { ok, failed })
}

/// A one-line description of a result's `output` for the summary table.
fn describe(result: &Value) -> String {
    let out = &result["output"];
    if let (Some(format), Some(pages)) = (out["format"].as_str(), out["page_count"].as_u64()) {
        let first = &out["pages"][0];
        let size = match (first["width"].as_f64(), first["height"].as_f64(), first["unit"].as_str()) {
            (Some(w), Some(h), Some(unit)) => format!(", {w:.0}×{h:.0} {unit}"),
            _ => String::new(),
        };
        return format!("{format}, {pages} page{}{size}", if pages == 1 { "" } else { "s" });
    }
    if let Some(text) = out["text"].as_str() {
        return text.chars().take(60).collect::<String>().replace('\n', " ");
    }
    String::new()
}
