//! The study's MNIST model: a multilayer perceptron, 784 → h → h → 10 with ReLU, no
//! normalisation and no dropout. Fully connected layers are matrix products, which Flex runs
//! near the machine's arithmetic rate, so an epoch of 60,000 images costs seconds on 2 cores
//! and every run can train to its plateau; without normalisation layers the initialisation
//! scale reaches the logits (× scale³), which is what the initialisation sweep tests.

use burn::nn::{Initializer, Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use example_kit::mnist::{CLASSES, PIXELS};
use mnist::data::MnistBatch;
use mnist::{Classifier, ClassifierConfig};

/// The perceptron's sizes.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Width of both hidden layers.
    #[config(default = 256)]
    pub hidden: usize,
    /// Multiplies the scale of Burn's default initialisation (Kaiming-uniform, gain 1/√3),
    /// weights and biases of every layer.
    #[config(default = 1.0)]
    pub init_scale: f64,
}

/// linear(784→h) + ReLU, linear(h→h) + ReLU, linear(h→10).
#[derive(Module, Debug)]
pub struct Mlp {
    hidden_1: Linear,
    hidden_2: Linear,
    output: Linear,
    activation: Relu,
}

impl ClassifierConfig for MlpConfig {
    type Model = Mlp;

    fn init(&self, device: &Device) -> Mlp {
        let initializer = Initializer::KaimingUniform {
            gain: self.init_scale / 3f64.sqrt(),
            fan_out_only: false,
        };
        let linear = |input, output| {
            LinearConfig::new(input, output)
                .with_initializer(initializer.clone())
                .init(device)
        };
        Mlp {
            hidden_1: linear(PIXELS, self.hidden),
            hidden_2: linear(self.hidden, self.hidden),
            output: linear(self.hidden, CLASSES),
            activation: Relu::new(),
        }
    }
}

impl Classifier for Mlp {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = images.flatten(1, 3);
        let x = self.activation.forward(self.hidden_1.forward(x));
        let x = self.activation.forward(self.hidden_2.forward(x));
        self.output.forward(x)
    }
}

impl TrainStep for Mlp {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl InferenceStep for Mlp {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}
