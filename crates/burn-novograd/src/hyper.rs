//! The hyper-parameters of a step as one plain, copyable value: what the tensor-op step and
//! every fused step read, so that the fused code never reaches into the optimizer.

use crate::config::{NovoGradConfig, WeightDecayMode};

/// The numbers of one NovoGrad step besides the learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hyper {
    /// β1, the first moment's decay.
    pub beta_1: f32,
    /// β2, the second moment's decay.
    pub beta_2: f32,
    /// ε, added to `√(v̂ + ε_root)`.
    pub epsilon: f32,
    /// ε_root, added to `v̂` under the root.
    pub epsilon_root: f32,
    /// `d`, the weight decay.
    pub weight_decay: f32,
    /// Where `d·w` enters the step.
    pub weight_decay_mode: WeightDecayMode,
    /// `a`: 1, or `1 − β1` with grad averaging.
    pub moment_input_scale: f32,
    /// Divide `v` by `1 − β2^t` and `m` by `1 − β1^t`.
    pub bias_correction: bool,
}

impl Hyper {
    pub(crate) fn new(config: &NovoGradConfig) -> Self {
        Self {
            beta_1: config.beta_1,
            beta_2: config.beta_2,
            epsilon: config.epsilon,
            epsilon_root: config.epsilon_root,
            weight_decay: config.weight_decay,
            weight_decay_mode: config.weight_decay_mode,
            moment_input_scale: match config.grad_averaging {
                true => 1.0 - config.beta_1,
                false => 1.0,
            },
            bias_correction: config.bias_correction,
        }
    }
}
