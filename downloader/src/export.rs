//! `docfleet-downloader export`: push a verified snapshot from the cache to an S3 mirror
//! (`s3://bucket/prefix`): every file (checked against its hash first), then the manifest, last,
//! so a mirror with a manifest is always complete. Objects already there with the same size and
//! sha256 (object metadata `sha256`) are not uploaded again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use docfleet_core::models::{self, Depth, HashKind, RepoCache};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::fetch::{Ctx, Target};
use crate::manifest::{MANIFEST_NAME, Manifest, ManifestFile};
use crate::s3::{key, parse_url, s3_error};
use crate::{Error, Result};

/// What `export` did.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub name: String,
    pub repo_id: String,
    pub commit: String,
    pub destination: String,
    pub files: usize,
    pub uploaded: usize,
    pub unchanged: usize,
    pub bytes_uploaded: u64,
    pub seconds: f64,
}

pub async fn export(ctx: &Ctx, t: &Target, dest: &str) -> Result<Exported> {
    let started = Instant::now();
    if t.repo.dir.is_some() {
        return Err(Error::Config(format!(
            "model `{}` uses a plain directory (models.{}.dir); export needs a cache snapshot",
            t.name, t.name
        )));
    }
    let (bucket, prefix) = parse_url(dest)?;
    let models_settings = ctx.models().clone();
    let (name, repo) = (t.name.clone(), t.repo.clone());
    let report = tokio::task::spawn_blocking(move || models::check(&models_settings, &name, &repo, Depth::Hashes))
        .await
        .map_err(|e| Error::Source(format!("verify task: {e}")))??;
    if !report.problems.is_empty() {
        return Err(Error::Integrity(format!("not exporting: {}", models::problems_message(&t.name, &report))));
    }
    let snap = report.snapshot.clone();
    let rc = RepoCache::new(&ctx.cache_dir(), &t.repo.repo_id);
    let listing = rc.read_tree_listing(&snap.commit);

    // Manifest entries: the blob name the cache uses and both hashes.
    let mut files = BTreeMap::new();
    for f in &report.files {
        let path = snap.file(f);
        let p2 = path.clone();
        let (sha256, git) = tokio::task::spawn_blocking(move || models::hash_file(&p2))
            .await
            .map_err(|e| Error::Source(format!("hash task: {e}")))?
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let size = std::fs::metadata(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
        let entry = listing.as_ref().and_then(|l| l.files.get(f));
        let etag = crate::cache::linked_blob(&rc, &snap.commit, f)
            .filter(|e| HashKind::of(e).is_some())
            .unwrap_or_else(|| sha256.clone());
        let lfs = entry.map(|e| e.lfs_sha256.is_some()).unwrap_or(HashKind::of(&etag) == Some(HashKind::Sha256));
        let blob_id = entry.map(|e| e.blob_id.clone()).filter(|b| !b.is_empty()).unwrap_or(git);
        files.insert(f.clone(), ManifestFile { size, etag, sha256, blob_id, lfs });
    }
    let manifest = Manifest {
        format_version: Manifest::FORMAT_VERSION,
        repo_id: t.repo.repo_id.clone(),
        commit: snap.commit.clone(),
        files,
    };

    let client = ctx.s3().await;
    let part = ctx.settings.store.multipart_part_bytes.max(5 << 20);
    let threshold = ctx.settings.store.multipart_threshold_bytes.max(part);
    let uploads: Vec<(bool, u64)> = futures::stream::iter(manifest.files.iter().map(|(f, mf)| {
        let (bucket, prefix, snap) = (&bucket, &prefix, &snap);
        async move {
            let k = key(prefix, f);
            if let Ok(head) = client.head_object().bucket(bucket).key(&k).send().await {
                let same_size = head.content_length.is_some_and(|n| n as u64 == mf.size);
                let same_hash = head
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("sha256"))
                    .is_some_and(|s| s.eq_ignore_ascii_case(&mf.sha256));
                if same_size && same_hash {
                    return Ok::<_, Error>((false, 0));
                }
            }
            upload(client, bucket, &k, &snap.file(f), mf, threshold, part).await?;
            Ok((true, mf.size))
        }
    }))
    .buffer_unordered(ctx.models().max_workers.min(8))
    .try_collect()
    .await?;
    let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    let mk = key(&prefix, MANIFEST_NAME);
    client
        .put_object()
        .bucket(&bucket)
        .key(&mk)
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| s3_error("PutObject", &format!("s3://{bucket}/{mk}"), e))?;
    Ok(Exported {
        name: t.name.clone(),
        repo_id: t.repo.repo_id.clone(),
        commit: snap.commit,
        destination: dest.to_owned(),
        files: manifest.files.len(),
        uploaded: uploads.iter().filter(|u| u.0).count(),
        unchanged: uploads.iter().filter(|u| !u.0).count(),
        bytes_uploaded: uploads.iter().map(|u| u.1).sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    k: &str,
    path: &Path,
    mf: &ManifestFile,
    threshold: u64,
    part: u64,
) -> Result<()> {
    let what = format!("s3://{bucket}/{k}");
    let read_err =
        |e: aws_smithy_types::byte_stream::error::Error| Error::Source(format!("reading {}: {e}", path.display()));
    if mf.size < threshold {
        let body = ByteStream::from_path(path).await.map_err(read_err)?;
        client
            .put_object()
            .bucket(bucket)
            .key(k)
            .metadata("sha256", &mf.sha256)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error("PutObject", &what, e))?;
        return Ok(());
    }
    // Large files: multipart, parts streamed from the file (at most 10,000 parts).
    let part = part.max(mf.size.div_ceil(10_000));
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(k)
        .metadata("sha256", &mf.sha256)
        .send()
        .await
        .map_err(|e| s3_error("CreateMultipartUpload", &what, e))?;
    let upload_id = created.upload_id.ok_or_else(|| Error::Source(format!("{what}: no multipart upload id")))?;
    let result = async {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1;
        while offset < mf.size {
            let len = part.min(mf.size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(read_err)?;
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(k)
                .upload_id(&upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", &what, e))?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build());
            offset += len;
            number += 1;
        }
        client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(k)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", &what, e))?;
        Ok::<_, Error>(())
    }
    .await;
    if result.is_err() {
        let _ = client.abort_multipart_upload().bucket(bucket).key(k).upload_id(&upload_id).send().await;
    }
    result
}
