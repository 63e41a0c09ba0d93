//! docfleet's shared library: the job schema, configuration profiles, the `Queue` and `Store`
//! traits with their SQS/S3 and local implementations, and telemetry set-up.
//!
//! Everything the binaries share lives here; dependencies point one way (binaries → core).

pub mod aws;
pub mod backends;
pub mod config;
pub mod doctags;
pub mod job;
pub mod keys;
pub mod models;
pub mod queue;
pub mod store;
pub mod telemetry;

pub use backends::Backends;
pub use config::Settings;

/// Errors shared by every docfleet component.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration could not be loaded or is invalid; the message names the key and origin.
    #[error("configuration error: {0}")]
    Config(String),

    /// A queue message that is not a docfleet job, an S3 event or an S3 test event.
    #[error("invalid message: {0}")]
    InvalidMessage(String),

    /// A job that parsed but cannot be run as given (bad bucket, key, prefix or pipeline).
    #[error("invalid job: {0}")]
    InvalidJob(String),

    /// The input object does not exist.
    #[error("object not found: s3://{bucket}/{key}")]
    NotFound { bucket: String, key: String },

    /// The document itself is unusable: corrupt, truncated, encrypted or of an unsupported type.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The input exceeds a configured limit (bytes, pixels, pages).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),

    /// A call to SQS, S3 or a local backend failed.
    #[error("{service} {operation} failed: {message}")]
    Backend {
        service: &'static str,
        operation: &'static str,
        message: String,
        /// Whether retrying later may succeed (timeouts, 5xx, throttling, connection errors).
        transient: bool,
    },

    /// A job ran past `worker.job_timeout_seconds`.
    #[error("job timed out after {0} s")]
    Timeout(u64),

    /// A model (or the onnxruntime library) is missing or unusable; the message says how to get it.
    #[error("model error: {0}")]
    Model(String),

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// True when the same operation may succeed if retried later.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { transient, .. } => *transient,
            Error::Io(_) => true,
            _ => false,
        }
    }

    /// A short stable label for metrics and error records.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::InvalidMessage(_) => "invalid_message",
            Error::InvalidJob(_) => "invalid_job",
            Error::NotFound { .. } => "not_found",
            Error::InvalidInput(_) => "invalid_input",
            Error::LimitExceeded(_) => "limit_exceeded",
            Error::Backend { .. } => "backend",
            Error::Model(_) => "model",
            Error::Timeout(_) => "timeout",
            Error::Io(_) => "io",
            Error::Json(_) => "json",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
