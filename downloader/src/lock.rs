//! Cache locks (`flock`, released by the kernel when a holder dies, so a killed pod never leaves a
//! stale lock): one per repo for a whole download, so two downloaders started together (two pods, a
//! retried Job) never work on the same repo at once — the second waits, then finds the work done —
//! and one per blob, at the path `huggingface_hub` uses (`.locks/models--org--name/<etag>.lock`),
//! so a Python download of the same blob in the same cache is not interleaved with ours.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use docfleet_core::models::RepoCache;

use crate::{Error, Result};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
    /// How long acquiring it waited.
    pub waited: Duration,
}

/// The repo-wide lock of the downloader.
pub async fn repo(rc: &RepoCache, timeout: Duration) -> Result<Lock> {
    acquire(&rc.lock_dir().join("docfleet.lock"), timeout, &rc.repo_id, true).await
}

/// The per-blob lock shared with `huggingface_hub`.
pub async fn blob(rc: &RepoCache, etag: &str, timeout: Duration) -> Result<Lock> {
    acquire(&rc.lock_dir().join(format!("{etag}.lock")), timeout, &rc.repo_id, false).await
}

const POLL: Duration = Duration::from_millis(100);
const REPORT_EVERY: Duration = Duration::from_secs(30);

async fn acquire(path: &Path, timeout: Duration, repo_id: &str, record_pid: bool) -> Result<Lock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening the lock {}", path.display()), e))?;
    let started = Instant::now();
    let mut reported: Option<Instant> = None;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(Error::io(format!("locking {}", path.display()), e)),
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::Lock(format!(
                "another downloader has held the cache lock {} for {} s (models.lock_timeout_seconds); {}",
                path.display(),
                waited.as_secs(),
                holder(&mut file)
            )));
        }
        if reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            tracing::info!(repo = repo_id, lock = %path.display(), holder = %holder(&mut file), waited_s = waited.as_secs(), "waiting for another downloader to finish with this repo");
            reported = Some(Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
    if record_pid {
        // Only the holder writes, so a waiter's message can name it.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {} on {}", std::process::id(), hostname());
    }
    Ok(Lock { _file: file, path: path.to_owned(), waited: started.elapsed() })
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    if s.trim().is_empty() { "holder unknown".into() } else { format!("held by {}", s.trim()) }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_then_times_out_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let rc = RepoCache::new(dir.path(), "org/m");
        let first = repo(&rc, Duration::from_secs(1)).await.unwrap();
        assert!(first.path.ends_with(".locks/models--org--m/docfleet.lock"));
        // flock conflicts between two open file descriptions, even in one process.
        let err = repo(&rc, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(err, Error::Lock(_)), "{err}");
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        let again = repo(&rc, Duration::from_millis(300)).await.unwrap();
        assert!(again.waited < Duration::from_millis(300));
        let b = blob(&rc, "abc", Duration::from_secs(1)).await.unwrap();
        assert!(b.path.ends_with(".locks/models--org--m/abc.lock"));
    }
}
