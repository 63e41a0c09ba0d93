//! `docfleet-worker`: pulls jobs from the queue and writes results until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use docfleet_core::config::{LoadOptions, load};
use docfleet_core::{Backends, telemetry};
use docfleet_worker::http::{self, Health};
use docfleet_worker::metrics::{Metrics, PipelineLabel};
use docfleet_worker::{Pipelines, StopWhen, Worker};
use tokio_util::sync::CancellationToken;

/// Pull document jobs from SQS (or the embedded local queue), run pipelines, write results to S3
/// (or the local store). Configuration: built-in defaults → profiles/<profile>.toml →
/// --config FILE → DOCFLEET__SECTION__KEY environment variables.
#[derive(Parser, Debug)]
#[command(name = "docfleet-worker", version)]
struct Args {
    /// Configuration profile: local-dev, aws-mock or k8s [env: DOCFLEET_PROFILE; default: local-dev]
    #[arg(long)]
    profile: Option<String>,
    /// Extra TOML configuration file applied over the profile.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Exit once the queue is empty and nothing is in flight (batch mode) instead of polling forever.
    #[arg(long)]
    exit_when_empty: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = load(&LoadOptions { profile: args.profile, config_file: args.config })?;
    telemetry::init(&loaded.settings.log);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(profile = %loaded.profile, version = env!("CARGO_PKG_VERSION"), "docfleet-worker starting");
    let shutdown = CancellationToken::new();
    docfleet_worker::shutdown::install(shutdown.clone());
    // Serve /health at once; /ready turns true once models are loaded and the queue answered.
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let http_stop = CancellationToken::new();
    let w = &loaded.settings.worker;
    if w.http_port != 0 {
        let addr = SocketAddr::new(w.http_host.parse().context("worker.http_host")?, w.http_port);
        http::serve(addr, health.clone(), metrics.clone(), http_stop.clone())
            .await
            .with_context(|| format!("binding the HTTP endpoints to {addr}"))?;
    }
    // Start-up (waiting for the queue, loading models) is cut short by SIGTERM/SIGINT: nothing
    // has been received yet, so the worker exits 0 at once, as a pod being scaled down expects.
    let backends = tokio::select! {
        b = connect(&loaded.settings, &shutdown) => match b? {
            Some(b) => b,
            None => {
                stopped_during_start_up("waiting for the queue", &http_stop);
                return Ok(());
            }
        },
        _ = shutdown.cancelled() => {
            stopped_during_start_up("connecting to the queue", &http_stop);
            return Ok(());
        }
    };
    let loading = Instant::now();
    // Loading runs on the blocking pool so a signal is seen while onnxruntime builds sessions.
    let settings = loaded.settings.clone();
    let load = tokio::task::spawn_blocking(move || Pipelines::builtin(&settings));
    let pipelines = tokio::select! {
        p = load => p.context("loading the pipelines")?,
        _ = shutdown.cancelled() => {
            stopped_during_start_up("loading models", &http_stop);
            // The loading thread cannot be interrupted and nothing else is running, so leave
            // now rather than wait for it. `_exit`, not `exit`: exit's static destructors
            // (onnxruntime's) race the thread still building sessions and abort the process.
            // SAFETY: _exit only ends the process; no Rust state is observed afterwards.
            unsafe { libc::_exit(0) }
        }
    };
    // A worker that cannot run its default pipeline (or a required one) must not take jobs.
    pipelines.get(&loaded.settings.worker.default_pipeline).context("worker.default_pipeline")?;
    if loaded.settings.ocr.required {
        pipelines.get("ocr").context("ocr.required is set")?;
    }
    for name in pipelines.names() {
        metrics
            .model_load_seconds
            .get_or_create(&PipelineLabel { pipeline: name.into() })
            .set(loading.elapsed().as_secs_f64());
    }
    health.models_loaded.store(true, Ordering::Release);
    let worker = Worker::with_observability(loaded.settings, backends, pipelines, metrics, health);
    let stop = if args.exit_when_empty { StopWhen::Drained } else { StopWhen::Shutdown };
    let summary = worker.run(shutdown, stop).await?;
    http_stop.cancel();
    eprintln!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Connect to the queue and store. An unreachable queue at start-up is waited out (with /ready
/// false), as a pod starting before its endpoint would; a queue that does not exist is a
/// configuration error. `None`: stopped by a signal while waiting.
async fn connect(settings: &docfleet_core::Settings, shutdown: &CancellationToken) -> anyhow::Result<Option<Backends>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match Backends::connect(settings).await {
            Ok(b) => return Ok(Some(b)),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "queue or store unreachable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("connecting to the queue and store")),
        }
    }
}

fn stopped_during_start_up(what: &str, http_stop: &CancellationToken) {
    tracing::info!("shutdown signal during start-up ({what}); exiting");
    http_stop.cancel();
}
