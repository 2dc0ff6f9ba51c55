//! Moving between Burn tensors and a backend's own tensor type, once the type was checked.

use core::any::Any;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// `value` as type `To` if it is one (a type check, no copy), or `value` back.
pub(super) fn downcast<From: 'static, To: 'static>(value: From) -> Result<To, From> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<To>>() {
        Some(to) => Ok(to.take().expect("the slot is full")),
        None => Err(slot.expect("the slot is full")),
    }
}

/// The primitive of a float tensor on a backend checked to use `P` for floats.
pub(super) fn into_float<P: 'static, B: Backend, const D: usize>(tensor: Tensor<B, D>) -> P {
    match tensor.into_primitive() {
        TensorPrimitive::Float(primitive) => checked(primitive),
        TensorPrimitive::QFloat(_) => unreachable!("the dtypes were checked to be float"),
    }
}

/// The primitive of an int tensor on a backend checked to use `P` for ints.
pub(super) fn into_int<P: 'static, B: Backend, const D: usize>(tensor: Tensor<B, D, Int>) -> P {
    checked(tensor.into_primitive())
}

/// The float tensor of primitive `P`, on a backend checked to use `P` for floats.
pub(super) fn from_float<P: 'static, B: Backend, const D: usize>(primitive: P) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(checked(primitive)))
}

/// The int tensor of primitive `P`, on a backend checked to use `P` for ints.
#[cfg(feature = "cube")]
pub(super) fn from_int<P: 'static, B: Backend, const D: usize>(primitive: P) -> Tensor<B, D, Int> {
    Tensor::from_primitive(checked(primitive))
}

/// `value` as the type it was checked to be.
fn checked<From: 'static, To: 'static>(value: From) -> To {
    downcast(value).unwrap_or_else(|_| unreachable!("the type was checked"))
}
