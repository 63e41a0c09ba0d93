//! The `vlm` pipeline's result record, the same for every model family: per page the text,
//! token ids, finish reason, batch and timings; per document the pages, the text, the generation
//! settings and the timings summed over the generation batches (a batch's times counted once,
//! however many pages shared it). A family adds its own keys to pages and document.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::config::GenerationConfig;
use super::generate::{Generated, Times};
use crate::document::{Format, RasterPage};

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// One page's generation as the record shows it.
pub struct PageRecord<'a> {
    pub text: &'a str,
    pub generated: &'a Generated,
    pub preprocess: Duration,
    /// The generation batch it ran in (numbered per document) and that batch's size and times.
    pub batch: usize,
    pub batch_size: usize,
    pub times: &'a Times,
}

/// The document's pages and totals, filled page by page.
#[derive(Default)]
pub struct Record {
    pub pages: Vec<Value>,
    texts: Vec<String>,
    preprocess: Duration,
    tokens: usize,
    batches: Vec<Times>,
}

impl Record {
    /// Add the next page: the common keys, to which the caller may add its own.
    pub fn push(&mut self, page: &RasterPage, r: &PageRecord<'_>) -> &mut Value {
        if self.batches.len() == r.batch {
            self.batches.push(*r.times);
        }
        self.preprocess += r.preprocess;
        self.tokens += r.generated.ids.len();
        let t = r.times;
        let mut v = json!({
            "page": self.pages.len() + 1,
            "width": page.image.width(),
            "height": page.image.height(),
            "text": r.text,
            "tokens": r.generated.ids.len(),
            "token_ids": r.generated.ids,
            "finish_reason": r.generated.finish.as_str(),
            "batch": {"index": r.batch, "size": r.batch_size},
            "timings_ms": {
                "preprocess": ms(r.preprocess),
                "encoder": ms(t.encoder),
                "decoder": ms(t.decoder),
                "decoder_per_token": ms(t.decoder / t.steps.max(1) as u32),
            },
        });
        if let Some(dpi) = page.dpi {
            v["dpi"] = json!(dpi);
        }
        self.texts.push(r.text.to_owned());
        self.pages.push(v);
        self.pages.last_mut().expect("pushed")
    }

    /// The pages' texts, form feed between pages (the `.txt` rendition without its newline).
    pub fn text(&self) -> String {
        self.texts.join("\n\u{c}\n")
    }

    /// The record: pages, text, `prompt`, `generation` (with the tokens generated added), `model`
    /// and the timings.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        format: Format,
        bytes: usize,
        prompt: Value,
        mut generation: Value,
        model: Value,
        decode: Duration,
        started: Instant,
    ) -> Value {
        let sum = |f: fn(&Times) -> Duration| self.batches.iter().map(f).sum::<Duration>();
        let (encoder, decoder, host) = (sum(|t| t.encoder), sum(|t| t.decoder), sum(|t| t.host()));
        generation["tokens"] = json!(self.tokens);
        let text = self.text();
        json!({
            "format": format,
            "mime_type": format.mime(),
            "bytes": bytes,
            "page_count": self.pages.len(),
            "pages": self.pages,
            "text": text,
            "prompt": prompt,
            "generation": generation,
            "model": model,
            "timings_ms": {
                "decode": ms(decode),
                "preprocess": ms(self.preprocess),
                "encoder": ms(encoder),
                "decoder": ms(decoder),
                "outside_session_run": ms(host),
                "total": ms(started.elapsed()),
            },
        })
    }
}

/// The `generation` block: greedy search with the model's processors and the batching in use.
pub fn generation(
    max_new_tokens: Option<usize>,
    batch_size: usize,
    batch_across_jobs: bool,
    g: &GenerationConfig,
) -> Value {
    json!({
        "strategy": "greedy",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "batch_across_jobs": batch_across_jobs,
        "eos_token_ids": g.eos_token_ids,
        "no_repeat_ngram_size": g.no_repeat_ngram_size,
        "repetition_penalty": g.repetition_penalty,
    })
}
