//! The command-line arguments every example shares, flattened into each example's own `clap`
//! parser with `#[command(flatten)]`, and the artifact directory's preparation.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{BackendName, Defaults, OptimizerName, OptimizerSpec, RunSettings};

/// Backend, optimizer and run arguments common to the examples.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Backend (each needs its cargo feature; flex is built by default).
    #[arg(long, value_enum, default_value_t = BackendName::Flex)]
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
    /// A non-empty directory must hold an earlier run of the same example (whose outputs are
    /// replaced); anything else there is refused unless --overwrite is given.
    #[arg(long)]
    pub artifact_dir: Option<PathBuf>,
    /// Use a non-empty --artifact-dir that holds no earlier run of this example. Only the files
    /// a run writes (checkpoints, metric logs, experiment.log, results.json, the PNGs) are
    /// removed from it; everything else is left alone.
    #[arg(long)]
    pub overwrite: bool,
}

impl CommonArgs {
    /// The run's settings, with the example's per-optimizer `defaults` filling in `--lr` and
    /// `--weight-decay`; the artifact directory is prepared by [`prepare_artifact_dir`] for
    /// `example`, whose own outputs beside the kit's are `plots` (file names). Bad arguments
    /// end the process with status 2 ([`crate::fail`]).
    pub fn settings(
        &self,
        example: &str,
        plots: &[&str],
        defaults: &Defaults,
        batch_size: usize,
    ) -> RunSettings {
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
        if let Err(error) = prepare_artifact_dir(&artifact_dir, example, plots, self.overwrite) {
            crate::fail(error);
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

/// The file that marks a directory as an example's artifact directory; it holds the example's
/// name.
pub const RUN_MARKER: &str = ".burn-novograd-run";

/// Files a run writes at the top of its artifact directory, besides the example's plots.
const RUN_FILES: [&str; 3] = ["results.json", "experiment.log", RUN_MARKER];
/// Burn's metric-log split directories, each holding `epoch-N` directories.
const METRIC_SPLITS: [&str; 3] = ["train", "valid", "test"];
/// Burn's checkpoint directory, holding `{model,optim,scheduler}-N.bpk`.
const CHECKPOINT_DIR: &str = "checkpoint";

/// Makes `dir` ready for a run of `example`: creates it, or reuses it when it is empty or
/// holds an earlier run of `example` (its [`RUN_MARKER`] says so). A non-empty directory
/// without that marker (`.`, `~`, another example's) is refused unless `overwrite`. In a
/// reused directory only what a run writes is removed: the checkpoint files, Burn's metric
/// logs (`train|valid|test/epoch-N`), `experiment.log`, `results.json`, the marker and
/// `plots`; a directory among these is removed only once empty, and nothing else is touched.
/// Then the marker is written.
pub fn prepare_artifact_dir(
    dir: &Path,
    example: &str,
    plots: &[&str],
    overwrite: bool,
) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            let marker = std::fs::read_to_string(dir.join(RUN_MARKER)).ok();
            let earlier_run = marker.as_deref().map(str::trim) == Some(example);
            if !empty && !earlier_run && !overwrite {
                let holds = match marker {
                    Some(other) => format!("an earlier run of {}", other.trim()),
                    None => "files that no run of this example wrote".to_string(),
                };
                return Err(format!(
                    "--artifact-dir {shown} is not empty and holds {holds}; choose another \
                     directory, or pass --overwrite to replace only the files a run writes \
                     (nothing else in it is removed)"
                ));
            }
            remove_run_outputs(dir, plots)
                .map_err(|error| format!("--artifact-dir {shown}: {error}"))?;
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|error| format!("--artifact-dir {shown}: {error}"))?;
        }
        Err(error) => return Err(format!("--artifact-dir {shown}: {error}")),
    }
    std::fs::write(dir.join(RUN_MARKER), format!("{example}\n"))
        .map_err(|error| format!("--artifact-dir {shown}: {error}"))
}

/// Removes what a run writes in `dir`, and nothing else.
fn remove_run_outputs(dir: &Path, plots: &[&str]) -> std::io::Result<()> {
    for name in RUN_FILES.iter().chain(plots) {
        remove_file_if_any(&dir.join(name))?;
    }
    let checkpoints = dir.join(CHECKPOINT_DIR);
    if is_real_dir(&checkpoints) {
        for entry in std::fs::read_dir(&checkpoints)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_checkpoint = ["model-", "optim-", "scheduler-"].iter().any(|kind| {
                name.strip_prefix(kind)
                    .and_then(|rest| rest.strip_suffix(".bpk"))
                    .is_some_and(is_number)
            });
            if is_checkpoint && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        remove_dir_if_empty(&checkpoints)?;
    }
    for split in METRIC_SPLITS {
        let split = dir.join(split);
        if !is_real_dir(&split) {
            continue;
        }
        for entry in std::fs::read_dir(&split)? {
            let entry = entry?;
            let name = entry.file_name();
            let is_epoch = name
                .to_string_lossy()
                .strip_prefix("epoch-")
                .is_some_and(is_number);
            if is_epoch && entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        remove_dir_if_empty(&split)?;
    }
    Ok(())
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// A directory, not a link to one.
fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// Removes `path` if it is a file (or a link, not its target).
fn remove_file_if_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_dir() => std::fs::remove_file(path),
        _ => Ok(()),
    }
}

fn remove_dir_if_empty(path: &Path) -> std::io::Result<()> {
    if std::fs::read_dir(path)?.next().is_none() {
        std::fs::remove_dir(path)?;
    }
    Ok(())
}
