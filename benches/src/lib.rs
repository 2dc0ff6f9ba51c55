//! Benchmarks of burn-novograd against Burn's AdamW and SGD and against PyTorch/JAX NovoGrads:
//! optimizer step time per backend, optimizer state bytes, the memory-bandwidth bound, and
//! end-to-end training steps of the examples' models. `cargo run --release -p novograd-benches`
//! runs a short version of all of it and writes `BENCHMARKS.md`; `cargo bench -p
//! novograd-benches` runs the optimizer steps under criterion.

pub mod e2e;
pub mod peers;
pub mod report;
pub mod sets;
pub mod step;
pub mod suite;
pub mod timing;
pub mod triad;
