//! `[aws]`: the AWS SDK's region, endpoint and credentials.

use serde::{Deserialize, Serialize};

use super::Fail;
use super::Secret;
use crate::Result;

/// AWS SDK settings. Unset values fall back to the SDK's own environment and profile handling
/// (`AWS_REGION`, `AWS_ENDPOINT_URL`, the default credentials chain, IRSA).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsSettings {
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Endpoint for SQS and S3 (LocalStack: `http://127.0.0.1:4566`).
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (`http://host/bucket/key`), needed by LocalStack and most mirrors.
    pub force_path_style: bool,
    /// Static access key id; prefer the SDK credentials chain outside development.
    pub access_key_id: Option<String>,
    /// Static secret key (redacted in `config show` and logs).
    pub secret_access_key: Option<Secret>,
    /// Static session token (redacted).
    pub session_token: Option<Secret>,
}

impl AwsSettings {
    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return fail("aws.endpoint_url", format!("must start with http:// or https://, got `{url}`"));
        }
        Ok(())
    }
}
