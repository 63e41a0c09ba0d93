//! A fake Hugging Face hub (and PyPI simple index) on 127.0.0.1, for the downloader's tests and
//! benchmark. It serves model repos from directories with the endpoints, headers and redirects that
//! hf-hub and `huggingface_hub` use:
//!
//! - `GET /api/models/{repo}[/revision/{rev}]`: repo info with `sha` and `siblings`;
//! - `GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=…`: the file listing (`oid`, `size`,
//!   `lfs {oid, size, pointerSize}`), paginated with a `Link: <…>; rel="next"` header;
//! - `HEAD|GET /{repo}/resolve/{rev}/{path}`: regular files answer 200 with `ETag` (git blob id),
//!   `X-Repo-Commit`, `Content-Length`; LFS files (at least `lfs_threshold` bytes) answer 302 to a
//!   CDN on a second port with `X-Linked-Etag` (sha256), `X-Linked-Size`, `X-Repo-Commit`;
//! - `HEAD|GET /cdn/{sha256}`: LFS content; every body supports `Range: bytes=N-[M]` (206);
//! - errors as the hub sends them (`X-Error-Code`: `RepoNotFound`, `RevisionNotFound`,
//!   `EntryNotFound`, `GatedRepo`); a gated repo needs `Authorization: Bearer <token>` (401 without,
//!   403 with a wrong one);
//! - `GET /simple/{project}/` (PEP 691 JSON or PEP 503 HTML by `Accept`) and `/packages/{file}`.
//!
//! Faults for tests: throttled bodies, corrupted bytes for a path, 503s for the first N file
//! requests. Every request is recorded. The server stops when dropped (or after an hour).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use sha2::{Digest, Sha256};

/// One file of a served repo.
#[derive(Debug, Clone)]
pub struct ServedFile {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Git blob id of the content (of the LFS pointer for LFS files: `oid` in the listing).
    pub oid: String,
    pub lfs: bool,
}

/// A served repo.
#[derive(Debug, Clone)]
pub struct ServedRepo {
    pub id: String,
    pub commit: String,
    pub files: BTreeMap<String, ServedFile>,
    /// Branches and tags → commit.
    pub refs: BTreeMap<String, String>,
    pub token: Option<String>,
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: bool,
    pub status: u16,
    /// Port the request came in on (hub or CDN).
    pub port: u16,
}

#[derive(Debug, Default)]
struct Faults {
    corrupt: Mutex<HashSet<String>>,
    bytes_per_sec: AtomicU64,
    fail_first: AtomicU32,
}

struct Inner {
    repos: BTreeMap<String, ServedRepo>,
    by_sha: BTreeMap<String, ServedFile>,
    packages: BTreeMap<String, Vec<(String, PathBuf, String, u64)>>,
    page_size: usize,
    cdn_base: String,
    faults: Faults,
    log: Mutex<Vec<Logged>>,
    bytes_served: AtomicU64,
    serve_html_index: AtomicBool,
}

/// Configures a [`FakeHub`].
pub struct FakeHubBuilder {
    repos: Vec<(String, PathBuf, Option<String>, Vec<String>)>,
    packages: Vec<(String, PathBuf)>,
    lfs_threshold: u64,
    page_size: usize,
}

/// A running fake hub; stops when dropped.
pub struct FakeHub {
    /// `http://127.0.0.1:<port>` (use as `HF_ENDPOINT`).
    pub url: String,
    /// Base of the package index: `<url>/simple`.
    pub index_url: String,
    inner: Arc<Inner>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHub {
    pub fn builder() -> FakeHubBuilder {
        FakeHubBuilder { repos: Vec::new(), packages: Vec::new(), lfs_threshold: 1 << 20, page_size: 1000 }
    }

    pub fn repo(&self, id: &str) -> &ServedRepo {
        &self.inner.repos[id]
    }

    /// Serve `path` of every repo with one byte changed (same size).
    pub fn corrupt(&self, path: &str) {
        self.inner.faults.corrupt.lock().unwrap().insert(path.to_owned());
    }

    /// Serve every file correctly again.
    pub fn corrupt_clear(&self) {
        self.inner.faults.corrupt.lock().unwrap().clear();
    }

    /// Limit every file body to about `bytes_per_sec` (0: unlimited).
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.inner.faults.bytes_per_sec.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Answer 503 to the next `n` file requests (resolve, CDN and package downloads).
    pub fn fail_next(&self, n: u32) {
        self.inner.faults.fail_first.store(n, Ordering::SeqCst);
    }

    /// Serve PEP 503 HTML from `/simple/` even when JSON is accepted.
    pub fn html_index(&self, on: bool) {
        self.inner.serve_html_index.store(on, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Forget the recorded requests and the byte count.
    pub fn reset_log(&self) {
        self.inner.log.lock().unwrap().clear();
        self.inner.bytes_served.store(0, Ordering::SeqCst);
    }

    /// Body bytes of files (resolve, CDN, packages) sent so far.
    pub fn bytes_served(&self) -> u64 {
        self.inner.bytes_served.load(Ordering::SeqCst)
    }

    /// GETs that sent file content (resolve 200/206, CDN, packages).
    pub fn file_downloads(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && (r.status == 200 || r.status == 206)
                    && (r.path.contains("/resolve/") || r.path.starts_with("/cdn/") || r.path.starts_with("/packages/"))
            })
            .count()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Git blob id: sha1 of `blob <len>\0<bytes>`.
pub fn git_blob_id(bytes: &[u8]) -> String {
    use sha1::Sha1;
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())
}

fn hash_file(path: &Path) -> (u64, String, String) {
    use sha1::Sha1;
    let mut f = std::fs::File::open(path).expect("open served file");
    let len = f.metadata().unwrap().len();
    let mut s256 = Sha256::new();
    let mut s1 = Sha1::new();
    s1.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        s256.update(&buf[..n]);
        s1.update(&buf[..n]);
    }
    (len, hex::encode(s256.finalize()), hex::encode(s1.finalize()))
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

impl FakeHubBuilder {
    /// Serve the files under `dir` as repo `id` (branch `main`).
    pub fn repo(mut self, id: &str, dir: &Path) -> Self {
        self.repos.push((id.to_owned(), dir.to_owned(), None, Vec::new()));
        self
    }

    /// A gated repo: requests need `Authorization: Bearer <token>`.
    pub fn gated_repo(mut self, id: &str, dir: &Path, token: &str) -> Self {
        self.repos.push((id.to_owned(), dir.to_owned(), Some(token.to_owned()), Vec::new()));
        self
    }

    /// A tag of the last added repo, at its commit.
    pub fn tag(mut self, name: &str) -> Self {
        self.repos.last_mut().expect("a repo first").3.push(name.to_owned());
        self
    }

    /// Files of at least this size are LFS files (default 1 MiB).
    pub fn lfs_threshold(mut self, bytes: u64) -> Self {
        self.lfs_threshold = bytes;
        self
    }

    /// Tree listing page size (default 1000, like the hub).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// Serve `file` (a wheel or sdist on disk) for `project` on the simple index.
    pub fn package_file(mut self, project: &str, file: &Path) -> Self {
        self.packages.push((project.to_owned(), file.to_owned()));
        self
    }

    pub fn start(self) -> FakeHub {
        let hub_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind hub");
        let cdn_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind cdn");
        let hub_addr = hub_listener.local_addr().unwrap();
        let cdn_addr = cdn_listener.local_addr().unwrap();
        let mut repos = BTreeMap::new();
        let mut by_sha = BTreeMap::new();
        for (id, dir, token, tags) in self.repos {
            let mut files = BTreeMap::new();
            for rel in walk(&dir) {
                let path = dir.join(&rel);
                let (size, sha256, git) = hash_file(&path);
                let lfs = size >= self.lfs_threshold;
                let oid = if lfs {
                    git_blob_id(
                        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
                            .as_bytes(),
                    )
                } else {
                    git
                };
                let f = ServedFile { path, size, sha256: sha256.clone(), oid, lfs };
                by_sha.insert(sha256, f.clone());
                files.insert(rel, f);
            }
            let mut h = sha1::Sha1::new();
            h.update(format!("fakehub {id}\n").as_bytes());
            for (p, f) in &files {
                h.update(format!("{p} {}\n", f.oid).as_bytes());
            }
            let commit = hex::encode(h.finalize());
            let mut refs = BTreeMap::new();
            refs.insert("main".to_owned(), commit.clone());
            for t in tags {
                refs.insert(t, commit.clone());
            }
            repos.insert(id.clone(), ServedRepo { id, commit, files, refs, token });
        }
        let mut packages: BTreeMap<String, Vec<(String, PathBuf, String, u64)>> = BTreeMap::new();
        for (project, file) in self.packages {
            let (size, sha256, _) = hash_file(&file);
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            packages.entry(normalize(&project)).or_default().push((name, file, sha256, size));
        }
        let inner = Arc::new(Inner {
            repos,
            by_sha,
            packages,
            page_size: self.page_size,
            cdn_base: format!("http://{cdn_addr}"),
            faults: Faults::default(),
            log: Mutex::new(Vec::new()),
            bytes_served: AtomicU64::new(0),
            serve_html_index: AtomicBool::new(false),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                hub_listener.set_nonblocking(true).unwrap();
                cdn_listener.set_nonblocking(true).unwrap();
                let hub = tokio::net::TcpListener::from_std(hub_listener).unwrap();
                let cdn = tokio::net::TcpListener::from_std(cdn_listener).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                let app2 = app.clone();
                // No Nagle: a response's head and body go out at once (a real server's behaviour;
                // with Nagle every small response waits for the client's delayed ACK).
                use axum::serve::ListenerExt;
                let hub = hub.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let cdn = cdn.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let serve_hub = axum::serve(hub, app).into_future();
                let serve_cdn = axum::serve(cdn, app2).into_future();
                // Bounded: stops when the FakeHub is dropped, or after an hour at most.
                tokio::select! {
                    _ = serve_hub => {}
                    _ = serve_cdn => {}
                    _ = rx => {}
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        FakeHub {
            url: format!("http://{hub_addr}"),
            index_url: format!("http://{hub_addr}/simple"),
            inner,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if "-_.".contains(c) {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Percent-decoding of a path segment.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("x-error-code", code)
        .header("x-error-message", message)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::json!({ "error": message }).to_string()))
        .unwrap()
}

fn json(v: serde_json::Value) -> Response {
    Response::builder().header("content-type", "application/json").body(Body::from(v.to_string())).unwrap()
}

async fn handle(State(hub): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let local_port = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let resp = route(&hub, &method, &uri, &headers).await;
    let mut log = hub.log.lock().unwrap();
    if log.len() < 200_000 {
        log.push(Logged {
            method: method.to_string(),
            path: uri.path().to_owned(),
            range: headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_owned),
            authorization: headers.contains_key("authorization"),
            status: resp.status().as_u16(),
            port: local_port,
        });
    }
    resp
}

fn check_token(repo: &ServedRepo, headers: &HeaderMap) -> Option<Response> {
    let token = repo.token.as_ref()?;
    let msg = format!(
        "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
        repo.id
    );
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Some(error(StatusCode::UNAUTHORIZED, "GatedRepo", &msg)),
        Some(v) if v == format!("Bearer {token}") => None,
        Some(_) => Some(error(StatusCode::FORBIDDEN, "GatedRepo", &msg)),
    }
}

/// (repo, rest of the path) for `org/name/<rest>`.
fn split_repo<'a>(hub: &'a Inner, path: &'a str) -> Option<(&'a ServedRepo, &'a str)> {
    let mut it = path.splitn(3, '/');
    let (org, name) = (it.next()?, it.next()?);
    let rest = it.next().unwrap_or("");
    hub.repos.get(&format!("{org}/{name}")).map(|r| (r, rest))
}

fn resolve_rev(repo: &ServedRepo, rev: &str) -> Option<String> {
    let rev = decode(rev);
    if rev == repo.commit {
        return Some(rev);
    }
    repo.refs.get(&rev).cloned()
}

async fn route(hub: &Arc<Inner>, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        return api(hub, rest, uri.query().unwrap_or(""), headers);
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(f) = hub.by_sha.get(sha) else {
            return error(StatusCode::NOT_FOUND, "EntryNotFound", "no such object");
        };
        let corrupt = hub
            .faults
            .corrupt
            .lock()
            .unwrap()
            .iter()
            .any(|p| hub.repos.values().any(|r| r.files.get(p).is_some_and(|x| x.sha256 == f.sha256)));
        return serve_file(hub, method, headers, &f.path, f.size, corrupt, HeaderMap::new()).await;
    }
    if let Some(rest) = path.strip_prefix("/simple/") {
        return simple(hub, rest.trim_end_matches('/'), headers);
    }
    if let Some(name) = path.strip_prefix("/packages/") {
        let found = hub.packages.values().flatten().find(|(n, ..)| n == name).cloned();
        let Some((_, file, sha, size)) = found else { return error(StatusCode::NOT_FOUND, "NotFound", "no such file") };
        let mut extra = HeaderMap::new();
        extra.insert("etag", HeaderValue::from_str(&format!("\"{sha}\"")).unwrap());
        return serve_file(hub, method, headers, &file, size, false, extra).await;
    }
    let trimmed = path.trim_start_matches('/');
    let Some((repo, rest)) = split_repo(hub, trimmed) else {
        return error(StatusCode::NOT_FOUND, "RepoNotFound", "Repository not found");
    };
    let Some(rest) = rest.strip_prefix("resolve/") else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "unknown endpoint");
    };
    if let Some(denied) = check_token(repo, headers) {
        return denied;
    }
    let (rev, file) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(commit) = resolve_rev(repo, rev) else {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound", &format!("Invalid rev id: {}", decode(rev)));
    };
    let file = decode(file);
    let Some(f) = repo.files.get(&file) else {
        let mut r = error(StatusCode::NOT_FOUND, "EntryNotFound", &format!("{file} does not exist on \"{rev}\""));
        r.headers_mut().insert("x-repo-commit", HeaderValue::from_str(&commit).unwrap());
        return r;
    };
    if f.lfs {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("location", format!("{}/cdn/{}?sig=fake-signature", hub.cdn_base, f.sha256))
            .header("x-repo-commit", &commit)
            .header("x-linked-etag", format!("\"{}\"", f.sha256))
            .header("x-linked-size", f.size.to_string())
            .header("etag", format!("\"{}\"", f.oid))
            .header("content-length", "0")
            .body(Body::empty())
            .unwrap();
    }
    let corrupt = hub.faults.corrupt.lock().unwrap().contains(&file);
    let mut extra = HeaderMap::new();
    extra.insert("etag", HeaderValue::from_str(&format!("\"{}\"", f.oid)).unwrap());
    extra.insert("x-repo-commit", HeaderValue::from_str(&commit).unwrap());
    serve_file(hub, method, headers, &f.path, f.size, corrupt, extra).await
}

fn api(hub: &Arc<Inner>, rest: &str, query: &str, headers: &HeaderMap) -> Response {
    let Some((repo, tail)) = split_repo(hub, rest) else {
        return error(StatusCode::NOT_FOUND, "RepoNotFound", "Repository not found");
    };
    if let Some(denied) = check_token(repo, headers) {
        return denied;
    }
    let tail = tail.trim_end_matches('/');
    if tail.is_empty() || tail.starts_with("revision/") {
        let rev = tail.strip_prefix("revision/").unwrap_or("main");
        let Some(commit) = resolve_rev(repo, rev) else {
            return error(StatusCode::NOT_FOUND, "RevisionNotFound", &format!("Invalid rev id: {}", decode(rev)));
        };
        let siblings: Vec<_> = repo.files.keys().map(|p| serde_json::json!({ "rfilename": p })).collect();
        return json(serde_json::json!({
            "_id": "fake", "id": repo.id, "author": repo.id.split('/').next(), "sha": commit,
            "private": false, "gated": if repo.token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
            "disabled": false, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
            "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
        }));
    }
    if let Some(t) = tail.strip_prefix("tree/") {
        let (rev, sub) = t.split_once('/').unwrap_or((t, ""));
        let Some(_commit) = resolve_rev(repo, rev) else {
            return error(StatusCode::NOT_FOUND, "RevisionNotFound", &format!("Invalid rev id: {}", decode(rev)));
        };
        let sub = decode(sub);
        let recursive =
            query.split('&').any(|kv| kv == "recursive=true" || kv == "recursive=True" || kv == "recursive=1");
        let cursor: usize =
            query.split('&').find_map(|kv| kv.strip_prefix("cursor=")).and_then(|c| c.parse().ok()).unwrap_or(0);
        let prefix = if sub.is_empty() { String::new() } else { format!("{sub}/") };
        let mut entries: Vec<serde_json::Value> = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for (p, f) in &repo.files {
            let Some(rel) = p.strip_prefix(&prefix) else { continue };
            // Directories on the way (every level when recursive, the first otherwise).
            let parts: Vec<&str> = rel.split('/').collect();
            for depth in 1..parts.len() {
                if !recursive && depth > 1 {
                    break;
                }
                dirs.insert(format!("{prefix}{}", parts[..depth].join("/")));
            }
            if !recursive && parts.len() > 1 {
                continue;
            }
            let mut e = serde_json::json!({ "type": "file", "oid": f.oid, "size": f.size, "path": p });
            if f.lfs {
                e["lfs"] = serde_json::json!({ "oid": f.sha256, "size": f.size, "pointerSize": 130 });
            }
            entries.push(e);
        }
        for d in dirs {
            entries.push(serde_json::json!({ "type": "directory", "oid": "0".repeat(40), "size": 0, "path": d }));
        }
        entries.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        let page: Vec<_> = entries.iter().skip(cursor).take(hub.page_size).cloned().collect();
        let mut resp = json(serde_json::Value::Array(page));
        if cursor + hub.page_size < entries.len() {
            let next = format!(
                "<http://{}/api/models/{}/tree/{rev}{}?recursive={recursive}&cursor={}>; rel=\"next\"",
                headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
                repo.id,
                if sub.is_empty() { String::new() } else { format!("/{sub}") },
                cursor + hub.page_size
            );
            resp.headers_mut().insert("link", HeaderValue::from_str(&next).unwrap());
        }
        return resp;
    }
    error(StatusCode::NOT_FOUND, "EntryNotFound", "unknown endpoint")
}

fn simple(hub: &Arc<Inner>, project: &str, headers: &HeaderMap) -> Response {
    let Some(files) = hub.packages.get(&normalize(project)) else {
        return error(StatusCode::NOT_FOUND, "NotFound", "no such project");
    };
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/vnd.pypi.simple.v1+json") && !hub.serve_html_index.load(Ordering::SeqCst) {
        let list: Vec<_> = files
            .iter()
            .map(|(name, _, sha, size)| {
                serde_json::json!({ "filename": name, "url": format!("../../packages/{name}"), "hashes": { "sha256": sha },
                                    "size": size, "yanked": false, "requires-python": ">=3.8" })
            })
            .collect();
        let body = serde_json::json!({ "meta": { "api-version": "1.1" }, "name": normalize(project), "files": list });
        return Response::builder()
            .header("content-type", "application/vnd.pypi.simple.v1+json")
            .body(Body::from(body.to_string()))
            .unwrap();
    }
    let mut html = String::from("<!DOCTYPE html><html><body>\n");
    for (name, _, sha, _) in files {
        html.push_str(&format!("<a href=\"../../packages/{name}#sha256={sha}\">{name}</a><br/>\n"));
    }
    html.push_str("</body></html>\n");
    Response::builder().header("content-type", "text/html").body(Body::from(html)).unwrap()
}

fn parse_range(h: &HeaderMap, size: u64) -> Option<(u64, u64)> {
    let v = h.get("range")?.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let (a, b) = v.split_once('-')?;
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() { size.saturating_sub(1) } else { b.parse().ok()? };
    Some((start, end.min(size.saturating_sub(1))))
}

#[allow(clippy::too_many_arguments)]
async fn serve_file(
    hub: &Arc<Inner>,
    method: &Method,
    headers: &HeaderMap,
    path: &Path,
    size: u64,
    corrupt: bool,
    extra: HeaderMap,
) -> Response {
    let fail = hub.faults.fail_first.load(Ordering::SeqCst);
    if fail > 0 && hub.faults.fail_first.compare_exchange(fail, fail - 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        return Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(Body::from("try later")).unwrap();
    }
    let (status, start, end) = match parse_range(headers, size) {
        Some((s, _)) if s >= size && size > 0 => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("content-range", format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap();
        }
        Some((s, e)) if s <= e => (StatusCode::PARTIAL_CONTENT, s, e + 1),
        _ => (StatusCode::OK, 0, size),
    };
    let mut b = Response::builder()
        .status(status)
        .header("content-length", (end - start).to_string())
        .header("accept-ranges", "bytes")
        .header("content-type", "application/octet-stream");
    for (k, v) in &extra {
        b = b.header(k, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header("content-range", format!("bytes {start}-{}/{size}", end - 1));
    }
    if *method == Method::HEAD {
        return b.body(Body::empty()).unwrap();
    }
    let rate = hub.faults.bytes_per_sec.load(Ordering::SeqCst);
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "Io", "cannot open"),
    };
    let counter = hub.clone();
    // The corrupted byte sits in the middle of the file, whatever range is asked for.
    let flip_at = size / 2;
    let stream =
        futures::stream::unfold((file, start, Instant::now(), 0u64, false), move |(file, pos, t0, sent, seeked)| {
            let counter = counter.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                if pos >= end {
                    return None;
                }
                let mut file = file;
                if !seeked {
                    file.seek(std::io::SeekFrom::Start(pos)).await.ok()?;
                }
                let chunk = if rate > 0 { (rate / 20).clamp(1024, 256 << 10) } else { 256 << 10 };
                let n = chunk.min(end - pos) as usize;
                let mut buf = vec![0u8; n];
                file.read_exact(&mut buf).await.ok()?;
                if corrupt && (pos..pos + n as u64).contains(&flip_at) {
                    buf[(flip_at - pos) as usize] ^= 0xff;
                }
                if rate > 0 {
                    let due = Duration::from_secs_f64((sent + n as u64) as f64 / rate as f64);
                    let el = t0.elapsed();
                    if due > el {
                        tokio::time::sleep(due - el).await;
                    }
                }
                counter.bytes_served.fetch_add(n as u64, Ordering::SeqCst);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (file, pos + n as u64, t0, sent + n as u64, true),
                ))
            }
        });
    b.body(Body::from_stream(stream)).unwrap()
}
