//! NovoGrad for [Burn](https://burn.dev): stochastic gradient descent with layer-wise adaptive
//! moments ([Ginsburg et al. 2019, arXiv:1905.11286](https://arxiv.org/abs/1905.11286)), on
//! every Burn backend.
//!
//! A "layer" is one parameter tensor. For a tensor `w` with gradient `g` at step `t`, learning
//! rate `λ` and weight decay `d`, the defaults compute
//!
//! ```text
//! v_t = β2·v_{t−1} + (1 − β2)·‖g_t‖²                 v_1 = ‖g_1‖²   (one scalar per tensor)
//! m_t = β1·m_{t−1} + g_t/(√v_t + ε) + d·w_t          m_1 = g_1/(√v_1 + ε) + d·w_1
//! w_{t+1} = w_t − λ·m_t
//! ```
//!
//! with β1 = 0.95, β2 = 0.98, ε = 1e-8, d = 0. The optimizer state is one tensor shaped like the
//! parameter plus a few one-element tensors: half of Adam's. Options (grad averaging, AMSGrad,
//! Apex's decay placement and bias correction, optax's `eps_root`) are fields of
//! [`NovoGradConfig`]; [`NovoGrad`] gives the full equations.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::{GradientsParams, Optimizer};
//! use burn::tensor::Tensor;
//! use burn_novograd::NovoGradConfig;
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let mut model: Linear<B> = LinearConfig::new(4, 2).init(&device);
//! let mut optimizer = NovoGradConfig::new().with_weight_decay(1e-3).init();
//!
//! let x = Tensor::<B, 2>::ones([8, 4], &device);
//! let loss = model.forward(x).powi_scalar(2).mean();
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//! model = optimizer.step(1e-2, model, grads);
//! ```
//!
//! With Burn's `Learner`, pass `NovoGradConfig::new().init()` as the optimizer.
//!
//! Robustness: a gradient tensor containing NaN or ±Inf skips that tensor's step (its parameter
//! and state are left bit-for-bit as they were); an all-zero gradient is a no-op apart from
//! momentum and weight decay; the squared norm is accumulated in at least f32, so half-precision
//! parameters do not overflow it. None of these checks reads a value back to the host.
//!
//! Fused steps (see [`NovoGradConfig::fused`]): on burn-ndarray (crate feature `ndarray`, on by
//! default) two passes over the data, split over the cores; on Burn's WGPU and CUDA backends
//! (crate features `wgpu`, `cuda`; with or without Fusion; f32 parameters) two CubeCL kernel
//! launches per tensor. Every other backend, and `fused = false`, runs the step as Burn tensor
//! ops, which are the fused steps' specification.

#![warn(missing_docs)]

mod config;
mod fused;
mod optimizer;

pub use config::{NovoGradConfig, NovoGradConfigError, WeightDecayMode};
pub use optimizer::{NovoGrad, NovoGradState};
