//! The Florence-2 family in the `vlm` pipeline, from an onnx-community / transformers.js export
//! (`onnx/vision_encoder`, `embed_tokens`, `encoder_model`, `decoder_model_merged`). Florence-2 is
//! an encoder-decoder: it runs on the vision-encoder-decoder engine's decoder loop
//! ([`super::generate::decode`]: KV cache with cross-attention entries, logits processors, stop
//! rules, shrinking batches) and result format. What the family adds:
//!
//! - preprocessing: `CLIPImageProcessor` at a fixed size (768 × 768 published), a plain resize
//!   ([`super::preprocess`]);
//! - the prompt: the job's task token (`params.task`, default `<OCR>`) rewritten to its question
//!   from the processor config ([`tasks`]), tokenized as `<s>question</s>`;
//! - the encoder input: the page's image features in front of the question's embeddings, every
//!   position attended; the decoder starts from `decoder_start_token_id` and embeds its tokens
//!   with `embed_tokens`;
//! - the answer: `post_process_generation` of the task ([`tasks::answer`]): text, or `<loc_N>`
//!   bins back to page pixels.

pub mod tasks;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use docfleet_core::config::{ExecutionProvider, Limits, VlmDecoderLayout, VlmDtype, VlmSettings};
use docfleet_core::models::{self, Snapshot};
use docfleet_core::{Error, Result, Settings};
use image::RgbImage;
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorRef};
use serde_json::{Map, Value, json};

use self::tasks::{DEFAULT_TASK, Task, Tasks};
use super::batching::{self, GenerationQueue};
use super::cache;
use super::config::{GenerationConfig, ImageProcessorConfig, ModelConfig};
use super::generate::{self, Generated, Rules, Times};
use super::result;
use super::session::{Decoders, Layout};
use super::tensors::{Float, read_f32};
use super::tokenizer::Tokenizer;
use super::{max_new_tokens_param, string_param};
use crate::document::{Rasterized, given_or_rasterize};
use crate::runtime::Runtime;

/// The `model_type` of `config.json` this family answers to.
pub const MODEL_TYPE: &str = "florence2";
/// Files beside the graphs (`generation_config.json` is read when present).
const REQUIRED_FILES: [&str; 3] = ["config.json", "preprocessor_config.json", "tokenizer.json"];
/// The graphs before the decoder, in the order they run.
pub const ENCODER_GRAPHS: [&str; 3] = ["vision_encoder", "embed_tokens", "encoder_model"];
/// Job parameters the family reads.
const PARAMS: [&str; 3] = ["task", "text_input", "max_new_tokens"];

/// Whether `config.json` says this family.
pub fn is_florence2(config: &Value) -> bool {
    config.get("model_type").and_then(Value::as_str) == Some(MODEL_TYPE)
}

/// The decoder files of a layout in variant `dtype`, relative to the snapshot.
pub fn decoder_files(layout: Layout, dtype: VlmDtype) -> Vec<String> {
    layout.decoder_files().iter().map(|f| dtype.file_name(f.trim_end_matches(".onnx"))).collect()
}

/// One graph with one input and one output role, run one call at a time.
struct Graph {
    file: String,
    session: Mutex<Session>,
    output: String,
    /// The type of its float input (`pixel_values`, `inputs_embeds`), if it has one.
    float: Float,
}

impl Graph {
    /// Open `file`, checking it takes exactly `inputs` (i64 ids and masks, float32 or float16 else).
    fn open(runtime: &Runtime, root: &Path, file: &str, id: &str, inputs: &[&str], output: &str) -> Result<Self> {
        let path = root.join(file);
        if !path.is_file() {
            return Err(Error::Model(format!("{} is missing (a Florence-2 export needs it)", path.display())));
        }
        let session = runtime.session(&path, &format!("{id}/{file}"))?;
        let mut names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        names.sort_unstable();
        let mut expected = inputs.to_vec();
        expected.sort_unstable();
        if names != expected {
            return Err(Error::Model(format!("{file} takes inputs {names:?}; a Florence-2 export's take {inputs:?}")));
        }
        let mut float = Float::F32;
        for input in session.inputs() {
            let ty = match input.dtype() {
                ort::value::ValueType::Tensor { ty, .. } => *ty,
                other => return Err(Error::Model(format!("{file}: `{}` is {other:?}", input.name()))),
            };
            let fits = match input.name() {
                "input_ids" | "attention_mask" => ty == ort::value::TensorElementType::Int64,
                _ => Float::of(ty).inspect(|f| float = *f).is_some(),
            };
            if !fits {
                return Err(Error::Model(format!("{file}: `{}` is {ty:?}", input.name())));
            }
        }
        if !session.outputs().iter().any(|o| o.name() == output) {
            return Err(Error::Model(format!("{file} has no `{output}` output")));
        }
        Ok(Self { file: file.to_owned(), session: Mutex::new(session), output: output.to_owned(), float })
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run with `inputs` and return the output tensor.
    fn run(
        &self,
        inputs: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)>,
        what: &str,
    ) -> Result<DynValue> {
        let mut session = self.lock();
        let mut outputs =
            session.run(inputs).map_err(|e| Error::Model(format!("{} failed on {what}: {e}", self.file)))?;
        outputs
            .remove(self.output.as_str())
            .ok_or_else(|| Error::Model(format!("{} returned no {}", self.file, self.output)))
    }
}

fn ort_err(what: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Model(format!("{what}: {e}"))
}

/// A loaded Florence-2 model, shared by every job.
pub struct Florence2Engine {
    runtime: Arc<Runtime>,
    vision: Graph,
    embed: Graph,
    encoder: Graph,
    decoders: Decoders,
    dtype: VlmDtype,
    tokenizer: Tokenizer,
    processor: ImageProcessorConfig,
    tasks: Tasks,
    generation: GenerationConfig,
    rules: Rules,
    /// `text_config.max_position_embeddings`: the longest encoder input and decoder sequence.
    max_positions: Option<usize>,
    settings: VlmSettings,
    limits: Limits,
    snapshot: Snapshot,
    /// Pages of all jobs in flight, generated together (`vlm.batch_across_jobs`); the key's
    /// prompt is the page's encoder question.
    across_jobs: Option<GenerationQueue<Vec<f32>>>,
}

/// One page's generation.
#[derive(Debug, Clone)]
pub struct PageResult {
    pub generated: Generated,
    pub preprocess: Duration,
    pub batch: usize,
    pub batch_size: usize,
    pub times: Times,
}

/// A job's task, resolved.
struct JobTask<'a> {
    token: String,
    task: &'a Task,
    /// `<s>question</s>`.
    ids: Vec<i64>,
}

impl Florence2Engine {
    /// Load the export `snap` (resolved, not yet checked) names.
    pub fn load(settings: &Settings, snap: Snapshot) -> Result<Self> {
        let runtime = Runtime::shared(settings)?;
        let gpu = runtime.provider() != ExecutionProvider::Cpu;
        let all_graphs = ENCODER_GRAPHS.iter().chain(["decoder_model_merged"].iter());
        let has_fp16 = all_graphs.clone().all(|g| snap.file(&VlmDtype::Fp16.file_name(g)).is_file());
        let dtype = settings.vlm.dtype.resolve(gpu, has_fp16);
        let merged_here = snap.file(&dtype.file_name("decoder_model_merged")).is_file();
        let layout = match settings.vlm.decoder {
            VlmDecoderLayout::Merged => Layout::Merged,
            VlmDecoderLayout::Split => Layout::Split,
            // A download fetches the merged decoder unless `vlm.decoder = "split"` lists the others.
            VlmDecoderLayout::Auto if merged_here || !snap.file(&dtype.file_name("decoder_model")).is_file() => {
                Layout::Merged
            }
            VlmDecoderLayout::Auto => Layout::Split,
        };
        let mut needed = settings.models.vlm.clone();
        let graph_files = ENCODER_GRAPHS.iter().map(|g| dtype.file_name(g)).chain(decoder_files(layout, dtype));
        for file in REQUIRED_FILES.iter().map(|f| f.to_string()).chain(graph_files) {
            if !needed.files.contains(&file) {
                needed.files.push(file);
            }
        }
        let snap = models::locate(&settings.models, "vlm", &needed)?;
        Self::from_snapshot(settings, snap, runtime, dtype, layout)
    }

    fn from_snapshot(
        settings: &Settings,
        snap: Snapshot,
        runtime: Arc<Runtime>,
        dtype: VlmDtype,
        layout: Layout,
    ) -> Result<Self> {
        let model_path = snap.file("config.json");
        let model = ModelConfig::decoder_only(&model_path)?;
        let gen_path = snap.file("generation_config.json");
        let generation = GenerationConfig::load(gen_path.is_file().then_some(gen_path.as_path()), &model, &model_path)?;
        if let Some(what) = &generation.not_greedy {
            tracing::warn!(model = %snap.id(), setting = %what, "the generation config asks for more than greedy search; the vlm pipeline decodes greedily");
        }
        let processor_path = snap.file("preprocessor_config.json");
        let processor_json: Value = serde_json::from_slice(
            &std::fs::read(&processor_path)
                .map_err(|e| Error::Model(format!("cannot read {}: {e}", processor_path.display())))?,
        )
        .map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", processor_path.display())))?;
        let processor = ImageProcessorConfig::from_value(&processor_json, &processor_path)?;
        let tasks = Tasks::from_config(&processor_json, &processor_path)?;
        let tokenizer = Tokenizer::load(&snap.file("tokenizer.json"))?;
        let default_task = if settings.vlm.prompt.is_empty() { DEFAULT_TASK } else { settings.vlm.prompt.as_str() };
        if let Err(e) = tasks.prompt(default_task, None) {
            return Err(Error::Config(format!("vlm.prompt: {e}")));
        }
        let id = snap.id();
        let root = &snap.root;
        let vision =
            Graph::open(&runtime, root, &dtype.file_name("vision_encoder"), &id, &["pixel_values"], "image_features")?;
        let embed =
            Graph::open(&runtime, root, &dtype.file_name("embed_tokens"), &id, &["input_ids"], "inputs_embeds")?;
        let encoder = Graph::open(
            &runtime,
            root,
            &dtype.file_name("encoder_model"),
            &id,
            &["inputs_embeds", "attention_mask"],
            "last_hidden_state",
        )?;
        let mut decoders = Decoders::load(&runtime, root, layout, &decoder_files(layout, dtype), &id)?;
        if cache::wanted(settings.vlm.cache_on_device, &runtime) {
            decoders.keep_cache_on_device(&runtime)?;
        }
        if !decoders.first.inputs.contains(&super::session::Input::InputsEmbeds) {
            return Err(Error::Model(format!(
                "{} takes no `inputs_embeds`: not a Florence-2 export's decoder",
                decoders.first.file
            )));
        }
        let rules = Rules::from_config(&generation);
        let v = &settings.vlm;
        let across_jobs = v
            .batch_across_jobs
            .unwrap_or(runtime.provider() != ExecutionProvider::Cpu)
            .then(|| GenerationQueue::new(v.batch_size, Duration::from_millis(v.batch_max_wait_ms)));
        tracing::info!(
            model = %id, family = MODEL_TYPE, dtype = dtype.as_str(), layout = layout.name(),
            size = format!("{}x{}", processor.width, processor.height), tasks = tasks.names().len(),
            "vlm model loaded"
        );
        Ok(Self {
            runtime,
            vision,
            embed,
            encoder,
            decoders,
            dtype,
            tokenizer,
            processor,
            tasks,
            generation,
            rules,
            max_positions: model.max_positions,
            settings: settings.vlm.clone(),
            limits: settings.limits.clone(),
            snapshot: snap,
            across_jobs,
        })
    }

    /// Model facts for result records.
    pub fn model_info(&self) -> Value {
        json!({
            "id": self.snapshot.id(),
            "revision": self.snapshot.revision,
            "family": MODEL_TYPE,
            "dtype": self.dtype.as_str(),
            "layout": self.decoders.layout.name(),
            "input_size": [self.processor.width, self.processor.height],
            "tasks": self.tasks.names(),
            "runtime": self.runtime.describe(),
            "execution_provider": format!("{:?}", self.runtime.provider()).to_lowercase(),
            "cache": cache::location(self.decoders.cache_device.as_ref()),
        })
    }

    /// The resolution PDF pages are rendered at.
    pub fn pdf_dpi(&self) -> f32 {
        self.settings.pdf_dpi
    }

    /// The task table of the model.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// How many generation batches ran across jobs, and how many of them merged pages.
    pub fn batch_stats(&self) -> Option<(u64, u64)> {
        self.across_jobs.as_ref().map(GenerationQueue::stats)
    }

    /// One page as the vision encoder's input (`3 × height × width`).
    pub fn pixel_values(&self, img: &RgbImage) -> Result<Vec<f32>> {
        super::preprocess::pixel_values(img, &self.processor)
    }

    /// The encoder question's ids for a task token: `<s>question</s>`.
    pub fn task_ids(&self, token: &str, input: Option<&str>) -> Result<Vec<i64>> {
        Ok(self.job_task(token, input)?.ids)
    }

    fn job_task(&self, token: &str, input: Option<&str>) -> Result<JobTask<'_>> {
        let (task, question) = self.tasks.prompt(token, input)?;
        let ids = self.tokenizer.encode(&question, true)?;
        Ok(JobTask { token: token.to_owned(), task, ids })
    }

    /// The token limit: `requested`, else `vlm.max_new_tokens`, else the generation config's;
    /// never past the decoder's last position.
    pub fn token_limit(&self, requested: Option<usize>) -> usize {
        let prompt_len = 1;
        let from_model =
            self.generation.max_new_tokens.unwrap_or(self.generation.max_length.saturating_sub(prompt_len));
        let mut limit = match (requested, self.settings.max_new_tokens) {
            (Some(n), _) => n,
            (None, 0) => from_model,
            (None, n) => n,
        };
        if let Some(max) = self.max_positions {
            limit = limit.min((max + 1).saturating_sub(prompt_len));
        }
        limit.max(1)
    }

    /// Greedy generation for `batch` preprocessed pages (`batch × 3 × height × width`), all with
    /// the encoder question `question`.
    pub fn generate(
        &self,
        pixel_values: &[f32],
        batch: usize,
        question: &[i64],
        max_new_tokens: usize,
    ) -> Result<(Vec<Generated>, Times)> {
        self.generate_with(pixel_values, batch, question, max_new_tokens, &self.rules)
    }

    /// [`Self::generate`] for exactly `new_tokens` tokens per page: the stop token is held back
    /// until the last one, as `transformers`' `min_new_tokens` does (benchmarks: every engine does
    /// the same work; the generation config's forced EOS still ends each row).
    pub fn generate_exactly(
        &self,
        pixel_values: &[f32],
        batch: usize,
        question: &[i64],
        new_tokens: usize,
    ) -> Result<(Vec<Generated>, Times)> {
        let rules = Rules { min_new_tokens: self.rules.min_new_tokens.max(new_tokens), ..self.rules.clone() };
        self.generate_with(pixel_values, batch, question, new_tokens, &rules)
    }

    fn generate_with(
        &self,
        pixel_values: &[f32],
        batch: usize,
        question: &[i64],
        max_new_tokens: usize,
        rules: &Rules,
    ) -> Result<(Vec<Generated>, Times)> {
        let started = Instant::now();
        let mut times = Times::default();
        let (h, w) = (self.processor.height as usize, self.processor.width as usize);
        if batch == 0 || pixel_values.len() != batch * 3 * h * w {
            return Err(Error::InvalidInput(format!(
                "{} pixel values for {batch} pages of 3×{h}×{w}",
                pixel_values.len()
            )));
        }
        let t = Instant::now();
        let features = match self.vision.float {
            Float::F32 => {
                let pixels =
                    TensorRef::from_array_view(([batch, 3, h, w], pixel_values)).map_err(ort_err("pixel_values"))?;
                self.vision.run(ort::inputs!["pixel_values" => pixels], &format!("{batch} pages"))?
            }
            Float::F16 => {
                let pixels = Float::F16.tensor(vec![batch, 3, h, w], pixel_values)?;
                self.vision.run(ort::inputs!["pixel_values" => pixels], &format!("{batch} pages"))?
            }
        };
        let ids: Vec<i64> = question.iter().copied().cycle().take(batch * question.len()).collect();
        let text = self.embed_ids(&ids, [batch, question.len()])?;
        // The image features in front of the question's embeddings, row by row (in f32: a float16
        // value converts there and back exactly).
        let (fshape, fdata) = read_f32(&features, "image_features")?;
        let (tshape, tdata) = read_f32(&text, "inputs_embeds")?;
        let (image_len, hidden) = match fshape[..] {
            [b, n, d] if b == batch && tshape.get(2) == Some(&d) => (n, d),
            _ => {
                return Err(Error::Model(format!(
                    "{}: image_features of shape {fshape:?} do not fit inputs_embeds {tshape:?}",
                    self.vision.file
                )));
            }
        };
        let total = image_len + question.len();
        if let Some(max) = self.max_positions
            && total > max
        {
            return Err(Error::InvalidJob(format!(
                "the question and the page's {image_len} image tokens are {total} positions, more than the {max} \
                 the model's encoder takes"
            )));
        }
        let mut embeds = Vec::with_capacity(batch * total * hidden);
        for r in 0..batch {
            embeds.extend_from_slice(&fdata[r * image_len * hidden..(r + 1) * image_len * hidden]);
            embeds.extend_from_slice(&tdata[r * question.len() * hidden..(r + 1) * question.len() * hidden]);
        }
        let embeds = self.encoder.float.tensor(vec![batch, total, hidden], &embeds)?;
        let mask =
            Tensor::from_array(([batch, total], vec![1i64; batch * total])).map_err(ort_err("attention_mask"))?;
        let encoded = self.encoder.run(
            ort::inputs!["inputs_embeds" => embeds, "attention_mask" => mask],
            &format!("{batch} pages of {total} positions"),
        )?;
        times.encoder = t.elapsed();
        let embed = |ids: &[i64], shape: [usize; 2]| self.embed_ids(ids, shape);
        let prompt = [self.generation.decoder_start_token_id];
        generate::decode(&self.decoders, encoded, batch, &prompt, max_new_tokens, rules, Some(&embed), times, started)
    }

    fn embed_ids(&self, ids: &[i64], shape: [usize; 2]) -> Result<DynValue> {
        let input = TensorRef::from_array_view((shape, ids)).map_err(ort_err("input_ids"))?;
        self.embed.run(ort::inputs!["input_ids" => input], &format!("input_ids {shape:?}"))
    }

    fn page_pixels(&self, img: &RgbImage, page_no: usize) -> Result<Vec<f32>> {
        self.pixel_values(img).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("page {page_no}: {m}")),
            other => other,
        })
    }

    /// Generate for a document's pages: `vlm.batch_size` at a time on their own, or with other
    /// jobs' pages of the same question and token limit when `vlm.batch_across_jobs` is on.
    fn read_pages(&self, pages: &[&RgbImage], question: &[i64], limit: usize) -> Result<Vec<PageResult>> {
        let mut pixels = Vec::with_capacity(pages.len());
        let mut prep = Vec::with_capacity(pages.len());
        for (i, img) in pages.iter().enumerate() {
            let t = Instant::now();
            pixels.push(self.page_pixels(img, i + 1)?);
            prep.push(t.elapsed());
        }
        let Some(queue) = &self.across_jobs else {
            let mut out = Vec::with_capacity(pages.len());
            let size = self.settings.batch_size;
            for (b, (chunk, prep)) in pixels.chunks(size).zip(prep.chunks(size)).enumerate() {
                let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
                let (generated, times) = self.generate(&flat, chunk.len(), question, limit).map_err(|e| match e {
                    Error::Model(m) => Error::Model(format!("pages {}–{}: {m}", b * size + 1, b * size + chunk.len())),
                    other => other,
                })?;
                for (g, &preprocess) in generated.into_iter().zip(prep) {
                    out.push(PageResult { generated: g, preprocess, batch: b, batch_size: chunk.len(), times });
                }
            }
            return Ok(out);
        };
        let key = batching::Key { prompt: question.to_vec(), max_new_tokens: limit };
        let run = |batch: &[&Vec<f32>], key: &batching::Key| {
            let flat: Vec<f32> = batch.iter().flat_map(|p| p.iter().copied()).collect();
            self.generate(&flat, batch.len(), &key.prompt, key.max_new_tokens)
        };
        let rows = queue.generate(&key, pixels, &run);
        batching::job_pages(rows, prep, |row, preprocess, batch| {
            Ok(PageResult { generated: row.generated, preprocess, batch, batch_size: row.batch_size, times: row.times })
        })
    }

    /// The generated ids as `batch_decode(..., skip_special_tokens=False)` of the whole decoder
    /// sequence (start token included), what `post_process_generation` reads.
    pub fn raw_text(&self, generated: &[i64]) -> Result<String> {
        let mut seq = vec![self.generation.decoder_start_token_id];
        seq.extend_from_slice(generated);
        self.tokenizer.decode_with_special(&seq)
    }

    /// A task's answer for generated ids on a page of `size` (width, height) pixels.
    pub fn answer(&self, task: &str, generated: &[i64], size: (u32, u32)) -> Result<Value> {
        let kind = match self.tasks.get(task) {
            Some(t) => t.answer,
            None => return Err(self.tasks.prompt(task, None).err().unwrap_or_else(|| Error::InvalidJob(task.into()))),
        };
        Ok(tasks::answer(kind, &self.raw_text(generated)?, size))
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
        let (token, input, requested) = job_params(params, self.settings.max_new_tokens_limit)?;
        let default = if self.settings.prompt.is_empty() { DEFAULT_TASK } else { self.settings.prompt.as_str() };
        let job = self.job_task(token.as_deref().unwrap_or(default), input.as_deref())?;
        let limit = self.token_limit(requested);
        let (raster, decode) = given_or_rasterize(pages, bytes, &self.limits, self.settings.pdf_dpi)?;
        let (format, pages) = (raster.0, raster.1.as_slice());
        let images: Vec<&RgbImage> = pages.iter().map(|p| &p.image).collect();
        let read = self.read_pages(&images, &job.ids, limit)?;

        let mut record = result::Record::default();
        for (page, r) in pages.iter().zip(&read) {
            let raw = self.raw_text(&r.generated.ids)?;
            let answer = tasks::answer(job.task.answer, &raw, (page.image.width(), page.image.height()));
            let text = answer_text(&answer);
            let page_record = result::PageRecord {
                text: &text,
                generated: &r.generated,
                preprocess: r.preprocess,
                batch: r.batch,
                batch_size: r.batch_size,
                times: &r.times,
            };
            let v = record.push(page, &page_record);
            v["raw_text"] = json!(raw);
            v["answer"] = answer;
        }
        let text = record.text();
        let prompt = json!({"task": job.token, "text": self.tokenizer.decode(&job.ids)?, "token_ids": job.ids});
        let generation =
            result::generation(Some(limit), self.settings.batch_size, self.across_jobs.is_some(), &self.generation);
        let output = record.finish(format, bytes.len(), prompt, generation, self.model_info(), decode, started);
        Ok((output, format!("{text}\n")))
    }
}

/// A page's text from its answer: the text itself, or the regions' labels one per line.
fn answer_text(answer: &Value) -> String {
    match answer {
        Value::String(s) => s.clone(),
        other => other
            .get("labels")
            .and_then(Value::as_array)
            .map(|labels| labels.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default(),
    }
}

/// `params.task`, `params.text_input` and `params.max_new_tokens`, checked.
fn job_params(params: &Map<String, Value>, limit: usize) -> Result<(Option<String>, Option<String>, Option<usize>)> {
    if let Some(key) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(Error::InvalidJob(format!(
            "unknown parameter `{key}` for the vlm pipeline with a Florence-2 model (accepted: {})",
            PARAMS.join(", ")
        )));
    }
    let max_new_tokens = max_new_tokens_param(params, limit)?;
    Ok((string_param(params, "task")?, string_param(params, "text_input")?, max_new_tokens))
}
