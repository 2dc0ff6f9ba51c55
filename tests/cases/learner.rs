//! NovoGrad driving Burn's `SupervisedTraining` + `Learner`: loss falls, checkpoints are
//! written, and training resumed from a checkpoint ends exactly where an uninterrupted run does.

use std::path::Path;
use std::sync::Arc;

use burn::backend::{Autodiff, NdArray};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::module::Module;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use burn::train::metric::LossMetric;
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    InferenceStep, Learner, RegressionOutput, SupervisedTraining, TrainOutput, TrainStep,
};
use burn_novograd::NovoGradConfig;

type B = Autodiff<NdArray>;
const FEATURES: usize = 4;
const EPOCHS: usize = 4;

#[derive(Module, Debug)]
struct Net<B: Backend> {
    hidden: Linear<B>,
    output: Linear<B>,
}

#[derive(Clone, Debug)]
struct Batch<B: Backend> {
    inputs: Tensor<B, 2>,
    targets: Tensor<B, 2>,
}

#[derive(Clone, Debug)]
struct Item {
    inputs: [f32; FEATURES],
    target: f32,
}

#[derive(Clone, Default)]
struct ItemBatcher;

impl<B: Backend> Batcher<B, Item, Batch<B>> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &B::Device) -> Batch<B> {
        let inputs: Vec<f32> = items.iter().flat_map(|item| item.inputs).collect();
        let targets: Vec<f32> = items.iter().map(|item| item.target).collect();
        Batch {
            inputs: Tensor::from_data(TensorData::new(inputs, [items.len(), FEATURES]), device),
            targets: Tensor::from_data(TensorData::new(targets, [items.len(), 1]), device),
        }
    }
}

impl<B: Backend> Net<B> {
    fn new(device: &B::Device) -> Self {
        Self {
            hidden: LinearConfig::new(FEATURES, 32).init(device),
            output: LinearConfig::new(32, 1).init(device),
        }
    }

    fn regression(&self, batch: Batch<B>) -> RegressionOutput<B> {
        let output = self
            .output
            .forward(self.hidden.forward(batch.inputs).tanh());
        let loss = MseLoss::new().forward(output.clone(), batch.targets.clone(), Reduction::Mean);
        RegressionOutput::new(loss, output, batch.targets)
    }

    fn loss(&self, items: Vec<Item>, device: &B::Device) -> f64 {
        let batch = ItemBatcher.batch(items, device);
        self.regression(batch).loss.into_scalar().elem()
    }
}

impl<B: AutodiffBackend> TrainStep for Net<B> {
    type Input = Batch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: Batch<B>) -> TrainOutput<RegressionOutput<B>> {
        let output = self.regression(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for Net<B> {
    type Input = Batch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: Batch<B>) -> RegressionOutput<B> {
        self.regression(batch)
    }
}

/// A smooth nonlinear target of inputs from a fixed linear congruential sequence.
fn synthetic(count: usize, seed: u64) -> Vec<Item> {
    let mut state = seed;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    (0..count)
        .map(|_| {
            let inputs = [uniform(), uniform(), uniform(), uniform()];
            let target = 2.0 * inputs[0] - inputs[1] + 1.5 * inputs[2] * inputs[3] + 0.3;
            Item { inputs, target }
        })
        .collect()
}

fn loader<B: Backend>(items: Vec<Item>, batch_size: usize) -> Arc<dyn DataLoader<B, Batch<B>>> {
    DataLoaderBuilder::new(ItemBatcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(items))
}

/// Trains for `EPOCHS` epochs in `directory`, resuming from `checkpoint` when given.
fn train(directory: &Path, epochs: usize, checkpoint: Option<usize>) -> Net<NdArray> {
    let device = Default::default();
    B::seed(&device, 7);
    let steps_per_epoch = 512 / 32;
    let scheduler = CosineAnnealingLrSchedulerConfig::new(0.05, EPOCHS * steps_per_epoch)
        .init()
        .unwrap();
    let mut training = SupervisedTraining::new(
        directory,
        loader::<B>(synthetic(512, 1), 32),
        loader::<NdArray>(synthetic(128, 2), 64),
    )
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new())
    .with_file_checkpointer(NamedMpkFileRecorder::<FullPrecisionSettings>::new())
    .renderer(CliMetricsRenderer::new())
    .with_application_logger(None)
    .num_epochs(epochs);
    if let Some(epoch) = checkpoint {
        training = training.checkpoint(epoch);
    }
    let optimizer = NovoGradConfig::new().with_weight_decay(1e-4).init();
    training
        .launch(Learner::new(Net::new(&device), optimizer, scheduler))
        .model
}

fn param_bits(model: &Net<NdArray>) -> Vec<u32> {
    let record = model.clone().into_record();
    [record.hidden.weight.val(), record.output.weight.val()]
        .into_iter()
        .flat_map(|tensor| {
            tensor
                .into_data()
                .iter::<f32>()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn learner_trains_checkpoints_and_resumes() {
    let root = std::env::temp_dir().join(format!("novograd-learner-{}", std::process::id()));
    std::fs::remove_dir_all(&root).ok();
    let device = Default::default();
    let validation = synthetic(128, 2);

    B::seed(&device, 7);
    let initial_loss = Net::<NdArray>::new(&device).loss(validation.clone(), &device);
    let uninterrupted = train(&root.join("uninterrupted"), EPOCHS, None);
    let final_loss = uninterrupted.loss(validation, &device);
    println!("validation MSE: {initial_loss:.4} before, {final_loss:.4} after {EPOCHS} epochs");
    assert!(
        final_loss < 0.2 * initial_loss,
        "{initial_loss} -> {final_loss}"
    );

    let checkpoints = root.join("uninterrupted/checkpoint");
    for kind in ["model", "optim", "scheduler"] {
        let file = checkpoints.join(format!("{kind}-{EPOCHS}.mpk"));
        assert!(file.is_file(), "{} was not written", file.display());
    }

    // Stop after 2 epochs, then resume from that checkpoint for the last 2.
    let interrupted = root.join("interrupted");
    train(&interrupted, 2, None);
    let resumed = train(&interrupted, EPOCHS, Some(2));
    assert_eq!(param_bits(&resumed), param_bits(&uninterrupted));
    std::fs::remove_dir_all(&root).ok();
}
