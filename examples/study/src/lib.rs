//! The NovoGrad paper's claims, measured with short seeded MNIST trainings of the MNIST example
//! (its model, data pipeline and Burn `Learner`): learning-rate and initialisation robustness,
//! large batch, and memory. `cargo run --release -p study` writes `STUDY.md` and its plots.

pub mod memory;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;

use example_kit::mnist::Mnist;
use example_kit::{
    BackendName, OptimizerName, OptimizerSpec, RunSettings, prepare_artifact_dir, run_on,
};
use mnist::model::ModelConfig;
use mnist::{DEFAULTS, MnistRun};
use serde::{Deserialize, Serialize};

/// The optimizers compared, in report order.
pub const OPTIMIZERS: [OptimizerName; 3] = [
    OptimizerName::Novograd,
    OptimizerName::Adamw,
    OptimizerName::Sgd,
];

/// How much the study trains.
#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    /// Seeds of every sweep point (initialisation and shuffling).
    pub seeds: Vec<u64>,
    /// Learning rates of the sweep, as factors of each optimizer's default.
    pub lr_factors: Vec<f64>,
    /// Initialisation scales, as factors of Burn's default.
    pub init_scales: Vec<f64>,
    /// Training images and epochs of the learning-rate and initialisation sweeps.
    pub sweep_images: usize,
    /// Epochs of the sweeps.
    pub sweep_epochs: usize,
    /// Batch size of the sweeps.
    pub sweep_batch: usize,
    /// Batch sizes of the large-batch sweep; the first is the reference for LR scaling.
    pub batch_sizes: Vec<usize>,
    /// Training images of the large-batch sweep.
    pub batch_images: usize,
    /// Epochs of the large-batch sweep.
    pub batch_epochs: usize,
    /// Seeds of the large-batch sweep.
    pub batch_seeds: Vec<u64>,
    /// Test images every run is scored on.
    pub test_images: usize,
    /// Training steps of each memory probe.
    pub probe_steps: usize,
}

impl Budget {
    /// The study as committed: about half an hour on 2 CPU cores with flex.
    pub fn full() -> Self {
        Self {
            seeds: vec![1, 2],
            // Up to 10×: SGD's default of 0.05 allows no more, since Burn's schedulers take peak
            // rates in (0, 1].
            lr_factors: [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0]
                .iter()
                .map(|e| 10f64.powf(*e))
                .collect(),
            init_scales: vec![0.1, 1.0, 10.0],
            sweep_images: 5_000,
            sweep_epochs: 1,
            sweep_batch: 128,
            batch_sizes: vec![128, 512, 2048, 8192],
            batch_images: 12_000,
            batch_epochs: 2,
            batch_seeds: vec![1],
            test_images: 2_000,
            probe_steps: 3,
        }
    }

    /// A few minutes' version (and what the tests run on tiny data).
    pub fn quick() -> Self {
        Self {
            seeds: vec![1],
            lr_factors: vec![0.1, 1.0, 10.0],
            init_scales: vec![0.1, 1.0, 10.0],
            sweep_images: 600,
            sweep_epochs: 1,
            sweep_batch: 32,
            batch_sizes: vec![32, 128],
            batch_images: 600,
            batch_epochs: 1,
            batch_seeds: vec![1],
            test_images: 200,
            probe_steps: 1,
        }
    }
}

/// One training run of the study.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The optimizer, its learning rate and (default) weight decay.
    pub optimizer: OptimizerSpec,
    /// Initialisation scale.
    pub init_scale: f64,
    /// Batch size.
    pub batch_size: usize,
    /// Training images.
    pub images: usize,
    /// Epochs.
    pub epochs: usize,
    /// Seed.
    pub seed: u64,
}

/// A run and its outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// What was trained.
    pub run: Run,
    /// Percent of the test images classified correctly after training.
    pub accuracy: f64,
    /// Seconds of training (evaluation not included).
    pub seconds: f64,
}

/// The file a finished run's [`Point`] is kept in, inside its artifact directory.
const POINT_FILE: &str = "point.json";

/// The name that marks a run's directory as the study's (see [`prepare_artifact_dir`]).
const RUN_KIND: &str = "study";

/// Trains the study's runs on one backend, each once (a run asked for twice is reused).
pub struct Trainer {
    /// The backend.
    pub backend: BackendName,
    /// Full MNIST; runs take the first images of each split.
    pub data: Mnist,
    /// Where each run's Learner artifacts go.
    pub artifacts: PathBuf,
    /// Train every run again, ignoring the outcomes earlier invocations kept.
    pub fresh: bool,
    done: HashMap<String, Point>,
    /// Runs whose outcome was found in `artifacts` from an earlier invocation.
    pub reused: usize,
}

impl Trainer {
    /// A trainer of runs on `backend` over `data`, into directories under `artifacts`; with
    /// `fresh`, outcomes kept there are ignored.
    pub fn new(backend: BackendName, data: Mnist, artifacts: PathBuf, fresh: bool) -> Self {
        Self {
            backend,
            data,
            artifacts,
            fresh,
            done: HashMap::new(),
            reused: 0,
        }
    }

    /// Trains `run` (or returns its earlier outcome: from this invocation, or, unless `fresh`,
    /// from the `point.json` an earlier invocation left in the run's directory), scoring it on
    /// `test_images`. Before training, only what a run writes is removed from its directory
    /// ([`prepare_artifact_dir`]); nothing else there is touched.
    pub fn train(&mut self, run: Run, test_images: usize) -> Point {
        let key = format!("{run:?}");
        if let Some(point) = self.done.get(&key) {
            return point.clone();
        }
        let name = format!(
            "{}-lr{:.3e}-init{}-batch{}-images{}x{}-seed{}",
            run.optimizer.name,
            run.optimizer.hyper.lr,
            run.init_scale,
            run.batch_size,
            run.images,
            run.epochs,
            run.seed
        );
        let dir = self.artifacts.join(name);
        let kept = || {
            let json = std::fs::read_to_string(dir.join(POINT_FILE)).ok()?;
            serde_json::from_str::<Point>(&json).ok()
        };
        if !self.fresh
            && let Some(point) = kept().filter(|point| point.run == run)
        {
            self.reused += 1;
            self.done.insert(key, point.clone());
            return point;
        }
        // The run's own directory, named by the study: only what a run writes is replaced
        // (`overwrite`: directories of older versions of the study carry no marker).
        prepare_artifact_dir(&dir, RUN_KIND, &[POINT_FILE], true)
            .unwrap_or_else(|error| example_kit::fail(error));
        let data = Mnist {
            train: self.data.train.clone().truncated(run.images),
            test: self.data.test.clone().truncated(test_images),
        };
        let job = MnistRun {
            settings: RunSettings {
                optimizer: run.optimizer,
                backend: self.backend,
                epochs: run.epochs,
                batch_size: run.batch_size,
                seed: run.seed,
                artifact_dir: dir.clone(),
                devices: 1,
                resume_from: None,
            },
            model: ModelConfig::new().with_init_scale(run.init_scale),
            data,
        };
        let report = run_on(self.backend, 1, job).unwrap_or_else(|error| example_kit::fail(error));
        let point = Point {
            run,
            accuracy: report.outcome.test_accuracy,
            seconds: report.train_seconds,
        };
        eprintln!(
            "study: {} lr {:.2e} init {} batch {} seed {}: {:.2}% in {:.0} s",
            run.optimizer.name,
            run.optimizer.hyper.lr,
            run.init_scale,
            run.batch_size,
            run.seed,
            point.accuracy,
            point.seconds
        );
        let json = serde_json::to_string(&point).expect("points serialise");
        std::fs::write(dir.join(POINT_FILE), json).expect("the run's directory is writable");
        self.done.insert(key, point.clone());
        point
    }
}

/// The largest learning rate Burn's schedulers take.
pub const MAX_LR: f64 = 1.0;

/// `optimizer` with the MNIST example's default weight decay and learning rate × `factor`,
/// at most [`MAX_LR`].
pub fn spec(optimizer: OptimizerName, factor: f64) -> OptimizerSpec {
    let default = OptimizerSpec::new(optimizer, &DEFAULTS, None, None);
    let lr = (default.hyper.lr * factor).min(MAX_LR);
    OptimizerSpec::new(optimizer, &DEFAULTS, Some(lr), None)
}

/// The learning-rate factor at `batch` relative to `reference`: linear for SGD (Goyal et al.
/// 2017), square root for AdamW and NovoGrad (adaptive methods; Hoffer et al. 2017).
pub fn lr_scaling(optimizer: OptimizerName, batch: usize, reference: usize) -> f64 {
    let ratio = batch as f64 / reference as f64;
    match optimizer {
        OptimizerName::Sgd => ratio,
        OptimizerName::Adamw | OptimizerName::Novograd => ratio.sqrt(),
    }
}

/// Every point of the three sweeps.
#[derive(Clone, Debug, Serialize)]
pub struct Sweeps {
    /// Learning rate × factor, default initialisation and batch.
    pub lr: Vec<Point>,
    /// Initialisation scale, default learning rate and batch.
    pub init: Vec<Point>,
    /// Batch size with scaled learning rate.
    pub batch: Vec<Point>,
}

/// Runs the three sweeps of `budget`.
pub fn sweeps(trainer: &mut Trainer, budget: &Budget) -> Sweeps {
    let sweep = |optimizer: OptimizerSpec, init_scale: f64, seed: u64| Run {
        optimizer,
        init_scale,
        batch_size: budget.sweep_batch,
        images: budget.sweep_images,
        epochs: budget.sweep_epochs,
        seed,
    };
    let mut lr = Vec::new();
    let mut init = Vec::new();
    let mut batch = Vec::new();
    for optimizer in OPTIMIZERS {
        for &seed in &budget.seeds {
            for &factor in &budget.lr_factors {
                let run = sweep(spec(optimizer, factor), 1.0, seed);
                lr.push(trainer.train(run, budget.test_images));
            }
            for &scale in &budget.init_scales {
                let run = sweep(spec(optimizer, 1.0), scale, seed);
                init.push(trainer.train(run, budget.test_images));
            }
        }
        for &seed in &budget.batch_seeds {
            for &batch_size in &budget.batch_sizes {
                let factor = lr_scaling(optimizer, batch_size, budget.batch_sizes[0]);
                let run = Run {
                    optimizer: spec(optimizer, factor),
                    init_scale: 1.0,
                    batch_size,
                    images: budget.batch_images,
                    epochs: budget.batch_epochs,
                    seed,
                };
                batch.push(trainer.train(run, budget.test_images));
            }
        }
    }
    Sweeps { lr, init, batch }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_budget_is_what_the_issue_asks() {
        let budget = Budget::full();
        assert!(budget.seeds.len() >= 2);
        assert!(budget.lr_factors.len() >= 6);
        let decades = (budget.lr_factors.last().unwrap() / budget.lr_factors[0]).log10();
        assert!((decades - 3.0).abs() < 1e-9, "{decades}");
        let defaults = [DEFAULTS.novograd.lr, DEFAULTS.adamw.lr, DEFAULTS.sgd.lr];
        let largest =
            budget.lr_factors.last().unwrap() * defaults.iter().fold(0.0f64, |a, &b| a.max(b));
        assert!(
            largest <= 1.0,
            "Burn schedulers take rates up to 1, not {largest}"
        );
        assert_eq!(budget.init_scales, [0.1, 1.0, 10.0]);
        assert_eq!(budget.batch_sizes, [128, 512, 2048, 8192]);
    }

    #[test]
    fn learning_rates_scale_linearly_for_sgd_and_by_the_root_otherwise() {
        assert_eq!(lr_scaling(OptimizerName::Sgd, 8192, 128), 64.0);
        assert_eq!(lr_scaling(OptimizerName::Novograd, 8192, 128), 8.0);
        assert_eq!(lr_scaling(OptimizerName::Adamw, 512, 128), 2.0);
        assert_eq!(spec(OptimizerName::Sgd, 64.0).hyper.lr, MAX_LR);
        let scaled = spec(OptimizerName::Novograd, 8.0);
        assert!((scaled.hyper.lr - 0.08).abs() < 1e-12);
        assert_eq!(scaled.hyper.weight_decay, DEFAULTS.novograd.weight_decay);
    }
}
