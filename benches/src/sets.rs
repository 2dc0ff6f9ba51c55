//! The parameter sets an optimizer step is timed on, as Burn modules with fixed gradients.

use burn::module::{Module, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use clap::ValueEnum;
use serde::Serialize;

/// A set of parameter tensors shaped like a real model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamSet {
    /// Vocabulary 8192, d = 512, 4 layers of qkv, projection, two MLP matrices, their biases and
    /// two norms (scale and shift), a final norm, tied embedding: 16,804,864 parameters in 51
    /// tensors.
    TransformerLike,
    /// ResNet-18: 4-D convolution kernels, batch-norm scales and shifts, the classifier:
    /// 11,689,512 parameters in 62 tensors.
    ResnetLike,
    /// 1,000 tensors of 1,024: where per-tensor overhead shows.
    ManySmall,
    /// A few small tensors of every rank, for smoke tests.
    Tiny,
}

impl ParamSet {
    /// The sets of the benchmark report.
    pub const MEASURED: [ParamSet; 3] = [Self::TransformerLike, Self::ResnetLike, Self::ManySmall];

    /// The shape of every tensor.
    pub fn shapes(self) -> Vec<Vec<usize>> {
        match self {
            Self::TransformerLike => {
                let (vocab, d, layers) = (8192, 512, 4);
                let mut shapes = vec![vec![vocab, d]];
                for _ in 0..layers {
                    for (fan_in, fan_out) in [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)] {
                        shapes.extend([vec![fan_in, fan_out], vec![fan_out]]);
                    }
                    shapes.extend(std::iter::repeat_n(vec![d], 4));
                }
                shapes.extend([vec![d], vec![d]]);
                shapes
            }
            Self::ResnetLike => {
                let mut shapes = vec![vec![64, 3, 7, 7]];
                let norm = |shapes: &mut Vec<Vec<usize>>, channels| {
                    shapes.extend([vec![channels], vec![channels]])
                };
                norm(&mut shapes, 64);
                let mut channels_in = 64;
                for channels in [64, 128, 256, 512] {
                    for block in 0..2 {
                        let fan_in = if block == 0 { channels_in } else { channels };
                        shapes.push(vec![channels, fan_in, 3, 3]);
                        norm(&mut shapes, channels);
                        shapes.push(vec![channels, channels, 3, 3]);
                        norm(&mut shapes, channels);
                        if block == 0 && fan_in != channels {
                            shapes.push(vec![channels, fan_in, 1, 1]);
                            norm(&mut shapes, channels);
                        }
                    }
                    channels_in = channels;
                }
                shapes.extend([vec![512, 1000], vec![1000]]);
                shapes
            }
            Self::ManySmall => vec![vec![1024]; 1000],
            Self::Tiny => vec![vec![3, 5], vec![5], vec![2, 3, 3, 3], vec![7]],
        }
    }

    /// Number of parameters.
    pub fn parameters(self) -> usize {
        self.shapes()
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }
}

/// Parameter tensors by rank, as a module an optimizer can step.
#[derive(Module, Debug)]
pub struct Params<B: Backend> {
    /// Biases, norm scales and shifts.
    pub vectors: Vec<Param<Tensor<B, 1>>>,
    /// Embeddings and linear weights.
    pub matrices: Vec<Param<Tensor<B, 2>>>,
    /// Convolution kernels.
    pub kernels: Vec<Param<Tensor<B, 4>>>,
}

/// One gradient per parameter of a [`Params`], kept to be handed to every step.
pub struct Gradients<B: Backend> {
    vectors: Vec<(ParamId, Tensor<B, 1>)>,
    matrices: Vec<(ParamId, Tensor<B, 2>)>,
    kernels: Vec<(ParamId, Tensor<B, 4>)>,
}

impl<B: Backend> Params<B> {
    /// Weights ~ N(0, 0.02²) shaped as `set`, on `device`.
    pub fn init(set: ParamSet, device: &B::Device) -> Self {
        let mut params = Self {
            vectors: Vec::new(),
            matrices: Vec::new(),
            kernels: Vec::new(),
        };
        let weights = Distribution::Normal(0.0, 0.02);
        for shape in set.shapes() {
            match shape[..] {
                [n] => {
                    params
                        .vectors
                        .push(Param::from_tensor(Tensor::random([n], weights, device)))
                }
                [rows, columns] => params.matrices.push(Param::from_tensor(Tensor::random(
                    [rows, columns],
                    weights,
                    device,
                ))),
                [a, b, c, d] => params.kernels.push(Param::from_tensor(Tensor::random(
                    [a, b, c, d],
                    weights,
                    device,
                ))),
                _ => unreachable!("parameter sets hold tensors of rank 1, 2 and 4"),
            }
        }
        params
    }
}

impl<B: AutodiffBackend> Params<B> {
    /// Gradients ~ N(0, 0.001²) for every parameter, on `device`.
    pub fn gradients(&self, device: &B::Device) -> Gradients<B::InnerBackend> {
        fn draw<B: AutodiffBackend, const D: usize>(
            params: &[Param<Tensor<B, D>>],
            device: &B::Device,
        ) -> Vec<(ParamId, Tensor<B::InnerBackend, D>)> {
            let grads = Distribution::Normal(0.0, 1e-3);
            params
                .iter()
                .map(|param| (param.id, Tensor::random(param.shape(), grads, device)))
                .collect()
        }
        Gradients {
            vectors: draw(&self.vectors, device),
            matrices: draw(&self.matrices, device),
            kernels: draw(&self.kernels, device),
        }
    }
}

impl<B: Backend> Gradients<B> {
    /// The gradients as an optimizer takes them (the tensors are shared, not copied).
    pub fn to_params(&self) -> GradientsParams {
        let mut grads = GradientsParams::new();
        for (id, grad) in &self.vectors {
            grads.register::<B, 1>(*id, grad.clone());
        }
        for (id, grad) in &self.matrices {
            grads.register::<B, 2>(*id, grad.clone());
        }
        for (id, grad) in &self.kernels {
            grads.register::<B, 4>(*id, grad.clone());
        }
        grads
    }
}

#[cfg(test)]
mod tests {
    use super::ParamSet;

    #[test]
    fn sets_have_the_documented_sizes() {
        let count = |set: ParamSet| (set.parameters(), set.shapes().len());
        assert_eq!(count(ParamSet::TransformerLike), (16_804_864, 51));
        assert_eq!(count(ParamSet::ResnetLike), (11_689_512, 62));
        assert_eq!(count(ParamSet::ManySmall), (1_024_000, 1000));
    }
}
