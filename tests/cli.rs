//! Black-box tests of the `docfleet` command line (issue 19): exit statuses, per-document output,
//! pipeline checks, configuration hints, connection-failure hints. The local-dev profile only: no
//! services.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use docfleet_tests::{bin, free_port, repo_root, run_with_timeout, text};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// A `docfleet` command in `cwd` on the local-dev profile with a clean environment.
fn docfleet(cwd: &Path) -> Command {
    let mut cmd = Command::new(bin("docfleet"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCFLEET_PROFILE", "local-dev")
        .current_dir(cwd);
    cmd
}

fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out: Output = run_with_timeout(cmd, LIMIT);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// A directory with one good PNG (from samples/) and `bad` broken PDFs.
fn documents(dir: &Path, good: bool, bad: usize) -> std::path::PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    if good {
        std::fs::copy(repo_root().join("samples/invoice.png"), docs.join("invoice.png")).unwrap();
    }
    for i in 0..bad {
        std::fs::write(docs.join(format!("broken{i}.pdf")), b"%PDF-1.7 this is not a pdf").unwrap();
    }
    docs
}

#[test]
fn run_exits_2_when_some_documents_failed_and_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), true, 1);
    let (code, stdout, stderr) =
        run(docfleet(tmp.path()).args(["run", "--pipeline", "inspect", "--out", "o"]).arg(&docs));
    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("broken0.pdf"), "the failure names the file:\n{stderr}");
    assert!(stdout.contains("broken0.pdf") && stdout.contains("invoice.png"), "per-document table:\n{stdout}");
    assert!(!stderr.contains("`ocr`"), "no warning about a pipeline not asked for:\n{stderr}");
    assert!(tmp.path().join("o/docs/broken0.pdf.error.json").is_file());
    assert!(tmp.path().join("o/docs/invoice.png.inspect.json").is_file());
}

#[test]
fn run_exits_1_when_every_document_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), false, 2);
    let (code, stdout, stderr) =
        run(docfleet(tmp.path()).args(["run", "--pipeline", "inspect", "--out", "o"]).arg(&docs));
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("all 2 documents failed"), "{stderr}");
}

#[test]
fn run_json_prints_one_object_per_document() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), true, 1);
    let (code, stdout, stderr) =
        run(docfleet(tmp.path()).args(["run", "--pipeline", "inspect", "--json", "--out", "o"]).arg(&docs));
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let by_doc = |name: &str| lines.iter().find(|v| v["document"].as_str().unwrap().ends_with(name)).unwrap();
    assert_eq!(by_doc("invoice.png")["status"], "ok");
    assert_eq!(by_doc("broken0.pdf")["status"], "error");
    assert!(by_doc("broken0.pdf")["files"][0].as_str().unwrap().ends_with("broken0.pdf.error.json"));
}

/// Jobs an earlier `enqueue` left in the embedded queue are not this run's: the run says they wait,
/// processes and lists only its own documents, and leaves those jobs queued for a worker.
#[test]
fn run_processes_only_its_own_jobs_and_says_others_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let earlier = tmp.path().join("earlier");
    std::fs::create_dir(&earlier).unwrap();
    std::fs::copy(repo_root().join("samples/letter.jpg"), earlier.join("letter.jpg")).unwrap();
    let (code, _, stderr) = run(docfleet(tmp.path()).args(["enqueue", "--pipeline", "inspect"]).arg(&earlier));
    assert_eq!(code, Some(0), "{stderr}");

    let docs = documents(tmp.path(), true, 0);
    let (code, stdout, stderr) =
        run(docfleet(tmp.path()).args(["run", "--pipeline", "inspect", "--json", "--out", "o"]).arg(&docs));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr.matches("1 jobs from earlier are waiting").count(), 1, "{stderr}");
    assert!(stderr.contains("this run processes only its own"), "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "only this run's document is listed: {stdout}");
    assert!(lines[0]["document"].as_str().unwrap().ends_with("invoice.png"), "{stdout}");
    assert!(!tmp.path().join("o/earlier").exists(), "the earlier job was not processed by the run");

    let status = |tmp: &Path| -> Value {
        let (code, stdout, stderr) = run(docfleet(tmp).args(["status", "--json"]));
        assert_eq!(code, Some(0), "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let before = status(tmp.path());
    assert_eq!(before["queue"]["depth"]["visible"], 1, "the earlier job still waits: {before}");
    assert_eq!(before["results"], 1, "{before}");
    // A worker takes it.
    let mut worker = Command::new(bin("docfleet-worker"));
    worker
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCFLEET_PROFILE", "local-dev")
        .env("DOCFLEET__WORKER__HTTP_PORT", "0")
        .current_dir(tmp.path())
        .arg("--exit-when-empty");
    let (code, _, stderr) = run(&mut worker);
    assert_eq!(code, Some(0), "{stderr}");
    let after = status(tmp.path());
    assert_eq!(after["queue"]["depth"]["visible"], 0, "{after}");
    assert_eq!(after["results"], 2, "{after}");
}

/// Many documents: the per-document table still lists every one (no cut-off).
#[test]
fn run_lists_every_document_in_its_table() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), true, 0);
    for i in 0..59 {
        std::fs::copy(docs.join("invoice.png"), docs.join(format!("copy{i:02}.png"))).unwrap();
    }
    let (code, stdout, stderr) =
        run(docfleet(tmp.path()).args(["run", "--pipeline", "inspect", "--out", "o"]).arg(&docs));
    assert_eq!(code, Some(0), "{stderr}");
    for i in 0..59 {
        assert!(stdout.contains(&format!("copy{i:02}.png")), "copy{i:02}.png missing from the table:\n{stdout}");
    }
    assert!(stdout.contains("invoice.png"));
    assert_eq!(stdout.matches("| ok ").count(), 60, "60 rows with status ok:\n{stdout}");
}

#[test]
fn enqueue_refuses_an_unknown_pipeline_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), true, 0);
    let (code, _, stderr) = run(docfleet(tmp.path()).args(["enqueue", "--pipeline", "foo"]).arg(&docs));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unknown pipeline `foo`") && stderr.contains("--force"), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "printed once:\n{stderr}");
    let (code, stdout, stderr) = run(docfleet(tmp.path()).args(["enqueue", "--force", "--pipeline", "foo"]).arg(&docs));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("enqueued 1 jobs"), "{stdout}");
}

#[test]
fn run_vlm_without_a_model_says_what_to_configure() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), true, 0);
    let (code, _, stderr) = run(docfleet(tmp.path()).args(["run", "--pipeline", "vlm"]).arg(&docs));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("models.vlm.repo_id") && stderr.contains("models.vlm.dir"), "{stderr}");
    assert!(!stderr.contains("available: inspect"), "{stderr}");
}

#[test]
fn configuration_hints_did_you_mean_and_single_underscore_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(docfleet(tmp.path()).args(["config", "show"]).env("DOCFLEET__WORKER__CONCURENCY", "3"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("did you mean `worker.concurrency`?"), "{stderr}");

    let (code, stdout, stderr) =
        run(docfleet(tmp.path()).args(["config", "show"]).env("DOCFLEET_WORKER_CONCURRENCY", "3"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("concurrency"));
    assert!(stderr.contains("warning:") && stderr.contains("DOCFLEET__WORKER__CONCURRENCY"), "{stderr}");

    // DOCFLEET_PROFILE (set by docfleet()) and the scripts' variables are not configuration.
    let (code, _, stderr) = run(docfleet(tmp.path()).args(["config", "show"]).env("DOCFLEET_CACHE", "/tmp/x"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn connection_failure_says_what_was_tried_and_what_to_check() {
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = docfleet(tmp.path());
    cmd.args(["status"])
        .env("DOCFLEET_PROFILE", "aws-mock")
        .env("DOCFLEET__AWS__ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_MAX_ATTEMPTS", "1");
    let (code, _, stderr) = run(&mut cmd);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&endpoint) && stderr.contains("LocalStack started?"), "{stderr}");
    assert!(stderr.contains("credentials") && stderr.contains("-v for the full detail"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "printed once:\n{stderr}");
}

/// `docfleet completions SHELL` prints a script the shell accepts that knows the subcommands and
/// their flags; `docfleet man DIR` writes one roff page per command. Neither reads the
/// configuration (a broken profile does not stop them).
#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, bash, stderr) =
        run(docfleet(tmp.path()).env("DOCFLEET_PROFILE", "no-such-profile").args(["completions", "bash"]));
    assert_eq!(code, Some(0), "{stderr}");
    for word in ["enqueue", "results", "redrive", "--pipeline", "--json"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let script = tmp.path().join("docfleet.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = run_with_timeout(Command::new("bash").arg("-n").arg(&script), LIMIT);
    assert!(check.status.success(), "bash -n: {}", text(&check).1);
    let (code, zsh, _) = run(docfleet(tmp.path()).args(["completions", "zsh"]));
    assert_eq!(code, Some(0));
    assert!(zsh.starts_with("#compdef docfleet"), "{}", &zsh[..zsh.len().min(200)]);
    let (code, _, stderr) = run(docfleet(tmp.path()).args(["completions", "tcsh"]));
    assert_eq!(code, Some(2), "an unknown shell is a usage error: {stderr}");

    let (code, _, stderr) = run(docfleet(tmp.path()).args(["man", "man"]));
    assert_eq!(code, Some(0), "{stderr}");
    let page = |name: &str| std::fs::read_to_string(tmp.path().join("man").join(name)).unwrap();
    assert!(page("docfleet.1").contains(".TH docfleet 1"), "{}", page("docfleet.1"));
    let run_page = page("docfleet-run.1");
    assert!(run_page.contains("Exit status") && run_page.contains("\\-\\-out"), "{run_page}");
    assert!(page("docfleet-dlq-redrive.1").contains("DLQ"));
}

/// Debian's headless Chromium (`DOCFLEET_CHROMIUM`, else `chromium` on PATH; scripts/test.sh
/// installs it), with the flags a closed network needs, dumping `page`'s DOM once its scripts ran.
fn chromium_dom(page: &Path) -> String {
    let browser = std::env::var("DOCFLEET_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=10000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("file://{}", page.display()));
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot start {browser} ({e}): scripts/setup/chromium.sh installs Debian's chromium"),
    };
    assert!(out.status.success(), "{browser}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// An attribute of the DOM's `<body>`.
fn body_attr<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let at = body.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&body[at..at + body[at..].find('"')?])
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `run --report` (issue 19): `report.html` is self-contained and a real browser renders it: every
/// page image decodes, each line of the results is a box over its page and a text beside it, and
/// the document that failed is listed with its error.
#[test]
fn run_report_renders_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = documents(tmp.path(), true, 1);
    std::fs::copy(repo_root().join("samples/report.pdf"), docs.join("report.pdf")).unwrap();
    let mut cmd = docfleet(tmp.path());
    // The models scripts/setup/onnxruntime.sh laid out; nothing is fetched.
    for var in ["HOME", "ORT_DYLIB_PATH", "DOCFLEET__MODELS__CACHE_DIR", "HF_HUB_CACHE"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("HF_HUB_OFFLINE", "1").args(["run", "--pipeline", "ocr", "--report", "--out", "o"]).arg(&docs);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, Some(2), "one document is broken:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let report = tmp.path().join("o/report.html");
    assert!(stderr.contains("report.html"), "the run says where the report is:\n{stderr}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained: nothing to fetch");

    let mut lines = Vec::new();
    let mut pages = 0;
    for name in ["invoice.png", "report.pdf"] {
        let path = tmp.path().join(format!("o/docs/{name}.ocr.json"));
        let result: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for page in result["output"]["pages"].as_array().unwrap() {
            pages += 1;
            lines.extend(page["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(pages, 3);
    assert!(lines.len() > 10, "{lines:?}");

    let dom = chromium_dom(&report);
    assert_eq!(body_attr(&dom, "data-decoded"), Some("3"), "Chromium decoded every page image");
    assert_eq!(body_attr(&dom, "data-boxes"), Some(lines.len().to_string().as_str()));
    assert_eq!(dom.matches("<polygon class=\"line\"").count(), lines.len(), "one box per line");
    let listed = dom.matches("<li data-line=").count();
    assert_eq!(listed, lines.len(), "one text per line beside the page");
    for line in &lines {
        assert!(dom.contains(&html_escape(line)), "{line:?} beside its page");
    }
    assert!(dom.contains("INVOICE"), "{dom}");
    let broken = dom.find("data-name=\"docs/broken0.pdf\"").expect("the failed document is in the report");
    assert!(dom[broken..].contains("data-status=\"error\""), "listed as failed");
    assert!(dom[broken..].contains("error-message"), "with its error");
}
