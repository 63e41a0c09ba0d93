//! The `Queue` trait: what docfleet needs from SQS, implemented by SQS itself and by an embedded
//! on-disk queue with the same semantics (visibility timeout, receive count, dead-lettering).

use std::time::Duration;

use async_trait::async_trait;

use crate::{Error, Result};

pub mod local;
pub mod sqs;

pub use local::LocalQueue;
pub use sqs::SqsQueue;

/// SQS's limit on entries per batch call.
pub const MAX_BATCH: usize = 10;

/// A received message.
#[derive(Debug, Clone)]
pub struct Message {
    pub message_id: String,
    /// Handle for delete / change-visibility of this receipt.
    pub receipt_handle: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// Queue depth as SQS reports it (approximate for SQS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted or released.
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// One entry of a batch call that failed; `index` is its position in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure {
    pub index: usize,
    pub code: String,
    pub message: String,
}

/// What a redrive moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveReport {
    /// The queue service moved the messages itself (SQS StartMessageMoveTask); `status` is the
    /// task's final (or, after the wait limit, current) status.
    MoveTask { task_handle: String, moved: u64, status: String },
    /// docfleet moved this many messages (receive → send → delete).
    Moved(u64),
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// A name for logs and status output.
    fn name(&self) -> &str;

    /// Receive up to `max` (≤ 10) messages, waiting up to `wait` for the first one, hiding them
    /// for `visibility`.
    async fn receive(&self, max: u32, wait: Duration, visibility: Duration) -> Result<Vec<Message>>;

    /// Delete messages by receipt handle; returns the entries that failed.
    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<BatchFailure>>;

    /// Change the visibility of received messages; returns the entries that failed.
    async fn change_visibility_batch(&self, entries: &[(String, Duration)]) -> Result<Vec<BatchFailure>>;

    /// Send message bodies, in batches of ten; returns the entries that failed.
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<BatchFailure>>;

    /// Current depth.
    async fn depth(&self) -> Result<QueueDepth>;

    /// The queue's ARN where the service has one (SQS).
    async fn arn(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Receives a message gets before the queue dead-letters it (the redrive policy's
    /// `maxReceiveCount`); `None` when the queue has no redrive policy.
    async fn max_receive_count(&self) -> Result<Option<u32>> {
        Ok(None)
    }

    /// Move every message of this queue (a DLQ) to `destination`.
    ///
    /// The default receives, sends and deletes in batches; SQS first tries StartMessageMoveTask.
    async fn redrive_to(&self, destination: &dyn Queue) -> Result<RedriveReport> {
        redrive_by_copy(self, destination).await
    }
}

/// `maxReceiveCount` of an SQS `RedrivePolicy` attribute (a JSON document; the count is a number
/// or a string of one).
pub fn redrive_max_receive_count(policy: &str) -> Result<u32> {
    let value: serde_json::Value = serde_json::from_str(policy)
        .map_err(|e| Error::Config(format!("the queue's RedrivePolicy is not JSON ({e}): {policy}")))?;
    let count = &value["maxReceiveCount"];
    count
        .as_u64()
        .or_else(|| count.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::Config(format!("the queue's RedrivePolicy has no maxReceiveCount: {policy}")))
}

/// Move every message of `source` to `destination` by receive → send → delete, in batches.
/// A message whose send fails stays in `source`.
pub async fn redrive_by_copy<Q: Queue + ?Sized>(source: &Q, destination: &dyn Queue) -> Result<RedriveReport> {
    let mut moved = 0u64;
    loop {
        let batch = source.receive(MAX_BATCH as u32, Duration::ZERO, Duration::from_secs(60)).await?;
        if batch.is_empty() {
            return Ok(RedriveReport::Moved(moved));
        }
        let bodies: Vec<String> = batch.iter().map(|m| m.body.clone()).collect();
        let failed = destination.send_batch(&bodies).await?;
        let sent: Vec<String> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| !failed.iter().any(|f| f.index == *i))
            .map(|(_, m)| m.receipt_handle.clone())
            .collect();
        if let Some(f) = failed.first() {
            tracing::warn!(code = %f.code, message = %f.message, "redrive: send failed, message left in place");
        }
        source.delete_batch(&sent).await?;
        moved += sent.len() as u64;
        if !failed.is_empty() {
            return Ok(RedriveReport::Moved(moved));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policy_max_receive_count_as_number_or_string() {
        let arn = "arn:aws:sqs:us-east-1:000000000000:jobs-dlq";
        let number = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#);
        let string = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"3"}}"#);
        assert_eq!(redrive_max_receive_count(&number).unwrap(), 5);
        assert_eq!(redrive_max_receive_count(&string).unwrap(), 3);
        assert!(redrive_max_receive_count(r#"{"deadLetterTargetArn":"x"}"#).is_err());
        assert!(redrive_max_receive_count("not json").is_err());
    }
}
