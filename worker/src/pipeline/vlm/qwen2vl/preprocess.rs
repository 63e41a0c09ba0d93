//! Page image → patches, as `transformers`' `Qwen2VLImageProcessor` does it (Qwen2-VL and
//! Qwen2.5-VL share it): `smart_resize` to multiples of `patch_size · merge_size` with the pixel
//! count kept within `[min_pixels, max_pixels]`, a PIL resize (BICUBIC by default, [`resize`]),
//! `x * rescale_factor` in f64 rounded to f32 and `(x - mean) / std` in f32, the image repeated
//! `temporal_patch_size` times (one image is one frame), then the patch reshape / permute that
//! lays the patches out merge block by merge block, each patch `channel × temporal × patch ×
//! patch` values.

use std::path::Path;

use docfleet_core::{Error, Result};
use image::RgbImage;
use serde::Deserialize;

use crate::pipeline::vlm::preprocess::value_table;
use crate::pipeline::vlm::resample::{Filter, resize};

/// The image steps of a Qwen2-VL `preprocessor_config.json`, defaults as the class's own.
#[derive(Debug, Clone, PartialEq)]
pub struct QwenProcessor {
    pub do_resize: bool,
    pub resample: Filter,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub patch_size: u32,
    pub temporal_patch_size: u32,
    pub merge_size: u32,
}

#[derive(Deserialize)]
struct Raw {
    do_resize: Option<bool>,
    resample: Option<i64>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
    min_pixels: Option<u64>,
    max_pixels: Option<u64>,
    size: Option<Size>,
    patch_size: Option<u32>,
    temporal_patch_size: Option<u32>,
    merge_size: Option<u32>,
}

#[derive(Deserialize)]
struct Size {
    shortest_edge: Option<u64>,
    longest_edge: Option<u64>,
}

const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// transformers' OPENAI_CLIP_STD digits as written there (the same f32 values either way).
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

impl QwenProcessor {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
        let raw: Raw = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Model(format!("{} is not a Qwen2-VL image processor config: {e}", path.display())))?;
        let bad = |key: &str, why: &str| Error::Model(format!("{}: `{key}` {why}", path.display()));
        let size = raw.size.as_ref();
        // `size` wins over the older top-level min_pixels / max_pixels, as in the class's __init__.
        let min_pixels = size.and_then(|s| s.shortest_edge).or(raw.min_pixels).unwrap_or(56 * 56);
        let max_pixels = size.and_then(|s| s.longest_edge).or(raw.max_pixels).unwrap_or(28 * 28 * 1280);
        let p = Self {
            do_resize: raw.do_resize.unwrap_or(true),
            resample: match raw.resample {
                None => Filter::Bicubic,
                Some(code) => Filter::from_pil(code).ok_or_else(|| bad("resample", "must be 0–5"))?,
            },
            do_rescale: raw.do_rescale.unwrap_or(true),
            rescale_factor: raw.rescale_factor.unwrap_or(1.0 / 255.0),
            do_normalize: raw.do_normalize.unwrap_or(true),
            image_mean: raw.image_mean.unwrap_or(CLIP_MEAN),
            image_std: raw.image_std.unwrap_or(CLIP_STD),
            min_pixels,
            max_pixels,
            patch_size: raw.patch_size.unwrap_or(14),
            temporal_patch_size: raw.temporal_patch_size.unwrap_or(2),
            merge_size: raw.merge_size.unwrap_or(2),
        };
        if p.image_std.contains(&0.0) {
            return Err(bad("image_std", "must not contain 0"));
        }
        if p.patch_size == 0 || p.temporal_patch_size == 0 || p.merge_size == 0 {
            return Err(bad("patch_size", "patch_size, temporal_patch_size and merge_size must be at least 1"));
        }
        if min_pixels > max_pixels {
            return Err(bad("min_pixels", "must not exceed max_pixels"));
        }
        Ok(p)
    }

    /// The side every resized edge is a multiple of (`patch_size · merge_size`).
    pub fn factor(&self) -> u32 {
        self.patch_size * self.merge_size
    }

    /// This processor with `max_pixels` lowered to `cap` (`vlm.max_pixels`; 0: unchanged).
    /// `min_pixels` follows it down, so the cap always wins.
    pub fn capped(&self, cap: u64) -> Self {
        let mut p = self.clone();
        if cap > 0 && cap < p.max_pixels {
            p.max_pixels = cap;
            p.min_pixels = p.min_pixels.min(cap);
        }
        p
    }
}

/// `smart_resize(height, width, factor, min_pixels, max_pixels)`: the resized (height, width).
pub fn smart_resize(height: u32, width: u32, factor: u32, min_pixels: u64, max_pixels: u64) -> Result<(u32, u32)> {
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if height == 0 || width == 0 {
        return Err(Error::InvalidInput(format!("the {width}×{height} image has no pixels")));
    }
    if h.max(w) / h.min(w) > 200.0 {
        return Err(Error::InvalidInput(format!(
            "the {width}×{height} image's aspect ratio is over 200 (Qwen2-VL's processor refuses it)"
        )));
    }
    // Python's round() rounds halves to even.
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    let pixels = (height as u64 * width as u64) as f64;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (pixels / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / pixels).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    let side = |v: f64| -> Result<u32> {
        if (1.0..=65536.0).contains(&v) {
            Ok(v as u32)
        } else {
            Err(Error::InvalidInput(format!("the {width}×{height} image would be resized to a side of {v} pixels")))
        }
    };
    Ok((side(h_bar)?, side(w_bar)?))
}

/// One page as the vision encoder's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// `t·h·w` patches of [`Self::patch_dim`] values.
    pub pixels: Vec<f32>,
    /// `[t, h, w]` in patches (`image_grid_thw`).
    pub grid: [i64; 3],
    pub patch_dim: usize,
    /// The size after `smart_resize`, (width, height).
    pub resized: (u32, u32),
}

impl Patches {
    /// Image tokens in the prompt: `t·h·w / merge²`.
    pub fn tokens(&self, merge: u32) -> usize {
        (self.grid.iter().product::<i64>() / (merge * merge) as i64) as usize
    }
}

/// Preprocess one page.
pub fn patches(img: &RgbImage, cfg: &QwenProcessor) -> Result<Patches> {
    let (w, h) = img.dimensions();
    let (rh, rw) =
        if cfg.do_resize { smart_resize(h, w, cfg.factor(), cfg.min_pixels, cfg.max_pixels)? } else { (h, w) };
    let (p, m, tp) = (cfg.patch_size as usize, cfg.merge_size as usize, cfg.temporal_patch_size as usize);
    if !(rh as usize).is_multiple_of(p * m) || !(rw as usize).is_multiple_of(p * m) {
        return Err(Error::InvalidInput(format!(
            "the {w}×{h} image is not a multiple of {} pixels and do_resize is off",
            p * m
        )));
    }
    let resized = if (rw, rh) == (w, h) { img.clone() } else { resize(img, rw, rh, cfg.resample, None) };
    let table = value_table(cfg.do_rescale, cfg.rescale_factor, cfg.do_normalize, cfg.image_mean, cfg.image_std);
    let (gh, gw) = (rh as usize / p, rw as usize / p);
    let patch_dim = 3 * tp * p * p;
    let mut pixels = Vec::with_capacity(gh * gw * patch_dim);
    let raw = resized.as_raw();
    let stride = rw as usize * 3;
    // transpose(0, 3, 6, 4, 7, 2, 1, 5, 8): merge block rows, block columns, rows and columns in
    // the block; then channel, frame, patch row, patch column.
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (y0, x0) = ((bh * m + mh) * p, (bw * m + mw) * p);
                    for c in 0..3 {
                        for _frame in 0..tp {
                            for y in y0..y0 + p {
                                let row = &raw[y * stride..];
                                for x in x0..x0 + p {
                                    pixels.push(table[row[x * 3 + c] as usize][c]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Patches { pixels, grid: [1, gh as i64, gw as i64], patch_dim, resized: (rw, rh) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_follows_the_python_formula() {
        // Values from transformers' smart_resize (factor 28, min 3136, max 25088).
        assert_eq!(smart_resize(84, 112, 28, 3136, 25088).unwrap(), (84, 112));
        assert_eq!(smart_resize(30, 20, 28, 3136, 25088).unwrap(), (84, 56));
        assert_eq!(smart_resize(1754, 1240, 28, 3136, 25088).unwrap(), (168, 112));
        // 42 / 28 = 1.5 rounds to 2 (half to even), 70 / 28 = 2.5 rounds to 2.
        assert_eq!(smart_resize(42, 70, 28, 784, 1 << 30).unwrap(), (56, 56));
        assert!(matches!(smart_resize(10, 2500, 28, 3136, 25088), Err(Error::InvalidInput(_))));
        assert!(matches!(smart_resize(0, 10, 28, 3136, 25088), Err(Error::InvalidInput(_))));
    }
}
