//! `[queue]`: the job queue and its dead-letter queue.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Fail;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueBackend {
    /// Amazon SQS (or LocalStack) through aws-sdk-sqs.
    Sqs,
    /// The embedded on-disk queue (SQLite) for the `local-dev` profile.
    Local,
}

/// The job queue and its dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// `sqs` or `local`.
    pub backend: QueueBackend,
    /// Job queue name (resolved with GetQueueUrl when `url` is unset).
    pub name: String,
    /// Job queue URL; wins over `name`.
    pub url: Option<String>,
    /// Dead-letter queue name.
    pub dlq_name: String,
    /// Dead-letter queue URL; wins over `dlq_name`.
    pub dlq_url: Option<String>,
    /// Receives after which a message moves to the DLQ (the local queue applies it itself;
    /// for SQS it is the redrive policy that `localstack/init` and deploy/ create).
    pub max_receive_count: u32,
    /// Database file of the embedded queue.
    pub local_path: PathBuf,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Local,
            name: "docfleet-jobs".into(),
            url: None,
            dlq_name: "docfleet-jobs-dlq".into(),
            dlq_url: None,
            max_receive_count: 5,
            local_path: PathBuf::from(".docfleet/queue.sqlite3"),
        }
    }
}

impl QueueSettings {
    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if self.max_receive_count == 0 {
            return fail("queue.max_receive_count", "must be at least 1".into());
        }
        Ok(())
    }
}
