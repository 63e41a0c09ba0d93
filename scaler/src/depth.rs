//! Queue depth, read at most once per interval per queue however many clients ask.
//!
//! Each configured queue has one cache entry: the last reading with its time, and a gate (an async
//! mutex holding the time of the last attempt). A request younger than the interval is answered
//! from the reading. Otherwise the first caller through the gate makes the one call; callers that
//! arrive meanwhile get the previous reading at once if it is still within the staleness limit,
//! or wait for the call. A failed call is not repeated within the interval either: callers get the
//! last reading while it is younger than `max_staleness`, then [`Error::Unavailable`], so an HPA
//! holds its replica count instead of acting on an old number. Failures are logged and counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use docfleet_core::aws::backend_error;
use docfleet_core::queue::{Queue, QueueDepth};
use tracing::{debug, warn};

use crate::metrics::{MessagesLabels, Metrics, QueueLabel};
use crate::{Error, Result};

/// Where one queue's depth comes from.
#[async_trait]
pub trait DepthSource: Send + Sync {
    /// Read the depth now (one logical call; the source counts its own calls).
    async fn depth(&self) -> Result<QueueDepth>;
}

/// An SQS queue: GetQueueUrl once (when only a name is configured), then one GetQueueAttributes
/// per read asking for visible, not visible and delayed together.
pub struct SqsDepth {
    client: aws_sdk_sqs::Client,
    label: String,
    name: String,
    url: tokio::sync::OnceCell<String>,
    metrics: Arc<Metrics>,
}

impl SqsDepth {
    /// `queue` is a name or a URL; `label` is what metrics call it.
    pub fn new(client: aws_sdk_sqs::Client, queue: &str, metrics: Arc<Metrics>) -> Self {
        let url = tokio::sync::OnceCell::new();
        if is_url(queue) {
            url.set(queue.to_owned()).expect("fresh cell");
        }
        Self { client, label: queue_label(queue), name: queue.to_owned(), url, metrics }
    }

    async fn url(&self) -> Result<&str> {
        let url = self
            .url
            .get_or_try_init(|| async {
                self.metrics.sqs_call(&self.label, "GetQueueUrl");
                let out = self
                    .client
                    .get_queue_url()
                    .queue_name(&self.name)
                    .send()
                    .await
                    .map_err(|e| backend_error("sqs", "GetQueueUrl", e))?;
                out.queue_url.ok_or_else(|| {
                    Error::Core(docfleet_core::Error::Config(format!("SQS returned no URL for `{}`", self.name)))
                })
            })
            .await?;
        Ok(url)
    }
}

#[async_trait]
impl DepthSource for SqsDepth {
    async fn depth(&self) -> Result<QueueDepth> {
        let url = self.url().await?;
        self.metrics.sqs_call(&self.label, "GetQueueAttributes");
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| backend_error("sqs", "GetQueueAttributes", e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: QueueAttributeName| -> Result<u64> {
            let raw = attrs.get(&name).ok_or_else(|| Error::Unavailable {
                what: format!("{name} of queue `{}`", self.label),
                reason: "SQS did not return it".into(),
            })?;
            raw.parse().map_err(|_| Error::Unavailable {
                what: format!("{name} of queue `{}`", self.label),
                reason: format!("not a number: `{raw}`"),
            })
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages)?,
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        })
    }
}

/// Any docfleet [`Queue`] (the embedded SQLite queue of the `local-dev` profile).
pub struct QueueDepthSource {
    queue: Arc<dyn Queue>,
    label: String,
    metrics: Arc<Metrics>,
}

impl QueueDepthSource {
    pub fn new(queue: Arc<dyn Queue>, metrics: Arc<Metrics>) -> Self {
        Self { label: queue.name().to_owned(), queue, metrics }
    }
}

#[async_trait]
impl DepthSource for QueueDepthSource {
    async fn depth(&self) -> Result<QueueDepth> {
        self.metrics.sqs_call(&self.label, "depth");
        Ok(self.queue.depth().await?)
    }
}

/// Whether a configured queue is given as a URL rather than a name.
pub fn is_url(queue: &str) -> bool {
    queue.starts_with("http://") || queue.starts_with("https://")
}

/// The `queue` label of a configured queue: its name, or a URL's last path segment.
pub fn queue_label(queue: &str) -> String {
    if is_url(queue) {
        queue.trim_end_matches('/').rsplit('/').next().unwrap_or(queue).to_owned()
    } else {
        queue.to_owned()
    }
}

/// Which message states count towards the served depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inclusion {
    pub in_flight: bool,
    pub delayed: bool,
}

impl Inclusion {
    pub fn value(&self, d: &QueueDepth) -> u64 {
        d.visible + if self.in_flight { d.in_flight } else { 0 } + if self.delayed { d.delayed } else { 0 }
    }
}

/// How the cache behaves.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// At most one call per queue per interval.
    pub interval: Duration,
    /// Serve a reading until it is this old when calls fail.
    pub max_staleness: Duration,
    /// Longest one read may take.
    pub timeout: Duration,
    pub inclusion: Inclusion,
}

/// One successful read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub depth: QueueDepth,
    /// The served value: visible (+ in flight, + delayed as configured).
    pub value: u64,
    pub read_at: Instant,
    pub timestamp: jiff::Timestamp,
}

impl Reading {
    pub fn age(&self) -> Duration {
        self.read_at.elapsed()
    }
}

struct Entry {
    queue: String,
    source: Box<dyn DepthSource>,
    last: Mutex<Option<Reading>>,
    last_error: Mutex<Option<String>>,
    /// Held for the duration of a read; holds the time of the last attempt.
    gate: tokio::sync::Mutex<Option<Instant>>,
}

impl Entry {
    fn reading(&self) -> Option<Reading> {
        *self.last.lock().expect("reading lock")
    }

    fn younger_than(&self, limit: Duration) -> Option<Reading> {
        self.reading().filter(|r| r.age() < limit)
    }
}

/// The depth cache of every configured queue.
pub struct DepthCache {
    entries: BTreeMap<String, Entry>,
    config: CacheConfig,
    metrics: Arc<Metrics>,
}

impl DepthCache {
    /// A cache over `(label, source)` pairs.
    pub fn new(sources: Vec<(String, Box<dyn DepthSource>)>, config: CacheConfig, metrics: Arc<Metrics>) -> Self {
        let entries = sources
            .into_iter()
            .map(|(queue, source)| {
                let entry = Entry {
                    queue: queue.clone(),
                    source,
                    last: Mutex::new(None),
                    last_error: Mutex::new(None),
                    gate: tokio::sync::Mutex::new(None),
                };
                (queue, entry)
            })
            .collect();
        Self { entries, config, metrics }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Labels of the configured queues, sorted.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The last reading, without calling anything.
    pub fn peek(&self, queue: &str) -> Option<Reading> {
        self.entries.get(queue).and_then(Entry::reading)
    }

    /// The depth of `queue`, read now if the cached reading is older than the interval.
    pub async fn get(&self, queue: &str) -> Result<Reading> {
        let entry = self.entries.get(queue).ok_or_else(|| Error::UnknownQueue {
            queue: queue.to_owned(),
            configured: self.entries.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        if let Some(r) = entry.younger_than(self.config.interval) {
            return Ok(r);
        }
        let mut gate = match entry.gate.try_lock() {
            Ok(gate) => gate,
            // A read is under way: don't queue behind it while there is something fresh enough.
            Err(_) => match entry.younger_than(self.config.max_staleness) {
                Some(r) => return Ok(r),
                None => entry.gate.lock().await,
            },
        };
        // Whoever held the gate before us may just have read (or failed) within this interval.
        if let Some(r) = entry.younger_than(self.config.interval) {
            return Ok(r);
        }
        if gate.is_some_and(|attempt| attempt.elapsed() < self.config.interval) {
            return self.fallback(entry);
        }
        *gate = Some(Instant::now());
        let result = match tokio::time::timeout(self.config.timeout, entry.source.depth()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unavailable {
                what: format!("depth of queue `{queue}`"),
                reason: format!("no answer within {} ms", self.config.timeout.as_millis()),
            }),
        };
        match result {
            Ok(depth) => {
                let reading = Reading {
                    depth,
                    value: self.config.inclusion.value(&depth),
                    read_at: Instant::now(),
                    timestamp: jiff::Timestamp::now(),
                };
                *entry.last.lock().expect("reading lock") = Some(reading);
                *entry.last_error.lock().expect("error lock") = None;
                self.record(queue, &reading);
                debug!(
                    queue,
                    visible = depth.visible,
                    in_flight = depth.in_flight,
                    delayed = depth.delayed,
                    "depth read"
                );
                Ok(reading)
            }
            Err(e) => {
                let (operation, kind) = match &e {
                    Error::Core(docfleet_core::Error::Backend { operation, transient, .. }) => {
                        (*operation, if *transient { "transient" } else { "permanent" })
                    }
                    Error::Unavailable { .. } => ("GetQueueAttributes", "timeout"),
                    _ => ("GetQueueAttributes", "permanent"),
                };
                self.metrics.sqs_error(queue, operation, kind);
                let age_ms = entry.reading().map(|r| r.age().as_millis() as u64);
                warn!(queue, operation, kind, error = %e, last_reading_age_ms = ?age_ms, "reading queue depth failed");
                *entry.last_error.lock().expect("error lock") = Some(e.to_string());
                self.fallback(entry)
            }
        }
    }

    /// Read every queue (each through the same gate); used by `/metrics` and `/readyz`.
    pub async fn refresh_all(&self) -> Vec<(String, Result<Reading>)> {
        let reads = self.entries.keys().map(|q| async move { (q.clone(), self.get(q).await) });
        futures::future::join_all(reads).await
    }

    /// Whether every queue has been read successfully at least once.
    pub fn all_read_once(&self) -> bool {
        self.entries.values().all(|e| e.reading().is_some())
    }

    /// Update the cache-age gauges (called at scrape time).
    pub fn record_ages(&self) {
        for (queue, entry) in &self.entries {
            if let Some(r) = entry.reading() {
                self.metrics
                    .cache_age_seconds
                    .get_or_create(&QueueLabel { queue: queue.clone() })
                    .set(r.age().as_secs_f64());
            }
        }
    }

    fn fallback(&self, entry: &Entry) -> Result<Reading> {
        if let Some(r) = entry.younger_than(self.config.max_staleness) {
            return Ok(r);
        }
        let last_error = entry.last_error.lock().expect("error lock").clone();
        let reason = match (entry.reading(), last_error) {
            (Some(r), Some(e)) => format!(
                "last reading is {:.1} s old (limit {:.1} s); last error: {e}",
                r.age().as_secs_f64(),
                self.config.max_staleness.as_secs_f64()
            ),
            (Some(r), None) => format!("last reading is {:.1} s old", r.age().as_secs_f64()),
            (None, Some(e)) => format!("never read successfully; last error: {e}"),
            (None, None) => "never read successfully".into(),
        };
        Err(Error::Unavailable { what: format!("depth of queue `{}`", entry.queue), reason })
    }

    fn record(&self, queue: &str, r: &Reading) {
        let m = &self.metrics;
        m.queue_depth.get_or_create(&QueueLabel { queue: queue.into() }).set(r.value as i64);
        for (state, n) in [("visible", r.depth.visible), ("in_flight", r.depth.in_flight), ("delayed", r.depth.delayed)]
        {
            m.queue_messages.get_or_create(&MessagesLabels { queue: queue.into(), state: state.into() }).set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A source that counts calls, can be made to fail, and takes `delay` per call.
    struct Fake {
        calls: Arc<AtomicU64>,
        failing: Arc<AtomicBool>,
        visible: Arc<AtomicU64>,
        delay: Duration,
    }

    #[async_trait]
    impl DepthSource for Fake {
        async fn depth(&self) -> Result<QueueDepth> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(Error::Core(docfleet_core::Error::Backend {
                    service: "sqs",
                    operation: "GetQueueAttributes",
                    message: "connection refused".into(),
                    transient: true,
                }));
            }
            Ok(QueueDepth { visible: self.visible.load(Ordering::SeqCst), in_flight: 2, delayed: 3 })
        }
    }

    struct Harness {
        cache: Arc<DepthCache>,
        calls: Arc<AtomicU64>,
        failing: Arc<AtomicBool>,
        visible: Arc<AtomicU64>,
        metrics: Arc<Metrics>,
    }

    fn harness(interval_ms: u64, staleness_ms: u64, delay: Duration, inclusion: Inclusion) -> Harness {
        let (calls, failing, visible) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(10)));
        let fake = Fake { calls: calls.clone(), failing: failing.clone(), visible: visible.clone(), delay };
        let metrics = Arc::new(Metrics::new());
        let config = CacheConfig {
            interval: Duration::from_millis(interval_ms),
            max_staleness: Duration::from_millis(staleness_ms),
            timeout: Duration::from_secs(5),
            inclusion,
        };
        let cache = Arc::new(DepthCache::new(vec![("jobs".into(), Box::new(fake))], config, metrics.clone()));
        Harness { cache, calls, failing, visible, metrics }
    }

    const KEDA_LIKE: Inclusion = Inclusion { in_flight: true, delayed: false };

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_in_one_interval_make_one_call() {
        let h = harness(60_000, 120_000, Duration::from_millis(50), KEDA_LIKE);
        let reads = (0..200).map(|_| {
            let cache = h.cache.clone();
            tokio::spawn(async move { cache.get("jobs").await.map(|r| r.value) })
        });
        let values: Vec<u64> =
            futures::future::join_all(reads).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
        assert_eq!(h.calls.load(Ordering::SeqCst), 1);
        assert!(values.iter().all(|v| *v == 12), "visible 10 + in flight 2: {values:?}");
    }

    // The interval tests run on paused tokio time: `advance` moves the clock by exactly what it
    // says, so each boundary is checked to the millisecond, with no real-time margins.

    #[tokio::test(start_paused = true)]
    async fn a_new_interval_reads_again() {
        let h = harness(100, 10_000, Duration::ZERO, KEDA_LIKE);
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12);
        h.visible.store(20, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12, "cached 1 ms before the interval ends");
        assert_eq!(h.calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 22, "read again once the interval is over");
        assert_eq!(h.calls.load(Ordering::SeqCst), 2);
        let age = h.cache.peek("jobs").unwrap().age();
        assert_eq!(age, Duration::ZERO, "the reading is from now");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_serve_the_last_value_until_it_is_stale_then_error() {
        let h = harness(100, 400, Duration::ZERO, KEDA_LIKE);
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12);
        h.failing.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12, "last value while fresh");
        assert_eq!(h.calls.load(Ordering::SeqCst), 2, "the failing call was made");
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12);
        assert_eq!(h.calls.load(Ordering::SeqCst), 2, "not retried within the interval after the failure");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12, "retried (and failed) at 200 ms, still fresh");
        assert_eq!(h.calls.load(Ordering::SeqCst), 3);
        // The reading is 200 ms old; the limit is 400 ms.
        tokio::time::advance(Duration::from_millis(199)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12, "399 ms old: still served");
        tokio::time::advance(Duration::from_millis(1)).await;
        let err = h.cache.get("jobs").await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("connection refused") && text.contains("0.4 s old"), "{text}");
        let text = h.metrics.encode();
        assert!(
            text.contains(
                r#"docfleet_scaler_sqs_errors_total{queue="jobs",operation="GetQueueAttributes",kind="transient"} 3"#
            ),
            "{text}"
        );
        h.failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12, "recovers on the next interval");
        assert_eq!(h.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn never_read_is_an_error_and_unknown_queues_are_named() {
        let h = harness(100, 400, Duration::ZERO, KEDA_LIKE);
        h.failing.store(true, Ordering::SeqCst);
        let err = h.cache.get("jobs").await.unwrap_err().to_string();
        assert!(err.contains("never read successfully"), "{err}");
        let err = h.cache.get("nope").await.unwrap_err();
        assert!(matches!(&err, Error::UnknownQueue { configured, .. } if configured == "jobs"), "{err}");
        assert!(!h.cache.all_read_once());
    }

    #[tokio::test]
    async fn inclusion_decides_what_counts() {
        let none = harness(100, 400, Duration::ZERO, Inclusion { in_flight: false, delayed: false });
        assert_eq!(none.cache.get("jobs").await.unwrap().value, 10);
        let all = harness(100, 400, Duration::ZERO, Inclusion { in_flight: true, delayed: true });
        let r = all.cache.get("jobs").await.unwrap();
        assert_eq!((r.value, r.depth.visible, r.depth.in_flight, r.depth.delayed), (15, 10, 2, 3));
        let text = all.metrics.encode();
        assert!(text.contains(r#"docfleet_scaler_queue_depth{queue="jobs"} 15"#), "{text}");
        assert!(text.contains(r#"docfleet_scaler_queue_messages{queue="jobs",state="delayed"} 3"#), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_arriving_during_a_slow_read_get_the_previous_value() {
        let h = harness(50, 10_000, Duration::from_millis(300), KEDA_LIKE);
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12);
        assert_eq!(tokio::time::Instant::now().elapsed(), Duration::ZERO);
        h.visible.store(30, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(60)).await;
        let slow = tokio::spawn({
            let cache = h.cache.clone();
            async move {
                let started = tokio::time::Instant::now();
                (cache.get("jobs").await.unwrap().value, started.elapsed())
            }
        });
        // Let the spawned read take the gate and start its 300 ms call.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(h.calls.load(Ordering::SeqCst), 2, "the slow read is under way");
        // Waiting for the read would have given 32, 250 ms from now.
        let before = tokio::time::Instant::now();
        assert_eq!(h.cache.get("jobs").await.unwrap().value, 12, "previous value, not queued behind the read");
        assert_eq!(before.elapsed(), Duration::ZERO, "answered at once");
        let (value, took) = slow.await.unwrap();
        assert_eq!((value, took), (32, Duration::from_millis(300)));
        assert_eq!(h.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn labels_of_names_and_urls() {
        assert_eq!(queue_label("docfleet-jobs"), "docfleet-jobs");
        assert_eq!(queue_label("https://sqs.eu-west-1.amazonaws.com/123456789012/docfleet-jobs"), "docfleet-jobs");
        assert_eq!(queue_label("http://127.0.0.1:4566/000000000000/q/"), "q");
    }
}
