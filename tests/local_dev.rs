//! Black-box tests on the `local-dev` profile: no services at all.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use docfleet_tests::{bin, ok, repo_root, run_with_timeout, sample_documents, text};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// A `docfleet` command running in `cwd` on the local-dev profile with a clean environment.
fn docfleet(cwd: &Path, binary: &str) -> Command {
    let mut cmd = Command::new(bin(binary));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCFLEET_PROFILE", "local-dev")
        .current_dir(cwd);
    cmd
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn run_processes_the_bundled_samples_without_services() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = repo_root().join("samples");
    let out_dir = tmp.path().join("out");
    let run = || {
        ok(run_with_timeout(
            docfleet(tmp.path(), "docfleet")
                .args(["run", "--pipeline", "inspect"])
                .arg(&samples)
                .arg("--out")
                .arg(&out_dir),
            LIMIT,
        ))
    };
    let stdout = run();
    assert!(stdout.contains("| 5         | 5       | 0      | 0"), "summary table:\n{stdout}");

    let expect = [
        ("invoice.png", "png", 1),
        ("letter.jpg", "jpeg", 1),
        ("receipt.webp", "webp", 1),
        ("report.pdf", "pdf", 2),
        ("scan.tiff", "tiff", 2),
    ];
    for (name, format, pages) in expect {
        let result = read_json(&out_dir.join(format!("samples/{name}.inspect.json")));
        assert_eq!(result["schema"], "docfleet.result/v1");
        assert_eq!(result["output"]["format"], format, "{name}");
        assert_eq!(result["output"]["page_count"], pages, "{name}");
        let bytes = std::fs::read(samples.join(name)).unwrap();
        assert_eq!(result["output"]["bytes"], bytes.len(), "{name}");
        assert_eq!(result["output"]["sha256"].as_str().unwrap().len(), 64);
    }

    // A second run overwrites the same deterministic keys: still one result per document.
    run();
    let status: Value =
        serde_json::from_str(&ok(run_with_timeout(docfleet(tmp.path(), "docfleet").args(["status", "--json"]), LIMIT)))
            .unwrap();
    assert_eq!(status["results"], 5, "{status}");
    assert_eq!(status["queue"]["depth"]["visible"], 0);
    assert_eq!(status["queue"]["depth"]["in_flight"], 0);
    assert_eq!(status["dlq"]["depth"]["visible"], 0);
}

#[test]
fn enqueue_and_worker_share_the_embedded_queue_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    sample_documents(&docs, 3);
    let stdout = ok(run_with_timeout(docfleet(tmp.path(), "docfleet").arg("enqueue").arg(&docs), LIMIT));
    assert!(stdout.contains("enqueued 15 jobs, 0 failed"), "{stdout}");

    let out = run_with_timeout(docfleet(tmp.path(), "docfleet-worker").arg("--exit-when-empty"), LIMIT);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\"jobs_succeeded\":15"), "{stderr}");

    let results_dir = tmp.path().join("results");
    let stdout =
        ok(run_with_timeout(docfleet(tmp.path(), "docfleet").arg("results").arg("--out").arg(&results_dir), LIMIT));
    assert!(stdout.contains("downloaded 15 result objects and 0 error records"), "{stdout}");
}

#[test]
fn bad_inputs_become_error_records_and_dead_letters() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("bad");
    std::fs::create_dir(&docs).unwrap();
    let png = std::fs::read(repo_root().join("samples/invoice.png")).unwrap();
    std::fs::write(docs.join("empty.png"), b"").unwrap();
    std::fs::write(docs.join("text.png"), b"this is a text file wearing a .png name\n").unwrap();
    std::fs::write(docs.join("truncated.png"), &png[..png.len() / 3]).unwrap();
    std::fs::write(docs.join("too-big.png"), &png).unwrap();
    std::fs::write(docs.join("fine.webp"), std::fs::read(repo_root().join("samples/receipt.webp")).unwrap()).unwrap();

    // Byte limit between the sizes of the fine document and the full-size PNG.
    let out = run_with_timeout(
        docfleet(tmp.path(), "docfleet")
            .env("DOCFLEET__LIMITS__MAX_INPUT_BYTES", "20000")
            .args(["run", "--pipeline", "inspect"])
            .arg(&docs)
            .arg("--out")
            .arg(tmp.path().join("out")),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "some documents failed: exit 2 (issue 19):\n{stdout}\n{stderr}");
    assert!(stdout.contains("| 5         | 1       | 4      | 0"), "{stdout}");

    let reasons = [
        ("empty.png", "empty (0 bytes)"),
        ("text.png", "unsupported document type"),
        ("truncated.png", "cannot decode image/png"),
        ("too-big.png", "over the limit of 20000"),
    ];
    for (name, needle) in reasons {
        let record = read_json(&tmp.path().join(format!("out/bad/{name}.error.json")));
        let message = record["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: {message}");
    }
    let status: Value =
        serde_json::from_str(&ok(run_with_timeout(docfleet(tmp.path(), "docfleet").args(["status", "--json"]), LIMIT)))
            .unwrap();
    assert_eq!(status["dlq"]["depth"]["visible"], 4, "permanent failures are dead-lettered at once: {status}");
    assert_eq!(status["queue"]["depth"]["visible"], 0);
    assert_eq!(status["errors"], 4);
}

#[test]
fn config_show_layers_and_redacts() {
    let tmp = tempfile::tempdir().unwrap();
    let shown = ok(run_with_timeout(
        docfleet(tmp.path(), "docfleet")
            .env("DOCFLEET__AWS__SECRET_ACCESS_KEY", "super-secret-value")
            .env("DOCFLEET__WORKER__CONCURRENCY", "9")
            .args(["config", "show", "--profile", "aws-mock"]),
        LIMIT,
    ));
    assert!(shown.contains("profile: aws-mock"), "{shown}");
    assert!(shown.contains("concurrency = 9"), "{shown}");
    assert!(shown.contains("backend = \"sqs\""), "{shown}");
    assert!(!shown.contains("super-secret-value"), "{shown}");
    assert!(shown.contains("secret_access_key = \"<redacted>\""), "{shown}");

    let k8s =
        ok(run_with_timeout(docfleet(tmp.path(), "docfleet").args(["config", "show", "--profile", "k8s"]), LIMIT));
    assert!(k8s.contains("format = \"json\""), "{k8s}");
}

#[test]
fn bad_configuration_fails_at_start_up_naming_key_and_origin() {
    let tmp = tempfile::tempdir().unwrap();
    for binary in ["docfleet-worker", "docfleet"] {
        let mut cmd = docfleet(tmp.path(), binary);
        cmd.env("DOCFLEET__WORKER__CONCURENCY", "3");
        if binary == "docfleet" {
            cmd.args(["config", "show"]);
        }
        let out = run_with_timeout(&mut cmd, LIMIT);
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains("unknown key `worker.concurency` (from the environment)"), "{binary}: {stderr}");
    }
    let file = tmp.path().join("extra.toml");
    std::fs::write(&file, "[worker]\nreceive_batch = 50\n").unwrap();
    let out =
        run_with_timeout(docfleet(tmp.path(), "docfleet").arg("--config").arg(&file).args(["config", "show"]), LIMIT);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("`worker.receive_batch`") && stderr.contains("extra.toml"), "{stderr}");

    let out = run_with_timeout(docfleet(tmp.path(), "docfleet").args(["--profile", "nope", "config", "show"]), LIMIT);
    assert!(text(&out).1.contains("unknown profile `nope`"));
}
