//! Optimizer state: its size, records that resume bit-for-bit, device moves, half precision,
//! parameter groups and gradients whose squared norm overflows.

use burn::module::{Module, ParamGroup};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{DType, Device, Int, Tensor};
use burn_novograd::{MomentDtype, NovoGrad, NovoGradConfig, NovoGradState, WeightDecayMode};
use novograd_tests::{On, ndarray, tensor, values};

#[derive(Module, Debug)]
struct TwoLayers {
    first: Linear,
    second: Linear,
}

impl TwoLayers {
    fn new(inputs: usize, hidden: usize, device: &Device) -> Self {
        Self {
            first: LinearConfig::new(inputs, hidden).init(device),
            second: LinearConfig::new(hidden, 3).init(device),
        }
    }

    /// Gradients of a loss that changes with the step (scaled by `scale`), so every step differs.
    fn grads(&self, step: usize, scale: f32) -> GradientsParams {
        let device = self.first.weight.device();
        let inputs = self.first.weight.dims()[0];
        let x = Tensor::<1, Int>::arange(0..(4 * inputs) as i64, &device)
            .float()
            .reshape([4, inputs])
            .div_scalar((4 * inputs) as f32)
            .sin()
            .mul_scalar(1.0 + step as f32 * 0.1);
        let output = self.second.forward(self.first.forward(x).tanh());
        let loss = (output - 0.5).powi_scalar(2).mean().mul_scalar(scale);
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn autodiff() -> Device {
    Device::flex().autodiff()
}

fn train(
    mut model: TwoLayers,
    optimizer: &mut ModuleOptimizer,
    steps: std::ops::Range<usize>,
) -> TwoLayers {
    for step in steps {
        let grads = model.grads(step, 1.0);
        model = optimizer.step(0.01, model, grads);
    }
    model
}

fn record_bytes(optimizer: &ModuleOptimizer) -> usize {
    optimizer.into_bytes().expect("optimizer record").len()
}

/// NovoGrad's record against AdamW's: half with `m` in f32 (one moment against two), a quarter
/// with `m` in bf16, 1.03/8 with `m` in 8 bits and an f32 scale per 128 values; the one-element
/// tensors per parameter and burnpack's padding of each tensor to 256 bytes add a little (on a
/// 512-512-3 model: 0.3% of AdamW's record).
#[test]
fn state_is_half_of_adamw_a_quarter_with_a_bf16_moment_and_an_eighth_with_an_int8_moment() {
    let model = TwoLayers::new(512, 512, &autodiff());
    let mut adamw = AdamWConfig::new().init();
    train(model.clone(), &mut adamw, 0..2);
    let theirs = record_bytes(&adamw);
    let cases = [
        (MomentDtype::Param, 0.51),
        (MomentDtype::Bf16, 0.26),
        (MomentDtype::Int8, 0.14),
    ];
    for (moment_dtype, most) in cases {
        let mut novograd = NovoGradConfig::new().with_moment_dtype(moment_dtype).init();
        train(model.clone(), &mut novograd, 0..2);
        let ours = record_bytes(&novograd);
        let ratio = ours as f64 / theirs as f64;
        println!(
            "optimizer burnpack, moment {moment_dtype:?}: NovoGrad {ours} bytes, AdamW {theirs} \
             bytes, ratio {ratio:.4}"
        );
        assert!(ratio <= most, "{moment_dtype:?}: {ratio:.4} of AdamW's");
    }
}

/// A record saved with one `moment_dtype` loads into an optimizer with another: `m` is stored
/// as configured from the next step on (widened exactly from bf16 or dequantised from 8 bits,
/// rounded to nearest into bf16, quantised into 8 bits), and training goes on.
#[test]
fn records_load_across_moment_dtypes() {
    let dtypes = [MomentDtype::Param, MomentDtype::Bf16, MomentDtype::Int8];
    let pairs = dtypes
        .iter()
        .flat_map(|saved| dtypes.map(|loaded| (*saved, loaded)));
    for (saved, loaded) in pairs.filter(|(saved, loaded)| saved != loaded) {
        let model = TwoLayers::new(16, 16, &autodiff());
        let mut optimizer = NovoGradConfig::new().with_moment_dtype(saved).init();
        let model = train(model, &mut optimizer, 0..5);
        let bytes = optimizer.into_bytes().unwrap();
        let config = NovoGradConfig::new().with_moment_dtype(loaded);
        let mut optimizer = config.init().from_bytes(bytes).unwrap();
        let resumed = train(model.clone(), &mut optimizer, 5..10);
        assert!(
            param_bits(&resumed)
                .iter()
                .all(|&b| f32::from_bits(b).is_finite()),
            "{saved:?} -> {loaded:?}"
        );
        // Stored as configured: the record weighs what a run of `loaded` alone gives.
        let mut alone = config.init();
        train(model, &mut alone, 0..5);
        assert_eq!(
            record_bytes(&optimizer),
            record_bytes(&alone),
            "{saved:?} -> {loaded:?}"
        );
    }
}

/// An 8-bit `m` in blocks of 64, as an earlier build of `MomentDtype::Int8` stored it, is
/// quantised into the blocks it takes now (128 for 256 values) at its next step, by the fused
/// step and the tensor-op step alike.
#[test]
fn an_int8_moment_in_blocks_of_64_is_quantised_into_blocks_of_128() {
    let device = Device::flex();
    let param = Tensor::<1, Int>::arange(0..256, &device)
        .float()
        .div_scalar(256.0);
    let blocks_of_64 = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::PackedU32(0))
        .per_block([64], ScaleDtype::F32);
    let block = |moment: &Tensor<1>| match moment.dtype() {
        DType::QFloat(scheme) => scheme.block_scale().map(|block| block.size.to_vec()),
        dtype => panic!("an 8-bit moment, not {dtype:?}"),
    };
    for fused in [true, false] {
        let state = NovoGradState {
            moment_1: param.clone().cos().quantize_dynamic(&blocks_of_64),
            moment_2: Tensor::ones([1], &device),
            max_moment_2: None,
            step: Tensor::ones([1], &device),
        };
        assert_eq!(block(&state.moment_1), Some(vec![64]));
        let optimizer = (NovoGradConfig::new().with_moment_dtype(MomentDtype::Int8))
            .with_fused(fused)
            .build();
        let (_, state) = optimizer.step(0.01, param.clone(), param.clone().sin(), Some(state));
        let moment_1 = state.expect("a state").moment_1;
        assert_eq!(block(&moment_1), Some(vec![128]), "fused: {fused}");
    }
}

fn param_bits(model: &TwoLayers) -> Vec<u32> {
    [&model.first, &model.second]
        .into_iter()
        .flat_map(|linear| {
            let bias = linear.bias.as_ref().expect("a bias").val();
            let mut param_bits = bits(linear.weight.val());
            param_bits.extend(bits(bias));
            param_bits
        })
        .collect()
}

fn bits<const D: usize>(tensor: Tensor<D>) -> Vec<u32> {
    tensor.into_data().iter::<f32>().map(f32::to_bits).collect()
}

fn configs() -> [NovoGradConfig; 4] {
    [
        NovoGradConfig::new().with_weight_decay(1e-3),
        NovoGradConfig::new()
            .with_weight_decay(1e-3)
            .with_moment_dtype(MomentDtype::Bf16),
        NovoGradConfig::new()
            .with_weight_decay(1e-3)
            .with_moment_dtype(MomentDtype::Int8),
        NovoGradConfig::new()
            .with_amsgrad(true)
            .with_bias_correction(true)
            .with_grad_averaging(true)
            .with_weight_decay(1e-2)
            .with_weight_decay_mode(WeightDecayMode::OnUpdate),
    ]
}

/// Through a file and through bytes, training resumed from a record equals the uninterrupted
/// run bit for bit. The 16-16-3 model gives an 8-bit `m` blocks of 128 (the first weight) and 16
/// (the first bias and the second weight) and keeps the 3-element bias in f32.
#[test]
fn records_resume_training_bit_for_bit() {
    let directory = std::env::temp_dir().join(format!("novograd-resume-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    for (index, config) in configs().iter().enumerate() {
        let model = TwoLayers::new(16, 16, &autodiff());
        let uninterrupted = train(model.clone(), &mut config.init(), 0..20);

        let mut optimizer = config.init();
        let halfway = train(model, &mut optimizer, 0..10);
        let model_file = directory.join(format!("model-{index}.bpk"));
        let optimizer_file = directory.join(format!("optimizer-{index}.bpk"));
        halfway.clone().save_file(&model_file).unwrap();
        optimizer.save(&optimizer_file).unwrap();
        // Through bytes as well as files: both must give the same optimizer.
        let bytes = optimizer.into_bytes().unwrap();
        drop((halfway, optimizer));

        let model = TwoLayers::new(16, 16, &autodiff()).load_file(&model_file);
        let mut from_file = config.init().load(&optimizer_file).unwrap();
        let mut from_bytes = config.init().from_bytes(bytes).unwrap();
        let resumed = train(model.clone(), &mut from_file, 10..20);
        let resumed_bytes = train(model, &mut from_bytes, 10..20);

        assert_eq!(
            param_bits(&resumed),
            param_bits(&uninterrupted),
            "config {index}"
        );
        assert_eq!(
            param_bits(&resumed_bytes),
            param_bits(&uninterrupted),
            "config {index}"
        );
    }
    std::fs::remove_dir_all(directory).ok();
}

/// Every state tensor's values, in order.
fn state_values(state: &NovoGradState<2>) -> Vec<Vec<f64>> {
    let mut values_of = vec![
        values(&state.moment_1),
        values(&state.moment_2),
        state.step.to_data().iter::<f64>().collect(),
    ];
    values_of.extend(state.max_moment_2.as_ref().map(values));
    values_of
}

/// Runs three steps on `from`, moves the state to `to` with `to_device`, and runs three more
/// there; asserts every state tensor is on `to` and the result equals staying on `from`.
fn assert_state_moves(from: &Device, to: &Device) {
    let optimizer: NovoGrad = NovoGradConfig::new()
        .with_amsgrad(true)
        .with_bias_correction(true)
        .build();
    let grad = |step: usize, device: &Device| {
        Tensor::<1, Int>::arange(0..12, device)
            .float()
            .reshape([3, 4])
            .mul_scalar(step as f32 + 1.0)
            .cos()
    };
    let run = |device: &Device, steps: std::ops::Range<usize>, param, state| {
        steps.fold((param, state), |(param, state), step| {
            optimizer.step(0.1, param, grad(step, device), state)
        })
    };
    let param = Tensor::<2>::ones([3, 4], from);
    let (param, state) = run(from, 0..3, param, None);
    let (stayed, stayed_state) = run(from, 3..6, param.clone(), state.clone());

    let moved_state = <NovoGrad as Optimizer>::to_device(state.unwrap(), to);
    assert_eq!(moved_state.moment_1.device(), *to);
    assert_eq!(moved_state.moment_2.device(), *to);
    assert_eq!(moved_state.step.device(), *to);
    assert_eq!(
        moved_state.max_moment_2.as_ref().map(|max| max.device()),
        Some(to.clone())
    );
    let (moved, moved_state) = run(to, 3..6, param.to_device(to), Some(moved_state));

    let (moved, stayed) = (values(&moved), values(&stayed));
    for (a, b) in moved.iter().zip(&stayed) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{moved:?} != {stayed:?}"
        );
    }
    let (moved_state, stayed_state) = (
        state_values(&moved_state.unwrap()),
        state_values(&stayed_state.unwrap()),
    );
    for (a, b) in moved_state
        .iter()
        .flatten()
        .zip(stayed_state.iter().flatten())
    {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} != {b}");
    }
}

/// A real move between two CPU backends: Flex (fused step) to ndarray (tensor-op step), and back.
#[test]
fn to_device_moves_every_state_tensor() {
    assert_state_moves(&Device::flex(), &ndarray());
    assert_state_moves(&ndarray(), &Device::flex());
}

#[test]
fn half_precision_norm_does_not_overflow() {
    let device = Device::flex();
    let half = |values: Vec<f64>| {
        tensor::<1>(
            &values,
            &[values.len()],
            On {
                device: &device,
                dtype: DType::F16,
            },
        )
    };
    let optimizer = NovoGradConfig::new().build();
    // ‖g‖ = 400: ‖g‖² = 160000 is beyond f16's largest value, 65504.
    let param = half(vec![1.0; 16]);
    let (param, state) = optimizer.step(0.1, param, half(vec![100.0; 16]), None);
    let state = state.unwrap();
    assert_eq!(param.dtype(), DType::F16);
    assert_eq!(state.moment_2.dtype(), DType::F32);
    assert_eq!(values(&state.moment_2), [160000.0]);
    // m_1 = g/‖g‖ = 0.25, w_2 = 1 − 0.1·0.25.
    for value in values(&param) {
        assert!((value - 0.975).abs() < 1e-3, "{value}");
    }
    // A zero gradient in f16: 1/(0 + ε) is beyond f16 but the step stays finite.
    let (param, state) = optimizer.step(0.1, param, half(vec![0.0; 16]), None);
    assert!(values(&param).iter().all(|w| w.is_finite()));
    let moment_1 = values(&state.unwrap().moment_1);
    assert!(moment_1.iter().all(|m| *m == 0.0), "{moment_1:?}");
}

/// A gradient with finite elements whose `‖g‖²` is past f32's range skips the step in f32 on every
/// path (as a NaN does), and is applied in f64, where it fits.
#[test]
fn squared_norm_past_the_dtype_skips_the_step() {
    let devices = [Device::flex(), ndarray()];
    for device in &devices {
        for fused in [true, false] {
            let optimizer = NovoGradConfig::new().with_fused(fused).build();
            for on in [On::f32(device), On::f64(device)] {
                let param = tensor::<1>(&[1.0, -2.0], &[2], on);
                let (param, state) =
                    optimizer.step(0.1, param, tensor(&[0.3, 0.4], &[2], on), None);
                let before = values(&param);
                let huge = tensor(&[1e20, -1e20], &[2], on);
                let (after, state) = optimizer.step(0.1, param, huge, state);
                let state = state.unwrap();
                let steps: Vec<i64> = state.step.to_data().iter::<i64>().collect();
                let label = format!("{device:?} fused={fused} {:?}", on.dtype);
                match on.dtype {
                    DType::F32 => {
                        assert_eq!(values(&after), before, "{label}");
                        assert_eq!(steps, [1], "{label}");
                        assert_eq!(values(&state.moment_2), [0.25], "{label}");
                    }
                    _ => {
                        assert_ne!(values(&after), before, "{label}");
                        assert_eq!(steps, [2], "{label}");
                    }
                }
            }
        }
    }
}

/// The most common group: weight decay on weights, none on biases. With a zero gradient only the
/// decay moves a parameter, so the biases stay bit-for-bit and the weights shrink.
#[test]
fn parameter_group_without_decay_on_biases() {
    let no_decay = ParamGroup::from_any_regexes(vec![r"(^|\.)bias$"]).expect("a valid pattern");
    let mut optimizer = NovoGradConfig::new()
        .with_weight_decay(0.1)
        .init()
        .with_group(
            no_decay,
            NovoGradConfig::new().with_weight_decay(0.0).build(),
            None,
        );
    let model = TwoLayers::new(6, 5, &autodiff());
    let before = model.clone();
    let mut after = model;
    for step in 0..3 {
        let grads = after.grads(step, 0.0);
        after = optimizer.step(0.1, after, grads);
    }
    for (before, after) in [
        (&before.first, &after.first),
        (&before.second, &after.second),
    ] {
        let bias = |linear: &Linear| bits(linear.bias.as_ref().unwrap().val());
        assert_eq!(bias(after), bias(before), "biases keep their values");
        let norm = |linear: &Linear| linear.weight.val().square().sum().into_scalar::<f64>();
        let (from, to) = (norm(before), norm(after));
        assert!(to < from * 0.99, "weights decay: ‖w‖² {from} -> {to}");
    }
}

/// The second moment and step counter are one-element tensors on the parameter's device: no
/// value is read back to the host to take a step, and a record holds them as tensors.
#[test]
fn state_tensors_stay_on_the_parameter_device() {
    for device in [Device::flex(), ndarray()] {
        let optimizer = NovoGradConfig::new().with_amsgrad(true).build();
        let param = Tensor::<2>::ones([2, 3], &device);
        let (_, state) = optimizer.step(0.1, param.clone(), param.ones_like(), None);
        let state = state.unwrap();
        assert_eq!(state.moment_1.device(), device);
        assert_eq!(state.moment_2.dims(), [1]);
        assert_eq!(state.moment_2.device(), device);
        assert_eq!(state.step.device(), device);
        assert_eq!(state.max_moment_2.unwrap().device(), device);
    }
}

/// On a CubeCL device (under Fusion), with `m` stored as `moment_dtype`: training through
/// `ModuleOptimizer` inside `multi_tensor`, with a parameter group without decay on biases (two
/// launch groups; tensors of 3 to 19,200
/// elements: one and several cubes, 1- and 4-wide vectors), with and without amsgrad, gives bit
/// for bit the parameters of the per-tensor fused step, and its record resumes bit for bit. With
/// Burn's norm clipping, the
/// same within 1e-6: Fusion compiles the clipping's reduction into different kernels in
/// different sequences of operations, which round a last bit differently (measured here: up to
/// 193 values 1 ulp apart, with or without `multi_tensor`).
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cpu"))]
pub fn assert_multi_tensor_matches_per_tensor_steps(device: &Device, moment_dtype: MomentDtype) {
    use burn::grad_clipping::GradientClippingConfig;

    let device = device.clone().autodiff();
    // An 8-bit `m` turns the clipping's last-bit differences into a whole quantum where a value
    // sits on a rounding boundary (measured: up to 2.8e-5 in one run of three): it is compared
    // without clipping only, where the runs must agree bit for bit.
    let mut cases = vec![(None, false), (None, true)];
    if moment_dtype != MomentDtype::Int8 {
        cases.push((Some(GradientClippingConfig::Norm(0.5)), false));
    }
    for (clipping, amsgrad) in cases {
        let exact = clipping.is_none();
        let no_decay = || ParamGroup::from_any_regexes(vec![r"(^|\.)bias$"]).expect("a pattern");
        let optimizer = || {
            let config = NovoGradConfig::new()
                .with_weight_decay(1e-2)
                .with_moment_dtype(moment_dtype)
                .with_amsgrad(amsgrad)
                .with_grad_clipping(clipping.clone());
            let no_decay_config = config.clone().with_weight_decay(0.0);
            config
                .init()
                .with_group(no_decay(), no_decay_config.build(), None)
        };
        // Inside `multi_tensor`, after the steps are gathered, a read of another tensor runs what
        // the device has queued so far (under Fusion: the gathered steps' operations, not yet
        // their launch); the parameters read right after `multi_tensor` must be the new ones.
        let together = |mut model: TwoLayers, optimizer: &mut ModuleOptimizer, steps| {
            for step in steps {
                let grads = synthetic_grads(&model, step);
                model = burn_novograd::multi_tensor(|| {
                    let model = optimizer.step(0.01, model, grads);
                    let queued = Tensor::<1>::ones([1], &device).add_scalar(1.0);
                    assert_eq!(queued.into_scalar::<f32>(), 2.0);
                    model
                });
            }
            model
        };
        let model = TwoLayers::new(64, 300, &device);
        let start = param_bits(&model);
        let mut one_by_one = model.clone();
        let mut per_tensor = optimizer();
        for step in 0..20 {
            let grads = synthetic_grads(&one_by_one, step);
            one_by_one = per_tensor.step(0.01, one_by_one, grads);
        }
        let mut multi = optimizer();
        let halfway = together(model, &mut multi, 0..10);
        let bytes = multi.into_bytes().expect("optimizer record");
        let mut from_bytes = optimizer().from_bytes(bytes).unwrap();
        // Both continuations start from parameters that a clone shares (so both first steps
        // take the per-tensor step into new buffers), then step in place together.
        let shared = halfway.clone();
        let resumed = together(halfway.clone(), &mut from_bytes, 10..20);
        let all_together = together(halfway, &mut multi, 10..20);
        drop(shared);
        let all_together_bits = param_bits(&all_together);
        for (name, other) in [("resumed", &resumed), ("per-tensor step", &one_by_one)] {
            let (a, e) = (param_bits(other), &all_together_bits);
            let differ = a.iter().zip(e).filter(|(a, e)| a != e).count();
            let worst = (a.iter().zip(e))
                .map(|(a, e)| {
                    let (a, e) = (f32::from_bits(*a), f32::from_bits(*e));
                    ((a - e).abs() / e.abs().max(1.0)) as f64
                })
                .fold(0.0, f64::max);
            println!(
                "clipping {clipping:?}, amsgrad {amsgrad}: multi-tensor against {name}: \
                 {differ} values differ, \
                 largest difference {worst:e} (relative to max(|value|, 1))"
            );
            match exact {
                true => assert_eq!(differ, 0, "{name}: worst {worst:e}"),
                false => assert!(worst <= 1e-6, "{name}: {differ} differ, worst {worst:e}"),
            }
        }
        assert_ne!(all_together_bits, start, "the steps moved the parameters");
    }
}

/// Gradients of `model`'s parameters that depend only on the step and the parameter's shape:
/// no forward pass, whose matrix products' kernels (autotuned on a GPU) could round differently
/// between two trainings.
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cpu"))]
fn synthetic_grads(model: &TwoLayers, step: usize) -> GradientsParams {
    let mut grads = GradientsParams::new();
    let values = |len: usize, salt: usize| {
        let device = model.first.weight.device();
        Tensor::<1, Int>::arange(0..len as i64, &device)
            .float()
            .mul_scalar(0.37)
            .add_scalar((step * 7 + salt) as f32)
            .sin()
            .mul_scalar(0.1)
            .inner()
    };
    for (salt, linear) in [&model.first, &model.second].into_iter().enumerate() {
        let [inputs, outputs] = linear.weight.dims();
        let weight = values(inputs * outputs, 2 * salt).reshape([inputs, outputs]);
        grads.register(linear.weight.id, weight);
        let bias = linear.bias.as_ref().expect("a bias");
        grads.register(bias.id, values(outputs, 2 * salt + 1));
    }
    grads
}
