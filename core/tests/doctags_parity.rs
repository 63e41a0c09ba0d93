//! DocTags exports against docling-core's on the corpus in tests/fixtures/doctags/ (made by
//! scripts/doctags/make_corpus.py): Markdown byte for byte, HTML as the same element/text
//! sequence, JSON as the same labels, texts, pages, pixel boxes and table cells.
//!
//! Truncated cases compare with docling-core's exports of the closed text (`<name>.closed.*`):
//! docfleet keeps what a cut-off element held, docling-core keeps it empty (see the README there).

use std::path::PathBuf;

use docfleet_core::doctags::{self, Document, Item, PageInput};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/doctags")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e} (run scripts/doctags/make_corpus.py)"))
}

struct Case {
    name: String,
    sizes: Vec<(f64, f64)>,
    /// Suffix of the docling-core files to compare with: "" or ".closed".
    reference: &'static str,
    truncated: bool,
}

fn cases() -> Vec<Case> {
    let index: Value = serde_json::from_str(&read("index.json")).unwrap();
    let cases: Vec<Case> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            sizes: c["page_sizes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s[0].as_f64().unwrap(), s[1].as_f64().unwrap()))
                .collect(),
            reference: if c.get("closing").is_some() { ".closed" } else { "" },
            truncated: c["truncated"].as_bool().unwrap(),
        })
        .collect();
    assert!(cases.len() >= 20, "corpus too small: {}", cases.len());
    cases
}

fn load(case: &Case) -> Document {
    let text = read(&format!("{}.dt", case.name));
    let pages = doctags::split_pages(&text);
    assert_eq!(pages.len(), case.sizes.len(), "{}", case.name);
    let inputs: Vec<PageInput> =
        pages.iter().zip(&case.sizes).map(|(p, (w, h))| PageInput::with_size(p, *w, *h)).collect();
    doctags::parse(&inputs)
}

#[test]
fn doctags_markdown_equals_docling_core() {
    let mut failures = Vec::new();
    for case in cases() {
        let doc = load(&case);
        let ours = doc.to_markdown();
        let theirs = read(&format!("{}{}.md", case.name, case.reference));
        if ours != theirs {
            failures.push(format!("--- {}: docling-core\n{theirs}\n--- docfleet\n{ours}\n", case.name));
        }
        let cut = doc.warnings.iter().any(|w| w.message.contains("not closed"));
        assert_eq!(case.truncated, cut, "{}: warnings {:?}", case.name, doc.warnings);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The documented difference, precisely: on a cut-off page docling-core's Markdown is ours with
/// the cut element emptied; ours equals docling-core's for the same text closed at the cut.
#[test]
fn doctags_truncated_pages_keep_the_cut_element() {
    let mut seen = 0;
    for case in cases().into_iter().filter(|c| c.reference == ".closed") {
        seen += 1;
        let ours = load(&case).to_markdown();
        let docling_truncated = read(&format!("{}.md", case.name));
        assert_ne!(ours, docling_truncated, "{}: no difference left to document", case.name);
        assert!(
            ours.starts_with(docling_truncated.trim_end_matches(['#', ' '])),
            "{}: {ours:?} vs {docling_truncated:?}",
            case.name
        );
    }
    assert!(seen >= 4);
}

/// The body of an HTML document as a sequence of start tags (with spans), texts and end tags;
/// a `<math>` element counts as one item, its TeX annotation.
fn html_sequence(html: &str) -> Vec<String> {
    let start = html.find("<body>").expect("<body>") + "<body>".len();
    let end = html.rfind("</body>").expect("</body>");
    let body = &html[start..end];
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with("<math") {
            let close = body[i..].find("</math>").expect("</math>") + i;
            let math = &body[i..close];
            let a =
                math.find("<annotation encoding=\"TeX\">").expect("annotation") + "<annotation encoding=\"TeX\">".len();
            let b = math[a..].find("</annotation>").unwrap() + a;
            out.push(format!("math:{}", &math[a..b]));
            i = close + "</math>".len();
        } else if body[i..].starts_with('<') {
            let close = body[i..].find('>').unwrap() + i;
            let tag = &body[i + 1..close];
            let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '/').collect();
            let spans: Vec<&str> =
                tag.split_whitespace().filter(|a| a.starts_with("rowspan=") || a.starts_with("colspan=")).collect();
            out.push(format!("<{name}{}>", spans.iter().map(|s| format!(" {s}")).collect::<String>()));
            i = close + 1;
        } else {
            let next = body[i..].find('<').map_or(body.len(), |n| n + i);
            let text = body[i..next].trim();
            if !text.is_empty() {
                out.push(text.to_string());
            }
            i = next;
        }
    }
    out
}

#[test]
fn doctags_html_has_docling_core_elements_in_order() {
    let mut failures = Vec::new();
    for case in cases() {
        let ours = html_sequence(&load(&case).to_html("corpus"));
        let theirs = html_sequence(&read(&format!("{}{}.html", case.name, case.reference)));
        if ours != theirs {
            failures.push(format!("{}:\n docling-core {theirs:?}\n docfleet     {ours:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// docling-core's body in reading order, one entry per leaf item (list groups opened).
fn docling_leaves(d: &Value) -> Vec<Value> {
    fn resolve<'a>(d: &'a Value, r: &str) -> &'a Value {
        let mut parts = r.trim_start_matches("#/").split('/');
        let (kind, idx) = (parts.next().unwrap(), parts.next().unwrap().parse::<usize>().unwrap());
        &d[kind][idx]
    }
    fn walk(d: &Value, node: &Value, out: &mut Vec<Value>) {
        for child in node["children"].as_array().unwrap() {
            let item = resolve(d, child["$ref"].as_str().unwrap());
            if item["self_ref"].as_str().unwrap().starts_with("#/groups/") {
                walk(d, item, out);
            } else {
                out.push(item.clone());
            }
        }
    }
    let mut out = Vec::new();
    walk(d, &d["body"], &mut out);
    out
}

/// docfleet's JSON items in the same shape: captions before their table/picture, lists opened.
fn our_leaves(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for item in v["items"].as_array().unwrap() {
        match item["label"].as_str().unwrap() {
            "list" => out.extend(item["children"].as_array().unwrap().iter().cloned()),
            "table" | "picture" => {
                out.extend(item["captions"].as_array().unwrap().iter().cloned());
                out.push(item.clone());
            }
            _ => out.push(item.clone()),
        }
    }
    out
}

fn close(a: &Value, b: &Value) -> bool {
    (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-6
}

#[test]
fn doctags_json_matches_docling_core_dict() {
    for case in cases() {
        let theirs: Value = serde_json::from_str(&read(&format!("{}{}.json", case.name, case.reference))).unwrap();
        let ours = load(&case).to_json();
        for (k, (w, h)) in case.sizes.iter().enumerate() {
            let page = &theirs["pages"][(k + 1).to_string()];
            assert_eq!((page["size"]["width"].as_f64(), page["size"]["height"].as_f64()), (Some(*w), Some(*h)));
            assert_eq!(ours["pages"][k]["size"]["width"].as_f64(), Some(*w), "{}", case.name);
        }
        let (t, o) = (docling_leaves(&theirs), our_leaves(&ours));
        assert_eq!(t.len(), o.len(), "{}: docling-core {t:#?}\ndocfleet {o:#?}", case.name);
        for (t, o) in t.iter().zip(&o) {
            let what = format!("{}: {t}\nvs {o}", case.name);
            assert_eq!(t["label"], o["label"], "{what}");
            if t.get("text").is_some() {
                assert_eq!(t["text"], o["text"], "{what}");
            }
            if t["label"] == "code" {
                assert_eq!(t["code_language"], o["code_language"], "{what}");
            }
            if t["label"] == "section_header" {
                assert_eq!(t["level"], o["level"], "{what}");
            }
            if t["label"] == "page_header" || t["label"] == "page_footer" || t["label"] == "text" {
                assert_eq!(t["content_layer"], o["content_layer"], "{what}");
            }
            // docling-core gives list items no box when it has the page image; ours always do.
            if let Some(tp) = t["prov"].as_array().and_then(|p| p.first()) {
                let op = &o["prov"][0];
                assert_eq!(tp["page_no"], op["page_no"], "{what}");
                for side in ["l", "t", "r", "b"] {
                    assert!(close(&tp["bbox"][side], &op["bbox"][side]), "{what}: {side}");
                }
            }
            if t["label"] == "table" {
                let (td, od) = (&t["data"], &o["data"]);
                assert_eq!(td["num_rows"], od["num_rows"], "{what}");
                assert_eq!(td["num_cols"], od["num_cols"], "{what}");
                let (tc, oc) = (td["table_cells"].as_array().unwrap(), od["table_cells"].as_array().unwrap());
                assert_eq!(tc.len(), oc.len(), "{what}");
                for (a, b) in tc.iter().zip(oc) {
                    for f in [
                        "text",
                        "row_span",
                        "col_span",
                        "start_row_offset_idx",
                        "end_row_offset_idx",
                        "start_col_offset_idx",
                        "end_col_offset_idx",
                    ] {
                        assert_eq!(a[f], b[f], "{what}: {f}");
                    }
                }
            }
            if t["label"] == "picture" {
                let class = t["meta"]["classification"]["predictions"][0]["class_name"].as_str();
                assert_eq!(class, o["classification"].as_str(), "{what}");
                let chart = &t["meta"]["tabular_chart"]["chart_data"];
                if chart.is_object() {
                    assert_eq!(chart["num_rows"], o["chart_data"]["num_rows"], "{what}");
                    assert_eq!(
                        chart["table_cells"].as_array().unwrap().len(),
                        o["chart_data"]["table_cells"].as_array().unwrap().len(),
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn doctags_without_page_size_keeps_grid_coordinates() {
    let doc = doctags::parse(&[PageInput::new("<text><loc_10><loc_20><loc_250><loc_500>x</text>")]);
    let Item::Text { prov, .. } = &doc.items[0] else { panic!("{doc:?}") };
    let b = prov.bbox.unwrap();
    assert_eq!((b.l, b.t, b.r, b.b), (10.0, 20.0, 250.0, 500.0));
    assert_eq!(doc.to_json()["pages"][0]["units"], "doctags");
}
