//! Plain-HTTP endpoints on `scaler.metrics_listen`: Prometheus `/metrics`, `/healthz`, and the
//! JSON endpoint for KEDA's `metrics-api` scaler (also served over HTTPS):
//!
//! - `GET /api/v1/queues/{queue}` → `{"queue", "depth", "visible", "inFlight", "delayed",
//!   "timestamp", "ageSeconds", "backlogSeconds"}` (`valueLocation: depth` in the trigger);
//!   404 for a queue not served, 503 when the depth is stale;
//! - `GET /api/v1/queues` → `{"queues": [...]}`, each entry as above or `{"queue", "error"}`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::values::{MetricKind, Values};
use crate::{Error, Result};

/// One queue in the JSON endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueJson {
    pub queue: String,
    /// The served depth (visible, plus in flight and delayed as configured).
    pub depth: u64,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// When SQS was read (RFC 3339).
    pub timestamp: String,
    pub age_seconds: f64,
    /// With `scaler.backlog_seconds` on and throughput measured; else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_seconds: Option<f64>,
}

/// `/metrics`, `/healthz` and the JSON endpoint.
pub fn router(values: Arc<Values>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(json_routes())
        .with_state(values)
}

/// The JSON endpoint, merged into both the HTTP and the HTTPS router.
pub fn json_routes() -> Router<Arc<Values>> {
    Router::new().route("/api/v1/queues", get(all_queues)).route("/api/v1/queues/{queue}", get(one_queue))
}

async fn metrics_text(State(values): State<Arc<Values>>) -> Response {
    // A scrape reads the queues too (through the cache), so the depth gauges and the DLQ alert
    // stay current even when no autoscaler asks. It waits for that briefly only: with SQS slow or
    // down the read goes on in the background and the scrape reports the gauges as they are
    // (cache_age_seconds shows how old).
    let refresh = tokio::spawn({
        let values = values.clone();
        async move {
            values.cache.refresh_all().await;
        }
    });
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), refresh).await;
    values.cache.record_ages();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], values.metrics.encode())
        .into_response()
}

async fn queue_json(values: &Values, queue: &str) -> Result<QueueJson> {
    let depth = values.get(MetricKind::Depth, queue).await?;
    let backlog_seconds = match values.fleet {
        Some(_) => values.get(MetricKind::BacklogSeconds, queue).await.ok().map(|v| v.value),
        None => None,
    };
    let r = depth.reading;
    Ok(QueueJson {
        queue: queue.to_owned(),
        depth: r.value,
        visible: r.depth.visible,
        in_flight: r.depth.in_flight,
        delayed: r.depth.delayed,
        timestamp: r.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        age_seconds: r.age().as_secs_f64(),
        backlog_seconds,
    })
}

async fn one_queue(State(values): State<Arc<Values>>, Path(queue): Path<String>) -> Response {
    let started = Instant::now();
    let result = queue_json(&values, &queue).await;
    values.observe("json", started, &result);
    match result {
        Ok(q) => Json(q).into_response(),
        Err(e) => error_json(&e),
    }
}

async fn all_queues(State(values): State<Arc<Values>>) -> Response {
    let started = Instant::now();
    let mut queues = Vec::new();
    for queue in values.cache.queues() {
        let entry = match queue_json(&values, queue).await {
            Ok(q) => serde_json::to_value(q).expect("serializable"),
            Err(e) => serde_json::json!({ "queue": queue, "error": e.to_string() }),
        };
        queues.push(entry);
    }
    values.observe("json", started, &Ok::<(), Error>(()));
    Json(serde_json::json!({ "queues": queues })).into_response()
}

fn error_json(e: &Error) -> Response {
    let code = match e {
        Error::UnknownQueue { .. } | Error::UnknownMetric(..) => StatusCode::NOT_FOUND,
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, Json(serde_json::json!({ "error": e.to_string(), "reason": e.metric_label() }))).into_response()
}
