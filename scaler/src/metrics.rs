//! The scaler's own Prometheus metrics (`/metrics` on `scaler.metrics_listen`), prefix
//! `docfleet_scaler_`. `queue_depth` is the number the autoscalers get; the alert rules in
//! deploy/components/monitoring read it too.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessagesLabels {
    pub queue: String,
    /// `visible`, `in_flight`, `delayed`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub queue: String,
    /// `GetQueueUrl` or `GetQueueAttributes` (for the embedded queue: `depth`).
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub queue: String,
    pub operation: String,
    /// `transient`, `permanent` or `timeout`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `external_metrics`, `keda`, `json`.
    pub api: String,
    /// `ok` or an [`crate::Error::metric_label`].
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Workers: `busy`, `idle`, `unreachable`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

type GaugeF64 = Gauge<f64, AtomicU64>;

/// Every metric the scaler exports.
pub struct Metrics {
    registry: Registry,
    pub queue_depth: Family<QueueLabel, Gauge>,
    pub queue_messages: Family<MessagesLabels, Gauge>,
    pub cache_age_seconds: Family<QueueLabel, GaugeF64>,
    pub sqs_calls: Family<CallLabels, Counter>,
    pub sqs_errors: Family<ErrorLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<ApiLabel, Histogram>,
    pub workers: Family<StateLabel, Gauge>,
    pub worker_scrapes: Family<OutcomeLabel, Counter>,
    pub fleet_throughput: GaugeF64,
    pub backlog_seconds: Family<QueueLabel, GaugeF64>,
    pub pod_cost_patches: Family<OutcomeLabel, Counter>,
    pub pod_list_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("docfleet_scaler");
        let queue_depth = Family::<QueueLabel, Gauge>::default();
        r.register(
            "queue_depth",
            "Queue depth as served to autoscalers (visible, plus in flight and delayed when configured), last read",
            queue_depth.clone(),
        );
        let queue_messages = Family::<MessagesLabels, Gauge>::default();
        r.register("queue_messages", "Messages by state at the last read", queue_messages.clone());
        let cache_age_seconds = Family::<QueueLabel, GaugeF64>::default();
        r.register("cache_age_seconds", "Age of the cached depth at scrape time", cache_age_seconds.clone());
        let sqs_calls = Family::<CallLabels, Counter>::default();
        r.register("sqs_calls", "Queue API calls made (each is one logical call)", sqs_calls.clone());
        let sqs_errors = Family::<ErrorLabels, Counter>::default();
        r.register("sqs_errors", "Queue API calls that failed or timed out", sqs_errors.clone());
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("requests", "Metric requests answered, by API and outcome", requests.clone());
        let request_seconds = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        r.register("request_duration_seconds", "Time to answer a metric request", request_seconds.clone());
        let workers = Family::<StateLabel, Gauge>::default();
        r.register("workers", "Workers at the last scrape, by state", workers.clone());
        let worker_scrapes = Family::<OutcomeLabel, Counter>::default();
        r.register("worker_scrapes", "Reads of workers' /metrics, by outcome", worker_scrapes.clone());
        let fleet_throughput = GaugeF64::default();
        r.register(
            "fleet_throughput_jobs_per_second",
            "Jobs the fleet finished per second over the throughput window",
            fleet_throughput.clone(),
        );
        let backlog_seconds = Family::<QueueLabel, GaugeF64>::default();
        r.register("backlog_seconds", "Depth divided by fleet throughput, last computed", backlog_seconds.clone());
        let pod_cost_patches = Family::<OutcomeLabel, Counter>::default();
        r.register("pod_cost_patches", "pod-deletion-cost annotation patches, by outcome", pod_cost_patches.clone());
        let pod_list_errors = Counter::default();
        r.register("pod_list_errors", "Worker pod lists that failed", pod_list_errors.clone());
        Self {
            registry: r,
            queue_depth,
            queue_messages,
            cache_age_seconds,
            sqs_calls,
            sqs_errors,
            requests,
            request_seconds,
            workers,
            worker_scrapes,
            fleet_throughput,
            backlog_seconds,
            pod_cost_patches,
            pod_list_errors,
        }
    }

    pub fn sqs_call(&self, queue: &str, operation: &str) {
        self.sqs_calls.get_or_create(&CallLabels { queue: queue.into(), operation: operation.into() }).inc();
    }

    pub fn sqs_error(&self, queue: &str, operation: &str, kind: &str) {
        self.sqs_errors
            .get_or_create(&ErrorLabels { queue: queue.into(), operation: operation.into(), kind: kind.into() })
            .inc();
    }

    pub fn request(&self, api: &str, outcome: &str, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { api: api.into(), outcome: outcome.into() }).inc();
        self.request_seconds.get_or_create(&ApiLabel { api: api.into() }).observe(seconds);
    }

    pub fn worker_scrape(&self, outcome: &str) {
        self.worker_scrapes.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
    }

    pub fn pod_cost_patch(&self, outcome: &str) {
        self.pod_cost_patches.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
