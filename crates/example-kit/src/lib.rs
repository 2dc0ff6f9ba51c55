//! Shared pieces of the burn-novograd examples, benchmarks and study: backend and optimizer
//! selection, dataset readers with clear errors, a training driver around Burn's `Learner`,
//! and results (JSON and PNG curves).

pub mod backend;
pub mod cli;
pub mod config;
pub mod data;
pub mod mnist;
pub mod optimizer;
pub mod report;
pub mod text;
pub mod training;

pub use backend::{BackendName, Job, run_on};
pub use cli::{CommonArgs, DecayMode, RUN_MARKER, prepare_artifact_dir, resumable_checkpoint};
pub use config::{CONFIG_FILE, RunConfig, load_weights};
pub use data::DataError;
pub use optimizer::{
    AnyOptimizer, Defaults, Hyper, NO_DECAY_PATHS, NovoGradOptions, OptimizerName, OptimizerSpec,
    state_bytes,
};
pub use report::{RunReport, STEP_LOSS_PLOT, Series, bars, plot, plot_step_losses};
pub use training::{
    EpochStats, MODEL_FILE, RunSettings, Trained, WARMUP_PERCENT, fit, loader,
    state_bytes_after_one_step, step_losses, train, warmup_cosine,
};

/// Prints `error: MESSAGE` and exits with status 2: how the example binaries report bad input.
pub fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}
