//! `docfleet`: the command line for docfleet.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use docfleet_core::config::{LoadOptions, Loaded, load};
use docfleet_core::{Backends, telemetry};

mod enqueue;
mod results;
mod run;
mod status;

/// docfleet: a queue-driven document worker fleet.
///
/// Configuration layers, later wins: built-in defaults → profiles/<profile>.toml → --config FILE →
/// DOCFLEET__SECTION__KEY environment variables. Profiles: local-dev (no services), aws-mock
/// (LocalStack), k8s.
#[derive(Parser, Debug)]
#[command(name = "docfleet", version, propagate_version = true)]
struct Cli {
    /// Configuration profile [env: DOCFLEET_PROFILE; default: local-dev]
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Extra TOML configuration file applied over the profile.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log output on stderr: -v info, -vv debug (default: warnings only; RUST_LOG wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload documents to the input bucket and send one job per document.
    ///
    /// Each argument is a file, a directory (walked recursively, hidden files skipped) or an
    /// s3://bucket/prefix whose objects are enqueued without uploading.
    Enqueue(enqueue::Args),
    /// Queue depth (visible, in flight, delayed), DLQ depth, results and errors written.
    Status(status::Args),
    /// Download result objects and error records from the output bucket.
    Results(results::Args),
    /// Dead-letter queue operations.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Process a directory of documents locally: enqueue, run an in-process worker until the
    /// queue is drained, write results under --out and print a summary.
    Run(run::Args),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// Move every message from the DLQ back to the job queue (after fixing the cause).
    Redrive,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted).
    Show,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let loaded = load(&LoadOptions { profile: cli.profile.clone(), config_file: cli.config.clone() })?;
    let mut log = loaded.settings.log.clone();
    log.level = ["warn", "info", "debug"][cli.verbose.min(2) as usize].to_owned();
    telemetry::init(&log);
    match cli.command {
        Command::Config { command: ConfigCommand::Show } => {
            print!("{}", loaded.to_toml());
            Ok(())
        }
        Command::Enqueue(args) => {
            let backends = connect(&loaded).await?;
            let report = enqueue::run(&loaded.settings, &backends, &args).await?;
            println!("{report}");
            if report.failed > 0 {
                anyhow::bail!("{} documents could not be enqueued", report.failed);
            }
            Ok(())
        }
        Command::Status(args) => status::run(&loaded.settings, &connect(&loaded).await?, &args).await,
        Command::Results(args) => results::run(&loaded.settings, &connect(&loaded).await?, &args).await,
        Command::Dlq { command: DlqCommand::Redrive } => {
            let backends = connect(&loaded).await?;
            match backends.dlq.redrive_to(backends.queue.as_ref()).await? {
                docfleet_core::queue::RedriveReport::Moved(n) => {
                    println!("moved {n} messages from {} to {}", backends.dlq.name(), backends.queue.name())
                }
                docfleet_core::queue::RedriveReport::MoveTask { task_handle, moved, status } => println!(
                    "moved {moved} messages from {} to {} with an SQS message move task ({status}, task {task_handle})",
                    backends.dlq.name(),
                    backends.queue.name()
                ),
            }
            Ok(())
        }
        Command::Run(args) => run::run(loaded, args).await,
    }
}

async fn connect(loaded: &Loaded) -> anyhow::Result<Backends> {
    Backends::connect(&loaded.settings)
        .await
        .with_context(|| format!("connecting to the queue and store of profile `{}`", loaded.profile))
}
