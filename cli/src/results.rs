//! `docfleet results`: download results and error records.

use std::path::{Path, PathBuf};

use anyhow::Context;
use docfleet_core::keys::validate_key;
use docfleet_core::{Backends, Settings};

/// Where `results` and `run` write unless `--out` says otherwise.
pub const DEFAULT_OUT: &str = "docfleet-out";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into; object keys become relative paths.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
}

/// Write `body` to `dir/<key>`, refusing keys that would leave `dir`.
pub fn write_under(dir: &Path, key: &str, body: &[u8]) -> anyhow::Result<PathBuf> {
    validate_key(key)?;
    let path = dir.join(key);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub async fn run(settings: &Settings, backends: &Backends, args: &Args) -> anyhow::Result<()> {
    let bucket = &settings.store.output_bucket;
    let mut counts = [0u64; 2];
    for (i, prefix) in [&settings.store.results_prefix, &settings.store.errors_prefix].into_iter().enumerate() {
        for obj in backends.store.list(bucket, prefix).await? {
            let body = backends.store.get(bucket, &obj.key, u64::MAX).await?;
            write_under(&args.out, &obj.key, &body)?;
            counts[i] += 1;
        }
    }
    println!(
        "downloaded {} result objects and {} error records from {bucket} into {}",
        counts[0],
        counts[1],
        args.out.display()
    );
    Ok(())
}
