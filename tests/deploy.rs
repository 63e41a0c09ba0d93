//! Policy checks of the deployment files, offline: every kustomization under `deploy/` rendered
//! with `kubectl kustomize`, `docker-compose.yml` and the Dockerfiles. Schema validation
//! (kubernetes-validate, KEDA schemas, compose spec, hadolint) is `scripts/validate_deploy.sh`,
//! which the first test runs.
//!
//! Needs `kubectl` (for kustomize) and the `docfleet` binary (`cargo build --workspace --bins`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use docfleet_tests::deploy::{
    compose_duration_seconds, compose_env, compose_file, compose_service, find, find_generated, kustomizations,
    map_selector_matches, of_kind, pod_template, render, scalar, selector_matches,
};
use docfleet_tests::{bin, repo_root, run_with_timeout, text};
use serde_json::Value;

/// One rendered kustomization and the docfleet configuration its ConfigMaps produce.
struct Rendering {
    name: String,
    objects: Vec<Value>,
    /// `docfleet config show` of the ConfigMap file + env, parsed.
    config: toml::Table,
}

fn renderings() -> &'static [Rendering] {
    static R: OnceLock<Vec<Rendering>> = OnceLock::new();
    R.get_or_init(|| {
        let all: Vec<Rendering> = kustomizations()
            .into_iter()
            .map(|(name, dir)| {
                let objects = render(&dir);
                let config = effective_config(&name, &objects).unwrap_or_else(|e| panic!("{name}: {e}"));
                Rendering { name, objects, config }
            })
            .collect();
        let names: BTreeSet<&str> = all.iter().map(|r| r.name.as_str()).collect();
        for expected in ["base", "overlays/kind", "overlays/gpu", "overlays/keda"] {
            assert!(names.contains(expected), "deploy/{expected} is missing (found {names:?})");
        }
        all
    })
}

/// Run docfleet's own loader on the ConfigMaps' content: `docfleet --config docfleet.toml config show`
/// with the `docfleet-env` ConfigMap as the environment, exactly what the pods get.
fn effective_config(name: &str, objects: &[Value]) -> Result<toml::Table, String> {
    let config_map = find_generated(objects, "ConfigMap", "docfleet-config");
    let file_text = config_map["data"]["docfleet.toml"].as_str().ok_or("docfleet-config has no docfleet.toml")?;
    let env_map = find_generated(objects, "ConfigMap", "docfleet-env");
    let env: BTreeMap<String, String> = env_map["data"]
        .as_object()
        .ok_or("docfleet-env has no data")?
        .iter()
        .map(|(k, v)| (k.clone(), scalar(v)))
        .collect();
    load_config(name, file_text, &env)
}

/// `docfleet config show` for a config file text and an environment; the effective configuration.
fn load_config(what: &str, file_text: &str, env: &BTreeMap<String, String>) -> Result<toml::Table, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docfleet.toml");
    std::fs::write(&file, file_text).unwrap();
    let mut cmd = Command::new(bin("docfleet"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(dir.path());
    cmd.envs(env).arg("--config").arg(&file).args(["config", "show"]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let (stdout, stderr) = text(&out);
    if !out.status.success() {
        return Err(format!("docfleet rejects the configuration of {what}: {stderr}"));
    }
    stdout.parse::<toml::Table>().map_err(|e| format!("config show output of {what} is not TOML: {e}\n{stdout}"))
}

fn config_value<'a>(config: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let mut v = config.get(parts.next().unwrap()).unwrap_or_else(|| panic!("no `{path}` in the configuration"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("no `{path}` in the configuration"));
    }
    v
}

fn config_int(config: &toml::Table, path: &str) -> i64 {
    config_value(config, path).as_integer().unwrap_or_else(|| panic!("`{path}` is not an integer"))
}

fn config_str<'a>(config: &'a toml::Table, path: &str) -> &'a str {
    config_value(config, path).as_str().unwrap_or_else(|| panic!("`{path}` is not a string"))
}

/// Every (workload, pod spec, container) of a rendering, init containers included.
fn containers(objects: &[Value]) -> Vec<(String, &Value, &Value)> {
    let mut out = Vec::new();
    for o in objects {
        if let Some(t) = pod_template(o) {
            let workload = format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
            let spec = &t["spec"];
            for key in ["initContainers", "containers"] {
                for c in spec[key].as_array().into_iter().flatten() {
                    out.push((format!("{workload} container {}", c["name"].as_str().unwrap()), spec, c));
                }
            }
        }
    }
    out
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name).and_then(|e| e["value"].as_str())
}

#[test]
fn validation_script_passes() {
    // Installs its validators on first use (PyPI), then renders and validates everything offline.
    let out = run_with_timeout(
        Command::new(repo_root().join("scripts/validate_deploy.sh")).current_dir(repo_root()),
        Duration::from_secs(600),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "scripts/validate_deploy.sh failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    let passed: usize = last.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(last.ends_with(" passed, 0 failed") && passed >= 20, "unexpected summary `{last}`:\n{stdout}");
    // Every rendered KEDA object was checked against a schema, not skipped.
    assert!(stdout.contains("ScaledObject/docfleet-worker (keda.sh/v1alpha1) against"), "{stdout}");
    assert!(stdout.contains("TriggerAuthentication/"), "{stdout}");
}

#[test]
fn every_container_is_non_root_read_only_and_bounded() {
    let mut checked = 0;
    for r in renderings() {
        for (what, pod, c) in containers(&r.objects) {
            let what = format!("{}: {what}", r.name);
            let (psc, csc) = (&pod["securityContext"], &c["securityContext"]);
            let non_root = csc["runAsNonRoot"].as_bool().or(psc["runAsNonRoot"].as_bool());
            assert_eq!(non_root, Some(true), "{what}: runAsNonRoot");
            let uid = csc["runAsUser"].as_i64().or(psc["runAsUser"].as_i64());
            assert!(uid.is_some_and(|u| u > 0), "{what}: runAsUser must be a fixed non-zero UID, got {uid:?}");
            assert_eq!(csc["readOnlyRootFilesystem"], true, "{what}: readOnlyRootFilesystem");
            assert_eq!(csc["allowPrivilegeEscalation"], false, "{what}: allowPrivilegeEscalation");
            let drops: Vec<&str> = csc["capabilities"]["drop"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(drops.contains(&"ALL"), "{what}: capabilities.drop must contain ALL");
            assert!(csc["privileged"] != true, "{what}: privileged");
            let res = &c["resources"];
            for key in ["requests.cpu", "requests.memory", "limits.memory"] {
                let (a, b) = key.split_once('.').unwrap();
                assert!(res[a][b].is_string() || res[a][b].is_number(), "{what}: resources.{key} is missing");
            }
            // A read-only root needs somewhere to write: /tmp is a volume.
            let mounts: Vec<&str> = c["volumeMounts"]
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["mountPath"].as_str()).collect())
                .unwrap_or_default();
            assert!(mounts.contains(&"/tmp") || c["name"] == "localstack", "{what}: no writable /tmp volume");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} containers found in the renderings");
}

#[test]
fn no_latest_or_untagged_image_anywhere() {
    fn tag_ok(image: &str) -> bool {
        let (name, tag) = match image.split_once('@') {
            Some((_, digest)) => return digest.starts_with("sha256:"),
            None => match image.rsplit_once(':') {
                Some((n, t)) if !t.contains('/') => (n, t),
                _ => return false,
            },
        };
        !name.is_empty() && !tag.is_empty() && tag != "latest"
    }
    assert!(!tag_ok("docfleet/worker") && !tag_ok("docfleet/worker:latest") && tag_ok("debian:13.1-slim"));
    let mut seen = 0;
    for r in renderings() {
        for (what, _, c) in containers(&r.objects) {
            let image = c["image"].as_str().unwrap_or_default();
            assert!(tag_ok(image), "{}: {what}: image `{image}` must carry a version tag other than latest", r.name);
            seen += 1;
        }
    }
    let compose = compose_file();
    let services = compose["services"].as_object().unwrap();
    for (name, svc) in services {
        // A service that `extends` another without its own image runs the other's.
        let mut from = svc;
        while from["image"].is_null() && from["extends"]["service"].is_string() {
            from = &services[from["extends"]["service"].as_str().unwrap()];
        }
        let image = from["image"].as_str().unwrap_or_default();
        assert!(tag_ok(image), "compose service {name}: image `{image}` must carry a version tag");
        seen += 1;
    }
    for file in ["Dockerfile", "localstack/Dockerfile"] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let stages: BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("FROM "))
            .filter_map(|l| l.split_whitespace().collect::<Vec<_>>().get(2).map(|s| s.to_string()))
            .collect();
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("FROM ")) {
            let image = line.split_whitespace().next().unwrap();
            assert!(stages.contains(image) || tag_ok(image), "{file}: base image `{image}` must be pinned by tag");
            seen += 1;
        }
    }
    assert!(seen >= 30, "only {seen} images checked");
}

#[test]
fn runtime_images_run_as_a_fixed_non_root_user() {
    // Follow each stage's parent: `FROM runtime AS worker` inherits runtime's USER.
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut user: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("FROM ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            current = words.get(2).expect("every stage is named").to_string();
            parent.insert(current.clone(), words[0].to_owned());
        } else if let Some(u) = line.strip_prefix("USER ") {
            user.insert(current.clone(), u.trim().to_owned());
        }
    }
    for target in ["worker", "worker-gpu", "downloader", "scaler", "cli"] {
        let mut stage = target.to_owned();
        let effective = loop {
            if let Some(u) = user.get(&stage) {
                break u.clone();
            }
            stage = parent.get(&stage).unwrap_or_else(|| panic!("Dockerfile target {target}: no USER")).clone();
        };
        let uid: u32 = effective
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{target}: USER `{effective}` is not numeric"));
        assert!(uid >= 1000, "Dockerfile target {target} runs as UID {uid}");
        assert_eq!(uid, 10001, "Dockerfile target {target}: the manifests' runAsUser is 10001");
    }
    let ls = std::fs::read_to_string(repo_root().join("localstack/Dockerfile")).unwrap();
    assert!(ls.lines().any(|l| l.trim() == "USER 10001:10001") && ls.contains("HEALTHCHECK"), "localstack/Dockerfile");
}

#[test]
fn worker_is_offline_with_read_only_models_and_drains_in_time() {
    for r in renderings() {
        let deployment = find(&r.objects, "Deployment", "docfleet-worker");
        let spec = &deployment["spec"]["template"]["spec"];
        let what = format!("{}: Deployment/docfleet-worker", r.name);
        let worker =
            spec["containers"].as_array().unwrap().iter().find(|c| c["name"] == "worker").expect("worker container");
        assert_eq!(env_value(worker, "HF_HUB_OFFLINE"), Some("1"), "{what}: HF_HUB_OFFLINE=1");
        assert_eq!(config_value(&r.config, "models.offline").as_bool(), Some(true), "{what}: models.offline");
        // The models volume is a PVC, mounted read-only everywhere in the pod.
        let models_claim = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["persistentVolumeClaim"]["claimName"] == "docfleet-models")
            .expect("models PVC volume");
        assert_eq!(models_claim["persistentVolumeClaim"]["readOnly"], true, "{what}: PVC volume readOnly");
        let vol = models_claim["name"].as_str().unwrap();
        let mut mounted_by = BTreeSet::new();
        for (c_what, _, c) in containers(std::slice::from_ref(deployment)) {
            for m in c["volumeMounts"].as_array().into_iter().flatten().filter(|m| m["name"] == vol) {
                assert_eq!(m["readOnly"], true, "{what}: {c_what} mounts the models read-write");
                mounted_by.insert(c["name"].as_str().unwrap().to_string());
            }
        }
        // The worker and the verify initContainer always; a model server sidecar (overlays/vllm) too.
        let mut expected: BTreeSet<String> = ["worker", "verify-models"].map(String::from).into();
        if spec["initContainers"].as_array().into_iter().flatten().any(|c| c["name"] == "vllm") {
            expected.insert("vllm".into());
        }
        assert_eq!(mounted_by, expected, "{what}: the containers that mount the models");
        // The model cache the worker reads is on that mount.
        let mount_path =
            worker["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == vol).unwrap()["mountPath"]
                .as_str()
                .unwrap();
        let cache = config_str(&r.config, "models.cache_dir");
        assert!(cache.starts_with(mount_path), "{what}: models.cache_dir {cache} is not under {mount_path}");
        // initContainer: the downloader's offline verify.
        let init = spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == "verify-models")
            .unwrap_or_else(|| panic!("{what}: no verify-models initContainer"));
        let args: Vec<&str> = init["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(init["image"].as_str().unwrap().contains("downloader") && args.contains(&"verify"), "{what}: {init}");
        assert_eq!(env_value(init, "HF_HUB_OFFLINE"), Some("1"), "{what}: verify runs offline");
        // Drain: grace period = worker.shutdown_grace_seconds + 5, from the effective configuration.
        let grace = config_int(&r.config, "worker.shutdown_grace_seconds");
        assert_eq!(spec["terminationGracePeriodSeconds"], grace + 5, "{what}: terminationGracePeriodSeconds");
        // Probes reach the worker's HTTP endpoints on the configured port, on all interfaces.
        let port = config_int(&r.config, "worker.http_port");
        assert_eq!(
            config_str(&r.config, "worker.http_host"),
            "0.0.0.0",
            "{what}: probes need worker.http_host 0.0.0.0"
        );
        let named_port = worker["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["containerPort"] == port)
            .expect("container port = worker.http_port");
        for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
            let get = &worker[probe]["httpGet"];
            assert_eq!(get["path"], path, "{what}: {probe}");
            assert!(get["port"] == named_port["name"] || get["port"] == port, "{what}: {probe} port");
        }
        // The profile the pods run is k8s and the credentials are optional Secret keys only.
        assert_eq!(config_str(&r.config, "log.format"), "json", "{what}: k8s profile");
        for e in worker["env"].as_array().unwrap() {
            if let Some(k) = e.get("valueFrom").and_then(|v| v.get("secretKeyRef")) {
                assert_eq!(k["optional"], true, "{what}: {} must be optional (IRSA needs no Secret)", e["name"]);
            }
        }
    }
}

#[test]
fn gpu_overlay_requests_gpus_with_the_cuda_image_and_irsa() {
    let r = renderings().iter().find(|r| r.name == "overlays/gpu").unwrap();
    let d = find(&r.objects, "Deployment", "docfleet-worker");
    let worker = &d["spec"]["template"]["spec"]["containers"][0];
    assert!(worker["image"].as_str().unwrap().starts_with("docfleet/worker-gpu:"), "{}", worker["image"]);
    assert_eq!(worker["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert!(d["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu");
    assert_eq!(config_str(&r.config, "runtime.execution_provider"), "cuda");
    assert_eq!(config_value(&r.config, "runtime.provider_fallback").as_bool(), Some(false));
    let sa = find(&r.objects, "ServiceAccount", "docfleet-worker");
    assert!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|a| a.starts_with("arn:aws:iam::"))
    );
    let pvc = find(&r.objects, "PersistentVolumeClaim", "docfleet-models");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany");
    assert!(pvc["spec"]["storageClassName"].is_string(), "gpu: RWX storage class");
    assert!(of_kind(&r.objects, "Secret").is_empty(), "gpu overlay uses IRSA, no Secret");
}

/// The metric the HPA asks for must be one the scaler serves: its name is defined in scaler/src and
/// its `queue` selector is the queue the workers consume.
#[test]
fn autoscaling_targets_the_worker_and_the_scalers_metric() {
    let scaler_sources = rust_sources(&repo_root().join("scaler/src"));
    assert!(!scaler_sources.is_empty(), "scaler/src is missing: the HPA's metric cannot be checked against the scaler");
    let mut hpas = 0;
    for r in renderings() {
        let queue = config_str(&r.config, "queue.name");
        let deployments: BTreeSet<&str> =
            of_kind(&r.objects, "Deployment").iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
        for hpa in of_kind(&r.objects, "HorizontalPodAutoscaler") {
            let what = format!("{}: HPA {}", r.name, hpa["metadata"]["name"]);
            let target = &hpa["spec"]["scaleTargetRef"];
            assert!(target["kind"] == "Deployment" && deployments.contains(target["name"].as_str().unwrap()), "{what}");
            let m = &hpa["spec"]["metrics"][0];
            assert_eq!(m["type"], "External", "{what}");
            let name = m["external"]["metric"]["name"].as_str().unwrap();
            let literal = format!("\"{name}\"");
            assert!(scaler_sources.contains(&literal), "{what}: scaler/src never names the metric {literal}");
            assert_eq!(m["external"]["metric"]["selector"]["matchLabels"]["queue"], queue, "{what}: selector");
            let behavior = &hpa["spec"]["behavior"];
            assert_eq!(behavior["scaleUp"]["stabilizationWindowSeconds"], 0, "{what}: scale up at once");
            assert!(
                behavior["scaleDown"]["stabilizationWindowSeconds"].as_i64().unwrap() >= 120,
                "{what}: stabilised scale-down"
            );
            // The HPA reads it through the APIService backed by the scaler's Service.
            let api = find(&r.objects, "APIService", "v1beta1.external.metrics.k8s.io");
            let svc = find(&r.objects, "Service", api["spec"]["service"]["name"].as_str().unwrap());
            assert!(
                svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == api["spec"]["service"]["port"]),
                "{what}"
            );
            hpas += 1;
        }
        for so in of_kind(&r.objects, "ScaledObject") {
            let what = format!("{}: ScaledObject {}", r.name, so["metadata"]["name"]);
            assert!(deployments.contains(so["spec"]["scaleTargetRef"]["name"].as_str().unwrap()), "{what}");
            assert!(
                of_kind(&r.objects, "HorizontalPodAutoscaler").is_empty(),
                "{what}: KEDA makes the HPA; ours must go"
            );
            assert!(of_kind(&r.objects, "APIService").is_empty(), "{what}: KEDA owns external.metrics.k8s.io");
            for t in so["spec"]["triggers"].as_array().unwrap() {
                match t["type"].as_str().unwrap() {
                    "external" => {
                        let addr = t["metadata"]["scalerAddress"].as_str().unwrap();
                        let (host, port) = addr.rsplit_once(':').unwrap();
                        let svc_name = host.split('.').next().unwrap();
                        let svc = find(&r.objects, "Service", svc_name);
                        let ns = svc["metadata"]["namespace"].as_str().unwrap();
                        assert!(host == svc_name || host.starts_with(&format!("{svc_name}.{ns}.")), "{what}: {addr}");
                        assert!(
                            svc["spec"]["ports"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|p| p["port"].as_u64().is_some_and(|n| port.parse() == Ok(n))),
                            "{what}: {addr}"
                        );
                        assert_eq!(t["metadata"]["queue"], queue, "{what}: queue");
                    }
                    "aws-sqs-queue" => {
                        let url = t["metadata"]["queueURL"].as_str().unwrap();
                        assert!(url.ends_with(&format!("/{queue}")), "{what}: {url}");
                        let auth = t["authenticationRef"]["name"].as_str().unwrap();
                        find(&r.objects, "TriggerAuthentication", auth);
                    }
                    other => panic!("{what}: unexpected trigger {other}"),
                }
            }
            hpas += 1;
        }
    }
    assert!(hpas >= 5, "only {hpas} autoscalers found");
}

fn rust_sources(dir: &std::path::Path) -> String {
    let mut all = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return all };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            all.push_str(&rust_sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            all.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    all
}

#[test]
fn network_policies_and_selectors_select_existing_pods() {
    let mut policies = 0;
    for r in renderings() {
        let pods: Vec<(&str, &Value)> = r
            .objects
            .iter()
            .filter_map(|o| {
                pod_template(o).map(|t| (o["metadata"]["namespace"].as_str().unwrap_or(""), &t["metadata"]["labels"]))
            })
            .collect();
        let selects =
            |ns: &str, sel: &Value| pods.iter().any(|(pns, labels)| *pns == ns && selector_matches(sel, labels));
        for np in of_kind(&r.objects, "NetworkPolicy") {
            let what = format!("{}: NetworkPolicy {}", r.name, np["metadata"]["name"]);
            let ns = np["metadata"]["namespace"].as_str().unwrap();
            assert!(selects(ns, &np["spec"]["podSelector"]), "{what}: its podSelector selects no pod");
            for dir in ["ingress", "egress"] {
                for rule in np["spec"][dir].as_array().into_iter().flatten() {
                    for peer in rule["from"].as_array().into_iter().chain(rule["to"].as_array()).flatten() {
                        if peer.get("podSelector").is_some() && peer.get("namespaceSelector").is_none() {
                            assert!(selects(ns, &peer["podSelector"]), "{what}: {dir} peer {peer} selects no pod");
                        }
                    }
                }
            }
            policies += 1;
        }
        for svc in of_kind(&r.objects, "Service") {
            let ns = svc["metadata"]["namespace"].as_str().unwrap();
            let ok =
                pods.iter().any(|(pns, labels)| *pns == ns && map_selector_matches(&svc["spec"]["selector"], labels));
            assert!(ok, "{}: Service {} selects no pod", r.name, svc["metadata"]["name"]);
        }
        for pdb in of_kind(&r.objects, "PodDisruptionBudget") {
            let ns = pdb["metadata"]["namespace"].as_str().unwrap();
            assert!(
                selects(ns, &pdb["spec"]["selector"]),
                "{}: PDB {} selects no pod",
                r.name,
                pdb["metadata"]["name"]
            );
        }
        // Default deny is in place, so everything else above is an explicit allowance.
        let deny = find(&r.objects, "NetworkPolicy", "default-deny-all");
        assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
        assert_eq!(deny["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    }
    assert!(policies >= 25, "only {policies} NetworkPolicies found");
    // The matcher itself: a selector for a label no pod has selects nothing.
    let labels = serde_json::json!({"app.kubernetes.io/name": "docfleet-worker"});
    assert!(!selector_matches(&serde_json::json!({"matchLabels": {"app.kubernetes.io/name": "nope"}}), &labels));
}

#[test]
fn config_maps_are_valid_docfleet_configuration() {
    for r in renderings() {
        // renderings() already loaded each with docfleet's loader; check what it produced.
        assert_eq!(config_str(&r.config, "queue.backend"), "sqs", "{}", r.name);
        assert_eq!(config_str(&r.config, "store.backend"), "s3", "{}", r.name);
    }
    let kind = renderings().iter().find(|r| r.name == "overlays/kind").unwrap();
    assert!(
        config_str(&kind.config, "aws.endpoint_url").starts_with("http://localstack."),
        "kind: endpoint is in-cluster LocalStack"
    );
    // The same loader rejects a misspelt key, so the check above can fail.
    let err = load_config(
        "a misspelt ConfigMap",
        "[worker]\nconcurency = 3\n",
        &BTreeMap::from([("DOCFLEET_PROFILE".into(), "k8s".into())]),
    )
    .unwrap_err();
    assert!(err.contains("worker.concurency"), "{err}");
}

#[test]
fn manifests_carry_no_secrets() {
    for r in renderings() {
        for s in of_kind(&r.objects, "Secret") {
            assert_eq!(r.name, "overlays/kind", "only the kind overlay has a Secret (LocalStack's dummy credentials)");
            for (k, v) in s["data"].as_object().unwrap() {
                // base64("test"): LocalStack's documented dummy value.
                assert_eq!(v, "dGVzdA==", "{}: Secret key {k} holds something other than LocalStack's dummy", r.name);
            }
        }
    }
    let example: Value = docfleet_tests::deploy::parse_yaml(
        &std::fs::read_to_string(repo_root().join("deploy/base/secret.example.yaml")).unwrap(),
    );
    for (k, v) in example["stringData"].as_object().unwrap() {
        assert_eq!(v, "", "secret.example.yaml: {k} must stay an empty placeholder");
    }
}

#[test]
fn compose_file_wires_the_services_as_documented() {
    let compose = compose_file();
    let services = compose["services"].as_object().unwrap();
    for name in ["localstack", "model-downloader", "worker", "worker-gpu", "scaler", "cli"] {
        assert!(services.contains_key(name), "docker-compose.yml: service {name} missing");
    }
    // Published ports listen on loopback only.
    for (name, svc) in services {
        for p in svc["ports"].as_array().into_iter().flatten() {
            let p = scalar(p);
            assert!(p.starts_with("127.0.0.1:"), "service {name}: port {p} is not bound to 127.0.0.1");
        }
    }
    let ls = compose_service(&compose, "localstack");
    assert!(ls["healthcheck"]["test"].is_array() && ls["build"]["dockerfile"] == "localstack/Dockerfile");
    let worker = compose_service(&compose, "worker");
    assert_eq!(worker["depends_on"]["localstack"]["condition"], "service_healthy");
    assert_eq!(worker["depends_on"]["model-downloader"]["condition"], "service_completed_successfully");
    let env = compose_env(worker);
    assert_eq!(env.get("HF_HUB_OFFLINE").map(String::as_str), Some("1"));
    assert_eq!(env.get("DOCFLEET_PROFILE").map(String::as_str), Some("aws-mock"));
    let models = worker["volumes"].as_array().unwrap().iter().find(|v| v["source"] == "models").expect("models volume");
    assert_eq!(models["read_only"], true, "worker mounts the models read-only");
    let downloader = compose_service(&compose, "model-downloader");
    assert!(downloader["volumes"].as_array().unwrap().iter().any(|v| scalar(v) == "models:/models"));
    assert_eq!(downloader["restart"], "no", "the downloader is one-shot");
    // Drain: Docker's SIGKILL comes after the worker's grace period.
    let effective = load_config("compose worker", "", &env).unwrap();
    let grace = config_int(&effective, "worker.shutdown_grace_seconds") as u64;
    let stop = compose_duration_seconds(worker["stop_grace_period"].as_str().unwrap());
    assert!(stop > grace, "stop_grace_period {stop}s must exceed worker.shutdown_grace_seconds {grace}s");
    assert!(worker.get("ports").is_none(), "worker publishes no fixed host port, so --scale works");
    // Every docfleet service: aws-mock against the localstack service, hardened, and a
    // configuration docfleet's loader accepts.
    for name in ["model-downloader", "worker", "worker-gpu", "scaler", "cli"] {
        let svc = compose_service(&compose, name);
        let mut env = compose_env(svc);
        if name == "worker-gpu" {
            // `extends: worker`: compose merges the worker's environment under its own.
            assert_eq!(svc["extends"]["service"], "worker");
            let mut merged = compose_env(worker);
            merged.extend(env);
            env = merged;
            assert_eq!(svc["profiles"][0], "gpu");
            let dev = &svc["deploy"]["resources"]["reservations"]["devices"][0];
            assert!(dev["driver"] == "nvidia" && dev["capabilities"][0] == "gpu", "worker-gpu reserves NVIDIA GPUs");
        } else {
            assert_eq!(svc["read_only"], true, "{name}: read_only");
            assert_eq!(svc["cap_drop"][0], "ALL", "{name}: cap_drop");
            assert!(scalar(&svc["user"]).contains("10001"), "{name}: non-root user");
        }
        let endpoint = env.get("DOCFLEET__AWS__ENDPOINT_URL").unwrap_or_else(|| panic!("{name}: no endpoint"));
        assert_eq!(endpoint, "http://localstack:4566", "{name}: endpoint must be the localstack service");
        assert_eq!(env.get("DOCFLEET_PROFILE").map(String::as_str), Some("aws-mock"), "{name}");
        let loaded = load_config(&format!("compose service {name}"), "", &env).unwrap();
        assert_eq!(config_str(&loaded, "queue.backend"), "sqs");
        // The queue LocalStack creates is the one the services use.
        assert_eq!(compose_env(ls)["DOCFLEET_QUEUE"], config_str(&loaded, "queue.name"), "{name}: queue name");
        assert_eq!(compose_env(ls)["DOCFLEET_INPUT_BUCKET"], config_str(&loaded, "store.input_bucket"), "{name}");
        assert_eq!(compose_env(ls)["DOCFLEET_OUTPUT_BUCKET"], config_str(&loaded, "store.output_bucket"), "{name}");
    }
    assert!(compose["volumes"].get("models").is_some(), "named volume models");
}

/// Alert rules name the queues and the Deployment this rendering actually has (the metric names
/// themselves are checked against live /metrics output in tests/compose.rs).
#[test]
fn alerts_name_the_deployed_queues_and_workers() {
    let mut rules = 0;
    for r in renderings() {
        let queues = [config_str(&r.config, "queue.name"), config_str(&r.config, "queue.dlq_name")];
        for pr in of_kind(&r.objects, "PrometheusRule") {
            let ns = pr["metadata"]["namespace"].as_str().unwrap();
            for group in pr["spec"]["groups"].as_array().unwrap() {
                for rule in group["rules"].as_array().unwrap() {
                    let expr = rule["expr"].as_str().unwrap();
                    let what = format!("{}: alert {}", r.name, rule["alert"]);
                    for (label, value) in label_matchers(expr) {
                        match label.as_str() {
                            "queue" => {
                                assert!(queues.contains(&value.as_str()), "{what}: queue `{value}` is not configured")
                            }
                            "namespace" => assert_eq!(value, ns, "{what}"),
                            "deployment" => {
                                find(&r.objects, "Deployment", &value);
                            }
                            _ => {}
                        }
                    }
                    assert!(
                        rule["labels"]["severity"].is_string() && rule["annotations"]["summary"].is_string(),
                        "{what}"
                    );
                    rules += 1;
                }
            }
        }
        for pm in of_kind(&r.objects, "PodMonitor") {
            let ns = pm["metadata"]["namespace"].as_str().unwrap();
            let port = pm["spec"]["podMetricsEndpoints"][0]["port"].as_str().unwrap();
            // A selected pod exposes the named port.
            let ok = r.objects.iter().any(|o| {
                pod_template(o).is_some_and(|t| {
                    o["metadata"]["namespace"] == ns
                        && selector_matches(&pm["spec"]["selector"], &t["metadata"]["labels"])
                        && containers(std::slice::from_ref(o)).iter().any(|(_, _, c)| {
                            c["ports"].as_array().is_some_and(|ps| ps.iter().any(|p| p["name"] == port))
                        })
                })
            });
            assert!(ok, "{}: PodMonitor {} selects no pod with port {port}", r.name, pm["metadata"]["name"]);
        }
        for sm in of_kind(&r.objects, "ServiceMonitor") {
            let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
            let ok = of_kind(&r.objects, "Service").iter().any(|s| {
                selector_matches(&sm["spec"]["selector"], &s["metadata"]["labels"])
                    && s["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port)
            });
            assert!(ok, "{}: ServiceMonitor {} selects no Service with port {port}", r.name, sm["metadata"]["name"]);
        }
    }
    assert!(rules >= 4, "only {rules} alert rules found");
}

/// `label="value"` matchers of a PromQL expression.
fn label_matchers(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in expr.split('{').skip(1) {
        let inner = block.split('}').next().unwrap_or_default();
        for m in inner.split(',') {
            if let Some((k, v)) = m.split_once('=') {
                let k = k.trim().trim_end_matches(['!', '~']);
                let v = v.trim().trim_start_matches('~').trim_matches('"');
                out.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    out
}

/// `--help` of a docfleet binary (optionally of a subcommand).
fn help(binary: &str, subcommand: Option<&str>) -> String {
    let mut cmd = Command::new(bin(binary));
    cmd.args(subcommand).arg("--help");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{binary} {subcommand:?} --help failed: {stderr}");
    stdout
}

/// The binary an image runs, by image name.
fn binary_of(image: &str) -> Option<&'static str> {
    let name = image.rsplit_once(':').map_or(image, |(n, _)| n);
    match name.rsplit('/').next()? {
        "worker" | "worker-gpu" => Some("docfleet-worker"),
        "downloader" => Some("docfleet-downloader"),
        "scaler" => Some("docfleet-scaler"),
        "cli" => Some("docfleet"),
        _ => None,
    }
}

/// Every argument the manifests and the compose file pass to a docfleet binary is one it accepts:
/// each `--flag` appears in its `--help` (or its subcommand's), each subcommand in its command list.
#[test]
fn manifest_and_compose_arguments_are_accepted_by_the_binaries() {
    let mut invocations: Vec<(String, &'static str, Vec<String>)> = Vec::new();
    for r in renderings() {
        for (what, _, c) in containers(&r.objects) {
            if let Some(binary) = c["image"].as_str().and_then(binary_of) {
                let args = c["args"].as_array().into_iter().flatten().map(scalar).collect();
                invocations.push((format!("{}: {what}", r.name), binary, args));
            }
        }
    }
    let compose = compose_file();
    for (name, svc) in compose["services"].as_object().unwrap() {
        if let Some(binary) = svc["image"].as_str().and_then(binary_of) {
            invocations.push((format!("compose service {name}"), binary, docfleet_tests::deploy::compose_command(svc)));
        }
    }
    let mut flags = 0;
    for (what, binary, args) in &invocations {
        let top = help(binary, None);
        // The first bare word, if any, is a subcommand; its flags are in its own help.
        let sub = args.iter().find(|a| !a.starts_with('-') && !a.starts_with('/')).cloned();
        let sub_help = sub.as_deref().map(|s| {
            assert!(
                top.lines().any(|l| l.trim_start().starts_with(&format!("{s} "))),
                "{what}: {binary} has no subcommand `{s}`:\n{top}"
            );
            help(binary, Some(s))
        });
        for a in args.iter().filter(|a| a.starts_with("--")) {
            let flag = a.split('=').next().unwrap();
            let known = |h: &str| h.split(|c: char| c.is_whitespace() || c == ',').any(|w| w == flag);
            assert!(known(&top) || sub_help.as_deref().is_some_and(known), "{what}: {binary} does not accept {flag}");
            flags += 1;
        }
    }
    assert!(flags >= 10, "only {flags} flags checked in {} invocations", invocations.len());
}

/// The scaler listens where its Service, probes and the compose port mappings point.
#[test]
fn scaler_listens_where_its_service_and_ports_point() {
    fn listen_ports(args: &[String]) -> BTreeMap<String, u16> {
        args.iter()
            .filter_map(|a| {
                let (flag, addr) = a.split_once('=')?;
                let port = addr.rsplit_once(':')?.1.parse().ok()?;
                flag.ends_with("-listen").then(|| (flag.to_owned(), port))
            })
            .collect()
    }
    for r in renderings() {
        let d = find(&r.objects, "Deployment", "docfleet-scaler");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<String> = c["args"].as_array().unwrap().iter().map(scalar).collect();
        let listen = listen_ports(&args);
        assert_eq!(listen.len(), 3, "{}: scaler listen flags {args:?}", r.name);
        let ports = c["ports"].as_array().unwrap();
        for (name, flag) in
            [("https", "--https-listen"), ("grpc", "--grpc-listen"), ("http-metrics", "--metrics-listen")]
        {
            let p = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{}: no port {name}", r.name));
            assert_eq!(p["containerPort"], listen[flag], "{}: {name} port vs {flag}", r.name);
        }
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
        let svc = find(&r.objects, "Service", "docfleet-scaler");
        for sp in svc["spec"]["ports"].as_array().unwrap() {
            assert!(
                ports.iter().any(|p| p["name"] == sp["targetPort"]),
                "{}: Service port {sp} has no container port",
                r.name
            );
        }
    }
    let compose = compose_file();
    let scaler = compose_service(&compose, "scaler");
    let listen = listen_ports(&docfleet_tests::deploy::compose_command(scaler));
    assert_eq!(listen.len(), 3, "compose scaler listen flags");
    for mapping in scaler["ports"].as_array().unwrap().iter().map(scalar) {
        let container: u16 = mapping.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            listen.values().any(|p| *p == container),
            "compose scaler publishes {mapping}, which it does not listen on"
        );
    }
}

/// The `docfleet_*` series names a PromQL expression selects, from its parse tree
/// (promql-parser); a syntax error fails the test naming the expression.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    use promql_parser::parser::Expr;
    fn walk(e: &Expr, out: &mut BTreeSet<String>) {
        match e {
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::VectorSelector(vs) => out.extend(vs.name.clone()),
            Expr::MatrixSelector(ms) => out.extend(ms.vs.name.clone()),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let tree = promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("PromQL does not parse: {expr}\n{e}"));
    let mut names = BTreeSet::new();
    walk(&tree, &mut names);
    names.retain(|n| n.starts_with("docfleet_"));
    names
}

/// Series names the running binaries can export, from the `# TYPE` lines of their `/metrics`
/// (prometheus-client writes every registered metric's TYPE, series or not): a gauge by its name,
/// a counter as `<name>_total`, a histogram as `_bucket`, `_sum`, `_count`.
fn exported_series(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// `/metrics` of a real docfleet-worker and docfleet-scaler on the local-dev profile (embedded
/// queue, no services), started in a scratch directory and stopped again: the worker once ready
/// (its label sets declared), the scaler once it has scraped the worker and computed backlog
/// seconds (those series exist only then).
fn live_exposition() -> String {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, scaler_port) = (docfleet_tests::free_port(), docfleet_tests::free_port());
    let base = |binary: &str| {
        let mut cmd = Command::new(bin(binary));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOCFLEET_PROFILE", "local-dev")
            .env("DOCFLEET__OCR__ENABLED", "false")
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let mut worker = base("docfleet-worker");
    worker.env("DOCFLEET__WORKER__HTTP_PORT", worker_port.to_string());
    let mut scaler = base("docfleet-scaler");
    scaler.args([
        format!("--https-listen=127.0.0.1:{}", docfleet_tests::free_port()),
        format!("--grpc-listen=127.0.0.1:{}", docfleet_tests::free_port()),
        format!("--metrics-listen=127.0.0.1:{scaler_port}"),
    ]);
    scaler
        .env("DOCFLEET__SCALER__BACKLOG_SECONDS", "true")
        .env("DOCFLEET__SCALER__WORKER_METRICS_URLS", format!("http://127.0.0.1:{worker_port}/metrics"))
        .env("DOCFLEET__SCALER__WORKER_SCRAPE_INTERVAL_MS", "200");
    let _worker = docfleet_tests::ChildGuard(worker.spawn().expect("start docfleet-worker"));
    let _scaler = docfleet_tests::ChildGuard(scaler.spawn().expect("start docfleet-scaler"));
    let wait = |what: &str, port: u16, path: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = docfleet_tests::http_get(port, path).filter(|r| r.contains(" 200 ") && done(r)) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: no answer to {path} on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("docfleet-worker", worker_port, "/ready", &|_| true);
    wait("docfleet-scaler", scaler_port, "/api/v1/queues/docfleet-jobs", &|r| r.contains("\"backlogSeconds\""));
    let mut text = String::new();
    for (what, port) in [("docfleet-worker", worker_port), ("docfleet-scaler", scaler_port)] {
        let body = wait(what, port, "/metrics", &|_| true);
        assert!(body.contains("# TYPE docfleet_"), "{what}: {body}");
        text.push_str(&body);
    }
    text
}

/// The Grafana dashboard (deploy/components/monitoring): a ConfigMap the Grafana sidecar loads,
/// a well-formed dashboard whose every query parses as PromQL and selects only series the
/// binaries export, covering what an operator looks at first. The alert rules' queries are held
/// to the same test.
#[test]
fn grafana_dashboard_queries_parse_and_name_only_exported_metrics() {
    let exported = exported_series(&live_exposition());
    for must in ["docfleet_jobs_total", "docfleet_scaler_queue_depth", "docfleet_job_duration_seconds_bucket"] {
        assert!(exported.contains(must), "{must} not among the exported series: {exported:?}");
    }
    let mut dashboards = 0;
    for r in renderings() {
        let queues = [config_str(&r.config, "queue.name"), config_str(&r.config, "queue.dlq_name")];
        for cm in of_kind(&r.objects, "ConfigMap") {
            if cm["metadata"]["labels"]["grafana_dashboard"] != "1" {
                continue;
            }
            dashboards += 1;
            let what = format!("{}: ConfigMap {}", r.name, cm["metadata"]["name"]);
            let json = cm["data"]["docfleet.json"].as_str().unwrap_or_else(|| panic!("{what}: no docfleet.json"));
            let dash: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(dash["uid"].is_string() && dash["title"].is_string(), "{what}: uid and title");
            let vars: BTreeSet<&str> =
                dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
            assert!(vars.is_superset(&BTreeSet::from(["datasource", "queue", "dlq"])), "{what}: variables {vars:?}");
            // The queue variables default to this rendering's queues.
            for (var, queue) in [("queue", &queues[0]), ("dlq", &queues[1])] {
                let v = dash["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == var).unwrap();
                assert_eq!(v["current"]["value"], *queue, "{what}: ${var} default");
            }
            let mut ids = BTreeSet::new();
            let mut used = BTreeSet::new();
            let mut exprs = Vec::new();
            for p in dash["panels"].as_array().unwrap() {
                let id = p["id"].as_u64().unwrap();
                assert!(ids.insert(id), "{what}: panel id {id} twice");
                let g = &p["gridPos"];
                assert!(
                    g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                    "{what}: panel {id} wider than the grid"
                );
                if p["type"] == "row" {
                    continue;
                }
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{what}: panel {id} datasource");
                let targets = p["targets"].as_array().unwrap();
                assert!(!targets.is_empty(), "{what}: panel {} has no query", p["title"]);
                for t in targets {
                    let expr = t["expr"].as_str().unwrap();
                    for var in ["$queue", "$dlq", "$__rate_interval"] {
                        used.extend(expr.contains(var).then_some(var));
                    }
                    exprs.push(expr.to_owned());
                }
            }
            assert!(used.contains("$queue") && used.contains("$dlq"), "{what}: the queue variables are used");
            let mut names = BTreeSet::new();
            for expr in &exprs {
                // Grafana's variables, as Grafana substitutes them before sending the query.
                let concrete =
                    expr.replace("$__rate_interval", "1m").replace("$queue", queues[0]).replace("$dlq", queues[1]);
                for name in promql_metric_names(&concrete) {
                    assert!(exported.contains(&name), "{what}: `{expr}` selects {name}, which no binary exports");
                    names.insert(name);
                }
            }
            // What the dashboard is for: backlog, throughput by outcome, latency, stages, DLQ, workers.
            for must in [
                "docfleet_scaler_queue_depth",
                "docfleet_scaler_backlog_seconds",
                "docfleet_jobs_total",
                "docfleet_job_duration_seconds_bucket",
                "docfleet_stage_duration_seconds_bucket",
                "docfleet_dead_lettered_total",
                "docfleet_worker_busy",
            ] {
                assert!(names.contains(must), "{what}: no panel reads {must}");
            }
            for q in ["histogram_quantile(0.5,", "histogram_quantile(0.95,", "by (pipeline, outcome)"] {
                assert!(exprs.iter().any(|e| e.contains(q)), "{what}: no query with {q}");
            }
        }
        for pr in of_kind(&r.objects, "PrometheusRule") {
            for group in pr["spec"]["groups"].as_array().unwrap() {
                for rule in group["rules"].as_array().unwrap() {
                    for name in promql_metric_names(rule["expr"].as_str().unwrap()) {
                        assert!(
                            exported.contains(&name),
                            "{}: alert {} selects {name}, which no binary exports",
                            r.name,
                            rule["alert"]
                        );
                    }
                }
            }
        }
    }
    assert!(dashboards >= 1, "no rendering carries the dashboard");
}
