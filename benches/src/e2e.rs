//! End-to-end training steps (forward, backward, optimizer) of the examples' models, on
//! synthetic batches of the examples' default shapes.

use std::time::Duration;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::train::TrainStep;
use burn_novograd::MomentDtype;
use clap::ValueEnum;
use example_kit::{AnyOptimizer, Defaults, OptimizerName, OptimizerSpec, state_bytes};
use serde::{Deserialize, Serialize};

use crate::timing::time;

/// A model of the examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// The MNIST CNN, batch 128.
    MnistCnn,
    /// The character transformer, batch 32 × 64 characters, 65 symbols.
    CharLm,
}

impl Workload {
    /// Both models.
    pub const ALL: [Workload; 2] = [Self::MnistCnn, Self::CharLm];

    /// The example's default batch size.
    pub fn default_batch(self) -> usize {
        match self {
            Self::MnistCnn => 128,
            Self::CharLm => 32,
        }
    }
}

/// A training step that can be timed; the model and optimizer types stay inside.
pub trait TrainingStep {
    /// One forward, backward and optimizer step, timed up to the device having finished it.
    fn step(&mut self) -> Duration;
    /// Bytes of the optimizer state as its burnpack record (what a checkpoint stores).
    fn state_bytes(&self) -> usize;
}

/// `batch_size` of `workload` trained by `optimizer` (the example's default hyperparameters;
/// NovoGrad with `m` stored as the pair's dtype) on `device`, an autodiff device.
pub fn training_step(
    workload: Workload,
    optimizer: (OptimizerName, MomentDtype),
    batch_size: usize,
    device: &Device,
    seed: u64,
) -> Box<dyn TrainingStep> {
    device.seed(seed);
    match workload {
        Workload::MnistCnn => {
            let model = mnist::model::ModelConfig::new().init(device);
            let labels: Vec<i64> = (0..batch_size as i64).map(|i| i % 10).collect();
            let batch = mnist::data::MnistBatch {
                images: Tensor::random([batch_size, 1, 28, 28], Distribution::Default, device),
                targets: Tensor::from_data(TensorData::new(labels, [batch_size]), device),
            };
            Box::new(Stepper::new(
                model,
                batch,
                optimizer,
                &mnist::DEFAULTS,
                device,
            ))
        }
        Workload::CharLm => {
            let config = char_lm::model::ModelConfig::new(65);
            let context = config.context;
            let model = config.init(device);
            let tokens = |offset: i64| {
                let values: Vec<i64> = (0..(batch_size * context) as i64)
                    .map(|i| (i * 7 + offset) % 65)
                    .collect();
                Tensor::from_data(TensorData::new(values, [batch_size, context]), device)
            };
            let batch = char_lm::data::TokenBatch {
                inputs: tokens(0),
                targets: tokens(7),
            };
            Box::new(Stepper::new(
                model,
                batch,
                optimizer,
                &char_lm::DEFAULTS,
                device,
            ))
        }
    }
}

struct Stepper<M: TrainStep> {
    model: Option<M>,
    batch: M::Input,
    optimizer: AnyOptimizer,
    lr: f64,
    device: Device,
}

impl<M: TrainStep> Stepper<M> {
    fn new(
        model: M,
        batch: M::Input,
        (optimizer, moment_dtype): (OptimizerName, MomentDtype),
        defaults: &Defaults,
        device: &Device,
    ) -> Self {
        let mut spec = OptimizerSpec::new(optimizer, defaults, None, None);
        if let Some(novograd) = &mut spec.novograd {
            novograd.moment_dtype = moment_dtype;
        }
        Self {
            model: Some(model),
            batch,
            optimizer: spec.init(),
            lr: spec.hyper.lr,
            device: device.clone(),
        }
    }
}

impl<M> TrainingStep for Stepper<M>
where
    M: TrainStep + Module + 'static,
    M::Input: Clone,
{
    fn step(&mut self) -> Duration {
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let batch = self.batch.clone();
        let mut stepped = None;
        let elapsed = time(|| {
            let grads = model.step(batch).grads;
            stepped = Some(self.optimizer.step(self.lr, model, grads));
            self.device.sync().expect("the device finishes the step");
        });
        self.model = stepped;
        elapsed
    }

    fn state_bytes(&self) -> usize {
        state_bytes(&self.optimizer)
    }
}
