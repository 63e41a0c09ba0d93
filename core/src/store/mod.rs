//! The `Store` trait: object storage for documents, results and error records, implemented on
//! S3 (or LocalStack) and on the local filesystem.

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

pub mod local;
pub mod s3;

pub use local::LocalStore;
pub use s3::S3Store;

/// An object's key, size and entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// An object's bytes and the entity tag of the version they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub body: Bytes,
    /// Changes whenever the object's content is replaced (S3's ETag; size and mtime locally).
    pub etag: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Read a whole object with its entity tag; objects larger than `max_bytes` fail with
    /// `LimitExceeded` before their body is read, a missing object with `NotFound`.
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Object>;

    /// Read a whole object's bytes (as [`Store::get_object`]).
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes> {
        Ok(self.get_object(bucket, key, max_bytes).await?.body)
    }

    /// Write an object, replacing any existing one atomically (readers see old or new, never a mix).
    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<()>;

    /// Size and etag of an object, `None` if it does not exist.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>>;

    /// Every object under `prefix`, in key order.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>>;
}
