//! The `openai` engine of the `vlm` pipeline: each page is one chat-completions request to an
//! OpenAI-compatible server (vLLM, SGLang, llama.cpp, `transformers serve`) beside the worker,
//! the page as a base64 `data:` URL resized to `vlm.server.image_longest_side`. The server does
//! the batching (continuous batching, paged KV cache); the engine keeps it fed: one semaphore of
//! `vlm.server.max_in_flight` requests, owned by the engine and so shared by the pages of every
//! job in flight in the process. Failed requests are retried with backoff (429, 5xx, connection
//! errors, timeouts); a page that keeps failing fails its document as transient (released,
//! redelivered), a 400/413/422 as permanent (the input is bad). A probe asks the server
//! whether it is up (`GET {url}/models`, `/health` where it answers) and the worker takes no
//! jobs while it is not ([`OpenaiEngine::ready`]).

pub mod presets;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use docfleet_core::config::{Limits, Secret, VlmImageFormat, VlmServerPreset, VlmServerSettings};
use docfleet_core::{Error, Result, Settings};
use image::RgbImage;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::{max_new_tokens_param, string_param};
use crate::document::{Format, Rasterized, rasterize};

/// Job parameters the engine reads.
const PARAMS: [&str; 2] = ["prompt", "max_new_tokens"];
/// Longest retry delay.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How much of an error body goes into a message.
const ERROR_BODY_CHARS: usize = 500;

/// The connection to the server, shared by every job.
pub struct OpenaiEngine {
    shared: Arc<Shared>,
}

struct Shared {
    client: reqwest::Client,
    settings: VlmServerSettings,
    /// `vlm.server.url` without a trailing slash (ends in `/v1`).
    base: String,
    token: Option<Secret>,
    /// The model sent in requests: `vlm.server.model`, else the first the server lists.
    model: Mutex<Option<String>>,
    /// Page requests in flight, across every job.
    in_flight: Arc<Semaphore>,
    /// The last probe (or request) found the server answering.
    up: AtomicBool,
    probe_started: AtomicBool,
    extra: Map<String, Value>,
    limits: Limits,
    pdf_dpi: f32,
    max_new_tokens_limit: usize,
    /// Requests sent and retried, for the result record and the benchmark.
    requests: AtomicU64,
    retried: AtomicU64,
}

/// How one attempt at a page's request ended.
enum Attempt {
    Done(Value),
    /// Worth retrying (429, 5xx, timeout, connection error); `down`: the server is not there.
    Retry {
        why: String,
        down: bool,
    },
    /// The server says the input is bad.
    Rejected(String),
    /// Not the document's fault, and retrying now will not help (401, 404: configuration).
    Refused(String),
}

/// One page's answer.
struct PageAnswer {
    content: String,
    finish_reason: Value,
    usage: Value,
    model: Value,
    latency: Duration,
    attempts: u32,
    sent: (u32, u32),
    encode: Duration,
}

impl OpenaiEngine {
    /// Set up the client from `vlm.server`. Nothing is sent yet: the probe starts with the first
    /// [`ready`](Self::ready) call, inside the worker's runtime.
    pub fn load(settings: &Settings) -> Result<Self> {
        let s = &settings.vlm.server;
        if s.preset == VlmServerPreset::Custom {
            presets::check_template(&s.prompt_template)?;
        }
        let extra = s.extra_body_fields().map_err(|e| Error::Config(format!("vlm.server.extra_body {e}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(s.max_in_flight)
            .build()
            .map_err(|e| Error::Config(format!("vlm.server: cannot build the HTTP client: {e}")))?;
        if settings.worker.concurrency < s.max_in_flight {
            tracing::warn!(
                concurrency = settings.worker.concurrency,
                max_in_flight = s.max_in_flight,
                "worker.concurrency is below vlm.server.max_in_flight: one-page jobs cannot fill the server's batch (docs/vlm.md)"
            );
        }
        let model = (!s.model.is_empty()).then(|| s.model.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                base: s.url.trim_end_matches('/').to_owned(),
                token: s.bearer_token()?,
                model: Mutex::new(model),
                in_flight: Arc::new(Semaphore::new(s.max_in_flight)),
                up: AtomicBool::new(false),
                probe_started: AtomicBool::new(false),
                extra,
                limits: settings.limits.clone(),
                pdf_dpi: settings.vlm.pdf_dpi,
                max_new_tokens_limit: settings.vlm.max_new_tokens_limit,
                requests: AtomicU64::new(0),
                retried: AtomicU64::new(0),
                settings: s.clone(),
            }),
        })
    }

    /// The resolution PDF pages are rendered at before resizing.
    pub fn pdf_dpi(&self) -> f32 {
        self.shared.pdf_dpi
    }

    /// True while the server answers its probe. The first call starts the probe (a task on the
    /// current runtime that ends when the engine is dropped).
    pub fn ready(&self) -> bool {
        if !self.shared.probe_started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(probe_loop(Arc::downgrade(&self.shared)));
                }
                Err(_) => self.shared.probe_started.store(false, Ordering::Release),
            }
        }
        self.shared.up.load(Ordering::Acquire)
    }

    /// Ask the server once whether it is up (and learn the model name when none is set).
    pub async fn probe(&self) -> std::result::Result<String, String> {
        let r = self.shared.probe().await;
        self.shared.up.store(r.is_ok(), Ordering::Release);
        r
    }

    /// Requests sent and requests retried so far.
    pub fn request_counts(&self) -> (u64, u64) {
        (self.shared.requests.load(Ordering::Relaxed), self.shared.retried.load(Ordering::Relaxed))
    }

    /// Read a document: the result record's `output`, the text rendition and the Markdown.
    pub async fn read_document(
        &self,
        bytes: &bytes::Bytes,
        pages: Option<Arc<Rasterized>>,
        params: &Map<String, Value>,
    ) -> Result<(Value, String, String)> {
        let started = Instant::now();
        let sh = &self.shared;
        let (prompt_override, max_tokens) = job_params(params, sh.max_new_tokens_limit)?;
        let (raster, decode) = match pages {
            Some(p) => (p, Duration::ZERO),
            None => {
                let (b, limits, dpi) = (bytes.clone(), sh.limits.clone(), sh.pdf_dpi);
                let t = Instant::now();
                let r = tokio::task::spawn_blocking(move || rasterize(&b, &limits, dpi))
                    .await
                    .map_err(|e| Error::InvalidInput(format!("decoding crashed on this document: {e}")))??;
                (Arc::new(r), t.elapsed())
            }
        };
        if !sh.up.load(Ordering::Acquire) {
            return Err(unavailable("the server is not answering its probe"));
        }
        let count = raster.1.len();
        let s = &sh.settings;
        // The `custom` template may use the PDF's text layer (olmOCR's "anchoring" idea).
        let text_layer = if s.preset == VlmServerPreset::Custom && prompt_override.is_none() && raster.0 == Format::Pdf
        {
            let (b, limits) = (bytes.clone(), sh.limits.clone());
            tokio::task::spawn_blocking(move || crate::document::pdf_text_layer(&b, &limits))
                .await
                .map_err(|e| Error::InvalidInput(format!("reading the PDF text layer crashed: {e}")))??
        } else {
            Vec::new()
        };
        let mut prompts = Vec::with_capacity(count);
        for i in 0..count {
            let page = presets::PageContext {
                page: i + 1,
                page_count: count,
                text_layer: text_layer.get(i).map_or("", String::as_str),
            };
            prompts.push(presets::prompt(s.preset, &s.prompt_template, page, prompt_override.as_deref())?);
        }
        let max_tokens = max_tokens.map(|n| n as u32).unwrap_or(s.max_tokens);
        let answers = futures::future::join_all(
            prompts.iter().enumerate().map(|(i, prompt)| sh.read_page(raster.clone(), i, prompt, max_tokens)),
        )
        .await;
        let answers = answers.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(self.assemble(bytes.len(), &raster, &prompts, answers, decode, started))
    }

    fn assemble(
        &self,
        bytes: usize,
        raster: &Rasterized,
        prompts: &[String],
        answers: Vec<PageAnswer>,
        decode: Duration,
        started: Instant,
    ) -> (Value, String, String) {
        let s = &self.shared.settings;
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        let (format, pages) = (raster.0, &raster.1);
        let mut page_values = Vec::with_capacity(answers.len());
        let mut texts = Vec::with_capacity(answers.len());
        let mut doctags = Vec::new();
        let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
        let mut model = Value::Null;
        for (i, (a, page)) in answers.iter().zip(pages).enumerate() {
            prompt_tokens += a.usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
            completion_tokens += a.usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
            if model.is_null() {
                model = a.model.clone();
            }
            let mut v = json!({
                "page": i + 1,
                "width": page.image.width(),
                "height": page.image.height(),
                "sent_size": [a.sent.0, a.sent.1],
                "answer": a.content,
                "finish_reason": a.finish_reason,
                "usage": a.usage,
                "model": a.model,
                "attempts": a.attempts,
                "timings_ms": {"encode": ms(a.encode), "request": ms(a.latency)},
            });
            v["prompt"] = json!(prompts[i]);
            if let Some(dpi) = page.dpi {
                v["dpi"] = json!(dpi);
            }
            let text = match s.preset {
                VlmServerPreset::Olmocr => match presets::parse_olmocr(&a.content) {
                    Ok(fm) => {
                        v["front_matter"] = Value::Object(fm.fields);
                        fm.body
                    }
                    Err(why) => {
                        v["front_matter"] = Value::Null;
                        v["front_matter_error"] = json!(why);
                        a.content.trim().to_owned()
                    }
                },
                VlmServerPreset::Doctags => {
                    doctags.push(a.content.clone());
                    a.content.clone()
                }
                VlmServerPreset::Markdown | VlmServerPreset::Custom => a.content.trim().to_owned(),
            };
            v["text"] = json!(text);
            page_values.push(v);
            texts.push(text);
        }
        let text = texts.join("\n\u{c}\n");
        let mut output = json!({
            "format": format,
            "mime_type": format.mime(),
            "bytes": bytes,
            "page_count": page_values.len(),
            "pages": page_values,
            "text": text,
            "engine": {
                "kind": "openai",
                "preset": s.preset.as_str(),
                "model": model,
                "image_longest_side": s.image_longest_side,
                "image_format": match s.image_format { VlmImageFormat::Png => "png", VlmImageFormat::Jpeg => "jpeg" },
                "temperature": s.temperature,
                "max_tokens": s.max_tokens,
            },
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "timings_ms": {"decode": ms(decode), "total": ms(started.elapsed())},
        });
        let markdown = if s.preset == VlmServerPreset::Doctags {
            // The pages as one document, as the Idefics3 engine assembles granite-docling's.
            let inputs: Vec<docfleet_core::doctags::PageInput<'_>> = doctags
                .iter()
                .zip(pages)
                .map(|(t, p)| {
                    docfleet_core::doctags::PageInput::with_size(t, p.image.width() as f64, p.image.height() as f64)
                })
                .collect();
            let doc = docfleet_core::doctags::parse(&inputs);
            let md = doc.to_markdown();
            output["markdown"] = json!(md);
            output["html"] = json!(doc.to_html("document"));
            output["document"] = doc.to_json();
            output["warnings"] = json!(doc.warnings.iter().map(ToString::to_string).collect::<Vec<_>>());
            md
        } else {
            let md = texts.iter().map(|t| t.trim()).collect::<Vec<_>>().join("\n\n");
            output["markdown"] = json!(md);
            md
        };
        let markdown = if markdown.ends_with('\n') { markdown } else { format!("{markdown}\n") };
        (output, format!("{text}\n"), markdown)
    }
}

impl Shared {
    /// One page: wait for a request slot, encode the page, send it (with retries).
    async fn read_page(
        &self,
        raster: Arc<Rasterized>,
        index: usize,
        prompt: &str,
        max_tokens: u32,
    ) -> Result<PageAnswer> {
        let _slot = self.in_flight.acquire().await.expect("semaphore open");
        let (longest, format, quality) =
            (self.settings.image_longest_side, self.settings.image_format, self.settings.jpeg_quality);
        let t = Instant::now();
        let (url, sent) =
            tokio::task::spawn_blocking(move || encode_page(&raster.1[index].image, longest, format, quality))
                .await
                .map_err(|e| Error::InvalidInput(format!("page {}: encoding crashed: {e}", index + 1)))??;
        let encode = t.elapsed();
        let mut body = self.extra.clone();
        let model = self.model.lock().expect("model lock").clone();
        let Some(model) = model else {
            return Err(unavailable("no model name yet (vlm.server.model is empty and the server has not listed one)"));
        };
        body.insert("model".into(), json!(model));
        body.insert(
            "messages".into(),
            json!([{"role": "user", "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": url}},
            ]}]),
        );
        body.insert("temperature".into(), json!(self.settings.temperature));
        if max_tokens > 0 {
            body.insert("max_tokens".into(), json!(max_tokens));
        }
        body.insert("stream".into(), json!(false));
        let body = Value::Object(body);
        let mut delay = Duration::from_millis(self.settings.retry_base_delay_ms);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let t = Instant::now();
            self.requests.fetch_add(1, Ordering::Relaxed);
            let attempt = self.send(&body).await;
            let latency = t.elapsed();
            let page = index + 1;
            match attempt {
                Attempt::Done(v) => {
                    let choice = v.get("choices").and_then(|c| c.get(0));
                    let content = choice.and_then(|c| c.pointer("/message/content"));
                    let Some(content) = content.and_then(Value::as_str) else {
                        return Err(server_error(format!("page {page}: the answer has no choices[0].message.content")));
                    };
                    return Ok(PageAnswer {
                        content: content.to_owned(),
                        finish_reason: choice.and_then(|c| c.get("finish_reason")).cloned().unwrap_or(Value::Null),
                        usage: v.get("usage").cloned().unwrap_or(Value::Null),
                        model: v.get("model").cloned().unwrap_or(json!(model)),
                        latency,
                        attempts,
                        sent,
                        encode,
                    });
                }
                Attempt::Rejected(why) => {
                    return Err(Error::InvalidInput(format!("page {page}: the VLM server rejected the page: {why}")));
                }
                Attempt::Refused(why) => return Err(server_error(format!("page {page}: {why}"))),
                Attempt::Retry { why, down } => {
                    if down {
                        // The probe brings it back when the server answers again.
                        self.up.store(false, Ordering::Release);
                        return Err(unavailable(&format!("page {page}: {why}")));
                    }
                    if attempts > self.settings.retries {
                        return Err(server_error(format!("page {page}: {why} (after {attempts} attempts)")));
                    }
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(page, attempt = attempts, retry_in_ms = delay.as_millis() as u64, error = %why, "VLM server request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t.expose()),
            None => r,
        }
    }

    async fn send(&self, body: &Value) -> Attempt {
        let timeout = Duration::from_secs(self.settings.timeout_seconds);
        let sent = self
            .request(reqwest::Method::POST, format!("{}/chat/completions", self.base))
            .timeout(timeout)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Attempt::Retry { why: format!("no answer within {} s", timeout.as_secs()), down: false };
            }
            Err(e) if e.is_connect() => {
                return Attempt::Retry { why: format!("cannot connect to the server: {}", chain(&e)), down: true };
            }
            Err(e) => return Attempt::Retry { why: format!("request failed: {}", chain(&e)), down: false },
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) if e.is_timeout() => {
                return Attempt::Retry { why: format!("no answer within {} s", timeout.as_secs()), down: false };
            }
            Err(e) => return Attempt::Retry { why: format!("reading the answer failed: {}", chain(&e)), down: false },
        };
        let short = || {
            let mut t: String = text.chars().take(ERROR_BODY_CHARS).collect();
            if t.len() < text.len() {
                t.push('…');
            }
            format!("HTTP {}: {t}", status.as_u16())
        };
        match status.as_u16() {
            200..=299 => match serde_json::from_str::<Value>(&text) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Retry { why: format!("the answer is not JSON ({e})"), down: false },
            },
            400 | 413 | 422 => Attempt::Rejected(short()),
            408 | 429 | 500..=599 => Attempt::Retry { why: short(), down: false },
            _ => Attempt::Refused(short()),
        }
    }

    async fn probe(&self) -> std::result::Result<String, String> {
        let timeout = Duration::from_secs(self.settings.timeout_seconds.min(10));
        let r = self
            .request(reqwest::Method::GET, format!("{}/models", self.base))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET {}/models: {}", self.base, chain(&e)))?;
        if !r.status().is_success() {
            return Err(format!("GET {}/models: HTTP {}", self.base, r.status().as_u16()));
        }
        let listed: Value = r.json().await.map_err(|e| format!("GET {}/models: not JSON: {e}", self.base))?;
        let first = listed.pointer("/data/0/id").and_then(Value::as_str).map(str::to_owned);
        {
            let mut model = self.model.lock().expect("model lock");
            if model.is_none() {
                *model = Some(
                    first
                        .clone()
                        .ok_or_else(|| format!("GET {}/models lists no model; set vlm.server.model", self.base))?,
                );
            }
        }
        // vLLM and SGLang answer /health at the server's root; others 404, which is fine.
        let root = self.base.strip_suffix("/v1").unwrap_or(&self.base);
        if let Ok(h) = self.request(reqwest::Method::GET, format!("{root}/health")).timeout(timeout).send().await {
            let code = h.status().as_u16();
            if !(h.status().is_success() || code == 404 || code == 405) {
                return Err(format!("GET {root}/health: HTTP {code}"));
            }
        }
        Ok(self.model.lock().expect("model lock").clone().unwrap_or_default())
    }
}

/// Probe the server every `vlm.server.probe_interval_ms` until the engine is dropped.
async fn probe_loop(shared: Weak<Shared>) {
    let mut was_up = None;
    loop {
        let Some(sh) = shared.upgrade() else { return };
        let interval = Duration::from_millis(sh.settings.probe_interval_ms);
        let result = sh.probe().await;
        let up = result.is_ok();
        sh.up.store(up, Ordering::Release);
        if was_up != Some(up) {
            match &result {
                Ok(model) => tracing::info!(url = %sh.base, %model, "VLM server is up"),
                Err(why) => {
                    tracing::warn!(url = %sh.base, error = %why, "VLM server is not answering; not taking jobs")
                }
            }
            was_up = Some(up);
        }
        drop(sh);
        tokio::time::sleep(interval).await;
    }
}

/// The page as a `data:` URL, resized (down only) so its longest side is at most `longest`;
/// with the size sent.
fn encode_page(img: &RgbImage, longest: u32, format: VlmImageFormat, quality: u8) -> Result<(String, (u32, u32))> {
    let (w, h) = img.dimensions();
    let resized;
    let img = if w.max(h) > longest {
        let scale = longest as f64 / w.max(h) as f64;
        let (nw, nh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
        resized = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Lanczos3);
        &resized
    } else {
        img
    };
    let mut bytes = Vec::new();
    let (mime, result) = match format {
        VlmImageFormat::Png => {
            ("image/png", img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png))
        }
        VlmImageFormat::Jpeg => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
            ("image/jpeg", img.write_with_encoder(enc))
        }
    };
    result.map_err(|e| Error::InvalidInput(format!("cannot encode the page: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    Ok((format!("data:{mime};base64,{b64}"), img.dimensions()))
}

/// The server failed this page; another try later may succeed.
fn server_error(message: String) -> Error {
    Error::Backend { service: "vlm server", operation: "chat completions", message, transient: true }
}

/// The server is not there: the message is released (the runner sees the pipeline not ready).
fn unavailable(why: &str) -> Error {
    Error::Backend { service: "vlm server", operation: "probe", message: why.to_owned(), transient: true }
}

/// An error with its sources (reqwest's own message omits the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `params.prompt` and `params.max_new_tokens` (sent as `max_tokens`), checked.
fn job_params(params: &Map<String, Value>, limit: usize) -> Result<(Option<String>, Option<usize>)> {
    if let Some(key) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(Error::InvalidJob(format!(
            "unknown parameter `{key}` for the vlm pipeline (accepted: {})",
            PARAMS.join(", ")
        )));
    }
    Ok((string_param(params, "prompt")?, max_new_tokens_param(params, limit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_resized_to_the_longest_side_and_encoded() {
        let img = RgbImage::from_pixel(2000, 1000, image::Rgb([200, 10, 10]));
        let (url, sent) = encode_page(&img, 1288, VlmImageFormat::Png, 90).unwrap();
        assert_eq!(sent, (1288, 644));
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (1288, 644));
        assert_eq!(back.get_pixel(600, 300).0, [200, 10, 10]);
        // Small pages are sent as they are.
        let small = RgbImage::new(300, 500);
        let (url, sent) = encode_page(&small, 1288, VlmImageFormat::Jpeg, 80).unwrap();
        assert_eq!(sent, (300, 500));
        assert!(url.starts_with("data:image/jpeg;base64,"));
    }

    #[test]
    fn job_params_are_checked() {
        let p = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(job_params(&p(json!({})), 10).unwrap(), (None, None));
        assert_eq!(
            job_params(&p(json!({"prompt": "x", "max_new_tokens": 5})), 10).unwrap(),
            (Some("x".into()), Some(5))
        );
        assert!(job_params(&p(json!({"max_new_tokens": 11})), 10).is_err());
        assert!(job_params(&p(json!({"temperature": 1})), 10).is_err());
    }
}
