//! The maths of a fused step on the CPU: the per-tensor scalars from `‖g‖²`, and the element
//! loop that updates `w` and `m` in place.

use core::ops::{Add, Mul, Sub};

use burn::optim::LearningRate;

use crate::config::WeightDecayMode;
use crate::optimizer::NovoGrad;

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
