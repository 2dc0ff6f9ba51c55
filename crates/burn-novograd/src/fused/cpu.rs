//! The maths of a fused step on the CPU: `‖g‖²` in one pass over `g`, the per-tensor scalars
//! from it, and the element loop that updates `w` and `m` in place (`m` in its own storage
//! type), each pass split over the cores when the tensor is large.

use core::ops::{Add, Mul, Sub};
use std::sync::{Mutex, OnceLock};

use burn::optim::LearningRate;
use burn::tensor::bf16;

use crate::config::WeightDecayMode;
use crate::hyper::Hyper;

#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
mod helpers;

/// Tensors smaller than this run on the calling thread; larger ones are split over the cores.
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// The per-tensor scalars of one applied step, in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scalars {
    /// `v_t`.
    pub moment_2: f64,
    /// `max(v̂_{t−1}, v_t)` when the state keeps a running maximum (amsgrad).
    pub max_moment_2: Option<f64>,
    /// `1/(√(v̂_t/(1 − β2^t) + ε_root) + ε)`, clamped to the parameter dtype's largest value.
    pub inv_denom: f64,
    /// `1 − β1^t`, or 1 without bias correction.
    pub correction_1: f64,
}

/// What a step reads of the state besides `m`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Previous {
    /// `v_{t−1}`.
    pub moment_2: f64,
    /// The running maximum of `v`, when the state keeps one.
    pub max_moment_2: Option<f64>,
    /// The step being taken, counted from 1.
    pub step: i64,
}

/// A float element a fused step computes in: `f32` or `f64`, like the parameter and its
/// second moment.
pub(crate) trait Real:
    Copy + Send + Sync + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self>
{
    /// The largest finite value.
    const MAX: f64;
    /// `value` rounded to this type.
    fn of(value: f64) -> Self;
    /// This value in f64.
    fn wide(self) -> f64;
}

impl Real for f32 {
    const MAX: f64 = f32::MAX as f64;
    fn of(value: f64) -> Self {
        value as f32
    }
    fn wide(self) -> f64 {
        self.into()
    }
}

impl Real for f64 {
    const MAX: f64 = f64::MAX;
    fn of(value: f64) -> Self {
        value
    }
    fn wide(self) -> f64 {
        self
    }
}

/// How a first-moment element of type `Self` is stored for a step that computes in `T`: as `T`
/// itself, or narrower (bf16 for f32, rounded to nearest, ties to even, as Burn's cast does).
pub(crate) trait Stored<T: Real>: Copy + Send + Sync {
    /// The stored value in `T`.
    fn load(self) -> T;
    /// `value` rounded to the storage type.
    fn store(value: T) -> Self;
    /// The second pass over a slice of `m` in this storage: [`update_elements`], unless the
    /// processor has a faster way to the same results.
    #[inline(always)]
    fn update(
        hyper: &Hyper,
        lr: LearningRate,
        scalars: &Scalars,
        param: &mut [T],
        moment_1: &mut [Self],
        grad: &[T],
    ) {
        update_elements(hyper, lr, scalars, param, moment_1, grad);
    }
}

impl<T: Real> Stored<T> for T {
    fn load(self) -> T {
        self
    }
    fn store(value: T) -> Self {
        value
    }
}

/// The conversions of `half` (which Burn's cast uses), bit for bit, written without branches so
/// that the element loop vectorises: widening shifts the bits up (a NaN made quiet); narrowing
/// rounds to nearest, ties to even, by adding `0x7FFF` plus the kept part's lowest bit before
/// the shift (an overflow rounds to ±Inf), and keeps a NaN a quiet NaN.
impl Stored<f32> for bf16 {
    fn load(self) -> f32 {
        let bits = u32::from(self.to_bits());
        let nan = bits & 0x7FFF > 0x7F80;
        f32::from_bits((bits | if nan { 0x0040 } else { 0 }) << 16)
    }
    fn store(value: f32) -> Self {
        let bits = value.to_bits();
        let nan = bits & 0x7FFF_FFFF > 0x7F80_0000;
        let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
        let quiet_nan = (bits >> 16) | 0x0040;
        bf16::from_bits(if nan { quiet_nan } else { rounded } as u16)
    }
    /// Narrowed by the processor's own instruction where it has one (AVX512-BF16): the same
    /// bits, fewer instructions per element.
    #[inline(always)]
    fn update(
        hyper: &Hyper,
        lr: LearningRate,
        scalars: &Scalars,
        param: &mut [f32],
        moment_1: &mut [Self],
        grad: &[f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx512_bf16::detected() {
            // SAFETY: the processor has the instructions, checked just above.
            unsafe { avx512_bf16::update(hyper, lr, scalars, param, moment_1, grad) };
            return;
        }
        update_elements(hyper, lr, scalars, param, moment_1, grad);
    }
}

/// The first moment of one tensor or of a part of it, as a fused step reads and writes it.
pub(crate) trait MomentSlice<T: Real>: Send + Sized {
    /// Consecutive parts of `part` elements each (the last may be shorter); `part` is a
    /// multiple of [`PART_ALIGN`].
    fn split(self, part: usize) -> Vec<Self>;
    /// The second pass over this part: `m` and `w` in place.
    fn update(
        self,
        hyper: &Hyper,
        lr: LearningRate,
        scalars: &Scalars,
        param: &mut [T],
        grad: &[T],
    );
}

/// What the parts of a tensor split over the cores are a multiple of: every 8-bit block size.
const PART_ALIGN: usize = super::INT8_BLOCKS[0];

impl<T: Real, M: Stored<T>> MomentSlice<T> for &mut [M] {
    fn split(self, part: usize) -> Vec<Self> {
        self.chunks_mut(part).collect()
    }
    #[inline(always)]
    fn update(
        self,
        hyper: &Hyper,
        lr: LearningRate,
        scalars: &Scalars,
        param: &mut [T],
        grad: &[T],
    ) {
        M::update(hyper, lr, scalars, param, self, grad);
    }
}

/// An 8-bit first moment: codes `q` and one scale `σ` per block, `m = σ·q`, laid out as Burn's
/// Flex backend stores `MomentDtype::Int8` (its `Q8S` block-wise quantisation).
pub(crate) struct Int8Blocks<'a> {
    /// `q ∈ [−127, 127]`, one per element.
    pub codes: &'a mut [i8],
    /// `σ`, one per block.
    pub scales: &'a mut [f32],
    /// Elements per block: 16, 32, 64 or 128.
    pub block: usize,
}

impl MomentSlice<f32> for Int8Blocks<'_> {
    fn split(self, part: usize) -> Vec<Self> {
        let block = self.block;
        (self.codes.chunks_mut(part))
            .zip(self.scales.chunks_mut(part / block))
            .map(|(codes, scales)| Int8Blocks {
                codes,
                scales,
                block,
            })
            .collect()
    }
    /// Block by block: `m_{t−1} = σ·q` widened into a buffer, the f32 step on it (the same loop
    /// as an f32 moment), then `σ = max|m_t|/127` (2·max/254, the smallest positive f32 for an
    /// all-zero block) and `q = round(m_t/σ)` (ties away from zero), as Burn's quantisation.
    #[inline(always)]
    fn update(
        self,
        hyper: &Hyper,
        lr: LearningRate,
        scalars: &Scalars,
        param: &mut [f32],
        grad: &[f32],
    ) {
        let (codes, scales) = (self.codes, self.scales);
        match self.block {
            128 => update_blocks::<128>(hyper, lr, scalars, param, codes, scales, grad),
            64 => update_blocks::<64>(hyper, lr, scalars, param, codes, scales, grad),
            32 => update_blocks::<32>(hyper, lr, scalars, param, codes, scales, grad),
            16 => update_blocks::<16>(hyper, lr, scalars, param, codes, scales, grad),
            block => unreachable!("8-bit blocks are of 16, 32, 64 or 128 values, not {block}"),
        }
    }
}

/// [`Int8Blocks::update`] with its block size known to the compiler, so that each block's
/// loops are unrolled and vectorised.
#[inline(always)]
fn update_blocks<const BLOCK: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    scalars: &Scalars,
    param: &mut [f32],
    codes: &mut [i8],
    scales: &mut [f32],
    grad: &[f32],
) {
    let blocks = (codes.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
        .zip(param.chunks_exact_mut(BLOCK).zip(grad.chunks_exact(BLOCK)));
    for ((codes, scale), (param, grad)) in blocks {
        let mut moment = [0.0f32; BLOCK];
        for (m, &code) in moment.iter_mut().zip(codes.iter()) {
            *m = *scale * f32::from(code);
        }
        update_elements(hyper, lr, scalars, param, &mut moment, grad);
        let next_scale = 2.0 * largest_magnitude(&moment) / 254.0;
        *scale = match next_scale > 0.0 && next_scale.is_finite() {
            true => next_scale,
            false => f32::MIN_POSITIVE,
        };
        let inverse = 1.0 / *scale;
        for (code, &m) in codes.iter_mut().zip(moment.iter()) {
            let code_value = round_half_away(m * inverse).clamp(-127.0, 127.0);
            // A NaN becomes 0, as Rust's saturating cast makes it.
            let code_value = if code_value.is_nan() { 0.0 } else { code_value };
            // SAFETY: a value in [−127, 127], not NaN: in range of i32.
            *code = unsafe { code_value.to_int_unchecked::<i32>() } as i8;
        }
    }
}

/// `max|x|` over `values` ignoring NaNs, as a fold with `f32::max` from 0 gives, by the order
/// of the magnitudes' bit patterns (which is their order, NaNs above +∞), in integers, which
/// vectorise; the fold itself only when a NaN is there.
#[inline(always)]
fn largest_magnitude(values: &[f32]) -> f32 {
    let largest_bits = (values.iter())
        .map(|x| x.to_bits() & 0x7FFF_FFFF)
        .fold(0, u32::max);
    match largest_bits > f32::INFINITY.to_bits() {
        false => f32::from_bits(largest_bits),
        true => values.iter().fold(0.0f32, |max, x| max.max(x.abs())),
    }
}

/// `f32::round` (to nearest, ties away from zero) from operations that vectorise: `x` plus
/// the largest f32 below ½, with `x`'s sign, truncated. A tie `n + ½` sums to within half an
/// ulp of `n + 1` and rounds there; anything below it stays below. Equal to `x.round()` for
/// every f32 (tested over all 2³² of them).
#[inline(always)]
fn round_half_away(x: f32) -> f32 {
    const BELOW_HALF: f32 = 0.499_999_97;
    (x + BELOW_HALF.copysign(x)).trunc()
}

/// Both passes over one contiguous tensor, `w` and `m` in place. `None` (and nothing touched)
/// when `‖g‖²`, rounded to `T` as the second moment is, is not finite: a NaN or ±Inf in `g`, or
/// a sum past `T`'s range. A large tensor is split over the cores once for both passes: each
/// thread sums its part of `g`, waits for the others, adds all partial sums in the same order
/// (so every thread derives the same scalars) and updates its part, while that part of `g` is
/// still in its cache.
pub(crate) fn fused_step<T: Real, M: MomentSlice<T>>(
    hyper: &Hyper,
    lr: LearningRate,
    param: &mut [T],
    moment_1: M,
    grad: &[T],
    previous: Previous,
) -> Option<Scalars> {
    // Adds up the partial sums of ‖g‖², then updates one part of the tensor.
    let finish = |sum: f64, param: &mut [T], moment_1: M, grad: &[T]| {
        let grad_norm_sq = T::of(sum).wide();
        if !grad_norm_sq.is_finite() {
            return None;
        }
        let scalars = scalars(hyper, grad_norm_sq, previous, T::MAX);
        update_fastest(hyper, lr, &scalars, param, moment_1, grad);
        Some(scalars)
    };
    if param.len() < PARALLEL_MIN {
        return finish(sum_squares(grad), param, moment_1, grad);
    }
    let part = param.len().div_ceil(cores()).next_multiple_of(PART_ALIGN);
    let parts: Vec<_> = (param.chunks_mut(part))
        .zip(moment_1.split(part))
        .zip(grad.chunks(part))
        .collect();
    let partial_sums: Vec<OnceLock<f64>> = parts.iter().map(|_| OnceLock::new()).collect();
    let steps = on_threads(
        parts.into_iter().enumerate().collect(),
        |(index, ((w, m), g))| {
            partial_sums[index].get_or_init(|| sum_squares(g));
            helpers::wait_until(|| partial_sums.iter().all(|partial| partial.get().is_some()));
            let sum = (partial_sums.iter())
                .map(|partial| *partial.get().expect("every part summed"))
                .sum();
            finish(sum, w, m, g)
        },
    );
    steps.into_iter().next().flatten()
}

/// The scalars of step `t` from `‖g_t‖²` and the previous `v` and running maximum: the same
/// equations as the tensor-op step.
pub(crate) fn scalars(
    hyper: &Hyper,
    grad_norm_sq: f64,
    previous: Previous,
    dtype_max: f64,
) -> Scalars {
    let beta_2 = f64::from(hyper.beta_2);
    let moment_2 = match previous.step {
        1 => grad_norm_sq,
        _ => beta_2 * previous.moment_2 + (1.0 - beta_2) * grad_norm_sq,
    };
    // Amsgrad follows the state, as in the tensor-op step: a maximum is kept if it has one.
    let max_moment_2 = previous.max_moment_2.map(|max| max.max(moment_2));
    let correction = |beta: f32| match hyper.bias_correction {
        true => 1.0 - f64::from(beta).powf(previous.step as f64),
        false => 1.0,
    };
    let v_hat = max_moment_2.unwrap_or(moment_2) / correction(hyper.beta_2);
    let inv_denom =
        1.0 / ((v_hat + f64::from(hyper.epsilon_root)).sqrt() + f64::from(hyper.epsilon));
    Scalars {
        moment_2,
        max_moment_2,
        inv_denom: inv_denom.min(dtype_max),
        correction_1: correction(hyper.beta_1),
    }
}

/// [`MomentSlice::update`] compiled for the widest vectors the processor has: AVX2 where it has
/// them (detected at run time; the same IEEE operations, so the same results), else the build's
/// baseline. Without AVX2's packing instructions the bf16 moment's loop does not vectorise.
fn update_fastest<T: Real, M: MomentSlice<T>>(
    hyper: &Hyper,
    lr: LearningRate,
    scalars: &Scalars,
    param: &mut [T],
    moment_1: M,
    grad: &[T],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        /// The same loop with AVX2 enabled.
        #[target_feature(enable = "avx2")]
        fn with_avx2<T: Real, M: MomentSlice<T>>(
            hyper: &Hyper,
            lr: LearningRate,
            scalars: &Scalars,
            param: &mut [T],
            moment_1: M,
            grad: &[T],
        ) {
            moment_1.update(hyper, lr, scalars, param, grad);
        }
        // SAFETY: the processor has AVX2, checked just above.
        unsafe { with_avx2(hyper, lr, scalars, param, moment_1, grad) };
        return;
    }
    moment_1.update(hyper, lr, scalars, param, grad);
}

/// The second pass: `m` and `w` of a slice of the tensor, in place.
#[inline(always)]
fn update_elements<T: Real, M: Stored<T>>(
    hyper: &Hyper,
    lr: LearningRate,
    scalars: &Scalars,
    param: &mut [T],
    moment_1: &mut [M],
    grad: &[T],
) {
    let beta_1 = T::of(hyper.beta_1.into());
    let input_scale = T::of(hyper.moment_input_scale.into());
    let decay = T::of(hyper.weight_decay.into());
    let elements = param.iter_mut().zip(moment_1.iter_mut()).zip(grad);
    match hyper.weight_decay_mode {
        // m_t = β1·m_{t−1} + a·(g_t/(√v̂_t + ε) + d·w_t); w_{t+1} = w_t − λ/(1 − β1^t)·m_t
        WeightDecayMode::InMoment => {
            let inv_denom = T::of(scalars.inv_denom);
            let step_size = T::of(lr / scalars.correction_1);
            for ((w, m), &g) in elements {
                let moment = beta_1 * m.load() + input_scale * (g * inv_denom + decay * *w);
                *m = M::store(moment);
                *w = *w - step_size * moment;
            }
        }
        // m_t = β1·m_{t−1} + a·g_t; w_{t+1} = w_t − λ·(m_t/((1 − β1^t)·(√v̂_t + ε)) + d·w_t)
        WeightDecayMode::OnUpdate => {
            let scale = T::of(scalars.inv_denom / scalars.correction_1);
            let lr = T::of(lr);
            for ((w, m), &g) in elements {
                let moment = beta_1 * m.load() + input_scale * g;
                *m = M::store(moment);
                *w = *w - lr * (moment * scale + decay * *w);
            }
        }
    }
}

/// `Σ x²` accumulated in f64 over eight lanes, so that the loop vectorises.
fn sum_squares<T: Real>(values: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut groups = values.chunks_exact(8);
    for group in &mut groups {
        for (lane, &x) in lanes.iter_mut().zip(group) {
            *lane += x.wide() * x.wide();
        }
    }
    let rest: f64 = groups.remainder().iter().map(|x| x.wide() * x.wide()).sum();
    lanes.iter().sum::<f64>() + rest
}

/// The cores a large tensor is split over.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `work` on every item: the first on the calling thread, the others on the threads kept for
/// it (see [`helpers`]).
fn on_threads<I: Send, R: Send>(items: Vec<I>, work: impl Fn(I) -> R + Sync) -> Vec<R> {
    let items: Vec<Mutex<Option<I>>> = items.into_iter().map(|item| Some(item).into()).collect();
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| None.into()).collect();
    helpers::run_parts(items.len(), &|index| {
        let item = helpers::lock(&items[index])
            .take()
            .expect("each part runs once");
        *helpers::lock(&results[index]) = Some(work(item));
    });
    (results.into_iter())
        .map(|result| result.into_inner().ok().flatten().expect("every part ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{largest_magnitude, round_half_away};

    #[test]
    fn largest_magnitude_is_the_fold_of_f32_max() {
        let fold = |values: &[f32]| values.iter().fold(0.0f32, |max, x| max.max(x.abs()));
        let cases: [&[f32]; 7] = [
            &[],
            &[-0.0, 0.0],
            &[1e-45, -3.0, 2.5, f32::MIN_POSITIVE],
            &[-f32::INFINITY, 1.0],
            &[f32::NAN, -2.0, 1.0],
            &[f32::NAN, f32::NAN],
            &[-f32::MAX, f32::NAN, f32::INFINITY],
        ];
        for values in cases {
            assert_eq!(
                largest_magnitude(values).to_bits(),
                fold(values).to_bits(),
                "{values:?}"
            );
        }
    }

    /// Every one of the 2³² f32 bit patterns (about 15 s).
    #[test]
    fn round_half_away_is_f32_round() {
        for bits in 0..=u32::MAX {
            let x = f32::from_bits(bits);
            let (rounded, expected) = (round_half_away(x), x.round());
            assert!(
                rounded == expected || (rounded.is_nan() && expected.is_nan()),
                "{x:e}: {rounded} against {expected}"
            );
        }
    }
}
