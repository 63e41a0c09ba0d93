//! `worker`: throughput and job latency (p50/p99) of one `docfleet-worker` on `inspect` at several
//! concurrency levels, and the heartbeat's cost in SQS calls per job.

use std::time::{Duration, Instant};

use docfleet_tests::{Fixture, run_with_timeout, text};
use futures::StreamExt;

use crate::stats::percentile;
use crate::{seed_inputs, send_jobs};

/// Latencies (ms) from start of job to result written, read back from the result records.
async fn latencies(fx: &Fixture) -> Vec<f64> {
    let keys = fx.output_keys("results/").await;
    let mut out: Vec<f64> = futures::stream::iter(keys)
        .map(|k| async move {
            let r = fx.output_json(&k).await;
            (r["completed_at_ms"].as_u64().unwrap_or(0) as f64) - (r["started_at_ms"].as_u64().unwrap_or(0) as f64)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    out.sort_by(f64::total_cmp);
    out
}

fn summary(stderr: &str) -> serde_json::Value {
    stderr.lines().rev().find(|l| l.starts_with('{')).and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default()
}

pub async fn run(jobs: usize, levels: &[usize]) -> anyhow::Result<()> {
    let doc = std::fs::read(docfleet_tests::repo_root().join("samples/receipt.webp"))?;
    println!("worker: {jobs} inspect jobs per level, one docfleet-worker, LocalStack");
    println!("  {:>11} {:>9} {:>10} {:>9} {:>9}", "concurrency", "wall s", "jobs/s", "p50 ms", "p99 ms");
    for &c in levels {
        let fx = Fixture::new(&format!("bench-worker-c{c}"), 5, 120).await;
        let keys = seed_inputs(&fx, jobs, &doc).await;
        send_jobs(&fx, &keys, None).await;
        let started = Instant::now();
        let out = run_with_timeout(
            fx.command("docfleet-worker")
                .env("RUST_LOG", "warn")
                .env("DOCFLEET__WORKER__CONCURRENCY", c.to_string())
                .arg("--exit-when-empty"),
            Duration::from_secs(1800),
        );
        let wall = started.elapsed().as_secs_f64();
        anyhow::ensure!(out.status.success(), "worker failed: {}", text(&out).1);
        let lat = latencies(&fx).await;
        anyhow::ensure!(lat.len() == jobs, "{} results for {jobs} jobs", lat.len());
        println!(
            "  {c:>11} {wall:>9.2} {:>10.1} {:>9.1} {:>9.1}",
            jobs as f64 / wall,
            percentile(&lat, 50.0),
            percentile(&lat, 99.0)
        );
    }

    // Heartbeat cost: jobs that outlive the visibility timeout several times over.
    let (n, job_ms, visibility) = (20usize, 9_000u64, 6u32);
    let fx = Fixture::new("bench-heartbeat", 5, visibility).await;
    let keys = seed_inputs(&fx, n, &doc).await;
    let bodies: Vec<String> = keys
        .iter()
        .map(|k| serde_json::json!({"version": 1, "job_id": k, "input": {"bucket": fx.input_bucket, "key": k}, "pipeline": "sleep", "params": {"ms": job_ms}}).to_string())
        .collect();
    for chunk in bodies.chunks(10) {
        fx.send_raw(&chunk.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }
    let out = run_with_timeout(
        fx.command("docfleet-worker")
            .env("RUST_LOG", "warn")
            .env("DOCFLEET__WORKER__DIAGNOSTIC_PIPELINES", "true")
            .env("DOCFLEET__WORKER__CONCURRENCY", n.to_string())
            .env("DOCFLEET__WORKER__VISIBILITY_TIMEOUT_SECONDS", visibility.to_string())
            .arg("--exit-when-empty"),
        Duration::from_secs(600),
    );
    let s = summary(&text(&out).1);
    anyhow::ensure!(out.status.success() && s["jobs_succeeded"] == n, "heartbeat run failed: {}", text(&out).1);
    let calls = s["heartbeat_calls"].as_u64().unwrap_or(0);
    println!(
        "heartbeat: {n} jobs of {:.0} s, visibility {visibility} s (beat every {} s): {calls} ChangeMessageVisibilityBatch calls = {:.2} per job, every job processed once",
        job_ms as f64 / 1e3,
        visibility / 3,
        calls as f64 / n as f64
    );
    Ok(())
}
