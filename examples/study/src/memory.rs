//! Optimizer state bytes and peak process memory per optimizer, for the MNIST CNN and the
//! character transformer, each measured in a fresh process of its own (`study probe`).

use std::path::Path;
use std::process::Command;

use burn::tensor::Device;
use burn_novograd::MomentDtype;
use clap::ValueEnum;
use example_kit::{BackendName, Job, OptimizerName, run_on};
use novograd_benches::e2e::{Workload, training_step};
use serde::{Deserialize, Serialize};

/// What one probe measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Memory {
    /// The model.
    pub workload: Workload,
    /// The optimizer.
    pub optimizer: OptimizerName,
    /// How NovoGrad stores `m` (`Param` for the other optimizers).
    pub moment_dtype: MomentDtype,
    /// Optimizer state as its burnpack record (what a checkpoint stores).
    pub state_bytes: usize,
    /// The process's peak resident memory (VmHWM), KiB; 0 where /proc is missing.
    pub peak_kib: u64,
}

struct Probe {
    workload: Workload,
    optimizer: OptimizerName,
    moment_dtype: MomentDtype,
    steps: usize,
}

impl Job for Probe {
    type Output = usize;

    fn run(self, devices: Vec<Device>) -> usize {
        let batch = self.workload.default_batch();
        let optimizer = (self.optimizer, self.moment_dtype);
        let mut step = training_step(self.workload, optimizer, batch, &devices[0], 1);
        for _ in 0..self.steps.max(1) {
            step.step();
        }
        step.state_bytes()
    }
}

/// Trains `steps` steps of `workload` with `optimizer` (NovoGrad's `m` stored as
/// `moment_dtype`) in this process and reports its memory.
pub fn probe(
    backend: BackendName,
    workload: Workload,
    (optimizer, moment_dtype): (OptimizerName, MomentDtype),
    steps: usize,
) -> Result<Memory, String> {
    let state_bytes = run_on(
        backend,
        1,
        Probe {
            workload,
            optimizer,
            moment_dtype,
            steps,
        },
    )?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    Ok(Memory {
        workload,
        optimizer,
        moment_dtype,
        state_bytes,
        peak_kib,
    })
}

/// Runs one probe process (`exe probe …`) per model and optimizer, and one more for NovoGrad
/// with its first moment in bf16.
pub fn measure(
    exe: &Path,
    backend: BackendName,
    optimizers: &[OptimizerName],
    steps: usize,
) -> Result<Vec<Memory>, String> {
    let mut measured = Vec::new();
    for workload in Workload::ALL {
        let narrow = [MomentDtype::Bf16, MomentDtype::Int8]
            .into_iter()
            .filter(|_| optimizers.contains(&OptimizerName::Novograd))
            .map(|moment_dtype| (OptimizerName::Novograd, moment_dtype));
        let runs = optimizers
            .iter()
            .map(|&optimizer| (optimizer, MomentDtype::Param));
        for (optimizer, moment_dtype) in runs.chain(narrow) {
            let moment_dtype_arg = match moment_dtype {
                MomentDtype::Param => "param",
                MomentDtype::Bf16 => "bf16",
                MomentDtype::Int8 => "int8",
            };
            let output = Command::new(exe)
                .args(["probe", "--backend", &backend.to_string(), "--steps"])
                .arg(steps.to_string())
                .args([
                    "--workload",
                    workload.to_possible_value().expect("named").get_name(),
                ])
                .args(["--optimizer", &optimizer.to_string()])
                .args(["--moment-dtype", moment_dtype_arg])
                .output()
                .map_err(|error| format!("could not start {}: {error}", exe.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "memory probe {workload:?} {optimizer} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            let line = String::from_utf8_lossy(&output.stdout);
            let memory = serde_json::from_str(line.lines().last().unwrap_or(""))
                .map_err(|error| format!("memory probe printed no result: {error}"))?;
            measured.push(memory);
        }
    }
    Ok(measured)
}
