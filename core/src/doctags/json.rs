//! The DoclingDocument-like JSON document: pages with sizes, items in reading order with docling's
//! labels, text and provenance (page, box), tables as cells with spans plus the grid of texts.

use serde_json::{Value, json};

use super::{Caption, Document, Item, Prov, TableData};

fn prov_json(prov: &Prov) -> Value {
    match prov.bbox {
        Some(b) => {
            json!([{ "page_no": prov.page_no, "bbox": { "l": b.l, "t": b.t, "r": b.r, "b": b.b, "coord_origin": "TOPLEFT" } }])
        }
        None => json!([{ "page_no": prov.page_no, "bbox": null }]),
    }
}

fn caption_json(c: &Caption) -> Value {
    json!({ "label": "caption", "text": c.text, "prov": prov_json(&c.prov) })
}

/// A table's cells (docling's `TableCell` field names) and its grid of texts.
pub(crate) fn table_json(t: &TableData) -> Value {
    let cells: Vec<Value> = t
        .cells
        .iter()
        .map(|c| {
            json!({
                "text": c.text,
                "row_span": c.row_span,
                "col_span": c.col_span,
                "start_row_offset_idx": c.start_row,
                "end_row_offset_idx": c.end_row,
                "start_col_offset_idx": c.start_col,
                "end_col_offset_idx": c.end_col,
                "column_header": c.column_header,
                "row_header": c.row_header,
                "row_section": c.row_section,
            })
        })
        .collect();
    json!({ "num_rows": t.num_rows, "num_cols": t.num_cols, "table_cells": cells, "grid": t.grid_texts() })
}

fn item_json(item: &Item) -> Value {
    let mut v = match item {
        Item::Text { text, .. } | Item::Title { text, .. } | Item::Formula { text, .. } => json!({ "text": text }),
        Item::SectionHeader { level, text, .. } => json!({ "text": text, "level": level }),
        Item::Code { language, text, .. } => json!({ "text": text, "code_language": language }),
        Item::List { ordered, items, .. } => json!({
            "enumerated": ordered,
            "children": items.iter().enumerate().map(|(i, li)| json!({
                "label": "list_item",
                "text": li.text,
                "marker": if *ordered { format!("{}.", i + 1) } else { String::new() },
                "enumerated": ordered,
                "prov": prov_json(&li.prov),
            })).collect::<Vec<_>>(),
        }),
        Item::Table { caption, data, .. } => {
            json!({ "captions": caption.iter().map(caption_json).collect::<Vec<_>>(), "data": table_json(data) })
        }
        Item::Picture { caption, class, chart, .. } => json!({
            "captions": caption.iter().map(caption_json).collect::<Vec<_>>(),
            "classification": class,
            "chart_data": chart.as_ref().map(table_json),
        }),
    };
    let obj = v.as_object_mut().expect("object");
    obj.insert("label".into(), json!(item.label()));
    let prov = match item {
        Item::Text { prov, .. }
        | Item::Title { prov, .. }
        | Item::SectionHeader { prov, .. }
        | Item::Code { prov, .. }
        | Item::Formula { prov, .. }
        | Item::Table { prov, .. }
        | Item::Picture { prov, .. } => Some(prov),
        Item::List { .. } => None,
    };
    if let Some(prov) = prov {
        obj.insert("prov".into(), prov_json(prov));
    }
    if let Item::Text { label, .. } = item {
        obj.insert("content_layer".into(), json!(if label.is_furniture() { "furniture" } else { "body" }));
    }
    v
}

impl Document {
    /// The document as JSON. Boxes are in page pixels for pages whose size was given
    /// (`"units": "pixels"`), else on the 0–500 DocTags grid (`"units": "doctags"`).
    pub fn to_json(&self) -> Value {
        json!({
            "schema_name": "docfleet.DoclingDocument",
            "version": 1,
            "pages": self.pages.iter().map(|p| json!({
                "page_no": p.page_no,
                "size": p.size.map(|(w, h)| json!({ "width": w, "height": h })),
                "units": if p.size.is_some() { "pixels" } else { "doctags" },
            })).collect::<Vec<_>>(),
            "items": self.items.iter().map(item_json).collect::<Vec<_>>(),
            "warnings": self.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }
}
