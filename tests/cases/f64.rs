//! Parity in f64 (`NdArray<f64>`), in a test binary of its own: Burn keeps one default float
//! dtype per device type, which `NdArray<f32>` and `NdArray<f64>` share within a process.

use burn::backend::NdArray;
use novograd_tests::{assert_fused_matches_tensor_ops, assert_parity};

#[test]
fn ndarray_f64_matches_references() {
    assert_parity::<NdArray<f64>>(&Default::default(), 1e-12);
}

#[test]
fn ndarray_f64_fused_step_matches_the_tensor_op_step() {
    assert_fused_matches_tensor_ops::<NdArray<f64>>(&Default::default(), 1e-12);
}
