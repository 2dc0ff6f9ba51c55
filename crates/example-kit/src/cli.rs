//! The command-line arguments every example shares, flattened into each example's own `clap`
//! parser with `#[command(flatten)]`.

use std::path::PathBuf;

use crate::{BackendName, Defaults, OptimizerName, OptimizerSpec, RunSettings};

/// Backend, optimizer and run arguments common to the examples.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Backend (each needs its cargo feature; ndarray is built by default).
    #[arg(long, value_enum, default_value_t = BackendName::Ndarray)]
    pub backend: BackendName,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Novograd)]
    pub optimizer: OptimizerName,
    /// Peak learning rate [default: per optimizer, see above].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay [default: per optimizer, see above].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Epochs over the training data.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Seed of the initialisation, the shuffling and any sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Devices to train on, data-parallel through Burn's multi-device strategy.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Where checkpoints, logs, results.json and the PNG curves go [default: artifacts/EXAMPLE-OPTIMIZER].
    #[arg(long)]
    pub artifact_dir: Option<PathBuf>,
}

impl CommonArgs {
    /// The run's settings, with the example's per-optimizer `defaults` filling in `--lr` and
    /// `--weight-decay`; the artifact directory is emptied and created.
    pub fn settings(&self, example: &str, defaults: &Defaults, batch_size: usize) -> RunSettings {
        let optimizer = OptimizerSpec::new(self.optimizer, defaults, self.lr, self.weight_decay);
        if !(optimizer.hyper.lr > 0.0 && optimizer.hyper.lr <= 1.0) {
            crate::fail(format!(
                "--lr {}: Burn's learning-rate schedulers take a peak rate in (0, 1]",
                optimizer.hyper.lr
            ));
        }
        let artifact_dir = self
            .artifact_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("artifacts/{example}-{}", self.optimizer)));
        std::fs::remove_dir_all(&artifact_dir).ok();
        if let Err(error) = std::fs::create_dir_all(&artifact_dir) {
            crate::fail(format!(
                "--artifact-dir {}: {error}",
                artifact_dir.display()
            ));
        }
        RunSettings {
            optimizer,
            backend: self.backend,
            epochs: self.epochs,
            batch_size,
            seed: self.seed,
            artifact_dir,
        }
    }

    /// One line naming the optimizer, its hyperparameters, the backend and the schedule.
    pub fn describe(&self, settings: &RunSettings) -> String {
        format!(
            "{} (lr {}, weight decay {}) on {} ({} device(s)), {} epochs of batch {}",
            settings.optimizer.name,
            settings.optimizer.hyper.lr,
            settings.optimizer.hyper.weight_decay,
            self.backend,
            self.devices,
            self.epochs,
            settings.batch_size
        )
    }
}
