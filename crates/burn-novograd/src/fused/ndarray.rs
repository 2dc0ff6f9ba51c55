//! The fused step on burn-ndarray: `‖g‖²` in one pass over `g`, then `w` and `m` in place in a
//! second pass, each split over the cores when the tensor is large. `w` and `m` are written in
//! place when their buffers are uniquely owned (copied once otherwise); no other temporary the
//! size of the tensor is made. The per-tensor scalars live in host memory on this backend, so
//! reading them is no device sync.

use core::any::TypeId;

use burn::optim::LearningRate;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, Int, Tensor};
use burn_ndarray::NdArrayTensor;
use ndarray::{ArcArray, IxDyn};
use std::sync::OnceLock;

use super::Inputs;
use super::cpu::{Real, Scalars};
use super::primitive::{from_float, into_float, into_int};
use crate::optimizer::{NovoGrad, NovoGradState};

/// Tensors smaller than this run on the calling thread; larger ones are split over the cores.
const PARALLEL_MIN: usize = 1 << 18;

/// The fused step when `B` is burn-ndarray and the tensors are f32 or f64.
pub(super) fn step<B: Backend, const D: usize>(
    novograd: &NovoGrad,
    lr: LearningRate,
    (param, grad, state): Inputs<B, D>,
) -> Result<(Tensor<B, D>, NovoGradState<B, D>), Inputs<B, D>> {
    let dtypes = [param.dtype(), grad.dtype(), state.moment_1.dtype()];
    let ndarray = TypeId::of::<NdArrayTensor>();
    let supported = TypeId::of::<B::FloatTensorPrimitive>() == ndarray
        && TypeId::of::<B::IntTensorPrimitive>() == ndarray
        && (dtypes == [DType::F32; 3] || dtypes == [DType::F64; 3]);
    if !supported {
        return Err((param, grad, state));
    }
    let NovoGradState {
        moment_1,
        moment_2,
        max_moment_2,
        step,
    } = state;
    let previous = Previous {
        moment_2: first(moment_2.clone()),
        max_moment_2: max_moment_2.clone().map(first),
        step: count(step.clone()) + 1,
    };
    let (param, moment_1, scalars) =
        match (into_float(param), into_float(grad), into_float(moment_1)) {
            (NdArrayTensor::F32(w), NdArrayTensor::F32(g), NdArrayTensor::F32(m)) => {
                let (w, g, m) = (w.into_owned(), g.into_owned(), m.into_owned());
                let (w, m, scalars) = fused(novograd, lr, w, g, m, previous, f32::MAX.into());
                (
                    NdArrayTensor::F32(w.into()),
                    NdArrayTensor::F32(m.into()),
                    scalars,
                )
            }
            (NdArrayTensor::F64(w), NdArrayTensor::F64(g), NdArrayTensor::F64(m)) => {
                let (w, g, m) = (w.into_owned(), g.into_owned(), m.into_owned());
                let (w, m, scalars) = fused(novograd, lr, w, g, m, previous, f64::MAX);
                (
                    NdArrayTensor::F64(w.into()),
                    NdArrayTensor::F64(m.into()),
                    scalars,
                )
            }
            _ => unreachable!("the dtypes were checked above"),
        };
    let (param, moment_1) = (from_float(param), from_float(moment_1));
    let state = match scalars {
        Some(scalars) => NovoGradState {
            moment_1,
            moment_2: moment_2.zeros_like().add_scalar(scalars.moment_2),
            max_moment_2: (max_moment_2.zip(scalars.max_moment_2))
                .map(|(max, value)| max.zeros_like().add_scalar(value)),
            step: step.add_scalar(1),
        },
        // A NaN or ±Inf in g: nothing was touched.
        None => NovoGradState {
            moment_1,
            moment_2,
            max_moment_2,
            step,
        },
    };
    Ok((param, state))
}

/// What a step reads of the state besides `m`.
#[derive(Clone, Copy)]
struct Previous {
    moment_2: f64,
    max_moment_2: Option<f64>,
    /// The step being taken, counted from 1.
    step: i64,
}

/// Both passes on one tensor; `None` (and `w`, `m` untouched) when `‖g‖²` is not finite.
fn fused<T: Real + Element>(
    novograd: &NovoGrad,
    lr: LearningRate,
    param: Array<T>,
    grad: Array<T>,
    moment_1: Array<T>,
    previous: Previous,
    dtype_max: f64,
) -> (Array<T>, Array<T>, Option<Scalars>) {
    let (mut param, grad, mut moment_1) = (standard(param), standard(grad), standard(moment_1));
    let grad = grad.as_slice().expect("standard layout");
    let grad_norm_sq = sum_squares(grad);
    if !grad_norm_sq.is_finite() {
        return (param, moment_1, None);
    }
    let scalars = novograd.scalars(
        grad_norm_sq,
        previous.moment_2,
        previous.max_moment_2,
        previous.step,
        dtype_max,
    );
    let w = param.as_slice_mut().expect("standard layout");
    let m = moment_1.as_slice_mut().expect("standard layout");
    let part = part(w.len());
    let parts = w
        .chunks_mut(part)
        .zip(m.chunks_mut(part))
        .zip(grad.chunks(part));
    on_threads(parts.collect(), |((w, m), g)| {
        novograd.update_elements(lr, &scalars, w, m, g)
    });
    (param, moment_1, Some(scalars))
}

/// `Σ x²` accumulated in f64 over eight lanes (so that the loop vectorises), split over the
/// cores when large.
fn sum_squares<T: Real>(values: &[T]) -> f64 {
    let sum = |part: &[T]| {
        let mut lanes = [0.0f64; 8];
        let mut groups = part.chunks_exact(8);
        for group in &mut groups {
            for (lane, &x) in lanes.iter_mut().zip(group) {
                *lane += x.wide() * x.wide();
            }
        }
        let rest: f64 = groups.remainder().iter().map(|x| x.wide() * x.wide()).sum();
        lanes.iter().sum::<f64>() + rest
    };
    on_threads(values.chunks(part(values.len())).collect(), sum)
        .into_iter()
        .sum()
}

/// Elements per thread: the whole tensor when small, else an equal part per core.
fn part(len: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match len < PARALLEL_MIN {
        true => len.max(1),
        false => len.div_ceil(cores),
    }
}

/// `work` on every item: the first on the calling thread, the others on scoped threads of
/// their own (measured here faster than handing the parts to rayon's pool from outside it).
fn on_threads<I: Send, R: Send>(items: Vec<I>, work: impl Fn(I) -> R + Sync) -> Vec<R> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Vec::new();
    };
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = items.map(|item| scope.spawn(move || work(item))).collect();
        let mut results = vec![work(first)];
        results.extend(
            others
                .into_iter()
                .map(|thread| thread.join().expect("no panic")),
        );
        results
    })
}

/// burn-ndarray's arrays.
type Array<T> = ArcArray<T, IxDyn>;

/// `array` in standard (row-major, contiguous) layout; a copy only when it is strided.
fn standard<T: Element>(array: Array<T>) -> Array<T> {
    match array.is_standard_layout() {
        true => array,
        false => array.as_standard_layout().into_owned().into_shared(),
    }
}

/// The first element of a one-element f32 or f64 tensor.
fn first<B: Backend>(scalar: Tensor<B, 1>) -> f64 {
    match into_float(scalar) {
        NdArrayTensor::F32(value) => value.view().iter().next().map_or(0.0, |&v| v.into()),
        NdArrayTensor::F64(value) => value.view().iter().next().copied().unwrap_or(0.0),
        _ => unreachable!("the second moment is f32 or f64"),
    }
}

/// The value of the one-element step counter.
fn count<B: Backend>(step: Tensor<B, 1, Int>) -> i64 {
    let count = match into_int(step) {
        NdArrayTensor::I64(count) => count.view().iter().next().copied(),
        NdArrayTensor::I32(count) => count.view().iter().next().map(|&c| c.into()),
        _ => unreachable!("burn-ndarray's integers are i64 or i32"),
    };
    count.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::Tensor;

    use crate::NovoGradConfig;

    /// The fused step takes burn-ndarray's tensors and hands any other backend's back.
    #[test]
    fn taken_on_ndarray_only() {
        let optimizer = NovoGradConfig::new().build();
        let device = Default::default();
        let param = Tensor::<NdArray, 1>::from_floats([1.0, -2.0], &device);
        let state = optimizer.initial_state(&param);
        let inputs = (param.clone(), param.ones_like(), state);
        assert!(super::step(&optimizer, 0.1, inputs).is_ok());

        let param = Tensor::<Autodiff<NdArray>, 1>::from_floats([1.0, -2.0], &device);
        let state = optimizer.initial_state(&param);
        let inputs = (param.clone(), param.ones_like(), state);
        assert!(super::step(&optimizer, 0.1, inputs).is_err());
    }
}
