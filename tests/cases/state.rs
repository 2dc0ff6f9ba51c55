//! Optimizer state: its size, records that resume bit-for-bit, device moves and half precision.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use burn_novograd::{NovoGrad, NovoGradConfig, NovoGradState, WeightDecayMode};

type B = Autodiff<NdArray>;

#[derive(Module, Debug)]
struct TwoLayers<B: Backend> {
    first: Linear<B>,
    second: Linear<B>,
}

impl<B: Backend> TwoLayers<B> {
    fn new(inputs: usize, hidden: usize, device: &B::Device) -> Self {
        Self {
            first: LinearConfig::new(inputs, hidden).init(device),
            second: LinearConfig::new(hidden, 3).init(device),
        }
    }

    /// Gradients of a loss that changes with the step, so every step differs.
    fn grads(&self, step: usize, device: &B::Device) -> GradientsParams
    where
        B: AutodiffBackend,
    {
        let inputs = self.first.weight.dims()[0];
        let x = Tensor::<B, 1, Int>::arange(0..(4 * inputs) as i64, device)
            .float()
            .reshape([4, inputs])
            .div_scalar((4 * inputs) as f32)
            .sin()
            .mul_scalar(1.0 + step as f32 * 0.1);
        let output = self.second.forward(self.first.forward(x).tanh());
        let loss = (output - 0.5).powi_scalar(2).mean();
        GradientsParams::from_grads(loss.backward(), self)
    }
}

fn train<O: Optimizer<TwoLayers<B>, B>>(
    mut model: TwoLayers<B>,
    optimizer: &mut O,
    steps: std::ops::Range<usize>,
) -> TwoLayers<B> {
    let device = Default::default();
    for step in steps {
        let grads = model.grads(step, &device);
        model = optimizer.step(0.01, model, grads);
    }
    model
}

fn record_bytes<O: Optimizer<TwoLayers<B>, B>>(optimizer: &O) -> usize {
    BinBytesRecorder::<FullPrecisionSettings>::default()
        .record(optimizer.to_record(), ())
        .expect("optimizer record")
        .len()
}

#[test]
fn state_is_half_of_adamw() {
    let device = Default::default();
    let model = TwoLayers::<B>::new(256, 256, &device);
    let mut novograd = NovoGradConfig::new().init();
    let mut adamw = AdamWConfig::new().init();
    train(model.clone(), &mut novograd, 0..2);
    train(model, &mut adamw, 0..2);
    let (ours, theirs) = (record_bytes(&novograd), record_bytes(&adamw));
    let ratio = ours as f64 / theirs as f64;
    println!("optimizer record: NovoGrad {ours} bytes, AdamW {theirs} bytes, ratio {ratio:.4}");
    assert!(ratio <= 0.51, "NovoGrad state is {ratio:.4} of AdamW's");
}

fn param_bits(model: &TwoLayers<B>) -> Vec<u32> {
    let record = model.clone().into_record();
    [record.first.weight.val(), record.second.weight.val()]
        .into_iter()
        .flat_map(|tensor| {
            tensor
                .into_data()
                .iter::<f32>()
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn records_resume_training_bit_for_bit() {
    let configs = [
        NovoGradConfig::new().with_weight_decay(1e-3),
        NovoGradConfig::new()
            .with_amsgrad(true)
            .with_bias_correction(true)
            .with_grad_averaging(true)
            .with_weight_decay(1e-2)
            .with_weight_decay_mode(WeightDecayMode::OnUpdate),
    ];
    let device = Default::default();
    let directory = std::env::temp_dir().join(format!("novograd-resume-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    for (index, config) in configs.iter().enumerate() {
        // `fork` initialises the parameters: Burn initialises them lazily, and a clone of an
        // uninitialised module would draw its own random values.
        let model = TwoLayers::<B>::new(6, 5, &device).fork(&device);
        let uninterrupted = train(model.clone(), &mut config.init(), 0..20);

        let mut optimizer = config.init();
        let halfway = train(model, &mut optimizer, 0..10);
        let (model_file, optimizer_file) = (
            directory.join(format!("model-{index}")),
            directory.join(format!("optimizer-{index}")),
        );
        recorder
            .record(halfway.clone().into_record(), model_file.clone())
            .unwrap();
        recorder
            .record(optimizer.to_record(), optimizer_file.clone())
            .unwrap();
        drop((halfway, optimizer));

        let model = TwoLayers::<B>::new(6, 5, &device)
            .load_record(recorder.load(model_file, &device).unwrap());
        let mut optimizer = config
            .init()
            .load_record(recorder.load(optimizer_file, &device).unwrap());
        let resumed = train(model, &mut optimizer, 10..20);

        assert_eq!(
            param_bits(&resumed),
            param_bits(&uninterrupted),
            "config {index}"
        );
    }
    std::fs::remove_dir_all(directory).ok();
}

/// Every state tensor's values, in order.
fn state_values<B: Backend>(state: &NovoGradState<B, 2>) -> Vec<Vec<f64>> {
    let floats = |tensor: &Tensor<B, 1>| tensor.to_data().iter::<f64>().collect::<Vec<_>>();
    let mut values = vec![
        state.moment_1.to_data().iter::<f64>().collect(),
        floats(&state.moment_2),
        state.step.to_data().iter::<f64>().collect(),
    ];
    values.extend(state.max_moment_2.as_ref().map(floats));
    values
}

/// Runs three steps on `from`, moves the state to `to` with `to_device`, and runs three more
/// there; asserts every state tensor is on `to` and the result equals staying on `from`.
fn assert_state_moves<B: Backend>(from: &B::Device, to: &B::Device) {
    let optimizer: NovoGrad = NovoGradConfig::new()
        .with_amsgrad(true)
        .with_bias_correction(true)
        .build();
    let grad = |step: usize, device: &B::Device| {
        Tensor::<B, 1, Int>::arange(0..12, device)
            .float()
            .reshape([3, 4])
            .mul_scalar(step as f32 + 1.0)
            .cos()
    };
    let run = |device: &B::Device, steps: std::ops::Range<usize>, param, state| {
        steps.fold((param, state), |(param, state), step| {
            optimizer.step(0.1, param, grad(step, device), state)
        })
    };
    let param = Tensor::<B, 2>::ones([3, 4], from);
    let (param, state) = run(from, 0..3, param, None);
    let (stayed, stayed_state) = run(from, 3..6, param.clone(), state.clone());

    let moved_state = <NovoGrad as SimpleOptimizer<B>>::to_device(state.unwrap(), to);
    assert_eq!(moved_state.moment_1.device(), *to);
    assert_eq!(moved_state.moment_2.device(), *to);
    assert_eq!(moved_state.step.device(), *to);
    assert_eq!(
        moved_state.max_moment_2.as_ref().map(|max| max.device()),
        Some(to.clone())
    );
    let (moved, moved_state) = run(to, 3..6, param.to_device(to), Some(moved_state));

    assert_eq!(moved.into_data(), stayed.into_data());
    assert_eq!(
        state_values(&moved_state.unwrap()),
        state_values(&stayed_state.unwrap())
    );
}

/// ndarray has one device, so this checks that every state tensor goes through `to_device` and
/// keeps its values. A move between two devices could not be exercised with Burn 0.21 on a CPU
/// machine: cubecl 0.10 leaves copies between wgpu devices unimplemented (`comm_init`), and the
/// router backend panics moving a tensor between its backends.
#[test]
fn to_device_keeps_every_state_tensor() {
    assert_state_moves::<NdArray>(&Default::default(), &Default::default());
}

#[test]
fn half_precision_norm_does_not_overflow() {
    let device = Default::default();
    let half = |values: Vec<f32>| {
        let size = values.len();
        Tensor::<Flex, 1>::from_data(TensorData::new(values, [size]), (&device, DType::F16))
    };
    let optimizer = NovoGradConfig::new().build();
    // ‖g‖ = 400: ‖g‖² = 160000 is beyond f16's largest value, 65504.
    let param = half(vec![1.0; 16]);
    let (param, state) = optimizer.step(0.1, param, half(vec![100.0; 16]), None);
    let state = state.unwrap();
    assert_eq!(param.dtype(), DType::F16);
    assert_eq!(state.moment_2.dtype(), DType::F32);
    assert_eq!(
        state.moment_2.to_data().iter::<f64>().collect::<Vec<_>>(),
        [160000.0]
    );
    // m_1 = g/‖g‖ = 0.25, w_2 = 1 − 0.1·0.25.
    for value in param.to_data().iter::<f64>() {
        assert!((value - 0.975).abs() < 1e-3, "{value}");
    }
    // A zero gradient in f16: 1/(0 + ε) is beyond f16 but the step stays finite.
    let (param, state) = optimizer.step(0.1, param, half(vec![0.0; 16]), None);
    let moment_1: Vec<f64> = state.unwrap().moment_1.to_data().iter::<f64>().collect();
    assert!(param.to_data().iter::<f64>().all(f64::is_finite));
    assert!(moment_1.iter().all(|m| *m == 0.0), "{moment_1:?}");
    assert_eq!(FloatDType::from(param.dtype()), FloatDType::F16);
}
