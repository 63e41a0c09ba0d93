//! The Python side of the VLM generation benches (`idefics3`, `qwen2vl`, `florence2`): one child
//! process, run after the Rust side, that prints a JSON line per (engine, row); here those lines
//! are split into the numpy + onnxruntime loop's rows and `transformers`' rows, in order.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

/// The rows a Python side reported, per engine, in the order it ran them.
pub struct Rows {
    pub ort_loop: Vec<Value>,
    pub transformers: Vec<Value>,
}

/// Run `cmd` (the Python side, stderr shown) and expect `expected` rows from each engine.
pub fn run(mut cmd: Command, script: &Path, expected: usize) -> anyhow::Result<Rows> {
    let out = cmd.stderr(Stdio::inherit()).output().context("running the Python side")?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), out.status);
    }
    let mut rows = Rows { ort_loop: Vec::new(), transformers: Vec::new() };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        match v["engine"].as_str() {
            Some("onnxruntime") => rows.ort_loop.push(v),
            Some("transformers") => rows.transformers.push(v),
            _ => {}
        }
    }
    if rows.ort_loop.len() != expected || rows.transformers.len() != expected {
        bail!(
            "{} reported {} onnxruntime and {} transformers rows, expected {expected} each",
            script.display(),
            rows.ort_loop.len(),
            rows.transformers.len()
        );
    }
    Ok(rows)
}

/// The command for `script` (under `scripts/vlm/`) on `python`, failing early when the venv is missing.
pub fn command(python: &Path, script: &str) -> anyhow::Result<(Command, PathBuf)> {
    if !python.exists() {
        bail!("{} is missing: create the vlm venv (scripts/vlm/requirements.txt)", python.display());
    }
    let script = docfleet_tests::repo_root().join("scripts/vlm").join(script);
    let mut cmd = Command::new(python);
    cmd.arg(&script);
    Ok((cmd, script))
}

/// Fail unless `model` holds a bench model (its merged decoder), naming the command that makes
/// one: `make` is that command's script and arguments before the model directory.
pub fn require_model(model: &Path, make: &str) -> anyhow::Result<()> {
    if !model.join("onnx/decoder_model_merged.onnx").is_file() {
        bail!(
            "{} has no bench model: run `~/.cache/docfleet/vlm-venv/bin/python scripts/vlm/{make} {}`",
            model.display(),
            model.display()
        );
    }
    Ok(())
}

/// A bench model's pages: `DIR/pages/*.png` in name order.
pub fn pages(model: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = model.join("pages");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no pages in {}", dir.display());
    }
    Ok(files)
}
