//! `[scaler]`: `docfleet-scaler`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Fail;
use crate::Result;

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

impl ScalerSettings {
    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if !(100..=3_600_000).contains(&self.poll_interval_ms) {
            return fail("scaler.poll_interval_ms", format!("must be 100–3600000, got {}", self.poll_interval_ms));
        }
        if self.max_staleness_ms < self.poll_interval_ms {
            return fail(
                "scaler.max_staleness_ms",
                format!(
                    "must be at least scaler.poll_interval_ms ({}), got {}",
                    self.poll_interval_ms, self.max_staleness_ms
                ),
            );
        }
        if !(100..=60_000).contains(&self.sqs_timeout_ms) {
            return fail("scaler.sqs_timeout_ms", format!("must be 100–60000, got {}", self.sqs_timeout_ms));
        }
        if !(1..=86_400).contains(&self.throughput_window_seconds) {
            return fail(
                "scaler.throughput_window_seconds",
                format!("must be 1–86400, got {}", self.throughput_window_seconds),
            );
        }
        if !(self.backlog_cap_seconds > 0.0 && self.backlog_cap_seconds.is_finite()) {
            return fail(
                "scaler.backlog_cap_seconds",
                format!("must be a positive number, got {}", self.backlog_cap_seconds),
            );
        }
        if !(100..=3_600_000).contains(&self.worker_scrape_interval_ms) {
            return fail(
                "scaler.worker_scrape_interval_ms",
                format!("must be 100–3600000, got {}", self.worker_scrape_interval_ms),
            );
        }
        if self.busy_pod_cost <= 0 {
            return fail("scaler.busy_pod_cost", format!("must be positive, got {}", self.busy_pod_cost));
        }
        if !(self.default_target > 0.0 && self.default_target.is_finite()) {
            return fail("scaler.default_target", format!("must be a positive number, got {}", self.default_target));
        }
        if self.pod_deletion_cost && self.worker_selector.trim().is_empty() {
            return fail("scaler.worker_selector", "must not be empty when scaler.pod_deletion_cost is on".into());
        }
        if self.queues.iter().any(|q| q.trim().is_empty()) {
            return fail("scaler.queues", "must not contain an empty entry".into());
        }
        for url in &self.worker_metrics_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return fail("scaler.worker_metrics_urls", format!("must start with http:// or https://, got `{url}`"));
            }
        }
        for (key, addr) in [
            ("scaler.https_listen", &self.https_listen),
            ("scaler.grpc_listen", &self.grpc_listen),
            ("scaler.metrics_listen", &self.metrics_listen),
        ] {
            if !addr.is_empty() && addr.parse::<std::net::SocketAddr>().is_err() {
                return fail(key, format!("must be IP:PORT or empty (off), got `{addr}`"));
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return fail("scaler.tls_cert_file", "scaler.tls_cert_file and scaler.tls_key_file go together".into());
        }
        Ok(())
    }
}
