//! The model's own tokenizer (`tokenizer.json`, Hugging Face `tokenizers`): task prompts in,
//! generated ids out as text with special tokens skipped — the same Rust code `transformers`'
//! fast tokenizers call.

use std::path::Path;

use docfleet_core::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Model(format!("cannot load the tokenizer {}: {e}", path.display())))?;
        Ok(Self { inner })
    }

    /// Token ids of a prompt, without the special tokens a template would add (`add_special_tokens=False`).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(prompt, false)
            .map_err(|e| Error::InvalidJob(format!("the prompt cannot be tokenised: {e}")))?;
        Ok(enc.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// Text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&id| u32::try_from(id).ok()).collect();
        self.inner.decode(&ids, true).map_err(|e| Error::Model(format!("cannot decode generated tokens: {e}")))
    }

    /// Text of ids with special tokens kept.
    pub fn decode_with_special(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&id| u32::try_from(id).ok()).collect();
        self.inner.decode(&ids, false).map_err(|e| Error::Model(format!("cannot decode generated tokens: {e}")))
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
