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
        Ok(())
    }
}
