//! Cross-job batching with the real PP-OCR models (`tests/fixtures/ocr`): documents read at the
//! same time by one engine that merges their model calls come out exactly as when each is read
//! alone by an engine that never merges, and the merging did happen. Needs onnxruntime and the
//! models (`scripts/setup/onnxruntime.sh`) and fails, saying so, without them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use docfleet_core::Settings;

use super::OcrEngine;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ocr")
}

fn engine(batch_across_jobs: bool, max_wait_ms: u64) -> OcrEngine {
    let mut settings = Settings::default();
    settings.ocr.batch_across_jobs = Some(batch_across_jobs);
    settings.ocr.batch_max_wait_ms = max_wait_ms;
    OcrEngine::load(&settings).unwrap_or_else(|e| {
        panic!("cannot load the OCR models (needs onnxruntime and PP-OCR: run `scripts/setup/onnxruntime.sh`): {e}")
    })
}

#[test]
fn concurrent_documents_merge_model_calls_and_read_as_when_alone() {
    let docs = [
        "page_paragraph.png",
        "page_paragraph.jpg",
        "page_paragraph.webp",
        "page_two_column.png",
        "page_rot180.png",
        "doc_two_pages.tiff",
    ];
    let bytes: Vec<Vec<u8>> = docs.iter().map(|d| std::fs::read(fixtures().join(d)).unwrap()).collect();

    let single = engine(false, 0);
    let alone: Vec<String> = bytes.iter().map(|b| single.read_document(b).unwrap().1).collect();
    let (runs, requests, merged, _) = single.batch_stats();
    assert_eq!(merged, 0, "an engine that never merges ran {runs} runs for {requests} calls");

    // Every document at once, twice over, on an engine that merges (waiting a little for company).
    let batched = Arc::new(engine(true, 20));
    let together: Vec<(usize, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2 * docs.len())
            .map(|k| {
                let (engine, bytes) = (batched.clone(), &bytes[k % docs.len()]);
                scope.spawn(move || (k % docs.len(), engine.read_document(bytes).unwrap().1))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, text) in &together {
        assert_eq!(text, &alone[*i], "{}: read together differs from read alone", docs[*i]);
    }
    let (runs, requests, merged, items) = batched.batch_stats();
    assert!(merged > 0 && runs < requests, "no call was merged: {runs} runs for {requests} calls ({items} items)");
}
