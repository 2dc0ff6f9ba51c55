//! One optimizer step over a whole parameter set on Flex, side by side in one run: the fused
//! NovoGrad step, NovoGrad's tensor-op step, and Burn 0.22's AdamW and SGD (with momentum), all
//! through the per-tensor `burn::optim::Optimizer` trait, with the STREAM triad bound of this
//! machine. `cargo bench -p burn-novograd` prints a table; the workspace's benches crate writes
//! the full report. Medians of `SAMPLES` steps after `WARM_UP` steps.

use std::hint::black_box;
use std::time::{Duration, Instant};

use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, LearningRate, Optimizer, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use burn_novograd::NovoGradConfig;

const WARM_UP: usize = 3;
const SAMPLES: usize = 15;
const LR: LearningRate = 1e-3;

/// The transformer-like set: vocabulary 8192, d = 512, 4 layers of qkv, projection and two MLP
/// matrices with their biases and two norms, a final norm: 16,804,864 parameters in 51 tensors.
fn transformer_like() -> Vec<usize> {
    let (vocab, d) = (8192, 512);
    let mut sizes = vec![vocab * d];
    for _ in 0..4 {
        for (fan_in, fan_out) in [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)] {
            sizes.extend([fan_in * fan_out, fan_out]);
        }
        sizes.extend([d; 4]);
    }
    sizes.extend([d, d]);
    sizes
}

/// 1,000 tensors of 1,024 elements: where per-tensor overhead shows.
fn many_small() -> Vec<usize> {
    vec![1024; 1000]
}

/// Median time of one step of `optimizer` over tensors of `sizes`, with fixed gradients. Each
/// parameter is handed over, as `ModuleOptimizer` does (`tensor.inner()`), so that an optimizer
/// may update it in place.
fn time_step<O: Optimizer>(optimizer: &O, sizes: &[usize], device: &Device) -> Duration {
    let random = |len: usize| Tensor::<1>::random([len], Distribution::Default, device);
    let grads: Vec<_> = sizes.iter().map(|&len| random(len)).collect();
    let mut params: Vec<(Tensor<1>, Option<O::State<1>>)> =
        sizes.iter().map(|&len| (random(len), None)).collect();
    let mut step = || {
        let start = Instant::now();
        params = (std::mem::take(&mut params).into_iter().zip(&grads))
            .map(|((param, state), grad)| optimizer.step(LR, param, grad.clone(), state))
            .collect();
        device.sync().expect("the device runs");
        start.elapsed()
    };
    (0..WARM_UP).for_each(|_| {
        step();
    });
    let mut times: Vec<Duration> = (0..SAMPLES).map(|_| step()).collect();
    times.sort();
    black_box(&params);
    times[SAMPLES / 2]
}

/// The fastest STREAM triad `a = b + s·c` over `len` f32 on every core: bytes per second that
/// cross the memory bus, counting 16 bytes per element (`b` and `c` read, and `a`'s cache line
/// read before it is written: STREAM's own count of 12 leaves that read out).
fn triad_bytes_per_second(len: usize) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (b, c, mut a) = (vec![1.0f32; len], vec![2.0f32; len], vec![0.0f32; len]);
    let chunk = len.div_ceil(threads);
    let scalar = black_box(3.0f32);
    let best = (0..10)
        .map(|_| {
            let start = Instant::now();
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
            start.elapsed()
        })
        .min()
        .expect("ten runs");
    16.0 * len as f64 / best.as_secs_f64()
}

fn main() {
    let device = Device::flex();
    let novograd = NovoGradConfig::new().with_weight_decay(1e-3);
    println!(
        "fused path on {device:?}: {:?}; {} threads",
        novograd.build().fused_path(&device),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let bandwidth = triad_bytes_per_second(1 << 25);
    println!(
        "memory bandwidth (STREAM triad, 16 bytes per element): {:.1} GB/s",
        bandwidth / 1e9
    );
    for (name, sizes) in [
        ("transformer-like", transformer_like()),
        ("many-small", many_small()),
    ] {
        let parameters: usize = sizes.iter().sum();
        let fused = time_step(&novograd.build(), &sizes, &device);
        let tensor_ops = time_step(&novograd.clone().with_fused(false).build(), &sizes, &device);
        let adamw = time_step(&AdamWConfig::new().build(), &sizes, &device);
        let momentum = Some(MomentumConfig::new());
        let sgd = time_step(
            &SgdConfig::new().with_momentum(momentum).build(),
            &sizes,
            &device,
        );
        // The least memory traffic of a NovoGrad step: read g (the norm), then read w and m and
        // write them back (the update): 5 × 4 bytes per f32 parameter. The update's read of g
        // comes from the cache when the tensor's part fits in it (the L3 here holds every
        // tensor of the set; each thread updates the part it has just summed).
        let bound = Duration::from_secs_f64(20.0 * parameters as f64 / bandwidth);
        let ms = |time: Duration| time.as_secs_f64() * 1e3;
        let per_tensor = |time: Duration| ms(time) * 1e3 / sizes.len() as f64;
        println!(
            "{name}: {parameters} parameters in {} tensors (median of {SAMPLES} steps)",
            sizes.len()
        );
        for (label, time) in [
            ("NovoGrad fused", fused),
            ("NovoGrad tensor ops", tensor_ops),
            ("Burn AdamW", adamw),
            ("Burn SGD momentum", sgd),
        ] {
            println!(
                "  {label:20} {:9.3} ms  {:8.1} µs/tensor  {:5.2}× fused",
                ms(time),
                per_tensor(time),
                ms(time) / ms(fused)
            );
        }
        println!(
            "  fused/AdamW {:.2}, fused/tensor ops {:.2}, fused/SGD {:.2}; bound {:.3} ms (20 bytes per parameter) = {:.0}% of the bandwidth",
            ms(fused) / ms(adamw),
            ms(fused) / ms(tensor_ops),
            ms(fused) / ms(sgd),
            ms(bound),
            100.0 * ms(bound) / ms(fused)
        );
    }
}
