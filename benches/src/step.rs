//! Timing `OptimizerAdaptor::step` on a parameter set, device synchronised inside the timed
//! region.

use std::time::Duration;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use burn_novograd::NovoGradConfig;
use example_kit::{AnyOptimizer, Hyper, OptimizerName, OptimizerSpec};
use serde::Serialize;

use crate::sets::{Gradients, ParamSet, Params};
use crate::timing::time;

/// Learning rate and weight decay of the timed steps (the values do not change the work).
pub const HYPER: Hyper = Hyper {
    lr: 1e-3,
    weight_decay: 1e-3,
};

/// An optimizer whose step is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// NovoGrad, with the backend's fused step where there is one (the default).
    Novograd,
    /// NovoGrad forced onto the tensor-op step (`NovoGradConfig::fused = false`).
    NovogradTensorOps,
    /// Burn's AdamW.
    Adamw,
    /// Burn's SGD with momentum.
    Sgd,
}

impl Contender {
    /// Every contender, in report order.
    pub const ALL: [Contender; 4] = [
        Self::Novograd,
        Self::NovogradTensorOps,
        Self::Adamw,
        Self::Sgd,
    ];

    /// The optimizer, with [`HYPER`].
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(self) -> AnyOptimizer<M, B> {
        let spec = |name| OptimizerSpec { name, hyper: HYPER };
        match self {
            Self::Novograd => spec(OptimizerName::Novograd).init(),
            Self::NovogradTensorOps => AnyOptimizer::NovoGrad(
                NovoGradConfig::new()
                    .with_weight_decay(HYPER.weight_decay)
                    .with_fused(false)
                    .init(),
            ),
            Self::Adamw => spec(OptimizerName::Adamw).init(),
            Self::Sgd => spec(OptimizerName::Sgd).init(),
        }
    }
}

impl std::fmt::Display for Contender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Novograd => "novograd",
            Self::NovogradTensorOps => "novograd (tensor ops)",
            Self::Adamw => "adamw",
            Self::Sgd => "sgd",
        })
    }
}

/// One optimizer stepping one parameter set with the same gradients every step.
pub struct StepBench<B: AutodiffBackend> {
    optimizer: AnyOptimizer<Params<B>, B>,
    params: Option<Params<B>>,
    gradients: Gradients<B::InnerBackend>,
    device: B::Device,
}

impl<B: AutodiffBackend> StepBench<B> {
    /// `optimizer` on `set`, weights and gradients drawn with `seed`.
    pub fn new(set: ParamSet, optimizer: Contender, device: &B::Device, seed: u64) -> Self {
        B::seed(device, seed);
        let params = Params::init(set, device);
        let gradients = params.gradients(device);
        Self {
            optimizer: optimizer.init(),
            params: Some(params),
            gradients,
            device: device.clone(),
        }
    }

    /// One step, timed up to the device having finished it.
    pub fn step(&mut self) -> Duration {
        let grads = self.gradients.to_params();
        let params = self
            .params
            .take()
            .expect("params are put back after every step");
        let mut stepped = None;
        let elapsed = time(|| {
            stepped = Some(self.optimizer.step(HYPER.lr, params, grads));
            B::sync(&self.device).expect("the device finishes the step");
        });
        self.params = stepped;
        elapsed
    }

    /// Bytes of the optimizer's state through Burn's full-precision recorder.
    pub fn state_bytes(&self) -> usize {
        self.optimizer.state_bytes()
    }
}

/// Bytes a NovoGrad step moves per f32 parameter at best: g read twice (norm, update), w and m
/// read and written once.
pub const NOVOGRAD_BYTES_PER_PARAM: f64 = 24.0;
