//! The Kubernetes external metrics API (`external.metrics.k8s.io/v1beta1`), as an aggregated API
//! server would serve it, so a plain `autoscaling/v2` HPA with `type: External` works without KEDA:
//!
//! - `GET /apis` (`APIGroupList`), `/apis/external.metrics.k8s.io` (`APIGroup`),
//!   `/apis/external.metrics.k8s.io/v1beta1` (`APIResourceList`): discovery;
//! - `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=queue=NAME`:
//!   an `ExternalMetricValueList` with one item per matching queue, the value a Kubernetes quantity;
//!   errors as `Status` objects (404 unknown metric or queue, 400 bad selector, 503 stale depth);
//! - `/healthz`, `/livez` (the process answers) and `/readyz` (every queue read at least once).
//!
//! Queues are not namespaced: any namespace gets the same values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery, ListMeta, Status, Time,
};
use serde::{Deserialize, Serialize};

use crate::selector::Selector;
use crate::values::Values;
use crate::{Error, QUEUE_LABEL, quantity};

pub const GROUP: &str = "external.metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";

/// `k8s.io/metrics/pkg/apis/external_metrics/v1beta1.ExternalMetricValueList`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalMetricValueList {
    pub kind: String,
    pub api_version: String,
    pub metadata: ListMeta,
    pub items: Vec<ExternalMetricValue>,
}

/// `k8s.io/metrics/pkg/apis/external_metrics/v1beta1.ExternalMetricValue`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalMetricValue {
    pub metric_name: String,
    pub metric_labels: BTreeMap<String, String>,
    /// When the value was produced (the queue read).
    pub timestamp: Time,
    /// Only for rates computed from counters; absent for instantaneous values like depth.
    #[serde(rename = "window", default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    pub value: Quantity,
}

/// The HTTPS router: discovery, metric values, health, and the JSON endpoint.
pub fn router(values: Arc<Values>) -> Router {
    Router::new()
        .route("/apis", get(group_list))
        .route(&format!("/apis/{GROUP}"), get(group))
        .route(&format!("/apis/{GROUP_VERSION}"), get(resource_list))
        .route(&format!("/apis/{GROUP_VERSION}/namespaces/{{namespace}}/{{metric}}"), get(metric_values))
        .route("/healthz", get(alive))
        .route("/livez", get(alive))
        .route("/readyz", get(ready))
        .merge(crate::http::json_routes())
        .fallback(not_found)
        .with_state(values)
}

fn group_version() -> GroupVersionForDiscovery {
    GroupVersionForDiscovery { group_version: GROUP_VERSION.into(), version: VERSION.into() }
}

fn api_group() -> APIGroup {
    APIGroup {
        name: GROUP.into(),
        preferred_version: Some(group_version()),
        versions: vec![group_version()],
        server_address_by_client_cidrs: None,
    }
}

async fn group_list() -> Json<APIGroupList> {
    Json(APIGroupList { groups: vec![api_group()] })
}

async fn group() -> Json<APIGroup> {
    Json(api_group())
}

async fn resource_list(State(values): State<Arc<Values>>) -> Json<APIResourceList> {
    let resources = values
        .served()
        .into_iter()
        .map(|kind| APIResource {
            name: kind.name().into(),
            singular_name: String::new(),
            namespaced: true,
            kind: "ExternalMetricValueList".into(),
            verbs: vec!["get".into()],
            ..APIResource::default()
        })
        .collect();
    Json(APIResourceList { group_version: GROUP_VERSION.into(), resources })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricQuery {
    #[serde(default)]
    label_selector: String,
}

async fn metric_values(
    State(values): State<Arc<Values>>,
    Path((_namespace, metric)): Path<(String, String)>,
    Query(query): Query<MetricQuery>,
) -> Response {
    let started = Instant::now();
    let result = list_values(&values, &metric, &query.label_selector).await;
    values.observe("external_metrics", started, &result);
    match result {
        Ok(list) => Json(list).into_response(),
        Err(e) => status_response(&e),
    }
}

async fn list_values(values: &Values, metric: &str, selector: &str) -> crate::Result<ExternalMetricValueList> {
    let kind = values.metric(metric)?;
    let selector = Selector::parse(selector)?;
    let queues: Vec<&str> = values
        .cache
        .queues()
        .filter(|q| selector.matches(&BTreeMap::from([(QUEUE_LABEL.to_owned(), (*q).to_owned())])))
        .collect();
    if queues.is_empty() {
        let asked = selector.pinned_values(QUEUE_LABEL).map(|v| v.join(", ")).unwrap_or_else(|| "(none)".into());
        return Err(Error::UnknownQueue {
            queue: asked,
            configured: values.cache.queues().collect::<Vec<_>>().join(", "),
        });
    }
    let mut items = Vec::with_capacity(queues.len());
    for queue in queues {
        let v = values.get(kind, queue).await?;
        let value = quantity::format(v.value).ok_or_else(|| Error::Unavailable {
            what: format!("{} of queue `{queue}`", kind.name()),
            reason: format!("not a finite number: {}", v.value),
        })?;
        items.push(ExternalMetricValue {
            metric_name: kind.name().into(),
            metric_labels: BTreeMap::from([(QUEUE_LABEL.to_owned(), queue.to_owned())]),
            timestamp: Time(v.reading.timestamp),
            window_seconds: None,
            value: Quantity(value),
        });
    }
    Ok(ExternalMetricValueList {
        kind: "ExternalMetricValueList".into(),
        api_version: GROUP_VERSION.into(),
        metadata: ListMeta::default(),
        items,
    })
}

/// An error as the Kubernetes API reports one.
pub fn status_response(e: &Error) -> Response {
    let (code, reason) = match e {
        Error::UnknownQueue { .. } | Error::UnknownMetric(..) => (StatusCode::NOT_FOUND, "NotFound"),
        Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
        Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
    };
    status(code, reason, e.to_string())
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
        ..Status::default()
    };
    (code, Json(status)).into_response()
}

async fn alive() -> &'static str {
    "ok\n"
}

async fn ready(State(values): State<Arc<Values>>) -> Response {
    if !values.cache.all_read_once() {
        // Read whatever has not been read yet (through the cache's gate, so at most once per interval).
        values.cache.refresh_all().await;
    }
    let pending: Vec<&str> = values.cache.queues().filter(|q| values.cache.peek(q).is_none()).collect();
    if pending.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not read yet: {}\n", pending.join(", "))).into_response()
    }
}

async fn not_found(uri: Uri) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({})", uri.path()),
    )
}
