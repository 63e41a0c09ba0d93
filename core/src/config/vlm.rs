//! `[vlm]`: the `vlm` pipeline.

use serde::{Deserialize, Serialize};

use super::Fail;
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
    /// decoder start token alone.
    pub prompt: String,
    /// Resolution at which PDF pages are rasterised, in dots per inch (18–600).
    pub pdf_dpi: f32,
    /// Generate pages from different jobs in flight together: pages with the same prompt and
    /// token limit (every page has the processor's size) share one generation batch of up to
    /// `batch_size`, one batch at a time. Off: each job generates its own pages, jobs side by
    /// side. Unset: on with a GPU execution provider, off on CPU.
    pub batch_across_jobs: Option<bool>,
    /// How long a batch with room waits for more pages to merge, in milliseconds (0–1000).
    pub batch_max_wait_ms: u64,
    /// Which variant of a transformers.js / onnx-community export to load (and download):
    /// `auto` (fp16 on a GPU execution provider where the repository has it, else fp32), `fp32`,
    /// `fp16`, `q4`, `q4f16`, `int8`, `uint8`, `quantized` or `bnb4` — the suffix of
    /// `onnx/<graph>_<dtype>.onnx` (fp32 has none).
    pub dtype: VlmDtype,
    /// Qwen2-VL family: most pixels a page is resized to (the processor's `max_pixels`, lowered
    /// per deployment; 0: the model's own). Image tokens per page are pixels / 784 (28 × 28 per
    /// token), the cost driver; a larger page is scaled down, never refused. At least 784.
    pub max_pixels: u64,
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
            batch_max_wait_ms: 0,
            dtype: VlmDtype::Auto,
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
/// Qwen2.5-VL-3B (Qwen2-VL).
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
];

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
