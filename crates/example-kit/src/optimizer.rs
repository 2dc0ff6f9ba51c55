//! The optimizers compared in the examples: NovoGrad (ours), and Burn's AdamW and SGD with
//! momentum. In Burn 0.22 each config's `init()` gives the same `ModuleOptimizer` type, which is
//! what the Learner takes.

use std::fmt;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use burn_novograd::NovoGradConfig;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// An optimizer to train with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// NovoGrad, β = (0.95, 0.98), ε = 1e-8 (the paper's).
    Novograd,
    /// Burn's AdamW, β = (0.9, 0.999), ε = 1e-8.
    Adamw,
    /// Burn's SGD with momentum 0.9 (no dampening, no Nesterov).
    Sgd,
}

impl fmt::Display for OptimizerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

/// Learning rate and weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for SGD, in the moment for NovoGrad).
    pub weight_decay: f32,
}

/// The default [`Hyper`] of each optimizer for one task.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// NovoGrad's.
    pub novograd: Hyper,
    /// AdamW's.
    pub adamw: Hyper,
    /// SGD's.
    pub sgd: Hyper,
}

/// An optimizer with its hyperparameters: what a run trains with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub name: OptimizerName,
    /// Its learning rate and weight decay.
    #[serde(flatten)]
    pub hyper: Hyper,
}

impl OptimizerSpec {
    /// `name` with the task's defaults, overridden by `lr` and `weight_decay` when given.
    pub fn new(
        name: OptimizerName,
        defaults: &Defaults,
        lr: Option<f64>,
        weight_decay: Option<f32>,
    ) -> Self {
        let default = match name {
            OptimizerName::Novograd => defaults.novograd,
            OptimizerName::Adamw => defaults.adamw,
            OptimizerName::Sgd => defaults.sgd,
        };
        Self {
            name,
            hyper: Hyper {
                lr: lr.unwrap_or(default.lr),
                weight_decay: weight_decay.unwrap_or(default.weight_decay),
            },
        }
    }

    /// NovoGrad's configuration for this spec (`None` for the other optimizers).
    pub fn novograd(&self) -> Option<NovoGradConfig> {
        (self.name == OptimizerName::Novograd)
            .then(|| NovoGradConfig::new().with_weight_decay(self.hyper.weight_decay))
    }

    /// The optimizer.
    pub fn init(&self) -> AnyOptimizer {
        let decay = self.hyper.weight_decay;
        match self.name {
            OptimizerName::Novograd => NovoGradConfig::new().with_weight_decay(decay).init(),
            OptimizerName::Adamw => AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .init(),
            OptimizerName::Sgd => SgdConfig::new()
                .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
                .with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay)))
                .init(),
        }
    }

    /// Which NovoGrad step parameters on `device` take, in words: `"fused (flex)"` or
    /// `"tensor ops"`; `None` for the other optimizers.
    pub fn novograd_step(&self, device: &Device) -> Option<String> {
        let path = self.novograd()?.build().fused_path(device);
        Some(path.map_or_else(
            || "tensor ops".to_string(),
            |path| format!("fused ({path})"),
        ))
    }
}

/// Any of the compared optimizers: in Burn 0.22 they share one type, `ModuleOptimizer`.
pub type AnyOptimizer = ModuleOptimizer;

/// Bytes of `optimizer`'s state as Burn's burnpack record writes it (each tensor padded to
/// 256 bytes, plus metadata).
pub fn state_bytes(optimizer: &ModuleOptimizer) -> usize {
    optimizer
        .into_bytes()
        .expect("optimizer records serialize")
        .len()
}
