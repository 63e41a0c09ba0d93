//! `docfleet enqueue`: upload documents and send jobs.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use docfleet_core::job::{JobMessage, ObjectRef};
use docfleet_core::keys::{validate_pipeline_name, validate_prefix};
use docfleet_core::{Backends, Settings};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};

/// Uploads in flight at once.
const UPLOAD_CONCURRENCY: usize = 8;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Pipeline for these jobs [default: worker.default_pipeline of the configuration]
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Pipeline parameters, a JSON object passed to the pipeline as is.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Key prefix for the results instead of store.results_prefix.
    #[arg(long, value_name = "PREFIX")]
    pub output_prefix: Option<String>,
    /// Enqueue even when this configuration knows no pipeline of that name (workers configured
    /// differently may have it).
    #[arg(long)]
    pub force: bool,
    /// Files, directories or s3://bucket/prefix URLs.
    #[arg(required = true, value_name = "PATH|DIR|s3://bucket/prefix")]
    pub inputs: Vec<String>,
}

/// The pipelines a worker with `settings` offers, without loading any model: `inspect` always,
/// `ocr` when `ocr.enabled`, `vlm` when `models.vlm` names a model, `sleep` with
/// `worker.diagnostic_pipelines`.
pub fn configured_pipelines(settings: &Settings) -> Vec<&'static str> {
    let mut names = vec!["inspect"];
    if settings.ocr.enabled {
        names.push("ocr");
    }
    if docfleet_worker::pipeline::vlm::configured(settings) {
        names.push("vlm");
    }
    if settings.worker.diagnostic_pipelines {
        names.push("sleep");
    }
    names
}

/// Why `pipeline` cannot run with `settings` and what to configure, or `None` when it can.
pub fn pipeline_problem(settings: &Settings, pipeline: &str) -> Option<String> {
    let names = configured_pipelines(settings);
    if names.contains(&pipeline) {
        return None;
    }
    Some(match pipeline {
        "vlm" => "pipeline `vlm` needs a model: set models.vlm.repo_id (a Hugging Face export, fetched by \
                  docfleet-downloader) or models.vlm.dir (a local export), e.g. \
                  DOCFLEET__MODELS__VLM__REPO_ID=<owner/name> or [models.vlm] in a --config file"
            .to_owned(),
        "ocr" => "pipeline `ocr` is switched off (ocr.enabled = false)".to_owned(),
        "sleep" => "pipeline `sleep` is a diagnostic one: set worker.diagnostic_pipelines = true".to_owned(),
        other => format!("unknown pipeline `{other}` (this configuration has: {})", names.join(", ")),
    })
}

/// One job sent.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The local path or S3 URL it came from.
    pub source: String,
    pub object: ObjectRef,
    pub job_id: String,
}

/// What `enqueue` did.
#[derive(Debug, Default)]
pub struct Report {
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub enqueued: u64,
    pub failed: u64,
    pub jobs: Vec<Enqueued>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uploaded {} documents ({} bytes), enqueued {} jobs, {} failed",
            self.uploaded, self.uploaded_bytes, self.enqueued, self.failed
        )
    }
}

/// A local file and the key it is uploaded under.
struct LocalDoc {
    path: PathBuf,
    key: String,
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Walk the inputs, upload local files, send one job per document.
pub async fn run(settings: &Settings, backends: &Backends, args: &Args) -> anyhow::Result<Report> {
    if let Some(p) = &args.pipeline {
        validate_pipeline_name(p)?;
        if !args.force
            && let Some(problem) = pipeline_problem(settings, p)
        {
            bail!(
                "{problem}; workers with this configuration would write an error record for every job (--force to enqueue anyway)"
            );
        }
    }
    if let Some(p) = &args.output_prefix {
        validate_prefix(p)?;
    }
    let params: serde_json::Map<String, serde_json::Value> = match &args.params {
        Some(text) => serde_json::from_str(text).context("--params must be a JSON object")?,
        None => Default::default(),
    };

    let mut local = Vec::new();
    let mut remote = Vec::new();
    for input in &args.inputs {
        if input.starts_with("s3://") {
            let prefix = ObjectRef::parse_url(input).or_else(|_| ObjectRef::parse_url(&format!("{input}/")))?;
            let listed = backends.store.list(&prefix.bucket, &prefix.key).await?;
            if listed.is_empty() {
                bail!("no objects under {input}");
            }
            remote.extend(listed.into_iter().map(|o| ObjectRef::new(prefix.bucket.clone(), o.key)));
        } else {
            collect_local(Path::new(input), &settings.store.input_prefix, &mut local)?;
        }
    }
    if local.is_empty() && remote.is_empty() {
        bail!("no documents found in {}", args.inputs.join(", "));
    }

    let mut report = Report::default();
    let bucket = settings.store.input_bucket.clone();
    if !local.is_empty() {
        let bar = progress(local.len() as u64, "upload");
        let store = backends.store.clone();
        let uploads = futures::stream::iter(local.into_iter().map(|doc| {
            let store = store.clone();
            let bucket = bucket.clone();
            let bar = bar.clone();
            async move {
                let bytes =
                    tokio::fs::read(&doc.path).await.with_context(|| format!("reading {}", doc.path.display()))?;
                let len = bytes.len() as u64;
                store.put(&bucket, &doc.key, Bytes::from(bytes), "application/octet-stream").await?;
                bar.inc(1);
                anyhow::Ok((doc, len))
            }
        }))
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        bar.finish_and_clear();
        for (doc, len) in uploads {
            report.uploaded += 1;
            report.uploaded_bytes += len;
            report.jobs.push(Enqueued {
                source: doc.path.display().to_string(),
                object: ObjectRef::new(bucket.clone(), doc.key),
                job_id: uuid::Uuid::new_v4().to_string(),
            });
        }
    }
    for object in remote {
        report.jobs.push(Enqueued { source: object.url(), object, job_id: uuid::Uuid::new_v4().to_string() });
    }
    report.jobs.sort_by(|a, b| a.source.cmp(&b.source));

    let bar = progress(report.jobs.len() as u64, "enqueue");
    for chunk in report.jobs.chunks(docfleet_core::queue::MAX_BATCH) {
        let bodies: Vec<String> = chunk
            .iter()
            .map(|j| {
                let mut msg = JobMessage::new(&j.job_id, &j.object, args.pipeline.clone());
                msg.output_prefix = args.output_prefix.clone();
                msg.params = params.clone();
                msg.to_json()
            })
            .collect();
        let failed = backends.queue.send_batch(&bodies).await?;
        for f in &failed {
            tracing::error!(source = %chunk[f.index].source, code = %f.code, message = %f.message, "send failed");
        }
        report.failed += failed.len() as u64;
        report.enqueued += (chunk.len() - failed.len()) as u64;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(report)
}

/// Files under `path` with their upload keys: `<prefix>/<dir name>/<relative path>` for a
/// directory, `<prefix>/<file name>` for a file. Hidden files and directories are skipped.
fn collect_local(path: &Path, prefix: &str, out: &mut Vec<LocalDoc>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{} does not exist", path.display()))?;
    let prefix = prefix.trim_end_matches('/');
    let key_of = |rel: &Path| {
        let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        if prefix.is_empty() { rel } else { format!("{prefix}/{rel}") }
    };
    if meta.is_file() {
        let name = path.file_name().context("file without a name")?;
        out.push(LocalDoc { path: path.to_owned(), key: key_of(Path::new(name)) });
        return Ok(());
    }
    let canonical = path.canonicalize()?;
    let root_name = canonical.file_name().map(PathBuf::from).unwrap_or_default();
    let mut stack = vec![path.to_owned()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                let rel = entry.path().strip_prefix(path).expect("under root").to_owned();
                found.push(LocalDoc { path: entry.path(), key: key_of(&root_name.join(rel)) });
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    out.extend(found);
    Ok(())
}
