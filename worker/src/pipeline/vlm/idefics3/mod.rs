//! The Idefics3 family (granite-docling, SmolDocling, SmolVLM) in the `vlm` pipeline, from a
//! transformers.js / onnx-community export: what the family adds to the pipeline is its
//! preprocessing ([`preprocess`]: tiles plus the global image), its prompt ([`prompt`]: the
//! model's chat template, then the image placeholders expanded) and its decoder-only generation
//! with left padding ([`generate`]). Pages of a document are generated `vlm.batch_size` at a time,
//! or, with `vlm.batch_across_jobs`, together with other jobs' pages of the same task prompt.
//!
//! [`Idefics3Engine`] is the pipeline's decoder-only engine: the Qwen2-VL family
//! ([`super::qwen2vl`]) runs on it too, with its own preprocessing, prompt expansion and
//! multimodal rotary positions in place of the Idefics3 tiles.

pub mod generate;
pub mod preprocess;
pub mod prompt;
pub mod session;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use docfleet_core::config::{ExecutionProvider, Limits, VlmDtype, VlmSettings};
use docfleet_core::models::{self, Snapshot};
use docfleet_core::{Error, Result, Settings};
use image::RgbImage;
use serde_json::{Map, Value, json};

use self::generate::PageInput;
use self::preprocess::{Idefics3Processor, Tiles};
use self::prompt::ChatTemplate;
use self::session::{GRAPHS, Sessions};
use super::batching::{self, GenerationQueue};
use super::cache;
use super::config::{GenerationConfig, ModelConfig};
use super::generate::{Generated, Rules, Times};
use super::qwen2vl::{self, QwenVision};
use super::result;
use super::tokenizer::Tokenizer;
use crate::document::{Rasterized, given_or_rasterize};
use crate::runtime::Runtime;

/// The `model_type` of `config.json` this family answers to.
pub const MODEL_TYPE: &str = "idefics3";
/// Files beside the graphs (`processor_config.json`, `generation_config.json` and a chat
/// template file are read when present).
const REQUIRED_FILES: [&str; 4] =
    ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"];
/// The docling models' own task prompt.
pub const DOCLING_PROMPT: &str = "Convert this page to docling.";
/// The task prompt of the other Idefics3 models when `vlm.prompt` is empty.
pub const DEFAULT_PROMPT: &str = "Convert this page to text.";
/// Token limit when neither `vlm.max_new_tokens` nor the model's generation config sets one: a
/// DocTags page is long.
pub const DOCLING_MAX_NEW_TOKENS: usize = 8192;
pub const DEFAULT_MAX_NEW_TOKENS: usize = 1024;

/// A loaded Idefics3 model, shared by every job.
pub struct Idefics3Engine {
    runtime: Arc<Runtime>,
    pub(crate) sessions: Sessions,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    processor: Idefics3Processor,
    generation: GenerationConfig,
    pub(crate) rules: Rules,
    image_token_id: i64,
    image_seq_len: usize,
    max_positions: Option<usize>,
    /// The generation config's own token limit (`max_new_tokens`, or `max_length` when the file
    /// sets it).
    model_max_new_tokens: Option<usize>,
    /// granite-docling / SmolDocling: the repo id or directory names docling; pages get `doctags`.
    docling: bool,
    /// The Qwen2-VL family's preprocessing and positions, when that is the model (the Idefics3
    /// processor and `image_seq_len` are then unused).
    qwen: Option<QwenVision>,
    settings: VlmSettings,
    limits: Limits,
    snapshot: Snapshot,
    /// Pages of all jobs in flight, generated together (`vlm.batch_across_jobs`).
    across_jobs: Option<GenerationQueue<PageInput>>,
}

/// One page's generation.
#[derive(Debug, Clone)]
pub struct PageResult {
    pub generated: Generated,
    pub prompt_len: usize,
    pub tiles: usize,
    pub rows: usize,
    pub cols: usize,
    pub preprocess: Duration,
    pub batch: usize,
    pub batch_size: usize,
    pub times: Times,
}

/// What preprocessing found for one page.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    preprocess: Duration,
    tiles: usize,
    rows: usize,
    cols: usize,
    prompt_len: usize,
}

/// Whether `config.json` at `path` says this family.
pub fn is_idefics3(config: &Value) -> bool {
    config.get("model_type").and_then(Value::as_str) == Some(MODEL_TYPE)
}

fn read_json(path: &std::path::Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", path.display())))
}

impl Idefics3Engine {
    /// Load the export `snap` (resolved, not yet checked) names.
    pub fn load(settings: &Settings, snap: Snapshot) -> Result<Self> {
        let runtime = Runtime::shared(settings)?;
        let gpu = runtime.provider() != ExecutionProvider::Cpu;
        let has_fp16 = GRAPHS.iter().all(|g| snap.file(&VlmDtype::Fp16.file_name(g)).is_file());
        let dtype = settings.vlm.dtype.resolve(gpu, has_fp16);
        let mut needed = settings.models.vlm.clone();
        for file in REQUIRED_FILES.iter().map(|f| f.to_string()).chain(GRAPHS.iter().map(|g| dtype.file_name(g))) {
            if !needed.files.contains(&file) {
                needed.files.push(file);
            }
        }
        let snap = models::locate(&settings.models, "vlm", &needed)?;
        let model_path = snap.file("config.json");
        let model = ModelConfig::decoder_only(&model_path)?;
        let gen_path = snap.file("generation_config.json");
        let gen_file = gen_path.is_file().then_some(gen_path.as_path());
        let generation = GenerationConfig::load(gen_file, &model, &model_path)?;
        if let Some(what) = &generation.not_greedy {
            tracing::warn!(model = %snap.id(), setting = %what, "the generation config asks for more than greedy search; the vlm pipeline decodes greedily");
        }
        let gen_raw = match gen_file {
            Some(p) => read_json(p)?,
            None => Value::Null,
        };
        let model_max_new_tokens = gen_raw.get("max_new_tokens").and_then(Value::as_u64).map(|n| n as usize);
        let tokenizer = Tokenizer::load(&snap.file("tokenizer.json"))?;
        let template = ChatTemplate::load(&snap.root)?;
        let config = read_json(&model_path)?;
        if qwen2vl::is_qwen2vl(&config) {
            let qwen =
                QwenVision::load(&config, &snap.file("preprocessor_config.json"), &tokenizer, settings.vlm.max_pixels)?;
            return Self::finish_load(
                settings,
                snap,
                runtime,
                dtype,
                (model, generation, model_max_new_tokens, tokenizer, template),
                (Idefics3Processor::default(), qwen.image_token_id, 0, Some(qwen)),
            );
        }
        let processor = Idefics3Processor::load(&snap.file("preprocessor_config.json"))?;
        let image_token_id = match model.get("image_token_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => tokenizer.token_id(prompt::IMAGE_TOKEN).ok_or_else(|| {
                Error::Model(format!("{}: no `image_token_id` and the tokenizer has no <image>", model_path.display()))
            })?,
        };
        let processor_config = snap.file("processor_config.json");
        let image_seq_len = match processor_config.is_file() {
            true => read_json(&processor_config)?.get("image_seq_len").and_then(Value::as_u64).map(|n| n as usize),
            false => None,
        };
        let image_seq_len = match image_seq_len {
            Some(n) => n,
            None => {
                // int(((image_size // patch_size) ** 2) / (scale_factor ** 2))
                let vision = model.get("vision_config").cloned().unwrap_or(Value::Null);
                let num = |v: &Value, k: &str, d: u64| v.get(k).and_then(Value::as_u64).unwrap_or(d);
                let side = num(&vision, "image_size", 224) / num(&vision, "patch_size", 32).max(1);
                let scale = model.get("scale_factor").and_then(Value::as_u64).unwrap_or(2).max(1);
                (side * side / (scale * scale)) as usize
            }
        };
        for token in [prompt::FAKE_TOKEN, prompt::GLOBAL_IMAGE_TOKEN, prompt::IMAGE_TOKEN] {
            if tokenizer.token_id(token).is_none() {
                return Err(Error::Model(format!("the tokenizer of {} has no {token} token", snap.id())));
            }
        }
        Self::finish_load(
            settings,
            snap,
            runtime,
            dtype,
            (model, generation, model_max_new_tokens, tokenizer, template),
            (processor, image_token_id, image_seq_len, None),
        )
    }

    /// The sessions and the rest, once the family's parts are read.
    #[allow(clippy::type_complexity)]
    fn finish_load(
        settings: &Settings,
        snap: Snapshot,
        runtime: Arc<Runtime>,
        dtype: VlmDtype,
        (model, generation, model_max_new_tokens, tokenizer, template): (
            ModelConfig,
            GenerationConfig,
            Option<usize>,
            Tokenizer,
            ChatTemplate,
        ),
        (processor, image_token_id, image_seq_len, qwen): (Idefics3Processor, i64, usize, Option<QwenVision>),
    ) -> Result<Self> {
        let mut sessions = Sessions::load(&runtime, &snap.root, dtype, &snap.id())?;
        if cache::wanted(settings.vlm.cache_on_device, &runtime) {
            sessions.keep_cache_on_device(&runtime)?;
        }
        if qwen.is_some() != (sessions.position_rank == 3 && sessions.vision_grid.is_some()) {
            return Err(Error::Model(format!(
                "{}: the graphs do not match config.json's model_type (a Qwen2-VL export takes grid_thw / \
                 image_grid_thw and position_ids [3, batch, seq]; an Idefics3 one neither)",
                snap.id()
            )));
        }
        let rules = Rules::from_config(&generation);
        let docling = snap.repo_id.to_lowercase().contains("docling");
        let family = qwen.as_ref().map_or(MODEL_TYPE, |q| q.model_type.as_str());
        let v = &settings.vlm;
        let across_jobs = v
            .batch_across_jobs
            .unwrap_or(runtime.provider() != ExecutionProvider::Cpu)
            .then(|| GenerationQueue::new(v.batch_size, Duration::from_millis(v.batch_max_wait_ms)));
        tracing::info!(
            model = %snap.id(), family, dtype = dtype.as_str(), docling,
            tile = processor.tile, image_seq_len, max_pixels = ?qwen.as_ref().map(|q| q.processor.max_pixels),
            cache = sessions.cache_device.as_ref().map_or("host", |d| d.name.as_str()),
            "vlm model loaded"
        );
        Ok(Self {
            runtime,
            sessions,
            tokenizer,
            template,
            processor,
            generation,
            rules,
            image_token_id,
            image_seq_len,
            max_positions: model.max_positions,
            model_max_new_tokens,
            docling,
            qwen,
            settings: settings.vlm.clone(),
            limits: settings.limits.clone(),
            snapshot: snap,
            across_jobs,
        })
    }

    /// The task text a job without `params.prompt` gets.
    pub fn default_prompt(&self) -> &str {
        if !self.settings.prompt.is_empty() {
            &self.settings.prompt
        } else if self.docling {
            DOCLING_PROMPT
        } else {
            DEFAULT_PROMPT
        }
    }

    /// Where the KV cache lives between steps: `host` (onnxruntime's outputs) or the device its
    /// outputs are preallocated on (`vlm.cache_on_device`).
    fn cache_location(&self) -> &str {
        cache::location(self.sessions.cache_device.as_ref())
    }

    /// Model facts for result records.
    pub fn model_info(&self) -> Value {
        if let Some(q) = &self.qwen {
            return json!({
                "id": self.snapshot.id(),
                "revision": self.snapshot.revision,
                "family": q.model_type,
                "dtype": self.sessions.dtype.as_str(),
                "min_pixels": q.processor.min_pixels,
                "max_pixels": q.processor.max_pixels,
                "model_max_pixels": q.model_max_pixels,
                "runtime": self.runtime.describe(),
                "execution_provider": format!("{:?}", self.runtime.provider()).to_lowercase(),
                "cache": self.cache_location(),
            });
        }
        json!({
            "id": self.snapshot.id(),
            "revision": self.snapshot.revision,
            "family": MODEL_TYPE,
            "dtype": self.sessions.dtype.as_str(),
            "docling": self.docling,
            "tile": self.processor.tile,
            "image_splitting": self.processor.do_image_splitting,
            "image_seq_len": self.image_seq_len,
            "runtime": self.runtime.describe(),
            "execution_provider": format!("{:?}", self.runtime.provider()).to_lowercase(),
            "cache": self.cache_location(),
        })
    }

    /// Preprocess one page.
    pub fn tiles(&self, img: &RgbImage) -> Result<Tiles> {
        preprocess::tiles(img, &self.processor)
    }

    /// The rendered chat for a task text (before the image expansion).
    pub fn render(&self, text: &str) -> Result<String> {
        self.template.render(text)
    }

    /// The prompt ids of a page of `rows × cols` tiles, checked against the model's positions.
    pub fn prompt_ids(&self, rendered: &str, rows: usize, cols: usize) -> Result<Vec<i64>> {
        let expanded = prompt::expand(rendered, rows, cols, self.image_seq_len)?;
        let ids = self.tokenizer.encode(&expanded, true)?;
        self.check_prompt_len(&ids)?;
        Ok(ids)
    }

    /// A prompt that leaves no position for a generated token is the job's error.
    fn check_prompt_len(&self, ids: &[i64]) -> Result<()> {
        if let Some(max) = self.max_positions
            && ids.len() >= max
        {
            return Err(Error::InvalidJob(format!(
                "the prompt with the page's image tokens is {} tokens, more than the {max} positions the model \
                 takes (text_config.max_position_embeddings) leave room for",
                ids.len()
            )));
        }
        Ok(())
    }

    /// The Qwen2-VL family's input for one page: (input, image tokens, grid h, grid w).
    pub fn qwen_page(&self, img: &RgbImage, rendered: &str) -> Result<Option<(PageInput, usize, usize, usize)>> {
        let Some(q) = &self.qwen else { return Ok(None) };
        let (input, patches) = q.page_input(img, rendered, &self.tokenizer)?;
        self.check_prompt_len(&input.prompt)?;
        let tokens = patches.tokens(q.processor.merge_size);
        Ok(Some((input, tokens, patches.grid[1] as usize, patches.grid[2] as usize)))
    }

    /// The token limit for a prompt of `prompt_len`: `requested`, else `vlm.max_new_tokens`, else
    /// the generation config's, else the family default; never past the last position.
    pub fn token_limit(&self, prompt_len: usize, requested: Option<usize>) -> usize {
        let default = if self.docling { DOCLING_MAX_NEW_TOKENS } else { DEFAULT_MAX_NEW_TOKENS };
        let mut limit = match (requested, self.settings.max_new_tokens) {
            (Some(n), _) => n,
            (None, 0) => self.model_max_new_tokens.unwrap_or(default),
            (None, n) => n,
        };
        if let Some(max) = self.max_positions {
            limit = limit.min((max + 1).saturating_sub(prompt_len));
        }
        limit.max(1)
    }

    /// Generate for preprocessed pages together.
    pub fn generate<P: std::borrow::Borrow<PageInput>>(
        &self,
        pages: &[P],
        max_new_tokens: usize,
    ) -> Result<(Vec<Generated>, Times)> {
        generate::generate(
            &self.sessions,
            pages,
            max_new_tokens,
            &self.rules,
            self.generation.pad_token_id,
            self.image_token_id,
        )
    }

    /// Generate exactly `new_tokens` tokens per page: stop tokens are suppressed until then, as
    /// `transformers`' `min_new_tokens` does (benchmarks: every engine does the same work).
    pub fn generate_exactly(&self, pages: &[PageInput], new_tokens: usize) -> Result<(Vec<Generated>, Times)> {
        let rules = Rules { min_new_tokens: self.rules.min_new_tokens.max(new_tokens), ..self.rules.clone() };
        generate::generate(&self.sessions, pages, new_tokens, &rules, self.generation.pad_token_id, self.image_token_id)
    }

    /// The tile side the vision encoder takes.
    pub fn tile_side(&self) -> usize {
        self.processor.tile as usize
    }

    /// Decode generated ids as `batch_decode(..., skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        self.tokenizer.decode(ids)
    }

    /// The DocTags of a docling page: the generated text with its tags, the stop token left out.
    pub fn doctags(&self, generated: &Generated) -> Result<String> {
        let mut ids = generated.ids.as_slice();
        if let Some((last, rest)) = ids.split_last()
            && self.rules.eos.contains(last)
        {
            ids = rest;
        }
        Ok(self.tokenizer.decode_with_special(ids)?.trim_start().to_owned())
    }

    /// The resolution PDF pages are rendered at.
    pub fn pdf_dpi(&self) -> f32 {
        self.settings.pdf_dpi
    }

    /// How many generation batches ran across jobs, and how many of them merged pages.
    pub fn batch_stats(&self) -> Option<(u64, u64)> {
        self.across_jobs.as_ref().map(GenerationQueue::stats)
    }

    /// One page's tiles and prompt ids; errors name the page.
    fn prepare_page(&self, img: &RgbImage, rendered: &str, page_no: usize) -> Result<(PageInput, Prepared)> {
        let t = Instant::now();
        let on_page = |e: Error| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("page {page_no}: {m}")),
            Error::InvalidJob(m) => Error::InvalidJob(format!("page {page_no}: {m}")),
            other => other,
        };
        // Qwen2-VL: one image of patches; `tiles` counts its image tokens, rows × cols its grid.
        if let Some((input, tokens, h, w)) = self.qwen_page(img, rendered).map_err(on_page)? {
            let prepared =
                Prepared { preprocess: t.elapsed(), tiles: tokens, rows: h, cols: w, prompt_len: input.prompt.len() };
            return Ok((input, prepared));
        }
        let tiles = self.tiles(img).map_err(on_page)?;
        let prompt = self.prompt_ids(rendered, tiles.rows, tiles.cols).map_err(on_page)?;
        let prepared = Prepared {
            preprocess: t.elapsed(),
            tiles: tiles.count,
            rows: tiles.rows,
            cols: tiles.cols,
            prompt_len: prompt.len(),
        };
        Ok((PageInput::tiles(prompt, tiles.pixels, tiles.count, self.processor.tile as usize), prepared))
    }

    fn page_result(generated: Generated, p: Prepared, batch: usize, batch_size: usize, times: Times) -> PageResult {
        PageResult {
            generated,
            prompt_len: p.prompt_len,
            tiles: p.tiles,
            rows: p.rows,
            cols: p.cols,
            preprocess: p.preprocess,
            batch,
            batch_size,
            times,
        }
    }

    /// Generate for a document's pages: `vlm.batch_size` at a time on their own, or with other
    /// jobs' pages of the same prompt and token limit when `vlm.batch_across_jobs` is on.
    fn read_pages(&self, pages: &[&RgbImage], rendered: &str, requested: Option<usize>) -> Result<Vec<PageResult>> {
        let Some(queue) = &self.across_jobs else { return self.read_pages_alone(pages, rendered, requested) };
        let mut inputs = Vec::with_capacity(pages.len());
        let mut prep = Vec::with_capacity(pages.len());
        for (i, img) in pages.iter().enumerate() {
            let (input, p) = self.prepare_page(img, rendered, i + 1)?;
            inputs.push(input);
            prep.push(p);
        }
        // Pages share a batch when their task prompt (before the image expansion) and requested
        // limit are the same; the batch's limit follows its longest prompt, as a job's own does.
        let key =
            batching::Key { prompt: self.tokenizer.encode(rendered, false)?, max_new_tokens: requested.unwrap_or(0) };
        let run = |batch: &[&PageInput], key: &batching::Key| {
            let longest = batch.iter().map(|p| p.prompt.len()).max().unwrap_or(0);
            let limit = self.token_limit(longest, (key.max_new_tokens > 0).then_some(key.max_new_tokens));
            self.generate(batch, limit)
        };
        let rows = queue.generate(&key, inputs, &run);
        batching::job_pages(rows, prep, |row, p, batch| {
            Ok(Self::page_result(row.generated, p, batch, row.batch_size, row.times))
        })
    }

    fn read_pages_alone(
        &self,
        pages: &[&RgbImage],
        rendered: &str,
        requested: Option<usize>,
    ) -> Result<Vec<PageResult>> {
        let size = self.settings.batch_size;
        let mut out = Vec::with_capacity(pages.len());
        for (b, chunk) in pages.chunks(size).enumerate() {
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut prep = Vec::with_capacity(chunk.len());
            for (i, img) in chunk.iter().enumerate() {
                let (input, p) = self.prepare_page(img, rendered, b * size + i + 1)?;
                inputs.push(input);
                prep.push(p);
            }
            let longest = inputs.iter().map(|p| p.prompt.len()).max().unwrap_or(0);
            let limit = self.token_limit(longest, requested);
            let (generated, times) = self.generate(&inputs, limit).map_err(|e| match e {
                Error::Model(m) => Error::Model(format!("pages {}–{}: {m}", b * size + 1, b * size + chunk.len())),
                other => other,
            })?;
            for (g, p) in generated.into_iter().zip(prep) {
                out.push(Self::page_result(g, p, b, chunk.len(), times));
            }
        }
        Ok(out)
    }

    /// Read a document, rasterised already (`pages`, at [`Self::pdf_dpi`]) or not: the result
    /// record's `output` and the plain-text rendition.
    pub fn read_rasterized(
        &self,
        bytes: &[u8],
        pages: Option<&Rasterized>,
        params: &Map<String, Value>,
    ) -> Result<(Value, String)> {
        let started = Instant::now();
        let (prompt_text, requested) = super::job_params(params, self.settings.max_new_tokens_limit)?;
        let text = prompt_text.clone().unwrap_or_else(|| self.default_prompt().to_owned());
        let rendered = self.render(&text)?;
        let (raster, decode) = given_or_rasterize(pages, bytes, &self.limits, self.settings.pdf_dpi)?;
        let (format, pages) = (raster.0, raster.1.as_slice());
        let images: Vec<&RgbImage> = pages.iter().map(|p| &p.image).collect();
        let read = self.read_pages(&images, &rendered, requested)?;

        let mut record = result::Record::default();
        let mut doctags: Vec<String> = Vec::new();
        for (page, r) in pages.iter().zip(&read) {
            let page_text = self.decode(&r.generated.ids)?;
            let page_record = result::PageRecord {
                text: &page_text,
                generated: &r.generated,
                preprocess: r.preprocess,
                batch: r.batch,
                batch_size: r.batch_size,
                times: &r.times,
            };
            let v = record.push(page, &page_record);
            v["prompt_tokens"] = json!(r.prompt_len);
            v["tiles"] = json!({"count": r.tiles, "rows": r.rows, "cols": r.cols});
            if self.qwen.is_some()
                && let Some(o) = v.as_object_mut()
            {
                // Qwen2-VL pages are one image of grid t × h × w patches, not tiles.
                o.remove("tiles");
                o.insert("image".into(), json!({"tokens": r.tiles, "grid_thw": [1, r.rows, r.cols]}));
            }
            if self.docling {
                let tags = self.doctags(&r.generated)?;
                v["doctags"] = json!(tags);
                doctags.push(tags);
            }
        }
        let text_out = record.text();
        let limit = requested
            .or((self.settings.max_new_tokens > 0).then_some(self.settings.max_new_tokens))
            .or(self.model_max_new_tokens);
        let generation =
            result::generation(limit, self.settings.batch_size, self.across_jobs.is_some(), &self.generation);
        let mut output =
            record.finish(format, bytes.len(), json!({"text": text}), generation, self.model_info(), decode, started);
        if self.docling {
            // The pages as one document: DocTags boxes in page pixels.
            let inputs: Vec<docfleet_core::doctags::PageInput<'_>> = doctags
                .iter()
                .zip(pages)
                .map(|(t, p)| {
                    docfleet_core::doctags::PageInput::with_size(t, p.image.width() as f64, p.image.height() as f64)
                })
                .collect();
            let doc = docfleet_core::doctags::parse(&inputs);
            output["markdown"] = json!(doc.to_markdown());
            output["html"] = json!(doc.to_html("document"));
            output["document"] = doc.to_json();
            output["warnings"] = json!(doc.warnings.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
        Ok((output, format!("{text_out}\n")))
    }
}
