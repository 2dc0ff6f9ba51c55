//! The kernels of a tensor's step ([`super`]) over a list of tensors, each launched once for
//! all of them: for tensors that one cube covers, [`step_in_one_cube`] (one cube per tensor);
//! for larger ones, [`grad_norm_partials`] (partial sums of `g²`), [`finish_norms`] (one cube
//! per tensor: `v`, `max v`, the step counter and the factors of the update) and [`update`]
//! (element-wise, without a barrier). Every buffer is updated in place. A list is a
//! `Sequence` of tensors, whose indexes are compile-time: each kernel unrolls one branch per
//! tensor, chosen by the cube's position, and is compiled once per list layout (length, vector
//! width, options). A cube's tensor is `i` when `first_cubes[i] ≤ cube < first_cubes[i + 1]`.
//!
//! The workspace holds [`FACTOR_SLOTS`] factors per tensor, then one partial sum per cube of
//! [`grad_norm_partials`].

use cubecl::prelude::*;

use super::{
    After, Before, FACTOR_SLOTS, Hyper, VectorFactors, cube_sum, next_moment_1, next_param,
    read_factors, scalars, state_after, stored, stored_f32, sum_of_squares, vector_factors,
    write_factors,
};

/// One NovoGrad step of every tensor of the list, cube `i` stepping tensor `i` alone (one cube
/// covers each): `‖g‖²` summed as [`super::step_in_one_cube`] sums it, the per-tensor values
/// ([`scalars`]), the state's (read before the cube's first barrier, written in place) and
/// [`update_tensor`] over the cube's units.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn step_in_one_cube<I: Int, M: Float, N: Size>(
    params: &mut Sequence<OwnedTensor<Vector<f32, N>>>,
    moments_1: &mut Sequence<OwnedTensor<Vector<M, N>>>,
    grads: &Sequence<OwnedTensor<Vector<f32, N>>>,
    moments_2: &mut Sequence<OwnedTensor<f32>>,
    steps: &mut Sequence<OwnedTensor<I>>,
    max_moments_2: &mut Sequence<OwnedTensor<f32>>,
    hyper: Hyper,
    #[comptime] bias_correction: bool,
    #[comptime] decay_on_update: bool,
    #[define(I, M)] _step_and_moment_dtypes: [ElemType; 2],
) {
    let tensors = comptime!(grads.len());
    let amsgrad = comptime!(max_moments_2.len() == tensors);
    let tensor = CUBE_POS_X as usize;
    let (unit, units) = (UNIT_POS_X as usize, CUBE_DIM_X as usize);
    let mut moment_2 = f32::new(0.0);
    let mut max_moment_2 = f32::new(0.0);
    let mut steps_before = I::new(0);
    let mut sum = f32::new(0.0);
    #[unroll]
    for i in 0..tensors {
        if tensor == i {
            read_state_of(
                moments_2,
                steps,
                max_moments_2,
                &mut moment_2,
                &mut max_moment_2,
                &mut steps_before,
                i,
                amsgrad,
            );
            sum = sum_of_squares(grads.index(i), unit, units);
        }
    }
    let before = Before {
        steps: f32::cast_from(steps_before),
        moment_2,
        max_moment_2,
    };
    let scalars = scalars(cube_sum(sum), &before, &hyper, amsgrad, bias_correction);
    let after = state_after::<I>(&scalars, &before, steps_before);
    let factors = vector_factors::<N>(&scalars.factors, &hyper);
    #[unroll]
    for i in 0..tensors {
        if tensor == i {
            if UNIT_POS_X == 0 {
                write_state_of(moments_2, steps, max_moments_2, &after, i, amsgrad);
            }
            let param = params.index_mut(i);
            let moment_1 = moments_1.index_mut(i);
            let grad = grads.index(i);
            update_tensor(
                param,
                moment_1,
                grad,
                &factors,
                unit,
                units,
                decay_on_update,
            );
        }
    }
}

/// Reads tensor `i`'s per-tensor state before its step: `v`, `max v` (`v` without amsgrad) and
/// the steps taken.
#[cube]
#[allow(clippy::too_many_arguments)] // The state's lists and what is read from them.
fn read_state_of<I: Int>(
    moments_2: &mut Sequence<OwnedTensor<f32>>,
    steps: &mut Sequence<OwnedTensor<I>>,
    max_moments_2: &mut Sequence<OwnedTensor<f32>>,
    moment_2: &mut f32,
    max_moment_2: &mut f32,
    steps_before: &mut I,
    #[comptime] i: usize,
    #[comptime] amsgrad: bool,
) {
    *moment_2 = moments_2.index(i)[0];
    *max_moment_2 = *moment_2;
    if amsgrad {
        *max_moment_2 = max_moments_2.index(i)[0];
    }
    *steps_before = steps.index(i)[0];
}

/// Writes tensor `i`'s per-tensor state after its step, in place.
#[cube]
fn write_state_of<I: Int>(
    moments_2: &mut Sequence<OwnedTensor<f32>>,
    steps: &mut Sequence<OwnedTensor<I>>,
    max_moments_2: &mut Sequence<OwnedTensor<f32>>,
    after: &After<I>,
    #[comptime] i: usize,
    #[comptime] amsgrad: bool,
) {
    moments_2.index_mut(i)[0] = after.moment_2;
    if amsgrad {
        max_moments_2.index_mut(i)[0] = after.max_moment_2;
    }
    steps.index_mut(i)[0] = after.steps;
}

/// `w` and `m` of the vectors `start, start + stride, …` of one tensor in place
/// ([`next_moment_1`], [`next_param`]; `m` stored as `M`, f32 or bf16); a skipped step writes
/// nothing.
#[cube]
fn update_tensor<M: Float, N: Size>(
    param: &mut Tensor<Vector<f32, N>>,
    moment_1: &mut Tensor<Vector<M, N>>,
    grad: &Tensor<Vector<f32, N>>,
    factors: &VectorFactors<N>,
    start: usize,
    stride: usize,
    #[comptime] decay_on_update: bool,
) {
    let mut index = start;
    while factors.applied && index < param.len() {
        let w = param[index];
        let m = stored_f32(moment_1[index]);
        let m_next = next_moment_1(w, m, grad[index], factors, decay_on_update);
        param[index] = next_param(w, m_next, factors, decay_on_update);
        moment_1[index] = stored::<M, N>(m_next);
        index += stride;
    }
}

/// `workspace[FACTOR_SLOTS·n + c] = Σ g²` over the elements of its tensor that cube `c` visits
/// (a grid-stride loop over the tensor's cubes).
#[cube(launch)]
pub fn grad_norm_partials<N: Size>(
    grads: &Sequence<OwnedTensor<Vector<f32, N>>>,
    workspace: &mut Tensor<f32>,
    first_cubes: Sequence<usize>,
) {
    let tensors = comptime!(grads.len());
    let cube = CUBE_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let mut sum = f32::new(0.0);
    #[unroll]
    for i in 0..tensors {
        let (first, end) = (first_cubes[i], first_cubes[i + 1]);
        if cube >= first && cube < end {
            let start = (cube - first) * units + UNIT_POS_X as usize;
            sum = sum_of_squares(grads.index(i), start, (end - first) * units);
        }
    }
    // Outside the branches: every unit of every cube reaches the barriers.
    let total = cube_sum(sum);
    if UNIT_POS_X == 0 {
        workspace[FACTOR_SLOTS * tensors + cube] = total;
    }
}

/// Cube `i` finishes tensor `i`: adds its partial sums (laid out by `first_cubes`) in a fixed
/// order, derives its per-tensor values ([`scalars`]), writes `v`, `max v` (with amsgrad: the
/// list `max_moments_2` is empty without it) and the step counter in place (read before the
/// cube's first barrier) and the factors of [`update`] at `workspace[FACTOR_SLOTS·i]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn finish_norms<I: Int>(
    moments_2: &mut Sequence<OwnedTensor<f32>>,
    steps: &mut Sequence<OwnedTensor<I>>,
    max_moments_2: &mut Sequence<OwnedTensor<f32>>,
    workspace: &mut Tensor<f32>,
    first_cubes: Sequence<usize>,
    hyper: Hyper,
    #[comptime] bias_correction: bool,
    #[define(I)] _step_dtype: ElemType,
) {
    let tensors = comptime!(moments_2.len());
    let amsgrad = comptime!(max_moments_2.len() == tensors);
    let tensor = CUBE_POS_X as usize;
    let mut moment_2 = f32::new(0.0);
    let mut max_moment_2 = f32::new(0.0);
    let mut steps_before = I::new(0);
    let mut partial = f32::new(0.0);
    #[unroll]
    for i in 0..tensors {
        if tensor == i {
            read_state_of(
                moments_2,
                steps,
                max_moments_2,
                &mut moment_2,
                &mut max_moment_2,
                &mut steps_before,
                i,
                amsgrad,
            );
            let mut index = first_cubes[i] + UNIT_POS_X as usize;
            while index < first_cubes[i + 1] {
                partial += workspace[FACTOR_SLOTS * tensors + index];
                index += CUBE_DIM_X as usize;
            }
        }
    }
    let before = Before {
        steps: f32::cast_from(steps_before),
        moment_2,
        max_moment_2,
    };
    let grad_norm_sq = cube_sum(partial);
    let scalars = scalars(grad_norm_sq, &before, &hyper, amsgrad, bias_correction);
    if UNIT_POS_X == 0 {
        let after = state_after::<I>(&scalars, &before, steps_before);
        #[unroll]
        for i in 0..tensors {
            if tensor == i {
                write_state_of(moments_2, steps, max_moments_2, &after, i, amsgrad);
            }
        }
        write_factors(workspace, FACTOR_SLOTS * tensor, &scalars.factors);
    }
}

/// `w` and `m` of every tensor in place, with the factors that [`finish_norms`] left in the
/// workspace (`next_moment_1`, `next_param`; `m` stored as `M`, f32 or bf16); a skipped tensor
/// is not written.
#[cube(launch)]
#[allow(clippy::too_many_arguments)] // A kernel's buffers are its arguments.
pub fn update<M: Float, N: Size>(
    params: &mut Sequence<OwnedTensor<Vector<f32, N>>>,
    moments_1: &mut Sequence<OwnedTensor<Vector<M, N>>>,
    grads: &Sequence<OwnedTensor<Vector<f32, N>>>,
    workspace: &Tensor<f32>,
    first_cubes: Sequence<usize>,
    hyper: Hyper,
    #[comptime] decay_on_update: bool,
    #[define(M)] _moment_dtype: ElemType,
) {
    let tensors = comptime!(grads.len());
    let cube = CUBE_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    #[unroll]
    for i in 0..tensors {
        let (first, end) = (first_cubes[i], first_cubes[i + 1]);
        if cube >= first && cube < end {
            let factors = read_factors(workspace, FACTOR_SLOTS * i);
            let factors = vector_factors::<N>(&factors, &hyper);
            let param = params.index_mut(i);
            let moment_1 = moments_1.index_mut(i);
            let grad = grads.index(i);
            let stride = (end - first) * units;
            let start = (cube - first) * units + UNIT_POS_X as usize;
            update_tensor(
                param,
                moment_1,
                grad,
                &factors,
                start,
                stride,
                decay_on_update,
            );
        }
    }
}
