use core::fmt;

use burn::config::Config;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::ModuleOptimizer;

use crate::optimizer::NovoGrad;

/// Where the weight decay `d·w` enters the step.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum WeightDecayMode {
    /// The paper, optax, torch-optimizer, timm and NeMo: the decay is added to the normalised
    /// gradient before it enters the first moment,
    /// `m_t = β1·m_{t−1} + a·(g_t/(√v̂_t + ε) + d·w_t)`, `w_{t+1} = w_t − λ·m_t`.
    InMoment,
    /// NVIDIA Apex `FusedNovoGrad`'s default (`reg_inside_moment=False`): the first moment
    /// averages the raw gradient and both normalisation and decay apply at the update,
    /// `m_t = β1·m_{t−1} + a·g_t`, `w_{t+1} = w_t − λ·(m_t/(√v̂_t + ε) + d·w_t)`.
    OnUpdate,
}

/// How the first moment `m` is stored between steps. The step computes in the parameter's
/// dtype (at least f32 for a narrower storage) whatever the storage; only the stored `m` is
/// narrower.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum MomentDtype {
    /// The parameter's dtype: every reference implementation's choice.
    Param,
    /// bfloat16 (8 bits of precision, f32's range), rounded to nearest, ties to even: half of
    /// an f32 moment's bytes. A stored value is within 2⁻⁸ of the f32 one (relative), and the
    /// step that produced it used the unrounded value.
    Bf16,
    /// 8-bit integers with one f32 scale per block of values, block-wise as in
    /// [Dettmers et al. 2022](https://arxiv.org/abs/2110.02861) but with a linear map: Burn's
    /// symmetric `Q8S` quantization, `m ≈ s·q`, `q ∈ [−127, 127]`, `s = max|m|/127` over the
    /// block, `q` rounded to nearest (ties away from zero). A stored value is within `s/2` of
    /// the f32 one. The block is the largest of 128, 64, 32 and 16 that divides the tensor's
    /// element count (1.03, 1.06, 1.13 or 1.25 bytes per value); a tensor that none divides, or
    /// whose parameter is not f32, keeps `m` in the parameter's dtype, as does every tensor on the
    /// deprecated ndarray backend (its block-wise quantisation fails on rank-4 tensors). The
    /// fused Flex step reads and writes the codes and scales directly (same scales and
    /// rounding as Burn's Flex quantisation), and so do the CubeCL kernels (WGPU, CUDA, CPU; one
    /// unit per block, each tensor launched at once, not gathered by
    /// [`multi_tensor`](crate::multi_tensor)); other backends take the tensor-op step through
    /// Burn's quantisation ops.
    Int8,
}

/// [`NovoGrad`] configuration. The defaults are the paper's
/// ([Ginsburg et al. 2019](https://arxiv.org/abs/1905.11286)).
///
/// ```
/// use burn_novograd::NovoGradConfig;
///
/// let optimizer = NovoGradConfig::new()
///     .with_beta_1(0.95)
///     .with_beta_2(0.98)
///     .with_weight_decay(1e-3)
///     .build();
/// ```
#[derive(Config, Debug)]
pub struct NovoGradConfig {
    /// Decay of the first moment, β1 ∈ [0, 1).
    #[config(default = 0.95)]
    pub beta_1: f32,
    /// Decay of the per-tensor second moment, β2 ∈ [0, 1). `0.0` normalises by the current
    /// gradient norm only (NVIDIA's Jasper recipe).
    #[config(default = 0.98)]
    pub beta_2: f32,
    /// Added to `√v̂` in the denominator (outside the root), ε > 0.
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Added to `v̂` inside the root, as optax's `eps_root`: `√(v̂ + ε_root) + ε`. At least 0.
    #[config(default = 0.0)]
    pub epsilon_root: f32,
    /// Weight decay `d ≥ 0`, placed as [`weight_decay_mode`](Self::weight_decay_mode) says.
    #[config(default = 0.0)]
    pub weight_decay: f32,
    /// Where the weight decay enters the step.
    #[config(default = "WeightDecayMode::InMoment")]
    pub weight_decay_mode: WeightDecayMode,
    /// Scale the moment's input by `a = 1 − β1` (an exponential average) instead of `a = 1`.
    #[config(default = false)]
    pub grad_averaging: bool,
    /// Normalise by the running maximum of `v` instead of `v` (AMSGrad).
    #[config(default = false)]
    pub amsgrad: bool,
    /// Apex-style bias correction: divide `v` by `1 − β2^t` and `m` by `1 − β1^t`.
    #[config(default = false)]
    pub bias_correction: bool,
    /// How the first moment is stored: in the parameter's dtype, or narrower to save memory.
    #[config(default = "MomentDtype::Param")]
    pub moment_dtype: MomentDtype,
    /// Take the backend's fused step where there is one (Flex, f32 with an f32, bf16 or 8-bit
    /// moment and f64, with this crate's `flex` feature; Burn's CubeCL backends on WGPU, CUDA
    /// and the CPU, with or without Fusion, f32 with an f32, bf16 or 8-bit moment, with its
    /// `wgpu`, `cuda` and `cpu` features); `false` forces the tensor-op step on every backend.
    /// Both compute the
    /// same equations; [`NovoGrad::fused_path`] says which step a device gets.
    #[config(default = true)]
    pub fused: bool,
    /// [Gradient clipping](GradientClippingConfig), applied by [`init`](Self::init) before the step.
    pub grad_clipping: Option<GradientClippingConfig>,
}

/// An invalid [`NovoGradConfig`] field: its name, its value and the range it must lie in.
#[derive(Debug, Clone, PartialEq)]
pub struct NovoGradConfigError {
    /// The field's name, as in [`NovoGradConfig`].
    pub field: &'static str,
    /// The rejected value.
    pub value: f32,
    /// The valid range, in words.
    pub expected: &'static str,
}

impl fmt::Display for NovoGradConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid NovoGrad config: {} = {}, expected {}",
            self.field, self.value, self.expected
        )
    }
}

impl std::error::Error for NovoGradConfigError {}

/// The ranges config fields must lie in.
#[derive(Clone, Copy)]
enum ValidRange {
    /// [0, 1)
    UnitInterval,
    /// finite and > 0
    Positive,
    /// finite and >= 0
    NonNegative,
}

impl ValidRange {
    fn contains(self, value: f32) -> bool {
        match self {
            Self::UnitInterval => (0.0..1.0).contains(&value),
            Self::Positive => value.is_finite() && value > 0.0,
            Self::NonNegative => value.is_finite() && value >= 0.0,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::UnitInterval => "a value in [0, 1)",
            Self::Positive => "a finite value > 0",
            Self::NonNegative => "a finite value >= 0",
        }
    }
}

impl NovoGradConfig {
    /// Checks every field against its valid range.
    pub fn validate(&self) -> Result<(), NovoGradConfigError> {
        use ValidRange::*;
        let fields = [
            ("beta_1", self.beta_1, UnitInterval),
            ("beta_2", self.beta_2, UnitInterval),
            ("epsilon", self.epsilon, Positive),
            ("epsilon_root", self.epsilon_root, NonNegative),
            ("weight_decay", self.weight_decay, NonNegative),
        ];
        match fields
            .into_iter()
            .find(|(_, value, range)| !range.contains(*value))
        {
            Some((field, value, range)) => Err(NovoGradConfigError {
                field,
                value,
                expected: range.describe(),
            }),
            None => Ok(()),
        }
    }

    /// Builds the per-tensor [`NovoGrad`] optimizer, or says which field is invalid.
    pub fn try_build(&self) -> Result<NovoGrad, NovoGradConfigError> {
        self.validate()?;
        Ok(NovoGrad::new(self))
    }

    /// Builds the per-tensor [`NovoGrad`] optimizer.
    ///
    /// # Panics
    ///
    /// If the config is invalid, with the message of [`NovoGradConfigError`].
    pub fn build(&self) -> NovoGrad {
        self.try_build().unwrap_or_else(|error| panic!("{error}"))
    }

    /// The optimizer for a whole module, ready for Burn's `Learner` or a hand-written loop, with
    /// the configured gradient clipping; or says which field is invalid. Parameter groups are
    /// added with [`ModuleOptimizer::with_group`], which takes a [`build`](Self::build) optimizer.
    pub fn try_init(&self) -> Result<ModuleOptimizer, NovoGradConfigError> {
        let mut optimizer = ModuleOptimizer::from(self.try_build()?);
        if let Some(clipping) = &self.grad_clipping {
            optimizer = optimizer.with_grad_clipping(clipping.init());
        }
        Ok(optimizer)
    }

    /// The optimizer for a whole module, ready for Burn's `Learner` or a hand-written loop.
    ///
    /// # Panics
    ///
    /// If the config is invalid, with the message of [`NovoGradConfigError`].
    pub fn init(&self) -> ModuleOptimizer {
        self.try_init().unwrap_or_else(|error| panic!("{error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid() -> Vec<(NovoGradConfig, &'static str)> {
        let config = NovoGradConfig::new;
        vec![
            (config().with_beta_1(1.0), "beta_1"),
            (config().with_beta_1(-0.1), "beta_1"),
            (config().with_beta_1(f32::NAN), "beta_1"),
            (config().with_beta_2(1.5), "beta_2"),
            (config().with_beta_2(-1e-3), "beta_2"),
            (config().with_epsilon(0.0), "epsilon"),
            (config().with_epsilon(-1e-8), "epsilon"),
            (config().with_epsilon(f32::INFINITY), "epsilon"),
            (config().with_epsilon_root(-1.0), "epsilon_root"),
            (config().with_epsilon_root(f32::NAN), "epsilon_root"),
            (config().with_weight_decay(-0.01), "weight_decay"),
            (config().with_weight_decay(f32::INFINITY), "weight_decay"),
        ]
    }

    #[test]
    fn defaults_are_the_papers_and_valid() {
        let config = NovoGradConfig::new();
        assert_eq!(
            (config.beta_1, config.beta_2, config.epsilon),
            (0.95, 0.98, 1e-8)
        );
        assert_eq!((config.epsilon_root, config.weight_decay), (0.0, 0.0));
        assert_eq!(config.weight_decay_mode, WeightDecayMode::InMoment);
        assert!(!config.grad_averaging && !config.amsgrad && !config.bias_correction);
        assert!(config.grad_clipping.is_none());
        assert_eq!(config.moment_dtype, MomentDtype::Param);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.with_beta_2(0.0).with_beta_1(0.0).validate(), Ok(()));
    }

    #[test]
    fn invalid_fields_are_named_with_their_value_and_range() {
        for (config, field) in invalid() {
            let error = config.validate().expect_err(field);
            assert_eq!(error.field, field);
            let message = error.to_string();
            assert!(
                message.contains(field) && message.contains("expected"),
                "{message}"
            );
            // Compared as messages: a NaN value is not equal to itself.
            let built = config.try_build().map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(built, Err(message.clone()));
            let init = config.try_init();
            assert_eq!(init.map(|_| ()).map_err(|e| e.to_string()), Err(message));
        }
        let error = NovoGradConfig::new()
            .with_beta_1(1.0)
            .validate()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid NovoGrad config: beta_1 = 1, expected a value in [0, 1)"
        );
    }

    #[test]
    #[should_panic(expected = "invalid NovoGrad config: epsilon = 0, expected a finite value > 0")]
    fn build_panics_with_the_error() {
        NovoGradConfig::new().with_epsilon(0.0).build();
    }

    #[test]
    #[should_panic(expected = "invalid NovoGrad config: weight_decay = -1")]
    fn init_panics_with_the_error() {
        NovoGradConfig::new().with_weight_decay(-1.0).init();
    }
}
