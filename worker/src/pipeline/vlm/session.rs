//! The encoder and decoder sessions of an optimum export and what each of their inputs and
//! outputs is for, read from the sessions themselves: `pixel_values` → `last_hidden_state`;
//! `input_ids`, `encoder_hidden_states`, optional `use_cache_branch` and attention masks, and
//! `past_key_values.<name>` fed from the previous step's `present.<name>` (`…decoder…` entries
//! grow every step, `…encoder…` cross-attention entries are computed once). Either one merged
//! decoder (`decoder_model_merged.onnx`) or a first-step decoder and a with-past decoder.
//!
//! The decoders ([`Decoders`]) stand alone, so families whose encoder side is more than one
//! `pixel_values` graph (Florence-2: vision encoder, token embeddings, text encoder) reuse them and
//! the generation loop; such a decoder may take `inputs_embeds` (fed from the family's
//! `embed_tokens` graph) instead of `input_ids`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use docfleet_core::{Error, Result};
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::cache::CacheDevice;
use super::tensors::Float;
use crate::runtime::Runtime;

/// How the decoder is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `decoder_model_merged.onnx`: one graph, `use_cache_branch` picks the step kind.
    Merged,
    /// `decoder_model.onnx` for the first step, `decoder_with_past_model.onnx` after it.
    Split,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Merged => "merged",
            Layout::Split => "split",
        }
    }

    /// The decoder files, relative to the ONNX folder.
    pub fn decoder_files(self) -> &'static [&'static str] {
        match self {
            Layout::Merged => &["decoder_model_merged.onnx"],
            Layout::Split => &["decoder_model.onnx", "decoder_with_past_model.onnx"],
        }
    }
}

pub const ENCODER_FILE: &str = "encoder_model.onnx";

/// What a decoder input is fed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    InputIds,
    /// The embeddings of the step's tokens (Florence-2's decoder; [`Input::InputIds`] otherwise).
    InputsEmbeds,
    EncoderHiddenStates,
    /// All ones, `batch × encoder positions`.
    EncoderAttentionMask,
    /// All ones, `batch × tokens so far`.
    DecoderAttentionMask,
    /// `[false]` on the first step, `[true]` after it.
    UseCacheBranch,
    /// `past_key_values.<name>`: cache slot (see [`CacheSlot`]).
    Past(usize),
}

/// What a decoder output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Logits,
    /// `present.<name>`: becomes cache slot `usize`.
    Present(usize),
    Unused,
}

/// One key or value cache tensor, `batch × heads × positions × head_dim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSlot {
    /// The part after `past_key_values.` / `present.` (`0.decoder.key`).
    pub name: String,
    /// Cross-attention over the encoder output: computed on the first step, then fed unchanged.
    pub cross: bool,
    pub heads: usize,
    pub head_dim: usize,
    /// Float32, or float16 in a float16 export (Florence-2's `_fp16` graphs).
    pub float: Float,
}

/// A session with its inputs and outputs classified, run one call at a time.
pub struct DecoderSession {
    pub file: String,
    /// The float type of its `inputs_embeds` / `encoder_hidden_states` (float32 unless a float16 export).
    pub float: Float,
    session: Mutex<Session>,
    pub inputs: Vec<Input>,
    pub outputs: HashMap<String, Output>,
}

impl DecoderSession {
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The encoder session.
pub struct EncoderSession {
    pub file: String,
    session: Mutex<Session>,
    pub input: String,
    pub output: String,
}

impl EncoderSession {
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every session of one vision-encoder-decoder model.
pub struct Sessions {
    pub encoder: EncoderSession,
    pub decoders: Decoders,
}

impl Sessions {
    /// Load the sessions from `dir` (the folder holding the ONNX files); `id` prefixes their names.
    pub fn load(runtime: &Runtime, dir: &Path, layout: Layout, id: &str) -> Result<Self> {
        let encoder = runtime.session(&dir.join(ENCODER_FILE), &format!("{id}/{ENCODER_FILE}"))?;
        let (enc_input, enc_output) = encoder_io(&encoder, ENCODER_FILE)?;
        let files: Vec<String> = layout.decoder_files().iter().map(|f| f.to_string()).collect();
        let decoders = Decoders::load(runtime, dir, layout, &files, id)?;
        if !decoders.first.inputs.contains(&Input::InputIds) {
            return Err(Error::Model(format!("{} has no `input_ids` input", decoders.first.file)));
        }
        if decoders.slots.iter().any(|s| s.float != Float::F32) || decoders.first.float != Float::F32 {
            return Err(Error::Model(format!(
                "{}: float16 tensors (only float32 vision-encoder-decoder exports are supported)",
                decoders.first.file
            )));
        }
        Ok(Self {
            encoder: EncoderSession {
                file: ENCODER_FILE.into(),
                session: Mutex::new(encoder),
                input: enc_input,
                output: enc_output,
            },
            decoders,
        })
    }
}

/// The decoder session(s) of an encoder-decoder model and their KV cache slots.
pub struct Decoders {
    pub layout: Layout,
    /// The merged decoder, or `decoder_model.onnx`.
    pub first: DecoderSession,
    /// `decoder_with_past_model.onnx` (split layout).
    pub with_past: Option<DecoderSession>,
    pub slots: Vec<CacheSlot>,
    /// Where the cache outputs live between steps; `None`: onnxruntime's default (host memory).
    pub cache_device: Option<CacheDevice>,
}

impl Decoders {
    /// Open `files` (relative to `dir`: the merged decoder, or the first-step and with-past ones)
    /// and check they fit together; `id` prefixes their names.
    pub fn load(runtime: &Runtime, dir: &Path, layout: Layout, files: &[String], id: &str) -> Result<Self> {
        let open = |file: &str| runtime.session(&dir.join(file), &format!("{id}/{file}"));
        let first = open(&files[0])?;
        let with_past = files.get(1).map(|f| open(f)).transpose()?;
        let mut slots: Vec<CacheSlot> = Vec::new();
        let first = classify(first, &files[0], &mut slots)?;
        let with_past = match with_past {
            Some(s) => Some(classify(s, &files[1], &mut slots)?),
            None => None,
        };
        let decoders = Self { layout, first, with_past, slots, cache_device: None };
        decoders.check()?;
        Ok(decoders)
    }

    /// Keep the cache outputs on the execution provider's device between steps
    /// (`vlm.cache_on_device`).
    pub fn keep_cache_on_device(&mut self, runtime: &Runtime) -> Result<()> {
        let step = self.decoder(false);
        let device = CacheDevice::new(&step.lock(), &step.file, runtime)?;
        self.cache_device = Some(device);
        Ok(())
    }

    /// The session for a step.
    pub fn decoder(&self, first_step: bool) -> &DecoderSession {
        match (&self.with_past, first_step) {
            (Some(with_past), false) => with_past,
            _ => &self.first,
        }
    }

    /// Every cache input must be produced by some step: cross entries by the first step, growing
    /// entries by the session the cache steps run on.
    fn check(&self) -> Result<()> {
        let step = self.decoder(false);
        for (session, needs_cache) in [(&self.first, self.with_past.is_none()), (step, true)] {
            let has = |i: Input| session.inputs.contains(&i);
            if !has(Input::InputIds) && !has(Input::InputsEmbeds) {
                return Err(Error::Model(format!("{} has no `input_ids` (or `inputs_embeds`) input", session.file)));
            }
            if !session.outputs.values().any(|o| *o == Output::Logits) {
                return Err(Error::Model(format!("{} has no `logits` output", session.file)));
            }
            if needs_cache && !session.inputs.iter().any(|i| matches!(i, Input::Past(_))) {
                return Err(Error::Model(format!(
                    "{} takes no past_key_values inputs: an export without KV cache is not supported \
                     (export with optimum's `image-to-text-with-past` task)",
                    session.file
                )));
            }
        }
        if !self.first.inputs.contains(&Input::EncoderHiddenStates) {
            return Err(Error::Model(format!("{} has no `encoder_hidden_states` input", self.first.file)));
        }
        for input in &step.inputs {
            let Input::Past(slot) = *input else { continue };
            let producer = if self.slots[slot].cross { &self.first } else { step };
            if !producer.outputs.values().any(|o| *o == Output::Present(slot)) {
                return Err(Error::Model(format!(
                    "{} takes past_key_values.{} but {} has no present.{} output",
                    step.file, self.slots[slot].name, producer.file, self.slots[slot].name
                )));
            }
        }
        Ok(())
    }
}

fn tensor_type(t: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match t {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

fn encoder_io(session: &Session, file: &str) -> Result<(String, String)> {
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == "pixel_values")
        .or_else(|| (session.inputs().len() == 1).then(|| &session.inputs()[0]))
        .ok_or_else(|| Error::Model(format!("{file} has no `pixel_values` input")))?;
    if session.inputs().len() != 1 {
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        return Err(Error::Model(format!("{file} takes inputs {names:?}; only `pixel_values` is supported")));
    }
    if tensor_type(input.dtype()).map(|t| t.0) != Some(TensorElementType::Float32) {
        return Err(Error::Model(format!(
            "{file}: `{}` is not a float32 tensor (only float32 exports are supported)",
            input.name()
        )));
    }
    let output = session
        .outputs()
        .iter()
        .find(|o| o.name() == "last_hidden_state")
        .or_else(|| session.outputs().first())
        .ok_or_else(|| Error::Model(format!("{file} has no output")))?;
    Ok((input.name().to_owned(), output.name().to_owned()))
}

/// Classify a decoder session's inputs and outputs, adding the cache slots it names to `slots`.
fn classify(session: Session, file: &str, slots: &mut Vec<CacheSlot>) -> Result<DecoderSession> {
    let fail = |why: String| Error::Model(format!("{file}: {why}"));
    // A cache input must tell its heads and head size (the first step feeds empty ones of that
    // shape); an output may leave them open (a first-step decoder's cross-attention `present.*`),
    // to be read from the input of the session that takes it back.
    let slot_for =
        |name: &str, shape: &[i64], float: Float, input: bool, slots: &mut Vec<CacheSlot>| -> Result<usize> {
            let dim = |i: usize| shape.get(i).copied().filter(|&d| d > 0).map(|d| d as usize);
            let known = dim(1).zip(dim(3));
            if let Some(i) = slots.iter().position(|s| s.name == name) {
                if let (Some((heads, head_dim)), 0) = (known, slots[i].heads) {
                    (slots[i].heads, slots[i].head_dim) = (heads, head_dim);
                }
                return Ok(i);
            }
            let (heads, head_dim) = match known {
                Some(k) => k,
                None if !input => (0, 0),
                None => {
                    return Err(fail(format!("cannot tell heads and head size of `{name}` from its shape {shape:?}")));
                }
            };
            slots.push(CacheSlot { name: name.to_owned(), cross: name.contains(".encoder."), heads, head_dim, float });
            Ok(slots.len() - 1)
        };
    let mut float = None;
    let mut inputs = Vec::new();
    for input in session.inputs() {
        let name = input.name();
        let (ty, shape) = tensor_type(input.dtype()).ok_or_else(|| fail(format!("input `{name}` is not a tensor")))?;
        let want = |expected: TensorElementType, role: Input| {
            if ty == expected {
                Ok(role)
            } else {
                Err(fail(format!("input `{name}` is {ty:?}, expected {expected:?}")))
            }
        };
        let role = match name {
            "input_ids" => want(TensorElementType::Int64, Input::InputIds)?,
            "inputs_embeds" | "encoder_hidden_states" => {
                let f =
                    Float::of(ty).ok_or_else(|| fail(format!("input `{name}` is {ty:?}, expected a float tensor")))?;
                if float.is_some_and(|g| g != f) {
                    return Err(fail(format!("input `{name}` is {ty:?}, unlike the other float inputs")));
                }
                float = Some(f);
                if name == "inputs_embeds" { Input::InputsEmbeds } else { Input::EncoderHiddenStates }
            }
            "encoder_attention_mask" => want(TensorElementType::Int64, Input::EncoderAttentionMask)?,
            "decoder_attention_mask" | "attention_mask" => want(TensorElementType::Int64, Input::DecoderAttentionMask)?,
            "use_cache_branch" => want(TensorElementType::Bool, Input::UseCacheBranch)?,
            _ if name.starts_with("past_key_values.") => {
                let f = Float::of(ty).ok_or_else(|| fail(format!("`{name}` is {ty:?}, expected a float tensor")))?;
                Input::Past(slot_for(&name["past_key_values.".len()..], &shape, f, true, slots)?)
            }
            _ => return Err(fail(format!("takes input `{name}`, which this pipeline does not know how to feed"))),
        };
        inputs.push(role);
    }
    let mut outputs = HashMap::new();
    for output in session.outputs() {
        let name = output.name();
        let role = if name == "logits" {
            if tensor_type(output.dtype()).and_then(|t| Float::of(t.0)).is_none() {
                return Err(fail("`logits` is not a float tensor".into()));
            }
            Output::Logits
        } else if let Some(rest) = name.strip_prefix("present.") {
            let (ty, shape) = tensor_type(output.dtype()).unwrap_or((TensorElementType::Float32, Vec::new()));
            let f = Float::of(ty).ok_or_else(|| fail(format!("`{name}` is {ty:?}, expected a float tensor")))?;
            Output::Present(slot_for(rest, &shape, f, false, slots)?)
        } else {
            Output::Unused
        };
        outputs.insert(name.to_owned(), role);
    }
    let float = float.unwrap_or(Float::F32);
    Ok(DecoderSession { file: file.to_owned(), float, session: Mutex::new(session), inputs, outputs })
}
