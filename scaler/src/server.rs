//! Wiring: queues → depth cache → (fleet) → values → HTTPS, gRPC and HTTP servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use docfleet_core::config::{QueueBackend, Settings};
use docfleet_core::queue::LocalQueue;
use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::depth::{CacheConfig, DepthCache, DepthSource, Inclusion, QueueDepthSource, SqsDepth, is_url, queue_label};
use crate::fleet::{Discovery, Fleet, FleetConfig};
use crate::keda::KedaScaler;
use crate::metrics::Metrics;
use crate::tls::CertSource;
use crate::values::Values;
use crate::{Error, Result};

/// A started scaler: where it listens.
#[derive(Debug)]
pub struct Started {
    pub https: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub cert: Option<CertSource>,
    pub queues: Vec<String>,
}

/// The queues a configuration serves: `scaler.queues`, else the job queue and its DLQ.
pub fn configured_queues(settings: &Settings) -> Vec<String> {
    if !settings.scaler.queues.is_empty() {
        return settings.scaler.queues.clone();
    }
    let q = &settings.queue;
    vec![q.url.clone().unwrap_or_else(|| q.name.clone()), q.dlq_url.clone().unwrap_or_else(|| q.dlq_name.clone())]
}

/// Start every configured server and background task; they stop when `shutdown` is cancelled.
pub async fn start(settings: &Settings, shutdown: CancellationToken) -> Result<Started> {
    let sc = &settings.scaler;
    let metrics = Arc::new(Metrics::new());

    let queues = configured_queues(settings);
    let mut sources: Vec<(String, Box<dyn DepthSource>)> = Vec::new();
    let sqs = match settings.queue.backend {
        QueueBackend::Sqs => Some(aws_sdk_sqs::Client::new(&docfleet_core::aws::sdk_config(&settings.aws).await)),
        QueueBackend::Local => None,
    };
    for queue in &queues {
        let label = queue_label(queue);
        if sources.iter().any(|(l, _)| *l == label) {
            return Err(Error::Config(format!("queue `{label}` is configured twice (scaler.queues)")));
        }
        let source: Box<dyn DepthSource> = match &sqs {
            Some(client) => Box::new(SqsDepth::new(client.clone(), queue, metrics.clone())),
            None if is_url(queue) => {
                return Err(Error::Config(format!("queue `{queue}` is a URL but queue.backend is `local`")));
            }
            None => {
                let local = LocalQueue::open(&settings.queue.local_path, queue, None)?;
                Box::new(QueueDepthSource::new(Arc::new(local), metrics.clone()))
            }
        };
        sources.push((label, source));
    }
    let config = CacheConfig {
        interval: Duration::from_millis(sc.poll_interval_ms),
        max_staleness: Duration::from_millis(sc.max_staleness_ms),
        timeout: Duration::from_millis(sc.sqs_timeout_ms),
        inclusion: Inclusion { in_flight: sc.include_in_flight, delayed: sc.include_delayed },
    };
    let labels: Vec<String> = sources.iter().map(|(l, _)| l.clone()).collect();
    let cache = Arc::new(DepthCache::new(sources, config, metrics.clone()));
    info!(
        queues = ?labels,
        interval_ms = sc.poll_interval_ms,
        max_staleness_ms = sc.max_staleness_ms,
        include_in_flight = sc.include_in_flight,
        include_delayed = sc.include_delayed,
        "serving queue depth"
    );

    // Workers: for backlog seconds and/or pod-deletion-cost.
    let mut namespace = None;
    let fleet = if sc.backlog_seconds || sc.pod_deletion_cost {
        let discovery = if sc.pod_deletion_cost || sc.worker_metrics_urls.is_empty() {
            let client = kube::Client::try_default().await.map_err(|e| {
                Error::Config(format!(
                    "scaler.pod_deletion_cost / scaler.backlog_seconds need the Kubernetes API (in-cluster or \
                     KUBECONFIG), or scaler.worker_metrics_urls for backlog seconds alone: {e}"
                ))
            })?;
            let ns = [sc.namespace.clone(), std::env::var("POD_NAMESPACE").unwrap_or_default()]
                .into_iter()
                .find(|n| !n.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_owned());
            namespace = Some(ns.clone());
            Discovery::Pods {
                api: kube::Api::<Pod>::namespaced(client, &ns),
                selector: sc.worker_selector.clone(),
                default_port: sc.worker_metrics_port,
            }
        } else {
            Discovery::Static(sc.worker_metrics_urls.clone())
        };
        let config = FleetConfig {
            interval: Duration::from_millis(sc.worker_scrape_interval_ms),
            throughput_window: Duration::from_secs(sc.throughput_window_seconds),
            pod_deletion_cost: sc.pod_deletion_cost,
            busy_pod_cost: sc.busy_pod_cost,
        };
        crate::fleet::describe(&discovery, &config);
        if let Some(ns) = &namespace {
            info!(namespace = %ns, "worker pods namespace");
        }
        let fleet = Arc::new(Fleet::new(discovery, config, metrics.clone())?);
        tokio::spawn(fleet.clone().run(shutdown.clone()));
        Some(fleet)
    } else {
        None
    };
    let values = Arc::new(Values {
        cache,
        fleet: if sc.backlog_seconds { fleet } else { None },
        backlog_cap_seconds: sc.backlog_cap_seconds,
        metrics,
    });

    let mut started = Started { https: None, grpc: None, metrics: None, cert: None, queues: labels.clone() };

    if let Some(listener) = bind("scaler.https_listen", &sc.https_listen).await? {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let ns = namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty()));
        if let Some(ns) = ns {
            names.push(format!("docfleet-scaler.{ns}.svc"));
            names.push(format!("docfleet-scaler.{ns}.svc.cluster.local"));
        }
        let (tls, cert) = crate::tls::server_config(sc.tls_cert_file.as_deref(), sc.tls_key_file.as_deref(), &names)?;
        started.https = Some(listener.local_addr()?);
        started.cert = Some(cert);
        info!(addr = %listener.local_addr()?, "external metrics API (HTTPS): /apis/external.metrics.k8s.io/v1beta1, /healthz /readyz /livez");
        tokio::spawn(crate::tls::serve(listener, tls, crate::external::router(values.clone()), shutdown.clone()));
    }

    if let Some(listener) = bind("scaler.grpc_listen", &sc.grpc_listen).await? {
        started.grpc = Some(listener.local_addr()?);
        info!(addr = %listener.local_addr()?, "KEDA external scaler (gRPC)");
        let default_queue = labels.first().cloned().unwrap_or_default();
        let service = KedaScaler::new(
            values.clone(),
            default_queue,
            sc.default_target,
            Duration::from_millis(sc.poll_interval_ms),
            shutdown.clone(),
        )
        .into_service();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        });
    }

    if let Some(listener) = bind("scaler.metrics_listen", &sc.metrics_listen).await? {
        started.metrics = Some(listener.local_addr()?);
        info!(addr = %listener.local_addr()?, "Prometheus /metrics and JSON /api/v1/queues (HTTP)");
        let app = crate::http::router(values.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
    }
    Ok(started)
}

async fn bind(key: &str, addr: &str) -> Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let parsed: SocketAddr =
        addr.parse().map_err(|_| Error::Config(format!("{key}: expected IP:PORT or empty, got `{addr}`")))?;
    let listener =
        TcpListener::bind(parsed).await.map_err(|e| Error::Config(format!("{key}: cannot bind {parsed}: {e}")))?;
    Ok(Some(listener))
}
