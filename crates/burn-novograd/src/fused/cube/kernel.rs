//! The CubeCL kernels of one tensor's step, every state tensor written in place. A tensor that
//! one cube covers takes one launch ([`step_in_one_cube`]: `‖g‖²`, the per-tensor scalars and the
//! update). A larger one takes three, which pass what they find through a workspace:
//! [`grad_norm_partials`] sums `g²` in partial sums, [`finish_norm`] (one cube) adds them in a
//! fixed order, derives the scalars and writes the state's per-tensor values, and [`update`]
//! writes `w` and `m` without a barrier ([`update_int8`] in place of it for an 8-bit `m`, at
//! any size). Nothing is read back to the host. The same three kernels over a list of tensors
//! are in [`multi`].

pub mod multi;

use cubecl::prelude::*;

/// Most units per cube of every kernel (WebGPU's guaranteed maximum); the kernels take any
/// power of two up to it.
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

/// `Σ g²` over the vectors `start, start + stride, …` of `grad`.
#[cube]
fn sum_of_squares<N: Size>(grad: &Tensor<Vector<f32, N>>, start: usize, stride: usize) -> f32 {
    let mut sum = f32::new(0.0);
    let mut index = start;
    while index < grad.len() {
        let g = grad[index];
        sum += Vector::dot(g, g);
        index += stride;
    }
    sum
}

/// Slots of the workspace of the three-kernel step: the factors of the update that
/// [`finish_norm`] derives ([`write_factors`] at 0), then one partial sum of `g²` per cube of
/// [`grad_norm_partials`].
pub const WORKSPACE_PARTIALS: usize = FACTOR_SLOTS;
/// Slots of one tensor's [`Factors`] in a workspace.
pub const FACTOR_SLOTS: usize = 3;

/// `workspace[WORKSPACE_PARTIALS + c] = Σ g²` over the elements that cube `c` visits (a
/// grid-stride loop over vectors of `N` elements).
#[cube(launch)]
pub fn grad_norm_partials<N: Size>(grad: &Tensor<Vector<f32, N>>, workspace: &mut Tensor<f32>) {
    let stride = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    let total = cube_sum(sum_of_squares(grad, ABSOLUTE_POS, stride));
    if UNIT_POS_X == 0 {
        workspace[WORKSPACE_PARTIALS + CUBE_POS_X as usize] = total;
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

/// The state's per-tensor values before a step, read by every unit.
#[derive(CubeType)]
struct Before {
    /// Steps taken.
    steps: f32,
    moment_2: f32,
    /// `max v` with amsgrad, else `v`.
    max_moment_2: f32,
}

/// What the update of `w` and `m` needs of a step's per-tensor values.
#[derive(CubeType)]
struct Factors {
    /// Whether `‖g‖²` is finite: else every output is its input and the step is skipped.
    applied: bool,
    /// `1/(√(v̂_t + ε_root) + ε)`.
    inv_denom: f32,
    /// `1 − β1^t`, or 1 without bias correction.
    correction_1: f32,
}

/// Writes `factors` at `workspace[first..first + FACTOR_SLOTS]`: whether the step applies (1
/// or 0), `1/(√v̂ + ε)`, `1 − β1^t`.
#[cube]
fn write_factors(workspace: &mut Tensor<f32>, first: usize, factors: &Factors) {
    workspace[first] = f32::cast_from(factors.applied);
    workspace[first + 1] = factors.inv_denom;
    workspace[first + 2] = factors.correction_1;
}

/// The factors that [`write_factors`] left at `first`.
#[cube]
fn read_factors(workspace: &Tensor<f32>, first: usize) -> Factors {
    Factors {
        applied: workspace[first] != f32::new(0.0),
        inv_denom: workspace[first + 1],
        correction_1: workspace[first + 2],
    }
}

/// The per-tensor values of a step.
#[derive(CubeType)]
struct Scalars {
    factors: Factors,
    moment_2: f32,
    max_moment_2: f32,
}

/// The per-tensor values of a step from `‖g‖²` and the state before it:
///
/// ```text
/// v_t = β2·v_{t−1} + (1 − β2)·‖g_t‖²  (v_1 = ‖g_1‖²);  v̂_t = v_t or max(v̂_{t−1}, v_t)
/// 1/(√(v̂_t/(1 − β2^t) + ε_root) + ε)   (bias correction optional)
/// ```
#[cube]
fn scalars(
    grad_norm_sq: f32,
    before: &Before,
    hyper: &Hyper,
    #[comptime] amsgrad: bool,
    #[comptime] bias_correction: bool,
) -> Scalars {
    let applied = !(f32::is_nan(grad_norm_sq) || f32::is_inf(grad_norm_sq));
    let one = f32::new(1.0);
    let t = before.steps + one;
    let mut moment_2 = hyper.beta_2 * before.moment_2 + (one - hyper.beta_2) * grad_norm_sq;
    if before.steps == f32::new(0.0) {
        moment_2 = grad_norm_sq;
    }
    let mut max_moment_2 = moment_2;
    if amsgrad {
        max_moment_2 = f32::max(before.max_moment_2, moment_2);
    }
    let mut v_hat = max_moment_2;
    let mut correction_1 = one;
    if bias_correction {
        v_hat /= one - f32::powf(hyper.beta_2, t);
        correction_1 = one - f32::powf(hyper.beta_1, t);
    }
    let root = f32::sqrt(v_hat + hyper.epsilon_root) + hyper.epsilon;
    let factors = Factors {
        applied,
        inv_denom: f32::min(one / root, f32::max_value()),
        correction_1,
    };
    Scalars {
        factors,
        moment_2,
        max_moment_2,
    }
}

/// The factors of the update of `w` and `m` as vectors of `N` equal lanes.
#[derive(CubeType)]
struct VectorFactors<N: Size> {
    applied: bool,
    /// `λ/(1 − β1^t)`.
    step_size: Vector<f32, N>,
    /// `s/(1 − β1^t)`, with `s = 1/(√v̂ + ε)`.
    scale: Vector<f32, N>,
    inv_denom: Vector<f32, N>,
    beta_1: Vector<f32, N>,
    input_scale: Vector<f32, N>,
    decay: Vector<f32, N>,
    lr: Vector<f32, N>,
}

/// [`Factors`] and the hyper-parameters as the update of a vector uses them.
#[cube]
fn vector_factors<N: Size>(factors: &Factors, hyper: &Hyper) -> VectorFactors<N> {
    VectorFactors::<N> {
        applied: factors.applied,
        step_size: Vector::new(hyper.lr / factors.correction_1),
        scale: Vector::new(factors.inv_denom / factors.correction_1),
        inv_denom: Vector::new(factors.inv_denom),
        beta_1: Vector::new(hyper.beta_1),
        input_scale: Vector::new(hyper.moment_input_scale),
        decay: Vector::new(hyper.weight_decay),
        lr: Vector::new(hyper.lr),
    }
}

/// `m_t` of one vector:
///
/// ```text
/// in the moment: m_t = β1·m_{t−1} + a·(g_t·s + d·w_t);  on the update: m_t = β1·m_{t−1} + a·g_t
/// ```
#[cube]
fn next_moment_1<N: Size>(
    w: Vector<f32, N>,
    m: Vector<f32, N>,
    g: Vector<f32, N>,
    factors: &VectorFactors<N>,
    #[comptime] decay_on_update: bool,
) -> Vector<f32, N> {
    if decay_on_update {
        factors.beta_1 * m + factors.input_scale * g
    } else {
        factors.beta_1 * m + factors.input_scale * (g * factors.inv_denom + factors.decay * w)
    }
}

/// `w_{t+1}` of one vector from `m_t`:
///
/// ```text
/// in the moment: w_{t+1} = w_t − λ/(1 − β1^t)·m_t;  on the update: w_{t+1} = w_t − λ·(m_t·s/(1 − β1^t) + d·w_t)
/// ```
#[cube]
fn next_param<N: Size>(
    w: Vector<f32, N>,
    m_next: Vector<f32, N>,
    factors: &VectorFactors<N>,
    #[comptime] decay_on_update: bool,
) -> Vector<f32, N> {
    if decay_on_update {
        w - factors.lr * (m_next * factors.scale + factors.decay * w)
    } else {
        w - factors.step_size * m_next
    }
}

/// A stored `m` (f32 or bf16) in f32, exactly.
#[cube]
fn stored_f32<M: Float, N: Size>(m: Vector<M, N>) -> Vector<f32, N> {
    Vector::cast_from(m)
}

/// `m` rounded to its storage `M`: to nearest, ties to even (the device's conversion, as Burn's
/// `cast` in the tensor-op step).
#[cube]
fn stored<M: Float, N: Size>(m: Vector<f32, N>) -> Vector<M, N> {
    Vector::cast_from(m)
}

/// `w` and `m` of the vectors `start, start + stride, …` ([`next_moment_1`], [`next_param`]),
/// left as they were when the step is skipped. `m` is stored as `M` (f32 or bf16) and computed
/// in f32: `w` takes the unrounded `m_t`.
#[cube]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
fn update_elements<M: Float, N: Size>(
    param: &Tensor<Vector<f32, N>>,
    moment_1: &Tensor<Vector<M, N>>,
    grad: &Tensor<Vector<f32, N>>,
    param_out: &mut Tensor<Vector<f32, N>>,
    moment_1_out: &mut Tensor<Vector<M, N>>,
    factors: &Factors,
    hyper: &Hyper,
    start: usize,
    stride: usize,
    #[comptime] decay_on_update: bool,
) {
    let factors = vector_factors::<N>(factors, hyper);
    let mut index = start;
    while index < param.len() {
        let w = param[index];
        let m = moment_1[index];
        let m_next = next_moment_1(w, stored_f32(m), grad[index], &factors, decay_on_update);
        let w_next = next_param(w, m_next, &factors, decay_on_update);
        param_out[index] = select(factors.applied, w_next, w);
        moment_1_out[index] = select(factors.applied, stored::<M, N>(m_next), m);
        index += stride;
    }
}

/// The state before the step: the step counter, `v` and, with amsgrad, `max v`.
#[cube]
fn before<I: Int>(
    step: &Tensor<I>,
    moment_2: &Tensor<f32>,
    max_moment_2: &ComptimeOption<&Tensor<f32>>,
) -> Before {
    let moment_2 = moment_2[0];
    #[comptime]
    let max_moment_2 = match max_moment_2 {
        ComptimeOption::Some(max) => max[0],
        ComptimeOption::None => moment_2,
    };
    Before {
        steps: f32::cast_from(step[0]),
        moment_2,
        max_moment_2,
    }
}

/// The state's per-tensor values after the step (those before it when it is skipped).
#[derive(CubeType)]
struct After<I: Int> {
    moment_2: f32,
    max_moment_2: f32,
    steps: I,
}

/// [`After`] of a step.
#[cube]
fn state_after<I: Int>(scalars: &Scalars, before: &Before, steps: I) -> After<I> {
    let applied = scalars.factors.applied;
    After::<I> {
        moment_2: select(applied, scalars.moment_2, before.moment_2),
        max_moment_2: select(applied, scalars.max_moment_2, before.max_moment_2),
        steps: select(applied, steps + I::new(1), steps),
    }
}

/// Writes the state's per-tensor values after the step ([`state_after`]).
#[cube]
fn write_state<I: Int>(
    scalars: &Scalars,
    before: &Before,
    steps: I,
    moment_2_out: &mut Tensor<f32>,
    max_moment_2_out: &mut ComptimeOption<&mut Tensor<f32>>,
    step_out: &mut Tensor<I>,
) {
    let after = state_after::<I>(scalars, before, steps);
    moment_2_out[0] = after.moment_2;
    #[comptime]
    if let ComptimeOption::Some(max_out) = max_moment_2_out {
        max_out[0] = after.max_moment_2;
    }
    step_out[0] = after.steps;
}

/// The step's per-tensor values from `‖g‖²`, which every unit of one cube holds: the unit at 0
/// writes the state's (`v`, `max v`, the step counter); the factors of the update come back.
#[cube]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
fn finish_state<I: Int>(
    grad_norm_sq: f32,
    before: &Before,
    steps: I,
    hyper: &Hyper,
    moment_2_out: &mut Tensor<f32>,
    max_moment_2_out: &mut ComptimeOption<&mut Tensor<f32>>,
    step_out: &mut Tensor<I>,
    #[comptime] bias_correction: bool,
) -> Factors {
    let amsgrad = max_moment_2_out.is_some();
    let scalars = scalars(grad_norm_sq, before, hyper, amsgrad, bias_correction);
    if UNIT_POS_X == 0 {
        write_state(
            &scalars,
            before,
            steps,
            moment_2_out,
            max_moment_2_out,
            step_out,
        );
    }
    scalars.factors
}

/// One NovoGrad step of a tensor that one cube covers: `‖g‖²`, the scalars ([`scalars`]) and
/// the update ([`update_elements`]). Every unit reads the state before the cube's first
/// barrier, so the outputs may alias the inputs (in place).
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn step_in_one_cube<I: Int, M: Float, N: Size>(
    param: &Tensor<Vector<f32, N>>,
    moment_1: &Tensor<Vector<M, N>>,
    grad: &Tensor<Vector<f32, N>>,
    moment_2: &Tensor<f32>,
    step: &Tensor<I>,
    max_moment_2: ComptimeOption<&Tensor<f32>>,
    param_out: &mut Tensor<Vector<f32, N>>,
    moment_1_out: &mut Tensor<Vector<M, N>>,
    moment_2_out: &mut Tensor<f32>,
    step_out: &mut Tensor<I>,
    mut max_moment_2_out: ComptimeOption<&mut Tensor<f32>>,
    hyper: Hyper,
    #[comptime] bias_correction: bool,
    #[comptime] decay_on_update: bool,
    #[define(I, M)] _step_and_moment_dtypes: [ElemType; 2],
) {
    let before = before(step, moment_2, &max_moment_2);
    let steps = step[0];
    let unit = UNIT_POS_X as usize;
    let stride = CUBE_DIM_X as usize;
    let grad_norm_sq = cube_sum(sum_of_squares(grad, unit, stride));
    let factors = finish_state(
        grad_norm_sq,
        &before,
        steps,
        &hyper,
        moment_2_out,
        &mut max_moment_2_out,
        step_out,
        bias_correction,
    );
    update_elements(
        param,
        moment_1,
        grad,
        param_out,
        moment_1_out,
        &factors,
        &hyper,
        unit,
        stride,
        decay_on_update,
    );
}

/// The per-tensor values of a step after [`grad_norm_partials`] over its `g` with
/// `partial_count` cubes, in one cube: the state's `v`, `max v` and step counter (read before the
/// cube's first barrier, so the outputs may alias them), and the factors of [`update`] in the
/// workspace.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn finish_norm<I: Int>(
    moment_2: &Tensor<f32>,
    step: &Tensor<I>,
    max_moment_2: ComptimeOption<&Tensor<f32>>,
    workspace: &mut Tensor<f32>,
    moment_2_out: &mut Tensor<f32>,
    step_out: &mut Tensor<I>,
    mut max_moment_2_out: ComptimeOption<&mut Tensor<f32>>,
    partial_count: u32,
    hyper: Hyper,
    #[comptime] bias_correction: bool,
    #[define(I)] _step_dtype: ElemType,
) {
    let before = before(step, moment_2, &max_moment_2);
    let steps = step[0];
    let mut partial = f32::new(0.0);
    let mut index = UNIT_POS_X;
    while index < partial_count {
        partial += workspace[WORKSPACE_PARTIALS + index as usize];
        index += CUBE_DIM_X;
    }
    let grad_norm_sq = cube_sum(partial);
    let factors = finish_state(
        grad_norm_sq,
        &before,
        steps,
        &hyper,
        moment_2_out,
        &mut max_moment_2_out,
        step_out,
        bias_correction,
    );
    if UNIT_POS_X == 0 {
        write_factors(workspace, 0, &factors);
    }
}

/// `w` and `m` of one NovoGrad step of a tensor, with the factors that [`finish_norm`] left in
/// the workspace: an element-wise kernel, without a barrier.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn update<M: Float, N: Size>(
    param: &Tensor<Vector<f32, N>>,
    moment_1: &Tensor<Vector<M, N>>,
    grad: &Tensor<Vector<f32, N>>,
    workspace: &Tensor<f32>,
    param_out: &mut Tensor<Vector<f32, N>>,
    moment_1_out: &mut Tensor<Vector<M, N>>,
    hyper: Hyper,
    #[comptime] decay_on_update: bool,
    #[define(M)] _moment_dtype: ElemType,
) {
    let factors = read_factors(workspace, 0);
    let stride = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    update_elements(
        param,
        moment_1,
        grad,
        param_out,
        moment_1_out,
        &factors,
        &hyper,
        ABSOLUTE_POS,
        stride,
        decay_on_update,
    );
}

/// Values per `u32` word of an 8-bit `m`: Burn's `Q8S` codes, packed four to a word, the
/// first in the low byte, each a two's complement byte.
pub const CODES_PER_WORD: usize = 4;

/// The scale of a block whose `max|m|` is 0 or not finite: the smallest positive normal f32.
const SMALLEST_SCALE: f32 = f32::MIN_POSITIVE;

/// The four codes of `word` as f32 lanes.
#[cube]
fn unpack_codes<N: Size>(word: u32) -> Vector<f32, N> {
    let mut codes = Vector::<f32, N>::empty();
    #[unroll]
    for position in 0..CODES_PER_WORD {
        let byte = (word >> u32::cast_from(position * 8)) & 0xFF;
        let negative = i32::cast_from(byte >= 128);
        codes.insert(
            position,
            f32::cast_from(i32::cast_from(byte) - negative * 256),
        );
    }
    codes
}

/// The codes of four values `m·inverse` packed in a word: rounded to nearest, ties away from
/// zero, clamped to `[−127, 127]`, a NaN to 0 (as the fused Flex step and Burn's quantisation).
#[cube]
fn pack_codes<N: Size>(moment: Vector<f32, N>, inverse: f32) -> u32 {
    let mut word = 0u32;
    #[unroll]
    for position in 0..CODES_PER_WORD {
        let value = moment.extract(position) * inverse;
        let truncated = f32::trunc(value);
        let away = select(value < f32::new(0.0), f32::new(-1.0), f32::new(1.0));
        let half_or_more = f32::abs(value - truncated) >= f32::new(0.5);
        let rounded = truncated + select(half_or_more, away, f32::new(0.0));
        let clamped = f32::clamp(rounded, f32::new(-127.0), f32::new(127.0));
        let code = i32::cast_from(select(f32::is_nan(value), f32::new(0.0), clamped));
        word |= u32::cast_from(code & 0xFF) << u32::cast_from(position * 8);
    }
    word
}

/// `max(largest, |m|)` over the lanes of `moment`, NaNs ignored.
#[cube]
fn largest_magnitude<N: Size>(largest: f32, moment: Vector<f32, N>) -> f32 {
    let mut largest = largest;
    #[unroll]
    for position in 0..CODES_PER_WORD {
        let magnitude = f32::abs(moment.extract(position));
        largest = select(magnitude > largest, magnitude, largest);
    }
    largest
}

/// `w` and an 8-bit `m` (codes `q` and one scale `σ` per block, `m = σ·q`) of one NovoGrad step,
/// with the factors that [`finish_norm`] left in the workspace: each unit steps whole blocks of
/// `block_words` words (four values each, `N` = 4), reading the codes and scales and writing
/// them back (in place when the outputs alias them), so no f32 copy of `m` is made. Per block:
/// `m_{t−1} = σ·q`, [`next_moment_1`] and [`next_param`] as for an f32 `m`, then
/// `σ = 2·max|m_t|/254` (the smallest positive f32 where that is 0 or not finite) and
/// `q = round(m_t/σ)` ([`pack_codes`]). A skipped step writes every input back as it was.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn update_int8<N: Size>(
    param: &Tensor<Vector<f32, N>>,
    codes: &Tensor<u32>,
    scales: &Tensor<f32>,
    grad: &Tensor<Vector<f32, N>>,
    workspace: &Tensor<f32>,
    param_out: &mut Tensor<Vector<f32, N>>,
    codes_out: &mut Tensor<u32>,
    scales_out: &mut Tensor<f32>,
    hyper: Hyper,
    #[comptime] block_words: usize,
    #[comptime] decay_on_update: bool,
) {
    let factors = vector_factors::<N>(&read_factors(workspace, 0), &hyper);
    let stride = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    let mut block = ABSOLUTE_POS;
    while block < scales.len() {
        let first = block * block_words;
        let scale = scales[block];
        let mut moment = Array::<Vector<f32, N>>::new(block_words);
        let mut largest = f32::new(0.0);
        #[unroll]
        for word in 0..block_words {
            let index = first + word;
            let w = param[index];
            let m = unpack_codes::<N>(codes[index]) * Vector::new(scale);
            let m_next = next_moment_1(w, m, grad[index], &factors, decay_on_update);
            let w_next = next_param(w, m_next, &factors, decay_on_update);
            param_out[index] = select(factors.applied, w_next, w);
            moment[word] = m_next;
            largest = largest_magnitude(largest, m_next);
        }
        let next_scale = f32::new(2.0) * largest / f32::new(254.0);
        let usable = next_scale > f32::new(0.0) && !f32::is_inf(next_scale);
        let next_scale = select(usable, next_scale, f32::new(SMALLEST_SCALE));
        let inverse = f32::new(1.0) / next_scale;
        #[unroll]
        for word in 0..block_words {
            let index = first + word;
            let stored = codes[index];
            codes_out[index] = select(factors.applied, pack_codes(moment[word], inverse), stored);
        }
        scales_out[block] = select(factors.applied, next_scale, scale);
        block += stride;
    }
}
