//! Parity with the reference implementations, stage by stage, on the fixture pages
//! (`tests/fixtures/ocr`): PP-OCRv6 detection and recognition against rapidocr 3.10.0
//! (`rapidocr_v6_reference.json`) and layout regions against rapid-layout 1.2.1
//! (`rapid_layout_reference.json`), both written by `scripts/ocr/reference_v6_layout.py` with
//! pinned versions. Each stage gets the same input its reference got (the page resized as
//! `cv2.resize` does to rapidocr's detector size; rapidocr's own boxes for recognition), so a
//! difference is ours. PDF pages are left out of the detection and layout comparisons: the
//! references render them with pdfium, the pipeline with hayro, and the pixels differ (boxes by
//! 2–5 page pixels, a region's class on page 3); recognition on rapidocr's boxes still matches
//! there and keeps them. Needs
//! onnxruntime and the models (`scripts/setup/onnxruntime.sh`) and fails, saying so, without them.

use std::path::{Path, PathBuf};

use docfleet_core::config::OcrModels;
use docfleet_core::{Settings, models};
use image::RgbImage;
use serde_json::Value;

use super::geometry::{Quad, quad_size, rotate_corners};
use super::region::{LayoutDetector, RegionClass, RegionTimes};
use super::sample::resize_bgr_u8;
use super::{det, rec};
use crate::batch::BatchPolicy;
use crate::document::given_or_rasterize;
use crate::runtime::{Model, Runtime};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ocr")
}

fn reference(name: &str) -> Value {
    let path = fixtures().join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

const SETUP: &str = "needs onnxruntime and the models: run `scripts/setup/onnxruntime.sh`";

/// The stored pages of a fixture file, decoded as the pipeline decodes them.
fn pages(settings: &Settings, file: &str) -> Vec<RgbImage> {
    let bytes = std::fs::read(fixtures().join(file)).unwrap();
    let (raster, _) = given_or_rasterize(None, &bytes, &settings.limits, settings.ocr.pdf_dpi).unwrap();
    raster.1.iter().map(|p| p.image.clone()).collect()
}

/// A file of the v6 set (`models.ocr_v6`), loaded on its own.
fn v6_model(runtime: &Runtime, settings: &Settings, index: usize) -> Model {
    let repo = &settings.models.ocr_v6;
    let snap = models::locate(&settings.models, OcrModels::V6.slot(), repo).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let file = &repo.files[index];
    runtime.load_model(&snap.file(file), format!("{}/{file}", snap.id()), BatchPolicy::SINGLE).unwrap()
}

fn quad(v: &Value) -> Quad {
    let p = |i: usize| [v[i][0].as_f64().unwrap() as f32, v[i][1].as_f64().unwrap() as f32];
    [p(0), p(1), p(2), p(3)]
}

fn max_corner_distance(a: &Quad, b: &Quad) -> f32 {
    a.iter().zip(b).map(|(p, q)| (p[0] - q[0]).abs().max((p[1] - q[1]).abs())).fold(0.0, f32::max)
}

/// rapidocr's `DetPreProcess` with its default `limit_type: min`, `limit_side_len: 736`: a short
/// side under 736 is scaled up to it, then each side (truncated) is rounded to a multiple of 32.
fn rapidocr_det_size(w: u32, h: u32) -> ([f32; 2], usize, usize) {
    let (wf, hf) = (w as f64, h as f64);
    let ratio = if wf.min(hf) < 736.0 { 736.0 / wf.min(hf) } else { 1.0 };
    let side = |v: f64| (((v * ratio).trunc() / 32.0).round() * 32.0) as usize;
    let (dw, dh) = (side(wf), side(hf));
    ([dw as f32 / w as f32, dh as f32 / h as f32], dw, dh)
}

/// Corner tolerance for detection boxes, in page pixels: one detector pixel (`1 / scale` page
/// pixels: our cv2-like resize is off by one level on ~0.03 % of the pixels, and onnxruntime
/// threads sum in their own order) plus the rounding of the corners to whole pixels.
fn det_tolerance(scale: [f32; 2]) -> f32 {
    (1.0 / scale[0].min(scale[1])).max(1.0) + 1.0
}

/// A box whose mean probability is this close to `det_box_thresh` may be kept by one side and
/// dropped by the other: the "fast" score averages the pixels inside the box, and cv2.fillPoly on
/// truncated corners picks a slightly different set of pixels than our centre-in-quad test.
const SCORE_MARGIN: f32 = 0.03;

/// rapidocr's detector input: `cv2.resize` to `w × h`, then `(p / 255 − 0.5) / 0.5` in BGR planes.
fn rapidocr_det_input(img: &RgbImage, w: usize, h: usize) -> Vec<f32> {
    let bgr = resize_bgr_u8(img, w, h);
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in bgr.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
    out
}

fn is_pdf(file: &str) -> bool {
    file.ends_with(".pdf")
}

/// Pages whose detector map has more contours than `det_max_candidates` (1000) for cv2: rapidocr
/// then keeps the first 1000 in cv2's tracing order, holes and one-pixel specks included, and drops
/// real boxes with the rest. Measured with `cv2.findContours` on rapidocr's own map:
/// `line_01_dejavusans_32.png` at 11168 × 736 (the 972 × 64 line scaled ×11.5 — rapidocr's pipeline
/// pads such lines before detecting, the stage alone does not) gives 1,088, and rapidocr loses
/// `2025-0042`, `$1,234.56` and `30` that way. We bound regions, not contours, so we keep them.
const OVER_MAX_CANDIDATES: &[&str] = &["line_01_dejavusans_32.png"];

#[test]
fn v6_detection_boxes_match_rapidocr_3_10() {
    let settings = Settings::default();
    let runtime = Runtime::shared(&settings).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let model = v6_model(&runtime, &settings, 0);
    let reference = reference("rapidocr_v6_reference.json");
    let (mut report, mut borderline) = (String::new(), String::new());
    let (mut total, mut matched) = (0usize, 0usize);
    let near_thresh = |score: f32| (score - settings.ocr.det_box_thresh).abs() <= SCORE_MARGIN;
    for page in reference["pages"].as_array().unwrap() {
        let (file, index) = (page["file"].as_str().unwrap(), page["page"].as_u64().unwrap() as usize);
        if is_pdf(file) || OVER_MAX_CANDIDATES.contains(&file) {
            continue;
        }
        let img = &pages(&settings, file)[index];
        let (scale, w, h) = rapidocr_det_size(img.width(), img.height());
        assert_eq!(
            (w as u64, h as u64),
            (page["det"]["input_width"].as_u64().unwrap(), page["det"]["input_height"].as_u64().unwrap()),
            "{file}#{index}: detector input size"
        );
        let input = rapidocr_det_input(img, w, h);
        let page_size = (img.width(), img.height());
        let ours =
            det::detect_input(&model, &input, scale, w, h, page_size, &settings.ocr, &mut Default::default()).unwrap();
        let theirs: Vec<Quad> = page["det"]["boxes"].as_array().unwrap().iter().map(quad).collect();
        let tol = det_tolerance(scale);
        let mut used = vec![false; ours.len()];
        for (k, t) in theirs.iter().enumerate() {
            total += 1;
            // Their corners are clockwise from the top-left, as ours are.
            let best = ours
                .iter()
                .enumerate()
                .filter(|(i, _)| !used[*i])
                .map(|(i, b)| (max_corner_distance(&b.quad, t), i))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            match best {
                Some((d, i)) if d <= tol => {
                    used[i] = true;
                    matched += 1;
                }
                other => {
                    let score = page["det"]["scores"][k].as_f64().unwrap() as f32;
                    let line =
                        format!("{file}#{index} box {k} {t:?} ({score:.3}): nearest {other:?} (tolerance {tol:.2})\n");
                    if near_thresh(score) { borderline += &line } else { report += &line }
                }
            }
        }
        for (i, b) in ours.iter().enumerate().filter(|(i, _)| !used[*i]) {
            let line = format!("{file}#{index}: extra box {i} {:?} ({:.3})\n", b.quad, b.score);
            if near_thresh(b.score) { borderline += &line } else { report += &line }
        }
    }
    eprintln!("v6 detection: {matched}/{total} rapidocr boxes matched\n{report}borderline scores:\n{borderline}");
    assert!(total > 80, "the reference has boxes");
    assert!(report.is_empty(), "detection differs from rapidocr 3.10:\n{report}");
}

/// rapidocr's crop of a box: a crop at least 1.5 times taller than wide is turned with
/// `np.rot90` (a quarter counter-clockwise), which reads the quad from its second corner.
fn rapidocr_reading_quad(q: Quad) -> Quad {
    let (w, h) = quad_size(&q);
    // get_rotate_crop_image sizes the crop with int() of the edge lengths.
    if h.trunc() >= 1.5 * w.trunc() { rotate_corners(&q, 1) } else { q }
}

#[test]
fn v6_recognition_matches_rapidocr_3_10_on_its_boxes() {
    let settings = Settings::default();
    let runtime = Runtime::shared(&settings).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let model = v6_model(&runtime, &settings, 2);
    let dict = rec::Dictionary::from_metadata(model.character_metadata().expect("v6 rec has its dictionary"));
    assert_eq!(dict.len(), 18_710, "PP-OCRv6 rec: 18,708 entries + blank + space");
    let reference = reference("rapidocr_v6_reference.json");
    let (mut lines, mut exact, mut chars, mut distance) = (0usize, 0usize, 0usize, 0usize);
    let mut report = String::new();
    for page in reference["pages"].as_array().unwrap() {
        let (file, index) = (page["file"].as_str().unwrap(), page["page"].as_u64().unwrap() as usize);
        let img = &pages(&settings, file)[index];
        let quads: Vec<Quad> =
            page["det"]["boxes"].as_array().unwrap().iter().map(|b| rapidocr_reading_quad(quad(b))).collect();
        let (mut a, mut b, mut c) = Default::default();
        let ours = rec::recognize(&model, &dict, img, &quads, 6, &mut a, &mut b, &mut c).unwrap();
        for (k, (o, t)) in ours.iter().zip(page["rec"].as_array().unwrap()).enumerate() {
            let want = t["text"].as_str().unwrap();
            // Our decoder also restores word gaps the model nearly called spaces (rec::SPACE_RECOVERY),
            // a deliberate difference: compare without whitespace, count exact matches too.
            let (o_ns, t_ns): (Vec<char>, Vec<char>) = (
                o.text.chars().filter(|c| !c.is_whitespace()).collect(),
                want.chars().filter(|c| !c.is_whitespace()).collect(),
            );
            lines += 1;
            chars += t_ns.len();
            exact += usize::from(o.text == want);
            let d = levenshtein(&o_ns, &t_ns);
            distance += d;
            if d > 0 {
                report += &format!(
                    "{file}#{index} line {k}: ours {:?} ({:.3}), rapidocr {want:?} ({})\n",
                    o.text, o.score, t["score"]
                );
            }
        }
    }
    eprintln!(
        "v6 recognition: {exact}/{lines} lines identical, {distance} character edits in {chars} (whitespace aside)\n{report}"
    );
    assert!(lines > 100, "the reference has lines");
    assert!(distance * 200 <= chars, "recognition differs from rapidocr 3.10 in over 0.5 % of characters:\n{report}");
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[test]
fn layout_regions_match_rapid_layout_1_2_1() {
    let settings = Settings::default();
    let runtime = Runtime::shared(&settings).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let repo = &settings.models.layout;
    let snap = models::locate(&settings.models, "layout", repo).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let file = &repo.files[0];
    let detector =
        LayoutDetector::load(&runtime, &snap.file(file), format!("{}/{file}", snap.id()), &settings.ocr).unwrap();
    let reference = reference("rapid_layout_reference.json");
    let (mut total, mut report) = (0usize, String::new());
    for page in reference["pages"].as_array().unwrap() {
        let (file, index) = (page["file"].as_str().unwrap(), page["page"].as_u64().unwrap() as usize);
        if is_pdf(file) {
            continue;
        }
        let img = &pages(&settings, file)[index];
        let ours = detector.detect(img, &mut RegionTimes::default()).unwrap();
        let theirs = page["regions"].as_array().unwrap();
        // Tolerance: a quarter of a detector pixel (608 × 800 input) in page pixels, and 0.01 in score.
        let tol = 0.25 * (img.width() as f32 / 608.0).max(img.height() as f32 / 800.0) + 0.01;
        if ours.len() != theirs.len() {
            report += &format!("{file}#{index}: {} regions, rapid-layout {}\n", ours.len(), theirs.len());
        }
        for (k, (o, t)) in ours.iter().zip(theirs).enumerate() {
            total += 1;
            let class = RegionClass::from_label(t["class"].as_str().unwrap()).unwrap();
            let rect: Vec<f32> = t["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let d = o.rect.iter().zip(&rect).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            let ds = (o.score - t["score"].as_f64().unwrap() as f32).abs();
            if o.class != class || d > tol || ds > 0.01 {
                report += &format!(
                    "{file}#{index} region {k}: ours {:?} {:?} {:.4}, rapid-layout {class:?} {rect:?} {} (box off by {d:.2}, tolerance {tol:.2})\n",
                    o.class, o.rect, o.score, t["score"]
                );
            }
        }
    }
    eprintln!("layout: {total} regions compared\n{report}");
    assert!(total > 10, "the reference has regions");
    assert!(report.is_empty(), "layout regions differ from rapid-layout 1.2.1:\n{report}");
}

/// `runtime.fuse_hard_swish`: every PaddlePaddle model the pipeline loads (PP-OCRv4 detection,
/// recognition and orientation, the layout detector) gives the same outputs rewritten as loaded
/// from its file, on a fixture page, and has the hard-swish count its export has (PP-OCRv6's
/// detector and recogniser use `HardSigmoid` already: nothing to fuse, loaded as they are; its
/// set shares the v2.0 orientation classifier).
#[test]
fn hard_swish_fusion_keeps_the_paddle_models_outputs() {
    use ort::value::TensorRef;
    let settings = Settings::default();
    let runtime = Runtime::shared(&settings).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let page = &pages(&settings, "layout/two_column_subheading.png")[0];
    // The page as an input of `[n, 3, h, w]`: resized, scaled to −1..1, repeated n times.
    let input = |n: usize, h: usize, w: usize| -> Vec<f32> {
        let bgr = resize_bgr_u8(page, w, h);
        let mut one = vec![0f32; 3 * h * w];
        for (i, px) in bgr.chunks_exact(3).enumerate() {
            for c in 0..3 {
                one[c * h * w + i] = px[c] as f32 / 127.5 - 1.0;
            }
        }
        one.repeat(n)
    };
    let v4 = models::locate(&settings.models, OcrModels::V4.slot(), &settings.models.ocr)
        .unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let layout =
        models::locate(&settings.models, "layout", &settings.models.layout).unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let v6 = models::locate(&settings.models, OcrModels::V6.slot(), &settings.models.ocr_v6)
        .unwrap_or_else(|e| panic!("{SETUP}: {e}"));
    let files = &settings.models.ocr.files;
    // (file, fused activations, input shape)
    let cases = [
        (v4.file(&files[0]), 24, [1, 3, 320, 224]),
        (v4.file(&files[1]), 18, [2, 3, 48, 192]),
        (v4.file(&files[2]), 28, [2, 3, 48, 320]),
        (layout.file(&settings.models.layout.files[0]), 94, [1, 3, 800, 608]),
    ];
    for (path, fused, [n, c, h, w]) in cases {
        let bytes = std::fs::read(&path).unwrap();
        let r = crate::graph::fuse_hard_swish(&bytes).unwrap();
        assert_eq!(r.hard_swish, fused, "{}", path.display());
        assert!(r.bytes.as_ref().is_some_and(|b| b.len() < bytes.len()));
        let data = input(n, h, w);
        let outputs = |mut session: ort::session::Session| -> Vec<Vec<f32>> {
            let name = session.inputs()[0].name().to_owned();
            let tensor = TensorRef::from_array_view(([n, c, h, w], &data[..])).unwrap();
            let out = session.run(ort::inputs![name.as_str() => tensor]).unwrap();
            out.iter().map(|(_, v)| v.try_extract_tensor::<f32>().unwrap().1.to_vec()).collect()
        };
        let id = path.display().to_string();
        let as_is = outputs(runtime.session(&path, &id).unwrap());
        let rewritten = outputs(runtime.session_rewritten(&path, &id).unwrap());
        assert_eq!(as_is.len(), rewritten.len());
        let mut worst = 0f32;
        for (a, b) in as_is.iter().zip(&rewritten) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / x.abs().max(1.0));
            }
        }
        assert!(worst < 1e-4, "{}: outputs differ by up to {worst}", path.display());
        eprintln!("{}: {fused} hard-swish fused, outputs within {worst:e}", path.display());
    }
    for file in [&settings.models.ocr_v6.files[0], &settings.models.ocr_v6.files[2]] {
        let r = crate::graph::fuse_hard_swish(&std::fs::read(v6.file(file)).unwrap()).unwrap();
        assert!(r.bytes.is_none() && r.hard_swish == 0, "{file}");
    }
}
