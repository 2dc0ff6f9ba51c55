//! A small CNN for the CPU budget: two 3×3 convolution blocks, each pooled right away, so that
//! only the first convolution runs at full 28×28 resolution.

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d, Relu,
};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use example_kit::mnist::{CLASSES, SIDE};

use crate::Classifier;
use crate::data::MnistBatch;

/// The CNN's sizes.
#[derive(Config, Debug)]
pub struct ModelConfig {
    /// Channels of the first convolution; the second has twice as many.
    #[config(default = 24)]
    pub channels: usize,
    /// Width of the hidden linear layer.
    #[config(default = 256)]
    pub hidden: usize,
    /// Dropout before the last layer.
    #[config(default = 0.25)]
    pub dropout: f64,
    /// Multiplies the scale of Burn's default initialisation (Kaiming-uniform, gain 1/√3) of
    /// the convolution and linear layers, weights and biases.
    #[config(default = 1.0)]
    pub init_scale: f64,
}

/// conv(1→c) + BN + ReLU + pool, conv(c→2c) + BN + ReLU + pool, linear(2c·7·7→h) + ReLU,
/// dropout, linear(h→10).
#[derive(Module, Debug)]
pub struct Model {
    conv_1: Conv2d,
    norm_1: BatchNorm,
    conv_2: Conv2d,
    norm_2: BatchNorm,
    pool: MaxPool2d,
    hidden: Linear,
    dropout: Dropout,
    output: Linear,
    activation: Relu,
}

impl ModelConfig {
    /// The model, initialised on `device`.
    pub fn init(&self, device: &Device) -> Model {
        let initializer = Initializer::KaimingUniform {
            gain: self.init_scale / 3f64.sqrt(),
            fan_out_only: false,
        };
        let conv = |input, output| {
            Conv2dConfig::new([input, output], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_initializer(initializer.clone())
                .init(device)
        };
        let linear = |input, output| {
            LinearConfig::new(input, output)
                .with_initializer(initializer.clone())
                .init(device)
        };
        let pooled = SIDE / 4;
        Model {
            conv_1: conv(1, self.channels),
            norm_1: BatchNormConfig::new(self.channels).init(device),
            conv_2: conv(self.channels, 2 * self.channels),
            norm_2: BatchNormConfig::new(2 * self.channels).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            hidden: linear(2 * self.channels * pooled * pooled, self.hidden),
            dropout: DropoutConfig::new(self.dropout).init(),
            output: linear(self.hidden, CLASSES),
            activation: Relu::new(),
        }
    }
}

impl Model {
    /// Logits `[batch, 10]` of images `[batch, 1, 28, 28]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(
            self.activation
                .forward(self.norm_1.forward(self.conv_1.forward(images))),
        );
        let x = self.pool.forward(
            self.activation
                .forward(self.norm_2.forward(self.conv_2.forward(x))),
        );
        let x = x.flatten(1, 3);
        let x = self
            .dropout
            .forward(self.activation.forward(self.hidden.forward(x)));
        self.output.forward(x)
    }
}

impl TrainStep for Model {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.classify(batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }

    /// NovoGrad's multi-tensor step on WGPU and CUDA: every tensor's step in three kernel
    /// launches ([`burn_novograd::multi_tensor`]); elsewhere, and for the other optimizers, the
    /// same as `optim.step(lr, self, grads)`.
    fn optimize(
        self,
        optim: &mut ModuleOptimizer,
        lr: ModuleLearningRate,
        grads: GradientsParams,
    ) -> Self {
        burn_novograd::multi_tensor(|| optim.step(lr, self, grads))
    }
}

impl InferenceStep for Model {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        self.classify(batch)
    }
}
