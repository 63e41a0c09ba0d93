//! `[worker]`: the worker loop.

use serde::{Deserialize, Serialize};

use super::Fail;
use crate::Result;

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
    /// Receive calls in flight at once (each asks for as many messages as there is room for,
    /// up to `receive_batch`).
    pub receive_concurrency: usize,
    /// Messages received but not started (waiting for a job slot) one worker holds at most; a
    /// receive never asks for more than free slots + this. A held message is invisible to other
    /// workers and each redelivery after a crash costs one of the queue's `maxReceiveCount`
    /// receives, so the look-ahead is kept small. Unset: `concurrency`.
    pub max_waiting: Option<usize>,
    /// Receives the queue should allow each message (its redrive policy's `maxReceiveCount`) at
    /// least: at start-up the worker warns when it allows fewer, since every crash or lost
    /// heartbeat costs a held message one receive. 0: no check.
    pub min_receive_budget: u32,
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
            max_waiting: None,
            min_receive_budget: 5,
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

impl WorkerSettings {
    /// `max_waiting`, or its default (`concurrency`).
    pub fn max_waiting(&self) -> usize {
        self.max_waiting.unwrap_or(self.concurrency)
    }

    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if self.concurrency == 0 || self.concurrency > 1024 {
            return fail("worker.concurrency", format!("must be 1–1024, got {}", self.concurrency));
        }
        if !(1..=10).contains(&self.receive_batch) {
            return fail("worker.receive_batch", format!("must be 1–10, got {}", self.receive_batch));
        }
        if self.max_prefetch_bytes < 1 << 20 {
            return fail(
                "worker.max_prefetch_bytes",
                format!("must be at least 1 MiB, got {}", self.max_prefetch_bytes),
            );
        }
        if self.decode_ahead > 64 {
            return fail("worker.decode_ahead", format!("must be 0–64, got {}", self.decode_ahead));
        }
        if !(1..=16).contains(&self.receive_concurrency) {
            return fail("worker.receive_concurrency", format!("must be 1–16, got {}", self.receive_concurrency));
        }
        if self.receive_wait_seconds > 20 {
            return fail("worker.receive_wait_seconds", format!("must be 0–20, got {}", self.receive_wait_seconds));
        }
        if self.visibility_timeout_seconds == 0 || self.visibility_timeout_seconds > 43_200 {
            return fail(
                "worker.visibility_timeout_seconds",
                format!("must be 1–43200, got {}", self.visibility_timeout_seconds),
            );
        }
        if self.heartbeat && self.heartbeat_interval_seconds >= self.visibility_timeout_seconds {
            return fail(
                "worker.heartbeat_interval_seconds",
                format!(
                    "must be shorter than worker.visibility_timeout_seconds ({}), got {}",
                    self.visibility_timeout_seconds, self.heartbeat_interval_seconds
                ),
            );
        }
        if self.job_retries > 10 {
            return fail("worker.job_retries", format!("must be 0–10, got {}", self.job_retries));
        }
        if self.http_host.parse::<std::net::IpAddr>().is_err() {
            return fail("worker.http_host", format!("must be an IP address, got `{}`", self.http_host));
        }
        if self.default_pipeline.trim().is_empty() {
            return fail("worker.default_pipeline", "must not be empty".into());
        }
        Ok(())
    }
}
