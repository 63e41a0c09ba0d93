//! `[log]`: log output.

use serde::{Deserialize, Serialize};

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `auto` (human-readable, coloured on a terminal), `text`, or `json` (one object per line).
    pub format: LogFormat,
    /// Default filter directive (`info`, `docfleet=debug,warn`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Auto, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}
