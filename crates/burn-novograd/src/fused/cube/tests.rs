//! The fused CubeCL step against the tensor-op step on a WGPU device.

use burn::backend::DispatchDevice;
use burn::optim::Optimizer;
use burn::tensor::{DType, Device, DeviceKind, Shape, Tensor, TensorData};
use burn_cubecl::ops::into_data_sync;
use burn_cubecl::ops::numeric::{full, zeros};
use burn_cubecl::tensor::CubeTensor;
use cubecl::server::Handle;

use super::{Parts, launch};
use crate::hyper::Hyper;
use crate::{NovoGradConfig, NovoGradState, WeightDecayMode};

const STEPS: usize = 20;
const LR: f64 = 0.01;
/// Steps whose gradient has a NaN, an Inf, elements whose squares overflow f32 (1e20), and
/// elements whose squares do not but whose sum does from 4 elements on (1e19).
const NAN_STEP: usize = 4;
const INF_STEP: usize = 7;
const HUGE_STEP: usize = 10;
const SUM_OVERFLOW_STEP: usize = 13;

fn device() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// Deterministic values in (−1, 1).
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|index| ((index * 7919 + seed * 104_729) as f32 * 0.618_034).sin())
        .collect()
}

fn gradient(len: usize, step: usize) -> Vec<f32> {
    let mut grad = values(len, step + 1);
    match step {
        NAN_STEP => grad[len / 2] = f32::NAN,
        INF_STEP => grad[len - 1] = f32::NEG_INFINITY,
        HUGE_STEP => grad.fill(1e20),
        SUM_OVERFLOW_STEP => grad.fill(1e19),
        _ => {}
    }
    grad
}

fn host(tensor: &Tensor<1>) -> Vec<f32> {
    tensor.to_data().iter::<f32>().collect()
}

/// The parameter after each step, and the final state's scalars (`v`, max `v`, step).
fn trajectory(config: &NovoGradConfig, len: usize, fused: bool) -> (Vec<Vec<f32>>, Vec<f32>) {
    let device = device();
    let optimizer = config.clone().with_fused(fused).build();
    let mut param = Tensor::<1>::from_data(TensorData::new(values(len, 0), [len]), &device);
    let mut state = optimizer.initial_state(&param);
    let mut params = Vec::new();
    for step in 0..STEPS {
        let grad = Tensor::from_data(TensorData::new(gradient(len, step), [len]), &device);
        if fused {
            let inputs = (param.clone(), grad.clone(), state.clone());
            assert!(
                super::takes(&inputs).is_some(),
                "the fused step takes the inputs"
            );
        }
        let stepped = optimizer.step(LR, param, grad, Some(state));
        (param, state) = (stepped.0, stepped.1.expect("a state after a step"));
        params.push(host(&param));
    }
    let mut scalars = host(&state.moment_2);
    scalars.extend(state.max_moment_2.as_ref().map(host).unwrap_or_default());
    scalars.extend(state.step.to_data().iter::<f32>());
    params.push(host(&state.moment_1));
    (params, scalars)
}

#[test]
#[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
fn fused_step_matches_the_tensor_op_step() {
    let configs = [
        NovoGradConfig::new(),
        NovoGradConfig::new()
            .with_amsgrad(true)
            .with_bias_correction(true)
            .with_weight_decay(0.01),
        NovoGradConfig::new()
            .with_weight_decay(0.01)
            .with_weight_decay_mode(WeightDecayMode::OnUpdate)
            .with_grad_averaging(true)
            .with_epsilon_root(1e-6),
    ];
    let mut worst = 0.0f64;
    for config in &configs {
        for len in [1, 7, 70_000] {
            let (fused, fused_scalars) = trajectory(config, len, true);
            let (tensor_ops, tensor_op_scalars) = trajectory(config, len, false);
            let pairs = fused.iter().flatten().zip(tensor_ops.iter().flatten());
            for (step, (a, e)) in pairs.enumerate() {
                let error = (a - e).abs() as f64 / e.abs().max(1.0) as f64;
                assert!(
                    error <= 1e-6,
                    "{config:?}, {len} elements, value {step}: {a} != {e}"
                );
                worst = worst.max(error);
            }
            for (a, e) in fused_scalars.iter().zip(&tensor_op_scalars) {
                let error = (a - e).abs() as f64 / e.abs().max(1.0) as f64;
                assert!(
                    error <= 1e-6,
                    "{config:?}, {len} elements: state {fused_scalars:?} != {tensor_op_scalars:?}"
                );
            }
            // The non-finite gradients skipped the step; the 1e19 one only from 4 elements on.
            let skipped = if len >= 4 { 4.0 } else { 3.0 };
            assert_eq!(fused_scalars.last(), Some(&(STEPS as f32 - skipped)));
        }
    }
    println!("largest difference, relative to max(|tensor-op value|, 1): {worst:e}");
}

#[test]
#[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
fn path_reports_the_cube_step() {
    let expected = match cfg!(feature = "fusion") {
        true => "cubecl-wgpu+fusion",
        false => "cubecl-wgpu",
    };
    assert_eq!(
        NovoGradConfig::new().build().fused_path(&device()),
        Some(expected)
    );
    let unfused = NovoGradConfig::new().with_fused(false).build();
    assert_eq!(unfused.fused_path(&device()), None);
}

/// Which allocation a buffer is.
fn allocation(handle: &Handle) -> impl PartialEq + std::fmt::Debug + use<> {
    handle.memory.descriptor().id
}

#[test]
#[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
fn step_updates_w_m_and_the_state_in_place() {
    let DispatchDevice::Cube(device) = device().as_dispatch().clone() else {
        panic!("WGPU is a CubeCL device");
    };
    let hyper = Hyper::new(&NovoGradConfig::new().with_weight_decay(0.01));
    let one = || Shape::new([1]);
    // One kernel (one cube covers 1,000 elements), and three with the workspace.
    for len in [1_000, 70_000] {
        let shape = || Shape::new([len]);
        let mut parts = Parts {
            param: full(shape(), &device, 0.5f32),
            moment_1: zeros(device.clone(), shape(), DType::F32),
            moment_2: zeros(device.clone(), one(), DType::F32),
            max_moment_2: Some(zeros(device.clone(), one(), DType::F32)),
            step: zeros(device.clone(), one(), DType::I32),
        };
        let buffers = |parts: &Parts<CubeTensor>| {
            let max = parts.max_moment_2.as_ref().expect("amsgrad's maximum");
            [
                &parts.param,
                &parts.moment_1,
                &parts.moment_2,
                max,
                &parts.step,
            ]
            .map(|tensor| allocation(&tensor.handle))
        };
        let before = buffers(&parts);
        for _ in 0..3 {
            parts = launch(&hyper, 0.01, parts, full(shape(), &device, 0.1f32));
        }
        assert_eq!(
            buffers(&parts),
            before,
            "{len} elements: a step copied a buffer"
        );

        // A buffer that something else still holds is never written: the step writes a new one.
        let held = parts.param.clone();
        parts = launch(&hyper, 0.01, parts, full(shape(), &device, 0.1f32));
        assert_ne!(allocation(&parts.param.handle), allocation(&held.handle));
        assert_eq!(allocation(&parts.moment_1.handle), before[1]);
    }
}

/// An 8-bit `m` (the scheme `MomentDtype::Int8` takes on WGPU: blocks of 128, codes packed four
/// to a `u32`) is read and written by the kernel itself, codes and scales in place: no f32 copy
/// of `m` is made, and `w` keeps its buffer too. From `m = 0.5` in every block and a uniform
/// step, every block stays uniform, so every code is ±127 and the dequantised `m` is what an f32
/// `m` gives within one quantum.
#[test]
#[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
fn step_updates_an_int8_moment_in_place() {
    use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
    use burn_cubecl::kernel::quantization::{dequantize, quantize};

    let DispatchDevice::Cube(device) = device().as_dispatch().clone() else {
        panic!("WGPU is a CubeCL device");
    };
    let hyper = Hyper::new(&NovoGradConfig::new().with_weight_decay(0.01));
    let scheme = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::PackedU32(0))
        .per_block([128], ScaleDtype::F32);
    let one = || Shape::new([1]);
    for len in [1_024, 70_016] {
        let shape = || Shape::new([len]);
        let scales = full(Shape::new([len / 128]), &device, 0.5f32 / 127.0);
        let moment_1 = quantize(full(shape(), &device, 0.5f32), &scheme, scales, None);
        let mut int8 = Parts {
            param: full(shape(), &device, 0.5f32),
            moment_1,
            moment_2: full(one(), &device, 1.0f32),
            max_moment_2: None,
            step: full(one(), &device, 1i32),
        };
        let mut float = Parts {
            moment_1: full(shape(), &device, 0.5f32),
            ..int8.clone()
        };
        // Cloned above: the first step writes new buffers; the next ones, these.
        let grad = || full(shape(), &device, 0.1f32);
        int8 = launch(&hyper, 0.01, int8, grad());
        float = launch(&hyper, 0.01, float, grad());
        let before = [&int8.param, &int8.moment_1].map(|tensor| allocation(&tensor.handle));
        for _ in 0..3 {
            int8 = launch(&hyper, 0.01, int8, grad());
            float = launch(&hyper, 0.01, float, grad());
        }
        let after = [&int8.param, &int8.moment_1].map(|tensor| allocation(&tensor.handle));
        assert_eq!(after, before, "{len} elements: a step copied a buffer");
        assert!(matches!(int8.moment_1.dtype, DType::QFloat(_)));

        let dequantised = dequantize(int8.moment_1, DType::F32);
        let to_host = |tensor: CubeTensor| into_data_sync(tensor).try_to_vec::<f32>().expect("f32");
        let (int8_moment, float_moment) = (to_host(dequantised), to_host(float.moment_1));
        let quantum = float_moment[0].abs() / 127.0;
        for (index, (int8, float)) in int8_moment.iter().zip(&float_moment).enumerate() {
            assert!(
                (int8 - float).abs() <= quantum,
                "{len} elements, m[{index}]: 8-bit {int8}, f32 {float}"
            );
        }
        assert!(float_moment[0] != 0.5, "the step changed m");
    }
}

/// The configurations of the multi-tensor tests, one per tensor in turn: different
/// hyper-parameters are different launch groups.
fn multi_configs() -> [NovoGradConfig; 3] {
    [
        NovoGradConfig::new().with_weight_decay(0.01),
        NovoGradConfig::new()
            .with_amsgrad(true)
            .with_bias_correction(true),
        NovoGradConfig::new()
            .with_weight_decay(0.01)
            .with_weight_decay_mode(WeightDecayMode::OnUpdate)
            .with_grad_averaging(true),
    ]
}

/// Each tensor's parameter, first moment and state scalars after each step of tensors of
/// `lens` elements, stepped together inside `multi_tensor` (`multi`) or one by one by the
/// tensor-op step; `hold`: a clone of the first parameter is held through every step, and
/// must keep its first values.
fn multi_trajectories(lens: &[usize], multi: bool, hold: bool) -> Vec<Vec<f32>> {
    let device = device();
    let optimizers = multi_configs().map(|config| config.with_fused(multi).build());
    let optimizer = |index: usize| &optimizers[index % optimizers.len()];
    let mut tensors: Vec<_> = (lens.iter().enumerate())
        .map(|(index, &len)| {
            let param = Tensor::<1>::from_data(TensorData::new(values(len, index), [len]), &device);
            let state = optimizer(index).initial_state(&param);
            (param, state)
        })
        .collect();
    let held = hold.then(|| tensors[0].0.clone());
    let allocations = |tensors: &[(Tensor<1>, _)]| {
        let buffers = tensors
            .iter()
            .map(|(param, state): &(Tensor<1>, NovoGradState<1>)| {
                [param, &state.moment_1].map(|tensor| {
                    allocation(&super::into_float::<CubeTensor, 1>(tensor.clone()).handle)
                })
            });
        buffers.collect::<Vec<_>>()
    };
    let mut first_allocations = None;
    let mut trajectories = Vec::new();
    for step in 0..STEPS {
        let grads = lens
            .iter()
            .map(|&len| Tensor::from_data(TensorData::new(gradient(len, step), [len]), &device));
        let grads: Vec<_> = grads.collect();
        let step_all = || {
            (tensors.drain(..).zip(grads).enumerate())
                .map(|(index, ((param, state), grad))| {
                    let (param, state) = optimizer(index).step(LR, param, grad, Some(state));
                    (param, state.expect("a state after a step"))
                })
                .collect()
        };
        tensors = match multi {
            true => crate::multi_tensor(step_all),
            false => step_all(),
        };
        // From the second step on (the first makes the held parameter's new buffer), every
        // buffer is written in place.
        // (Fusion's buffers are out of sight here: `plain_multi_tensor_step_…` and the launch
        // count test cover it.)
        let plain = matches!(super::holding(), Some(super::Holding::Plain));
        if multi && plain && step == 1 {
            first_allocations = Some(allocations(&tensors));
        }
        if multi && plain && step + 1 == STEPS {
            assert_eq!(
                Some(allocations(&tensors)),
                first_allocations,
                "a buffer was copied"
            );
        }
        for (param, state) in &tensors {
            trajectories.extend([host(param), host(&state.moment_1), host(&state.moment_2)]);
            trajectories.extend(state.max_moment_2.as_ref().map(host));
            trajectories.push(state.step.to_data().iter::<f32>().collect());
        }
    }
    if let Some(held) = held {
        let len = lens[0];
        assert_eq!(
            host(&held),
            values(len, 0),
            "the held parameter was written"
        );
    }
    trajectories
}

#[test]
#[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
fn multi_tensor_step_matches_the_tensor_op_step() {
    // One cube and several; 4-wide and 2-wide vectors and none; three launch groups.
    let lens = [1, 7, 1_000, 70_000, 10_002, 12, 3, 70_001, 64];
    for hold in [false, true] {
        let multi = multi_trajectories(&lens, true, hold);
        let tensor_ops = multi_trajectories(&lens, false, hold);
        assert_eq!(multi.len(), tensor_ops.len());
        let mut worst = 0.0f64;
        for (index, (a, e)) in multi.iter().zip(&tensor_ops).enumerate() {
            assert_eq!(a.len(), e.len());
            for (a, e) in a.iter().zip(e) {
                let error = (a - e).abs() as f64 / e.abs().max(1.0) as f64;
                assert!(error <= 1e-6, "hold {hold}, trajectory {index}: {a} != {e}");
                worst = worst.max(error);
            }
        }
        println!("multi-tensor step, hold {hold}: largest relative difference {worst:e}");
    }
}

#[test]
#[ignore = "needs a Vulkan device: cargo test --workspace -- --ignored"]
fn plain_multi_tensor_step_gathers_unique_buffers_and_writes_them_in_place() {
    use super::Entry;
    use super::multi::gather;

    let DispatchDevice::Cube(device) = device().as_dispatch().clone() else {
        panic!("WGPU is a CubeCL device");
    };
    let hyper = Hyper::new(&NovoGradConfig::new().with_weight_decay(0.01));
    let parts = |len: usize| Parts {
        param: full(Shape::new([len]), &device, 0.5f32),
        moment_1: zeros(device.clone(), Shape::new([len]), DType::F32),
        moment_2: zeros(device.clone(), Shape::new([1]), DType::F32),
        max_moment_2: None,
        step: zeros(device.clone(), Shape::new([1]), DType::I32),
    };
    let grad = |len: usize| full(Shape::new([len]), &device, 0.1f32);
    let lens = [7, 1_000, 70_000];
    let read = |tensor: &CubeTensor| -> Vec<f32> {
        let data = burn_cubecl::ops::into_data_sync(tensor.clone());
        data.iter::<f32>().collect()
    };
    for _ in 0..2 {
        // Outside `multi_tensor`, nothing is gathered.
        assert!(gather(Entry::new(&hyper, 0.01, parts(7), grad(7))).is_err());
    }
    let mut expected: Vec<_> = lens.map(parts).into();
    let mut gathered: Vec<_> = lens.map(parts).into();
    let before: Vec<_> = gathered
        .iter()
        .map(|parts| allocation(&parts.param.handle))
        .collect();
    for _ in 0..3 {
        expected = (expected.into_iter().zip(lens))
            .map(|(parts, len)| launch(&hyper, 0.01, parts, grad(len)))
            .collect();
        gathered = crate::multi_tensor(|| {
            (gathered.drain(..).zip(lens))
                .map(|(parts, len)| {
                    let entry = Entry::new(&hyper, 0.01, parts, grad(len));
                    gather(entry).unwrap_or_else(|_| panic!("unique buffers are gathered"))
                })
                .collect()
        });
    }
    for ((gathered, expected), before) in gathered.iter().zip(&expected).zip(&before) {
        assert_eq!(read(&gathered.param), read(&expected.param));
        assert_eq!(read(&gathered.moment_1), read(&expected.moment_1));
        assert_eq!(read(&gathered.moment_2), read(&expected.moment_2));
        assert_eq!(allocation(&gathered.param.handle), *before, "copied");
    }
    // A held buffer is not gathered (it takes its own step into a new buffer).
    let held = gathered[0].param.clone();
    let entry = Entry::new(&hyper, 0.01, gathered.remove(0), grad(lens[0]));
    crate::multi_tensor(|| assert!(gather(entry).is_err()));
    drop(held);
}
