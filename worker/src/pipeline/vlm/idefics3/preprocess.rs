//! Page image → tiles, as `transformers`' `Idefics3ImageProcessor` does it: the longest edge
//! resized to `size.longest_edge` (up or down, the other edge rounded up to even), then to
//! multiples of the tile size `max_image_size.longest_edge`, split into rows × cols tiles read
//! row by row, and the whole page resized to one tile (the global image) **last**; with
//! `do_image_splitting` off, the global image alone. Every resize is PIL's ([`resize`], LANCZOS
//! by default), then `x * rescale_factor` in f64 rounded to f32 and `(x - mean) / std` in f32.
//! Every tile has the tile size, so `do_pad` pads nothing within a page and the pixel mask is all
//! ones.

use std::path::Path;

use docfleet_core::{Error, Result};
use image::RgbImage;
use serde_json::Value;

use crate::pipeline::vlm::resample::{Filter, resize};

/// `MAX_IMAGE_SIZE` of `image_processing_idefics3.py`: no edge beyond 4k.
const MAX_IMAGE_SIZE: u32 = 4096;

/// The image steps of an Idefics3 `preprocessor_config.json`, defaults as the class's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Idefics3Processor {
    pub do_resize: bool,
    /// `size.longest_edge` (default 4 × 364).
    pub longest_edge: u32,
    pub resample: Filter,
    pub do_image_splitting: bool,
    /// `max_image_size.longest_edge`: the tile side the vision encoder takes (default 364).
    pub tile: u32,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for Idefics3Processor {
    fn default() -> Self {
        Self {
            do_resize: true,
            longest_edge: 4 * 364,
            resample: Filter::Lanczos,
            do_image_splitting: true,
            tile: 364,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }
}

impl Idefics3Processor {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", path.display())))?;
        Self::from_value(&v, path)
    }

    /// Parse a processor config; `path` names it in errors.
    pub fn from_value(v: &Value, path: &Path) -> Result<Self> {
        let bad = |key: &str, why: &str| Error::Model(format!("{}: `{key}` {why}", path.display()));
        let get = |key: &str| v.get(key).filter(|x| !x.is_null());
        let d = Self::default();
        let flag = |key: &str, default: bool| -> Result<bool> {
            get(key).map(|x| x.as_bool().ok_or_else(|| bad(key, "must be true or false"))).unwrap_or(Ok(default))
        };
        let edge = |key: &str, default: u32| -> Result<u32> {
            match get(key) {
                None => Ok(default),
                Some(x) => x
                    .get("longest_edge")
                    .and_then(Value::as_u64)
                    .filter(|&n| (1..=MAX_IMAGE_SIZE as u64).contains(&n))
                    .map(|n| n as u32)
                    .ok_or_else(|| bad(key, "must be {\"longest_edge\": 1–4096} (other forms are not supported)")),
            }
        };
        let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3]> {
            match get(key) {
                None => Ok(default),
                Some(Value::Array(a)) if a.len() == 3 => {
                    let mut out = [0f32; 3];
                    for (o, x) in out.iter_mut().zip(a) {
                        *o = x.as_f64().ok_or_else(|| bad(key, "must hold numbers"))? as f32;
                    }
                    Ok(out)
                }
                Some(x) => x.as_f64().map(|f| [f as f32; 3]).ok_or_else(|| bad(key, "must be a number or 3 numbers")),
            }
        };
        let image_std = triple("image_std", d.image_std)?;
        if image_std.contains(&0.0) {
            return Err(bad("image_std", "must not contain 0"));
        }
        Ok(Self {
            do_resize: flag("do_resize", d.do_resize)?,
            longest_edge: edge("size", d.longest_edge)?,
            resample: match get("resample") {
                None => d.resample,
                Some(x) => x.as_i64().and_then(Filter::from_pil).ok_or_else(|| bad("resample", "must be 0–5"))?,
            },
            do_image_splitting: flag("do_image_splitting", d.do_image_splitting)?,
            tile: edge("max_image_size", d.tile)?,
            do_rescale: flag("do_rescale", d.do_rescale)?,
            rescale_factor: match get("rescale_factor") {
                None => d.rescale_factor,
                Some(x) => x.as_f64().ok_or_else(|| bad("rescale_factor", "must be a number"))?,
            },
            do_normalize: flag("do_normalize", d.do_normalize)?,
            image_mean: triple("image_mean", d.image_mean)?,
            image_std,
        })
    }
}

/// One page as the vision encoder's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiles {
    /// `count × 3 × tile × tile` f32 values, channels first: the tiles row by row, then the
    /// global image.
    pub pixels: Vec<f32>,
    pub count: usize,
    /// Tile rows and columns (0 and 0: the global image alone).
    pub rows: usize,
    pub cols: usize,
}

/// `_resize_output_size_rescale_to_max_len` then `_resize_output_size_scale_below_upper_bound`:
/// (height, width).
fn longest_edge_size(height: u32, width: u32, max_len: u32) -> (u64, u64) {
    let (mut h, mut w) = (height as f64, width as f64);
    let aspect = w / h;
    if w >= h {
        w = max_len as f64;
        h = (w / aspect).trunc();
        if !(h as u64).is_multiple_of(2) {
            h += 1.0;
        }
    } else {
        h = max_len as f64;
        w = (h * aspect).trunc();
        if !(w as u64).is_multiple_of(2) {
            w += 1.0;
        }
    }
    let (mut h, mut w) = (h.max(1.0), w.max(1.0));
    let aspect = w / h;
    let upper = MAX_IMAGE_SIZE as f64;
    if w >= h && w > upper {
        w = upper;
        h = (w / aspect).trunc();
    } else if h > w && h > upper {
        h = upper;
        w = (h * aspect).trunc();
    }
    (h.max(1.0) as u64, w.max(1.0) as u64)
}

/// `resize_for_vision_encoder`: both edges to multiples of `tile`, keeping the aspect ratio.
fn vision_encoder_size(height: u32, width: u32, tile: u32) -> (u64, u64) {
    let (h, w, t) = (height as f64, width as f64, tile as f64);
    let aspect = w / h;
    let ceil_to = |x: f64| ((x / t).ceil() * t) as u64;
    if w >= h {
        let w = ceil_to(w);
        let h = (w as f64 / aspect).trunc();
        (ceil_to(h), w)
    } else {
        let h = ceil_to(h);
        let w = (h as f64 * aspect).trunc();
        (h, ceil_to(w))
    }
}

/// Preprocess one page.
pub fn tiles(img: &RgbImage, cfg: &Idefics3Processor) -> Result<Tiles> {
    let (w, h) = img.dimensions();
    let unusable = |why: String| Error::InvalidInput(format!("the {w}×{h} image cannot be made into tiles: {why}"));
    if w == 0 || h == 0 {
        return Err(unusable("it has no pixels".into()));
    }
    let sized = |(nh, nw): (u64, u64), step: &str| -> Result<(u32, u32)> {
        let ok = |n: u64| (1..=(MAX_IMAGE_SIZE as u64 * 2)).contains(&n);
        if ok(nh) && ok(nw) {
            Ok((nh as u32, nw as u32))
        } else {
            Err(unusable(format!(
                "{step} would make it {nw}×{nh} pixels (too small or too narrow for a {t}×{t} tile)",
                t = cfg.tile
            )))
        }
    };
    let mut page = std::borrow::Cow::Borrowed(img);
    if cfg.do_resize {
        let (nh, nw) = sized(longest_edge_size(h, w, cfg.longest_edge), "resizing its longest edge")?;
        page = std::borrow::Cow::Owned(resize(&page, nw, nh, cfg.resample, None));
    }
    let t = cfg.tile;
    let mut frames: Vec<RgbImage> = Vec::new();
    let (mut rows, mut cols) = (0, 0);
    if cfg.do_image_splitting {
        let (ph, pw) = (page.height(), page.width());
        let (nh, nw) = sized(vision_encoder_size(ph, pw, t), "resizing it to whole tiles")?;
        let page = resize(&page, nw, nh, cfg.resample, None);
        if nh > t || nw > t {
            rows = nh.div_ceil(t) as usize;
            cols = nw.div_ceil(t) as usize;
            let (th, tw) = (nh.div_ceil(rows as u32), nw.div_ceil(cols as u32));
            for r in 0..rows as u32 {
                for c in 0..cols as u32 {
                    let (x0, y0) = (c * tw, r * th);
                    let (x1, y1) = ((x0 + tw).min(nw), (y0 + th).min(nh));
                    frames.push(image::imageops::crop_imm(&page, x0, y0, x1 - x0, y1 - y0).to_image());
                }
            }
            frames.push(resize(&page, t, t, cfg.resample, None));
        } else {
            frames.push(page);
        }
    } else {
        frames.push(resize(&page, t, t, cfg.resample, None));
    }
    if let Some(f) = frames.iter().find(|f| f.dimensions() != (t, t)) {
        // Tiles of other sizes would need padding and a partial pixel mask.
        return Err(unusable(format!("a tile came out {}×{}, not {t}×{t}", f.width(), f.height())));
    }
    let plane = (t * t) as usize;
    let table: Vec<[f32; 3]> = (0..=255u8)
        .map(|v| {
            let x = if cfg.do_rescale { (v as f64 * cfg.rescale_factor) as f32 } else { v as f32 };
            std::array::from_fn(|c| if cfg.do_normalize { (x - cfg.image_mean[c]) / cfg.image_std[c] } else { x })
        })
        .collect();
    let mut pixels = vec![0f32; frames.len() * 3 * plane];
    for (f, frame) in frames.iter().enumerate() {
        let out = &mut pixels[f * 3 * plane..(f + 1) * 3 * plane];
        for (i, p) in frame.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = table[p[c] as usize][c];
            }
        }
    }
    Ok(Tiles { pixels, count: frames.len(), rows, cols })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(longest: u32, tile: u32, split: bool) -> Idefics3Processor {
        Idefics3Processor { longest_edge: longest, tile, do_image_splitting: split, ..Idefics3Processor::default() }
    }

    #[test]
    fn sizes_follow_the_python_formulas() {
        // A4 at 150 dpi (1240×1754) under granite-docling's 2048 / 512.
        assert_eq!(longest_edge_size(1754, 1240, 2048), (2048, 1448));
        assert_eq!(vision_encoder_size(2048, 1448, 512), (2048, 1536));
        // Landscape: odd heights are rounded up to even.
        assert_eq!(longest_edge_size(333, 500, 2048), (1364, 2048));
        // A 1×N strip stays at least one pixel high.
        assert_eq!(longest_edge_size(1, 4000, 2048), (1, 2048));
        assert_eq!(vision_encoder_size(1, 2048, 512), (512, 2048));
    }

    #[test]
    fn pages_split_into_row_major_tiles_plus_the_global_image() {
        let img = RgbImage::from_fn(60, 40, |x, y| image::Rgb([(x * 4) as u8, (y * 6) as u8, 128]));
        let t = tiles(&img, &cfg(64, 32, true)).unwrap();
        // 60×40 → 64×42 (42 is even) → whole tiles 64×64: 2×2 tiles and the global one.
        assert_eq!((t.rows, t.cols, t.count), (2, 2, 5));
        assert_eq!(t.pixels.len(), 5 * 3 * 32 * 32);
        let t = tiles(&img, &cfg(64, 32, false)).unwrap();
        assert_eq!((t.rows, t.cols, t.count), (0, 0, 1));
        // A page no larger than a tile is the global image alone.
        let t = tiles(&img, &cfg(32, 32, true)).unwrap();
        assert_eq!((t.rows, t.cols, t.count), (0, 0, 1));
        // White normalises to 1.
        let white = RgbImage::from_pixel(8, 8, image::Rgb([255, 255, 255]));
        assert!(tiles(&white, &cfg(16, 16, true)).unwrap().pixels.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn strips_tile_and_oversized_or_empty_images_are_clear_errors() {
        // A 1×N strip is upscaled to whole tiles, as in Python: 5000×1 → 2048×1 → 2048×512.
        let t = tiles(&RgbImage::new(5000, 1), &cfg(2048, 512, true)).unwrap();
        assert_eq!((t.rows, t.cols, t.count), (1, 4, 5));
        let err = tiles(&RgbImage::new(0, 0), &cfg(2048, 512, true)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        // Without the longest-edge resize a tall page would need 10240 rows of tiles.
        let mut c = cfg(2048, 512, true);
        c.do_resize = false;
        let err = tiles(&RgbImage::new(3, 10_000), &c).unwrap_err().to_string();
        assert!(err.contains("3×10000") && err.contains("tile"), "{err}");
    }
}
