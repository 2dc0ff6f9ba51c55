//! The one seam for fast paths. [`NovoGrad`]'s tensor-op step is the executable specification;
//! a backend whose tensors a fused step understands takes this path instead: burn-ndarray
//! (cargo feature `ndarray`, on by default) and Burn's CubeCL backends with or without Fusion,
//! on WGPU (feature `wgpu`) and CUDA (feature `cuda`). Every other backend keeps the
//! tensor-op step. The choice is a type check on the backend's tensor primitive, so no bound is
//! added to `SimpleOptimizer<B>` and no Burn backend is lost. `NovoGradConfig::fused = false`
//! forces the tensor-op path.
//!
//! A fused step computes the same per-tensor scalars as the tensor-op step, from `‖g‖²` in one
//! pass over `g`, then updates `w` and `m` in a second pass: on the CPU with the maths of `cpu`,
//! on a GPU with two kernels (`cube`).

#[cfg(feature = "ndarray")]
mod cpu;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "ndarray")]
mod ndarray;
#[cfg(any(feature = "ndarray", feature = "cube"))]
mod primitive;

use burn::optim::LearningRate;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::optimizer::{NovoGrad, NovoGradState};

/// The inputs of a step, handed back when no fused step exists for the backend.
pub(crate) type Inputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, NovoGradState<B, D>);

/// Runs a fused step when one exists for `B`, or hands the inputs back.
pub(crate) fn step<B: Backend, const D: usize>(
    novograd: &NovoGrad,
    lr: LearningRate,
    inputs: Inputs<B, D>,
) -> Result<(Tensor<B, D>, NovoGradState<B, D>), Inputs<B, D>> {
    let unfused = Err(inputs);
    #[cfg(feature = "ndarray")]
    let unfused = unfused.or_else(|inputs| ndarray::step(novograd, lr, inputs));
    #[cfg(feature = "wgpu")]
    let unfused = unfused
        .or_else(|inputs| cube::step::<cubecl::wgpu::WgpuRuntime, B, D>(novograd, lr, inputs));
    #[cfg(feature = "cuda")]
    let unfused = unfused
        .or_else(|inputs| cube::step::<cubecl::cuda::CudaRuntime, B, D>(novograd, lr, inputs));
    let _ = (novograd, lr);
    unfused
}
