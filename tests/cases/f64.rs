//! Parity in f64 (`NdArray<f64>`), in a test binary of its own: Burn keeps one default float
//! dtype per device type, which `NdArray<f32>` and `NdArray<f64>` share within a process.

use burn::backend::NdArray;
use novograd_tests::assert_parity;

#[test]
fn ndarray_f64_matches_references() {
    assert_parity::<NdArray<f64>>(&Default::default(), 1e-12);
}
