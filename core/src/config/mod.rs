//! Layered configuration: built-in defaults → `profiles/<profile>.toml` → `--config FILE` →
//! environment (`DOCFLEET__SECTION__KEY`). Later layers win.
//!
//! Every key is checked against the known schema, so a typo fails at start-up with a message that
//! names the key and the layer it came from instead of being silently ignored.
//!
//! One module per section (its struct, defaults, documentation and value checks); the loader
//! (layers, origins, unknown keys) in [`loader`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Result;

mod aws;
mod limits;
mod loader;
mod log;
mod models;
mod ocr;
mod queue;
mod runtime;
mod scaler;
mod store;
mod vlm;
mod worker;

pub use aws::AwsSettings;
pub use limits::Limits;
pub use loader::{LoadOptions, Loaded, load, load_with_env, profile_name};
pub use log::{LogFormat, LogSettings};
pub use models::{ModelRepo, ModelSource, ModelsSettings, OnnxVariant, SourceKind, env_flag};
pub use ocr::{OcrModels, OcrSettings};
pub use queue::{QueueBackend, QueueSettings};
pub use runtime::{ExecutionProvider, GraphOptimization, RuntimeSettings};
pub use scaler::ScalerSettings;
pub use store::{StoreBackend, StoreSettings};
pub use vlm::{
    VlmDecoderLayout, VlmDtype, VlmEngineKind, VlmImageFormat, VlmServerPreset, VlmServerSettings, VlmSettings,
};
pub use worker::WorkerSettings;

/// Profiles shipped with docfleet, embedded so a binary works from any directory.
pub const PROFILES: &[(&str, &str)] = &[
    ("local-dev", include_str!("../../../profiles/local-dev.toml")),
    ("aws-mock", include_str!("../../../profiles/aws-mock.toml")),
    ("k8s", include_str!("../../../profiles/k8s.toml")),
];

/// Profile used when neither `--profile` nor `DOCFLEET_PROFILE` names one.
pub const DEFAULT_PROFILE: &str = "local-dev";

/// Environment variable prefix: `DOCFLEET__WORKER__CONCURRENCY=8` sets `worker.concurrency`.
pub const ENV_PREFIX: &str = "DOCFLEET";

/// The whole effective configuration, one section per concern.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub log: LogSettings,
    pub aws: AwsSettings,
    pub queue: QueueSettings,
    pub store: StoreSettings,
    pub worker: WorkerSettings,
    pub limits: Limits,
    pub models: ModelsSettings,
    pub runtime: RuntimeSettings,
    pub ocr: OcrSettings,
    pub vlm: VlmSettings,
    pub scaler: ScalerSettings,
}

/// How a section's check reports a bad value: the key and why (the loader adds the key's origin).
type Fail<'a> = dyn Fn(&str, String) -> Result<()> + 'a;

/// A value that never appears in logs or `config show`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; only for handing to the SDK.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Resolve a possibly relative path against a base directory.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}
