//! Pillow's `Image.resize` for 8-bit RGB images, bit for bit. The models' image processors
//! (`transformers`) resize with PIL, and a model only reproduces its reference outputs when its
//! input does too: `image`'s filters differ from PIL's by a grey level here and there. This is
//! Pillow's fixed-point separable convolution (`libImaging/Resample.c`: 22-bit coefficients,
//! horizontal pass first, over only the rows the vertical pass reads), its box reduction for
//! `reducing_gap` (`Reduce.c`) and its nearest-neighbour affine stepping, checked against Pillow
//! 13 on `tests/fixtures/vlm/preprocess/pil_resize.bin`.

use image::RgbImage;

/// PIL's resampling filters, numbered as `PIL.Image.Resampling` (and `preprocessor_config.json`'s `resample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Filter {
    /// The filter with PIL's number `code` (0–5).
    pub fn from_pil(code: i64) -> Option<Filter> {
        Some(match code {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    /// Half-width of the kernel at scale 1 (`_filters_support` / the C `struct filter`).
    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| if x == 0.0 { 1.0 } else { (x * PI).sin() / (x * PI) };
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * PI;
                    // The C source writes the constants as floats: 0.54f, 0.46f.
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// `image.resize((width, height), resample=filter, reducing_gap=reducing_gap)` of Pillow on an
/// RGB image. `width` and `height` must be at least 1.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter, reducing_gap: Option<f64>) -> RgbImage {
    assert!(width > 0 && height > 0, "resize to an empty image");
    let (w, h) = img.dimensions();
    if (w, h) == (width, height) {
        return img.clone();
    }
    let mut region = [0.0f64, 0.0, w as f64, h as f64];
    let mut reduced = None;
    if let (Some(gap), false) = (reducing_gap, filter == Filter::Nearest) {
        let factor_x = (((region[2] - region[0]) / width as f64 / gap) as u32).max(1);
        let factor_y = (((region[3] - region[1]) / height as f64 / gap) as u32).max(1);
        if factor_x > 1 || factor_y > 1 {
            // Image._get_safe_box: the source pixels the filter can reach, whole pixels.
            let support = filter.support() - 0.5;
            let (sx, sy) =
                (support * (region[2] - region[0]) / width as f64, support * (region[3] - region[1]) / height as f64);
            let safe = [
                ((region[0] - sx) as i64).max(0) as u32,
                ((region[1] - sy) as i64).max(0) as u32,
                ((region[2] + sx).ceil() as u32).min(w),
                ((region[3] + sy).ceil() as u32).min(h),
            ];
            reduced = Some(reduce(img, factor_x, factor_y, safe));
            region = [
                (region[0] - safe[0] as f64) / factor_x as f64,
                (region[1] - safe[1] as f64) / factor_y as f64,
                (region[2] - safe[0] as f64) / factor_x as f64,
                (region[3] - safe[1] as f64) / factor_y as f64,
            ];
        }
    }
    let source = reduced.as_ref().unwrap_or(img);
    // The box travels to C as four floats.
    let region = region.map(|v| v as f32);
    resample_box(source, width, height, filter, region)
}

/// `ImagingResample` (or the crop / nearest shortcuts of `_imaging.c`'s `_resize`) of the `region`
/// (x0, y0, x1, y1 in source pixels) to `width × height`.
fn resample_box(img: &RgbImage, width: u32, height: u32, filter: Filter, region: [f32; 4]) -> RgbImage {
    let [x0, y0, x1, y1] = region;
    if x0.fract() == 0.0 && y0.fract() == 0.0 && x1 - x0 == width as f32 && y1 - y0 == height as f32 {
        return image::imageops::crop_imm(img, x0 as u32, y0 as u32, width, height).to_image();
    }
    if filter == Filter::Nearest {
        return nearest(img, width, height, region);
    }
    let (in_w, in_h) = img.dimensions();
    let need_horizontal = width != in_w || x0 != 0.0 || x1 != width as f32;
    let need_vertical = height != in_h || y0 != 0.0 || y1 != height as f32;
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    // pixels as the width (the order changes the rounding of the intermediate image).
    let (dh, dw) = (in_h as i64 - height as i64, in_w as i64 - width as i64);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let vertical = Coefficients::new(in_h, y0, y1, height, filter);
    let horizontal = need_horizontal.then(|| Coefficients::new(in_w, x0, x1, width, filter));
    match (horizontal, horizontal_first) {
        (Some(h), true) => {
            // Only the source rows the vertical pass reads.
            let first_row = vertical.bounds[0].0;
            let last_row = vertical.bounds.last().map(|&(min, len)| min + len).unwrap_or(first_row);
            let tmp = horizontal_pass(img, &h, first_row, last_row - first_row);
            if need_vertical { vertical_pass(&tmp, &vertical, first_row) } else { tmp }
        }
        (Some(h), false) => {
            let tmp = if need_vertical { vertical_pass(img, &vertical, 0) } else { img.clone() };
            let rows = tmp.height() as usize;
            horizontal_pass(&tmp, &h, 0, rows)
        }
        (None, _) if need_vertical => vertical_pass(img, &vertical, 0),
        (None, _) => img.clone(),
    }
}

/// `ImagingResampleHorizontal_8bpc` over `rows` source rows from `first_row`.
fn horizontal_pass(img: &RgbImage, c: &Coefficients, first_row: usize, rows: usize) -> RgbImage {
    let width = c.bounds.len() as u32;
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    let mut out = RgbImage::new(width, rows as u32);
    for (y, out_row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
        let row = &src[(y + first_row) * stride..][..stride];
        for (x, px) in out_row.chunks_exact_mut(3).enumerate() {
            let (min, len) = c.bounds[x];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (i, &w) in c.kernel(x)[..len].iter().enumerate() {
                let p = &row[(min + i) * 3..][..3];
                for ch in 0..3 {
                    acc[ch] = acc[ch].wrapping_add(p[ch] as i32 * w);
                }
            }
            for ch in 0..3 {
                px[ch] = clip8(acc[ch]);
            }
        }
    }
    out
}

/// `ImagingResampleVertical_8bpc`; `row_shift` is the source row the image starts at.
fn vertical_pass(img: &RgbImage, c: &Coefficients, row_shift: usize) -> RgbImage {
    let stride = img.width() as usize * 3;
    let src = img.as_raw();
    let mut out = RgbImage::new(img.width(), c.bounds.len() as u32);
    for (y, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (min, len) = c.bounds[y];
        let min = min - row_shift;
        let k = &c.kernel(y)[..len];
        for (i, v) in out_row.iter_mut().enumerate() {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (j, &w) in k.iter().enumerate() {
                acc = acc.wrapping_add(src[(min + j) * stride + i] as i32 * w);
            }
            *v = clip8(acc);
        }
    }
    out
}

/// Fraction bits of the fixed-point coefficients (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// `clip8`: the accumulator back to 0–255 (an arithmetic shift, then clamped like the lookup table).
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel, the first source pixel, how
/// many it reads, and their fixed-point weights.
struct Coefficients {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl Coefficients {
    fn new(in_size: u32, in0: f32, in1: f32, out_size: u32, filter: Filter) -> Self {
        let scale = (in1 - in0) as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size as usize);
        let mut weights = vec![0i32; out_size as usize * ksize];
        let mut k = vec![0f64; ksize];
        let mut normalized = vec![0f64; out_size as usize * ksize];
        for xx in 0..out_size as usize {
            let center = in0 as f64 + (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let len = xmax.max(0) as usize;
            let mut total = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(len) {
                let w = filter.weight(((x as i64 + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                total += w;
            }
            for (x, &kx) in k.iter().enumerate().take(len) {
                normalized[xx * ksize + x] = if total != 0.0 { kx / total } else { kx };
            }
            bounds.push((xmin as usize, len));
        }
        for (w, &v) in weights.iter_mut().zip(&normalized) {
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            *w = if v < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 };
        }
        Self { ksize, bounds, weights }
    }

    fn kernel(&self, i: usize) -> &[i32] {
        &self.weights[i * self.ksize..][..self.ksize]
    }
}

/// The nearest-neighbour path: `ImagingScaleAffine`, stepping source coordinates by `scale` from
/// the first pixel's centre (accumulated, as Pillow does).
fn nearest(img: &RgbImage, width: u32, height: u32, region: [f32; 4]) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    let steps = |n: u32, lo: f32, hi: f32, limit: u32| -> Vec<u32> {
        let a = (hi - lo) as f64 / n as f64;
        let mut at = lo as f64 + a * 0.5;
        (0..n)
            .map(|_| {
                let i = if at < 0.0 { 0 } else { (at as u32).min(limit - 1) };
                at += a;
                i
            })
            .collect()
    };
    let xs = steps(width, region[0], region[2], in_w);
    let ys = steps(height, region[1], region[3], in_h);
    RgbImage::from_fn(width, height, |x, y| *img.get_pixel(xs[x as usize], ys[y as usize]))
}

/// `Image.reduce((factor_x, factor_y), box=region)`: the mean of each `factor_x × factor_y` block
/// of the region (x0, y0, x1, y1), partial blocks at the right and bottom edges averaged over what
/// they hold, with Pillow's rounding (`(sum + n/2) * (2^32 / 256n) >> 24`).
pub fn reduce(img: &RgbImage, factor_x: u32, factor_y: u32, region: [u32; 4]) -> RgbImage {
    let [x0, y0, x1, y1] = region;
    let (w, h) = (x1 - x0, y1 - y0);
    let out_w = w.div_ceil(factor_x);
    let out_h = h.div_ceil(factor_y);
    RgbImage::from_fn(out_w, out_h, |ox, oy| {
        let bx = x0 + ox * factor_x;
        let by = y0 + oy * factor_y;
        let bw = factor_x.min(x1 - bx);
        let bh = factor_y.min(y1 - by);
        let n = bw * bh;
        let multiplier = (4_294_967_296.0f32 / (256 * n) as f32) as u32;
        let amend = n / 2;
        let mut sum = [amend; 3];
        for y in by..by + bh {
            for x in bx..bx + bw {
                let p = img.get_pixel(x, y);
                for c in 0..3 {
                    sum[c] += p[c] as u32;
                }
            }
        }
        image::Rgb(sum.map(|s| (s.wrapping_mul(multiplier) >> 24) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy_and_filters_keep_a_flat_image_flat() {
        let img = RgbImage::from_pixel(7, 5, image::Rgb([10, 200, 77]));
        assert_eq!(resize(&img, 7, 5, Filter::Bicubic, None), img);
        for code in 0..6 {
            let f = Filter::from_pil(code).unwrap();
            for (w, h) in [(3, 2), (19, 13), (7, 1)] {
                let out = resize(&img, w, h, f, Some(2.0));
                assert_eq!(out.dimensions(), (w, h));
                assert!(out.pixels().all(|p| *p == image::Rgb([10, 200, 77])), "{f:?} {w}x{h}");
            }
        }
        assert_eq!(Filter::from_pil(6), None);
    }

    #[test]
    fn reduce_averages_blocks_with_pillows_rounding() {
        // A 3x2 block of 0..5: mean 2.5, and Pillow's truncated multiplier makes it 2, not 3
        // (what `Image.reduce((3, 2))` returns).
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(x + 3 * y) as u8, 255, 0]));
        let out = reduce(&img, 3, 2, [0, 0, 3, 2]);
        assert_eq!(out.dimensions(), (1, 1));
        assert_eq!(out.get_pixel(0, 0).0, [2, 255, 0]);
        // Partial edge block: 5 columns by 2 → one full block (2 px) and one of 1 px.
        let img = RgbImage::from_fn(5, 1, |x, _| image::Rgb([x as u8 * 10, 0, 0]));
        let out = reduce(&img, 2, 1, [0, 0, 5, 1]);
        assert_eq!(out.pixels().map(|p| p[0]).collect::<Vec<_>>(), vec![5, 25, 40]);
    }
}
