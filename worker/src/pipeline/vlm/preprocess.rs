//! Page image → `pixel_values`, following `transformers`' image processors step by step with
//! PIL's arithmetic ([`super::resample`]), so the encoder sees what it would see in Python:
//! Donut-style (turn to the model's long axis, shortest edge to the model's short side,
//! thumbnail into the model's box, centre padding with black) or ViT-style (plain resize), then
//! `x * rescale_factor` in f64 rounded to f32 and `(x - mean) / std` in f32, channels first.

use docfleet_core::{Error, Result};
use image::RgbImage;

use super::config::{ImageProcessorConfig, ProcessorKind};
use super::resample::{Filter, resize};

/// One image as the encoder's input: `3 × height × width` f32 values, channels first.
pub fn pixel_values(img: &RgbImage, cfg: &ImageProcessorConfig) -> Result<Vec<f32>> {
    let img = prepare(img, cfg)?;
    Ok(to_tensor(&img, cfg))
}

/// The geometric steps, ending at exactly the model's `height × width`.
fn prepare(img: &RgbImage, cfg: &ImageProcessorConfig) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    let (out_h, out_w) = (cfg.height, cfg.width);
    let unusable = |why: String| {
        Error::InvalidInput(format!(
            "the {w}×{h} image cannot be prepared for the model's {out_w}×{out_h} input: {why}"
        ))
    };
    if w == 0 || h == 0 {
        return Err(unusable("it has no pixels".into()));
    }
    let mut img = std::borrow::Cow::Borrowed(img);
    if cfg.kind == ProcessorKind::Vit {
        if cfg.do_resize {
            img = std::borrow::Cow::Owned(resize(&img, out_w, out_h, cfg.resample, None));
        }
    } else {
        if cfg.do_align_long_axis && ((out_w < out_h && w > h) || (out_w > out_h && w < h)) {
            // np.rot90(image, 3): a quarter turn clockwise.
            img = std::borrow::Cow::Owned(image::imageops::rotate90(img.as_ref()));
        }
        if cfg.do_resize {
            // get_resize_output_image_size(size=min(height, width), default_to_square=False)
            let (w, h) = img.dimensions();
            let short_target = out_h.min(out_w) as u64;
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = (short_target as f64 * long as f64 / short as f64) as u64;
            let (nw, nh) = if w <= h { (short_target, new_long) } else { (new_long, short_target) };
            let (nw, nh) = (to_dim(nw).map_err(&unusable)?, to_dim(nh).map_err(&unusable)?);
            img = std::borrow::Cow::Owned(resize(&img, nw, nh, cfg.resample, None));
        }
        if cfg.do_thumbnail {
            let (w, h) = img.dimensions();
            let (mut th, mut tw) = (h.min(out_h), w.min(out_w));
            if (th, tw) != (h, w) {
                if h > w {
                    tw = (w as f64 * th as f64 / h as f64) as u32;
                } else if w > h {
                    th = (h as f64 * tw as f64 / w as f64) as u32;
                }
                if tw == 0 || th == 0 {
                    return Err(unusable(format!(
                        "fitting it into the input box leaves {tw}×{th} pixels (the aspect ratio is too extreme)"
                    )));
                }
                img = std::borrow::Cow::Owned(resize(&img, tw, th, Filter::Bicubic, Some(2.0)));
            }
        }
        if cfg.do_pad {
            let (w, h) = img.dimensions();
            if w > out_w || h > out_h {
                return Err(unusable(format!("the resized image ({w}×{h}) is larger than the padded size")));
            }
            if (w, h) != (out_w, out_h) {
                let mut padded = RgbImage::new(out_w, out_h);
                image::imageops::replace(&mut padded, img.as_ref(), ((out_w - w) / 2) as i64, ((out_h - h) / 2) as i64);
                img = std::borrow::Cow::Owned(padded);
            }
        }
    }
    let (w, h) = img.dimensions();
    if (w, h) != (out_w, out_h) {
        return Err(unusable(format!(
            "the processor's steps give {w}×{h} pixels (do_resize/do_pad are off in preprocessor_config.json)"
        )));
    }
    Ok(img.into_owned())
}

fn to_dim(n: u64) -> std::result::Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|&n| (1..=1 << 20).contains(&n))
        .ok_or_else(|| format!("resizing it would need a side of {n} pixels"))
}

/// Every u8 value's f32 per channel after `rescale` (f64, rounded to f32) and `normalize` (f32),
/// as `transformers.image_transforms` computes them: a table keeps the exact arithmetic and costs
/// nothing.
pub fn value_table(do_rescale: bool, factor: f64, do_normalize: bool, mean: [f32; 3], std: [f32; 3]) -> Vec<[f32; 3]> {
    (0..=255u8)
        .map(|v| {
            let x = if do_rescale { (v as f64 * factor) as f32 } else { v as f32 };
            std::array::from_fn(|c| if do_normalize { (x - mean[c]) / std[c] } else { x })
        })
        .collect()
}

/// Rescale and normalise like `transformers.image_transforms.rescale` / `normalize`.
fn to_tensor(img: &RgbImage, cfg: &ImageProcessorConfig) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    let table = value_table(cfg.do_rescale, cfg.rescale_factor, cfg.do_normalize, cfg.image_mean, cfg.image_std);
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = table[p[c] as usize][c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::vlm::config::ProcessorKind;

    fn donut(h: u32, w: u32) -> ImageProcessorConfig {
        ImageProcessorConfig {
            kind: ProcessorKind::Donut,
            height: h,
            width: w,
            do_align_long_axis: false,
            do_resize: true,
            resample: Filter::Bilinear,
            do_thumbnail: true,
            do_pad: true,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }

    #[test]
    fn padding_is_black_and_centred() {
        // 30x10 white → shortest edge 48: 144x48 → thumbnail into 48x64: 48x16, padded 24 rows above.
        let img = RgbImage::from_pixel(30, 10, image::Rgb([255, 255, 255]));
        let v = pixel_values(&img, &donut(64, 48)).unwrap();
        assert_eq!(v.len(), 3 * 64 * 48);
        let at = |c: usize, y: usize, x: usize| v[c * 64 * 48 + y * 48 + x];
        assert_eq!(at(0, 0, 0), -1.0);
        assert_eq!(at(2, 23, 47), -1.0);
        assert_eq!(at(1, 24, 10), 1.0);
        assert_eq!(at(1, 39, 47), 1.0);
        assert_eq!(at(1, 40, 0), -1.0);
    }

    #[test]
    fn degenerate_shapes_are_clear_errors() {
        let thin = RgbImage::new(400, 2);
        let err = pixel_values(&thin, &donut(64, 48)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("400×2") && err.to_string().contains("aspect ratio"), "{err}");
        let mut cfg = donut(64, 48);
        cfg.do_pad = false;
        let err = pixel_values(&RgbImage::new(30, 10), &cfg).unwrap_err().to_string();
        assert!(err.contains("48×16"), "{err}");
    }
}
