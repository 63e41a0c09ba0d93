//! Bucket and key validation, and the deterministic result/error keys.
//!
//! Output keys are derived only from validated parts, so a job can never make the worker write
//! outside its configured prefixes (no `..` segments, no absolute paths, no control characters).

use crate::{Error, Result};

/// S3 bucket naming rules (3–63 characters of lowercase letters, digits, `.` and `-`).
pub fn validate_bucket(bucket: &str) -> Result<()> {
    let ok_chars = bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends && !bucket.contains("..") {
        Ok(())
    } else {
        Err(Error::InvalidJob(format!("`{bucket}` is not a valid bucket name")))
    }
}

/// An object key that is safe to use as a path component chain: non-empty, at most 1024 bytes,
/// no leading `/`, no empty, `.` or `..` segments, no control characters or backslashes.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::InvalidJob(format!("object key must be 1–1024 bytes, got {}", key.len())));
    }
    check_segments(key, "object key")
}

/// A key prefix (may be empty); same rules as [`validate_key`] otherwise, a trailing `/` allowed.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return Ok(());
    }
    if trimmed.len() > 512 {
        return Err(Error::InvalidJob("prefix longer than 512 bytes".into()));
    }
    check_segments(trimmed, "prefix")
}

fn check_segments(value: &str, what: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control() || c == '\\') {
        return Err(Error::InvalidJob(format!(
            "{what} `{}` contains control characters or backslashes",
            value.escape_default()
        )));
    }
    if value.starts_with('/') {
        return Err(Error::InvalidJob(format!("{what} `{value}` must not be absolute")));
    }
    if value.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(Error::InvalidJob(format!("{what} `{value}` has an empty, `.` or `..` segment")));
    }
    Ok(())
}

fn join(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() { rest.to_owned() } else { format!("{prefix}/{rest}") }
}

/// Key of a job's result: `<prefix>/<pipeline>/<input bucket>/<input key>.json`.
/// The same input and pipeline always map to the same key, so a redelivered job overwrites its
/// result instead of adding a second one.
pub fn result_key_for(prefix: &str, pipeline: &str, input_bucket: &str, input_key: &str) -> String {
    join(prefix, &format!("{pipeline}/{input_bucket}/{input_key}.json"))
}

/// Key of the plain-text rendition beside a result, for pipelines that produce text.
pub fn text_key_for(result_key: &str) -> String {
    rendition_key_for(result_key, "txt")
}

/// Key of a rendition with extension `ext` (`txt`, `md`) beside a result: the result key with
/// `.json` replaced by `.<ext>`.
pub fn rendition_key_for(result_key: &str, ext: &str) -> String {
    format!("{}.{ext}", result_key.strip_suffix(".json").unwrap_or(result_key))
}

/// Rendition extensions a pipeline may write beside its result; `docfleet run` copies those that
/// exist into `--out`.
pub const RENDITIONS: &[&str] = &["txt", "md"];

/// Key of a job's error record: `<errors prefix>/<pipeline>/<input bucket>/<input key>.json`.
pub fn error_key_for(errors_prefix: &str, pipeline: &str, input_bucket: &str, input_key: &str) -> String {
    join(errors_prefix, &format!("{pipeline}/{input_bucket}/{input_key}.json"))
}

/// Key of the error record for a message that is not a job at all.
pub fn message_error_key_for(errors_prefix: &str, message_id: &str) -> String {
    let safe: String =
        message_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    join(errors_prefix, &format!("messages/{safe}.json"))
}

/// Pipeline names are short identifiers; they become a key segment.
pub fn validate_pipeline_name(name: &str) -> Result<()> {
    if !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(Error::InvalidJob(format!("`{}` is not a valid pipeline name", name.escape_default())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_keys_are_deterministic_and_namespaced() {
        let a = result_key_for("results", "inspect", "in-bucket", "docs/a.png");
        assert_eq!(a, "results/inspect/in-bucket/docs/a.png.json");
        assert_eq!(a, result_key_for("results/", "inspect", "in-bucket", "docs/a.png"));
        assert_eq!(result_key_for("", "ocr", "b12", "x"), "ocr/b12/x.json");
        assert_eq!(error_key_for("errors", "ocr", "b12", "x"), "errors/ocr/b12/x.json");
        assert_eq!(text_key_for("results/ocr/b/x.pdf.json"), "results/ocr/b/x.pdf.txt");
        assert_eq!(rendition_key_for("results/vlm/b/x.pdf.json", "md"), "results/vlm/b/x.pdf.md");
        assert_eq!(message_error_key_for("errors", "ab/../c d"), "errors/messages/ab____c_d.json");
    }

    #[test]
    fn hostile_keys_and_prefixes_are_refused() {
        for bad in ["", "/etc/passwd", "a/../b", "../x", "a//b", "./a", "a\u{0}b", "a\nb", "a\\b"] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "dir/file.png", "with space/ü.pdf", "a..b"] {
            validate_key(good).unwrap();
        }
        for bad in ["../up", "/abs", "a/../b", "x\r"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?} accepted");
        }
        validate_prefix("").unwrap();
        validate_prefix("results/2026/").unwrap();
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        validate_bucket("docfleet-input").unwrap();
        validate_bucket("a.b-c1").unwrap();
        for bad in ["ab", "Upper", "-lead", "trail-", "a..b", "a_b", &"x".repeat(64)] {
            assert!(validate_bucket(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn pipeline_names_are_identifiers() {
        validate_pipeline_name("inspect").unwrap();
        validate_pipeline_name("ocr-v2_fast").unwrap();
        assert!(validate_pipeline_name("../x").is_err());
        assert!(validate_pipeline_name("").is_err());
    }
}
