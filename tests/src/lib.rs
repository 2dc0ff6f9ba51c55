//! Shared helpers of the burn-novograd integration tests: the third-party reference
//! trajectories of `reference/novograd.json` and a backend-generic replay of them.

use burn::optim::SimpleOptimizer;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_novograd::{NovoGrad, NovoGradConfig, WeightDecayMode};
use serde::Deserialize;

/// `reference/novograd.json`, written by `reference/generate.py`.
#[derive(Deserialize)]
pub struct Reference {
    /// Package versions of the implementations that produced the file.
    pub versions: serde_json::Map<String, serde_json::Value>,
    /// Shape of each parameter tensor.
    pub shapes: Vec<Vec<usize>>,
    /// Initial values of each tensor, flattened row-major.
    pub initial: Vec<Vec<f64>>,
    /// `grads[step][tensor]`, flattened.
    pub grads: Vec<Vec<Vec<f64>>>,
    /// One trajectory per configuration.
    pub cases: Vec<Case>,
}

/// One configuration and the parameters it reaches after every step.
#[derive(Deserialize)]
pub struct Case {
    /// Name of the case.
    pub name: String,
    /// Constant learning rate.
    pub lr: f64,
    /// The configuration, in `NovoGradConfig`'s field names.
    pub config: CaseConfig,
    /// The implementations that agreed on this trajectory; the first one was written.
    pub references: Vec<String>,
    /// `params[step][tensor]`, flattened: the values after each step.
    pub params: Vec<Vec<Vec<f64>>>,
}

/// A configuration as the generator writes it.
#[derive(Deserialize, Clone, Copy)]
pub struct CaseConfig {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    epsilon_root: f32,
    weight_decay: f32,
    weight_decay_mode: WeightDecayMode,
    grad_averaging: bool,
    amsgrad: bool,
    bias_correction: bool,
}

impl From<CaseConfig> for NovoGradConfig {
    fn from(case: CaseConfig) -> Self {
        NovoGradConfig::new()
            .with_beta_1(case.beta_1)
            .with_beta_2(case.beta_2)
            .with_epsilon(case.epsilon)
            .with_epsilon_root(case.epsilon_root)
            .with_weight_decay(case.weight_decay)
            .with_weight_decay_mode(case.weight_decay_mode)
            .with_grad_averaging(case.grad_averaging)
            .with_amsgrad(case.amsgrad)
            .with_bias_correction(case.bias_correction)
    }
}

impl Reference {
    /// Reads the reference trajectories shipped with the tests.
    pub fn load() -> Self {
        let json = include_str!("../reference/novograd.json");
        serde_json::from_str(json).expect("tests/reference/novograd.json is valid")
    }

    /// Replays `case` with `optimizer` on backend `B`: the parameters after every step,
    /// `[step][tensor]`, flattened.
    pub fn replay<B: Backend>(
        &self,
        case: &Case,
        optimizer: &NovoGrad,
        device: &B::Device,
    ) -> Vec<Vec<Vec<f64>>> {
        let per_tensor: Vec<Vec<Vec<f64>>> = (0..self.shapes.len())
            .map(|index| {
                let shape = &self.shapes[index];
                let grads = self.grads.iter().map(|step| step[index].as_slice());
                let initial = &self.initial[index];
                match shape.len() {
                    1 => replay_tensor::<B, 1>(optimizer, case.lr, initial, grads, shape, device),
                    2 => replay_tensor::<B, 2>(optimizer, case.lr, initial, grads, shape, device),
                    3 => replay_tensor::<B, 3>(optimizer, case.lr, initial, grads, shape, device),
                    rank => panic!("no replay for rank {rank}"),
                }
            })
            .collect();
        (0..self.grads.len())
            .map(|step| per_tensor.iter().map(|steps| steps[step].clone()).collect())
            .collect()
    }
}

/// Replays one tensor from `initial` through `grads`: the parameter after every step.
pub fn replay_tensor<'a, B: Backend, const D: usize>(
    optimizer: &NovoGrad,
    lr: f64,
    initial: &[f64],
    grads: impl Iterator<Item = &'a [f64]>,
    shape: &[usize],
    device: &B::Device,
) -> Vec<Vec<f64>> {
    let mut param = tensor::<B, D>(initial, shape, device);
    let mut state = None;
    let mut trajectory = Vec::new();
    for (step, grad) in grads.enumerate() {
        let grad = tensor::<B, D>(grad, shape, device);
        // Every other step the caller still holds the parameter, so that both the in-place
        // update and the one into a new buffer are replayed.
        let held = (step % 2 == 1).then(|| param.clone());
        (param, state) = optimizer.step(lr, param, grad, state.take());
        drop(held);
        trajectory.push(values(&param));
    }
    trajectory
}

/// A tensor of backend `B` holding `values` in `shape`.
pub fn tensor<B: Backend, const D: usize>(
    values: &[f64],
    shape: &[usize],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape.to_vec()), device)
}

/// The values of a tensor, as f64.
pub fn values<B: Backend, const D: usize>(tensor: &Tensor<B, D>) -> Vec<f64> {
    tensor.to_data().iter::<f64>().collect()
}

/// The largest relative error over all steps and tensors: `max|a − b| / max|b|` per tensor.
pub fn max_relative_error(ours: &[Vec<Vec<f64>>], reference: &[Vec<Vec<f64>>]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "number of steps");
    ours.iter()
        .zip(reference)
        .flat_map(|(ours, reference)| ours.iter().zip(reference))
        .map(|(a, b)| {
            assert_eq!(a.len(), b.len(), "tensor size");
            let scale = b.iter().fold(0.0f64, |max, x| max.max(x.abs()));
            let error = a
                .iter()
                .zip(b)
                .fold(0.0f64, |max, (x, y)| max.max((x - y).abs()));
            error / scale
        })
        .fold(0.0, f64::max)
}

/// Replays every reference case on backend `B` and asserts each stays within `tolerance` of the
/// reference; returns the largest error seen, by case name.
pub fn assert_parity<B: Backend>(device: &B::Device, tolerance: f64) -> Vec<(String, f64)> {
    let reference = Reference::load();
    let errors: Vec<(String, f64)> = reference
        .cases
        .iter()
        .map(|case| {
            let optimizer = NovoGradConfig::from(case.config).build();
            let ours = reference.replay::<B>(case, &optimizer, device);
            (case.name.clone(), max_relative_error(&ours, &case.params))
        })
        .collect();
    for (name, error) in &errors {
        println!("{name:28} max relative error {error:.2e}");
    }
    let failures: Vec<_> = errors
        .iter()
        .filter(|(_, error)| error.is_nan() || *error > tolerance)
        .collect();
    assert!(
        failures.is_empty(),
        "cases beyond {tolerance:e}: {failures:?}"
    );
    errors
}

/// Replays every reference case on backends `A` and `B` and asserts their trajectories agree
/// within `tolerance` (relative, as [`max_relative_error`]).
pub fn assert_same_trajectories<A: Backend, B: Backend>(
    device_a: &A::Device,
    device_b: &B::Device,
    tolerance: f64,
) {
    let reference = Reference::load();
    for case in &reference.cases {
        let optimizer = NovoGradConfig::from(case.config).build();
        let a = reference.replay::<A>(case, &optimizer, device_a);
        let b = reference.replay::<B>(case, &optimizer, device_b);
        let error = max_relative_error(&b, &a);
        assert!(
            error <= tolerance,
            "{}: backends differ by {error:e}",
            case.name
        );
    }
}

/// Replays every option of the reference cases for 100 steps on tensors of rank 1, 2 and 4
/// (one larger than a parallel chunk), with gradients of changing scale and some NaN and ±Inf,
/// through `NovoGradConfig::fused = true` and `false`; asserts the trajectories agree within
/// `tolerance` (relative, as [`max_relative_error`]) and returns the largest difference.
pub fn assert_fused_matches_tensor_ops<B: Backend>(device: &B::Device, tolerance: f64) -> f64 {
    const STEPS: usize = 100;
    let shapes: [&[usize]; 3] = [&[70_000], &[33, 17], &[4, 3, 5, 5]];
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut draw = |len: usize, scale: f64| -> Vec<f64> {
        (0..len).map(|_| random.next_signed() * scale).collect()
    };
    let initial: Vec<Vec<f64>> = shapes
        .iter()
        .map(|s| draw(s.iter().product(), 0.1))
        .collect();
    let grads: Vec<Vec<Vec<f64>>> = (0..STEPS)
        .map(|step| {
            let scale = 10f64.powi(step as i32 % 7 - 3);
            let mut step_grads: Vec<Vec<f64>> = shapes
                .iter()
                .map(|s| draw(s.iter().product(), scale))
                .collect();
            match step {
                0 => step_grads[2][7] = f64::NAN,
                30 => step_grads[0][12_345] = f64::NAN,
                31 => step_grads[1][3] = f64::INFINITY,
                32 => step_grads[2][0] = f64::NEG_INFINITY,
                _ => {}
            }
            step_grads
        })
        .collect();
    let reference = Reference::load();
    let mut worst = 0.0f64;
    for case in &reference.cases {
        let trajectories = [true, false].map(|fused| {
            let optimizer = NovoGradConfig::from(case.config).with_fused(fused).build();
            shapes
                .iter()
                .enumerate()
                .map(|(index, shape)| {
                    let grads = grads.iter().map(|step| step[index].as_slice());
                    let initial = &initial[index];
                    match shape.len() {
                        1 => replay_tensor::<B, 1>(&optimizer, 0.01, initial, grads, shape, device),
                        2 => replay_tensor::<B, 2>(&optimizer, 0.01, initial, grads, shape, device),
                        _ => replay_tensor::<B, 4>(&optimizer, 0.01, initial, grads, shape, device),
                    }
                })
                .collect::<Vec<_>>()
        });
        let [fused, tensor_ops] = trajectories;
        for (index, (fused, tensor_ops)) in fused.iter().zip(&tensor_ops).enumerate() {
            let steps = |t: &Vec<Vec<f64>>| t.iter().map(|w| vec![w.clone()]).collect::<Vec<_>>();
            let error = max_relative_error(&steps(fused), &steps(tensor_ops));
            assert!(
                error <= tolerance,
                "{} tensor {index}: fused differs from tensor ops by {error:e}",
                case.name
            );
            worst = worst.max(error);
        }
    }
    println!("fused vs tensor-op step: largest relative difference {worst:.2e}");
    worst
}

/// A small deterministic generator, so that both paths see the same numbers.
struct Xorshift(u64);

impl Xorshift {
    /// Uniform in [−1, 1).
    fn next_signed(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Kernel launches on CubeCL devices (WGPU, CUDA), counted from CubeCL's execution log.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod launches {
    use std::path::PathBuf;
    use std::time::Duration;

    use burn::optim::SimpleOptimizer;
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tensor};
    use burn_novograd::NovoGradConfig;
    use cubecl::config::profiling::ProfilingLogLevel;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    /// CubeCL's log of every kernel it launches, in a file of this process.
    pub struct LaunchLog {
        path: PathBuf,
    }

    impl LaunchLog {
        /// Turns the log on. Call it before the process uses any CubeCL device; once per process.
        pub fn start() -> Self {
            let path =
                std::env::temp_dir().join(format!("cubecl-launches-{}.log", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let mut config = CubeClRuntimeConfig::default();
            config.profiling.logger.level = ProfilingLogLevel::Minimal;
            config.profiling.logger.file = Some(path.clone());
            CubeClRuntimeConfig::set(config);
            Self { path }
        }

        /// The launches logged so far, once the log has stopped growing (CubeCL writes it from
        /// a thread of its own).
        pub fn count(&self) -> usize {
            let lines = || std::fs::read_to_string(&self.path).map_or(0, |log| log.lines().count());
            let mut count = lines();
            loop {
                std::thread::sleep(Duration::from_millis(300));
                match lines() {
                    now if now == count => return count,
                    now => count = now,
                }
            }
        }
    }

    /// Kernel launches per tensor of one NovoGrad step of `tensors` parameter tensors of
    /// `elements` each (after warm-up steps), by the fused step or the tensor-op step.
    pub fn per_tensor<B: Backend>(
        log: &LaunchLog,
        device: &B::Device,
        fused: bool,
        tensors: usize,
        elements: usize,
    ) -> f64 {
        let optimizer = NovoGradConfig::new()
            .with_weight_decay(0.001)
            .with_fused(fused)
            .build();
        let random = || Tensor::<B, 1>::random([elements], Distribution::Default, device);
        let mut params: Vec<_> = (0..tensors).map(|_| (random(), None)).collect();
        let mut step = |grads: Vec<Tensor<B, 1>>| {
            params = std::mem::take(&mut params)
                .into_iter()
                .zip(grads)
                .map(|((param, state), grad)| {
                    let (param, state) = optimizer.step(0.01, param, grad, state);
                    (param, state)
                })
                .collect();
            B::sync(device).expect("the device runs");
        };
        let grads = || {
            let grads: Vec<_> = (0..tensors).map(|_| random()).collect();
            B::sync(device).expect("the device runs");
            grads
        };
        for _ in 0..2 {
            step(grads());
        }
        let grads = grads();
        let before = log.count();
        step(grads);
        (log.count() - before) as f64 / tensors as f64
    }
}
