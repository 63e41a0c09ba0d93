//! docfleet-scaler: the numbers an autoscaler needs to size the worker fleet, read cheaply.
//!
//! - [`depth`]: queue depth per configured queue, one GetQueueAttributes call per queue per
//!   interval however many clients ask (cache + single flight), last value while fresh, then an error.
//! - [`external`]: the Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`) for a
//!   plain `autoscaling/v2` HPA, over HTTPS ([`tls`]), with `/healthz` `/readyz` `/livez`.
//! - [`keda`]: KEDA's external scaler gRPC service (`proto/externalscaler.proto`).
//! - [`http`]: Prometheus `/metrics` ([`metrics`]) and a JSON endpoint for KEDA's `metrics-api` scaler.
//! - [`fleet`]: the workers' `/metrics` (busy/idle, jobs finished): fleet throughput for the
//!   backlog-seconds metric, and `controller.kubernetes.io/pod-deletion-cost` on worker pods.
//!
//! [`server::run`] wires them together; `main.rs` only parses flags.

pub mod depth;
pub mod exposition;
pub mod external;
pub mod fleet;
pub mod http;
pub mod keda;
pub mod metrics;
pub mod quantity;
pub mod selector;
pub mod server;
pub mod tls;
pub mod values;

/// Generated from KEDA's `externalscaler.proto` (vendored in `proto/`) by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("externalscaler");
}

/// Name of the queue-depth metric (external metrics API, KEDA, JSON); selected by label `queue`.
pub const DEPTH_METRIC: &str = "docfleet-queue-depth";
/// Name of the optional backlog metric: depth ÷ fleet throughput, in seconds.
pub const BACKLOG_METRIC: &str = "docfleet-queue-backlog-seconds";
/// The label that names a queue in every metric and selector.
pub const QUEUE_LABEL: &str = "queue";

/// Every way a scaler request or task can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request named a queue that is not configured.
    #[error("queue `{queue}` is not served by this scaler (configured: {configured})")]
    UnknownQueue { queue: String, configured: String },

    /// A request named a metric this scaler does not serve.
    #[error("metric `{0}` is not served by this scaler (served: {served})", served = .1.join(", "))]
    UnknownMetric(String, Vec<&'static str>),

    /// No value young enough to serve: SQS has failed for longer than the staleness limit (or has
    /// never answered), or fleet throughput is not measured yet.
    #[error("{what} unavailable: {reason}")]
    Unavailable { what: String, reason: String },

    /// A malformed request (label selector, KEDA metadata).
    #[error("bad request: {0}")]
    BadRequest(String),

    /// Configuration the binary cannot run with (beyond what `docfleet_core::config` validates).
    #[error("configuration error: {0}")]
    Config(String),

    /// Certificate or key could not be loaded or generated.
    #[error("tls: {0}")]
    Tls(String),

    #[error(transparent)]
    Core(#[from] docfleet_core::Error),

    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::UnknownQueue { .. } => "unknown_queue",
            Error::UnknownMetric(..) => "unknown_metric",
            Error::Unavailable { .. } => "unavailable",
            Error::BadRequest(_) => "bad_request",
            Error::Config(_) => "config",
            Error::Tls(_) => "tls",
            Error::Core(_) => "backend",
            Error::Kube(_) => "kubernetes",
            Error::Io(_) => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
