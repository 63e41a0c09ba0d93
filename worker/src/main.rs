//! `docfleet-worker`: pulls jobs from the queue and writes results until stopped.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use docfleet_core::config::{LoadOptions, load};
use docfleet_core::{Backends, telemetry};
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
    tracing::info!(profile = %loaded.profile, version = env!("CARGO_PKG_VERSION"), "docfleet-worker starting");
    let backends = Backends::connect(&loaded.settings).await.context("connecting to the queue and store")?;
    let pipelines = Pipelines::builtin(&loaded.settings);
    let worker = Worker::new(loaded.settings, backends, pipelines);
    let shutdown = CancellationToken::new();
    docfleet_worker::shutdown::install(shutdown.clone());
    let stop = if args.exit_when_empty { StopWhen::Drained } else { StopWhen::Shutdown };
    let summary = worker.run(shutdown, stop).await?;
    eprintln!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
