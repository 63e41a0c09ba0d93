//! Greedy decoding with a KV cache over a batch of images, as `transformers`' `generate` does it
//! with `num_beams=1, do_sample=False`: the encoder runs once; the first decoder step reads the
//! whole prompt, every later step only the last token and the cache; the logits processors of the
//! generation config adjust each row's scores before the arg-max. A row stops at an EOS token; the
//! rows still running go on in a smaller batch (their cache rows copied out), so finished pages
//! cost nothing — `transformers` instead keeps feeding them `<pad>`, with the same results for the
//! others.
//!
//! The cache never leaves onnxruntime's tensors between steps: each step's `present.*` outputs
//! are the next step's `past_key_values.*` inputs as they are. With `vlm.cache_on_device` (on for
//! GPU providers) they are preallocated on the provider's device ([`CacheDevice`]): the growing
//! self-attention entries every step, the cross-attention ones on the first (later steps do not
//! fetch them), so the cache stays there; only the logits come to the host, and a stopped row's
//! cache is copied out once to compact the batch (the cross-attention entries then go back).
//!
//! [`generate`] is the vision-encoder-decoder family's (one `pixel_values` encoder); the decoder
//! loop itself, [`decode`], takes any encoded batch, so Florence-2 (vision encoder, token
//! embeddings and text encoder in front, a decoder fed `inputs_embeds`) runs on it too. Float16
//! exports keep their cache in float16; logits are read as f32.

use std::time::{Duration, Instant};

use docfleet_core::{Error, Result};
use ort::session::{HasSelectedOutputs, RunOptions, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};

use super::cache::{CacheDevice, Preallocated};
use super::config::GenerationConfig;
use super::session::{DecoderSession, Decoders, Input, Output, Sessions};
use super::tensors::{keep_rows, read_f32};

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// It produced an EOS token (the last of its ids).
    Eos,
    /// It reached the token limit.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Eos => "eos",
            Finish::Length => "length",
        }
    }
}

/// One image's generated ids (EOS included when it stopped on one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub ids: Vec<i64>,
    pub finish: Finish,
}

/// Where a batch's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    /// Encoder session run.
    pub encoder: Duration,
    /// Decoder session runs, summed.
    pub decoder: Duration,
    /// Decoder steps (tokens per running sequence).
    pub steps: usize,
    /// The whole [`generate`] call: sessions plus everything around them.
    pub total: Duration,
}

impl Times {
    /// Time spent outside `session.run`: tensors in and out, logits processing, cache compaction.
    pub fn host(&self) -> Duration {
        self.total.saturating_sub(self.encoder + self.decoder)
    }
}

/// The logits processors `transformers` builds from a generation config for greedy search, in
/// its order: repetition penalty, no-repeat n-grams, bad words, minimum length, minimum new
/// tokens, forced BOS, forced EOS, suppressed tokens, suppressed tokens at the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub eos: Vec<i64>,
    pub repetition_penalty: f32,
    pub no_repeat_ngram_size: usize,
    pub bad_words: Vec<Vec<i64>>,
    pub min_length: usize,
    pub min_new_tokens: usize,
    pub forced_bos: Option<i64>,
    pub forced_eos: Vec<i64>,
    pub suppress: Vec<i64>,
    pub begin_suppress: Vec<i64>,
}

impl Rules {
    pub fn from_config(g: &GenerationConfig) -> Self {
        // NoBadWordsLogitsProcessor drops single-token EOS entries.
        let bad_words =
            g.bad_words_ids.iter().filter(|w| !(w.len() == 1 && g.eos_token_ids.contains(&w[0]))).cloned().collect();
        Self {
            eos: g.eos_token_ids.clone(),
            repetition_penalty: g.repetition_penalty,
            no_repeat_ngram_size: g.no_repeat_ngram_size,
            bad_words,
            min_length: g.min_length,
            min_new_tokens: g.min_new_tokens,
            forced_bos: g.forced_bos_token_id,
            forced_eos: g.forced_eos_token_ids.clone(),
            suppress: g.suppress_tokens.clone(),
            begin_suppress: g.begin_suppress_tokens.clone(),
        }
    }

    /// Adjust one row's `scores` for the sequence so far (`seq`: prompt then generated tokens);
    /// `max_length` is the prompt plus the token limit.
    pub fn apply(&self, seq: &[i64], prompt_len: usize, max_length: usize, scores: &mut [f32]) {
        let vocab = scores.len();
        let slot = |id: i64| usize::try_from(id).ok().filter(|&i| i < vocab);
        let ban = |scores: &mut [f32], id: i64| {
            if let Some(i) = slot(id) {
                scores[i] = f32::NEG_INFINITY;
            }
        };
        if self.repetition_penalty != 1.0 {
            let mut seen: Vec<i64> = seq.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(i) = slot(id) {
                    let s = scores[i];
                    scores[i] = if s < 0.0 { s * self.repetition_penalty } else { s / self.repetition_penalty };
                }
            }
        }
        let n = self.no_repeat_ngram_size;
        if n > 0 && seq.len() + 1 >= n {
            let key = &seq[seq.len() + 1 - n..];
            for start in 0..=(seq.len() - n.min(seq.len())) {
                if start + n <= seq.len() && &seq[start..start + n - 1] == key {
                    ban(scores, seq[start + n - 1]);
                }
            }
        }
        for word in &self.bad_words {
            let (last, prefix) = word.split_last().expect("bad words are non-empty");
            if seq.ends_with(prefix) {
                ban(scores, *last);
            }
        }
        if seq.len() < self.min_length || seq.len() - prompt_len < self.min_new_tokens {
            for &e in &self.eos {
                ban(scores, e);
            }
        }
        let force = |scores: &mut [f32], ids: &[i64]| {
            scores.fill(f32::NEG_INFINITY);
            for &id in ids {
                if let Some(i) = slot(id) {
                    scores[i] = 0.0;
                }
            }
        };
        if let (Some(bos), 1) = (self.forced_bos, seq.len()) {
            force(scores, &[bos]);
        }
        if !self.forced_eos.is_empty() && seq.len() + 1 == max_length {
            force(scores, &self.forced_eos);
        }
        for &id in &self.suppress {
            ban(scores, id);
        }
        let begin = if prompt_len > 1 || self.forced_bos.is_none() { prompt_len } else { prompt_len + 1 };
        if seq.len() == begin {
            for &id in &self.begin_suppress {
                ban(scores, id);
            }
        }
    }
}

/// The first highest score's index, like `torch.argmax`.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate().skip(1) {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

fn ort_err(what: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::Model(format!("{what}: {e}"))
}

/// Embeddings of a step's tokens (`ids`, `rows × len`), for decoders that take `inputs_embeds`
/// (Florence-2: its `embed_tokens` graph); the time it took is counted as decoder time.
pub type EmbedTokens<'a> = dyn Fn(&[i64], [usize; 2]) -> Result<DynValue> + 'a;

/// Generate for `batch` images given as `pixel_values` (`batch × 3 × height × width`, f32),
/// all starting from `prompt`, for at most `max_new_tokens` tokens each.
pub fn generate(
    sessions: &Sessions,
    pixel_values: &[f32],
    image_shape: [usize; 3],
    batch: usize,
    prompt: &[i64],
    max_new_tokens: usize,
    rules: &Rules,
) -> Result<(Vec<Generated>, Times)> {
    let started = Instant::now();
    let mut times = Times::default();
    if batch == 0 || prompt.is_empty() || max_new_tokens == 0 {
        return Err(Error::InvalidInput("nothing to generate (no image, empty prompt or no tokens allowed)".into()));
    }
    let shape = [batch, image_shape[0], image_shape[1], image_shape[2]];

    // Encoder, once for the batch.
    let encoded: DynValue = {
        let enc = &sessions.encoder;
        let input = TensorRef::from_array_view((shape, pixel_values)).map_err(ort_err("pixel_values"))?;
        let mut session = enc.lock();
        let t = Instant::now();
        let mut outputs = session
            .run(ort::inputs![enc.input.as_str() => input])
            .map_err(|e| Error::Model(format!("{} failed on input {shape:?}: {e}", enc.file)))?;
        times.encoder = t.elapsed();
        outputs
            .remove(enc.output.as_str())
            .ok_or_else(|| Error::Model(format!("{} returned no {}", enc.file, enc.output)))?
    };
    decode(&sessions.decoders, encoded, batch, prompt, max_new_tokens, rules, None, times, started)
}

/// The decoder loop over an encoded batch (`encoded`: `batch × positions × hidden`, every
/// position attended): greedy steps with the KV cache from `prompt` on, until every row stops.
/// `embed` feeds decoders that take `inputs_embeds`; `times` already holds the encoder side and
/// `started` is when the whole generation began.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    sessions: &Decoders,
    mut encoded: DynValue,
    batch: usize,
    prompt: &[i64],
    max_new_tokens: usize,
    rules: &Rules,
    embed: Option<&EmbedTokens<'_>>,
    mut times: Times,
    started: Instant,
) -> Result<(Vec<Generated>, Times)> {
    if batch == 0 || prompt.is_empty() || max_new_tokens == 0 {
        return Err(Error::InvalidInput("nothing to generate (no image, empty prompt or no tokens allowed)".into()));
    }
    let encoder_positions = match encoded.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => shape.get(1).copied().unwrap_or(0).max(0) as usize,
        other => return Err(Error::Model(format!("the encoder output is not a tensor ({other:?})"))),
    };

    let max_length = prompt.len() + max_new_tokens;
    let mut seqs: Vec<Vec<i64>> = vec![prompt.to_vec(); batch];
    let mut finish: Vec<Option<Finish>> = vec![None; batch];
    // Batch row → image index of the sequences still running.
    let mut active: Vec<usize> = (0..batch).collect();
    let mut cache: Vec<Option<DynValue>> = (0..sessions.slots.len()).map(|_| None).collect();
    let mut ids: Vec<i64> = Vec::with_capacity(batch * prompt.len());
    let mut scores: Vec<f32> = Vec::new();

    for step in 0..max_new_tokens {
        let first = step == 0;
        let dec = sessions.decoder(first);
        let n = active.len();
        ids.clear();
        let seq_len = if first { prompt.len() } else { 1 };
        for &a in &active {
            if first {
                ids.extend_from_slice(prompt);
            } else {
                ids.push(*seqs[a].last().expect("sequences are never empty"));
            }
        }
        let past_len = if first { 0 } else { seqs[active[0]].len() - 1 };

        // Tensors only this step needs (the cache is fed from `cache` as it is).
        let mut owned: Vec<DynValue> = Vec::new();
        let mut plan: Vec<Option<usize>> = Vec::with_capacity(dec.inputs.len());
        for input in &dec.inputs {
            let made = match *input {
                Input::UseCacheBranch => Some(Tensor::from_array(([1usize], vec![!first])).map(Tensor::into_dyn)),
                Input::EncoderAttentionMask => Some(
                    Tensor::from_array(([n, encoder_positions], vec![1i64; n * encoder_positions]))
                        .map(Tensor::into_dyn),
                ),
                Input::DecoderAttentionMask => {
                    let total = past_len + seq_len;
                    Some(Tensor::from_array(([n, total], vec![1i64; n * total])).map(Tensor::into_dyn))
                }
                // On the first step the (merged) decoder ignores its cache inputs: empty ones do.
                Input::Past(slot) if cache[slot].is_none() => {
                    let s = &sessions.slots[slot];
                    Some(Ok(s.float.tensor(vec![n, s.heads, 0, s.head_dim], &[])?))
                }
                _ => None,
            };
            plan.push(match made {
                Some(v) => {
                    owned.push(v.map_err(ort_err("building a decoder input"))?);
                    Some(owned.len() - 1)
                }
                None => None,
            });
        }
        let input_ids = TensorRef::from_array_view(([n, seq_len], &ids[..])).map_err(ort_err("input_ids"))?;
        let mut input_ids = Some(input_ids);
        let embeds = match (embed, dec.inputs.contains(&Input::InputsEmbeds)) {
            (Some(embed), true) => {
                let t = Instant::now();
                let v = embed(&ids, [n, seq_len])?;
                times.decoder += t.elapsed();
                Some(v)
            }
            (None, true) => {
                return Err(Error::Model(format!(
                    "{} takes inputs_embeds, which this model family does not feed",
                    dec.file
                )));
            }
            _ => None,
        };
        let mut inputs: Vec<SessionInputValue<'_>> = Vec::with_capacity(dec.inputs.len());
        for (input, made) in dec.inputs.iter().zip(&plan) {
            let value: SessionInputValue<'_> = match (*input, made) {
                (_, Some(i)) => (&owned[*i]).into(),
                (Input::InputIds, None) => input_ids.take().expect("one input_ids input").into(),
                (Input::InputsEmbeds, None) => embeds.as_ref().expect("embedded above").into(),
                (Input::EncoderHiddenStates, None) => (&encoded).into(),
                (Input::Past(slot), None) => cache[slot].as_ref().expect("checked when planning").into(),
                (other, None) => unreachable!("{other:?} is always built"),
            };
            inputs.push(value);
        }

        let options = match &sessions.cache_device {
            Some(device) => {
                Some(cache_options(device, sessions, dec, &cache, n, past_len + seq_len, encoder_positions)?)
            }
            None => None,
        };
        let mut session = dec.lock();
        let t = Instant::now();
        let run = match &options {
            Some(options) => session.run_with_options(&inputs[..], options),
            None => session.run(&inputs[..]),
        };
        let outputs = run.map_err(|e| Error::Model(format!("{} failed at step {step} (batch {n}): {e}", dec.file)))?;
        times.decoder += t.elapsed();
        times.steps += 1;
        let mut logits = None;
        let mut presents: Vec<(usize, DynValue)> = Vec::new();
        for (name, value) in outputs {
            match dec.outputs.get(name) {
                Some(Output::Logits) => logits = Some(value),
                // Cross-attention entries are kept from the first step (the merged decoder returns
                // empty stand-ins for them on cache steps).
                Some(Output::Present(slot)) if !sessions.slots[*slot].cross || cache[*slot].is_none() => {
                    presents.push((*slot, value))
                }
                _ => {}
            }
        }
        drop(session);
        drop(inputs);
        for (slot, value) in presents {
            cache[slot] = Some(value);
        }
        let logits = logits.ok_or_else(|| Error::Model(format!("{} returned no logits", dec.file)))?;
        // float16 logits (a float16 export) are read as f32: the same order, so the same arg-max.
        let converted;
        let (lshape, ldata): (Vec<i64>, &[f32]) = match logits.try_extract_tensor::<f32>() {
            Ok((shape, data)) => (shape.to_vec(), data),
            Err(_) => {
                let (shape, data) = read_f32(&logits, "logits")?;
                converted = data;
                (shape.iter().map(|&d| d as i64).collect(), &converted[..])
            }
        };
        let (rows, positions, vocab) = match lshape[..] {
            [b, p, v] if b as usize == n && p >= 1 && v >= 1 => (b as usize, p as usize, v as usize),
            _ => return Err(Error::Model(format!("{}: logits of shape {lshape:?} for batch {n}", dec.file))),
        };

        let mut done = Vec::new();
        for r in 0..rows {
            let a = active[r];
            let row = &ldata[(r * positions + positions - 1) * vocab..][..vocab];
            scores.clear();
            scores.extend_from_slice(row);
            rules.apply(&seqs[a], prompt.len(), max_length, &mut scores);
            let token = argmax(&scores) as i64;
            seqs[a].push(token);
            if rules.eos.contains(&token) {
                finish[a] = Some(Finish::Eos);
                done.push(r);
            }
        }
        if done.len() == rows {
            break;
        }
        if !done.is_empty() && step + 1 < max_new_tokens {
            let keep: Vec<usize> = (0..rows).filter(|r| !done.contains(r)).collect();
            for (slot, value) in cache.iter_mut().enumerate() {
                let Some(value) = value else { continue };
                *value = keep_rows(value, &keep)?;
                // Cross-attention entries are never output again: back onto the device.
                if let (true, Some(device)) = (sessions.slots[slot].cross, &sessions.cache_device) {
                    *value = device.upload(value)?;
                }
            }
            encoded = keep_rows(&encoded, &keep)?;
            active = keep.iter().map(|&r| active[r]).collect();
        }
    }
    let generated = seqs
        .into_iter()
        .zip(finish)
        .map(|(seq, f)| Generated { ids: seq[prompt.len()..].to_vec(), finish: f.unwrap_or(Finish::Length) })
        .collect();
    times.total = started.elapsed();
    Ok((generated, times))
}

/// A step's run options with the cache on `device`: every `present.*` output this step keeps
/// preallocated there — the growing self-attention entries (`total` positions, past + this
/// step's), and on the first step the cross-attention ones (`encoder_positions`) — and the
/// cross-attention outputs of later steps (empty stand-ins in a merged decoder) not fetched.
fn cache_options(
    device: &CacheDevice,
    sessions: &Decoders,
    dec: &DecoderSession,
    cache: &[Option<DynValue>],
    rows: usize,
    total: usize,
    encoder_positions: usize,
) -> Result<RunOptions<HasSelectedOutputs>> {
    let mut outputs = Vec::new();
    let mut skip = Vec::new();
    for (name, role) in &dec.outputs {
        let Output::Present(slot) = *role else { continue };
        let s = &sessions.slots[slot];
        if s.cross && cache[slot].is_some() {
            skip.push(name.as_str());
        } else if s.heads > 0 {
            let positions = if s.cross { encoder_positions } else { total };
            outputs.push(Preallocated { name, float: s.float, shape: [rows, s.heads, positions, s.head_dim] });
        }
    }
    device.run_options(&dec.file, outputs, &skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            eos: vec![2],
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            bad_words: vec![],
            min_length: 0,
            min_new_tokens: 0,
            forced_bos: None,
            forced_eos: vec![],
            suppress: vec![],
            begin_suppress: vec![],
        }
    }

    #[test]
    fn no_repeat_ngram_bans_the_tokens_that_would_repeat_an_ngram() {
        let r = Rules { no_repeat_ngram_size: 3, ..rules() };
        // ... 5 6 7 ... 5 6 → 7 would repeat "5 6 7".
        let seq = [0, 5, 6, 7, 9, 5, 6];
        let mut s = vec![1.0f32; 10];
        r.apply(&seq, 1, 30, &mut s);
        assert_eq!(s[7], f32::NEG_INFINITY);
        assert_eq!(s.iter().filter(|v| v.is_infinite()).count(), 1);
        // Too short for a 3-gram: nothing banned.
        let mut s = vec![1.0f32; 10];
        r.apply(&[0], 1, 30, &mut s);
        assert!(s.iter().all(|v| v.is_finite()));
        // n = 1 bans everything seen.
        let r = Rules { no_repeat_ngram_size: 1, ..rules() };
        let mut s = vec![1.0f32; 10];
        r.apply(&[0, 4, 4], 1, 30, &mut s);
        assert_eq!(s.iter().enumerate().filter(|(_, v)| v.is_infinite()).map(|(i, _)| i).collect::<Vec<_>>(), [0, 4]);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_scores() {
        let r = Rules { repetition_penalty: 1.5, ..rules() };
        let mut s = vec![3.0f32, -3.0, 3.0, 1.0];
        r.apply(&[0, 1, 1], 1, 30, &mut s);
        assert_eq!(s, vec![2.0, -4.5, 3.0, 1.0]);
    }

    #[test]
    fn length_rules_and_forced_tokens() {
        let r = Rules { min_new_tokens: 2, ..rules() };
        let mut s = vec![0.0f32; 4];
        r.apply(&[0, 3], 1, 30, &mut s);
        assert_eq!(s[2], f32::NEG_INFINITY, "EOS before min_new_tokens");
        let mut s = vec![0.0f32; 4];
        r.apply(&[0, 3, 3], 1, 30, &mut s);
        assert_eq!(s[2], 0.0);

        let r = Rules { forced_eos: vec![2], forced_bos: Some(3), ..rules() };
        let mut s = vec![5.0f32; 4];
        r.apply(&[0], 1, 30, &mut s);
        assert_eq!(argmax(&s), 3);
        let mut s = vec![5.0f32; 4];
        r.apply(&[0, 1, 1], 1, 4, &mut s);
        assert_eq!((argmax(&s), s[0]), (2, f32::NEG_INFINITY));

        let r = Rules { bad_words: vec![vec![1], vec![3, 0]], suppress: vec![2], ..rules() };
        let mut s = vec![5.0f32; 4];
        r.apply(&[0, 3], 1, 30, &mut s);
        assert_eq!(s, vec![f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY, 5.0]);
    }

    #[test]
    fn argmax_takes_the_first_of_equal_scores() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
    }
}
