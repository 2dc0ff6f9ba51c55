//! Everything measured on one backend: optimizer steps on the parameter sets, state bytes, and
//! end-to-end training steps; optimizers are interleaved sample by sample so that a noisy
//! machine slows them alike.

use std::time::Duration;

use burn::tensor::Device;
use burn_novograd::MomentDtype;
use example_kit::{BackendName, Job, OptimizerName};
use serde::Serialize;

use crate::e2e::{TrainingStep, Workload, training_step};
use crate::sets::ParamSet;
use crate::step::{Contender, TimedStep};
use crate::timing::{Sampling, Stats};

/// The optimizers of the end-to-end training steps, in report order.
pub const OPTIMIZERS: [OptimizerName; 3] = [
    OptimizerName::Novograd,
    OptimizerName::Adamw,
    OptimizerName::Sgd,
];

/// What to measure on a backend.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The backend (for the results).
    pub backend: BackendName,
    /// Parameter sets whose optimizer step is timed.
    pub sets: Vec<ParamSet>,
    /// Sampling of the optimizer steps.
    pub step_sampling: Sampling,
    /// Models whose training step is timed, with their batch size.
    pub workloads: Vec<(Workload, usize)>,
    /// Sampling of the training steps.
    pub e2e_sampling: Sampling,
    /// Seed of weights, gradients and batches.
    pub seed: u64,
}

/// One optimizer's step on one parameter set.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    /// The parameter set.
    pub set: ParamSet,
    /// Its parameters.
    pub parameters: usize,
    /// Its tensors.
    pub tensors: usize,
    /// The optimizer.
    pub optimizer: Contender,
    /// Step times.
    pub stats: Stats,
    /// Optimizer state as `ModuleOptimizer` records it (burnpack).
    pub state_bytes: usize,
}

/// One optimizer's training step of one model.
#[derive(Clone, Debug, Serialize)]
pub struct E2eResult {
    /// The model.
    pub workload: Workload,
    /// Its batch size.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerName,
    /// Training step times.
    pub stats: Stats,
}

/// Everything measured on one backend.
#[derive(Clone, Debug, Serialize)]
pub struct BackendResults {
    /// The backend.
    pub backend: BackendName,
    /// The device, as Burn prints it.
    pub device: String,
    /// The fused NovoGrad step the device takes (`NovoGrad::fused_path`), or `None` for the
    /// tensor-op step.
    pub fused_path: Option<String>,
    /// Optimizer steps.
    pub steps: Vec<StepResult>,
    /// Training steps.
    pub e2e: Vec<E2eResult>,
}

/// The NovoGrad step of a device in words: `fused (PATH)` or `tensor ops`.
pub fn novograd_step(fused_path: Option<&str>) -> String {
    fused_path.map_or("tensor ops".into(), |path| format!("fused ({path})"))
}

/// Warms every runner up, then takes samples round-robin: sample i of every runner before
/// sample i + 1 of any.
fn interleaved<R>(
    runners: &mut [R],
    sampling: Sampling,
    step: impl Fn(&mut R) -> Duration,
) -> Vec<Stats> {
    for runner in runners.iter_mut() {
        for _ in 0..sampling.warmup {
            step(runner);
        }
    }
    let mut samples = vec![Vec::with_capacity(sampling.samples); runners.len()];
    for _ in 0..sampling.samples {
        for (runner, samples) in runners.iter_mut().zip(&mut samples) {
            samples.push(step(runner));
        }
    }
    samples.iter().map(|samples| Stats::of(samples)).collect()
}

impl Job for Suite {
    type Output = BackendResults;

    fn run(self, devices: Vec<Device>) -> BackendResults {
        let device = &devices[0];
        // `ModuleOptimizer` steps parameters and gradients without autodiff.
        let plain = device.clone().inner();
        let fused_path = Contender::novograd().build().fused_path(&plain);
        println!(
            "{}: NovoGrad step: {}",
            self.backend,
            novograd_step(fused_path)
        );
        let mut steps = Vec::new();
        for &set in &self.sets {
            eprintln!("{}: optimizer steps on {set:?}", self.backend);
            let contenders: Vec<Contender> = (Contender::ALL.into_iter())
                .filter(|optimizer| optimizer.runs_on(&plain))
                .collect();
            let mut benches: Vec<Box<dyn TimedStep>> = (contenders.iter())
                .map(|&optimizer| optimizer.bench(set, &plain, self.seed))
                .collect();
            let stats = interleaved(&mut benches, self.step_sampling, |bench| bench.step());
            for ((bench, stats), optimizer) in benches.into_iter().zip(stats).zip(contenders) {
                steps.push(StepResult {
                    set,
                    parameters: set.parameters(),
                    tensors: set.shapes().len(),
                    optimizer,
                    stats,
                    state_bytes: bench.state_bytes(),
                });
            }
        }
        let mut e2e = Vec::new();
        for &(workload, batch_size) in &self.workloads {
            eprintln!("{}: training steps of {workload:?}", self.backend);
            let mut runners: Vec<Box<dyn TrainingStep>> = OPTIMIZERS
                .iter()
                .map(|&optimizer| {
                    let optimizer = (optimizer, MomentDtype::Param);
                    training_step(workload, optimizer, batch_size, device, self.seed)
                })
                .collect();
            let stats = interleaved(&mut runners, self.e2e_sampling, |runner| runner.step());
            e2e.extend(
                stats
                    .into_iter()
                    .zip(OPTIMIZERS)
                    .map(|(stats, optimizer)| E2eResult {
                        workload,
                        batch_size,
                        optimizer,
                        stats,
                    }),
            );
        }
        BackendResults {
            backend: self.backend,
            device: format!("{plain:?}"),
            fused_path: fused_path.map(String::from),
            steps,
            e2e,
        }
    }
}
