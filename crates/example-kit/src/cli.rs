//! The command-line arguments every example shares, flattened into each example's own `clap`
//! parser with `#[command(flatten)]`, and the artifact directory's preparation.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use burn_novograd::{MomentDtype, WeightDecayMode};
use clap::ValueEnum;

use crate::{
    BackendName, CONFIG_FILE, Defaults, MODEL_FILE, OptimizerName, OptimizerSpec, RunSettings,
    STEP_LOSS_PLOT,
};

/// The `--help` section of NovoGrad's own options.
const NOVOGRAD_OPTIONS: &str = "NovoGrad options (other optimizers refuse them)";

/// Backend, optimizer and run arguments common to the examples.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Backend (each needs its cargo feature; flex is built by default).
    #[arg(long, value_enum, default_value_t = BackendName::Flex)]
    pub backend: BackendName,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Novograd)]
    pub optimizer: OptimizerName,
    /// Peak learning rate, in (0, 1] [default: per optimizer, see above].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Weight decay, >= 0 [default: per optimizer, see above].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Clip each parameter's gradient to this L2 norm (> 0) before the step, for every
    /// optimizer (Burn's GradientClippingConfig::Norm) [default: no clipping].
    #[arg(long, allow_negative_numbers = true)]
    pub grad_clip_norm: Option<f32>,
    /// No weight decay on biases and normalisation parameters (module paths ending in .bias,
    /// .gamma or .beta), for every optimizer, through a parameter group of the same optimizer
    /// without decay [default: decay on every parameter].
    #[arg(long)]
    pub no_decay_bias_norm: bool,
    /// NovoGrad's first-moment decay β1, in [0, 1) [default: 0.95].
    #[arg(
        long,
        help_heading = NOVOGRAD_OPTIONS,
        allow_negative_numbers = true
    )]
    pub beta_1: Option<f32>,
    /// NovoGrad's second-moment decay β2, in [0, 1) [default: 0.98].
    #[arg(
        long,
        help_heading = NOVOGRAD_OPTIONS,
        allow_negative_numbers = true
    )]
    pub beta_2: Option<f32>,
    /// NovoGrad's ε, added to √v, > 0 [default: 1e-8].
    #[arg(
        long,
        help_heading = NOVOGRAD_OPTIONS,
        allow_negative_numbers = true
    )]
    pub epsilon: Option<f32>,
    /// Where NovoGrad's weight decay enters: in-moment (the paper's), or on-update (Apex's
    /// FusedNovoGrad) [default: in-moment].
    #[arg(
        long,
        value_enum,
        help_heading = NOVOGRAD_OPTIONS
    )]
    pub weight_decay_mode: Option<DecayMode>,
    /// Multiply NovoGrad's moment input by 1 − β1 [default: off].
    #[arg(long, help_heading = NOVOGRAD_OPTIONS)]
    pub grad_averaging: bool,
    /// Normalise NovoGrad's step by the running maximum of its second moment [default: off].
    #[arg(long, help_heading = NOVOGRAD_OPTIONS)]
    pub amsgrad: bool,
    /// Adam-style bias correction of NovoGrad's two moments [default: off].
    #[arg(long, help_heading = NOVOGRAD_OPTIONS)]
    pub bias_correction: bool,
    /// How NovoGrad stores its first moment: in the parameter's dtype, or in bf16 (half the
    /// bytes; not on WGPU, which has no bf16 tensors) [default: param].
    #[arg(long, value_enum, help_heading = NOVOGRAD_OPTIONS)]
    pub moment_dtype: Option<MomentStorage>,
    /// Epochs over the training data [default: the example's: 5 for mnist, 3 for char-lm].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of the initialisation, the shuffling, dropout and any sampling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Devices to train on, data-parallel: on CUDA through Burn's distributed data parallel
    /// (DDP); on Flex, ndarray and wgpu, which have no collective operations in Burn 0.22.1,
    /// through Burn's multi-device strategy (on the CPU, N workers share the one CPU device).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Where checkpoints, logs, results.json, config.json, model.bpk and the PNG curves go
    /// [default: artifacts/EXAMPLE-OPTIMIZER]. A non-empty directory must hold an earlier run
    /// of the same example (whose outputs are replaced); anything else there is refused unless
    /// --overwrite is given.
    #[arg(long)]
    pub artifact_dir: Option<PathBuf>,
    /// Use a non-empty --artifact-dir that holds no earlier run of this example. Only the files
    /// a run writes (checkpoints, metric logs, experiment.log, results.json, config.json,
    /// model.bpk, the PNGs) are removed from it; everything else is left alone.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue the interrupted run in --artifact-dir from its last checkpoint (the Learner
    /// saves one every epoch), with the same arguments it was started with (checked against its
    /// config.json); it ends where an uninterrupted run would. Nothing is removed.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
}

/// Where NovoGrad's weight decay enters, on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecayMode {
    /// `d·w` joins the normalised gradient inside the moment (the paper's).
    InMoment,
    /// The step adds `λ·d·w` after the moment (Apex's FusedNovoGrad).
    OnUpdate,
}

/// How NovoGrad stores its first moment, on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MomentStorage {
    /// The parameter's dtype.
    Param,
    /// bfloat16, rounded to nearest.
    Bf16,
    /// 8 bits with an f32 scale per block of 128 values, or of 64, 32 or 16 where 128 does not
    /// divide a tensor (Burn's block-wise quantisation).
    Int8,
}

impl From<MomentStorage> for MomentDtype {
    fn from(storage: MomentStorage) -> Self {
        match storage {
            MomentStorage::Param => MomentDtype::Param,
            MomentStorage::Bf16 => MomentDtype::Bf16,
            MomentStorage::Int8 => MomentDtype::Int8,
        }
    }
}

impl From<DecayMode> for WeightDecayMode {
    fn from(mode: DecayMode) -> Self {
        match mode {
            DecayMode::InMoment => WeightDecayMode::InMoment,
            DecayMode::OnUpdate => WeightDecayMode::OnUpdate,
        }
    }
}

impl CommonArgs {
    /// The run's settings, with the example's per-optimizer `defaults` filling in `--lr` and
    /// `--weight-decay`, and its `default_epochs` `--epochs`; the artifact directory is
    /// prepared by [`prepare_artifact_dir`] for `example`, whose own outputs beside the kit's
    /// are `plots` (file names), or, with `--resume`, checked by [`resumable_checkpoint`]. Bad
    /// arguments end the process with status 2 ([`crate::fail`]).
    pub fn settings(
        &self,
        example: &str,
        plots: &[&str],
        defaults: &Defaults,
        batch_size: usize,
        default_epochs: usize,
    ) -> RunSettings {
        let optimizer = self
            .optimizer(defaults)
            .unwrap_or_else(|error| crate::fail(error));
        let artifact_dir = self
            .artifact_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("artifacts/{example}-{}", self.optimizer)));
        let resume_from = if self.resume {
            resumable_checkpoint(&artifact_dir, example).map(Some)
        } else {
            prepare_artifact_dir(&artifact_dir, example, plots, self.overwrite).map(|()| None)
        }
        .unwrap_or_else(|error| crate::fail(error));
        RunSettings {
            optimizer,
            backend: self.backend,
            devices: self.devices.max(1),
            epochs: self.epochs.unwrap_or(default_epochs),
            batch_size,
            seed: self.seed,
            warmup_percent: crate::WARMUP_PERCENT,
            artifact_dir,
            resume_from,
        }
    }

    /// The optimizer these arguments ask for, or why it cannot train.
    pub fn optimizer(&self, defaults: &Defaults) -> Result<OptimizerSpec, String> {
        let mut spec = OptimizerSpec::new(self.optimizer, defaults, self.lr, self.weight_decay);
        spec.grad_clip_norm = self.grad_clip_norm;
        spec.no_decay_bias_norm = self.no_decay_bias_norm;
        match &mut spec.novograd {
            Some(options) => {
                options.beta_1 = self.beta_1.unwrap_or(options.beta_1);
                options.beta_2 = self.beta_2.unwrap_or(options.beta_2);
                options.epsilon = self.epsilon.unwrap_or(options.epsilon);
                options.weight_decay_mode = self
                    .weight_decay_mode
                    .map_or(options.weight_decay_mode, Into::into);
                options.grad_averaging = self.grad_averaging;
                options.amsgrad = self.amsgrad;
                options.bias_correction = self.bias_correction;
                options.moment_dtype = self.moment_dtype.map_or(options.moment_dtype, Into::into);
            }
            None => {
                let given = [
                    ("--beta-1", self.beta_1.is_some()),
                    ("--beta-2", self.beta_2.is_some()),
                    ("--epsilon", self.epsilon.is_some()),
                    ("--weight-decay-mode", self.weight_decay_mode.is_some()),
                    ("--grad-averaging", self.grad_averaging),
                    ("--amsgrad", self.amsgrad),
                    ("--bias-correction", self.bias_correction),
                    ("--moment-dtype", self.moment_dtype.is_some()),
                ];
                if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                    return Err(format!(
                        "{flag} is a NovoGrad option; --optimizer {} does not take it",
                        self.optimizer
                    ));
                }
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    /// One line naming the optimizer, its hyperparameters, the backend and the schedule.
    pub fn describe(&self, settings: &RunSettings) -> String {
        format!(
            "{} (lr {}, weight decay {}) on {} ({} device(s)), {} epochs of batch {}",
            settings.optimizer.name,
            settings.optimizer.hyper.lr,
            settings.optimizer.hyper.weight_decay,
            self.backend,
            settings.devices,
            settings.epochs,
            settings.batch_size
        )
    }
}

/// The file that marks a directory as an example's artifact directory; it holds the example's
/// name.
pub const RUN_MARKER: &str = ".burn-novograd-run";

/// Files a run writes at the top of its artifact directory, besides the example's plots.
const RUN_FILES: [&str; 6] = [
    "results.json",
    "experiment.log",
    RUN_MARKER,
    CONFIG_FILE,
    MODEL_FILE,
    STEP_LOSS_PLOT,
];
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
            if checkpoint_epoch(&name).is_some() && entry.file_type()?.is_file() {
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

/// The kinds of checkpoint file Burn's Learner writes per epoch: `{kind}-{epoch}.bpk`.
const CHECKPOINT_KINDS: [&str; 3] = ["model", "optim", "scheduler"];

/// The kind and epoch of a checkpoint file's name.
fn checkpoint_epoch(name: &str) -> Option<(&'static str, usize)> {
    CHECKPOINT_KINDS.iter().find_map(|&kind| {
        let epoch = name
            .strip_prefix(kind)?
            .strip_prefix('-')?
            .strip_suffix(".bpk")?;
        if !is_number(epoch) {
            return None;
        }
        Some((kind, epoch.parse().ok()?))
    })
}

/// The last epoch whose checkpoint (model, optimizer and scheduler) is complete in the
/// artifact directory `dir` of an earlier run of `example`: where `--resume` goes on from.
/// Refuses a directory without such a run or without a complete checkpoint.
pub fn resumable_checkpoint(dir: &Path, example: &str) -> Result<usize, String> {
    let shown = dir.display();
    let marker = std::fs::read_to_string(dir.join(RUN_MARKER)).unwrap_or_default();
    if marker.trim() != example {
        return Err(format!(
            "--resume: --artifact-dir {shown} holds no earlier run of {example} to continue"
        ));
    }
    let names: Vec<String> = std::fs::read_dir(dir.join(CHECKPOINT_DIR))
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let epochs = names.iter().filter_map(|name| checkpoint_epoch(name));
    epochs
        .filter(|(_, epoch)| {
            CHECKPOINT_KINDS
                .iter()
                .all(|kind| names.contains(&format!("{kind}-{epoch}.bpk")))
        })
        .map(|(_, epoch)| epoch)
        .max()
        .ok_or_else(|| {
            format!(
                "--resume: {shown}/{CHECKPOINT_DIR} holds no complete checkpoint (model-N.bpk, \
                 optim-N.bpk and scheduler-N.bpk): the run stopped before its first epoch ended; \
                 start it again without --resume"
            )
        })
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
