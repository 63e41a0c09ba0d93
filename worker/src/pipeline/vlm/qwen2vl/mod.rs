//! The Qwen2-VL family (Qwen2-VL, Qwen2.5-VL and their fine-tunes: olmOCR, Nanonets-OCR, ...) in
//! the `vlm` pipeline, from an onnx-community / transformers.js export. It runs on the
//! decoder-only engine of [`super::idefics3`] (sessions, KV cache, left-padded batches, stop
//! rules, result format); what the family adds is its preprocessing ([`preprocess`]:
//! `Qwen2VLImageProcessor`), its prompt (the chat template's `<|image_pad|>` expanded to one token
//! per merged patch) and its multimodal rotary positions ([`rope_index`], `get_rope_index`).

pub mod preprocess;
#[cfg(test)]
mod tests;

use docfleet_core::{Error, Result};
use serde_json::Value;

use self::preprocess::{Patches, QwenProcessor};
use super::idefics3::generate::{MRope, PageInput, VisionInput};
use super::tokenizer::Tokenizer;

/// The `model_type`s of `config.json` this family answers to.
pub const MODEL_TYPES: [&str; 2] = ["qwen2_vl", "qwen2_5_vl"];
/// The image placeholder of the chat template, expanded per page.
pub const IMAGE_PAD: &str = "<|image_pad|>";
pub const VISION_START: &str = "<|vision_start|>";

/// Whether `config.json` says this family.
pub fn is_qwen2vl(config: &Value) -> bool {
    config.get("model_type").and_then(Value::as_str).is_some_and(|t| MODEL_TYPES.contains(&t))
}

/// What the family needs beside the shared engine.
#[derive(Debug, Clone)]
pub struct QwenVision {
    /// The model's processor with `vlm.max_pixels` applied.
    pub processor: QwenProcessor,
    /// The model's own `max_pixels`, for result records.
    pub model_max_pixels: u64,
    pub image_token_id: i64,
    pub model_type: String,
}

impl QwenVision {
    /// From the model's `config.json`, its processor config and the tokenizer; `max_pixels`:
    /// `vlm.max_pixels` (0: the model's).
    pub fn load(config: &Value, processor: &std::path::Path, tokenizer: &Tokenizer, max_pixels: u64) -> Result<Self> {
        let model = QwenProcessor::load(processor)?;
        for token in [IMAGE_PAD, VISION_START] {
            if tokenizer.token_id(token).is_none() {
                return Err(Error::Model(format!("the tokenizer has no {token} token (a Qwen2-VL model needs it)")));
            }
        }
        let image_token_id = match config.get("image_token_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => tokenizer.token_id(IMAGE_PAD).unwrap_or_default(),
        };
        let merge = config.pointer("/vision_config/spatial_merge_size").and_then(Value::as_u64);
        if merge.is_some_and(|m| m != model.merge_size as u64) {
            return Err(Error::Model(format!(
                "vision_config.spatial_merge_size {merge:?} differs from the processor's merge_size {}",
                model.merge_size
            )));
        }
        Ok(Self {
            processor: model.capped(max_pixels),
            model_max_pixels: model.max_pixels,
            image_token_id,
            model_type: config.get("model_type").and_then(Value::as_str).unwrap_or("qwen2_vl").to_owned(),
        })
    }

    /// One page's generation input: its patches, the rendered chat with the image expanded,
    /// tokenized, and the rotary positions.
    pub fn page_input(
        &self,
        img: &image::RgbImage,
        rendered: &str,
        tokenizer: &Tokenizer,
    ) -> Result<(PageInput, Patches)> {
        let patches = preprocess::patches(img, &self.processor)?;
        let expanded = expand(rendered, &[patches.tokens(self.processor.merge_size)])?;
        let prompt = tokenizer.encode(&expanded, true)?;
        let rope = rope_index(&prompt, &[patches.grid], self.image_token_id, self.processor.merge_size as i64)?;
        let input = PageInput {
            prompt,
            pixels: patches.pixels.clone(),
            vision: VisionInput::Patches { grid: patches.grid, patch_dim: patches.patch_dim },
            rope: Some(rope),
        };
        Ok((input, patches))
    }
}

/// `Qwen2VLProcessor`'s expansion: the i-th `<|image_pad|>` of `rendered` becomes `tokens[i]` of them.
pub fn expand(rendered: &str, tokens: &[usize]) -> Result<String> {
    let parts: Vec<&str> = rendered.split(IMAGE_PAD).collect();
    if parts.len() != tokens.len() + 1 {
        return Err(Error::InvalidJob(format!(
            "the rendered prompt has {} {IMAGE_PAD} placeholders for {} image(s)",
            parts.len() - 1,
            tokens.len()
        )));
    }
    let mut out = String::with_capacity(rendered.len() + tokens.iter().sum::<usize>() * IMAGE_PAD.len());
    for (i, part) in parts.iter().enumerate() {
        out.push_str(part);
        if let Some(&n) = tokens.get(i) {
            out.push_str(&IMAGE_PAD.repeat(n));
        }
    }
    Ok(out)
}

/// `get_rope_index` for one unpadded prompt with images of `grids` (`[t, h, w]` in patches):
/// text runs count up on all three axes; an image's tokens sit on their (t, h / merge,
/// w / merge) grid offset by the position after the text before them; text after an image
/// continues from the largest position + 1.
pub fn rope_index(ids: &[i64], grids: &[[i64; 3]], image_token_id: i64, merge: i64) -> Result<MRope> {
    let len = ids.len();
    let mut axes: [Vec<i64>; 3] = [Vec::with_capacity(len), Vec::with_capacity(len), Vec::with_capacity(len)];
    let (mut st, mut next) = (0usize, 0i64);
    for grid in grids {
        let Some(ed) = ids[st..].iter().position(|&t| t == image_token_id).map(|k| st + k) else {
            return Err(Error::InvalidJob("the prompt has fewer image tokens than images".into()));
        };
        for k in 0..(ed - st) as i64 {
            for axis in &mut axes {
                axis.push(next + k);
            }
        }
        let offset = next + (ed - st) as i64;
        let (t, h, w) = (grid[0], grid[1] / merge, grid[2] / merge);
        for ti in 0..t {
            for hi in 0..h {
                for wi in 0..w {
                    axes[0].push(offset + ti);
                    axes[1].push(offset + hi);
                    axes[2].push(offset + wi);
                }
            }
        }
        next = axes.iter().filter_map(|a| a.iter().max()).max().map_or(0, |m| m + 1);
        st = ed + (t * h * w) as usize;
        if st > len || ids[ed..st].iter().any(|&x| x != image_token_id) {
            return Err(Error::InvalidJob("an image's tokens do not match its grid".into()));
        }
    }
    for k in 0..(len - st) as i64 {
        for axis in &mut axes {
            axis.push(next + k);
        }
    }
    let next = axes.iter().filter_map(|a| a.iter().max()).max().map_or(0, |m| m + 1);
    let [t, h, w] = axes;
    Ok(MRope { positions: [t, h, w].concat(), next })
}
