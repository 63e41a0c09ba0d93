//! The worker's Prometheus metrics (text exposition on `/metrics`).
//!
//! Names are stable: the scaler reads `docfleet_worker_busy` (pod-deletion-cost) and
//! `docfleet_jobs_total` (fleet throughput for backlog seconds).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub pipeline: String,
    /// `success`, `failed` (error record + DLQ), `retried` (released for a later attempt).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub pipeline: String,
    /// `fetch`, `process`, `store`.
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Every metric the worker exports.
pub struct Metrics {
    registry: Registry,
    pub jobs: Family<JobLabels, Counter>,
    pub job_seconds: Family<PipelineLabel, Histogram>,
    pub stage_seconds: Family<StageLabels, Histogram>,
    pub in_flight: Gauge,
    pub busy: Gauge,
    /// Bytes of documents fetched and not yet done with (waiting for a slot or running).
    pub prefetch_bytes: Gauge,
    pub messages: Counter,
    pub receive_batch: Histogram,
    pub heartbeat_extensions: Counter,
    pub heartbeat_failures: Counter,
    pub retries: Family<KindLabel, Counter>,
    pub invalid_messages: Counter,
    pub dead_lettered: Counter,
    pub delete_failures: Counter,
    pub delete_batch: Histogram,
    pub backend_errors: Family<KindLabel, Counter>,
    pub model_load_seconds: Family<PipelineLabel, Gauge<f64, AtomicU64>>,
    /// Redelivered jobs acknowledged with the result already stored for the same input version.
    pub results_reused: Family<PipelineLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("docfleet");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs finished, by pipeline and outcome", jobs.clone());
        let job_seconds = Family::<PipelineLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 16))
        });
        registry.register("job_duration_seconds", "Job latency from start to result written", job_seconds.clone());
        let stage_seconds = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 18))
        });
        registry.register("stage_duration_seconds", "Time per job stage", stage_seconds.clone());
        let in_flight = Gauge::default();
        registry.register("jobs_in_flight", "Jobs running now", in_flight.clone());
        let busy = Gauge::default();
        registry.register("worker_busy", "1 while at least one job runs, else 0", busy.clone());
        let prefetch_bytes = Gauge::default();
        registry.register(
            "prefetch_bytes",
            "Bytes of input documents held: fetched ahead of a slot or being processed (bounded by worker.max_prefetch_bytes)",
            prefetch_bytes.clone(),
        );
        let messages = Counter::default();
        registry.register("messages_received", "Queue messages received", messages.clone());
        let receive_batch = Histogram::new([0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        registry.register("receive_batch_size", "Messages per non-empty receive call", receive_batch.clone());
        let heartbeat_extensions = Counter::default();
        registry.register(
            "heartbeat_extensions",
            "Visibility extensions of in-flight messages",
            heartbeat_extensions.clone(),
        );
        let heartbeat_failures = Counter::default();
        registry.register(
            "heartbeat_failures",
            "Visibility extensions SQS refused or that failed",
            heartbeat_failures.clone(),
        );
        let retries = Family::<KindLabel, Counter>::default();
        registry.register(
            "retries",
            "Retries: kind=in_job (transient store failure retried inside the job) or released (message released for a later attempt)",
            retries.clone(),
        );
        let invalid_messages = Counter::default();
        registry.register("invalid_messages", "Messages that were not jobs", invalid_messages.clone());
        let dead_lettered = Counter::default();
        registry.register("dead_lettered", "Messages moved to the dead-letter queue", dead_lettered.clone());
        let delete_failures = Counter::default();
        registry.register("delete_failures", "Message deletes that failed after retries", delete_failures.clone());
        let delete_batch = Histogram::new([1.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        registry.register("delete_batch_size", "Receipts per DeleteMessageBatch call", delete_batch.clone());
        let backend_errors = Family::<KindLabel, Counter>::default();
        registry.register("backend_errors", "Queue/store call failures by operation", backend_errors.clone());
        let model_load_seconds = Family::<PipelineLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "model_load_seconds",
            "Time to load each pipeline's models at start-up",
            model_load_seconds.clone(),
        );
        let results_reused = Family::<PipelineLabel, Counter>::default();
        registry.register(
            "redelivered_results_reused",
            "Redelivered jobs acknowledged without running the pipeline: their result was already stored for the same input ETag",
            results_reused.clone(),
        );
        Self {
            registry,
            jobs,
            job_seconds,
            stage_seconds,
            in_flight,
            busy,
            prefetch_bytes,
            messages,
            receive_batch,
            heartbeat_extensions,
            heartbeat_failures,
            retries,
            invalid_messages,
            dead_lettered,
            delete_failures,
            delete_batch,
            backend_errors,
            model_load_seconds,
            results_reused,
        }
    }

    pub fn job(&self, pipeline: &str, outcome: &str) {
        let _ = self.jobs.get_or_create(&JobLabels { pipeline: pipeline.into(), outcome: outcome.into() }).inc();
    }

    pub fn stage(&self, pipeline: &str, stage: &str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabels { pipeline: pipeline.into(), stage: stage.into() })
            .observe(seconds);
    }

    pub fn retry(&self, kind: &str) {
        let _ = self.retries.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    pub fn backend_error(&self, operation: &str) {
        let _ = self.backend_errors.get_or_create(&KindLabel { kind: operation.into() }).inc();
    }

    /// Create the series of every label set known at start-up, at zero: each pipeline's job
    /// outcomes, latency and stages, the retry kinds, and the queue/store operations that count
    /// backend errors. A series that exists from the start makes `rate()` (the dashboard, the
    /// alert rules, the scaler's throughput) see the first increment instead of "no data".
    pub fn declare(&self, pipelines: &[&str]) {
        for &pipeline in pipelines {
            for outcome in ["success", "failed", "retried"] {
                let _ = self.jobs.get_or_create(&JobLabels { pipeline: pipeline.into(), outcome: outcome.into() });
            }
            let _ = self.job_seconds.get_or_create(&PipelineLabel { pipeline: pipeline.into() });
            let _ = self.results_reused.get_or_create(&PipelineLabel { pipeline: pipeline.into() });
            for stage in ["fetch", "decode", "process", "store"] {
                let _ =
                    self.stage_seconds.get_or_create(&StageLabels { pipeline: pipeline.into(), stage: stage.into() });
            }
        }
        for kind in ["in_job", "released"] {
            let _ = self.retries.get_or_create(&KindLabel { kind: kind.into() });
        }
        for operation in ["receive", "get", "put"] {
            let _ = self.backend_errors.get_or_create(&KindLabel { kind: operation.into() });
        }
    }

    /// A job started; returns the new in-flight count.
    pub fn job_started(&self) {
        let now = self.in_flight.inc() + 1;
        self.busy.set(i64::from(now > 0));
    }

    pub fn job_ended(&self) {
        let now = self.in_flight.dec() - 1;
        self.busy.set(i64::from(now > 0));
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_names_the_scaler_reads() {
        let m = Metrics::new();
        m.job_started();
        m.job("inspect", "success");
        let text = m.encode();
        assert!(text.contains("docfleet_worker_busy 1"), "{text}");
        assert!(text.contains("docfleet_jobs_in_flight 1"), "{text}");
        assert!(text.contains(r#"docfleet_jobs_total{pipeline="inspect",outcome="success"} 1"#), "{text}");
        m.job_ended();
        assert!(m.encode().contains("docfleet_worker_busy 0"));
    }

    #[test]
    fn declared_label_sets_are_exported_at_zero() {
        let m = Metrics::new();
        assert!(!m.encode().contains("docfleet_jobs_total"), "families are empty until used");
        m.declare(&["inspect", "ocr"]);
        let text = m.encode();
        for series in [
            r#"docfleet_jobs_total{pipeline="ocr",outcome="failed"} 0"#,
            r#"docfleet_job_duration_seconds_count{pipeline="inspect"} 0"#,
            r#"docfleet_stage_duration_seconds_count{pipeline="ocr",stage="store"} 0"#,
            r#"docfleet_retries_total{kind="released"} 0"#,
            r#"docfleet_backend_errors_total{kind="receive"} 0"#,
            r#"docfleet_redelivered_results_reused_total{pipeline="ocr"} 0"#,
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
        m.job("ocr", "failed");
        assert!(m.encode().contains(r#"docfleet_jobs_total{pipeline="ocr",outcome="failed"} 1"#));
    }
}
