//! The S3 mirror source (`kind = "s3"`, `url = "s3://bucket/prefix"`): the repo's files under the
//! prefix, plus `.docfleet-snapshot.json` when the mirror was written by `export` (then the cache
//! gets the hub's commit, blob names and listing, and every file is checked against its sha256).
//! A prefix without a manifest (a plain `aws s3 sync` of a snapshot) gets a commit id derived from
//! its listing (keys, sizes, S3 ETags) and blobs named by their sha256.

use std::collections::BTreeMap;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use docfleet_core::models::{HashKind, RepoCache, TreeEntry, TreeListing, is_commit, select_files};
use futures::{StreamExt, TryStreamExt};

use crate::fetch::{Ctx, SourceResult, Target, missing_configured, selection_error, snapshot_present};
use crate::manifest::{MANIFEST_NAME, Manifest, synthetic_commit};
use crate::progress::Progress;
use crate::transfer::{Expect, Opened, write_resumable};
use crate::{Error, Result, cache, check_space, free_bytes, lock};

/// `s3://bucket/prefix` → (`bucket`, `prefix` without a trailing slash).
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest =
        url.strip_prefix("s3://").ok_or_else(|| Error::Config(format!("`{url}` is not an s3://bucket/prefix URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Config(format!("`{url}` names no bucket")));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

/// The object key of `rel` under `prefix`.
pub fn key(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() { rel.to_owned() } else { format!("{prefix}/{rel}") }
}

/// An SDK error as a downloader error: credentials → Auth, missing → NotFound, transient → Network.
pub fn s3_error<E>(
    operation: &'static str,
    what: &str,
    err: SdkError<E, aws_smithy_runtime_api_shim::Response>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.as_service_error().and_then(|e| e.code()).map(str::to_owned);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let core = docfleet_core::aws::backend_error("s3", operation, err);
    let msg = format!("S3 {operation} {what}: {core}");
    match (code.as_deref(), status) {
        (Some("NoSuchKey" | "NoSuchBucket" | "NotFound"), _) | (_, Some(404)) => Error::NotFound(msg),
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken"), _)
        | (_, Some(401 | 403)) => Error::Auth(format!("{msg} (check the AWS credentials and the bucket policy)")),
        _ if core.is_transient() => Error::Network(msg),
        _ => Error::Source(msg),
    }
}

/// The response type the SDK uses (re-exported under a stable local name).
mod aws_smithy_runtime_api_shim {
    pub type Response = aws_sdk_s3::config::http::HttpResponse;
}

/// A file on the mirror.
#[derive(Debug, Clone)]
struct Remote {
    size: u64,
    /// From the manifest: the blob name and hashes.
    known: Option<crate::manifest::ManifestFile>,
    s3_etag: String,
}

/// Read the manifest, if the mirror has one.
async fn read_manifest(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Option<Manifest>> {
    let k = key(prefix, MANIFEST_NAME);
    match client.get_object().bucket(bucket).key(&k).send().await {
        Ok(out) => {
            let bytes =
                out.body.collect().await.map_err(|e| Error::Network(format!("reading s3://{bucket}/{k}: {e}")))?;
            Manifest::parse(&bytes.into_bytes()).map(Some).map_err(|e| Error::Source(format!("s3://{bucket}/{k}: {e}")))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(s3_error("GetObject", &format!("s3://{bucket}/{k}"), e)),
    }
}

/// Every object under the prefix (but the manifest), as relative paths.
async fn list(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<BTreeMap<String, (u64, String)>> {
    let mut out = BTreeMap::new();
    let list_prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(&list_prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3_error("ListObjectsV2", &format!("s3://{bucket}/{list_prefix}"), e))?;
        for o in page.contents.unwrap_or_default() {
            let Some(k) = o.key else { continue };
            let rel = k[list_prefix.len()..].to_owned();
            if rel.is_empty()
                || rel == MANIFEST_NAME
                || rel.ends_with('/')
                || docfleet_core::models::validate_relative(&rel).is_err()
            {
                continue;
            }
            out.insert(
                rel,
                (o.size.unwrap_or(0).max(0) as u64, o.e_tag.unwrap_or_default().trim_matches('"').to_owned()),
            );
        }
    }
    Ok(out)
}

/// A ranged GET of an object, as a body for [`write_resumable`].
pub async fn open_object(client: &aws_sdk_s3::Client, bucket: &str, k: &str, offset: u64) -> Result<Opened> {
    let mut req = client.get_object().bucket(bucket).key(k);
    if offset > 0 {
        req = req.range(format!("bytes={offset}-"));
    }
    let out = match req.send().await {
        Ok(o) => o,
        Err(e) if offset > 0 && e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
            return Ok(Opened { start: offset, body: futures::stream::empty().boxed(), total: Some(offset) });
        }
        Err(e) => return Err(s3_error("GetObject", &format!("s3://{bucket}/{k}"), e)),
    };
    let total = out
        .content_range
        .as_deref()
        .and_then(|r| r.rsplit('/').next()?.parse::<u64>().ok())
        .or_else(|| out.content_length.map(|n| n.max(0) as u64));
    let start = out
        .content_range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let body = futures::stream::unfold(out.body, |mut b| async move {
        match b.try_next().await {
            Ok(Some(bytes)) => Some((Ok(bytes), b)),
            Ok(None) => None,
            Err(e) => Some((Err(crate::transfer::error_chain(&e)), b)),
        }
    })
    .boxed();
    Ok(Opened { start, body, total })
}

pub async fn fetch(ctx: &Ctx, t: &Target, rc: &RepoCache, progress: &Progress) -> Result<SourceResult> {
    let repo = &t.repo;
    let url = repo.source.url.clone().unwrap_or_default();
    let (bucket, prefix) = parse_url(&url)?;
    let client = ctx.s3().await;
    let manifest = read_manifest(client, &bucket, &prefix).await?;
    let (commit, remote, mirror_listing): (String, BTreeMap<String, Remote>, Option<TreeListing>) = match &manifest {
        Some(m) => {
            if m.repo_id != repo.repo_id {
                return Err(Error::Source(format!(
                    "{url} holds a snapshot of `{}`, but models.{}.repo_id is `{}`",
                    m.repo_id, t.name, repo.repo_id
                )));
            }
            let files = m
                .files
                .iter()
                .map(|(p, f)| (p.clone(), Remote { size: f.size, known: Some(f.clone()), s3_etag: String::new() }))
                .collect();
            (m.commit.clone(), files, Some(m.listing()))
        }
        None => {
            let objects = list(client, &bucket, &prefix).await?;
            if objects.is_empty() {
                return Err(Error::NotFound(format!("{url} holds no files (models.{}.source.url)", t.name)));
            }
            let parts: Vec<String> = objects.iter().map(|(p, (s, e))| format!("{p}\0{s}\0{e}")).collect();
            let mut refs: Vec<&str> = vec!["s3", &url];
            refs.extend(parts.iter().map(String::as_str));
            let files =
                objects.into_iter().map(|(p, (size, e))| (p, Remote { size, known: None, s3_etag: e })).collect();
            (synthetic_commit(&refs), files, None)
        }
    };
    if is_commit(&repo.revision) && !repo.revision.eq_ignore_ascii_case(&commit) {
        return Err(Error::NotFound(format!(
            "{url} holds commit {commit} of `{}`, but models.{}.revision pins {}",
            repo.repo_id, t.name, repo.revision
        )));
    }
    let cached_listing = rc.read_tree_listing(&commit);
    if let Some(report) = snapshot_present(rc, &commit, repo, mirror_listing.as_ref().or(cached_listing.as_ref())) {
        cache::write_ref(rc, &repo.revision, &commit)?;
        return Ok(SourceResult {
            commit,
            source: url,
            files: report.files.len(),
            bytes: report.bytes,
            present: true,
            ..Default::default()
        });
    }
    let available: Vec<String> = remote.keys().cloned().collect();
    let selected = select_files(repo, &available);
    if let Some(e) = selection_error(t, &url, &missing_configured(repo, &available), selected.len()) {
        return Err(e);
    }
    let todo_bytes: u64 = selected.iter().map(|f| remote[f].size).sum();
    check_space(todo_bytes, free_bytes(&rc.root), &rc.cache)?;
    progress.add_total(selected.len() as u64, todo_bytes);

    let results: Vec<(String, String, u64, u64, u64, TreeEntry, bool)> =
        futures::stream::iter(selected.iter().map(|f| {
            let r = &remote[f];
            let (bucket, prefix) = (&bucket, &prefix);
            async move {
                let k = key(prefix, f);
                let fp = progress.file(f, r.size);
                if let Some(known) = &r.known {
                    if rc.has_blob(&known.etag) {
                        fp.inc(r.size);
                        fp.done();
                        return Ok((f.clone(), known.etag.clone(), r.size, 0, 0, known.tree_entry(), false));
                    }
                    let _l = lock::blob(rc, &known.etag, ctx.lock_timeout).await?;
                    let expect = Expect {
                        size: Some(known.size),
                        sha256: Some(known.sha256.to_ascii_lowercase()),
                        git_sha1: (!known.lfs && HashKind::of(&known.etag) == Some(HashKind::GitSha1))
                            .then(|| known.etag.clone()),
                        git_id: false,
                    };
                    let incomplete = rc.incomplete(&known.etag);
                    let w = write_resumable(&incomplete, &expect, f, ctx.models().retries, &fp, |off| {
                        let k = k.clone();
                        Box::pin(async move { open_object(client, bucket, &k, off).await })
                    })
                    .await?;
                    std::fs::rename(&incomplete, rc.blob(&known.etag))
                        .map_err(|e| Error::io(format!("renaming {}", incomplete.display()), e))?;
                    fp.done();
                    return Ok((
                        f.clone(),
                        known.etag.clone(),
                        w.size,
                        w.fetched,
                        w.resumed_from,
                        known.tree_entry(),
                        true,
                    ));
                }
                // No manifest: name the blob by its sha256 once downloaded; the partial file is keyed by
                // the object's S3 ETag so a rerun resumes it.
                let partial_key = synthetic_commit(&[bucket, &k, &r.s3_etag]);
                let incomplete = rc.blobs().join(format!("s3-{partial_key}.incomplete"));
                let expect = Expect { size: Some(r.size), git_id: true, ..Expect::default() };
                let w = write_resumable(&incomplete, &expect, f, ctx.models().retries, &fp, |off| {
                    let k = k.clone();
                    Box::pin(async move { open_object(client, bucket, &k, off).await })
                })
                .await?;
                if rc.has_blob(&w.sha256) {
                    let _ = std::fs::remove_file(&incomplete);
                } else {
                    std::fs::rename(&incomplete, rc.blob(&w.sha256))
                        .map_err(|e| Error::io(format!("renaming {}", incomplete.display()), e))?;
                }
                fp.done();
                let entry = TreeEntry {
                    size: w.size,
                    blob_id: w.git_sha1.clone().unwrap_or_default(),
                    lfs_sha256: Some(w.sha256.clone()),
                    lfs_size: Some(w.size),
                    xet_hash: None,
                };
                Ok::<_, Error>((f.clone(), w.sha256.clone(), w.size, w.fetched, w.resumed_from, entry, true))
            }
        }))
        .buffer_unordered(ctx.models().max_workers)
        .try_collect()
        .await?;

    let listing = mirror_listing
        .unwrap_or_else(|| TreeListing::new(results.iter().map(|r| (r.0.clone(), r.5.clone())).collect()));
    let files: Vec<(String, String)> = results.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
    cache::publish(rc, &commit, &repo.revision, &files, &listing)?;
    Ok(SourceResult {
        commit,
        source: url,
        files: results.len(),
        files_fetched: results.iter().filter(|r| r.6).count(),
        bytes: results.iter().map(|r| r.2).sum(),
        bytes_fetched: results.iter().map(|r| r.3).sum(),
        bytes_resumed: results.iter().map(|r| r.4).sum(),
        present: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(parse_url("s3://b/models/ocr/").unwrap(), ("b".into(), "models/ocr".into()));
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), String::new()));
        assert!(parse_url("https://b/x").is_err() && parse_url("s3:///x").is_err());
        assert_eq!(key("p", "a/b"), "p/a/b");
        assert_eq!(key("", "a"), "a");
    }
}
