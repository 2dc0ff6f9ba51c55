//! The multi-tensor step: a module's NovoGrad steps launched together.

use burn::tensor::Device;

use crate::fused;

/// Runs `step` (a step of the module's optimizer, e.g. `optim.step(lr, model, grads)`) with
/// NovoGrad's fused CubeCL steps (WGPU, CUDA) gathered, and launches them together: for a
/// chunk of tensors that one cube covers each (up to 8,192 f32 elements), one kernel launch
/// (one cube per tensor: `‖g‖²`, `v`, the skip decision, the state and the update of `w` and
/// `m`); for a chunk of larger ones, three (partial sums of `‖g‖²`; one cube per tensor for
/// `v`, the skip decision and the state; the update), as each tensor takes on its own. This is
/// the multi-tensor step of Apex's `FusedNovoGrad` and PyTorch's `foreach` optimizers; a
/// transformer has hundreds of small tensors (biases, norms), whose launches decide the step's
/// time on a GPU.
///
/// A chunk is launched once it holds as many tensors as one launch binds
/// ([`tensors_per_launch`]: the kernel binds five buffers per small tensor, six with amsgrad,
/// three per larger one; on CUDA 204 small or 340 larger tensors, on WGPU as the adapter's
/// storage buffers per shader stage allow: thousands on NVIDIA and AMD drivers, 5 or 9 on
/// Mesa's lavapipe), or [`ELEMENTS_PER_LAUNCH`] elements, and at the end; so the launches do
/// not grow with the number of small tensors. The tensors of a launch share a device, vector
/// width (4 elements when the tensor's length is a multiple of 4), units per cube (fewer for a
/// tensor of up to 4,096 f32 elements), step-counter dtype, amsgrad, hyper-parameters and
/// learning rate (a parameter group of `ModuleOptimizer` launches apart). Under Burn's Fusion each gathered step is a
/// custom operation that launches nothing, and one more per chunk launches them.
///
/// With Burn's `Learner`, override `TrainStep::optimize` in your model:
///
/// ```text
/// fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
///     burn_novograd::multi_tensor(|| optim.step(lr, self, grads))
/// }
/// ```
///
/// Everything else stays as it is: `NovoGradConfig::new().init()`, the state and its records,
/// gradient clipping, parameter groups, resuming. What `step` does besides NovoGrad's CubeCL
/// steps is unchanged: parameters on other backends (Flex), of other dtypes or with
/// `fused = false`, and other optimizers, step as they do outside. The results are bit for bit
/// those of the per-tensor fused step (tested on WGPU through `ModuleOptimizer`, with a
/// parameter group and a record round trip).
///
/// A gathered step returns the tensors it will write in place: they hold their new values once
/// `multi_tensor` returns. Do not read them inside `step`: on plain CubeCL they still hold the
/// values before the step, and under Fusion they have no values yet (the read fails). A tensor
/// whose buffers are shared, with a clone held elsewhere, takes its own step into new buffers,
/// as outside. If `step` panics, the steps gathered since the last launch are not launched: on
/// plain CubeCL their tensors keep their values from before the step; under Fusion they have no
/// values, so an optimizer whose step panicked inside `multi_tensor` must not be used again.
/// Nested calls join the outermost one.
///
/// ```
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::GradientsParams;
/// use burn::tensor::{Device, Tensor};
/// use burn_novograd::NovoGradConfig;
///
/// let device = Device::flex().autodiff(); // Flex: the step is as without `multi_tensor`.
/// let mut model: Linear = LinearConfig::new(4, 2).init(&device);
/// let mut optimizer = NovoGradConfig::new().init();
///
/// let loss = model.forward(Tensor::<2>::ones([8, 4], &device)).powi_scalar(2).mean();
/// let grads = GradientsParams::from_grads(loss.backward(), &model);
/// model = burn_novograd::multi_tensor(|| optimizer.step(1e-2, model, grads));
/// ```
pub fn multi_tensor<R>(step: impl FnOnce() -> R) -> R {
    fused::multi_tensor(step)
}

/// How many steps of tensors of `elements` f32 elements each (of one group, without amsgrad)
/// [`multi_tensor`] launches together on `device` (one kernel launch per this many tensors that
/// one cube covers, three per this many larger ones), or `None` where no fused CubeCL step runs.
pub fn tensors_per_launch(device: &Device, elements: usize) -> Option<usize> {
    fused::tensors_per_launch(device, elements)
}

/// Elements after which [`multi_tensor`] launches the steps gathered so far, whatever their
/// number: the update reads each gradient again after the norm pass read it, from the cache
/// while a launch's gradients fit there (4 MiB of f32: a GPU's L2, a CPU's L3 under a CPU
/// Vulkan driver).
pub const ELEMENTS_PER_LAUNCH: usize = 1 << 20;
