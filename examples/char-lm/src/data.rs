//! Fixed-length windows of a token stream: each predicts its next characters.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;

/// Non-overlapping windows of `context + 1` tokens over a stream.
#[derive(Clone, Debug)]
pub struct Windows {
    tokens: Arc<Vec<u32>>,
    context: usize,
    count: usize,
}

impl Windows {
    /// Every window of `tokens`, at most `limit` of them.
    pub fn new(tokens: Vec<u32>, context: usize, limit: Option<usize>) -> Self {
        let count = tokens.len().saturating_sub(1) / context;
        Self {
            count: limit.map_or(count, |limit| limit.min(count)),
            tokens: Arc::new(tokens),
            context,
        }
    }
}

impl Dataset<Vec<u32>> for Windows {
    /// The window at `index`; panics past the end, as Burn's `Dataset::get` does.
    fn get(&self, index: usize) -> Result<Vec<u32>, DatasetError> {
        assert!(index < self.count, "window {index} of {}", self.count);
        let start = index * self.context;
        Ok(self.tokens[start..start + self.context + 1].to_vec())
    }

    fn len(&self) -> usize {
        self.count
    }
}

/// Inputs `[batch, context]` and their next tokens `[batch, context]`.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// Tokens seen.
    pub inputs: Tensor<2, Int>,
    /// The token that follows each input.
    pub targets: Tensor<2, Int>,
}

/// Turns windows into a [`TokenBatch`].
#[derive(Clone, Debug, Default)]
pub struct TokenBatcher;

impl Batcher<Vec<u32>, TokenBatch> for TokenBatcher {
    fn batch(&self, windows: Vec<Vec<u32>>, device: &Device) -> TokenBatch {
        let length = windows[0].len() - 1;
        let column = |range: std::ops::Range<usize>| {
            let values: Vec<i64> = windows
                .iter()
                .flat_map(|w| w[range.clone()].iter().map(|&t| t as i64))
                .collect();
            Tensor::from_data(TensorData::new(values, [windows.len(), length]), device)
        };
        TokenBatch {
            inputs: column(0..length),
            targets: column(1..length + 1),
        }
    }
}
