//! The `vlm` pipeline's `openai` engine against a real OpenAI-compatible server: `transformers
//! serve` (CPU) serving the tiny random Qwen2-VL of tests/fixtures/vlm/serve, started here on a
//! loopback port, with jobs through LocalStack. The answers are random text, so every check
//! compares with what the same server returns to a direct request with the same body.
//!
//! The server's Python comes from `DOCFLEET_SERVE_PYTHON`, else `scripts/setup/serve.sh` (which
//! reuses its cached venv). Where no venv is cached and `CI` is unset the tests skip with a
//! message rather than install torch; in CI they install it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use docfleet_tests::{ChildGuard, Fixture, free_port, http_get, repo_root, run_with_timeout, text};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(240);
const MAX_TOKENS: u32 = 12;

/// The serve venv's python, or `None` (with a message) where the tests are to be skipped.
fn serve_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("DOCFLEET_SERVE_PYTHON").filter(|p| !p.is_empty()) {
                return Some(PathBuf::from(p));
            }
            let cache = std::env::var_os("DOCFLEET_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/docfleet"));
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
            if !cache.join("serve-venv/bin/python").exists() && !ci {
                eprintln!(
                    "SKIPPED: no transformers serve venv at {}; run scripts/setup/serve.sh (or set DOCFLEET_SERVE_PYTHON)",
                    cache.join("serve-venv").display()
                );
                return None;
            }
            let out = Command::new(repo_root().join("scripts/setup/serve.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run scripts/setup/serve.sh");
            assert!(out.status.success(), "scripts/setup/serve.sh failed");
            Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
        })
        .clone()
}

fn model_dir() -> PathBuf {
    repo_root().join("tests/fixtures/vlm/serve")
}

/// A `transformers serve` process on 127.0.0.1.
struct Server {
    port: u16,
    child: Option<ChildGuard>,
    log: PathBuf,
}

impl Server {
    fn start(port: u16) -> Self {
        let python = serve_python().expect("checked by the caller");
        let cli = python.parent().unwrap().join("transformers");
        let log = std::env::temp_dir().join(format!("docfleet-openai-serve-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        // An empty cache: `/v1/models` scans it and answers 500 when it does not exist.
        let home = std::env::temp_dir().join(format!("docfleet-openai-hf-{port}"));
        std::fs::create_dir_all(home.join("hub")).unwrap();
        let mut cmd = Command::new(cli);
        cmd.arg("serve")
            .arg(model_dir())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--device", "cpu", "--log-level", "info"])
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("HF_HOME", &home)
            .env("OMP_NUM_THREADS", "1")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null());
        let child = ChildGuard(cmd.spawn().expect("start transformers serve"));
        let server = Self { port, child: Some(child), log };
        server.wait_up();
        server
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if http_get(self.port, "/v1/models")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "transformers serve did not come up on {}; log:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn kill(&mut self) {
        self.child = None;
    }
}

/// One server for the tests that do not stop it.
fn shared_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(free_port()))
}

/// A chat-completions request to the server, as the engine sends one page (`png`: the page).
fn direct(url: &str, prompt: &str, png: &[u8]) -> Value {
    let data = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png));
    let body = json!({
        "model": first_model(url),
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": data}},
        ]}],
        "temperature": 0.0,
        "max_tokens": MAX_TOKENS,
        "stream": false,
    });
    post_json(&format!("{url}/chat/completions"), &body)
}

fn first_model(url: &str) -> String {
    let port: u16 = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().parse().unwrap();
    let r = http_get(port, "/v1/models").unwrap();
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body).unwrap();
    v["data"][0]["id"].as_str().map(str::to_owned).unwrap_or_else(|| model_dir().display().to_string())
}

/// A blocking JSON POST over a fresh runtime (the tests' reqwest has no blocking feature).
fn post_json(url: &str, body: &Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new().post(url).json(body).send().await.unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.json().await.unwrap()
    })
}

/// A page image, distinct per seed.
fn page(seed: u32, w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(7 + seed) ^ y.wrapping_mul(13 + 3 * seed)).wrapping_add(seed * 40) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    })
}

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn tiff(pages: &[image::RgbImage]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut out).unwrap();
        for p in pages {
            enc.write_image::<tiff::encoder::colortype::RGB8>(p.width(), p.height(), p.as_raw()).unwrap();
        }
    }
    out.into_inner()
}

fn job(fx: &Fixture, id: &str, key: &str, params: Value) -> String {
    json!({
        "version": 1, "job_id": id, "pipeline": "vlm",
        "input": {"bucket": fx.input_bucket, "key": key},
        "params": params,
    })
    .to_string()
}

/// A worker command on the openai engine against `url`.
fn worker(fx: &Fixture, url: &str) -> Command {
    let mut cmd = fx.command("docfleet-worker");
    cmd.env("DOCFLEET__VLM__ENGINE", "openai")
        .env("DOCFLEET__VLM__SERVER__URL", url)
        // transformers serve lists no model in /v1/models (it loads them on demand by name).
        .env("DOCFLEET__VLM__SERVER__MODEL", model_dir())
        .env("DOCFLEET__VLM__SERVER__MAX_TOKENS", MAX_TOKENS.to_string())
        .env("DOCFLEET__VLM__SERVER__MAX_IN_FLIGHT", "4")
        .env("DOCFLEET__VLM__SERVER__PROBE_INTERVAL_MS", "300")
        .env("DOCFLEET__WORKER__CONCURRENCY", "4")
        .env("DOCFLEET__WORKER__DEFAULT_PIPELINE", "vlm")
        .env("DOCFLEET__WORKER__RETRY_BASE_DELAY_SECONDS", "1");
    cmd
}

async fn drain(cmd: Command) -> String {
    let mut cmd = cmd;
    tokio::task::spawn_blocking(move || {
        let out = run_with_timeout(cmd.arg("--exit-when-empty"), LIMIT);
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "worker failed:\n{stderr}");
        stderr
    })
    .await
    .unwrap()
}

fn result_key(fx: &Fixture, key: &str) -> String {
    format!("results/vlm/{}/{key}", fx.input_bucket)
}

async fn output_text(fx: &Fixture, key: &str) -> String {
    let obj = fx.s3.get_object().bucket(&fx.output_bucket).key(key).send().await.unwrap();
    String::from_utf8(obj.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
}

/// Each page's answer in a result equals the server's answer to a direct request for that page.
fn assert_pages_equal_direct(url: &str, output: &Value, pages: &[image::RgbImage]) {
    assert_eq!(output["page_count"], pages.len());
    for (i, img) in pages.iter().enumerate() {
        let p = &output["pages"][i];
        let want = direct(url, p["prompt"].as_str().unwrap(), &png(img));
        assert_eq!(p["answer"], want["choices"][0]["message"]["content"], "page {}", i + 1);
        assert_eq!(p["usage"], want["usage"], "page {}", i + 1);
        assert_eq!(p["finish_reason"], want["choices"][0]["finish_reason"]);
        assert!(p["timings_ms"]["request"].as_f64().unwrap() > 0.0);
    }
}

/// Single-page PNGs and a three-page TIFF through SQS and S3: every page's text is the server's
/// answer to the same request sent directly, usage and model are recorded, and the `.md` and
/// `.txt` renditions hold the pages in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_engine_pages_equal_direct_requests() {
    if serve_python().is_none() {
        return;
    }
    let server = shared_server();
    let fx = Fixture::new("openai_flow", 3, 60).await;
    let singles: Vec<image::RgbImage> = (0..5).map(|i| page(i, 60 + 10 * i, 50 + 7 * i)).collect();
    let multi: Vec<image::RgbImage> = (10..13).map(|i| page(i, 80, 100)).collect();
    let mut bodies = Vec::new();
    for (i, img) in singles.iter().enumerate() {
        let key = format!("in/p{i}.png");
        fx.put_input(&key, png(img)).await;
        bodies.push(job(&fx, &format!("p{i}"), &key, json!({})));
    }
    fx.put_input("in/multi.tiff", tiff(&multi)).await;
    bodies.push(job(&fx, "multi", "in/multi.tiff", json!({})));
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let stderr = drain(worker(&fx, &server.url())).await;
    assert!(stderr.contains("\"jobs_succeeded\":6"), "{stderr}");
    assert!(fx.output_keys("errors/").await.is_empty());
    let url = server.url();
    for (i, img) in singles.iter().enumerate() {
        let result = fx.output_json(&format!("{}.json", result_key(&fx, &format!("in/p{i}.png")))).await;
        let output = &result["output"];
        assert_eq!(output["engine"]["kind"], "openai");
        assert_eq!(output["engine"]["preset"], "markdown");
        assert!(output["engine"]["model"].as_str().is_some_and(|m| !m.is_empty()), "{output}");
        let u = url.clone();
        let (output, img) = (output.clone(), img.clone());
        tokio::task::spawn_blocking(move || assert_pages_equal_direct(&u, &output, &[img])).await.unwrap();
    }
    let key = result_key(&fx, "in/multi.tiff");
    let result = fx.output_json(&format!("{key}.json")).await;
    let output = result["output"].clone();
    let (u, pages) = (url.clone(), multi.clone());
    let o = output.clone();
    tokio::task::spawn_blocking(move || assert_pages_equal_direct(&u, &o, &pages)).await.unwrap();
    let texts: Vec<&str> = output["pages"].as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap()).collect();
    let md = output_text(&fx, &format!("{key}.md")).await;
    assert_eq!(md, format!("{}\n", texts.iter().map(|t| t.trim()).collect::<Vec<_>>().join("\n\n")));
    assert_eq!(output["markdown"].as_str().unwrap().trim_end(), md.trim_end());
    let txt = output_text(&fx, &format!("{key}.txt")).await;
    assert_eq!(txt, format!("{}\n", texts.join("\n\u{c}\n")));
    let usage = &output["usage"];
    let completion: u64 =
        output["pages"].as_array().unwrap().iter().map(|p| p["usage"]["completion_tokens"].as_u64().unwrap()).sum();
    assert_eq!(usage["completion_tokens"], completion);
}

/// A loopback HTTP proxy in front of the server that can delay chat requests or refuse the ones
/// whose body holds a marker (the only stand-in: the 400 and the slowness are its doing).
struct Proxy {
    port: u16,
    chat_requests: Arc<AtomicU32>,
    marked_requests: Arc<AtomicU32>,
}

impl Proxy {
    /// `delay_first`: chat requests held `delay` before forwarding; `reject`: bodies containing it
    /// get a 400.
    fn start(upstream: u16, delay_first: u32, delay: Duration, reject: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let chat_requests = Arc::new(AtomicU32::new(0));
        let marked_requests = Arc::new(AtomicU32::new(0));
        let (chats, marked) = (chat_requests.clone(), marked_requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (chats, marked) = (chats.clone(), marked.clone());
                std::thread::spawn(move || {
                    while let Some((head, body)) = read_request(&mut conn) {
                        let is_chat = head.starts_with("POST") && head.contains("/chat/completions");
                        let n = if is_chat { chats.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
                        if let Some(mark) = reject
                            && is_chat
                            && String::from_utf8_lossy(&body).contains(mark)
                        {
                            marked.fetch_add(1, Ordering::SeqCst);
                            let msg =
                                br#"{"error":{"message":"image could not be decoded","type":"invalid_request_error"}}"#;
                            let _ = write!(
                                conn,
                                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                msg.len()
                            );
                            let _ = conn.write_all(msg);
                            continue;
                        }
                        if is_chat && n <= delay_first {
                            std::thread::sleep(delay);
                        }
                        let Some(answer) = forward(upstream, &head, &body) else { return };
                        if conn.write_all(&answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, chat_requests, marked_requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

/// One HTTP/1.1 request (head, body by content-length).
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Send the request upstream on a fresh connection; the whole answer (HTTP/1.0-style close).
fn forward(upstream: u16, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next()?;
    let mut out = format!("{request_line}\r\n");
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("host:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str(&format!("host: 127.0.0.1:{upstream}\r\nconnection: close\r\n\r\n"));
    up.write_all(out.as_bytes()).ok()?;
    up.write_all(body).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    // Re-frame with a content-length so the client can keep its connection.
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (h, b) = answer.split_at(split);
    let h = String::from_utf8_lossy(h);
    let mut framed = String::new();
    for l in h.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("content-length:")
            || lower.starts_with("connection:")
            || lower.starts_with("transfer-encoding:")
        {
            continue;
        }
        framed.push_str(l);
        framed.push_str("\r\n");
    }
    let body = if h.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(b) } else { b.to_vec() };
    framed.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut v = framed.into_bytes();
    v.extend_from_slice(&body);
    Some(v)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
    }
}

/// A server slower than `vlm.server.timeout_seconds` for the first requests: they time out and
/// are retried, and every document still gets the server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_requests_time_out_and_are_retried() {
    if serve_python().is_none() {
        return;
    }
    let server = shared_server();
    let proxy = Proxy::start(server.port, 2, Duration::from_millis(2500), None);
    let fx = Fixture::new("openai_slow", 3, 60).await;
    let pages: Vec<image::RgbImage> = (20..22).map(|i| page(i, 64, 64)).collect();
    let mut bodies = Vec::new();
    for (i, img) in pages.iter().enumerate() {
        let key = format!("in/s{i}.png");
        fx.put_input(&key, png(img)).await;
        bodies.push(job(&fx, &format!("s{i}"), &key, json!({})));
    }
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut cmd = worker(&fx, &proxy.url());
    cmd.env("DOCFLEET__VLM__SERVER__TIMEOUT_SECONDS", "1").env("DOCFLEET__VLM__SERVER__RETRY_BASE_DELAY_MS", "100");
    let stderr = drain(cmd).await;
    assert!(stderr.contains("\"jobs_succeeded\":2"), "{stderr}");
    assert!(stderr.contains("retrying"), "{stderr}");
    assert!(fx.output_keys("errors/").await.is_empty());
    let mut attempts = 0;
    let url = server.url();
    for (i, img) in pages.iter().enumerate() {
        let result = fx.output_json(&format!("{}.json", result_key(&fx, &format!("in/s{i}.png")))).await;
        let output = result["output"].clone();
        attempts += output["pages"][0]["attempts"].as_u64().unwrap();
        let (u, img) = (url.clone(), img.clone());
        tokio::task::spawn_blocking(move || assert_pages_equal_direct(&u, &output, &[img])).await.unwrap();
    }
    assert!(attempts >= 4, "two timed-out requests retried: {attempts} attempts for 2 pages");
    assert!(proxy.chat_requests.load(Ordering::SeqCst) >= 4);
}

/// The `custom` preset's template sees each page's PDF text layer: a three-page born-digital PDF
/// gets prompts that hold every line drawn on that page (tests/fixtures/ocr/ground_truth.json), in
/// order, and the pages' answers; a PNG page renders the template with an empty text layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_template_sees_each_pages_pdf_text_layer() {
    if serve_python().is_none() {
        return;
    }
    let server = shared_server();
    let fx = Fixture::new("openai_text_layer", 3, 60).await;
    let pdf = std::fs::read(repo_root().join("tests/fixtures/ocr/doc_three_pages.pdf")).unwrap();
    fx.put_input("in/born-digital.pdf", pdf).await;
    fx.put_input("in/scan.png", png(&page(50, 64, 48))).await;
    let bodies =
        [job(&fx, "pdf", "in/born-digital.pdf", json!({})), job(&fx, "png", "in/scan.png", json!({}))];
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let template = "{% if text_layer %}TEXT LAYER START\n{{ text_layer }}\nTEXT LAYER END\n{% endif %}Page {{ page }} of {{ page_count }}.";
    let mut cmd = worker(&fx, &server.url());
    cmd.env("DOCFLEET__VLM__SERVER__PRESET", "custom")
        .env("DOCFLEET__VLM__SERVER__PROMPT_TEMPLATE", template)
        // Small images: the prompts are what is checked here.
        .env("DOCFLEET__VLM__SERVER__IMAGE_LONGEST_SIDE", "96");
    let stderr = drain(cmd).await;
    assert!(stderr.contains("\"jobs_succeeded\":2"), "{stderr}");
    let gt: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("tests/fixtures/ocr/ground_truth.json")).unwrap(),
    )
    .unwrap();
    let entry = gt["files"].as_array().unwrap().iter().find(|e| e["file"] == "doc_three_pages.pdf").unwrap();
    let output = fx.output_json(&format!("{}.json", result_key(&fx, "in/born-digital.pdf"))).await["output"].clone();
    assert_eq!(output["page_count"], 3);
    assert_eq!(output["engine"]["preset"], "custom");
    let squash = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    for (i, want) in entry["pages"].as_array().unwrap().iter().enumerate() {
        let prompt = output["pages"][i]["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("TEXT LAYER START\n"), "page {}: {prompt}", i + 1);
        assert!(prompt.ends_with(&format!("TEXT LAYER END\nPage {} of 3.", i + 1)), "page {}: {prompt}", i + 1);
        let (text, mut from) = (squash(prompt), 0);
        for line in want["lines"].as_array().unwrap() {
            let line = squash(line.as_str().unwrap());
            let at = text[from..].find(&line).unwrap_or_else(|| panic!("page {}: {line:?} not in {text:?}", i + 1));
            from += at + line.len();
        }
        assert!(output["pages"][i]["answer"].is_string());
    }
    let png_output = fx.output_json(&format!("{}.json", result_key(&fx, "in/scan.png"))).await["output"].clone();
    assert_eq!(png_output["pages"][0]["prompt"], "Page 1 of 1.");
}

/// The server answers 400 for one document's page: that document gets an error record and goes
/// to the DLQ, unretried; the others get results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_page_fails_only_its_document() {
    if serve_python().is_none() {
        return;
    }
    let server = shared_server();
    let proxy = Proxy::start(server.port, 0, Duration::ZERO, Some("REJECT-THIS-PAGE"));
    let fx = Fixture::new("openai_reject", 3, 60).await;
    let mut bodies = Vec::new();
    for i in 0..3u32 {
        let key = format!("in/r{i}.png");
        fx.put_input(&key, png(&page(30 + i, 48, 40))).await;
        let params = if i == 1 { json!({"prompt": "REJECT-THIS-PAGE"}) } else { json!({}) };
        bodies.push(job(&fx, &format!("r{i}"), &key, params));
    }
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let stderr = drain(worker(&fx, &proxy.url())).await;
    assert!(stderr.contains("\"jobs_succeeded\":2") && stderr.contains("\"jobs_failed\":1"), "{stderr}");
    let errors = fx.output_keys("errors/").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].ends_with("in/r1.png.json"), "{errors:?}");
    let record = fx.output_json(&errors[0]).await;
    assert_eq!(record["error"]["kind"], "invalid_input");
    let message = record["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 400") && message.contains("could not be decoded"), "{message}");
    assert_eq!(proxy.marked_requests.load(Ordering::SeqCst), 1, "a rejected page is not retried");
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 1);
    for i in [0, 2] {
        let result = fx.output_json(&format!("{}.json", result_key(&fx, &format!("in/r{i}.png")))).await;
        assert_eq!(result["output"]["page_count"], 1);
    }
}

/// The worker takes no jobs before its server answers (`/ready` 503); when the server is killed
/// mid-run it stops receiving and releases what it holds, and once the server is back every
/// document is finished: nothing lost, no error records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_run_releases_documents_and_they_finish() {
    if serve_python().is_none() {
        return;
    }
    let port = free_port();
    let http_port = free_port();
    let fx = Fixture::new("openai_kill", 10, 30).await;
    let n = 16;
    let mut bodies = Vec::new();
    for i in 0..n {
        let key = format!("in/k{i}.png");
        fx.put_input(&key, png(&page(40 + i, 56, 56))).await;
        bodies.push(job(&fx, &format!("k{i}"), &key, json!({"max_new_tokens": 200})));
    }
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut cmd = worker(&fx, &format!("http://127.0.0.1:{port}/v1"));
    cmd.env("DOCFLEET__WORKER__HTTP_PORT", http_port.to_string())
        .env("DOCFLEET__VLM__SERVER__MAX_IN_FLIGHT", "2")
        .env("DOCFLEET__WORKER__CONCURRENCY", "2")
        .env("DOCFLEET__VLM__SERVER__RETRY_BASE_DELAY_MS", "200")
        .arg("--exit-when-empty")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = stderr_pipe;
        r.read_to_string(&mut s).ok();
        s
    });
    let child = ChildGuard(child);
    // No server yet: not ready, nothing received.
    let ready = move |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http_get(http_port, "/ready").is_some_and(|r| r.contains(want)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    assert!(tokio::task::spawn_blocking(move || ready(" 503 ")).await.unwrap(), "/ready must be 503 without a server");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fx.depth(&fx.queue_url).await, (n as u64, 0, 0), "nothing received before the server is up");
    let mut server = tokio::task::spawn_blocking(move || Server::start(port)).await.unwrap();
    // Kill it once some documents are done and others in flight.
    let deadline = Instant::now() + LIMIT;
    while fx.output_keys("results/").await.iter().filter(|k| k.ends_with(".json")).count() < 2 {
        assert!(Instant::now() < deadline, "no results");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
    let done_at_kill = fx.output_keys("results/").await.iter().filter(|k| k.ends_with(".json")).count();
    assert!(done_at_kill < n as usize, "the server was killed before the run ended");
    let ready_port = http_port;
    assert!(
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if http_get(ready_port, "/ready").is_some_and(|r| r.contains(" 503 ")) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .await
        .unwrap(),
        "/ready must turn 503 when the server goes away"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _server = tokio::task::spawn_blocking(move || Server::start(port)).await.unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "worker did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let stderr = stderr_reader.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("\"jobs_succeeded\":{n}")), "{stderr}");
    assert!(stderr.contains("\"jobs_failed\":0"), "{stderr}");
    assert!(stderr.contains("not receiving"), "{stderr}");
    assert!(fx.output_keys("errors/").await.is_empty(), "no error records");
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 0);
    let results = fx.output_keys("results/").await;
    for i in 0..n {
        let key = format!("{}.json", result_key(&fx, &format!("in/k{i}.png")));
        assert!(results.contains(&key), "missing {key}");
    }
}
