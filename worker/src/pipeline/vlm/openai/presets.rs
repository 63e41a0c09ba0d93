//! What the `openai` engine asks of each page and how it reads the answer, per
//! `vlm.server.preset`.

use docfleet_core::config::VlmServerPreset;
use docfleet_core::{Error, Result};
use serde_json::{Map, Value, json};

/// olmOCR-2's page prompt (`build_no_anchoring_v4_yaml_prompt` in allenai/olmocr
/// `olmocr/prompts/prompts.py`), verbatim: the fine-tuned model answers it with YAML front
/// matter and the page as Markdown.
pub const OLMOCR_PROMPT: &str = "Attached is one page of a document that you must process. \
Just return the plain text representation of this document as if you were reading it naturally. \
Convert equations to LateX and tables to HTML.\n\
If there are any figures or charts, label them with the following markdown syntax \
![Alt text describing the contents of the figure](page_startx_starty_width_height.png)\n\
Return your output as markdown, with a front matter section on top specifying values for the \
primary_language, is_rotation_valid, rotation_correction, is_table, and is_diagram parameters.";

/// The `markdown` preset's prompt.
pub const MARKDOWN_PROMPT: &str =
    "Convert this page to Markdown. Return only the Markdown of the page, with no commentary.";

/// granite-docling's task prompt (as the Idefics3 presets use it): the answer is DocTags.
pub const DOCTAGS_PROMPT: &str = "Convert this page to docling.";

/// What a `custom` template sees of one page.
#[derive(Debug, Clone, Copy)]
pub struct PageContext<'a> {
    /// 1-based.
    pub page: usize,
    pub page_count: usize,
    /// The page's PDF text layer ("" for raster pages and pages without text).
    pub text_layer: &'a str,
}

/// The prompt for one page.
pub fn prompt(preset: VlmServerPreset, template: &str, page: PageContext<'_>, given: Option<&str>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    Ok(match preset {
        VlmServerPreset::Olmocr => OLMOCR_PROMPT.to_owned(),
        VlmServerPreset::Markdown => MARKDOWN_PROMPT.to_owned(),
        VlmServerPreset::Doctags => DOCTAGS_PROMPT.to_owned(),
        VlmServerPreset::Custom => render_template(template, page)?,
    })
}

/// Render the `custom` preset's template for one page: `page`, `page_count` and `text_layer`
/// (the page's PDF text layer, [`crate::document::pdf_text_layer`]; empty for raster pages).
pub fn render_template(template: &str, page: PageContext<'_>) -> Result<String> {
    let env = minijinja::Environment::new();
    let PageContext { page, page_count, text_layer } = page;
    env.render_str(template, minijinja::context! { page => page, page_count => page_count, text_layer => text_layer })
        .map_err(|e| Error::Config(format!("vlm.server.prompt_template: {e:#}")))
}

/// Check a template at start-up, so a bad one fails the worker, not every document.
pub fn check_template(template: &str) -> Result<()> {
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .map_err(|e| Error::Config(format!("vlm.server.prompt_template does not parse: {e:#}")))?;
    render_template(template, PageContext { page: 1, page_count: 1, text_layer: "" }).map(|_| ())
}

/// olmOCR's answer, split: the front matter fields and the Markdown body.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontMatter {
    pub fields: Map<String, Value>,
    pub body: String,
}

/// The fields olmOCR's front matter carries, with the type each must have.
const OLMOCR_FIELDS: [(&str, FieldType); 5] = [
    ("primary_language", FieldType::OptionalString),
    ("is_rotation_valid", FieldType::Bool),
    ("rotation_correction", FieldType::Rotation),
    ("is_table", FieldType::Bool),
    ("is_diagram", FieldType::Bool),
];

#[derive(Clone, Copy)]
enum FieldType {
    OptionalString,
    Bool,
    Rotation,
}

/// Parse an olmOCR answer: `---\n<key: value lines>\n---\n<markdown>`. Strict: every line of the
/// front matter is `key: value`, the five known keys have their types (bools, a rotation of
/// 0/90/180/270, a language or null), none is repeated; other keys are kept as strings. An
/// answer with no front matter is an error (the caller keeps the raw text).
pub fn parse_olmocr(answer: &str) -> std::result::Result<FrontMatter, String> {
    let text = answer.trim_start_matches('\u{feff}').trim_start();
    let rest = text.strip_prefix("---").ok_or("the answer does not start with `---` front matter")?;
    let rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).ok_or("no line break after `---`")?;
    // The closing fence is a line of its own; the body follows it (possibly empty).
    let mut yaml_end = None;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            yaml_end = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let (yaml_end, body_start) = yaml_end.ok_or("the front matter has no closing `---`")?;
    let (yaml, body) = (&rest[..yaml_end], &rest[body_start..]);
    let mut fields = Map::new();
    for (n, line) in yaml.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) =
            line.split_once(':').ok_or_else(|| format!("front matter line {} is not `key: value`", n + 1))?;
        let (key, value) = (key.trim(), unquote(value.trim()));
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("front matter line {}: bad key `{key}`", n + 1));
        }
        if fields.contains_key(key) {
            return Err(format!("front matter key `{key}` appears twice"));
        }
        let typed = match OLMOCR_FIELDS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t) {
            Some(FieldType::Bool) => {
                Value::Bool(parse_bool(value).ok_or_else(|| format!("{key}: `{value}` is not a boolean"))?)
            }
            Some(FieldType::Rotation) => match value.parse::<u16>() {
                Ok(r @ (0 | 90 | 180 | 270)) => json!(r),
                _ => return Err(format!("{key}: `{value}` is not 0, 90, 180 or 270")),
            },
            Some(FieldType::OptionalString) if is_null(value) => Value::Null,
            Some(FieldType::OptionalString) | None => Value::String(value.to_owned()),
        };
        fields.insert(key.to_owned(), typed);
    }
    if fields.is_empty() {
        return Err("the front matter is empty".into());
    }
    Ok(FrontMatter { fields, body: body.trim().to_owned() })
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL" | "None")
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn olmocr_front_matter_is_parsed_into_typed_fields() {
        let answer = "---\nprimary_language: en\nis_rotation_valid: True\nrotation_correction: 0\nis_table: False\nis_diagram: false\n---\n# Title\n\nSome text.\n";
        let fm = parse_olmocr(answer).unwrap();
        assert_eq!(fm.fields["primary_language"], json!("en"));
        assert_eq!(fm.fields["is_rotation_valid"], json!(true));
        assert_eq!(fm.fields["rotation_correction"], json!(0));
        assert_eq!(fm.fields["is_table"], json!(false));
        assert_eq!(fm.fields["is_diagram"], json!(false));
        assert_eq!(fm.body, "# Title\n\nSome text.");
    }

    #[test]
    fn olmocr_null_language_and_empty_body() {
        let fm = parse_olmocr("---\nprimary_language: null\nis_rotation_valid: true\nrotation_correction: 90\nis_table: true\nis_diagram: false\n---").unwrap();
        assert_eq!(fm.fields["primary_language"], Value::Null);
        assert_eq!(fm.fields["rotation_correction"], json!(90));
        assert_eq!(fm.body, "");
    }

    #[test]
    fn olmocr_bad_answers_are_rejected() {
        assert!(parse_olmocr("# just markdown").is_err());
        assert!(parse_olmocr("---\nis_table: maybe\n---\nx").unwrap_err().contains("is_table"));
        assert!(parse_olmocr("---\nrotation_correction: 45\n---\nx").unwrap_err().contains("rotation"));
        assert!(parse_olmocr("---\nis_table: true\nis_table: false\n---\n").unwrap_err().contains("twice"));
        assert!(parse_olmocr("---\nis_table: true\n").unwrap_err().contains("closing"));
        assert!(parse_olmocr("---\nnot a pair\n---\n").is_err());
    }

    #[test]
    fn custom_template_sees_page_numbers() {
        let t = "Page {{ page }} of {{ page_count }}: transcribe it.";
        check_template(t).unwrap();
        let at = |page, page_count, text_layer| PageContext { page, page_count, text_layer };
        assert_eq!(render_template(t, at(3, 7, "")).unwrap(), "Page 3 of 7: transcribe it.");
        assert!(check_template("{{ unclosed").is_err());
        assert_eq!(prompt(VlmServerPreset::Custom, t, at(1, 2, ""), None).unwrap(), "Page 1 of 2: transcribe it.");
        assert_eq!(prompt(VlmServerPreset::Olmocr, "", at(1, 2, ""), Some("mine")).unwrap(), "mine");
        assert!(prompt(VlmServerPreset::Olmocr, "", at(1, 1, ""), None).unwrap().contains("front matter"));
        let anchored = "{% if text_layer %}The page's text layer:\n{{ text_layer }}\n{% endif %}Transcribe page {{ page }}.";
        check_template(anchored).unwrap();
        assert_eq!(render_template(anchored, at(2, 2, "")).unwrap(), "Transcribe page 2.");
        assert_eq!(
            render_template(anchored, at(1, 2, "Total 42")).unwrap(),
            "The page's text layer:\nTotal 42\nTranscribe page 1."
        );
    }
}
