//! Document formats: detection by content (never by file name) and page geometry.

use std::io::Cursor;

use docfleet_core::config::Limits;
use docfleet_core::{Error, Result};
use serde::Serialize;

/// Formats docfleet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Png,
    Jpeg,
    Gif,
    Webp,
    Bmp,
    Tiff,
    Pdf,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Gif => "image/gif",
            Format::Webp => "image/webp",
            Format::Bmp => "image/bmp",
            Format::Tiff => "image/tiff",
            Format::Pdf => "application/pdf",
        }
    }
}

/// Detect the format from the first bytes.
pub fn detect_format(bytes: &[u8]) -> Option<Format> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else if starts(b"BM") && bytes.len() >= 26 {
        Some(Format::Bmp)
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some(Format::Tiff)
    } else if bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-") {
        // PDF readers accept the header anywhere in the first 1 KiB.
        Some(Format::Pdf)
    } else {
        None
    }
}

/// The geometry of one page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageInfo {
    pub width: f64,
    pub height: f64,
    /// `px` for raster pages, `pt` (1/72 inch) for PDF pages.
    pub unit: &'static str,
    /// Pixel layout of raster pages (`rgb8`, `l8`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

/// Decode every page of a document to check it is readable and within `limits`, returning the
/// page geometry. Dimensions are checked from the header before any pixel is decoded, so a
/// decompression bomb is refused without allocating it.
pub fn decode_pages(format: Format, bytes: &[u8], limits: &Limits) -> Result<Vec<PageInfo>> {
    match format {
        Format::Tiff => decode_tiff(bytes, limits),
        Format::Pdf => pdf_pages(bytes, limits),
        _ => decode_single_image(format, bytes, limits).map(|p| vec![p]),
    }
}

fn check_pixels(width: u64, height: u64, page: usize, limits: &Limits) -> Result<()> {
    let pixels = width.saturating_mul(height);
    if pixels > limits.max_pixels {
        return Err(Error::LimitExceeded(format!(
            "page {page} is {width}×{height} = {pixels} pixels, over the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(())
}

fn image_format(format: Format) -> image::ImageFormat {
    match format {
        Format::Png => image::ImageFormat::Png,
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Gif => image::ImageFormat::Gif,
        Format::Webp => image::ImageFormat::WebP,
        Format::Bmp => image::ImageFormat::Bmp,
        Format::Tiff => image::ImageFormat::Tiff,
        Format::Pdf => unreachable!("PDF is not a raster format"),
    }
}

fn corrupt(format: Format, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("cannot decode {} document: {e}", format.mime()))
}

fn decode_single_image(format: Format, bytes: &[u8], limits: &Limits) -> Result<PageInfo> {
    let reader = || image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let (width, height) = reader().into_dimensions().map_err(|e| corrupt(format, e))?;
    check_pixels(width as u64, height as u64, 1, limits)?;
    let mut reader = reader();
    let mut image_limits = image::Limits::default();
    // RGBA16 is the widest layout image decodes these formats to: 8 bytes per pixel.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 * 1024 * 1024));
    reader.limits(image_limits);
    let img = reader.decode().map_err(|e| corrupt(format, e))?;
    Ok(PageInfo {
        width: img.width() as f64,
        height: img.height() as f64,
        unit: "px",
        color: Some(format!("{:?}", img.color()).to_lowercase()),
    })
}

fn decode_tiff(bytes: &[u8], limits: &Limits) -> Result<Vec<PageInfo>> {
    use tiff::decoder::{Decoder, DecodingResult};
    let mut tiff_limits = tiff::decoder::Limits::default();
    tiff_limits.decoding_buffer_size = (limits.max_pixels.saturating_mul(8)) as usize;
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(|e| corrupt(Format::Tiff, e))?.with_limits(tiff_limits);
    let mut pages = Vec::new();
    loop {
        let n = pages.len() + 1;
        if n as u64 > limits.max_pages as u64 {
            return Err(Error::LimitExceeded(format!("more than {} pages", limits.max_pages)));
        }
        let (w, h) = decoder.dimensions().map_err(|e| corrupt(Format::Tiff, e))?;
        check_pixels(w as u64, h as u64, n, limits)?;
        let color = decoder.colortype().map_err(|e| corrupt(Format::Tiff, e))?;
        let _: DecodingResult = decoder.read_image().map_err(|e| corrupt(Format::Tiff, e))?;
        pages.push(PageInfo {
            width: w as f64,
            height: h as f64,
            unit: "px",
            color: Some(format!("{color:?}").to_lowercase()),
        });
        if !decoder.more_images() {
            return Ok(pages);
        }
        decoder.next_image().map_err(|e| corrupt(Format::Tiff, e))?;
    }
}

fn pdf_pages(bytes: &[u8], limits: &Limits) -> Result<Vec<PageInfo>> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| corrupt(Format::Pdf, e))?;
    if doc.is_encrypted() {
        return Err(Error::InvalidInput("encrypted PDF documents are not supported".into()));
    }
    let page_ids = doc.get_pages();
    if page_ids.is_empty() {
        return Err(Error::InvalidInput("PDF document has no pages".into()));
    }
    if page_ids.len() as u64 > limits.max_pages as u64 {
        return Err(Error::LimitExceeded(format!("{} pages, over the limit of {}", page_ids.len(), limits.max_pages)));
    }
    page_ids
        .values()
        .map(|&id| {
            let [x0, y0, x1, y1] = media_box(&doc, id).unwrap_or([0.0, 0.0, 612.0, 792.0]);
            Ok(PageInfo { width: (x1 - x0).abs(), height: (y1 - y0).abs(), unit: "pt", color: None })
        })
        .collect()
}

/// A page's MediaBox, inherited from its ancestors when the page has none.
fn media_box(doc: &lopdf::Document, mut id: lopdf::ObjectId) -> Option<[f64; 4]> {
    for _ in 0..32 {
        let dict = doc.get_object(id).ok()?.as_dict().ok()?;
        if let Ok(obj) = dict.get(b"MediaBox") {
            let obj = match obj {
                lopdf::Object::Reference(r) => doc.get_object(*r).ok()?,
                other => other,
            };
            let arr = obj.as_array().ok()?;
            let nums: Vec<f64> = arr
                .iter()
                .filter_map(|o| match o {
                    lopdf::Object::Integer(i) => Some(*i as f64),
                    lopdf::Object::Real(r) => Some(*r as f64),
                    _ => None,
                })
                .collect();
            return nums.try_into().ok();
        }
        id = dict.get(b"Parent").ok()?.as_reference().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_by_content() {
        assert_eq!(detect_format(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(detect_format(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(detect_format(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(detect_format(b"II*\0\x08\0\0\0"), Some(Format::Tiff));
        assert_eq!(detect_format(b"%PDF-1.7\n"), Some(Format::Pdf));
        assert_eq!(detect_format(b"hello, I am text pretending to be a png"), None);
        assert_eq!(detect_format(b""), None);
    }
}
