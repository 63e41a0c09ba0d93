//! `Store` on Amazon S3 (or LocalStack) via aws-sdk-s3.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{Object, ObjectInfo, Store};
use crate::aws::backend_error;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    multipart_threshold: u64,
    part_size: u64,
}

impl S3Store {
    /// `force_path_style` is needed by LocalStack and most S3-compatible stores.
    pub fn new(sdk: &aws_config::SdkConfig, force_path_style: bool, multipart_threshold: u64, part_size: u64) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(force_path_style).build();
        Self { client: Client::from_conf(conf), multipart_threshold, part_size }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn put_multipart(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<()> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| backend_error("s3", "CreateMultipartUpload", e))?;
        let upload_id = upload.upload_id.ok_or_else(|| Error::Backend {
            service: "s3",
            operation: "CreateMultipartUpload",
            message: "no upload id".into(),
            transient: true,
        })?;
        let result = async {
            let mut parts = Vec::new();
            for (i, chunk) in body.chunks(self.part_size as usize).enumerate() {
                let number = i as i32 + 1;
                let out = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(body.slice_ref(chunk)))
                    .send()
                    .await
                    .map_err(|e| backend_error("s3", "UploadPart", e))?;
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build());
            }
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| backend_error("s3", "CompleteMultipartUpload", e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Leave no orphaned parts behind (they cost money on S3).
            let _ = self.client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
        }
        result
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Object> {
        let out = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(Error::NotFound { bucket: bucket.into(), key: key.into() });
            }
            Err(e) => {
                let err = backend_error("s3", "GetObject", e);
                // NoSuchBucket and 404s without a code are permanent "not found" for a job.
                if err.to_string().contains("NoSuchBucket") {
                    return Err(Error::NotFound { bucket: bucket.into(), key: key.into() });
                }
                return Err(err);
            }
        };
        let size = out.content_length.unwrap_or(0).max(0) as u64;
        if size > max_bytes {
            return Err(Error::LimitExceeded(format!(
                "s3://{bucket}/{key} is {size} bytes, over the limit of {max_bytes}"
            )));
        }
        let etag = out.e_tag;
        let data = out.body.collect().await.map_err(|e| Error::Backend {
            service: "s3",
            operation: "GetObject",
            message: format!("reading body of s3://{bucket}/{key}: {e}"),
            transient: true,
        })?;
        Ok(Object { body: data.into_bytes(), etag })
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<()> {
        if body.len() as u64 >= self.multipart_threshold {
            return self.put_multipart(bucket, key, body, content_type).await;
        }
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| backend_error("s3", "PutObject", e))?;
        Ok(())
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: out.content_length.unwrap_or(0).max(0) as u64,
                etag: out.e_tag,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(backend_error("s3", "HeadObject", e)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend_error("s3", "ListObjectsV2", e))?;
            for obj in page.contents.unwrap_or_default() {
                if let Some(key) = obj.key {
                    out.push(ObjectInfo { key, size: obj.size.unwrap_or(0).max(0) as u64, etag: obj.e_tag });
                }
            }
        }
        Ok(out)
    }
}
