//! This machine's memory bandwidth, measured STREAM-style: `a = b + s·c` over arrays far larger
//! than the caches, split over threads. Each element moves 16 bytes across the memory bus: `b`
//! and `c` read, and `a`'s cache line read before it is written (the write-allocate read).
//! STREAM's own count of 12 bytes leaves that read out, and so reports a quarter less than the
//! bus carries.

use std::hint::black_box;
use std::time::Duration;

use crate::timing::{Sampling, Stats, time};

/// Bytes a triad moves per element: read `b`, read `c`, read `a`'s line (write-allocate),
/// write `a`.
pub const TRIAD_BYTES_PER_ELEMENT: f64 = 16.0;

/// Bandwidth of a triad over `len` f32 per array on `threads` threads.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Bandwidth {
    /// Threads the triad ran on.
    pub threads: usize,
    /// Elements per array.
    pub len: usize,
    /// Time per triad.
    pub stats: Stats,
    /// Bytes per second of the fastest triad, counting [`TRIAD_BYTES_PER_ELEMENT`].
    pub best_bytes_per_second: f64,
}

/// Measures the triad; STREAM reports the fastest repetition.
pub fn triad(threads: usize, len: usize, sampling: Sampling) -> Bandwidth {
    let threads = threads.max(1);
    let b = vec![1.0f32; len];
    let c = vec![2.0f32; len];
    let mut a = vec![0.0f32; len];
    let chunk = len.div_ceil(threads);
    let scalar = black_box(3.0f32);
    let stats = sampling.measure(|| -> Duration {
        time(|| {
            std::thread::scope(|scope| {
                for ((a, b), c) in a
                    .chunks_mut(chunk)
                    .zip(b.chunks(chunk))
                    .zip(c.chunks(chunk))
                {
                    scope.spawn(move || {
                        for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                            *a = b + scalar * c;
                        }
                    });
                }
            });
            black_box(&mut a);
        })
    });
    assert_eq!(a[len - 1], 7.0, "the triad ran");
    Bandwidth {
        threads,
        len,
        stats,
        best_bytes_per_second: TRIAD_BYTES_PER_ELEMENT * len as f64 / (stats.min_ms / 1e3),
    }
}
