//! Chaos against LocalStack: workers SIGKILLed and restarted mid-run, and the backends going away
//! for 10 s. At the end every document has exactly one result, the DLQ holds exactly the planted
//! poison documents, and nothing is missing. Every loop is bounded in count and time.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use docfleet_tests::outage::OutageProxy;
use docfleet_tests::{Fixture, free_port, repo_root};
use serde_json::{Value, json};

/// Small xorshift PRNG; the seed is printed so a failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn job(fx: &Fixture, key: &str, pipeline: &str) -> String {
    json!({"version": 1, "job_id": key, "input": format!("s3://{}/{key}", fx.input_bucket), "pipeline": pipeline})
        .to_string()
}

async fn send_all(fx: &Fixture, bodies: &[String]) {
    for (n, chunk) in bodies.chunks(10).enumerate() {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder().id(format!("m{n}-{i}")).message_body(b).build().unwrap()
            })
            .collect();
        let out = fx.sqs.send_message_batch().queue_url(&fx.queue_url).set_entries(Some(entries)).send().await.unwrap();
        assert!(out.failed.is_empty(), "send failed: {:?}", out.failed);
    }
}

async fn upload_all(fx: &Fixture, objects: Vec<(String, Vec<u8>)>) {
    use futures::StreamExt;
    futures::stream::iter(objects)
        .map(|(k, body)| async move { fx.put_input(&k, body).await })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// Job ids of every message in the DLQ (read with a long visibility so each is seen once).
async fn dlq_job_ids(fx: &Fixture) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..200 {
        let out = fx
            .sqs
            .receive_message()
            .queue_url(&fx.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let body: Value = serde_json::from_str(m.body.as_deref().unwrap_or("{}")).unwrap_or_default();
            ids.push(body["job_id"].as_str().unwrap_or("?").to_owned());
        }
    }
    ids
}

/// What the `ocr` pipeline needs from the test environment (scripts/test.sh sets these up).
const MODEL_ENV: &[&str] = &["HOME", "HF_HOME", "HF_HUB_CACHE", "ORT_DYLIB_PATH"];

fn spawn_worker(fx: &Fixture, endpoint: Option<&str>, id: usize) -> Child {
    let mut cmd: Command = fx.command("docfleet-worker");
    for var in MODEL_ENV {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("DOCFLEET__WORKER__HTTP_PORT", free_port().to_string())
        .env("DOCFLEET__WORKER__VISIBILITY_TIMEOUT_SECONDS", "5")
        .env("DOCFLEET__WORKER__RETRY_BASE_DELAY_SECONDS", "1")
        .env("DOCFLEET__WORKER__RETRY_MAX_DELAY_SECONDS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(std::env::temp_dir().join(format!("{}-worker-{id}.log", fx.name))).unwrap());
    if let Some(e) = endpoint {
        cmd.env("DOCFLEET__AWS__ENDPOINT_URL", e);
    }
    cmd.spawn().unwrap()
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Plant `good` documents and `poison` undecodable ones; return (good keys, poison keys).
async fn plant(fx: &Fixture, good: usize, poison: usize, pipeline: &str) -> (Vec<String>, Vec<String>) {
    let doc = std::fs::read(repo_root().join("samples/receipt.webp")).unwrap();
    let good_keys: Vec<String> = (0..good).map(|i| format!("docs/{i:04}.webp")).collect();
    let poison_keys: Vec<String> = (0..poison).map(|i| format!("poison/{i:02}.png")).collect();
    let mut objects: Vec<(String, Vec<u8>)> = good_keys.iter().map(|k| (k.clone(), doc.clone())).collect();
    objects.extend(poison_keys.iter().enumerate().map(|(i, k)| {
        let body = if i % 2 == 0 { Vec::new() } else { b"plain text pretending to be a PNG".to_vec() };
        (k.clone(), body)
    }));
    upload_all(fx, objects).await;
    let mut bodies: Vec<String> = good_keys.iter().chain(&poison_keys).map(|k| job(fx, k, pipeline)).collect();
    // Interleave poison among the good jobs.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in (1..bodies.len()).rev() {
        bodies.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    send_all(fx, &bodies).await;
    (good_keys, poison_keys)
}

/// Check the end state: one result per good document, one error record and a DLQ message per
/// poison document, nothing else anywhere.
async fn check_end_state(fx: &Fixture, good: &[String], poison: &[String], pipeline: &str) {
    let results: Vec<String> = fx.output_keys("results/").await.into_iter().filter(|k| k.ends_with(".json")).collect();
    let expected: BTreeSet<String> =
        good.iter().map(|k| format!("results/{pipeline}/{}/{k}.json", fx.input_bucket)).collect();
    let got: BTreeSet<String> = results.iter().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    let errors = fx.output_keys("errors/").await;
    let dlq = dlq_job_ids(fx).await;
    let dlq_set: BTreeSet<&str> = dlq.iter().map(String::as_str).collect();
    let poison_set: BTreeSet<&str> = poison.iter().map(String::as_str).collect();
    println!(
        "results {} (expected {}), missing {}, unexpected {}; error records {}; DLQ messages {} ({} distinct, planted {})",
        results.len(),
        good.len(),
        missing.len(),
        extra.len(),
        errors.len(),
        dlq.len(),
        dlq_set.len(),
        poison.len()
    );
    assert!(missing.is_empty(), "documents without a result: {missing:?}");
    assert!(extra.is_empty(), "unexpected result objects: {extra:?}");
    assert_eq!(results.len(), good.len(), "exactly one result object per document");
    assert_eq!(errors.len(), poison.len(), "one error record per poison document: {errors:?}");
    assert_eq!(dlq_set, poison_set, "the DLQ holds exactly the planted poison documents");
    let (visible, in_flight, delayed) = fx.depth(&fx.queue_url).await;
    assert_eq!((visible, in_flight, delayed), (0, 0, 0), "nothing left on the job queue");
}

async fn wait_until_done(fx: &Fixture, good: usize, poison: usize, limit: Duration, mut tick: impl FnMut(u64)) {
    let started = Instant::now();
    loop {
        let results = fx.output_keys("results/").await.iter().filter(|k| k.ends_with(".json")).count();
        let (visible, in_flight, delayed) = fx.depth(&fx.queue_url).await;
        let dlq = fx.depth(&fx.dlq_url).await.0;
        if results >= good && dlq as usize >= poison && visible + in_flight + delayed == 0 {
            println!("done after {:.1}s", started.elapsed().as_secs_f64());
            return;
        }
        assert!(
            started.elapsed() < limit,
            "not done within {limit:?}: results {results}/{good}, queue {visible}/{in_flight}/{delayed}, dlq {dlq}"
        );
        tick(started.elapsed().as_secs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_chaos_three_workers_thousand_documents() {
    const GOOD: usize = 1000;
    const POISON: usize = 20;
    let fx = Fixture::new("chaos-kill", 10, 5).await;
    let (good, poison) = plant(&fx, GOOD, POISON, "inspect").await;

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let mut workers: Vec<Option<Child>> = (0..3).map(|i| Some(spawn_worker(&fx, None, i))).collect();
    let mut kills = 0;
    let mut next_kill = 2 + rng.next() % 3;
    let mut spawned = 3;
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(300), |elapsed| {
        // A random worker SIGKILLed and restarted every 2–4 s, at most 12 times.
        if elapsed >= next_kill && kills < 12 {
            let victim = (rng.next() % 3) as usize;
            let mut child = workers[victim].take().unwrap();
            let _ = child.kill();
            let _ = child.wait();
            workers[victim] = Some(spawn_worker(&fx, None, spawned));
            spawned += 1;
            kills += 1;
            println!("t={elapsed}s killed worker {victim} (kill {kills})");
            next_kill = elapsed + 2 + rng.next() % 3;
        }
    })
    .await;
    println!("SIGKILLs: {kills}");
    assert!(kills >= 1, "the run must actually have killed workers");
    for w in workers.into_iter().flatten() {
        assert!(stop(w).success(), "worker exits 0 on SIGTERM");
    }
    check_end_state(&fx, &good, &poison, "inspect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_down_for_ten_seconds_loses_nothing() {
    const GOOD: usize = 300;
    const POISON: usize = 6;
    let fx = Fixture::new("chaos-outage", 10, 5).await;
    let upstream = fx.endpoint.trim_start_matches("http://").to_owned();
    let proxy = OutageProxy::start(&upstream).await;
    let (good, poison) = plant(&fx, GOOD, POISON, "inspect").await;

    let endpoint = proxy.endpoint();
    let mut workers: Vec<Child> = (0..2).map(|i| spawn_worker(&fx, Some(&endpoint), i)).collect();
    // Let some work happen, then take SQS and S3 away for 10 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fx.output_keys("results/").await.len() < 30 {
        assert!(Instant::now() < deadline, "workers made no progress before the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.down().await;
    let before = fx.output_keys("results/").await.len();
    println!("outage begins with {before} results");
    tokio::time::sleep(Duration::from_secs(10)).await;
    for w in &mut workers {
        assert!(w.try_wait().unwrap().is_none(), "a worker exited during the outage");
    }
    proxy.up().await;
    println!("outage over");
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(300), |_| {}).await;
    for w in workers {
        assert!(stop(w).success(), "worker exits 0 on SIGTERM");
    }
    check_end_state(&fx, &good, &poison, "inspect").await;
}

/// The same kill chaos on the real `ocr` pipeline, smaller: 80 documents, 2 workers, a worker
/// SIGKILLed and restarted every 2 s (at most 3 times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_chaos_with_the_ocr_pipeline() {
    const GOOD: usize = 80;
    const POISON: usize = 4;
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "the ocr chaos run needs onnxruntime and the PP-OCR models: run `eval \"$(scripts/setup/onnxruntime.sh)\"` (scripts/test.sh does)"
    );
    let fx = Fixture::new("chaos-ocr", 10, 10).await;
    let (good, poison) = plant(&fx, GOOD, POISON, "ocr").await;
    let mut workers: Vec<Option<Child>> = (0..2).map(|i| Some(spawn_worker(&fx, None, i))).collect();
    let (mut kills, mut spawned, mut next_kill) = (0, 2, 1);
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(400), |elapsed| {
        if elapsed >= next_kill && kills < 3 {
            let victim = kills % 2;
            let mut child = workers[victim].take().unwrap();
            let _ = child.kill();
            let _ = child.wait();
            workers[victim] = Some(spawn_worker(&fx, None, spawned));
            spawned += 1;
            kills += 1;
            println!("t={elapsed}s killed ocr worker {victim} (kill {kills})");
            next_kill = elapsed + 2;
        }
    })
    .await;
    assert!(kills >= 1, "the run must actually have killed a worker");
    for w in workers.into_iter().flatten() {
        assert!(stop(w).success(), "worker exits 0 on SIGTERM");
    }
    check_end_state(&fx, &good, &poison, "ocr").await;
    // Each result also has its plain-text rendition, and it is not empty.
    let texts: Vec<String> = fx.output_keys("results/ocr/").await.into_iter().filter(|k| k.ends_with(".txt")).collect();
    assert_eq!(texts.len(), GOOD, "one .txt per document");
    let record = fx.output_json(&format!("results/ocr/{}/{}.json", fx.input_bucket, good[0])).await;
    assert!(record["output"]["pages"][0]["lines"].as_array().is_some_and(|l| !l.is_empty()), "{record}");
}
