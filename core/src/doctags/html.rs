//! HTML with the elements docling-core's `export_to_html()` writes, in the same order: one
//! `<div class='page'>`, `<p>`, `<h1>`–`<h6>`, `<ul>`/`<ol>` with `<li>`, `<pre><code>`, formulas
//! as MathML `<math>` carrying the TeX, `<figure>` with `<figcaption>` and the picture's class and
//! chart data, `<table>` with `<caption>` and `rowspan`/`colspan` cells. The styling is docfleet's.

use super::markdown::humanize;
use super::scan::escape_html;
use super::{Caption, Document, Item, TableData, TextLabel};

const STYLE: &str = "body{max-width:800px;margin:0 auto;padding:2rem;font-family:sans-serif;line-height:1.6}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em}\
pre{background:#f5f5f5;padding:1em;overflow-x:auto}figure{margin:1em 0}.caption{font-style:italic}";

fn text_html(text: &str) -> String {
    escape_html(text).replace('\n', "<br>")
}

fn table_html(data: &TableData, caption: Option<&Caption>) -> String {
    if data.num_rows == 0 {
        return String::new();
    }
    let grid = data.grid();
    let mut out = String::from("<table>");
    if let Some(c) = caption {
        out.push_str(&format!("<caption><div class=\"caption\">{}</div></caption>", text_html(&c.text)));
    }
    out.push_str("<tbody>");
    for (r, row) in grid.iter().enumerate() {
        out.push_str("<tr>");
        for (c, slot) in row.iter().enumerate() {
            let Some(k) = slot else {
                out.push_str("<td></td>");
                continue;
            };
            let cell = &data.cells[*k];
            if cell.start_row != r || cell.start_col != c {
                continue;
            }
            out.push_str("<td");
            if cell.row_span > 1 {
                out.push_str(&format!(" rowspan=\"{}\"", cell.row_span));
            }
            if cell.col_span > 1 {
                out.push_str(&format!(" colspan=\"{}\"", cell.col_span));
            }
            out.push_str(&format!(">{}</td>", text_html(&cell.text)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn meta_field(name: &str, value: &str) -> String {
    format!(
        "<div class=\"docling-meta-field\" data-meta-name=\"{name}\"><span class=\"docling-meta-field-label\">{name}:</span> <span class=\"docling-meta-field-value\">{value}</span></div>"
    )
}

fn item_html(item: &Item) -> String {
    match item {
        Item::Text { label, .. } if label.is_furniture() => String::new(),
        Item::Text { label: TextLabel::Caption, text, .. } => {
            format!("<div class=\"caption\">{}</div>", text_html(text))
        }
        Item::Text { text, .. } => format!("<p>{}</p>", text_html(text)),
        Item::Title { text, .. } => format!("<h1>{}</h1>", text_html(text)),
        Item::SectionHeader { level, text, .. } => {
            let n = (level + 1).min(6);
            format!("<h{n}>{}</h{n}>", text_html(text))
        }
        Item::Code { language, text, .. } => {
            let class = if language == "unknown" {
                String::new()
            } else {
                format!(" class=\"language-{}\"", escape_html(language))
            };
            format!("<pre><code{class}>{}</code></pre>", escape_html(text))
        }
        Item::Formula { text, .. } if text.is_empty() => {
            "<div class=\"formula-not-decoded\">Formula not decoded</div>".into()
        }
        Item::Formula { text, .. } => format!(
            "<div><math xmlns=\"http://www.w3.org/1998/Math/MathML\" display=\"block\"><mtext>{t}</mtext><annotation encoding=\"TeX\">{t}</annotation></math></div>",
            t = escape_html(text)
        ),
        Item::List { items, .. } if items.is_empty() => String::new(),
        Item::List { ordered, items, .. } => {
            let tag = if *ordered { "ol" } else { "ul" };
            let lis: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, li)| {
                    let style =
                        if *ordered { format!(" style=\"list-style-type: '{}. ';\"", i + 1) } else { String::new() };
                    format!("<li{style}>{}</li>", text_html(&li.text))
                })
                .collect();
            format!("<{tag}>\n{}\n</{tag}>", lis.join("\n"))
        }
        Item::Table { caption, data, .. } => table_html(data, caption.as_ref()),
        Item::Picture { caption, class, chart, .. } => {
            let mut inner = String::new();
            if let Some(c) = caption.as_ref().filter(|c| !c.text.is_empty()) {
                inner
                    .push_str(&format!("<figcaption><div class=\"caption\">{}</div></figcaption>", text_html(&c.text)));
            }
            let mut meta = String::new();
            if let Some(class) = class {
                meta.push_str(&meta_field("classification", &escape_html(&humanize(class))));
            }
            if let Some(chart) = chart.as_ref().filter(|t| t.num_rows > 0) {
                meta.push_str(&meta_field("tabular_chart", &table_html(chart, None)));
            }
            if !meta.is_empty() {
                inner.push_str(&format!("<details class=\"docling-meta\"><summary>Meta</summary>{meta}</details>"));
            }
            if inner.is_empty() { String::new() } else { format!("<figure>{inner}</figure>") }
        }
    }
}

impl Document {
    /// The document as a standalone HTML page (`title` goes into `<title>`).
    pub fn to_html(&self, title: &str) -> String {
        let body: Vec<String> = self.items.iter().map(item_html).filter(|s| !s.is_empty()).collect();
        format!(
            "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"UTF-8\"/>\n<title>{}</title>\n<meta name=\"generator\" content=\"docfleet doctags\"/>\n<style>{STYLE}</style>\n</head>\n<body>\n<div class='page'>\n{}\n</div>\n</body>\n</html>\n",
            escape_html(title),
            body.join("\n")
        )
    }
}
