//! `/health` (process alive), `/ready` (models loaded and queue reachable) and `/metrics`
//! (Prometheus text format) on `worker.http_host:worker.http_port`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;

/// What `/ready` reports; the worker loop and start-up flip these.
#[derive(Default)]
pub struct Health {
    /// Pipelines (and their models) are loaded.
    pub models_loaded: AtomicBool,
    /// The last queue call succeeded.
    pub queue_reachable: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.models_loaded.load(Ordering::Acquire) && self.queue_reachable.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Bind and serve until `shutdown` is cancelled. Returns the bound address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving /health, /ready and /metrics");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok(bound)
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let models = s.health.models_loaded.load(Ordering::Acquire);
    let queue = s.health.queue_reachable.load(Ordering::Acquire);
    let body = format!("models_loaded={models} queue_reachable={queue}\n");
    if models && queue { (StatusCode::OK, body) } else { (StatusCode::SERVICE_UNAVAILABLE, body) }
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}
