//! `docfleet-scaler`: queue depth for the HPA (external metrics API), KEDA (external scaler gRPC)
//! and Prometheus; pod-deletion-cost on worker pods. See docs/scaler.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use docfleet_core::config::{LoadOptions, load};
use docfleet_core::telemetry;
use tokio_util::sync::CancellationToken;

/// Serve SQS queue depth as a Kubernetes external metric (HTTPS), as KEDA's external scaler (gRPC)
/// and on Prometheus /metrics; keep pod-deletion-cost current on worker pods. Configuration:
/// built-in defaults → profiles/<profile>.toml → --config FILE → DOCFLEET__SCALER__* variables;
/// the flags below override the [scaler] section.
#[derive(Parser, Debug)]
#[command(name = "docfleet-scaler", version)]
struct Args {
    /// Configuration profile: local-dev, aws-mock or k8s [env: DOCFLEET_PROFILE; default: local-dev]
    #[arg(long)]
    profile: Option<String>,
    /// Extra TOML configuration file applied over the profile.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// External metrics API address (HTTPS), e.g. 0.0.0.0:6443; empty turns it off [scaler.https_listen]
    #[arg(long, value_name = "IP:PORT")]
    https_listen: Option<String>,
    /// KEDA external scaler address (gRPC) [scaler.grpc_listen]
    #[arg(long, value_name = "IP:PORT")]
    grpc_listen: Option<String>,
    /// Prometheus /metrics and JSON endpoint address (HTTP) [scaler.metrics_listen]
    #[arg(long, value_name = "IP:PORT")]
    metrics_listen: Option<String>,
    /// PEM certificate for HTTPS; absent file: self-signed [scaler.tls_cert_file]
    #[arg(long, value_name = "FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS [scaler.tls_key_file]
    #[arg(long, value_name = "FILE")]
    tls_key_file: Option<PathBuf>,
    /// Keep controller.kubernetes.io/pod-deletion-cost current on worker pods [scaler.pod_deletion_cost]
    #[arg(long)]
    pod_deletion_cost: bool,
    /// Label selector of worker pods [scaler.worker_selector]
    #[arg(long, value_name = "SELECTOR")]
    worker_selector: Option<String>,
    /// Namespace of worker pods [scaler.namespace; default: POD_NAMESPACE, else the kubeconfig's]
    #[arg(long)]
    namespace: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loaded = load(&LoadOptions { profile: args.profile, config_file: args.config })?;
    let mut settings = loaded.settings;
    let sc = &mut settings.scaler;
    let flags = [
        (&mut sc.https_listen, args.https_listen),
        (&mut sc.grpc_listen, args.grpc_listen),
        (&mut sc.metrics_listen, args.metrics_listen),
        (&mut sc.worker_selector, args.worker_selector),
        (&mut sc.namespace, args.namespace),
    ];
    for (setting, flag) in flags {
        if let Some(v) = flag {
            *setting = v;
        }
    }
    if args.tls_cert_file.is_some() || args.tls_key_file.is_some() {
        anyhow::ensure!(
            args.tls_cert_file.is_some() && args.tls_key_file.is_some(),
            "--tls-cert-file and --tls-key-file go together"
        );
        sc.tls_cert_file = args.tls_cert_file;
        sc.tls_key_file = args.tls_key_file;
    }
    sc.pod_deletion_cost |= args.pod_deletion_cost;

    telemetry::init(&settings.log);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(profile = %loaded.profile, version = env!("CARGO_PKG_VERSION"), "docfleet-scaler starting");
    let shutdown = CancellationToken::new();
    let started =
        docfleet_scaler::server::start(&settings, shutdown.clone()).await.context("starting docfleet-scaler")?;
    tracing::info!(?started.https, ?started.grpc, ?started.metrics, "docfleet-scaler ready");
    wait_for_signal().await;
    tracing::info!("shutdown signal received; stopping");
    shutdown.cancel();
    // Let servers finish answering requests in flight.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
