//! DocTags → document: the page markup that granite-docling and SmolDocling generate, parsed into
//! a [`Document`] and exported as Markdown, HTML or a DoclingDocument-like JSON value.
//!
//! The reading of DocTags follows docling-core 2.104 (`DoclingDocument.load_from_doctags`) rule
//! for rule, quirks included, so that the Markdown equals docling-core's and the HTML holds the
//! same elements (the parity corpus is `tests/fixtures/doctags/`, made by
//! `scripts/doctags/make_corpus.py`). One deliberate difference: an element cut off by the end of a
//! page (the token limit) keeps what was generated, exactly as if its tags had been closed there;
//! docling-core keeps only an empty element. Each such cut, and every other oddity, is a
//! [`Warning`].
//!
//! ```
//! use docfleet_core::doctags;
//! let doc = doctags::parse(&[doctags::PageInput::new("<doctag><text><loc_0><loc_0><loc_500><loc_50>Hi</text></doctag>")]);
//! assert_eq!(doc.to_markdown(), "Hi");
//! ```

mod html;
mod json;
mod markdown;
mod parse;
mod scan;
mod table;

pub use parse::parse;
pub use table::{TableCell, TableData};

/// One page of DocTags with, optionally, the page's size in pixels (boxes are then given in page
/// pixels; without it they stay on DocTags' 0–500 grid).
#[derive(Debug, Clone, Copy)]
pub struct PageInput<'a> {
    /// The page's DocTags, as the model generated them.
    pub doctags: &'a str,
    /// Page width and height in pixels.
    pub size: Option<(f64, f64)>,
}

impl<'a> PageInput<'a> {
    /// A page without a known size.
    pub fn new(doctags: &'a str) -> Self {
        PageInput { doctags, size: None }
    }

    /// A page of `width` × `height` pixels.
    pub fn with_size(doctags: &'a str, width: f64, height: f64) -> Self {
        PageInput { doctags, size: Some((width, height)) }
    }
}

/// Splits a multi-page DocTags text into pages the way docling-core's
/// `DocTagsDocument.from_multipage_doctags_and_images` does: one leading `<doctag>` and one
/// trailing `</doctag>` removed, split on `<page_break>`, each page trimmed.
pub fn split_pages(doctags: &str) -> Vec<&str> {
    let s = doctags.strip_prefix("<doctag>").unwrap_or(doctags);
    let s = s.strip_suffix("</doctag>").unwrap_or(s);
    s.split("<page_break>").map(str::trim).collect()
}

/// What a page's DocTags produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Pages in order; `page_no` is 1-based.
    pub pages: Vec<Page>,
    /// Top-level items in reading order (list items sit inside their list).
    pub items: Vec<Item>,
    /// Everything that did not parse cleanly; the document holds what did.
    pub warnings: Vec<Warning>,
}

/// A page of the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// 1-based page number.
    pub page_no: u32,
    /// Width and height in pixels, when given.
    pub size: Option<(f64, f64)>,
}

/// Where an item is: its page and its box (left, top, right, bottom; origin top-left), in page
/// pixels when the page size is known, else on the 0–500 DocTags grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prov {
    pub page_no: u32,
    pub bbox: Option<BBox>,
}

/// A box, origin top-left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub l: f64,
    pub t: f64,
    pub r: f64,
    pub b: f64,
}

/// Labels of text-like items, as docling names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextLabel {
    Text,
    Caption,
    Footnote,
    PageHeader,
    PageFooter,
    CheckboxSelected,
    CheckboxUnselected,
}

impl TextLabel {
    /// docling's label name.
    pub fn as_str(self) -> &'static str {
        match self {
            TextLabel::Text => "text",
            TextLabel::Caption => "caption",
            TextLabel::Footnote => "footnote",
            TextLabel::PageHeader => "page_header",
            TextLabel::PageFooter => "page_footer",
            TextLabel::CheckboxSelected => "checkbox_selected",
            TextLabel::CheckboxUnselected => "checkbox_unselected",
        }
    }

    /// Page headers and footers are furniture: kept in JSON, left out of Markdown and HTML.
    pub fn is_furniture(self) -> bool {
        matches!(self, TextLabel::PageHeader | TextLabel::PageFooter)
    }
}

/// A caption attached to a table or picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub text: String,
    pub prov: Prov,
}

/// A list item.
#[derive(Debug, Clone, PartialEq)]
pub struct ListItem {
    pub text: String,
    pub prov: Prov,
}

/// One element of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Paragraph text, standalone captions, footnotes, page headers/footers, checkboxes.
    Text { label: TextLabel, text: String, prov: Prov },
    /// The document title.
    Title { text: String, prov: Prov },
    /// `section_header_level_N`.
    SectionHeader { level: u8, text: String, prov: Prov },
    /// Code; `language` is docling's code language label (`unknown` when not given or unknown).
    Code { language: String, text: String, prov: Prov },
    /// A formula in LaTeX.
    Formula { text: String, prov: Prov },
    /// `ordered_list` / `unordered_list` (nested lists are flattened into their outermost list, as
    /// docling-core does).
    List { ordered: bool, items: Vec<ListItem>, prov: Prov },
    /// An OTSL table.
    Table { caption: Option<Caption>, data: TableData, prov: Prov },
    /// A picture or chart; `class` is the picture class (e.g. `bar_chart`), `chart` a chart's data.
    Picture { caption: Option<Caption>, class: Option<String>, chart: Option<TableData>, prov: Prov },
}

impl Item {
    /// docling's label of the item.
    pub fn label(&self) -> &'static str {
        match self {
            Item::Text { label, .. } => label.as_str(),
            Item::Title { .. } => "title",
            Item::SectionHeader { .. } => "section_header",
            Item::Code { .. } => "code",
            Item::Formula { .. } => "formula",
            Item::List { .. } => "list",
            Item::Table { .. } => "table",
            Item::Picture { .. } => "picture",
        }
    }
}

/// Something in the DocTags that did not parse cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based page number.
    pub page_no: u32,
    /// What happened, for people.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "page {}: {}", self.page_no, self.message)
    }
}
