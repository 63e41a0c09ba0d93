//! `Store` on a local directory: `<root>/<bucket>/<key>`, written with temp file + rename.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Object, ObjectInfo, Store};
use crate::keys::{validate_bucket, validate_key, validate_prefix};
use crate::{Error, Result};

/// Suffix of in-progress writes; such files are never listed.
const PARTIAL_SUFFIX: &str = ".docfleet-partial";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of an object; bucket and key are validated so no key can leave the root.
    pub fn path_of(&self, bucket: &str, key: &str) -> Result<PathBuf> {
        validate_bucket(bucket)?;
        validate_key(key)?;
        if key.ends_with(PARTIAL_SUFFIX) {
            return Err(Error::InvalidJob(format!("object keys may not end in {PARTIAL_SUFFIX}")));
        }
        Ok(self.root.join(bucket).join(key))
    }
}

/// A local object's entity tag: its inode, size and modification time. Every put renames a new
/// file into place, so the inode changes even when two puts land within one timestamp tick.
fn local_etag(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    format!("\"{inode:x}-{:x}-{:x}\"", meta.len(), modified.as_nanos())
}

fn io_error(operation: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Backend { service: "local-store", operation, transient: false, message: format!("{}: {e}", path.display()) }
}

#[async_trait]
impl Store for LocalStore {
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Object> {
        use tokio::io::AsyncReadExt;
        let path = self.path_of(bucket, key)?;
        let not_found = || Error::NotFound { bucket: bucket.into(), key: key.into() };
        // One handle for the metadata and the bytes: a concurrent replace (rename) cannot pair
        // the new entity tag with the old content.
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(io_error("get", &path, e)),
        };
        let meta = file.metadata().await.map_err(|e| io_error("get", &path, e))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        if meta.len() > max_bytes {
            return Err(Error::LimitExceeded(format!(
                "s3://{bucket}/{key} is {} bytes, over the limit of {max_bytes}",
                meta.len()
            )));
        }
        let mut body = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut body).await.map_err(|e| io_error("get", &path, e))?;
        Ok(Object { body: Bytes::from(body), etag: Some(local_etag(&meta)) })
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, _content_type: &str) -> Result<()> {
        let path = self.path_of(bucket, key)?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let parent = path.parent().expect("object path has a parent");
            std::fs::create_dir_all(parent).map_err(|e| io_error("put", parent, e))?;
            let tmp = parent.join(format!(
                ".{}.{}{PARTIAL_SUFFIX}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                uuid::Uuid::new_v4().simple()
            ));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&body)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_error("put", &path, e)
            })
        })
        .await
        .map_err(|e| Error::Backend {
            service: "local-store",
            operation: "put",
            message: e.to_string(),
            transient: true,
        })?
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        let path = self.path_of(bucket, key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => {
                Ok(Some(ObjectInfo { key: key.to_owned(), size: m.len(), etag: Some(local_etag(&m)) }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("head", &path, e)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        validate_bucket(bucket)?;
        validate_prefix(prefix).or_else(|_| validate_key(prefix))?;
        let base = self.root.join(bucket);
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || -> Result<Vec<ObjectInfo>> {
            let mut out = Vec::new();
            let mut stack = vec![base.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("list", &dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                    let path = entry.path();
                    let ft = entry.file_type().map_err(|e| io_error("list", &path, e))?;
                    if ft.is_dir() {
                        stack.push(path);
                    } else if ft.is_file() && !path.to_string_lossy().ends_with(PARTIAL_SUFFIX) {
                        let rel = path.strip_prefix(&base).expect("under base");
                        let key =
                            rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                        if key.starts_with(&prefix) {
                            let (size, etag) = match entry.metadata() {
                                Ok(m) => (m.len(), Some(local_etag(&m))),
                                Err(_) => (0, None),
                            };
                            out.push(ObjectInfo { key, size, etag });
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| Error::Backend {
            service: "local-store",
            operation: "list",
            message: e.to_string(),
            transient: true,
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_head_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put("bkt", "a/b/c.json", Bytes::from_static(b"{}"), "application/json").await.unwrap();
        store.put("bkt", "a/d.txt", Bytes::from_static(b"hello"), "text/plain").await.unwrap();
        store.put("bkt", "a/d.txt", Bytes::from_static(b"hello!"), "text/plain").await.unwrap();
        assert_eq!(store.get("bkt", "a/d.txt", 100).await.unwrap(), Bytes::from_static(b"hello!"));
        assert_eq!(store.head("bkt", "a/d.txt").await.unwrap().unwrap().size, 6);
        assert!(store.head("bkt", "nope").await.unwrap().is_none());
        let keys: Vec<String> = store.list("bkt", "a/").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["a/b/c.json", "a/d.txt"], "overwrite leaves one object, no temp files");
        assert!(store.list("other", "").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn entity_tags_follow_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.put("bkt", "doc", Bytes::from_static(b"first"), "text/plain").await.unwrap();
        let first = store.get_object("bkt", "doc", 100).await.unwrap();
        assert_eq!(first.body, Bytes::from_static(b"first"));
        let etag = first.etag.clone().expect("local objects have an etag");
        assert_eq!(store.head("bkt", "doc").await.unwrap().unwrap().etag.as_ref(), Some(&etag), "head agrees with get");
        assert_eq!(store.list("bkt", "").await.unwrap()[0].etag.as_ref(), Some(&etag), "list agrees with get");
        assert_eq!(
            store.get_object("bkt", "doc", 100).await.unwrap().etag,
            Some(etag.clone()),
            "stable while unchanged"
        );
        // Same size, new content, at once: still a new tag.
        store.put("bkt", "doc", Bytes::from_static(b"again"), "text/plain").await.unwrap();
        let second = store.get_object("bkt", "doc", 100).await.unwrap();
        assert_eq!(second.body, Bytes::from_static(b"again"));
        assert_ne!(second.etag, Some(etag), "a replaced object has a new etag");
    }

    #[tokio::test]
    async fn limits_missing_objects_and_escapes_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("root"));
        store.put("bkt", "big", Bytes::from(vec![0u8; 100]), "application/octet-stream").await.unwrap();
        assert!(matches!(store.get("bkt", "big", 99).await, Err(Error::LimitExceeded(_))));
        assert!(matches!(store.get("bkt", "missing", 99).await, Err(Error::NotFound { .. })));
        for key in ["../escape", "/etc/passwd", "a/../../x"] {
            assert!(store.put("bkt", key, Bytes::new(), "x").await.is_err(), "{key}");
        }
        assert!(store.put("../bkt", "k", Bytes::new(), "x").await.is_err());
        assert!(!dir.path().join("escape").exists());
    }
}
