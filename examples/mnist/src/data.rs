//! Batches of MNIST images, normalised with the training set's mean and standard deviation.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use example_kit::mnist::{MnistItem, PIXELS, SIDE};

/// Mean and standard deviation of MNIST training pixels scaled to [0, 1].
const MEAN: f32 = 0.1307;
const STD: f32 = 0.3081;

/// Images `[batch, 1, 28, 28]` and their labels `[batch]`.
#[derive(Clone, Debug)]
pub struct MnistBatch {
    /// Normalised pixels.
    pub images: Tensor<4>,
    /// Digits.
    pub targets: Tensor<1, Int>,
}

/// Turns [`MnistItem`]s into an [`MnistBatch`].
#[derive(Clone, Debug, Default)]
pub struct MnistBatcher;

impl Batcher<MnistItem, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        let pixels: Vec<f32> = items
            .iter()
            .flat_map(|item| item.image.iter().map(|&p| (p as f32 / 255.0 - MEAN) / STD))
            .collect();
        debug_assert_eq!(pixels.len(), items.len() * PIXELS);
        let labels: Vec<i64> = items.iter().map(|item| item.label as i64).collect();
        MnistBatch {
            images: Tensor::from_data(
                TensorData::new(pixels, [items.len(), 1, SIDE, SIDE]),
                device,
            ),
            targets: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
        }
    }
}
