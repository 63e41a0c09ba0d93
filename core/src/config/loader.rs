//! Loading the layers, tracking where each key came from, refusing unknown keys and checking values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::{Config, Environment, File, FileFormat, Map, Source, Value, ValueKind};

use super::{DEFAULT_PROFILE, ENV_PREFIX, PROFILES, Settings};
use crate::{Error, Result};

/// What to load: the CLI flags.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--profile`; falls back to `DOCFLEET_PROFILE`, then [`DEFAULT_PROFILE`].
    pub profile: Option<String>,
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
}

/// Effective settings together with where each key came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: String,
    pub settings: Settings,
    /// `section.key` → origin (`built-in defaults`, `profiles/k8s.toml`, a file, `the environment`).
    pub origins: BTreeMap<String, String>,
    /// Things worth telling the user that do not stop loading (see [`env_warnings`]); the binaries
    /// print them once logging is set up.
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The effective configuration as TOML, secrets redacted, with a header naming the profile.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(&self.settings).unwrap_or_else(|e| format!("# {e}\n"));
        format!("# docfleet effective configuration (profile: {})\n{body}", self.profile)
    }
}

/// Resolve the profile name from the flag or `DOCFLEET_PROFILE`.
pub fn profile_name(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("DOCFLEET_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned())
}

/// Load and validate the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    let mut loaded = load_with_env(opts, Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__"))?;
    let vars = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    loaded.warnings.extend(env_warnings(vars));
    Ok(loaded)
}

/// Warnings for environment variables that look like configuration but are not read as such:
/// `DOCFLEET_` + a section name + `_…` with single underscores (`DOCFLEET_WORKER_CONCURRENCY`),
/// where `DOCFLEET__WORKER__CONCURRENCY` was meant. Other `DOCFLEET_` variables (`DOCFLEET_PROFILE`,
/// the scripts' `DOCFLEET_CACHE`, `DOCFLEET_LOCALSTACK_PYTHON`, …) name no section and are left alone.
pub fn env_warnings(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let known = known_keys();
    let sections: std::collections::BTreeSet<&str> = known.iter().filter_map(|k| k.split('.').next()).collect();
    let single = format!("{ENV_PREFIX}_");
    let double = format!("{ENV_PREFIX}__");
    let mut out = Vec::new();
    for name in names {
        let Some(rest) = name.strip_prefix(&single).filter(|_| !name.starts_with(&double)) else { continue };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else { continue };
        if key.is_empty() || !sections.contains(section) {
            continue;
        }
        // The most likely meant key: the first `_` after the section is the separator, the rest are
        // part of the key name (`worker_receive_batch` → `worker.receive_batch`).
        let meant = format!("{ENV_PREFIX}__{}__{}", section.to_ascii_uppercase(), key.to_ascii_uppercase());
        let hint = match closest(&known, &format!("{section}.{key}")) {
            Some(k) if k == format!("{section}.{key}") => format!("it would set `{k}` as {meant}"),
            Some(k) => format!("did you mean `{k}` ({})?", env_name(k)),
            None => format!("configuration variables are {ENV_PREFIX}__SECTION__KEY, e.g. {meant}"),
        };
        out.push(format!("environment variable {name} is not read as configuration (single underscores); {hint}"));
    }
    out
}

/// `worker.receive_batch` → `DOCFLEET__WORKER__RECEIVE_BATCH`.
fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__"))
}

/// The known key nearest to `key` by edit distance, if it is near enough to be a typo.
fn closest<'a>(known: &'a [String], key: &str) -> Option<&'a str> {
    let (best, distance) =
        known.iter().map(|k| (k.as_str(), strsim::damerau_levenshtein(k, key))).min_by_key(|(_, d)| *d)?;
    (distance <= 3.max(key.len() / 5)).then_some(best)
}

/// [`load`] with an explicit environment source (tests pass a fixed map).
pub fn load_with_env(opts: &LoadOptions, env: Environment) -> Result<Loaded> {
    let profile = profile_name(opts.profile.as_deref());
    let profile_text = PROFILES.iter().find(|(name, _)| *name == profile).map(|(_, text)| *text).ok_or_else(|| {
        let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
        Error::Config(format!("unknown profile `{profile}` (known: {})", known.join(", ")))
    })?;
    let defaults = toml::to_string(&Settings::default()).expect("defaults serialize");

    let mut builder = Config::builder()
        .add_source(Labeled::new("built-in defaults", File::from_str(&defaults, FileFormat::Toml)))
        .add_source(Labeled::new(format!("profiles/{profile}.toml"), File::from_str(profile_text, FileFormat::Toml)));
    if let Some(path) = &opts.config_file {
        if !path.is_file() {
            return Err(Error::Config(format!("config file {} does not exist", path.display())));
        }
        builder = builder
            .add_source(Labeled::new(path.display().to_string(), File::from(path.as_path()).format(FileFormat::Toml)));
    }
    let cfg = builder
        .add_source(
            env.try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("store.allowed_input_buckets")
                .with_list_parse_key("store.allowed_input_prefixes")
                .with_list_parse_key("scaler.queues")
                .with_list_parse_key("scaler.worker_metrics_urls")
                .with_list_parse_key("models.vlm.files"),
        )
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;

    let mut origins = BTreeMap::new();
    collect_origins("", &cfg.cache, &mut origins);
    let known = known_keys();
    for (key, origin) in &origins {
        if !known.iter().any(|k| k == key) {
            let hint = closest(&known, key).map(|k| format!("did you mean `{k}`? ")).unwrap_or_default();
            return Err(Error::Config(format!(
                "unknown key `{key}` (from {origin}); {hint}known keys in that section: {}",
                suggestions(&known, key)
            )));
        }
    }
    let mut settings: Settings = cfg.try_deserialize().map_err(|e| Error::Config(e.to_string()))?;
    let mut warnings = Vec::new();
    apply_vlm_preset(&mut settings, &mut origins, &mut warnings);
    validate(&settings, &origins)?;
    // The downloader fetches, and the worker checks, only the `onnx/` variant `vlm.dtype` names.
    settings.models.vlm.onnx_variant = Some(super::models::OnnxVariant {
        dtype: settings.vlm.dtype,
        gpu: settings.runtime.execution_provider != super::ExecutionProvider::Cpu,
    });
    Ok(Loaded { profile, settings, origins, warnings })
}

/// A `models.vlm.repo_id` naming a known model ([`VLM_PRESETS`](super::vlm::VLM_PRESETS)) fills
/// what the user left at the built-in defaults: the repository with its ONNX graphs, revision
/// `main` when none is given, the task prompt and the token limits. Keys set in any layer are kept.
fn apply_vlm_preset(settings: &mut Settings, origins: &mut BTreeMap<String, String>, warnings: &mut Vec<String>) {
    let repo = &settings.models.vlm.repo_id;
    let Some(preset) = super::vlm::VlmPreset::for_repo(repo) else { return };
    let origin = format!("preset for {repo}");
    let defaulted =
        |origins: &BTreeMap<String, String>, key: &str| origins.get(key).is_none_or(|o| o == "built-in defaults");
    if !repo.eq_ignore_ascii_case(preset.onnx_repo) && settings.models.vlm.source.kind == super::SourceKind::Hub {
        warnings.push(format!(
            "models.vlm.repo_id `{repo}` has no ONNX graphs; using its transformers.js export `{}`",
            preset.onnx_repo
        ));
        settings.models.vlm.repo_id = preset.onnx_repo.to_owned();
        origins.insert("models.vlm.repo_id".into(), origin.clone());
    }
    if settings.models.vlm.revision.is_empty() {
        settings.models.vlm.revision = "main".into();
        origins.insert("models.vlm.revision".into(), origin.clone());
    }
    if defaulted(origins, "vlm.prompt") && settings.vlm.prompt.is_empty() {
        settings.vlm.prompt = preset.prompt.to_owned();
        origins.insert("vlm.prompt".into(), origin.clone());
    }
    if defaulted(origins, "vlm.max_new_tokens") && settings.vlm.max_new_tokens == 0 {
        settings.vlm.max_new_tokens = preset.max_new_tokens;
        origins.insert("vlm.max_new_tokens".into(), origin.clone());
    }
    if defaulted(origins, "vlm.max_new_tokens_limit") && settings.vlm.max_new_tokens_limit < settings.vlm.max_new_tokens
    {
        settings.vlm.max_new_tokens_limit = settings.vlm.max_new_tokens;
        origins.insert("vlm.max_new_tokens_limit".into(), origin);
    }
}

/// Every leaf key of the schema, as `section.key`.
fn known_keys() -> Vec<String> {
    let value = serde_json::to_value(Settings::default()).expect("defaults serialize");
    let mut keys = Vec::new();
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(&join(prefix, k), v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    walk("", &value, &mut keys);
    // Unset optional keys serialize as null leaves, so they are listed too.
    keys
}

fn suggestions(known: &[String], key: &str) -> String {
    let section = key.split('.').next().unwrap_or_default();
    let same: Vec<&str> = known.iter().filter(|k| k.split('.').next() == Some(section)).map(String::as_str).collect();
    if same.is_empty() {
        let sections: std::collections::BTreeSet<&str> = known.iter().filter_map(|k| k.split('.').next()).collect();
        format!("no such section; sections are {}", sections.into_iter().collect::<Vec<_>>().join(", "))
    } else {
        same.join(", ")
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

fn collect_origins(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match &value.kind {
        ValueKind::Table(table) => {
            for (k, v) in table {
                collect_origins(&join(prefix, k), v, out);
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.to_owned(), value.origin().unwrap_or("unknown source").to_owned());
        }
        _ => {}
    }
}
fn validate(s: &Settings, origins: &BTreeMap<String, String>) -> Result<()> {
    let fail = |key: &str, why: String| {
        let origin = origins.get(key).map(String::as_str).unwrap_or("built-in defaults");
        Err(Error::Config(format!("invalid value for `{key}` (from {origin}): {why}")))
    };
    s.worker.validate(&fail)?;
    s.queue.validate(&fail)?;
    s.store.validate(&fail)?;
    s.limits.validate(&fail)?;
    s.models.validate(&fail)?;
    s.ocr.validate(&fail)?;
    s.vlm.validate(&fail)?;
    s.scaler.validate(&fail)?;
    s.aws.validate(&fail)
}

/// A source whose values remember a human-readable origin (embedded strings have none).
#[derive(Debug, Clone)]
struct Labeled<S> {
    label: String,
    inner: S,
}

impl<S> Labeled<S> {
    fn new(label: impl Into<String>, inner: S) -> Self {
        Self { label: label.into(), inner }
    }
}

impl<S: Source + Clone + Send + Sync + 'static> Source for Labeled<S> {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> std::result::Result<Map<String, Value>, config::ConfigError> {
        fn relabel(label: &String, v: Value) -> Value {
            let kind = match v.kind {
                ValueKind::Table(t) => ValueKind::Table(t.into_iter().map(|(k, v)| (k, relabel(label, v))).collect()),
                ValueKind::Array(a) => ValueKind::Array(a.into_iter().map(|v| relabel(label, v)).collect()),
                other => other,
            };
            Value::new(Some(label), kind)
        }
        Ok(self.inner.collect()?.into_iter().map(|(k, v)| (k, relabel(&self.label, v))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Environment {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__").source(Some(map))
    }

    fn opts(profile: &str) -> LoadOptions {
        LoadOptions { profile: Some(profile.into()), config_file: None }
    }

    #[test]
    fn a_known_vlm_repo_fills_what_was_left_at_the_defaults() {
        let load = |vars: &[(&str, &str)]| load_with_env(&opts("local-dev"), env(vars)).unwrap();
        let l = load(&[("DOCFLEET__MODELS__VLM__REPO_ID", "ibm-granite/granite-docling-258M")]);
        assert_eq!(l.settings.models.vlm.repo_id, "onnx-community/granite-docling-258M-ONNX");
        assert_eq!(l.settings.vlm.prompt, "Convert this page to docling.");
        assert_eq!((l.settings.vlm.max_new_tokens, l.settings.vlm.max_new_tokens_limit), (8192, 8192));
        assert_eq!(l.origins["vlm.prompt"], "preset for ibm-granite/granite-docling-258M");
        assert!(l.warnings.iter().any(|w| w.contains("onnx-community/granite-docling-258M-ONNX")), "{:?}", l.warnings);

        // The export itself: no rewrite, no warning; what the user set stays.
        let l = load(&[
            ("DOCFLEET__MODELS__VLM__REPO_ID", "ds4sd/SmolDocling-256M-preview"),
            ("DOCFLEET__VLM__PROMPT", "Convert table to OTSL."),
            ("DOCFLEET__VLM__MAX_NEW_TOKENS", "512"),
        ]);
        assert_eq!(l.settings.models.vlm.repo_id, "ds4sd/SmolDocling-256M-preview");
        assert_eq!(l.settings.vlm.prompt, "Convert table to OTSL.");
        assert_eq!((l.settings.vlm.max_new_tokens, l.settings.vlm.max_new_tokens_limit), (512, 4096));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);

        // An unknown model is left alone.
        let l = load(&[("DOCFLEET__MODELS__VLM__REPO_ID", "org/donut"), ("DOCFLEET__MODELS__VLM__REVISION", "main")]);
        assert_eq!((l.settings.vlm.prompt.as_str(), l.settings.vlm.max_new_tokens), ("", 0));
    }

    #[test]
    fn every_shipped_profile_loads() {
        for (name, _) in PROFILES {
            let loaded = load_with_env(&opts(name), env(&[])).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(loaded.profile, *name);
        }
    }

    #[test]
    fn profiles_select_backends_and_log_format() {
        let local = load_with_env(&opts("local-dev"), env(&[])).unwrap().settings;
        assert_eq!(local.queue.backend, QueueBackend::Local);
        assert_eq!(local.store.backend, StoreBackend::Local);
        let mock = load_with_env(&opts("aws-mock"), env(&[])).unwrap().settings;
        assert_eq!(mock.queue.backend, QueueBackend::Sqs);
        assert!(mock.aws.force_path_style);
        let k8s = load_with_env(&opts("k8s"), env(&[])).unwrap().settings;
        assert_eq!(k8s.log.format, LogFormat::Json);
        assert_eq!(k8s.store.backend, StoreBackend::S3);
    }

    #[test]
    fn layers_apply_in_order_and_origins_are_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.toml");
        std::fs::write(&file, "[worker]\nconcurrency = 7\nreceive_batch = 3\n").unwrap();
        let loaded = load_with_env(
            &LoadOptions { profile: Some("aws-mock".into()), config_file: Some(file.clone()) },
            env(&[("DOCFLEET__WORKER__RECEIVE_BATCH", "9"), ("DOCFLEET__STORE__ALLOWED_INPUT_BUCKETS", "a-b,c-d")]),
        )
        .unwrap();
        assert_eq!(loaded.settings.worker.concurrency, 7, "file beats profile and defaults");
        assert_eq!(loaded.settings.worker.receive_batch, 9, "environment beats file");
        assert_eq!(loaded.settings.store.allowed_input_buckets, vec!["a-b", "c-d"]);
        assert_eq!(loaded.origins["worker.receive_batch"], "the environment");
        assert_eq!(loaded.origins["worker.concurrency"], file.display().to_string());
        assert_eq!(loaded.origins["queue.backend"], "profiles/aws-mock.toml");
        assert_eq!(loaded.origins["limits.max_pages"], "built-in defaults");
    }

    #[test]
    fn unknown_key_names_key_and_origin() {
        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__CONCURENCY", "3")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`worker.concurency`"), "{msg}");
        assert!(msg.contains("the environment"), "{msg}");
        assert!(msg.contains("worker.concurrency"), "suggests the real key: {msg}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[wroker]\nconcurrency = 2\n").unwrap();
        let err = load_with_env(&LoadOptions { profile: None, config_file: Some(file.clone()) }, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`wroker.concurrency`") && err.contains("bad.toml") && err.contains("no such section"),
            "{err}"
        );
        assert!(err.contains("did you mean `worker.concurrency`?"), "{err}");
    }

    #[test]
    fn did_you_mean_only_for_near_keys() {
        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__RECIEVE_BATCH", "3")])).unwrap_err();
        assert!(err.to_string().contains("did you mean `worker.receive_batch`?"), "{err}");
        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__ZZZZZZZZZZZZZZZZZZ", "3")])).unwrap_err();
        assert!(!err.to_string().contains("did you mean"), "{err}");
    }

    #[test]
    fn single_underscore_env_variables_that_look_like_config_warn() {
        let names = [
            "DOCFLEET_WORKER_CONCURRENCY",
            "DOCFLEET_WORKER_CONCURENCY",
            "DOCFLEET_PROFILE",
            "DOCFLEET_CACHE",
            "DOCFLEET_LOCALSTACK_PYTHON",
            "DOCFLEET_QUEUE",
            "DOCFLEET__WORKER__CONCURRENCY",
            "PATH",
        ];
        let warnings = env_warnings(names.iter().map(|s| s.to_string()));
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].contains("DOCFLEET_WORKER_CONCURRENCY")
                && warnings[0].contains("DOCFLEET__WORKER__CONCURRENCY")
                && warnings[0].contains("`worker.concurrency`"),
            "{}",
            warnings[0]
        );
        assert!(warnings[1].contains("did you mean `worker.concurrency`"), "{}", warnings[1]);
    }

    #[test]
    fn bad_value_names_key_and_origin() {
        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__CONCURRENCY", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.concurrency") && err.contains("the environment"), "{err}");

        let err = load_with_env(&opts("local-dev"), env(&[("DOCFLEET__WORKER__RECEIVE_BATCH", "11")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`worker.receive_batch`") && err.contains("the environment") && err.contains("1–10"),
            "{err}"
        );

        let err =
            load_with_env(&opts("local-dev"), env(&[("DOCFLEET__QUEUE__BACKEND", "kafka")])).unwrap_err().to_string();
        assert!(err.contains("queue.backend") && err.contains("kafka"), "{err}");
    }

    #[test]
    fn onnxruntime_spinning_is_off_unless_asked_for() {
        let default = load_with_env(&opts("local-dev"), env(&[])).unwrap().settings;
        assert!(!default.runtime.intra_op_spinning);
        let on =
            load_with_env(&opts("k8s"), env(&[("DOCFLEET__RUNTIME__INTRA_OP_SPINNING", "true")])).unwrap().settings;
        assert!(on.runtime.intra_op_spinning);
    }

    #[test]
    fn vlm_settings_from_the_environment_and_their_limits() {
        let loaded = load_with_env(
            &opts("local-dev"),
            env(&[
                ("DOCFLEET__MODELS__VLM__DIR", "/models/donut"),
                ("DOCFLEET__MODELS__VLM__FILES", "extra.json,onnx/encoder_model.onnx"),
                ("DOCFLEET__VLM__DECODER", "split"),
                ("DOCFLEET__VLM__BATCH_SIZE", "8"),
                ("DOCFLEET__VLM__BATCH_ACROSS_JOBS", "true"),
                ("DOCFLEET__VLM__BATCH_MAX_WAIT_MS", "5"),
            ]),
        )
        .unwrap()
        .settings;
        assert_eq!((loaded.vlm.batch_across_jobs, loaded.vlm.batch_max_wait_ms), (Some(true), 5));
        assert_eq!(Settings::default().vlm.batch_across_jobs, None, "unset: decided by the execution provider");
        assert_eq!(loaded.models.vlm.dir.as_deref(), Some(std::path::Path::new("/models/donut")));
        assert_eq!(loaded.models.vlm.files, vec!["extra.json", "onnx/encoder_model.onnx"]);
        assert_eq!((loaded.vlm.decoder, loaded.vlm.batch_size), (VlmDecoderLayout::Split, 8));
        for (vars, needle) in [
            (&[("DOCFLEET__VLM__BATCH_SIZE", "0")][..], "`vlm.batch_size`"),
            (&[("DOCFLEET__VLM__MAX_NEW_TOKENS", "5000")][..], "`vlm.max_new_tokens`"),
            (&[("DOCFLEET__VLM__PDF_DPI", "5")][..], "`vlm.pdf_dpi`"),
            (&[("DOCFLEET__VLM__BATCH_MAX_WAIT_MS", "5000")][..], "`vlm.batch_max_wait_ms`"),
            (&[("DOCFLEET__WORKER__DECODE_AHEAD", "65")][..], "`worker.decode_ahead`"),
        ] {
            let err = load_with_env(&opts("local-dev"), env(vars)).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("the environment"), "{vars:?}: {err}");
        }
        let err =
            load_with_env(&opts("local-dev"), env(&[("DOCFLEET__VLM__DECODER", "fused")])).unwrap_err().to_string();
        assert!(err.contains("vlm.decoder") && err.contains("fused"), "{err}");
    }

    #[test]
    fn unknown_profile_is_an_error() {
        let err = load_with_env(&opts("prod"), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown profile `prod`") && err.contains("local-dev"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_in_show_and_debug() {
        let loaded = load_with_env(
            &opts("aws-mock"),
            env(&[
                ("DOCFLEET__AWS__SECRET_ACCESS_KEY", "hunter2-very-secret"),
                ("DOCFLEET__AWS__ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.settings.aws.secret_access_key.as_ref().unwrap().expose(), "hunter2-very-secret");
        let shown = loaded.to_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("secret_access_key = \"<redacted>\""), "{shown}");
        assert!(!format!("{:?}", loaded.settings).contains("hunter2"));
    }
}
