//! `sleep`: a diagnostic pipeline, offered only with `worker.diagnostic_pipelines = true`.
//! It waits `params.ms` milliseconds (default 1000, at most one hour), then reports the document
//! like `inspect`. Heartbeat, drain and load tests use it to make jobs of a chosen length.

use std::time::Duration;

use async_trait::async_trait;
use docfleet_core::config::Limits;
use docfleet_core::{Error, Result};
use serde_json::{Map, Value};

use super::{Document, Pipeline, PipelineOutput, inspect};

pub struct Sleep {
    limits: Limits,
}

impl Sleep {
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

#[async_trait]
impl Pipeline for Sleep {
    fn name(&self) -> &'static str {
        "sleep"
    }

    async fn process(&self, doc: &Document, params: &Map<String, Value>) -> Result<PipelineOutput> {
        let ms = match params.get("ms") {
            None => 1000,
            Some(v) => v
                .as_u64()
                .filter(|ms| *ms <= 3_600_000)
                .ok_or_else(|| Error::InvalidJob(format!("params.ms must be 0–3600000 milliseconds, got {v}")))?,
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let mut result = inspect::inspect(&doc.bytes, &self.limits)?;
        result["slept_ms"] = ms.into();
        Ok(PipelineOutput { result, text: None, markdown: None })
    }
}
