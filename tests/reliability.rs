//! Worker fleet semantics against LocalStack: heartbeat, SIGTERM drain, the bad-input matrix,
//! `/health` `/ready` `/metrics`. Jobs of a chosen length come from the diagnostic `sleep` pipeline.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use docfleet_tests::{ChildGuard, Fixture, http_get, repo_root, text};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(180);

fn sleep_job(fx: &Fixture, id: &str, key: &str, ms: u64) -> String {
    json!({"version": 1, "job_id": id, "input": format!("s3://{}/{key}", fx.input_bucket), "pipeline": "sleep", "params": {"ms": ms}})
        .to_string()
}

fn worker(fx: &Fixture, port: u16) -> Command {
    let mut cmd = fx.command("docfleet-worker");
    cmd.env("DOCFLEET__WORKER__DIAGNOSTIC_PIPELINES", "true")
        .env("DOCFLEET__WORKER__HTTP_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn wait_output(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("worker {pid} did not exit within {limit:?}");
        }
    }
}

fn summary(out: &Output) -> Value {
    let (_, stderr) = text(out);
    let line = stderr.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary:\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// The value of a metric line (exact name including labels) in a /metrics body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

fn status_of(response: &str) -> u16 {
    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A job three times longer than the visibility timeout, two workers on the queue: with the
/// heartbeat it is processed once; without it the second worker gets it too (the duplicate the
/// heartbeat prevents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_long_jobs_from_being_redelivered() {
    let mut processed = BTreeMap::new();
    for heartbeat in [true, false] {
        let fx = Fixture::new(if heartbeat { "hb-on" } else { "hb-off" }, 10, 2).await;
        fx.put_input("docs/a.png", std::fs::read(repo_root().join("samples/invoice.png")).unwrap()).await;
        fx.send_raw(&[&sleep_job(&fx, "long", "docs/a.png", 6_000)]).await;
        let spawn = || {
            let mut cmd = worker(&fx, docfleet_tests::free_port());
            cmd.env("DOCFLEET__WORKER__VISIBILITY_TIMEOUT_SECONDS", "2")
                .env("DOCFLEET__WORKER__HEARTBEAT", heartbeat.to_string())
                .arg("--exit-when-empty");
            cmd.spawn().unwrap()
        };
        let a = spawn();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = spawn();
        let (oa, ob) = (wait_output(a, LIMIT), wait_output(b, LIMIT));
        assert!(oa.status.success() && ob.status.success(), "{}\n{}", text(&oa).1, text(&ob).1);
        let runs = summary(&oa)["jobs_succeeded"].as_u64().unwrap() + summary(&ob)["jobs_succeeded"].as_u64().unwrap();
        processed.insert(heartbeat, runs);
        let results = fx.output_keys("results/").await;
        assert_eq!(results.len(), 1, "one result object either way: {results:?}");
        if heartbeat {
            let record = fx.output_json(&results[0]).await;
            assert_eq!(record["receive_count"], 1, "never redelivered: {record}");
        }
    }
    println!("job runs with heartbeat: {}, without: {}", processed[&true], processed[&false]);
    assert_eq!(processed[&true], 1, "with the heartbeat the job runs exactly once");
    assert!(processed[&false] >= 2, "without the heartbeat the job is redelivered and runs again");
}

/// SIGTERM with jobs in flight: they finish, queued-but-unstarted messages go back to the queue,
/// the worker exits 0 within the grace period, and a second worker completes the rest with no job
/// run twice. With a grace period shorter than the jobs, unfinished jobs are released instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_jobs_and_releases_the_rest() {
    let fx = Fixture::new("drain", 10, 60).await;
    let doc = std::fs::read(repo_root().join("samples/invoice.png")).unwrap();
    let mut bodies = Vec::new();
    for i in 0..6 {
        fx.put_input(&format!("docs/{i}.png"), doc.clone()).await;
        bodies.push(sleep_job(&fx, &format!("j{i}"), &format!("docs/{i}.png"), 3_000));
    }
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let port = docfleet_tests::free_port();
    let mut cmd = worker(&fx, port);
    cmd.env("DOCFLEET__WORKER__CONCURRENCY", "4");
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    wait_for("4 jobs in flight", Duration::from_secs(60), async || {
        http_get(port, "/metrics").and_then(|b| metric(&b, "docfleet_jobs_in_flight")) == Some(4.0)
    })
    .await;
    let signalled = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = wait_output(child, Duration::from_secs(60));
    let took = signalled.elapsed();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(took < Duration::from_secs(25), "exited within the grace period (took {took:?})");
    let first = summary(&out);
    assert_eq!(first["jobs_succeeded"], 4, "in-flight jobs finished: {first}");
    assert_eq!(fx.output_keys("results/").await.len(), 4);
    assert_eq!(fx.depth(&fx.queue_url).await, (2, 0, 0), "unstarted messages released at once");

    let mut second = worker(&fx, docfleet_tests::free_port());
    let out = wait_output(second.arg("--exit-when-empty").spawn().unwrap(), LIMIT);
    assert_eq!(summary(&out)["jobs_succeeded"], 2, "{}", text(&out).1);
    let results = fx.output_keys("results/").await;
    assert_eq!(results.len(), 6);
    let mut counts = Vec::new();
    for k in &results {
        counts.push(fx.output_json(k).await["receive_count"].as_u64().unwrap());
    }
    counts.sort();
    // The four finished jobs were received once; the released ones again (a receive that was in
    // flight at SIGTERM may have picked one up and released it too, hence ≥ 2).
    assert_eq!(counts[..4], [1, 1, 1, 1], "{counts:?}");
    assert!(counts[4..].iter().all(|c| *c >= 2), "only the released ones were received again: {counts:?}");

    // Grace period shorter than the jobs: the worker gives up on them and releases them at once.
    let fx = Fixture::new("drain-grace", 10, 60).await;
    fx.put_input("docs/x.png", doc.clone()).await;
    fx.send_raw(&[&sleep_job(&fx, "slow", "docs/x.png", 30_000)]).await;
    let port = docfleet_tests::free_port();
    let mut cmd = worker(&fx, port);
    cmd.env("DOCFLEET__WORKER__SHUTDOWN_GRACE_SECONDS", "1");
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    wait_for("the slow job to start", Duration::from_secs(60), async || {
        http_get(port, "/metrics").and_then(|b| metric(&b, "docfleet_jobs_in_flight")) == Some(1.0)
    })
    .await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = wait_output(child, Duration::from_secs(20));
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).1.contains("released unfinished messages"), "{}", text(&out).1);
    assert_eq!(fx.depth(&fx.queue_url).await.0, 1, "the abandoned job is visible again at once");
    assert!(fx.output_keys("results/").await.is_empty());
}

/// Every kind of bad input ends as an error record with a clear reason and a DLQ message, and the
/// worker keeps serving: a good document sent last is processed by the same worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix_gets_error_records_and_the_worker_keeps_serving() {
    let fx = Fixture::new("badinput", 3, 30).await;
    let fixtures = repo_root().join("tests/fixtures/ocr");
    let read = |n: &str| std::fs::read(fixtures.join(n)).unwrap();
    let uploads: [(&str, Vec<u8>); 6] = [
        ("bad/truncated.png", read("bad_truncated.png")),
        ("bad/empty.png", Vec::new()),
        ("bad/bomb.png", read("bad_bomb.png")),
        ("bad/big.png", vec![0x89; 300_000]),
        ("bad/notes.png", b"just some text, not an image\n".to_vec()),
        ("good/invoice.png", std::fs::read(repo_root().join("samples/invoice.png")).unwrap()),
    ];
    for (k, body) in &uploads {
        fx.put_input(k, body.clone()).await;
    }
    let job =
        |id: &str, key: &str| json!({"version": 1, "job_id": id, "input": format!("s3://{}/{key}", fx.input_bucket)});
    // (job id or "" for a message-level error, the expected reason)
    let cases: Vec<(String, &str, &str)> = vec![
        (job("corrupt", "bad/truncated.png").to_string(), "corrupt", "invalid_input"),
        (job("zero", "bad/empty.png").to_string(), "zero", "0 bytes"),
        (job("bomb", "bad/bomb.png").to_string(), "bomb", "limit_exceeded"),
        (job("too-big", "bad/big.png").to_string(), "too-big", "limit_exceeded"),
        (job("text", "bad/notes.png").to_string(), "text", "unsupported document type"),
        ("{\"version\": 1, \"job_id\": ".into(), "", "not JSON"),
        (job("missing", "bad/nope.png").to_string(), "missing", "object not found"),
        (json!({"version": 1, "job_id": "foreign", "input": "s3://someone-elses-bucket/x.png"}).to_string(), "foreign", "allow-list"),
        (
            json!({"version": 1, "job_id": "escape", "input": format!("s3://{}/good/invoice.png", fx.input_bucket), "output_prefix": "../../etc"}).to_string(),
            "",
            "`..` segment",
        ),
        (json!({"version": 1, "job_id": "teleport", "input": format!("s3://{}/good/invoice.png", fx.input_bucket), "pipeline": "teleport"}).to_string(), "teleport", "unknown pipeline"),
    ];
    let mut bodies: Vec<&str> = cases.iter().map(|(b, _, _)| b.as_str()).collect();
    let good = job("good", "good/invoice.png").to_string();
    bodies.push(&good);
    fx.send_raw(&bodies).await;

    let mut cmd = worker(&fx, docfleet_tests::free_port());
    cmd.env("DOCFLEET__LIMITS__MAX_INPUT_BYTES", "200000").env("DOCFLEET__LIMITS__MAX_PIXELS", "50000000");
    let out = wait_output(cmd.arg("--exit-when-empty").spawn().unwrap(), LIMIT);
    assert!(out.status.success(), "{}", text(&out).1);
    let s = summary(&out);
    assert_eq!(s["jobs_succeeded"], 1, "{s}");

    let mut records: Vec<Value> = Vec::new();
    for k in fx.output_keys("errors/").await {
        records.push(fx.output_json(&k).await);
    }
    let text_of = |r: &Value| format!("{} {}", r["error"]["kind"], r["error"]["message"]);
    for (_, id, reason) in &cases {
        let found = records.iter().find(|r| {
            if id.is_empty() { r["job_id"].is_null() && text_of(r).contains(reason) } else { r["job_id"] == *id }
        });
        let r = found.unwrap_or_else(|| panic!("no error record for `{id}` ({reason}): {records:#?}"));
        assert!(text_of(r).contains(reason), "record for `{id}` should say `{reason}`: {r}");
    }
    assert_eq!(records.len(), cases.len(), "one error record per bad message");
    assert_eq!(fx.output_keys("results/").await.len(), 1, "only the good document has a result");
    assert_eq!(fx.depth(&fx.dlq_url).await.0, cases.len() as u64, "every bad message is in the DLQ");
    assert_eq!(fx.depth(&fx.queue_url).await, (0, 0, 0));
    // Nothing was written outside the configured prefixes.
    let all = fx.s3.list_objects_v2().bucket(&fx.output_bucket).send().await.unwrap();
    for o in all.contents.unwrap_or_default() {
        let k = o.key.unwrap();
        assert!(k.starts_with("results/") || k.starts_with("errors/"), "unexpected object {k}");
    }
}

/// `/health` answers while the queue is unreachable but `/ready` does not; with a reachable queue
/// `/ready` turns 200 and `/metrics` counts match the jobs processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_reflect_the_worker() {
    let fx = Fixture::new("metrics", 3, 30).await;

    // A queue endpoint nobody listens on.
    let port = docfleet_tests::free_port();
    let mut cmd = worker(&fx, port);
    cmd.env("DOCFLEET__AWS__ENDPOINT_URL", format!("http://127.0.0.1:{}", docfleet_tests::free_port()))
        .env("DOCFLEET__QUEUE__URL", "http://127.0.0.1:9/000000000000/nowhere");
    let dead = ChildGuard(cmd.spawn().unwrap());
    wait_for("/health", Duration::from_secs(30), async || {
        http_get(port, "/health").is_some_and(|r| status_of(&r) == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = http_get(port, "/ready").unwrap();
    assert_eq!(status_of(&ready), 503, "{ready}");
    assert!(ready.contains("queue_reachable=false"), "{ready}");
    drop(dead);

    let doc = std::fs::read(repo_root().join("samples/invoice.png")).unwrap();
    let mut bodies = Vec::new();
    for i in 0..5 {
        fx.put_input(&format!("docs/{i}.png"), doc.clone()).await;
        bodies.push(
            json!({"version": 1, "job_id": format!("m{i}"), "input": format!("s3://{}/docs/{i}.png", fx.input_bucket)})
                .to_string(),
        );
    }
    bodies.push(
        json!({"version": 1, "job_id": "gone", "input": format!("s3://{}/docs/missing.png", fx.input_bucket)})
            .to_string(),
    );
    let port = docfleet_tests::free_port();
    // Deletes wait up to 3 s for company: the six finish well within that, so they share a call.
    let live = ChildGuard(worker(&fx, port).env("DOCFLEET__WORKER__DELETE_FLUSH_MS", "3000").spawn().unwrap());
    wait_for("/ready", Duration::from_secs(30), async || {
        http_get(port, "/ready").is_some_and(|r| status_of(&r) == 200)
    })
    .await;
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut body = String::new();
    wait_for("6 jobs counted", Duration::from_secs(60), async || {
        body = http_get(port, "/metrics").unwrap_or_default();
        metric(&body, r#"docfleet_jobs_total{pipeline="inspect",outcome="success"}"#) == Some(5.0)
            && metric(&body, r#"docfleet_jobs_total{pipeline="inspect",outcome="failed"}"#) == Some(1.0)
    })
    .await;
    assert_eq!(fx.output_keys("results/").await.len(), 5);
    assert_eq!(metric(&body, "docfleet_messages_received_total"), Some(6.0), "{body}");
    assert_eq!(metric(&body, "docfleet_dead_lettered_total"), Some(1.0), "{body}");
    assert_eq!(metric(&body, "docfleet_worker_busy"), Some(0.0), "{body}");
    assert!(body.contains("docfleet_job_duration_seconds_bucket"), "{body}");
    assert!(
        body.contains(r#"docfleet_stage_duration_seconds_count{pipeline="inspect",stage="fetch"} 5"#),
        "fetched: the five that exist\n{body}"
    );
    // Five done and one dead-lettered: six receipts deleted, in one or two DeleteMessageBatch calls.
    wait_for("6 receipts deleted", Duration::from_secs(30), async || {
        body = http_get(port, "/metrics").unwrap_or_default();
        metric(&body, "docfleet_delete_batch_size_sum") == Some(6.0)
    })
    .await;
    let calls = metric(&body, "docfleet_delete_batch_size_count").unwrap();
    assert!((1.0..=2.0).contains(&calls), "6 receipts took {calls} delete calls\n{body}");
    assert_eq!(fx.depth(&fx.queue_url).await, (0, 0, 0));
    drop(live);
}

/// Documents are fetched while another job runs, within `worker.max_prefetch_bytes`: one slot,
/// 150 ms jobs, 24 documents of ~300 KB (21 messages held at once would be ~6 MB) and a 1 MiB
/// budget. `docfleet_prefetch_bytes`, sampled through the run, shows two or more documents held
/// at once (one running, the next already fetched) and never more than the budget; every
/// document gets its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_prefetched_within_the_byte_budget() {
    let fx = Fixture::new("prefetch", 5, 60).await;
    // Noise does not compress: a 320×320 RGB PNG of ~300 KB.
    let mut state = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(320, 320, |_, _| {
        let mut px = [0u8; 3];
        for c in &mut px {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *c = state as u8;
        }
        image::Rgb(px)
    });
    let mut doc = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut doc), image::ImageFormat::Png).unwrap();
    let (n, budget) = (24, 1u64 << 20);
    assert!(doc.len() > 250_000, "{} bytes", doc.len());
    let mut bodies = Vec::new();
    for i in 0..n {
        let key = format!("docs/{i}.png");
        fx.put_input(&key, doc.clone()).await;
        bodies.push(sleep_job(&fx, &format!("p{i}"), &key, 150));
    }
    fx.send_raw(&bodies[..10].iter().map(String::as_str).collect::<Vec<_>>()).await;
    fx.send_raw(&bodies[10..20].iter().map(String::as_str).collect::<Vec<_>>()).await;
    fx.send_raw(&bodies[20..].iter().map(String::as_str).collect::<Vec<_>>()).await;

    let port = docfleet_tests::free_port();
    let mut cmd = worker(&fx, port);
    cmd.env("DOCFLEET__WORKER__CONCURRENCY", "1")
        .env("DOCFLEET__WORKER__MAX_PREFETCH_BYTES", budget.to_string())
        .env("DOCFLEET__LIMITS__MAX_INPUT_BYTES", "400000");
    let _live = ChildGuard(cmd.spawn().unwrap());
    let (mut most, mut samples) = (0f64, 0);
    wait_for("every result", LIMIT, async || {
        let body = http_get(port, "/metrics").unwrap_or_default();
        if let Some(v) = metric(&body, "docfleet_prefetch_bytes") {
            most = most.max(v);
            samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        metric(&body, r#"docfleet_jobs_total{pipeline="sleep",outcome="success"}"#) == Some(n as f64)
    })
    .await;
    assert_eq!(fx.output_keys("results/").await.len(), n);
    assert!(samples >= 5, "only {samples} samples");
    assert!(most <= budget as f64, "held {most} bytes, over the {budget}-byte budget");
    assert!(most >= 2.0 * doc.len() as f64, "at most {most} bytes held: nothing fetched ahead of the slot");
}

/// SIGTERM during start-up exits 0 at once: while the queue is unreachable (the worker waits
/// it out, /ready false) and while models load (local-dev: the embedded queue answers at once,
/// then the OCR sessions are built).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_start_up_exits_0_promptly() {
    let start = |profile: &str, port: u16, extra: &[(&str, String)]| {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(docfleet_tests::bin("docfleet-worker"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOCFLEET_PROFILE", profile)
            .env("DOCFLEET__WORKER__HTTP_PORT", port.to_string())
            .env("RUST_LOG", "info")
            .current_dir(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ["HOME", "HF_HOME", "HF_HUB_CACHE", "ORT_DYLIB_PATH"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        (cmd.spawn().unwrap(), tmp)
    };

    // An endpoint nobody listens on: the worker retries with backoff until stopped.
    let port = docfleet_tests::free_port();
    let dead = format!("http://127.0.0.1:{}", docfleet_tests::free_port());
    let (child, _tmp) = start(
        "aws-mock",
        port,
        &[
            ("DOCFLEET__AWS__ENDPOINT_URL", dead),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ],
    );
    let pid = child.id() as i32;
    wait_for("/health", Duration::from_secs(30), async || http_get(port, "/health").is_some()).await;
    // The signal lands inside the SDK's own connection retries or in the worker's backoff wait.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(http_get(port, "/ready").map(|r| status_of(&r)), Some(503), "not ready without a queue");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = wait_output(child, Duration::from_secs(10));
    let stderr = text(&out).1;
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("during start-up"), "{stderr}");

    // Model loading: signal as soon as /health answers. The signal lands either while the models
    // load (the worker says it stopped during start-up) or just after start-up finished (it
    // logged "worker started" and stops the normal way); exit 0 in both cases, never by the
    // signal. (A /ready check between the two would race with the start-up finishing.)
    let port = docfleet_tests::free_port();
    let (child, _tmp) = start("local-dev", port, &[]);
    let pid = child.id() as i32;
    wait_for("/health", Duration::from_secs(30), async || http_get(port, "/health").is_some()).await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = wait_output(child, Duration::from_secs(20));
    let stderr = text(&out).1;
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    let started = stderr.contains("worker started");
    assert!(started != stderr.contains("during start-up"), "either stopped during start-up or after it:\n{stderr}");
}

/// A worker holds at most `concurrency` running + `worker.max_waiting` waiting messages: with 2
/// slots and `max_waiting = 1` it holds 3 of 12 messages, though a receive could take 10 (and
/// before `max_waiting`, 2 slots + 2 receives × 10 did). SQS also counts a finished job's
/// message as in flight until its batched delete lands: at most the 2 that finish within one
/// `delete_flush_ms`, so never more than 5 are seen invisible. Every job gets its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_no_more_than_its_slots_and_max_waiting() {
    let fx = Fixture::new("max-waiting", 10, 60).await;
    let doc = std::fs::read(repo_root().join("samples/invoice.png")).unwrap();
    for i in 0..12 {
        fx.put_input(&format!("docs/{i}.png"), doc.clone()).await;
    }
    let bodies: Vec<String> =
        (0..12).map(|i| sleep_job(&fx, &format!("w{i}"), &format!("docs/{i}.png"), 400)).collect();
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let mut cmd = worker(&fx, docfleet_tests::free_port());
    cmd.env("DOCFLEET__WORKER__CONCURRENCY", "2").env("DOCFLEET__WORKER__MAX_WAITING", "1").arg("--exit-when-empty");
    let child = cmd.spawn().unwrap();
    let mut most_held = 0;
    let deadline = Instant::now() + LIMIT;
    while fx.output_keys("results/").await.len() < 12 && Instant::now() < deadline {
        let (_, in_flight, _) = fx.depth(&fx.queue_url).await;
        most_held = most_held.max(in_flight);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = wait_output(child, LIMIT);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(summary(&out)["jobs_succeeded"], 12, "{}", text(&out).1);
    assert!(most_held >= 2, "the worker was seen holding its running jobs ({most_held})");
    assert!(most_held <= 5, "held {most_held} messages at once; 2 slots + max_waiting 1 + 2 pending deletes allow 5");
}
