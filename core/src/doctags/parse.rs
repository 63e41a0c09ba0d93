//! DocTags pages → [`Document`], following docling-core's `load_from_doctags`.

use super::scan::{first_single_line_span, inner_text, locs, tag_at};
use super::table::parse_otsl;
use super::{BBox, Caption, Document, Item, ListItem, Page, PageInput, Prov, TableData, TextLabel, Warning};

/// The elements docling-core recognises at the top level of a page. Anything else outside them
/// (`<doctag>`, `<page_break>`, stray text) is skipped, as docling-core skips it.
const TOP_LEVEL: &[&str] = &[
    "title",
    "document_index",
    "checkbox_unselected",
    "checkbox_selected",
    "text",
    "page_header",
    "inline",
    "page_footer",
    "formula",
    "caption",
    "picture",
    "footnote",
    "code",
    "section_header_level_1",
    "section_header_level_2",
    "section_header_level_3",
    "section_header_level_4",
    "section_header_level_5",
    "section_header_level_6",
    "ordered_list",
    "unordered_list",
    "key_value_region",
    "chart",
    "otsl",
];

/// DocTags elements docling-core's loader does not read; their content is left out.
const IGNORED: &[&str] = &["paragraph", "reference", "handwritten_text", "form", "smiles"];

/// Elements that hold others; a page cut inside them is closed innermost first.
const CONTAINERS: &[&str] = &["list_item", "caption"];

/// Picture classes in docling-core's order (the first one present names the class); the legacy
/// SmolDocling chart names map to today's.
const PICTURE_CLASSES: &[&str] = &[
    "logo",
    "photograph",
    "icon",
    "engineering_drawing",
    "line_chart",
    "bar_chart",
    "other",
    "table",
    "flow_chart",
    "screenshot_from_computer",
    "signature",
    "screenshot_from_manual",
    "geographical_map",
    "pie_chart",
    "page_thumbnail",
    "stamp",
    "music",
    "calendar",
    "qr_code",
    "bar_code",
    "full_page_image",
    "scatter_plot",
    "chemistry_structure",
    "topographical_map",
    "crossword_puzzle",
    "box_plot",
    "stacked_bar_chart",
    "scatter_chart",
    "heatmap",
    "natural_image",
    "remote_sensing",
    "screenshot",
    "chemistry_molecular_structure",
    "chemistry_markush_structure",
    "picture_group",
    "line",
    "dot_line",
    "vbar_categorical",
    "hbar_categorical",
];

/// docling-core's `CodeLanguageLabel` values: a `<_X_>` tag naming one of these sets the language.
const CODE_LANGUAGES: &[&str] = &[
    "Ada",
    "Awk",
    "Bash",
    "bc",
    "C",
    "C#",
    "C++",
    "CMake",
    "COBOL",
    "CSS",
    "Ceylon",
    "Clojure",
    "Crystal",
    "Cuda",
    "Cython",
    "D",
    "Dart",
    "dc",
    "Dockerfile",
    "DocLang",
    "Elixir",
    "Erlang",
    "FORTRAN",
    "Forth",
    "Go",
    "HTML",
    "Haskell",
    "Haxe",
    "Java",
    "JavaScript",
    "JSON",
    "Julia",
    "Kotlin",
    "Latex",
    "Lisp",
    "Lua",
    "Matlab",
    "MoonScript",
    "Nim",
    "OCaml",
    "ObjectiveC",
    "Octave",
    "PHP",
    "Pascal",
    "Perl",
    "Prolog",
    "Python",
    "Racket",
    "Ruby",
    "Rust",
    "SML",
    "SQL",
    "Scala",
    "Scheme",
    "Swift",
    "Tikz",
    "TypeScript",
    "unknown",
    "VisualBasic",
    "XML",
    "YAML",
];

/// Parses DocTags pages (page 1 first) into a document. Never fails: what does not parse becomes
/// a [`Warning`] and the rest is kept.
pub fn parse(pages: &[PageInput<'_>]) -> Document {
    let mut doc = Document { pages: Vec::new(), items: Vec::new(), warnings: Vec::new() };
    for (idx, page) in pages.iter().enumerate() {
        let page_no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        doc.pages.push(Page { page_no, size: page.size });
        PageParser { doc: &mut doc, page_no, size: page.size }.parse(page.doctags);
    }
    doc
}

struct PageParser<'d> {
    doc: &'d mut Document,
    page_no: u32,
    size: Option<(f64, f64)>,
}

impl PageParser<'_> {
    fn warn(&mut self, message: String) {
        self.doc.warnings.push(Warning { page_no: self.page_no, message });
    }

    fn parse(&mut self, s: &str) {
        let mut i = 0;
        while let Some(off) = s[i..].find('<') {
            let at = i + off;
            let Some((name, false, after)) = tag_at(s, at) else {
                i = at + 1;
                continue;
            };
            if !TOP_LEVEL.contains(&name) {
                if IGNORED.contains(&name) {
                    self.warn(format!("<{name}> is ignored (as docling-core ignores it)"));
                }
                i = at + 1;
                continue;
            }
            let close = format!("</{name}>");
            let (content, end, closed) = match s[after..].find(&close) {
                Some(n) => (&s[after..after + n], after + n + close.len(), true),
                None => (&s[after..], s.len(), false),
            };
            let chunk = if closed {
                s[at..end].to_string()
            } else {
                let (repaired, cut) = close_truncated(content);
                self.warn(format!(
                    "<{name}> is not closed (page cut off?); kept what was generated{}",
                    if cut { ", without the incomplete tag at the end" } else { "" }
                ));
                format!("<{name}>{repaired}</{name}>")
            };
            self.element(name, &chunk);
            i = end;
        }
    }

    fn prov(&self, chunk: &str) -> Prov {
        let l = locs(chunk);
        let bbox = (l.len() >= 4).then(|| {
            let (w, h) = self.size.map_or((500.0, 500.0), |(w, h)| (w, h));
            let f = |v: u32, dim: f64| f64::from(v) / 500.0 * dim;
            BBox { l: f(l[0], w), t: f(l[1], h), r: f(l[2], w), b: f(l[3], h) }
        });
        Prov { page_no: self.page_no, bbox }
    }

    fn push(&mut self, item: Item) {
        self.doc.items.push(item);
    }

    /// docling-core's `extract_caption`: the caption is a body item placed before its table or
    /// picture; it is attached to it only where docling-core links them.
    fn caption(&self, chunk: &str) -> Option<Caption> {
        let content = first_single_line_span(chunk, "<caption>", "</caption>")?;
        Some(Caption { text: inner_text(content), prov: self.prov(content) })
    }

    fn element(&mut self, name: &str, chunk: &str) {
        let prov = self.prov(chunk);
        match name {
            "otsl" => {
                let data = parse_otsl(chunk);
                // docling-core links a table's caption whether or not the caption has a box.
                let caption = self.caption(chunk);
                self.push(Item::Table { caption, data, prov });
            }
            "picture" | "chart" => {
                let caption = self.caption(chunk);
                let class = PICTURE_CLASSES.iter().find(|c| chunk.contains(&format!("<{c}>"))).map(|c| {
                    match *c {
                        "line" | "dot_line" => "line_chart",
                        "vbar_categorical" | "hbar_categorical" => "bar_chart",
                        other => other,
                    }
                    .to_string()
                });
                let chart = (name == "chart").then(|| parse_otsl(chunk));
                if prov.bbox.is_none() {
                    self.warn(format!("<{name}> without a location left out (as docling-core does)"));
                    if let Some(c) = caption {
                        self.push(Item::Text { label: TextLabel::Caption, text: c.text, prov: c.prov });
                    }
                    return;
                }
                let (caption, standalone) = match caption {
                    Some(c) if c.prov.bbox.is_some() => (Some(c), None),
                    other => (None, other),
                };
                if let Some(c) = standalone {
                    self.push(Item::Text { label: TextLabel::Caption, text: c.text, prov: c.prov });
                }
                self.push(Item::Picture { caption, class, chart: chart.filter(|t: &TableData| t.num_rows > 0), prov });
            }
            "ordered_list" | "unordered_list" => {
                let ordered = name == "ordered_list";
                let mut items = Vec::new();
                let mut rest = chunk;
                // Nested lists flatten into this one: docling-core takes every
                // `<list_item>…</list_item>` up to the first closing tag of this list's kind.
                while let Some(i) = rest.find("<list_item>") {
                    let Some(j) = rest[i..].find("</list_item>") else { break };
                    let li = &rest[i..i + j + "</list_item>".len()];
                    items.push(ListItem { text: inner_text(li), prov: self.prov(li) });
                    rest = &rest[i + j + "</list_item>".len()..];
                }
                self.push(Item::List { ordered, items, prov: Prov { bbox: None, ..prov } });
            }
            "key_value_region" | "inline" | "document_index" => {
                self.warn(format!("<{name}> is not supported; its text is kept as plain text"));
                self.push(Item::Text { label: TextLabel::Text, text: inner_text(chunk), prov });
            }
            _ => self.text_element(name, chunk, prov),
        }
    }

    fn text_element(&mut self, name: &str, chunk: &str, prov: Prov) {
        let text = inner_text(chunk);
        let item = if let Some(level) = name.strip_prefix("section_header_level_") {
            Item::SectionHeader { level: level.parse().unwrap_or(1), text, prov }
        } else {
            match name {
                "title" => Item::Title { text, prov },
                "formula" => Item::Formula { text, prov },
                "code" => {
                    let (language, text) = match text.strip_prefix("<_").and_then(|t| t.find('>').map(|n| (t, n))) {
                        Some((t, n)) if t[..n].ends_with('_') && n > 1 => {
                            let lang = &t[..n - 1];
                            let lang = if CODE_LANGUAGES.contains(&lang) { lang } else { "unknown" };
                            (lang.to_string(), t[n + 1..].to_string())
                        }
                        _ => ("unknown".to_string(), text),
                    };
                    Item::Code { language, text, prov }
                }
                _ => {
                    let label = match name {
                        "caption" => TextLabel::Caption,
                        "footnote" => TextLabel::Footnote,
                        "page_header" => TextLabel::PageHeader,
                        "page_footer" => TextLabel::PageFooter,
                        "checkbox_selected" => TextLabel::CheckboxSelected,
                        "checkbox_unselected" => TextLabel::CheckboxUnselected,
                        _ => TextLabel::Text,
                    };
                    Item::Text { label, text, prov }
                }
            }
        };
        self.push(item);
    }
}

/// Repairs the content of an element cut off by the end of the page: drops an incomplete tag at
/// the very end (`<loc_4`) and closes the containers still open inside it, innermost first.
/// Returns the repaired content and whether an incomplete tag was dropped.
fn close_truncated(content: &str) -> (String, bool) {
    let mut s = content;
    let mut cut = false;
    if let Some(i) = s.rfind('<')
        && !s[i..].contains('>')
        && s[i + 1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
    {
        s = &s[..i];
        cut = true;
    }
    let mut open: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(off) = s[i..].find('<') {
        let at = i + off;
        match tag_at(s, at) {
            Some((name, closing, after)) if CONTAINERS.contains(&name) || TOP_LEVEL.contains(&name) => {
                if closing {
                    if let Some(k) = open.iter().rposition(|n| *n == name) {
                        open.truncate(k);
                    }
                } else {
                    open.push(name);
                }
                i = after;
            }
            _ => i = at + 1,
        }
    }
    let mut out = s.to_string();
    for name in open.iter().rev() {
        out.push_str(&format!("</{name}>"));
    }
    (out, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctags_truncated_content_is_closed() {
        assert_eq!(
            close_truncated("<list_item>a</list_item><list_item>b"),
            ("<list_item>a</list_item><list_item>b</list_item>".into(), false)
        );
        assert_eq!(close_truncated("<loc_1><loc_2"), ("<loc_1>".into(), true));
    }

    #[test]
    fn doctags_unclosed_page_gives_document_and_warning() {
        let doc = parse(&[PageInput::new("<doctag><text><loc_1><loc_2><loc_3><loc_4>cut here")]);
        assert_eq!(doc.items.len(), 1);
        assert!(matches!(&doc.items[0], Item::Text { text, .. } if text == "cut here"));
        assert_eq!(doc.warnings.len(), 1);
    }
}
