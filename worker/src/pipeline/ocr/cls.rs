//! Line orientation: PP-OCR's mobile 0°/180° classifier on 48×192 crops (longer lines are
//! squeezed to 192 columns, as the model was trained).

use std::time::{Duration, Instant};

use docfleet_core::{Error, Result};
use image::RgbImage;

use super::geometry::{Quad, quad_size};
use super::sample::crop_tensor;
use crate::runtime::Model;

const HEIGHT: usize = 48;
const WIDTH: usize = 192;
const BATCH: usize = 16;

/// The classifier's verdict on one crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Orientation {
    pub upside_down: bool,
    pub score: f32,
}

/// Classify each reading quad (corners from the text's presumed top-left).
pub fn classify(
    model: &Model,
    img: &RgbImage,
    quads: &[Quad],
    pre: &mut Duration,
    model_time: &mut Duration,
) -> Result<Vec<Orientation>> {
    let mut out = Vec::with_capacity(quads.len());
    for chunk in quads.chunks(BATCH) {
        let started = Instant::now();
        let n = chunk.len();
        let mut input = vec![0f32; n * 3 * HEIGHT * WIDTH];
        for (i, q) in chunk.iter().enumerate() {
            let (w, h) = quad_size(q);
            let width = ((HEIGHT as f32 * w / h.max(1.0)).ceil() as usize).clamp(1, WIDTH);
            crop_tensor(img, q, width, HEIGHT, WIDTH, &mut input[i * 3 * HEIGHT * WIDTH..]);
        }
        *pre += started.elapsed();
        let (verdicts, took) = model.run(&[n, 3, HEIGHT, WIDTH], &input, |shape, probs| {
            if shape != [n, 2] {
                return Err(Error::Model(format!("orientation classifier returned shape {shape:?} for {n} crops")));
            }
            Ok(probs
                .chunks_exact(2)
                .map(|p| Orientation { upside_down: p[1] > p[0], score: p[0].max(p[1]) })
                .collect::<Vec<_>>())
        })?;
        *model_time += took;
        out.extend(verdicts?);
    }
    Ok(out)
}
