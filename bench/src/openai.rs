//! `openai`: the `vlm` pipeline's `openai` engine end to end (LocalStack, one `docfleet-worker`)
//! against a plain client loop sending the same pages to the same server with the same
//! concurrency, at each `vlm.server.max_in_flight` level.
//!
//! The server is `transformers serve` on CPU with the tiny random Qwen2-VL of
//! tests/fixtures/vlm/serve (the one tests/openai.rs uses), started here on a loopback port. Every
//! request asks for exactly `--max-tokens` tokens at temperature 0 with the `markdown` preset's
//! prompt, so both sides ask the server for the same work.
//!
//! - Client loop: `concurrency` requests in flight (reqwest, one client), each the chat body the
//!   engine sends for a page, with the page's PNG as a data URL.
//! - Fleet: one one-page PNG job per page on LocalStack, one `docfleet-worker --exit-when-empty`
//!   with `worker.concurrency` and `vlm.server.max_in_flight` at the level.
//!
//! Both rates are steady rates: (pages − 1) ÷ (last answer − first answer), the fleet's from the
//! result records' `completed_at_ms`, so neither side counts its start-up. The sides run one after
//! the other, never at the same time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use docfleet_tests::{ChildGuard, Fixture, free_port, http_get, repo_root, run_with_timeout, text};
use docfleet_worker::pipeline::vlm::openai::presets::MARKDOWN_PROMPT;
use futures::StreamExt;
use serde_json::json;

use crate::summary::{Goal, Headline};

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

fn model_dir() -> PathBuf {
    repo_root().join("tests/fixtures/vlm/serve")
}

/// The serve venv's python: `--python`, `DOCFLEET_SERVE_PYTHON`, else `scripts/setup/serve.sh`
/// (which installs it on first use).
fn serve_python(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given.or_else(|| std::env::var_os("DOCFLEET_SERVE_PYTHON").map(PathBuf::from)) {
        return Ok(p);
    }
    let out = Command::new(repo_root().join("scripts/setup/serve.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("run scripts/setup/serve.sh")?;
    anyhow::ensure!(out.status.success(), "scripts/setup/serve.sh failed");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `transformers serve` on 127.0.0.1, stopped when dropped.
struct Server {
    port: u16,
    _child: ChildGuard,
}

impl Server {
    fn start(python: &Path, threads: usize, continuous_batching: bool) -> anyhow::Result<Self> {
        let port = free_port();
        let dir = tempfile::tempdir()?.keep();
        std::fs::create_dir_all(dir.join("hub"))?;
        let log = dir.join("serve.log");
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(python.parent().context("python has a directory")?.join("transformers"));
        cmd.arg("serve")
            .arg(model_dir())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--device", "cpu", "--log-level", "warning"])
            .arg(if continuous_batching { "--continuous-batching" } else { "--no-continuous-batching" })
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("HF_HOME", &dir)
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdout(file.try_clone()?)
            .stderr(file)
            .stdin(Stdio::null());
        let child = ChildGuard(cmd.spawn().context("start transformers serve")?);
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if http_get(port, "/v1/models").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(Self { port, _child: child });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("transformers serve did not come up; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

/// A page image, distinct per seed (as tests/openai.rs draws them).
fn page_png(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(7 + seed) ^ y.wrapping_mul(13 + 3 * seed)).wrapping_add(seed * 40) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("png");
    out
}

/// Steady answers/s from completion times (ms): (n − 1) ÷ (last − first).
fn steady(mut done_ms: Vec<f64>) -> f64 {
    done_ms.sort_by(f64::total_cmp);
    let n = done_ms.len();
    (n - 1) as f64 / ((done_ms[n - 1] - done_ms[0]) / 1e3)
}

/// The plain client loop: `concurrency` requests in flight; returns the steady pages/s.
async fn client_loop(url: &str, pages: &[Vec<u8>], concurrency: usize, max_tokens: u32) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let model = model_dir().display().to_string();
    let done: Vec<anyhow::Result<f64>> = futures::stream::iter(pages)
        .map(|png| {
            let (client, model) = (&client, &model);
            async move {
                let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
                let body = json!({
                    "model": model,
                    "messages": [{"role": "user", "content": [
                        {"type": "text", "text": MARKDOWN_PROMPT},
                        {"type": "image_url", "image_url": {"url": data}},
                    ]}],
                    "temperature": 0.0,
                    "max_tokens": max_tokens,
                    "stream": false,
                });
                let r = client.post(format!("{url}/chat/completions")).json(&body).send().await?;
                anyhow::ensure!(r.status().is_success(), "server answered {}", r.status());
                let v: serde_json::Value = r.json().await?;
                anyhow::ensure!(v.pointer("/choices/0/message/content").is_some(), "no content: {v}");
                Ok(now_ms())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Ok(steady(done.into_iter().collect::<anyhow::Result<_>>()?))
}

/// One fleet run at `level` (worker.concurrency = vlm.server.max_in_flight); steady pages/s.
async fn fleet(url: &str, pages: &[Vec<u8>], level: usize, max_tokens: u32) -> anyhow::Result<f64> {
    let fx = Fixture::new(&format!("bench-openai-{level}"), 5, 300).await;
    let keys = crate::put_pages(&fx, pages).await;
    crate::send_jobs(&fx, &keys, Some("vlm")).await;
    let mut cmd = crate::worker_command(&fx);
    cmd.env("RUST_LOG", "warn")
        .env("DOCFLEET__VLM__ENGINE", "openai")
        .env("DOCFLEET__VLM__SERVER__URL", url)
        .env("DOCFLEET__VLM__SERVER__MODEL", model_dir())
        .env("DOCFLEET__VLM__SERVER__PRESET", "markdown")
        .env("DOCFLEET__VLM__SERVER__TEMPERATURE", "0")
        .env("DOCFLEET__VLM__SERVER__MAX_TOKENS", max_tokens.to_string())
        .env("DOCFLEET__VLM__SERVER__MAX_IN_FLIGHT", level.to_string())
        .env("DOCFLEET__WORKER__CONCURRENCY", level.to_string())
        .env("DOCFLEET__WORKER__DEFAULT_PIPELINE", "vlm")
        .arg("--exit-when-empty");
    let out = tokio::task::spawn_blocking(move || run_with_timeout(&mut cmd, Duration::from_secs(1800))).await?;
    anyhow::ensure!(out.status.success(), "worker failed: {}", text(&out).1);
    Ok(steady(crate::completed_at(&fx, pages.len()).await?))
}

pub async fn run(
    pages: usize,
    levels: &[usize],
    max_tokens: u32,
    threads: usize,
    continuous_batching: bool,
    python: Option<PathBuf>,
) -> anyhow::Result<Vec<Headline>> {
    anyhow::ensure!(pages >= 2, "--pages must be at least 2");
    let python = tokio::task::spawn_blocking(move || serve_python(python)).await??;
    let server = tokio::task::spawn_blocking(move || Server::start(&python, threads, continuous_batching)).await??;
    let url = server.url();
    let pngs: Vec<Vec<u8>> = (0..pages as u32).map(|i| page_png(i, 96 + 8 * (i % 4), 128 + 8 * (i % 3))).collect();
    println!(
        "openai: {pages} one-page PNG documents (96–120 × 128–144 px), {max_tokens} tokens each, transformers serve \
         (CPU, OMP_NUM_THREADS={threads}, continuous batching {}) on the tiny Qwen2-VL of tests/fixtures/vlm/serve",
        if continuous_batching { "on" } else { "off" }
    );
    // Warm-up: the server loads the model on its first request.
    client_loop(&url, &pngs[..2], 1, max_tokens).await?;
    println!("| max_in_flight | client loop pages/s | docfleet pages/s | docfleet / client |");
    println!("|---|---|---|---|");
    let mut headlines = Vec::new();
    let mut client_rates = Vec::new();
    for &level in levels {
        let client = client_loop(&url, &pngs, level, max_tokens).await?;
        let fleet = fleet(&url, &pngs, level, max_tokens).await?;
        println!("| {level} | {client:.2} | {fleet:.2} | {:.3} |", fleet / client);
        client_rates.push((level, client));
        headlines.push(Headline::ratio(
            format!("openai engine: fleet vs plain client loop, max_in_flight {level}"),
            format!("{fleet:.2} vs {client:.2} pages/s, {pages} pages, {max_tokens} tokens"),
            fleet / client,
            Goal::AtLeast(0.95),
        ));
    }
    if let (Some(first), Some(last)) = (client_rates.first(), client_rates.last()) {
        println!(
            "  server scaling (client loop): {:.2}× pages/s from {} to {} requests in flight",
            last.1 / first.1,
            first.0,
            last.0
        );
    }
    Ok(headlines)
}
