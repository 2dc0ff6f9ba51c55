//! A small decoder-only transformer on characters, trained through Burn's
//! `SupervisedTraining` + `Learner` with NovoGrad, AdamW or SGD on any backend.
//! The binary is `cargo run --release -p char-lm`.

pub mod data;
pub mod model;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::train::SupervisedTraining;
use burn::train::metric::LossMetric;
use example_kit::text::CharCorpus;
use example_kit::{Defaults, Hyper, Job, RunReport, RunSettings, Series, loader, plot, train};
use serde::Serialize;

use crate::data::{TokenBatcher, Windows};
use crate::model::{Model, ModelConfig};

/// Learning rate and weight decay of each optimizer for this task: AdamW's from nanoGPT's
/// character-level Shakespeare recipe (1e-3, 0.1), NovoGrad's from the paper's Transformer
/// recipe scaled to this model (0.01, 1e-3), SGD's a usual momentum recipe.
pub const DEFAULTS: Defaults = Defaults {
    novograd: Hyper {
        lr: 0.01,
        weight_decay: 1e-3,
    },
    adamw: Hyper {
        lr: 1e-3,
        weight_decay: 0.1,
    },
    sgd: Hyper {
        lr: 0.1,
        weight_decay: 0.0,
    },
};

/// One training run.
#[derive(Clone, Debug)]
pub struct LmRun {
    /// Optimizer, backend, epochs, batch size (windows), seed, output directory.
    pub settings: RunSettings,
    /// Train on at most this many windows per epoch.
    pub window_limit: Option<usize>,
    /// The transformer's sizes.
    pub model: ModelConfig,
    /// The text.
    pub corpus: CharCorpus,
    /// Tokens to continue after training, and how many characters to generate.
    pub prompt: Option<(Vec<u32>, usize)>,
}

/// Final figures of a run.
#[derive(Clone, Debug, Serialize)]
pub struct LmOutcome {
    /// Mean cross-entropy per validation character, in nats.
    pub valid_loss: f64,
    /// The same in bits per character.
    pub valid_bits_per_char: f64,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Text generated from the prompt, if one was given.
    pub sample: Option<String>,
}

impl Job for LmRun {
    type Output = RunReport<LmOutcome>;

    fn run(self, devices: Vec<Device>) -> Self::Output {
        let (batch_size, seed) = (self.settings.batch_size, self.settings.seed);
        devices[0].seed(seed);
        let context = self.model.context;
        let model = self.model.init(&devices[0]);
        let train_windows = Windows::new(self.corpus.train.clone(), context, self.window_limit);
        let valid_windows = Windows::new(self.corpus.valid.clone(), context, None);
        let train_loader = loader(TokenBatcher, train_windows, batch_size, Some(seed));
        let valid_loader = loader(TokenBatcher, valid_windows.clone(), batch_size, None);
        let metrics = |training: SupervisedTraining<_>| {
            training
                .metric_train_numeric(LossMetric::new())
                .metric_valid_numeric(LossMetric::new())
        };
        train(
            &self.settings,
            model,
            train_loader,
            valid_loader,
            devices,
            metrics,
            |model, steps| {
                let valid_loss = mean_loss(model, valid_windows, batch_size);
                let sample = self.prompt.as_ref().map(|(prompt, length)| {
                    self.corpus
                        .decode(&generate(model, prompt, *length, context, seed))
                });
                LmOutcome {
                    valid_loss,
                    valid_bits_per_char: valid_loss / std::f64::consts::LN_2,
                    steps,
                    sample,
                }
            },
        )
    }
}

/// Mean cross-entropy per character (nats) of `model` over `windows`, on `model`'s device.
pub fn mean_loss(model: &Model, windows: Windows, batch_size: usize) -> f64 {
    let device = model.devices()[0].clone();
    let (mut total, mut count) = (0.0, 0usize);
    let batches = loader(TokenBatcher, windows, batch_size, None).to_device(&device);
    for batch in batches.iter() {
        let batch = batch.expect("the validation data loads");
        let characters = batch.targets.dims().iter().product::<usize>();
        let loss: f64 = model.predict(batch).loss.into_scalar::<f64>();
        total += loss * characters as f64;
        count += characters;
    }
    total / count.max(1) as f64
}

/// `prompt` followed by `length` characters sampled from `model` (on its device) at
/// temperature 0.8.
pub fn generate(
    model: &Model,
    prompt: &[u32],
    length: usize,
    context: usize,
    seed: u64,
) -> Vec<u32> {
    let device = &model.devices()[0];
    let mut tokens = prompt.to_vec();
    let mut state = seed | 1;
    for _ in 0..length {
        let window = &tokens[tokens.len().saturating_sub(context)..];
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(
                window.iter().map(|&t| t as i64).collect(),
                [1, window.len()],
            ),
            device,
        );
        let logits = model.forward(input);
        let [_, positions, vocabulary] = logits.dims();
        let last = logits
            .slice([0..1, positions - 1..positions, 0..vocabulary])
            .reshape([vocabulary]);
        let probabilities: Vec<f32> = softmax(last.div_scalar(0.8), 0)
            .into_data()
            .iter::<f32>()
            .collect();
        // xorshift64: a uniform draw in [0, 1).
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut draw = (state >> 11) as f32 / (1u64 << 53) as f32;
        let next = probabilities
            .iter()
            .position(|&p| {
                draw -= p;
                draw < 0.0
            })
            .unwrap_or(vocabulary - 1);
        tokens.push(next as u32);
    }
    tokens
}

/// The PNG curves a run writes into its artifact directory.
pub const PLOTS: [&str; 1] = ["loss.png"];

/// Writes `loss.png` of `report`'s history into `dir`.
pub fn plot_curves(
    report: &RunReport<LmOutcome>,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = || report.history.iter().map(|e| e.epoch as f64);
    plot(
        &dir.join("loss.png"),
        &format!("char-LM, {}: loss", report.optimizer.name),
        ("epoch", "cross-entropy (nats/char)"),
        &[
            Series::new(
                "train",
                epochs().zip(report.history.iter().map(|e| e.train_loss)),
            ),
            Series::new(
                "validation",
                epochs().zip(report.history.iter().map(|e| e.valid_loss)),
            ),
        ],
        false,
    )
}
