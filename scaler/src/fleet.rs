//! The worker fleet as the scaler sees it: every `worker_scrape_interval_ms` it finds the workers
//! (pods by label selector through the Kubernetes API, or a static list of `/metrics` URLs),
//! reads each one's `/metrics`, and
//!
//! - adds up the jobs they finished, for fleet throughput (jobs/s over a window) and so the
//!   backlog-seconds metric;
//! - with pod-deletion-cost on, keeps `controller.kubernetes.io/pod-deletion-cost` on each
//!   running worker pod at 0 when idle and `busy_pod_cost` when busy, patching only on change.
//!   A ReplicaSet scaling in deletes the pods with the lowest cost first (after pending and
//!   not-ready ones), so idle workers go before busy ones. A pod whose `/metrics` cannot be read
//!   keeps the annotation it has.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::exposition::{WorkerState, worker_state};
use crate::metrics::{Metrics, StateLabel};
use crate::{Error, Result};

/// The annotation the ReplicaSet controller reads when choosing pods to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// How workers are found.
#[allow(clippy::large_enum_variant)] // one value per process
pub enum Discovery {
    /// Worker pods in one namespace, by label selector; `/metrics` on the pod IP at the
    /// `prometheus.io/port` annotation (else `default_port`) and `prometheus.io/path` (else `/metrics`).
    Pods { api: Api<Pod>, selector: String, default_port: u16 },
    /// Fixed `/metrics` URLs (compose, plain hosts): throughput only.
    Static(Vec<String>),
}

/// Fleet behaviour.
#[derive(Debug, Clone, Copy)]
pub struct FleetConfig {
    pub interval: Duration,
    pub throughput_window: Duration,
    pub pod_deletion_cost: bool,
    pub busy_pod_cost: i32,
}

/// One worker found by discovery.
#[derive(Debug, Clone)]
struct Target {
    /// Pod name or URL: what throughput bookkeeping keys on.
    id: String,
    url: String,
    /// The pod's current pod-deletion-cost annotation; `None` for static targets.
    pod_cost: Option<Option<String>>,
}

/// What one sync saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    pub busy: usize,
    pub idle: usize,
    pub unreachable: usize,
    pub patched: usize,
}

/// The fleet watcher; shared with the metric APIs for throughput.
pub struct Fleet {
    discovery: Discovery,
    http: reqwest::Client,
    config: FleetConfig,
    throughput: Mutex<Throughput>,
    metrics: Arc<Metrics>,
}

impl Fleet {
    pub fn new(discovery: Discovery, config: FleetConfig, metrics: Arc<Metrics>) -> Result<Self> {
        let timeout = config.interval.min(Duration::from_secs(2));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| Error::Config(format!("HTTP client for worker /metrics: {e}")))?;
        let throughput = Mutex::new(Throughput::new(config.throughput_window));
        Ok(Self { discovery, http, config, throughput, metrics })
    }

    /// Sync every interval until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.sync_once().await {
                Ok(report) => debug!(?report, "fleet synced"),
                Err(e) => warn!(error = %e, "fleet sync failed"),
            }
        }
    }

    /// Jobs per second the fleet finished over the window; `None` until two scrapes have been made.
    pub fn jobs_per_second(&self) -> Option<f64> {
        self.throughput.lock().expect("throughput lock").rate()
    }

    /// One round: discover, scrape, update throughput, patch pod-deletion-cost.
    pub async fn sync_once(&self) -> Result<SyncReport> {
        let targets = match self.discover().await {
            Ok(t) => t,
            Err(e) => {
                self.metrics.pod_list_errors.inc();
                return Err(e);
            }
        };
        let scrapes = targets.iter().map(|t| self.scrape(&t.url));
        let states: Vec<Option<WorkerState>> = futures::future::join_all(scrapes).await;

        let totals: HashMap<String, f64> =
            targets.iter().zip(&states).filter_map(|(t, s)| s.map(|s| (t.id.clone(), s.jobs_finished))).collect();
        let rate = {
            let mut tp = self.throughput.lock().expect("throughput lock");
            tp.record(Instant::now(), &totals);
            tp.rate()
        };
        self.metrics.fleet_throughput.set(rate.unwrap_or(0.0));

        let mut report = SyncReport::default();
        for s in &states {
            match s {
                Some(s) if s.busy => report.busy += 1,
                Some(_) => report.idle += 1,
                None => report.unreachable += 1,
            }
        }
        for (state, n) in [("busy", report.busy), ("idle", report.idle), ("unreachable", report.unreachable)] {
            self.metrics.workers.get_or_create(&StateLabel { state: state.into() }).set(n as i64);
        }

        if self.config.pod_deletion_cost
            && let Discovery::Pods { api, .. } = &self.discovery
        {
            for (target, state) in targets.iter().zip(&states) {
                let (Some(current), Some(state)) = (&target.pod_cost, state) else { continue };
                let desired = if state.busy { self.config.busy_pod_cost } else { 0 }.to_string();
                if current.as_deref() == Some(desired.as_str()) {
                    continue;
                }
                match patch_cost(api, &target.id, &desired).await {
                    Ok(()) => {
                        self.metrics.pod_cost_patch("ok");
                        report.patched += 1;
                        debug!(pod = %target.id, cost = %desired, busy = state.busy, "pod-deletion-cost updated");
                    }
                    Err(e) => {
                        self.metrics.pod_cost_patch("error");
                        warn!(pod = %target.id, error = %e, "patching pod-deletion-cost failed");
                    }
                }
            }
        }
        Ok(report)
    }

    async fn discover(&self) -> Result<Vec<Target>> {
        match &self.discovery {
            Discovery::Static(urls) => {
                Ok(urls.iter().map(|u| Target { id: u.clone(), url: u.clone(), pod_cost: None }).collect())
            }
            Discovery::Pods { api, selector, default_port } => {
                let pods = api.list(&ListParams::default().labels(selector)).await?;
                Ok(pods.items.iter().filter_map(|p| pod_target(p, *default_port)).collect())
            }
        }
    }

    async fn scrape(&self, url: &str) -> Option<WorkerState> {
        let body = async { self.http.get(url).send().await?.error_for_status()?.text().await };
        match body.await {
            Ok(text) => match worker_state(&text) {
                Some(state) => {
                    self.metrics.worker_scrape("ok");
                    Some(state)
                }
                None => {
                    self.metrics.worker_scrape("not_a_worker");
                    debug!(url, "no docfleet_worker_busy in /metrics");
                    None
                }
            },
            Err(e) => {
                self.metrics.worker_scrape("error");
                debug!(url, error = %e, "reading worker /metrics failed");
                None
            }
        }
    }
}

/// A running, not terminating pod with an IP, as a scrape target.
fn pod_target(pod: &Pod, default_port: u16) -> Option<Target> {
    let meta = &pod.metadata;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    let annotations = meta.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let port = annotation("prometheus.io/port").and_then(|p| p.parse::<u16>().ok()).unwrap_or(default_port);
    let path = annotation("prometheus.io/path").filter(|p| p.starts_with('/')).unwrap_or("/metrics");
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
    Some(Target {
        id: meta.name.clone()?,
        url: format!("http://{host}:{port}{path}"),
        pod_cost: Some(annotation(POD_DELETION_COST).map(str::to_owned)),
    })
}

async fn patch_cost(api: &Api<Pod>, pod: &str, cost: &str) -> Result<()> {
    let patch = serde_json::json!({ "metadata": { "annotations": { POD_DELETION_COST: cost } } });
    let params = PatchParams { field_manager: Some("docfleet-scaler".into()), ..PatchParams::default() };
    api.patch(pod, &params, &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Jobs finished by the fleet per second, from per-worker counters sampled over time.
///
/// Each sample adds what every worker seen in the previous sample finished since then (a counter
/// that went down means a restart: its new value is what it finished). A worker's first sample
/// is only its baseline, and what a worker finished after its last sample before it went away is
/// lost, so the rate errs low, never high.
#[derive(Debug)]
pub struct Throughput {
    window: Duration,
    last: HashMap<String, f64>,
    cumulative: f64,
    samples: VecDeque<(Instant, f64)>,
}

impl Throughput {
    pub fn new(window: Duration) -> Self {
        Self { window, last: HashMap::new(), cumulative: 0.0, samples: VecDeque::new() }
    }

    /// Add one scrape round: each worker's total of finished jobs.
    pub fn record(&mut self, now: Instant, totals: &HashMap<String, f64>) {
        for (id, total) in totals {
            if let Some(prev) = self.last.get(id) {
                self.cumulative += if total >= prev { total - prev } else { *total };
            }
        }
        self.last = totals.clone();
        self.samples.push_back((now, self.cumulative));
        // Keep the newest sample at or before the window's start, so the span covers the window.
        if let Some(start) = now.checked_sub(self.window) {
            while self.samples.len() > 2 && self.samples[1].0 <= start {
                self.samples.pop_front();
            }
        }
    }

    /// Jobs per second between the oldest and newest sample; `None` with fewer than two samples.
    pub fn rate(&self) -> Option<f64> {
        let (&(t0, c0), &(t1, c1)) = (self.samples.front()?, self.samples.back()?);
        let span = t1.duration_since(t0).as_secs_f64();
        (span > 0.0).then(|| (c1 - c0) / span)
    }
}

/// Log what the fleet watcher will do, once at start.
pub fn describe(discovery: &Discovery, config: &FleetConfig) {
    match discovery {
        Discovery::Pods { selector, .. } => info!(
            selector,
            pod_deletion_cost = config.pod_deletion_cost,
            interval_ms = config.interval.as_millis() as u64,
            "watching worker pods"
        ),
        Discovery::Static(urls) => info!(workers = urls.len(), "reading worker /metrics from configured URLs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn throughput_counts_increments_of_known_workers() {
        let t0 = Instant::now();
        let mut tp = Throughput::new(Duration::from_secs(60));
        tp.record(t0, &totals(&[("a", 100.0)]));
        assert_eq!(tp.rate(), None, "one sample is only a baseline");
        tp.record(t0 + Duration::from_secs(10), &totals(&[("a", 120.0), ("b", 50.0)]));
        assert_eq!(tp.rate(), Some(2.0), "b's first sample is its baseline");
        tp.record(t0 + Duration::from_secs(20), &totals(&[("a", 130.0), ("b", 60.0)]));
        assert_eq!(tp.rate(), Some(40.0 / 20.0));
        // a restarted (counter reset to 5), b went away.
        tp.record(t0 + Duration::from_secs(30), &totals(&[("a", 5.0)]));
        assert_eq!(tp.rate(), Some(45.0 / 30.0));
    }

    #[test]
    fn throughput_forgets_samples_outside_the_window() {
        let t0 = Instant::now();
        let mut tp = Throughput::new(Duration::from_secs(10));
        tp.record(t0, &totals(&[("a", 0.0)]));
        tp.record(t0 + Duration::from_secs(5), &totals(&[("a", 100.0)]));
        for i in 2..=6 {
            tp.record(t0 + Duration::from_secs(5 * i), &totals(&[("a", 100.0)]));
        }
        assert_eq!(tp.rate(), Some(0.0), "the burst is older than the window");
        assert!(tp.samples.len() <= 4, "{:?}", tp.samples);
    }

    fn pod(name: &str, phase: &str, ip: Option<&str>, annotations: &[(&str, &str)], deleting: bool) -> Pod {
        let mut value = serde_json::json!({
            "metadata": {
                "name": name,
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            },
            "status": { "phase": phase },
        });
        if let Some(ip) = ip {
            value["status"]["podIP"] = ip.into();
        }
        if deleting {
            value["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z".into();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn scrape_targets_from_pods() {
        let t = pod_target(&pod("w1", "Running", Some("10.0.0.7"), &[], false), 9090).unwrap();
        assert_eq!((t.id.as_str(), t.url.as_str()), ("w1", "http://10.0.0.7:9090/metrics"));
        assert_eq!(t.pod_cost, Some(None));
        let t = pod_target(
            &pod(
                "w2",
                "Running",
                Some("fd00::7"),
                &[("prometheus.io/port", "9191"), ("prometheus.io/path", "/m"), (POD_DELETION_COST, "100")],
                false,
            ),
            9090,
        )
        .unwrap();
        assert_eq!(t.url, "http://[fd00::7]:9191/m");
        assert_eq!(t.pod_cost, Some(Some("100".into())));
        assert!(pod_target(&pod("w3", "Pending", Some("10.0.0.8"), &[], false), 9090).is_none());
        assert!(pod_target(&pod("w4", "Running", None, &[], false), 9090).is_none());
        assert!(pod_target(&pod("w5", "Running", Some("10.0.0.9"), &[], true), 9090).is_none(), "terminating");
    }
}
