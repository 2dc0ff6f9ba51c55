//! A small decoder-only transformer on characters: token and learned position embeddings,
//! pre-norm causal self-attention blocks (Burn's `TransformerEncoder` with an autoregressive
//! mask), a final layer norm and a linear head.

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

use crate::data::TokenBatch;

/// The transformer's sizes.
#[derive(Config, Debug)]
pub struct ModelConfig {
    /// Distinct characters.
    pub vocabulary: usize,
    /// Characters of context.
    #[config(default = 64)]
    pub context: usize,
    /// Width of the residual stream.
    #[config(default = 128)]
    pub d_model: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Transformer blocks.
    #[config(default = 3)]
    pub layers: usize,
    /// Dropout inside the blocks.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// The model; see the module docs.
#[derive(Module, Debug)]
pub struct Model {
    tokens: Embedding,
    positions: Embedding,
    blocks: TransformerEncoder,
    norm: LayerNorm,
    head: Linear,
}

impl ModelConfig {
    /// The model, initialised on `device`.
    pub fn init(&self, device: &Device) -> Model {
        Model {
            tokens: EmbeddingConfig::new(self.vocabulary, self.d_model).init(device),
            positions: EmbeddingConfig::new(self.context, self.d_model).init(device),
            blocks: TransformerEncoderConfig::new(
                self.d_model,
                4 * self.d_model,
                self.heads,
                self.layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .init(device),
            norm: LayerNormConfig::new(self.d_model).init(device),
            head: LinearConfig::new(self.d_model, self.vocabulary).init(device),
        }
    }
}

impl Model {
    /// Next-character logits `[batch, length, vocabulary]` of tokens `[batch, length]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, length] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::arange(0..length as i64, &device)
            .reshape([1, length])
            .repeat_dim(0, batch);
        let x = self.tokens.forward(tokens) + self.positions.forward(positions);
        let mask = generate_autoregressive_mask(batch, length, &device);
        let x = self
            .blocks
            .forward(TransformerEncoderInput::new(x).mask_attn(mask));
        self.head.forward(self.norm.forward(x))
    }

    /// Characters of context: the positions the model has embeddings for.
    pub fn context(&self) -> usize {
        self.positions.weight.dims()[0]
    }

    /// Cross-entropy of predicting every next character of a batch.
    pub fn predict(&self, batch: TokenBatch) -> ClassificationOutput {
        let logits = self.forward(batch.inputs);
        let [batch_size, length, vocabulary] = logits.dims();
        let logits = logits.reshape([batch_size * length, vocabulary]);
        let targets = batch.targets.reshape([batch_size * length]);
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), targets.clone());
        ClassificationOutput::new(loss, logits, targets)
    }
}

impl TrainStep for Model {
    type Input = TokenBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: TokenBatch) -> TrainOutput<ClassificationOutput> {
        let output = self.predict(batch);
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
    type Input = TokenBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: TokenBatch) -> ClassificationOutput {
        self.predict(batch)
    }
}
