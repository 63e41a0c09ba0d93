//! docfleet-scaler against LocalStack, through its three faces — the external metrics API
//! (HTTPS), KEDA's external scaler (gRPC) and the JSON/Prometheus endpoints — plus
//! pod-deletion-cost against a fake Kubernetes API server (no kube-apiserver can run here) and an
//! HPA simulation driving real `docfleet-worker` processes.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;

use docfleet_scaler::proto::external_scaler_client::ExternalScalerClient;
use docfleet_scaler::proto::{GetMetricsRequest, ScaledObjectRef};
use docfleet_scaler::{BACKLOG_METRIC, DEPTH_METRIC};
use docfleet_tests::outage::OutageProxy;
use docfleet_tests::scaler_sim::{
    FakeKube, Scaler, SimOptions, WorkerPod, body, external_metric_path, external_value, https_client, poll,
    run_hpa_simulation, sample,
};
use docfleet_tests::{Fixture, bin, http_get, run_with_timeout, text};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroup, APIGroupList, APIResourceList, ListMeta, Status, Time};
use serde::Deserialize;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_millis(100);

fn sleep_job(fx: &Fixture, id: &str, key: &str, ms: u64) -> String {
    json!({"version": 1, "job_id": id, "input": format!("s3://{}/{key}", fx.input_bucket), "pipeline": "sleep", "params": {"ms": ms}})
        .to_string()
}

async fn send_n(fx: &Fixture, n: usize, delay_seconds: i32) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let batches: Vec<Vec<SendMessageBatchRequestEntry>> = (0..n)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(format!("{{\"n\": {i}}}"))
                .delay_seconds(delay_seconds)
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>()
        .chunks(10)
        .map(<[_]>::to_vec)
        .collect();
    futures::stream::iter(batches)
        .map(|entries| fx.sqs.send_message_batch().queue_url(&fx.queue_url).set_entries(Some(entries)).send())
        .buffer_unordered(8)
        .for_each(|r| async move { assert!(r.unwrap().failed.is_empty()) })
        .await;
}

fn json_get(port: u16, path: &str) -> (u16, Value) {
    let resp = http_get(port, path).unwrap_or_default();
    let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, serde_json::from_str(body(&resp)).unwrap_or(Value::Null))
}

fn env(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn scaled_object(queue: &str, extra: &[(&str, &str)]) -> ScaledObjectRef {
    let mut meta: std::collections::HashMap<String, String> =
        extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    meta.insert("queue".into(), queue.into());
    ScaledObjectRef { name: "docfleet-worker".into(), namespace: "docfleet".into(), scaler_metadata: meta }
}

/// Visible, in flight and delayed messages are counted as configured: the default (KEDA's)
/// counts visible + in flight; delayed only when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_counts_visible_in_flight_and_delayed_as_configured() {
    let fx = Fixture::new("scaler-depth", 5, 30).await;
    let logs = tempfile::tempdir().unwrap();
    send_n(&fx, 7, 0).await;
    send_n(&fx, 3, 600).await;
    let received = fx
        .sqs
        .receive_message()
        .queue_url(&fx.queue_url)
        .max_number_of_messages(2)
        .visibility_timeout(600)
        .send()
        .await
        .unwrap();
    assert_eq!(received.messages.unwrap_or_default().len(), 2);
    assert_eq!(fx.depth(&fx.queue_url).await, (5, 2, 3), "LocalStack's own view");

    let default = Scaler::start(&fx, &[], &[], logs.path()).await;
    let (code, q) = json_get(default.metrics_port, &format!("/api/v1/queues/{}", fx.queue));
    assert_eq!(code, 200, "{q}");
    assert_eq!((q["visible"].as_u64(), q["inFlight"].as_u64(), q["delayed"].as_u64()), (Some(5), Some(2), Some(3)));
    assert_eq!(q["depth"], 7, "visible + in flight: {q}");
    assert_eq!(q["queue"], fx.queue.as_str());
    let client = https_client(None);
    let url = default.external_metric_url("default", DEPTH_METRIC, &format!("queue={}", fx.queue));
    assert_eq!(external_value(&client, &url).await, Some(7.0));
    let exposition = default.metrics();
    assert_eq!(sample(&exposition, &format!("docfleet_scaler_queue_depth{{queue=\"{}\"}}", fx.queue)), Some(7.0));
    for (state, n) in [("visible", 5.0), ("in_flight", 2.0), ("delayed", 3.0)] {
        let series = format!("docfleet_scaler_queue_messages{{queue=\"{}\",state=\"{state}\"}}", fx.queue);
        assert_eq!(sample(&exposition, &series), Some(n), "{series}");
    }
    // The DLQ is served too, by default (read by the scrape, in the background if it takes long).
    let dlq_series = format!("docfleet_scaler_queue_depth{{queue=\"{}\"}}", fx.dlq);
    let dlq = poll("the DLQ depth", LIMIT, TICK, async || sample(&default.metrics(), &dlq_series)).await;
    assert_eq!(dlq, 0.0);

    let other = Scaler::start(
        &fx,
        &env(&[("DOCFLEET__SCALER__INCLUDE_IN_FLIGHT", "false"), ("DOCFLEET__SCALER__INCLUDE_DELAYED", "true")]),
        &[],
        logs.path(),
    )
    .await;
    let (_, q) = json_get(other.metrics_port, &format!("/api/v1/queues/{}", fx.queue));
    assert_eq!(q["depth"], 8, "visible + delayed: {q}");
}

/// Many clients on every API within one polling interval cost one GetQueueAttributes call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_within_one_interval_make_one_sqs_call() {
    let fx = Fixture::new("scaler-single-flight", 5, 30).await;
    let logs = tempfile::tempdir().unwrap();
    send_n(&fx, 4, 0).await;
    let scaler = Scaler::start(
        &fx,
        &env(&[("DOCFLEET__SCALER__POLL_INTERVAL_MS", "300000"), ("DOCFLEET__SCALER__MAX_STALENESS_MS", "600000")]),
        &[],
        logs.path(),
    )
    .await;
    let calls = format!("docfleet_scaler_sqs_calls_total{{queue=\"{}\",operation=\"GetQueueAttributes\"}}", fx.queue);

    let https = https_client(None);
    let url = scaler.external_metric_url("docfleet", DEPTH_METRIC, &format!("queue={}", fx.queue));
    let json_url = format!("http://127.0.0.1:{}/api/v1/queues/{}", scaler.metrics_port, fx.queue);
    let grpc = ExternalScalerClient::connect(format!("http://127.0.0.1:{}", scaler.grpc_port)).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let external = (0..40).map(|_| external_value(&https, &url));
    let keda = (0..40).map(|_| {
        let mut c = grpc.clone();
        let req = GetMetricsRequest {
            scaled_object_ref: Some(scaled_object(&fx.queue, &[])),
            metric_name: "s0-docfleet-queue-depth".into(),
        };
        async move { c.get_metrics(req).await.map(|r| r.into_inner().metric_values[0].metric_value_float).ok() }
    });
    let json = (0..20).map(|_| {
        let (http, json_url) = (http.clone(), json_url.clone());
        async move { http.get(&json_url).send().await.ok()?.json::<Value>().await.ok()?["depth"].as_f64() }
    });
    let (a, b, c) = tokio::join!(
        futures::future::join_all(external),
        futures::future::join_all(keda),
        futures::future::join_all(json)
    );
    for v in a.iter().chain(&b).chain(&c) {
        assert_eq!(*v, Some(4.0), "every client sees the depth");
    }
    let exposition = scaler.metrics();
    assert_eq!(sample(&exposition, &calls), Some(1.0), "100 requests, one call:\n{exposition}");
    for (api, n) in [("external_metrics", 40.0), ("keda", 40.0), ("json", 20.0)] {
        let series = format!("docfleet_scaler_requests_total{{api=\"{api}\",outcome=\"ok\"}}");
        assert_eq!(sample(&exposition, &series), Some(n), "{series}");
    }
    assert_eq!(
        sample(
            &exposition,
            &format!("docfleet_scaler_sqs_calls_total{{queue=\"{}\",operation=\"GetQueueUrl\"}}", fx.queue)
        ),
        Some(1.0),
        "the URL is resolved once"
    );
}

/// SQS unreachable: the last value is served while younger than the staleness limit, then the
/// APIs answer an error (the HPA holds); the failures are counted; service comes back with SQS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_outage_serves_the_last_value_then_errors_after_the_staleness_limit() {
    let fx = Fixture::new("scaler-outage", 5, 30).await;
    let logs = tempfile::tempdir().unwrap();
    send_n(&fx, 3, 0).await;
    let upstream = fx.endpoint.trim_start_matches("http://").to_owned();
    let proxy = OutageProxy::start(&upstream).await;
    let scaler = Scaler::start(
        &fx,
        &env(&[
            ("DOCFLEET__AWS__ENDPOINT_URL", &proxy.endpoint()),
            ("DOCFLEET__SCALER__POLL_INTERVAL_MS", "300"),
            ("DOCFLEET__SCALER__MAX_STALENESS_MS", "15000"),
            ("DOCFLEET__SCALER__SQS_TIMEOUT_MS", "2000"),
        ]),
        &[],
        logs.path(),
    )
    .await;
    let client = https_client(None);
    let url = scaler.external_metric_url("default", DEPTH_METRIC, &format!("queue={}", fx.queue));
    assert_eq!(external_value(&client, &url).await, Some(3.0));

    proxy.down().await;
    send_n(&fx, 2, 0).await; // SQS changes meanwhile; the scaler cannot see it.
    let errors = format!(
        "docfleet_scaler_sqs_errors_total{{queue=\"{}\",operation=\"GetQueueAttributes\",kind=\"transient\"}}",
        fx.queue
    );
    poll("a failed SQS call", LIMIT, TICK, async || {
        let _ = external_value(&client, &url).await;
        sample(&scaler.metrics(), &errors).filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(external_value(&client, &url).await, Some(3.0), "the last value, while it is fresh");
    let grpc_value = {
        let mut c = ExternalScalerClient::connect(format!("http://127.0.0.1:{}", scaler.grpc_port)).await.unwrap();
        let req = GetMetricsRequest {
            scaled_object_ref: Some(scaled_object(&fx.queue, &[])),
            metric_name: DEPTH_METRIC.into(),
        };
        c.get_metrics(req).await.unwrap().into_inner().metric_values[0].metric_value_float
    };
    assert_eq!(grpc_value, 3.0);

    // Past the staleness limit: an error, not a number.
    let stale = poll("the staleness limit", Duration::from_secs(90), Duration::from_millis(500), async || {
        let resp = client.get(&url).send().await.ok()?;
        (resp.status() == 503).then_some(resp)
    })
    .await;
    let status: Status = stale.json().await.unwrap();
    assert_eq!(status.code, Some(503));
    assert_eq!(status.reason.as_deref(), Some("ServiceUnavailable"));
    assert_eq!(status.status.as_deref(), Some("Failure"));
    let message = status.message.unwrap();
    assert!(message.contains(&fx.queue) && message.contains("old"), "{message}");
    let (code, j) = json_get(scaler.metrics_port, &format!("/api/v1/queues/{}", fx.queue));
    assert_eq!((code, j["reason"].as_str()), (503, Some("unavailable")), "{j}");
    let mut c = ExternalScalerClient::connect(format!("http://127.0.0.1:{}", scaler.grpc_port)).await.unwrap();
    let err = c.is_active(scaled_object(&fx.queue, &[])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(sample(&scaler.metrics(), &errors).unwrap() >= 2.0);
    assert!(scaler.log_text().contains("reading queue depth failed"), "failures are logged");

    proxy.up().await;
    let back = poll("SQS back", LIMIT, TICK, async || external_value(&client, &url).await).await;
    assert_eq!(back, 5.0, "fresh value after the outage");
}

/// The external metrics API, checked field by field against the Kubernetes types, over HTTPS
/// with a certificate from files (as a mounted Secret) and HTTP/2 negotiated by ALPN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_metrics_api_matches_the_kubernetes_types() {
    let fx = Fixture::new("scaler-api", 5, 30).await;
    let logs = tempfile::tempdir().unwrap();
    send_n(&fx, 1500, 0).await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (logs.path().join("tls.crt"), logs.path().join("tls.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let args = [format!("--tls-cert-file={}", cert.display()), format!("--tls-key-file={}", key.display())];
    let scaler = Scaler::start(&fx, &[], &args, logs.path()).await;
    let client = https_client(Some(&certified.cert.pem()));
    let get = async |path: &str| {
        let resp = client.get(scaler.https_url(path)).send().await.unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN h2");
        let code = resp.status().as_u16();
        (code, resp.json::<Value>().await.unwrap())
    };

    // Discovery.
    let (code, raw) = get("/apis").await;
    assert_eq!(code, 200);
    assert_eq!((raw["kind"].as_str(), raw["apiVersion"].as_str()), (Some("APIGroupList"), Some("v1")));
    let groups: APIGroupList = serde_json::from_value(raw).unwrap();
    assert_eq!(groups.groups.len(), 1);
    let g = &groups.groups[0];
    assert_eq!(g.name, "external.metrics.k8s.io");
    assert_eq!(g.versions.len(), 1);
    assert_eq!(
        (g.versions[0].group_version.as_str(), g.versions[0].version.as_str()),
        ("external.metrics.k8s.io/v1beta1", "v1beta1")
    );
    assert_eq!(g.preferred_version.as_ref().unwrap().group_version, "external.metrics.k8s.io/v1beta1");
    let (_, raw) = get("/apis/external.metrics.k8s.io").await;
    let group: APIGroup = serde_json::from_value(raw).unwrap();
    assert_eq!(group.name, "external.metrics.k8s.io");
    let (code, raw) = get("/apis/external.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200);
    assert_eq!((raw["kind"].as_str(), raw["apiVersion"].as_str()), (Some("APIResourceList"), Some("v1")));
    let resources: APIResourceList = serde_json::from_value(raw).unwrap();
    assert_eq!(resources.group_version, "external.metrics.k8s.io/v1beta1");
    let names: Vec<&str> = resources.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [DEPTH_METRIC], "backlog seconds is off by default");
    let r = &resources.resources[0];
    assert!(r.namespaced);
    assert_eq!(r.kind, "ExternalMetricValueList");
    assert_eq!(r.verbs, ["get"]);

    // A value, as the HPA asks for it.
    let selector = format!("queue={}", fx.queue);
    let (code, raw) = get(&external_metric_path("docfleet", DEPTH_METRIC, &selector)).await;
    assert_eq!(code, 200, "{raw}");
    assert_eq!(raw["kind"], "ExternalMetricValueList");
    assert_eq!(raw["apiVersion"], "external.metrics.k8s.io/v1beta1");
    assert_eq!(raw["metadata"], json!({}));
    let items = raw["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item = items[0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["metricLabels", "metricName", "timestamp", "value"], "instantaneous: no window");
    assert_eq!(item["metricName"], DEPTH_METRIC);
    assert_eq!(item["metricLabels"], json!({ "queue": fx.queue }));
    assert_eq!(item["value"], "1500", "a Kubernetes quantity: 1500 stays 1500 (1.5k is not canonical)");
    let ts = item["timestamp"].as_str().unwrap();
    let parsed: jiff::Timestamp = ts.parse().unwrap();
    assert!(ts.ends_with('Z') && (jiff::Timestamp::now() - parsed).get_seconds().abs() < 600, "{ts}");
    // The same document through types mirroring k8s.io/metrics external_metrics/v1beta1.
    let list: ExternalMetricValueList = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(list.items[0].value.0, "1500");
    assert_eq!(list.items[0].metric_labels["queue"], fx.queue);
    assert!(list.metadata.resource_version.is_none());
    assert_eq!(list.items[0].timestamp.0, parsed);
    assert!(list.items[0].window.is_none());

    // Selector forms and the empty selector (every queue: the job queue and the DLQ).
    for selector in [format!("queue=={}", fx.queue), format!("queue in ({}, nope)", fx.queue)] {
        let client_url = scaler.external_metric_url("x", DEPTH_METRIC, &selector);
        assert_eq!(external_value(&client, &client_url).await, Some(1500.0), "{selector}");
    }
    let all: Value =
        client.get(scaler.external_metric_url("x", DEPTH_METRIC, "")).send().await.unwrap().json().await.unwrap();
    let mut queues: Vec<&str> =
        all["items"].as_array().unwrap().iter().map(|i| i["metricLabels"]["queue"].as_str().unwrap()).collect();
    queues.sort();
    let mut expected = vec![fx.queue.as_str(), fx.dlq.as_str()];
    expected.sort();
    assert_eq!(queues, expected);

    // Errors are Status objects with the right codes.
    for (url, code, reason) in [
        (scaler.external_metric_url("x", "no-such-metric", &selector), 404, "NotFound"),
        (scaler.external_metric_url("x", DEPTH_METRIC, "queue=not-configured"), 404, "NotFound"),
        (scaler.external_metric_url("x", DEPTH_METRIC, "queue in (a"), 400, "BadRequest"),
        (scaler.external_metric_url("x", BACKLOG_METRIC, &selector), 404, "NotFound"),
        (scaler.https_url("/apis/other.group/v1"), 404, "NotFound"),
    ] {
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{url}");
        let raw: Value = resp.json().await.unwrap();
        assert_eq!((raw["kind"].as_str(), raw["apiVersion"].as_str()), (Some("Status"), Some("v1")), "{raw}");
        let status: Status = serde_json::from_value(raw).unwrap();
        assert_eq!((status.code, status.reason.as_deref()), (Some(code as i32), Some(reason)), "{url}");
    }
    let msg: Value = client
        .get(scaler.external_metric_url("x", DEPTH_METRIC, "queue=not-configured"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(msg["message"].as_str().unwrap().contains(&fx.queue), "names the configured queues: {msg}");

    // Health.
    for path in ["/healthz", "/livez", "/readyz"] {
        let resp = client.get(scaler.https_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // A client that does not trust the certificate cannot connect.
    let stranger =
        https_client(Some(&rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap().cert.pem()));
    assert!(stranger.get(scaler.https_url("/livez")).send().await.is_err());
}

/// k8s.io/metrics/pkg/apis/external_metrics/v1beta1, with the apimachinery types of k8s-openapi.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct ExternalMetricValueList {
    kind: String,
    api_version: String,
    metadata: ListMeta,
    items: Vec<ExternalMetricValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExternalMetricValue {
    #[allow(dead_code)]
    metric_name: String,
    metric_labels: BTreeMap<String, String>,
    timestamp: Time,
    window: Option<i64>,
    value: Quantity,
}

/// KEDA's external scaler protocol through a real gRPC client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_external_scaler_over_grpc() {
    let fx = Fixture::new("scaler-keda", 5, 30).await;
    let logs = tempfile::tempdir().unwrap();
    send_n(&fx, 12, 0).await;
    let scaler = Scaler::start(&fx, &env(&[("DOCFLEET__SCALER__POLL_INTERVAL_MS", "200")]), &[], logs.path()).await;
    let mut c = ExternalScalerClient::connect(format!("http://127.0.0.1:{}", scaler.grpc_port)).await.unwrap();

    let spec = c.get_metric_spec(scaled_object(&fx.queue, &[("targetValue", "5")])).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    let s = &spec.metric_specs[0];
    assert_eq!((s.metric_name.as_str(), s.target_size, s.target_size_float), (DEPTH_METRIC, 5, 5.0));
    let spec = c.get_metric_spec(scaled_object(&fx.queue, &[])).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs[0].target_size_float, 8.0, "scaler.default_target");

    // KEDA asks with the HPA's name for the metric (`s<trigger>-<ours>`).
    let req = GetMetricsRequest {
        scaled_object_ref: Some(scaled_object(&fx.queue, &[])),
        metric_name: "s0-docfleet-queue-depth".into(),
    };
    let m = c.get_metrics(req).await.unwrap().into_inner();
    assert_eq!(m.metric_values.len(), 1);
    let v = &m.metric_values[0];
    assert_eq!((v.metric_name.as_str(), v.metric_value, v.metric_value_float), ("s0-docfleet-queue-depth", 12, 12.0));

    assert!(c.is_active(scaled_object(&fx.queue, &[])).await.unwrap().into_inner().result);
    assert!(
        !c.is_active(scaled_object(&fx.queue, &[("activationTargetValue", "12")])).await.unwrap().into_inner().result
    );
    assert!(!c.is_active(scaled_object(&fx.dlq, &[])).await.unwrap().into_inner().result, "the DLQ is empty");

    // Errors map to gRPC codes.
    let err = c.is_active(scaled_object("not-configured", &[])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let err = c.get_metric_spec(scaled_object(&fx.queue, &[("targetValue", "lots")])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = c.get_metric_spec(scaled_object(&fx.queue, &[("targetValue", "0")])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = c.get_metric_spec(scaled_object(&fx.queue, &[("metric", "backlog-seconds")])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "backlog seconds is off: {err}");

    // StreamMetricSpec: the spec at once.
    let mut specs = c.stream_metric_spec(scaled_object(&fx.queue, &[("targetValue", "3")])).await.unwrap().into_inner();
    let first = tokio::time::timeout(LIMIT, specs.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.metric_specs[0].target_size_float, 3.0);

    // StreamIsActive: true now, false once the queue is empty.
    let mut stream = c.stream_is_active(scaled_object(&fx.queue, &[])).await.unwrap().into_inner();
    let first = tokio::time::timeout(LIMIT, stream.message()).await.unwrap().unwrap().unwrap();
    assert!(first.result);
    fx.sqs.purge_queue().queue_url(&fx.queue_url).send().await.unwrap();
    let next = tokio::time::timeout(LIMIT, stream.message()).await.expect("a change is pushed").unwrap().unwrap();
    assert!(!next.result, "inactive after the purge");
    drop(stream);
}

/// pod-deletion-cost follows each worker's busy gauge: the busy one expensive, the idle one
/// cheap, unreachable pods left alone; the scaler only lists and patches pods in its namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_deletion_cost_follows_worker_busy_state() {
    const COST: &str = docfleet_scaler::fleet::POD_DELETION_COST;
    let fx = Fixture::new("scaler-podcost", 5, 60).await;
    let logs = tempfile::tempdir().unwrap();
    let kube = FakeKube::start("docfleet").await;
    let selector = [("app.kubernetes.io/name", "docfleet-worker")];
    let a = WorkerPod::start(&fx, "worker-a", 1, logs.path());
    let b = WorkerPod::start(&fx, "worker-b", 1, logs.path());
    kube.add_pod("worker-a", a.port, &selector);
    kube.add_pod("worker-b", b.port, &selector);
    kube.add_pod("worker-gone", docfleet_tests::free_port(), &selector); // nothing listens there
    kube.add_pod("not-a-worker", a.port, &[("app.kubernetes.io/name", "something-else")]);
    let kubeconfig = kube.write_kubeconfig(logs.path());
    let _scaler = Scaler::start(
        &fx,
        &env(&[
            ("KUBECONFIG", &kubeconfig.display().to_string()),
            ("DOCFLEET__SCALER__WORKER_SCRAPE_INTERVAL_MS", "200"),
            ("DOCFLEET__SCALER__BUSY_POD_COST", "250"),
        ]),
        &[
            "--pod-deletion-cost".into(),
            "--worker-selector=app.kubernetes.io/name=docfleet-worker".into(),
            "--namespace=docfleet".into(),
        ],
        logs.path(),
    )
    .await;

    poll("both workers idle at cost 0", LIMIT, TICK, async || {
        (kube.annotation("worker-a", COST).as_deref() == Some("0")
            && kube.annotation("worker-b", COST).as_deref() == Some("0"))
        .then_some(())
    })
    .await;

    fx.put_input("docs/long.png", std::fs::read(docfleet_tests::repo_root().join("samples/invoice.png")).unwrap())
        .await;
    fx.send_raw(&[&sleep_job(&fx, "long", "docs/long.png", 6_000)]).await;
    let (busy, idle) = poll("one worker busy", LIMIT, TICK, async || match (a.busy(), b.busy()) {
        (Some(true), Some(false)) => Some(("worker-a", "worker-b")),
        (Some(false), Some(true)) => Some(("worker-b", "worker-a")),
        _ => None,
    })
    .await;
    poll("the busy worker expensive", LIMIT, TICK, async || {
        (kube.annotation(busy, COST).as_deref() == Some("250")).then_some(())
    })
    .await;
    assert_eq!(kube.annotation(idle, COST).as_deref(), Some("0"));
    poll("the cost back to 0 after the job", LIMIT, TICK, async || {
        (kube.annotation(busy, COST).as_deref() == Some("0")).then_some(())
    })
    .await;
    assert_eq!(kube.annotation("worker-gone", COST), None, "an unreachable pod keeps what it has");
    assert_eq!(kube.annotation("not-a-worker", COST), None, "outside the selector");

    let requests = kube.requests();
    let patches: Vec<&String> = requests.iter().filter(|r| r.starts_with("PATCH")).collect();
    assert_eq!(patches.len(), 4, "0, 0, then 250 and back to 0 for the busy one — only changes: {patches:?}");
    for r in &requests {
        let ok = r.starts_with("GET /api/v1/namespaces/docfleet/pods?")
            && r.contains("labelSelector=app.kubernetes.io%2Fname%3Ddocfleet-worker")
            || r.starts_with("PATCH /api/v1/namespaces/docfleet/pods/worker-");
        assert!(ok, "outside the scaler's Role (list/patch pods in its namespace): {r}");
    }
}

/// Backlog seconds: depth ÷ the fleet's throughput, read from the workers' job counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_seconds_divides_depth_by_fleet_throughput() {
    let fx = Fixture::new("scaler-backlog", 5, 60).await;
    let logs = tempfile::tempdir().unwrap();
    let doc = std::fs::read(docfleet_tests::repo_root().join("samples/invoice.png")).unwrap();
    let mut bodies = Vec::new();
    for i in 0..60 {
        fx.put_input(&format!("docs/{i}.png"), doc.clone()).await;
        bodies.push(sleep_job(&fx, &format!("b{i}"), &format!("docs/{i}.png"), 200));
    }
    let worker = WorkerPod::start(&fx, "worker-backlog", 2, logs.path());
    let scaler = Scaler::start(
        &fx,
        &env(&[
            ("DOCFLEET__SCALER__BACKLOG_SECONDS", "true"),
            ("DOCFLEET__SCALER__WORKER_METRICS_URLS", &format!("http://127.0.0.1:{}/metrics", worker.port)),
            ("DOCFLEET__SCALER__WORKER_SCRAPE_INTERVAL_MS", "200"),
            ("DOCFLEET__SCALER__THROUGHPUT_WINDOW_SECONDS", "5"),
            ("DOCFLEET__SCALER__POLL_INTERVAL_MS", "200"),
        ]),
        &[],
        logs.path(),
    )
    .await;
    fx.send_raw(&bodies.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let (depth, backlog) = poll("a backlog while jobs run", LIMIT, TICK, async || {
        let (_, q) = json_get(scaler.metrics_port, &format!("/api/v1/queues/{}", fx.queue));
        let (depth, backlog) = (q["depth"].as_f64()?, q["backlogSeconds"].as_f64()?);
        // Below the cap: throughput has been measured (with none, the backlog is the cap).
        (depth > 0.0 && backlog > 0.0 && backlog < 86_400.0).then_some((depth, backlog))
    })
    .await;
    let throughput = sample(&scaler.metrics(), "docfleet_scaler_fleet_throughput_jobs_per_second").unwrap();
    assert!(throughput > 0.0 && backlog.is_finite(), "throughput {throughput}, depth {depth}, backlog {backlog}");

    let client = https_client(None);
    let (_, raw) = {
        let resp = client.get(scaler.https_url("/apis/external.metrics.k8s.io/v1beta1")).send().await.unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    let names: Vec<&str> = raw["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, [DEPTH_METRIC, BACKLOG_METRIC]);
    let url = scaler.external_metric_url("default", BACKLOG_METRIC, &format!("queue={}", fx.queue));
    let served =
        poll("backlog via the external metrics API", LIMIT, TICK, async || external_value(&client, &url).await).await;
    assert!(served >= 0.0);
    let mut c = ExternalScalerClient::connect(format!("http://127.0.0.1:{}", scaler.grpc_port)).await.unwrap();
    let spec = c
        .get_metric_spec(scaled_object(&fx.queue, &[("metric", "backlog-seconds"), ("targetValue", "30")]))
        .await
        .unwrap();
    assert_eq!(spec.into_inner().metric_specs[0].metric_name, BACKLOG_METRIC);

    poll("the queue drained and backlog 0", Duration::from_secs(120), Duration::from_millis(250), async || {
        let (_, q) = json_get(scaler.metrics_port, &format!("/api/v1/queues/{}", fx.queue));
        (q["depth"].as_f64()? == 0.0 && q["backlogSeconds"].as_f64()? == 0.0).then_some(())
    })
    .await;
}

/// A stand-in for a worker's `/metrics` whose job counter grows at exactly `rate` jobs per second
/// of wall time (a float counter, as Prometheus allows), so the fleet's throughput is known. Serves
/// on 127.0.0.1 until dropped.
struct KnownRateWorker {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KnownRateWorker {
    fn start(rate: f64) -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = std::time::Instant::now();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let Ok((mut conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let jobs = rate * started.elapsed().as_secs_f64();
                    let body = format!(
                        "# TYPE docfleet_jobs counter\n\
                         docfleet_jobs_total{{pipeline=\"sleep\",outcome=\"success\"}} {jobs}\n\
                         docfleet_jobs_total{{pipeline=\"sleep\",outcome=\"retried\"}} {}\n\
                         docfleet_worker_busy 1\n# EOF\n",
                        jobs * 3.0
                    );
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        Self { port, stop, thread: Some(thread) }
    }
}

impl Drop for KnownRateWorker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Backlog seconds against known numbers: 60 messages nobody consumes, and a worker whose
/// finished-job counter grows at 10 jobs/s (its `retried` series, 3× as fast, must not count):
/// throughput 10/s, backlog 60 ÷ 10 = 6 s, on the JSON endpoint, the scaler's own gauges and the
/// external metrics API alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_seconds_is_depth_over_a_known_throughput() {
    let fx = Fixture::new("scaler-backlog-known", 5, 60).await;
    let logs = tempfile::tempdir().unwrap();
    send_n(&fx, 60, 0).await;
    let worker = KnownRateWorker::start(10.0);
    let scaler = Scaler::start(
        &fx,
        &env(&[
            ("DOCFLEET__SCALER__BACKLOG_SECONDS", "true"),
            ("DOCFLEET__SCALER__WORKER_METRICS_URLS", &format!("http://127.0.0.1:{}/metrics", worker.port)),
            ("DOCFLEET__SCALER__WORKER_SCRAPE_INTERVAL_MS", "200"),
            ("DOCFLEET__SCALER__THROUGHPUT_WINDOW_SECONDS", "2"),
            ("DOCFLEET__SCALER__POLL_INTERVAL_MS", "200"),
        ]),
        &[],
        logs.path(),
    )
    .await;
    // Wait until the window is full (2 s of samples), then read.
    let throughput_series = "docfleet_scaler_fleet_throughput_jobs_per_second";
    poll("a throughput over a full window", LIMIT, TICK, async || {
        sample(&scaler.metrics(), throughput_series).filter(|t| *t > 0.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let throughput = sample(&scaler.metrics(), throughput_series).unwrap();
    assert!((throughput - 10.0).abs() < 0.3, "the worker finishes 10 jobs/s (retried not counted): {throughput}");

    let (code, q) = json_get(scaler.metrics_port, &format!("/api/v1/queues/{}", fx.queue));
    assert_eq!(code, 200, "{q}");
    assert_eq!(q["depth"], 60, "{q}");
    let backlog = q["backlogSeconds"].as_f64().unwrap();
    assert!((backlog - 6.0).abs() < 0.2, "60 messages ÷ 10 jobs/s = 6 s: {q}");
    let gauge =
        sample(&scaler.metrics(), &format!("docfleet_scaler_backlog_seconds{{queue=\"{}\"}}", fx.queue)).unwrap();
    assert!((gauge - 6.0).abs() < 0.2, "the backlog gauge: {gauge}");

    let client = https_client(None);
    let url = scaler.external_metric_url("default", BACKLOG_METRIC, &format!("queue={}", fx.queue));
    let served =
        poll("backlog via the external metrics API", LIMIT, TICK, async || external_value(&client, &url).await).await;
    assert!((served - 6.0).abs() < 0.2, "external metrics API: {served}");
    drop(scaler);
    drop(worker);
}

/// A bad `[scaler]` value or unknown key stops the binary at start-up, naming the key.
#[test]
fn bad_scaler_configuration_stops_the_binary_naming_the_key() {
    for (key, value, expect) in [
        ("DOCFLEET__SCALER__POLL_INTERVAL_MS", "10", "scaler.poll_interval_ms"),
        ("DOCFLEET__SCALER__POL_INTERVAL_MS", "1000", "scaler.pol_interval_ms"),
        ("DOCFLEET__SCALER__HTTPS_LISTEN", "localhost", "scaler.https_listen"),
        ("DOCFLEET__SCALER__MAX_STALENESS_MS", "100", "scaler.max_staleness_ms"),
    ] {
        let out = run_with_timeout(
            Command::new(bin("docfleet-scaler")).env_clear().env("DOCFLEET_PROFILE", "aws-mock").env(key, value),
            Duration::from_secs(30),
        );
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{key}={value} was accepted");
        assert!(stderr.contains(expect), "{key}={value}: {stderr}");
    }
    let out = run_with_timeout(
        Command::new(bin("docfleet-scaler")).env_clear().env("DOCFLEET_PROFILE", "aws-mock").arg("--tls-cert-file=/x"),
        Duration::from_secs(30),
    );
    assert!(!out.status.success() && text(&out).1.contains("--tls-key-file"), "{}", text(&out).1);
}

/// The HPA simulation: a burst of 500 jobs drives a test-only HPA (ceil(metric/target) for an
/// AverageValue target, tolerance 0.1, min/max, scale-down stabilisation) from min to max
/// replicas of real workers and back; every job has exactly one result and ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_simulation_scales_real_workers_from_min_to_max_and_back() {
    let fx = Fixture::new("scaler-hpa", 5, 120).await;
    let opts = SimOptions::default();
    let report = run_hpa_simulation(&fx, &opts).await;
    report.print_timeline();
    eprintln!(
        "drained in {:.1} s, back at min after {:.1} s; {} workers started, {} scale-ins ({} busy, {} idle); \
         {} GetQueueAttributes calls; {} pod-deletion-cost patches",
        report.drain_seconds,
        report.settle_seconds,
        report.workers_started,
        report.scale_ins,
        report.busy_killed,
        report.idle_killed,
        report.sqs_calls,
        report.cost_patches
    );
    assert_eq!(report.max_replicas_seen, opts.max_replicas, "the burst reached max replicas");
    let last = report.timeline.last().unwrap();
    assert_eq!((last.replicas, last.terminating), (opts.min_replicas, 0), "back at min");
    assert!(report.scale_ins >= opts.max_replicas - opts.min_replicas);
    assert_eq!(report.results, opts.jobs, "one result per job");
    assert_eq!(report.jobs_succeeded, opts.jobs as u64, "each job ran once");
    assert_eq!(report.dead_lettered, 0);
    assert!(report.clean_exits, "every SIGTERMed worker exited 0");
    assert!(report.cost_patches > 0, "the scaler kept pod-deletion-cost current");
    // At most one GetQueueAttributes per polling interval, however often the HPA asked.
    let intervals = (report.settle_seconds * 1000.0 / opts.scaler_poll_ms as f64).ceil() + 2.0;
    assert!(
        report.sqs_calls >= 1.0 && report.sqs_calls <= intervals,
        "{} calls in {intervals} intervals",
        report.sqs_calls
    );
}
