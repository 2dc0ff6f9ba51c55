//! Choosing the Burn backend at run time, among those compiled in.

use std::fmt;

use burn::tensor::backend::AutodiffBackend;
use clap::ValueEnum;
use serde::Serialize;

/// A Burn backend; each is compiled in by the cargo feature of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// burn-ndarray, pure Rust on the CPU (the default; needs nothing installed).
    Ndarray,
    /// burn-flex, Burn 0.21's newer pure-Rust CPU backend.
    Flex,
    /// burn-wgpu with fusion: Vulkan, Metal or DirectX 12 (Mesa's lavapipe on a CPU-only Linux).
    Wgpu,
    /// burn-cuda with fusion: NVIDIA GPUs.
    Cuda,
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

/// Work generic over the autodiff backend, run by [`run_on`].
pub trait Job {
    /// What the job returns.
    type Output;
    /// Runs on backend `B`, training data-parallel over `devices` when there are several.
    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs `job` on `backend` with `devices` devices, or says the backend is not compiled in.
pub fn run_on<J: Job>(backend: BackendName, devices: usize, job: J) -> Result<J::Output, String> {
    let devices = devices.max(1);
    match backend {
        #[cfg(feature = "ndarray")]
        BackendName::Ndarray => {
            use burn::backend::{Autodiff, NdArray, ndarray::NdArrayDevice};
            // One CPU device: several "devices" are data-parallel workers on it.
            Ok(job.run::<Autodiff<NdArray>>(vec![NdArrayDevice::Cpu; devices]))
        }
        #[cfg(feature = "flex")]
        BackendName::Flex => {
            use burn::backend::{Autodiff, Flex};
            Ok(job.run::<Autodiff<Flex>>(vec![Default::default(); devices]))
        }
        #[cfg(feature = "wgpu")]
        BackendName::Wgpu => {
            use burn::backend::{Autodiff, Wgpu, wgpu::WgpuDevice};
            let devices = match devices {
                1 => vec![WgpuDevice::DefaultDevice],
                n => (0..n).map(WgpuDevice::DiscreteGpu).collect(),
            };
            Ok(job.run::<Autodiff<Wgpu>>(devices))
        }
        #[cfg(feature = "cuda")]
        BackendName::Cuda => {
            use burn::backend::{Autodiff, Cuda, cuda::CudaDevice};
            Ok(job.run::<Autodiff<Cuda>>((0..devices).map(CudaDevice::new).collect()))
        }
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "backend {other} is not compiled in: rebuild with `--features {other}`"
        )),
    }
}
