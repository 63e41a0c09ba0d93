//! `[runtime]`: the onnxruntime shared by every model pipeline.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The onnxruntime runtime shared by every model pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Path of `libonnxruntime.so`. Unset: `ORT_DYLIB_PATH`, else the `models.onnxruntime` repo.
    pub dylib_path: Option<PathBuf>,
    /// `cpu`, `cuda` or `tensorrt`.
    pub execution_provider: ExecutionProvider,
    /// When the configured provider is unavailable: `true` logs a warning and runs on CPU,
    /// `false` fails at start-up.
    pub provider_fallback: bool,
    /// Threads inside one operator (0: onnxruntime's default, one per core).
    pub intra_threads: usize,
    /// Threads across independent operators (0: onnxruntime's default).
    pub inter_threads: usize,
    /// Let idle intra-op threads spin for work between operators (onnxruntime's own default is
    /// on). Off here: a worker runs several jobs' sessions at once, and spinning threads burn the
    /// cores the others need (the `ocr` fleet ran at 0.79–0.80 of its models alone with spinning,
    /// 0.93–0.97 without; BENCHMARKS.md). On can lower the latency of one session alone.
    pub intra_op_spinning: bool,
    /// `disable`, `basic`, `extended` or `all`.
    pub graph_optimization: GraphOptimization,
    /// Fuse the hard-swish activations PaddlePaddle exports as four element-wise nodes
    /// (`x·clip(x+3, 0, 6)/6`: the PP-OCR and layout models) into `HardSigmoid` + `Mul` when an
    /// OCR model is loaded, in memory; onnxruntime does not fuse them itself. The same function
    /// in two passes over each activation instead of four: 7–40 % less model time per OCR model
    /// (BENCHMARKS.md). The files on the model volume are not changed.
    pub fuse_hard_swish: bool,
    /// CUDA/TensorRT device id.
    pub device_id: i32,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            dylib_path: None,
            execution_provider: ExecutionProvider::Cpu,
            provider_fallback: true,
            intra_threads: 0,
            inter_threads: 0,
            intra_op_spinning: false,
            graph_optimization: GraphOptimization::All,
            fuse_hard_swish: true,
            device_id: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    Tensorrt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    All,
}
