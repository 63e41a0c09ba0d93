//! `scaler`: docfleet-scaler against LocalStack.
//!
//! 1. Metric request latency (p50/p99) at a fixed open-loop rate (100 req/s by default) on each
//!    API in turn — the external metrics API (HTTPS, HTTP/2, one connection as the API server
//!    keeps), KEDA's gRPC `GetMetrics`, the JSON endpoint — with the scaler's default polling
//!    interval; SQS GetQueueAttributes calls per minute and the scaler's CPU time meanwhile.
//! 2. The HPA simulation (tests/src/scaler_sim.rs) with jobs of mixed length and a worker grace
//!    period shorter than the longest jobs, once with pod-deletion-cost and once without: drain
//!    time, busy workers killed by scale-in, jobs interrupted (and so run again).

use std::time::{Duration, Instant};

use docfleet_scaler::DEPTH_METRIC;
use docfleet_scaler::proto::external_scaler_client::ExternalScalerClient;
use docfleet_scaler::proto::{GetMetricsRequest, ScaledObjectRef};
use docfleet_tests::Fixture;
use docfleet_tests::scaler_sim::{Scaler, SimOptions, https_client, run_hpa_simulation, sample};

use crate::stats::percentile;

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Fire `rate` requests per second for `seconds`, open loop; latencies in ms, and failures.
async fn open_loop<F, Fut>(rate: u32, seconds: u64, make: F) -> (Vec<f64>, usize)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let total = rate as u64 * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for _ in 0..total {
        tick.tick().await;
        let fut = make();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let ok = fut.await;
            (started.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for t in tasks {
        let (ms, ok) = t.await.expect("request task");
        if ok {
            latencies.push(ms);
        } else {
            failures += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, failures)
}

pub async fn run(rate: u32, seconds: u64, jobs: usize, rounds: usize, skip_hpa: bool) -> anyhow::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!("scaler: {} cores ({cpu}), LocalStack on 127.0.0.1", std::thread::available_parallelism()?);

    // 1. Latency at a fixed rate, default polling interval.
    let fx = Fixture::new("bench-scaler", 5, 60).await;
    let logs = tempfile::tempdir()?;
    fx.send_raw(&["{}"; 25]).await;
    let scaler = Scaler::start(&fx, &[], &[], logs.path()).await;
    let calls_series =
        format!("docfleet_scaler_sqs_calls_total{{queue=\"{}\",operation=\"GetQueueAttributes\"}}", fx.queue);
    let https = https_client(None);
    let url = scaler.external_metric_url("default", DEPTH_METRIC, &format!("queue={}", fx.queue));
    let grpc = ExternalScalerClient::connect(format!("http://127.0.0.1:{}", scaler.grpc_port)).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let json_url = format!("http://127.0.0.1:{}/api/v1/queues/{}", scaler.metrics_port, fx.queue);
    // Warm the connections and the cache.
    https.get(&url).send().await?.error_for_status()?;
    http.get(&json_url).send().await?.error_for_status()?;

    println!(
        "\nmetric requests, {rate} req/s open loop for {seconds} s per API, scaler.poll_interval_ms = 5000 (default):"
    );
    println!("{:<36} {:>9} {:>9} {:>9} {:>8}", "API", "p50 ms", "p99 ms", "max ms", "failed");
    let calls_before = sample(&scaler.metrics(), &calls_series).unwrap_or(0.0);
    let cpu_before = cpu_seconds(scaler.pid());
    let started = Instant::now();
    let queue = fx.queue.clone();
    for api in ["external metrics API (HTTPS, h2)", "KEDA GetMetrics (gRPC)", "JSON /api/v1/queues (HTTP)"] {
        let (lat, failed) = match api.chars().next() {
            Some('e') => {
                open_loop(rate, seconds, || {
                    let (c, u) = (https.clone(), url.clone());
                    async move { c.get(&u).send().await.is_ok_and(|r| r.status().is_success()) }
                })
                .await
            }
            Some('K') => {
                open_loop(rate, seconds, || {
                    let mut c = grpc.clone();
                    let meta = [("queue".to_owned(), queue.clone())].into_iter().collect();
                    let req = GetMetricsRequest {
                        scaled_object_ref: Some(ScaledObjectRef {
                            name: "w".into(),
                            namespace: "d".into(),
                            scaler_metadata: meta,
                        }),
                        metric_name: "s0-docfleet-queue-depth".into(),
                    };
                    async move { c.get_metrics(req).await.is_ok() }
                })
                .await
            }
            _ => {
                open_loop(rate, seconds, || {
                    let (c, u) = (http.clone(), json_url.clone());
                    async move { c.get(&u).send().await.is_ok_and(|r| r.status().is_success()) }
                })
                .await
            }
        };
        println!(
            "{api:<36} {:>9.2} {:>9.2} {:>9.2} {failed:>8}",
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let calls = sample(&scaler.metrics(), &calls_series).unwrap_or(0.0) - calls_before;
    let cpu = cpu_seconds(scaler.pid()) - cpu_before;
    let requests = 3.0 * rate as f64 * seconds as f64;
    println!(
        "GetQueueAttributes for the queue: {calls:.0} calls in {:.1} min = {:.1}/min for {requests:.0} requests; \
         scaler CPU {cpu:.2} s = {:.1} % of one core",
        minutes,
        calls / minutes,
        100.0 * cpu / (minutes * 60.0)
    );
    drop(scaler);

    if skip_hpa {
        return Ok(());
    }
    // 2. Drain time with and without pod-deletion-cost: mostly short jobs and a long tail (every
    // 10th job 20 s, longer than the 1 s grace), one message per slot as the target, so scale-in
    // happens while some workers are idle and others run long jobs.
    let opts = SimOptions {
        jobs,
        job_ms: 300,
        job_ms_max: 1_000,
        long_job_every: 10,
        long_job_ms: 20_000,
        worker_grace_seconds: Some(1),
        target: 2.0,
        max_replicas: 4,
        worker_concurrency: 2,
        scale_down_window: Duration::from_secs(3),
        limit: Duration::from_secs(900),
        verbose: false,
        ..SimOptions::default()
    };
    println!(
        "\nHPA simulation: {jobs} sleep jobs of {}–{} ms, every {}th {} ms; target {} msgs/replica, {}–{} replicas × \
         {} slots, scale-down window {:?}, sync {:?}, worker grace {} s; {rounds} rounds each, alternating:",
        opts.job_ms,
        opts.job_ms_max,
        opts.long_job_every,
        opts.long_job_ms,
        opts.target,
        opts.min_replicas,
        opts.max_replicas,
        opts.worker_concurrency,
        opts.scale_down_window,
        opts.sync_period,
        opts.worker_grace_seconds.unwrap_or(25)
    );
    println!(
        "{:<22} {:>9} {:>10} {:>10} {:>11} {:>11} {:>8} {:>8}",
        "pod-deletion-cost", "drain s", "settle s", "scale-ins", "busy killed", "interrupted", "results", "patches"
    );
    for round in 0..rounds {
        for with_cost in [true, false] {
            let name = format!("bench-hpa-{}-{round}", if with_cost { "cost" } else { "plain" });
            let fx = Fixture::new(&name, 10, 120).await;
            let report = run_hpa_simulation(&fx, &SimOptions { pod_deletion_cost: with_cost, ..opts.clone() }).await;
            anyhow::ensure!(report.results == jobs, "{} results for {jobs} jobs", report.results);
            println!(
                "{:<22} {:>9.1} {:>10.1} {:>10} {:>11} {:>11} {:>8} {:>8}",
                if with_cost { "on (idle first)" } else { "off (newest first)" },
                report.drain_seconds,
                report.settle_seconds,
                report.scale_ins,
                report.busy_killed,
                report.interrupted,
                report.results,
                report.cost_patches
            );
        }
    }
    Ok(())
}
