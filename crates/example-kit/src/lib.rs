//! Shared pieces of the burn-novograd examples, benchmarks and study: backend and optimizer
//! selection, dataset readers with clear errors, a training driver around Burn's `Learner`,
//! and results (JSON and PNG curves).

pub mod backend;
pub mod cli;
pub mod data;
pub mod mnist;
pub mod optimizer;
pub mod report;
pub mod text;
pub mod training;

pub use backend::{BackendName, Job, run_on};
pub use cli::{CommonArgs, RUN_MARKER, prepare_artifact_dir};
pub use data::DataError;
pub use optimizer::{AnyOptimizer, Defaults, Hyper, OptimizerName, OptimizerSpec, state_bytes};
pub use report::{RunReport, Series, bars, plot};
pub use training::{
    EpochStats, RunSettings, Trained, fit, loader, state_bytes_after_one_step, train, warmup_cosine,
};

/// Prints `error: MESSAGE` and exits with status 2: how the example binaries report bad input.
pub fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}
