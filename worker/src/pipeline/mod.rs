//! Pipelines turn one input document into a result. Each job names its pipeline; the worker
//! looks it up here.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use docfleet_core::job::ObjectRef;
use docfleet_core::{Error, Result, Settings};
use serde_json::{Map, Value};

use crate::document::Rasterized;

pub mod inspect;
pub mod ocr;
pub mod sleep;
pub mod vlm;

/// An input document, fully read.
#[derive(Debug, Clone)]
pub struct Document {
    pub input: ObjectRef,
    pub bytes: Bytes,
    /// The document already rasterised (at the pipeline's [`Pipeline::rasterizes_at`]) while it
    /// waited for a slot; `None` when the pipeline decodes it itself.
    pub pages: Option<Arc<Rasterized>>,
}

impl Document {
    pub fn new(input: ObjectRef, bytes: Bytes) -> Self {
        Self { input, bytes, pages: None }
    }
}

/// What a pipeline produced for one document.
#[derive(Debug, Clone)]
pub struct PipelineOutput {
    /// The pipeline-specific result, stored as `output` in the result record.
    pub result: Value,
    /// An optional plain-text rendition, stored beside the result (`.txt`).
    pub text: Option<String>,
    /// An optional Markdown rendition (a document VLM's pages as one document), stored beside
    /// the result (`.md`).
    pub markdown: Option<String>,
}

#[async_trait]
pub trait Pipeline: Send + Sync {
    /// The name jobs use to select this pipeline.
    fn name(&self) -> &'static str;

    /// The PDF resolution this pipeline rasterises documents at, if it reads them as RGB pages
    /// ([`crate::document::rasterize`]). The worker then rasterises a document ahead of its slot,
    /// within the prefetch budget, and hands the pages over in [`Document::pages`], so the models
    /// never wait on decoding.
    fn rasterizes_at(&self) -> Option<f32> {
        None
    }

    /// Whether the pipeline can take documents now (a model server it depends on answers).
    /// The worker receives no jobs while a pipeline is not ready, and releases the messages of
    /// documents that fail transiently meanwhile at once.
    fn ready(&self) -> bool {
        true
    }

    /// Process one document. Errors that retrying cannot fix (corrupt input, limits) must be
    /// returned as non-transient [`Error`]s so the job is not retried.
    async fn process(&self, doc: &Document, params: &Map<String, Value>) -> Result<PipelineOutput>;
}

/// The pipelines a worker can run, by name.
#[derive(Clone, Default)]
pub struct Pipelines {
    by_name: BTreeMap<&'static str, Arc<dyn Pipeline>>,
    /// Pipelines that could not be loaded (models missing, ...), with the reason.
    unavailable: BTreeMap<&'static str, String>,
}

impl Pipelines {
    /// Every pipeline built into this worker, configured from `settings`.
    pub fn builtin(settings: &Settings) -> Self {
        let mut p = Self::default();
        p.register(Arc::new(inspect::Inspect::new(settings.limits.clone())));
        if settings.ocr.enabled {
            match ocr::OcrEngine::load(settings) {
                Ok(engine) => p.register(Arc::new(ocr::Ocr::new(Arc::new(engine)))),
                Err(e) => {
                    tracing::warn!(error = %e, "the `ocr` pipeline is not available");
                    p.unavailable.insert("ocr", e.to_string());
                }
            }
        }
        // A worker without a VLM model still starts; jobs naming `vlm` then get an error record.
        if vlm::configured(settings) {
            match vlm::Vlm::load(settings) {
                Ok(pipeline) => p.register(Arc::new(pipeline)),
                Err(e) => {
                    tracing::warn!(error = %e, "the `vlm` pipeline is not available");
                    p.unavailable.insert("vlm", e.to_string());
                }
            }
        }
        if settings.worker.diagnostic_pipelines {
            p.register(Arc::new(sleep::Sleep::new(settings.limits.clone())));
        }
        p
    }

    pub fn register(&mut self, pipeline: Arc<dyn Pipeline>) {
        self.by_name.insert(pipeline.name(), pipeline);
    }

    /// The pipeline called `name`, or an error listing the available ones (for a built-in
    /// pipeline that failed to load: why, and how to fix it).
    pub fn get(&self, name: &str) -> Result<Arc<dyn Pipeline>> {
        if let Some(why) = self.unavailable.get(name) {
            return Err(Error::Model(format!(
                "pipeline `{name}` is not available: {}",
                why.strip_prefix("model error: ").unwrap_or(why)
            )));
        }
        self.by_name.get(name).cloned().ok_or_else(|| {
            Error::InvalidJob(format!("unknown pipeline `{name}` (available: {})", self.names().join(", ")))
        })
    }

    /// True when every pipeline is [ready](Pipeline::ready).
    pub fn ready(&self) -> bool {
        self.by_name.values().all(|p| p.ready())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}
