//! A first moment stored narrower than f32 (`MomentDtype::Bf16`, `MomentDtype::Int8`): the
//! fused step against the tensor-op step from the same state, and both against the f32
//! trajectory, with a bound derived from the rounding, on Flex here (and on CubeCL's CPU
//! runtime, WGPU and CUDA in `backends`).
//!
//! With the gradients fixed, `v` (hence `s = 1/(√v̂ + ε)`) is the same in both runs: they differ
//! only through the stored `m`. In the moment's decay mode (`InMoment`), with `a` the moment's
//! input scale, `d` the decay and `c_t = 1 − β1^t` or 1, the narrow run's unrounded moment
//! `p̃_t = β1·m̃_{t−1} + a·(g_t·s_t + d·w̃_t)` is stored as `m̃_t` with `|m̃_t − p̃_t| ≤ R_t`, and
//! `w̃_{t+1} = w̃_t − λ·p̃_t/c_t`. In bf16 (unit roundoff `u = 2⁻⁸`, to nearest)
//! `R_t = u·|p̃_t| ≤ u·|m̃_t|/(1 − u)`; in 8 bits (`m̃ = σ·q`, `σ = max|p̃|/127` over the block,
//! `q` to nearest) `R_t = σ/2 = max|m̃_t|/254` over the element's block, times `1 + 2⁻²⁰` for the
//! f32 roundings of `σ`, `1/σ` and `σ·q`. So, element by element, `|m̃_t − m_t| ≤ E_t` and
//! `|w̃_t − w_t| ≤ W_t` with
//!
//! ```text
//! P_t = β1·E_{t−1} + a·d·W_t      W_{t+1} = W_t + λ·P_t/c_t      E_t = P_t + R_t
//! ```
//!
//! from `E_0 = W_1 = 0`, plus f32's own rounding, which differs between the runs by at most a few
//! ulps of `w` per step: `t·2⁻²¹·max|w|` is allowed for it.

use burn::optim::Optimizer;
use burn::tensor::{Device, Tensor};
use burn_novograd::{MomentDtype, NovoGradConfig, NovoGradState};
use novograd_tests::{On, Reference, max_relative_error, tensor, values};

const STEPS: usize = 100;
const LR: f64 = 0.01;
/// bf16's unit roundoff: 8 significant bits, rounded to nearest.
const UNIT_ROUNDOFF: f64 = 1.0 / 256.0;

/// `R_t` of the module's docs for every element of a stored moment `m̃_t`.
fn rounding_bound(moment_dtype: MomentDtype, stored: &[f64]) -> Vec<f64> {
    match moment_dtype {
        MomentDtype::Bf16 => stored
            .iter()
            .map(|m| UNIT_ROUNDOFF * m.abs() / (1.0 - UNIT_ROUNDOFF))
            .collect(),
        MomentDtype::Int8 => {
            // The block the optimizer picks: the largest of 128, 64, 32, 16 that divides the
            // count.
            let block = [128, 64, 32, 16]
                .into_iter()
                .find(|block| stored.len().is_multiple_of(*block))
                .expect("a quantised length");
            stored
                .chunks(block)
                .flat_map(|block| {
                    let largest = block.iter().fold(0.0f64, |max, m| max.max(m.abs()));
                    vec![largest / 254.0 * (1.0 + 2f64.powi(-20)); block.len()]
                })
                .collect()
        }
        MomentDtype::Param => vec![0.0; stored.len()],
    }
}

/// Gradients of changing scale, the same for every run.
fn gradients(len: usize) -> Vec<Vec<f64>> {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    (0..STEPS)
        .map(|step| {
            let scale = 10f64.powi(step as i32 % 5 - 2);
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ((seed >> 11) as f64 / (1u64 << 52) as f64 - 1.0) * scale
                })
                .collect()
        })
        .collect()
}

/// The parameter after every step, and the stored first moment after every step.
fn run(
    device: &Device,
    config: &NovoGradConfig,
    initial: &[f64],
    grads: &[Vec<f64>],
) -> Vec<[Vec<f64>; 2]> {
    let on = On::f32(device);
    let shape = [initial.len()];
    let optimizer = config.build();
    let mut param: Tensor<1> = tensor(initial, &shape, on);
    let mut state: Option<NovoGradState<1>> = None;
    grads
        .iter()
        .map(|grad| {
            let grad = tensor(grad, &shape, on);
            (param, state) = optimizer.step(LR, param.clone(), grad, state.take());
            let moment_1 = state.as_ref().expect("a state").moment_1.clone();
            [values(&param), values(&moment_1.dequantize())]
        })
        .collect()
}

#[test]
fn bf16_moment_stays_within_the_rounding_bound_of_the_f32_trajectory() {
    assert_narrow_moment_stays_within_the_rounding_bound(&Device::flex(), MomentDtype::Bf16);
}

#[test]
fn int8_moment_stays_within_the_quantisation_bound_of_the_f32_trajectory() {
    assert_narrow_moment_stays_within_the_rounding_bound(&Device::flex(), MomentDtype::Int8);
}

/// On `device`, the runs with `m` in `moment_dtype` (fused and tensor-op steps) stay within the
/// bound of the module's docs from the f32 tensor-op run, and differ from it.
pub fn assert_narrow_moment_stays_within_the_rounding_bound(
    device: &Device,
    moment_dtype: MomentDtype,
) {
    // Above the fused CPU step's parallel split; 8-bit blocks of 32 (300,000 = 32·9,375).
    let len = 300_000;
    let grads = gradients(len);
    let initial: Vec<f64> = gradients(len)[1].iter().map(|x| x * 10.0).collect();
    let configs = [
        NovoGradConfig::new(),
        NovoGradConfig::new()
            .with_weight_decay(0.1)
            .with_grad_averaging(true)
            .with_bias_correction(true),
    ];
    for config in configs {
        let (beta_1, decay) = (f64::from(config.beta_1), f64::from(config.weight_decay));
        let input_scale = match config.grad_averaging {
            true => 1.0 - beta_1,
            false => 1.0,
        };
        let reference = run(device, &config.clone().with_fused(false), &initial, &grads);
        for fused in [true, false] {
            let narrow = config
                .clone()
                .with_moment_dtype(moment_dtype)
                .with_fused(fused);
            let trajectory = run(device, &narrow, &initial, &grads);
            let mut moment_bound = vec![0.0f64; len];
            let mut param_bound = vec![0.0f64; len];
            let mut worst = 0.0f64;
            for (step, ([param, moment], [expected, _])) in
                trajectory.iter().zip(&reference).enumerate()
            {
                let t = (step + 1) as f64;
                let correction = match config.bias_correction {
                    true => 1.0 - beta_1.powf(t),
                    false => 1.0,
                };
                let largest = expected.iter().fold(0.0f64, |max, w| max.max(w.abs()));
                let f32_slack = t * 2f64.powi(-21) * largest;
                let rounding = rounding_bound(moment_dtype, moment);
                for index in 0..len {
                    let unrounded =
                        beta_1 * moment_bound[index] + input_scale * decay * param_bound[index];
                    param_bound[index] += LR * unrounded / correction;
                    moment_bound[index] = unrounded + rounding[index];
                    let error = (param[index] - expected[index]).abs();
                    let allowed = param_bound[index] + f32_slack;
                    assert!(
                        error <= allowed,
                        "{config:?} fused {fused}: step {} element {index}: |Δw| = {error:e} > \
                         bound {allowed:e}",
                        step + 1
                    );
                    worst = worst.max(error / allowed);
                }
            }
            // The bound is met, and not by a wide margin: the narrow storage shows.
            println!(
                "{moment_dtype:?} moment (fused {fused}, decay {decay}): largest |Δw| / bound = \
                 {worst:.3}"
            );
            assert!(
                worst > 0.0,
                "the {moment_dtype:?} run equals the f32 run: nothing is narrowed"
            );
        }
    }
}

/// From the same parameter and state, one fused step and one tensor-op step, for every option
/// of the reference cases, on a tensor above the parallel split and a small 2-D one, through
/// gradients of changing scale, a NaN and a finite gradient whose `‖g‖²` overflows f32. Both
/// compute `m_t` in f32 from the same stored `m_{t−1}` and differ there only by f32 rounding
/// (the order of `‖g‖²`'s sum, the scalars in f64 or f32): `w` within 1e-6 (relative, as the f32
/// paths), `v` within 1e-6, the step counter equal, and each stored `m` element within one bf16
/// ulp (`2⁻⁷·|m|`, where the two f32 values straddle a rounding boundary) plus that f32 noise.
#[test]
fn fused_step_with_a_bf16_moment_matches_the_tensor_op_step_from_the_same_state() {
    assert_narrow_fused_step_matches_the_tensor_op_step(&Device::flex(), MomentDtype::Bf16);
}

/// The same with an 8-bit `m` (blocks of 32, 128 and 16 for these shapes): each stored element
/// within one quantum `σ = max|m|/127` of its block (where the two f32 values straddle a
/// rounding boundary), `w` as with bf16.
#[test]
fn fused_step_with_an_int8_moment_matches_the_tensor_op_step_from_the_same_state() {
    assert_narrow_fused_step_matches_the_tensor_op_step(&Device::flex(), MomentDtype::Int8);
}

/// The tests above on `device`.
pub fn assert_narrow_fused_step_matches_the_tensor_op_step(
    device: &Device,
    moment_dtype: MomentDtype,
) {
    let on = On::f32(device);
    let mut worst_param = 0.0f64;
    let (mut moments, mut one_ulp_apart) = (0usize, 0usize);
    for case in &Reference::load().cases {
        let config = NovoGradConfig::from(case.config).with_moment_dtype(moment_dtype);
        let [fused, tensor_ops] =
            [true, false].map(|fused| config.clone().with_fused(fused).build());
        // 8-bit blocks of 32, 128 and 16; the first two above the fused CPU step's split.
        for shape in [vec![300_000], vec![2_344, 128], vec![48, 17]] {
            let len: usize = shape.iter().product();
            let mut grads = gradients(len).into_iter().take(30).collect::<Vec<_>>();
            grads[5][len / 2] = f64::NAN;
            grads[10].iter_mut().for_each(|g| *g = g.signum() * 1e20);
            let initial: Vec<f64> = gradients(len)[3].iter().map(|x| x * 10.0).collect();
            let mut param: Tensor<2> = tensor(&initial, &[1, len], on);
            let mut state = None;
            for grad in &grads {
                let grad: Tensor<2> = tensor(grad, &[1, len], on);
                let (param_ops, state_ops) =
                    tensor_ops.step(LR, param.clone(), grad.clone(), state.clone());
                (param, state) = fused.step(LR, param, grad, state);
                let (state, state_ops) = (state.clone().unwrap(), state_ops.unwrap());
                let rows = |tensor: &Tensor<2>| vec![vec![values(tensor)]];
                let error = max_relative_error(&rows(&param), &rows(&param_ops));
                assert!(error <= 1e-6, "{}: w differs by {error:e}", case.name);
                worst_param = worst_param.max(error);
                let scalar = |tensor: &Tensor<1>| vec![vec![values(tensor)]];
                let v_error =
                    max_relative_error(&scalar(&state.moment_2), &scalar(&state_ops.moment_2));
                assert!(v_error <= 1e-6, "{}: v differs by {v_error:e}", case.name);
                assert_eq!(
                    values_int(&state.step),
                    values_int(&state_ops.step),
                    "{}",
                    case.name
                );
                let stored = |moment: &Tensor<2>| values(&moment.clone().dequantize());
                let (moment, moment_ops) = (stored(&state.moment_1), stored(&state_ops.moment_1));
                let scale = moment_ops.iter().fold(0.0f64, |max, m| max.max(m.abs()));
                // One step of the storage: a bf16 ulp, or an 8-bit quantum (2·R_t of the module's
                // docs), of the larger of the two.
                let one_step = rounding_bound(moment_dtype, &moment)
                    .into_iter()
                    .zip(rounding_bound(moment_dtype, &moment_ops))
                    .map(|(a, b)| 2.0 * a.max(b));
                for ((a, b), one_step) in moment.iter().zip(&moment_ops).zip(one_step) {
                    let allowed = one_step + 1e-6 * scale;
                    assert!((a - b).abs() <= allowed, "{}: m {a} vs {b}", case.name);
                    moments += 1;
                    one_ulp_apart += usize::from(a != b);
                }
            }
        }
    }
    println!(
        "{moment_dtype:?} moment, fused vs tensor ops: w within {worst_param:.2e}; \
         {one_ulp_apart} of {moments} stored m elements differ, each by at most one step of the \
         storage"
    );
    // The fused step sums `‖g‖²` in another order: equal results everywhere would mean that
    // the tensor-op step ran on both sides.
    assert!(
        worst_param > 0.0 || one_ulp_apart > 0,
        "the fused step gave the tensor-op step's every bit: was it taken?"
    );
}

fn values_int(tensor: &Tensor<1, burn::tensor::Int>) -> Vec<i64> {
    tensor.to_data().iter::<i64>().collect()
}

/// A skipped step (a NaN in `g`) leaves an 8-bit `m` as it was, codes and scales: the step
/// re-quantises the dequantised old values, which gives back the same bytes.
#[test]
fn skipped_step_keeps_an_int8_moment_bit_for_bit() {
    let device = Device::flex();
    let on = On::f32(&device);
    let optimizer = NovoGradConfig::new()
        .with_moment_dtype(MomentDtype::Int8)
        .build();
    let len = 64 * 50;
    let mut grads = gradients(len).into_iter().take(12).collect::<Vec<_>>();
    let mut param: Tensor<2> = tensor(&grads[11], &[40, 80], on);
    grads[10][7] = f64::NAN;
    let mut state = None;
    for (step, grad) in grads.iter().take(11).enumerate() {
        let before = state
            .as_ref()
            .map(|state: &NovoGradState<2>| (state.moment_1.to_data(), values(&param)));
        let grad = tensor(grad, &[40, 80], on);
        (param, state) = optimizer.step(LR, param.clone(), grad, state.take());
        let moment_1 = &state.as_ref().expect("a state").moment_1;
        assert!(matches!(moment_1.dtype(), burn::tensor::DType::QFloat(_)));
        if step == 10 {
            let (moment_before, param_before) = before.expect("earlier steps");
            assert_eq!(moment_1.to_data().as_bytes(), moment_before.as_bytes());
            assert_eq!(values(&param), param_before);
        }
    }
}

/// Where an 8-bit `m` is stored: on Flex a quantised tensor for f32 parameters whose element
/// count a block size divides, else the parameter's dtype (an odd count, an empty tensor, an
/// f64 parameter, and every tensor on ndarray, whose block-wise quantisation fails on rank-4
/// tensors).
#[test]
fn int8_moment_storage_by_tensor_and_backend() {
    let optimizer = NovoGradConfig::new()
        .with_moment_dtype(MomentDtype::Int8)
        .build();
    let stored = |device: &Device, shape: [usize; 4], dtype: burn::tensor::DType| {
        let param = Tensor::<4>::ones(shape, (device, dtype));
        let (_, state) = optimizer.step(LR, param.clone(), param, None);
        state.expect("a state").moment_1.dtype()
    };
    let quantised = |dtype| matches!(dtype, burn::tensor::DType::QFloat(_));
    let (f32, f64) = (burn::tensor::DType::F32, burn::tensor::DType::F64);
    let flex = Device::flex();
    assert!(quantised(stored(&flex, [8, 4, 3, 3], f32)));
    assert_eq!(stored(&flex, [5, 1, 3, 3], f32), f32);
    assert_eq!(stored(&flex, [0, 4, 3, 3], f32), f32);
    assert_eq!(stored(&flex, [8, 4, 3, 3], f64), f64);
    assert_eq!(stored(&novograd_tests::ndarray(), [8, 4, 3, 3], f32), f32);
}
