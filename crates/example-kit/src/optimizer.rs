//! The optimizers compared in the examples: NovoGrad (ours), and Burn's AdamW, SGD with
//! momentum, LAMB (the other layer-wise adaptive method) and Lion. In Burn 0.22 each config's
//! `init()` gives the same `ModuleOptimizer` type, which is what the Learner takes.

use std::fmt;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, LambConfig, LionConfig, ModuleOptimizer, Optimizer, SgdConfig};
use burn::tensor::Device;
use burn_novograd::{MomentDtype, NovoGradConfig, WeightDecayMode};
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
    /// Burn's LAMB (You et al. 2019), β = (0.9, 0.999), ε = 1e-6, trust ratio on.
    Lamb,
    /// Burn's Lion (Chen et al. 2023), β = (0.9, 0.99).
    Lion,
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
    /// Weight decay (decoupled for AdamW and Lion, L2 for SGD, in the moment for NovoGrad,
    /// added to the update before the trust ratio for LAMB).
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
    /// LAMB's.
    pub lamb: Hyper,
    /// Lion's.
    pub lion: Hyper,
}

/// NovoGrad's options besides learning rate and weight decay (`NovoGradConfig`'s fields of the
/// same names; the defaults are its defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NovoGradOptions {
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to `√v`.
    pub epsilon: f32,
    /// Where weight decay enters.
    pub weight_decay_mode: WeightDecayMode,
    /// Multiply the moment's input by `1 − β1`.
    pub grad_averaging: bool,
    /// Normalise by the running maximum of `v`.
    pub amsgrad: bool,
    /// Adam-style bias correction of both moments.
    pub bias_correction: bool,
    /// How the first moment is stored (absent from the config.json of runs before it existed:
    /// the parameter's dtype).
    #[serde(default = "param_moment")]
    pub moment_dtype: MomentDtype,
}

/// The first moment's storage of runs that do not name one.
fn param_moment() -> MomentDtype {
    MomentDtype::Param
}

impl Default for NovoGradOptions {
    fn default() -> Self {
        let config = NovoGradConfig::new();
        Self {
            beta_1: config.beta_1,
            beta_2: config.beta_2,
            epsilon: config.epsilon,
            weight_decay_mode: config.weight_decay_mode,
            grad_averaging: config.grad_averaging,
            amsgrad: config.amsgrad,
            bias_correction: config.bias_correction,
            moment_dtype: config.moment_dtype,
        }
    }
}

/// An optimizer with its hyperparameters: what a run trains with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub name: OptimizerName,
    /// Its learning rate and weight decay.
    #[serde(flatten)]
    pub hyper: Hyper,
    /// NovoGrad's other options (`None` for the other optimizers).
    pub novograd: Option<NovoGradOptions>,
    /// Clip each parameter's gradient to this L2 norm before the step.
    pub grad_clip_norm: Option<f32>,
    /// No weight decay on biases and normalisation parameters.
    pub no_decay_bias_norm: bool,
}

/// Parameters that `--no-decay-bias-norm` exempts from weight decay, by module path: biases,
/// and the scale (`gamma`) and shift (`beta`) of Burn's normalisation layers.
pub const NO_DECAY_PATHS: [&str; 3] = [r"(^|\.)bias$", r"(^|\.)gamma$", r"(^|\.)beta$"];

impl OptimizerSpec {
    /// `name` with the task's defaults, overridden by `lr` and `weight_decay` when given;
    /// NovoGrad's other options at their defaults, no clipping, decay on every parameter.
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
            OptimizerName::Lamb => defaults.lamb,
            OptimizerName::Lion => defaults.lion,
        };
        Self {
            name,
            hyper: Hyper {
                lr: lr.unwrap_or(default.lr),
                weight_decay: weight_decay.unwrap_or(default.weight_decay),
            },
            novograd: (name == OptimizerName::Novograd).then(NovoGradOptions::default),
            grad_clip_norm: None,
            no_decay_bias_norm: false,
        }
    }

    /// Why this spec cannot train, in the command line's words, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        let lr = self.hyper.lr;
        if !(lr > 0.0 && lr <= 1.0) {
            return Err(format!(
                "--lr {lr}: Burn's learning-rate schedulers take a peak rate in (0, 1]"
            ));
        }
        let decay = self.hyper.weight_decay;
        if !(decay.is_finite() && decay >= 0.0) {
            return Err(format!(
                "--weight-decay {decay}: expected a finite value >= 0"
            ));
        }
        if let Some(norm) = self.grad_clip_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(format!(
                "--grad-clip-norm {norm}: expected a finite value > 0"
            ));
        }
        if let Some(config) = self.novograd_config() {
            config.validate().map_err(|error| {
                format!(
                    "--{} {}: expected {}",
                    error.field.replace('_', "-"),
                    error.value,
                    error.expected
                )
            })?;
        }
        Ok(())
    }

    /// NovoGrad's full configuration for this spec (`None` for the other optimizers).
    pub fn novograd_config(&self) -> Option<NovoGradConfig> {
        let options = self.novograd?;
        Some(
            NovoGradConfig::new()
                .with_beta_1(options.beta_1)
                .with_beta_2(options.beta_2)
                .with_epsilon(options.epsilon)
                .with_weight_decay(self.hyper.weight_decay)
                .with_weight_decay_mode(options.weight_decay_mode)
                .with_grad_averaging(options.grad_averaging)
                .with_amsgrad(options.amsgrad)
                .with_bias_correction(options.bias_correction)
                .with_moment_dtype(options.moment_dtype)
                .with_grad_clipping(self.grad_clipping()),
        )
    }

    fn adamw_config(&self) -> AdamWConfig {
        AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(self.hyper.weight_decay)
            .with_grad_clipping(self.grad_clipping())
    }

    fn sgd_config(&self) -> SgdConfig {
        let decay = self.hyper.weight_decay;
        SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
            .with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay)))
            .with_gradient_clipping(self.grad_clipping())
    }

    fn lamb_config(&self) -> LambConfig {
        LambConfig::new()
            .with_weight_decay(self.hyper.weight_decay)
            .with_grad_clipping(self.grad_clipping())
    }

    fn lion_config(&self) -> LionConfig {
        LionConfig::new()
            .with_weight_decay(self.hyper.weight_decay)
            .with_grad_clipping(self.grad_clipping())
    }

    fn grad_clipping(&self) -> Option<GradientClippingConfig> {
        self.grad_clip_norm.map(GradientClippingConfig::Norm)
    }

    /// The Burn configuration of the optimizer, every field, as JSON (for `config.json`).
    pub fn burn_config(&self) -> serde_json::Value {
        let json = match self.name {
            OptimizerName::Novograd => serde_json::to_value(self.novograd_config()),
            OptimizerName::Adamw => serde_json::to_value(self.adamw_config()),
            OptimizerName::Sgd => serde_json::to_value(self.sgd_config()),
            OptimizerName::Lamb => serde_json::to_value(self.lamb_config()),
            OptimizerName::Lion => serde_json::to_value(self.lion_config()),
        };
        json.expect("Burn configs serialize")
    }

    /// The optimizer; with `no_decay_bias_norm`, parameters matching [`NO_DECAY_PATHS`] go to
    /// a group of the same optimizer without weight decay (and with the same clipping).
    pub fn init(&self) -> AnyOptimizer {
        match self.name {
            OptimizerName::Novograd => {
                self.assemble(|spec| spec.novograd_config().expect("NovoGrad's options").build())
            }
            OptimizerName::Adamw => self.assemble(|spec| spec.adamw_config().build()),
            OptimizerName::Sgd => self.assemble(|spec| spec.sgd_config().build()),
            OptimizerName::Lamb => self.assemble(|spec| spec.lamb_config().build()),
            OptimizerName::Lion => self.assemble(|spec| spec.lion_config().build()),
        }
    }

    /// The `ModuleOptimizer` of the per-tensor optimizer `build` makes of a spec: this spec's
    /// for every parameter, with its clipping, and with `no_decay_bias_norm` a group of the
    /// same spec without weight decay.
    fn assemble<O: Optimizer + 'static>(&self, build: impl Fn(&Self) -> O) -> AnyOptimizer {
        let clipping = || self.grad_clipping().map(|clipping| clipping.init());
        let mut optimizer = ModuleOptimizer::from(build(self));
        if let Some(clipping) = clipping() {
            optimizer = optimizer.with_grad_clipping(clipping);
        }
        if !self.no_decay_bias_norm {
            return optimizer;
        }
        let group = ParamGroup::from_any_regexes(NO_DECAY_PATHS.to_vec()).expect("valid regexes");
        let undecayed = Self {
            hyper: Hyper {
                weight_decay: 0.0,
                ..self.hyper
            },
            ..*self
        };
        optimizer.with_group(group, build(&undecayed), clipping())
    }

    /// Which NovoGrad step parameters on `device` take, in words: `"fused (flex)"` or
    /// `"tensor ops"`; `None` for the other optimizers.
    pub fn novograd_step(&self, device: &Device) -> Option<String> {
        let path = self.novograd_config()?.build().fused_path(device);
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
