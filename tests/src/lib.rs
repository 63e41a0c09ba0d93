//! Test harness for black-box tests of the built binaries.
//!
//! - [`bin`] finds `docfleet` / `docfleet-worker` in the target directory (build them first:
//!   `scripts/test.sh` does).
//! - [`localstack`] starts one LocalStack per test binary on 127.0.0.1 and a free port, and stops it
//!   when the process exits (an `atexit` hook, plus a watchdog process in case the test process is
//!   killed). Its Python comes from `localstack/install.sh`.
//! - [`Fixture`] gives each test its own queue, DLQ and buckets, created by the same
//!   `localstack/init_resources.py` that compose uses.

pub mod deploy;
pub mod fakehub;
pub mod outage;
pub mod scaler_sim;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// Path of a workspace binary built in the same profile as this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests run from target/<profile>/deps/, other binaries (docfleet-bench) from target/<profile>/.
    let mut dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which scripts/test.sh runs)",
        path.display()
    );
    path
}

/// Run a command to completion with a time limit, capturing output.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).ok();
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        stderr.read_to_end(&mut b).ok();
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
            panic!("{cmd:?} did not finish within {limit:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// Output as text, for assertions and failure messages.
pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Assert success and return stdout.
pub fn ok(out: Output) -> String {
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "command failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().unwrap().port()
}

/// A running LocalStack.
pub struct LocalStack {
    pub endpoint: String,
    pub python: PathBuf,
    pub log: PathBuf,
}

static LOCALSTACK: OnceLock<LocalStack> = OnceLock::new();
static LOCALSTACK_PGID: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_localstack() {
    let pgid = LOCALSTACK_PGID.load(Ordering::SeqCst);
    if pgid > 0 {
        // SAFETY: sending a signal to a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
    }
}

/// The LocalStack of this test process, started on first use.
pub fn localstack() -> &'static LocalStack {
    LOCALSTACK.get_or_init(start_localstack)
}

fn localstack_python() -> PathBuf {
    if let Ok(p) = std::env::var("DOCFLEET_LOCALSTACK_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new(repo_root().join("localstack/install.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run localstack/install.sh");
    assert!(out.status.success(), "localstack/install.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn start_localstack() -> LocalStack {
    let python = localstack_python();
    let port = free_port();
    let workdir = tempfile::Builder::new().prefix("docfleet-localstack-").tempdir().unwrap().keep();
    let log = workdir.join("localstack.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "localstack.runtime.main"])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
        .env("SERVICES", "sqs,s3")
        .env("EAGER_SERVICE_LOADING", "1")
        .env("DISABLE_EVENTS", "1")
        .env("SKIP_SSL_CERT_DOWNLOAD", "1")
        .env("SQS_ENDPOINT_STRATEGY", "path")
        .env("DNS_ADDRESS", "0")
        .env("TMPDIR", &workdir)
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().expect("start LocalStack");
    let pgid = child.id() as i32;
    LOCALSTACK_PGID.store(pgid, Ordering::SeqCst);
    // SAFETY: registering a plain extern "C" function.
    unsafe {
        libc::atexit(stop_localstack);
    }
    // Watchdog: if this process dies without running atexit (SIGKILL), stop LocalStack anyway.
    let me = std::process::id();
    let mut watchdog = Command::new("sh");
    watchdog
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -TERM -{pgid} 2>/dev/null; sleep 5; kill -KILL -{pgid} 2>/dev/null"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
    // It outlives this process on purpose (it waits for it to die): never waited on here.
    std::mem::forget(watchdog.spawn().expect("start watchdog"));
    std::mem::forget(child);

    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(body) = http_get(port, "/_localstack/health")
            && body.contains("\"sqs\": \"running\"")
            && body.contains("\"s3\": \"running\"")
        {
            break;
        }
        if Instant::now() >= deadline {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("LocalStack did not become ready on {endpoint}; log:\n{log_text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("LocalStack ready on {endpoint} (log: {})", log.display());
    LocalStack { endpoint, python, log }
}

/// A plain HTTP/1.0 GET on 127.0.0.1; the whole response (status line, headers, body).
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // Generous: an endpoint may wait out an upstream timeout (the scaler's SQS read) before answering.
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// One test's queue, DLQ and buckets on the shared LocalStack.
pub struct Fixture {
    pub name: String,
    pub queue: String,
    pub dlq: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub input_bucket: String,
    pub output_bucket: String,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub endpoint: String,
}

impl Fixture {
    /// Fresh resources named after the test, with `max_receive_count` and a visibility timeout.
    pub async fn new(test: &str, max_receive_count: u32, visibility_timeout: u32) -> Self {
        let ls = localstack();
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{}-{id}", test.replace('_', "-"));
        let (queue, dlq) = (format!("{name}-jobs"), format!("{name}-dlq"));
        let (input_bucket, output_bucket) = (format!("{name}-in"), format!("{name}-out"));
        let out = run_with_timeout(
            Command::new(&ls.python)
                .arg(repo_root().join("localstack/init_resources.py"))
                .args(["--endpoint", &ls.endpoint, "--queue", &queue, "--dlq", &dlq])
                .args(["--input-bucket", &input_bucket, "--output-bucket", &output_bucket])
                .args(["--max-receive-count", &max_receive_count.to_string()])
                .args(["--visibility-timeout", &visibility_timeout.to_string()]),
            Duration::from_secs(60),
        );
        let created: serde_json::Value = serde_json::from_str(&ok(out)).expect("init_resources prints JSON");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&ls.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        Self {
            name,
            queue,
            dlq,
            queue_url: created["queue_url"].as_str().unwrap().to_owned(),
            dlq_url: created["dlq_url"].as_str().unwrap().to_owned(),
            input_bucket,
            output_bucket,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            s3,
            endpoint: ls.endpoint.clone(),
        }
    }

    /// A command for a docfleet binary on the aws-mock profile pointed at this fixture.
    pub fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(bin(binary));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOCFLEET_PROFILE", "aws-mock")
            .env("RUST_LOG", "info")
            .env("DOCFLEET__AWS__ENDPOINT_URL", &self.endpoint)
            .env("DOCFLEET__QUEUE__NAME", &self.queue)
            .env("DOCFLEET__QUEUE__DLQ_NAME", &self.dlq)
            .env("DOCFLEET__STORE__INPUT_BUCKET", &self.input_bucket)
            .env("DOCFLEET__STORE__OUTPUT_BUCKET", &self.output_bucket)
            .env("DOCFLEET__WORKER__RECEIVE_WAIT_SECONDS", "1")
            // Each process gets its own /metrics port so tests can run side by side.
            .env("DOCFLEET__WORKER__HTTP_PORT", free_port().to_string())
            .stdin(Stdio::null());
        cmd
    }

    /// Every key under `prefix` in the output bucket, following pagination.
    pub async fn output_keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(&self.output_bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            keys.extend(page.unwrap().contents.unwrap_or_default().into_iter().filter_map(|o| o.key));
        }
        keys
    }

    /// The `inspect` result keys of documents enqueued from `files` under `documents/batch/`
    /// (as the CLI's `enqueue` names them), one per file in its order; asserts there is exactly one
    /// result per file and no other.
    pub async fn one_inspect_result_per_file(&self, files: &[PathBuf]) -> Vec<String> {
        let keys = self.output_keys("results/").await;
        assert_eq!(keys.len(), files.len(), "one result per document: {keys:?}");
        files
            .iter()
            .map(|file| {
                let name = file.file_name().unwrap().to_string_lossy();
                let key = format!("results/inspect/{}/documents/batch/{name}.json", self.input_bucket);
                assert!(keys.contains(&key), "missing {key}");
                key
            })
            .collect()
    }

    /// An output object parsed as JSON.
    pub async fn output_json(&self, key: &str) -> serde_json::Value {
        let obj = self.s3.get_object().bucket(&self.output_bucket).key(key).send().await.unwrap();
        serde_json::from_slice(&obj.body.collect().await.unwrap().into_bytes()).unwrap()
    }

    /// (visible, in flight, delayed) of a queue URL.
    pub async fn depth(&self, url: &str) -> (u64, u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        let a = out.attributes.unwrap_or_default();
        let g = |k: A| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            g(A::ApproximateNumberOfMessages),
            g(A::ApproximateNumberOfMessagesNotVisible),
            g(A::ApproximateNumberOfMessagesDelayed),
        )
    }

    /// Send raw message bodies to the job queue.
    pub async fn send_raw(&self, bodies: &[&str]) {
        for body in bodies {
            self.sqs.send_message().queue_url(&self.queue_url).message_body(*body).send().await.unwrap();
        }
    }

    /// Upload an object to the input bucket.
    pub async fn put_input(&self, key: &str, body: Vec<u8>) {
        self.s3.put_object().bucket(&self.input_bucket).key(key).body(body.into()).send().await.unwrap();
    }

    /// Run `docfleet-worker --exit-when-empty` to completion and return its stderr.
    pub fn drain_with_worker(&self) -> String {
        let out = run_with_timeout(self.command("docfleet-worker").arg("--exit-when-empty"), Duration::from_secs(120));
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "worker failed:\n{stderr}");
        stderr
    }
}

/// Copy the repository's sample documents into `dir` under `copies` distinct names each.
pub fn sample_documents(dir: &Path, copies: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut samples: Vec<PathBuf> = std::fs::read_dir(repo_root().join("samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    samples.sort();
    for i in 0..copies {
        for s in &samples {
            let name = format!("c{i}-{}", s.file_name().unwrap().to_string_lossy());
            let dest = dir.join(name);
            std::fs::copy(s, &dest).unwrap();
            out.push(dest);
        }
    }
    out
}

/// Python of the venv with `huggingface_hub` (pinned in scripts/setup/hfhub-requirements.txt):
/// `DOCFLEET_HFHUB_PYTHON`, else what `scripts/setup/hfhub.sh` installs (or reuses).
pub fn hfhub_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("DOCFLEET_HFHUB_PYTHON").filter(|p| !p.is_empty()) {
                return PathBuf::from(p);
            }
            let out = Command::new(repo_root().join("scripts/setup/hfhub.sh"))
                .stderr(Stdio::inherit())
                .output()
                .expect("run scripts/setup/hfhub.sh");
            assert!(out.status.success(), "scripts/setup/hfhub.sh failed");
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}
