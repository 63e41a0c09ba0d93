//! Decoder-only greedy generation for a batch of pages, as `transformers`' `generate` does it for
//! `Idefics3ForConditionalGeneration` and `Qwen2VLForConditionalGeneration` /
//! `Qwen2_5_VLForConditionalGeneration` with `num_beams=1, do_sample=False` and left padding: each
//! page's tiles through the vision encoder; the padded prompt ids through `embed_tokens`, the
//! image features scattered into the `<image>` positions in order; one prefill over the whole
//! prompt (attention mask 0 on padding, position ids `cumsum(mask) - 1` or the family's
//! multimodal rotary positions [3, batch, seq] ([`MRope`]), 1 on padding); then one
//! token per step, `embed_tokens` on it and the decoder on the cache. `Times::encoder` counts the
//! vision encoder and prompt embedding runs, `Times::decoder` the decoder and per-token embedding
//! runs; everything else is host time. A row leaves the batch when
//! it stops (its cache rows dropped); the cache is never copied otherwise: each step's
//! `present.*` outputs are the next step's `past_key_values.*` inputs as they are. With
//! `vlm.cache_on_device` (on for GPU providers) those outputs are preallocated on the provider's
//! device ([`crate::pipeline::vlm::cache::CacheDevice`]), so they stay there between steps; only the logits and
//! a finished row's compaction come to the host.

use std::borrow::Borrow;
use std::time::{Duration, Instant};

use docfleet_core::{Error, Result};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor};

use super::session::{DecoderInput, Sessions, keep_rows, read_f32};
use crate::pipeline::vlm::generate::{Finish, Generated, Rules, Times, argmax};

/// One page to generate for.
#[derive(Debug, Clone)]
pub struct PageInput {
    /// The expanded prompt's token ids.
    pub prompt: Vec<i64>,
    /// Its pixels, laid out as [`Self::vision`] says.
    pub pixels: Vec<f32>,
    pub vision: VisionInput,
    /// Multimodal rotary positions (Qwen2-VL); `None`: `cumsum(mask) - 1`.
    pub rope: Option<MRope>,
}

/// How a page's pixels reach the vision encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisionInput {
    /// Idefics3: `tiles × 3 × side × side` with an all-true pixel mask when the graph takes one.
    Tiles { tiles: usize, side: usize },
    /// Qwen2-VL: `t·h·w` patches of `patch_dim` values and the grid `[t, h, w]`.
    Patches { grid: [i64; 3], patch_dim: usize },
}

/// A prompt's positions on the three rotary axes (`get_rope_index`), unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MRope {
    /// `[3][prompt len]`, temporal row first.
    pub positions: Vec<i64>,
    /// The position of the first generated token (the largest prompt position + 1); each later
    /// step adds one, on all three axes (`cache_position + rope_deltas` in transformers).
    pub next: i64,
}

impl PageInput {
    /// An Idefics3 page of `tiles` tiles of `side × side`.
    pub fn tiles(prompt: Vec<i64>, pixels: Vec<f32>, tiles: usize, side: usize) -> Self {
        Self { prompt, pixels, vision: VisionInput::Tiles { tiles, side }, rope: None }
    }
}

fn ort_err(what: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Model(format!("{what}: {e}"))
}

/// The vision encoder on one page: its image tokens' features (`tokens × hidden`), flat.
fn encode_page(s: &Sessions, page: &PageInput, run: &mut Duration) -> Result<(Vec<f32>, usize)> {
    let (shape, extra): (Vec<usize>, Option<(&str, DynValue)>) = match page.vision {
        VisionInput::Tiles { tiles, side } => {
            let mask = s.vision_mask.then(|| {
                Tensor::from_array((vec![1, tiles, side, side], vec![true; tiles * side * side])).map(Tensor::into_dyn)
            });
            let mask = mask.transpose().map_err(ort_err("pixel_attention_mask"))?;
            (vec![1, tiles, 3, side, side], mask.map(|m| ("pixel_attention_mask", m)))
        }
        VisionInput::Patches { grid, patch_dim } => {
            let name = s
                .vision_grid
                .as_deref()
                .ok_or_else(|| Error::Model(format!("{} takes no grid_thw / image_grid_thw input", s.vision.file)))?;
            let grid = Tensor::from_array(([1usize, 3], grid.to_vec())).map_err(ort_err(name))?.into_dyn();
            (vec![page.pixels.len() / patch_dim.max(1), patch_dim], Some((name, grid)))
        }
    };
    let pixels = s.pixel_type.tensor(shape.clone(), &page.pixels)?;
    let mut session = s.vision.lock();
    let t = Instant::now();
    let outputs = match &extra {
        Some((name, v)) => session.run(ort::inputs!["pixel_values" => &pixels, *name => v]),
        None => session.run(ort::inputs!["pixel_values" => &pixels]),
    }
    .map_err(|e| Error::Model(format!("{} failed on input {shape:?}: {e}", s.vision.file)))?;
    *run += t.elapsed();
    let out = outputs
        .get(s.vision_output.as_str())
        .ok_or_else(|| Error::Model(format!("{} returned no {}", s.vision.file, s.vision_output)))?;
    let (dims, values) = read_f32(out, &s.vision_output)?;
    let hidden = *dims.last().unwrap_or(&0);
    Ok((values, hidden))
}

fn embed(s: &Sessions, ids: &[i64], rows: usize, len: usize, run: &mut Duration) -> Result<DynValue> {
    let input = Tensor::from_array(([rows, len], ids.to_vec())).map_err(ort_err("input_ids"))?;
    let mut session = s.embed.lock();
    let t = Instant::now();
    let mut outputs = session
        .run(ort::inputs!["input_ids" => input])
        .map_err(|e| Error::Model(format!("{} failed on {rows}×{len} ids: {e}", s.embed.file)))?;
    *run += t.elapsed();
    outputs
        .remove(s.embed_output.as_str())
        .ok_or_else(|| Error::Model(format!("{} returned no {}", s.embed.file, s.embed_output)))
}

/// Generate for `pages` together, at most `max_new_tokens` each.
pub fn generate<P: Borrow<PageInput>>(
    s: &Sessions,
    pages: &[P],
    max_new_tokens: usize,
    rules: &Rules,
    pad_token_id: i64,
    image_token_id: i64,
) -> Result<(Vec<Generated>, Times)> {
    let started = Instant::now();
    let mut times = Times::default();
    let pages: Vec<&PageInput> = pages.iter().map(Borrow::borrow).collect();
    let batch = pages.len();
    if batch == 0 || max_new_tokens == 0 || pages.iter().any(|p| p.prompt.is_empty()) {
        return Err(Error::InvalidInput("nothing to generate (no page, empty prompt or no tokens allowed)".into()));
    }

    // Vision encoder, page by page (each page's own tile count).
    let mut features = Vec::with_capacity(batch);
    for page in &pages {
        features.push(encode_page(s, page, &mut times.encoder)?);
    }

    // Left-padded prompts, embedded, with the image features in the <image> positions.
    let width = pages.iter().map(|p| p.prompt.len()).max().unwrap_or(0);
    let mut ids = vec![pad_token_id; batch * width];
    let mut mask = vec![0i64; batch * width];
    // [batch, width], or [3, batch, width] for multimodal rotary positions; 1 on padding.
    let axes = if s.position_rank == 3 { 3 } else { 1 };
    let mut positions = vec![1i64; axes * batch * width];
    for (r, p) in pages.iter().enumerate() {
        let (len, pad) = (p.prompt.len(), width - p.prompt.len());
        ids[r * width + pad..(r + 1) * width].copy_from_slice(&p.prompt);
        for (k, i) in (r * width + pad..(r + 1) * width).enumerate() {
            mask[i] = 1;
            for axis in 0..axes {
                positions[axis * batch * width + i] = match &p.rope {
                    Some(rope) if rope.positions.len() == 3 * len => rope.positions[axis * len + k],
                    Some(_) => return Err(Error::Model("rotary positions of the wrong length".into())),
                    None => k as i64,
                };
            }
        }
    }
    let embedded = embed(s, &ids, batch, width, &mut times.encoder)?;
    let (edims, mut embeds) = read_f32(&embedded, &s.embed_output)?;
    let hidden = *edims.last().unwrap_or(&0);
    if edims.len() != 3 || edims[0] != batch || edims[1] != width || hidden == 0 {
        return Err(Error::Model(format!("{}: embeddings of shape {edims:?} for {batch}×{width} ids", s.embed.file)));
    }
    for (r, (values, fh)) in features.iter().enumerate() {
        let slots: Vec<usize> =
            (0..width).filter(|&k| ids[r * width + k] == image_token_id && mask[r * width + k] == 1).collect();
        if *fh != hidden || values.len() != slots.len() * hidden {
            return Err(Error::Model(format!(
                "{} gave {} features of size {fh} for a prompt with {} image tokens of size {hidden}",
                s.vision.file,
                values.len() / (*fh).max(1),
                slots.len()
            )));
        }
        for (j, &k) in slots.iter().enumerate() {
            let at = (r * width + k) * hidden;
            embeds[at..at + hidden].copy_from_slice(&values[j * hidden..(j + 1) * hidden]);
        }
    }
    let mut step_embeds = s.decoder_type.tensor(vec![batch, width, hidden], &embeds)?;
    drop(embeds);

    let max_length = width + max_new_tokens;
    let mut seqs: Vec<Vec<i64>> = pages.iter().map(|p| p.prompt.clone()).collect();
    let mut finish: Vec<Option<Finish>> = vec![None; batch];
    let mut active: Vec<usize> = (0..batch).collect();
    // Per active row: its attention mask so far, and the next position.
    let mut masks: Vec<Vec<i64>> = (0..batch).map(|r| mask[r * width..(r + 1) * width].to_vec()).collect();
    // Per row: the position of the token after the prompt; a step's position is it plus the steps since.
    let next_pos: Vec<i64> = pages.iter().map(|p| p.rope.as_ref().map_or(p.prompt.len() as i64, |r| r.next)).collect();
    let mut cache: Vec<Option<DynValue>> = (0..s.slots.len()).map(|_| None).collect();
    let mut scores: Vec<f32> = Vec::new();
    let mut step_ids: Vec<i64> = Vec::with_capacity(batch);

    for step in 0..max_new_tokens {
        let first = step == 0;
        let n = active.len();
        let seq_len = if first { width } else { 1 };
        let total = masks[active[0]].len();
        let flat_mask: Vec<i64> = active.iter().flat_map(|&a| masks[a].iter().copied()).collect();
        let pos: Vec<i64> = if first {
            positions.clone()
        } else {
            let since = (total - 1 - width) as i64;
            let row: Vec<i64> = active.iter().map(|&a| next_pos[a] + since).collect();
            row.repeat(axes)
        };
        let mask_t = Tensor::from_array(([n, total], flat_mask)).map_err(ort_err("attention_mask"))?.into_dyn();
        let pos_shape = if axes == 3 { vec![3, n, seq_len] } else { vec![n, seq_len] };
        let pos_t = Tensor::from_array((pos_shape, pos)).map_err(ort_err("position_ids"))?.into_dyn();
        let mut empty: Vec<DynValue> = Vec::new();
        if first {
            for slot in &s.slots {
                empty.push(s.decoder_type.tensor(vec![n, slot.heads, 0, slot.head_dim], &[])?);
            }
        }
        let mut inputs: Vec<SessionInputValue<'_>> = Vec::with_capacity(s.decoder_inputs.len());
        for input in &s.decoder_inputs {
            inputs.push(match *input {
                DecoderInput::InputsEmbeds => (&step_embeds).into(),
                DecoderInput::AttentionMask => (&mask_t).into(),
                DecoderInput::PositionIds => (&pos_t).into(),
                DecoderInput::Past(slot) => match &cache[slot] {
                    Some(v) => v.into(),
                    None => (&empty[slot]).into(),
                },
            });
        }
        let mut session = s.decoder.lock();
        let t = Instant::now();
        let options = s.cache_options(n, total)?;
        let run = match &options {
            Some(options) => session.run_with_options(&inputs[..], options),
            None => session.run(&inputs[..]),
        };
        let mut outputs =
            run.map_err(|e| Error::Model(format!("{} failed at step {step} (batch {n}): {e}", s.decoder.file)))?;
        times.decoder += t.elapsed();
        times.steps += 1;
        let mut presents = Vec::with_capacity(s.presents.len());
        for (name, slot) in &s.presents {
            let v = outputs
                .remove(name.as_str())
                .ok_or_else(|| Error::Model(format!("{} returned no {name}", s.decoder.file)))?;
            presents.push((*slot, v));
        }
        let logits =
            outputs.remove("logits").ok_or_else(|| Error::Model(format!("{} returned no logits", s.decoder.file)))?;
        drop(outputs);
        drop(session);
        drop(inputs);
        for (slot, v) in presents {
            cache[slot] = Some(v);
        }
        let (lshape, ldata) = read_last_logits(&logits, n)?;
        let vocab = lshape;

        let mut done = Vec::new();
        step_ids.clear();
        for r in 0..n {
            let a = active[r];
            scores.clear();
            scores.extend_from_slice(&ldata[r * vocab..(r + 1) * vocab]);
            rules.apply(&seqs[a], pages[a].prompt.len(), max_length, &mut scores);
            let token = argmax(&scores) as i64;
            seqs[a].push(token);
            masks[a].push(1);
            step_ids.push(token);
            if rules.eos.contains(&token) {
                finish[a] = Some(Finish::Eos);
                done.push(r);
            }
        }
        if done.len() == n || step + 1 == max_new_tokens {
            break;
        }
        if !done.is_empty() {
            let keep: Vec<usize> = (0..n).filter(|r| !done.contains(r)).collect();
            for value in cache.iter_mut().flatten() {
                *value = keep_rows(value, &keep)?;
            }
            step_ids = keep.iter().map(|&r| step_ids[r]).collect();
            active = keep.iter().map(|&r| active[r]).collect();
        }
        step_embeds = embed(s, &step_ids, active.len(), 1, &mut times.decoder)?;
    }
    let generated = seqs
        .into_iter()
        .zip(pages)
        .zip(finish)
        .map(|((seq, p), f)| Generated { ids: seq[p.prompt.len()..].to_vec(), finish: f.unwrap_or(Finish::Length) })
        .collect();
    times.total = started.elapsed();
    Ok((generated, times))
}

/// The last position's logits of each of `n` rows, as f32: (vocab, `n × vocab` values).
fn read_last_logits(logits: &DynValue, n: usize) -> Result<(usize, Vec<f32>)> {
    fn last<T: ort::value::PrimitiveTensorElementType + Copy + 'static>(
        logits: &DynValue,
        n: usize,
        to_f32: fn(T) -> f32,
    ) -> Result<(usize, Vec<f32>)> {
        let (shape, data) = logits.try_extract_tensor::<T>().map_err(ort_err("reading logits"))?;
        let (positions, vocab) = match shape[..] {
            [b, p, v] if b as usize == n && p >= 1 && v >= 1 => (p as usize, v as usize),
            _ => return Err(Error::Model(format!("logits of shape {shape:?} for batch {n}"))),
        };
        let mut out = Vec::with_capacity(n * vocab);
        for r in 0..n {
            out.extend(data[(r * positions + positions - 1) * vocab..][..vocab].iter().map(|&v| to_f32(v)));
        }
        Ok((vocab, out))
    }
    match logits.dtype() {
        ort::value::ValueType::Tensor { ty: ort::value::TensorElementType::Float16, .. } => {
            last::<half::f16>(logits, n, half::f16::to_f32)
        }
        _ => last::<f32>(logits, n, |v| v),
    }
}
