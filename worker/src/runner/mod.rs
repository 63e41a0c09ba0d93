//! The worker loop: receive → parse → fetch input → pipeline → write result → delete.
//!
//! Outcomes per message:
//! - success: result written at its deterministic key, message deleted (batched);
//! - permanent failure (bad message, bad input, over limits, unknown pipeline, bucket not
//!   allowed): error record written at its deterministic error key, message moved to the DLQ at
//!   once (sent there, then deleted), so it is neither retried nor lost;
//! - transient failure (SQS/S3 unavailable, throttled): the message is released with a delay
//!   that doubles with its receive count; the queue's redrive policy dead-letters it after
//!   `max_receive_count` receives. Transient store failures are first retried inside the job
//!   (`worker.job_retries`).
//!
//! While a message is held (running or waiting for a slot) a heartbeat extends its visibility
//! before it expires, so a job longer than the visibility timeout is never handed to a second
//! worker. On shutdown the loop stops receiving, finishes in-flight jobs within
//! `worker.shutdown_grace_seconds`, releases the rest (visibility 0) and flushes pending deletes.
//!
//! A redelivered message (receive count > 1) whose result is already stored for the same job and
//! the same version of its input (the input's ETag, recorded in the result) is acknowledged
//! without running the pipeline (`docfleet_redelivered_results_reused_total`): a crash between
//! storing a result and deleting its message costs no model time. A result for another version
//! of the input is recomputed.
//!
//! The batching deleter, the heartbeat and the backoff live in `deleter`, `heartbeat` and
//! `backoff`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use docfleet_core::job::{Job, Parsed, parse_message};
use docfleet_core::keys::{error_key_for, message_error_key_for, rendition_key_for, result_key_for, text_key_for};
use docfleet_core::queue::Message;
use docfleet_core::{Backends, Error, Result, Settings, now_ms};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::http::Health;
use crate::metrics::Metrics;
use crate::pipeline::{Document, Pipelines};

mod backoff;
mod deleter;
mod heartbeat;

use backoff::Backoff;
use deleter::run_deleter;
use heartbeat::run_heartbeat;

/// When the loop ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhen {
    /// Only on shutdown (a long-running worker).
    Shutdown,
    /// When the queue is empty and nothing is in flight (`docfleet run`, batch jobs).
    Drained,
}

/// Counters of one worker run.
#[derive(Debug, Default)]
pub struct Stats {
    pub messages: AtomicU64,
    pub jobs_succeeded: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub invalid_messages: AtomicU64,
    pub released_for_retry: AtomicU64,
    pub ignored: AtomicU64,
    pub delete_failures: AtomicU64,
    pub heartbeat_calls: AtomicU64,
    pub results_reused: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    pub jobs_succeeded: u64,
    pub jobs_failed: u64,
    pub invalid_messages: u64,
    pub released_for_retry: u64,
    pub ignored: u64,
    pub delete_failures: u64,
    /// ChangeMessageVisibilityBatch calls made by the heartbeat.
    pub heartbeat_calls: u64,
    /// Redelivered jobs acknowledged with their stored result, without running the pipeline.
    pub results_reused: u64,
}

impl Stats {
    pub fn summary(&self) -> Summary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            messages: g(&self.messages),
            jobs_succeeded: g(&self.jobs_succeeded),
            jobs_failed: g(&self.jobs_failed),
            invalid_messages: g(&self.invalid_messages),
            released_for_retry: g(&self.released_for_retry),
            ignored: g(&self.ignored),
            delete_failures: g(&self.delete_failures),
            heartbeat_calls: g(&self.heartbeat_calls),
            results_reused: g(&self.results_reused),
        }
    }
}

/// A worker bound to its backends and pipelines.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    backends: Backends,
    pipelines: Pipelines,
    stats: Stats,
    worker_id: String,
    /// Receipts handed to the deleter and not yet deleted (or given up on).
    pending_deletes: AtomicU64,
    /// Receipts of messages held now (running or waiting for a slot): the heartbeat extends
    /// them, and shutdown releases whatever is left.
    held: Mutex<HashMap<String, String>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// What a job waits on: a share of the prefetch budget while its document is fetched, then a slot
/// while its pipeline runs; shutdown while waiting hands the message back unstarted.
struct Gates {
    slots: Arc<Semaphore>,
    /// Prefetch budget in KiB.
    prefetch: Arc<Semaphore>,
    /// Documents being rasterised ahead of a slot (`worker.decode_ahead`).
    decode: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// What decoding ahead of a slot came to.
enum Ahead {
    /// The pages, and their share of the prefetch budget (held until the job's pipeline is done).
    Decoded(crate::document::Rasterized, (tokio::sync::OwnedSemaphorePermit, Held)),
    /// Not done (budget full, size unknown): the pipeline decodes in its slot.
    Skipped,
    Shutdown,
    /// The document cannot be decoded: the job fails as it would have in its slot.
    Failed(Error),
}

/// How a job that did not fail ended.
enum Done {
    /// The pipeline ran and its result was stored under this key.
    Stored(String),
    /// A redelivery: the result under this key is already there for the same input version.
    Reused(String),
}

/// Largest result record read back to check whether a redelivered job is already done.
const MAX_RECORD_BYTES: u64 = 256 << 20;

/// How one message ended.
enum Disposition {
    Delete,
    DeadLetter,
    Release(Duration),
}

impl Worker {
    pub fn new(settings: Settings, backends: Backends, pipelines: Pipelines) -> Self {
        let health = Arc::new(Health::default());
        health.models_loaded.store(true, Ordering::Release);
        Self::with_observability(settings, backends, pipelines, Arc::new(Metrics::new()), health)
    }

    /// A worker reporting into existing metrics and readiness (the HTTP server's).
    pub fn with_observability(
        settings: Settings,
        backends: Backends,
        pipelines: Pipelines,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let worker_id = format!("{host}/{}", std::process::id());
        metrics.declare(&pipelines.names());
        Self {
            inner: Arc::new(Inner {
                settings,
                backends,
                pipelines,
                stats: Stats::default(),
                worker_id,
                pending_deletes: AtomicU64::new(0),
                held: Mutex::new(HashMap::new()),
                metrics,
                health,
            }),
        }
    }

    pub fn stats(&self) -> Summary {
        self.inner.stats.summary()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    fn hold(&self, message: &Message) {
        self.inner.held.lock().expect("held lock").insert(message.receipt_handle.clone(), message.message_id.clone());
    }

    fn unhold(&self, receipt_handle: &str) {
        self.inner.held.lock().expect("held lock").remove(receipt_handle);
    }

    /// Run until `shutdown` is cancelled (or the queue drains, with [`StopWhen::Drained`]).
    /// In-flight jobs are finished before it returns.
    pub async fn run(&self, shutdown: CancellationToken, stop: StopWhen) -> Result<Summary> {
        let s = &self.inner.settings.worker;
        // `slots` bounds jobs running at once; `held` bounds messages received and not finished
        // (running, or waiting for a slot: at most `max_waiting` of those). Up to
        // `receive_concurrency` receives run at once, each asking for as many messages as there is
        // room for (up to a batch), so the next messages arrive while the current ones run and
        // a crash strands few of them (each stranded message costs a receive of its budget).
        let batch = s.receive_batch as usize;
        let receivers = s.receive_concurrency;
        let gates = Arc::new(Gates {
            slots: Arc::new(Semaphore::new(s.concurrency)),
            prefetch: Arc::new(Semaphore::new(kib(s.max_prefetch_bytes) as usize)),
            decode: Arc::new(Semaphore::new(s.decode_ahead)),
            shutdown: shutdown.clone(),
        });
        let held = Arc::new(Semaphore::new(s.concurrency + s.max_waiting()));
        let mut receiving = futures::stream::FuturesUnordered::new();
        let (delete_tx, delete_rx) = mpsc::channel::<String>(1024);
        let deleter = tokio::spawn(run_deleter(self.clone(), delete_rx));
        let mut tasks = JoinSet::new();
        let wait = Duration::from_secs(s.receive_wait_seconds as u64);
        let visibility = Duration::from_secs(s.visibility_timeout_seconds as u64);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = s.heartbeat.then(|| tokio::spawn(run_heartbeat(self.clone(), heartbeat_stop.clone())));
        info!(queue = self.inner.backends.queue.name(), concurrency = s.concurrency, pipelines = ?self.inner.pipelines.names(), "worker started");
        // Beside the loop, so a slow or unreachable queue does not delay receiving.
        tokio::spawn({
            let (worker, shutdown) = (self.clone(), shutdown.clone());
            async move { worker.check_receive_budget(&shutdown).await }
        });
        let mut pipelines_ready = true;

        loop {
            while tasks.try_join_next().is_some() {}
            // A pipeline whose model server is not answering: receive nothing (and report not
            // ready) until it is back.
            if self.inner.pipelines.ready() != pipelines_ready {
                pipelines_ready = !pipelines_ready;
                self.inner.health.models_loaded.store(pipelines_ready, Ordering::Release);
                if pipelines_ready {
                    info!("pipelines ready; receiving");
                } else {
                    warn!("a pipeline is not ready (its model server is not answering); not receiving");
                }
            }
            if !pipelines_ready {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
            let (mut room, received) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = receiving.next(), if !receiving.is_empty() => done,
                // Start another receive when there is room for one message, asking for all the
                // room there is (up to a batch). Only this loop takes permits, so the ones counted
                // as available are there to take.
                permit = held.clone().acquire_owned(), if receiving.len() < receivers => {
                    let mut room = permit.expect("semaphore open");
                    let more = held.available_permits().min(batch - 1);
                    if more > 0 {
                        room.merge(held.clone().try_acquire_many_owned(more as u32).expect("permits counted as available"));
                    }
                    let asked = room.num_permits() as u32;
                    let queue = self.inner.backends.queue.clone();
                    receiving.push(async move { (room, queue.receive(asked, wait, visibility).await) });
                    continue;
                }
            };
            let messages = match received {
                Ok(m) => {
                    backoff.reset();
                    self.inner.health.queue_reachable.store(true, Ordering::Release);
                    m
                }
                Err(e) => {
                    drop(room);
                    self.inner.health.queue_reachable.store(false, Ordering::Release);
                    self.inner.metrics.backend_error("receive");
                    let delay = backoff.next();
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed; backing off");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                drop(room);
                if stop == StopWhen::Drained && self.drained(&mut tasks).await? {
                    break;
                }
                continue;
            }
            self.inner.metrics.messages.inc_by(messages.len() as u64);
            self.inner.metrics.receive_batch.observe(messages.len() as f64);
            for message in &messages {
                self.hold(message);
            }
            for message in messages {
                let held_permit = room.split(1).expect("one permit per received message");
                let (worker, gates) = (self.clone(), gates.clone());
                let delete_tx = delete_tx.clone();
                let span =
                    info_span!("message", message_id = %message.message_id, receive_count = message.receive_count);
                tasks.spawn(
                    async move {
                        if gates.shutdown.is_cancelled() {
                            // Not started: hand it back to the queue at once.
                            worker.dispose(message, Disposition::Release(Duration::ZERO), &delete_tx).await;
                            return;
                        }
                        worker.handle_message(message, &delete_tx, &gates).await;
                        drop(held_permit);
                    }
                    .instrument(span),
                );
            }
        }
        let grace = Duration::from_secs(s.shutdown_grace_seconds as u64);
        info!(in_flight = tasks.len(), grace_s = grace.as_secs(), "worker stopping; finishing in-flight jobs");
        // Receives still in flight are not dropped (SQS may already have handed them messages,
        // which would stay invisible for the whole visibility timeout): their messages are
        // released at once, while running jobs finish.
        let release_received = async {
            while let Some((room, received)) = receiving.next().await {
                if let Ok(messages) = received {
                    for m in &messages {
                        self.hold(m);
                    }
                    if !messages.is_empty() {
                        self.release_held_receipts(messages.into_iter().map(|m| m.receipt_handle).collect()).await;
                    }
                }
                drop(room);
            }
        };
        let finished = tokio::time::timeout(grace, async {
            tokio::join!(release_received, async { while tasks.join_next().await.is_some() {} });
        })
        .await;
        if finished.is_err() {
            warn!(
                unfinished = tasks.len(),
                "grace period over; abandoning unfinished jobs and releasing their messages"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            self.release_held().await;
        }
        heartbeat_stop.cancel();
        if let Some(h) = heartbeat {
            let _ = h.await;
        }
        drop(delete_tx);
        let _ = deleter.await;
        let summary = self.stats();
        info!(?summary, "worker stopped");
        Ok(summary)
    }

    /// Warn when the queue's redrive policy dead-letters messages after fewer receives than
    /// `worker.min_receive_budget`: each crash, lost heartbeat or transient failure costs a held
    /// message one receive, and a small budget sends healthy jobs to the DLQ.
    async fn check_receive_budget(&self, shutdown: &CancellationToken) {
        let min = self.inner.settings.worker.min_receive_budget;
        if min == 0 {
            return;
        }
        let queue = &self.inner.backends.queue;
        let answer = tokio::select! {
            answer = tokio::time::timeout(Duration::from_secs(10), queue.max_receive_count()) => answer,
            _ = shutdown.cancelled() => return,
        };
        match answer {
            Ok(Ok(Some(max))) if max < min => warn!(
                queue = queue.name(),
                max_receive_count = max,
                min_receive_budget = min,
                "the queue's redrive policy dead-letters a message after {max} receives, fewer than worker.min_receive_budget ({min}): crashes and redeliveries can send healthy jobs to the DLQ; raise the queue's maxReceiveCount"
            ),
            Ok(Ok(Some(max))) => debug!(max_receive_count = max, "receive budget checked"),
            Ok(Ok(None)) => info!(
                queue = queue.name(),
                "the queue has no redrive policy: a job that keeps failing transiently is retried without end"
            ),
            Ok(Err(e)) => warn!(
                error = %e,
                "could not read the queue's redrive policy (GetQueueAttributes); worker.min_receive_budget not checked"
            ),
            Err(_) => warn!("reading the queue's redrive policy timed out; worker.min_receive_budget not checked"),
        }
    }

    /// Make every message still held visible again at once (shutdown after the grace period).
    async fn release_held(&self) {
        let receipts: Vec<String> = self.inner.held.lock().expect("held lock").drain().map(|(r, _)| r).collect();
        self.release_held_receipts(receipts).await;
    }

    /// Make these held messages visible again at once and stop heartbeating them.
    async fn release_held_receipts(&self, receipts: Vec<String>) {
        for r in &receipts {
            self.unhold(r);
        }
        for chunk in receipts.chunks(docfleet_core::queue::MAX_BATCH) {
            let entries: Vec<(String, Duration)> = chunk.iter().map(|r| (r.clone(), Duration::ZERO)).collect();
            match self.inner.backends.queue.change_visibility_batch(&entries).await {
                Ok(failed) if failed.is_empty() => info!(count = entries.len(), "released unfinished messages"),
                Ok(failed) => {
                    warn!(?failed, "some messages could not be released; they return after their visibility timeout")
                }
                Err(e) => warn!(error = %e, "could not release messages; they return after their visibility timeout"),
            }
        }
    }

    /// True when nothing is in flight here and the queue reports nothing left.
    async fn drained(&self, tasks: &mut JoinSet<()>) -> Result<bool> {
        while tasks.try_join_next().is_some() {}
        if !tasks.is_empty() {
            return Ok(false);
        }
        // Pending deletes make the queue look busy; wait for the deleter to catch up first.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.inner.pending_deletes.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let depth = self.inner.backends.queue.depth().await?;
        debug!(?depth, "queue empty on receive");
        Ok(depth.total() == 0)
    }

    async fn handle_message(&self, message: Message, delete_tx: &mpsc::Sender<String>, gates: &Gates) {
        let stats = &self.inner.stats;
        stats.messages.fetch_add(1, Ordering::Relaxed);
        let disposition = match parse_message(&message.body, &self.inner.settings.worker.default_pipeline) {
            Ok(Parsed::TestEvent) => {
                info!("s3:TestEvent received; deleting it");
                stats.ignored.fetch_add(1, Ordering::Relaxed);
                Disposition::Delete
            }
            Ok(Parsed::Ignored(why)) => {
                info!(%why, "notification with nothing to process; deleting it");
                stats.ignored.fetch_add(1, Ordering::Relaxed);
                Disposition::Delete
            }
            Ok(Parsed::Jobs(jobs)) => self.run_jobs(&message, jobs, gates).await,
            Err(e) => {
                warn!(error = %e, "message is not a job; recording the error and dead-lettering it");
                stats.invalid_messages.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.invalid_messages.inc();
                let key = message_error_key_for(&self.inner.settings.store.errors_prefix, &message.message_id);
                let record = json!({
                    "schema": "docfleet.error/v1",
                    "message_id": message.message_id,
                    "receive_count": message.receive_count,
                    "error": {"kind": e.kind(), "message": e.to_string()},
                    "body": truncate(&message.body, 4096),
                    "worker": self.inner.worker_id,
                    "at_ms": now_ms(),
                });
                match self.put_json(&key, &record).await {
                    Ok(()) => Disposition::DeadLetter,
                    Err(e) => self.retry_later(&message, &e),
                }
            }
        };
        self.dispose(message, disposition, delete_tx).await;
    }

    /// Run every job of a message; the message's fate follows the worst outcome.
    async fn run_jobs(&self, message: &Message, jobs: Vec<Job>, gates: &Gates) -> Disposition {
        let stats = &self.inner.stats;
        let mut dead_letter = false;
        for job in jobs {
            let span = info_span!("job", job_id = %job.job_id, pipeline = %job.pipeline, input = %job.input);
            let started = Instant::now();
            let outcome = match self.run_job(message, &job, gates).instrument(span.clone()).await {
                Ok(Some(Done::Reused(key))) => {
                    let _entered = span.enter();
                    stats.results_reused.fetch_add(1, Ordering::Relaxed);
                    self.inner
                        .metrics
                        .results_reused
                        .get_or_create(&crate::metrics::PipelineLabel { pipeline: job.pipeline.clone() })
                        .inc();
                    info!(result = %key, "redelivered job already has its result for this input version; acknowledged without running the pipeline");
                    continue;
                }
                Ok(Some(Done::Stored(key))) => Ok(key),
                // Shutdown before it started: back to the queue at once (jobs done so far are
                // redone under the same keys).
                Ok(None) => return Disposition::Release(Duration::ZERO),
                Err(e) => Err(e),
            };
            let _entered = span.enter();
            let metrics = &self.inner.metrics;
            metrics
                .job_seconds
                .get_or_create(&crate::metrics::PipelineLabel { pipeline: job.pipeline.clone() })
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Ok(key) => {
                    stats.jobs_succeeded.fetch_add(1, Ordering::Relaxed);
                    metrics.job(&job.pipeline, "success");
                    info!(result = %key, "job done");
                }
                Err(e) if e.is_transient() => {
                    metrics.job(&job.pipeline, "retried");
                    if !self.inner.pipelines.ready() {
                        // Its model server went away: back to the queue at once, not failed.
                        warn!(error = %e, "pipeline not ready; releasing the message at once");
                        stats.released_for_retry.fetch_add(1, Ordering::Relaxed);
                        return Disposition::Release(Duration::ZERO);
                    }
                    return self.retry_later(message, &e);
                }
                Err(e) => {
                    stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
                    metrics.job(&job.pipeline, "failed");
                    warn!(error = %e, "job failed permanently; recording the error");
                    if let Err(put_err) = self.write_error_record(message, &job, &e).await {
                        return self.retry_later(message, &put_err);
                    }
                    dead_letter = true;
                }
            }
        }
        if dead_letter { Disposition::DeadLetter } else { Disposition::Delete }
    }

    /// Fetch, process and store one job; `None` when shutdown came before it started.
    async fn run_job(&self, message: &Message, job: &Job, gates: &Gates) -> Result<Option<Done>> {
        let settings = &self.inner.settings;
        let pipeline = self.inner.pipelines.get(&job.pipeline)?;
        if !settings.store.input_bucket_allowed(&job.input.bucket) {
            return Err(Error::InvalidJob(format!(
                "input bucket `{}` is not on the allow-list (store.allowed_input_buckets)",
                job.input.bucket
            )));
        }
        if !settings.store.input_key_allowed(&job.input.key) {
            return Err(Error::InvalidJob(format!(
                "input key `{}` is outside the allowed prefixes (store.allowed_input_prefixes)",
                job.input.key
            )));
        }
        let prefix = job.output_prefix.as_deref().unwrap_or(&settings.store.results_prefix);
        let key = result_key_for(prefix, &job.pipeline, &job.input.bucket, &job.input.key);
        if message.receive_count > 1 && self.result_already_stored(job, &key).await {
            return Ok(Some(Done::Reused(key)));
        }
        let started = Instant::now();
        let started_at_ms = now_ms();
        let store = &self.inner.backends.store;
        // The document is fetched before a slot is free (other jobs run meanwhile), within the
        // prefetch budget: as `limits.max_input_bytes` until its size is known.
        let budget = kib(settings.limits.max_input_bytes.min(settings.worker.max_prefetch_bytes));
        let mut prefetched = tokio::select! {
            permit = gates.prefetch.clone().acquire_many_owned(budget) => permit.expect("semaphore open"),
            _ = gates.shutdown.cancelled() => return Ok(None),
        };
        let object = self
            .with_retries("get", || {
                store.get_object(&job.input.bucket, &job.input.key, settings.limits.max_input_bytes)
            })
            .await?;
        let (bytes, input_etag) = (object.body, object.etag);
        let surplus = budget.saturating_sub(kib(bytes.len() as u64));
        if surplus > 0 {
            drop(prefetched.split(surplus as usize));
        }
        let held_bytes = Held::new(&self.inner.metrics.prefetch_bytes, bytes.len());
        let fetched = started.elapsed();
        let metrics = &self.inner.metrics;
        metrics.stage(&job.pipeline, "fetch", fetched.as_secs_f64());
        let mut doc = Document::new(job.input.clone(), bytes);
        // Pages decoded ahead of the slot, while other jobs' models run.
        let mut decoded_ahead = None;
        if let Some(dpi) = pipeline.rasterizes_at() {
            match self.decode_ahead(&doc, dpi, gates).await {
                Ahead::Decoded(pages, held) => {
                    doc.pages = Some(Arc::new(pages));
                    decoded_ahead = Some(held);
                }
                Ahead::Skipped => {}
                Ahead::Shutdown => return Ok(None),
                Ahead::Failed(e) => return Err(e),
            }
        }
        let decoded = started.elapsed() - fetched;
        if doc.pages.is_some() {
            metrics.stage(&job.pipeline, "decode", decoded.as_secs_f64());
        }
        let slot = tokio::select! {
            slot = gates.slots.clone().acquire_owned() => slot.expect("semaphore open"),
            _ = gates.shutdown.cancelled() => return Ok(None),
        };
        let waited = started.elapsed() - fetched - decoded;
        metrics.job_started();
        let output = match settings.worker.job_timeout_seconds {
            0 => pipeline.process(&doc, &job.params).await,
            limit => tokio::time::timeout(Duration::from_secs(limit as u64), pipeline.process(&doc, &job.params))
                .await
                .map_err(|_| Error::Timeout(limit as u64))
                .and_then(|r| r),
        };
        metrics.job_ended();
        // Storing the result does not hold a slot: the next job's pipeline starts now.
        drop(slot);
        drop((prefetched, held_bytes, decoded_ahead));
        doc.pages = None;
        let output = output?;
        let processed = started.elapsed() - fetched - decoded - waited;
        metrics.stage(&job.pipeline, "process", processed.as_secs_f64());
        if let Some(text) = &output.text {
            let text_key = text_key_for(&key);
            let body = Bytes::from(text.clone());
            self.with_retries("put", || {
                store.put(&settings.store.output_bucket, &text_key, body.clone(), "text/plain; charset=utf-8")
            })
            .await?;
        }
        if let Some(markdown) = &output.markdown {
            let md_key = rendition_key_for(&key, "md");
            let body = Bytes::from(markdown.clone());
            self.with_retries("put", || {
                store.put(&settings.store.output_bucket, &md_key, body.clone(), "text/markdown; charset=utf-8")
            })
            .await?;
        }
        let record = json!({
            "schema": "docfleet.result/v1",
            "job_id": job.job_id,
            "pipeline": job.pipeline,
            "input": {"bucket": job.input.bucket, "key": job.input.key, "bytes": doc.bytes.len(), "etag": input_etag},
            "source": job.source,
            "output": output.result,
            "message_id": message.message_id,
            "receive_count": message.receive_count,
            "timings_ms": {
                "fetch": fetched.as_secs_f64() * 1e3,
                "decode_ahead": decoded.as_secs_f64() * 1e3,
                "wait": waited.as_secs_f64() * 1e3,
                "process": processed.as_secs_f64() * 1e3,
            },
            "worker": self.inner.worker_id,
            "started_at_ms": started_at_ms,
            "completed_at_ms": now_ms(),
        });
        self.put_json(&key, &record).await?;
        metrics.stage(
            &job.pipeline,
            "store",
            (started.elapsed() - fetched - decoded - waited - processed).as_secs_f64(),
        );
        Ok(Some(Done::Stored(key)))
    }

    /// Whether the result record under `key` is this job's, for the input's current version (its
    /// ETag as recorded in the result), so a redelivered job needs no run. Any doubt — no ETag,
    /// no or an unreadable record, another job, an input replaced since — means run it.
    async fn result_already_stored(&self, job: &Job, key: &str) -> bool {
        let store = &self.inner.backends.store;
        let current = match store.head(&job.input.bucket, &job.input.key).await {
            Ok(Some(info)) => info.etag,
            Ok(None) => return false,
            Err(e) => {
                debug!(error = %e, "could not read the input's ETag; running the job");
                return false;
            }
        };
        let Some(current) = current else { return false };
        let record = match store.get(&self.inner.settings.store.output_bucket, key, MAX_RECORD_BYTES).await {
            Ok(body) => body,
            Err(Error::NotFound { .. }) => return false,
            Err(e) => {
                debug!(error = %e, "could not read the stored result; running the job");
                return false;
            }
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&record) else { return false };
        let this_job = record["schema"] == "docfleet.result/v1"
            && record["job_id"] == job.job_id.as_str()
            && record["pipeline"] == job.pipeline.as_str();
        let stored = record["input"]["etag"].as_str();
        if this_job && stored != Some(current.as_str()) {
            info!(stored_etag = stored, current_etag = %current, "the stored result is for another version of the input; recomputing");
        }
        this_job && stored == Some(current.as_str())
    }

    /// Rasterise a document before its job has a slot (`worker.decode_ahead` at once, on the
    /// blocking pool), if its pixel data, estimated from its headers, fits in what is left of the
    /// prefetch budget right now; the budget is never waited for, so a full budget only means the
    /// job decodes in its slot as before.
    async fn decode_ahead(&self, doc: &Document, dpi: f32, gates: &Gates) -> Ahead {
        if self.inner.settings.worker.decode_ahead == 0 {
            return Ahead::Skipped;
        }
        let limits = &self.inner.settings.limits;
        let Some(estimate) = crate::document::raster_bytes_estimate(&doc.bytes, limits, dpi) else {
            return Ahead::Skipped;
        };
        let Ok(mut budget) = gates.prefetch.clone().try_acquire_many_owned(kib(estimate)) else {
            return Ahead::Skipped;
        };
        let _decoding = tokio::select! {
            permit = gates.decode.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Ahead::Skipped,
            },
            _ = gates.shutdown.cancelled() => return Ahead::Shutdown,
        };
        let (bytes, limits) = (doc.bytes.clone(), limits.clone());
        let pages = match tokio::task::spawn_blocking(move || crate::document::rasterize(&bytes, &limits, dpi)).await {
            Ok(Ok(pages)) => pages,
            Ok(Err(e)) => return Ahead::Failed(e),
            Err(e) => return Ahead::Failed(Error::InvalidInput(format!("decoding crashed on this document: {e}"))),
        };
        // Settle the estimate against what was allocated.
        let raster_bytes = crate::document::raster_bytes(&pages.1);
        let actual = kib(raster_bytes);
        let reserved = kib(estimate);
        if actual > reserved {
            match gates.prefetch.clone().try_acquire_many_owned(actual - reserved) {
                Ok(more) => budget.merge(more),
                Err(_) => return Ahead::Skipped,
            }
        } else if actual < reserved {
            drop(budget.split((reserved - actual) as usize));
        }
        let held = Held::new(&self.inner.metrics.prefetch_bytes, raster_bytes as usize);
        Ahead::Decoded(pages, (budget, held))
    }

    /// Run a store call, retrying transient failures `worker.job_retries` times with backoff.
    async fn with_retries<T, F, Fut>(&self, operation: &'static str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let retries = self.inner.settings.worker.job_retries;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() && attempt < retries => {
                    attempt += 1;
                    let delay = backoff.next();
                    self.inner.metrics.backend_error(operation);
                    self.inner.metrics.retry("in_job");
                    warn!(error = %e, attempt, retry_in_ms = delay.as_millis() as u64, "transient store failure; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    if e.is_transient() {
                        self.inner.metrics.backend_error(operation);
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    async fn write_error_record(&self, message: &Message, job: &Job, err: &Error) -> Result<()> {
        let key =
            error_key_for(&self.inner.settings.store.errors_prefix, &job.pipeline, &job.input.bucket, &job.input.key);
        let record = json!({
            "schema": "docfleet.error/v1",
            "job_id": job.job_id,
            "pipeline": job.pipeline,
            "input": {"bucket": job.input.bucket, "key": job.input.key},
            "error": {"kind": err.kind(), "message": err.to_string()},
            "message_id": message.message_id,
            "receive_count": message.receive_count,
            "worker": self.inner.worker_id,
            "at_ms": now_ms(),
        });
        self.put_json(&key, &record).await
    }

    async fn put_json(&self, key: &str, value: &serde_json::Value) -> Result<()> {
        let body = Bytes::from(serde_json::to_vec_pretty(value)?);
        let store = &self.inner.backends.store;
        let bucket = &self.inner.settings.store.output_bucket;
        self.with_retries("put", || store.put(bucket, key, body.clone(), "application/json")).await
    }

    fn retry_later(&self, message: &Message, err: &Error) -> Disposition {
        let s = &self.inner.settings.worker;
        let exp = message.receive_count.saturating_sub(1).min(16);
        let delay = (s.retry_base_delay_seconds as u64).saturating_mul(1 << exp).min(s.retry_max_delay_seconds as u64);
        warn!(error = %err, retry_in_s = delay, "transient failure; releasing the message for a retry");
        self.inner.stats.released_for_retry.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.retry("released");
        Disposition::Release(Duration::from_secs(delay))
    }

    async fn dispose(&self, message: Message, disposition: Disposition, delete_tx: &mpsc::Sender<String>) {
        let backends = &self.inner.backends;
        // No more heartbeats for it, whatever happens next.
        self.unhold(&message.receipt_handle);
        match disposition {
            Disposition::Delete => self.queue_delete(message.receipt_handle, delete_tx).await,
            Disposition::DeadLetter => {
                // Send first, delete second: a crash in between redelivers (idempotent), never loses.
                match backends.dlq.send_batch(std::slice::from_ref(&message.body)).await {
                    Ok(failed) if failed.is_empty() => {
                        self.inner.metrics.dead_lettered.inc();
                        self.queue_delete(message.receipt_handle, delete_tx).await;
                        info!(dlq = backends.dlq.name(), "message moved to the dead-letter queue");
                    }
                    Ok(failed) => {
                        warn!(?failed, "could not send to the DLQ; the message stays and will be redelivered")
                    }
                    Err(e) => {
                        warn!(error = %e, "could not send to the DLQ; the message stays and will be redelivered")
                    }
                }
            }
            Disposition::Release(delay) => {
                let entry = [(message.receipt_handle, delay)];
                match backends.queue.change_visibility_batch(&entry).await {
                    Ok(failed) if failed.is_empty() => {}
                    Ok(failed) => {
                        warn!(?failed, "could not release the message; it returns after its visibility timeout")
                    }
                    Err(e) => {
                        warn!(error = %e, "could not release the message; it returns after its visibility timeout")
                    }
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bytes as whole KiB (rounded up, at least 1), the prefetch budget's unit.
fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as u64 >> 4) as u32
}

/// A document's bytes counted in `docfleet_prefetch_bytes` while it is held.
struct Held {
    gauge: prometheus_client::metrics::gauge::Gauge,
    bytes: i64,
}

impl Held {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge, bytes: usize) -> Self {
        gauge.inc_by(bytes as i64);
        Self { gauge: gauge.clone(), bytes: bytes as i64 }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

#[cfg(test)]
mod tests;
