//! The NovoGrad paper's claims, measured with seeded trainings: learning-rate and
//! initialisation robustness and large batch on MNIST (a perceptron on the full data, [`mlp`],
//! trained to its plateau; at large batch each optimizer's rate both scaled by a rule and tuned
//! at each batch size), a learning-rate sweep of a small character-level transformer (the
//! char-LM example's model, narrower; 1,002 steps, short of its plateau) with each
//! optimizer's best rate then trained to its plateau, and memory. Peers: Burn's AdamW, SGD with
//! momentum, LAMB and Lion. `cargo run --release -p study` writes `STUDY.md` and its plots; a run already
//! trained (its `point.json` in the artifact directory) is never trained again.

pub mod memory;
pub mod mlp;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::data::dataset::Dataset;
use example_kit::mnist::Mnist;
use example_kit::text::CharCorpus;
use example_kit::{
    BackendName, Defaults, OptimizerName, OptimizerSpec, RunSettings, WARMUP_PERCENT,
    prepare_artifact_dir, run_on,
};
use serde::{Deserialize, Serialize};

use crate::mlp::MlpConfig;

/// The optimizers of the MNIST sweeps, in report order.
pub const OPTIMIZERS: [OptimizerName; 5] = [
    OptimizerName::Novograd,
    OptimizerName::Adamw,
    OptimizerName::Sgd,
    OptimizerName::Lamb,
    OptimizerName::Lion,
];

/// The optimizers of the char-LM sweep.
pub const LM_OPTIMIZERS: [OptimizerName; 3] = [
    OptimizerName::Novograd,
    OptimizerName::Adamw,
    OptimizerName::Lamb,
];

/// Learning rates lie on a grid half a decade apart: rate `k` is 10^(k/2).
pub fn grid_lr(k: i32) -> f64 {
    10f64.powf(f64::from(k) / 2.0)
}

/// The grid index nearest `lr`.
pub fn grid_index(lr: f64) -> i32 {
    (2.0 * lr.log10()).round() as i32
}

/// The largest grid index: Burn's learning-rate schedulers take peak rates up to 1.
pub const MAX_INDEX: i32 = 0;

/// The first window of a sweep: `points` grid rates centred on the one nearest `default`,
/// moved down where it would pass 1. Inclusive grid indices.
pub fn initial_window(default: f64, points: usize) -> (i32, i32) {
    let low = grid_index(default) - (points as i32 - 1) / 2;
    let high = low + points as i32 - 1;
    let past_one = (high - MAX_INDEX).max(0);
    (low - past_one, high - past_one)
}

/// The MNIST part of the budget.
#[derive(Clone, Debug, Serialize)]
pub struct MnistBudget {
    /// Width of the perceptron's two hidden layers.
    pub hidden: usize,
    /// Training images (`None`: all).
    pub train_images: Option<usize>,
    /// Test images every run is scored on (`None`: all).
    pub test_images: Option<usize>,
    /// Epochs of the learning-rate and initialisation sweeps.
    pub epochs: usize,
    /// Batch size of those sweeps, and the reference of the large-batch sweep.
    pub batch: usize,
    /// Seeds of those sweeps.
    pub seeds: Vec<u64>,
    /// Grid rates in the first window of each optimizer.
    pub lr_points: usize,
    /// A window whose best rate is at an edge grows by a rate on that side, up to this many.
    pub lr_max_points: usize,
    /// Initialisation scales, as factors of Burn's default.
    pub init_scales: Vec<f64>,
    /// Batch sizes of the large-batch sweep.
    pub batch_sizes: Vec<usize>,
    /// Epochs of the large-batch sweep.
    pub batch_epochs: usize,
    /// Seeds of the large-batch sweep.
    pub batch_seeds: Vec<u64>,
    /// Batch sizes at which each optimizer's rate is also tuned (a learning-rate sweep centred
    /// on the scaling rule's rate), with the large-batch sweep's epochs.
    pub tuned_batch_sizes: Vec<usize>,
    /// Grid rates in the first window of each tuned sweep.
    pub tuned_lr_points: usize,
    /// A tuned window whose best rate is at an edge grows by a rate on that side, up to this
    /// many.
    pub tuned_lr_max_points: usize,
    /// Seeds of the tuned sweeps.
    pub tuned_seeds: Vec<u64>,
    /// The other warm-up tried at each tuned batch size's best rate, in percent of the steps
    /// (every sweep warms up over [`WARMUP_PERCENT`]).
    pub tuned_warmup_percent: usize,
}

/// The char-LM part of the budget.
#[derive(Clone, Debug, Serialize)]
pub struct LmBudget {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Characters of context.
    pub context: usize,
    /// Windows per batch.
    pub batch: usize,
    /// Training windows per epoch (`None`: all).
    pub windows: Option<usize>,
    /// Epochs.
    pub epochs: usize,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Grid rates in the first window of each optimizer.
    pub lr_points: usize,
    /// A window whose best rate is at an edge grows by a rate on that side, up to this many.
    pub lr_max_points: usize,
    /// Seeds of the runs to the plateau, each optimizer at its best rate of the sweep.
    pub plateau_seeds: Vec<u64>,
    /// Epochs of the first runs to the plateau; doubled until every seed's last epoch lowers
    /// the validation loss by less than `plateau_drop`, up to `plateau_max_epochs`.
    pub plateau_epochs: usize,
    /// The most epochs a run to the plateau takes.
    pub plateau_max_epochs: usize,
    /// The last-epoch drop of the validation loss (nats) below which a run is at its plateau.
    pub plateau_drop: f64,
}

/// How much the study trains.
#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    /// MNIST sweeps.
    pub mnist: MnistBudget,
    /// char-LM sweep.
    pub lm: LmBudget,
    /// Training steps of each memory probe.
    pub probe_steps: usize,
}

impl Budget {
    /// The study as committed: every MNIST image, MNIST runs long enough to reach their plateau.
    pub fn full() -> Self {
        Self {
            mnist: MnistBudget {
                // A 256-wide run took about 42 s here, a 128-wide one about 15 s: with the tuned
                // sweeps, 128 keeps the whole study (248 runs, 116 minutes) within 180 minutes.
                hidden: 128,
                train_images: None,
                test_images: None,
                // Also the large-batch sweep's: its batch-128 runs are the best runs of the
                // learning-rate sweep.
                epochs: 20,
                batch: 128,
                seeds: vec![1, 2],
                lr_points: 7,
                lr_max_points: 10,
                init_scales: vec![0.1, 1.0, 10.0],
                batch_sizes: vec![128, 512, 2048, 8192],
                // 60,000 images: 8 steps per epoch at 8192, 160 in all.
                batch_epochs: 20,
                batch_seeds: vec![1],
                tuned_batch_sizes: vec![2048, 8192],
                tuned_lr_points: 5,
                tuned_lr_max_points: 7,
                tuned_seeds: vec![1, 2],
                // The NovoGrad paper's: it claims NovoGrad needs no warm-up.
                tuned_warmup_percent: 0,
            },
            lm: LmBudget {
                d_model: 64,
                layers: 2,
                context: 64,
                batch: 16,
                // 334 steps per epoch, 1,002 in all.
                windows: Some(5_344),
                epochs: 3,
                seeds: vec![1],
                lr_points: 5,
                lr_max_points: 7,
                plateau_seeds: vec![1, 2],
                // 3,006 steps, three times the sweep's; the cosine decay's last epoch runs at
                // 1-4% of the peak rate.
                plateau_epochs: 9,
                plateau_max_epochs: 18,
                plateau_drop: 0.01,
            },
            probe_steps: 3,
        }
    }

    /// A few minutes' version (and what the tests run on tiny data): one seed, three rates
    /// (windows do not grow), two batch sizes, small subsets.
    pub fn quick() -> Self {
        Self {
            mnist: MnistBudget {
                hidden: 32,
                train_images: Some(600),
                test_images: Some(200),
                epochs: 1,
                batch: 32,
                seeds: vec![1],
                lr_points: 3,
                lr_max_points: 3,
                init_scales: vec![0.1, 1.0, 10.0],
                batch_sizes: vec![32, 128],
                batch_epochs: 1,
                batch_seeds: vec![1],
                tuned_batch_sizes: vec![128],
                tuned_lr_points: 3,
                tuned_lr_max_points: 3,
                tuned_seeds: vec![1],
                tuned_warmup_percent: 0,
            },
            lm: LmBudget {
                d_model: 16,
                layers: 1,
                context: 16,
                batch: 8,
                windows: Some(40),
                epochs: 1,
                seeds: vec![1],
                lr_points: 3,
                lr_max_points: 3,
                plateau_seeds: vec![1],
                plateau_epochs: 1,
                plateau_max_epochs: 2,
                plateau_drop: 0.01,
            },
            probe_steps: 1,
        }
    }
}

/// What a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// The perceptron on MNIST, scored by test accuracy (%).
    Mnist {
        /// Hidden width.
        hidden: usize,
        /// Training images.
        train_images: usize,
        /// Test images.
        test_images: usize,
    },
    /// The char-LM transformer, scored by validation loss (nats per character).
    CharLm {
        /// Width of the residual stream.
        d_model: usize,
        /// Transformer blocks.
        layers: usize,
        /// Characters of context.
        context: usize,
        /// Training windows per epoch.
        windows: usize,
    },
}

/// One training run of the study.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The model and data.
    pub task: Task,
    /// The optimizer, its learning rate and the task's weight decay.
    pub optimizer: OptimizerSpec,
    /// Initialisation scale (MNIST).
    pub init_scale: f64,
    /// Batch size.
    pub batch_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Percent of the steps the learning rate warms up over.
    pub warmup_percent: usize,
    /// Seed.
    pub seed: u64,
}

/// A run and its outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// What was trained.
    pub run: Run,
    /// Test accuracy in percent (MNIST) or validation loss in nats per character (char-LM),
    /// of the final model.
    pub score: f64,
    /// The same, per epoch, as the Learner's validation measured it.
    pub history: Vec<f64>,
    /// Optimizer steps.
    pub steps: usize,
    /// Wall time of the run: training, per-epoch validation and the final score.
    pub seconds: f64,
}

impl Point {
    /// The gain of the last epoch: accuracy points gained (MNIST), or validation loss lost
    /// (char-LM), over the epoch before; `None` after a single epoch.
    pub fn last_epoch_gain(&self) -> Option<f64> {
        let [.., before, last] = self.history[..] else {
            return None;
        };
        Some(match self.run.task {
            Task::Mnist { .. } => last - before,
            Task::CharLm { .. } => before - last,
        })
    }
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
    pub mnist: Mnist,
    /// The char-LM text.
    pub corpus: CharCorpus,
    /// Where each run's Learner artifacts go.
    pub artifacts: PathBuf,
    /// Train every run again, ignoring the outcomes earlier invocations kept.
    pub fresh: bool,
    done: HashMap<String, Point>,
    /// Runs whose outcome was found in `artifacts` from an earlier invocation.
    pub reused: usize,
}

impl Trainer {
    /// A trainer of runs on `backend` over `mnist` and `corpus`, into directories under
    /// `artifacts`; with `fresh`, outcomes kept there are ignored.
    pub fn new(
        backend: BackendName,
        mnist: Mnist,
        corpus: CharCorpus,
        artifacts: PathBuf,
        fresh: bool,
    ) -> Self {
        Self {
            backend,
            mnist,
            corpus,
            artifacts,
            fresh,
            done: HashMap::new(),
            reused: 0,
        }
    }

    /// Trains `run` (or returns its earlier outcome: from this invocation, or, unless `fresh`,
    /// from the `point.json` an earlier invocation left in the run's directory). Before
    /// training, only what a run writes is removed from its directory
    /// ([`prepare_artifact_dir`]); nothing else there is touched.
    pub fn train(&mut self, run: Run) -> Point {
        let key = format!("{run:?}");
        if let Some(point) = self.done.get(&key) {
            return point.clone();
        }
        let task = match run.task {
            Task::Mnist {
                hidden,
                train_images,
                test_images,
            } => format!("mnist{hidden}-images{train_images}-test{test_images}"),
            Task::CharLm {
                d_model,
                layers,
                context,
                windows,
            } => format!("lm{d_model}x{layers}-context{context}-windows{windows}"),
        };
        let name = format!(
            "{task}-{}-lr{:.3e}-init{}-batch{}-epochs{}-warmup{}-seed{}",
            run.optimizer.name,
            run.optimizer.hyper.lr,
            run.init_scale,
            run.batch_size,
            run.epochs,
            run.warmup_percent,
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
        let settings = RunSettings {
            optimizer: run.optimizer,
            backend: self.backend,
            epochs: run.epochs,
            batch_size: run.batch_size,
            seed: run.seed,
            warmup_percent: run.warmup_percent,
            artifact_dir: dir.clone(),
            devices: 1,
            resume_from: None,
        };
        let start = Instant::now();
        let (score, history, steps): (f64, Option<Vec<f64>>, usize) = match run.task {
            Task::Mnist {
                hidden,
                train_images,
                test_images,
            } => {
                let job = mnist::MnistRun {
                    settings,
                    model: MlpConfig::new()
                        .with_hidden(hidden)
                        .with_init_scale(run.init_scale),
                    data: Mnist {
                        train: self.mnist.train.clone().truncated(train_images),
                        test: self.mnist.test.clone().truncated(test_images),
                    },
                };
                let report = run_on(self.backend, 1, job).unwrap_or_else(|e| example_kit::fail(e));
                let history = report.history.iter().map(|e| e.valid_accuracy);
                let steps = run.epochs * train_images.div_ceil(run.batch_size);
                (report.outcome.test_accuracy, history.collect(), steps)
            }
            Task::CharLm {
                d_model,
                layers,
                context,
                windows,
            } => {
                let job = char_lm::LmRun {
                    settings,
                    window_limit: Some(windows),
                    model: char_lm::model::ModelConfig::new(self.corpus.vocabulary.len())
                        .with_d_model(d_model)
                        .with_layers(layers)
                        .with_context(context),
                    corpus: self.corpus.clone(),
                    prompt: None,
                };
                let report = run_on(self.backend, 1, job).unwrap_or_else(|e| example_kit::fail(e));
                let history = report.history.iter().map(|e| e.valid_loss);
                let outcome = report.outcome;
                (outcome.valid_loss, history.collect(), outcome.steps)
            }
        };
        let point = Point {
            run,
            score,
            history: history.unwrap_or_default(),
            steps,
            seconds: start.elapsed().as_secs_f64(),
        };
        eprintln!(
            "study: {task} {} lr {:.2e} init {} batch {} epochs {} warm-up {}% seed {}: {:.4} in {:.0} s",
            run.optimizer.name,
            run.optimizer.hyper.lr,
            run.init_scale,
            run.batch_size,
            run.epochs,
            run.warmup_percent,
            run.seed,
            point.score,
            point.seconds
        );
        let json = serde_json::to_string(&point).expect("points serialise");
        std::fs::write(dir.join(POINT_FILE), json).expect("the run's directory is writable");
        self.done.insert(key, point.clone());
        point
    }
}

/// `optimizer` with the task's default weight decay and learning rate `lr`.
pub fn spec(optimizer: OptimizerName, defaults: &Defaults, lr: f64) -> OptimizerSpec {
    OptimizerSpec::new(optimizer, defaults, Some(lr), None)
}

/// The default learning rate of `optimizer` in `defaults`.
pub fn default_lr(optimizer: OptimizerName, defaults: &Defaults) -> f64 {
    OptimizerSpec::new(optimizer, defaults, None, None).hyper.lr
}

/// The learning-rate factor at `batch` relative to `reference`: linear for SGD (Goyal et al.
/// 2017), square root for the adaptive methods (Hoffer et al. 2017; LAMB's own rule, You et
/// al. 2019).
pub fn lr_scaling(optimizer: OptimizerName, batch: usize, reference: usize) -> f64 {
    let ratio = batch as f64 / reference as f64;
    match optimizer {
        OptimizerName::Sgd => ratio,
        _ => ratio.sqrt(),
    }
}

/// Mean score per learning rate of `optimizer`'s points (over seeds), rates ascending.
pub fn lr_curve(points: &[Point], optimizer: OptimizerName) -> Vec<(f64, f64)> {
    curve(points, optimizer, |p| p.run.optimizer.hyper.lr)
}

/// Mean score per value of `x` of `optimizer`'s points (over seeds), `x` ascending.
pub fn curve(
    points: &[Point],
    optimizer: OptimizerName,
    x: impl Fn(&Point) -> f64,
) -> Vec<(f64, f64)> {
    let of = |p: &&Point| p.run.optimizer.name == optimizer;
    let mut xs: Vec<f64> = points.iter().filter(of).map(&x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.into_iter()
        .map(|value| {
            let at: Vec<f64> = points
                .iter()
                .filter(of)
                .filter(|p| x(p) == value)
                .map(|p| p.score)
                .collect();
            (value, at.iter().sum::<f64>() / at.len() as f64)
        })
        .collect()
}

/// Index of the best point of a curve: the highest score, or the lowest with `lower_is_better`.
pub fn best_index(curve: &[(f64, f64)], lower_is_better: bool) -> usize {
    let sign = if lower_is_better { -1.0 } else { 1.0 };
    (0..curve.len())
        .max_by(|&a, &b| (sign * curve[a].1).total_cmp(&(sign * curve[b].1)))
        .unwrap_or(0)
}

/// The learning-rate sweep of `optimizer`: every seed at each rate of its window, the window
/// growing by a grid rate on the side of an edge that holds the best mean score, up to
/// `max_points` rates and not past 1.
fn lr_sweep(
    mut train: impl FnMut(f64, u64) -> Point,
    default: f64,
    seeds: &[u64],
    (points, max_points): (usize, usize),
    lower_is_better: bool,
) -> Vec<Point> {
    let (mut low, mut high) = initial_window(default, points);
    let mut done = Vec::new();
    let mut next: Vec<i32> = (low..=high).collect();
    loop {
        for k in next {
            for &seed in seeds {
                done.push(train(grid_lr(k), seed));
            }
        }
        let lr = |p: &Point| p.run.optimizer.hyper.lr;
        let optimizer = done[0].run.optimizer.name;
        let curve = curve(&done, optimizer, lr);
        let best = best_index(&curve, lower_is_better);
        let room = ((high - low + 1) as usize) < max_points;
        next = if room && best == 0 {
            low -= 1;
            vec![low]
        } else if room && best == curve.len() - 1 && high < MAX_INDEX {
            high += 1;
            vec![high]
        } else {
            return done;
        };
    }
}

/// Every point of the study's sweeps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sweeps {
    /// MNIST: learning rate, default initialisation and batch.
    pub lr: Vec<Point>,
    /// MNIST: initialisation scale, at each optimizer's best rate.
    pub init: Vec<Point>,
    /// MNIST: batch size, each optimizer's best rate scaled.
    pub batch: Vec<Point>,
    /// MNIST: learning rate at each tuned batch size, around the scaled rate.
    pub tuned: Vec<Point>,
    /// MNIST: the other warm-up at each tuned batch size's best rate.
    pub tuned_warmup: Vec<Point>,
    /// char-LM: learning rate.
    pub lm: Vec<Point>,
    /// char-LM: each optimizer's best rate trained to its plateau (every attempt).
    pub plateau: Vec<Point>,
}

/// The best learning rate of `optimizer` among `points` (mean over seeds).
pub fn best_lr(points: &[Point], optimizer: OptimizerName, lower_is_better: bool) -> f64 {
    let curve = lr_curve(points, optimizer);
    curve[best_index(&curve, lower_is_better)].0
}

/// Runs the sweeps of `budget`: MNIST's with `mnist_defaults`, char-LM's with `lm_defaults`.
pub fn sweeps(
    trainer: &mut Trainer,
    budget: &Budget,
    mnist_defaults: &Defaults,
    lm_defaults: &Defaults,
) -> Sweeps {
    let b = &budget.mnist;
    let task = Task::Mnist {
        hidden: b.hidden,
        train_images: b.train_images.map_or(trainer.mnist.train.len(), |n| {
            n.min(trainer.mnist.train.len())
        }),
        test_images: b.test_images.map_or(trainer.mnist.test.len(), |n| {
            n.min(trainer.mnist.test.len())
        }),
    };
    let mnist_run = |optimizer, lr, init_scale, batch_size, epochs, seed| Run {
        task,
        optimizer: spec(optimizer, mnist_defaults, lr),
        init_scale,
        batch_size,
        epochs,
        warmup_percent: WARMUP_PERCENT,
        seed,
    };
    let mut sweeps = Sweeps::default();
    for optimizer in OPTIMIZERS {
        let sweep = lr_sweep(
            |rate, seed| trainer.train(mnist_run(optimizer, rate, 1.0, b.batch, b.epochs, seed)),
            default_lr(optimizer, mnist_defaults),
            &b.seeds,
            (b.lr_points, b.lr_max_points),
            false,
        );
        let best = best_lr(&sweep, optimizer, false);
        sweeps.lr.extend(sweep);
        for &scale in &b.init_scales {
            for &seed in &b.seeds {
                let run = mnist_run(optimizer, best, scale, b.batch, b.epochs, seed);
                sweeps.init.push(trainer.train(run));
            }
        }
        let rule = |size| (best * lr_scaling(optimizer, size, b.batch)).min(grid_lr(MAX_INDEX));
        for &seed in &b.batch_seeds {
            for &size in &b.batch_sizes {
                let run = mnist_run(optimizer, rule(size), 1.0, size, b.batch_epochs, seed);
                sweeps.batch.push(trainer.train(run));
            }
        }
        for &size in &b.tuned_batch_sizes {
            let tuned = lr_sweep(
                |rate, seed| {
                    trainer.train(mnist_run(optimizer, rate, 1.0, size, b.batch_epochs, seed))
                },
                rule(size),
                &b.tuned_seeds,
                (b.tuned_lr_points, b.tuned_lr_max_points),
                false,
            );
            let tuned_lr = best_lr(&tuned, optimizer, false);
            sweeps.tuned.extend(tuned);
            for &seed in &b.tuned_seeds {
                let run = Run {
                    warmup_percent: b.tuned_warmup_percent,
                    ..mnist_run(optimizer, tuned_lr, 1.0, size, b.batch_epochs, seed)
                };
                sweeps.tuned_warmup.push(trainer.train(run));
            }
        }
    }
    let l = &budget.lm;
    let windows = char_lm::data::Windows::new(trainer.corpus.train.clone(), l.context, l.windows);
    let task = Task::CharLm {
        d_model: l.d_model,
        layers: l.layers,
        context: l.context,
        windows: windows.len(),
    };
    let lm_run = |optimizer, lr, epochs, seed| Run {
        task,
        optimizer: spec(optimizer, lm_defaults, lr),
        init_scale: 1.0,
        batch_size: l.batch,
        epochs,
        warmup_percent: WARMUP_PERCENT,
        seed,
    };
    for optimizer in LM_OPTIMIZERS {
        let sweep = lr_sweep(
            |rate, seed| trainer.train(lm_run(optimizer, rate, l.epochs, seed)),
            default_lr(optimizer, lm_defaults),
            &l.seeds,
            (l.lr_points, l.lr_max_points),
            true,
        );
        let best = best_lr(&sweep, optimizer, true);
        sweeps.lm.extend(sweep);
        sweeps.plateau.extend(to_plateau(
            |epochs, seed| trainer.train(lm_run(optimizer, best, epochs, seed)),
            &l.plateau_seeds,
            (l.plateau_epochs, l.plateau_max_epochs),
            l.plateau_drop,
        ));
    }
    sweeps
}

/// Runs of every seed, for `epochs` and then for twice as many while a seed's last epoch
/// lowered the validation loss by `drop` or more, up to `max_epochs`; every attempt's points.
fn to_plateau(
    mut train: impl FnMut(usize, u64) -> Point,
    seeds: &[u64],
    (mut epochs, max_epochs): (usize, usize),
    drop: f64,
) -> Vec<Point> {
    let mut done = Vec::new();
    loop {
        let attempt: Vec<Point> = seeds.iter().map(|&seed| train(epochs, seed)).collect();
        let settled = attempt
            .iter()
            .all(|p| p.last_epoch_gain().is_some_and(|gain| gain < drop));
        done.extend(attempt);
        if settled || epochs * 2 > max_epochs {
            return done;
        }
        epochs *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_budget_is_what_the_issue_asks() {
        let budget = Budget::full();
        let b = &budget.mnist;
        assert!(b.seeds.len() >= 2);
        // At least 7 rates half a decade apart: 3 decades.
        assert!(b.lr_points >= 7 && b.lr_max_points >= b.lr_points);
        assert_eq!(b.init_scales, [0.1, 1.0, 10.0]);
        assert_eq!(b.batch_sizes, [128, 512, 2048, 8192]);
        assert_eq!((b.train_images, b.test_images), (None, None));
        let steps_at_8192 = b.batch_epochs * 60_000usize.div_ceil(8192);
        assert!(steps_at_8192 >= 150, "{steps_at_8192}");
        // Each optimizer tuned at 2048 and 8192: at least 5 rates, 2 seeds.
        assert_eq!(b.tuned_batch_sizes, [2048, 8192]);
        assert!(b.tuned_lr_points >= 5 && b.tuned_lr_max_points >= b.tuned_lr_points);
        assert!(b.tuned_seeds.len() >= 2);
        // Two warm-ups at the tuned rate: the sweeps' and the paper's (none).
        assert_eq!((WARMUP_PERCENT, b.tuned_warmup_percent), (5, 0));
        let l = &budget.lm;
        assert_eq!(l.lr_points, 5);
        let lm_steps = l.epochs * l.windows.unwrap().div_ceil(l.batch);
        assert!(lm_steps >= 1000, "{lm_steps}");
        // To the plateau: 2 seeds, longer than the sweep, a last-epoch drop under 0.01 nats.
        assert!(l.plateau_seeds.len() >= 2);
        assert!(l.plateau_epochs > l.epochs && l.plateau_max_epochs >= l.plateau_epochs);
        assert_eq!(l.plateau_drop, 0.01);
    }

    /// A fake char-LM run whose validation loss after epoch `e` is 2 + 1/e nats: its last
    /// epoch lowers it by 1/(e(e − 1)), 0.05 after 5 epochs, 0.011 after 10, 0.0026 after 20.
    fn settling(epochs: usize, seed: u64) -> Point {
        let history: Vec<f64> = (1..=epochs).map(|e| 2.0 + 1.0 / e as f64).collect();
        Point {
            run: Run {
                task: Task::CharLm {
                    d_model: 1,
                    layers: 1,
                    context: 1,
                    windows: 1,
                },
                optimizer: spec(OptimizerName::Novograd, &char_lm::DEFAULTS, 0.01),
                init_scale: 1.0,
                batch_size: 1,
                epochs,
                warmup_percent: WARMUP_PERCENT,
                seed,
            },
            score: history[epochs - 1],
            history,
            steps: epochs,
            seconds: 0.0,
        }
    }

    #[test]
    fn runs_to_the_plateau_double_until_the_last_epoch_settles() {
        let epochs =
            |points: &[Point]| -> Vec<usize> { points.iter().map(|p| p.run.epochs).collect() };
        let points = to_plateau(settling, &[1, 2], (5, 40), 0.01);
        assert_eq!(epochs(&points), [5, 5, 10, 10, 20, 20]);
        assert!(points[4].last_epoch_gain().unwrap() < 0.01);
        // Capped: it stops at the most epochs allowed, settled or not.
        assert_eq!(epochs(&to_plateau(settling, &[1], (5, 12), 0.01)), [5, 10]);
        // A single epoch has no last-epoch drop: it is never settled.
        assert_eq!(epochs(&to_plateau(settling, &[1], (1, 2), 0.01)), [1, 2]);
    }

    #[test]
    fn windows_are_centred_on_the_default_and_end_at_one_at_most() {
        assert_eq!(initial_window(0.01, 7), (-7, -1));
        assert_eq!(initial_window(1e-3, 5), (-8, -4));
        // SGD's 0.05 is nearest 10^-1.5; centred, the window would reach 10^0.5.
        assert_eq!(initial_window(0.05, 7), (-6, 0));
        assert!((grid_lr(-3) - 0.031_622_776).abs() < 1e-9);
        assert_eq!(grid_index(grid_lr(-5)), -5);
    }

    /// A fake run whose score peaks at rate `peak`: the window must grow until it holds the
    /// peak inside, one rate at a time, and stop at `max_points`.
    #[test]
    fn a_window_grows_towards_a_best_rate_at_its_edge() {
        let defaults = mnist::DEFAULTS;
        let fake = |peak: f64| {
            move |lr: f64, seed: u64| Point {
                run: Run {
                    task: Task::Mnist {
                        hidden: 1,
                        train_images: 1,
                        test_images: 1,
                    },
                    optimizer: spec(OptimizerName::Novograd, &defaults, lr),
                    init_scale: 1.0,
                    batch_size: 1,
                    epochs: 1,
                    warmup_percent: WARMUP_PERCENT,
                    seed,
                },
                score: -(lr.log10() - peak.log10()).abs(),
                history: Vec::new(),
                steps: 1,
                seconds: 0.0,
            }
        };
        let rates = |points: &[Point]| {
            let mut k: Vec<i32> = points
                .iter()
                .map(|p| grid_index(p.run.optimizer.hyper.lr))
                .collect();
            k.dedup();
            k
        };
        // Default 0.01: window 10^-3.5 … 10^-0.5; a peak at 10^-5 pulls it down to 10^-5.5.
        let grown = lr_sweep(fake(1e-5), 0.01, &[1, 2], (7, 10), false);
        assert_eq!(rates(&grown), [-7, -6, -5, -4, -3, -2, -1, -8, -9, -10]);
        assert_eq!(grown.len(), 20);
        let grown = lr_sweep(fake(1e-5), 0.01, &[1], (7, 12), false);
        assert_eq!(
            rates(&grown),
            [-7, -6, -5, -4, -3, -2, -1, -8, -9, -10, -11]
        );
        // A peak past 1 stops the window at 1.
        let capped = lr_sweep(fake(10.0), 0.01, &[1], (7, 12), false);
        assert_eq!(rates(&capped), [-7, -6, -5, -4, -3, -2, -1, 0]);
        // Lower is better: the same fake, negated.
        let lower = lr_sweep(
            |lr, seed| {
                let mut p = fake(1e-2)(lr, seed);
                p.score = -p.score;
                p
            },
            1e-3,
            &[1],
            (5, 7),
            true,
        );
        assert_eq!(rates(&lower), [-8, -7, -6, -5, -4, -3]);
    }

    #[test]
    fn learning_rates_scale_linearly_for_sgd_and_by_the_root_otherwise() {
        assert_eq!(lr_scaling(OptimizerName::Sgd, 8192, 128), 64.0);
        for adaptive in [
            OptimizerName::Novograd,
            OptimizerName::Adamw,
            OptimizerName::Lamb,
            OptimizerName::Lion,
        ] {
            assert_eq!(lr_scaling(adaptive, 8192, 128), 8.0);
        }
        let scaled = spec(OptimizerName::Novograd, &mnist::DEFAULTS, 0.08);
        assert_eq!(
            scaled.hyper.weight_decay,
            mnist::DEFAULTS.novograd.weight_decay
        );
    }

    #[test]
    fn the_last_epoch_gain_reads_the_history() {
        let point = |task, history: Vec<f64>| Point {
            run: Run {
                task,
                optimizer: spec(OptimizerName::Adamw, &mnist::DEFAULTS, 1e-3),
                init_scale: 1.0,
                batch_size: 1,
                epochs: history.len(),
                warmup_percent: WARMUP_PERCENT,
                seed: 1,
            },
            score: 0.0,
            history,
            steps: 1,
            seconds: 0.0,
        };
        let mnist = Task::Mnist {
            hidden: 1,
            train_images: 1,
            test_images: 1,
        };
        let lm = Task::CharLm {
            d_model: 1,
            layers: 1,
            context: 1,
            windows: 1,
        };
        let gain = point(mnist, vec![97.0, 98.0, 98.25]).last_epoch_gain();
        assert_eq!(gain, Some(0.25));
        assert_eq!(point(lm, vec![2.5, 2.0]).last_epoch_gain(), Some(0.5));
        assert_eq!(point(mnist, vec![97.0]).last_epoch_gain(), None);
    }
}
