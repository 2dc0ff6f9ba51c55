//! The one seam for fast paths. [`NovoGrad`]'s tensor-op step is the executable specification;
//! a backend whose tensors a fused step understands takes this path instead: burn-ndarray
//! (cargo feature `ndarray`, on by default) and Burn's CubeCL backends with or without Fusion,
//! on WGPU (feature `wgpu`) and CUDA (feature `cuda`). Every other backend keeps the
//! tensor-op step. The choice is a type check on the backend's tensor primitive, so no bound is
//! added to `SimpleOptimizer<B>` and no Burn backend is lost. `NovoGradConfig::fused = false`
//! forces the tensor-op path.
//!
//! A fused step computes the same per-tensor scalars as the tensor-op step, from `‖g‖²` in one
//! pass over `g`, then updates `w` and `m` in a second pass: on the CPU with [`Scalars`] and
//! [`NovoGrad::update_elements`], on a GPU with two kernels (`cube`).

#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "ndarray")]
mod ndarray;

use core::any::Any;
use core::ops::{Add, Mul, Sub};

use burn::optim::LearningRate;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::config::WeightDecayMode;
use crate::optimizer::{NovoGrad, NovoGradState};

/// The inputs of a step, handed back when no fused step exists for the backend.
pub(crate) type Inputs<B, const D: usize> = (Tensor<B, D>, Tensor<B, D>, NovoGradState<B, D>);

/// Runs a fused step when one exists for `B`, or hands the inputs back.
pub(crate) fn step<B: Backend, const D: usize>(
    novograd: &NovoGrad,
    lr: LearningRate,
    inputs: Inputs<B, D>,
) -> Result<(Tensor<B, D>, NovoGradState<B, D>), Inputs<B, D>> {
    let unfused = Err(inputs);
    #[cfg(feature = "ndarray")]
    let unfused = unfused.or_else(|inputs| ndarray::step(novograd, lr, inputs));
    #[cfg(feature = "wgpu")]
    let unfused = unfused
        .or_else(|inputs| cube::step::<cubecl::wgpu::WgpuRuntime, B, D>(novograd, lr, inputs));
    #[cfg(feature = "cuda")]
    let unfused = unfused
        .or_else(|inputs| cube::step::<cubecl::cuda::CudaRuntime, B, D>(novograd, lr, inputs));
    let _ = (novograd, lr);
    unfused
}

/// `value` as type `To` if it is one (a type check, no copy), or `value` back.
fn downcast<From: 'static, To: 'static>(value: From) -> Result<To, From> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<To>>() {
        Some(to) => Ok(to.take().expect("the slot is full")),
        None => Err(slot.expect("the slot is full")),
    }
}

/// The primitive of a float tensor on a backend checked to use `P` for floats.
fn into_float<P: 'static, B: Backend, const D: usize>(tensor: Tensor<B, D>) -> P {
    match tensor.into_primitive() {
        TensorPrimitive::Float(primitive) => checked(primitive),
        TensorPrimitive::QFloat(_) => unreachable!("the dtypes were checked to be float"),
    }
}

/// The primitive of an int tensor on a backend checked to use `P` for ints.
fn into_int<P: 'static, B: Backend, const D: usize>(tensor: Tensor<B, D, Int>) -> P {
    checked(tensor.into_primitive())
}

/// The float tensor of primitive `P`, on a backend checked to use `P` for floats.
fn from_float<P: 'static, B: Backend, const D: usize>(primitive: P) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(checked(primitive)))
}

/// The int tensor of primitive `P`, on a backend checked to use `P` for ints.
fn from_int<P: 'static, B: Backend, const D: usize>(primitive: P) -> Tensor<B, D, Int> {
    Tensor::from_primitive(checked(primitive))
}

/// `value` as the type it was checked to be.
fn checked<From: 'static, To: 'static>(value: From) -> To {
    downcast(value).unwrap_or_else(|_| unreachable!("the type was checked"))
}

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

/// A float element a fused step computes in: `f32` or `f64`, like the parameter.
pub(crate) trait Real:
    Copy + Send + Sync + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self>
{
    /// `value` rounded to this type.
    fn of(value: f64) -> Self;
    /// This value in f64.
    fn wide(self) -> f64;
}

impl Real for f32 {
    fn of(value: f64) -> Self {
        value as f32
    }
    fn wide(self) -> f64 {
        self.into()
    }
}

impl Real for f64 {
    fn of(value: f64) -> Self {
        value
    }
    fn wide(self) -> f64 {
        self
    }
}

impl NovoGrad {
    /// The scalars of step `t` (`step`, counted from 1) from `‖g_t‖²` and the previous `v`
    /// and running maximum: the same equations as the tensor-op step.
    pub(crate) fn scalars(
        &self,
        grad_norm_sq: f64,
        moment_2_prev: f64,
        max_moment_2_prev: Option<f64>,
        step: i64,
        dtype_max: f64,
    ) -> Scalars {
        let beta_2 = f64::from(self.beta_2);
        let moment_2 = if step == 1 {
            grad_norm_sq
        } else {
            beta_2 * moment_2_prev + (1.0 - beta_2) * grad_norm_sq
        };
        // Amsgrad follows the state, as in the tensor-op step: a maximum is kept if it has one.
        let max_moment_2 = max_moment_2_prev.map(|max| max.max(moment_2));
        let correction = |beta: f32| match self.bias_correction {
            true => 1.0 - f64::from(beta).powf(step as f64),
            false => 1.0,
        };
        let v_hat = max_moment_2.unwrap_or(moment_2) / correction(self.beta_2);
        let inv_denom =
            1.0 / ((v_hat + f64::from(self.epsilon_root)).sqrt() + f64::from(self.epsilon));
        Scalars {
            moment_2,
            max_moment_2,
            inv_denom: inv_denom.min(dtype_max),
            correction_1: correction(self.beta_1),
        }
    }

    /// The second pass: `m` and `w` of a slice of the tensor, in place.
    pub(crate) fn update_elements<T: Real>(
        &self,
        lr: LearningRate,
        scalars: &Scalars,
        param: &mut [T],
        moment_1: &mut [T],
        grad: &[T],
    ) {
        let beta_1 = T::of(self.beta_1.into());
        let input_scale = T::of(self.moment_input_scale.into());
        let decay = T::of(self.weight_decay.into());
        let elements = param.iter_mut().zip(moment_1.iter_mut()).zip(grad);
        match self.weight_decay_mode {
            // m_t = β1·m_{t−1} + a·(g_t/(√v̂_t + ε) + d·w_t); w_{t+1} = w_t − λ/(1 − β1^t)·m_t
            WeightDecayMode::InMoment => {
                let inv_denom = T::of(scalars.inv_denom);
                let step_size = T::of(lr / scalars.correction_1);
                for ((w, m), &g) in elements {
                    *m = beta_1 * *m + input_scale * (g * inv_denom + decay * *w);
                    *w = *w - step_size * *m;
                }
            }
            // m_t = β1·m_{t−1} + a·g_t; w_{t+1} = w_t − λ·(m_t/((1 − β1^t)·(√v̂_t + ε)) + d·w_t)
            WeightDecayMode::OnUpdate => {
                let scale = T::of(scalars.inv_denom / scalars.correction_1);
                let lr = T::of(lr);
                for ((w, m), &g) in elements {
                    *m = beta_1 * *m + input_scale * g;
                    *w = *w - lr * (*m * scale + decay * *w);
                }
            }
        }
    }
}
