//! The prompt of one page: the model's own chat template (`chat_template.jinja`,
//! `chat_template.json` or `tokenizer_config.json`'s `chat_template`) rendered with minijinja as
//! `apply_chat_template(messages, add_generation_prompt=True)` renders it in `transformers`
//! (`trim_blocks`, `lstrip_blocks`, the tokenizer's special tokens in the context), for one user
//! message holding the page image and the task text; then `Idefics3Processor`'s expansion of the
//! `<image>` placeholder into `<fake_token_around_image>`, `<row_r_col_c>`, `image_seq_len` ×
//! `<image>` per tile, and `<global-img>` for the whole page.

use std::path::Path;

use docfleet_core::{Error, Result};
use minijinja::value::{Serde, Value as JinjaValue};
use minijinja::{Environment, ErrorKind, State};
use serde_json::{Value, json};

pub const IMAGE_TOKEN: &str = "<image>";
pub const FAKE_TOKEN: &str = "<fake_token_around_image>";
pub const GLOBAL_IMAGE_TOKEN: &str = "<global-img>";

/// A chat template and the special tokens its context holds.
pub struct ChatTemplate {
    source: String,
    /// Where the template came from, for errors.
    origin: String,
    special_tokens: serde_json::Map<String, Value>,
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::Model(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Model(format!("{} is not valid JSON: {e}", path.display())))
}

/// A `chat_template` value: a string, or a list of `{name, template}` (the `default` one).
fn template_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| items.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

impl ChatTemplate {
    /// The template of the model directory `dir`, in the order `transformers`' processors look.
    pub fn load(dir: &Path) -> Result<Self> {
        let tokenizer_config = dir.join("tokenizer_config.json");
        let tc = if tokenizer_config.is_file() { read_json(&tokenizer_config)? } else { json!({}) };
        let jinja = dir.join("chat_template.jinja");
        let json_file = dir.join("chat_template.json");
        let (source, origin) = if jinja.is_file() {
            let s = std::fs::read_to_string(&jinja)
                .map_err(|e| Error::Model(format!("cannot read {}: {e}", jinja.display())))?;
            (s, jinja)
        } else if json_file.is_file() {
            let v = read_json(&json_file)?;
            let s = v
                .get("chat_template")
                .and_then(template_of)
                .ok_or_else(|| Error::Model(format!("{} has no `chat_template` string", json_file.display())))?;
            (s, json_file)
        } else if let Some(s) = tc.get("chat_template").and_then(template_of) {
            (s, tokenizer_config)
        } else {
            return Err(Error::Model(format!(
                "{} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json's \
                 `chat_template`)",
                dir.display()
            )));
        };
        let mut special_tokens = serde_json::Map::new();
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            let token = match tc.get(key) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            if let Some(t) = token {
                special_tokens.insert(key.into(), Value::String(t));
            }
        }
        if let Some(extra) = tc.get("additional_special_tokens") {
            special_tokens.insert("additional_special_tokens".into(), extra.clone());
        }
        let t = Self { source, origin: origin.display().to_string(), special_tokens };
        t.environment()?; // fail at start-up, not on the first page
        Ok(t)
    }

    /// A template from its text (tests, and models that carry one inline).
    pub fn from_source(source: &str, special_tokens: serde_json::Map<String, Value>) -> Self {
        Self { source: source.to_owned(), origin: "the chat template".into(), special_tokens }
    }

    fn environment(&self) -> Result<Environment<'_>> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| Error::Model(format!("{}: {e}", self.origin)))?,
        );
        env.add_function("raise_exception", |msg: String| -> std::result::Result<JinjaValue, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.set_unknown_method_callback(python_string_methods);
        env.add_template("chat", &self.source)
            .map_err(|e| Error::Model(format!("{} does not parse as a Jinja template: {e}", self.origin)))?;
        Ok(env)
    }

    /// The rendered conversation: one user turn with the image then `text`, and the
    /// assistant's generation prompt.
    pub fn render(&self, text: &str) -> Result<String> {
        let env = self.environment()?;
        let messages = json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]);
        let mut ctx = self.special_tokens.clone();
        ctx.insert("messages".into(), messages);
        ctx.insert("add_generation_prompt".into(), Value::Bool(true));
        let tmpl = env.get_template("chat").map_err(|e| Error::Model(format!("{}: {e}", self.origin)))?;
        tmpl.render(JinjaValue::from(Serde(Value::Object(ctx))))
            .map_err(|e| Error::InvalidJob(format!("rendering {} failed: {e}", self.origin)))
    }
}

/// The Python `str` methods chat templates call (`.strip()`, `.startswith()`, ...), which Jinja
/// allows on strings and minijinja does not know.
fn python_string_methods(
    _state: &mut State,
    value: &JinjaValue,
    method: &str,
    args: &[JinjaValue],
) -> std::result::Result<JinjaValue, minijinja::Error> {
    let unknown = || minijinja::Error::new(ErrorKind::UnknownMethod, format!("no method `{method}`"));
    let Some(s) = value.as_str() else { return Err(unknown()) };
    let arg = |i: usize| args.get(i).and_then(|a| a.as_str().map(str::to_owned));
    let chars = arg(0);
    let strip_set = |c: char| match &chars {
        Some(set) => set.contains(c),
        None => c.is_whitespace(),
    };
    Ok(match method {
        "strip" => JinjaValue::from(s.trim_matches(strip_set)),
        "lstrip" => JinjaValue::from(s.trim_start_matches(strip_set)),
        "rstrip" => JinjaValue::from(s.trim_end_matches(strip_set)),
        "lower" => JinjaValue::from(s.to_lowercase()),
        "upper" => JinjaValue::from(s.to_uppercase()),
        "startswith" => JinjaValue::from(arg(0).is_some_and(|p| s.starts_with(&p))),
        "endswith" => JinjaValue::from(arg(0).is_some_and(|p| s.ends_with(&p))),
        "replace" => match (arg(0), arg(1)) {
            (Some(a), Some(b)) => JinjaValue::from(s.replace(&a, &b)),
            _ => return Err(unknown()),
        },
        "split" => {
            let parts: Vec<JinjaValue> = match arg(0) {
                Some(sep) => s.split(sep.as_str()).map(JinjaValue::from).collect(),
                None => s.split_whitespace().map(JinjaValue::from).collect(),
            };
            JinjaValue::from(parts)
        }
        _ => return Err(unknown()),
    })
}

/// `get_image_prompt_string`: what one `<image>` becomes for a page of `rows × cols` tiles
/// (`0 × 0`: the global image alone).
pub fn image_prompt(rows: usize, cols: usize, image_seq_len: usize) -> String {
    let images = IMAGE_TOKEN.repeat(image_seq_len);
    let global = format!("{FAKE_TOKEN}{GLOBAL_IMAGE_TOKEN}{images}{FAKE_TOKEN}");
    if rows == 0 && cols == 0 {
        return global;
    }
    let mut s = String::new();
    for r in 1..=rows {
        for c in 1..=cols {
            s.push_str(&format!("{FAKE_TOKEN}<row_{r}_col_{c}>{images}"));
        }
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&global);
    s
}

/// `Idefics3Processor.__call__`'s text side: every `<image>` of `rendered` (one per image; the
/// pipeline sends one) replaced by its expansion.
pub fn expand(rendered: &str, rows: usize, cols: usize, image_seq_len: usize) -> Result<String> {
    let parts: Vec<&str> = rendered.split(IMAGE_TOKEN).collect();
    if parts.len() != 2 {
        return Err(Error::InvalidJob(format!(
            "the rendered prompt holds {} `{IMAGE_TOKEN}` placeholders; the page is one image",
            parts.len() - 1
        )));
    }
    Ok(format!("{}{}{}", parts[0], image_prompt(rows, cols, image_seq_len), parts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolVLM-256M-Instruct's template, as published.
    const SMOLVLM: &str = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

    #[test]
    fn the_smolvlm_template_renders_as_in_transformers() {
        let t = ChatTemplate::from_source(SMOLVLM, serde_json::Map::new());
        assert_eq!(
            t.render("Convert this page to docling.").unwrap(),
            "<|im_start|>User:<image>Convert this page to docling.<end_of_utterance>\nAssistant:"
        );
    }

    #[test]
    fn python_string_methods_and_special_tokens_work_in_templates() {
        let mut tokens = serde_json::Map::new();
        tokens.insert("bos_token".into(), json!("<s>"));
        let t = ChatTemplate::from_source(
            "{{ bos_token }}{% for m in messages %}{{ m['content'][1]['text'].strip() | upper }}{% endfor %}\n",
            tokens,
        );
        // Jinja drops one trailing newline of the template.
        assert_eq!(t.render("  hi  ").unwrap(), "<s>HI");
        let t = ChatTemplate::from_source("{{ raise_exception('no') }}", serde_json::Map::new());
        assert!(t.render("x").unwrap_err().to_string().contains("no"));
    }

    #[test]
    fn image_placeholders_expand_like_the_processor() {
        assert_eq!(
            image_prompt(0, 0, 2),
            "<fake_token_around_image><global-img><image><image><fake_token_around_image>"
        );
        let split = image_prompt(1, 2, 1);
        assert_eq!(
            split,
            "<fake_token_around_image><row_1_col_1><image><fake_token_around_image><row_1_col_2><image>\n\n\
             <fake_token_around_image><global-img><image><fake_token_around_image>"
        );
        assert_eq!(expand("a<image>b", 0, 0, 1).unwrap(), format!("a{}b", image_prompt(0, 0, 1)));
        assert!(expand("no image", 0, 0, 1).is_err());
    }
}
