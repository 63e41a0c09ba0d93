//! `ocr`: PP-OCR (v4 or v6, `ocr.models`) on onnxruntime. Each page (PDF pages rasterised at
//! `ocr.pdf_dpi`) goes through detection ([`det`]), page and line orientation ([`cls`]), batched
//! recognition ([`rec`]), layout regions ([`region`], optional), reading order ([`layout`]) and text
//! clean-up ([`postprocess`]). The result lists pages → regions {class, score, box} and lines
//! {text, confidence, polygon, region, block}, blocks in reading order ([`blocks`]) and the
//! page's headers and footers, with page sizes, model ids and per-stage timings; a plain-text
//! and a Markdown rendition ([`markdown`]) are stored beside it.

pub mod blocks;
pub mod cls;
pub mod det;
pub mod digits;
pub mod geometry;
pub mod layout;
pub mod markdown;
pub mod postprocess;
pub mod rec;
pub mod region;
mod sample;

#[cfg(test)]
mod batching_tests;
#[cfg(test)]
mod parity_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use docfleet_core::config::{ExecutionProvider, Limits, OcrModels, OcrSettings};
use docfleet_core::{Error, Result, Settings, models};
use image::RgbImage;
use serde::Serialize;
use serde_json::{Map, Value, json};

use self::geometry::{Quad, bounds, quad_size, rotate_corners, to_upright};
use self::rec::Dictionary;
use self::region::{LayoutDetector, Region};
use super::{Document, Pipeline, PipelineOutput};
use crate::batch::BatchPolicy;
use crate::document::{Rasterized, given_or_rasterize};
use crate::runtime::{Model, Runtime, SETUP_HINT};

/// Lines sampled for the page-orientation vote (the longest ones).
const ORIENTATION_SAMPLE: usize = 32;
/// Lines read both ways to confirm that a page is upside down.
const VERIFY_SAMPLE: usize = 4;

/// The loaded models and settings, shared by every job.
pub struct OcrEngine {
    runtime: Arc<Runtime>,
    det: Model,
    cls: Option<Model>,
    rec: Model,
    dict: Dictionary,
    /// The layout detector; `None` when `ocr.layout` is off or its model was missing at start-up.
    layout: Option<LayoutDetector>,
    settings: OcrSettings,
    limits: Limits,
}

/// Time spent per stage, summed over pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub decode: Duration,
    pub det: det::DetTimes,
    pub cls_pre: Duration,
    pub cls_model: Duration,
    pub rec_pre: Duration,
    pub rec_model: Duration,
    pub rec_post: Duration,
    pub layout: Duration,
    pub regions: region::RegionTimes,
}

impl Timings {
    /// Time inside onnxruntime (the sum of session runs).
    pub fn model(&self) -> Duration {
        self.det.model + self.cls_model + self.rec_model + self.regions.model
    }

    /// Pre- and post-processing around the models (not decoding or rendering the document).
    pub fn pre_post(&self) -> Duration {
        self.det.pre + self.det.post + self.cls_pre + self.rec_pre + self.rec_post + self.layout + self.regions.pre_post
    }

    /// Add another document's or page's times.
    pub fn add(&mut self, o: &Timings) {
        self.decode += o.decode;
        self.det.pre += o.det.pre;
        self.det.model += o.det.model;
        self.det.post += o.det.post;
        self.cls_pre += o.cls_pre;
        self.cls_model += o.cls_model;
        self.rec_pre += o.rec_pre;
        self.rec_model += o.rec_model;
        self.rec_post += o.rec_post;
        self.layout += o.layout;
        self.regions.model += o.regions.model;
        self.regions.pre_post += o.regions.pre_post;
    }

    /// The stages in milliseconds, as the result's `timings` shows them (`total`: the wall time
    /// they were part of).
    pub fn to_json(self, total: Option<Duration>) -> Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        let mut v = json!({
            "decode": ms(self.decode),
            "det_pre": ms(self.det.pre),
            "det_model": ms(self.det.model),
            "det_post": ms(self.det.post),
            "cls_pre": ms(self.cls_pre),
            "cls_model": ms(self.cls_model),
            "rec_pre": ms(self.rec_pre),
            "rec_model": ms(self.rec_model),
            "rec_post": ms(self.rec_post),
            "layout": ms(self.layout),
            "regions_model": ms(self.regions.model),
            "regions_pre_post": ms(self.regions.pre_post),
            "model": ms(self.model()),
            "pre_post": ms(self.pre_post()),
        });
        if let Some(total) = total {
            v["total"] = json!(ms(total));
        }
        v
    }
}

/// One line of a page in reading order.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub text: String,
    pub confidence: f32,
    /// Corners clockwise from the text's top-left, in the stored page's pixels.
    pub polygon: Quad,
    /// Block (paragraph, column part, table cell) the line belongs to, numbered in reading order.
    pub block: usize,
    /// Index into the page's `regions` of the layout region covering most of the line; `null`
    /// when no region overlaps it (or regions are off).
    pub region: Option<usize>,
}

/// What OCR read in one document.
pub struct DocumentReading {
    /// The result record's `output`.
    pub output: Value,
    /// The plain-text rendition: pages' text separated by form feeds.
    pub text: String,
    /// The Markdown rendition (empty when nothing was read).
    pub markdown: String,
    pub timings: Timings,
}

/// What OCR read on one page.
#[derive(Debug, Clone)]
pub struct PageReading {
    /// How far the stored page is turned clockwise from upright (0, 90, 180, 270); it was read upright.
    pub rotation: u32,
    pub lines: Vec<Line>,
    pub text: String,
    /// Layout regions found on the page as stored (empty when regions are off).
    pub regions: Vec<Region>,
    /// Paragraphs, headings, tables, figures, captions, headers and footers in reading order.
    pub blocks: Vec<blocks::Block>,
}

impl PageReading {
    fn empty() -> Self {
        Self { rotation: 0, lines: Vec::new(), text: String::new(), regions: Vec::new(), blocks: Vec::new() }
    }

    /// The texts of the page's header (or footer) blocks, top to bottom.
    fn furniture(&self, class: region::RegionClass) -> Vec<&str> {
        self.blocks.iter().filter(|b| b.class == class).map(|b| b.text.as_str()).collect()
    }
}

impl OcrEngine {
    /// Load the model set `ocr.models` names (`models.ocr` or `models.ocr_v6`: detection,
    /// orientation, recognition, in that order) into the shared runtime, and the layout detector
    /// (`models.layout`) when `ocr.layout` is on. Fails with a message naming what is missing and
    /// how to get it; a missing layout model only turns regions off, with a warning.
    pub fn load(settings: &Settings) -> Result<Self> {
        let runtime = Runtime::shared(settings)?;
        let slot = settings.ocr.models.slot();
        let repo = match settings.ocr.models {
            OcrModels::V4 => &settings.models.ocr,
            OcrModels::V6 => &settings.models.ocr_v6,
        };
        let [det_file, cls_file, rec_file] = &repo.files[..] else {
            return Err(Error::Model(format!(
                "models.{slot}.files must list the detection, orientation and recognition models, in that order (got {:?})",
                repo.files
            )));
        };
        let snap = models::locate(&settings.models, slot, repo).map_err(|e| {
            let hint = SETUP_HINT.replace("--model ocr`", &format!("--model {slot}`"));
            Error::Model(format!("{}. Or {hint}", e.to_string().trim_start_matches("model error: ")))
        })?;
        let s = settings.ocr.clone();
        let merge = s.batch_across_jobs.unwrap_or(runtime.provider() != ExecutionProvider::Cpu);
        let policy = |max_items: usize, pad_last: bool| match merge {
            true => BatchPolicy {
                max_items,
                max_wait: Duration::from_millis(s.batch_max_wait_ms),
                pad_last,
                // The same bound recognition keeps within one job's batches.
                max_pad_ratio: 1.1,
            },
            false => BatchPolicy::SINGLE,
        };
        let load = |file: &str, policy| runtime.load_model(&snap.file(file), format!("{}/{file}", snap.id()), policy);
        let det = load(det_file, policy(s.det_max_batch, false))?;
        let cls = match s.page_orientation || s.line_orientation {
            true => Some(load(cls_file, policy(s.rec_max_batch, false))?),
            false => None,
        };
        let rec = runtime.load_model_replicated(
            &snap.file(rec_file),
            format!("{}/{rec_file}", snap.id()),
            policy(s.rec_max_batch, true),
        )?;
        let character = rec.character_metadata().ok_or_else(|| {
            Error::Model(format!("{} has no `character` metadata entry (the recognition dictionary)", rec.id))
        })?;
        let dict = Dictionary::from_metadata(character);
        if dict.is_empty() {
            return Err(Error::Model(format!("{}: the recognition dictionary is empty", rec.id)));
        }
        let layout = match s.layout {
            true => load_layout(&runtime, settings),
            false => None,
        };
        Ok(Self { runtime, det, cls, rec, dict, layout, settings: s, limits: settings.limits.clone() })
    }

    /// The loaded models: detection, orientation (when used), recognition.
    pub fn models(&self) -> Vec<&Model> {
        [Some(&self.det), self.cls.as_ref(), Some(&self.rec)].into_iter().flatten().collect()
    }

    /// The models' runs so far, summed: (runs, requests, merged runs, items).
    pub fn batch_stats(&self) -> (u64, u64, u64, u64) {
        let mut total = (0, 0, 0, 0);
        for m in self.models() {
            let (a, b, c, d) = m.batch_stats();
            total = (total.0 + a, total.1 + b, total.2 + c, total.3 + d);
        }
        total
    }

    /// Model ids with revisions, for result records.
    /// The resolution PDF pages are rendered at.
    pub fn pdf_dpi(&self) -> f32 {
        self.settings.pdf_dpi
    }

    pub fn model_ids(&self) -> Value {
        json!({
            "detection": self.det.id,
            "orientation": self.cls.as_ref().map(|m| m.id.clone()),
            "recognition": self.rec.id,
            "layout": self.layout.as_ref().map(|m| m.id.clone()),
            "runtime": self.runtime.describe(),
            "execution_provider": format!("{:?}", self.runtime.provider()).to_lowercase(),
        })
    }

    /// Read a whole document: the result record's `output` and the plain-text rendition.
    pub fn read_document(&self, bytes: &[u8]) -> Result<(Value, String)> {
        self.read_document_timed(bytes).map(|(output, text, _)| (output, text))
    }

    /// [`read_document`](Self::read_document), also returning the time per stage.
    pub fn read_document_timed(&self, bytes: &[u8]) -> Result<(Value, String, Timings)> {
        self.read_rasterized(bytes, None)
    }

    /// Read a document, rasterised already (`pages`, at [`Self::pdf_dpi`]) or not.
    pub fn read_rasterized(&self, bytes: &[u8], pages: Option<&Rasterized>) -> Result<(Value, String, Timings)> {
        self.read(bytes, pages).map(|r| (r.output, r.text, r.timings))
    }

    /// Read a document into the result's `output`, its plain text and its Markdown.
    pub fn read(&self, bytes: &[u8], pages: Option<&Rasterized>) -> Result<DocumentReading> {
        let started = Instant::now();
        let (raster, decode) = given_or_rasterize(pages, bytes, &self.limits, self.settings.pdf_dpi)?;
        let (format, pages) = (raster.0, raster.1.as_slice());
        let mut total = Timings { decode, ..Timings::default() };
        let mut page_values = Vec::with_capacity(pages.len());
        let mut readings = Vec::with_capacity(pages.len());
        for (i, page) in pages.iter().enumerate() {
            let mut t = Timings::default();
            let reading = self.read_page(&page.image, &mut t)?;
            total.add(&t);
            let mut v = json!({
                "page": i + 1,
                "width": page.image.width(),
                "height": page.image.height(),
                "unit": "px",
                "rotation": reading.rotation,
                "regions": reading.regions,
                "lines": reading.lines,
                "blocks": reading.blocks,
                "headers": reading.furniture(region::RegionClass::Header),
                "footers": reading.furniture(region::RegionClass::Footer),
                "text": reading.text,
                "timings_ms": t.to_json(None),
            });
            if let Some(dpi) = page.dpi {
                v["dpi"] = json!(dpi);
            }
            page_values.push(v);
            readings.push(reading);
        }
        let text = readings.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join("\n\u{c}\n");
        let line_texts: Vec<Vec<String>> =
            readings.iter().map(|r| r.lines.iter().map(|l| l.text.clone()).collect()).collect();
        let page_blocks: Vec<markdown::PageBlocks> = readings
            .iter()
            .zip(&line_texts)
            .map(|(r, lines)| markdown::PageBlocks { blocks: &r.blocks, lines })
            .collect();
        let markdown = markdown::document(&page_blocks);
        let output = json!({
            "format": format,
            "mime_type": format.mime(),
            "bytes": bytes.len(),
            "page_count": page_values.len(),
            "pages": page_values,
            "text": text,
            "models": self.model_ids(),
            "timings_ms": total.to_json(Some(started.elapsed())),
        });
        let text = format!("{text}\n");
        let markdown = if markdown.is_empty() { markdown } else { format!("{markdown}\n") };
        Ok(DocumentReading { output, text, markdown, timings: total })
    }

    /// Read one page image.
    pub fn read_page(&self, img: &RgbImage, t: &mut Timings) -> Result<PageReading> {
        let s = &self.settings;
        let boxes = det::detect(&self.det, img, s, &mut t.det)?;
        if boxes.is_empty() {
            return Ok(PageReading::empty());
        }
        let regions = match &self.layout {
            Some(detector) => detector.detect(img, &mut t.regions)?,
            None => Vec::new(),
        };
        let (width, height) = (img.width() as f32, img.height() as f32);

        // Lines mostly standing vertical mean the page is turned by 90° or 270°: read them
        // turned a quarter first.
        let base = if s.page_orientation { quarter_turns(&boxes) } else { 0 };
        // Reading quads: corners from the text's top-left. A box still standing upright after
        // that (a vertical label) is read turned, as PP-OCR does.
        let mut quads: Vec<Quad> = boxes.iter().map(|b| upright_line(rotate_corners(&b.quad, base))).collect();
        let verdicts = match &self.cls {
            Some(cls) => Some(cls::classify(cls, img, &quads, &mut t.cls_pre, &mut t.cls_model)?),
            None => None,
        };
        let mut turns = base;
        if let (Some(v), true) = (&verdicts, s.page_orientation)
            && self.page_upside_down(img, &quads, v, t)?
        {
            turns += 2;
            for q in &mut quads {
                *q = rotate_corners(q, 2);
            }
        }
        // Lines the classifier calls upside down on a page that is not: read both ways, keep the
        // more confident reading (the classifier alone flips long upright lines it squeezed).
        let mut doubtful = Vec::new();
        if let (Some(v), true) = (&verdicts, s.line_orientation) {
            let flipped_page = turns != base;
            doubtful =
                (0..quads.len()).filter(|&i| v[i].upside_down != flipped_page && v[i].score >= s.cls_thresh).collect();
        }
        let mut crops = quads.clone();
        crops.extend(doubtful.iter().map(|&i| rotate_corners(&quads[i], 2)));
        let read = rec::recognize(
            &self.rec,
            &self.dict,
            img,
            &crops,
            s.rec_batch_size,
            &mut t.rec_pre,
            &mut t.rec_model,
            &mut t.rec_post,
        )?;
        let (mut texts, alternatives) = {
            let mut read = read;
            let alt = read.split_off(quads.len());
            (read, alt)
        };
        for (&i, alt) in doubtful.iter().zip(alternatives) {
            if alt.score > texts[i].score {
                texts[i] = alt;
                quads[i] = rotate_corners(&quads[i], 2);
            }
        }

        let started = Instant::now();
        let mut kept = Vec::new();
        for (i, r) in texts.iter_mut().enumerate() {
            if s.digit_repair
                && let Some(repaired) = digits::repair(&r.glyphs)
            {
                r.text = repaired;
            }
            if s.normalize {
                r.text = postprocess::normalize(&r.text);
            } else {
                r.text = r.text.trim().to_owned();
            }
            if r.score >= s.min_line_score && !r.text.is_empty() {
                kept.push(i);
            }
        }
        let rects: Vec<layout::Rect> =
            kept.iter().map(|&i| bounds(&boxes[i].quad.map(|p| to_upright(p, turns, width, height)))).collect();
        let hints: Vec<layout::Hint> = regions
            .iter()
            .map(|r| {
                let [x0, y0, x1, y1] = r.rect;
                let corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].map(|p| to_upright(p, turns, width, height));
                layout::Hint { class: r.class, rect: bounds(&corners), score: r.score }
            })
            .collect();
        let labels: Vec<bool> = kept.iter().map(|&i| texts[i].text.ends_with(':')).collect();
        let reading = layout::order(&rects, &labels, &hints);
        let rows = reading.rows;
        let mut lines = Vec::with_capacity(rows.len());
        for row in &rows {
            let members: Vec<usize> = row.fragments.iter().map(|&f| kept[f]).collect();
            let parts: Vec<&str> = members.iter().map(|&i| texts[i].text.as_str()).collect();
            let part_rects: Vec<layout::Rect> = row.fragments.iter().map(|&f| rects[f]).collect();
            let text = postprocess::join_fragments(&parts, &part_rects);
            let chars: f32 = members.iter().map(|&i| texts[i].text.chars().count() as f32).sum();
            let confidence =
                members.iter().map(|&i| texts[i].score * texts[i].text.chars().count() as f32).sum::<f32>()
                    / chars.max(1.0);
            let (first, last) = (&quads[members[0]], &quads[*members.last().expect("rows are non-empty")]);
            let polygon = if members.len() == 1 { *first } else { [first[0], last[1], last[2], first[3]] };
            lines.push(Line {
                text,
                confidence: (confidence * 1e4).round() / 1e4,
                polygon,
                block: row.block,
                region: None,
            });
        }
        let line_rects: Vec<layout::Rect> = lines.iter().map(|l| bounds(&l.polygon)).collect();
        for (line, r) in lines.iter_mut().zip(region::assign_lines(&line_rects, &regions)) {
            line.region = r;
        }
        let row_texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
        let text = postprocess::page_text(&rows, &row_texts);
        let upright_height = if turns % 2 == 1 { width } else { height };
        let (blocks, line_block) =
            blocks::build(&rows, &row_texts, &line_rects, &hints, &reading.block_regions, upright_height);
        for (line, b) in lines.iter_mut().zip(line_block) {
            line.block = b;
        }
        t.layout += started.elapsed();
        Ok(PageReading { rotation: (turns as u32 % 4) * 90, lines, text, regions, blocks })
    }

    /// Whether the page is upside down: the classifier's votes on the longest lines, weighted by
    /// length, and — since it squeezes long lines to 192 columns and then calls some upright
    /// ones upside down — confirmed by reading the longest lines both ways.
    fn page_upside_down(
        &self,
        img: &RgbImage,
        quads: &[Quad],
        verdicts: &[cls::Orientation],
        t: &mut Timings,
    ) -> Result<bool> {
        let mut sample: Vec<(f32, usize)> = quads
            .iter()
            .enumerate()
            .filter_map(|(i, q)| {
                let (w, h) = quad_size(q);
                (w >= 2.0 * h).then_some((w, i))
            })
            .collect();
        sample.sort_by(|a, b| b.0.total_cmp(&a.0));
        sample.truncate(ORIENTATION_SAMPLE);
        let total: f32 = sample.iter().map(|s| s.0).sum();
        let flipped: f32 = sample.iter().filter(|s| verdicts[s.1].upside_down).map(|s| s.0).sum();
        if sample.is_empty() || flipped <= 0.5 * total {
            return Ok(false);
        }
        let probe: Vec<Quad> = sample.iter().take(VERIFY_SAMPLE).map(|s| quads[s.1]).collect();
        let mut crops = probe.clone();
        crops.extend(probe.iter().map(|q| rotate_corners(q, 2)));
        let read = rec::recognize(
            &self.rec,
            &self.dict,
            img,
            &crops,
            self.settings.rec_batch_size,
            &mut t.rec_pre,
            &mut t.rec_model,
            &mut t.rec_post,
        )?;
        let confidence = |r: &[rec::Recognized]| r.iter().map(|r| r.score).sum::<f32>() / r.len().max(1) as f32;
        let (as_is, turned) = read.split_at(probe.len());
        Ok(confidence(turned) > confidence(as_is))
    }
}

/// The layout detector from `models.layout`, or `None` with a warning when it cannot be loaded:
/// regions are an addition to the lines, so their absence must not fail the pipeline.
fn load_layout(runtime: &Runtime, settings: &Settings) -> Option<LayoutDetector> {
    let repo = &settings.models.layout;
    let loaded = models::locate(&settings.models, "layout", repo).and_then(|snap| {
        let file = repo.files.first().ok_or_else(|| Error::Model("models.layout.files is empty".into()))?;
        LayoutDetector::load(runtime, &snap.file(file), format!("{}/{file}", snap.id()), &settings.ocr)
    });
    match loaded {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "ocr: the layout model is not available; reading without layout regions \
                 (fetch it with `docfleet-downloader fetch --model layout` or scripts/setup/onnxruntime.sh, \
                 or set ocr.layout = false)"
            );
            None
        }
    }
}

/// 1 when most text (by length) runs vertically — the page is turned by 90° or 270° — else 0.
fn quarter_turns(boxes: &[det::TextBox]) -> usize {
    let (mut horizontal, mut vertical) = (0f32, 0f32);
    for b in boxes {
        let (w, h) = quad_size(&b.quad);
        if w >= 2.0 * h {
            horizontal += w;
        } else if h >= 2.0 * w {
            vertical += h;
        }
    }
    usize::from(vertical > horizontal)
}

/// A line quad standing upright (taller than wide by half) is read turned a quarter.
fn upright_line(q: Quad) -> Quad {
    let (w, h) = quad_size(&q);
    if h >= 1.5 * w { rotate_corners(&q, 1) } else { q }
}

/// The `ocr` pipeline.
pub struct Ocr {
    engine: Arc<OcrEngine>,
}

impl Ocr {
    pub fn new(engine: Arc<OcrEngine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl Pipeline for Ocr {
    fn name(&self) -> &'static str {
        "ocr"
    }

    fn rasterizes_at(&self) -> Option<f32> {
        Some(self.engine.pdf_dpi())
    }

    async fn process(&self, doc: &Document, _params: &Map<String, Value>) -> Result<PipelineOutput> {
        let (bytes, pages) = (doc.bytes.clone(), doc.pages.clone());
        let engine = self.engine.clone();
        let read = tokio::task::spawn_blocking(move || engine.read(&bytes, pages.as_deref()))
            .await
            .map_err(|e| Error::InvalidInput(format!("OCR crashed on this document: {e}")))??;
        Ok(PipelineOutput { result: read.output, text: Some(read.text), markdown: Some(read.markdown) })
    }
}
