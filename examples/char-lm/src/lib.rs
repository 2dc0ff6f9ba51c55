//! A small decoder-only transformer on characters, trained through Burn's
//! `SupervisedTraining` + `Learner` with NovoGrad, AdamW, SGD, LAMB or Lion on any backend.
//! The binary is `cargo run --release -p char-lm`.

pub mod data;
pub mod model;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::train::SupervisedTraining;
use burn::train::metric::{LearningRateMetric, LossMetric};
use example_kit::text::CharCorpus;
use example_kit::{
    Defaults, Hyper, Job, RunConfig, RunReport, RunSettings, Series, load_weights, loader, plot,
    plot_step_losses, train,
};
use serde::{Deserialize, Serialize};

use crate::data::{TokenBatcher, Windows};
use crate::model::{Model, ModelConfig};

/// Epochs of a run without `--epochs`.
pub const EPOCHS: usize = 3;

/// Learning rate and weight decay of each optimizer for this task: AdamW's from nanoGPT's
/// character-level Shakespeare recipe (1e-3, 0.1), NovoGrad's from the paper's Transformer
/// recipe scaled to this model (0.01, 1e-3), SGD's a usual momentum recipe, LAMB's 1% of each
/// layer's norm per step with AdamW's decay, Lion's AdamW's rate / 3 and decay × 3 (the Lion
/// paper's advice).
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
    lamb: Hyper {
        lr: 0.01,
        weight_decay: 0.1,
    },
    lion: Hyper {
        lr: 3e-4,
        weight_decay: 0.3,
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
                .metric_train_numeric(LearningRateMetric::new())
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
                        .decode(&generate(model, prompt, *length, SAMPLE_TEMPERATURE, seed))
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

/// The temperature of the sample a training run prints.
pub const SAMPLE_TEMPERATURE: f32 = 0.8;

/// Where a run's text came from, how much of it trained, and its characters (the `data` of its
/// `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmData {
    /// The text file (`None`: tiny-shakespeare, downloaded into the cache).
    pub text: Option<PathBuf>,
    /// Trained on at most this many windows per epoch.
    pub window_limit: Option<usize>,
    /// The text's distinct characters, sorted: token `i` is the `i`-th.
    pub vocabulary: String,
}

/// A run's `config.json`.
pub type LmConfig = RunConfig<ModelConfig, LmData>;

/// The trained model of the run in the artifact directory `dir`, on `device`, and the run's
/// configuration, or why there is none.
pub fn load_trained(dir: &Path, device: &Device) -> Result<(Model, LmConfig), String> {
    let config = LmConfig::load(dir, "char-lm")?;
    let model = load_weights(config.model.init(device), dir)?;
    Ok((model, config))
}

/// `prompt` followed by `length` tokens sampled from `model` (on its device) at `temperature`
/// (> 0; lower is more conservative), drawn with `seed`.
pub fn generate(
    model: &Model,
    prompt: &[u32],
    length: usize,
    temperature: f32,
    seed: u64,
) -> Vec<u32> {
    let device = &model.devices()[0];
    let context = model.context();
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
        let probabilities: Vec<f32> = softmax(last.div_scalar(temperature), 0)
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

/// The per-epoch PNG curve a run writes into its artifact directory (beside the kit's
/// per-step loss curve).
pub const PLOTS: [&str; 1] = ["loss.png"];

/// Writes `loss.png` of `report`'s history, and the training loss per step (`loss-steps.png`,
/// from the Learner's logs), into `dir`.
pub fn plot_curves(
    report: &RunReport<LmOutcome>,
    dir: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let epochs = || report.history.iter().map(|e| e.epoch as f64);
    plot_step_losses(
        dir,
        &format!("char-LM, {}: training loss per step", report.optimizer.name),
        report.epochs,
    )?;
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
