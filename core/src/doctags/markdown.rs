//! Markdown as docling-core's `export_to_markdown()` writes it (default parameters): blocks
//! joined by a blank line, `_` and HTML characters escaped in text, furniture left out, pictures
//! as `<!-- image -->` followed by their class and chart table.

use super::scan::{escape_html, escape_underscores};
use super::{Caption, Document, Item, TextLabel};

/// docling's `post_process`: underscores, then `& < >`.
fn escape(text: &str) -> String {
    escape_html(&escape_underscores(text))
}

/// A single newline becomes a GFM hard break; blank lines stay.
fn line_breaks(text: &str) -> String {
    text.split("\n\n").map(|p| p.replace('\n', "  \n")).collect::<Vec<_>>().join("\n\n")
}

/// docling's `_humanize_text`: `bar_chart` → `Bar chart`.
pub(crate) fn humanize(class: &str) -> String {
    let spaced = class.replace("__", "_").replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

fn code_block(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}\n{text}\n{fence}")
}

fn caption_md(caption: &Option<Caption>) -> Option<String> {
    caption.as_ref().map(|c| escape(&c.text)).filter(|t| !t.is_empty())
}

fn item_md(item: &Item) -> String {
    match item {
        Item::Text { label, .. } if label.is_furniture() => String::new(),
        Item::Text { label, text, .. } => {
            let text = match label {
                TextLabel::CheckboxSelected => format!("- [x] {text}"),
                TextLabel::CheckboxUnselected => format!("- [ ] {text}"),
                _ => text.clone(),
            };
            escape(&line_breaks(&text))
        }
        Item::Title { text, .. } => format!("# {}", escape(&text.replace('\n', " "))),
        Item::SectionHeader { level, text, .. } => {
            format!("{} {}", "#".repeat(usize::from(*level + 1).min(6)), escape(&text.replace('\n', " ")))
        }
        Item::Code { text, .. } => code_block(text),
        Item::Formula { text, .. } if text.is_empty() => String::new(),
        Item::Formula { text, .. } => format!("$${text}$$"),
        Item::List { ordered, items, .. } => items
            .iter()
            .enumerate()
            .map(|(i, li)| {
                let marker = if *ordered { format!("{}.", i + 1) } else { "-".to_string() };
                format!("{marker} {}", escape(&line_breaks(&li.text)))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Item::Table { caption, data, .. } => caption_md(caption)
            .into_iter()
            .chain(Some(data.to_markdown()))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
        Item::Picture { caption, class, chart, .. } => caption_md(caption)
            .into_iter()
            .chain(Some("<!-- image -->".to_string()))
            .chain(class.as_deref().map(humanize))
            .chain(chart.as_ref().map(|t| t.to_markdown().trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

impl Document {
    /// The document as Markdown, equal to docling-core's `export_to_markdown()`.
    pub fn to_markdown(&self) -> String {
        self.items.iter().map(item_md).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("\n\n")
    }
}
