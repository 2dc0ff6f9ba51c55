//! Choosing the Burn backend at run time, among those compiled in. Burn 0.22 has no backend
//! type parameter: a backend is a runtime [`Device`], and training runs on its autodiff form.

use std::fmt;

use burn::tensor::Device;
use burn::tensor::distributed::{DistributedConfig, ReduceOperation};
use burn::train::{ExecutionStrategy, MultiDeviceOptim};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// A Burn backend; each is compiled in by the cargo feature of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// Burn's Flex, pure Rust on the CPU (the default; needs nothing installed).
    Flex,
    /// Burn's ndarray, pure Rust on the CPU (deprecated by Burn 0.22, kept while Burn has it).
    Ndarray,
    /// Burn's WGPU with Fusion: Vulkan, Metal or DirectX 12 (Mesa's lavapipe on a CPU-only Linux).
    Wgpu,
    /// Burn's CUDA with Fusion: NVIDIA GPUs.
    Cuda,
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

impl BackendName {
    /// `count` (at least one) autodiff devices of this backend to train on, or why not: the
    /// backend's cargo feature is off. The CPU backends have one device: several entries are
    /// data-parallel workers sharing it.
    pub fn devices(self, count: usize) -> Result<Vec<Device>, String> {
        Ok(self
            .plain_devices(count)?
            .into_iter()
            .map(Device::autodiff)
            .collect())
    }

    /// This backend's first device, without autodiff: where a trained model predicts.
    pub fn device(self) -> Result<Device, String> {
        Ok(self.plain_devices(1)?.remove(0))
    }

    fn plain_devices(self, count: usize) -> Result<Vec<Device>, String> {
        let count = count.max(1);
        let devices: Vec<Device> = match self {
            #[cfg(feature = "flex")]
            BackendName::Flex => vec![Device::flex(); count],
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            BackendName::Ndarray => vec![Device::ndarray(); count],
            #[cfg(feature = "wgpu")]
            BackendName::Wgpu => match count {
                1 => vec![Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)],
                n => (0..n)
                    .map(|index| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(index)))
                    .collect(),
            },
            #[cfg(feature = "cuda")]
            BackendName::Cuda => (0..count).map(Device::cuda).collect(),
            #[allow(unreachable_patterns)]
            other => {
                return Err(format!(
                    "backend {other} is not compiled in: rebuild with `--features {other}`"
                ));
            }
        };
        Ok(devices)
    }

    /// How `devices` train together. One device trains alone. Several train through Burn's
    /// distributed data parallel (DDP: each device steps on the mean of all devices' gradients)
    /// where Burn 0.22.1 has collective operations, which is CUDA only; elsewhere (Flex, ndarray,
    /// wgpu) DDP panics, so they train through Burn's multi-device strategy (the devices' summed
    /// gradients, one optimizer step on the first device).
    pub fn execution_strategy(self, devices: Vec<Device>) -> ExecutionStrategy {
        match (self, devices.as_slice()) {
            (_, [device]) => ExecutionStrategy::single(device.clone()),
            (BackendName::Cuda, _) => ExecutionStrategy::ddp(
                devices,
                DistributedConfig {
                    all_reduce_op: ReduceOperation::Mean,
                },
            ),
            _ => ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice),
        }
    }
}

/// Work run by [`run_on`] on a backend's devices.
pub trait Job {
    /// What the job returns.
    type Output;
    /// Runs on `devices` (autodiff devices), training data-parallel when there are several.
    fn run(self, devices: Vec<Device>) -> Self::Output;
}

/// Runs `job` on `backend` with `devices` devices, or says the backend is not compiled in.
pub fn run_on<J: Job>(backend: BackendName, devices: usize, job: J) -> Result<J::Output, String> {
    Ok(job.run(backend.devices(devices)?))
}
