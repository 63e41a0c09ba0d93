//! The model's own tokenizer (`tokenizer.json`, Hugging Face `tokenizers`): task prompts in,
//! generated ids out as text with special tokens skipped — the same Rust code `transformers`'
//! fast tokenizers call — then, when the model's `tokenizer_config.json` sets
//! `clean_up_tokenization_spaces`, the clean-up `transformers` applies after it ("twice ." →
//! "twice.").

use std::path::Path;

use docfleet_core::{Error, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `tokenizer_config.json`'s `clean_up_tokenization_spaces` (absent: false, as in `transformers`).
    clean_up_spaces: bool,
}

impl Tokenizer {
    /// Load `tokenizer.json`, and the `tokenizer_config.json` beside it when there is one.
    pub fn load(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Model(format!("cannot load the tokenizer {}: {e}", path.display())))?;
        let config = path.with_file_name("tokenizer_config.json");
        let clean_up_spaces = match std::fs::read(&config) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", config.display())))?;
                match v.get("clean_up_tokenization_spaces") {
                    None | Some(serde_json::Value::Null) => false,
                    Some(serde_json::Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(Error::Model(format!(
                            "{}: `clean_up_tokenization_spaces` must be true or false, got {other}",
                            config.display()
                        )));
                    }
                }
            }
            Err(_) => false,
        };
        Ok(Self { inner, clean_up_spaces })
    }

    /// Token ids of a prompt, without the special tokens a template would add (`add_special_tokens=False`).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<i64>> {
        self.encode(prompt, false)
    }

    /// Token ids of a text; `add_special_tokens` as in `tokenizer(text, add_special_tokens=...)`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::InvalidJob(format!("the prompt cannot be tokenised: {e}")))?;
        Ok(enc.get_ids().iter().map(|&id| id as i64).collect())
    }

    /// Text of generated ids, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        self.decode_ids(ids, true)
    }

    /// Text of ids with special tokens kept.
    pub fn decode_with_special(&self, ids: &[i64]) -> Result<String> {
        self.decode_ids(ids, false)
    }

    fn decode_ids(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&id| u32::try_from(id).ok()).collect();
        let text = self
            .inner
            .decode(&ids, skip_special)
            .map_err(|e| Error::Model(format!("cannot decode generated tokens: {e}")))?;
        Ok(if self.clean_up_spaces { clean_up_tokenization(&text) } else { text })
    }

    /// The id of a token (added tokens included), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// `PreTrainedTokenizerBase.clean_up_tokenization`: spaces before punctuation and English
/// contractions removed, replacement by replacement in `transformers`' order.
pub fn clean_up_tokenization(text: &str) -> String {
    const REPLACEMENTS: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    let mut out = text.to_owned();
    for (from, to) in REPLACEMENTS {
        if out.contains(from) {
            out = out.replace(from, to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_up_follows_transformers_replacements() {
        assert_eq!(clean_up_tokenization("twice . Why ? No ! a , b"), "twice. Why? No! a, b");
        assert_eq!(
            clean_up_tokenization("it ' s I 'm we 've they 're do n't he 's"),
            "it's I'm we've they're don't he's"
        );
        // Python's str.replace does not rescan what it produced: "  ." keeps one space.
        assert_eq!(clean_up_tokenization("a  ."), "a .");
        assert_eq!(clean_up_tokenization("no change"), "no change");
    }

    /// The fixture tokenizer with `clean_up_tokenization_spaces` on and off: only the flag
    /// changes what decoding returns.
    #[test]
    fn decoding_applies_the_configs_clean_up_flag() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vlm/tiny-ved/merged");
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(fixture.join("tokenizer.json"), tmp.path().join("tokenizer.json")).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture.join("tokenizer_config.json")).unwrap()).unwrap();
        let write = |flag: serde_json::Value| {
            let mut c = config.clone();
            c["clean_up_tokenization_spaces"] = flag;
            std::fs::write(tmp.path().join("tokenizer_config.json"), c.to_string()).unwrap();
            Tokenizer::load(&tmp.path().join("tokenizer.json"))
        };
        let plain = write(false.into()).unwrap();
        let ids = plain.encode_prompt("Total . 8 ,").unwrap();
        assert_eq!(plain.decode(&ids).unwrap(), "Total . 8 ,");
        let cleaned = write(true.into()).unwrap();
        assert_eq!(cleaned.decode(&ids).unwrap(), "Total. 8,");
        assert_eq!(cleaned.decode_with_special(&ids).unwrap(), "Total. 8,");
        assert!(write("yes".into()).err().unwrap().to_string().contains("clean_up_tokenization_spaces"));
        // No tokenizer_config.json: no clean-up, as transformers' default.
        std::fs::remove_file(tmp.path().join("tokenizer_config.json")).unwrap();
        assert_eq!(Tokenizer::load(&tmp.path().join("tokenizer.json")).unwrap().decode(&ids).unwrap(), "Total . 8 ,");
    }
}
