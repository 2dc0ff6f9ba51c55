//! The reference trajectories replayed on every backend.

use burn::backend::{Flex, NdArray};
use novograd_tests::{
    Reference, assert_fused_matches_tensor_ops, assert_parity, assert_same_trajectories,
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
fn ndarray_matches_references() {
    assert_parity::<NdArray>(&Default::default(), 1e-5);
}

#[test]
fn ndarray_fused_step_matches_the_tensor_op_step() {
    assert_fused_matches_tensor_ops::<NdArray>(&Default::default(), 1e-6);
}

#[test]
fn flex_matches_references_and_ndarray() {
    assert_parity::<Flex>(&Default::default(), 1e-5);
    assert_same_trajectories::<NdArray, Flex>(&Default::default(), &Default::default(), 1e-5);
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use burn::backend::Wgpu;
    use burn::backend::wgpu::{CubeBackend, WgpuRuntime};

    #[test]
    fn wgpu_matches_references_and_ndarray() {
        assert_parity::<Wgpu>(&Default::default(), 1e-5);
        assert_same_trajectories::<NdArray, Wgpu>(&Default::default(), &Default::default(), 1e-5);
    }

    /// Fusion on, as `Wgpu` is with Burn's default features.
    #[test]
    fn wgpu_fused_step_matches_the_tensor_op_step() {
        assert_fused_matches_tensor_ops::<Wgpu>(&Default::default(), 1e-6);
    }

    /// The CubeBackend without Fusion.
    #[test]
    fn wgpu_cube_backend_fused_step_matches_the_tensor_op_step() {
        type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;
        assert_fused_matches_tensor_ops::<Cube>(&Default::default(), 1e-6);
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use burn::backend::Cuda;

    #[test]
    fn cuda_matches_references_and_ndarray() {
        assert_parity::<Cuda>(&Default::default(), 1e-5);
        assert_same_trajectories::<NdArray, Cuda>(&Default::default(), &Default::default(), 1e-5);
    }

    #[test]
    fn cuda_fused_step_matches_the_tensor_op_step() {
        assert_fused_matches_tensor_ops::<Cuda>(&Default::default(), 1e-6);
    }
}
