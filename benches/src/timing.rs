//! Samples of wall time and their summary.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Median, minimum and maximum of timed samples, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Median.
    pub median_ms: f64,
    /// Fastest sample.
    pub min_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
    /// Number of samples.
    pub samples: usize,
}

impl Stats {
    /// The summary of `samples` (at least one).
    pub fn of(samples: &[Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples to summarise");
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let middle = ms.len() / 2;
        let median_ms = if ms.len() % 2 == 1 {
            ms[middle]
        } else {
            (ms[middle - 1] + ms[middle]) / 2.0
        };
        Self {
            median_ms,
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
            samples: ms.len(),
        }
    }
}

/// How many times a measurement runs untimed, then timed.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sampling {
    /// Untimed runs first: kernel compilation, autotune, allocator warm-up.
    pub warmup: usize,
    /// Timed runs.
    pub samples: usize,
}

impl Sampling {
    /// Runs `run` `warmup` times, then `samples` times, summarising the durations it returns.
    pub fn measure(self, mut run: impl FnMut() -> Duration) -> Stats {
        for _ in 0..self.warmup {
            run();
        }
        let samples: Vec<Duration> = (0..self.samples).map(|_| run()).collect();
        Stats::of(&samples)
    }
}

/// Times `work` alone.
pub fn time(work: impl FnOnce()) -> Duration {
    let start = Instant::now();
    work();
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_the_middle_and_the_extremes() {
        let ms = |v: u64| Duration::from_millis(v);
        let odd = Stats::of(&[ms(5), ms(1), ms(3)]);
        assert_eq!((odd.median_ms, odd.min_ms, odd.max_ms), (3.0, 1.0, 5.0));
        let even = Stats::of(&[ms(4), ms(1), ms(2), ms(10)]);
        assert_eq!((even.median_ms, even.samples), (3.0, 4));
    }
}
