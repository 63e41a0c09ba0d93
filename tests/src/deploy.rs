//! Reading the deployment files for tests: the kustomize renderings of `deploy/` and
//! `docker-compose.yml`, as `serde_json::Value`s (YAML parsed with serde-saphyr, merge keys
//! applied).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{ok, repo_root, run_with_timeout};

/// Every directory under `deploy/` holding a `kustomization.yaml`, as (name relative to deploy/, path).
/// Components (`kind: Component`) are left out: they render as part of the overlays using them.
pub fn kustomizations() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "kustomization.yaml")
                && parse_yaml(&std::fs::read_to_string(&p).unwrap())["kind"] != "Component"
            {
                out.push(p.parent().unwrap().to_owned());
            }
        }
    }
    let deploy = repo_root().join("deploy");
    let mut dirs = Vec::new();
    walk(&deploy, &mut dirs);
    dirs.into_iter().map(|d| (d.strip_prefix(&deploy).unwrap().display().to_string(), d)).collect()
}

/// `kubectl kustomize DIR`, parsed into its objects.
pub fn render(dir: &Path) -> Vec<Value> {
    let out = run_with_timeout(Command::new("kubectl").arg("kustomize").arg(dir), Duration::from_secs(120));
    parse_yaml_stream(&ok(out))
}

/// Every document of a YAML stream (empty documents dropped).
pub fn parse_yaml_stream(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).expect("valid YAML stream");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// One YAML document (merge keys `<<` applied).
pub fn parse_yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("valid YAML")
}

/// `docker-compose.yml` at the repository root.
pub fn compose_file() -> Value {
    parse_yaml(&std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap())
}

/// A compose service by name.
pub fn compose_service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"].get(name).unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

/// A compose service's `environment`, map or list form, values as strings.
pub fn compose_env(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Value::Object(map) => {
            for (k, v) in map {
                env.insert(k.clone(), scalar(v));
            }
        }
        Value::Array(items) => {
            for item in items {
                let s = item.as_str().expect("environment entries are strings");
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        Value::Null => {}
        other => panic!("unexpected environment form: {other}"),
    }
    env
}

/// A compose service's `command` (list or string form) as arguments.
pub fn compose_command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Null => Vec::new(),
        other => panic!("unexpected command form: {other}"),
    }
}

/// A YAML scalar as the string a container would see.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Seconds of a compose duration such as `30s`, `1m30s`, `1m`.
pub fn compose_duration_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
        } else {
            let n: u64 = number.parse().unwrap_or_else(|_| panic!("bad duration `{text}`"));
            number.clear();
            total += match c {
                'h' => n * 3600,
                'm' => n * 60,
                's' => n,
                _ => panic!("unsupported duration unit in `{text}`"),
            };
        }
    }
    assert!(number.is_empty(), "duration `{text}` lacks a unit");
    total
}

/// The objects of a rendering with the given kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The object of a kind and name; panics when absent.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendering"))
}

/// The object of a kind whose name is `name` or `name-<kustomize hash>`.
pub fn find_generated<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"].as_str().is_some_and(|n| {
                    n == name || n.strip_prefix(name).and_then(|r| r.strip_prefix('-')).is_some_and(|h| h.len() == 10)
                })
        })
        .unwrap_or_else(|| panic!("no {kind}/{name}[-hash] in the rendering"))
}

/// The pod template of a workload object (Deployment, Job, …), if it has one.
pub fn pod_template(object: &Value) -> Option<&Value> {
    match object["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some(&object["spec"]["template"]),
        "CronJob" => Some(&object["spec"]["jobTemplate"]["spec"]["template"]),
        "Pod" => Some(object),
        _ => None,
    }
}

/// Whether a label selector (`matchLabels` / `matchExpressions`) selects a set of labels.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object)
        && !ml.iter().all(|(k, v)| label(k) == v.as_str())
    {
        return false;
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap();
            let values: Vec<&str> =
                e["values"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let ok = match e["operator"].as_str().unwrap() {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                op => panic!("unknown selector operator {op}"),
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// A plain `key: value` map selector (Service `spec.selector`) against labels.
pub fn map_selector_matches(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}
