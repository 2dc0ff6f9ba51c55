//! Shared helpers of the burn-novograd integration tests: the third-party reference
//! trajectories of `reference/novograd.json` and a replay of them on any device and dtype.

use burn::optim::Optimizer;
use burn::tensor::{DType, Device, Tensor, TensorData};
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

    /// Replays `case` with `optimizer` on `device` in `dtype`: the parameters after every step,
    /// `[step][tensor]`, flattened.
    pub fn replay(&self, case: &Case, optimizer: &NovoGrad, on: On<'_>) -> Vec<Vec<Vec<f64>>> {
        let per_tensor: Vec<Vec<Vec<f64>>> = (0..self.shapes.len())
            .map(|index| {
                let grads = self.grads.iter().map(|step| step[index].as_slice());
                let tensor = Replay::new(&self.shapes[index], &self.initial[index], on);
                tensor.run(optimizer, case.lr, grads)
            })
            .collect();
        (0..self.grads.len())
            .map(|step| per_tensor.iter().map(|steps| steps[step].clone()).collect())
            .collect()
    }
}

/// Where a replay runs: the device and the dtype of the parameter and its gradients.
#[derive(Clone, Copy)]
pub struct On<'a> {
    /// The device of every tensor.
    pub device: &'a Device,
    /// The parameter's dtype.
    pub dtype: DType,
}

impl<'a> On<'a> {
    /// f32 on `device`.
    pub fn f32(device: &'a Device) -> Self {
        Self {
            device,
            dtype: DType::F32,
        }
    }

    /// f64 on `device`.
    pub fn f64(device: &'a Device) -> Self {
        Self {
            device,
            dtype: DType::F64,
        }
    }
}

/// One parameter tensor replayed through a sequence of gradients.
pub struct Replay<'a> {
    shape: Vec<usize>,
    initial: &'a [f64],
    on: On<'a>,
    /// Parameter and gradients as transposed views of a buffer (non-contiguous), rank 2 only.
    transposed: bool,
}

impl<'a> Replay<'a> {
    /// A contiguous tensor of `shape` starting from `initial`.
    pub fn new(shape: &[usize], initial: &'a [f64], on: On<'a>) -> Self {
        Self {
            shape: shape.to_vec(),
            initial,
            on,
            transposed: false,
        }
    }

    /// The same, with the parameter and every gradient made as transposed views (rank 2).
    pub fn transposed(mut self) -> Self {
        assert_eq!(self.shape.len(), 2, "a transposed replay is of rank 2");
        self.transposed = true;
        self
    }

    /// The parameter after every step.
    pub fn run<'g>(
        &self,
        optimizer: &NovoGrad,
        lr: f64,
        grads: impl Iterator<Item = &'g [f64]>,
    ) -> Vec<Vec<f64>> {
        match self.shape.len() {
            1 => self.run_rank::<1>(optimizer, lr, grads),
            2 => self.run_rank::<2>(optimizer, lr, grads),
            3 => self.run_rank::<3>(optimizer, lr, grads),
            4 => self.run_rank::<4>(optimizer, lr, grads),
            rank => panic!("no replay for rank {rank}"),
        }
    }

    fn run_rank<'g, const D: usize>(
        &self,
        optimizer: &NovoGrad,
        lr: f64,
        grads: impl Iterator<Item = &'g [f64]>,
    ) -> Vec<Vec<f64>> {
        let mut param = self.tensor::<D>(self.initial);
        let mut state = None;
        let mut trajectory = Vec::new();
        for (step, grad) in grads.enumerate() {
            let grad = self.tensor::<D>(grad);
            // Every other step the caller still holds the parameter, so that both the in-place
            // update and the one into a new buffer are replayed.
            let held = (step % 2 == 1).then(|| param.clone());
            (param, state) = optimizer.step(lr, param, grad, state.take());
            drop(held);
            trajectory.push(values(&param));
        }
        trajectory
    }

    /// `values` (row-major in `shape`) as a tensor, a transposed view if asked for.
    fn tensor<const D: usize>(&self, values: &[f64]) -> Tensor<D> {
        if !self.transposed {
            return tensor(values, &self.shape, self.on);
        }
        let [rows, columns] = [self.shape[0], self.shape[1]];
        let transposed: Vec<f64> = (0..columns * rows)
            .map(|index| values[(index % rows) * columns + index / rows])
            .collect();
        tensor::<D>(&transposed, &[columns, rows], self.on).transpose()
    }
}

/// burn-ndarray's device: deprecated in Burn 0.22 and gone in 0.23, still tested while Burn has it.
#[allow(deprecated)]
pub fn ndarray() -> Device {
    Device::ndarray()
}

/// A tensor holding `values` in `shape`, on `on.device` in `on.dtype`.
pub fn tensor<const D: usize>(values: &[f64], shape: &[usize], on: On<'_>) -> Tensor<D> {
    let data = TensorData::new(values.to_vec(), shape.to_vec());
    Tensor::from_data(data, (on.device, on.dtype))
}

/// The values of a tensor, as f64.
pub fn values<const D: usize>(tensor: &Tensor<D>) -> Vec<f64> {
    tensor.to_data().iter::<f64>().collect()
}

/// The largest relative error over all steps and tensors: `max|a − b| / max|b|` per tensor
/// (`|a − b|` alone where `b` is all zeros).
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
            match scale {
                0.0 => error,
                _ => error / scale,
            }
        })
        .fold(0.0, f64::max)
}

/// Replays every reference case `on` a device and dtype and asserts each stays within
/// `tolerance` of the reference; returns the largest error seen, by case name.
pub fn assert_parity(on: On<'_>, tolerance: f64) -> Vec<(String, f64)> {
    let reference = Reference::load();
    let errors: Vec<(String, f64)> = reference
        .cases
        .iter()
        .map(|case| {
            let optimizer = NovoGradConfig::from(case.config).build();
            let ours = reference.replay(case, &optimizer, on);
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

/// Replays every reference case on two devices and asserts their trajectories agree within
/// `tolerance` (relative, as [`max_relative_error`]).
pub fn assert_same_trajectories(a: On<'_>, b: On<'_>, tolerance: f64) {
    let reference = Reference::load();
    for case in &reference.cases {
        let optimizer = NovoGradConfig::from(case.config).build();
        let on_a = reference.replay(case, &optimizer, a);
        let on_b = reference.replay(case, &optimizer, b);
        let error = max_relative_error(&on_b, &on_a);
        assert!(
            error <= tolerance,
            "{}: devices differ by {error:e}",
            case.name
        );
    }
}

/// The tensors [`assert_fused_matches_tensor_ops`] replays: its shape, and whether it is made of
/// transposed views. One is above the CPU step's parallel split (2^18 elements), one is
/// non-contiguous, one is empty.
const FUSED_SHAPES: [(&[usize], bool); 6] = [
    (&[70_000], false),
    (&[300_000], false),
    (&[33, 17], false),
    (&[40, 23], true),
    (&[4, 3, 5, 5], false),
    (&[0, 5], false),
];

/// Replays every option of the reference cases for 100 steps on the tensors of
/// [`FUSED_SHAPES`], with gradients of changing scale, some NaN and ±Inf, and one step whose
/// gradient is finite but `‖g‖²` overflows f32, through `NovoGradConfig::fused = true` and
/// `false`; asserts the trajectories agree within `tolerance` (relative, as
/// [`max_relative_error`]) and returns the largest difference.
pub fn assert_fused_matches_tensor_ops(on: On<'_>, tolerance: f64) -> f64 {
    const STEPS: usize = 100;
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut draw = |len: usize, scale: f64| -> Vec<f64> {
        (0..len).map(|_| random.next_signed() * scale).collect()
    };
    let sizes = FUSED_SHAPES.map(|(shape, _)| shape.iter().product::<usize>());
    let initial: Vec<Vec<f64>> = sizes.iter().map(|&len| draw(len, 0.1)).collect();
    let grads: Vec<Vec<Vec<f64>>> = (0..STEPS)
        .map(|step| {
            let scale = 10f64.powi(step as i32 % 7 - 3);
            let mut step_grads: Vec<Vec<f64>> = sizes.iter().map(|&len| draw(len, scale)).collect();
            match step {
                0 => step_grads[4][7] = f64::NAN,
                30 => step_grads[0][12_345] = f64::NAN,
                31 => step_grads[2][3] = f64::INFINITY,
                32 => step_grads[4][0] = f64::NEG_INFINITY,
                33 => step_grads[3][5] = f64::NAN,
                34 => step_grads[1][299_999] = f64::INFINITY,
                // Finite in f32, but ‖g‖² ≈ 3.5e40 > f32::MAX: skipped in f32, applied in f64.
                40 => step_grads[2]
                    .iter_mut()
                    .for_each(|g| *g = g.signum() * 1e20),
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
            (FUSED_SHAPES.iter().enumerate())
                .map(|(index, &(shape, transposed))| {
                    let grads = grads.iter().map(|step| step[index].as_slice());
                    let replay = Replay::new(shape, &initial[index], on);
                    let replay = if transposed {
                        replay.transposed()
                    } else {
                        replay
                    };
                    replay.run(&optimizer, 0.01, grads)
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
