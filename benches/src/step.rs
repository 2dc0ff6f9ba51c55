//! Timing one optimizer step over a whole parameter set through Burn's per-tensor
//! `burn::optim::Optimizer` trait, as `ModuleOptimizer` drives it: each parameter is handed over
//! by value (`ModuleOptimizer` passes `tensor.inner()`), never while a clone of it is held (a
//! held clone makes an in-place step such as Flex's copy the buffer, which once cost a 10×
//! wrong measurement), with the same gradients every step and the device synchronised inside
//! the timed region.

use std::time::Duration;

use burn::module::Param;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, Optimizer, SgdConfig};
use burn::tensor::{DType, Device, Tensor};
use burn_novograd::{MomentDtype, NovoGradConfig};
use example_kit::Hyper;
use serde::Serialize;

use crate::sets::ParamSet;
use crate::timing::time;

/// Learning rate and weight decay of the timed steps (the values do not change the work).
pub const HYPER: Hyper = Hyper {
    lr: 1e-3,
    weight_decay: 1e-3,
};

/// The least memory traffic of a NovoGrad step, in bytes per f32 parameter: read `g` for the
/// norm, then read `w` and `m` and write them back for the update (5 × 4 bytes). The update's
/// read of `g` comes from the cache: each thread updates the part of a tensor it has just
/// summed, and that part fits in the last-level cache.
pub const NOVOGRAD_BYTES_PER_PARAM: f64 = 20.0;

/// The same with `m` stored in bf16: 4 + 2 × 4 + 2 × 2 bytes.
pub const NOVOGRAD_BF16_MOMENT_BYTES_PER_PARAM: f64 = 16.0;

/// The same with `m` stored in 8 bits and an f32 scale per 128 values: 4 + 2 × 4 + 2 × 1.03125
/// bytes.
pub const NOVOGRAD_INT8_MOMENT_BYTES_PER_PARAM: f64 = 14.0625;

/// An optimizer whose step is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// NovoGrad, with the backend's fused step where there is one (the default).
    Novograd,
    /// NovoGrad's fused steps gathered into the multi-tensor step (`burn_novograd::multi_tensor`);
    /// only on devices where it runs (CubeCL).
    NovogradMultiTensor,
    /// NovoGrad forced onto the tensor-op step (`NovoGradConfig::fused = false`).
    NovogradTensorOps,
    /// NovoGrad with its first moment stored in bf16 (`MomentDtype::Bf16`), fused where the
    /// device allows; only on devices with bf16 tensors.
    NovogradBf16Moment,
    /// NovoGrad with its first moment in 8 bits per block (`MomentDtype::Int8`): fused on Flex,
    /// Burn's quantisation ops in the tensor-op step elsewhere.
    NovogradInt8Moment,
    /// Burn's AdamW, β = (0.9, 0.999), ε = 1e-8.
    Adamw,
    /// Burn's SGD with momentum 0.9 (no dampening), L2 weight decay.
    Sgd,
}

impl Contender {
    /// Every contender, in report order.
    pub const ALL: [Contender; 7] = [
        Self::Novograd,
        Self::NovogradMultiTensor,
        Self::NovogradTensorOps,
        Self::NovogradBf16Moment,
        Self::NovogradInt8Moment,
        Self::Adamw,
        Self::Sgd,
    ];

    /// NovoGrad's configuration of the timed steps, fused where the device allows.
    pub fn novograd() -> NovoGradConfig {
        NovoGradConfig::new().with_weight_decay(HYPER.weight_decay)
    }

    /// Whether this optimizer's step runs on `device`: a bf16 moment needs bf16 tensors, the
    /// multi-tensor step a CubeCL device.
    pub fn runs_on(self, device: &Device) -> bool {
        match self {
            Self::NovogradBf16Moment => device.supports_dtype(DType::BF16),
            Self::NovogradMultiTensor => burn_novograd::tensors_per_launch(device, 1).is_some(),
            _ => true,
        }
    }

    /// The least memory traffic of this NovoGrad step, in bytes per f32 parameter (`None` for
    /// the other optimizers).
    pub fn bytes_per_param(self) -> Option<f64> {
        match self {
            Self::Novograd | Self::NovogradMultiTensor | Self::NovogradTensorOps => {
                Some(NOVOGRAD_BYTES_PER_PARAM)
            }
            Self::NovogradBf16Moment => Some(NOVOGRAD_BF16_MOMENT_BYTES_PER_PARAM),
            Self::NovogradInt8Moment => Some(NOVOGRAD_INT8_MOMENT_BYTES_PER_PARAM),
            Self::Adamw | Self::Sgd => None,
        }
    }

    /// This optimizer stepping `set` on `device` (a device without autodiff, where
    /// `ModuleOptimizer` steps), weights and gradients drawn with `seed`.
    pub fn bench(self, set: ParamSet, device: &Device, seed: u64) -> Box<dyn TimedStep> {
        device.seed(seed);
        let decay = HYPER.weight_decay;
        match self {
            Self::Novograd => StepBench::boxed(Self::novograd().build(), set, device),
            Self::NovogradMultiTensor => {
                let mut bench = StepBench::new(Self::novograd().build(), set, device);
                bench.multi_tensor = true;
                Box::new(bench)
            }
            Self::NovogradTensorOps => {
                StepBench::boxed(Self::novograd().with_fused(false).build(), set, device)
            }
            Self::NovogradBf16Moment | Self::NovogradInt8Moment => {
                let moment_dtype = match self {
                    Self::NovogradBf16Moment => MomentDtype::Bf16,
                    _ => MomentDtype::Int8,
                };
                let config = Self::novograd().with_moment_dtype(moment_dtype);
                StepBench::boxed(config.build(), set, device)
            }
            Self::Adamw => StepBench::boxed(
                AdamWConfig::new()
                    .with_epsilon(1e-8)
                    .with_weight_decay(decay)
                    .build(),
                set,
                device,
            ),
            Self::Sgd => StepBench::boxed(
                SgdConfig::new()
                    .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
                    .with_weight_decay(Some(WeightDecayConfig::new(decay)))
                    .build(),
                set,
                device,
            ),
        }
    }
}

impl std::fmt::Display for Contender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Novograd => "novograd",
            Self::NovogradMultiTensor => "novograd (multi-tensor)",
            Self::NovogradTensorOps => "novograd (tensor ops)",
            Self::NovogradBf16Moment => "novograd (bf16 moment)",
            Self::NovogradInt8Moment => "novograd (int8 moment)",
            Self::Adamw => "adamw",
            Self::Sgd => "sgd",
        })
    }
}

/// An optimizer step over a parameter set that can be timed; the optimizer's type stays inside.
pub trait TimedStep {
    /// One step of every tensor of the set, timed up to the device having finished it.
    fn step(&mut self) -> Duration;
    /// Bytes of the optimizer's state over the set as `ModuleOptimizer` records it (burnpack,
    /// what a checkpoint stores), after one step of its own on the set.
    fn state_bytes(self: Box<Self>) -> usize;
}

/// The parameters of one rank with their optimizer states, and their gradients.
struct Rank<O: Optimizer, const D: usize> {
    params: Vec<(Tensor<D>, Option<O::State<D>>)>,
    grads: Vec<Tensor<D>>,
}

impl<O: Optimizer, const D: usize> Rank<O, D> {
    fn draw(set: ParamSet, device: &Device) -> Self {
        let (params, grads) = (set.draw::<D>(device).into_iter())
            .map(|(param, grad)| ((param, None), grad))
            .unzip();
        Self { params, grads }
    }

    /// Steps every tensor, each parameter handed over by value; the gradient handed over is a
    /// clone, which shares the kept gradient's buffer.
    fn step(&mut self, optimizer: &O) {
        self.params = (std::mem::take(&mut self.params).into_iter())
            .zip(&self.grads)
            .map(|((param, state), grad)| optimizer.step(HYPER.lr, param, grad.clone(), state))
            .collect();
    }

    /// The parameters as module parameters (with autodiff, as `ModuleOptimizer` expects),
    /// their gradients registered in `grads`.
    fn into_params(self, grads: &mut GradientsParams) -> Vec<Param<Tensor<D>>> {
        (self.params.into_iter().zip(self.grads))
            .map(|((param, _), grad)| {
                let param = Param::from_tensor(param.autodiff());
                grads.register(param.id, grad);
                param
            })
            .collect()
    }
}

/// One optimizer stepping one parameter set (its tensors of rank 1, 2 and 4).
struct StepBench<O: Optimizer> {
    optimizer: O,
    vectors: Rank<O, 1>,
    matrices: Rank<O, 2>,
    kernels: Rank<O, 4>,
    device: Device,
    /// Every step inside `burn_novograd::multi_tensor`.
    multi_tensor: bool,
}

impl<O: Optimizer> StepBench<O> {
    fn boxed(optimizer: O, set: ParamSet, device: &Device) -> Box<dyn TimedStep> {
        Box::new(Self::new(optimizer, set, device))
    }

    fn new(optimizer: O, set: ParamSet, device: &Device) -> Self {
        let bench = Self {
            optimizer,
            vectors: Rank::draw(set, device),
            matrices: Rank::draw(set, device),
            kernels: Rank::draw(set, device),
            device: device.clone(),
            multi_tensor: false,
        };
        let tensors = bench.vectors.grads.len() + bench.matrices.grads.len();
        assert_eq!(
            tensors + bench.kernels.grads.len(),
            set.shapes().len(),
            "{set:?} holds tensors of ranks other than 1, 2 and 4"
        );
        bench
    }
}

impl<O: Optimizer> TimedStep for StepBench<O> {
    fn step(&mut self) -> Duration {
        time(|| {
            let mut step_all = || {
                self.vectors.step(&self.optimizer);
                self.matrices.step(&self.optimizer);
                self.kernels.step(&self.optimizer);
            };
            match self.multi_tensor {
                true => burn_novograd::multi_tensor(step_all),
                false => step_all(),
            }
            self.device.sync().expect("the device finishes the step");
        })
    }

    fn state_bytes(self: Box<Self>) -> usize {
        let mut grads = GradientsParams::new();
        let module = (
            self.vectors.into_params(&mut grads),
            self.matrices.into_params(&mut grads),
            self.kernels.into_params(&mut grads),
        );
        let mut optimizer = ModuleOptimizer::from(self.optimizer);
        let _ = optimizer.step(HYPER.lr, module, grads);
        example_kit::state_bytes(&optimizer)
    }
}
