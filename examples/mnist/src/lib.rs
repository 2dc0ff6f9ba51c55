//! MNIST with a small CNN, trained through Burn's `SupervisedTraining` + `Learner` with
//! NovoGrad, AdamW or SGD, on any backend. The binary is `cargo run --release -p mnist`.

pub mod data;
pub mod model;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::train::SupervisedTraining;
use burn::train::metric::{AccuracyMetric, LossMetric};
use example_kit::mnist::{Mnist, MnistSplit};
use example_kit::{Defaults, Hyper, Job, RunReport, RunSettings, Series, loader, plot, train};
use serde::Serialize;

use crate::data::MnistBatcher;
use crate::model::{Model, ModelConfig};

/// Learning rate and weight decay of each optimizer for this task: NovoGrad's from the paper's
/// recipes (λ = 0.01, d = 1e-3), AdamW's and SGD's the usual ones for small CNNs.
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
};

/// One training run.
#[derive(Clone, Debug)]
pub struct MnistRun {
    /// Optimizer, backend, epochs, batch size, seed, output directory.
    pub settings: RunSettings,
    /// The CNN's sizes.
    pub model: ModelConfig,
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

impl Job for MnistRun {
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

/// Percent of `split` that `model` classifies correctly, on `model`'s device.
pub fn accuracy(model: &Model, split: &MnistSplit, batch_size: usize) -> f64 {
    let device = model.devices()[0].clone();
    let correct: i64 = loader(MnistBatcher, split.clone(), batch_size, None)
        .to_device(&device)
        .iter()
        .map(|batch| {
            let batch = batch.expect("the test data loads");
            let predicted = model.forward(batch.images).argmax(1).squeeze_dim(1);
            predicted
                .equal(batch.targets)
                .int()
                .sum()
                .into_scalar::<i64>()
        })
        .sum();
    100.0 * correct as f64 / split.len().max(1) as f64
}

/// The PNG curves a run writes into its artifact directory.
pub const PLOTS: [&str; 2] = ["loss.png", "accuracy.png"];

/// Writes `loss.png` and `accuracy.png` of `report`'s history into `dir`.
pub fn plot_curves(
    report: &RunReport<MnistOutcome>,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = || report.history.iter().map(|e| e.epoch as f64);
    let title = format!("MNIST, {}", report.optimizer.name);
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
