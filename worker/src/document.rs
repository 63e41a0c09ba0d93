//! Document formats: detection by content (never by file name), page geometry, and decoding to
//! pixels (`rasterize`: raster pages as stored, PDF pages rendered at a chosen DPI).
//!
//! Limits are checked before anything large is allocated: image dimensions from the header, PDF
//! page count from the page tree and page size × DPI before rendering.

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
    let img = decode_image(format, bytes, limits)?;
    Ok(PageInfo {
        width: img.width() as f64,
        height: img.height() as f64,
        unit: "px",
        color: Some(format!("{:?}", img.color()).to_lowercase()),
    })
}

/// Decode a single-image format, refusing it from the header when it is over `limits.max_pixels`.
fn decode_image(format: Format, bytes: &[u8], limits: &Limits) -> Result<image::DynamicImage> {
    let reader = || image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let (width, height) = reader().into_dimensions().map_err(|e| corrupt(format, e))?;
    check_pixels(width as u64, height as u64, 1, limits)?;
    let mut reader = reader();
    let mut image_limits = image::Limits::default();
    // RGBA16 is the widest layout image decodes these formats to: 8 bytes per pixel.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 * 1024 * 1024));
    reader.limits(image_limits);
    reader.decode().map_err(|e| corrupt(format, e))
}

fn decode_tiff(bytes: &[u8], limits: &Limits) -> Result<Vec<PageInfo>> {
    let mut pages = Vec::new();
    each_tiff_page(bytes, limits, |w, h, color, _| {
        pages.push(PageInfo {
            width: w as f64,
            height: h as f64,
            unit: "px",
            color: Some(format!("{color:?}").to_lowercase()),
        });
        Ok(())
    })?;
    Ok(pages)
}

/// Decode every page of a TIFF in turn, checking the page count and each page's size first.
fn each_tiff_page(
    bytes: &[u8],
    limits: &Limits,
    mut page: impl FnMut(u32, u32, tiff::ColorType, tiff::decoder::DecodingResult) -> Result<()>,
) -> Result<()> {
    use tiff::decoder::Decoder;
    let mut tiff_limits = tiff::decoder::Limits::default();
    tiff_limits.decoding_buffer_size = (limits.max_pixels.saturating_mul(8)) as usize;
    let mut decoder = Decoder::new(Cursor::new(bytes)).map_err(|e| corrupt(Format::Tiff, e))?.with_limits(tiff_limits);
    let mut n = 0usize;
    loop {
        n += 1;
        if n as u64 > limits.max_pages as u64 {
            return Err(Error::LimitExceeded(format!("more than {} pages", limits.max_pages)));
        }
        let (w, h) = decoder.dimensions().map_err(|e| corrupt(Format::Tiff, e))?;
        check_pixels(w as u64, h as u64, n, limits)?;
        let color = decoder.colortype().map_err(|e| corrupt(Format::Tiff, e))?;
        let data = decoder.read_image().map_err(|e| corrupt(Format::Tiff, e))?;
        page(w, h, color, data)?;
        if !decoder.more_images() {
            return Ok(());
        }
        decoder.next_image().map_err(|e| corrupt(Format::Tiff, e))?;
    }
}

/// A readable, unencrypted PDF with 1 to `limits.max_pages` pages: hayro-syntax's document
/// (cross-reference table repaired where it can be, the page tree read). A document encrypted
/// with a user password is refused; one encrypted with an empty user password (an owner
/// password only: "no printing" and the like) opens, as it does in every PDF viewer.
fn load_pdf(bytes: &[u8], limits: &Limits) -> Result<hayro::hayro_syntax::Pdf> {
    use hayro::hayro_syntax::{LoadPdfError, Pdf};
    let pdf = std::panic::catch_unwind(|| Pdf::new(bytes.to_vec()))
        .map_err(|_| corrupt(Format::Pdf, "the PDF parser failed"))?
        .map_err(|e| match e {
            LoadPdfError::Decryption(e) => {
                Error::InvalidInput(format!("encrypted PDF documents are not supported (a password is needed: {e:?})"))
            }
            LoadPdfError::Invalid => {
                corrupt(Format::Pdf, "not a readable PDF (no usable cross-reference table or page tree)")
            }
        })?;
    let pages = pdf.pages().len();
    if pages == 0 {
        return Err(Error::InvalidInput("PDF document has no pages".into()));
    }
    if pages as u64 > limits.max_pages as u64 {
        return Err(Error::LimitExceeded(format!("{pages} pages, over the limit of {}", limits.max_pages)));
    }
    Ok(pdf)
}

fn pdf_pages(bytes: &[u8], limits: &Limits) -> Result<Vec<PageInfo>> {
    let pdf = load_pdf(bytes, limits)?;
    Ok(pdf
        .pages()
        .iter()
        .map(|page| {
            // The MediaBox, inherited from the page's ancestors where it has none.
            let b = page.media_box();
            PageInfo { width: b.width().abs(), height: b.height().abs(), unit: "pt", color: None }
        })
        .collect())
}

/// One page as 8-bit RGB pixels.
#[derive(Debug, Clone)]
pub struct RasterPage {
    pub image: image::RgbImage,
    /// The resolution a PDF page was rendered at; `None` for raster pages (their own pixels).
    pub dpi: Option<f32>,
}

/// A document decoded to RGB pages by [`rasterize`].
pub type Rasterized = (Format, Vec<RasterPage>);

/// Bytes of pixel data in a rasterised document.
pub fn raster_bytes(pages: &[RasterPage]) -> u64 {
    pages.iter().map(|p| p.image.as_raw().len() as u64).sum()
}

/// What [`rasterize`] will allocate for this document, from its headers alone (image dimensions,
/// PDF page boxes), without decoding pixels; `None` when that cannot be told cheaply (TIFF,
/// unknown or unreadable documents — they are decoded when their job runs).
pub fn raster_bytes_estimate(bytes: &[u8], limits: &Limits, pdf_dpi: f32) -> Option<u64> {
    match detect_format(bytes)? {
        Format::Tiff => None,
        Format::Pdf => {
            let scale = (pdf_dpi / 72.0) as f64;
            let pages = pdf_pages(bytes, limits).ok()?;
            Some(pages.iter().map(|p| (p.width * scale).ceil() as u64 * (p.height * scale).ceil() as u64 * 3).sum())
        }
        format => {
            let reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
            let (w, h) = reader.into_dimensions().ok()?;
            Some(w as u64 * h as u64 * 3)
        }
    }
}

/// The document's pages: `given` (rasterised ahead of the job's slot, see
/// [`crate::pipeline::Document::pages`]) or rasterised now, with the time rasterising took here
/// (zero when given).
pub fn given_or_rasterize<'a>(
    given: Option<&'a Rasterized>,
    bytes: &[u8],
    limits: &Limits,
    pdf_dpi: f32,
) -> Result<(std::borrow::Cow<'a, Rasterized>, std::time::Duration)> {
    match given {
        Some(pages) => Ok((std::borrow::Cow::Borrowed(pages), std::time::Duration::ZERO)),
        None => {
            let started = std::time::Instant::now();
            let pages = rasterize(bytes, limits, pdf_dpi)?;
            Ok((std::borrow::Cow::Owned(pages), started.elapsed()))
        }
    }
}

/// Decode every page of a document to RGB pixels: raster formats as stored (alpha composited on
/// white, grey replicated), PDF pages rendered at `pdf_dpi`. Corrupt, encrypted or unsupported
/// documents are [`Error::InvalidInput`], documents over `limits` [`Error::LimitExceeded`]; the
/// renderer's own panics on hostile PDFs are caught and reported the same way.
pub fn rasterize(bytes: &[u8], limits: &Limits, pdf_dpi: f32) -> Result<Rasterized> {
    if bytes.is_empty() {
        return Err(Error::InvalidInput("document is empty (0 bytes)".into()));
    }
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(Error::LimitExceeded(format!(
            "document is {} bytes, over the limit of {}",
            bytes.len(),
            limits.max_input_bytes
        )));
    }
    let format = detect_format(bytes).ok_or_else(|| {
        Error::InvalidInput("unsupported document type: not PNG, JPEG, GIF, WebP, BMP, TIFF or PDF".into())
    })?;
    let raster = |image| RasterPage { image, dpi: None };
    let pages = match format {
        Format::Pdf => render_pdf(bytes, limits, pdf_dpi)?,
        Format::Tiff => {
            let mut pages = Vec::new();
            each_tiff_page(bytes, limits, |w, h, color, data| {
                pages.push(raster(tiff_to_rgb(w, h, color, data)?));
                Ok(())
            })?;
            pages
        }
        _ => vec![raster(flatten_to_rgb(decode_image(format, bytes, limits)?))],
    };
    Ok((format, pages))
}

/// RGB with any alpha composited over white (scans with transparency read as paper).
fn flatten_to_rgb(img: image::DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = image::RgbImage::new(w, h);
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = p[3] as u32;
        for c in 0..3 {
            o[c] = ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

fn tiff_to_rgb(w: u32, h: u32, color: tiff::ColorType, data: tiff::decoder::DecodingResult) -> Result<image::RgbImage> {
    use image::{DynamicImage, ImageBuffer};
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as D;
    let bad = || Error::InvalidInput(format!("unsupported TIFF pixel layout {color:?}"));
    let short = || corrupt(Format::Tiff, "pixel data shorter than the page");
    let img = match (color, data) {
        (C::Gray(8), D::U8(v)) => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::Gray(16), D::U16(v)) => DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::GrayA(8), D::U8(v)) => DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGB(8), D::U8(v)) => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGB(16), D::U16(v)) => DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGBA(8), D::U8(v)) => DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGBA(16), D::U16(v)) => DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::CMYK(8), D::U8(v)) => {
            if v.len() < (w as usize) * (h as usize) * 4 {
                return Err(short());
            }
            let rgb = v
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = 255 - p[3] as u32;
                    [0, 1, 2].map(|c| ((255 - p[c] as u32) * k / 255) as u8)
                })
                .collect();
            DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, rgb).ok_or_else(short)?)
        }
        _ => return Err(bad()),
    };
    Ok(flatten_to_rgb(img))
}

/// Render every page of a PDF at `dpi`, from one parse of the document (the checks of
/// [`load_pdf`] first, so a broken file is refused rather than half-rendered).
fn render_pdf(bytes: &[u8], limits: &Limits, dpi: f32) -> Result<Vec<RasterPage>> {
    use hayro::vello_cpu::color::palette::css::WHITE;
    let pdf = load_pdf(bytes, limits)?;
    let pages = pdf.pages();
    let scale = dpi / 72.0;
    let cache = hayro::RenderCache::new();
    let interpreter = hayro::hayro_interpret::InterpreterSettings::default();
    let render_settings = hayro::RenderSettings::default();
    let mut out = Vec::with_capacity(pages.len());
    for (i, page) in pages.iter().enumerate() {
        let (w_pt, h_pt) = page.render_dimensions();
        // Whole pixels covering the page, as pdfium sizes it (`ceil(pt × dpi / 72)`).
        let (w, h) = ((w_pt * scale).ceil() as u64, (h_pt * scale).ceil() as u64);
        check_pixels(w, h, i + 1, limits)?;
        if w == 0 || h == 0 || w > u16::MAX as u64 || h > u16::MAX as u64 {
            return Err(Error::LimitExceeded(format!(
                "page {} renders to {w}×{h} pixels at {dpi} dpi; sides must be 1–{}",
                i + 1,
                u16::MAX
            )));
        }
        // hayro truncates `points × scale`; scale each axis so that lands on the whole size.
        let pixmap_settings = hayro::PixmapSettings {
            x_scale: (w as f32 + 0.01) / w_pt,
            y_scale: (h as f32 + 0.01) / h_pt,
            bg_color: WHITE,
        };
        let pixmap = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hayro::render(page, &cache, &interpreter, &render_settings, &pixmap_settings)
        }))
        .map_err(|_| corrupt(Format::Pdf, format!("the renderer failed on page {}", i + 1)))?;
        let (pw, ph) = (pixmap.width() as u32, pixmap.height() as u32);
        // The background is opaque white, so premultiplied values are the colours themselves.
        let rgb: Vec<u8> = pixmap.data().iter().flat_map(|p| [p.r, p.g, p.b]).collect();
        let image = image::RgbImage::from_raw(pw, ph, rgb).ok_or_else(|| corrupt(Format::Pdf, "bad pixmap size"))?;
        out.push(RasterPage { image, dpi: Some(dpi) });
    }
    Ok(out)
}

/// Most characters kept from one page's text layer.
const MAX_TEXT_LAYER_CHARS: usize = 4 << 20;

/// A PDF's text layer: one string per page, in page order. Each page's content is interpreted by
/// hayro (the same parser and interpreter that render it) into a device that keeps only the
/// glyphs' Unicode values ([`TextLayer`]). A page whose text cannot be read (glyphs without a
/// Unicode mapping, an interpreter failure) gives what could be read, or an empty string: the text
/// layer is a hint for a prompt, never a reason to fail the document. Not a readable, unencrypted
/// PDF within `limits.max_pages` → the same errors as [`rasterize`].
pub fn pdf_text_layer(bytes: &[u8], limits: &Limits) -> Result<Vec<String>> {
    use hayro::hayro_interpret::kurbo::{Affine, Rect};
    use hayro::hayro_interpret::{Context, InterpreterCache, InterpreterSettings, interpret_page};
    let pdf = load_pdf(bytes, limits)?;
    let cache = InterpreterCache::new();
    Ok(pdf
        .pages()
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let mut layer = TextLayer::default();
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let bbox = Rect::new(0.0, 0.0, 1.0, 1.0);
                let mut context =
                    Context::new(Affine::IDENTITY, bbox, &cache, pdf.xref(), InterpreterSettings::default());
                interpret_page(page, &mut context, &mut layer);
            }));
            if read.is_err() {
                tracing::debug!(page = i + 1, "the PDF text layer of this page could not be read to its end");
            }
            layer.text
        })
        .collect())
}

/// A hayro device that turns glyph runs into text: glyphs in content-stream order (the order
/// the document's producer wrote them, as pdftotext's raw mode reads them), a space
/// where the pen jumps right by more than a quarter of the text height without a space glyph, a
/// newline where the baseline moves by more than half of it.
#[derive(Default)]
struct TextLayer {
    text: String,
    /// The previous glyph's baseline y, right edge x and height, in user space.
    last: Option<(f64, f64, f64)>,
}

impl TextLayer {
    fn push_glyph(&mut self, unicode: &str, x0: f64, x1: f64, y: f64, height: f64) {
        if self.text.len() >= MAX_TEXT_LAYER_CHARS {
            return;
        }
        if let Some((last_y, last_x1, last_h)) = self.last {
            let h = last_h.max(height).max(1e-3);
            let ends_blank = self.text.ends_with(char::is_whitespace) || unicode.starts_with(char::is_whitespace);
            if (y - last_y).abs() > 0.5 * h {
                if !self.text.ends_with('\n') {
                    self.text.push('\n');
                }
            } else if !ends_blank && (x0 - last_x1 > 0.25 * h || x1 < last_x1 - h) {
                self.text.push(' ');
            }
        }
        self.text.push_str(unicode);
        self.last = Some((y, x1, height));
    }
}

impl<'a> hayro::hayro_interpret::Device<'a> for TextLayer {
    fn draw_path(
        &mut self,
        _: &hayro::kurbo::BezPath,
        _: hayro::hayro_interpret::DrawProps<'a>,
        _: &hayro::hayro_interpret::DrawMode,
    ) {
    }
    fn push_clip_path(&mut self, _: &hayro::hayro_interpret::ClipPath) {}
    fn push_transparency_group(
        &mut self,
        _: f32,
        _: Option<hayro::hayro_interpret::SoftMask<'a>>,
        _: hayro::hayro_interpret::BlendMode,
    ) {
    }
    fn draw_glyph_run(
        &mut self,
        run: &hayro::hayro_interpret::font::GlyphRun<'_, 'a>,
        props: hayro::hayro_interpret::DrawProps<'a>,
        _: &hayro::hayro_interpret::DrawMode,
    ) {
        use hayro::hayro_interpret::font::Glyph;
        use hayro::hayro_interpret::hayro_cmap::BfString;
        use hayro::kurbo::{Point, Shape as _};
        for glyph in run.glyphs() {
            let Some(unicode) = glyph.as_unicode() else { continue };
            let unicode = match unicode {
                BfString::Char(c) => c.to_string(),
                BfString::String(s) => s,
            };
            let transform = props.transform * glyph.transform();
            let origin = transform * Point::ZERO;
            // The outline's box in user space gives the glyph's extent; a glyph without one (a
            // space, a Type 3 glyph) is a point at its origin.
            let bounds = match &**glyph {
                Glyph::Outline(g) => Some((transform * g.outline()).bounding_box()).filter(|b| b.area() > 0.0),
                Glyph::Type3(_) => None,
            };
            let (x0, x1, height) = match bounds {
                Some(b) => (b.x0.min(origin.x), b.x1, b.height()),
                None => (origin.x, origin.x, 0.0),
            };
            self.push_glyph(&unicode, x0, x1, origin.y, height);
        }
    }
    fn draw_image(&mut self, _: hayro::hayro_interpret::Image<'a, '_>, _: hayro::hayro_interpret::ImageDrawProps<'a>) {}
    fn pop_clip(&mut self) {}
    fn pop_transparency_group(&mut self) {}
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

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ocr").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn pdf_pages_are_rendered_at_the_requested_dpi() {
        let (format, pages) = rasterize(&fixture("doc_three_pages.pdf"), &Limits::default(), 150.0).unwrap();
        assert_eq!(format, Format::Pdf);
        assert_eq!(pages.len(), 3);
        // A4 (595.28 × 841.89 pt) at 150 dpi, whole pixels as pdfium sizes it.
        assert_eq!(pages[0].image.dimensions(), (1241, 1754));
        assert_eq!(pages[0].dpi, Some(150.0));
        // Ink on white paper: mostly white, some dark pixels.
        let dark = pages[0].image.pixels().filter(|p| p[0] < 100).count();
        assert!(dark > 1000 && dark < 1241 * 1754 / 5, "{dark} dark pixels");
        let (_, small) = rasterize(&fixture("doc_three_pages.pdf"), &Limits::default(), 72.0).unwrap();
        assert_eq!(small[0].image.dimensions(), (596, 842));
    }

    #[test]
    fn raster_pages_decode_to_rgb_with_their_own_size() {
        let (_, tiff) = rasterize(&fixture("doc_two_pages.tiff"), &Limits::default(), 150.0).unwrap();
        assert_eq!(tiff.len(), 2);
        assert_eq!(tiff[1].image.dimensions(), (800, 600));
        assert_eq!(tiff[1].dpi, None);
        let (format, bmp) =
            rasterize(&fixture("line_06_liberationsansbold_36.bmp"), &Limits::default(), 150.0).unwrap();
        assert_eq!((format, bmp[0].image.dimensions()), (Format::Bmp, (908, 69)));
    }

    #[test]
    fn bad_documents_and_limits_are_permanent_errors() {
        let limits = Limits::default();
        let cases: Vec<(&str, Vec<u8>, Limits, &str)> = vec![
            ("empty", vec![], limits.clone(), "empty"),
            ("text", fixture("bad_not_an_image.png"), limits.clone(), "unsupported document type"),
            ("truncated png", fixture("bad_truncated.png"), limits.clone(), "cannot decode image/png"),
            ("bomb", fixture("bad_bomb.png"), limits.clone(), "over the limit"),
            ("truncated pdf", fixture("bad_truncated.pdf"), limits.clone(), "cannot decode application/pdf"),
            ("encrypted pdf", fixture("bad_encrypted.pdf"), limits.clone(), "encrypted"),
            (
                "pdf pages",
                fixture("doc_three_pages.pdf"),
                Limits { max_pages: 2, ..limits.clone() },
                "over the limit of 2",
            ),
            // 1241 × 1754 pixels at 150 dpi: over a 1 Mpx limit before anything is rendered.
            (
                "pdf pixels",
                fixture("doc_three_pages.pdf"),
                Limits { max_pixels: 1_000_000, ..limits.clone() },
                "pixels",
            ),
            ("bytes", fixture("page_paragraph.png"), Limits { max_input_bytes: 1000, ..limits.clone() }, "bytes"),
        ];
        for (name, bytes, lim, needle) in cases {
            let err = rasterize(&bytes, &lim, 150.0).unwrap_err();
            assert!(!err.is_transient(), "{name}");
            assert!(err.to_string().contains(needle), "{name}: {err}");
        }
    }

    /// A PDF with only an owner password (AES-256, empty user password, printing forbidden:
    /// scripts/fixtures/pdf.sh) opens as it does in every viewer: rendered, and its text layer
    /// read, while one with a user password (bad_encrypted.pdf) is refused.
    #[test]
    fn a_pdf_with_only_an_owner_password_is_read() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pdf/owner_password_only.pdf");
        let bytes = std::fs::read(path).unwrap();
        let (_, pages) = rasterize(&bytes, &Limits::default(), 72.0).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].image.dimensions(), (596, 842));
        let dark = pages[0].image.pixels().filter(|p| p[0] < 100).count();
        assert!(dark > 500, "the page has ink: {dark} dark pixels");
        let layer = pdf_text_layer(&bytes, &Limits::default()).unwrap();
        assert!(layer[0].starts_with("Service Agreement SA-2025-118\n"), "{:?}", layer[0]);
        let plain = pdf_text_layer(&fixture("doc_three_pages.pdf"), &Limits::default()).unwrap();
        assert_eq!(layer[0], plain[0], "decrypted, the same text as the unencrypted original");
    }

    /// Every line the fixture generator drew on each page of doc_three_pages.pdf
    /// (tests/fixtures/ocr/ground_truth.json) is in that page's text layer, in order, with
    /// whitespace runs counted as one space, one line of text per drawn line; a PDF of scanned
    /// images has an empty text layer.
    #[test]
    fn the_pdf_text_layer_holds_each_pages_drawn_lines_in_order() {
        let gt_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ocr/ground_truth.json");
        let gt: serde_json::Value = serde_json::from_slice(&std::fs::read(gt_path).unwrap()).unwrap();
        let entry = gt
            .as_array()
            .or_else(|| gt["files"].as_array())
            .and_then(|a| a.iter().find(|e| e["file"] == "doc_three_pages.pdf"))
            .or_else(|| gt.get("doc_three_pages.pdf"))
            .expect("doc_three_pages.pdf in ground_truth.json");
        let pages_gt = entry["pages"].as_array().expect("pages");
        let layer = pdf_text_layer(&fixture("doc_three_pages.pdf"), &Limits::default()).unwrap();
        assert_eq!(layer.len(), pages_gt.len());
        let squash = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        for (i, (text, page)) in layer.iter().zip(pages_gt).enumerate() {
            // Line for line: the baselines the generator drew are the text layer's lines.
            let lines: Vec<String> = text.lines().map(squash).filter(|l| !l.is_empty()).collect();
            let expected: Vec<String> =
                page["lines"].as_array().unwrap().iter().map(|l| squash(l.as_str().unwrap())).collect();
            assert_eq!(lines, expected, "page {}", i + 1);
            let text = squash(text);
            let mut from = 0;
            for line in page["lines"].as_array().unwrap() {
                let line = squash(line.as_str().unwrap());
                let at = text[from..].find(&line).unwrap_or_else(|| panic!("page {}: {line:?} not in {text:?}", i + 1));
                from += at + line.len();
            }
        }
        let scanned = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/report.pdf"));
        let scanned = pdf_text_layer(&scanned.unwrap(), &Limits::default()).unwrap();
        assert_eq!(scanned.len(), 2);
        assert!(scanned.iter().all(|t| t.trim().is_empty()), "{scanned:?}");
        let err = pdf_text_layer(&fixture("bad_encrypted.pdf"), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("encrypted"), "{err}");
    }
}
