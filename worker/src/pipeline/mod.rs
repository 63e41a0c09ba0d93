//! Pipelines turn one input document into a result. Each job names its pipeline; the worker
//! looks it up here.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use docfleet_core::job::ObjectRef;
use docfleet_core::{Error, Result, Settings};
use serde_json::{Map, Value};

pub mod inspect;
pub mod sleep;

/// An input document, fully read.
#[derive(Debug, Clone)]
pub struct Document {
    pub input: ObjectRef,
    pub bytes: Bytes,
}

/// What a pipeline produced for one document.
#[derive(Debug, Clone)]
pub struct PipelineOutput {
    /// The pipeline-specific result, stored as `output` in the result record.
    pub result: Value,
    /// An optional plain-text rendition, stored beside the result.
    pub text: Option<String>,
}

#[async_trait]
pub trait Pipeline: Send + Sync {
    /// The name jobs use to select this pipeline.
    fn name(&self) -> &'static str;

    /// Process one document. Errors that retrying cannot fix (corrupt input, limits) must be
    /// returned as non-transient [`Error`]s so the job is not retried.
    async fn process(&self, doc: &Document, params: &Map<String, Value>) -> Result<PipelineOutput>;
}

/// The pipelines a worker can run, by name.
#[derive(Clone, Default)]
pub struct Pipelines {
    by_name: BTreeMap<&'static str, Arc<dyn Pipeline>>,
}

impl Pipelines {
    /// Every pipeline built into this worker, configured from `settings`.
    pub fn builtin(settings: &Settings) -> Self {
        let mut p = Self::default();
        p.register(Arc::new(inspect::Inspect::new(settings.limits.clone())));
        if settings.worker.diagnostic_pipelines {
            p.register(Arc::new(sleep::Sleep::new(settings.limits.clone())));
        }
        p
    }

    pub fn register(&mut self, pipeline: Arc<dyn Pipeline>) {
        self.by_name.insert(pipeline.name(), pipeline);
    }

    /// The pipeline called `name`, or an error listing the available ones.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Pipeline>> {
        self.by_name.get(name).cloned().ok_or_else(|| {
            Error::InvalidJob(format!("unknown pipeline `{name}` (available: {})", self.names().join(", ")))
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}
