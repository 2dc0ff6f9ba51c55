//! MNIST with a small CNN, trained through Burn's `SupervisedTraining` + `Learner` with
//! NovoGrad, AdamW, SGD, LAMB or Lion, on any backend. The binary is
//! `cargo run --release -p mnist`.

pub mod data;
pub mod model;

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, LearnerModel, SupervisedTraining, TrainStep,
};
use example_kit::mnist::{Mnist, MnistItem, MnistSplit};
use example_kit::{
    Defaults, Hyper, Job, RunConfig, RunReport, RunSettings, Series, load_weights, loader, plot,
    plot_step_losses, train,
};
use serde::{Deserialize, Serialize};

use crate::data::{MnistBatch, MnistBatcher};
use crate::model::{Model, ModelConfig};

/// Epochs of a run without `--epochs`.
pub const EPOCHS: usize = 5;

/// Learning rate and weight decay of each optimizer for this task: NovoGrad's from the paper's
/// recipes (λ = 0.01, d = 1e-3), AdamW's and SGD's the usual ones for small CNNs, LAMB's the
/// paper's decay (0.01) at a rate that changes each layer by 1% of its norm per step, Lion's
/// AdamW's rate / 3 and decay × 3 (the Lion paper's advice).
pub const DEFAULTS: Defaults = Defaults {
    novograd: Hyper {
        lr: 0.01,
        weight_decay: 1e-3,
    },
    adamw: Hyper {
        lr: 1e-3,
        weight_decay: 1e-2,
    },
    sgd: Hyper {
        lr: 0.05,
        weight_decay: 5e-4,
    },
    lamb: Hyper {
        lr: 0.01,
        weight_decay: 0.01,
    },
    lion: Hyper {
        lr: 3e-4,
        weight_decay: 0.03,
    },
};

/// A digit classifier the example can train: logits `[batch, 10]` of images
/// `[batch, 1, 28, 28]`, and the Learner's steps on [`MnistBatch`]es.
pub trait Classifier:
    LearnerModel
    + TrainStep<Input = MnistBatch, Output = ClassificationOutput>
    + InferenceStep<Input = MnistBatch, Output = ClassificationOutput>
{
    /// Logits of `images`.
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;

    /// Logits, cross-entropy loss and targets of a batch (both Learner steps).
    fn classify(&self, batch: MnistBatch) -> ClassificationOutput {
        let output = self.logits(batch.images);
        let loss = CrossEntropyLossConfig::new()
            .init(&output.device())
            .forward(output.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, output, batch.targets)
    }
}

/// What makes a [`Classifier`] on a device: the example's CNN ([`ModelConfig`]), or another
/// model trained the same way (the study's MLP).
pub trait ClassifierConfig {
    /// The classifier it makes.
    type Model: Classifier;
    /// A new classifier on `device`, initialised from the device's random numbers.
    fn init(&self, device: &Device) -> Self::Model;
}

impl Classifier for Model {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}

impl ClassifierConfig for ModelConfig {
    type Model = Model;

    fn init(&self, device: &Device) -> Model {
        ModelConfig::init(self, device)
    }
}

/// One training run of the CNN, or of another [`ClassifierConfig`]'s model.
#[derive(Clone, Debug)]
pub struct MnistRun<C = ModelConfig> {
    /// Optimizer, backend, epochs, batch size, seed, output directory.
    pub settings: RunSettings,
    /// The model's sizes.
    pub model: C,
    /// The data; the test split is also the per-epoch validation (nothing is selected on it).
    pub data: Mnist,
}

/// Final figures of a run.
#[derive(Clone, Debug, Serialize)]
pub struct MnistOutcome {
    /// Percent of test images classified correctly by the final model.
    pub test_accuracy: f64,
    /// Training images per epoch.
    pub train_images: usize,
}

impl<C: ClassifierConfig> Job for MnistRun<C> {
    type Output = RunReport<MnistOutcome>;

    fn run(self, devices: Vec<Device>) -> Self::Output {
        let (batch_size, seed) = (self.settings.batch_size, self.settings.seed);
        devices[0].seed(seed);
        let model = self.model.init(&devices[0]);
        let train_images = self.data.train.len();
        let test = self.data.test;
        let train_loader = loader(MnistBatcher, self.data.train, batch_size, Some(seed));
        let valid_loader = loader(MnistBatcher, test.clone(), batch_size, None);
        let metrics = |training: SupervisedTraining<_>| {
            training
                .metric_train_numeric(AccuracyMetric::new())
                .metric_train_numeric(LossMetric::new())
                .metric_train_numeric(LearningRateMetric::new())
                .metric_valid_numeric(AccuracyMetric::new())
                .metric_valid_numeric(LossMetric::new())
        };
        train(
            &self.settings,
            model,
            train_loader,
            valid_loader,
            devices,
            metrics,
            |model, _| MnistOutcome {
                test_accuracy: accuracy(model, &test, batch_size),
                train_images,
            },
        )
    }
}

/// Where a run's data came from and how much of it trained (the `data` of its `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MnistData {
    /// The directory of the four IDX files (`None`: downloaded into the cache).
    pub data_dir: Option<PathBuf>,
    /// Trained on the first this many training images only.
    pub train_limit: Option<usize>,
}

/// A run's `config.json`.
pub type MnistConfig = RunConfig<ModelConfig, MnistData>;

/// The trained model of the run in the artifact directory `dir`, on `device`, and the run's
/// configuration, or why there is none.
pub fn load_trained(dir: &Path, device: &Device) -> Result<(Model, MnistConfig), String> {
    let config = MnistConfig::load(dir, "mnist")?;
    let model = load_weights(config.model.init(device), dir)?;
    Ok((model, config))
}

/// The digit `model` reads in `image` (28×28 grey pixels, row-major) and its probability.
pub fn predict(model: &Model, image: Vec<u8>) -> (usize, f32) {
    let device = model.devices()[0].clone();
    let batch = MnistBatcher.batch(vec![MnistItem { image, label: 0 }], &device);
    let probabilities: Vec<f32> = softmax(model.forward(batch.images), 1)
        .into_data()
        .iter::<f32>()
        .collect();
    probabilities
        .into_iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| a.total_cmp(b))
        .expect("ten classes")
}

/// Percent of `split` that `model` classifies correctly, on `model`'s device.
pub fn accuracy<M: Classifier>(model: &M, split: &MnistSplit, batch_size: usize) -> f64 {
    let device = model.devices()[0].clone();
    let correct: i64 = loader(MnistBatcher, split.clone(), batch_size, None)
        .to_device(&device)
        .iter()
        .map(|batch| {
            let batch = batch.expect("the test data loads");
            let predicted = model.logits(batch.images).argmax(1).squeeze_dim(1);
            predicted
                .equal(batch.targets)
                .int()
                .sum()
                .into_scalar::<i64>()
        })
        .sum();
    100.0 * correct as f64 / split.len().max(1) as f64
}

/// The per-epoch PNG curves a run writes into its artifact directory (beside the kit's
/// per-step loss curve).
pub const PLOTS: [&str; 2] = ["loss.png", "accuracy.png"];

/// Writes `loss.png` and `accuracy.png` of `report`'s history, and the training loss per step
/// (`loss-steps.png`, from the Learner's logs), into `dir`.
pub fn plot_curves(
    report: &RunReport<MnistOutcome>,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = || report.history.iter().map(|e| e.epoch as f64);
    let title = format!("MNIST, {}", report.optimizer.name);
    plot_step_losses(
        dir,
        &format!("{title}: training loss per step"),
        report.epochs,
    )?;
    plot(
        &dir.join("loss.png"),
        &format!("{title}: loss"),
        ("epoch", "cross-entropy"),
        &[
            Series::new(
                "train",
                epochs().zip(report.history.iter().map(|e| e.train_loss)),
            ),
            Series::new(
                "test",
                epochs().zip(report.history.iter().map(|e| e.valid_loss)),
            ),
        ],
        false,
    )?;
    plot(
        &dir.join("accuracy.png"),
        &format!("{title}: accuracy"),
        ("epoch", "accuracy (%)"),
        &[
            Series::new(
                "train",
                epochs().zip(report.history.iter().map(|e| e.train_accuracy)),
            ),
            Series::new(
                "test",
                epochs().zip(report.history.iter().map(|e| e.valid_accuracy)),
            ),
        ],
        false,
    )
}
