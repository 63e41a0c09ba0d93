//! `inspect`: the diagnostic pipeline. It decodes the document and reports its format, page
//! count, page dimensions, byte size and sha256. Load and chaos tests use it for plumbing.

use async_trait::async_trait;
use docfleet_core::config::Limits;
use docfleet_core::{Error, Result};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Document, Pipeline, PipelineOutput};
use crate::document::{decode_pages, detect_format};

pub struct Inspect {
    limits: Limits,
}

impl Inspect {
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }
}

/// Inspect a document synchronously (CPU-bound; callers run it off the async runtime).
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Value> {
    if bytes.is_empty() {
        return Err(Error::InvalidInput("document is empty (0 bytes)".into()));
    }
    let format = detect_format(bytes).ok_or_else(|| {
        Error::InvalidInput("unsupported document type: not PNG, JPEG, GIF, WebP, BMP, TIFF or PDF".into())
    })?;
    let pages = decode_pages(format, bytes, limits)?;
    Ok(json!({
        "format": format,
        "mime_type": format.mime(),
        "bytes": bytes.len(),
        "sha256": hex::encode(Sha256::digest(bytes)),
        "page_count": pages.len(),
        "pages": pages,
    }))
}

#[async_trait]
impl Pipeline for Inspect {
    fn name(&self) -> &'static str {
        "inspect"
    }

    async fn process(&self, doc: &Document, _params: &Map<String, Value>) -> Result<PipelineOutput> {
        let bytes = doc.bytes.clone();
        let limits = self.limits.clone();
        let result = tokio::task::spawn_blocking(move || inspect(&bytes, &limits))
            .await
            .map_err(|e| Error::InvalidInput(format!("decoder crashed: {e}")))??;
        Ok(PipelineOutput { result, text: None, markdown: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 255) as u8, (y % 255) as u8, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn reports_format_pages_size_and_hash() {
        let bytes = png(40, 30);
        let v = inspect(&bytes, &Limits::default()).unwrap();
        assert_eq!(v["format"], "png");
        assert_eq!(v["page_count"], 1);
        assert_eq!(v["pages"][0]["width"], 40.0);
        assert_eq!(v["pages"][0]["height"], 30.0);
        assert_eq!(v["bytes"], bytes.len());
        assert_eq!(v["sha256"], hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn bad_inputs_are_clear_permanent_errors() {
        let limits = Limits { max_pixels: 1000, ..Limits::default() };
        let full = png(40, 30);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "empty"),
            ("text", b"just some text, not an image".to_vec(), "unsupported document type"),
            ("truncated", full[..full.len() / 2].to_vec(), "cannot decode image/png"),
            ("too many pixels", full.clone(), "over the limit of 1000"),
        ];
        for (name, bytes, needle) in cases {
            let lim = if name == "too many pixels" { limits.clone() } else { Limits::default() };
            let err = inspect(&bytes, &lim).unwrap_err();
            assert!(!err.is_transient(), "{name}");
            assert!(err.to_string().contains(needle), "{name}: {err}");
        }
    }
}
