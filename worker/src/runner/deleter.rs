//! The batching deleter: receipts of finished messages go out ten per `DeleteMessageBatch` call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::Worker;
use super::backoff::Backoff;

impl Worker {
    /// Hand a receipt to the batching deleter.
    pub(super) async fn queue_delete(&self, receipt_handle: String, delete_tx: &mpsc::Sender<String>) {
        self.inner.pending_deletes.fetch_add(1, Ordering::AcqRel);
        if delete_tx.send(receipt_handle).await.is_err() {
            self.inner.pending_deletes.fetch_sub(1, Ordering::AcqRel);
            error!("deleter stopped before the message was deleted; it will be redelivered");
        }
    }
}

/// The next batch of receipts to delete: up to `max` of them, sent as soon as `max` are there or
/// `flush_after` has passed since the first one arrived; what is left when the channel closes.
/// `None` once the channel is closed and empty.
async fn next_delete_batch(rx: &mut mpsc::Receiver<String>, max: usize, flush_after: Duration) -> Option<Vec<String>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + flush_after;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => batch.push(r),
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}

/// Batches deletes: up to ten receipts per call, the first waiting at most `delete_flush_ms`.
/// A failed call is retried with backoff; entries SQS rejects are logged, never dropped silently.
pub(super) async fn run_deleter(worker: Worker, mut rx: mpsc::Receiver<String>) {
    let flush_after = Duration::from_millis(worker.inner.settings.worker.delete_flush_ms);
    let queue = worker.inner.backends.queue.clone();
    let stats = &worker.inner.stats;
    while let Some(batch) = next_delete_batch(&mut rx, docfleet_core::queue::MAX_BATCH, flush_after).await {
        worker.inner.metrics.delete_batch.observe(batch.len() as f64);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 1..=8 {
            match queue.delete_batch(&batch).await {
                Ok(failed) => {
                    for f in &failed {
                        stats.delete_failures.fetch_add(1, Ordering::Relaxed);
                        worker.inner.metrics.delete_failures.inc();
                        warn!(code = %f.code, message = %f.message, "delete rejected; the message may be redelivered (results are idempotent)");
                    }
                    break;
                }
                Err(e) if attempt < 8 => {
                    let d = backoff.next();
                    warn!(error = %e, attempt, retry_in_ms = d.as_millis() as u64, "delete batch failed; retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) => {
                    stats.delete_failures.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    worker.inner.metrics.delete_failures.inc_by(batch.len() as u64);
                    error!(error = %e, count = batch.len(), "delete batch failed after retries; messages will be redelivered");
                }
            }
        }
        worker.inner.pending_deletes.fetch_sub(batch.len() as u64, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    #[tokio::test(start_paused = true)]
    async fn deletes_wait_for_company_up_to_the_flush_time() {
        let (tx, mut rx) = mpsc::channel(64);
        let flush = Duration::from_millis(50);
        // A steady trickle (one receipt per 10 ms) is sent in groups, not one call per receipt.
        let sender = tokio::spawn(async move {
            for i in 0..12 {
                tx.send(format!("r{i}")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let first = next_delete_batch(&mut rx, 10, flush).await.unwrap();
        // The first receipt waited 50 ms from its arrival: r0..r4 (r5 comes at exactly 50 ms).
        assert!((5..=6).contains(&first.len()), "{first:?}");
        assert_eq!(first[0], "r0");
        let mut all = first;
        while let Some(batch) = next_delete_batch(&mut rx, 10, flush).await {
            assert!(!batch.is_empty() && batch.len() <= 10, "{batch:?}");
            all.extend(batch);
        }
        sender.await.unwrap();
        // Closed channel: everything came out once, in order.
        assert_eq!(all, (0..12).map(|i| format!("r{i}")).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_goes_out_ten_at_a_time_without_waiting() {
        let (tx, mut rx) = mpsc::channel(64);
        for i in 0..25 {
            tx.send(format!("r{i}")).await.unwrap();
        }
        drop(tx);
        let started = tokio::time::Instant::now();
        let mut sizes = Vec::new();
        while let Some(batch) = next_delete_batch(&mut rx, 10, Duration::from_secs(60)).await {
            sizes.push(batch.len());
        }
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(started.elapsed(), Duration::ZERO, "a full or closed batch does not wait for the flush time");
    }
}
