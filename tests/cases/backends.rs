//! The reference trajectories replayed on every backend and dtype, and the fused steps checked
//! against the tensor-op step.

use burn::tensor::Device;
use burn_novograd::NovoGradConfig;
use novograd_tests::{
    On, Reference, assert_fused_matches_tensor_ops, assert_parity, assert_same_trajectories,
    ndarray,
};

#[test]
fn reference_vectors_come_from_third_party_implementations() {
    let reference = Reference::load();
    assert!(reference.cases.len() >= 10);
    for case in &reference.cases {
        assert!(case.params.len() >= 40, "{}: at least 40 steps", case.name);
        assert!(!case.references.is_empty(), "{}", case.name);
    }
    for package in ["optax", "torch-optimizer", "timm"] {
        assert!(reference.versions.contains_key(package), "{package}");
    }
}

#[test]
fn flex_takes_the_fused_step() {
    let optimizer = NovoGradConfig::new().build();
    assert_eq!(optimizer.fused_path(&Device::flex()), Some("flex"));
    assert_eq!(
        optimizer.fused_path(&Device::flex().autodiff()),
        Some("flex")
    );
    let unfused = NovoGradConfig::new().with_fused(false).build();
    assert_eq!(unfused.fused_path(&Device::flex()), None);
}

#[test]
fn flex_matches_references() {
    assert_parity(On::f32(&Device::flex()), 1e-5);
}

#[test]
fn flex_tensor_op_step_matches_references() {
    let reference = Reference::load();
    for case in &reference.cases {
        let optimizer = NovoGradConfig::from(case.config).with_fused(false).build();
        let ours = reference.replay(case, &optimizer, On::f32(&Device::flex()));
        let error = novograd_tests::max_relative_error(&ours, &case.params);
        assert!(error <= 1e-5, "{}: {error:e}", case.name);
    }
}

#[test]
fn flex_f64_matches_references() {
    assert_parity(On::f64(&Device::flex()), 1e-12);
}

#[test]
fn flex_fused_step_matches_the_tensor_op_step() {
    assert_fused_matches_tensor_ops(On::f32(&Device::flex()), 1e-6);
}

#[test]
fn flex_f64_fused_step_matches_the_tensor_op_step() {
    assert_fused_matches_tensor_ops(On::f64(&Device::flex()), 1e-12);
}

/// burn-ndarray, deprecated in Burn 0.22, takes the tensor-op step.
#[test]
fn ndarray_matches_references_and_flex() {
    let device = ndarray();
    assert_eq!(NovoGradConfig::new().build().fused_path(&device), None);
    assert_parity(On::f32(&device), 1e-5);
    assert_same_trajectories(On::f32(&device), On::f32(&Device::flex()), 1e-5);
}

#[test]
fn ndarray_f64_matches_references() {
    assert_parity(On::f64(&ndarray()), 1e-12);
}

/// An 8-bit first moment on a CubeCL device (Burn's quantisation; the fused kernel reads and
/// writes the codes and scales): within the quantisation bound of the f32 run; from
/// the same state within one quantum of the tensor-op step; and through `multi_tensor`, a
/// record round trip and a no-decay group, equal to the per-tensor steps bit for bit (8-bit
/// tensors launched one by one there, the others gathered).
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cpu"))]
fn assert_int8_moment(device: &Device) {
    use burn_novograd::MomentDtype;
    crate::moment::assert_narrow_moment_stays_within_the_rounding_bound(device, MomentDtype::Int8);
    crate::moment::assert_narrow_fused_step_matches_the_tensor_op_step(device, MomentDtype::Int8);
    crate::state::assert_multi_tensor_matches_per_tensor_steps(device, MomentDtype::Int8);
}

/// Burn's WGPU device (Vulkan; Mesa's lavapipe on a machine without a GPU), under Fusion: the
/// fused CubeCL step.
#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::tensor::{Device, DeviceKind};
    use burn_novograd::MomentDtype;

    fn device() -> Device {
        Device::wgpu(DeviceKind::DefaultDevice)
    }

    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_takes_the_fused_step_and_matches_references() {
        super::assert_cube_parity(&device(), "cubecl-wgpu+fusion");
    }

    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_fused_step_matches_the_tensor_op_step() {
        super::assert_fused_matches_tensor_ops(super::On::f32(&device()), 1e-6);
    }

    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_threads_stepping_at_once_step_as_alone() {
        super::assert_threads_step_as_alone(&device());
    }

    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_multi_tensor_step_matches_per_tensor_steps() {
        crate::state::assert_multi_tensor_matches_per_tensor_steps(&device(), MomentDtype::Param);
    }

    /// An 8-bit first moment on WGPU (Burn's quantisation, packed four to a `u32`; the fused
    /// kernel reads and writes the codes): see [`assert_int8_moment`].
    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_int8_moment_stays_within_the_quantisation_bound() {
        super::assert_int8_moment(&device());
    }

    /// A bf16 first moment on WGPU: stored in bf16 where the device supports bf16 tensors (by the
    /// tensor-op step: the CubeCL kernels take f32 moments only), else refused at the first
    /// step with a panic that names the device and `MomentDtype::Param`.
    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_bf16_moment_is_stored_or_refused_clearly() {
        use burn::optim::Optimizer;
        use burn::tensor::{DType, Tensor};
        use burn_novograd::MomentDtype;
        use std::panic::{AssertUnwindSafe, catch_unwind};

        let device = device();
        let config = super::NovoGradConfig::new().with_moment_dtype(MomentDtype::Bf16);
        let param = Tensor::<1>::ones([8], &device);
        let step = catch_unwind(AssertUnwindSafe(|| {
            config.build().step(0.1, param.clone(), param.clone(), None)
        }));
        let supported = device.supports_dtype(DType::BF16);
        println!("bf16 tensors on this WGPU device: {supported}");
        match (supported, step) {
            (true, Ok((_, state))) => {
                assert_eq!(state.expect("a state").moment_1.dtype(), DType::BF16)
            }
            (false, Err(panic)) => {
                let message = panic.downcast_ref::<String>().expect("a formatted message");
                assert!(message.contains("MomentDtype::Param"), "{message}");
            }
            (supported, step) => panic!(
                "bf16 supported: {supported}, but the step {}",
                if step.is_ok() { "ran" } else { "panicked" }
            ),
        }
    }
}

/// Burn's CUDA device, under Fusion: the fused CubeCL step.
#[cfg(feature = "cuda")]
mod cuda {
    use burn::tensor::Device;
    use burn_novograd::MomentDtype;

    fn device() -> Device {
        Device::cuda(0)
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_takes_the_fused_step_and_matches_references() {
        super::assert_cube_parity(&device(), "cubecl-cuda+fusion");
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_fused_step_matches_the_tensor_op_step() {
        super::assert_fused_matches_tensor_ops(super::On::f32(&device()), 1e-6);
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_threads_stepping_at_once_step_as_alone() {
        super::assert_threads_step_as_alone(&device());
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_multi_tensor_step_matches_per_tensor_steps() {
        for moment_dtype in [MomentDtype::Param, MomentDtype::Bf16] {
            crate::state::assert_multi_tensor_matches_per_tensor_steps(&device(), moment_dtype);
        }
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_bf16_moment_stays_within_the_rounding_bound() {
        crate::moment::assert_narrow_moment_stays_within_the_rounding_bound(
            &device(),
            MomentDtype::Bf16,
        );
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_int8_moment_stays_within_the_quantisation_bound() {
        super::assert_int8_moment(&device());
    }

    #[test]
    #[ignore = "needs a CUDA GPU: cargo test --workspace --features novograd-tests/cuda -- --ignored cuda"]
    fn cuda_bf16_fused_step_matches_the_tensor_op_step() {
        crate::moment::assert_narrow_fused_step_matches_the_tensor_op_step(
            &device(),
            MomentDtype::Bf16,
        );
    }
}

/// Burn's CubeCL CPU device (`Device::cpu()`, LLVM-compiled kernels on this CPU), under Fusion:
/// the fused CubeCL step, with f32, bf16 (bf16 tensors, which WGPU lacks) and 8-bit first
/// moments. Not ignored: built only with the `cpu` feature, whose build needs LLVM (`.ci/run` runs them).
#[cfg(feature = "cpu")]
mod cpu {
    use burn::tensor::Device;
    use burn_novograd::MomentDtype;

    fn device() -> Device {
        Device::cpu()
    }

    #[test]
    fn cpu_takes_the_fused_step_and_matches_references() {
        super::assert_cube_parity(&device(), "cubecl-cpu+fusion");
    }

    #[test]
    fn cpu_fused_step_matches_the_tensor_op_step() {
        super::assert_fused_matches_tensor_ops(super::On::f32(&device()), 1e-6);
    }

    #[test]
    fn cpu_threads_stepping_at_once_step_as_alone() {
        super::assert_threads_step_as_alone(&device());
    }

    #[test]
    fn cpu_multi_tensor_step_matches_per_tensor_steps() {
        for moment_dtype in [MomentDtype::Param, MomentDtype::Bf16] {
            crate::state::assert_multi_tensor_matches_per_tensor_steps(&device(), moment_dtype);
        }
    }

    #[test]
    fn cpu_int8_moment_stays_within_the_quantisation_bound() {
        super::assert_int8_moment(&device());
    }

    #[test]
    fn cpu_bf16_moment_stays_within_the_rounding_bound() {
        crate::moment::assert_narrow_moment_stays_within_the_rounding_bound(
            &device(),
            MomentDtype::Bf16,
        );
    }

    #[test]
    fn cpu_bf16_fused_step_matches_the_tensor_op_step() {
        crate::moment::assert_narrow_fused_step_matches_the_tensor_op_step(
            &device(),
            MomentDtype::Bf16,
        );
    }
}

/// Threads stepping their own parameters on one CubeCL device at once (under Fusion, each
/// thread's operations run in a stream of its own) give bit for bit what each gives alone:
/// tensors of 1,000 elements (one kernel each) and of 70,000 (three kernels, which pass the
/// step's scalars through a workspace), per tensor and inside `multi_tensor`. A workspace that
/// two streams share is written by one while the other reads it (seen before the workspace was
/// kept per stream: 3 runs of 3 failed, in their first or second round).
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cpu"))]
fn assert_threads_step_as_alone(device: &Device) {
    use burn::optim::Optimizer;
    use burn::tensor::{Tensor, TensorData};

    const THREADS: usize = 4;
    // Thread `k`'s training: its own parameters and gradients, from `k` and the step only.
    let train = |k: usize| {
        let values = |len: usize, salt: usize| {
            let values: Vec<f32> = (0..len)
                .map(|i| 0.1 * (i as f32 * (0.37 + 0.01 * k as f32) + salt as f32).sin())
                .collect();
            Tensor::<1>::from_data(TensorData::new(values, [len]), device)
        };
        let optimizer = NovoGradConfig::new().with_weight_decay(1e-2).build();
        let lens = [70_000, 1_000];
        let mut params: Vec<_> = (lens.iter()).map(|&len| (values(len, 100), None)).collect();
        for step in 0..12 {
            let mut step_all = || {
                params = (std::mem::take(&mut params).into_iter().zip(lens))
                    .map(|((param, state), len)| {
                        optimizer.step(1e-2, param, values(len, step), state)
                    })
                    .collect();
            };
            match step % 2 {
                0 => burn_novograd::multi_tensor(step_all),
                _ => step_all(),
            }
        }
        (params.into_iter())
            .flat_map(|(param, _)| param.into_data().iter::<f32>().collect::<Vec<_>>())
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    };
    let alone: Vec<_> = (0..THREADS).map(train).collect();
    for round in 0..4 {
        let together: Vec<_> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|k| scope.spawn(move || train(k)))
                .collect();
            let results = threads.into_iter().map(|thread| thread.join());
            results.map(|result| result.expect("no panic")).collect()
        });
        for (k, (together, alone)) in together.iter().zip(&alone).enumerate() {
            let differ = together.iter().zip(alone).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "round {round}, thread {k}: values differ");
        }
    }
}

/// `device` takes the fused CubeCL step named `path`, and replays the references within 1e-5.
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cpu"))]
fn assert_cube_parity(device: &Device, path: &str) {
    assert_eq!(NovoGradConfig::new().build().fused_path(device), Some(path));
    assert_parity(On::f32(device), 1e-5);
}
