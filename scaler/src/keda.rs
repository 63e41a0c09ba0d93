//! KEDA's external scaler gRPC service (`proto/externalscaler.proto`), for a ScaledObject trigger
//!
//! ```yaml
//! - type: external            # or external-push (StreamIsActive)
//!   metadata:
//!     scalerAddress: docfleet-scaler.docfleet.svc.cluster.local:9095
//!     queue: docfleet-jobs            # default: the job queue (queue.name)
//!     targetValue: "8"                # per replica; default scaler.default_target
//!     activationTargetValue: "0"      # active above this; default 0
//!     metric: depth                   # or backlog-seconds (scaler.backlog_seconds on)
//! ```
//!
//! Every call reads through the same depth cache as the external metrics API, so KEDA and an
//! HPA (or several ScaledObjects) share one GetQueueAttributes call per queue per interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use crate::proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};
use crate::values::{MetricKind, Values};
use crate::{Error, Result};

/// The gRPC service.
pub struct KedaScaler {
    values: Arc<Values>,
    default_queue: String,
    default_target: f64,
    /// How often a StreamIsActive stream re-checks.
    interval: Duration,
    shutdown: CancellationToken,
}

/// One trigger's metadata, parsed.
#[derive(Debug, Clone, PartialEq)]
struct Trigger {
    queue: String,
    kind: MetricKind,
    target: f64,
    activation: f64,
}

impl KedaScaler {
    pub fn new(
        values: Arc<Values>,
        default_queue: String,
        default_target: f64,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self { values, default_queue, default_target, interval, shutdown }
    }

    /// The tonic service.
    pub fn into_service(self) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(self)
    }

    fn trigger(&self, r: Option<&ScaledObjectRef>, metric_name: Option<&str>) -> Result<Trigger> {
        let empty = HashMap::new();
        let meta = r.map(|r| &r.scaler_metadata).unwrap_or(&empty);
        let queue = meta.get("queue").map(|q| q.trim().to_owned()).unwrap_or_else(|| self.default_queue.clone());
        let number = |key: &str, default: f64| -> Result<f64> {
            match meta.get(key) {
                None => Ok(default),
                Some(raw) => raw.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                    Error::BadRequest(format!("scalerMetadata.{key}: not a non-negative number: `{raw}`"))
                }),
            }
        };
        let target = number("targetValue", self.default_target)?;
        if target <= 0.0 {
            return Err(Error::BadRequest("scalerMetadata.targetValue must be greater than 0".into()));
        }
        let activation = number("activationTargetValue", 0.0)?;
        let kind = match meta.get("metric").map(|m| m.trim()) {
            Some(m) => self.kind_of(m)?,
            // GetMetrics carries the HPA's name for the metric: KEDA prefixes ours with `sN-`.
            None => match metric_name.map(strip_trigger_index) {
                Some(name) if !name.is_empty() => self.kind_of(name)?,
                _ => MetricKind::Depth,
            },
        };
        Ok(Trigger { queue, kind, target, activation })
    }

    fn kind_of(&self, name: &str) -> Result<MetricKind> {
        match name {
            "depth" => self.values.metric(crate::DEPTH_METRIC),
            "backlog-seconds" => self.values.metric(crate::BACKLOG_METRIC),
            other => self.values.metric(other),
        }
    }

    async fn value(&self, t: &Trigger) -> Result<f64> {
        Ok(self.values.get(t.kind, &t.queue).await?.value)
    }

    /// Run a call, count it, map errors to gRPC status codes.
    async fn answer<T>(&self, fut: impl Future<Output = Result<T>>) -> std::result::Result<Response<T>, Status> {
        let started = Instant::now();
        let result = fut.await;
        self.values.observe("keda", started, &result);
        result.map(Response::new).map_err(|e| grpc_status(&e))
    }
}

/// `s0-docfleet-queue-depth` → `docfleet-queue-depth`.
fn strip_trigger_index(name: &str) -> &str {
    match name.split_once('-') {
        Some((prefix, rest))
            if prefix.len() > 1 && prefix.starts_with('s') && prefix[1..].chars().all(|c| c.is_ascii_digit()) =>
        {
            rest
        }
        _ => name,
    }
}

fn grpc_status(e: &Error) -> Status {
    match e {
        Error::UnknownQueue { .. } | Error::UnknownMetric(..) => Status::not_found(e.to_string()),
        Error::BadRequest(_) => Status::invalid_argument(e.to_string()),
        Error::Unavailable { .. } => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

type StreamOf<T> = ReceiverStream<std::result::Result<T, Status>>;

#[tonic::async_trait]
impl ExternalScaler for KedaScaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<IsActiveResponse>, Status> {
        let r = request.into_inner();
        self.answer(async {
            let t = self.trigger(Some(&r), None)?;
            Ok(IsActiveResponse { result: self.value(&t).await? > t.activation })
        })
        .await
    }

    type StreamIsActiveStream = StreamOf<IsActiveResponse>;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<Self::StreamIsActiveStream>, Status> {
        let r = request.into_inner();
        let t = self.trigger(Some(&r), None).map_err(|e| grpc_status(&e))?;
        let (tx, rx) = mpsc::channel(4);
        let (values, interval, shutdown) = (self.values.clone(), self.interval, self.shutdown.clone());
        tokio::spawn(async move {
            let mut last: Option<bool> = None;
            // Ends when KEDA closes the stream or the scaler shuts down.
            loop {
                match values.get(t.kind, &t.queue).await {
                    Ok(v) => {
                        let active = v.value > t.activation;
                        if last != Some(active) {
                            if tx.send(Ok(IsActiveResponse { result: active })).await.is_err() {
                                return;
                            }
                            last = Some(active);
                        }
                    }
                    // KEDA keeps its last state; its GetMetrics polling surfaces the error.
                    Err(e) => debug!(queue = %t.queue, error = %e, "StreamIsActive: no value this round"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<GetMetricSpecResponse>, Status> {
        let r = request.into_inner();
        self.answer(async { Ok(metric_spec(&self.trigger(Some(&r), None)?)) }).await
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> std::result::Result<Response<GetMetricsResponse>, Status> {
        let r = request.into_inner();
        self.answer(async {
            let t = self.trigger(r.scaled_object_ref.as_ref(), Some(&r.metric_name))?;
            let value = self.value(&t).await?;
            let metric_name = if r.metric_name.is_empty() { t.kind.name().to_owned() } else { r.metric_name.clone() };
            Ok(GetMetricsResponse {
                metric_values: vec![MetricValue {
                    metric_name,
                    metric_value: value.round() as i64,
                    metric_value_float: value,
                }],
            })
        })
        .await
    }

    type StreamMetricSpecStream = StreamOf<GetMetricSpecResponse>;

    /// The spec follows from the trigger's metadata alone, so it never changes for a stream: send
    /// it once, then hold the stream open until KEDA closes it or the scaler stops.
    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> std::result::Result<Response<Self::StreamMetricSpecStream>, Status> {
        let r = request.into_inner();
        let spec = metric_spec(&self.trigger(Some(&r), None).map_err(|e| grpc_status(&e))?);
        let (tx, rx) = mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            if tx.send(Ok(spec)).await.is_ok() {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tx.closed() => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn metric_spec(t: &Trigger) -> GetMetricSpecResponse {
    GetMetricSpecResponse {
        metric_specs: vec![MetricSpec {
            metric_name: t.kind.name().into(),
            target_size: t.target.round().max(1.0) as i64,
            target_size_float: t.target,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keda_metric_names_lose_their_trigger_index() {
        assert_eq!(strip_trigger_index("s0-docfleet-queue-depth"), "docfleet-queue-depth");
        assert_eq!(strip_trigger_index("s12-docfleet-queue-backlog-seconds"), "docfleet-queue-backlog-seconds");
        assert_eq!(strip_trigger_index("docfleet-queue-depth"), "docfleet-queue-depth");
        assert_eq!(strip_trigger_index("s-x"), "s-x");
    }
}
