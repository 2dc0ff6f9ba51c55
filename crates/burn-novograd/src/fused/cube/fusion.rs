//! The step under Fusion: one custom operation per tensor that runs [`launch`], or, inside
//! `multi_tensor`, hands the tensor's buffers to the device's gathered steps, which one more
//! custom operation per chunk launches together ([`launch_all`]).

use std::sync::{Arc, Mutex};

use burn::optim::LearningRate;
use burn::tensor::DType;
use burn_cubecl::CubeBackend;
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use burn_fusion::custom::{
    CustomOpIr, HandleContainer, Operation, OperationIr, StreamId, TensorId, TensorIr,
};
use burn_fusion::{Client, ExecutionError, FusionRuntime, FusionTensor};

use super::multi::{Chunk, bindings, launch_all};
use super::{Entry, Parts, launch};
use crate::hyper::Hyper;

/// Fusion's handles of `CubeBackend`'s tensors.
type Handles = HandleContainer<<FusionCubeRuntime as FusionRuntime>::FusionHandle>;

/// The steps gathered on one device, with the ids of their outputs, which its gather
/// operations fill as they run.
type Pending = Arc<Mutex<Vec<(Entry<CubeTensor>, Parts<TensorId>)>>>;

/// Fusion's tensors over `CubeBackend`.
pub(super) type Primitive = FusionTensor<FusionCubeRuntime>;

/// Registers the step in the current stream: inputs `w, g, m, v, [max v], step`, outputs
/// the same less `g`. With `pending`, the step is gathered ([`FusedStep`]).
fn register_step(
    hyper: &Hyper,
    lr: LearningRate,
    parts: Parts<Primitive>,
    grad: Primitive,
    pending: Option<Pending>,
) -> Parts<Primitive> {
    let client = parts.param.client.clone();
    let amsgrad = parts.max_moment_2.is_some();
    let mut inputs = vec![parts.param, grad, parts.moment_1, parts.moment_2];
    inputs.extend(parts.max_moment_2);
    inputs.push(parts.step);
    // Before `into_ir`, which takes the inputs' shapes.
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
    // A tensor whose last handle this step holds is read-write: its buffer can be reused.
    let inputs: Vec<_> = inputs.into_iter().map(FusionTensor::into_ir).collect();
    let desc = CustomOpIr::new("novograd_step", &inputs, &outputs);
    let step = FusedStep {
        desc: desc.clone(),
        hyper: *hyper,
        lr,
        pending,
    };
    let outputs = client.register(StreamId::current(), OperationIr::Custom(desc), step);
    let mut outputs = outputs.into_iter();
    let mut next = || outputs.next().expect("one output per state tensor");
    Parts {
        param: next(),
        moment_1: next(),
        moment_2: next(),
        max_moment_2: amsgrad.then(&mut next),
        step: next(),
    }
}

/// Registers the step in the current stream ([`register_step`]).
pub(super) fn register(
    hyper: &Hyper,
    lr: LearningRate,
    parts: Parts<Primitive>,
    grad: Primitive,
) -> Parts<Primitive> {
    register_step(hyper, lr, parts, grad, None)
}

/// The custom operation of one tensor's step: [`launch`] on the `CubeBackend` tensors behind
/// Fusion's; or, gathered (with `pending`) and when every buffer is uniquely owned, the inputs'
/// buffers and the outputs' ids go to `pending`, and [`GatheredSteps`] writes the buffers in
/// place and gives them to the outputs.
#[derive(Debug)]
struct FusedStep {
    desc: CustomOpIr,
    hyper: Hyper,
    lr: LearningRate,
    pending: Option<Pending>,
}

impl Operation<FusionCubeRuntime> for FusedStep {
    fn execute(&self, handles: &mut Handles) -> Result<(), ExecutionError> {
        let (inputs, outputs) = (&self.desc.inputs, &self.desc.outputs);
        let amsgrad = inputs.len() == 6;
        let mut float = |index: usize| handles.get_float_tensor::<CubeBackend>(&inputs[index]);
        let (param, grad, moment_2) = (float(0), float(1), float(3));
        let max_moment_2 = amsgrad.then(|| float(4));
        let moment_1 = match inputs[2].dtype {
            DType::QFloat(_) => handles.get_quantized_tensor::<CubeBackend>(&inputs[2]),
            _ => handles.get_float_tensor::<CubeBackend>(&inputs[2]),
        };
        let step = inputs.last().expect("the step counter");
        let parts = Parts {
            param,
            moment_1,
            moment_2,
            max_moment_2,
            step: handles.get_int_tensor::<CubeBackend>(step),
        };
        let mut ids = outputs.iter().map(|output| output.id);
        let mut next = || ids.next().expect("one output per state tensor");
        let ids = Parts {
            param: next(),
            moment_1: next(),
            moment_2: next(),
            max_moment_2: amsgrad.then(&mut next),
            step: next(),
        };
        match &self.pending {
            // The outputs get their buffers when the launch runs: a read before it finds none
            // and runs the queue up to the launch, instead of reading the buffers before it.
            Some(pending) if parts.unique() => {
                let lock = pending.lock();
                let mut pending = lock.unwrap_or_else(|poisoned| poisoned.into_inner());
                pending.push((Entry::new(&self.hyper, self.lr, parts, grad), ids));
            }
            _ => register_parts(handles, launch(&self.hyper, self.lr, parts, grad), ids),
        }
        Ok(())
    }
}

/// The steps that one `multi_tensor` call gathered on one device and has not launched yet.
pub(super) struct DeviceSteps {
    client: Client<FusionCubeRuntime>,
    pending: Pending,
    /// The gathered steps' new parameters: the launch lists them as inputs, so that it comes
    /// after the operations that gathered them, and gives them their buffers.
    params: Vec<Primitive>,
    /// The device's CubeCL client, which tells what a launch binds.
    cube_client: cubecl::client::Client,
    /// What the gathered steps bind and hold.
    chunk: Chunk,
}

impl DeviceSteps {
    /// Registers one custom operation that launches the gathered steps together
    /// ([`launch_all`]), in the current stream after them: anything registered later reads the
    /// new values.
    fn register_launch(&mut self) {
        let params = std::mem::take(&mut self.params);
        self.chunk = Chunk::default();
        let inputs: Vec<_> = params.into_iter().map(FusionTensor::into_ir).collect();
        let desc = CustomOpIr::new("novograd_multi_tensor_step", &inputs, &[]);
        let operation = GatheredSteps {
            pending: self.pending.clone(),
        };
        let stream = StreamId::current();
        self.client
            .register(stream, OperationIr::Custom(desc), operation);
    }
}

/// Registers `entry`'s step gathered into the steps of its device in `gathered`: the tensors
/// it returns are written by the launch that [`DeviceSteps::register_launch`] registers once
/// a launch's worth of tensors is gathered (so that the device starts on it while the rest is
/// gathered), or by [`register_all`].
pub(super) fn gather(entry: Entry<Primitive>, gathered: &mut Vec<DeviceSteps>) -> Parts<Primitive> {
    let client = &entry.parts.param.client;
    let same_device = |steps: &&mut DeviceSteps| steps.client.device() == client.device();
    let steps = match gathered.iter_mut().position(|steps| same_device(&steps)) {
        Some(found) => &mut gathered[found],
        None => {
            gathered.push(DeviceSteps {
                client: client.clone(),
                pending: Pending::default(),
                params: Vec::new(),
                cube_client: client.device().client(),
                chunk: Chunk::default(),
            });
            gathered.last_mut().expect("just pushed")
        }
    };
    let elements = entry.parts.param.shape.num_elements();
    let bindings = bindings(
        &steps.cube_client,
        elements,
        entry.parts.max_moment_2.is_some(),
    );
    if steps.chunk.overflows(&steps.cube_client, bindings) {
        steps.register_launch();
    }
    let pending = Some(steps.pending.clone());
    let stepped = register_step(&entry.hyper, entry.lr, entry.parts, entry.grad, pending);
    steps.params.push(stepped.param.clone());
    if steps.chunk.add(bindings, elements) {
        steps.register_launch();
    }
    stepped
}

/// Registers the launch of every device's steps not launched yet.
pub(super) fn register_all(gathered: Vec<DeviceSteps>) {
    for mut steps in gathered
        .into_iter()
        .filter(|steps| !steps.params.is_empty())
    {
        steps.register_launch();
    }
}

/// The custom operation of [`DeviceSteps::register_launch`]: launches the steps that the
/// gather operations before it handed on.
#[derive(Debug)]
struct GatheredSteps {
    pending: Pending,
}

impl Operation<FusionCubeRuntime> for GatheredSteps {
    fn execute(&self, handles: &mut Handles) -> Result<(), ExecutionError> {
        let lock = self.pending.lock();
        let pending = std::mem::take(&mut *lock.unwrap_or_else(|poisoned| poisoned.into_inner()));
        let (entries, ids): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
        for (stepped, ids) in launch_all(entries).into_iter().zip(ids) {
            register_parts(handles, stepped, ids);
        }
        Ok(())
    }
}

/// Gives the output ids of a step its tensors after the step.
fn register_parts(handles: &mut Handles, parts: Parts<CubeTensor>, ids: Parts<TensorId>) {
    match parts.moment_1.dtype {
        DType::QFloat(_) => {
            handles.register_quantized_tensor::<CubeBackend>(&ids.moment_1, parts.moment_1)
        }
        _ => handles.register_float_tensor::<CubeBackend>(&ids.moment_1, parts.moment_1),
    }
    let floats = [(parts.param, ids.param), (parts.moment_2, ids.moment_2)];
    let max = parts.max_moment_2.zip(ids.max_moment_2);
    for (tensor, id) in floats.into_iter().chain(max) {
        handles.register_float_tensor::<CubeBackend>(&id, tensor);
    }
    handles.register_int_tensor::<CubeBackend>(&ids.step, parts.step);
}
