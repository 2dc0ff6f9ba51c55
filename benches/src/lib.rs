//! Benchmarks of burn-novograd against Burn's AdamW and SGD and against PyTorch/JAX NovoGrads:
//! optimizer step time per backend (through Burn's per-tensor `Optimizer` trait, as
//! `ModuleOptimizer` drives it), optimizer state bytes, the memory-bandwidth bound, and
//! end-to-end training steps of the examples' models. `cargo run --release -p novograd-benches`
//! runs all of it and writes `BENCHMARKS.md`.

pub mod e2e;
pub mod peers;
pub mod report;
pub mod sets;
pub mod step;
pub mod suite;
pub mod timing;
pub mod triad;
