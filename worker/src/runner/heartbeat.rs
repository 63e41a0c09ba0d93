//! The heartbeat: extends the visibility of every held message before it expires.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Worker;

/// Every `heartbeat_interval_seconds` (default a third of the visibility timeout), extend the
/// visibility of every held message back to the full timeout, ten per call.
pub(super) async fn run_heartbeat(worker: Worker, stop: CancellationToken) {
    let s = &worker.inner.settings.worker;
    let visibility = Duration::from_secs(s.visibility_timeout_seconds as u64);
    let interval = match s.heartbeat_interval_seconds {
        0 => (visibility / 3).max(Duration::from_secs(1)),
        n => Duration::from_secs(n as u64),
    };
    let metrics = &worker.inner.metrics;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            _ = stop.cancelled() => return,
        }
        let receipts: Vec<String> = worker.inner.held.lock().expect("held lock").keys().cloned().collect();
        for chunk in receipts.chunks(docfleet_core::queue::MAX_BATCH) {
            let entries: Vec<(String, Duration)> = chunk.iter().map(|r| (r.clone(), visibility)).collect();
            worker.inner.stats.heartbeat_calls.fetch_add(1, Ordering::Relaxed);
            match worker.inner.backends.queue.change_visibility_batch(&entries).await {
                Ok(failed) => {
                    metrics.heartbeat_extensions.inc_by((entries.len() - failed.len()) as u64);
                    // A message finished between the snapshot and the call has an invalid receipt
                    // now; only failures for messages still held matter.
                    let held = worker.inner.held.lock().expect("held lock");
                    for f in failed.iter().filter(|f| held.contains_key(&entries[f.index].0)) {
                        metrics.heartbeat_failures.inc();
                        warn!(message_id = held.get(&entries[f.index].0).map(String::as_str), code = %f.code, "visibility extension refused");
                    }
                }
                Err(e) => {
                    metrics.heartbeat_failures.inc_by(entries.len() as u64);
                    warn!(error = %e, count = entries.len(), "visibility extension failed; retrying next beat");
                }
            }
        }
        debug!(held = receipts.len(), "heartbeat");
    }
}
