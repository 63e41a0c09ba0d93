//! Byte transfer shared by every source: an HTTP client with bounded retries and backoff that
//! never sends the token to another host, and [`write_resumable`], which appends to a
//! `.incomplete` file from where a killed run stopped, hashes while writing, and checks size and
//! hash before the caller renames the file into place.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use docfleet_core::config::Secret;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::progress::FileProgress;
use crate::{Error, Result};

/// How a request treats redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Follow only relative ones (the hub's canonical-name redirects) and hand back an absolute one,
    /// whose `X-Linked-*` headers describe the LFS file (what `huggingface_hub`'s HEAD does).
    Relative,
    /// Follow every redirect (downloads from a CDN).
    All,
}

/// An HTTP client for the hub, CDNs and package indexes.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    token: Option<Secret>,
    /// Where the token may go: the hub endpoint's origin only.
    auth_origin: Option<(String, String, Option<u16>)>,
    /// Attempts after the first for transient failures.
    pub retries: u32,
}

const MAX_REDIRECTS: usize = 10;

impl Http {
    /// `endpoint` is the only origin that receives `token` (as `Authorization: Bearer`).
    pub fn new(token: Option<Secret>, endpoint: Option<&str>, retries: u32, connections: usize) -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("docfleet-downloader/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(connections.max(1))
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        let auth_origin = match endpoint {
            Some(ep) => {
                let u = Url::parse(ep).map_err(|e| Error::Config(format!("endpoint `{ep}`: {e}")))?;
                Some(origin(&u))
            }
            None => None,
        };
        Ok(Self { client, token, auth_origin, retries })
    }

    /// Whether a token is configured (for error messages; the token itself is never shown).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn auth_header(&self, url: &Url) -> Option<HeaderValue> {
        let token = self.token.as_ref()?;
        if self.auth_origin.as_ref() != Some(&origin(url)) {
            return None;
        }
        let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// One request, retried with backoff on connection errors, timeouts, 408/429/5xx (honouring
    /// `Retry-After`), following redirects per `redirects`. Returns the final response whatever
    /// its status; the caller maps 4xx.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        redirects: Redirects,
    ) -> Result<Response> {
        let parsed = Url::parse(url).map_err(|e| Error::Config(format!("bad URL `{}`: {e}", redact(url))))?;
        let mut attempt = 0u32;
        loop {
            let outcome = self.send_following(method.clone(), parsed.clone(), headers, redirects).await;
            let failure = match outcome {
                Ok(resp) if !is_transient_status(resp.status()) => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let wait = retry_after(resp.headers());
                    (format!("HTTP {status}"), wait)
                }
                Err(e) => (error_chain(&e), None),
            };
            if attempt >= self.retries {
                return Err(Error::Network(format!(
                    "{method} {}: {} (gave up after {} attempts)",
                    redact(url),
                    failure.0,
                    attempt + 1
                )));
            }
            let delay = failure.1.unwrap_or_else(|| backoff(attempt));
            tracing::warn!(url = %redact(url), error = %failure.0, attempt = attempt + 1, retry_in_ms = delay.as_millis() as u64, "request failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send_following(
        &self,
        method: Method,
        mut url: Url,
        headers: &HeaderMap,
        redirects: Redirects,
    ) -> reqwest::Result<Response> {
        let mut method = method;
        for _ in 0..MAX_REDIRECTS {
            let mut req = self.client.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(auth) = self.auth_header(&url) {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            let resp = req.send().await?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let Some(location) = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()) else {
                return Ok(resp);
            };
            let absolute = location.contains("://") || location.starts_with("//");
            if redirects == Redirects::Relative && absolute {
                return Ok(resp);
            }
            let Ok(next) = url.join(location) else { return Ok(resp) };
            if resp.status() == StatusCode::SEE_OTHER {
                method = Method::GET;
            }
            url = next;
        }
        // Too many redirects: hand back the last one; callers report it.
        let req = self.client.request(method, url).headers(headers.clone());
        req.send().await
    }

    /// A GET from `offset` (a `Range` request when `offset > 0`), following redirects. Maps 4xx with
    /// `what_failed` (the caller's wording for 401/403/404).
    pub async fn open_range(
        &self,
        url: &str,
        offset: u64,
        what_failed: &(dyn Fn(StatusCode, &HeaderMap) -> Error + Sync),
    ) -> Result<Opened> {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if offset > 0 {
            headers.insert(reqwest::header::RANGE, HeaderValue::from_str(&format!("bytes={offset}-")).unwrap());
        }
        let resp = self.request(Method::GET, url, &headers, Redirects::All).await?;
        let status = resp.status();
        let start = match status {
            StatusCode::PARTIAL_CONTENT => content_range_start(resp.headers()).unwrap_or(u64::MAX),
            StatusCode::OK => 0,
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                // Either the partial file already holds everything, or the server changed: start over.
                if content_range_total(resp.headers()) == Some(offset) {
                    return Ok(Opened { start: offset, body: futures::stream::empty().boxed(), total: Some(offset) });
                }
                return Box::pin(self.open_range(url, 0, what_failed)).await;
            }
            s => return Err(what_failed(s, resp.headers())),
        };
        if start == u64::MAX {
            return Err(Error::Source(format!("{}: 206 without a usable Content-Range", redact(url))));
        }
        let total = content_range_total(resp.headers()).or_else(|| resp.content_length().map(|n| n + start));
        let body = resp.bytes_stream().map_err(|e| error_chain(&e)).boxed();
        Ok(Opened { start, body, total })
    }
}

fn origin(u: &Url) -> (String, String, Option<u16>) {
    (u.scheme().to_owned(), u.host_str().unwrap_or_default().to_ascii_lowercase(), u.port_or_known_default())
}

fn is_transient_status(s: StatusCode) -> bool {
    matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// 250 ms doubling to 10 s, with ±25 % jitter so retried pods spread out.
pub fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = (nanos % 500) as u64; // 0..500 ‰ of half the base
    Duration::from_millis((base * 3 / 4 + base * jitter / 1000).min(10_000))
}

/// An error with its sources (reqwest hides the cause: "error sending request").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A URL for messages: no query (signed CDN URLs carry credentials there), no user info.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.split('?').next().unwrap_or(url).to_owned(),
    }
}

fn content_range_start(h: &HeaderMap) -> Option<u64> {
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

fn content_range_total(h: &HeaderMap) -> Option<u64> {
    let v = h.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    v.rsplit('/').next()?.trim().parse().ok()
}

/// A body opened at some offset.
pub struct Opened {
    /// Where the body starts: the requested offset, or 0 when the source ignored the range.
    pub start: u64,
    pub body: BoxStream<'static, std::result::Result<Bytes, String>>,
    /// The whole file's size, when the response says (for progress when the source listed none).
    pub total: Option<u64>,
}

/// What a finished file must match.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub size: Option<u64>,
    /// Lowercase hex.
    pub sha256: Option<String>,
    /// Git blob id, lowercase hex (needs `size`).
    pub git_sha1: Option<String>,
    /// Compute the git blob id even with nothing to compare it to (for a synthesized listing).
    pub git_id: bool,
}

/// A finished, verified file.
#[derive(Debug, Clone)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
    /// Git blob id (computed when the size was known in advance).
    pub git_sha1: Option<String>,
    /// Bytes received in this run (less than `size` after a resume).
    pub fetched: u64,
    /// Bytes that were already on disk from an earlier run.
    pub resumed_from: u64,
}

struct Hashers {
    sha256: Sha256,
    git: Option<Sha1>,
}

impl Hashers {
    /// The git blob id needs the size up front; it costs a second hash, so only when asked.
    fn new(size: Option<u64>, git: bool) -> Self {
        let git = size.filter(|_| git).map(|n| {
            let mut h = Sha1::new();
            h.update(format!("blob {n}\0").as_bytes());
            h
        });
        Self { sha256: Sha256::new(), git }
    }
    fn update(&mut self, b: &[u8]) {
        self.sha256.update(b);
        if let Some(g) = &mut self.git {
            g.update(b);
        }
    }
}

const WRITE_BUFFER: usize = 1 << 20;

/// Bring `dest` (a `.incomplete` file) to the full content: keep what an earlier run wrote, ask
/// `open` for the rest from that offset, retry a body cut short (resuming each time) up to
/// `retries` times, then check size and hashes. A file that fails the check is deleted (a resumed
/// one is retried once from scratch) and reported as [`Error::Integrity`]; the caller renames a
/// verified file into place.
pub async fn write_resumable<'a, F>(
    dest: &Path,
    expect: &Expect,
    label: &str,
    retries: u32,
    progress: &FileProgress,
    mut open: F,
) -> Result<Written>
where
    F: FnMut(u64) -> BoxFuture<'a, Result<Opened>>,
{
    let first = transfer_once(dest, expect, label, retries, progress, &mut open).await;
    match first {
        Err(Error::Integrity(msg)) if msg.contains("(resumed)") => {
            tracing::warn!(file = label, "resumed download failed verification; downloading it again from the start");
            transfer_once(dest, expect, label, retries, progress, &mut open).await
        }
        other => other,
    }
}

async fn transfer_once<'a, F>(
    dest: &Path,
    expect: &Expect,
    label: &str,
    retries: u32,
    progress: &FileProgress,
    open: &mut F,
) -> Result<Written>
where
    F: FnMut(u64) -> BoxFuture<'a, Result<Opened>>,
{
    let io = |what: &str, e| Error::io(format!("{what} {}", dest.display()), e);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dest)
        .map_err(|e| io("opening", e))?;
    let mut offset = file.metadata().map_err(|e| io("reading", e))?.len();
    if expect.size.is_some_and(|size| offset > size) {
        file.set_len(0).map_err(|e| io("truncating", e))?;
        offset = 0;
    }
    let mut hashers = Hashers::new(expect.size, expect.git_sha1.is_some() || expect.git_id);
    if offset > 0 {
        // Hash what an earlier run wrote, so the final check covers the whole file.
        file.seek(SeekFrom::Start(0)).map_err(|e| io("reading", e))?;
        let mut buf = vec![0u8; WRITE_BUFFER];
        let mut left = offset;
        while left > 0 {
            let n = file.read(&mut buf[..(left.min(WRITE_BUFFER as u64)) as usize]).map_err(|e| io("reading", e))?;
            if n == 0 {
                break;
            }
            hashers.update(&buf[..n]);
            left -= n as u64;
        }
        tracing::info!(file = label, resumed_at = offset, total = expect.size, "resuming a partial download");
        progress.inc(offset);
    }
    let resumed_from = offset;
    let mut fetched = 0u64;
    let mut attempt = 0u32;
    let mut total_known = false;
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
    loop {
        if expect.size == Some(offset) {
            break;
        }
        let opened = open(offset).await?;
        if expect.size.is_none()
            && !total_known
            && let Some(total) = opened.total
        {
            progress.grow(total);
            total_known = true;
        }
        if opened.start != offset {
            // The source ignored the range: start over.
            file.set_len(0).map_err(|e| io("truncating", e))?;
            progress.rewind(offset);
            offset = 0;
            hashers = Hashers::new(expect.size, expect.git_sha1.is_some() || expect.git_id);
        }
        file.seek(SeekFrom::Start(offset)).map_err(|e| io("seeking", e))?;
        let mut body = opened.body;
        let mut cut: Option<String> = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    hashers.update(&bytes);
                    offset += bytes.len() as u64;
                    fetched += bytes.len() as u64;
                    progress.inc(bytes.len() as u64);
                    buf.extend_from_slice(&bytes);
                    if buf.len() >= WRITE_BUFFER {
                        file.write_all(&buf).map_err(|e| io("writing", e))?;
                        buf.clear();
                    }
                    if expect.size.is_some_and(|size| offset > size) {
                        break;
                    }
                }
                Err(e) => {
                    cut = Some(e);
                    break;
                }
            }
        }
        file.write_all(&buf).map_err(|e| io("writing", e))?;
        buf.clear();
        if cut.is_none() && expect.size.is_some_and(|size| offset < size) {
            cut = Some(format!("the body ended at byte {offset} of {}", expect.size.unwrap_or(0)));
        }
        let Some(why) = cut else { break };
        if attempt >= retries {
            return Err(Error::Network(format!(
                "{label}: connection lost at byte {offset}{}: {why} (gave up after {} attempts; the partial file is kept \
                 and the next run resumes it)",
                expect.size.map(|s| format!(" of {s}")).unwrap_or_default(),
                attempt + 1
            )));
        }
        let delay = backoff(attempt);
        tracing::warn!(file = label, at = offset, error = %why, retry_in_ms = delay.as_millis() as u64, "download interrupted; resuming");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
    file.flush().map_err(|e| io("writing", e))?;
    drop(file);

    let sha256 = hex::encode(hashers.sha256.finalize());
    let git_sha1 = hashers.git.map(|g| hex::encode(g.finalize()));
    let resumed = if resumed_from > 0 { " (resumed)" } else { "" };
    let mismatch = if expect.size.is_some_and(|s| s != offset) {
        Some(format!("size {offset} bytes, expected {}", expect.size.unwrap_or(0)))
    } else if expect.sha256.as_deref().is_some_and(|want| !want.eq_ignore_ascii_case(&sha256)) {
        Some(format!("sha256 {sha256}, expected {}", expect.sha256.as_deref().unwrap_or_default()))
    } else if let (Some(want), Some(got)) = (&expect.git_sha1, &git_sha1) {
        (!want.eq_ignore_ascii_case(got)).then(|| format!("git blob id {got}, expected {want}"))
    } else {
        None
    };
    if let Some(m) = mismatch {
        let _ = std::fs::remove_file(dest);
        progress.rewind(offset);
        return Err(Error::Integrity(format!(
            "{label}: downloaded content does not match what the source reports: {m}{resumed}; the download was \
             discarded and nothing was published"
        )));
    }
    Ok(Written { size: offset, sha256, git_sha1, fetched, resumed_from })
}

/// Stream a local reader into `dest` (no resume), hashing as it goes.
pub fn copy_hashing(mut src: impl Read, dest: &Path, size_hint: Option<u64>) -> Result<Written> {
    let io = |what: &str, e| Error::io(format!("{what} {}", dest.display()), e);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let mut out = std::fs::File::create(dest).map_err(|e| io("creating", e))?;
    let mut hashers = Hashers::new(size_hint, true);
    let mut buf = vec![0u8; WRITE_BUFFER];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| io("reading the source of", e))?;
        if n == 0 {
            break;
        }
        hashers.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io("writing", e))?;
        total += n as u64;
    }
    if size_hint.is_some_and(|s| s != total) {
        return Err(Error::Integrity(format!(
            "{}: read {total} bytes, expected {}",
            dest.display(),
            size_hint.unwrap_or(0)
        )));
    }
    Ok(Written {
        size: total,
        sha256: hex::encode(hashers.sha256.finalize()),
        git_sha1: hashers.git.map(|g| hex::encode(g.finalize())),
        fetched: total,
        resumed_from: 0,
    })
}

/// Percent-encode each segment of a repo path for a URL.
pub fn encode_path(path: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    path.split('/').map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(start: u64, chunks: Vec<std::result::Result<&'static [u8], &'static str>>) -> Opened {
        Opened {
            start,
            body: futures::stream::iter(chunks.into_iter().map(|c| c.map(Bytes::from_static).map_err(str::to_owned)))
                .boxed(),
            total: None,
        }
    }

    fn expect(content: &[u8]) -> Expect {
        Expect {
            size: Some(content.len() as u64),
            sha256: Some(hex::encode(Sha256::digest(content))),
            git_sha1: Some(docfleet_core::models::git_blob_id(content)),
            git_id: false,
        }
    }

    #[tokio::test]
    async fn resumes_from_the_partial_file_and_after_a_cut_body() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob.incomplete");
        std::fs::write(&dest, b"hello ").unwrap();
        let content = b"hello resumable world";
        let mut offsets = Vec::new();
        let written = write_resumable(&dest, &expect(content), "f", 3, &FileProgress::hidden(), |off| {
            offsets.push(off);
            let rest: &'static [u8] = &b"hello resumable world"[off as usize..];
            Box::pin(async move {
                // The first body is cut after 4 bytes; the retry resumes where it stopped.
                if off == 6 {
                    Ok(opened(6, vec![Ok(&rest[..4]), Err("reset by peer")]))
                } else {
                    Ok(opened(off, vec![Ok(rest)]))
                }
            })
        })
        .await
        .unwrap();
        assert_eq!(offsets, [6, 10]);
        assert_eq!((written.resumed_from, written.fetched, written.size), (6, 15, 21));
        assert_eq!(std::fs::read(&dest).unwrap(), content);
    }

    #[tokio::test]
    async fn a_server_ignoring_range_restarts_and_a_bad_hash_discards() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob.incomplete");
        std::fs::write(&dest, b"hel").unwrap();
        let w = write_resumable(&dest, &expect(b"hello"), "f", 0, &FileProgress::hidden(), |_| {
            Box::pin(async { Ok(opened(0, vec![Ok(b"hello")])) })
        })
        .await
        .unwrap();
        assert_eq!((w.resumed_from, w.size), (3, 5));
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");

        std::fs::remove_file(&dest).unwrap();
        let err = write_resumable(&dest, &expect(b"hello"), "model.bin", 0, &FileProgress::hidden(), |_| {
            Box::pin(async { Ok(opened(0, vec![Ok(b"jello")])) })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Integrity(_)), "{err}");
        assert!(err.to_string().contains("model.bin") && err.to_string().contains("sha256"), "{err}");
        assert!(!dest.exists(), "a corrupt download is not kept");
    }

    #[tokio::test]
    async fn gives_up_after_the_bounded_retries() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob.incomplete");
        let mut calls = 0;
        let err = write_resumable(&dest, &expect(b"abcdef"), "f", 2, &FileProgress::hidden(), |off| {
            calls += 1;
            Box::pin(async move { Ok(opened(off, vec![Ok(b"a"), Err("timeout")])) })
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 3);
        assert!(matches!(err, Error::Network(_)) && err.to_string().contains("after 3 attempts"), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"aaa", "the partial file is kept for the next run");
    }

    #[test]
    fn headers_urls_and_backoff() {
        let mut h = HeaderMap::new();
        h.insert("content-range", HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!((content_range_start(&h), content_range_total(&h)), (Some(100), Some(200)));
        assert_eq!(redact("https://u:p@cdn.example/x/y?X-Amz-Signature=s"), "https://cdn.example/x/y");
        assert_eq!(encode_path("sub dir/a#b.bin"), "sub%20dir/a%23b.bin");
        assert!(backoff(0) >= Duration::from_millis(187) && backoff(0) <= Duration::from_millis(313));
        assert!(backoff(20) <= Duration::from_secs(10));
    }

    #[test]
    fn the_token_goes_to_the_endpoint_only() {
        let http = Http::new(Some(Secret::new("hf_secret")), Some("http://127.0.0.1:8080"), 0, 1).unwrap();
        let hub = Url::parse("http://127.0.0.1:8080/org/m/resolve/main/a").unwrap();
        let cdn = Url::parse("http://127.0.0.1:9090/blob").unwrap();
        let auth = http.auth_header(&hub).unwrap();
        assert!(auth.is_sensitive() && auth.to_str().unwrap() == "Bearer hf_secret");
        assert!(http.auth_header(&cdn).is_none());
        assert!(!format!("{http:?}").contains("hf_secret"));
    }
}
