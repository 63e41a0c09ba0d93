//! Build the queue, dead-letter queue and store that a configuration describes.

use std::sync::Arc;

use crate::Result;
use crate::config::{QueueBackend, Settings, StoreBackend};
use crate::queue::local::DeadLetter;
use crate::queue::{LocalQueue, Queue, SqsQueue};
use crate::store::{LocalStore, S3Store, Store};

/// The backends of one configuration.
#[derive(Clone)]
pub struct Backends {
    pub queue: Arc<dyn Queue>,
    pub dlq: Arc<dyn Queue>,
    pub store: Arc<dyn Store>,
}

impl Backends {
    /// Connect to what `settings` names. SQS queue URLs are resolved here, so a missing queue
    /// fails at start-up rather than at the first receive.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let needs_aws = settings.queue.backend == QueueBackend::Sqs || settings.store.backend == StoreBackend::S3;
        let sdk = if needs_aws { Some(crate::aws::sdk_config(&settings.aws).await) } else { None };

        let (queue, dlq): (Arc<dyn Queue>, Arc<dyn Queue>) = match settings.queue.backend {
            QueueBackend::Sqs => {
                let client = aws_sdk_sqs::Client::new(sdk.as_ref().expect("sdk config"));
                let q = settings.queue.clone();
                let queue = SqsQueue::connect(client.clone(), q.url.as_deref(), &q.name).await?;
                let dlq = SqsQueue::connect(client, q.dlq_url.as_deref(), &q.dlq_name).await?;
                (Arc::new(queue), Arc::new(dlq))
            }
            QueueBackend::Local => {
                let q = &settings.queue;
                let dead_letter = DeadLetter { queue: q.dlq_name.clone(), max_receive_count: q.max_receive_count };
                let queue = LocalQueue::open(&q.local_path, &q.name, Some(dead_letter))?;
                let dlq = queue.sibling(&q.dlq_name, None);
                (Arc::new(queue), Arc::new(dlq))
            }
        };
        let s = &settings.store;
        let store: Arc<dyn Store> = match s.backend {
            StoreBackend::S3 => Arc::new(S3Store::new(
                sdk.as_ref().expect("sdk config"),
                settings.aws.force_path_style,
                s.multipart_threshold_bytes,
                s.multipart_part_bytes,
            )),
            StoreBackend::Local => Arc::new(LocalStore::new(s.local_root.clone())),
        };
        Ok(Self { queue, dlq, store })
    }
}
