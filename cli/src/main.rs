//! `docfleet`: the command line for docfleet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use docfleet_core::config::{LoadOptions, Loaded, load};
use docfleet_core::config::{QueueBackend, StoreBackend};
use docfleet_core::{Backends, Settings, telemetry};

mod doctags;
mod enqueue;
mod report;
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
    ///
    /// Exit status: 0 every document has a result; 2 some documents failed (each is named on
    /// stderr and in the table, its error record under --out); 1 an error, or every document failed.
    Run(run::Args),
    /// Convert DocTags (a document VLM's page markup) to Markdown, HTML or JSON on stdout.
    Doctags(doctags::Args),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    ///
    /// bash: `docfleet completions bash > ~/.local/share/bash-completion/completions/docfleet`;
    /// zsh: into a directory on `$fpath` as `_docfleet`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (docfleet.1 and one per subcommand, e.g. docfleet-run.1) into DIR.
    Man {
        /// Directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
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
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match real_main(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e, verbose));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, once. Without `-v`, each cause is cut to its first line
/// and 200 characters (the SDKs' causes are long debug dumps); `-v` prints them whole.
fn error_text(e: &anyhow::Error, verbose: u8) -> String {
    let mut parts = Vec::new();
    let mut cut = false;
    for (i, cause) in e.chain().enumerate() {
        let text = cause.to_string();
        if verbose > 0 || i == 0 {
            parts.push(text);
            continue;
        }
        let first = text.lines().next().unwrap_or_default();
        if first.chars().count() > 200 || first.len() < text.len() {
            cut = true;
            parts.push(format!("{}…", first.chars().take(200).collect::<String>()));
        } else {
            parts.push(first.to_owned());
        }
    }
    let mut line = parts.join(": ");
    if cut {
        line.push_str(" (-v for the full detail)");
    }
    line
}

async fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    // Generated from the command definitions; they need no configuration.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "docfleet", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        // A file conversion: no configuration, queue or store involved.
        Command::Doctags(args) => return doctags::run(args),
        _ => {}
    }
    let loaded = load(&LoadOptions { profile: cli.profile.clone(), config_file: cli.config.clone() })?;
    let mut log = loaded.settings.log.clone();
    log.level = ["warn", "info", "debug"][cli.verbose.min(2) as usize].to_owned();
    telemetry::init(&log);
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    match cli.command {
        Command::Run(args) => {
            let outcome = run::run(loaded, args).await?;
            Ok(match (outcome.ok, outcome.failed) {
                (_, 0) => ExitCode::SUCCESS,
                (0, n) => {
                    eprintln!("error: all {n} documents failed");
                    ExitCode::from(1)
                }
                (_, n) => {
                    eprintln!("{n} documents failed");
                    ExitCode::from(2)
                }
            })
        }
        command => dispatch(command, &loaded).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn dispatch(command: Command, loaded: &Loaded) -> anyhow::Result<()> {
    match command {
        Command::Config { command: ConfigCommand::Show } => {
            print!("{}", loaded.to_toml());
            Ok(())
        }
        Command::Enqueue(args) => {
            let backends = connect(&loaded.settings, &loaded.profile).await?;
            let report = enqueue::run(&loaded.settings, &backends, &args).await?;
            println!("{report}");
            if report.failed > 0 {
                anyhow::bail!("{} documents could not be enqueued", report.failed);
            }
            Ok(())
        }
        Command::Status(args) => {
            status::run(&loaded.settings, &connect(&loaded.settings, &loaded.profile).await?, &args).await
        }
        Command::Results(args) => {
            results::run(&loaded.settings, &connect(&loaded.settings, &loaded.profile).await?, &args).await
        }
        Command::Dlq { command: DlqCommand::Redrive } => {
            let backends = connect(&loaded.settings, &loaded.profile).await?;
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
        Command::Run(_) | Command::Doctags(_) | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled in real_main")
        }
    }
}

/// Connect to the configured queue and store; a failure says what was tried and what to check.
pub async fn connect(settings: &Settings, profile: &str) -> anyhow::Result<Backends> {
    Backends::connect(settings).await.with_context(|| {
        let queue = match settings.queue.backend {
            QueueBackend::Local => "the local queue".to_owned(),
            QueueBackend::Sqs => {
                format!("SQS queue `{}`", settings.queue.url.as_deref().unwrap_or("(queue.url unset)"))
            }
        };
        let endpoint = settings.aws.endpoint_url.as_deref().unwrap_or("the AWS default endpoint");
        let check = match (settings.queue.backend, settings.store.backend) {
            (QueueBackend::Local, StoreBackend::Local) => "check the local state directory is writable".to_owned(),
            _ if settings.aws.endpoint_url.is_some() => format!(
                "check that {endpoint} answers (LocalStack started? `docker compose up -d localstack`), \
                 aws.endpoint_url and aws.region, and the credentials"
            ),
            _ => "check the network, aws.region and the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID…)".to_owned(),
        };
        format!("connecting to {queue} and the store of profile `{profile}` at {endpoint}; {check}")
    })
}
