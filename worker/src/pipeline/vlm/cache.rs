//! Where the generation loops' KV cache lives between decoder steps (`vlm.cache_on_device`),
//! shared by the decoder-only loop ([`super::idefics3::generate`]) and the encoder-decoder one
//! ([`super::generate::decode`]). A plain onnxruntime run returns every output in host memory, so
//! on a GPU the whole cache would be copied to the host after each step and back before the
//! next; with a [`CacheDevice`] each step's cache outputs are preallocated on the execution
//! provider's device with their known shapes and fed back as the next step's inputs where they
//! are. Outputs not preallocated (the logits) still come to the host.

use std::sync::Mutex;

use docfleet_core::config::ExecutionProvider;
use docfleet_core::{Error, Result};
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{DynTensorValueType, DynValue, Tensor};

use super::tensors::Float;
use crate::runtime::Runtime;

/// One cache output to preallocate for a step: its name, element type and shape
/// (`[rows, heads, positions, head_dim]`).
pub struct Preallocated<'a> {
    pub name: &'a str,
    pub float: Float,
    pub shape: [usize; 4],
}

/// An allocator on the execution provider's device (host memory on CPU, where forcing
/// `vlm.cache_on_device` runs the same path).
pub struct CacheDevice {
    /// `Allocator` is `Send` but not `Sync`; a step holds its decoder's lock anyway.
    allocator: Mutex<Allocator>,
    device: AllocationDevice<'static>,
    device_id: i32,
    /// For logs and `model_info.cache`: `cpu` or `cuda:<id>`.
    pub name: String,
}

impl CacheDevice {
    /// The device of `runtime`'s provider, its allocator taken from `session` (`file`, for errors).
    pub fn new(session: &Session, file: &str, runtime: &Runtime) -> Result<Self> {
        let fail = |e: ort::Error| Error::Model(format!("{file}: allocating the cache on the device: {e}"));
        Ok(match runtime.provider() {
            ExecutionProvider::Cpu => Self {
                allocator: Mutex::new(Allocator::default()),
                device: AllocationDevice::CPU,
                device_id: 0,
                name: "cpu".to_owned(),
            },
            ExecutionProvider::Cuda | ExecutionProvider::Tensorrt => {
                let id = runtime.device_id();
                let info = MemoryInfo::new(AllocationDevice::CUDA, id, AllocatorType::Device, MemoryType::Default)
                    .map_err(fail)?;
                Self {
                    allocator: Mutex::new(Allocator::new(session, info).map_err(fail)?),
                    device: AllocationDevice::CUDA,
                    device_id: id,
                    name: format!("cuda:{id}"),
                }
            }
        })
    }

    /// Run options (for the session of `file`) with each of `outputs` preallocated here and the
    /// outputs named in `skip` not fetched at all.
    pub fn run_options<'a>(
        &self,
        file: &str,
        outputs: impl IntoIterator<Item = Preallocated<'a>>,
        skip: &[&str],
    ) -> Result<RunOptions<HasSelectedOutputs>> {
        let fail = |e: ort::Error| Error::Model(format!("{file}: preallocating the cache: {e}"));
        let allocator = self.allocator.lock().unwrap_or_else(|p| p.into_inner());
        let mut selector = OutputSelector::default();
        for name in skip {
            selector = selector.without(*name);
        }
        for out in outputs {
            let value = match out.float {
                Float::F32 => Tensor::<f32>::new(&allocator, out.shape).map_err(fail)?.into_dyn(),
                Float::F16 => Tensor::<half::f16>::new(&allocator, out.shape).map_err(fail)?.into_dyn(),
            };
            selector = selector.preallocate(out.name, value);
        }
        Ok(RunOptions::new().map_err(fail)?.with_outputs(selector))
    }

    /// A copy of `value` (a cache tensor compacted in host memory) on this device, for a cache
    /// entry no later step rewrites (cross-attention over the encoder output).
    pub fn upload(&self, value: &DynValue) -> Result<DynValue> {
        let fail = |e: ort::Error| Error::Model(format!("copying a cache tensor to {}: {e}", self.name));
        let tensor = value.view().downcast::<DynTensorValueType>().map_err(fail)?;
        Ok(tensor.to(self.device.clone(), self.device_id).map_err(fail)?.into_dyn())
    }
}

/// Whether `vlm.cache_on_device` (`setting`) asks for the cache on the device: unset, on for the
/// GPU providers.
pub fn wanted(setting: Option<bool>, runtime: &Runtime) -> bool {
    setting.unwrap_or(runtime.provider() != ExecutionProvider::Cpu)
}

/// `model_info.cache`: `host` (onnxruntime's own outputs) or the device the cache outputs are
/// preallocated on.
pub fn location(device: Option<&CacheDevice>) -> &str {
    device.map_or("host", |d| d.name.as_str())
}
