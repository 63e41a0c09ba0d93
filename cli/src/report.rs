//! `docfleet run --report`: one self-contained `report.html` under `--out` with, for every
//! document, each page's image (embedded as a `data:` URL), the boxes the pipeline found drawn
//! over it (lines as polygons, layout regions dashed) and the text beside it, in reading order.
//!
//! The page images are the worker's own rasterisation of the stored input (same limits, the
//! pipeline's PDF resolution), so boxes in "the stored page's pixels" land where they were found;
//! they are scaled down to [`MAX_SIDE`] pixels and JPEG-encoded to keep the file small, while the
//! overlay keeps the full-resolution coordinates (an SVG `viewBox` over the same frame). Rendered
//! with minijinja's HTML auto-escaping: document text is never markup.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use docfleet_core::config::Settings;
use docfleet_core::job::ObjectRef;
use docfleet_core::store::Store;
use serde::Serialize;
use serde_json::Value;

/// The longest side of an embedded page image, in pixels.
const MAX_SIDE: u32 = 1200;
/// JPEG quality of the embedded page images.
const JPEG_QUALITY: u8 = 80;

const TEMPLATE: &str = include_str!("report.html.j2");

/// One document of the run, as the summary table saw it.
pub struct Entry {
    pub name: String,
    pub object: ObjectRef,
    pub status: &'static str,
    pub detail: String,
    /// The result record, when there is one.
    pub result: Option<Value>,
}

#[derive(Serialize)]
struct DocumentView {
    name: String,
    status: &'static str,
    detail: String,
    pages: Vec<PageView>,
}

#[derive(Serialize, Default)]
struct PageView {
    number: usize,
    width: u32,
    height: u32,
    rotation: u64,
    image: Option<String>,
    image_width: u32,
    image_height: u32,
    image_error: String,
    lines: Vec<LineView>,
    regions: Vec<RegionView>,
    text: String,
}

#[derive(Serialize)]
struct LineView {
    text: String,
    points: String,
    confidence: String,
    region: Option<String>,
}

#[derive(Serialize)]
struct RegionView {
    class: String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    score: String,
}

/// The resolution the pipeline renders PDF pages at, so the report's pages match its boxes.
fn pdf_dpi(settings: &Settings, pipeline: &str) -> f32 {
    match pipeline {
        "vlm" => settings.vlm.pdf_dpi,
        _ => settings.ocr.pdf_dpi,
    }
}

/// A page image scaled to at most [`MAX_SIDE`] and encoded as a JPEG `data:` URL.
fn data_url(image: &image::RgbImage) -> anyhow::Result<(String, u32, u32)> {
    let (w, h) = image.dimensions();
    let scale = (MAX_SIDE as f64 / w.max(h) as f64).min(1.0);
    let (sw, sh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let scaled;
    let shown = if (sw, sh) == (w, h) {
        image
    } else {
        scaled = image::imageops::resize(image, sw, sh, image::imageops::FilterType::Triangle);
        &scaled
    };
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), JPEG_QUALITY)
        .encode_image(shown)
        .context("encoding a page image")?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    Ok((format!("data:image/jpeg;base64,{b64}"), sw, sh))
}

fn points(polygon: &Value) -> Option<String> {
    let corners = polygon.as_array()?;
    let pts: Option<Vec<String>> =
        corners.iter().map(|c| Some(format!("{:.1},{:.1}", c.get(0)?.as_f64()?, c.get(1)?.as_f64()?))).collect();
    pts.map(|p| p.join(" "))
}

/// What a result says about page `index`: lines, regions, text, rotation.
fn annotate(page: &mut PageView, result_page: &Value) {
    let regions = result_page["regions"].as_array().map(Vec::as_slice).unwrap_or_default();
    page.regions = regions
        .iter()
        .filter_map(|r| {
            let b = r["box"].as_array()?;
            let v = |i: usize| b.get(i).and_then(Value::as_f64);
            let (x0, y0, x1, y1) = (v(0)?, v(1)?, v(2)?, v(3)?);
            Some(RegionView {
                class: r["class"].as_str().unwrap_or("region").to_owned(),
                x: x0,
                y: y0,
                w: (x1 - x0).max(0.0),
                h: (y1 - y0).max(0.0),
                score: r["score"].as_f64().map(|s| format!("{s:.2}")).unwrap_or_default(),
            })
        })
        .collect();
    page.lines = result_page["lines"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            Some(LineView {
                text: l["text"].as_str()?.to_owned(),
                points: points(&l["polygon"])?,
                confidence: l["confidence"].as_f64().map(|c| format!("{c:.3}")).unwrap_or_default(),
                region: l["region"]
                    .as_u64()
                    .and_then(|i| regions.get(i as usize))
                    .and_then(|r| r["class"].as_str())
                    .map(str::to_owned),
            })
        })
        .collect();
    page.text = result_page["text"].as_str().unwrap_or_default().to_owned();
    page.rotation = result_page["rotation"].as_u64().unwrap_or(0);
}

async fn document_view(settings: &Settings, store: &dyn Store, pipeline: &str, entry: &Entry) -> DocumentView {
    let result_pages: Vec<Value> =
        entry.result.as_ref().and_then(|r| r["output"]["pages"].as_array().cloned()).unwrap_or_default();
    // The stored input, rasterised as the pipeline did; a document that cannot be (the reason
    // it failed, usually) is listed without images.
    let raster = match store.get(&entry.object.bucket, &entry.object.key, settings.limits.max_input_bytes).await {
        Ok(bytes) => docfleet_worker::document::rasterize(&bytes, &settings.limits, pdf_dpi(settings, pipeline))
            .map(|(_, pages)| pages)
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot read the stored input: {e}")),
    };
    let count = match &raster {
        Ok(pages) => pages.len().max(result_pages.len()),
        Err(_) => result_pages.len(),
    };
    let mut pages = Vec::with_capacity(count);
    for i in 0..count {
        let mut page = PageView { number: i + 1, ..PageView::default() };
        match raster.as_ref().map(|r| r.get(i)) {
            Ok(Some(raster)) => {
                (page.width, page.height) = raster.image.dimensions();
                match data_url(&raster.image) {
                    Ok((url, w, h)) => (page.image, page.image_width, page.image_height) = (Some(url), w, h),
                    Err(e) => page.image_error = format!("{e:#}"),
                }
            }
            Ok(None) => page.image_error = "no such page in the input".into(),
            Err(e) => page.image_error = e.clone(),
        }
        if let Some(rp) = result_pages.get(i) {
            if page.width == 0 {
                page.width = rp["width"].as_f64().unwrap_or(1.0).round() as u32;
                page.height = rp["height"].as_f64().unwrap_or(1.0).round() as u32;
            }
            annotate(&mut page, rp);
        }
        if page.text.is_empty() && count == 1 {
            // Single-page results whose text is document-level (the vlm pipeline's `text`).
            if let Some(text) = entry.result.as_ref().and_then(|r| r["output"]["text"].as_str()) {
                page.text = text.to_owned();
            }
        }
        pages.push(page);
    }
    DocumentView { name: entry.name.clone(), status: entry.status, detail: entry.detail.clone(), pages }
}

/// Render the report for `entries` and write it to `<out>/report.html`.
pub async fn write(
    out: &Path,
    settings: &Settings,
    store: &dyn Store,
    pipeline: &str,
    entries: &[Entry],
) -> anyhow::Result<PathBuf> {
    let mut documents = Vec::with_capacity(entries.len());
    for entry in entries {
        documents.push(document_view(settings, store, pipeline, entry).await);
    }
    let count = |status: &str| documents.iter().filter(|d| d.status == status).count();
    let pages: usize = documents.iter().map(|d| d.pages.len()).sum();
    let boxes: usize = documents.iter().flat_map(|d| &d.pages).map(|p| p.lines.len()).sum();
    let regions = documents.iter().flat_map(|d| &d.pages).any(|p| !p.regions.is_empty());
    let mut env = minijinja::Environment::new();
    // `.html` templates auto-escape: text, file names and error messages stay text.
    env.add_template("report.html", TEMPLATE).context("the report template")?;
    let html = env
        .get_template("report.html")?
        .render(minijinja::context! {
            version => env!("CARGO_PKG_VERSION"),
            pipeline,
            ok => count("ok"),
            failed => count("error"),
            missing => count("missing"),
            pages,
            boxes,
            regions,
            documents => minijinja::Value::from(minijinja::value::Serde(&documents)),
        })
        .context("rendering report.html")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("report.html");
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
