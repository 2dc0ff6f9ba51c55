//! The one seam for fast paths. [`NovoGrad`](crate::NovoGrad)'s tensor-op step is the
//! executable specification; parameters on a backend that a fused step knows take that step
//! instead: Burn's Flex CPU backend (cargo feature `flex`, on by default) and Burn's CubeCL
//! backend on WGPU (feature `wgpu`), CUDA (feature `cuda`) and the CPU (feature `cpu`), under
//! Burn's Fusion with the feature `fusion` (a Fusion build without it takes the tensor-op step).
//! The choice is made from the parameter's device and dtypes before any tensor is consumed;
//! every other backend or dtype keeps the tensor-op step, and `NovoGradConfig::fused = false`
//! forces it.
//!
//! A fused step computes the same per-tensor scalars as the tensor-op step, from `‖g‖²` in one
//! pass over `g`, then updates `w` and `m` in a second pass: on the CPU with the maths of `cpu`,
//! with CubeCL with one kernel per small tensor and three per large one, or three per chunk of
//! tensors inside [`multi_tensor`] (`cube`).

// A declined step hands `Inputs` back by value: about 4 KB with Burn 0.22.1's `Tensor` once the
// CubeCL backend is compiled in, one move per parameter tensor and step, nothing next to a step.
#![allow(clippy::result_large_err)]

#[cfg(feature = "flex")]
mod cpu;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "flex")]
mod flex;

use burn::optim::LearningRate;
use burn::tensor::{Device, Tensor};

use crate::hyper::Hyper;
use crate::state::NovoGradState;

/// The inputs of a step, handed back when no fused step takes them.
pub(crate) type Inputs<const D: usize> = (Tensor<D>, Tensor<D>, NovoGradState<D>);

/// Runs a fused step when one takes the inputs, or hands them back. A CubeCL step inside
/// [`multi_tensor`] may be gathered and launched later with others.
pub(crate) fn step<const D: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    inputs: Inputs<D>,
) -> Result<(Tensor<D>, NovoGradState<D>), Inputs<D>> {
    let unfused = Err(inputs);
    #[cfg(feature = "flex")]
    let unfused = unfused.or_else(|inputs| flex::step(hyper, lr, inputs));
    #[cfg(feature = "cube")]
    let unfused = unfused.or_else(|inputs| cube::step(hyper, lr, inputs));
    let _ = (hyper, lr);
    unfused
}

/// The block sizes an 8-bit `m` may take, the largest first (see `MomentDtype::Int8`): powers of
/// two, so each divides the first.
pub(crate) const INT8_BLOCKS: [usize; 4] = [128, 64, 32, 16];

/// The block size of an 8-bit moment that a fused step reads: `Q8S` with one f32 scale per
/// block of one of [`INT8_BLOCKS`] values of the last axis and no per-tensor scale.
#[cfg(any(feature = "flex", feature = "cube"))]
fn int8_blocks(dtype: burn::tensor::DType) -> Option<usize> {
    use burn::tensor::DType;
    use burn::tensor::quantization::{QuantValue, ScaleDtype};
    let DType::QFloat(scheme) = dtype else {
        return None;
    };
    let block = scheme.block_scale()?;
    let size = block.size.as_slice();
    let single_axis = size.len() == 1 && INT8_BLOCKS.contains(&usize::from(size[0]));
    let plain = scheme.value == QuantValue::Q8S
        && block.dtype == ScaleDtype::F32
        && scheme.tensor_scale().is_none();
    (single_axis && plain).then(|| usize::from(size[0]))
}

/// Runs `step` with the CubeCL steps it makes gathered and launched together at its end.
pub(crate) fn multi_tensor<R>(step: impl FnOnce() -> R) -> R {
    #[cfg(feature = "cube")]
    return cube::multi_tensor(step);
    #[cfg(not(feature = "cube"))]
    step()
}

/// How many steps of tensors of `elements` elements [`multi_tensor`] launches together on
/// `device`, if its step runs there.
pub(crate) fn tensors_per_launch(device: &Device, _elements: usize) -> Option<usize> {
    let device = device.clone().inner();
    let _dispatch = device.as_dispatch();
    #[cfg(feature = "cube")]
    return cube::tensors_per_launch(_dispatch, _elements);
    #[cfg(not(feature = "cube"))]
    None
}

/// The name of the fused step that parameters on `device` take, if any.
pub(crate) fn path(device: &Device) -> Option<&'static str> {
    let device = device.clone().inner();
    let _dispatch = device.as_dispatch();
    #[cfg(feature = "flex")]
    if flex::takes(_dispatch) {
        return Some("flex");
    }
    #[cfg(feature = "cube")]
    if let Some(path) = cube::path(_dispatch) {
        return Some(path);
    }
    None
}
