//! `docker-compose.yml`, run natively: no Docker engine runs here, so this test reads the compose
//! file and starts the same services as processes — LocalStack, the one-shot model downloader,
//! two workers, the scaler — each with the command and environment its compose service gives,
//! then enqueues documents with the `cli` service's environment and checks every result.
//!
//! The only changes from `docker compose up` (everything else comes from the file):
//!
//! 1. `localstack`: the test harness's native LocalStack (same pinned `localstack-core`) on
//!    127.0.0.1 and a free port instead of the image; its queue, DLQ and buckets are created by
//!    the same `localstack/init_resources.py` with the `localstack` service's environment.
//! 2. `DOCFLEET__AWS__ENDPOINT_URL`: `http://localstack:4566` (compose DNS) → that LocalStack.
//! 3. The `models` volume (`/models`) → a temporary directory: `HF_HOME`, `HF_HUB_CACHE` and any
//!    other value under `/models` rewritten to it.
//! 4. Listen addresses: the workers' `0.0.0.0:9090` → `127.0.0.1:<free port>` each (two processes
//!    share one network namespace here); the scaler's `0.0.0.0:<port>` flags → `127.0.0.1:<free port>`.
//! 5. Model sources: the profile's sources are PyPI wheels (network); here every configured model
//!    repo gets `source.kind = local` pointing at a directory the test writes, so nothing is
//!    downloaded. The files are placeholders, so the worker's `ocr` pipeline reports itself
//!    unavailable and the documents go through `inspect` (the default pipeline), as in the file.
//! 6. Container-only settings (`read_only`, `tmpfs`, `user`, `cap_drop`, `security_opt`, `ports`,
//!    `restart`, `depends_on`) have no process equivalent; `depends_on` is honoured by start order.
//! 7. `PATH` is passed through and `RUST_LOG=info` added (the images' defaults are the same level).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use docfleet_tests::deploy::{
    compose_command, compose_duration_seconds, compose_env, compose_file, compose_service, find, render,
};
use docfleet_tests::{
    Fixture, bin, free_port, http_get, localstack, ok, repo_root, run_with_timeout, sample_documents, text,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// A compose service as a native process: its environment with the adjustments above applied.
struct NativeService {
    name: String,
    env: BTreeMap<String, String>,
    args: Vec<String>,
}

impl NativeService {
    fn new(compose: &Value, name: &str, endpoint: &str, models: &Path) -> Self {
        let svc = compose_service(compose, name);
        let mut env = compose_env(svc);
        for value in env.values_mut() {
            // 2. endpoint, 3. the models volume.
            if value == "http://localstack:4566" {
                *value = endpoint.to_owned();
            } else if let Some(rest) = value.strip_prefix("/models") {
                *value = format!("{}{rest}", models.display());
            }
        }
        env.insert("RUST_LOG".into(), "info".into());
        Self { name: name.to_owned(), env, args: compose_command(svc) }
    }

    fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(bin(binary));
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).envs(&self.env).stdin(Stdio::null());
        cmd
    }
}

/// A running service process, killed if the test panics.
struct Running {
    name: String,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Running {
    fn spawn(name: &str, mut cmd: Command, logs: &Path) -> Self {
        let log = logs.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { name: name.to_owned(), child: Some(child), log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `limit` for the exit status.
    fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                child.kill().ok();
                child.wait().ok();
                panic!("{} did not exit within {limit:?} of SIGTERM; log:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// Poll `check` every 200 ms until it returns Some, at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replace `0.0.0.0:<port>` in a listen flag by 127.0.0.1 and a free port (adjustment 4).
fn loopback_listen(arg: &str) -> (String, Option<u16>) {
    match arg.split_once("0.0.0.0:") {
        Some((flag, _)) => {
            let port = free_port();
            (format!("{flag}127.0.0.1:{port}"), Some(port))
        }
        None => (arg.to_owned(), None),
    }
}

/// Sum of a Prometheus counter over all label sets whose labels contain `label_filter`.
fn metric_sum(body: &str, name: &str, label_filter: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter(|l| l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_services_run_natively_end_to_end() {
    let compose = compose_file();
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();

    // --- localstack (adjustment 1): same init script, the service's environment.
    let ls = localstack();
    let ls_env = compose_env(compose_service(&compose, "localstack"));
    let out = run_with_timeout(
        Command::new(&ls.python)
            .arg(repo_root().join("localstack/init_resources.py"))
            .args(["--endpoint", &ls.endpoint])
            .envs(&ls_env),
        LIMIT,
    );
    let created: Value = serde_json::from_str(&ok(out)).expect("init_resources prints JSON");
    let fx = fixture_for(&ls_env, &created, &ls.endpoint).await;

    // --- model-downloader: one-shot, must exit 0 before any worker starts (depends_on).
    let downloader = NativeService::new(&compose, "model-downloader", &ls.endpoint, &models);
    let source = tmp.path().join("model-source");
    let mut dl = downloader.command("docfleet-downloader");
    for (key, value) in local_model_sources(&downloader, &source) {
        dl.env(key, value); // adjustment 5
    }
    let out = run_with_timeout(dl.args(&downloader.args), LIMIT);
    let (so, se) = text(&out);
    assert!(out.status.success(), "{} failed:\n{so}\n{se}", downloader.name);
    let hub = models.join("hub");
    assert!(
        std::fs::read_dir(&hub).map(|d| d.count()).unwrap_or(0) > 0,
        "the downloader left nothing in {}",
        hub.display()
    );

    // --- scaler, started before the workers so it sees the backlog.
    let scaler_svc = NativeService::new(&compose, "scaler", &ls.endpoint, &models);
    let mut scaler_ports = BTreeMap::new();
    let scaler_args: Vec<String> = scaler_svc
        .args
        .iter()
        .map(|a| {
            let (arg, port) = loopback_listen(a);
            if let Some(p) = port {
                scaler_ports.insert(a.split('=').next().unwrap().to_owned(), p);
            }
            arg
        })
        .collect();
    let mut scaler_cmd = scaler_svc.command("docfleet-scaler");
    scaler_cmd.args(&scaler_args);
    let scaler = Running::spawn("scaler", scaler_cmd, &logs);
    let listen =
        |flag: &str| *scaler_ports.get(flag).unwrap_or_else(|| panic!("the scaler's compose command sets {flag}"));
    let (https_port, metrics_port) = (listen("--https-listen"), listen("--metrics-listen"));
    wait_for("the scaler's /metrics", LIMIT, || http_get(metrics_port, "/metrics").filter(|b| b.contains(" 200 ")));

    // --- cli: enqueue documents with the `cli` service's environment.
    let cli = NativeService::new(&compose, "cli", &ls.endpoint, &models);
    let docs = tmp.path().join("batch");
    std::fs::create_dir(&docs).unwrap();
    let files = sample_documents(&docs, 3);
    let n = files.len();
    let stdout = ok(run_with_timeout(cli.command("docfleet").arg("enqueue").arg(&docs), LIMIT));
    assert!(stdout.contains(&format!("enqueued {n} jobs, 0 failed")), "{stdout}");

    // The HPA of deploy/base asks for a metric name and selector: the scaler must serve exactly
    // that, with the backlog we just made.
    let base = render(&repo_root().join("deploy/base"));
    let hpa = find(&base, "HorizontalPodAutoscaler", "docfleet-worker");
    let metric = &hpa["spec"]["metrics"][0]["external"]["metric"];
    let metric_name = metric["name"].as_str().unwrap();
    let selector: Vec<String> = metric["selector"]["matchLabels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect();
    let mut last = String::new();
    let value = wait_for("the scaler to report the backlog", LIMIT, || {
        match external_metric(&ls.python, https_port, metric_name, &selector.join(",")) {
            Ok(v) if v >= n as f64 => return Some(v),
            Ok(v) => last = format!("value {v}"),
            Err(e) => last = e,
        }
        eprintln!("scaler: {last}");
        None
    });
    assert_eq!(value, n as f64, "queue depth as the HPA sees it");

    // --- two workers, as `docker compose up --scale worker=2`.
    let worker_svc = NativeService::new(&compose, "worker", &ls.endpoint, &models);
    let mut workers = Vec::new();
    let mut worker_ports = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let mut cmd = worker_svc.command("docfleet-worker");
        cmd.args(&worker_svc.args)
            .env("DOCFLEET__WORKER__HTTP_HOST", "127.0.0.1") // adjustment 4
            .env("DOCFLEET__WORKER__HTTP_PORT", port.to_string());
        workers.push(Running::spawn(&format!("worker-{i}"), cmd, &logs));
        worker_ports.push(port);
    }
    for (i, port) in worker_ports.iter().enumerate() {
        wait_for(&format!("worker-{i} /ready"), LIMIT, || http_get(*port, "/ready").filter(|b| b.contains(" 200 ")));
    }

    // Every document gets exactly one result, nothing goes to the DLQ.
    wait_for("every result", LIMIT, || {
        let keys =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fx.output_keys("results/")));
        (keys.len() >= n).then_some(())
    });
    fx.one_inspect_result_per_file(&files).await;
    assert_eq!(fx.depth(&fx.dlq_url).await.0, 0, "nothing dead-lettered");
    let processed: f64 = worker_ports
        .iter()
        .map(|p| {
            metric_sum(&http_get(*p, "/metrics").unwrap_or_default(), "docfleet_jobs_total", "outcome=\"success\"")
        })
        .sum();
    assert_eq!(processed, n as f64, "the two workers' counters add up to the documents");
    let status: Value =
        serde_json::from_str(&ok(run_with_timeout(cli.command("docfleet").args(["status", "--json"]), LIMIT))).unwrap();
    assert_eq!(status["results"], n, "{status}");

    // Every docfleet metric the alert rules use is one the running services export.
    let mut exported = http_get(metrics_port, "/metrics").unwrap_or_default();
    for p in &worker_ports {
        exported.push_str(&http_get(*p, "/metrics").unwrap_or_default());
    }
    let gpu = render(&repo_root().join("deploy/overlays/gpu"));
    let rule = find(&gpu, "PrometheusRule", "docfleet");
    let mut checked = 0;
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        for name in docfleet_metric_names(r["expr"].as_str().unwrap()) {
            let present = exported.lines().any(|l| {
                l.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            });
            assert!(present, "alert {} uses {name}, which no service exports", r["alert"]);
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} metric references checked");

    // The scaler sees the queue drained.
    wait_for("the scaler to report an empty queue", LIMIT, || {
        (external_metric(&ls.python, https_port, metric_name, &selector.join(",")).ok()? == 0.0).then_some(())
    });

    // `docker compose stop`: SIGTERM, exit 0 well within stop_grace_period.
    let stop = compose_duration_seconds(compose_service(&compose, "worker")["stop_grace_period"].as_str().unwrap());
    for w in &mut workers {
        let status = w.terminate(Duration::from_secs(stop));
        assert!(status.success(), "{} exited with {status} on SIGTERM; log:\n{}", w.name, w.log_text());
    }
    drop(scaler);
}

/// The `docfleet_*` metric names in a PromQL expression.
fn docfleet_metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("docfleet_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The value of an external metric from the scaler's external metrics API (HTTPS, self-signed in
/// dev), as the HPA would ask for it; an error while it is not answering.
fn external_metric(python: &Path, port: u16, metric: &str, selector: &str) -> Result<f64, String> {
    let url = format!(
        "https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/{metric}?labelSelector={}",
        selector.replace('=', "%3D").replace(',', "%2C")
    );
    let script = "import json, ssl, sys, urllib.request\n\
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
        print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5).read().decode())";
    let out = Command::new(python).args(["-c", script, &url]).output().map_err(|e| e.to_string())?;
    let (stdout, stderr) = text(&out);
    if !out.status.success() {
        return Err(stderr.lines().last().unwrap_or_default().to_owned());
    }
    let list: Value = serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;
    assert_eq!(list["kind"], "ExternalMetricValueList", "{list}");
    let item = &list["items"][0];
    assert_eq!(item["metricName"], metric, "{list}");
    item["value"].as_str().and_then(parse_quantity).ok_or_else(|| format!("no value in {list}"))
}

/// A Kubernetes quantity as served for metrics: `12`, `1500m`, `2k`.
fn parse_quantity(q: &str) -> Option<f64> {
    let (num, mult) = match q.char_indices().last()? {
        (i, 'm') => (&q[..i], 0.001),
        (i, 'k') => (&q[..i], 1e3),
        (i, 'M') => (&q[..i], 1e6),
        (i, 'G') => (&q[..i], 1e9),
        _ => (q, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// Environment overrides pointing every configured model repo at a local directory of placeholder
/// files (adjustment 5), from the effective configuration of the downloader's environment.
fn local_model_sources(downloader: &NativeService, source: &Path) -> Vec<(String, String)> {
    let out = run_with_timeout(downloader.command("docfleet").args(["config", "show"]), LIMIT);
    let config: toml::Table = ok(out).parse().expect("config show prints TOML");
    let mut overrides = Vec::new();
    for (name, repo) in config["models"].as_table().unwrap() {
        let Some(repo) = repo.as_table() else {
            continue;
        };
        let files: Vec<&str> = repo
            .get("files")
            .and_then(|f| f.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if repo.get("repo_id").and_then(|r| r.as_str()).unwrap_or("").is_empty() || files.is_empty() {
            continue;
        }
        let dir = source.join(name);
        for f in &files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("placeholder for {name}/{f}\n")).unwrap();
        }
        let key = name.to_uppercase();
        overrides.push((format!("DOCFLEET__MODELS__{key}__SOURCE__KIND"), "local".to_owned()));
        overrides.push((format!("DOCFLEET__MODELS__{key}__SOURCE__URL"), dir.display().to_string()));
    }
    assert!(!overrides.is_empty(), "no model repos configured for the downloader");
    overrides
}

/// A [`Fixture`] over the resources the `localstack` service creates (its default names).
async fn fixture_for(ls_env: &BTreeMap<String, String>, created: &Value, endpoint: &str) -> Fixture {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    Fixture {
        name: "compose".into(),
        queue: ls_env["DOCFLEET_QUEUE"].clone(),
        dlq: ls_env["DOCFLEET_DLQ"].clone(),
        queue_url: created["queue_url"].as_str().unwrap().to_owned(),
        dlq_url: created["dlq_url"].as_str().unwrap().to_owned(),
        input_bucket: ls_env["DOCFLEET_INPUT_BUCKET"].clone(),
        output_bucket: ls_env["DOCFLEET_OUTPUT_BUCKET"].clone(),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        s3,
        endpoint: endpoint.to_owned(),
    }
}
