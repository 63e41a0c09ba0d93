//! `Queue` on Amazon SQS (or LocalStack) via aws-sdk-sqs.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{
    BatchFailure, MAX_BATCH, Message, Queue, QueueDepth, RedriveReport, redrive_by_copy, redrive_max_receive_count,
};
use crate::aws::{backend_error, error_code};
use crate::{Error, Result};

/// One SQS queue.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
    name: String,
}

impl SqsQueue {
    /// Use `url` when given, otherwise resolve `name` with GetQueueUrl.
    pub async fn connect(client: Client, url: Option<&str>, name: &str) -> Result<Self> {
        let url = match url {
            Some(url) => url.to_owned(),
            None => client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| backend_error("sqs", "GetQueueUrl", e))?
                .queue_url
                .ok_or_else(|| Error::Config(format!("SQS returned no URL for queue `{name}`")))?,
        };
        let name = url.rsplit('/').next().unwrap_or(name).to_owned();
        Ok(Self { client, url, name })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn queue_arn(&self) -> Result<String> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| backend_error("sqs", "GetQueueAttributes", e))?;
        out.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)).ok_or_else(|| Error::Backend {
            service: "sqs",
            operation: "GetQueueAttributes",
            message: "no QueueArn attribute".into(),
            transient: false,
        })
    }
}

fn failures(failed: Vec<aws_sdk_sqs::types::BatchResultErrorEntry>, offset: usize) -> Vec<BatchFailure> {
    failed
        .into_iter()
        .map(|f| BatchFailure {
            index: offset + f.id.parse::<usize>().unwrap_or(usize::MAX - offset),
            code: f.code,
            message: f.message.unwrap_or_default(),
        })
        .collect()
}

fn seconds(d: Duration) -> i32 {
    d.as_secs().min(i32::MAX as u64) as i32
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn max_receive_count(&self) -> Result<Option<u32>> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| backend_error("sqs", "GetQueueAttributes", e))?;
        match out.attributes.and_then(|mut a| a.remove(&QueueAttributeName::RedrivePolicy)) {
            Some(policy) if !policy.trim().is_empty() => redrive_max_receive_count(&policy).map(Some),
            _ => Ok(None),
        }
    }

    async fn receive(&self, max: u32, wait: Duration, visibility: Duration) -> Result<Vec<Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH as u32) as i32)
            .wait_time_seconds(seconds(wait).min(20))
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| backend_error("sqs", "ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Message {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<Vec<BatchFailure>> {
        let mut failed = Vec::new();
        for (chunk_no, chunk) in receipt_handles.chunks(MAX_BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(r).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::InvalidJob(e.to_string()))?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| backend_error("sqs", "DeleteMessageBatch", e))?;
            failed.extend(failures(out.failed, chunk_no * MAX_BATCH));
        }
        Ok(failed)
    }

    async fn change_visibility_batch(&self, entries: &[(String, Duration)]) -> Result<Vec<BatchFailure>> {
        let mut failed = Vec::new();
        for (chunk_no, chunk) in entries.chunks(MAX_BATCH).enumerate() {
            let reqs = chunk
                .iter()
                .enumerate()
                .map(|(i, (r, d))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(seconds(*d))
                        .build()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::InvalidJob(e.to_string()))?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(reqs))
                .send()
                .await
                .map_err(|e| backend_error("sqs", "ChangeMessageVisibilityBatch", e))?;
            failed.extend(failures(out.failed, chunk_no * MAX_BATCH));
        }
        Ok(failed)
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<BatchFailure>> {
        let mut failed = Vec::new();
        for (chunk_no, chunk) in bodies.chunks(MAX_BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(b).build())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::InvalidJob(e.to_string()))?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| backend_error("sqs", "SendMessageBatch", e))?;
            failed.extend(failures(out.failed, chunk_no * MAX_BATCH));
        }
        Ok(failed)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| backend_error("sqs", "GetQueueAttributes", e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: QueueAttributeName| attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    async fn arn(&self) -> Result<Option<String>> {
        self.queue_arn().await.map(Some)
    }

    /// StartMessageMoveTask to `destination` (waiting up to ten minutes for it to finish); a copy
    /// loop where the service does not offer it.
    async fn redrive_to(&self, destination: &dyn Queue) -> Result<RedriveReport> {
        let depth = self.depth().await?;
        if depth.visible == 0 {
            return Ok(RedriveReport::Moved(0));
        }
        let arn = self.queue_arn().await?;
        // Messages docfleet sent to the DLQ itself have no "source queue", so name the destination.
        let destination_arn = destination.arn().await?;
        let started =
            self.client.start_message_move_task().source_arn(&arn).set_destination_arn(destination_arn).send().await;
        match started {
            Ok(out) => {
                let task_handle = out.task_handle.unwrap_or_default();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
                loop {
                    let tasks = self
                        .client
                        .list_message_move_tasks()
                        .source_arn(&arn)
                        .send()
                        .await
                        .map_err(|e| backend_error("sqs", "ListMessageMoveTasks", e))?;
                    // Results are newest first; SQS reports a task's handle only while it runs.
                    let task = tasks.results.unwrap_or_default().into_iter().next();
                    let status = task.as_ref().and_then(|t| t.status.clone()).unwrap_or_else(|| "UNKNOWN".into());
                    let moved =
                        task.as_ref().map(|t| t.approximate_number_of_messages_moved.max(0) as u64).unwrap_or(0);
                    if status != "RUNNING" || tokio::time::Instant::now() >= deadline {
                        if status == "FAILED" {
                            let reason = task.and_then(|t| t.failure_reason).unwrap_or_default();
                            return Err(Error::Backend {
                                service: "sqs",
                                operation: "StartMessageMoveTask",
                                message: reason,
                                transient: false,
                            });
                        }
                        return Ok(RedriveReport::MoveTask { task_handle, moved, status });
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(e) => {
                tracing::info!(
                    code = error_code(&e).as_deref().unwrap_or("none"),
                    "StartMessageMoveTask unavailable, moving messages by copy"
                );
                redrive_by_copy(self, destination).await
            }
        }
    }
}
