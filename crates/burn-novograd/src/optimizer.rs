use burn::optim::{LearningRate, Optimizer};
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{Bool, DType, Device, FloatDType, Tensor};

use crate::config::{MomentDtype, NovoGradConfig, WeightDecayMode};
use crate::fused;
use crate::hyper::Hyper;
use crate::state::NovoGradState;

/// NovoGrad: SGD with momentum, normalised per tensor by a running average of the squared
/// gradient norm ([Ginsburg et al. 2019](https://arxiv.org/abs/1905.11286)).
///
/// For one parameter tensor `w` with gradient `g` at step `t` (the first step is `t = 1`):
///
/// ```text
/// v_t = β2·v_{t−1} + (1 − β2)·‖g_t‖²        v_1 = ‖g_1‖²       (one scalar per tensor)
/// v̂_t = v_t, or max(v̂_{t−1}, v_t) with amsgrad
/// m_t = β1·m_{t−1} + a·(g_t/(√(v̂_t + ε_root) + ε) + d·w_t)   m_0 = 0, a = 1 or 1 − β1
/// w_{t+1} = w_t − λ·m_t
/// ```
///
/// [`WeightDecayMode::OnUpdate`] and `bias_correction` give NVIDIA Apex's variants (see
/// [`NovoGradConfig`]). With [`MomentDtype::Bf16`] or [`MomentDtype::Int8`], `m_t` is stored
/// rounded to bf16 or quantised to 8 bits per block between steps; `w_{t+1}` uses the unrounded
/// `m_t`. A gradient containing NaN or ±Inf, or whose `‖g‖²`
/// overflows the second moment's dtype, skips the step for that tensor: its parameter and state
/// are returned unchanged, decided on the device without a host sync. An empty parameter tensor
/// keeps its state.
///
/// Built by [`NovoGradConfig::build`]; for a whole module use [`NovoGradConfig::init`].
#[derive(Clone, Debug)]
pub struct NovoGrad {
    hyper: Hyper,
    amsgrad: bool,
    moment_dtype: MomentDtype,
    fused: bool,
}

impl NovoGrad {
    pub(crate) fn new(config: &NovoGradConfig) -> Self {
        Self {
            hyper: Hyper::new(config),
            amsgrad: config.amsgrad,
            moment_dtype: config.moment_dtype,
            fused: config.fused,
        }
    }

    /// The fused step that parameters on `device` take (`"flex"`, `"cubecl-wgpu"`,
    /// `"cubecl-cuda"`, each with `"+fusion"` where Fusion wraps it), or `None` where they take
    /// the tensor-op step: another backend, a crate feature left out, or `fused = false`.
    /// Fused steps cover f32 parameters (and f64 on Flex); others take the tensor-op step.
    pub fn fused_path(&self, device: &Device) -> Option<&'static str> {
        self.fused.then(|| fused::path(device)).flatten()
    }

    /// The state before the first step: zero moments, step 0.
    pub(crate) fn initial_state<const D: usize>(&self, param: &Tensor<D>) -> NovoGradState<D> {
        let device = param.device();
        let scalar = || Tensor::<1>::zeros([1], (&device, moment_2_dtype(param.dtype()).into()));
        NovoGradState {
            moment_1: store(self.moment_1_storage(param), param.zeros_like()),
            moment_2: scalar(),
            max_moment_2: self.amsgrad.then(scalar),
            step: Tensor::zeros([1], &device),
        }
    }

    /// How `m` is stored for `param`.
    ///
    /// # Panics
    ///
    /// If the configured storage is one that `param`'s device does not support (bf16 on WGPU),
    /// naming the device; `MomentDtype::Param` works everywhere.
    fn moment_1_storage<const D: usize>(&self, param: &Tensor<D>) -> Storage {
        match self.moment_dtype {
            MomentDtype::Param => Storage::Float(param.dtype()),
            MomentDtype::Bf16 => {
                let device = param.device();
                assert!(
                    device.supports_dtype(DType::BF16),
                    "NovoGrad's moment_dtype = Bf16, but the parameter's device {device:?} does \
                     not support bf16 tensors: use MomentDtype::Param or Int8 there"
                );
                Storage::Float(DType::BF16)
            }
            MomentDtype::Int8 => {
                let elements = param.shape().num_elements();
                // An empty tensor has nothing to quantise: it keeps its dtype.
                let block = (fused::INT8_BLOCKS.into_iter())
                    .find(|block| elements > 0 && elements.is_multiple_of(*block));
                let scheme = block.and_then(|block| int8_scheme(block, &param.device()));
                match (param.dtype(), scheme) {
                    (DType::F32, Some(scheme)) => Storage::Int8(scheme),
                    (dtype, _) => Storage::Float(dtype),
                }
            }
        }
    }

    /// `1 − β^t`, the bias correction at step `t`, or 1 without bias correction.
    fn bias_correction(&self, beta: f32, step: &Tensor<1>) -> Tensor<1> {
        if self.hyper.bias_correction {
            let beta = step.ones_like().mul_scalar(beta);
            beta.powf(step.clone()).neg().add_scalar(1.0)
        } else {
            step.ones_like()
        }
    }

    /// `x + d·w`, or `x` without weight decay.
    fn add_weight_decay<const D: usize>(&self, x: Tensor<D>, param: &Tensor<D>) -> Tensor<D> {
        match self.hyper.weight_decay {
            0.0 => x,
            decay => x + param.clone().mul_scalar(decay),
        }
    }
}

impl Optimizer for NovoGrad {
    type State<const D: usize> = NovoGradState<D>;

    /// The backend's fused step where there is one (see [`NovoGradConfig::fused`]), else the
    /// tensor-op step.
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let mut state = state.unwrap_or_else(|| self.initial_state(&param));
        // An empty tensor has nothing to update: it keeps its state. (Burn 0.22.1's CubeCL
        // element-wise kernels also panic in debug builds on zero-sized tensors of rank ≥ 2:
        // `CubeTensor::is_nonoverlapping` underflows.)
        if param.shape().num_elements() == 0 {
            return (param, Some(state));
        }
        // `m` in its configured storage: a state loaded from a record comes in the device's
        // default dtype (exactly, from a narrower one), and a record may have been saved with
        // another `moment_dtype` (then converted here: rounded to nearest, or quantised).
        let storage = self.moment_1_storage(&param);
        if !storage.holds(&state.moment_1, &param) {
            state.moment_1 = store(storage, load(state.moment_1, &param));
        }
        let inputs = (param, grad, state);
        let (param, state) = match self.fused {
            true => fused::step(&self.hyper, lr, inputs)
                .unwrap_or_else(|inputs| self.tensor_op_step(lr, storage, inputs)),
            false => self.tensor_op_step(lr, storage, inputs),
        };
        (param, Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        NovoGradState {
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
            max_moment_2: state.max_moment_2.map(|max| max.to_device(device)),
            step: state.step.to_device(device),
        }
    }
}

impl NovoGrad {
    /// The step in Burn tensor ops, on any backend: the executable specification of every
    /// fused step. `m_t` is stored as `storage` says.
    fn tensor_op_step<const D: usize>(
        &self,
        lr: LearningRate,
        storage: Storage,
        (param, grad, state): fused::Inputs<D>,
    ) -> (Tensor<D>, NovoGradState<D>) {
        let Hyper {
            beta_1,
            beta_2,
            epsilon,
            epsilon_root,
            moment_input_scale,
            ..
        } = self.hyper;
        let dtype = param.dtype();
        let moment_dtype = moment_2_dtype(dtype);
        let as_param = |scalar: Tensor<1>| scalar.cast(dtype).reshape([1; D]);

        // ‖g‖², and whether this step is applied: a NaN or ±Inf anywhere in g, or a sum that
        // overflows the moment's dtype, makes it non-finite.
        let grad_norm_sq = grad.clone().cast(moment_dtype).square().sum();
        let applied = grad_norm_sq.clone().is_finite();
        let first = state.step.clone().equal_elem(0);
        let step = state.step.clone().add_scalar(1);
        let step_float = step.clone().float().cast(moment_dtype);

        // v_t = β2·v_{t−1} + (1 − β2)·‖g_t‖², v_1 = ‖g_1‖²; v̂_t = v_t or max(v̂_{t−1}, v_t).
        let moment_2_prev = state.moment_2.clone().cast(moment_dtype);
        let moment_2 = (moment_2_prev.clone().mul_scalar(beta_2)
            + grad_norm_sq.clone().mul_scalar(1.0 - beta_2))
        .mask_where(first, grad_norm_sq);
        let max_moment_2 = (state.max_moment_2.clone())
            .map(|max| max.cast(moment_dtype).max_pair(moment_2.clone()));
        let v_hat = max_moment_2.clone().unwrap_or_else(|| moment_2.clone());
        let v_hat = v_hat / self.bias_correction(beta_2, &step_float);
        // 1/(√(v̂ + ε_root) + ε), clamped so that half-precision parameters never see Inf.
        let inv_denom = v_hat
            .add_scalar(epsilon_root)
            .sqrt()
            .add_scalar(epsilon)
            .recip();
        let inv_denom = inv_denom.clamp_max(dtype.finfo().map_or(f64::MAX, |info| info.max));
        let correction_1 = self.bias_correction(beta_1, &step_float);

        // m is stored in its own form (w's dtype, or narrower) and computed in w's dtype.
        let moment_1_prev = load(state.moment_1, &param);
        let (moment_1, update) = match self.hyper.weight_decay_mode {
            // m_t = β1·m_{t−1} + a·(g_t/(√v̂_t + ε) + d·w_t); update = λ·m_t/(1 − β1^t)
            WeightDecayMode::InMoment => {
                let normalised = self.add_weight_decay(grad * as_param(inv_denom), &param);
                let moment_1 = moment_1_prev.clone().mul_scalar(beta_1)
                    + normalised.mul_scalar(moment_input_scale);
                let update = moment_1.clone() * as_param(correction_1.recip().mul_scalar(lr));
                (moment_1, update)
            }
            // m_t = β1·m_{t−1} + a·g_t; update = λ·(m_t/((1 − β1^t)·(√v̂_t + ε)) + d·w_t)
            WeightDecayMode::OnUpdate => {
                let moment_1 =
                    moment_1_prev.clone().mul_scalar(beta_1) + grad.mul_scalar(moment_input_scale);
                let normalised = moment_1.clone() * as_param(inv_denom / correction_1);
                let update = self.add_weight_decay(normalised, &param).mul_scalar(lr);
                (moment_1, update)
            }
        };
        let param_next = param.clone() - update;

        // Keep the old values wherever the step is not applied.
        let state = NovoGradState {
            moment_1: store(storage, where_applied(&applied, moment_1_prev, moment_1)),
            moment_2: moment_2_prev.mask_where(applied.clone(), moment_2),
            max_moment_2: (state.max_moment_2.zip(max_moment_2))
                .map(|(prev, next)| prev.cast(moment_dtype).mask_where(applied.clone(), next)),
            step: state.step.mask_where(applied.clone(), step),
        };
        (where_applied(&applied, param, param_next), state)
    }
}

/// Burn's symmetric 8-bit quantisation with one f32 scale per `block` values along the last
/// axis, four values packed in a `u32` (CubeCL's kernels quantise only into that; Flex takes it
/// and keeps one `i8` per value). `None` where the device takes only the unpacked form, i.e. on
/// ndarray: its block-wise ops fail on rank-4 tensors (they reshape to twice the rank, past its
/// limit of 6), so `m` stays in the parameter's dtype there. (CubeCL devices with `i8`
/// arithmetic, CUDA and the CPU runtime, take both forms; they get the packed one.)
fn int8_scheme(block: usize, device: &Device) -> Option<QuantScheme> {
    let scheme = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .per_block([block as u8], ScaleDtype::F32);
    let packed = scheme.with_store(QuantStore::PackedU32(0));
    let native = scheme.with_store(QuantStore::Native);
    let unpacked_only = device.supports_dtype(DType::QFloat(native))
        && !device.supports_dtype(DType::QFloat(packed));
    (!unpacked_only).then_some(packed)
}

/// How `m` is stored between steps.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Storage {
    /// A float tensor shaped like the parameter, in this dtype.
    Float(DType),
    /// Quantised by this scheme, flattened along the last axis (`[1, …, 1, n]`), so that blocks
    /// run over consecutive elements whatever the parameter's shape.
    Int8(QuantScheme),
}

impl Storage {
    /// Whether `moment` is already stored this way for `param`. A backend may record the
    /// scheme's packing differently, so an 8-bit `m` counts for `Int8` when its blocks are the
    /// scheme's (a record of an earlier build, with blocks of 64, is quantised anew).
    fn holds<const D: usize>(self, moment: &Tensor<D>, param: &Tensor<D>) -> bool {
        let block = |scheme: QuantScheme| scheme.block_scale().map(|block| block.size);
        match (self, moment.dtype()) {
            (Self::Float(dtype), stored) => dtype == stored && moment.dims() == param.dims(),
            (Self::Int8(scheme), DType::QFloat(stored)) => block(stored) == block(scheme),
            (Self::Int8(_), _) => false,
        }
    }
}

/// `moment` (shaped like the parameter, in its dtype) in `storage`.
fn store<const D: usize>(storage: Storage, moment: Tensor<D>) -> Tensor<D> {
    match storage {
        Storage::Float(dtype) => moment.cast(dtype),
        Storage::Int8(scheme) => {
            let mut flat = [1; D];
            flat[D - 1] = moment.shape().num_elements();
            moment.reshape(flat).quantize_dynamic(&scheme)
        }
    }
}

/// A stored `moment`, whatever its storage, shaped like `param` and in its dtype.
fn load<const D: usize>(moment: Tensor<D>, param: &Tensor<D>) -> Tensor<D> {
    let moment = match moment.dtype() {
        DType::QFloat(_) => moment.dequantize(),
        _ => moment,
    };
    moment.reshape(param.dims()).cast(param.dtype())
}

/// `next` if the step is applied, else `previous`: tensors shaped like the parameter.
fn where_applied<const D: usize>(
    applied: &Tensor<1, Bool>,
    previous: Tensor<D>,
    next: Tensor<D>,
) -> Tensor<D> {
    let dims = previous.dims();
    previous.mask_where(applied.clone().reshape([1; D]).expand(dims), next)
}

/// The second moment's dtype: f64 for f64 parameters, else f32, since `‖g‖²` overflows f16 as
/// soon as `‖g‖ > 256`.
pub(crate) fn moment_2_dtype(dtype: DType) -> FloatDType {
    match dtype {
        DType::F64 => FloatDType::F64,
        _ => FloatDType::F32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LR: f64 = 0.1;
    const W: [f32; 2] = [1.0, -2.0];
    /// ‖g_1‖ = 5, ‖g_2‖ = 10.
    const G1: [f32; 2] = [3.0, 4.0];
    const G2: [f32; 2] = [6.0, 8.0];

    fn tensor(values: [f32; 2]) -> Tensor<1> {
        Tensor::from_data(values, &Device::flex())
    }

    fn values(tensor: &Tensor<1>) -> Vec<f64> {
        tensor.to_data().iter::<f64>().collect()
    }

    /// Applies the config to `W` with gradients `grads`, by the fused step and by the
    /// tensor-op step: the parameter after each step (the same for both, asserted).
    fn run(config: NovoGradConfig, grads: &[[f32; 2]]) -> Vec<Vec<f64>> {
        let trajectory = |fused: bool| {
            let optimizer = config.clone().with_fused(fused).build();
            let (mut param, mut state) = (tensor(W), None);
            grads
                .iter()
                .map(|grad| {
                    (param, state) = optimizer.step(LR, param.clone(), tensor(*grad), state.take());
                    values(&param)
                })
                .collect::<Vec<_>>()
        };
        let fused = trajectory(true);
        let tensor_ops: Vec<[f64; 2]> = trajectory(false).iter().map(|w| [w[0], w[1]]).collect();
        assert_close(&fused, &tensor_ops);
        fused
    }

    fn assert_close(actual: &[Vec<f64>], expected: &[[f64; 2]]) {
        for (step, (actual, expected)) in actual.iter().zip(expected).enumerate() {
            for (a, e) in actual.iter().zip(expected) {
                assert!(
                    (a - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "step {}: {actual:?} != {expected:?}",
                    step + 1
                );
            }
        }
    }

    /// Step 1 and 2 of `w_{t+1} = w_t − λ·m_t` for the moments `m_1`, `m_2` given per element.
    fn descend(m1: [f64; 2], m2: [f64; 2]) -> [[f64; 2]; 2] {
        let w2 = [W[0] as f64 - LR * m1[0], W[1] as f64 - LR * m1[1]];
        [w2, [w2[0] - LR * m2[0], w2[1] - LR * m2[1]]]
    }

    #[test]
    fn paper_defaults() {
        // v_1 = 25, m_1 = g_1/5; v_2 = 0.98·25 + 0.02·100 = 26.5, m_2 = 0.95·m_1 + g_2/√26.5.
        let m1 = [3.0 / 5.0, 4.0 / 5.0];
        let s = 26.5f64.sqrt();
        let m2 = [0.95 * m1[0] + 6.0 / s, 0.95 * m1[1] + 8.0 / s];
        assert_close(&run(NovoGradConfig::new(), &[G1, G2]), &descend(m1, m2));
    }

    #[test]
    fn weight_decay_in_the_moment() {
        let d = 0.1;
        let m1 = [0.6 + d * 1.0, 0.8 + d * -2.0];
        let w2 = descend(m1, [0.0; 2])[0];
        let s = 26.5f64.sqrt();
        let m2 = [
            0.95 * m1[0] + 6.0 / s + d * w2[0],
            0.95 * m1[1] + 8.0 / s + d * w2[1],
        ];
        let config = NovoGradConfig::new().with_weight_decay(d as f32);
        assert_close(&run(config, &[G1, G2]), &descend(m1, m2));
    }

    #[test]
    fn weight_decay_on_the_update() {
        // m_1 = g_1, w_2 = w_1 − λ·(m_1/5 + d·w_1); m_2 = β1·m_1 + g_2, w_3 = w_2 − λ·(m_2/√26.5 + d·w_2).
        let d = 0.1;
        let w2 = [
            1.0 - LR * (3.0 / 5.0 + d * 1.0),
            -2.0 - LR * (4.0 / 5.0 + d * -2.0),
        ];
        let s = 26.5f64.sqrt();
        let m2 = [0.95 * 3.0 + 6.0, 0.95 * 4.0 + 8.0];
        let w3 = [
            w2[0] - LR * (m2[0] / s + d * w2[0]),
            w2[1] - LR * (m2[1] / s + d * w2[1]),
        ];
        let config = NovoGradConfig::new()
            .with_weight_decay(d as f32)
            .with_weight_decay_mode(WeightDecayMode::OnUpdate);
        assert_close(&run(config, &[G1, G2]), &[w2, w3]);
    }

    #[test]
    fn grad_averaging_scales_the_moment_input() {
        let a = 1.0 - 0.95;
        let m1 = [a * 0.6, a * 0.8];
        let s = 26.5f64.sqrt();
        let m2 = [0.95 * m1[0] + a * 6.0 / s, 0.95 * m1[1] + a * 8.0 / s];
        let config = NovoGradConfig::new().with_grad_averaging(true);
        assert_close(&run(config, &[G1, G2]), &descend(m1, m2));
    }

    #[test]
    fn amsgrad_normalises_by_the_largest_second_moment() {
        // ‖g_2‖² = 0.25: v_2 = 0.98·25 + 0.02·0.25 = 24.505 < v_1, so v̂_2 = 25.
        let g2 = [0.3, 0.4];
        let m1 = [0.6, 0.8];
        let m2 = [0.95 * 0.6 + 0.3 / 5.0, 0.95 * 0.8 + 0.4 / 5.0];
        let config = NovoGradConfig::new().with_amsgrad(true);
        assert_close(&run(config, &[G1, g2]), &descend(m1, m2));
        let without = [
            0.95 * 0.6 + 0.3 / 24.505f64.sqrt(),
            0.95 * 0.8 + 0.4 / 24.505f64.sqrt(),
        ];
        assert_close(
            &run(NovoGradConfig::new(), &[G1, g2]),
            &descend(m1, without),
        );
    }

    #[test]
    fn beta_2_zero_normalises_by_the_current_norm() {
        let m1 = [0.6, 0.8];
        let m2 = [0.95 * 0.6 + 0.6, 0.95 * 0.8 + 0.8];
        let config = NovoGradConfig::new().with_beta_2(0.0);
        assert_close(&run(config, &[G1, G2]), &descend(m1, m2));
    }

    #[test]
    fn bias_correction_divides_both_moments() {
        // v̂_1 = v_1/(1 − β2) = 25/0.02, so g_1/√v̂_1 = g_1·√0.02/5; the step uses m_t/(1 − β1^t).
        let (b1, b2) = (0.95f64, 0.98f64);
        let n1 = [0.6 * 0.02f64.sqrt(), 0.8 * 0.02f64.sqrt()];
        let v2_hat = 26.5 / (1.0 - b2 * b2);
        let m2 = [
            b1 * n1[0] + 6.0 / v2_hat.sqrt(),
            b1 * n1[1] + 8.0 / v2_hat.sqrt(),
        ];
        let c1 = [1.0 - b1, 1.0 - b1 * b1];
        let expected = descend(
            [n1[0] / c1[0], n1[1] / c1[0]],
            [m2[0] / c1[1], m2[1] / c1[1]],
        );
        let config = NovoGradConfig::new().with_bias_correction(true);
        assert_close(&run(config, &[G1, G2]), &expected);
    }

    #[test]
    fn epsilon_root_goes_inside_the_root() {
        let (root, eps) = (11.0f64, 0.5f64);
        let d1 = (25.0 + root).sqrt() + eps;
        let d2 = (26.5 + root).sqrt() + eps;
        let m1 = [3.0 / d1, 4.0 / d1];
        let m2 = [0.95 * m1[0] + 6.0 / d2, 0.95 * m1[1] + 8.0 / d2];
        let config = NovoGradConfig::new()
            .with_epsilon_root(root as f32)
            .with_epsilon(eps as f32);
        assert_close(&run(config, &[G1, G2]), &descend(m1, m2));
    }

    #[test]
    fn state_is_a_moment_shaped_like_the_parameter_and_scalars() {
        let optimizer = NovoGradConfig::new().with_amsgrad(true).build();
        let param = Tensor::<2>::ones([3, 5], &Device::flex());
        let (_, state) = optimizer.step(LR, param.clone(), param.clone(), None);
        let state = state.expect("a state after the first step");
        assert_eq!(state.moment_1.dims(), [3, 5]);
        assert_eq!(state.moment_2.dims(), [1]);
        assert_eq!(
            state
                .max_moment_2
                .expect("amsgrad keeps the maximum")
                .dims(),
            [1]
        );
        assert_eq!(
            state.step.into_data().iter::<i64>().collect::<Vec<_>>(),
            [1]
        );
    }

    #[test]
    fn zero_gradient_gives_no_nan() {
        // Step 1 with g = 0: v_1 = 0, m_1 = 0/(0 + ε) + d·w_1 = d·w_1.
        let d = 0.5;
        let config = NovoGradConfig::new().with_weight_decay(d as f32);
        let trajectory = run(config, &[[0.0, 0.0], [0.0, 0.0]]);
        let m1 = [d * 1.0, d * -2.0];
        let w2 = descend(m1, [0.0; 2])[0];
        let m2 = [0.95 * m1[0] + d * w2[0], 0.95 * m1[1] + d * w2[1]];
        assert_close(&trajectory, &descend(m1, m2));
        for mode in [WeightDecayMode::InMoment, WeightDecayMode::OnUpdate] {
            let config = NovoGradConfig::new()
                .with_weight_decay_mode(mode)
                .with_bias_correction(true)
                .with_amsgrad(true);
            let trajectory = run(config, &[[0.0, 0.0], G1, [0.0, 0.0]]);
            assert!(
                trajectory.iter().flatten().all(|x| x.is_finite()),
                "{mode:?}: {trajectory:?}"
            );
        }
    }

    #[test]
    fn bf16_moment_is_stored_rounded_and_the_step_uses_it_unrounded() {
        // m_1 = g_1/5 = [0.6, 0.8]: stored as the nearest bf16 values; w_2 = w_1 − λ·m_1 with the
        // unrounded m_1, as in f32. Step 2 starts from the stored m_1.
        let config = NovoGradConfig::new().with_moment_dtype(MomentDtype::Bf16);
        let rounded = |x: f64| f64::from(burn::tensor::bf16::from_f64(x).to_f32());
        let m1 = [rounded(0.6), rounded(0.8)];
        assert!(
            m1[0] != 0.6 && m1[1] != 0.8,
            "0.6 and 0.8 are not bf16 values"
        );
        let s = 26.5f64.sqrt();
        let m2 = [0.95 * m1[0] + 6.0 / s, 0.95 * m1[1] + 8.0 / s];
        let w2 = descend([0.6, 0.8], [0.0; 2])[0];
        let w3 = [w2[0] - LR * m2[0], w2[1] - LR * m2[1]];
        assert_close(&run(config.clone(), &[G1, G2]), &[w2, w3]);
        for fused in [true, false] {
            let optimizer = config.clone().with_fused(fused).build();
            let (_, state) = optimizer.step(LR, tensor(W), tensor(G1), None);
            let moment_1 = state.expect("a state").moment_1;
            assert_eq!(moment_1.dtype(), DType::BF16, "fused {fused}");
            assert_eq!(values(&moment_1), m1, "fused {fused}");
        }
    }

    /// Bit patterns of every tensor in a state, for exact comparisons.
    fn state_bits(state: &NovoGradState<1>) -> Vec<String> {
        let mut tensors = vec![
            format!(
                "{:?}",
                state
                    .moment_1
                    .to_data()
                    .iter::<f32>()
                    .map(f32::to_bits)
                    .collect::<Vec<_>>()
            ),
            format!(
                "{:?}",
                state
                    .moment_2
                    .to_data()
                    .iter::<f32>()
                    .map(f32::to_bits)
                    .collect::<Vec<_>>()
            ),
            format!("{:?}", state.step.to_data()),
        ];
        if let Some(max) = &state.max_moment_2 {
            tensors.push(format!(
                "{:?}",
                max.to_data()
                    .iter::<f32>()
                    .map(f32::to_bits)
                    .collect::<Vec<_>>()
            ));
        }
        tensors
    }

    #[test]
    fn non_finite_gradient_skips_the_step_and_keeps_everything() {
        let configs = [
            NovoGradConfig::new().with_weight_decay(0.1),
            NovoGradConfig::new()
                .with_weight_decay(0.1)
                .with_moment_dtype(MomentDtype::Bf16),
            NovoGradConfig::new()
                .with_amsgrad(true)
                .with_bias_correction(true)
                .with_grad_averaging(true)
                .with_weight_decay(0.1)
                .with_weight_decay_mode(WeightDecayMode::OnUpdate),
        ];
        for config in configs
            .iter()
            .flat_map(|c| [c.clone(), c.clone().with_fused(false)])
        {
            let optimizer = config.build();
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                // Mid-run: parameter and state are bit-for-bit unchanged.
                let (param, state) = optimizer.step(LR, tensor(W), tensor(G1), None);
                let state = state.expect("state");
                let (skipped, skipped_state) =
                    optimizer.step(LR, param.clone(), tensor([1.0, bad]), Some(state.clone()));
                let skipped_state = skipped_state.expect("state");
                assert_eq!(
                    skipped.to_data().as_bytes(),
                    param.to_data().as_bytes(),
                    "{bad}"
                );
                assert_eq!(state_bits(&skipped_state), state_bits(&state), "{bad}");

                // At step 1 too, and the next finite step is then a first step.
                let (skipped, state) = optimizer.step(LR, tensor(W), tensor([bad, 0.0]), None);
                assert_eq!(values(&skipped), [1.0, -2.0]);
                let (after, _) = optimizer.step(LR, skipped, tensor(G1), state);
                let (direct, _) = optimizer.step(LR, tensor(W), tensor(G1), None);
                assert_eq!(
                    after.to_data().as_bytes(),
                    direct.to_data().as_bytes(),
                    "{bad}"
                );
            }
        }
    }
}
