//! The fused step on Burn's CubeCL backend, for WGPU, CUDA and CubeCL's CPU runtime: one kernel
//! launch per tensor that one cube covers, three per larger tensor ([`kernel`]), or three per
//! chunk of tensors inside `multi_tensor` ([`multi`]); the step decided on the device, no host
//! read, no buffer allocated per step. `w`, `m` and the state's one-element tensors are updated
//! in place when their buffers are uniquely owned. f32 parameters only, with `m` stored in f32,
//! bf16 (read and written as bf16 by the kernels) or 8 bits (codes and scales read and written
//! by [`kernel::update_int8`], always after the two norm kernels, never gathered); other dtypes
//! take the tensor-op step.
//!
//! Burn's `Cube` backend is plain `CubeBackend`, or `Fusion<CubeBackend>` when Burn's Fusion is
//! on, build-wide. On Fusion (crate feature `fusion`) the step is one custom operation in the
//! tensor's stream: Fusion runs it in order with the operations around it, on the
//! `CubeBackend` tensors it holds, which are still unique when the step owns the last handle.
//!
//! Why a downcast of each tensor plus a hand-written custom operation, not Burn's
//! `#[backend_extension]` (which generates the same `CustomOpIr` and operation): the macro's
//! dispatch panics on a backend it does not list, where this step must hand the inputs back to
//! the tensor-op step; it selects on the `Cube` backend, not on the device's runtime (WGPU,
//! CUDA, or one without these kernels); its operations take neither rank-generic tensors nor an
//! optional input (amsgrad's maximum); and with its Fusion selector off while another crate
//! turns Burn's Fusion on, it fails to compile, where a type check at run time falls back.

#[cfg(feature = "fusion")]
mod fusion;
mod kernel;
mod multi;
#[cfg(all(test, feature = "wgpu"))]
mod tests;

use core::any::{Any, TypeId};

use burn::backend::{
    BackendTensor, BackendTypes, Cube, DispatchDevice, DispatchTensorKind, RuntimeId,
};
use burn::optim::LearningRate;
use burn::tensor::quantization::QuantStore;
use burn::tensor::{DType, Device, DispatchTensor, Int, Shape, StreamId, Tensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::empty_qtensor_optimized;
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, empty_device_dtype};
use burn_cubecl::tensor::CubeTensor;
use cubecl::client::Client;
use cubecl::ir::{ElemType, FloatKind, IntKind};
use cubecl::prelude::*;

use super::{Inputs, int8_blocks};
use crate::config::WeightDecayMode;
use crate::hyper::Hyper;
use crate::state::NovoGradState;
use kernel::{CUBE_SIZE, HyperLaunch};
pub(crate) use multi::{multi_tensor, tensors_per_launch};

/// Most cubes of the norm kernel: every cube of the update kernel adds their partial sums, one
/// per unit. A tensor that one cube of the norm kernel covers takes the one-kernel step.
const MAX_PARTIALS: usize = CUBE_SIZE as usize;
/// Vectors per unit of the norm kernel before it uses more cubes.
const NORM_VECTORS_PER_UNIT: usize = 8;
/// Fewest units per cube ([`cube_dim`]): a warp of an NVIDIA GPU.
const SMALLEST_CUBE: u32 = 32;
/// Most cubes of the update kernel; its units loop over the rest of the tensor.
const MAX_UPDATE_CUBES: usize = 4096;
/// Vectors per unit of the update kernel before it uses more cubes: fewer cubes, fewer
/// repeated sums of the partial sums.
const UPDATE_VECTORS_PER_UNIT: usize = 4;

/// How this build's `Cube` backend holds its tensors.
enum Holding {
    /// `CubeBackend`'s own tensors.
    Plain,
    /// Fusion's, over `CubeBackend`.
    #[cfg(feature = "fusion")]
    Fusion,
}

/// How `Cube` holds its tensors, when this build's step knows that type.
fn holding() -> Option<Holding> {
    let holds = |primitive: TypeId| {
        TypeId::of::<<Cube as BackendTypes>::FloatTensorPrimitive>() == primitive
            && TypeId::of::<<Cube as BackendTypes>::IntTensorPrimitive>() == primitive
            && TypeId::of::<<Cube as BackendTypes>::QuantizedTensorPrimitive>() == primitive
    };
    if holds(TypeId::of::<CubeTensor>()) {
        return Some(Holding::Plain);
    }
    #[cfg(feature = "fusion")]
    if holds(TypeId::of::<fusion::Primitive>()) {
        return Some(Holding::Fusion);
    }
    None
}

/// The name of this step on `device` (`"cubecl-wgpu"`, `"cubecl-cuda"`, `"cubecl-cpu"`, with
/// `"+fusion"` under Fusion), if it runs there: a CubeCL device of a runtime compiled in, and a
/// known holding.
pub(super) fn path(device: &DispatchDevice) -> Option<&'static str> {
    #[allow(unreachable_patterns)] // `Cube` is the only variant in some builds.
    let runtime = match device {
        DispatchDevice::Cube(device) => device.runtime(),
        _ => return None,
    };
    match (runtime, holding()?) {
        #[cfg(feature = "wgpu")]
        (RuntimeId::Wgpu, Holding::Plain) => Some("cubecl-wgpu"),
        #[cfg(all(feature = "wgpu", feature = "fusion"))]
        (RuntimeId::Wgpu, Holding::Fusion) => Some("cubecl-wgpu+fusion"),
        #[cfg(feature = "cuda")]
        (RuntimeId::Cuda, Holding::Plain) => Some("cubecl-cuda"),
        #[cfg(all(feature = "cuda", feature = "fusion"))]
        (RuntimeId::Cuda, Holding::Fusion) => Some("cubecl-cuda+fusion"),
        #[cfg(feature = "cpu")]
        (RuntimeId::Cpu, Holding::Plain) => Some("cubecl-cpu"),
        #[cfg(all(feature = "cpu", feature = "fusion"))]
        (RuntimeId::Cpu, Holding::Fusion) => Some("cubecl-cpu+fusion"),
        _ => None,
    }
}

/// The fused step when the parameter's device takes it ([`path`]), every input lives on that
/// device without autodiff, the parameter, gradient and `v` are f32, `m` is f32, bf16 or 8-bit
/// ([`reads_int8`]) and the step counter is an i32 or i64; anything else is handed back
/// untouched. Inside `multi_tensor` the step is gathered and launched with others ([`multi`]),
/// unless `m` is 8-bit (the list kernels read f32 and bf16 only): then, as outside, it is
/// launched (or registered) now.
pub(super) fn step<const D: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    inputs: Inputs<D>,
) -> Result<(Tensor<D>, NovoGradState<D>), Inputs<D>> {
    let Some(holding) = takes(&inputs) else {
        return Err(inputs);
    };
    let gather = !matches!(inputs.2.moment_1.dtype(), DType::QFloat(_));
    Ok(match holding {
        Holding::Plain => {
            let (parts, grad) = Parts::<CubeTensor>::of(inputs);
            let stepped = gathered(Entry::new(hyper, lr, parts, grad), gather)
                .unwrap_or_else(|entry| launch(hyper, lr, entry.parts, entry.grad));
            stepped.into_step()
        }
        #[cfg(feature = "fusion")]
        Holding::Fusion => {
            let (parts, grad) = Parts::<fusion::Primitive>::of(inputs);
            let stepped = gathered(Entry::new(hyper, lr, parts, grad), gather)
                .unwrap_or_else(|entry| fusion::register(hyper, lr, entry.parts, entry.grad));
            stepped.into_step()
        }
    })
}

/// The step's outputs when `gather` asks for it and [`multi::gather`] takes it, else the entry
/// back.
fn gathered<P: multi::Gather>(entry: Entry<P>, gather: bool) -> Result<Parts<P>, Entry<P>> {
    match gather {
        true => multi::gather(entry),
        false => Err(entry),
    }
}

/// How `Cube` holds the inputs' tensors, when this step takes them.
fn takes<const D: usize>((param, grad, state): &Inputs<D>) -> Option<Holding> {
    let device = param.device();
    path(device.as_dispatch())?;
    // Autodiff devices are a `DispatchDevice` variant of their own: this rejects them.
    let on_device =
        |other: Device| matches!(other.as_dispatch(), DispatchDevice::Cube(_)) && other == device;
    let f32_on_device = |dtype: DType, other: Device| dtype == DType::F32 && on_device(other);
    let supported = param.dtype() == DType::F32
        && f32_on_device(grad.dtype(), grad.device())
        && (matches!(state.moment_1.dtype(), DType::F32 | DType::BF16)
            || reads_int8(state.moment_1.dtype()))
        && on_device(state.moment_1.device())
        && f32_on_device(state.moment_2.dtype(), state.moment_2.device())
        && (state.max_moment_2.as_ref()).is_none_or(|max| f32_on_device(max.dtype(), max.device()))
        && matches!(state.step.dtype(), DType::I32 | DType::I64)
        && on_device(state.step.device());
    supported.then(holding).flatten()
}

/// Whether `dtype` is an 8-bit `m` that [`kernel::update_int8`] reads: blocks that
/// [`int8_blocks`] takes, four codes packed in a `u32` along the last axis (the form
/// `MomentDtype::Int8` takes on these backends).
fn reads_int8(dtype: DType) -> bool {
    let packed = matches!(dtype, DType::QFloat(scheme) if scheme.store == QuantStore::PackedU32(0));
    packed && int8_blocks(dtype).is_some()
}

/// A `Cube` primitive of either holding.
trait Held: 'static {
    fn dtype(&self) -> DType;
}

impl Held for CubeTensor {
    fn dtype(&self) -> DType {
        self.dtype
    }
}

#[cfg(feature = "fusion")]
impl Held for fusion::Primitive {
    fn dtype(&self) -> DType {
        self.dtype
    }
}

/// The parameter and its state as `Cube` primitives `P`.
#[derive(Clone, Debug)]
struct Parts<P> {
    param: P,
    moment_1: P,
    moment_2: P,
    max_moment_2: Option<P>,
    step: P,
}

impl<P: Held> Parts<P> {
    /// The primitives of `inputs` (and the gradient's), checked by [`takes`] to be `Cube`
    /// tensors held as `P`.
    fn of<const D: usize>((param, grad, state): Inputs<D>) -> (Self, P) {
        let parts = Parts {
            param: into_float(param),
            moment_1: into_moment(state.moment_1),
            moment_2: into_float(state.moment_2),
            max_moment_2: state.max_moment_2.map(into_float),
            step: into_int(state.step),
        };
        (parts, into_float(grad))
    }

    /// The new parameter and state.
    fn into_step<const D: usize>(self) -> (Tensor<D>, NovoGradState<D>) {
        let state = NovoGradState {
            moment_1: from_moment(self.moment_1),
            moment_2: from_float(self.moment_2),
            max_moment_2: self.max_moment_2.map(from_float),
            step: Tensor::from_primitive::<Cube>(downcast(self.step)),
        };
        (from_float(self.param), state)
    }
}

impl Parts<CubeTensor> {
    /// Whether every buffer is uniquely owned, so that a step may write it in place.
    fn unique(&self) -> bool {
        let state = [&self.param, &self.moment_1, &self.moment_2, &self.step];
        state
            .into_iter()
            .chain(&self.max_moment_2)
            .all(CubeTensor::can_mut)
    }
}

/// One tensor's step: the parameter, its state and gradient, the hyper-parameters.
#[derive(Debug)]
struct Entry<P> {
    parts: Parts<P>,
    grad: P,
    hyper: Hyper,
    lr: LearningRate,
}

impl<P> Entry<P> {
    fn new(hyper: &Hyper, lr: LearningRate, parts: Parts<P>, grad: P) -> Self {
        let hyper = *hyper;
        Entry {
            parts,
            grad,
            hyper,
            lr,
        }
    }
}

/// The primitive of a float tensor checked to be a `Cube` tensor held as `P`.
fn into_float<P: 'static, const D: usize>(tensor: Tensor<D>) -> P {
    let primitive = tensor.try_into_primitive::<Cube>();
    downcast(primitive.unwrap_or_else(|error| panic!("checked to be a Cube tensor: {error:?}")))
}

/// The primitive of an int tensor checked to be a `Cube` tensor held as `P`.
fn into_int<P: 'static, const D: usize>(tensor: Tensor<D, Int>) -> P {
    let primitive = tensor.try_into_primitive::<Cube>();
    downcast(primitive.unwrap_or_else(|error| panic!("checked to be a Cube tensor: {error:?}")))
}

/// The primitive of a first moment checked to be a `Cube` tensor held as `P`: a float tensor,
/// or an 8-bit one.
fn into_moment<P: 'static, const D: usize>(tensor: Tensor<D>) -> P {
    if !matches!(tensor.dtype(), DType::QFloat(_)) {
        return into_float(tensor);
    }
    match tensor.into_dispatch().kind {
        DispatchTensorKind::Cube(BackendTensor::Quantized(quantized)) => downcast(quantized),
        _ => unreachable!("checked to be a Cube tensor"),
    }
}

/// The first moment of a `Cube` primitive held as `P` ([`into_moment`]).
fn from_moment<P: Held, const D: usize>(primitive: P) -> Tensor<D> {
    if !matches!(primitive.dtype(), DType::QFloat(_)) {
        return from_float(primitive);
    }
    let kind = DispatchTensorKind::Cube(BackendTensor::Quantized(downcast(primitive)));
    Tensor::from_dispatch(DispatchTensor {
        kind,
        autodiff: Default::default(),
    })
}

/// The float tensor of a `Cube` primitive held as `P`.
fn from_float<P: 'static, const D: usize>(primitive: P) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(downcast(primitive))
}

/// `value` as `T`, which [`holding`] checked to be its type.
fn downcast<S: 'static, T: 'static>(value: S) -> T {
    let mut value = Some(value);
    let value: &mut dyn Any = &mut value;
    let value = value.downcast_mut::<Option<T>>();
    value
        .and_then(Option::take)
        .expect("checked to be the same type")
}

/// Launches one tensor's step: one kernel when one cube covers the tensor, else three with a
/// workspace. Amsgrad follows the state, as in the tensor-op step: a running maximum is kept
/// when the state has one.
fn launch(
    hyper: &Hyper,
    lr: LearningRate,
    parts: Parts<CubeTensor>,
    grad: CubeTensor,
) -> Parts<CubeTensor> {
    let grad = into_contiguous(grad);
    let param = into_contiguous(parts.param);
    let moment_1 = into_contiguous(parts.moment_1);
    let moment_2 = into_contiguous(parts.moment_2);
    let max_moment_2 = parts.max_moment_2.map(into_contiguous);
    let step = into_contiguous(parts.step);
    let client = param.client.clone();
    let Layout {
        vector_size,
        vectors,
        cube_dim,
        one_cube,
    } = Layout::of(&client, param.meta.num_elements());
    let cubes = |per_unit: usize, most: usize| cube_count(vectors, per_unit, most) as u32;
    let step_dtype = elem_type(&step);
    let int8 = matches!(moment_1.dtype, DType::QFloat(_));
    let decay_on_update = hyper.weight_decay_mode == WeightDecayMode::OnUpdate;

    // Every output is its input, in place, when the input's buffer is unique (`output`).
    let (param_out, param_arg) = output(&param, 0);
    if one_cube && !int8 {
        let moment_dtype = elem_type(&moment_1);
        let (moment_1_out, moment_1_arg) = output(&moment_1, 1);
        let ((moment_2_out, moment_2_arg), (step_out, step_arg), (max_moment_2_out, max_arg)) =
            per_tensor_outputs(&moment_2, &step, max_moment_2.as_ref(), 3);
        kernel::step_in_one_cube::launch(
            &client,
            CubeCount::Static(1, 1, 1),
            cube_dim,
            vector_size,
            param.into_tensor_arg(),
            moment_1.into_tensor_arg(),
            grad.into_tensor_arg(),
            moment_2.into_tensor_arg(),
            step.into_tensor_arg(),
            max_moment_2.map(CubeTensor::into_tensor_arg).into(),
            param_arg,
            moment_1_arg,
            moment_2_arg,
            step_arg,
            max_arg.into(),
            hyper_arg(hyper, lr),
            hyper.bias_correction,
            decay_on_update,
            [step_dtype, moment_dtype],
        );
        return Parts {
            param: param_out,
            moment_1: moment_1_out,
            moment_2: moment_2_out,
            max_moment_2: max_moment_2_out,
            step: step_out,
        };
    }

    let partial_count = cubes(NORM_VECTORS_PER_UNIT, MAX_PARTIALS);
    let workspace = workspace(&param, kernel::WORKSPACE_PARTIALS + MAX_PARTIALS);
    kernel::grad_norm_partials::launch(
        &client,
        CubeCount::Static(partial_count, 1, 1),
        cube_dim,
        vector_size,
        grad.clone().into_tensor_arg(),
        workspace.clone().into_tensor_arg(),
    );
    let ((moment_2_out, moment_2_arg), (step_out, step_arg), (max_moment_2_out, max_arg)) =
        per_tensor_outputs(&moment_2, &step, max_moment_2.as_ref(), 0);
    kernel::finish_norm::launch(
        &client,
        CubeCount::Static(1, 1, 1),
        cube_dim,
        moment_2.into_tensor_arg(),
        step.into_tensor_arg(),
        max_moment_2.map(CubeTensor::into_tensor_arg).into(),
        workspace.clone().into_tensor_arg(),
        moment_2_arg,
        step_arg,
        max_arg.into(),
        partial_count,
        hyper_arg(hyper, lr),
        hyper.bias_correction,
        step_dtype,
    );
    let moment_1_out = match int8 {
        true => {
            let (codes, scales, moment_1_out, codes_arg, scales_arg) = int8_outputs(moment_1);
            let blocks = scales.meta.num_elements();
            let cubes = blocks.div_ceil(cube_dim.num_elems() as usize);
            let block = int8_blocks(moment_1_out.dtype).expect("checked by `takes`");
            kernel::update_int8::launch(
                &client,
                CubeCount::Static(cubes.clamp(1, MAX_UPDATE_CUBES) as u32, 1, 1),
                cube_dim,
                kernel::CODES_PER_WORD,
                param.into_tensor_arg(),
                codes.into_tensor_arg(),
                scales.into_tensor_arg(),
                grad.into_tensor_arg(),
                workspace.into_tensor_arg(),
                param_arg,
                codes_arg,
                scales_arg,
                hyper_arg(hyper, lr),
                block / kernel::CODES_PER_WORD,
                decay_on_update,
            );
            moment_1_out
        }
        false => {
            let (moment_1_out, moment_1_arg) = output(&moment_1, 1);
            kernel::update::launch(
                &client,
                CubeCount::Static(cubes(UPDATE_VECTORS_PER_UNIT, MAX_UPDATE_CUBES), 1, 1),
                cube_dim,
                vector_size,
                param.into_tensor_arg(),
                moment_1.clone().into_tensor_arg(),
                grad.into_tensor_arg(),
                workspace.into_tensor_arg(),
                param_arg,
                moment_1_arg,
                hyper_arg(hyper, lr),
                decay_on_update,
                elem_type(&moment_1),
            );
            moment_1_out
        }
    };
    Parts {
        param: param_out,
        moment_1: moment_1_out,
        moment_2: moment_2_out,
        max_moment_2: max_moment_2_out,
        step: step_out,
    }
}

/// How the kernels cover a tensor on its device.
#[derive(Clone, Copy)]
struct Layout {
    /// Elements per vector: the widest the device reads well that divides the tensor's length.
    vector_size: usize,
    /// Vectors of the tensor.
    vectors: usize,
    /// Units per cube ([`cube_dim`]).
    cube_dim: CubeDim,
    /// Whether one cube of the norm kernel covers the tensor (up to 8,192 f32 elements in
    /// vectors of 4): then one kernel steps it, else three.
    one_cube: bool,
}

impl Layout {
    /// The layout of a tensor of `elements` f32 elements on `client`'s device.
    fn of(client: &Client, elements: usize) -> Self {
        let vector_size = (client.io_optimized_vector_sizes(size_of::<f32>()))
            .filter(|size| elements.is_multiple_of(*size))
            .max()
            .unwrap_or(1);
        let vectors = elements / vector_size;
        Layout {
            vector_size,
            vectors,
            cube_dim: cube_dim(client, vectors),
            one_cube: cube_count(vectors, NORM_VECTORS_PER_UNIT, MAX_PARTIALS) == 1,
        }
    }
}

/// Units per cube for a tensor of `vectors` vectors on `client`'s device: [`CUBE_SIZE`] for a
/// tensor that more than one cube covers; for a smaller one, a power of two with about
/// [`NORM_VECTORS_PER_UNIT`] vectors per unit, and at least [`SMALLEST_CUBE`]. In both cases at
/// most the largest power of two that the device allows (on CubeCL's CPU runtime, one per core:
/// there each unit of a kernel with a barrier is a thread of its own, and 256 of them spinning
/// on two cores took minutes per step). Every unit of a cube takes part in its sums, whose
/// barriers are what a small tensor's step costs on a CPU Vulkan driver (Mesa's lavapipe: the
/// multi-tensor step over 1,000 tensors of 1,024 took half the time with 32 units as with 256).
fn cube_dim(client: &Client, vectors: usize) -> CubeDim {
    let most = client
        .properties()
        .hardware
        .max_units_per_cube
        .clamp(1, CUBE_SIZE);
    let wanted = (vectors.div_ceil(NORM_VECTORS_PER_UNIT).next_power_of_two() as u32)
        .clamp(SMALLEST_CUBE, CUBE_SIZE);
    CubeDim::new_1d(1 << wanted.min(most).ilog2())
}

/// Cubes for `vectors` vectors at `per_unit` vectors per unit, between 1 and `most`.
fn cube_count(vectors: usize, per_unit: usize, most: usize) -> usize {
    vectors
        .div_ceil(CUBE_SIZE as usize * per_unit)
        .clamp(1, most)
}

/// The hyper-parameters and the learning rate as a kernel argument.
fn hyper_arg(hyper: &Hyper, lr: LearningRate) -> HyperLaunch {
    HyperLaunch::new(
        lr as f32,
        hyper.beta_1,
        hyper.beta_2,
        hyper.epsilon,
        hyper.epsilon_root,
        hyper.weight_decay,
        hyper.moment_input_scale,
    )
}

/// The kernels' element type of `tensor`: the step counter's (i32 or i64) or the first
/// moment's (f32 or bf16), the dtypes [`takes`] accepts.
fn elem_type(tensor: &CubeTensor) -> ElemType {
    match tensor.dtype {
        DType::I32 => ElemType::Int(IntKind::I32),
        DType::I64 => ElemType::Int(IntKind::I64),
        DType::F32 => ElemType::Float(FloatKind::F32),
        DType::BF16 => ElemType::Float(FloatKind::BF16),
        other => unreachable!("the step does not take {other:?} tensors"),
    }
}

/// The output for input `tensor` (the kernel's input number `position`) and its kernel
/// argument: `tensor` itself, aliased, when its buffer is unique, else a new buffer.
fn output(tensor: &CubeTensor, position: usize) -> (CubeTensor, TensorArg) {
    match tensor.can_mut() {
        true => (tensor.clone(), tensor.as_tensor_alias(position)),
        false => new_output(tensor),
    }
}

/// The codes and scales of an 8-bit `moment_1` (inputs 1 and 2 of [`kernel::update_int8`]), the
/// moment after the step and the arguments of its codes and scales: `moment_1` itself, aliased,
/// when its buffer is unique, else a new quantised tensor of its scheme.
fn int8_outputs(
    moment_1: CubeTensor,
) -> (CubeTensor, CubeTensor, CubeTensor, TensorArg, TensorArg) {
    let in_place = moment_1.can_mut();
    let (codes, scales) =
        (moment_1.quantized_handles()).expect("an 8-bit moment has codes and scales");
    if in_place {
        let (codes_arg, scales_arg) = (codes.as_tensor_alias(1), scales.as_tensor_alias(2));
        return (codes, scales, moment_1, codes_arg, scales_arg);
    }
    let DType::QFloat(scheme) = moment_1.dtype else {
        unreachable!("an 8-bit moment")
    };
    let out = empty_qtensor_optimized(moment_1.meta.shape().clone(), scheme, &moment_1.device);
    let (codes_out, scales_out) =
        (out.quantized_handles()).expect("a quantised tensor has codes and scales");
    (
        codes,
        scales,
        out,
        codes_out.into_tensor_arg(),
        scales_out.into_tensor_arg(),
    )
}

/// The outputs of the state's one-element tensors `v`, the step counter and `max v` (with
/// amsgrad), the kernel's inputs number `first`, `first + 1` and `first + 2` ([`output`]).
#[allow(clippy::type_complexity)] // Three outputs, each with its argument.
fn per_tensor_outputs(
    moment_2: &CubeTensor,
    step: &CubeTensor,
    max_moment_2: Option<&CubeTensor>,
    first: usize,
) -> (
    (CubeTensor, TensorArg),
    (CubeTensor, TensorArg),
    (Option<CubeTensor>, Option<TensorArg>),
) {
    let max_moment_2 = max_moment_2.map(|max| output(max, first + 2)).unzip();
    (
        output(moment_2, first),
        output(step, first + 1),
        max_moment_2,
    )
}

/// A new buffer of `tensor`'s shape and dtype, and its kernel argument.
fn new_output(tensor: &CubeTensor) -> (CubeTensor, TensorArg) {
    let out = empty_device_contiguous_dtype(
        tensor.client.clone(),
        tensor.device.clone(),
        tensor.meta.shape().clone(),
        tensor.dtype,
    );
    (out.clone(), out.into_tensor_arg())
}

/// A workspace of at least `len` floats on `tensor`'s device for the three-kernel steps, one
/// per device and stream (the stream that launches: under Fusion, the stream of the operation
/// being run), made at its first use (or when a step needs more) and reused by every later
/// step: the kernels of one stream run in launch order, so each step's kernels write it after
/// the last step's read it. Kernels of two streams are not ordered that way (CubeCL makes a
/// stream wait for another's writes to a buffer it reads, not for its reads before writing), so
/// a workspace shared by two streams, such as two threads stepping on one device, would be
/// written by one while the other reads it. Kept by the launching thread for the last
/// [`WORKSPACE_STREAMS`] streams it made one for.
fn workspace(tensor: &CubeTensor, len: usize) -> CubeTensor {
    thread_local! {
        static WORKSPACES: std::cell::RefCell<Vec<(StreamId, CubeTensor)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let stream = StreamId::current();
    WORKSPACES.with_borrow_mut(|workspaces| {
        let same = |(other, workspace): &(StreamId, CubeTensor)| {
            *other == stream && workspace.device == tensor.device
        };
        let found = workspaces.iter().position(same);
        if let Some(found) = found
            && workspaces[found].1.meta.num_elements() >= len
        {
            return workspaces[found].1.clone();
        }
        let workspace = empty_device_dtype(
            tensor.client.clone(),
            tensor.device.clone(),
            Shape::new([len]),
            DType::F32,
        );
        if let Some(found) = found {
            workspaces.remove(found);
        }
        if workspaces.len() == WORKSPACE_STREAMS {
            workspaces.remove(0);
        }
        workspaces.push((stream, workspace.clone()));
        workspace
    })
}

/// Streams whose workspaces a thread keeps ([`workspace`]); an older one's is dropped, and the
/// stream makes a new one if it steps again.
const WORKSPACE_STREAMS: usize = 16;
