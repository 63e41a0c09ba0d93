//! `vlm`: image-to-text with a vision-encoder-decoder transformer (Donut, TrOCR, Nougat-like)
//! exported to ONNX by optimum. Each page (PDF pages rasterised at `vlm.pdf_dpi`) is
//! preprocessed as the model's `transformers` image processor would ([`preprocess`]), pages are
//! encoded and decoded greedily with a KV cache in batches of `vlm.batch_size` ([`generate`]),
//! and the generated ids become text through the model's own tokenizer ([`tokenizer`]). The
//! result lists per page the text, the ids, why generation stopped and where the time went.
//!
//! Other families share that engine or the decoder-only one ([`idefics3`]) and add only their
//! preprocessing, prompts and positions: Florence-2 ([`florence2`], on this encoder-decoder
//! loop), Idefics3 and Qwen2-VL ([`qwen2vl`], on the decoder-only loop); `vlm.engine = "openai"`
//! sends pages to a server instead ([`openai`]).

pub mod batching;
pub mod cache;
pub mod config;
pub mod florence2;
pub mod generate;
pub mod idefics3;
pub mod openai;
pub mod preprocess;
pub mod qwen2vl;
pub mod resample;
pub mod result;
pub mod session;
pub mod tensors;
#[cfg(test)]
mod tests;
pub mod tokenizer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use docfleet_core::config::{ExecutionProvider, Limits, VlmDecoderLayout, VlmSettings};
use docfleet_core::models::{self, Snapshot};
use docfleet_core::{Error, Result, Settings};
use image::RgbImage;
use serde_json::{Map, Value, json};

use self::config::{GenerationConfig, ImageProcessorConfig, ModelConfig};
use self::generate::{Generated, Rules, Times};
use self::session::{ENCODER_FILE, Layout, Sessions};
use self::tokenizer::Tokenizer;
use super::{Document, Pipeline, PipelineOutput};
use crate::document::{Rasterized, given_or_rasterize};
use crate::runtime::{Runtime, SETUP_HINT};

/// Files every export needs beside the ONNX ones (`generation_config.json` is optional).
const REQUIRED_FILES: [&str; 3] = ["config.json", "preprocessor_config.json", "tokenizer.json"];
const GENERATION_FILE: &str = "generation_config.json";
/// Job parameters the pipeline reads.
const PARAMS: [&str; 2] = ["prompt", "max_new_tokens"];

/// The loaded model, shared by every job.
pub struct VlmEngine {
    runtime: Arc<Runtime>,
    sessions: Sessions,
    tokenizer: Tokenizer,
    model: ModelConfig,
    generation: GenerationConfig,
    rules: Rules,
    processor: ImageProcessorConfig,
    settings: VlmSettings,
    limits: Limits,
    snapshot: Snapshot,
    /// Folder of the ONNX files inside the snapshot (`""` or `onnx/`).
    onnx_dir: String,
    /// Pages of all jobs in flight, generated together (`vlm.batch_across_jobs`).
    across_jobs: Option<batching::GenerationQueue>,
}

/// One page's generation.
#[derive(Debug, Clone)]
pub struct PageText {
    pub generated: Generated,
    /// The whole decoder sequence (prompt and generated ids), special tokens skipped: what
    /// `processor.batch_decode(model.generate(...), skip_special_tokens=True)` gives in Python.
    pub text: String,
    /// The generated ids alone, special tokens skipped (the prompt's own words left out).
    pub generated_text: String,
    /// The whole sequence with special tokens, for post-processing that reads them (Donut's
    /// `token2json`).
    pub raw_text: String,
    pub preprocess: Duration,
    /// Index and size of the batch the page ran in, and that batch's times.
    pub batch: usize,
    pub batch_size: usize,
    pub times: Times,
}

/// True when `models.vlm` names a model (a repo or a directory), or `vlm.engine = "openai"`.
pub fn configured(settings: &Settings) -> bool {
    if settings.vlm.engine == docfleet_core::config::VlmEngineKind::Openai {
        return true;
    }
    let repo = &settings.models.vlm;
    !repo.repo_id.is_empty() || repo.dir.is_some()
}

impl VlmEngine {
    /// Load the export named by `models.vlm` into the shared runtime. Fails with a message naming
    /// what is missing and how to get it.
    pub fn load(settings: &Settings) -> Result<Self> {
        let repo = &settings.models.vlm;
        let snap = models::resolve(&settings.models, "vlm", repo)?;
        // transformers.js-style repos keep the ONNX files in onnx/, the JSON files at the top.
        let onnx_dir = if !snap.file(ENCODER_FILE).is_file() && snap.file("onnx").join(ENCODER_FILE).is_file() {
            "onnx/"
        } else {
            ""
        };
        let layout = match settings.vlm.decoder {
            VlmDecoderLayout::Merged => Layout::Merged,
            VlmDecoderLayout::Split => Layout::Split,
            VlmDecoderLayout::Auto if snap.file(&format!("{onnx_dir}decoder_model_merged.onnx")).is_file() => {
                Layout::Merged
            }
            VlmDecoderLayout::Auto => Layout::Split,
        };
        let mut needed = repo.clone();
        for file in REQUIRED_FILES.iter().chain([&ENCODER_FILE]).chain(layout.decoder_files()) {
            let file = if file.ends_with(".onnx") { format!("{onnx_dir}{file}") } else { file.to_string() };
            if !needed.files.contains(&file) {
                needed.files.push(file);
            }
        }
        let snap = models::locate(&settings.models, "vlm", &needed)?;
        let runtime = Runtime::shared(settings)?;
        Self::from_snapshot(runtime, snap, onnx_dir, layout, settings)
    }

    fn from_snapshot(
        runtime: Arc<Runtime>,
        snapshot: Snapshot,
        onnx_dir: &str,
        layout: Layout,
        settings: &Settings,
    ) -> Result<Self> {
        let model_path = snapshot.file("config.json");
        let model = ModelConfig::load(&model_path)?;
        let gen_path = snapshot.file(GENERATION_FILE);
        let generation = GenerationConfig::load(gen_path.is_file().then_some(gen_path.as_path()), &model, &model_path)?;
        if let Some(what) = &generation.not_greedy {
            tracing::warn!(model = %snapshot.id(), setting = %what, "the generation config asks for more than greedy search; the vlm pipeline decodes greedily");
        }
        let processor = ImageProcessorConfig::load(&snapshot.file("preprocessor_config.json"))?;
        let tokenizer = Tokenizer::load(&snapshot.file("tokenizer.json"))?;
        let onnx: PathBuf = snapshot.file(onnx_dir);
        let mut sessions = Sessions::load(&runtime, &onnx, layout, &snapshot.id())?;
        if cache::wanted(settings.vlm.cache_on_device, &runtime) {
            sessions.decoders.keep_cache_on_device(&runtime)?;
        }
        if generation.eos_token_ids.is_empty() {
            tracing::warn!(model = %snapshot.id(), "no eos_token_id: every page runs to the token limit");
        }
        let rules = Rules::from_config(&generation);
        let v = &settings.vlm;
        let across_jobs = v
            .batch_across_jobs
            .unwrap_or(runtime.provider() != ExecutionProvider::Cpu)
            .then(|| batching::GenerationQueue::new(v.batch_size, Duration::from_millis(v.batch_max_wait_ms)));
        tracing::info!(
            model = %snapshot.id(), layout = layout.name(), encoder = %model.encoder_type, decoder = %model.decoder_type,
            size = format!("{}x{}", processor.width, processor.height), "vlm model loaded"
        );
        Ok(Self {
            runtime,
            sessions,
            tokenizer,
            model,
            generation,
            rules,
            processor,
            settings: settings.vlm.clone(),
            limits: settings.limits.clone(),
            snapshot,
            onnx_dir: onnx_dir.to_owned(),
            across_jobs,
        })
    }

    /// Model id, revision and export, for result records.
    pub fn model_info(&self) -> Value {
        json!({
            "id": self.snapshot.id(),
            "revision": self.snapshot.revision,
            "layout": self.sessions.decoders.layout.name(),
            "onnx_dir": self.onnx_dir,
            "encoder": self.model.encoder_type,
            "decoder": self.model.decoder_type,
            "input_size": [self.processor.width, self.processor.height],
            "runtime": self.runtime.describe(),
            "execution_provider": format!("{:?}", self.runtime.provider()).to_lowercase(),
            "cache": cache::location(self.sessions.decoders.cache_device.as_ref()),
        })
    }

    /// The decoder input for a task prompt (`None`: `vlm.prompt`, else just the start token).
    pub fn prompt_ids(&self, prompt: Option<&str>) -> Result<Vec<i64>> {
        let start = self.generation.decoder_start_token_id;
        let text = prompt.unwrap_or(&self.settings.prompt);
        let mut ids = if text.is_empty() { Vec::new() } else { self.tokenizer.encode_prompt(text)? };
        if ids.is_empty() || (!self.model.prompt_is_verbatim() && ids[0] != start) {
            ids.insert(0, start);
        }
        if let Some(max) = self.model.max_positions
            && ids.len() > max
        {
            return Err(Error::InvalidJob(format!(
                "the prompt is {} tokens, longer than the {max} positions the model's decoder takes",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// The token limit for a prompt: `requested`, else `vlm.max_new_tokens`, else the generation
    /// config's; never past the decoder's last position.
    pub fn token_limit(&self, prompt_len: usize, requested: Option<usize>) -> usize {
        let from_model =
            self.generation.max_new_tokens.unwrap_or(self.generation.max_length.saturating_sub(prompt_len));
        let mut limit = match (requested, self.settings.max_new_tokens) {
            (Some(n), _) => n,
            (None, 0) => from_model,
            (None, n) => n,
        };
        if let Some(max) = self.model.max_positions {
            // Generating token k feeds prompt_len + k - 1 tokens.
            limit = limit.min((max + 1).saturating_sub(prompt_len));
        }
        limit.max(1)
    }

    /// One page as the encoder's input (`3 × height × width`, channels first).
    pub fn pixel_values(&self, img: &RgbImage) -> Result<Vec<f32>> {
        preprocess::pixel_values(img, &self.processor)
    }

    /// Generate for pages, `vlm.batch_size` at a time: this job's pages alone, or with other
    /// jobs' pages when `vlm.batch_across_jobs` is on.
    pub fn read_pages(&self, pages: &[&RgbImage], prompt: &[i64], max_new_tokens: usize) -> Result<Vec<PageText>> {
        let Some(queue) = &self.across_jobs else {
            return self.read_pages_alone(pages, prompt, max_new_tokens);
        };
        let mut pixels = Vec::with_capacity(pages.len());
        let mut prep = Vec::with_capacity(pages.len());
        for (i, img) in pages.iter().enumerate() {
            let t = Instant::now();
            pixels.push(self.page_pixels(img, i)?);
            prep.push(t.elapsed());
        }
        let key = batching::Key { prompt: prompt.to_vec(), max_new_tokens };
        let run = |pages: &[&Vec<f32>], key: &batching::Key| {
            let px: Vec<f32> = pages.iter().flat_map(|p| p.iter().copied()).collect();
            self.generate(&px, pages.len(), &key.prompt, key.max_new_tokens)
        };
        let rows = queue.generate(&key, pixels, &run);
        batching::job_pages(rows, prep, |row, preprocess, batch| {
            self.page_text(row.generated, prompt, preprocess, batch, row.batch_size, row.times)
        })
    }

    /// How many generation batches ran across jobs, and how many of them merged pages.
    pub fn batch_stats(&self) -> Option<(u64, u64)> {
        self.across_jobs.as_ref().map(batching::GenerationQueue::stats)
    }

    fn page_pixels(&self, img: &RgbImage, index: usize) -> Result<Vec<f32>> {
        preprocess::pixel_values(img, &self.processor).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("page {}: {m}", index + 1)),
            other => other,
        })
    }

    fn page_text(
        &self,
        generated: Generated,
        prompt: &[i64],
        preprocess: Duration,
        batch: usize,
        batch_size: usize,
        times: Times,
    ) -> Result<PageText> {
        let mut sequence = prompt.to_vec();
        sequence.extend_from_slice(&generated.ids);
        Ok(PageText {
            text: self.tokenizer.decode(&sequence)?,
            generated_text: self.tokenizer.decode(&generated.ids)?,
            raw_text: self.tokenizer.decode_with_special(&sequence)?,
            generated,
            preprocess,
            batch,
            batch_size,
            times,
        })
    }

    fn read_pages_alone(&self, pages: &[&RgbImage], prompt: &[i64], max_new_tokens: usize) -> Result<Vec<PageText>> {
        let mut out = Vec::with_capacity(pages.len());
        for (b, chunk) in pages.chunks(self.settings.batch_size).enumerate() {
            let first_page = b * self.settings.batch_size;
            let mut pixels =
                Vec::with_capacity(chunk.len() * 3 * (self.processor.height * self.processor.width) as usize);
            let mut prep = Vec::with_capacity(chunk.len());
            for (i, img) in chunk.iter().enumerate() {
                let t = Instant::now();
                pixels.extend_from_slice(&self.page_pixels(img, first_page + i)?);
                prep.push(t.elapsed());
            }
            let (generated, times) = self.generate(&pixels, chunk.len(), prompt, max_new_tokens)?;
            for (g, preprocess) in generated.into_iter().zip(prep) {
                out.push(self.page_text(g, prompt, preprocess, b, chunk.len(), times)?);
            }
        }
        Ok(out)
    }

    /// Greedy generation on preprocessed images (`batch × 3 × height × width`).
    pub fn generate(
        &self,
        pixel_values: &[f32],
        batch: usize,
        prompt: &[i64],
        max_new_tokens: usize,
    ) -> Result<(Vec<Generated>, Times)> {
        self.generate_with(pixel_values, batch, prompt, max_new_tokens, &self.rules)
    }

    /// [`generate`](Self::generate) with other logits processors than the model's.
    pub fn generate_with(
        &self,
        pixel_values: &[f32],
        batch: usize,
        prompt: &[i64],
        max_new_tokens: usize,
        rules: &Rules,
    ) -> Result<(Vec<Generated>, Times)> {
        let shape = [3, self.processor.height as usize, self.processor.width as usize];
        generate::generate(&self.sessions, pixel_values, shape, batch, prompt, max_new_tokens, rules)
    }

    /// The resolution PDF pages are rendered at.
    pub fn pdf_dpi(&self) -> f32 {
        self.settings.pdf_dpi
    }

    /// Decode generated ids (special tokens skipped).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        self.tokenizer.decode(ids)
    }

    /// Read a whole document: the result record's `output` and the plain-text rendition.
    pub fn read_document(&self, bytes: &[u8], params: &Map<String, Value>) -> Result<(Value, String)> {
        self.read_rasterized(bytes, None, params)
    }

    /// Read a document, rasterised already (`pages`, at [`Self::pdf_dpi`]) or not.
    pub fn read_rasterized(
        &self,
        bytes: &[u8],
        pages: Option<&Rasterized>,
        params: &Map<String, Value>,
    ) -> Result<(Value, String)> {
        let started = Instant::now();
        let (prompt_text, requested) = job_params(params, self.settings.max_new_tokens_limit)?;
        let prompt = self.prompt_ids(prompt_text.as_deref())?;
        let limit = self.token_limit(prompt.len(), requested);
        let (raster, decode) = given_or_rasterize(pages, bytes, &self.limits, self.settings.pdf_dpi)?;
        let (format, pages) = (raster.0, raster.1.as_slice());
        let images: Vec<&RgbImage> = pages.iter().map(|p| &p.image).collect();
        let read = self.read_pages(&images, &prompt, limit)?;

        let mut record = result::Record::default();
        for (page, r) in pages.iter().zip(&read) {
            let page_record = result::PageRecord {
                text: &r.text,
                generated: &r.generated,
                preprocess: r.preprocess,
                batch: r.batch,
                batch_size: r.batch_size,
                times: &r.times,
            };
            let v = record.push(page, &page_record);
            v["generated_text"] = json!(r.generated_text);
            v["raw_text"] = json!(r.raw_text);
        }
        let text = record.text();
        let prompt = json!({"text": prompt_text.unwrap_or_else(|| self.settings.prompt.clone()), "token_ids": prompt});
        let generation =
            result::generation(Some(limit), self.settings.batch_size, self.across_jobs.is_some(), &self.generation);
        let output = record.finish(format, bytes.len(), prompt, generation, self.model_info(), decode, started);
        Ok((output, format!("{text}\n")))
    }
}

/// `params.prompt` and `params.max_new_tokens`, checked.
fn job_params(params: &Map<String, Value>, limit: usize) -> Result<(Option<String>, Option<usize>)> {
    if let Some(key) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(Error::InvalidJob(format!(
            "unknown parameter `{key}` for the vlm pipeline (accepted: {})",
            PARAMS.join(", ")
        )));
    }
    Ok((string_param(params, "prompt")?, max_new_tokens_param(params, limit)?))
}

/// `params.<key>`, a string or absent (or null).
pub(crate) fn string_param(params: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::InvalidJob(format!("params.{key} must be a string, got {other}"))),
    }
}

/// `params.max_new_tokens`: absent (or null), or a whole number from 1 to `limit`
/// (`vlm.max_new_tokens_limit`).
pub(crate) fn max_new_tokens_param(params: &Map<String, Value>, limit: usize) -> Result<Option<usize>> {
    match params.get("max_new_tokens") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= limit => Ok(Some(n as usize)),
            _ => Err(Error::InvalidJob(format!(
                "params.max_new_tokens must be a whole number from 1 to {limit} (vlm.max_new_tokens_limit), got {v}"
            ))),
        },
    }
}

/// The model families the pipeline knows, by `config.json`'s `model_type`.
pub const FAMILIES: [&str; 4] = [
    "vision-encoder-decoder (Donut, TrOCR, Nougat)",
    "idefics3 (granite-docling, SmolDocling, SmolVLM)",
    "qwen2_vl / qwen2_5_vl (Qwen2-VL, Qwen2.5-VL and fine-tunes)",
    "florence2 (Florence-2-base, Florence-2-large)",
];

/// The loaded model of one family.
enum Family {
    VisionEncoderDecoder(Arc<VlmEngine>),
    Idefics3(Arc<idefics3::Idefics3Engine>),
    /// Florence-2: encoder-decoder on the vision-encoder-decoder loop.
    Florence2(Arc<florence2::Florence2Engine>),
    /// Any model, on an OpenAI-compatible server (`vlm.engine = "openai"`).
    Openai(Arc<openai::OpenaiEngine>),
}

/// The `vlm` pipeline.
pub struct Vlm {
    family: Family,
}

/// The engine a model's `config.json` calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineKind {
    /// Not readable yet: the vision-encoder-decoder loader names what is missing.
    Unknown,
    VisionEncoderDecoder,
    DecoderOnly,
    Florence2,
}

/// Which family `models.vlm` is, from its `config.json`.
fn family_of(settings: &Settings) -> Result<EngineKind> {
    let Ok(snap) = models::resolve(&settings.models, "vlm", &settings.models.vlm) else {
        return Ok(EngineKind::Unknown);
    };
    let Ok(bytes) = std::fs::read(snap.file("config.json")) else { return Ok(EngineKind::Unknown) };
    let Ok(config) = serde_json::from_slice::<Value>(&bytes) else { return Ok(EngineKind::Unknown) };
    // The Qwen2-VL family runs on the Idefics3 decoder-only engine.
    if idefics3::is_idefics3(&config) || qwen2vl::is_qwen2vl(&config) {
        return Ok(EngineKind::DecoderOnly);
    }
    if florence2::is_florence2(&config) {
        return Ok(EngineKind::Florence2);
    }
    let is_ved =
        config.get("encoder").is_some_and(Value::is_object) && config.get("decoder").is_some_and(Value::is_object);
    if is_ved {
        return Ok(EngineKind::VisionEncoderDecoder);
    }
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("(none)");
    Err(Error::Model(format!(
        "{}: model_type `{model_type}` is not a model family the vlm pipeline knows (known: {})",
        snap.file("config.json").display(),
        FAMILIES.join("; ")
    )))
}

impl Vlm {
    pub fn new(engine: Arc<VlmEngine>) -> Self {
        Self { family: Family::VisionEncoderDecoder(engine) }
    }

    /// The vision-encoder-decoder engine, if that is the family loaded.
    pub fn vision_encoder_decoder(&self) -> Option<&Arc<VlmEngine>> {
        match &self.family {
            Family::VisionEncoderDecoder(e) => Some(e),
            _ => None,
        }
    }

    /// The Idefics3 engine, if that is the family loaded.
    pub fn idefics3(&self) -> Option<&Arc<idefics3::Idefics3Engine>> {
        match &self.family {
            Family::Idefics3(e) => Some(e),
            _ => None,
        }
    }

    /// The Florence-2 engine, if that is the family loaded.
    pub fn florence2(&self) -> Option<&Arc<florence2::Florence2Engine>> {
        match &self.family {
            Family::Florence2(e) => Some(e),
            _ => None,
        }
    }

    /// The OpenAI-compatible server engine, if that is the engine configured.
    pub fn openai(&self) -> Option<&Arc<openai::OpenaiEngine>> {
        match &self.family {
            Family::Openai(e) => Some(e),
            _ => None,
        }
    }

    /// Load the engine for `settings`, adding the setup hint to a failure that involves onnxruntime.
    pub fn load(settings: &Settings) -> Result<Self> {
        if settings.vlm.engine == docfleet_core::config::VlmEngineKind::Openai {
            return Ok(Self { family: Family::Openai(Arc::new(openai::OpenaiEngine::load(settings)?)) });
        }
        let loaded = match family_of(settings) {
            Ok(EngineKind::DecoderOnly) => models::resolve(&settings.models, "vlm", &settings.models.vlm)
                .and_then(|snap| idefics3::Idefics3Engine::load(settings, snap))
                .map(|e| Self { family: Family::Idefics3(Arc::new(e)) }),
            Ok(EngineKind::Florence2) => models::resolve(&settings.models, "vlm", &settings.models.vlm)
                .and_then(|snap| florence2::Florence2Engine::load(settings, snap))
                .map(|e| Self { family: Family::Florence2(Arc::new(e)) }),
            Ok(_) => VlmEngine::load(settings).map(|e| Self::new(Arc::new(e))),
            Err(e) => Err(e),
        };
        loaded.map_err(|e| match e {
            Error::Model(m) if m.contains("onnxruntime") && !m.contains(SETUP_HINT) => {
                Error::Model(format!("{m}. {SETUP_HINT}"))
            }
            other => other,
        })
    }
}

#[async_trait]
impl Pipeline for Vlm {
    fn name(&self) -> &'static str {
        "vlm"
    }

    fn rasterizes_at(&self) -> Option<f32> {
        Some(match &self.family {
            Family::VisionEncoderDecoder(e) => e.pdf_dpi(),
            Family::Idefics3(e) => e.pdf_dpi(),
            Family::Florence2(e) => e.pdf_dpi(),
            Family::Openai(e) => e.pdf_dpi(),
        })
    }

    fn ready(&self) -> bool {
        match &self.family {
            Family::Openai(e) => e.ready(),
            _ => true,
        }
    }

    async fn process(&self, doc: &Document, params: &Map<String, Value>) -> Result<PipelineOutput> {
        let (bytes, pages) = (doc.bytes.clone(), doc.pages.clone());
        let params = params.clone();
        let family = match &self.family {
            Family::VisionEncoderDecoder(e) => Family::VisionEncoderDecoder(e.clone()),
            Family::Idefics3(e) => Family::Idefics3(e.clone()),
            Family::Florence2(e) => Family::Florence2(e.clone()),
            Family::Openai(e) => {
                let (result, text, markdown) = e.read_document(&bytes, pages, &params).await?;
                return Ok(PipelineOutput { result, text: Some(text), markdown: Some(markdown) });
            }
        };
        let (result, text) = tokio::task::spawn_blocking(move || match family {
            Family::VisionEncoderDecoder(e) => e.read_rasterized(&bytes, pages.as_deref(), &params),
            Family::Idefics3(e) => e.read_rasterized(&bytes, pages.as_deref(), &params),
            Family::Florence2(e) => e.read_rasterized(&bytes, pages.as_deref(), &params),
            Family::Openai(_) => unreachable!("served above"),
        })
        .await
        .map_err(|e| Error::InvalidInput(format!("the vlm pipeline crashed on this document: {e}")))??;
        let markdown = result.get("markdown").and_then(Value::as_str).map(str::to_owned);
        Ok(PipelineOutput { result, text: Some(text), markdown })
    }
}
