//! Kernel launches of a step on WGPU: per tensor, one for the fused step of a tensor that one
//! cube covers, three for a larger one (the partial sums of the norm, their sum with the state's
//! per-tensor values, and the update), whatever the number of tensors; one or three per chunk of
//! as many tensors as one launch takes for the multi-tensor step of a module (`multi_tensor`); more
//! for the tensor-op step, which shows that the count counts. Its own test binary, since CubeCL
//! has one launch observer per process (the tests take turns).

#[cfg(feature = "wgpu")]
mod wgpu {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use burn::module::{Module, Param};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
    use burn_novograd::NovoGradConfig;
    use cubecl::logging::{LaunchObservation, LaunchObserver};

    /// Held by each test while it observes: the process has one observer.
    static OBSERVING: Mutex<()> = Mutex::new(());

    /// Every kernel launch of the process while it observes, on any thread (Fusion launches
    /// from its own).
    #[derive(Default)]
    struct LaunchCount(AtomicUsize);

    impl LaunchObserver for LaunchCount {
        fn launched(&self, _kernel: &'static str) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Kernel launches of one NovoGrad step of `tensors` parameter tensors of `elements` each
    /// (after warm-up steps), by the fused step or the tensor-op step.
    fn launches(device: &Device, fused: bool, tensors: usize, elements: usize) -> usize {
        let optimizer = NovoGradConfig::new()
            .with_weight_decay(0.001)
            .with_fused(fused)
            .build();
        let random = || Tensor::<1>::random([elements], Distribution::Default, device);
        let mut params: Vec<_> = (0..tensors).map(|_| (random(), None)).collect();
        let mut step = |grads: Vec<Tensor<1>>| {
            params = (std::mem::take(&mut params).into_iter().zip(grads))
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
        count.0.load(Ordering::Relaxed)
    }

    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_fused_step_launches_one_kernel_per_small_tensor_and_three_per_large_one() {
        let _observing = OBSERVING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let path = NovoGradConfig::new().build().fused_path(&device);
        assert!(path.is_some(), "no fused step on {device:?}");
        // 5,000 elements: one cube; 70,000: the three kernels.
        for (elements, launches_per_tensor) in [(5_000, 1), (70_000, 3)] {
            for tensors in [3, 200] {
                let fused = launches(&device, true, tensors, elements);
                assert_eq!(
                    fused,
                    launches_per_tensor * tensors,
                    "fused step, {tensors} tensors of {elements}: launches"
                );
            }
        }
        let tensor_ops = launches(&device, false, 8, 5000) as f64 / 8.0;
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

    /// A module of `tensors` parameters.
    #[derive(Module, Debug)]
    struct Params {
        params: Vec<Param<Tensor<1>>>,
    }

    /// Kernel launches of one step of `ModuleOptimizer` with NovoGrad inside `multi_tensor`
    /// (after warm-up steps), for a module of `tensors` parameters of `elements` each.
    fn module_launches(device: &Device, tensors: usize, elements: usize) -> usize {
        let device = device.clone().autodiff();
        let random = || Tensor::<1>::random([elements], Distribution::Default, &device);
        let mut module = Params {
            params: (0..tensors).map(|_| Param::from_tensor(random())).collect(),
        };
        let mut optimizer = NovoGradConfig::new().with_weight_decay(0.001).init();
        let mut launches = 0;
        for step in 0..3 {
            let loss = (module.params.iter())
                .map(|param| param.val().powi_scalar(2).sum())
                .reduce(|sum, loss| sum + loss)
                .expect("parameters");
            let grads = GradientsParams::from_grads(loss.backward(), &module);
            device.sync().expect("the device runs");
            let count = Arc::new(LaunchCount::default());
            let observation = LaunchObservation::new(count.clone());
            module = burn_novograd::multi_tensor(|| optimizer.step(0.01, module, grads));
            device.sync().expect("the device runs");
            drop(observation);
            if step == 2 {
                launches = count.0.load(Ordering::Relaxed);
            }
        }
        launches
    }

    /// Launches of the multi-tensor step of `tensors` tensors of `elements` each, `per_chunk`
    /// per chunk (one for tensors that one cube covers, three for larger ones), a chunk closed
    /// at `per_launch` tensors or `ELEMENTS_PER_LAUNCH` elements.
    fn expected_launches(
        tensors: usize,
        elements: usize,
        per_launch: usize,
        per_chunk: usize,
    ) -> usize {
        let (mut chunks, mut in_chunk, mut chunk_elements) = (0, 0, 0);
        for _ in 0..tensors {
            (in_chunk, chunk_elements) = (in_chunk + 1, chunk_elements + elements);
            if in_chunk == per_launch || chunk_elements >= burn_novograd::ELEMENTS_PER_LAUNCH {
                (chunks, in_chunk, chunk_elements) = (chunks + 1, 0, 0);
            }
        }
        per_chunk * (chunks + usize::from(in_chunk > 0))
    }

    /// One launch per step for a module of 3 small tensors (5,000 elements: one cube each) and
    /// for one of as many as one launch takes ([`burn_novograd::tensors_per_launch`]), three for
    /// larger tensors (70,000): the count does not grow with the tensors. A module of 200 takes
    /// one or three per chunk of that many: on lavapipe, whose WGPU adapter allows about 32
    /// storage buffers per kernel (5 small tensors at five buffers each, 9 larger ones at
    /// three), 40 launches instead of 200 (5,000 elements) or 69 instead of 600 (70,000) one by
    /// one; on CUDA (204 small or 340 larger tensors per launch), 1 and 42 (15 tensors of 70,000
    /// pass `ELEMENTS_PER_LAUNCH`). Three tensors of 600,000 take two chunks.
    #[test]
    #[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
    fn wgpu_multi_tensor_step_of_a_module_launches_one_or_three_kernels_per_chunk_of_tensors() {
        let _observing = OBSERVING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let per_launch = |elements| {
            burn_novograd::tensors_per_launch(&device, elements).expect("the CubeCL step")
        };
        let cases = [(5_000, 1), (70_000, 3)]
            .into_iter()
            .flat_map(|(elements, per_chunk)| {
                [3, per_launch(elements).min(200), 200]
                    .map(|tensors| (tensors, elements, per_chunk))
            });
        for (tensors, elements, per_chunk) in cases.chain([(3, 600_000, 3)]) {
            let launches = module_launches(&device, tensors, elements);
            let per_launch = per_launch(elements);
            assert_eq!(
                launches,
                expected_launches(tensors, elements, per_launch, per_chunk),
                "multi-tensor step of a module of {tensors} tensors of {elements}, \
                 {per_launch} tensors per launch: launches"
            );
        }
        assert_eq!(expected_launches(3, 5_000, per_launch(5_000), 1), 1);
        assert_eq!(expected_launches(3, 600_000, per_launch(600_000), 3), 6);
        println!(
            "multi-tensor step on WGPU: {} tensors of 5,000 or {} of 70,000 per launch",
            per_launch(5_000),
            per_launch(70_000)
        );
    }
}
