//! The fused step on Burn's CubeCL backends (`CubeBackend` on WGPU or CUDA) and on their Fusion
//! wrapper (what `burn::backend::Wgpu` and `Cuda` are with Burn's default features): two kernel
//! launches per tensor ([`kernel`]), the step decided on the device, no host read. `w` and `m`
//! are updated in place when their buffers are uniquely owned. f32 parameters only; other
//! dtypes take the tensor-op step.
//!
//! On Fusion the step is one custom operation in the tensor's stream: Fusion runs it in order
//! with the operations around it, on the CubeBackend tensors it holds.

mod kernel;

use core::any::TypeId;
use core::marker::PhantomData;

use burn::optim::LearningRate;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, empty_device_dtype};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};
use cubecl::prelude::*;

use super::Inputs;
use super::primitive::{from_float, from_int, into_float, into_int};
use crate::config::WeightDecayMode;
use crate::optimizer::{NovoGrad, NovoGradState};
use kernel::{CUBE_SIZE, HyperLaunch};

/// Most cubes of the norm kernel: every cube of the update kernel adds their partial sums, one
/// per unit.
const MAX_PARTIALS: usize = CUBE_SIZE as usize;
/// Vectors per unit of the norm kernel before it uses more cubes.
const NORM_VECTORS_PER_UNIT: usize = 8;
/// Most cubes of the update kernel; its units loop over the rest of the tensor.
const MAX_UPDATE_CUBES: usize = 4096;
/// Vectors per unit of the update kernel before it uses more cubes: fewer cubes, fewer
/// repeated sums of the partial sums.
const UPDATE_VECTORS_PER_UNIT: usize = 4;

/// The fused step when `B`'s tensors are CubeCL tensors of runtime `R` (directly or through
/// Fusion) and the parameter is f32.
pub(super) fn step<R: CubeRuntime, B: Backend, const D: usize>(
    novograd: &NovoGrad,
    lr: LearningRate,
    inputs: Inputs<B, D>,
) -> Result<(Tensor<B, D>, NovoGradState<B, D>), Inputs<B, D>> {
    let (param, grad, state) = &inputs;
    let dtypes = [param, grad, &state.moment_1].map(Tensor::dtype);
    if dtypes != [DType::F32; 3] || state.moment_2.dtype() != DType::F32 {
        return Err(inputs);
    }
    let is = |primitive: TypeId| {
        TypeId::of::<B::FloatTensorPrimitive>() == primitive
            && TypeId::of::<B::IntTensorPrimitive>() == primitive
    };
    if is(TypeId::of::<CubeTensor<R>>()) {
        let (parts, grad) = Parts::of(inputs);
        Ok(launch::<R>(novograd, lr, parts, grad).into_step())
    } else if is(TypeId::of::<FusionTensor<FusionCubeRuntime<R>>>()) {
        let (parts, grad) = Parts::of(inputs);
        Ok(register::<R>(novograd, lr, parts, grad).into_step())
    } else {
        Err(inputs)
    }
}

/// The parameter and its state as backend primitives `P`.
struct Parts<P> {
    param: P,
    moment_1: P,
    moment_2: P,
    max_moment_2: Option<P>,
    step: P,
}

impl<P: 'static> Parts<P> {
    /// The primitives of `inputs` (and the gradient's), on a backend checked to use `P` for
    /// floats and ints.
    fn of<B: Backend, const D: usize>((param, grad, state): Inputs<B, D>) -> (Self, P) {
        let parts = Parts {
            param: into_float(param),
            moment_1: into_float(state.moment_1),
            moment_2: into_float(state.moment_2),
            max_moment_2: state.max_moment_2.map(into_float),
            step: into_int(state.step),
        };
        (parts, into_float(grad))
    }

    /// The new parameter and state.
    fn into_step<B: Backend, const D: usize>(self) -> (Tensor<B, D>, NovoGradState<B, D>) {
        let state = NovoGradState {
            moment_1: from_float(self.moment_1),
            moment_2: from_float(self.moment_2),
            max_moment_2: self.max_moment_2.map(from_float),
            step: from_int(self.step),
        };
        (from_float(self.param), state)
    }
}

/// Launches both kernels of one tensor's step. Amsgrad follows the state, as in the
/// tensor-op step: a running maximum is kept when the state has one.
fn launch<R: CubeRuntime>(
    novograd: &NovoGrad,
    lr: LearningRate,
    parts: Parts<CubeTensor<R>>,
    grad: CubeTensor<R>,
) -> Parts<CubeTensor<R>> {
    let grad = into_contiguous(grad);
    let (param, moment_1) = (
        into_contiguous(parts.param),
        into_contiguous(parts.moment_1),
    );
    let (client, device) = (param.client.clone(), param.device.clone());
    let len = param.meta.num_elements();
    // Elements per vector: the widest the device reads well that divides the tensor.
    let vector_size = (client.io_optimized_vector_sizes(size_of::<f32>()))
        .filter(|size| len % size == 0)
        .max()
        .unwrap_or(1);
    let vectors = len / vector_size;
    let cubes = |per_unit: usize, most: usize| {
        vectors
            .div_ceil(CUBE_SIZE as usize * per_unit)
            .clamp(1, most) as u32
    };
    let cube_dim = CubeDim::new_1d(CUBE_SIZE);

    let partial_count = cubes(NORM_VECTORS_PER_UNIT, MAX_PARTIALS);
    let partials = empty_device_dtype(
        client.clone(),
        device.clone(),
        Shape::new([partial_count as usize]),
        DType::F32,
    );
    kernel::grad_norm_partials::launch::<R>(
        &client,
        CubeCount::Static(partial_count, 1, 1),
        cube_dim,
        vector_size,
        grad.clone().into_tensor_arg(),
        partials.clone().into_tensor_arg(),
    );

    // `w` and `m` in place (outputs aliasing inputs 0 and 1) when their buffers are unique.
    let (param_out, param_arg) = output(&param, 0);
    let (moment_1_out, moment_1_arg) = output(&moment_1, 1);
    let one = |dtype| empty_device_dtype(client.clone(), device.clone(), Shape::new([1]), dtype);
    let amsgrad = parts.max_moment_2.is_some();
    let stepped = Parts {
        param: param_out,
        moment_1: moment_1_out,
        moment_2: one(DType::F32),
        max_moment_2: amsgrad.then(|| one(DType::F32)),
        step: one(parts.step.dtype),
    };
    // Without amsgrad, the running maximum's slots are `v` (read) and a scratch element.
    let max_moment_2 = parts.max_moment_2.unwrap_or_else(|| parts.moment_2.clone());
    let max_moment_2_out = stepped
        .max_moment_2
        .clone()
        .unwrap_or_else(|| one(DType::F32));
    kernel::update::launch::<R>(
        &client,
        CubeCount::Static(cubes(UPDATE_VECTORS_PER_UNIT, MAX_UPDATE_CUBES), 1, 1),
        cube_dim,
        vector_size,
        param.clone().into_tensor_arg(),
        moment_1.clone().into_tensor_arg(),
        grad.into_tensor_arg(),
        partials.into_tensor_arg(),
        parts.moment_2.into_tensor_arg(),
        max_moment_2.into_tensor_arg(),
        parts.step.clone().into_tensor_arg(),
        param_arg,
        moment_1_arg,
        stepped.moment_2.clone().into_tensor_arg(),
        max_moment_2_out.into_tensor_arg(),
        stepped.step.clone().into_tensor_arg(),
        HyperLaunch::new(
            lr as f32,
            novograd.beta_1,
            novograd.beta_2,
            novograd.epsilon,
            novograd.epsilon_root,
            novograd.weight_decay,
            novograd.moment_input_scale,
        ),
        amsgrad,
        novograd.bias_correction,
        novograd.weight_decay_mode == WeightDecayMode::OnUpdate,
        parts.step.dtype.into(),
    );
    stepped
}

/// The output for input `tensor` (the kernel's input number `position`) and its kernel
/// argument: `tensor` itself, aliased, when its buffer is unique, else a new buffer.
fn output<R: CubeRuntime>(
    tensor: &CubeTensor<R>,
    position: usize,
) -> (CubeTensor<R>, TensorArg<R>) {
    match tensor.can_mut() {
        true => (tensor.clone(), tensor.as_tensor_alias(position)),
        false => {
            let out = empty_device_contiguous_dtype(
                tensor.client.clone(),
                tensor.device.clone(),
                tensor.meta.shape().clone(),
                tensor.dtype,
            );
            (out.clone(), out.into_tensor_arg())
        }
    }
}

/// The step as one custom operation in Fusion's stream.
fn register<R: CubeRuntime>(
    novograd: &NovoGrad,
    lr: LearningRate,
    parts: Parts<FusionTensor<FusionCubeRuntime<R>>>,
    grad: FusionTensor<FusionCubeRuntime<R>>,
) -> Parts<FusionTensor<FusionCubeRuntime<R>>> {
    let client = parts.param.client.clone();
    let amsgrad = parts.max_moment_2.is_some();
    let mut inputs = vec![parts.param, grad, parts.moment_1, parts.moment_2];
    inputs.extend(parts.max_moment_2);
    inputs.push(parts.step);
    let streams = OperationStreams::with_inputs(&inputs);
    // Outputs are the inputs' shapes and dtypes, less the gradient.
    let outputs: Vec<_> = (inputs.iter().enumerate())
        .filter(|(index, _)| *index != 1)
        .map(|(_, input)| {
            TensorIr::uninit(
                client.create_empty_handle(),
                input.shape.clone(),
                input.dtype,
            )
        })
        .collect();
    let inputs: Vec<_> = inputs.into_iter().map(FusionTensor::into_ir).collect();
    let desc = CustomOpIr::new("novograd_step", &inputs, &outputs);
    let op = FusedStep::<R> {
        desc: desc.clone(),
        novograd: novograd.clone(),
        lr,
        runtime: PhantomData,
    };
    let mut outputs = client
        .register(streams, OperationIr::Custom(desc), op)
        .into_iter();
    let mut next = || outputs.next().expect("one output per state tensor");
    Parts {
        param: next(),
        moment_1: next(),
        moment_2: next(),
        max_moment_2: amsgrad.then(&mut next),
        step: next(),
    }
}

/// The custom operation: [`launch`] on the CubeBackend tensors behind Fusion's.
#[derive(Debug)]
struct FusedStep<R> {
    desc: CustomOpIr,
    novograd: NovoGrad,
    lr: LearningRate,
    runtime: PhantomData<R>,
}

/// The CubeBackend whose tensors Fusion holds; its element types do not matter here, since
/// every handle carries its dtype.
type Inner<R> = CubeBackend<R, f32, i32, u32>;

impl<R: CubeRuntime> Operation<FusionCubeRuntime<R>> for FusedStep<R> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<FusionCubeRuntime<R> as FusionRuntime>::FusionHandle>,
    ) {
        let (inputs, outputs) = (&self.desc.inputs, &self.desc.outputs);
        // Inputs: w, g, m, v, [max v], step; outputs the same less g.
        let amsgrad = inputs.len() == 6;
        let mut float = |index: usize| handles.get_float_tensor::<Inner<R>>(&inputs[index]);
        let (param, grad, moment_1, moment_2) = (float(0), float(1), float(2), float(3));
        let max_moment_2 = amsgrad.then(|| float(4));
        let parts = Parts {
            param,
            moment_1,
            moment_2,
            max_moment_2,
            step: handles.get_int_tensor::<Inner<R>>(inputs.last().expect("the step counter")),
        };
        let stepped = launch(&self.novograd, self.lr, parts, grad);
        let floats = [stepped.param, stepped.moment_1, stepped.moment_2];
        let floats = floats.into_iter().chain(stepped.max_moment_2);
        for (output, tensor) in outputs.iter().zip(floats) {
            handles.register_float_tensor::<Inner<R>>(&output.id, tensor);
        }
        let step = outputs.last().expect("the step counter");
        handles.register_int_tensor::<Inner<R>>(&step.id, stepped.step);
    }
}
