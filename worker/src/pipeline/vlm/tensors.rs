//! Float tensors the families share: float32 or float16 (the fp16 variants of a transformers.js
//! export), built from and read as f32, and the cache-row compaction of the generation loops.

use docfleet_core::{Error, Result};
use ort::memory::AllocationDevice;
use ort::value::{DynTensorValueType, DynValue, Tensor, TensorElementType, ValueType};

/// A float element type a graph takes or gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    F32,
    F16,
}

impl Float {
    /// The float type of a tensor element type, if it is one this pipeline feeds.
    pub fn of(ty: TensorElementType) -> Option<Float> {
        match ty {
            TensorElementType::Float32 => Some(Float::F32),
            TensorElementType::Float16 => Some(Float::F16),
            _ => None,
        }
    }

    /// A tensor of this type from f32 values.
    pub fn tensor(self, shape: Vec<usize>, values: &[f32]) -> Result<DynValue> {
        let made = match self {
            Float::F32 => Tensor::from_array((shape, values.to_vec())).map(Tensor::into_dyn),
            Float::F16 => {
                Tensor::from_array((shape, values.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>()))
                    .map(Tensor::into_dyn)
            }
        };
        made.map_err(|e| Error::Model(format!("building a tensor: {e}")))
    }
}

/// A float tensor's shape and values as f32.
pub fn read_f32(value: &DynValue, what: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let fail = |e: ort::Error| Error::Model(format!("reading {what}: {e}"));
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(Error::Model(format!("{what} is not a tensor ({other:?})"))),
    };
    match Float::of(ty) {
        Some(Float::F32) => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(fail)?;
            Ok((shape.iter().map(|&d| d.max(0) as usize).collect(), data.to_vec()))
        }
        Some(Float::F16) => {
            let (shape, data) = value.try_extract_tensor::<half::f16>().map_err(fail)?;
            Ok((shape.iter().map(|&d| d.max(0) as usize).collect(), data.iter().map(|v| v.to_f32()).collect()))
        }
        None => Err(Error::Model(format!("{what} is {ty:?}, not a float tensor"))),
    }
}

/// The rows `keep` (dimension 0) of a float tensor, in its own type, in host memory (a cache
/// tensor on a device is copied to the host first; the next step's run takes it back).
pub fn keep_rows(value: &DynValue, keep: &[usize]) -> Result<DynValue> {
    let fail = |e: ort::Error| Error::Model(format!("copying a cache tensor to the host: {e}"));
    let tensor = value.view().downcast::<DynTensorValueType>().map_err(fail)?;
    if !tensor.memory_info().is_cpu_accessible() {
        let host = tensor.to(AllocationDevice::CPU, 0).map_err(fail)?.into_dyn();
        return keep_rows(&host, keep);
    }
    fn rows<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
        value: &DynValue,
        keep: &[usize],
    ) -> Result<DynValue> {
        let fail = |e: ort::Error| Error::Model(format!("compacting a cache tensor: {e}"));
        let (shape, data) = value.try_extract_tensor::<T>().map_err(fail)?;
        let mut dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let row: usize = dims[1..].iter().product();
        let mut out = Vec::with_capacity(keep.len() * row);
        for &r in keep {
            out.extend_from_slice(&data[r * row..(r + 1) * row]);
        }
        dims[0] = keep.len();
        Ok(Tensor::from_array((dims, out)).map_err(fail)?.into_dyn())
    }
    match value.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float16, .. } => rows::<half::f16>(value, keep),
        _ => rows::<f32>(value, keep),
    }
}
