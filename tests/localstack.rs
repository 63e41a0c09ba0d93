//! Black-box tests on the `aws-mock` profile against a LocalStack these tests start themselves.

use std::collections::BTreeSet;
use std::time::Duration;

use docfleet_tests::{Fixture, free_port, http_get, ok, run_with_timeout, sample_documents};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);

fn sha256_hex(bytes: &[u8]) -> String {
    // Compare against the worker's hash with an independent implementation: sha256sum.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    let out = std::process::Command::new("sha256sum").arg(&p).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_worker_results_end_to_end() {
    let fx = Fixture::new("e2e", 3, 30).await;
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("batch");
    std::fs::create_dir(&docs).unwrap();
    let files = sample_documents(&docs, 4);
    let n = files.len();

    let stdout = ok(run_with_timeout(fx.command("docfleet").arg("enqueue").arg(&docs), LIMIT));
    assert!(
        stdout.contains(&format!("uploaded {n} documents")) && stdout.contains(&format!("enqueued {n} jobs, 0 failed")),
        "{stdout}"
    );
    assert_eq!(fx.depth(&fx.queue_url).await.0, n as u64, "every job is on SQS");

    // Two workers share the queue, as a scaled deployment would.
    let mut a = fx.command("docfleet-worker");
    let mut b = fx.command("docfleet-worker");
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| run_with_timeout(a.arg("--exit-when-empty"), LIMIT));
        let hb = s.spawn(|| run_with_timeout(b.arg("--exit-when-empty"), LIMIT));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(ra.status.success() && rb.status.success());

    let keys = fx.one_inspect_result_per_file(&files).await;
    for (file, key) in files.iter().zip(&keys) {
        let name = file.file_name().unwrap().to_string_lossy();
        let result = fx.output_json(key).await;
        assert_eq!(result["output"]["sha256"], sha256_hex(&std::fs::read(file).unwrap()), "{name}");
        assert_eq!(result["input"]["key"], format!("documents/batch/{name}"));
    }
    assert_eq!(fx.depth(&fx.queue_url).await, (0, 0, 0), "queue drained");
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 0);

    let status: Value =
        serde_json::from_str(&ok(run_with_timeout(fx.command("docfleet").args(["status", "--json"]), LIMIT))).unwrap();
    assert_eq!(status["results"], n, "{status}");
    let out_dir = tmp.path().join("downloaded");
    let stdout = ok(run_with_timeout(fx.command("docfleet").arg("results").arg("--out").arg(&out_dir), LIMIT));
    assert!(stdout.contains(&format!("downloaded {n} result objects and 0 error records")), "{stdout}");
}

/// An S3 event record as S3 writes it (keys URL-encoded, `+` for spaces).
fn s3_event(bucket: &str, encoded_key: &str) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-24T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "docfleet",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded_key, "size": 2050, "eTag": "e", "sequencer": "0A1B2C"}}
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_event_notifications_direct_and_via_sns_become_jobs() {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
        QueueConfiguration, S3KeyFilter,
    };
    let fx = Fixture::new("s3events", 3, 30).await;
    let receipt = std::fs::read(docfleet_tests::repo_root().join("samples/receipt.webp")).unwrap();

    // 1. A real bucket notification: LocalStack's S3 sends the s3:TestEvent on configuration and
    //    an ObjectCreated event on upload, exactly as S3 does.
    let queue_arn = fx
        .sqs
        .get_queue_attributes()
        .queue_url(&fx.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    fx.s3
        .put_bucket_notification_configuration()
        .bucket(&fx.input_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::S3ObjectCreated)
                        // Only `direct/`: the SNS case below must arrive through its envelope alone.
                        .filter(
                            NotificationConfigurationFilter::builder()
                                .key(
                                    S3KeyFilter::builder()
                                        .filter_rules(
                                            FilterRule::builder().name(FilterRuleName::Prefix).value("direct/").build(),
                                        )
                                        .build(),
                                )
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    fx.put_input("direct/scan one.webp", receipt.clone()).await;

    // 2. The same kind of event wrapped in an SNS envelope (S3 → SNS → SQS), as SNS delivers it.
    fx.put_input("sns/via sns.webp", receipt.clone()).await;
    let envelope = json!({
        "Type": "Notification",
        "MessageId": "8f1e0c52-0000-4000-8000-000000000001",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:docfleet-uploads",
        "Subject": "Amazon S3 Notification",
        "Message": s3_event(&fx.input_bucket, "sns/via+sns.webp"),
        "Timestamp": "2026-11-24T10:00:00.000Z",
        "SignatureVersion": "1",
    });
    fx.send_raw(&[&envelope.to_string()]).await;

    let stderr = fx.drain_with_worker();
    assert!(stderr.contains("s3:TestEvent received"), "the test event is recognised:\n{stderr}");
    let keys: BTreeSet<String> = fx.output_keys("results/").await.into_iter().collect();
    let expected: BTreeSet<String> = ["direct/scan one.webp", "sns/via sns.webp"]
        .iter()
        .map(|k| format!("results/inspect/{}/{k}.json", fx.input_bucket))
        .collect();
    assert_eq!(keys, expected);
    let direct = fx.output_json(&format!("results/inspect/{}/direct/scan one.webp.json", fx.input_bucket)).await;
    assert_eq!(direct["source"]["type"], "s3_event");
    assert_eq!(direct["source"]["via_sns"], false);
    let via_sns = fx.output_json(&format!("results/inspect/{}/sns/via sns.webp.json", fx.input_bucket)).await;
    assert_eq!(via_sns["source"]["type"], "s3_event");
    assert_eq!(via_sns["source"]["via_sns"], true);
    assert_eq!(via_sns["output"]["format"], "webp");
    assert_eq!(fx.depth(&fx.queue_url).await, (0, 0, 0), "test event deleted, jobs done");
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_failing_messages_get_error_records_and_the_dlq() {
    let fx = Fixture::new("poison", 3, 30).await;
    let missing =
        json!({"version": 1, "job_id": "missing-object", "input": format!("s3://{}/nope.png", fx.input_bucket)});
    let unknown = json!({"version": 1, "job_id": "bad-pipeline", "input": format!("s3://{}/x.png", fx.input_bucket), "pipeline": "teleport"});
    let foreign = json!({"version": 1, "job_id": "foreign", "input": "s3://someone-elses-bucket/x.png"});
    fx.send_raw(&["this is not json {", &missing.to_string(), &unknown.to_string(), &foreign.to_string()]).await;

    fx.drain_with_worker();

    let errors = fx.output_keys("errors/").await;
    assert_eq!(errors.len(), 4, "{errors:?}");
    let message_errors: Vec<&String> = errors.iter().filter(|k| k.starts_with("errors/messages/")).collect();
    assert_eq!(message_errors.len(), 1, "{errors:?}");
    let record = fx.output_json(message_errors[0]).await;
    assert_eq!(record["error"]["kind"], "invalid_message");
    assert!(record["error"]["message"].as_str().unwrap().contains("not JSON"));
    assert_eq!(record["body"], "this is not json {");
    assert!(!record["message_id"].as_str().unwrap().is_empty());

    let by_job = |id: &str| {
        let errors = errors.clone();
        let fx = &fx;
        let id = id.to_owned();
        async move {
            for k in errors.iter().filter(|k| !k.starts_with("errors/messages/")) {
                let r = fx.output_json(k).await;
                if r["job_id"] == id.as_str() {
                    return r;
                }
            }
            panic!("no error record for {id}")
        }
    };
    assert!(by_job("missing-object").await["error"]["message"].as_str().unwrap().contains("object not found"));
    assert!(by_job("bad-pipeline").await["error"]["message"].as_str().unwrap().contains("unknown pipeline `teleport`"));
    assert!(by_job("foreign").await["error"]["message"].as_str().unwrap().contains("not on the allow-list"));

    assert_eq!(fx.depth(&fx.queue_url).await, (0, 0, 0), "nothing loops on the job queue");
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 4, "every poison message is in the DLQ");
    assert!(fx.output_keys("results/").await.is_empty());

    // After "fixing the cause", redrive moves them back to the job queue.
    let stdout = ok(run_with_timeout(fx.command("docfleet").args(["dlq", "redrive"]), LIMIT));
    assert!(stdout.contains("moved") || stdout.contains("move task"), "{stdout}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (visible, _, _) = fx.depth(&fx.queue_url).await;
        if visible == 4 && fx.depth(&fx.dlq_url).await.0 == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "redrive did not complete: {stdout}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_job_still_produces_exactly_one_result() {
    let fx = Fixture::new("redeliver", 5, 30).await;
    let doc = std::fs::read(docfleet_tests::repo_root().join("samples/invoice.png")).unwrap();
    fx.put_input("docs/invoice.png", doc).await;
    let job = json!({"version": 1, "job_id": "once", "input": {"bucket": fx.input_bucket, "key": "docs/invoice.png"}})
        .to_string();
    fx.send_raw(&[&job]).await;

    // A consumer receives the message and dies without deleting it: SQS redelivers it.
    let got = fx.sqs.receive_message().queue_url(&fx.queue_url).visibility_timeout(1).send().await.unwrap();
    assert_eq!(got.messages.unwrap_or_default().len(), 1);
    // And the producer retried its send: the same job arrives twice more.
    fx.send_raw(&[&job, &job]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let stderr = fx.drain_with_worker();
    // The redelivered copy may come after another copy stored the result: then it is acknowledged
    // with that result (the redelivery short-cut) instead of run.
    let summary: Value = serde_json::from_str(stderr.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(
        summary["jobs_succeeded"].as_u64().unwrap() + summary["results_reused"].as_u64().unwrap(),
        3,
        "all three deliveries were processed:\n{stderr}"
    );
    let keys = fx.output_keys("").await;
    assert_eq!(
        keys,
        vec![format!("results/inspect/{}/docs/invoice.png.json", fx.input_bucket)],
        "exactly one result object"
    );
    let result = fx.output_json(&keys[0]).await;
    assert_eq!(result["job_id"], "once");
    assert_eq!(fx.depth(&fx.queue_url).await, (0, 0, 0));
}

/// The value of a metric line (exact name including labels) in a /metrics body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

const SUCCESS: &str = r#"docfleet_jobs_total{pipeline="inspect",outcome="success"}"#;
const REUSED: &str = r#"docfleet_redelivered_results_reused_total{pipeline="inspect"}"#;

/// Start a worker, wait until the queue is empty and it has finished one job (run or reused),
/// stop it with SIGTERM; its (jobs run, results reused) and stderr.
async fn one_job_with_a_fresh_worker(fx: &Fixture) -> (f64, f64, String) {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = fx
        .command("docfleet-worker")
        .env("DOCFLEET__WORKER__HTTP_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut guard = docfleet_tests::ChildGuard(child);
    let deadline = std::time::Instant::now() + LIMIT;
    let (run, reused) = loop {
        let body = http_get(port, "/metrics").unwrap_or_default();
        let counts = (metric(&body, SUCCESS).unwrap_or(0.0), metric(&body, REUSED).unwrap_or(0.0));
        if counts.0 + counts.1 >= 1.0 && fx.depth(&fx.queue_url).await == (0, 0, 0) {
            break counts;
        }
        assert!(std::time::Instant::now() < deadline, "the worker did not finish the job: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(guard.0.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || guard.0.wait().unwrap()).await.unwrap();
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "worker exits 0 on SIGTERM:\n{stderr}");
    (run, reused, stderr)
}

/// Receive the job's message once and let it go (visibility 0), as a worker that crashed after
/// storing its result would: the next receive is a redelivery (receive count 2).
async fn receive_and_abandon(fx: &Fixture) {
    let got = fx.sqs.receive_message().queue_url(&fx.queue_url).visibility_timeout(0).wait_time_seconds(5).send().await;
    assert_eq!(got.unwrap().messages.unwrap_or_default().len(), 1);
}

/// A redelivered job whose result is already stored for the same input ETag is acknowledged
/// without running its pipeline (counted in `docfleet_redelivered_results_reused_total`); once the
/// input is replaced (new ETag) the redelivered job is recomputed. The worker warns at start-up
/// when the queue's maxReceiveCount is below `worker.min_receive_budget` (5), and not otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_reuses_a_result_stored_for_the_same_input_etag() {
    let fx = Fixture::new("reuse", 5, 30).await;
    let doc = std::fs::read(docfleet_tests::repo_root().join("samples/invoice.png")).unwrap();
    fx.put_input("docs/invoice.png", doc).await;
    let job = json!({"version": 1, "job_id": "reuse", "input": {"bucket": fx.input_bucket, "key": "docs/invoice.png"}})
        .to_string();
    let key = format!("results/inspect/{}/docs/invoice.png.json", fx.input_bucket);

    fx.send_raw(&[&job]).await;
    let (run, reused, stderr) = one_job_with_a_fresh_worker(&fx).await;
    assert_eq!((run, reused), (1.0, 0.0), "{stderr}");
    assert!(!stderr.contains("min_receive_budget"), "maxReceiveCount 5 is enough:\n{stderr}");
    let first = fx.output_json(&key).await;
    let head = fx.s3.head_object().bucket(&fx.input_bucket).key("docs/invoice.png").send().await.unwrap();
    assert_eq!(first["input"]["etag"].as_str(), head.e_tag(), "the record holds the input's ETag: {first}");

    fx.send_raw(&[&job]).await;
    receive_and_abandon(&fx).await;
    let (run, reused, stderr) = one_job_with_a_fresh_worker(&fx).await;
    assert_eq!((run, reused), (0.0, 1.0), "acknowledged with the stored result:\n{stderr}");
    assert!(stderr.contains("acknowledged without running the pipeline"), "{stderr}");
    assert_eq!(fx.output_json(&key).await, first, "the result is left as it was");

    // The input changes (another document under the same key): the redelivery is recomputed.
    let other = std::fs::read(docfleet_tests::repo_root().join("samples/letter.jpg")).unwrap();
    fx.put_input("docs/invoice.png", other).await;
    fx.send_raw(&[&job]).await;
    receive_and_abandon(&fx).await;
    let (run, reused, stderr) = one_job_with_a_fresh_worker(&fx).await;
    assert_eq!((run, reused), (1.0, 0.0), "recomputed for the new input:\n{stderr}");
    let second = fx.output_json(&key).await;
    assert_ne!(second["input"]["etag"], first["input"]["etag"]);
    assert_ne!(second["output"]["sha256"], first["output"]["sha256"]);
    assert_eq!(second["receive_count"], 2);
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 0, "nothing dead-lettered");

    // A queue that dead-letters after 3 receives is below the default budget of 5: a warning.
    let small = Fixture::new("reuse-budget", 3, 30).await;
    small
        .put_input("docs/invoice.png", std::fs::read(docfleet_tests::repo_root().join("samples/invoice.png")).unwrap())
        .await;
    small
        .send_raw(&[
            &json!({"version": 1, "job_id": "b", "input": {"bucket": small.input_bucket, "key": "docs/invoice.png"}})
                .to_string(),
        ])
        .await;
    let (_, _, stderr) = one_job_with_a_fresh_worker(&small).await;
    assert!(
        stderr.contains("dead-letters a message after 3 receives, fewer than worker.min_receive_budget (5)"),
        "{stderr}"
    );
}
