//! NovoGrad driving Burn's `SupervisedTraining` + `Learner`: loss falls, checkpoints are
//! written, training resumed from a checkpoint ends exactly where an uninterrupted run does, and
//! what data-parallel training can and cannot do on the CPU.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::nn::loss::{MseLoss, Reduction};
use burn::tensor::distributed::{DistributedConfig, ReduceOperation};
use burn::tensor::{Device, Tensor, TensorData};
use burn::train::metric::LossMetric;
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    ExecutionStrategy, InferenceStep, Learner, MultiDeviceOptim, RegressionOutput,
    SupervisedTraining, TrainOutput, TrainStep,
};
use burn_novograd::NovoGradConfig;
use novograd_tests::ndarray;

const FEATURES: usize = 4;
const HIDDEN: usize = 32;
const EPOCHS: usize = 4;
const TRAIN_ITEMS: usize = 512;
const BATCH: usize = 32;

#[derive(Module, Debug)]
struct Net {
    hidden: Linear,
    output: Linear,
    /// Every training step's parameters, shared by all clones.
    #[module(skip)]
    steps: StepLog,
}

/// A training step: the thread that ran it and the parameters it ran with, as [`param_bits`].
type Step = (ThreadId, Vec<u32>);

/// The training steps a model and its clones ran, in order.
#[derive(Clone, Debug, Default)]
struct StepLog(Arc<Mutex<Vec<Step>>>);

impl StepLog {
    fn record(&self, params: Vec<u32>) {
        let thread = std::thread::current().id();
        self.0.lock().unwrap().push((thread, params));
    }

    fn entries(&self) -> Vec<Step> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Clone, Debug)]
struct Batch {
    inputs: Tensor<2>,
    targets: Tensor<2>,
}

#[derive(Clone, Debug)]
struct Item {
    inputs: [f32; FEATURES],
    target: f32,
}

#[derive(Clone, Default)]
struct ItemBatcher;

impl Batcher<Item, Batch> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let inputs: Vec<f32> = items.iter().flat_map(|item| item.inputs).collect();
        let targets: Vec<f32> = items.iter().map(|item| item.target).collect();
        Batch {
            inputs: Tensor::from_data(TensorData::new(inputs, [items.len(), FEATURES]), device),
            targets: Tensor::from_data(TensorData::new(targets, [items.len(), 1]), device),
        }
    }
}

impl Net {
    /// The same weights on every device and in every test: drawn from a fixed sequence, not
    /// from the backend's RNG, whose seed is global and shared with concurrently running tests.
    fn new(device: &Device) -> Self {
        let mut random = Lcg(3);
        Self {
            hidden: linear(FEATURES, HIDDEN, &mut random, device),
            output: linear(HIDDEN, 1, &mut random, device),
            steps: StepLog::default(),
        }
    }

    fn regression(&self, batch: Batch) -> RegressionOutput {
        let output = self
            .output
            .forward(self.hidden.forward(batch.inputs).tanh());
        let loss = MseLoss::new().forward(output.clone(), batch.targets.clone(), Reduction::Mean);
        RegressionOutput::new(loss, output, batch.targets)
    }

    /// The mean squared error on `items`, on the model's device.
    fn loss(&self, items: Vec<Item>) -> f64 {
        let batch = ItemBatcher.batch(items, &self.hidden.weight.device());
        self.regression(batch).loss.into_scalar::<f64>()
    }
}

/// A layer with weights and bias uniform in ±1/√inputs, as `LinearConfig`'s default.
fn linear(inputs: usize, outputs: usize, random: &mut Lcg, device: &Device) -> Linear {
    let bound = 1.0 / (inputs as f32).sqrt();
    let mut draw =
        |len: usize| -> Vec<f32> { (0..len).map(|_| random.uniform() * bound).collect() };
    let weight = TensorData::new(draw(inputs * outputs), [inputs, outputs]);
    let bias = TensorData::new(draw(outputs), [outputs]);
    Linear {
        weight: Param::from_data(weight, device),
        bias: Some(Param::from_data(bias, device)),
    }
}

impl TrainStep for Net {
    type Input = Batch;
    type Output = RegressionOutput;

    fn step(&self, batch: Batch) -> TrainOutput<RegressionOutput> {
        self.steps.record(param_bits(self));
        let output = self.regression(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Net {
    type Input = Batch;
    type Output = RegressionOutput;

    fn step(&self, batch: Batch) -> RegressionOutput {
        self.regression(batch)
    }
}

/// A linear congruential sequence.
struct Lcg(u64);

impl Lcg {
    /// Uniform in [−1, 1).
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A smooth nonlinear target of inputs from a fixed linear congruential sequence.
fn synthetic(count: usize, seed: u64) -> Vec<Item> {
    let mut random = Lcg(seed);
    (0..count)
        .map(|_| {
            let inputs = [(); FEATURES].map(|_| random.uniform());
            let target = 2.0 * inputs[0] - inputs[1] + 1.5 * inputs[2] * inputs[3] + 0.3;
            Item { inputs, target }
        })
        .collect()
}

fn loader(items: Vec<Item>, batch_size: usize) -> Arc<dyn DataLoader<Batch>> {
    DataLoaderBuilder::new(ItemBatcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(items))
}

/// Training for `epochs` (in total) on `items`, `batch_size` at a time, in order, with burnpack
/// checkpoints in `{directory}/checkpoint` and the CLI renderer.
fn supervised(
    directory: &Path,
    items: Vec<Item>,
    batch_size: usize,
    epochs: usize,
) -> SupervisedTraining<Net> {
    SupervisedTraining::new(
        directory,
        loader(items, batch_size),
        loader(synthetic(128, 2), 64),
    )
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new())
    .with_default_checkpointers()
    .renderer(Box::new(CliMetricsRenderer::new()))
    .with_application_logger(None)
    .num_epochs(epochs)
}

/// NovoGrad with weight decay on a cosine schedule over `EPOCHS` epochs of `BATCH`-item steps.
fn learner(model: Net) -> Learner<Net> {
    let steps = EPOCHS * TRAIN_ITEMS / BATCH;
    let scheduler = CosineAnnealingLrSchedulerConfig::new(0.05, steps)
        .init()
        .unwrap();
    let optimizer = NovoGradConfig::new().with_weight_decay(1e-4).init();
    Learner::new(model, optimizer, scheduler)
}

/// Launches `training` of `model` and returns the trained model, in validation mode.
fn launch(training: SupervisedTraining<Net>, model: Net) -> Net {
    let result = training.launch(learner(model));
    assert!(
        result.error.is_none(),
        "training failed: {:?}",
        result.error
    );
    assert!(result.interrupted.is_none(), "{:?}", result.interrupted);
    result.model
}

/// Trains in `directory` for `epochs` epochs in total, resuming after `checkpoint` when given.
fn train(directory: &Path, epochs: usize, checkpoint: Option<usize>) -> Net {
    let training = supervised(directory, synthetic(TRAIN_ITEMS, 1), BATCH, epochs);
    let training = match checkpoint {
        Some(epoch) => training.checkpoint(epoch),
        None => training,
    };
    launch(training, Net::new(&Device::flex().autodiff()))
}

/// Every weight and bias, as f32 bits.
fn param_bits(model: &Net) -> Vec<u32> {
    [&model.hidden, &model.output]
        .into_iter()
        .flat_map(|linear| {
            let bias = linear.bias.as_ref().expect("a bias").val();
            let weight = linear.weight.val().into_data();
            weight
                .iter::<f32>()
                .chain(bias.into_data().iter::<f32>())
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A fresh directory under the system's temporary one, unique to this test and process.
fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("novograd-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&directory).ok();
    directory
}

#[test]
fn learner_trains_checkpoints_and_resumes() {
    let root = scratch("learner");
    let validation = synthetic(128, 2);

    let initial_loss = Net::new(&Device::flex()).loss(validation.clone());
    let uninterrupted = train(&root.join("uninterrupted"), EPOCHS, None);
    let final_loss = uninterrupted.loss(validation);
    println!("validation MSE: {initial_loss:.4} before, {final_loss:.4} after {EPOCHS} epochs");
    assert!(
        final_loss < 0.2 * initial_loss,
        "{initial_loss} -> {final_loss}"
    );

    let checkpoints = root.join("uninterrupted/checkpoint");
    for kind in ["model", "optim", "scheduler"] {
        let file = checkpoints.join(format!("{kind}-{EPOCHS}.bpk"));
        assert!(file.is_file(), "{} was not written", file.display());
    }

    // Stop after 2 epochs, then resume from that checkpoint for the last 2: the model, the
    // NovoGrad state and the schedule all come back, so the result is the same to the bit.
    let interrupted = root.join("interrupted");
    train(&interrupted, 2, None);
    let resumed = train(&interrupted, EPOCHS, Some(2));
    assert_eq!(param_bits(&resumed), param_bits(&uninterrupted));
    std::fs::remove_dir_all(&root).ok();
}

/// Burn 0.22.1's DDP needs collective operations, which only its CubeCL and remote backends
/// have (Flex is `distributed: false`, burn-backend-extension-0.22.1/src/catalog.rs:33): on
/// Flex, `ExecutionStrategy::ddp` panics while starting the communication server, before
/// anything trains (the fallback arm at burn-dispatch-0.22.1/src/ops/distributed.rs:99, reported
/// at :182, `start_communication_server`).
#[test]
fn ddp_is_not_available_on_flex() {
    let directory = scratch("ddp");
    let device = Device::flex().autodiff();
    let devices = vec![device.clone(), device.clone()];
    let config = DistributedConfig {
        all_reduce_op: ReduceOperation::Mean,
    };
    let panic = catch_unwind(AssertUnwindSafe(|| {
        let training = supervised(&directory, synthetic(TRAIN_ITEMS, 1), BATCH, 1)
            .with_training_strategy(ExecutionStrategy::ddp(devices, config).into());
        launch(training, Net::new(&device))
    }))
    .expect_err("DDP trained on Flex");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert_eq!(
        message,
        "Distributed operations are not supported for device Flex(Cpu)"
    );
    let checkpoints = std::fs::read_dir(directory.join("checkpoint")).map_or(0, Iterator::count);
    assert_eq!(checkpoints, 0, "DDP wrote a checkpoint");
    std::fs::remove_dir_all(&directory).ok();
}

/// What does run data-parallel on the CPU: `ExecutionStrategy::multi`, with one worker thread
/// per device. Each worker takes its half of the training set, the two gradients are summed
/// and NovoGrad steps once on the main device. Both workers must see the same parameters at
/// every step, and since NovoGrad normalises each layer's gradient by its norm, the sum (twice
/// the global batch's mean gradient) must take the same steps as one device on that batch.
///
/// There is one Flex device (`Device::flex() == Device::flex()`): "Flex twice" is two threads
/// sharing it. Two distinct CPU devices are two backends: Flex and NdArray, whose worker gets
/// the model and returns its gradients through host copies.
#[test]
fn data_parallel_workers_match_one_device_on_the_global_batch() {
    let flex = Device::flex().autodiff();
    for (name, second) in [
        ("flex-flex", flex.clone()),
        ("flex-ndarray", ndarray().autodiff()),
    ] {
        let difference = data_parallel_difference(name, [flex.clone(), second]);
        println!("{name}: largest parameter difference to one device {difference:.2e}");
        // Not to the bit: the sum of two 32-row gradients rounds differently from one 64-row
        // mean, and ε (1e-8) is added to a norm twice as large.
        assert!(difference <= 1e-6, "{name}: {difference:e}");
    }
}

/// Trains with `ExecutionStrategy::multi` on `devices` and on the first device alone with the
/// same global batches, asserts the workers' replicas were identical at every step, and
/// returns the largest difference between the two trained models' parameters.
fn data_parallel_difference(name: &str, devices: [Device; 2]) -> f32 {
    const DATA_PARALLEL_EPOCHS: usize = 2;
    let root = scratch(name);
    let items = synthetic(TRAIN_ITEMS, 1);

    let model = Net::new(&devices[0]);
    let steps = model.steps.clone();
    let strategy = ExecutionStrategy::multi(devices.to_vec(), MultiDeviceOptim::OptimMainDevice);
    let training = supervised(
        &root.join("multi"),
        items.clone(),
        BATCH,
        DATA_PARALLEL_EPOCHS,
    )
    .with_training_strategy(strategy.into());
    let multi = launch(training, model);

    // Burn splits the set into contiguous halves: step t trains on batch t of each half.
    let (first, second) = items.split_at(TRAIN_ITEMS / 2);
    let global_batches: Vec<Item> = (first.chunks(BATCH).zip(second.chunks(BATCH)))
        .flat_map(|(a, b)| a.iter().chain(b).cloned())
        .collect();
    let training = supervised(
        &root.join("single"),
        global_batches,
        2 * BATCH,
        DATA_PARALLEL_EPOCHS,
    );
    let single = launch(training, Net::new(&devices[0]));
    std::fs::remove_dir_all(&root).ok();

    let entries = steps.entries();
    let expected = DATA_PARALLEL_EPOCHS * TRAIN_ITEMS / BATCH;
    assert_eq!(
        entries.len(),
        expected,
        "{name}: one entry per worker and step"
    );
    for (step, pair) in entries.chunks(2).enumerate() {
        let [(thread_a, params_a), (thread_b, params_b)] = pair else {
            unreachable!("an even number of entries")
        };
        assert_ne!(
            thread_a, thread_b,
            "{name}, step {step}: one worker ran twice"
        );
        assert_eq!(
            params_a, params_b,
            "{name}, step {step}: the replicas differ"
        );
    }

    (param_bits(&multi).into_iter().zip(param_bits(&single)))
        .map(|(a, b)| (f32::from_bits(a) - f32::from_bits(b)).abs())
        .fold(0.0, f32::max)
}
