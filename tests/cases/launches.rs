//! Kernel launches per tensor of a step on WGPU: one for the fused step of a tensor that one cube
//! covers, three for a larger one (the partial sums of the norm, their sum with the state's
//! per-tensor values, and the update), whatever the number of tensors;
//! more for the tensor-op step, which shows that the count counts. Its own test binary, since
//! CubeCL has one launch observer per process.

#[cfg(feature = "wgpu")]
mod wgpu {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use burn::optim::Optimizer;
    use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
    use burn_novograd::NovoGradConfig;
    use cubecl::logging::{LaunchObservation, LaunchObserver};

    /// Every kernel launch of the process while it observes, on any thread (Fusion launches
    /// from its own).
    #[derive(Default)]
    struct LaunchCount(AtomicUsize);

    impl LaunchObserver for LaunchCount {
        fn launched(&self, _kernel: &'static str) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Kernel launches per tensor of one NovoGrad step of `tensors` parameter tensors of
    /// `elements` each (after warm-up steps), by the fused step or the tensor-op step.
    fn per_tensor(device: &Device, fused: bool, tensors: usize, elements: usize) -> f64 {
        let optimizer = NovoGradConfig::new()
            .with_weight_decay(0.001)
            .with_fused(fused)
            .build();
        let random = || Tensor::<1>::random([elements], Distribution::Default, device);
        let mut params: Vec<_> = (0..tensors).map(|_| (random(), None)).collect();
        let mut step = |grads: Vec<Tensor<1>>| {
            params = std::mem::take(&mut params)
                .into_iter()
                .zip(grads)
                .map(|((param, state), grad)| optimizer.step(0.01, param, grad, state))
                .collect();
            device.sync().expect("the device runs");
        };
        let grads = || {
            let grads: Vec<_> = (0..tensors).map(|_| random()).collect();
            device.sync().expect("the device runs");
            grads
        };
        for _ in 0..2 {
            step(grads());
        }
        let grads = grads();
        let count = Arc::new(LaunchCount::default());
        let observation = LaunchObservation::new(count.clone());
        step(grads);
        drop(observation);
        count.0.load(Ordering::Relaxed) as f64 / tensors as f64
    }

    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_fused_step_launches_one_kernel_per_small_tensor_and_three_per_large_one() {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let path = NovoGradConfig::new().build().fused_path(&device);
        assert!(path.is_some(), "no fused step on {device:?}");
        // 5,000 elements: one cube; 70,000: the three kernels.
        for (elements, launches) in [(5_000, 1.0), (70_000, 3.0)] {
            for tensors in [3, 200] {
                let fused = per_tensor(&device, true, tensors, elements);
                assert_eq!(
                    fused, launches,
                    "fused step, {tensors} tensors of {elements}: launches per tensor"
                );
            }
        }
        let tensor_ops = per_tensor(&device, false, 8, 5000);
        println!(
            "launches per tensor on {}: fused step ({}) 1 (5,000 elements) and 3 (70,000), \
             tensor ops {tensor_ops}",
            core::any::type_name::<burn::backend::Cube>(),
            path.unwrap_or_default(),
        );
        assert!(
            tensor_ops > 3.0,
            "the count counts launches: tensor ops {tensor_ops}"
        );
    }
}
