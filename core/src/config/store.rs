//! `[store]`: where documents are read from and results written to.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Fail;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// Amazon S3 (or LocalStack) through aws-sdk-s3.
    S3,
    /// A directory on the local filesystem, one sub-directory per bucket.
    Local,
}

/// Where documents are read from and results written to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `s3` or `local`.
    pub backend: StoreBackend,
    /// Bucket that `docfleet enqueue` uploads documents to.
    pub input_bucket: String,
    /// Key prefix for uploaded documents.
    pub input_prefix: String,
    /// Bucket that results and error records are written to.
    pub output_bucket: String,
    /// Key prefix of result objects (a job's `output_prefix` replaces it).
    pub results_prefix: String,
    /// Key prefix of error records.
    pub errors_prefix: String,
    /// Buckets jobs may read from; empty means only `input_bucket`.
    pub allowed_input_buckets: Vec<String>,
    /// Key prefixes jobs may read from (empty: any key in an allowed bucket).
    pub allowed_input_prefixes: Vec<String>,
    /// Root directory of the local store.
    pub local_root: PathBuf,
    /// Objects at least this large are uploaded with multipart upload.
    pub multipart_threshold_bytes: u64,
    /// Part size of multipart uploads (S3's minimum is 5 MiB).
    pub multipart_part_bytes: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Local,
            input_bucket: "docfleet-input".into(),
            input_prefix: "documents".into(),
            output_bucket: "docfleet-output".into(),
            results_prefix: "results".into(),
            errors_prefix: "errors".into(),
            allowed_input_buckets: Vec::new(),
            allowed_input_prefixes: Vec::new(),
            local_root: PathBuf::from(".docfleet/store"),
            multipart_threshold_bytes: 16 * 1024 * 1024,
            multipart_part_bytes: 8 * 1024 * 1024,
        }
    }
}

impl StoreSettings {
    /// Whether a job may read from `bucket`.
    pub fn input_bucket_allowed(&self, bucket: &str) -> bool {
        if self.allowed_input_buckets.is_empty() {
            bucket == self.input_bucket
        } else {
            self.allowed_input_buckets.iter().any(|b| b == bucket)
        }
    }

    /// Whether a job may read `key` (checked after the bucket).
    pub fn input_key_allowed(&self, key: &str) -> bool {
        self.allowed_input_prefixes.is_empty()
            || self.allowed_input_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        for (key, bucket) in [("store.input_bucket", &self.input_bucket), ("store.output_bucket", &self.output_bucket)]
        {
            if let Err(e) = crate::keys::validate_bucket(bucket) {
                return fail(key, e.to_string());
            }
        }
        for (key, prefix) in [
            ("store.input_prefix", &self.input_prefix),
            ("store.results_prefix", &self.results_prefix),
            ("store.errors_prefix", &self.errors_prefix),
        ] {
            if let Err(e) = crate::keys::validate_prefix(prefix) {
                return fail(key, e.to_string());
            }
        }
        if self.multipart_part_bytes < 5 * 1024 * 1024 {
            return fail("store.multipart_part_bytes", "must be at least 5 MiB (S3's minimum part size)".into());
        }
        Ok(())
    }
}
