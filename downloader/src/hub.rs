//! The Hugging Face hub source. hf-hub (1.x) does the hub API: revision → commit (`info`) and the
//! recursive file listing (`list_tree`), with its retries and error types. The file transfer is
//! ours, per file exactly what `huggingface_hub` does — `HEAD /{repo}/resolve/{commit}/{file}`
//! without following the LFS redirect (its `X-Linked-Etag`/`X-Linked-Size` are the file's sha256
//! and size), then `GET` of the CDN location — because hf-hub's downloader truncates a partial
//! `.incomplete` (no resume), verifies nothing and links files into `snapshots/` one by one.

use std::collections::BTreeMap;
use std::time::Instant;

use docfleet_core::models::{HashKind, RepoCache, TreeEntry, TreeListing, is_commit, select_files};
use futures::{StreamExt, TryStreamExt};
use hf_hub::HFError;
use hf_hub::repository::RepoTreeEntry;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::fetch::{Ctx, SourceResult, Target, missing_configured, selection_error, snapshot_present};
use crate::progress::Progress;
use crate::transfer::{Expect, Redirects, encode_path, redact, write_resumable};
use crate::{Error, Result, cache, check_space, free_bytes, lock};

/// A file as the hub lists it at a commit.
#[derive(Debug, Clone)]
struct Listed {
    size: u64,
    oid: String,
    lfs: bool,
    xet_hash: Option<String>,
}

/// Error wording for one repo.
struct HubErrors<'a> {
    name: &'a str,
    repo_id: &'a str,
    revision: &'a str,
    endpoint: &'a str,
    token: bool,
}

impl HubErrors<'_> {
    /// Where to fix `key`: the config key of a configured model, the flag of an ad-hoc `--repo`.
    fn hint(&self, key: &str) -> String {
        if self.name.contains('/') {
            match key {
                "repo_id" => "--repo".into(),
                "files" => "--file".into(),
                other => format!("--{other}"),
            }
        } else {
            format!("models.{}.{key}", self.name)
        }
    }

    /// Map an HTTP status (with the hub's `X-Error-Code` / `X-Error-Message`) to an error that says
    /// what to do.
    fn status(&self, status: StatusCode, code: Option<&str>, message: Option<&str>, file: Option<&str>) -> Error {
        let said = message.map(|m| format!(" (hub: {m})")).unwrap_or_default();
        let gated = code == Some("GatedRepo");
        let repo = self.repo_id;
        match status.as_u16() {
            401 if code == Some("RepoNotFound") && !self.token => Error::NotFound(format!(
                "repo `{repo}` was not found on {}, or it is private and no Hugging Face token is set (HF_TOKEN, \
                 HF_TOKEN_PATH or models.token){said}",
                self.endpoint
            )),
            401 if !self.token => Error::Auth(format!(
                "repo `{repo}` is {} and no Hugging Face token is set: set HF_TOKEN (or HF_TOKEN_PATH, or \
                 models.token) to a token that can read it{}{said}",
                if gated { "gated" } else { "gated or private" },
                if gated { ", after accepting the repo's conditions on its hub page" } else { "" }
            )),
            401 => Error::Auth(format!(
                "the Hugging Face token was rejected for repo `{repo}` (401): check that it is valid and not \
                 expired{said}"
            )),
            403 => Error::Auth(format!(
                "the Hugging Face token has no access to repo `{repo}` (403){}{said}",
                if gated {
                    ": the repo is gated; request access on its hub page and wait for approval"
                } else {
                    ": a fine-grained token needs read access to this repo"
                }
            )),
            404 => match (code, file) {
                (Some("RevisionNotFound"), _) => Error::NotFound(format!(
                    "revision `{}` was not found in repo `{repo}` ({}){said}",
                    self.revision,
                    self.hint("revision")
                )),
                (Some("EntryNotFound"), Some(f)) | (None, Some(f)) => Error::NotFound(format!(
                    "file `{f}` was not found in repo `{repo}` at revision `{}` ({}){said}",
                    self.revision,
                    self.hint("files")
                )),
                _ => Error::NotFound(format!(
                    "repo `{repo}` was not found on {} ({}){said}",
                    self.endpoint,
                    self.hint("repo_id")
                )),
            },
            429 | 500..=599 => Error::Network(format!("the hub answered {status} for repo `{repo}`{said}")),
            _ => Error::Source(format!("the hub answered {status} for repo `{repo}`{said}")),
        }
    }

    fn for_response(&self, status: StatusCode, h: &HeaderMap, file: Option<&str>) -> Error {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.status(status, get("x-error-code").as_deref(), get("x-error-message").as_deref(), file)
    }

    /// hf-hub's errors, reworded the same way.
    fn for_hf(&self, e: HFError) -> Error {
        match e {
            HFError::AuthRequired { context } => self.status(
                StatusCode::UNAUTHORIZED,
                context.error_code.as_deref(),
                context.server_message.as_deref(),
                None,
            ),
            HFError::Forbidden { context } => self.status(
                StatusCode::FORBIDDEN,
                context.error_code.as_deref(),
                context.server_message.as_deref(),
                None,
            ),
            // hf-hub names a 404 after what was asked; the hub's X-Error-Code says what was missing.
            HFError::RepoNotFound { context, .. } | HFError::RevisionNotFound { context, .. } => {
                let code = context.as_ref().and_then(|c| c.error_code.clone());
                let code = code.unwrap_or_else(|| "RepoNotFound".into());
                self.status(StatusCode::NOT_FOUND, Some(code.as_str()), None, None)
            }
            HFError::RateLimited { .. } => {
                Error::Network(format!("the hub rate-limited requests for `{}`", self.repo_id))
            }
            HFError::Http { context } => {
                self.status(context.status, context.error_code.as_deref(), context.server_message.as_deref(), None)
            }
            HFError::Request { source, url } => Error::Network(format!(
                "cannot reach the hub at {} ({}): {}",
                self.endpoint,
                url.as_deref().map(redact).unwrap_or_default(),
                crate::transfer::error_chain(&source)
            )),
            other => Error::Source(format!("hub API for `{}`: {other}", self.repo_id)),
        }
    }
}

/// One file's result.
struct Done {
    path: String,
    etag: String,
    size: u64,
    fetched: u64,
    resumed: u64,
    downloaded: bool,
}

/// Bring the repo's snapshot at the configured revision into the cache.
pub async fn fetch(ctx: &Ctx, t: &Target, rc: &RepoCache, progress: &Progress) -> Result<SourceResult> {
    let repo = &t.repo;
    let errs = HubErrors {
        name: &t.name,
        repo_id: &repo.repo_id,
        revision: &repo.revision,
        endpoint: &ctx.endpoint,
        token: ctx.http.has_token(),
    };
    let hf = ctx.hf_client()?;
    let (owner, name) = hf_hub::split_id(&repo.repo_id);
    let handle = hf.model(owner, name);
    let started = Instant::now();

    let commit = if is_commit(&repo.revision) {
        repo.revision.to_ascii_lowercase()
    } else {
        match handle.info().revision(repo.revision.clone()).send().await {
            Ok(info) => info.sha.filter(|s| is_commit(s)).ok_or_else(|| {
                Error::Source(format!("the hub gave no commit for `{}` at `{}`", repo.repo_id, repo.revision))
            })?,
            Err(e) => {
                let err = errs.for_hf(e);
                // Like huggingface_hub: when the hub cannot be reached, a complete cached snapshot will do.
                if let (Error::Network(why), Some(commit)) = (&err, rc.read_ref(&repo.revision))
                    && let Some(report) = snapshot_present(rc, &commit, repo, rc.read_tree_listing(&commit).as_ref())
                {
                    tracing::warn!(model = %t.name, error = %why, commit = %commit, "hub unreachable; the cached snapshot is complete, using it");
                    return Ok(present(commit, &report));
                }
                return Err(err);
            }
        }
    };
    tracing::debug!(model = %t.name, commit = %commit, ms = started.elapsed().as_millis() as u64, "revision resolved");

    if let Some(report) = snapshot_present(rc, &commit, repo, rc.read_tree_listing(&commit).as_ref()) {
        cache::write_ref(rc, &repo.revision, &commit)?;
        return Ok(present(commit, &report));
    }

    // The listing, as huggingface_hub gets it (recursive tree at the commit).
    let stream = handle.list_tree().revision(commit.clone()).recursive(true).send().map_err(|e| errs.for_hf(e))?;
    let entries: Vec<RepoTreeEntry> = stream.map_err(|e| errs.for_hf(e)).try_collect().await?;
    let mut listed: BTreeMap<String, Listed> = BTreeMap::new();
    for e in entries {
        if let RepoTreeEntry::File { oid, size, path, lfs, xet_hash, .. } = e {
            listed.insert(
                path,
                Listed { size: lfs.as_ref().and_then(|l| l.size).unwrap_or(size), oid, lfs: lfs.is_some(), xet_hash },
            );
        }
    }
    let available: Vec<String> = listed.keys().cloned().collect();
    let selected = select_files(repo, &available);
    let what = format!("repo `{}` at `{}` (commit {commit})", repo.repo_id, repo.revision);
    if let Some(e) = selection_error(t, &what, &missing_configured(repo, &available), selected.len()) {
        return Err(e);
    }

    // Files already linked to a complete blob of the right size (an earlier partial run, or
    // huggingface_hub's download) are kept.
    let mut done: Vec<Done> = Vec::new();
    let mut todo: Vec<String> = Vec::new();
    for f in &selected {
        let size = listed[f].size;
        match cache::linked_blob(rc, &commit, f) {
            Some(etag) if rc.has_blob(&etag) && std::fs::metadata(rc.blob(&etag)).is_ok_and(|m| m.len() == size) => {
                done.push(Done { path: f.clone(), etag, size, fetched: 0, resumed: 0, downloaded: false })
            }
            _ => todo.push(f.clone()),
        }
    }
    let todo_bytes: u64 = todo.iter().map(|f| listed[f].size).sum();
    check_space(todo_bytes, free_bytes(&rc.root), &rc.cache)?;
    progress.add_total(todo.len() as u64, todo_bytes);
    tracing::info!(model = %t.name, repo = %repo.repo_id, commit = %commit, files = todo.len(), bytes = todo_bytes, reused = done.len(), "downloading");

    let fetched: Vec<Done> =
        futures::stream::iter(todo.iter().map(|f| fetch_file(ctx, rc, &errs, &commit, f, &listed[f], progress)))
            .buffer_unordered(ctx.models().max_workers)
            .try_collect()
            .await?;
    done.extend(fetched);

    let etags: BTreeMap<&str, &str> = done.iter().map(|d| (d.path.as_str(), d.etag.as_str())).collect();
    let listing = TreeListing::new(
        listed
            .iter()
            .map(|(path, l)| {
                let sha = etags.get(path.as_str()).filter(|e| l.lfs && HashKind::of(e) == Some(HashKind::Sha256));
                let entry = TreeEntry {
                    size: l.size,
                    blob_id: l.oid.clone(),
                    lfs_sha256: sha.map(|s| s.to_string()),
                    lfs_size: sha.map(|_| l.size),
                    xet_hash: l.xet_hash.clone(),
                };
                (path.clone(), entry)
            })
            .collect(),
    );
    let files: Vec<(String, String)> = done.iter().map(|d| (d.path.clone(), d.etag.clone())).collect();
    cache::publish(rc, &commit, &repo.revision, &files, &listing)?;
    Ok(SourceResult {
        commit,
        source: format!("hub {}", ctx.endpoint),
        files: done.len(),
        files_fetched: done.iter().filter(|d| d.downloaded).count(),
        bytes: done.iter().map(|d| d.size).sum(),
        bytes_fetched: done.iter().map(|d| d.fetched).sum(),
        bytes_resumed: done.iter().map(|d| d.resumed).sum(),
        present: false,
    })
}

fn present(commit: String, report: &docfleet_core::models::Report) -> SourceResult {
    SourceResult {
        commit,
        source: "cache".into(),
        files: report.files.len(),
        bytes: report.bytes,
        present: true,
        ..SourceResult::default()
    }
}

/// The hub's ETag without weak prefix and quotes.
fn normalize_etag(v: &str) -> String {
    v.trim().trim_start_matches("W/").trim_matches('"').to_owned()
}

/// HEAD then (unless the blob is already there) a verified, resumable GET.
async fn fetch_file(
    ctx: &Ctx,
    rc: &RepoCache,
    errs: &HubErrors<'_>,
    commit: &str,
    path: &str,
    listed: &Listed,
    progress: &Progress,
) -> Result<Done> {
    let url = format!("{}/{}/resolve/{commit}/{}", ctx.endpoint, errs.repo_id, encode_path(path));
    let mut headers = HeaderMap::new();
    headers.insert(reqwest::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    let head = ctx.http.request(Method::HEAD, &url, &headers, Redirects::Relative).await?;
    let status = head.status();
    if !status.is_success() && !status.is_redirection() {
        return Err(errs.for_response(status, head.headers(), Some(path)));
    }
    let h = head.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let etag = get("x-linked-etag").or_else(|| get("etag")).map(normalize_etag).filter(|e| !e.is_empty()).ok_or_else(
        || Error::Source(format!("the hub sent no ETag for `{path}` in `{}` ({})", errs.repo_id, redact(&url))),
    )?;
    if etag.contains('/') || etag.starts_with('.') {
        return Err(Error::Source(format!("the hub sent an unusable ETag `{etag}` for `{path}`")));
    }
    let size = get("x-linked-size")
        .or_else(|| if status.is_redirection() { None } else { get("content-length") })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(listed.size);
    let location = if status.is_redirection() {
        let loc = get("location").unwrap_or_default();
        reqwest::Url::parse(&url).and_then(|u| u.join(loc)).map(|u| u.to_string()).unwrap_or(url.clone())
    } else {
        url.clone()
    };
    if size != listed.size {
        tracing::warn!(
            file = path,
            listed = listed.size,
            head = size,
            "the listing and the file headers disagree on the size; using the headers'"
        );
    }
    let blob_ok =
        |rc: &RepoCache| rc.has_blob(&etag) && std::fs::metadata(rc.blob(&etag)).is_ok_and(|m| m.len() == size);
    if blob_ok(rc) {
        return Ok(Done { path: path.to_owned(), etag, size, fetched: 0, resumed: 0, downloaded: false });
    }
    let _blob_lock = lock::blob(rc, &etag, ctx.lock_timeout).await?;
    if blob_ok(rc) {
        return Ok(Done { path: path.to_owned(), etag, size, fetched: 0, resumed: 0, downloaded: false });
    }
    let expect = Expect {
        size: Some(size),
        sha256: (HashKind::of(&etag) == Some(HashKind::Sha256)).then(|| etag.to_ascii_lowercase()),
        git_sha1: (HashKind::of(&etag) == Some(HashKind::GitSha1) && !listed.lfs).then(|| etag.to_ascii_lowercase()),
        git_id: false,
    };
    if expect.sha256.is_none() && expect.git_sha1.is_none() {
        tracing::warn!(file = path, etag = %etag, "the ETag is not a content hash; only the size can be checked");
    }
    let fp = progress.file(path, size);
    let what_failed = |s: StatusCode, h: &HeaderMap| errs.for_response(s, h, Some(path));
    let incomplete = rc.incomplete(&etag);
    let written = write_resumable(&incomplete, &expect, path, ctx.models().retries, &fp, |offset| {
        let location = location.clone();
        let http = &ctx.http;
        let what_failed = &what_failed;
        Box::pin(async move { http.open_range(&location, offset, what_failed).await })
    })
    .await?;
    std::fs::rename(&incomplete, rc.blob(&etag))
        .map_err(|e| Error::io(format!("renaming {}", incomplete.display()), e))?;
    fp.done();
    tracing::debug!(file = path, bytes = written.fetched, resumed_from = written.resumed_from, "file done");
    Ok(Done {
        path: path.to_owned(),
        etag,
        size,
        fetched: written.fetched,
        resumed: written.resumed_from,
        downloaded: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(token: bool) -> HubErrors<'static> {
        HubErrors { name: "ocr", repo_id: "org/gated", revision: "main", endpoint: "http://hub", token }
    }

    #[test]
    fn auth_and_not_found_errors_say_what_to_do() {
        let e = errs(false).status(StatusCode::UNAUTHORIZED, Some("GatedRepo"), Some("Access restricted"), None);
        assert!(matches!(e, Error::Auth(_)));
        let m = e.to_string();
        assert!(m.contains("gated") && m.contains("HF_TOKEN") && m.contains("no Hugging Face token"), "{m}");
        let m = errs(true).status(StatusCode::UNAUTHORIZED, None, None, None).to_string();
        assert!(m.contains("token was rejected"), "{m}");
        let m = errs(true).status(StatusCode::FORBIDDEN, Some("GatedRepo"), None, None).to_string();
        assert!(m.contains("request access"), "{m}");
        let e = errs(true).status(StatusCode::NOT_FOUND, Some("RevisionNotFound"), None, None);
        assert!(matches!(e, Error::NotFound(_)) && e.to_string().contains("revision `main`"), "{e}");
        let m = errs(true).status(StatusCode::NOT_FOUND, Some("EntryNotFound"), None, Some("a.onnx")).to_string();
        assert!(m.contains("file `a.onnx`"), "{m}");
        let m = errs(true).status(StatusCode::NOT_FOUND, Some("RepoNotFound"), None, None).to_string();
        assert!(m.contains("repo `org/gated` was not found") && m.contains("models.ocr.repo_id"), "{m}");
        assert!(matches!(errs(true).status(StatusCode::BAD_GATEWAY, None, None, None), Error::Network(_)));
    }

    #[test]
    fn etags_are_normalized() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
    }
}
