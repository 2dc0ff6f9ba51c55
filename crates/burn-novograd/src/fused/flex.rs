//! The fused step on Burn's Flex CPU backend: `‖g‖²` in one pass over `g`, then `w` and `m` in
//! place in a second pass ([`cpu`](super::cpu)). `w` and `m` are written in place when their
//! buffers are uniquely owned and dense (copied once otherwise); no other temporary the size of
//! the tensor is made. The per-tensor scalars live in host memory on this backend, so reading
//! them is no device sync.

use burn::backend::flex::{FlexQTensor, FlexTensor};
use burn::backend::{BackendTensor, DispatchDevice, DispatchTensorKind, Flex};
use burn::optim::LearningRate;
use burn::tensor::{DType, DispatchTensor, Element, Tensor, bf16};

use super::cpu::{Int8Blocks, Previous, Real, Stored, fused_step};
use super::{Inputs, int8_blocks};
use crate::hyper::Hyper;
use crate::state::NovoGradState;

/// Whether parameters on `device` can take this step.
pub(super) fn takes(device: &DispatchDevice) -> bool {
    matches!(device, DispatchDevice::Flex(_))
}

/// The fused step when the tensors live on Flex, the parameter and its gradient are both f32 or
/// both f64, the first moment is of that dtype too, or bf16 or 8-bit blocks (`Q8S`, one scale
/// per block of the last axis, no per-tensor scale) for f32, the second moment is of the
/// parameter's dtype and the step counter is an i64 or i32; anything else is handed back.
pub(super) fn step<const D: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    inputs: Inputs<D>,
) -> Result<(Tensor<D>, NovoGradState<D>), Inputs<D>> {
    let (param, grad, state) = &inputs;
    let dtype = param.dtype();
    let moments = [Some(&state.moment_2), state.max_moment_2.as_ref()];
    let moment_1_dtype = state.moment_1.dtype();
    let supported = takes(param.device().as_dispatch())
        && matches!(dtype, DType::F32 | DType::F64)
        && grad.dtype() == dtype
        && (moment_1_dtype == dtype
            || (dtype, moment_1_dtype) == (DType::F32, DType::BF16)
            || (dtype == DType::F32 && int8_blocks(moment_1_dtype).is_some()))
        && moments
            .iter()
            .flatten()
            .all(|moment| moment.dtype() == dtype)
        && matches!(state.step.dtype(), DType::I64 | DType::I32);
    if !supported {
        return Err(inputs);
    }
    let (param, grad, state) = inputs;
    let float = |tensor: Tensor<D>| primitive(tensor.try_into_primitive::<Flex>());
    let scalar = |tensor: Tensor<1>| primitive(tensor.try_into_primitive::<Flex>());
    let (param, grad) = (float(param), float(grad));
    let mut moment_2 = scalar(state.moment_2);
    let mut max_moment_2 = state.max_moment_2.map(scalar);
    let mut step = primitive(state.step.try_into_primitive::<Flex>());
    let previous = Previous {
        moment_2: first_float(&moment_2),
        max_moment_2: max_moment_2.as_ref().map(first_float),
        step: first_int(&step) + 1,
    };
    let (param, moment_1, scalars) = match (dtype, moment_1_dtype) {
        (DType::F32, DType::QFloat(_)) => {
            update_int8(hyper, lr, param, grad, state.moment_1, previous)
        }
        (DType::F32, DType::BF16) => {
            let moment_1 = float(state.moment_1);
            update::<D, f32, bf16>(hyper, lr, param, grad, moment_1, previous)
        }
        (DType::F32, _) => {
            let moment_1 = float(state.moment_1);
            update::<D, f32, f32>(hyper, lr, param, grad, moment_1, previous)
        }
        _ => {
            let moment_1 = float(state.moment_1);
            update::<D, f64, f64>(hyper, lr, param, grad, moment_1, previous)
        }
    };
    // The one-element state in place; untouched when the step is skipped (a NaN or ±Inf in g,
    // or ‖g‖² past the dtype's range).
    if let Some(scalars) = scalars {
        set_first_float(&mut moment_2, scalars.moment_2);
        if let (Some(max), Some(value)) = (max_moment_2.as_mut(), scalars.max_moment_2) {
            set_first_float(max, value);
        }
        set_first_int(&mut step, previous.step);
    }
    let state = NovoGradState {
        moment_1,
        moment_2: tensor(moment_2),
        max_moment_2: max_moment_2.map(tensor),
        step: Tensor::from_primitive::<Flex>(step),
    };
    Ok((tensor(param), state))
}

/// `w` and `m` after the step (in place where their buffers allow), and the step's scalars: `w`
/// in `T`, `m` stored as `M`.
fn update<
    const D: usize,
    T: Real + Element + bytemuck::Pod,
    M: Stored<T> + Element + bytemuck::Pod,
>(
    hyper: &Hyper,
    lr: LearningRate,
    param: FlexTensor,
    grad: FlexTensor,
    moment_1: FlexTensor,
    previous: Previous,
) -> (FlexTensor, Tensor<D>, Option<super::cpu::Scalars>) {
    let (mut param, grad, mut moment_1) = (dense(param), dense(grad), dense(moment_1));
    // Copy-on-write: a buffer still shared (the caller kept a handle) is copied once here.
    let scalars = fused_step(
        hyper,
        lr,
        param.storage_mut::<T>(),
        moment_1.storage_mut::<M>(),
        grad.storage::<T>(),
        previous,
    );
    (param, tensor(moment_1), scalars)
}

/// `w` and `m` after the step with an 8-bit `m` (codes in place where their buffer allows; new
/// scales), and the step's scalars.
fn update_int8<const D: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    param: FlexTensor,
    grad: FlexTensor,
    moment_1: Tensor<D>,
    previous: Previous,
) -> (FlexTensor, Tensor<D>, Option<super::cpu::Scalars>) {
    let dtype = moment_1.dtype();
    let DispatchTensor { kind, autodiff } = moment_1.into_dispatch();
    let DispatchTensorKind::Flex(BackendTensor::Quantized(quantized)) = kind else {
        panic!("an 8-bit moment on Flex is a Flex quantized tensor");
    };
    let DType::QFloat(scheme) = dtype else {
        unreachable!("checked by the caller")
    };
    let block = int8_blocks(dtype).expect("checked by the caller");
    let mut scales = quantized.scales().to_vec();
    let (mut param, grad) = (dense(param), dense(grad));
    let mut codes = dense(quantized.tensor().clone());
    // The quantized tensor no longer holds the codes: written in place unless shared elsewhere.
    drop(quantized);
    let moment = Int8Blocks {
        codes: codes.storage_mut::<i8>(),
        scales: &mut scales,
        block,
    };
    let scalars = fused_step(
        hyper,
        lr,
        param.storage_mut::<f32>(),
        moment,
        grad.storage::<f32>(),
        previous,
    );
    let quantized = FlexQTensor::new(codes, scheme, scales, None);
    let kind = DispatchTensorKind::Flex(BackendTensor::Quantized(quantized));
    let moment_1 = Tensor::from_dispatch(DispatchTensor { kind, autodiff });
    (param, moment_1, scalars)
}

/// `tensor` with its elements filling its buffer in row-major order from the start, so that its
/// storage is the tensor; a copy only when it is strided, offset or a view of a larger buffer.
fn dense(tensor: FlexTensor) -> FlexTensor {
    let layout = tensor.layout();
    let dense = layout.is_contiguous()
        && layout.start_offset() == 0
        && tensor.bytes().len() == layout.num_elements() * tensor.dtype().size();
    match dense {
        true => tensor,
        false => tensor.to_contiguous(),
    }
}

/// The float tensor of a Flex primitive.
fn tensor<const D: usize>(primitive: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(primitive)
}

/// The Flex primitive of a tensor checked to live on a Flex device.
fn primitive<P, E: core::fmt::Debug>(primitive: Result<P, E>) -> P {
    primitive.unwrap_or_else(|error| panic!("a Flex device holds Flex tensors: {error:?}"))
}

/// The value of a one-element f32 or f64 tensor.
fn first_float(scalar: &FlexTensor) -> f64 {
    let offset = scalar.layout().start_offset();
    match scalar.dtype() {
        DType::F64 => scalar.storage::<f64>()[offset],
        _ => scalar.storage::<f32>()[offset].into(),
    }
}

/// The value of the one-element step counter, an i64 or i32.
fn first_int(step: &FlexTensor) -> i64 {
    let offset = step.layout().start_offset();
    match step.dtype() {
        DType::I64 => step.storage::<i64>()[offset],
        _ => step.storage::<i32>()[offset].into(),
    }
}

/// Sets the value of a one-element f32 or f64 tensor (copied first if shared).
fn set_first_float(scalar: &mut FlexTensor, value: f64) {
    let offset = scalar.layout().start_offset();
    match scalar.dtype() {
        DType::F64 => scalar.storage_mut::<f64>()[offset] = value,
        _ => scalar.storage_mut::<f32>()[offset] = value as f32,
    }
}

/// Sets the value of the one-element step counter, an i64 or i32 (copied first if shared).
fn set_first_int(step: &mut FlexTensor, value: i64) {
    let offset = step.layout().start_offset();
    match step.dtype() {
        DType::I64 => step.storage_mut::<i64>()[offset] = value,
        _ => step.storage_mut::<i32>()[offset] = value as i32,
    }
}
