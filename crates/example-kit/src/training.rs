//! Training through Burn's `SupervisedTraining` + `Learner`, with readable progress lines and
//! a per-epoch history (times and aggregated metrics) for the results.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder, DataLoaderIterator};
use burn::data::dataset::Dataset;
use burn::lr_scheduler::composed::ComposedLrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use burn::train::{
    ExecutionStrategy, InferenceStep, Learner, LearnerModel, LearnerSummary, SupervisedTraining,
    TrainStep,
};
use serde::Serialize;

use crate::backend::BackendName;
use crate::optimizer::{OptimizerSpec, state_bytes};
use crate::report::RunReport;

/// Aggregated metrics of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Wall time of the epoch, training and validation.
    pub seconds: f64,
    /// Mean training loss.
    pub train_loss: Option<f64>,
    /// Mean training accuracy, in percent, where the task has one.
    pub train_accuracy: Option<f64>,
    /// Mean validation loss.
    pub valid_loss: Option<f64>,
    /// Mean validation accuracy, in percent, where the task has one.
    pub valid_accuracy: Option<f64>,
}

/// A trained model and how the training went.
pub struct Trained<M> {
    /// The model, in validation mode on the plain (non-autodiff) device.
    pub model: M,
    /// One entry per epoch run.
    pub history: Vec<EpochStats>,
    /// Wall time of the whole training.
    pub train_seconds: f64,
}

/// Trains `model` for `epochs` epochs (in total) with Burn's `SupervisedTraining` + `Learner`
/// under `strategy`, checkpointing every epoch under `artifact_dir`; with `resume_from`, the
/// Learner first loads the model, optimizer and scheduler of that epoch's checkpoint and goes on
/// from the next epoch. `metrics` registers the task's metrics; "Loss" and "Accuracy" end up in
/// the history.
#[allow(clippy::too_many_arguments)]
pub fn fit<M: LearnerModel>(
    model: M,
    optimizer: ModuleOptimizer,
    scheduler: impl Into<ModuleLrScheduler>,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    strategy: ExecutionStrategy,
    epochs: usize,
    artifact_dir: &Path,
    resume_from: Option<usize>,
    metrics: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
) -> Trained<M> {
    let clock = Arc::new(Mutex::new(EpochClock::default()));
    let renderer = LineRenderer {
        clock: clock.clone(),
        ..LineRenderer::default()
    };
    let training = SupervisedTraining::new(artifact_dir, train, valid)
        .with_default_checkpointers()
        .with_training_strategy(strategy.into())
        .renderer(Box::new(renderer))
        .num_epochs(epochs);
    let training = match resume_from {
        Some(epoch) => training.checkpoint(epoch),
        None => training,
    };
    let start = Instant::now();
    let result = metrics(training).launch(Learner::new(model, optimizer, scheduler));
    if let Some(error) = &result.error {
        panic!("training failed: {error:?}");
    }
    let train_seconds = start.elapsed().as_secs_f64();
    let mut seconds = clock.lock().expect("clock").epoch_seconds(Instant::now());
    // Epochs before a resume (all of them when the checkpoint was the last) took 0 s here.
    seconds.resize(seconds.len().max(epochs), 0.0);
    Trained {
        model: result.model,
        history: history(artifact_dir, &seconds),
        train_seconds,
    }
}

/// A training loader whose epochs do not depend on how many came before in this process, so
/// that a run resumed after epoch `k` trains epoch `k + 1` as an uninterrupted run does: epoch
/// `e` (from 0) seeds the device's random numbers (dropout; in epoch 0 also Burn's lazy
/// parameter initialisation) with the run's seed + `e`, and a copy made for a device (which
/// Burn's loaders give a shuffling state of its own) first skips the shuffles of the epochs
/// already trained.
struct EpochSeeded<O> {
    inner: Arc<dyn DataLoader<O>>,
    seed: u64,
    epochs_done: usize,
    next_epoch: AtomicUsize,
    device: Option<Device>,
}

impl<O: 'static> EpochSeeded<O> {
    fn new(inner: Arc<dyn DataLoader<O>>, seed: u64, epochs_done: usize) -> Self {
        Self {
            inner,
            seed,
            epochs_done,
            next_epoch: AtomicUsize::new(epochs_done),
            device: None,
        }
    }

    /// `inner` (a fresh copy) after the shuffles of the epochs already trained.
    fn copy(
        &self,
        inner: Arc<dyn DataLoader<O>>,
        device: Option<Device>,
    ) -> Arc<dyn DataLoader<O>> {
        for _ in 0..self.epochs_done {
            drop(inner.iter());
        }
        Arc::new(Self {
            device,
            ..Self::new(inner, self.seed, self.epochs_done)
        })
    }
}

impl<O: 'static> DataLoader<O> for EpochSeeded<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed) as u64;
        if let Some(device) = &self.device {
            device.seed(self.seed.wrapping_add(epoch));
        }
        self.inner.iter()
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        self.copy(self.inner.to_device(device), Some(device.clone()))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        self.copy(self.inner.slice(start, end), self.device.clone())
    }
}

/// The examples' warm-up, in percent of the steps (Goyal et al. 2017: 5 of 90 epochs).
pub const WARMUP_PERCENT: usize = 5;

/// What every example run is given: optimizer, backend, epochs, batch, seed and output place.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Optimizer and hyperparameters.
    pub optimizer: OptimizerSpec,
    /// The backend the run is launched on.
    pub backend: BackendName,
    /// Devices to train on, data-parallel when more than one.
    pub devices: usize,
    /// Epochs over the training data.
    pub epochs: usize,
    /// Items per batch (per device).
    pub batch_size: usize,
    /// Seed of the initialisation, the shuffling and dropout.
    pub seed: u64,
    /// Percent of the steps over which the learning rate warms up ([`warmup_cosine`]); 0: none.
    pub warmup_percent: usize,
    /// Where checkpoints, logs, `results.json`, the model and the curves go.
    pub artifact_dir: PathBuf,
    /// Continue from the Learner's checkpoint of this epoch in `artifact_dir`.
    pub resume_from: Option<usize>,
}

/// A data loader over `dataset`, shuffled by `shuffle`'s seed when given. Its batches are built
/// on `Device::default()` until the Learner (or [`DataLoader::to_device`]) moves it.
pub fn loader<I, O, D>(
    batcher: impl Batcher<I, O> + 'static,
    dataset: D,
    batch_size: usize,
    shuffle: Option<u64>,
) -> Arc<dyn DataLoader<O>>
where
    I: Send + Sync + Clone + core::fmt::Debug + 'static,
    O: Send + Clone + core::fmt::Debug + 'static,
    D: Dataset<I> + 'static,
{
    let builder = DataLoaderBuilder::new(batcher).batch_size(batch_size);
    match shuffle {
        Some(seed) => builder.shuffle(seed).build(dataset),
        None => builder.build(dataset),
    }
}

/// Trains `model` as `settings` say, with warm-up + cosine decay over all steps, saves the
/// trained model as `model.bpk` in the artifact directory, and reports with the task's `outcome`
/// of the trained model (in validation mode, on the plain device) and the number of steps.
/// `metrics` registers the task's metrics. Prints which NovoGrad step the device takes.
pub fn train<M, T>(
    settings: &RunSettings,
    model: M,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    devices: Vec<Device>,
    metrics: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
    outcome: impl FnOnce(&M, usize) -> T,
) -> RunReport<T>
where
    M: LearnerModel,
    T: Serialize,
{
    let devices_used = devices.len();
    if let Some(step) = settings.optimizer.novograd_step(&devices[0]) {
        println!("NovoGrad step: {step}");
    }
    if let Some(epoch) = settings.resume_from {
        println!("resuming after epoch {epoch} from its checkpoint");
    }
    let steps = settings.epochs
        * train
            .num_items()
            .div_ceil(settings.batch_size * devices_used);
    let warmup_steps = steps * settings.warmup_percent / 100;
    let scheduler = warmup_cosine(settings.optimizer.hyper.lr, warmup_steps, steps);
    let optimizer = settings.optimizer.init();
    let train: Arc<dyn DataLoader<_>> = Arc::new(EpochSeeded::new(
        train,
        settings.seed,
        settings.resume_from.unwrap_or(0),
    ));
    let first_batch = train
        .to_device(&devices[0])
        .iter()
        .next()
        .expect("a training batch")
        .expect("the training data loads");
    let state_bytes = state_bytes_after_one_step(&model, &optimizer, first_batch);
    let trained = fit(
        model,
        optimizer,
        scheduler,
        train,
        valid,
        settings.backend.execution_strategy(devices),
        settings.epochs,
        &settings.artifact_dir,
        settings.resume_from,
        metrics,
    );
    let model_file = settings.artifact_dir.join(MODEL_FILE);
    if let Err(error) = trained.model.clone().save_file(&model_file) {
        crate::fail(format!("cannot save {}: {error}", model_file.display()));
    }
    RunReport {
        optimizer: settings.optimizer,
        backend: settings.backend,
        devices: devices_used,
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        seed: settings.seed,
        train_seconds: trained.train_seconds,
        optimizer_state_bytes: state_bytes,
        outcome: outcome(&trained.model, steps),
        history: trained.history,
    }
}

/// The trained model's weights in an artifact directory, as Burn's burnpack file.
pub const MODEL_FILE: &str = "model.bpk";

/// The training loss of every step (iteration) of the run in `artifact_dir`, as Burn's Learner
/// logged it (`train/epoch-N/Loss.log`, one line per step, then the epoch's final value):
/// `(step, loss)` from step 1.
pub fn step_losses(artifact_dir: &Path, epochs: usize) -> Vec<(f64, f64)> {
    (1..=epochs)
        .flat_map(|epoch| {
            let log = artifact_dir.join(format!("train/epoch-{epoch}/Loss.log"));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.lines()
                .filter_map(|line| NumericEntry::deserialize(line).ok())
                .filter(|entry| !matches!(entry, NumericEntry::Final(_)))
                .map(|entry| entry.current())
                .collect::<Vec<_>>()
        })
        .enumerate()
        .map(|(index, loss)| ((index + 1) as f64, loss))
        .collect()
}

/// Bytes of `optimizer`'s state after one step on `batch` (built on the model's autodiff
/// device), through Burn's burnpack record. Neither `model` nor `optimizer` is changed.
pub fn state_bytes_after_one_step<M: TrainStep + Module>(
    model: &M,
    optimizer: &ModuleOptimizer,
    batch: <M as TrainStep>::Input,
) -> usize {
    // A copy of its own: clones share running statistics (batch norm), which a training step
    // updates, and a checkpoint loaded into `model` must not be overwritten by this step's.
    let model = model.valid().train();
    let grads = model.step(batch).grads;
    let mut optimizer = optimizer.clone();
    let _ = optimizer.step(1e-3, model, grads);
    state_bytes(&optimizer)
}

fn history(artifact_dir: &Path, seconds: &[f64]) -> Vec<EpochStats> {
    let summary = LearnerSummary::new(artifact_dir, &["Loss", "Accuracy"]).ok();
    let value = |split_valid: bool, name: &str, epoch: usize| {
        let summary = summary.as_ref()?;
        let split = if split_valid {
            &summary.metrics.valid
        } else {
            &summary.metrics.train
        };
        let metric = split.iter().find(|metric| metric.name == name)?;
        metric
            .entries
            .iter()
            .find(|entry| entry.step == epoch)
            .map(|entry| entry.value)
    };
    seconds
        .iter()
        .enumerate()
        .map(|(index, &seconds)| {
            let epoch = index + 1;
            EpochStats {
                epoch,
                seconds,
                train_loss: value(false, "Loss", epoch),
                train_accuracy: value(false, "Accuracy", epoch),
                valid_loss: value(true, "Loss", epoch),
                valid_accuracy: value(true, "Accuracy", epoch),
            }
        })
        .collect()
}

/// When each epoch started, by epoch number.
#[derive(Default)]
struct EpochClock {
    starts: Vec<(usize, Instant)>,
}

impl EpochClock {
    fn start(&mut self, epoch: usize) {
        if self.starts.last().is_none_or(|(last, _)| *last != epoch) {
            self.starts.push((epoch, Instant::now()));
        }
    }

    /// Seconds per epoch, the last one ending at `end`; indexed from epoch 1, with epochs
    /// skipped by a resume counted as 0.
    fn epoch_seconds(&self, end: Instant) -> Vec<f64> {
        let mut seconds = vec![0.0; self.starts.last().map_or(0, |(epoch, _)| *epoch)];
        for (index, (epoch, start)) in self.starts.iter().enumerate() {
            let stop = self.starts.get(index + 1).map_or(end, |(_, next)| *next);
            seconds[epoch - 1] = (stop - *start).as_secs_f64();
        }
        seconds
    }
}

/// Prints a line per tenth of an epoch and one per validation, and times the epochs.
#[derive(Default)]
struct LineRenderer {
    clock: Arc<Mutex<EpochClock>>,
    names: HashMap<MetricId, String>,
    train: Vec<(String, String)>,
    valid: Vec<(String, String)>,
    total_epochs: usize,
    epoch: usize,
    split: String,
    split_items: usize,
    printed_tenth: Option<(usize, usize)>,
}

impl LineRenderer {
    fn remember(
        names: &HashMap<MetricId, String>,
        latest: &mut Vec<(String, String)>,
        state: MetricState,
    ) {
        let (MetricState::Generic(entry) | MetricState::Numeric(entry, _)) = state;
        let name = names.get(&entry.metric_id).cloned().unwrap_or_default();
        let formatted = entry.serialized_entry.formatted;
        match latest.iter_mut().find(|(known, _)| *known == name) {
            Some(slot) => slot.1 = formatted,
            None => latest.push((name, formatted)),
        }
    }

    fn metrics(latest: &[(String, String)]) -> String {
        latest
            .iter()
            .map(|(name, value)| format!("  {name} {value}"))
            .collect()
    }
}

impl MetricsRendererTraining for LineRenderer {
    fn update_train(&mut self, state: MetricState) {
        Self::remember(&self.names, &mut self.train, state);
    }

    fn update_valid(&mut self, state: MetricState) {
        Self::remember(&self.names, &mut self.valid, state);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for LineRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.split_items = total_items;
        if split == "train" {
            self.clock.lock().expect("clock").start(self.epoch);
        }
    }

    fn update_split(&mut self, items_processed: usize) {
        if self.split != "train" {
            return;
        }
        let tenth = items_processed * 10 / self.split_items.max(1);
        if self.printed_tenth != Some((self.epoch, tenth)) {
            self.printed_tenth = Some((self.epoch, tenth));
            println!(
                "train  epoch {}/{}  {:>3}%{}",
                self.epoch,
                self.total_epochs,
                tenth * 10,
                Self::metrics(&self.train)
            );
        }
    }

    fn end_split(&mut self) {
        if self.split == "valid" {
            println!(
                "valid  epoch {}/{}{}",
                self.epoch,
                self.total_epochs,
                Self::metrics(&self.valid)
            );
        }
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for LineRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}

    fn start_test(&mut self, _name: &str, _total_items: usize) {}

    fn update_test_progress(&mut self, _items_processed: usize) {}

    fn end_test(&mut self) {}

    fn end_global_progress(&mut self) {}

    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRendererEvaluation for LineRenderer {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
}

impl MetricsRenderer for LineRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}

/// Linear warm-up from 1% of `peak` over `warmup_steps` (none when 0), times a cosine decay
/// from `peak` to 1% of it over `total_steps`.
pub fn warmup_cosine(peak: f64, warmup_steps: usize, total_steps: usize) -> ModuleLrScheduler {
    let cosine =
        CosineAnnealingLrSchedulerConfig::new(peak, total_steps.max(1)).with_min_lr(peak * 0.01);
    let composed = ComposedLrSchedulerConfig::new();
    let composed = match warmup_steps {
        0 => composed,
        steps => composed.linear(LinearLrSchedulerConfig::new(0.01, 1.0, steps)),
    };
    composed.cosine(cosine).init().expect("valid schedule")
}

#[cfg(test)]
mod tests {
    use super::warmup_cosine;

    /// The rate of each of `total` steps.
    fn rates(warmup_steps: usize, total: usize) -> Vec<f64> {
        let mut scheduler = warmup_cosine(0.5, warmup_steps, total);
        (0..total).map(|_| scheduler.step().base()).collect()
    }

    #[test]
    fn a_warm_up_starts_at_one_percent_of_the_peak_and_none_starts_at_the_peak() {
        let warm = rates(10, 100);
        assert!((warm[0] - 0.005).abs() < 1e-9, "{}", warm[0]);
        assert!(warm[..10].windows(2).all(|w| w[1] > w[0]), "{warm:?}");
        let none = rates(0, 100);
        assert!((none[0] - 0.5).abs() < 1e-9, "{}", none[0]);
        assert!(none.windows(2).all(|w| w[1] <= w[0]), "{none:?}");
        // Both decay towards 1% of the peak.
        for last in [warm[99], none[99]] {
            assert!((0.005 - 1e-9..0.01).contains(&last), "{last}");
        }
    }
}
