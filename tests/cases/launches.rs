//! Kernel launches per tensor of a step on WGPU: at most two for the fused step (the norm and the
//! update kernel). Its own test binary, since CubeCL's launch log is set once per process.

#[cfg(feature = "wgpu")]
mod wgpu {
    use burn::backend::Wgpu;
    use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
    use novograd_tests::launches::{LaunchLog, per_tensor};

    #[test]
    fn wgpu_fused_step_launches_two_kernels_per_tensor() {
        let log = LaunchLog::start();
        let device = Default::default();
        let fusion = per_tensor::<Wgpu>(&log, &device, true, 8, 5000);
        let cube =
            per_tensor::<CubeBackend<WgpuRuntime, f32, i32, u32>>(&log, &device, true, 8, 5000);
        let tensor_ops = per_tensor::<Wgpu>(&log, &device, false, 8, 5000);
        println!(
            "launches per tensor: fused {fusion} (Fusion), {cube} (CubeBackend); tensor ops {tensor_ops} (Fusion)"
        );
        assert!(
            fusion <= 2.0,
            "fused step on Fusion: {fusion} launches per tensor"
        );
        assert!(
            cube <= 2.0,
            "fused step on CubeBackend: {cube} launches per tensor"
        );
        assert!(
            tensor_ops > 2.0,
            "the log counts launches: tensor ops {tensor_ops}"
        );
    }
}
