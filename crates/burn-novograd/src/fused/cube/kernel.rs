//! The two CubeCL kernels of one tensor's step: `‖g‖²` as partial sums, then the update, which
//! adds the partial sums itself (in the same order in every cube), derives the per-tensor
//! scalars and writes `w`, `m` and the new state. Nothing is read back to the host.

use cubecl::prelude::*;

/// Units per cube of both kernels (WebGPU's guaranteed maximum).
pub const CUBE_SIZE: u32 = 256;

/// `Σ value` over the units of the cube, in shared memory; every unit gets the sum.
#[cube]
fn cube_sum(value: f32) -> f32 {
    let mut shared = Shared::<[f32]>::new_slice(CUBE_SIZE as usize);
    let unit = UNIT_POS_X as usize;
    shared[unit] = value;
    sync_cube();
    let mut width = (CUBE_DIM_X / 2) as usize;
    while width > 0 {
        if unit < width {
            shared[unit] += shared[unit + width];
        }
        sync_cube();
        width /= 2;
    }
    shared[0]
}

/// `partials[c] = Σ g²` over the elements that cube `c` visits (a grid-stride loop over
/// vectors of `N` elements).
#[cube(launch)]
pub fn grad_norm_partials<N: Size>(grad: &Tensor<Vector<f32, N>>, partials: &mut Tensor<f32>) {
    let stride = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    let mut sum = f32::new(0.0);
    let mut index = ABSOLUTE_POS;
    while index < grad.len() {
        let g = grad[index];
        sum += Vector::dot(g, g);
        index += stride;
    }
    let total = cube_sum(sum);
    if UNIT_POS_X == 0 {
        partials[CUBE_POS_X as usize] = total;
    }
}

/// The hyper-parameters of a step, as kernel arguments.
#[derive(CubeType, CubeLaunch)]
pub struct Hyper {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub epsilon_root: f32,
    pub weight_decay: f32,
    pub moment_input_scale: f32,
}

/// One NovoGrad step of one tensor, the equations of the tensor-op step:
///
/// ```text
/// v_t = β2·v_{t−1} + (1 − β2)·‖g_t‖²  (v_1 = ‖g_1‖²);  v̂_t = v_t or max(v̂_{t−1}, v_t)
/// s = 1/(√(v̂_t/(1 − β2^t) + ε_root) + ε)   (bias correction optional)
/// in the moment: m_t = β1·m_{t−1} + a·(g_t·s + d·w_t);  w_{t+1} = w_t − λ/(1 − β1^t)·m_t
/// on the update: m_t = β1·m_{t−1} + a·g_t;  w_{t+1} = w_t − λ·(m_t·s/(1 − β1^t) + d·w_t)
/// ```
///
/// When the f32 sum `‖g‖²` is not finite (a NaN or ±Inf in `g`, or a sum past `f32::MAX`, which
/// rounds to +Inf) every output is its input: the step is skipped. The one-element outputs are
/// separate buffers: other cubes still read the inputs.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn update<I: Int, N: Size>(
    param: &Tensor<Vector<f32, N>>,
    moment_1: &Tensor<Vector<f32, N>>,
    grad: &Tensor<Vector<f32, N>>,
    partials: &Tensor<f32>,
    moment_2: &Tensor<f32>,
    max_moment_2: &Tensor<f32>,
    step: &Tensor<I>,
    param_out: &mut Tensor<Vector<f32, N>>,
    moment_1_out: &mut Tensor<Vector<f32, N>>,
    moment_2_out: &mut Tensor<f32>,
    max_moment_2_out: &mut Tensor<f32>,
    step_out: &mut Tensor<I>,
    hyper: Hyper,
    #[comptime] amsgrad: bool,
    #[comptime] bias_correction: bool,
    #[comptime] decay_on_update: bool,
    #[define(I)] _step_dtype: ElemType,
) {
    let mut partial = f32::new(0.0);
    let mut index = UNIT_POS_X as usize;
    while index < partials.len() {
        partial += partials[index];
        index += CUBE_DIM_X as usize;
    }
    let grad_norm_sq = cube_sum(partial);
    let applied = !(f32::is_nan(grad_norm_sq) || f32::is_inf(grad_norm_sq));

    let one = f32::new(1.0);
    let steps_before = f32::cast_from(step[0]);
    let t = steps_before + one;
    let mut moment_2_next = hyper.beta_2 * moment_2[0] + (one - hyper.beta_2) * grad_norm_sq;
    if steps_before == f32::new(0.0) {
        moment_2_next = grad_norm_sq;
    }
    let mut max_moment_2_next = moment_2_next;
    let mut v_hat = moment_2_next;
    if amsgrad {
        max_moment_2_next = f32::max(max_moment_2[0], moment_2_next);
        v_hat = max_moment_2_next;
    }
    let mut correction_1 = one;
    if bias_correction {
        v_hat /= one - f32::powf(hyper.beta_2, t);
        correction_1 = one - f32::powf(hyper.beta_1, t);
    }
    let root = f32::sqrt(v_hat + hyper.epsilon_root) + hyper.epsilon;
    let inv_denom = f32::min(one / root, f32::max_value());

    // The scalars as vectors of N equal lanes.
    let scale = Vector::new(inv_denom / correction_1);
    let step_size = Vector::new(hyper.lr / correction_1);
    let inv_denom = Vector::new(inv_denom);
    let beta_1 = Vector::new(hyper.beta_1);
    let input_scale = Vector::new(hyper.moment_input_scale);
    let decay = Vector::new(hyper.weight_decay);
    let lr = Vector::new(hyper.lr);
    let stride = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    let mut index = ABSOLUTE_POS;
    while index < param.len() {
        let w = param[index];
        let m = moment_1[index];
        let g = grad[index];
        let m_next = if decay_on_update {
            beta_1 * m + input_scale * g
        } else {
            beta_1 * m + input_scale * (g * inv_denom + decay * w)
        };
        let w_next = if decay_on_update {
            w - lr * (m_next * scale + decay * w)
        } else {
            w - step_size * m_next
        };
        param_out[index] = select(applied, w_next, w);
        moment_1_out[index] = select(applied, m_next, m);
        index += stride;
    }

    if ABSOLUTE_POS == 0 {
        moment_2_out[0] = select(applied, moment_2_next, moment_2[0]);
        max_moment_2_out[0] = select(applied, max_moment_2_next, max_moment_2[0]);
        step_out[0] = select(applied, step[0] + I::new(1), step[0]);
    }
}
