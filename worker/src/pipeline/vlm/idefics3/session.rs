//! The three graphs of a transformers.js / onnx-community Idefics3 export, their inputs and
//! outputs read from the sessions: `vision_encoder` (`pixel_values` [batch, images, 3, H, W],
//! `pixel_attention_mask` bool → `image_features` [images, image_seq_len, hidden]),
//! `embed_tokens` (`input_ids` → `inputs_embeds`) and `decoder_model_merged` (`inputs_embeds`,
//! `attention_mask`, `position_ids`, `past_key_values.{i}.key/value` → `logits`,
//! `present.{i}.key/value`). Float inputs may be f32 or f16 (the fp16 variants); caches take the
//! decoder's own element type. The Qwen2-VL family's graphs have the same names with two
//! differences read from the sessions too: the vision encoder takes `pixel_values`
//! [patches, 3·2·14·14] and an i64 grid (`grid_thw` or `image_grid_thw`) [images, 3] instead of
//! the pixel mask, and the decoder's `position_ids` are [3, batch, seq] (multimodal rotary).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use docfleet_core::config::VlmDtype;
use docfleet_core::{Error, Result};
use ort::session::{HasSelectedOutputs, RunOptions, Session};
use ort::value::{TensorElementType, ValueType};

use crate::pipeline::vlm::cache::{CacheDevice, Preallocated};
use crate::runtime::Runtime;

pub const GRAPHS: [&str; 3] = ["vision_encoder", "embed_tokens", "decoder_model_merged"];

pub use crate::pipeline::vlm::tensors::{Float, keep_rows, read_f32};

/// One session, run one call at a time.
pub struct Graph {
    pub file: String,
    session: Mutex<Session>,
}

impl Graph {
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One `past_key_values.<name>` input and the `present.<name>` output that feeds it.
#[derive(Debug, Clone)]
pub struct CacheSlot {
    pub name: String,
    pub heads: usize,
    pub head_dim: usize,
}

/// What a decoder input is fed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderInput {
    InputsEmbeds,
    AttentionMask,
    PositionIds,
    Past(usize),
}

pub struct Sessions {
    pub dtype: VlmDtype,
    pub vision: Graph,
    pub pixel_type: Float,
    /// Whether the vision encoder takes `pixel_attention_mask`.
    pub vision_mask: bool,
    /// The vision encoder's i64 image grid input (`grid_thw` / `image_grid_thw`), if it has one.
    pub vision_grid: Option<String>,
    pub vision_output: String,
    pub embed: Graph,
    pub embed_output: String,
    pub decoder: Graph,
    pub decoder_inputs: Vec<DecoderInput>,
    /// Rank of `position_ids`: 2 ([batch, seq]) or 3 ([3, batch, seq], multimodal rotary).
    pub position_rank: usize,
    /// The decoder's float type (`inputs_embeds` and the caches).
    pub decoder_type: Float,
    pub slots: Vec<CacheSlot>,
    /// Index of `present.<slot name>` → slot, by output name.
    pub presents: Vec<(String, usize)>,
    /// Where the cache outputs live between steps; `None`: onnxruntime's default (host memory).
    pub cache_device: Option<CacheDevice>,
}

fn tensor_type(t: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match t {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

impl Sessions {
    /// Open the three graphs of variant `dtype` under the snapshot root `root`.
    pub fn load(runtime: &Runtime, root: &Path, dtype: VlmDtype, id: &str) -> Result<Self> {
        let open = |graph: &str| -> Result<Graph> {
            let file = dtype.file_name(graph);
            let path = root.join(&file);
            if !path.is_file() {
                return Err(Error::Model(format!(
                    "{} is missing: the vlm pipeline needs {} (vlm.dtype = {})",
                    path.display(),
                    GRAPHS.map(|g| dtype.file_name(g)).join(", "),
                    dtype.as_str()
                )));
            }
            let session = runtime.session(&path, &format!("{id}/{file}"))?;
            Ok(Graph { file, session: Mutex::new(session) })
        };
        let (vision, embed, decoder) = (open(GRAPHS[0])?, open(GRAPHS[1])?, open(GRAPHS[2])?);

        // vision_encoder
        let (mut pixel_type, mut vision_mask, mut vision_grid) = (None, false, None);
        let vision_output = {
            let s = vision.lock();
            for input in s.inputs() {
                let (ty, _) = tensor_type(input.dtype()).unwrap_or((TensorElementType::Undefined, vec![]));
                match input.name() {
                    "pixel_values" => {
                        pixel_type = Float::of(ty);
                        if pixel_type.is_none() {
                            return Err(Error::Model(format!("{}: `pixel_values` is {ty:?}", vision.file)));
                        }
                    }
                    "pixel_attention_mask" if ty == TensorElementType::Bool => vision_mask = true,
                    "grid_thw" | "image_grid_thw" if ty == TensorElementType::Int64 => {
                        vision_grid = Some(input.name().to_owned())
                    }
                    other => {
                        return Err(Error::Model(format!(
                            "{}: input `{other}` ({ty:?}) is not one this pipeline feeds (pixel_values, bool \
                             pixel_attention_mask, i64 grid_thw / image_grid_thw)",
                            vision.file
                        )));
                    }
                }
            }
            let out = s.outputs().iter().find(|o| o.name() == "image_features").or_else(|| s.outputs().first());
            out.map(|o| o.name().to_owned()).ok_or_else(|| Error::Model(format!("{} has no output", vision.file)))?
        };
        let pixel_type: Float =
            pixel_type.ok_or_else(|| Error::Model(format!("{} has no `pixel_values` input", vision.file)))?;

        // embed_tokens
        let embed_output = {
            let s = embed.lock();
            let names: Vec<&str> = s.inputs().iter().map(|i| i.name()).collect();
            if names != ["input_ids"] {
                return Err(Error::Model(format!("{} takes {names:?}; expected [\"input_ids\"]", embed.file)));
            }
            let out = s.outputs().iter().find(|o| o.name() == "inputs_embeds").or_else(|| s.outputs().first());
            out.map(|o| o.name().to_owned()).ok_or_else(|| Error::Model(format!("{} has no output", embed.file)))?
        };

        // decoder_model_merged
        let (decoder_inputs, decoder_type, slots, presents, position_rank) = {
            let s = decoder.lock();
            let fail = |why: String| Error::Model(format!("{}: {why}", decoder.file));
            let mut inputs = Vec::new();
            let mut slots: Vec<CacheSlot> = Vec::new();
            let mut float = None;
            let mut position_rank = 2;
            for input in s.inputs() {
                let name = input.name();
                let (ty, shape) =
                    tensor_type(input.dtype()).ok_or_else(|| fail(format!("`{name}` is not a tensor")))?;
                let role = match name {
                    "inputs_embeds" => {
                        float = Some(Float::of(ty).ok_or_else(|| fail(format!("`inputs_embeds` is {ty:?}")))?);
                        DecoderInput::InputsEmbeds
                    }
                    "attention_mask" | "position_ids" if ty != TensorElementType::Int64 => {
                        return Err(fail(format!("`{name}` is {ty:?}, expected Int64")));
                    }
                    "attention_mask" => DecoderInput::AttentionMask,
                    "position_ids" => {
                        position_rank = shape.len();
                        if !(2..=3).contains(&position_rank) {
                            return Err(fail(format!("`position_ids` has rank {position_rank}, expected 2 or 3")));
                        }
                        DecoderInput::PositionIds
                    }
                    _ if name.starts_with("past_key_values.") => {
                        let dim = |i: usize| shape.get(i).copied().filter(|&d| d > 0).map(|d| d as usize);
                        let (Some(heads), Some(head_dim)) = (dim(1), dim(3)) else {
                            return Err(fail(format!("cannot tell heads and head size of `{name}` from {shape:?}")));
                        };
                        slots.push(CacheSlot { name: name["past_key_values.".len()..].to_owned(), heads, head_dim });
                        DecoderInput::Past(slots.len() - 1)
                    }
                    _ => {
                        return Err(fail(format!(
                            "takes input `{name}`, which this pipeline does not know how to feed"
                        )));
                    }
                };
                inputs.push(role);
            }
            let float = float.ok_or_else(|| fail("no `inputs_embeds` input".into()))?;
            if !inputs.contains(&DecoderInput::AttentionMask) {
                return Err(fail("no `attention_mask` input".into()));
            }
            if slots.is_empty() {
                return Err(fail("takes no past_key_values inputs (an export without KV cache)".into()));
            }
            if !s.outputs().iter().any(|o| o.name() == "logits") {
                return Err(fail("has no `logits` output".into()));
            }
            let mut presents = Vec::new();
            for (i, slot) in slots.iter().enumerate() {
                let out = format!("present.{}", slot.name);
                if !s.outputs().iter().any(|o| o.name() == out) {
                    return Err(fail(format!("takes past_key_values.{} but has no {out} output", slot.name)));
                }
                presents.push((out, i));
            }
            (inputs, float, slots, presents, position_rank)
        };
        Ok(Self {
            dtype,
            vision,
            pixel_type,
            vision_mask,
            vision_grid,
            vision_output,
            embed,
            embed_output,
            decoder,
            decoder_inputs,
            position_rank,
            decoder_type,
            slots,
            presents,
            cache_device: None,
        })
    }

    /// Keep the decoder's cache outputs on the execution provider's device between steps.
    pub fn keep_cache_on_device(&mut self, runtime: &Runtime) -> Result<()> {
        self.cache_device = Some(CacheDevice::new(&self.decoder.lock(), &self.decoder.file, runtime)?);
        Ok(())
    }

    /// With the cache on a device: run options with every `present.*` output of a step over
    /// `rows` rows and `total` positions (past + this step's) preallocated there.
    pub fn cache_options(&self, rows: usize, total: usize) -> Result<Option<RunOptions<HasSelectedOutputs>>> {
        let Some(device) = &self.cache_device else { return Ok(None) };
        let outputs = self.presents.iter().map(|(name, slot)| {
            let slot = &self.slots[*slot];
            Preallocated { name, float: self.decoder_type, shape: [rows, slot.heads, total, slot.head_dim] }
        });
        device.run_options(&self.decoder.file, outputs, &[]).map(Some)
    }
}
