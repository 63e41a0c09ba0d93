//! Harness for docfleet-scaler's black-box tests (`tests/scaler.rs`) and benchmark
//! (`docfleet-bench scaler`):
//!
//! - [`Scaler`]: the `docfleet-scaler` binary on free 127.0.0.1 ports, pointed at a [`Fixture`];
//! - [`FakeKube`]: a fake Kubernetes API server serving what the scaler uses — pod list and
//!   pod patch in one namespace, nothing else (no kube-apiserver binary can run here);
//! - [`run_hpa_simulation`]: a test-only HPA that reads the scaler's external metrics API and
//!   starts and stops real `docfleet-worker` processes (SIGTERM on scale-in), registering them as
//!   pods in the fake API server so the scaler can keep their pod-deletion-cost current.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{Fixture, free_port, http_get};

/// Bounded polling: `f` until it returns `Some`, at most `limit`, every `every`.
pub async fn poll<T>(what: &str, limit: Duration, every: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// The body of a raw HTTP response from [`http_get`].
pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// The value of one sample in a Prometheus exposition, by exact name and labels
/// (`docfleet_scaler_sqs_calls_total{queue="q",operation="GetQueueAttributes"}`).
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// A running `docfleet-scaler`, stopped (SIGTERM) when dropped.
pub struct Scaler {
    child: Option<Child>,
    pub https_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Scaler {
    /// Start the scaler on the fixture's queues (the aws-mock profile pointed at the fixture), with
    /// extra environment and flags; returns once `/healthz` answers on the metrics port.
    pub async fn start(fx: &Fixture, env: &[(&str, String)], args: &[String], log_dir: &Path) -> Self {
        let mut cmd = fx.command("docfleet-scaler");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, args, log_dir).await
    }

    /// Start from a prepared command (environment set by the caller).
    pub async fn spawn(mut cmd: Command, args: &[String], log_dir: &Path) -> Self {
        let (https_port, grpc_port, metrics_port) = (free_port(), free_port(), free_port());
        let log = log_dir.join(format!("scaler-{metrics_port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        cmd.arg(format!("--https-listen=127.0.0.1:{https_port}"))
            .arg(format!("--grpc-listen=127.0.0.1:{grpc_port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd.spawn().expect("start docfleet-scaler");
        let mut scaler = Self { child: Some(child), https_port, grpc_port, metrics_port, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_get(metrics_port, "/healthz").is_some_and(|r| r.contains(" 200 ")) {
                break;
            }
            if let Some(status) = scaler.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("docfleet-scaler exited ({status}) at start-up; log:\n{}", scaler.log_text());
            }
            assert!(Instant::now() < deadline, "docfleet-scaler did not start; log:\n{}", scaler.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        scaler
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (for CPU accounting in the benchmark).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The Prometheus exposition on the metrics port.
    pub fn metrics(&self) -> String {
        body(&http_get(self.metrics_port, "/metrics").unwrap_or_default()).to_owned()
    }

    /// `https://127.0.0.1:<port>` + `path`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// The external metrics API URL of `metric` for `selector` (URL-encoded here).
    pub fn external_metric_url(&self, namespace: &str, metric: &str, selector: &str) -> String {
        self.https_url(&external_metric_path(namespace, metric, selector))
    }
}

/// The external metrics API path of `metric` for `selector` (URL-encoded here).
pub fn external_metric_path(namespace: &str, metric: &str, selector: &str) -> String {
    {
        let encoded: String = selector
            .chars()
            .map(|c| match c {
                '=' => "%3D".to_owned(),
                ',' => "%2C".to_owned(),
                ' ' => "%20".to_owned(),
                '(' => "%28".to_owned(),
                ')' => "%29".to_owned(),
                '!' => "%21".to_owned(),
                c => c.to_string(),
            })
            .collect();
        format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}?labelSelector={encoded}")
    }
}

impl Scaler {
    /// SIGTERM and wait (bounded); the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        terminate(&mut child, Duration::from_secs(20))
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }
}

/// SIGTERM, wait up to `limit`, then SIGKILL.
pub fn terminate(child: &mut Child, limit: Duration) -> ExitStatus {
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// An HTTPS client that trusts only `pinned` (PEM), or any certificate when `None` (the scaler's
/// self-signed one, as an APIService with `insecureSkipTLSVerify` does).
pub fn https_client(pinned: Option<&str>) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy();
    let builder = match pinned {
        Some(pem) => builder.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()]),
        None => builder.danger_accept_invalid_certs(true),
    };
    builder.build().unwrap()
}

/// The first item's value of an external metric, parsed from its quantity; `None` on any error.
pub async fn external_value(client: &reqwest::Client, url: &str) -> Option<f64> {
    let resp = client.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let list: Value = resp.json().await.ok()?;
    let items = list["items"].as_array()?;
    let mut total = 0.0;
    for item in items {
        total += docfleet_scaler::quantity::parse(item["value"].as_str()?)?;
    }
    (!items.is_empty()).then_some(total)
}

// ------------------------------------------------------------------------------------------------
// Fake Kubernetes API

/// What the fake API server holds and saw.
#[derive(Default)]
struct KubeState {
    namespace: String,
    pods: BTreeMap<String, Value>,
    /// `METHOD path?query` of every request.
    requests: Vec<String>,
    created: u64,
}

/// A fake Kubernetes API server on 127.0.0.1 serving the pod endpoints the scaler uses:
/// `GET /api/v1/namespaces/{ns}/pods?labelSelector=…` (PodList), `GET …/pods/{name}`, and
/// `PATCH …/pods/{name}` with a JSON merge patch. Other namespaces answer 403 (the scaler's Role
/// covers its own namespace only), other paths 404, as `Status` objects.
pub struct FakeKube {
    pub addr: SocketAddr,
    state: Arc<Mutex<KubeState>>,
    stop: CancellationToken,
}

impl FakeKube {
    pub async fn start(namespace: &str) -> Self {
        let state = Arc::new(Mutex::new(KubeState { namespace: namespace.to_owned(), ..KubeState::default() }));
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod).patch(patch_pod))
            .fallback(kube_not_found)
            .layer(axum::middleware::from_fn_with_state(state.clone(), record_request))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
        });
        Self { addr, state, stop }
    }

    /// A kubeconfig pointing at this server (namespace set, a dummy bearer token).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let ns = self.state.lock().unwrap().namespace.clone();
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
                 users:\n- name: scaler\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    \
                 cluster: fake\n    user: scaler\n    namespace: {ns}\ncurrent-context: fake\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// Register a running worker pod whose `/metrics` is on 127.0.0.1:`metrics_port`.
    pub fn add_pod(&self, name: &str, metrics_port: u16, labels: &[(&str, &str)]) {
        let mut s = self.state.lock().unwrap();
        s.created += 1;
        let created = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let pod = json!({
            "metadata": {
                "name": name,
                "namespace": s.namespace,
                "uid": format!("00000000-0000-0000-0000-{:012}", s.created),
                "resourceVersion": s.created.to_string(),
                "creationTimestamp": created,
                "labels": labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": metrics_port.to_string(),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": { "containers": [{ "name": "worker", "image": "docfleet/worker:test" }] },
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "conditions": [{ "type": "Ready", "status": "True" }],
            },
        });
        s.pods.insert(name.to_owned(), pod);
    }

    /// Mark a pod terminating (as the ReplicaSet's delete does), keeping it listed.
    pub fn mark_deleting(&self, name: &str) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        if let Some(p) = self.state.lock().unwrap().pods.get_mut(name) {
            p["metadata"]["deletionTimestamp"] = json!(now);
        }
    }

    pub fn remove_pod(&self, name: &str) {
        self.state.lock().unwrap().pods.remove(name);
    }

    /// An annotation of a pod.
    pub fn annotation(&self, pod: &str, key: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.pods.get(pod)?["metadata"]["annotations"][key].as_str().map(str::to_owned)
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type KubeShared = Arc<Mutex<KubeState>>;

async fn record_request(
    State(state): State<KubeShared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!("{} {}", req.method(), req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""));
    state.lock().unwrap().requests.push(line);
    next.run(req).await
}

fn kube_status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn forbidden_namespace(state: &KubeState, ns: &str) -> Option<Response> {
    (ns != state.namespace).then(|| {
        kube_status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("pods is forbidden: User \"system:serviceaccount:{0}:docfleet-scaler\" cannot access pods in the namespace \"{ns}\"", state.namespace),
        )
    })
}

fn selector_matches(pod: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| match term.split_once('=') {
        Some((k, v)) => pod["metadata"]["labels"][k.trim()].as_str() == Some(v.trim_start_matches('=').trim()),
        None => false,
    })
}

async fn list_pods(
    State(state): State<KubeShared>,
    UrlPath(ns): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let s = state.lock().unwrap();
    if let Some(r) = forbidden_namespace(&s, &ns) {
        return r;
    }
    let selector = q.get("labelSelector").map(String::as_str).unwrap_or("");
    // Items without kind/apiVersion, as the real API server lists them.
    let items: Vec<Value> = s.pods.values().filter(|p| selector_matches(p, selector)).cloned().collect();
    axum::Json(json!({
        "kind": "PodList", "apiVersion": "v1",
        "metadata": { "resourceVersion": s.created.to_string() },
        "items": items,
    }))
    .into_response()
}

async fn get_pod(State(state): State<KubeShared>, UrlPath((ns, name)): UrlPath<(String, String)>) -> Response {
    let s = state.lock().unwrap();
    if let Some(r) = forbidden_namespace(&s, &ns) {
        return r;
    }
    match s.pods.get(&name) {
        Some(p) => {
            let mut p = p.clone();
            p["kind"] = json!("Pod");
            p["apiVersion"] = json!("v1");
            axum::Json(p).into_response()
        }
        None => kube_status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{name}\" not found")),
    }
}

async fn patch_pod(
    State(state): State<KubeShared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = forbidden_namespace(&s, &ns) {
        return r;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type != "application/merge-patch+json" {
        return kube_status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", content_type.to_owned());
    }
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return kube_status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    s.created += 1;
    let version = s.created.to_string();
    let Some(pod) = s.pods.get_mut(&name) else {
        return kube_status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{name}\" not found"));
    };
    merge_patch(pod, &patch);
    pod["metadata"]["resourceVersion"] = json!(version);
    let mut p = pod.clone();
    p["kind"] = json!("Pod");
    p["apiVersion"] = json!("v1");
    axum::Json(p).into_response()
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let obj = target.as_object_mut().unwrap();
            for (k, v) in fields {
                if v.is_null() {
                    obj.remove(k);
                } else {
                    merge_patch(obj.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

async fn kube_not_found(method: Method, uri: Uri) -> Response {
    kube_status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({method} {uri})"),
    )
}

// ------------------------------------------------------------------------------------------------
// Worker processes

/// One `docfleet-worker` process playing a pod.
pub struct WorkerPod {
    pub name: String,
    pub port: u16,
    pub started: Instant,
    child: Child,
    log: PathBuf,
    pub terminating_since: Option<Instant>,
}

impl WorkerPod {
    /// Start a worker for the fixture: diagnostic `sleep` pipeline on, OCR off, short long-poll,
    /// `concurrency` jobs at once and batches of the same size (so it does not hoard messages).
    pub fn start(fx: &Fixture, name: &str, concurrency: usize, log_dir: &Path) -> Self {
        Self::start_with(fx, name, concurrency, None, log_dir)
    }

    /// [`WorkerPod::start`] with `worker.shutdown_grace_seconds` set.
    pub fn start_with(fx: &Fixture, name: &str, concurrency: usize, grace: Option<u32>, log_dir: &Path) -> Self {
        let port = free_port();
        let log = log_dir.join(format!("{name}.log"));
        let mut cmd = fx.command("docfleet-worker");
        if let Some(grace) = grace {
            cmd.env("DOCFLEET__WORKER__SHUTDOWN_GRACE_SECONDS", grace.to_string());
        }
        let child = cmd
            .env("DOCFLEET__WORKER__DIAGNOSTIC_PIPELINES", "true")
            .env("DOCFLEET__OCR__ENABLED", "false")
            .env("DOCFLEET__WORKER__CONCURRENCY", concurrency.to_string())
            .env("DOCFLEET__WORKER__RECEIVE_BATCH", concurrency.min(10).to_string())
            .env("DOCFLEET__WORKER__HTTP_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docfleet-worker");
        Self { name: name.to_owned(), port, started: Instant::now(), child, log, terminating_since: None }
    }

    /// `docfleet_worker_busy` from its `/metrics`; `None` while it does not answer.
    pub fn busy(&self) -> Option<bool> {
        let text = http_get(self.port, "/metrics")?;
        sample(body(&text), "docfleet_worker_busy").map(|v| v > 0.0)
    }

    pub fn sigterm(&mut self) {
        signal(&self.child, libc::SIGTERM);
        self.terminating_since = Some(Instant::now());
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGTERM and wait for the exit (bounded).
    pub fn stop(&mut self, limit: Duration) -> ExitStatus {
        self.terminating_since.get_or_insert_with(Instant::now);
        terminate(&mut self.child, limit)
    }

    /// The summary line the worker prints on exit.
    pub fn summary(&self) -> Option<Value> {
        let log = std::fs::read_to_string(&self.log).ok()?;
        log.lines().rev().find(|l| l.starts_with('{')).and_then(|l| serde_json::from_str(l).ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Jobs abandoned when the grace period ran out (`unfinished=N` of the worker's warning).
    pub fn interrupted_jobs(&self) -> u64 {
        self.log_text()
            .lines()
            .filter(|l| l.contains("abandoning unfinished jobs"))
            .filter_map(|l| {
                l.split("unfinished=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for WorkerPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------------
// HPA simulation

/// The autoscaler and the burst.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub jobs: usize,
    /// Length of each `sleep` job; with `job_ms_max` above it, lengths spread evenly (in a fixed
    /// pseudo-random order) between the two.
    pub job_ms: u64,
    pub job_ms_max: u64,
    /// Every `long_job_every`-th job (0: none) takes `long_job_ms` instead: a long tail.
    pub long_job_every: usize,
    pub long_job_ms: u64,
    /// The workers' `shutdown_grace_seconds` (default 25): shorter than the jobs, a scale-in that
    /// hits a busy worker releases its jobs, which then run again elsewhere.
    pub worker_grace_seconds: Option<u32>,
    /// `AverageValue` target: messages per replica.
    pub target: f64,
    pub min_replicas: usize,
    pub max_replicas: usize,
    /// The HPA's tolerance (0.1).
    pub tolerance: f64,
    pub scale_down_window: Duration,
    /// How often the controller reads the metric and acts (the HPA's sync period, 15 s in a cluster).
    pub sync_period: Duration,
    /// Run the scaler with `--pod-deletion-cost` and choose scale-in victims by the annotation.
    pub pod_deletion_cost: bool,
    pub worker_concurrency: usize,
    /// Upper bound of the whole simulation.
    pub limit: Duration,
    /// The scaler's `poll_interval_ms`.
    pub scaler_poll_ms: u64,
    /// Print the timeline as it goes.
    pub verbose: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            jobs: 500,
            job_ms: 300,
            job_ms_max: 300,
            long_job_every: 0,
            long_job_ms: 0,
            worker_grace_seconds: None,
            target: 25.0,
            min_replicas: 1,
            max_replicas: 4,
            tolerance: 0.1,
            scale_down_window: Duration::from_secs(3),
            sync_period: Duration::from_millis(500),
            pod_deletion_cost: true,
            worker_concurrency: 2,
            limit: Duration::from_secs(300),
            scaler_poll_ms: 500,
            verbose: true,
        }
    }
}

/// One controller round.
#[derive(Debug, Clone)]
pub struct Row {
    pub t: f64,
    /// The metric as read (None: the scaler answered an error, so the HPA held).
    pub metric: Option<f64>,
    pub desired: usize,
    pub replicas: usize,
    pub terminating: usize,
    pub busy: usize,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub timeline: Vec<Row>,
    /// From sending the first job to every result written.
    pub drain_seconds: f64,
    /// From sending the first job to back at `min_replicas` with nothing terminating.
    pub settle_seconds: f64,
    pub max_replicas_seen: usize,
    pub scale_ins: usize,
    pub busy_killed: usize,
    pub idle_killed: usize,
    /// Sum of every worker's `jobs_succeeded` (its exit summary).
    pub jobs_succeeded: u64,
    /// Jobs a scale-in interrupted: still running when a worker's grace period ran out, so
    /// released and run again elsewhere (from the workers' logs).
    pub interrupted: u64,
    /// Result objects under `results/`.
    pub results: usize,
    /// Messages left in the DLQ.
    pub dead_lettered: u64,
    /// GetQueueAttributes calls the scaler made for the job queue.
    pub sqs_calls: f64,
    /// Pod-deletion-cost patches the scaler made.
    pub cost_patches: usize,
    pub workers_started: usize,
    /// Every worker exited 0.
    pub clean_exits: bool,
    pub scaler_log: String,
}

impl SimReport {
    pub fn print_timeline(&self) {
        eprintln!("   t(s)  metric  desired  replicas  terminating  busy");
        for r in &self.timeline {
            let m = r.metric.map(|m| format!("{m:6.0}")).unwrap_or_else(|| "     -".into());
            eprintln!("{:7.1}  {m}  {:7}  {:8}  {:11}  {:4}", r.t, r.desired, r.replicas, r.terminating, r.busy);
        }
    }
}

/// The HPA's replica calculation for one `External` metric with an `AverageValue` target:
/// `ceil(metric / target)`, unless the usage ratio is within the tolerance of 1; then min/max.
pub fn hpa_desired(metric: f64, target: f64, current: usize, tolerance: f64, min: usize, max: usize) -> usize {
    let current_f = current.max(1) as f64;
    let ratio = metric / (target * current_f);
    let raw = if current > 0 && (ratio - 1.0).abs() <= tolerance { current } else { (metric / target).ceil() as usize };
    raw.clamp(min, max)
}

/// The HPA's behaviour stabilisation: scale up to the lowest recommendation of the scale-up window
/// (0 s: the current one), down to the highest of the scale-down window.
pub fn stabilize(history: &[(Instant, usize)], now: Instant, current: usize, down_window: Duration) -> usize {
    let latest = history.last().map(|(_, r)| *r).unwrap_or(current);
    let down =
        history.iter().filter(|(t, _)| now.duration_since(*t) <= down_window).map(|(_, r)| *r).max().unwrap_or(latest);
    if latest > current {
        latest
    } else if down < current {
        down
    } else {
        current
    }
}

/// Run the burst through an HPA-driven fleet; see the module docs. Panics (with the timeline) if
/// the fleet does not settle within `opts.limit`.
pub async fn run_hpa_simulation(fx: &Fixture, opts: &SimOptions) -> SimReport {
    const NAMESPACE: &str = "docfleet";
    const SELECTOR: &str = "app.kubernetes.io/name=docfleet-worker";
    let dir = tempfile::Builder::new().prefix("docfleet-hpa-sim-").tempdir().unwrap();
    let logs = dir.path();

    // Inputs, one object per job so every job has its own result key.
    let doc = std::fs::read(crate::repo_root().join("samples/invoice.png")).unwrap();
    futures::stream::iter(0..opts.jobs)
        .map(|i| {
            let doc = doc.clone();
            async move { fx.put_input(&format!("sim/{i}.png"), doc).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let kube = FakeKube::start(NAMESPACE).await;
    let kubeconfig = kube.write_kubeconfig(logs);
    let mut env = vec![
        ("DOCFLEET__SCALER__POLL_INTERVAL_MS", opts.scaler_poll_ms.to_string()),
        ("DOCFLEET__SCALER__MAX_STALENESS_MS", "30000".to_owned()),
        ("DOCFLEET__SCALER__WORKER_SCRAPE_INTERVAL_MS", "250".to_owned()),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("POD_NAMESPACE", NAMESPACE.to_owned()),
        ("RUST_LOG", "info,docfleet_scaler::fleet=debug".to_owned()),
    ];
    env.push(("HOME", logs.display().to_string()));
    let mut args = vec![format!("--worker-selector={SELECTOR}")];
    if opts.pod_deletion_cost {
        args.push("--pod-deletion-cost".into());
    }
    let mut scaler = Scaler::start(fx, &env, &args, logs).await;
    let client = https_client(None);
    let metric_url =
        scaler.external_metric_url("default", docfleet_scaler::DEPTH_METRIC, &format!("queue={}", fx.queue));

    let mut pods: Vec<WorkerPod> = Vec::new();
    let mut exited: Vec<WorkerPod> = Vec::new();
    let mut next_id = 0usize;
    let mut spawn = |pods: &mut Vec<WorkerPod>, n: usize| {
        for _ in 0..n {
            let name = format!("docfleet-worker-{next_id}");
            next_id += 1;
            let w = WorkerPod::start_with(fx, &name, opts.worker_concurrency, opts.worker_grace_seconds, logs);
            kube.add_pod(&name, w.port, &[("app.kubernetes.io/name", "docfleet-worker")]);
            pods.push(w);
        }
    };
    spawn(&mut pods, opts.min_replicas);

    // The burst.
    let t0 = Instant::now();
    let bodies: Vec<String> = (0..opts.jobs)
        .map(|i| {
            json!({"version": 1, "job_id": format!("sim-{i}"), "input": format!("s3://{}/sim/{i}.png", fx.input_bucket),
                   "pipeline": "sleep", "params": {"ms": job_length_ms(opts, i)}})
            .to_string()
        })
        .collect();
    futures::stream::iter(bodies.chunks(10))
        .map(|chunk| {
            let entries = chunk.iter().enumerate().map(|(i, b)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b)
                    .build()
                    .unwrap()
            });
            fx.sqs.send_message_batch().queue_url(&fx.queue_url).set_entries(Some(entries.collect())).send()
        })
        .buffer_unordered(8)
        .for_each(|r| async move {
            let out = r.expect("SendMessageBatch");
            assert!(out.failed.is_empty(), "send failures: {:?}", out.failed);
        })
        .await;

    let mut report = SimReport::default();
    let mut history: Vec<(Instant, usize)> = Vec::new();
    let mut drained_at: Option<f64> = None;
    let deadline = t0 + opts.limit;
    loop {
        let now = Instant::now();
        if now >= deadline {
            report.print_timeline();
            panic!("the fleet did not settle within {:?}; scaler log:\n{}", opts.limit, tail(&scaler.log_text(), 40));
        }
        // Reap workers that finished draining.
        let mut i = 0;
        while i < pods.len() {
            if pods[i].terminating_since.is_some() && pods[i].try_exit().is_some() {
                let w = pods.remove(i);
                kube.remove_pod(&w.name);
                exited.push(w);
            } else {
                i += 1;
            }
        }
        let running: Vec<usize> = (0..pods.len()).filter(|&i| pods[i].terminating_since.is_none()).collect();
        let current = running.len();
        let metric = external_value(&client, &metric_url).await;
        let mut desired = current;
        if let Some(m) = metric {
            let recommendation =
                hpa_desired(m, opts.target, current, opts.tolerance, opts.min_replicas, opts.max_replicas);
            history.push((now, recommendation));
            history.retain(|(t, _)| now.duration_since(*t) <= opts.scale_down_window);
            desired = stabilize(&history, now, current, opts.scale_down_window);
        }
        if desired > current {
            spawn(&mut pods, desired - current);
        } else if desired < current {
            // The ReplicaSet's choice: lowest pod-deletion-cost first (absent = 0), then the newest.
            let mut victims = running.clone();
            victims.sort_by_key(|&i| {
                let cost = if opts.pod_deletion_cost {
                    kube.annotation(&pods[i].name, docfleet_scaler::fleet::POD_DELETION_COST)
                        .and_then(|c| c.parse::<i64>().ok())
                        .unwrap_or(0)
                } else {
                    0
                };
                (cost, std::cmp::Reverse(pods[i].started))
            });
            for &i in victims.iter().take(current - desired) {
                match pods[i].busy() {
                    Some(true) => report.busy_killed += 1,
                    _ => report.idle_killed += 1,
                }
                kube.mark_deleting(&pods[i].name);
                pods[i].sigterm();
                report.scale_ins += 1;
            }
        }
        let replicas = pods.iter().filter(|p| p.terminating_since.is_none()).count();
        let terminating = pods.len() - replicas;
        let busy = pods.iter().filter(|p| p.busy() == Some(true)).count();
        report.max_replicas_seen = report.max_replicas_seen.max(replicas);
        let row = Row { t: t0.elapsed().as_secs_f64(), metric, desired, replicas, terminating, busy };
        if opts.verbose {
            let m = row.metric.map(|m| format!("{m:.0}")).unwrap_or_else(|| "-".into());
            eprintln!(
                "[hpa-sim] t={:6.1}s metric={m:>4} desired={} replicas={} terminating={} busy={}",
                row.t, row.desired, row.replicas, row.terminating, row.busy
            );
        }
        report.timeline.push(row);

        if drained_at.is_none() && metric == Some(0.0) && fx.output_keys("results/").await.len() >= opts.jobs {
            drained_at = Some(t0.elapsed().as_secs_f64());
        }
        if drained_at.is_some() && replicas == opts.min_replicas && terminating == 0 {
            break;
        }
        tokio::time::sleep(opts.sync_period.saturating_sub(now.elapsed())).await;
    }
    report.drain_seconds = drained_at.unwrap_or_default();
    report.settle_seconds = t0.elapsed().as_secs_f64();

    let exposition = scaler.metrics();
    report.sqs_calls = sample(
        &exposition,
        &format!("docfleet_scaler_sqs_calls_total{{queue=\"{}\",operation=\"GetQueueAttributes\"}}", fx.queue),
    )
    .unwrap_or(0.0);
    report.cost_patches = kube.requests().iter().filter(|r| r.starts_with("PATCH ")).count();
    report.clean_exits = true;
    for mut w in pods.drain(..) {
        kube.mark_deleting(&w.name);
        w.stop(Duration::from_secs(40));
        exited.push(w);
    }
    report.workers_started = exited.len();
    for w in &mut exited {
        let status = w.try_exit().expect("exited");
        report.clean_exits &= status.success();
        match w.summary() {
            Some(s) => {
                report.jobs_succeeded += s["jobs_succeeded"].as_u64().unwrap_or(0);
                report.interrupted += w.interrupted_jobs();
            }
            None => panic!("{} printed no summary; log:\n{}", w.name, tail(&w.log_text(), 30)),
        }
    }
    report.results = fx.output_keys("results/").await.len();
    report.dead_lettered = fx.depth(&fx.dlq_url).await.0;
    scaler.terminate();
    report.scaler_log = scaler.log_text();
    report
}

/// Job `i`'s length: `job_ms`, or spread over `job_ms..=job_ms_max` in a fixed shuffled order.
pub fn job_length_ms(opts: &SimOptions, i: usize) -> u64 {
    if opts.long_job_every > 0 && i % opts.long_job_every == opts.long_job_every - 1 {
        return opts.long_job_ms;
    }
    if opts.job_ms_max <= opts.job_ms {
        return opts.job_ms;
    }
    // splitmix64: a fixed, well-spread order, the same in every run.
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    opts.job_ms + z % (opts.job_ms_max - opts.job_ms + 1)
}

/// The last `n` lines of a log.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
