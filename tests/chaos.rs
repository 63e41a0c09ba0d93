//! Chaos against LocalStack: workers SIGKILLed and restarted mid-run, and the backends going away
//! for 10 s. At the end every document has exactly one result, the DLQ holds exactly the planted
//! poison documents (one message each, or one per delivery that reached it), and nothing is
//! missing. Each worker's `/metrics` is read while it lives and once more just before it is
//! killed or stopped, so the runs show how often pipelines ran and how often the redelivery
//! short-cut acknowledged a job with its stored result. Every loop is bounded in count and time.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use docfleet_tests::outage::OutageProxy;
use docfleet_tests::{Fixture, free_port, http_get, repo_root};
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

/// Milliseconds each `sleep` job takes.
const SLEEP_MS: u64 = 500;

fn job(fx: &Fixture, key: &str, pipeline: &str) -> String {
    let mut job =
        json!({"version": 1, "job_id": key, "input": format!("s3://{}/{key}", fx.input_bucket), "pipeline": pipeline});
    if pipeline == "sleep" {
        job["params"] = json!({"ms": SLEEP_MS});
    }
    job.to_string()
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

/// Pipeline runs and reused results one worker process reported (`/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// `docfleet_jobs_total{outcome="success"}`: pipelines that ran and stored their result.
    runs: u64,
    /// `docfleet_redelivered_results_reused_total`: redeliveries acknowledged with the stored result.
    reused: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.runs += other.runs;
        self.reused += other.reused;
    }
}

/// A worker process, its metrics port and what its `/metrics` said last.
struct Worker {
    child: Child,
    port: u16,
    last: Counts,
}

impl Worker {
    /// Read `/metrics` again; a worker not listening yet keeps its last counts.
    fn scrape(&mut self) -> Counts {
        if let Some(body) = http_get(self.port, "/metrics") {
            let sum = |prefix: &str, filter: &str| -> u64 {
                body.lines()
                    .filter(|l| l.starts_with(prefix) && l.contains(filter))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64
            };
            if body.contains("docfleet_jobs_total") {
                self.last = Counts {
                    runs: sum("docfleet_jobs_total{", r#"outcome="success""#),
                    reused: sum("docfleet_redelivered_results_reused_total{", ""),
                };
            }
        }
        self.last
    }
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

fn spawn_worker(fx: &Fixture, endpoint: Option<&str>, id: usize) -> Worker {
    spawn_worker_with(fx, endpoint, id, &[])
}

/// A worker with extra `DOCFLEET__…` settings (applied after the chaos defaults).
fn spawn_worker_with(fx: &Fixture, endpoint: Option<&str>, id: usize, settings: &[(&str, &str)]) -> Worker {
    let port = free_port();
    let mut cmd: Command = fx.command("docfleet-worker");
    for var in MODEL_ENV {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd.env("DOCFLEET__WORKER__HTTP_PORT", port.to_string())
        .env("DOCFLEET__WORKER__VISIBILITY_TIMEOUT_SECONDS", "5")
        .env("DOCFLEET__WORKER__RETRY_BASE_DELAY_SECONDS", "1")
        .env("DOCFLEET__WORKER__RETRY_MAX_DELAY_SECONDS", "2")
        // Receipts wait for company up to 1 s (or until ten are there): a kill strands finished
        // jobs whose deletes had not gone out, the redeliveries the short-cut is for.
        .env("DOCFLEET__WORKER__DELETE_FLUSH_MS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(std::env::temp_dir().join(format!("{}-worker-{id}.log", fx.name))).unwrap());
    if let Some(e) = endpoint {
        cmd.env("DOCFLEET__AWS__ENDPOINT_URL", e);
    }
    cmd.envs(settings.iter().copied());
    Worker { child: cmd.spawn().unwrap(), port, last: Counts::default() }
}

/// Read the victim's metrics one last time, then SIGKILL it; what it had counted.
fn kill(mut victim: Worker) -> Counts {
    let counts = victim.scrape();
    let _ = victim.child.kill();
    let _ = victim.child.wait();
    counts
}

/// SIGTERM every worker (each must exit 0) after reading its metrics; what they had counted.
fn stop_all(workers: impl IntoIterator<Item = Worker>) -> Counts {
    let mut total = Counts::default();
    for mut w in workers {
        total += w.scrape();
        assert!(stop(w.child).success(), "worker exits 0 on SIGTERM");
    }
    total
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
    let mut dlq_copies: BTreeMap<&str, u64> = BTreeMap::new();
    for id in &dlq {
        *dlq_copies.entry(id.as_str()).or_default() += 1;
    }
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
    // Count, not only the set: each delivery of a poison message sends it to the DLQ at most once
    // (send, then delete: a crash in between redelivers it), so a document has at most as many
    // copies there as the receive count its error record was written at.
    for key in poison {
        let record = fx.output_json(&format!("errors/{pipeline}/{}/{key}.json", fx.input_bucket)).await;
        let receives = record["receive_count"].as_u64().expect("error records hold the receive count");
        let copies = dlq_copies[key.as_str()];
        assert!(copies <= receives, "{key}: {copies} DLQ messages from {receives} deliveries");
    }
    println!("DLQ duplicates (a worker killed between dead-lettering and deleting): {}", dlq.len() - poison.len());
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
    let fx = Fixture::new("chaos-kill", 5, 5).await;
    let (good, poison) = plant(&fx, GOOD, POISON, "inspect").await;

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let mut workers: Vec<Option<Worker>> = (0..3).map(|i| Some(spawn_worker(&fx, None, i))).collect();
    let mut kills = 0;
    let mut next_kill = 2 + rng.next() % 3;
    let mut spawned = 3;
    let mut counted = Counts::default();
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(300), |elapsed| {
        for w in workers.iter_mut().flatten() {
            w.scrape();
        }
        // A random worker SIGKILLed and restarted every 2–4 s, at most 12 times.
        if elapsed >= next_kill && kills < 12 {
            let victim = (rng.next() % 3) as usize;
            counted += kill(workers[victim].take().unwrap());
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
    counted += stop_all(workers.into_iter().flatten());
    check_end_state(&fx, &good, &poison, "inspect").await;
    check_runs(counted, GOOD, kills);
}

/// What the workers' metrics say about the kill chaos. A killed worker's last reading comes just
/// before its SIGKILL, so the sums are lower bounds of what happened: enough to show that no
/// document's pipeline ran to completion twice (a redelivery of finished work reuses the stored
/// result instead), and that redeliveries of finished work did happen and took the short-cut.
fn check_runs(counted: Counts, good: usize, kills: usize) {
    println!(
        "pipeline runs counted {} for {good} documents; redeliveries acknowledged with their stored result {}",
        counted.runs, counted.reused
    );
    assert!(
        counted.runs <= good as u64,
        "{} pipeline runs for {good} documents: a document was processed twice",
        counted.runs
    );
    // Each kill strands the messages whose results are stored but whose batched deletes had not
    // gone out; their redeliveries find the result.
    if kills >= 3 {
        assert!(counted.reused >= 1, "{kills} kills and no redelivery reused its stored result");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_down_for_ten_seconds_loses_nothing() {
    const GOOD: usize = 300;
    const POISON: usize = 6;
    let fx = Fixture::new("chaos-outage", 5, 5).await;
    let upstream = fx.endpoint.trim_start_matches("http://").to_owned();
    let proxy = OutageProxy::start(&upstream).await;
    let (good, poison) = plant(&fx, GOOD, POISON, "inspect").await;

    let endpoint = proxy.endpoint();
    let mut workers: Vec<Worker> = (0..2).map(|i| spawn_worker(&fx, Some(&endpoint), i)).collect();
    // Let some work happen, then take SQS and S3 away for 10 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fx.output_keys("results/").await.len() < 30 {
        assert!(Instant::now() < deadline, "workers made no progress before the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.down().await;
    // The test's own client reaches LocalStack directly: the workers held messages (running or
    // waiting for a slot) when their backends went away.
    let (_, held, _) = fx.depth(&fx.queue_url).await;
    let before = fx.output_keys("results/").await.len();
    println!("outage begins with {before} results and {held} messages held by the workers");
    assert!(held > 0, "work was in flight when the outage began");
    tokio::time::sleep(Duration::from_secs(10)).await;
    for w in &mut workers {
        assert!(w.child.try_wait().unwrap().is_none(), "a worker exited during the outage");
    }
    proxy.up().await;
    println!("outage over");
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(300), |_| {}).await;
    let counted = stop_all(workers);
    check_end_state(&fx, &good, &poison, "inspect").await;
    // Nobody was killed, so the counts are complete: every document's pipeline ran at least once,
    // as a run or as a redelivery that found its result.
    // (A result stored just as the proxy cut the connection counts as reused, not as a run.)
    println!("pipeline runs {} for {GOOD} documents; results reused {}", counted.runs, counted.reused);
    assert!(counted.runs + counted.reused >= GOOD as u64, "{counted:?} for {GOOD} documents");
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
    let fx = Fixture::new("chaos-ocr", 5, 10).await;
    let (good, poison) = plant(&fx, GOOD, POISON, "ocr").await;
    let mut workers: Vec<Option<Worker>> = (0..2).map(|i| Some(spawn_worker(&fx, None, i))).collect();
    let (mut kills, mut spawned, mut next_kill) = (0, 2, 1);
    let mut counted = Counts::default();
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(400), |elapsed| {
        for w in workers.iter_mut().flatten() {
            w.scrape();
        }
        if elapsed >= next_kill && kills < 3 {
            let victim = kills % 2;
            counted += kill(workers[victim].take().unwrap());
            workers[victim] = Some(spawn_worker(&fx, None, spawned));
            spawned += 1;
            kills += 1;
            println!("t={elapsed}s killed ocr worker {victim} (kill {kills})");
            next_kill = elapsed + 2;
        }
    })
    .await;
    assert!(kills >= 1, "the run must actually have killed a worker");
    counted += stop_all(workers.into_iter().flatten());
    check_end_state(&fx, &good, &poison, "ocr").await;
    println!("ocr runs counted {} for {GOOD} documents; results reused {}", counted.runs, counted.reused);
    assert!(counted.runs <= GOOD as u64, "{} ocr runs for {GOOD} documents: one ran twice", counted.runs);
    // Each result also has its plain-text rendition, and it is not empty.
    let texts: Vec<String> = fx.output_keys("results/ocr/").await.into_iter().filter(|k| k.ends_with(".txt")).collect();
    assert_eq!(texts.len(), GOOD, "one .txt per document");
    let record = fx.output_json(&format!("results/ocr/{}/{}.json", fx.input_bucket, good[0])).await;
    assert!(record["output"]["pages"][0]["lines"].as_array().is_some_and(|l| !l.is_empty()), "{record}");
}

/// The run of issue 19: `sleep` jobs (and planted poison), 3 workers, a random worker SIGKILLed and
/// replaced every 1.5–3 s for 25 s, and the backends frozen for 8 s (requests are accepted and
/// hang, as with a stopped LocalStack); visibility 8 s, heartbeat every 2 s, and the queue's
/// maxReceiveCount at the default, 5. It ends exact: one result per document, the DLQ only poison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_a_frozen_backend_end_exact_with_the_default_receive_budget() {
    const GOOD: usize = 400;
    const POISON: usize = 8;
    let fx = Fixture::new("chaos-freeze", 5, 8).await;
    let proxy = OutageProxy::start(fx.endpoint.trim_start_matches("http://")).await;
    let endpoint = proxy.endpoint();
    let (good, poison) = plant(&fx, GOOD, POISON, "sleep").await;
    let settings = [
        ("DOCFLEET__WORKER__DIAGNOSTIC_PIPELINES", "true"),
        ("DOCFLEET__WORKER__VISIBILITY_TIMEOUT_SECONDS", "8"),
        ("DOCFLEET__WORKER__HEARTBEAT_INTERVAL_SECONDS", "2"),
    ];
    let spawn = |id| spawn_worker_with(&fx, Some(&endpoint), id, &settings);

    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("chaos seed {seed}");
    let mut rng = Rng(seed);
    let mut workers: Vec<Option<Worker>> = (0..3).map(|i| Some(spawn(i))).collect();
    let started = Instant::now();
    let (mut kills, mut spawned, mut counted) = (0, 3, Counts::default());
    let mut next_kill = Duration::from_millis(1500 + rng.next() % 1500);
    let (freeze_at, thaw_at) = (Duration::from_secs(6), Duration::from_secs(14));
    let mut frozen = false;
    let mut thawed = false;
    wait_until_done(&fx, GOOD, POISON, Duration::from_secs(300), |_| {
        let now = started.elapsed();
        if !frozen && now >= freeze_at {
            proxy.freeze(true);
            frozen = true;
            println!("t={:.1}s backends frozen", now.as_secs_f64());
        }
        if frozen && !thawed && now >= thaw_at {
            proxy.freeze(false);
            thawed = true;
            println!("t={:.1}s backends thawed", now.as_secs_f64());
        }
        for w in workers.iter_mut().flatten() {
            w.scrape();
        }
        // Kills for the first 25 s, each 1.5–3 s after the last.
        if now >= next_kill && now < Duration::from_secs(25) {
            let victim = (rng.next() % 3) as usize;
            counted += kill(workers[victim].take().unwrap());
            workers[victim] = Some(spawn(spawned));
            spawned += 1;
            kills += 1;
            println!("t={:.1}s killed worker {victim} (kill {kills})", now.as_secs_f64());
            next_kill = now + Duration::from_millis(1500 + rng.next() % 1500);
        }
    })
    .await;
    assert!(thawed, "the run outlasted the freeze");
    assert!(kills >= 3, "the run must actually have killed workers ({kills})");
    counted += stop_all(workers.into_iter().flatten());
    check_end_state(&fx, &good, &poison, "sleep").await;
    // Jobs whose visibility ran out during the freeze may have run twice (a second worker took
    // them before the first could store the result), so only the short-cut's use is reported.
    println!("pipeline runs counted {} for {GOOD} documents; results reused {}", counted.runs, counted.reused);
}
