//! Black-box tests of `docfleet doctags`: DocTags files and stdin to Markdown, HTML and JSON,
//! page breaks, page sizes, cut-off pages (a warning, still a document) and bad input.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use docfleet_tests::{bin, repo_root, run_with_timeout, text};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn docfleet() -> Command {
    let mut cmd = Command::new(bin("docfleet"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(repo_root());
    cmd
}

fn fixture(name: &str) -> String {
    repo_root().join("tests/fixtures/doctags").join(name).display().to_string()
}

#[test]
fn doctags_file_to_markdown_equals_docling_core() {
    for case in ["multipage", "table_spans", "escaping", "pictures"] {
        let out =
            run_with_timeout(docfleet().args(["doctags", "--to", "markdown", &fixture(&format!("{case}.dt"))]), LIMIT);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{case}: {stderr}");
        let expected = std::fs::read_to_string(fixture(&format!("{case}.md"))).unwrap();
        assert_eq!(stdout, format!("{expected}\n"), "{case}");
        assert!(!stderr.contains("warning"), "{case}: {stderr}");
    }
}

#[test]
fn doctags_stdin_to_json_with_page_size_and_a_cut_page() {
    let mut child = docfleet()
        .args(["doctags", "--to", "json", "--page-size", "1000x800", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"<doctag><text><loc_0><loc_0><loc_250><loc_500>one</text></doctag><page_break><doctag><otsl><loc_50><loc_50><loc_450><loc_450><ched>h<lcel><nl><fcel>a<fcel>b<nl><fcel>cut")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning: page 2: <otsl> is not closed"), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["pages"].as_array().unwrap().len(), 2);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items[0]["label"], "text");
    assert_eq!(items[0]["prov"][0]["bbox"]["r"], 500.0);
    assert_eq!(items[0]["prov"][0]["bbox"]["b"], 800.0);
    let table = &items[1];
    assert_eq!((table["label"].as_str(), table["prov"][0]["page_no"].as_u64()), (Some("table"), Some(2)));
    assert_eq!(table["data"]["num_rows"], 3);
    let header = &table["data"]["table_cells"][0];
    assert_eq!((header["col_span"].as_u64(), header["column_header"].as_bool()), (Some(2), Some(true)));
    assert_eq!(table["data"]["grid"][2][0], "cut");
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn doctags_to_html_is_a_page_with_the_elements() {
    let out = run_with_timeout(docfleet().args(["doctags", "--to", "html", &fixture("lists.dt")]), LIMIT);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("<!DOCTYPE html>"), "{stdout}");
    assert!(stdout.contains("<title>lists</title>"));
    assert!(stdout.contains("<ul>\n<li>First bullet</li>"), "{stdout}");
    assert!(stdout.contains("<ol>"), "{stdout}");
}

#[test]
fn doctags_bad_input_gives_a_clear_error() {
    let out = run_with_timeout(docfleet().args(["doctags", "--to", "markdown", "no/such/file.dt"]), LIMIT);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no/such/file.dt"), "{stderr}");

    let out = run_with_timeout(docfleet().args(["doctags", "--to", "json", "--page-size", "12", "x.dt"]), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("WIDTHxHEIGHT"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("bin.dt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x3c]).unwrap();
    let out = run_with_timeout(docfleet().args(["doctags", "--to", "html"]).arg(&binary), LIMIT);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("not UTF-8"), "{stderr}");
}
