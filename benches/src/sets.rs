//! The parameter sets an optimizer step is timed on: tensor shapes like a real model's.

use burn::tensor::{Device, Distribution, Tensor};
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
    /// Eight matrices of 4,096 × 4,096: 134,217,728 parameters, where a GPU step is timed against
    /// its memory bandwidth (0.5 GiB per tensor of `w`, `g` or a moment; for a GPU).
    Large,
    /// Four small tensors of ranks 1, 2 and 4, for smoke tests: 2,384 parameters, enough that
    /// the moments outweigh the 256-byte padding of each tensor in an optimizer's record.
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
            Self::Large => vec![vec![4096, 4096]; 8],
            Self::Tiny => vec![vec![64, 32], vec![32], vec![8, 4, 3, 3], vec![16]],
        }
    }

    /// Number of parameters.
    pub fn parameters(self) -> usize {
        self.shapes()
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// The set's tensors of rank `D`, each a weight ~ N(0, 0.02²) with its gradient
    /// ~ N(0, 0.001²), drawn on `device`.
    pub fn draw<const D: usize>(self, device: &Device) -> Vec<(Tensor<D>, Tensor<D>)> {
        let draw = |shape: &Vec<usize>, std| {
            Tensor::random(shape.clone(), Distribution::Normal(0.0, std), device)
        };
        self.shapes()
            .iter()
            .filter(|shape| shape.len() == D)
            .map(|shape| (draw(shape, 0.02), draw(shape, 1e-3)))
            .collect()
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
        assert_eq!(count(ParamSet::Large), (134_217_728, 8));
        assert_eq!(count(ParamSet::Tiny), (2_384, 4));
    }
}
