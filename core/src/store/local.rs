//! `Store` on a local directory: `<root>/<bucket>/<key>`, written with temp file + rename.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, Store};
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

fn io_error(operation: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Backend { service: "local-store", operation, transient: false, message: format!("{}: {e}", path.display()) }
}

#[async_trait]
impl Store for LocalStore {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes> {
        let path = self.path_of(bucket, key)?;
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                return Err(Error::NotFound { bucket: bucket.into(), key: key.into() });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound { bucket: bucket.into(), key: key.into() });
            }
            Err(e) => return Err(io_error("get", &path, e)),
        };
        if meta.len() > max_bytes {
            return Err(Error::LimitExceeded(format!(
                "s3://{bucket}/{key} is {} bytes, over the limit of {max_bytes}",
                meta.len()
            )));
        }
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|e| io_error("get", &path, e))
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
            Ok(m) if m.is_file() => Ok(Some(ObjectInfo { key: key.to_owned(), size: m.len(), etag: None })),
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
                            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                            out.push(ObjectInfo { key, size, etag: None });
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
