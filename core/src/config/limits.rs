//! `[limits]`: limits applied to every input document.

use serde::{Deserialize, Serialize};

use super::Fail;
use crate::Result;

/// Limits applied to every input document; past them a job fails permanently.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest input object in bytes.
    pub max_input_bytes: u64,
    /// Largest page in pixels (width × height), checked before decoding.
    pub max_pixels: u64,
    /// Most pages per document.
    pub max_pages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_input_bytes: 64 * 1024 * 1024, max_pixels: 64_000_000, max_pages: 500 }
    }
}

impl Limits {
    /// Check values the types cannot: ranges, relations between keys.
    pub(super) fn validate(&self, fail: &Fail) -> Result<()> {
        if self.max_input_bytes == 0 || self.max_pixels == 0 || self.max_pages == 0 {
            return fail("limits", "limits must be greater than zero".into());
        }
        Ok(())
    }
}
