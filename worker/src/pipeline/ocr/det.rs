//! Text detection: PP-OCR's DB model (v4 and v6 share it). The page is scaled so its longest side is at most
//! `ocr.det_max_side`, padded to multiples of 32, and the probability map is turned into boxes:
//! threshold → (dilate) → connected regions → minimum-area rectangle → box score → unclip.

use std::time::{Duration, Instant};

use docfleet_core::config::OcrSettings;
use docfleet_core::{Error, Result};
use image::RgbImage;

use super::geometry::{Point, Quad, RotatedRect, convex_hull, in_convex_quad, min_area_rect};
use super::sample::page_tensor;
use crate::runtime::Model;

/// A detected text region in page pixels.
#[derive(Debug, Clone)]
pub struct TextBox {
    /// Clockwise from the top-left, image coordinates.
    pub quad: Quad,
    /// Mean text probability inside the region.
    pub score: f32,
}

/// Time spent in each part of detection.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetTimes {
    pub pre: Duration,
    pub model: Duration,
    pub post: Duration,
}

/// Detector input geometry for a page: the scale factors (x, y) and the input size. The page is
/// scaled so its longest side is at most `max_side`, then each side goes to the nearest multiple
/// of 32 (as PaddleOCR resizes); a side that rounding would shrink by more than a tenth (thin
/// single-line images) is padded up to the next multiple instead, keeping the text's proportions.
pub fn input_size(width: u32, height: u32, max_side: u32) -> ([f32; 2], usize, usize) {
    let longest = width.max(height) as f32;
    let scale = (max_side as f32 / longest).min(1.0);
    let side = |v: u32| -> (f32, usize) {
        let scaled = v as f32 * scale;
        let nearest = ((scaled / 32.0).round() as usize).max(1) * 32;
        if (nearest as f32) < scaled * 0.9 {
            // Padded: the same scale as the other axis, extra rows repeat the border.
            (scale, (scaled.ceil() as usize).div_ceil(32) * 32)
        } else {
            (nearest as f32 / v as f32, nearest)
        }
    };
    let ((sx, w), (sy, h)) = (side(width), side(height));
    ([sx, sy], w, h)
}

/// Detect text boxes on a page.
pub fn detect(model: &Model, img: &RgbImage, s: &OcrSettings, times: &mut DetTimes) -> Result<Vec<TextBox>> {
    let (scale, w, h) = input_size(img.width(), img.height(), s.det_max_side);
    detect_sized(model, img, scale, w, h, s, times)
}

/// Detect text boxes on a page scaled by `scale` (x, y) into a `w × h` detector input.
pub fn detect_sized(
    model: &Model,
    img: &RgbImage,
    scale: [f32; 2],
    w: usize,
    h: usize,
    s: &OcrSettings,
    times: &mut DetTimes,
) -> Result<Vec<TextBox>> {
    let started = Instant::now();
    let mut input = vec![0f32; 3 * w * h];
    page_tensor(img, scale, w, h, &mut input);
    times.pre += started.elapsed();
    detect_input(model, &input, scale, w, h, (img.width(), img.height()), s, times)
}

/// Detect text boxes from a prepared `1 × 3 × h × w` input: the page (`page` = its width and
/// height) scaled by `scale` (x, y) and normalised.
#[allow(clippy::too_many_arguments)]
pub fn detect_input(
    model: &Model,
    input: &[f32],
    scale: [f32; 2],
    w: usize,
    h: usize,
    page: (u32, u32),
    s: &OcrSettings,
    times: &mut DetTimes,
) -> Result<Vec<TextBox>> {
    let (boxes, model_time) = model.run(&[1, 3, h, w], input, |shape, prob| {
        if shape.len() != 4 || shape[2] != h || shape[3] != w || prob.len() < w * h {
            return Err(Error::Model(format!("detector returned shape {shape:?} for input 1×3×{h}×{w}")));
        }
        let started = Instant::now();
        let boxes = db_boxes(&prob[..w * h], w, h, s);
        Ok((boxes, started.elapsed()))
    })?;
    let (boxes, post) = boxes?;
    times.model += model_time;
    times.post += post;

    // Back to page pixels: the input is the page scaled by `scale`, anchored at the top-left.
    let (pw, ph) = (page.0 as f32, page.1 as f32);
    Ok(boxes
        .into_iter()
        .map(|(quad, score)| TextBox {
            quad: quad.map(|[x, y]| [(x / scale[0]).round().clamp(0.0, pw), (y / scale[1]).round().clamp(0.0, ph)]),
            score,
        })
        .filter(|b| {
            let (bw, bh) = super::geometry::quad_size(&b.quad);
            bw > 3.0 && bh > 3.0
        })
        .collect())
}

/// DB post-processing on a probability map: boxes in map pixels with their scores.
pub fn db_boxes(prob: &[f32], w: usize, h: usize, s: &OcrSettings) -> Vec<(Quad, f32)> {
    let mut bitmap: Vec<u8> = prob.iter().map(|&p| (p > s.det_thresh) as u8).collect();
    if s.det_dilate {
        dilate_2x2(&mut bitmap, w, h);
    }
    let mut out = Vec::new();
    for region in regions(&bitmap, w, h).into_iter().take(s.det_max_candidates) {
        let mut points = region;
        let hull = convex_hull(&mut points);
        let Some(rect) = min_area_rect(&hull) else { continue };
        if rect.short_side() < s.det_min_size {
            continue;
        }
        let quad = rect.corners();
        let score = box_score(prob, w, h, &quad);
        if score < s.det_box_thresh {
            continue;
        }
        // PaddleOCR offsets the box with pyclipper, which works on integer coordinates: the
        // corners are truncated first. Doing the same keeps boxes where the model expects them.
        let mut corners = quad.map(|[x, y]| [x.trunc(), y.trunc()]);
        let Some(rect) = min_area_rect(&convex_hull(&mut corners)) else { continue };
        let grown = unclip(rect, s.det_unclip_ratio);
        if grown.short_side() < s.det_min_size + 2.0 {
            continue;
        }
        out.push((grown.corners(), score));
    }
    out
}

/// Grow a rectangle by `area × ratio / perimeter` on every side: for a rectangle this is exactly
/// the minimum-area rectangle around PaddleOCR's rounded polygon offset.
fn unclip(rect: RotatedRect, ratio: f32) -> RotatedRect {
    let area = rect.along * rect.across;
    let perimeter = 2.0 * (rect.along + rect.across);
    if perimeter <= 0.0 {
        return rect;
    }
    rect.grown(area * ratio / perimeter)
}

/// `cv2.dilate` with a 2×2 kernel of ones (anchor at its centre): a pixel is set when it or its
/// left, upper or upper-left neighbour is.
fn dilate_2x2(bitmap: &mut [u8], w: usize, h: usize) {
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = y * w + x;
            let mut v = bitmap[i];
            if x > 0 {
                v |= bitmap[i - 1];
            }
            if y > 0 {
                v |= bitmap[i - w];
                if x > 0 {
                    v |= bitmap[i - w - 1];
                }
            }
            bitmap[i] = v;
        }
    }
}

/// 8-connected regions of set pixels, each as the end points of its horizontal runs (pixel
/// centres): enough for the convex hull. Regions come in raster order of their first pixel.
fn regions(bitmap: &[u8], w: usize, h: usize) -> Vec<Vec<Point>> {
    // Runs: (y, x0, x1 inclusive).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    let mut row_start = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &bitmap[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            if row[x] != 0 {
                let x0 = x;
                while x < w && row[x] != 0 {
                    x += 1;
                }
                runs.push((y, x0, x - 1));
            } else {
                x += 1;
            }
        }
    }
    row_start.push(runs.len());
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for y in 1..h {
        let (prev, cur) = (row_start[y - 1]..row_start[y], row_start[y]..row_start[y + 1]);
        let mut j = prev.start;
        for i in cur {
            let (_, a0, a1) = runs[i];
            // Skip previous-row runs that end before this one starts (diagonal contact counts).
            while j < prev.end && runs[j].2 + 1 < a0 {
                j += 1;
            }
            let mut k = j;
            while k < prev.end && runs[k].1 <= a1 + 1 {
                let (ri, rk) = (find(&mut parent, i), find(&mut parent, k));
                if ri != rk {
                    let (lo, hi) = if ri < rk { (ri, rk) } else { (rk, ri) };
                    parent[hi] = lo;
                }
                k += 1;
            }
        }
    }
    let mut index_of_root = vec![usize::MAX; runs.len()];
    let mut out: Vec<Vec<Point>> = Vec::new();
    for (i, &(y, x0, x1)) in runs.iter().enumerate() {
        let root = find(&mut parent, i);
        if index_of_root[root] == usize::MAX {
            index_of_root[root] = out.len();
            out.push(Vec::new());
        }
        let pts = &mut out[index_of_root[root]];
        pts.push([x0 as f32, y as f32]);
        if x1 != x0 {
            pts.push([x1 as f32, y as f32]);
        }
    }
    out
}

/// Mean probability over the pixels whose centres lie inside the quad (PaddleOCR's "fast" score).
fn box_score(prob: &[f32], w: usize, h: usize, quad: &Quad) -> f32 {
    let b = super::geometry::bounds(quad);
    let x0 = (b[0].floor().max(0.0) as usize).min(w - 1);
    let x1 = (b[2].ceil().max(0.0) as usize).min(w - 1);
    let y0 = (b[1].floor().max(0.0) as usize).min(h - 1);
    let y1 = (b[3].ceil().max(0.0) as usize).min(h - 1);
    let (mut sum, mut n) = (0f64, 0usize);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if in_convex_quad(quad, [x as f32, y as f32]) {
                sum += prob[y * w + x] as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_scaled_to_the_max_side_and_padded_to_32() {
        assert_eq!(input_size(1024, 64, 2048), ([1.0, 1.0], 1024, 64));
        // 1100 → 1088 is resized; 42 → 32 would squash a text line, so it is padded to 64.
        let ([sx, sy], w, h) = input_size(1100, 42, 2048);
        assert_eq!((w, h), (1088, 64));
        assert!((sx - 1088.0 / 1100.0).abs() < 1e-6 && sy == 1.0);
        let ([sx, sy], w, h) = input_size(4000, 2000, 2000);
        assert_eq!((w, h), (2016, 992));
        assert!((sx - 2016.0 / 4000.0).abs() < 1e-6 && (sy - 992.0 / 2000.0).abs() < 1e-6);
    }

    #[test]
    fn two_text_blobs_become_two_grown_boxes_in_reading_position() {
        let (w, h) = (60, 20);
        let mut prob = vec![0.0f32; w * h];
        for y in 5..10 {
            for x in 5..25 {
                prob[y * w + x] = 0.9;
            }
            for x in 35..55 {
                prob[y * w + x] = 0.8;
            }
        }
        let s = OcrSettings::default();
        let mut boxes = db_boxes(&prob, w, h, &s);
        boxes.sort_by(|a, b| a.0[0][0].total_cmp(&b.0[0][0]));
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        let (q, score) = &boxes[0];
        // The dilated rim (probability 0) is inside the box too.
        assert!(*score > 0.6 && *score <= 0.9, "{score}");
        // Grown beyond the 20×5 core on every side, top-left first.
        assert!(q[0][0] < 5.0 && q[0][1] < 5.0 && q[2][0] > 24.0 && q[2][1] > 9.0, "{q:?}");
        // A faint blob under box_thresh is dropped.
        let faint: Vec<f32> = prob.iter().map(|p| p * 0.5).collect();
        assert!(db_boxes(&faint, w, h, &OcrSettings { det_thresh: 0.3, ..s }).is_empty());
    }

    #[test]
    fn diagonal_pixels_are_one_region() {
        let bitmap = [1, 0, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(regions(&bitmap, 3, 3).len(), 1);
        let apart = [1, 0, 1, 0, 0, 0, 1, 0, 1];
        assert_eq!(regions(&apart, 3, 3).len(), 4);
    }
}
