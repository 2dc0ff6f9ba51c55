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
//! parameter plus a few one-element tensors: half of Adam's, a quarter with the moment stored in
//! bf16 ([`MomentDtype::Bf16`]), about an eighth in 8 bits per block ([`MomentDtype::Int8`]). Options (grad averaging, AMSGrad, Apex's decay placement and
//! bias correction, optax's `eps_root`, the moment's storage) are fields of [`NovoGradConfig`];
//! [`NovoGrad`] gives the full equations.
//!
//! ```
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::GradientsParams;
//! use burn::tensor::{Device, Tensor};
//! use burn_novograd::NovoGradConfig;
//!
//! let device = Device::flex().autodiff();
//! let mut model: Linear = LinearConfig::new(4, 2).init(&device);
//! let mut optimizer = NovoGradConfig::new().with_weight_decay(1e-3).init();
//!
//! let x = Tensor::<2>::ones([8, 4], &device);
//! let loss = model.forward(x).powi_scalar(2).mean();
//! let grads = GradientsParams::from_grads(loss.backward(), &model);
//! model = optimizer.step(1e-2, model, grads);
//! ```
//!
//! With Burn's `Learner`, pass `NovoGradConfig::new().init()` as the optimizer; for parameter
//! groups, `ModuleOptimizer::with_group` takes `NovoGradConfig::build()`.
//!
//! Robustness: a gradient tensor containing NaN or ±Inf, or whose `‖g‖²` overflows the second
//! moment's dtype, skips that tensor's step (its parameter and state are left bit-for-bit as
//! they were); an all-zero gradient is a no-op apart from momentum and weight decay; the
//! squared norm is accumulated in at least f32, so half-precision parameters do not overflow
//! it. None of these checks reads a value back to the host.
//!
//! Fused steps (see [`NovoGradConfig::fused`] and [`NovoGrad::fused_path`]): on Burn's Flex CPU
//! backend (crate feature `flex`, on by default; f32 and f64) two passes over the data, split
//! over the cores for a tensor of 2¹⁸ elements or more (on one helper thread per core besides
//! the caller's, started at the first such tensor and asleep between steps); on Burn's CubeCL backend for WGPU and CUDA (crate features `wgpu`, `cuda`;
//! under Burn's Fusion, which Burn's default features turn on, add `fusion`; f32 parameters)
//! one kernel launch per tensor that one cube covers, three per larger tensor, or three for all
//! of a module's tensors inside [`multi_tensor`]. Every other
//! backend and dtype, and `fused = false`, runs the step as Burn tensor ops, which are the fused
//! steps' specification.

#![warn(missing_docs)]
// On docs.rs (`--cfg docsrs`, see Cargo.toml), an item behind a crate feature shows that feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod fused;
mod hyper;
mod multi_tensor;
mod optimizer;
mod state;

// burn-derive 0.22.1's `RecordState` derive names `crate::RecordState`, `crate::StateSink`,
// `crate::StateSource`, `crate::join_path` and `crate::join_index`, as if it ran inside
// burn-optim: outside it the derive compiles only with these in scope at the crate root. Our
// state has no `Vec` or scalar fields, so the last two go unused today.
#[allow(unused_imports)]
use burn::optim::{RecordState, StateSink, StateSource, join_index, join_path};

pub use config::{MomentDtype, NovoGradConfig, NovoGradConfigError, WeightDecayMode};
pub use multi_tensor::{ELEMENTS_PER_LAUNCH, multi_tensor, tensors_per_launch};
pub use optimizer::NovoGrad;
pub use state::NovoGradState;
