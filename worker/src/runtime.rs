//! The one owner of onnxruntime in the worker: loads the shared library once per process, picks
//! the execution provider, and builds sessions that every job shares. The `ocr` pipeline uses it
//! now; any later ONNX pipeline (e.g. `vlm`) loads its models through [`Runtime::load_model`] too.
//!
//! The library is never downloaded here: its path is `runtime.dylib_path`, else `ORT_DYLIB_PATH`,
//! else the `models.onnxruntime` repo in the model cache (see `scripts/setup/onnxruntime.sh`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use docfleet_core::config::{ExecutionProvider, GraphOptimization, RuntimeSettings, Settings};
use docfleet_core::{Error, Result, models};
use ort::ep::ExecutionProvider as _;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;

use crate::batch::{BatchPolicy, Batcher, Pending, RunFn, Tensor};

/// How to obtain the model files and the library when they are missing.
pub const SETUP_HINT: &str = "run `docfleet-downloader fetch --model onnxruntime --model ocr` (or \
                              `scripts/setup/onnxruntime.sh`) to fetch onnxruntime and the PP-OCR models into the \
                              Hugging Face cache; `docfleet run` on the local-dev profile does it by itself \
                              (models.fetch_missing). See docs/ocr.md";

/// A loaded onnxruntime: the library, its environment and the provider sessions run on.
pub struct Runtime {
    env: ort::environment::Environment,
    settings: RuntimeSettings,
    /// The provider sessions actually use (CPU after a fallback).
    provider: ExecutionProvider,
    /// Where the library was loaded from, and the model-cache id when it came from there.
    library: PathBuf,
    library_id: Option<String>,
    version: String,
}

/// The library can be loaded once per process; later calls share the first result.
static RUNTIME: OnceLock<std::result::Result<Arc<Runtime>, String>> = OnceLock::new();

impl Runtime {
    /// The process's runtime, initialised from `settings` on first use.
    pub fn shared(settings: &Settings) -> Result<Arc<Runtime>> {
        RUNTIME.get_or_init(|| Runtime::init(settings).map(Arc::new).map_err(|e| e.to_string())).clone().map_err(
            |msg| {
                // Keep the message as it was, without a second "model error:" prefix.
                Error::Model(msg.strip_prefix("model error: ").unwrap_or(&msg).to_owned())
            },
        )
    }

    fn init(settings: &Settings) -> Result<Runtime> {
        let (library, library_id) = locate_library(settings)?;
        let builder = ort::init_from(&library).map_err(|e| {
            Error::Model(format!("cannot load onnxruntime from {}: {e}. {SETUP_HINT}", library.display()))
        })?;
        let env = builder
            .with_name("docfleet")
            .with_telemetry(false)
            .build()
            .map_err(|e| Error::Model(format!("cannot create the onnxruntime environment: {e}")))?;
        let rt = &settings.runtime;
        let provider = choose_provider(rt)?;
        let version = library
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split(".so.").nth(1))
            .unwrap_or("unknown")
            .to_owned();
        tracing::info!(library = %library.display(), ?provider, intra_threads = rt.intra_threads, inter_threads = rt.inter_threads, "onnxruntime loaded");
        Ok(Runtime { env, settings: rt.clone(), provider, library, library_id, version })
    }

    /// The provider sessions run on.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// The GPU sessions run on (`runtime.device_id`).
    pub fn device_id(&self) -> i32 {
        self.settings.device_id
    }

    /// `library@version` and its cache id, for result records.
    pub fn describe(&self) -> String {
        match &self.library_id {
            Some(id) => format!("onnxruntime {} ({id})", self.version),
            None => format!("onnxruntime {} ({})", self.version, self.library.display()),
        }
    }

    /// Build a session for the model file at `path`, running each call on `runtime.intra_threads`
    /// threads. `id` names it in results and errors.
    pub fn load_model(&self, path: &Path, id: String, policy: BatchPolicy) -> Result<Model> {
        self.load(path, id, 1, self.settings.intra_threads, policy)
    }

    /// Build one single-threaded session per thread `runtime.intra_threads` allows (all cores
    /// when 0), for callers that run many small inputs side by side ([`Model::run_on`]): on CPU
    /// that keeps the cores busier than one session splitting each small input across threads.
    pub fn load_model_replicated(&self, path: &Path, id: String, policy: BatchPolicy) -> Result<Model> {
        let threads = match self.settings.intra_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        if threads <= 1 || self.provider != ExecutionProvider::Cpu {
            return self.load_model(path, id, policy);
        }
        self.load(path, id, threads, 1, policy)
    }

    /// A bare session for the model file at `path`, built with the shared options (threads,
    /// graph optimisation, execution provider), for models [`Model`] cannot run: several inputs of
    /// mixed types, outputs fed back in (the `vlm` pipeline's decoders). `id` names it in errors.
    pub fn session(&self, path: &Path, id: &str) -> Result<Session> {
        let bad =
            |e: &dyn std::fmt::Display| Error::Model(format!("cannot load model {id} from {}: {e}", path.display()));
        self.session_builder(self.settings.intra_threads)
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| bad(&e))
    }

    /// [`session`](Self::session) for a small model read whole into memory first, so that the
    /// graph rewrites onnxruntime does not make ([`crate::graph`], `runtime.fuse_hard_swish`) are
    /// made; the `ocr` pipeline's models load this way.
    pub fn session_rewritten(&self, path: &Path, id: &str) -> Result<Session> {
        let bytes = self.rewritten(path, id)?;
        self.commit(path, id, self.settings.intra_threads, bytes.as_deref())
    }

    /// The model at `path` as sessions should load it when `runtime.fuse_hard_swish` is on: read
    /// once and rewritten in memory where there is something to fuse, as read otherwise. `None`
    /// (fusion off): load the file itself.
    fn rewritten(&self, path: &Path, id: &str) -> Result<Option<Vec<u8>>> {
        if !self.settings.fuse_hard_swish {
            return Ok(None);
        }
        let bad =
            |e: &dyn std::fmt::Display| Error::Model(format!("cannot load model {id} from {}: {e}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| bad(&e))?;
        match crate::graph::fuse_hard_swish(&bytes).map_err(|why| bad(&why))? {
            crate::graph::Rewritten { bytes: Some(rewritten), hard_swish } => {
                tracing::debug!(model = %id, hard_swish, "graph rewritten: hard-swish fused");
                Ok(Some(rewritten))
            }
            _ => Ok(Some(bytes)),
        }
    }

    /// A session on `intra_threads` threads for the model at `path`, from `bytes` when given
    /// ([`rewritten`](Self::rewritten)), else from the file.
    fn commit(&self, path: &Path, id: &str, intra_threads: usize, bytes: Option<&[u8]>) -> Result<Session> {
        let bad =
            |e: &dyn std::fmt::Display| Error::Model(format!("cannot load model {id} from {}: {e}", path.display()));
        let mut builder = self.session_builder(intra_threads).map_err(|e| bad(&e))?;
        match bytes {
            Some(bytes) => builder.commit_from_memory(bytes),
            None => builder.commit_from_file(path),
        }
        .map_err(|e| bad(&e))
    }

    fn load(
        &self,
        path: &Path,
        id: String,
        replicas: usize,
        intra_threads: usize,
        policy: BatchPolicy,
    ) -> Result<Model> {
        let started = Instant::now();
        let bad =
            |e: &dyn std::fmt::Display| Error::Model(format!("cannot load model {id} from {}: {e}", path.display()));
        // Read and rewritten once; every replica is built from the same bytes.
        let bytes = self.rewritten(path, &id)?;
        let mut sessions = Vec::with_capacity(replicas);
        for _ in 0..replicas {
            sessions.push(self.commit(path, &id, intra_threads, bytes.as_deref())?);
        }
        drop(bytes);
        let session = &sessions[0];
        let input =
            session.inputs().first().map(|o| o.name().to_owned()).ok_or_else(|| bad(&"the model has no input"))?;
        let output =
            session.outputs().first().map(|o| o.name().to_owned()).ok_or_else(|| bad(&"the model has no output"))?;
        let metadata = session.metadata().ok();
        let character = metadata.as_ref().and_then(|m| m.custom("character"));
        drop(metadata);
        tracing::debug!(model = %id, replicas, ms = started.elapsed().as_millis() as u64, "model loaded");
        let sessions: Vec<Mutex<Session>> = sessions.into_iter().map(Mutex::new).collect();
        let run: Arc<RunFn> = {
            let (id, input, output) = (id.clone(), input.clone(), output.clone());
            Arc::new(move |session: usize, shape: &[usize], data: &[f32]| {
                let fail = |e: &dyn std::fmt::Display| Error::Model(format!("{id} failed on input {shape:?}: {e}"));
                let tensor = TensorRef::from_array_view((shape.to_vec(), data)).map_err(|e| fail(&e))?;
                let mut session = sessions[session % sessions.len()].lock().unwrap_or_else(|p| p.into_inner());
                let outputs = session.run(ort::inputs![input.as_str() => tensor]).map_err(|e| fail(&e))?;
                let (out_shape, values) = outputs[output.as_str()].try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
                Ok((out_shape.iter().map(|&d| d.max(0) as usize).collect(), values.to_vec()))
            })
        };
        let name =
            id.rsplit('/').next().unwrap_or("model").trim_end_matches(".onnx").chars().take(12).collect::<String>();
        let batcher = Batcher::start(&name, replicas, policy, run);
        Ok(Model { id, character, replicas, batcher })
    }

    /// A session builder with the shared options and the execution provider.
    fn session_builder(&self, intra_threads: usize) -> ort::Result<SessionBuilder> {
        let rt = &self.settings;
        let mut b = Session::builder(&self.env)?
            .with_optimization_level(match rt.graph_optimization {
                GraphOptimization::Disable => GraphOptimizationLevel::Disable,
                GraphOptimization::Basic => GraphOptimizationLevel::Level1,
                GraphOptimization::Extended => GraphOptimizationLevel::Level2,
                GraphOptimization::All => GraphOptimizationLevel::All,
            })?
            // Input shapes change with every page and line batch: planning memory per shape wastes RSS.
            .with_memory_pattern(false)?;
        if intra_threads > 0 {
            b = b.with_intra_threads(intra_threads)?;
        }
        b = b.with_intra_op_spinning(rt.intra_op_spinning)?;
        if rt.inter_threads > 0 {
            b = b.with_inter_threads(rt.inter_threads)?.with_parallel_execution(true)?;
        }
        match self.provider {
            ExecutionProvider::Cpu => Ok(b),
            other => with_gpu_provider(b, other, rt.device_id),
        }
    }
}

/// The library path: `runtime.dylib_path`, `ORT_DYLIB_PATH`, then the `models.onnxruntime` repo.
fn locate_library(settings: &Settings) -> Result<(PathBuf, Option<String>)> {
    locate_library_from(settings, std::env::var_os("ORT_DYLIB_PATH"))
}

/// [`locate_library`] with the value of `ORT_DYLIB_PATH` given.
fn locate_library_from(settings: &Settings, env_path: Option<std::ffi::OsString>) -> Result<(PathBuf, Option<String>)> {
    let check = |path: PathBuf, from: &str| {
        if path.is_file() {
            Ok((path, None))
        } else {
            Err(Error::Model(format!(
                "onnxruntime library {} (from {from}) does not exist. {SETUP_HINT}",
                path.display()
            )))
        }
    };
    if let Some(path) = &settings.runtime.dylib_path {
        return check(path.clone(), "runtime.dylib_path");
    }
    if let Some(path) = env_path.filter(|p| !p.is_empty()) {
        return check(PathBuf::from(path), "ORT_DYLIB_PATH");
    }
    let repo = &settings.models.onnxruntime;
    let file = repo.files.first().ok_or_else(|| {
        Error::Model(format!(
            "no onnxruntime library configured: set runtime.dylib_path, ORT_DYLIB_PATH or models.onnxruntime.files. {SETUP_HINT}"
        ))
    })?;
    let snap = models::locate(&settings.models, "onnxruntime", repo)
        .map_err(|e| Error::Model(format!("{}. Or {SETUP_HINT}", e.to_string().trim_start_matches("model error: "))))?;
    Ok((snap.file(file), Some(snap.id())))
}

/// The provider to use, decided once: GPU providers need a library built with them.
fn choose_provider(rt: &RuntimeSettings) -> Result<ExecutionProvider> {
    let available = match rt.execution_provider {
        ExecutionProvider::Cpu => return Ok(ExecutionProvider::Cpu),
        ExecutionProvider::Cuda => ort::ep::CUDA::is_available(),
        ExecutionProvider::Tensorrt => ort::ep::TensorRT::is_available(),
    };
    match available {
        Ok(true) => Ok(rt.execution_provider),
        Ok(false) | Err(_) => unavailable(
            rt,
            "the loaded onnxruntime library was built without it (the CPU wheel `onnxruntime`; use `onnxruntime-gpu`)",
        ),
    }
}

fn unavailable(rt: &RuntimeSettings, why: &str) -> Result<ExecutionProvider> {
    let name = format!("{:?}", rt.execution_provider).to_lowercase();
    if rt.provider_fallback {
        tracing::warn!(provider = %name, reason = why, "execution provider unavailable; running on CPU (runtime.provider_fallback = true)");
        Ok(ExecutionProvider::Cpu)
    } else {
        Err(Error::Model(format!(
            "execution provider `{name}` (runtime.execution_provider) is not available: {why}; set \
             runtime.provider_fallback = true to run on CPU instead"
        )))
    }
}

fn with_gpu_provider(builder: SessionBuilder, provider: ExecutionProvider, device: i32) -> ort::Result<SessionBuilder> {
    let eps = match provider {
        ExecutionProvider::Tensorrt => vec![
            ort::ep::TensorRT::default().with_device_id(device).build().error_on_failure(),
            // Nodes TensorRT cannot take run on CUDA rather than CPU.
            ort::ep::CUDA::default().with_device_id(device).build(),
        ],
        _ => vec![ort::ep::CUDA::default().with_device_id(device).build().error_on_failure()],
    };
    Ok(builder.with_execution_providers(eps)?)
}

/// One model's sessions, shared by every job. Each session runs one call at a time on its own
/// thread, fed by one queue that merges calls from different jobs into one run ([`crate::batch`]):
/// concurrent jobs overlap their pre- and post-processing with each other's model runs instead of
/// oversubscribing the CPU, and on a GPU one run serves several jobs' pages.
pub struct Model {
    /// `repo@commit/file`, for result records.
    pub id: String,
    /// The `character` metadata entry (PP-OCR recognition models keep their dictionary there).
    character: Option<String>,
    replicas: usize,
    batcher: Batcher,
}

impl Model {
    /// Sessions that can run at the same time.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The model's `character` metadata entry, if it has one.
    pub fn character_metadata(&self) -> Option<&str> {
        self.character.as_deref()
    }

    /// Runs so far: (runs, requests, merged runs, items).
    pub fn batch_stats(&self) -> (u64, u64, u64, u64) {
        self.batcher.stats.snapshot()
    }

    /// Run the model on one f32 tensor of `shape` and hand the first output (shape, values) to
    /// `read`. Returns `read`'s result and this call's share of the time spent in onnxruntime.
    pub fn run<T>(
        &self,
        shape: &[usize],
        data: &[f32],
        read: impl FnOnce(&[usize], &[f32]) -> T,
    ) -> Result<(T, Duration)> {
        let reply = self.submit(shape, data).wait()?;
        Ok((read(&reply.shape, &reply.values), reply.took))
    }

    /// [`submit`](Self::submit), never merged with other calls.
    pub fn submit_alone(&self, shape: &[usize], data: &[f32]) -> Pending {
        self.batcher.submit_alone(shape, data)
    }

    /// Start (`true`) or stop keeping a copy of every input this model is given; stopping returns
    /// them. For benchmarks that replay a pipeline's model calls alone.
    pub fn record_inputs(&self, on: bool) -> Vec<Tensor> {
        self.batcher.record(on)
    }

    /// Queue a call without waiting for it (the input is copied); several calls in flight run
    /// side by side on the model's sessions, merged where they fit.
    pub fn submit(&self, shape: &[usize], data: &[f32]) -> Pending {
        self.batcher.submit(shape, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_provider_without_support_falls_back_or_fails_clearly() {
        let mut rt = RuntimeSettings { execution_provider: ExecutionProvider::Cuda, ..RuntimeSettings::default() };
        rt.provider_fallback = true;
        assert_eq!(unavailable(&rt, "no CUDA").unwrap(), ExecutionProvider::Cpu);
        rt.provider_fallback = false;
        let err = unavailable(&rt, "no CUDA").unwrap_err().to_string();
        assert!(err.contains("`cuda`") && err.contains("provider_fallback"), "{err}");
    }

    #[test]
    fn missing_library_names_the_setup_step() {
        let mut settings = Settings::default();
        settings.runtime.dylib_path = Some(PathBuf::from("/nonexistent/libonnxruntime.so"));
        let err = locate_library_from(&settings, None).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/libonnxruntime.so") && err.contains("scripts/setup/onnxruntime.sh"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        settings.runtime.dylib_path = None;
        settings.models.cache_dir = Some(dir.path().to_owned());
        let err = locate_library_from(&settings, None).unwrap_err().to_string();
        assert!(err.contains("docfleet/onnxruntime-cpu") && err.contains("scripts/setup/onnxruntime.sh"), "{err}");
        let err = locate_library_from(&settings, Some("/nowhere/libonnxruntime.so".into())).unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH") && err.contains("/nowhere"), "{err}");
    }
}
