//! The loop on the embedded queue and store: the redelivery short-cut and the receive-budget
//! check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use docfleet_core::config::{QueueBackend, StoreBackend};
use docfleet_core::{Backends, Result, Settings};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::{StopWhen, Worker};
use crate::pipeline::{Document, Pipeline, PipelineOutput, Pipelines};

/// A pipeline that counts its runs.
struct Counting(Arc<AtomicUsize>);

#[async_trait]
impl Pipeline for Counting {
    fn name(&self) -> &'static str {
        "count"
    }

    async fn process(&self, doc: &Document, _params: &Map<String, Value>) -> Result<PipelineOutput> {
        let run = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(PipelineOutput { result: json!({"bytes": doc.bytes.len(), "run": run}), text: None, markdown: None })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    settings: Settings,
    backends: Backends,
    runs: Arc<AtomicUsize>,
}

const RESULT_KEY: &str = "results/count/docfleet-input/docs/a.txt.json";

async fn setup(max_receive_count: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.queue.backend = QueueBackend::Local;
    settings.queue.local_path = dir.path().join("queue.db");
    settings.queue.max_receive_count = max_receive_count;
    settings.store.backend = StoreBackend::Local;
    settings.store.local_root = dir.path().join("store");
    settings.worker.receive_wait_seconds = 0;
    settings.worker.visibility_timeout_seconds = 30;
    settings.worker.delete_flush_ms = 1;
    let backends = Backends::connect(&settings).await.unwrap();
    Setup { _dir: dir, settings, backends, runs: Arc::new(AtomicUsize::new(0)) }
}

impl Setup {
    fn worker(&self) -> Worker {
        let mut pipelines = Pipelines::default();
        pipelines.register(Arc::new(Counting(self.runs.clone())));
        Worker::new(self.settings.clone(), self.backends.clone(), pipelines)
    }

    async fn put_input(&self, body: &'static [u8]) {
        let bucket = &self.settings.store.input_bucket;
        self.backends.store.put(bucket, "docs/a.txt", Bytes::from_static(body), "text/plain").await.unwrap();
    }

    /// Send the job; with `redelivered`, receive it once and hand it back (visibility 0), so the
    /// worker gets it with receive count 2, as after a crash.
    async fn send_job(&self, redelivered: bool) {
        let body = json!({"version": 1, "job_id": "j1", "input": format!("s3://{}/docs/a.txt", self.settings.store.input_bucket), "pipeline": "count"});
        assert!(self.backends.queue.send_batch(&[body.to_string()]).await.unwrap().is_empty());
        if redelivered {
            let got = self.backends.queue.receive(1, Duration::ZERO, Duration::ZERO).await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].receive_count, 1);
        }
    }

    /// Run a fresh worker until the queue is drained; its summary and metrics text.
    async fn drain(&self) -> (super::Summary, String) {
        let worker = self.worker();
        let run = worker.run(CancellationToken::new(), StopWhen::Drained);
        let summary = tokio::time::timeout(Duration::from_secs(30), run).await.expect("drained in time").unwrap();
        (summary, worker.metrics().encode())
    }

    async fn record(&self) -> Value {
        let body = self.backends.store.get(&self.settings.store.output_bucket, RESULT_KEY, 1 << 20).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }
}

const REUSED_1: &str = r#"docfleet_redelivered_results_reused_total{pipeline="count"} 1"#;

#[tokio::test]
async fn a_redelivered_job_with_its_result_stored_for_the_same_input_is_not_run_again() {
    let s = setup(5).await;
    s.put_input(b"first version").await;
    s.send_job(false).await;
    let (summary, _) = s.drain().await;
    assert_eq!((summary.jobs_succeeded, summary.results_reused), (1, 0));
    assert_eq!(s.runs.load(Ordering::SeqCst), 1);
    let first = s.record().await;
    let etag = first["input"]["etag"].as_str().expect("the record names the input's etag").to_owned();
    let head = s.backends.store.head(&s.settings.store.input_bucket, "docs/a.txt").await.unwrap().unwrap();
    assert_eq!(head.etag.as_deref(), Some(etag.as_str()), "the etag recorded is the input's");

    // Redelivered (receive count 2) with the result there for the same input: acknowledged.
    s.send_job(true).await;
    let (summary, metrics) = s.drain().await;
    assert_eq!((summary.messages, summary.jobs_succeeded, summary.results_reused), (1, 0, 1), "{summary:?}");
    assert_eq!(s.runs.load(Ordering::SeqCst), 1, "the pipeline did not run again");
    assert!(metrics.contains(REUSED_1), "{metrics}");
    assert_eq!(s.record().await, first, "the stored result is left as it was");
    assert_eq!(s.backends.queue.depth().await.unwrap().total(), 0, "the message was deleted");
    assert_eq!(s.backends.dlq.depth().await.unwrap().total(), 0);

    // The input replaced since: the redelivered job is recomputed.
    s.put_input(b"second version, longer").await;
    s.send_job(true).await;
    let (summary, metrics) = s.drain().await;
    assert_eq!((summary.jobs_succeeded, summary.results_reused), (1, 0), "{summary:?}");
    assert_eq!(s.runs.load(Ordering::SeqCst), 2, "the pipeline ran for the new input");
    assert!(metrics.contains(r#"docfleet_redelivered_results_reused_total{pipeline="count"} 0"#), "{metrics}");
    let second = s.record().await;
    assert_ne!(second["input"]["etag"], first["input"]["etag"]);
    assert_eq!(second["output"]["run"], 2);
    assert_eq!(second["receive_count"], 2);
}

#[tokio::test]
async fn only_redeliveries_of_the_same_job_take_the_short_cut() {
    let s = setup(5).await;
    s.put_input(b"some document").await;
    s.send_job(false).await;
    s.drain().await;
    // A first delivery is always run, even with a result there.
    s.send_job(false).await;
    let (summary, _) = s.drain().await;
    assert_eq!((summary.jobs_succeeded, summary.results_reused), (1, 0));
    assert_eq!(s.runs.load(Ordering::SeqCst), 2);
    // A redelivered job whose stored result belongs to another job id is run.
    let mut record = s.record().await;
    record["job_id"] = json!("another job");
    let body = Bytes::from(serde_json::to_vec(&record).unwrap());
    s.backends.store.put(&s.settings.store.output_bucket, RESULT_KEY, body, "application/json").await.unwrap();
    s.send_job(true).await;
    let (summary, _) = s.drain().await;
    assert_eq!((summary.jobs_succeeded, summary.results_reused), (1, 0));
    assert_eq!(s.runs.load(Ordering::SeqCst), 3);
    assert_eq!(s.record().await["job_id"], "j1");
    // A redelivered job whose stored record cannot be read is run.
    s.put_input(b"other").await;
    let empty = Bytes::from_static(b"not json");
    s.backends.store.put(&s.settings.store.output_bucket, RESULT_KEY, empty, "application/json").await.unwrap();
    s.send_job(true).await;
    let (summary, _) = s.drain().await;
    assert_eq!((summary.jobs_succeeded, summary.results_reused), (1, 0));
    assert_eq!(s.runs.load(Ordering::SeqCst), 4);
}
