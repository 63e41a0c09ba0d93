//! `[vlm]`: the `vlm` pipeline.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Fail, Secret};
use crate::Result;

/// The `vlm` pipeline: a vision-encoder-decoder ONNX export (Donut, TrOCR, ...) in `models.vlm`,
/// greedy generation with its own tokenizer (docs/vlm.md). The pipeline exists only when
/// `models.vlm` names a model; its generation settings come from the model's
/// `generation_config.json` unless set here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VlmSettings {
    /// Decoder export to load: `auto` (`decoder_model_merged.onnx` when present, else
    /// `decoder_model.onnx` + `decoder_with_past_model.onnx`), `merged` or `split`.
    pub decoder: VlmDecoderLayout,
    /// Pages generated together in one batch (1–64); each sequence stops on its own.
    pub batch_size: usize,
    /// Token limit per page; 0 takes the model's `max_new_tokens` (or `max_length`).
    pub max_new_tokens: usize,
    /// Most tokens a job may ask for with `params.max_new_tokens`.
    pub max_new_tokens_limit: usize,
    /// Task prompt for jobs that give none (`params.prompt`), e.g. `<s_cord-v2>`; empty: the
    /// decoder start token alone. Florence-2: the task token for jobs without `params.task`
    /// (empty: `<OCR>`), e.g. `<OCR_WITH_REGION>`.
    pub prompt: String,
    /// Resolution at which PDF pages are rasterised, in dots per inch (18–600).
    pub pdf_dpi: f32,
    /// Generate pages from different jobs in flight together: pages with the same prompt and
    /// token limit share one generation batch of up to `batch_size`, one batch at a time
    /// (vision-encoder-decoder pages all have the processor's size; Idefics3 pages of any size
    /// are left-padded to the longest prompt). Off: each job generates its own pages, jobs side by
    /// side. Unset: on with a GPU execution provider, off on CPU.
    pub batch_across_jobs: Option<bool>,
    /// Every in-process family (vision-encoder-decoder, Florence-2, Idefics3, Qwen2-VL): allocate
    /// each decoder step's `present.*` cache outputs (self-attention, and the encoder-decoder
    /// families' cross-attention entries) on the execution provider's device, so the KV cache
    /// stays there between steps instead of onnxruntime copying it to host memory after every
    /// step and back before the next. Unset: on with a GPU execution provider, off on CPU (where
    /// host memory is the device; `true` then runs the same preallocated-output path in host
    /// memory).
    pub cache_on_device: Option<bool>,
    /// How long a batch with room waits for more pages to merge, in milliseconds (0–1000).
    pub batch_max_wait_ms: u64,
    /// Which variant of a transformers.js / onnx-community export to load (and download):
    /// `auto` (fp16 on a GPU execution provider where the repository has it, else fp32), `fp32`,
    /// `fp16`, `q4`, `q4f16`, `int8`, `uint8`, `quantized` or `bnb4` — the suffix of
    /// `onnx/<graph>_<dtype>.onnx` (fp32 has none).
    pub dtype: VlmDtype,
    // -- the serving engine (`vlm.engine = "openai"`, docs/vlm.md "Serving engine") --
    /// Where pages are read: `ort` (the model in `models.vlm`, in this process) or `openai` (an
    /// OpenAI-compatible server beside the worker — vLLM, SGLang, llama.cpp, `transformers
    /// serve` — configured in `vlm.server`; `models.vlm` is then not needed).
    pub engine: VlmEngineKind,
    /// The OpenAI-compatible server of `vlm.engine = "openai"`.
    pub server: VlmServerSettings,
    /// Qwen2-VL family: most pixels a page is resized to (the processor's `max_pixels`, lowered
    /// per deployment; 0: the model's own). Image tokens per page are pixels / 784 (28 × 28 per
    /// token), the cost driver; a larger page is scaled down, never refused. At least 784.
    pub max_pixels: u64,
}

/// Which engine runs the `vlm` pipeline's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlmEngineKind {
    /// onnxruntime in the worker process (`models.vlm`).
    #[default]
    Ort,
    /// An OpenAI-compatible chat-completions server (`vlm.server`).
    Openai,
}

/// `[vlm.server]`: the OpenAI-compatible server the `openai` engine sends one chat-completions
/// request per page to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VlmServerSettings {
    /// Base URL of the API, up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`).
    pub url: String,
    /// Model name sent in each request; empty: the first model `GET {url}/models` lists.
    pub model: String,
    /// Bearer token (redacted in `config show` and logs); usually set as
    /// `DOCFLEET__VLM__SERVER__API_KEY`. Unset: `api_key_file`, else no `Authorization` header.
    pub api_key: Option<Secret>,
    /// File holding the bearer token (a mounted secret); surrounding whitespace is trimmed.
    pub api_key_file: Option<PathBuf>,
    /// Page requests in flight at once, per worker process, shared by the pages of every job
    /// (1–4096). Size it for the server's continuous batching, not per job slot; keep
    /// `worker.concurrency` at least this high so one-page jobs can fill it.
    pub max_in_flight: usize,
    /// Limit for one page's request, in seconds (1–3600); a request past it is retried.
    pub timeout_seconds: u64,
    /// Retries of a page's request after a 429, a 5xx, a connection error or a timeout (0–20);
    /// when they are spent the document is released for redelivery (a transient failure).
    pub retries: u32,
    /// First retry delay in milliseconds, doubling per retry up to 30 s (1–60000).
    pub retry_base_delay_ms: u64,
    /// Pages are resized (down, keeping the aspect ratio) so their longest side is at most this
    /// many pixels before they are sent (64–8192; olmOCR uses 1288).
    pub image_longest_side: u32,
    /// How pages are encoded in the `data:` URL: `png` or `jpeg`.
    pub image_format: VlmImageFormat,
    /// JPEG quality, 1–100 (with `image_format = "jpeg"`).
    pub jpeg_quality: u8,
    /// Sampling temperature sent with each request (0–2; 0 is greedy).
    pub temperature: f32,
    /// `max_tokens` sent with each request; 0 leaves it to the server.
    pub max_tokens: u32,
    /// More request-body fields, as a JSON object (e.g. `{"top_k": 1, "seed": 0}`), merged
    /// into every request; the fields above win.
    pub extra_body: String,
    /// What pages are asked and how answers are read: `olmocr` (olmOCR's prompt; the YAML front
    /// matter and Markdown it answers parsed into fields), `markdown` (plain "convert to
    /// Markdown"), `doctags` (granite-docling's DocTags, exported to Markdown/HTML/JSON) or
    /// `custom` (`prompt_template`).
    pub preset: VlmServerPreset,
    /// The prompt of the `custom` preset, a minijinja template with `page` (1-based),
    /// `page_count` and `text_layer` (the page's PDF text layer, "" for raster pages); the
    /// answer is taken as Markdown.
    pub prompt_template: String,
    /// How often the server is asked whether it is up (`GET {url}/models`, and `/health` where
    /// it answers), in milliseconds (100–60000). The worker receives no jobs while it is down.
    pub probe_interval_ms: u64,
}

/// Page image encoding for the `openai` engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlmImageFormat {
    Png,
    Jpeg,
}

/// Prompt presets of the `openai` engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlmServerPreset {
    Olmocr,
    Markdown,
    Doctags,
    Custom,
}

impl VlmServerPreset {
    pub fn as_str(self) -> &'static str {
        match self {
            VlmServerPreset::Olmocr => "olmocr",
            VlmServerPreset::Markdown => "markdown",
            VlmServerPreset::Doctags => "doctags",
            VlmServerPreset::Custom => "custom",
        }
    }
}

impl Default for VlmServerSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8000/v1".into(),
            model: String::new(),
            api_key: None,
            api_key_file: None,
            max_in_flight: 32,
            timeout_seconds: 300,
            retries: 5,
            retry_base_delay_ms: 500,
            image_longest_side: 1288,
            image_format: VlmImageFormat::Png,
            jpeg_quality: 90,
            temperature: 0.0,
            max_tokens: 4096,
            extra_body: String::new(),
            preset: VlmServerPreset::Markdown,
            prompt_template: String::new(),
            probe_interval_ms: 2000,
        }
    }
}

impl VlmServerSettings {
    /// The bearer token: `api_key`, else the contents of `api_key_file`.
    pub fn bearer_token(&self) -> Result<Option<Secret>> {
        if let Some(key) = &self.api_key {
            return Ok(Some(key.clone()));
        }
        let Some(path) = &self.api_key_file else { return Ok(None) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::Config(format!("vlm.server.api_key_file {}: {e}", path.display())))?;
        Ok(Some(Secret::new(text.trim())))
    }

    /// `extra_body` parsed (empty: no fields).
    pub fn extra_body_fields(&self) -> std::result::Result<serde_json::Map<String, serde_json::Value>, String> {
        if self.extra_body.trim().is_empty() {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_str::<serde_json::Value>(&self.extra_body) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(other) => Err(format!("must be a JSON object, got {other}")),
            Err(e) => Err(format!("is not JSON: {e}")),
        }
    }

    fn validate(&self, fail: &Fail) -> Result<()> {
        let url = self.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            return fail(
                "vlm.server.url",
                format!("must be an http(s) URL such as http://127.0.0.1:8000/v1, got `{}`", self.url),
            );
        }
        if !(1..=4096).contains(&self.max_in_flight) {
            return fail("vlm.server.max_in_flight", format!("must be 1–4096, got {}", self.max_in_flight));
        }
        if !(1..=3600).contains(&self.timeout_seconds) {
            return fail("vlm.server.timeout_seconds", format!("must be 1–3600, got {}", self.timeout_seconds));
        }
        if self.retries > 20 {
            return fail("vlm.server.retries", format!("must be 0–20, got {}", self.retries));
        }
        if !(1..=60_000).contains(&self.retry_base_delay_ms) {
            return fail(
                "vlm.server.retry_base_delay_ms",
                format!("must be 1–60000, got {}", self.retry_base_delay_ms),
            );
        }
        if !(64..=8192).contains(&self.image_longest_side) {
            return fail("vlm.server.image_longest_side", format!("must be 64–8192, got {}", self.image_longest_side));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return fail("vlm.server.jpeg_quality", format!("must be 1–100, got {}", self.jpeg_quality));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return fail("vlm.server.temperature", format!("must be 0–2, got {}", self.temperature));
        }
        if let Err(why) = self.extra_body_fields() {
            return fail("vlm.server.extra_body", why);
        }
        if !(100..=60_000).contains(&self.probe_interval_ms) {
            return fail("vlm.server.probe_interval_ms", format!("must be 100–60000, got {}", self.probe_interval_ms));
        }
        if self.api_key.is_some() && self.api_key_file.is_some() {
            return fail(
                "vlm.server.api_key_file",
                "set vlm.server.api_key or vlm.server.api_key_file, not both".into(),
            );
        }
        if let Some(path) = &self.api_key_file
            && !path.is_file()
        {
            return fail("vlm.server.api_key_file", format!("{} is not a file", path.display()));
        }
        match (self.preset, self.prompt_template.trim().is_empty()) {
            (VlmServerPreset::Custom, true) => {
                fail("vlm.server.prompt_template", "vlm.server.preset = \"custom\" needs a prompt template".into())
            }
            (VlmServerPreset::Custom, false) => Ok(()),
            (p, false) => fail(
                "vlm.server.prompt_template",
                format!("only the custom preset reads a template (vlm.server.preset is `{}`)", p.as_str()),
            ),
            _ => Ok(()),
        }
    }
}

/// A published ONNX variant: the file-name suffix transformers.js gives each graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VlmDtype {
    Auto,
    Fp32,
    Fp16,
    Q4,
    Q4f16,
    Int8,
    Uint8,
    Quantized,
    Bnb4,
}

impl VlmDtype {
    /// Every concrete variant (not `auto`), fp32 first.
    pub const ALL: [VlmDtype; 8] = [
        VlmDtype::Fp32,
        VlmDtype::Fp16,
        VlmDtype::Q4,
        VlmDtype::Q4f16,
        VlmDtype::Int8,
        VlmDtype::Uint8,
        VlmDtype::Quantized,
        VlmDtype::Bnb4,
    ];

    /// The name as written in config and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            VlmDtype::Auto => "auto",
            VlmDtype::Fp32 => "fp32",
            VlmDtype::Fp16 => "fp16",
            VlmDtype::Q4 => "q4",
            VlmDtype::Q4f16 => "q4f16",
            VlmDtype::Int8 => "int8",
            VlmDtype::Uint8 => "uint8",
            VlmDtype::Quantized => "quantized",
            VlmDtype::Bnb4 => "bnb4",
        }
    }

    /// The file name of `graph` (e.g. `vision_encoder`) in this variant, relative to the
    /// repository: `onnx/vision_encoder_fp16.onnx`; fp32 is `onnx/vision_encoder.onnx`.
    /// `auto` must be resolved first ([`VlmDtype::resolve`]).
    pub fn file_name(self, graph: &str) -> String {
        match self {
            VlmDtype::Fp32 | VlmDtype::Auto => format!("onnx/{graph}.onnx"),
            other => format!("onnx/{graph}_{}.onnx", other.as_str()),
        }
    }

    /// The concrete variant for `auto`: fp16 when `gpu` and `has_fp16` (the repository or
    /// directory holds the fp16 graphs), else fp32; a concrete variant is returned as is.
    pub fn resolve(self, gpu: bool, has_fp16: bool) -> VlmDtype {
        match self {
            VlmDtype::Auto if gpu && has_fp16 => VlmDtype::Fp16,
            VlmDtype::Auto => VlmDtype::Fp32,
            other => other,
        }
    }

    /// Which variant, if any, a repository file `path` under `onnx/` belongs to; `None` for
    /// files outside `onnx/` or not ending in `.onnx` / `.onnx_data` (those every variant
    /// shares or none needs).
    pub fn of_file(path: &str) -> Option<VlmDtype> {
        let name = path.strip_prefix("onnx/")?;
        let stem = name.strip_suffix(".onnx").or_else(|| name.strip_suffix(".onnx_data"))?;
        // No `_<dtype>` suffix ends another (`_q4f16` does not end in `_fp16` or `_q4`), so the
        // order of the check does not matter.
        let suffixed = VlmDtype::ALL[1..]
            .iter()
            .copied()
            .find(|d| stem.strip_suffix(d.as_str()).is_some_and(|rest| rest.ends_with('_')));
        Some(suffixed.unwrap_or(VlmDtype::Fp32))
    }
}

/// Which decoder files of an optimum export the `vlm` pipeline loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlmDecoderLayout {
    Auto,
    Merged,
    Split,
}

impl Default for VlmSettings {
    fn default() -> Self {
        Self {
            decoder: VlmDecoderLayout::Auto,
            batch_size: 4,
            max_new_tokens: 0,
            max_new_tokens_limit: 4096,
            prompt: String::new(),
            pdf_dpi: 150.0,
            batch_across_jobs: None,
            cache_on_device: None,
            batch_max_wait_ms: 0,
            dtype: VlmDtype::Auto,
            engine: VlmEngineKind::Ort,
            server: VlmServerSettings::default(),
            max_pixels: 0,
        }
    }
}

impl VlmSettings {
    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if !(1..=64).contains(&self.batch_size) {
            return fail("vlm.batch_size", format!("must be 1–64, got {}", self.batch_size));
        }
        if self.batch_max_wait_ms > 1000 {
            return fail("vlm.batch_max_wait_ms", format!("must be 0–1000, got {}", self.batch_max_wait_ms));
        }
        if self.max_new_tokens_limit == 0 {
            return fail("vlm.max_new_tokens_limit", "must be at least 1".into());
        }
        if self.max_new_tokens > self.max_new_tokens_limit {
            return fail(
                "vlm.max_new_tokens",
                format!(
                    "must not exceed vlm.max_new_tokens_limit ({}), got {}",
                    self.max_new_tokens_limit, self.max_new_tokens
                ),
            );
        }
        if !(18.0..=600.0).contains(&self.pdf_dpi) {
            return fail("vlm.pdf_dpi", format!("must be 18–600, got {}", self.pdf_dpi));
        }
        if self.engine == VlmEngineKind::Openai {
            self.server.validate(fail)?;
        }
        if self.max_pixels != 0 && self.max_pixels < 28 * 28 {
            return fail(
                "vlm.max_pixels",
                format!("must be 0 (the model's) or at least 784 (one image token), got {}", self.max_pixels),
            );
        }
        Ok(())
    }
}

/// A model a user can name in `models.vlm.repo_id` and nothing else: where its ONNX graphs are
/// published and the settings its model card uses (docs/vlm.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlmPreset {
    /// The repository ids that select the preset (the model's own and its ONNX export's).
    pub repo_ids: &'static [&'static str],
    /// The repository holding the transformers.js layout (`onnx/<graph>_<dtype>.onnx`).
    pub onnx_repo: &'static str,
    /// Task prompt for jobs that give none.
    pub prompt: &'static str,
    /// Token limit per page (a DocTags page is long).
    pub max_new_tokens: usize,
}

/// The presets: granite-docling, SmolDocling and SmolVLM (Idefics3); Qwen2-VL-2B and
/// Qwen2.5-VL-3B (Qwen2-VL); Florence-2-base and -large (Florence-2).
pub const VLM_PRESETS: &[VlmPreset] = &[
    VlmPreset {
        repo_ids: &["ibm-granite/granite-docling-258M", "onnx-community/granite-docling-258M-ONNX"],
        onnx_repo: "onnx-community/granite-docling-258M-ONNX",
        prompt: "Convert this page to docling.",
        max_new_tokens: 8192,
    },
    VlmPreset {
        repo_ids: &[
            "ds4sd/SmolDocling-256M-preview",
            "docling-project/SmolDocling-256M-preview",
            "onnx-community/SmolDocling-256M-preview-ONNX",
        ],
        onnx_repo: "ds4sd/SmolDocling-256M-preview",
        prompt: "Convert this page to docling.",
        max_new_tokens: 8192,
    },
    VlmPreset {
        repo_ids: &["HuggingFaceTB/SmolVLM-256M-Instruct"],
        onnx_repo: "HuggingFaceTB/SmolVLM-256M-Instruct",
        prompt: "Convert this page to text.",
        max_new_tokens: 2048,
    },
    VlmPreset {
        repo_ids: &["HuggingFaceTB/SmolVLM-500M-Instruct"],
        onnx_repo: "HuggingFaceTB/SmolVLM-500M-Instruct",
        prompt: "Convert this page to text.",
        max_new_tokens: 2048,
    },
    // The Qwen2-VL family (docs/vlm.md): the Qwen repositories publish safetensors only.
    VlmPreset {
        repo_ids: &["Qwen/Qwen2-VL-2B-Instruct", "onnx-community/Qwen2-VL-2B-Instruct"],
        onnx_repo: "onnx-community/Qwen2-VL-2B-Instruct",
        prompt: QWEN_OCR_PROMPT,
        max_new_tokens: 2048,
    },
    VlmPreset {
        repo_ids: &["Qwen/Qwen2.5-VL-3B-Instruct", "onnx-community/Qwen2.5-VL-3B-Instruct-ONNX"],
        onnx_repo: "onnx-community/Qwen2.5-VL-3B-Instruct-ONNX",
        prompt: QWEN_OCR_PROMPT,
        max_new_tokens: 2048,
    },
    // Florence-2 (docs/vlm.md): `vlm.prompt` is the default task token; the model card's token limit.
    VlmPreset {
        repo_ids: &["microsoft/Florence-2-base", "onnx-community/Florence-2-base"],
        onnx_repo: "onnx-community/Florence-2-base",
        prompt: FLORENCE_DEFAULT_TASK,
        max_new_tokens: 1024,
    },
    VlmPreset {
        repo_ids: &["microsoft/Florence-2-large", "onnx-community/Florence-2-large"],
        onnx_repo: "onnx-community/Florence-2-large",
        prompt: FLORENCE_DEFAULT_TASK,
        max_new_tokens: 1024,
    },
];

/// The Florence-2 presets' default task: plain reading.
const FLORENCE_DEFAULT_TASK: &str = "<OCR>";

/// The Qwen2-VL presets' task prompt: plain reading, as the Qwen model cards' OCR examples ask.
const QWEN_OCR_PROMPT: &str = "Read all the text in the image.";

impl VlmPreset {
    /// The preset `repo_id` names, if any.
    pub fn for_repo(repo_id: &str) -> Option<&'static VlmPreset> {
        VLM_PRESETS.iter().find(|p| p.repo_ids.iter().any(|r| r.eq_ignore_ascii_case(repo_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::VlmDtype;

    fn load(vars: &[(&str, &str)]) -> crate::Result<crate::config::Loaded> {
        let map: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = config::Environment::with_prefix(crate::config::ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(map));
        crate::config::load_with_env(
            &crate::config::LoadOptions { profile: Some("local-dev".into()), config_file: None },
            env,
        )
    }

    #[test]
    fn the_openai_engine_loads_validates_and_redacts_its_key() {
        let loaded = load(&[
            ("DOCFLEET__VLM__ENGINE", "openai"),
            ("DOCFLEET__VLM__SERVER__URL", "http://127.0.0.1:9000/v1"),
            ("DOCFLEET__VLM__SERVER__API_KEY", "sk-very-secret-key"),
            ("DOCFLEET__VLM__SERVER__PRESET", "olmocr"),
            ("DOCFLEET__VLM__SERVER__EXTRA_BODY", r#"{"top_k": 1}"#),
        ])
        .unwrap();
        let s = &loaded.settings.vlm.server;
        assert_eq!(loaded.settings.vlm.engine, super::VlmEngineKind::Openai);
        assert_eq!((s.max_in_flight, s.image_longest_side), (32, 1288));
        assert_eq!(s.bearer_token().unwrap().unwrap().expose(), "sk-very-secret-key");
        assert_eq!(s.extra_body_fields().unwrap()["top_k"], 1);
        let shown = loaded.to_toml();
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("api_key = \"<redacted>\""), "{shown}");
        assert!(!format!("{:?}", loaded.settings).contains("sk-very-secret"));

        let bad = |k: &str, v: &str| {
            let e = load(&[("DOCFLEET__VLM__ENGINE", "openai"), (k, v)]).unwrap_err().to_string();
            assert!(e.contains(&k.trim_start_matches("DOCFLEET__").replace("__", ".").to_lowercase()), "{e}");
        };
        bad("DOCFLEET__VLM__SERVER__URL", "127.0.0.1:8000");
        bad("DOCFLEET__VLM__SERVER__MAX_IN_FLIGHT", "0");
        bad("DOCFLEET__VLM__SERVER__EXTRA_BODY", "[1]");
        bad("DOCFLEET__VLM__SERVER__PRESET", "custom");
        bad("DOCFLEET__VLM__SERVER__IMAGE_LONGEST_SIDE", "10");
        bad("DOCFLEET__VLM__SERVER__API_KEY_FILE", "/nonexistent/key");
        // The server section is checked only for the openai engine.
        assert!(load(&[("DOCFLEET__VLM__SERVER__MAX_IN_FLIGHT", "0")]).is_ok());
    }

    #[test]
    fn the_api_key_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-from-file\n").unwrap();
        let loaded = load(&[
            ("DOCFLEET__VLM__ENGINE", "openai"),
            ("DOCFLEET__VLM__SERVER__API_KEY_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(loaded.settings.vlm.server.bearer_token().unwrap().unwrap().expose(), "sk-from-file");
    }

    #[test]
    fn dtype_file_names_follow_the_transformers_js_layout() {
        assert_eq!(VlmDtype::Fp32.file_name("vision_encoder"), "onnx/vision_encoder.onnx");
        assert_eq!(VlmDtype::Q4f16.file_name("embed_tokens"), "onnx/embed_tokens_q4f16.onnx");
        for d in VlmDtype::ALL {
            assert_eq!(VlmDtype::of_file(&d.file_name("decoder_model_merged")), Some(d), "{d:?}");
        }
        assert_eq!(VlmDtype::of_file("onnx/decoder_model_merged_fp16.onnx_data"), Some(VlmDtype::Fp16));
        assert_eq!(VlmDtype::of_file("config.json"), None);
        assert_eq!(VlmDtype::of_file("onnx/README.md"), None);
        assert_eq!(VlmDtype::Auto.resolve(true, true), VlmDtype::Fp16);
        assert_eq!(VlmDtype::Auto.resolve(true, false), VlmDtype::Fp32);
        assert_eq!(VlmDtype::Auto.resolve(false, true), VlmDtype::Fp32);
        assert_eq!(VlmDtype::Int8.resolve(true, true), VlmDtype::Int8);
    }

    #[test]
    fn florence_presets_name_the_onnx_community_exports() {
        let p = super::VlmPreset::for_repo("microsoft/Florence-2-large").unwrap();
        assert_eq!((p.onnx_repo, p.prompt, p.max_new_tokens), ("onnx-community/Florence-2-large", "<OCR>", 1024));
        let loaded = load(&[("DOCFLEET__MODELS__VLM__REPO_ID", "microsoft/Florence-2-base")]).unwrap();
        let s = &loaded.settings;
        assert_eq!(s.models.vlm.repo_id, "onnx-community/Florence-2-base");
        assert_eq!((s.vlm.prompt.as_str(), s.vlm.max_new_tokens), ("<OCR>", 1024));
        assert!(loaded.warnings.iter().any(|w| w.contains("onnx-community/Florence-2-base")), "{:?}", loaded.warnings);
        // What the user sets wins over the preset.
        let loaded = load(&[
            ("DOCFLEET__MODELS__VLM__REPO_ID", "onnx-community/Florence-2-base"),
            ("DOCFLEET__VLM__PROMPT", "<OCR_WITH_REGION>"),
            ("DOCFLEET__VLM__DTYPE", "int8"),
        ])
        .unwrap();
        assert_eq!(loaded.settings.vlm.prompt, "<OCR_WITH_REGION>");
        assert_eq!(loaded.settings.models.vlm.onnx_variant.map(|v| v.dtype), Some(VlmDtype::Int8));
    }

    #[test]
    fn qwen_presets_and_max_pixels() {
        use super::{VlmPreset, VlmSettings};
        let p = VlmPreset::for_repo("qwen/qwen2-vl-2b-instruct").unwrap();
        assert_eq!(p.onnx_repo, "onnx-community/Qwen2-VL-2B-Instruct");
        let p = VlmPreset::for_repo("onnx-community/Qwen2.5-VL-3B-Instruct-ONNX").unwrap();
        assert_eq!(p.onnx_repo, "onnx-community/Qwen2.5-VL-3B-Instruct-ONNX");
        let check = |max_pixels: u64| {
            let s = VlmSettings { max_pixels, ..VlmSettings::default() };
            s.validate(&|key: &str, why: String| Err(crate::Error::Config(format!("{key} {why}"))))
        };
        assert!(check(0).is_ok() && check(784).is_ok() && check(1 << 24).is_ok());
        let err = check(100).unwrap_err().to_string();
        assert!(err.contains("vlm.max_pixels") && err.contains("784"), "{err}");
    }
}
