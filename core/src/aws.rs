//! AWS SDK configuration and error classification shared by the SQS and S3 backends.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::Error;
use crate::config::AwsSettings;

/// Build the SDK configuration: docfleet's settings first, then the SDK's own environment and
/// profile handling (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials chain) for anything unset.
pub async fn sdk_config(aws: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(id), Some(secret)) = (&aws.access_key_id, &aws.secret_access_key) {
        let token = aws.session_token.as_ref().map(|t| t.expose().to_owned());
        loader = loader.credentials_provider(Credentials::new(id, secret.expose(), token, None, "docfleet-config"));
    }
    loader.load().await
}

/// Error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMS.ThrottlingException",
];

/// Turn an SDK error into a docfleet [`Error::Backend`], classifying it as transient or not.
pub fn backend_error<E>(service: &'static str, operation: &'static str, err: SdkError<E, Response>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(ctx) => {
            ctx.raw().status().is_server_error()
                || ctx.raw().status().as_u16() == 429
                || ctx.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
        }
        _ => false,
    };
    Error::Backend { service, operation, message: DisplayErrorContext(&err).to_string(), transient }
}

/// The error code of an SDK service error, if any.
pub fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<String> {
    err.as_service_error().and_then(|e| e.code()).map(str::to_owned)
}
