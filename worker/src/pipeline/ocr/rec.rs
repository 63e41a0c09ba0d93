//! Text recognition: PP-OCR's CTC recogniser (v4: 6,625 classes, v6: 18,710). Crops are 48 pixels high and as wide as their
//! aspect ratio asks; crops of similar width are batched together (sorted by aspect ratio) so
//! little of each batch is padding. Decoding is greedy CTC with the dictionary stored in the
//! model's metadata.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use docfleet_core::{Error, Result};
use image::RgbImage;

use super::geometry::{Quad, quad_size};
use super::sample::crop_tensor;
use crate::batch::Pending;
use crate::runtime::Model;

const HEIGHT: usize = 48;
/// The narrowest batch: 320 columns (aspect 320/48), as PP-OCR pads short lines.
const MIN_RATIO: f32 = 320.0 / 48.0;
/// Widest crop fed to the model; longer lines are squeezed rather than growing the batch without bound.
const MAX_WIDTH: usize = 48 * 64;

/// The recognition dictionary: class index → text (0 is the CTC blank).
pub struct Dictionary {
    classes: Vec<String>,
}

impl Dictionary {
    /// From the model's `character` metadata: one entry per line; the blank goes first and a
    /// space last, as PaddleOCR's `CTCLabelDecode` builds it.
    pub fn from_metadata(character: &str) -> Self {
        let mut classes = vec![String::new()];
        classes.extend(character.split('\n').map(|s| s.trim_end_matches('\r').to_owned()));
        classes.push(" ".into());
        Self { classes }
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.len() <= 2
    }
}

/// One recognised line.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognized {
    pub text: String,
    /// Mean probability of the kept characters (0 when nothing was read).
    pub score: f32,
    /// `text` piece by piece (dictionary entries and recovered spaces), with the classes the
    /// recogniser weighed for each, for [`super::digits::repair`].
    pub glyphs: Vec<Glyph>,
}

/// One piece of a recognised line and the recogniser's candidates for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Glyph {
    pub text: String,
    /// Up to [`CANDIDATES`] (text, probability) pairs, best first: the highest probability each
    /// class reached over the time steps this piece was read at. Empty for a recovered space.
    pub candidates: Vec<(String, f32)>,
}

/// Candidates kept per character, and the least probability a candidate needs.
pub const CANDIDATES: usize = 5;
const MIN_CANDIDATE: f32 = 1e-3;

/// The best [`CANDIDATES`] classes of one time step, merged into `into` (highest probability
/// per class, best first).
fn merge_top(step: &[f32], into: &mut Vec<(usize, f32)>) {
    for (i, &p) in step.iter().enumerate() {
        if p < MIN_CANDIDATE || i == 0 {
            continue;
        }
        if into.len() == CANDIDATES && into.last().is_some_and(|l| l.1 >= p) {
            continue;
        }
        match into.iter_mut().find(|c| c.0 == i) {
            Some(c) => c.1 = c.1.max(p),
            None => into.push((i, p)),
        }
        into.sort_by(|a, b| b.1.total_cmp(&a.1));
        into.truncate(CANDIDATES);
    }
}

/// Space probability between two characters above which a space is inserted although the blank
/// won every step there. PP-OCR drops many word gaps on noisy crops (JPEG) while still giving the
/// space class 3–50 % there; inside words it stays under 0.5 %.
const SPACE_RECOVERY: f32 = 0.03;

/// Greedy CTC decoding of one `steps × classes` probability matrix: best class per step, repeats
/// merged, blanks dropped; a word gap the model nearly called a space becomes one.
pub fn ctc_decode(probs: &[f32], classes: usize, dict: &Dictionary) -> Recognized {
    let mut text = String::new();
    let (mut sum, mut kept) = (0f32, 0usize);
    let mut prev = usize::MAX;
    let space = dict.classes.len() - 1;
    // Highest space probability since the last character.
    let mut gap_space = 0f32;
    let mut glyphs: Vec<Glyph> = Vec::new();
    // Candidates of the character being read (over its repeated steps).
    let mut top: Vec<(usize, f32)> = Vec::new();
    let finish = |top: &mut Vec<(usize, f32)>, glyphs: &mut Vec<Glyph>| {
        if let Some(g) = glyphs.last_mut()
            && g.candidates.is_empty()
            && !top.is_empty()
        {
            g.candidates = top.iter().filter_map(|&(i, p)| dict.classes.get(i).map(|t| (t.clone(), p))).collect();
        }
        top.clear();
    };
    for step in probs.chunks_exact(classes) {
        gap_space = gap_space.max(step.get(space).copied().unwrap_or(0.0));
        let (mut best, mut best_p) = (0usize, f32::MIN);
        for (i, &p) in step.iter().enumerate() {
            if p > best_p {
                best = i;
                best_p = p;
            }
        }
        if best != 0
            && best != prev
            && let Some(s) = dict.classes.get(best)
        {
            finish(&mut top, &mut glyphs);
            if best != space && gap_space >= SPACE_RECOVERY && !text.is_empty() && !text.ends_with(' ') {
                text.push(' ');
                glyphs.push(Glyph { text: " ".into(), candidates: vec![(" ".into(), gap_space)] });
            }
            gap_space = 0.0;
            text.push_str(s);
            glyphs.push(Glyph { text: s.clone(), candidates: Vec::new() });
            sum += best_p;
            kept += 1;
        }
        match best {
            0 => finish(&mut top, &mut glyphs),
            _ => merge_top(step, &mut top),
        }
        prev = best;
    }
    finish(&mut top, &mut glyphs);
    Recognized { text, score: if kept == 0 { 0.0 } else { sum / kept as f32 }, glyphs }
}

/// Recognise every reading quad, batching crops of similar aspect ratio. Batches are queued on the
/// model as soon as they are built (a few ahead per session), so they run side by side on its
/// sessions — merged with other jobs' batches of similar width — while the next ones are cut.
#[allow(clippy::too_many_arguments)]
pub fn recognize(
    model: &Model,
    dict: &Dictionary,
    img: &RgbImage,
    quads: &[Quad],
    batch_size: usize,
    pre: &mut Duration,
    model_time: &mut Duration,
    post: &mut Duration,
) -> Result<Vec<Recognized>> {
    let ratios: Vec<f32> = quads
        .iter()
        .map(|q| {
            let (w, h) = quad_size(q);
            w / h.max(1.0)
        })
        .collect();
    let mut order: Vec<usize> = (0..quads.len()).collect();
    order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
    // Batches of crops whose widths differ by at most a tenth: on CPU a batch saves little per
    // crop, and padding every crop to the widest of a mixed batch costs more than it saves.
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for &i in &order {
        match batches.last_mut() {
            Some(b) if b.len() < batch_size.max(1) && ratios[i].max(MIN_RATIO) <= 1.1 * ratios[b[0]].max(MIN_RATIO) => {
                b.push(i)
            }
            _ => batches.push(vec![i]),
        }
    }
    let mut out = vec![Recognized { text: String::new(), score: 0.0, glyphs: Vec::new() }; quads.len()];
    // Widest first, so the longest runs start early; at most this many batches wait in the queue
    // at once, which bounds the crop tensors held.
    let window = 2 * model.replicas().max(1);
    let mut pending: VecDeque<(&Vec<usize>, Pending)> = VecDeque::new();
    let mut collect = |(batch, p): (&Vec<usize>, Pending), model_time: &mut Duration, post: &mut Duration| {
        let reply = p.wait()?;
        *model_time += reply.took;
        let started = Instant::now();
        let lines = decode(&reply.shape, &reply.values, batch.len(), dict)?;
        *post += started.elapsed();
        for (&i, line) in batch.iter().zip(lines) {
            out[i] = line;
        }
        Ok::<(), Error>(())
    };
    for batch in batches.iter().rev() {
        let started = Instant::now();
        let (shape, input) = batch_tensor(img, quads, &ratios, batch);
        *pre += started.elapsed();
        pending.push_back((batch, model.submit(&shape, &input)));
        if pending.len() >= window {
            collect(pending.pop_front().expect("non-empty"), model_time, post)?;
        }
    }
    while let Some(p) = pending.pop_front() {
        collect(p, model_time, post)?;
    }
    Ok(out)
}

/// The input tensor of one batch: every crop 48 pixels high, as wide as its aspect ratio asks,
/// padded with zeros to the widest.
fn batch_tensor(img: &RgbImage, quads: &[Quad], ratios: &[f32], batch: &[usize]) -> ([usize; 4], Vec<f32>) {
    let max_ratio = batch.iter().map(|&i| ratios[i]).fold(MIN_RATIO, f32::max);
    let width = ((HEIGHT as f32 * max_ratio) as usize).clamp(8, MAX_WIDTH);
    let n = batch.len();
    let mut input = vec![0f32; n * 3 * HEIGHT * width];
    for (slot, &i) in batch.iter().enumerate() {
        let w = ((HEIGHT as f32 * ratios[i]).ceil() as usize).clamp(1, width);
        crop_tensor(img, &quads[i], w, HEIGHT, width, &mut input[slot * 3 * HEIGHT * width..]);
    }
    ([n, 3, HEIGHT, width], input)
}

/// Greedy CTC decoding of a `[n, steps, classes]` output.
fn decode(shape: &[usize], probs: &[f32], n: usize, dict: &Dictionary) -> Result<Vec<Recognized>> {
    if shape.len() != 3 || shape[0] != n || shape[2] != dict.len() {
        return Err(Error::Model(format!(
            "recogniser returned shape {shape:?}; expected [{n}, steps, {}] (the dictionary size)",
            dict.len()
        )));
    }
    let per = shape[1] * shape[2];
    Ok(probs.chunks_exact(per).map(|p| ctc_decode(p, shape[2], dict)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let dict = Dictionary::from_metadata("a\nb");
        assert_eq!(dict.len(), 4); // blank, a, b, space
        // Steps: a a blank a space b blank
        let steps = [1, 1, 0, 1, 3, 2, 0];
        let mut probs = Vec::new();
        for &s in &steps {
            let mut row = [0.01f32; 4];
            row[s] = 0.7;
            probs.extend_from_slice(&row);
        }
        let r = ctc_decode(&probs, 4, &dict);
        assert_eq!(r.text, "aa b");
        assert!((r.score - 0.7).abs() < 1e-6);
        assert_eq!(
            ctc_decode(&[0.9, 0.1, 0.0, 0.0], 4, &dict),
            Recognized { text: String::new(), score: 0.0, glyphs: Vec::new() }
        );
        // Every piece of the text keeps the classes weighed for it, best first.
        assert_eq!(r.glyphs.iter().map(|g| g.text.as_str()).collect::<String>(), r.text);
        assert_eq!(r.glyphs[0].candidates[0], ("a".into(), 0.7));
        assert!(r.glyphs.iter().all(|g| g.candidates.len() <= CANDIDATES && !g.candidates.is_empty()));
        // a, blank (space at 30 %), b: the word gap the blank won is still a space.
        let gap = [0.1, 0.8, 0.05, 0.05, 0.65, 0.0, 0.05, 0.3, 0.1, 0.05, 0.8, 0.05];
        assert_eq!(ctc_decode(&gap, 4, &dict).text, "a b");
        let tight = [0.1, 0.8, 0.05, 0.002, 0.95, 0.0, 0.04, 0.004, 0.1, 0.05, 0.8, 0.001];
        assert_eq!(ctc_decode(&tight, 4, &dict).text, "ab");
    }
}
