//! The multi-tensor step ([`crate::multi_tensor`]) on CubeCL: while it runs, each tensor's
//! fused step is gathered instead of launched, and returns the tensors that the gathered step
//! will write in place. The gathered steps are launched together ([`kernel::multi`]): one kernel
//! per group of tensors that one cube covers each, three per group of larger ones (a group: one
//! device, vector width, units per cube, step-counter and `m` dtypes, amsgrad or not,
//! hyper-parameters and learning rate), once their buffers fill one launch's bindings
//! ([`Chunk`]) or they reach [`ELEMENTS_PER_LAUNCH`] elements, and at the end. Under Fusion each
//! launch is a custom operation ([`fusion::register_all`]).
//!
//! A gathered step writes its buffers in place, so only a tensor whose buffers are all uniquely
//! owned is stepped with the others; one whose buffers are shared takes its own step, into new
//! buffers. On plain `CubeBackend` that is known when the step is gathered; under Fusion, when
//! the custom operation runs.

use std::cell::RefCell;

use burn::backend::DispatchDevice;
use burn::optim::LearningRate;
use burn::tensor::DType;
use burn_cubecl::CubeDevice;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::client::Client;
use cubecl::prelude::*;

#[cfg(feature = "fusion")]
use super::fusion;
use super::kernel::{self, FACTOR_SLOTS};
use super::{
    Entry, Layout, MAX_PARTIALS, MAX_UPDATE_CUBES, NORM_VECTORS_PER_UNIT, Parts,
    UPDATE_VECTORS_PER_UNIT, cube_count, elem_type, hyper_arg, workspace,
};
use crate::config::WeightDecayMode;
use crate::hyper::Hyper;
use crate::multi_tensor::ELEMENTS_PER_LAUNCH;

thread_local! {
    /// The steps gathered by this thread's `multi_tensor` call, if one runs.
    static GATHERED: RefCell<Option<Gathered>> = const { RefCell::new(None) };
}

/// The steps gathered by one `multi_tensor` call.
#[derive(Default)]
pub(super) struct Gathered {
    plain: Vec<Entry<CubeTensor>>,
    /// What `plain` binds and holds.
    plain_chunk: Chunk,
    #[cfg(feature = "fusion")]
    fusion: Vec<fusion::DeviceSteps>,
}

/// Runs `step` with this thread's CubeCL steps gathered, then launches those not launched yet
/// ([`launch_all`]). Nested calls gather into the outermost one. When `step` panics, the steps
/// gathered since the last launch are dropped unlaunched: on plain `CubeBackend` the tensors
/// they returned keep their values from before the step; under Fusion they get none.
pub(crate) fn multi_tensor<R>(step: impl FnOnce() -> R) -> R {
    let outermost = GATHERED.with_borrow_mut(|gathered| {
        let outermost = gathered.is_none();
        if outermost {
            *gathered = Some(Gathered::default());
        }
        outermost
    });
    if !outermost {
        return step();
    }
    /// Ends the gathering when dropped, after `step` or during its unwinding.
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            let _ = GATHERED.try_with(|gathered| gathered.borrow_mut().take());
        }
    }
    let end = End;
    let result = step();
    let gathered = GATHERED.with_borrow_mut(Option::take);
    drop(end);
    if let Some(gathered) = gathered {
        launch_all(gathered.plain);
        #[cfg(feature = "fusion")]
        fusion::register_all(gathered.fusion);
    }
    result
}

/// A `Cube` primitive whose steps `multi_tensor` gathers.
pub(super) trait Gather: Sized {
    /// Gathers `entry` into `gathered`, returning the tensors its step will write, or hands it
    /// back to take its own step now.
    fn gather(entry: Entry<Self>, gathered: &mut Gathered) -> Result<Parts<Self>, Entry<Self>>;
}

impl Gather for CubeTensor {
    /// When contiguous and every buffer is uniquely owned: the parameter module and the state
    /// get clones of the handles, which the gathered step then writes.
    fn gather(entry: Entry<Self>, gathered: &mut Gathered) -> Result<Parts<Self>, Entry<Self>> {
        let parts = entry.parts;
        let parts = Parts {
            param: into_contiguous(parts.param),
            moment_1: into_contiguous(parts.moment_1),
            moment_2: into_contiguous(parts.moment_2),
            max_moment_2: parts.max_moment_2.map(into_contiguous),
            step: into_contiguous(parts.step),
        };
        let entry = Entry { parts, ..entry };
        if !entry.parts.unique() || entry.parts.param.meta.num_elements() == 0 {
            return Err(entry);
        }
        let parts = entry.parts.clone();
        let (client, elements) = (&parts.param.client, parts.param.meta.num_elements());
        let bindings = bindings(client, elements, parts.max_moment_2.is_some());
        // A launch's worth gathered: launched now, so that the device starts on it while the
        // rest is gathered.
        let launch = |gathered: &mut Gathered| {
            gathered.plain_chunk = Chunk::default();
            launch_all(std::mem::take(&mut gathered.plain));
        };
        if gathered.plain_chunk.overflows(client, bindings) {
            launch(gathered);
        }
        gathered.plain.push(entry);
        if gathered.plain_chunk.add(bindings, elements) {
            launch(gathered);
        }
        Ok(parts)
    }
}

#[cfg(feature = "fusion")]
impl Gather for fusion::Primitive {
    /// Always, as a custom operation that finds out, when it runs, whether the buffers are
    /// uniquely owned (else the step runs there, into new buffers).
    fn gather(entry: Entry<Self>, gathered: &mut Gathered) -> Result<Parts<Self>, Entry<Self>> {
        Ok(fusion::gather(entry, &mut gathered.fusion))
    }
}

/// Gathers `entry` when a `multi_tensor` call runs on this thread ([`Gather`]), returning the
/// tensors its step will write; else hands it back.
pub(super) fn gather<P: Gather>(entry: Entry<P>) -> Result<Parts<P>, Entry<P>> {
    GATHERED.with_borrow_mut(|gathered| match gathered {
        Some(gathered) => P::gather(entry, gathered),
        None => Err(entry),
    })
}

/// What the tensors that share one launch have in common.
#[derive(PartialEq)]
struct Group {
    device: CubeDevice,
    vector_size: usize,
    cube_dim: CubeDim,
    /// Whether one cube covers each tensor: one kernel ([`kernel::multi::step_in_one_cube`]),
    /// else three.
    one_cube: bool,
    amsgrad: bool,
    step_dtype: DType,
    moment_1_dtype: DType,
    hyper: Hyper,
    lr: LearningRate,
}

impl Group {
    fn of(entry: &Entry<CubeTensor>) -> Self {
        let param = &entry.parts.param;
        let layout = Layout::of(&param.client, param.meta.num_elements());
        Group {
            device: param.device.clone(),
            vector_size: layout.vector_size,
            cube_dim: layout.cube_dim,
            one_cube: layout.one_cube,
            amsgrad: entry.parts.max_moment_2.is_some(),
            step_dtype: entry.parts.step.dtype,
            moment_1_dtype: entry.parts.moment_1.dtype,
            hyper: entry.hyper,
            lr: entry.lr,
        }
    }
}

/// Launches the steps of `entries`, whose buffers are all uniquely owned, in place: one kernel
/// (tensors that one cube covers) or three per [`Group`] and chunk of as many tensors as a
/// launch binds ([`Chunk`]). Returns their parts, in order.
pub(super) fn launch_all(entries: Vec<Entry<CubeTensor>>) -> Vec<Parts<CubeTensor>> {
    let mut groups: Vec<(Group, Vec<&Entry<CubeTensor>>)> = Vec::new();
    for entry in &entries {
        let group = Group::of(entry);
        match groups.iter_mut().find(|(other, _)| *other == group) {
            Some((_, members)) => members.push(entry),
            None => groups.push((group, vec![entry])),
        }
    }
    for (group, members) in &groups {
        let budget = binding_budget(&members[0].parts.param.client);
        let most = budget / layout_bindings(group.one_cube, group.amsgrad);
        for chunk in members.chunks(most.max(1)) {
            launch_chunk(group, chunk);
        }
    }
    entries.into_iter().map(|entry| entry.parts).collect()
}

/// What the steps gathered for the next launch on one device bind and hold: they are launched
/// before a step whose buffers would pass the device's binding budget joins them, and once they
/// hold [`ELEMENTS_PER_LAUNCH`] elements.
#[derive(Default)]
pub(super) struct Chunk {
    bindings: usize,
    elements: usize,
}

impl Chunk {
    /// Whether what was gathered is to be launched before a step that binds `bindings` buffers
    /// joins it on `client`'s device.
    pub(super) fn overflows(&self, client: &Client, bindings: usize) -> bool {
        self.bindings > 0 && self.bindings + bindings > binding_budget(client)
    }

    /// Counts in a step of `elements` elements that binds `bindings` buffers; whether the chunk
    /// is to be launched now.
    pub(super) fn add(&mut self, bindings: usize, elements: usize) -> bool {
        self.bindings += bindings;
        self.elements += elements;
        self.elements >= ELEMENTS_PER_LAUNCH
    }
}

/// Buffers that one launch on `client`'s device binds for its tensors at most: the device's
/// limit less the workspace and a few bindings kept for the runtime's own.
fn binding_budget(client: &Client) -> usize {
    (client.properties().hardware.max_bindings as usize).saturating_sub(4)
}

/// Buffers that the step of a tensor of `elements` f32 elements binds in its launch on
/// `client`'s device ([`layout_bindings`]).
pub(super) fn bindings(client: &Client, elements: usize, amsgrad: bool) -> usize {
    layout_bindings(Layout::of(client, elements).one_cube, amsgrad)
}

/// Buffers per tensor: `w`, `m`, `g`, `v` and the step counter (and `max v` with amsgrad) in
/// [`kernel::multi::step_in_one_cube`]; `w`, `m` and `g` in [`kernel::multi::update`], the
/// largest of the three kernels.
fn layout_bindings(one_cube: bool, amsgrad: bool) -> usize {
    match one_cube {
        true => 5 + usize::from(amsgrad),
        false => 3,
    }
}

/// How many steps of tensors of `elements` f32 elements (without amsgrad) one launch takes on
/// `device`, if the step runs there.
pub(crate) fn tensors_per_launch(device: &DispatchDevice, elements: usize) -> Option<usize> {
    super::path(device)?;
    #[allow(irrefutable_let_patterns)] // `Cube` is the only variant in some builds.
    let DispatchDevice::Cube(device) = device else {
        return None;
    };
    let client = device.client();
    Some((binding_budget(&client) / bindings(&client, elements, false)).max(1))
}

/// The kernels of [`kernel::multi`] over `entries`, one group: one, or three for tensors that
/// more than one cube covers.
fn launch_chunk(group: &Group, entries: &[&Entry<CubeTensor>]) {
    let first = &entries[0].parts.param;
    let client = first.client.clone();
    let cube_dim = group.cube_dim;
    let hyper = || hyper_arg(&group.hyper, group.lr);
    let decay_on_update = group.hyper.weight_decay_mode == WeightDecayMode::OnUpdate;
    let max_moments_2 = || {
        list(
            entries
                .iter()
                .filter_map(|entry| entry.parts.max_moment_2.as_ref()),
        )
    };
    if group.one_cube {
        kernel::multi::step_in_one_cube::launch(
            &client,
            CubeCount::Static(entries.len() as u32, 1, 1),
            cube_dim,
            group.vector_size,
            list(entries.iter().map(|entry| &entry.parts.param)),
            list(entries.iter().map(|entry| &entry.parts.moment_1)),
            list(entries.iter().map(|entry| &entry.grad)),
            list(entries.iter().map(|entry| &entry.parts.moment_2)),
            list(entries.iter().map(|entry| &entry.parts.step)),
            max_moments_2(),
            hyper(),
            group.hyper.bias_correction,
            decay_on_update,
            [
                elem_type(&entries[0].parts.step),
                elem_type(&entries[0].parts.moment_1),
            ],
        );
        return;
    }
    let most_cubes = client.properties().hardware.max_cube_count.0 as usize;
    let vectors =
        |entry: &&Entry<CubeTensor>| entry.parts.param.meta.num_elements() / group.vector_size;
    let first_cubes = |per_unit: usize, most: usize| {
        let counts = entries
            .iter()
            .map(|entry| cube_count(vectors(entry), per_unit, most));
        first_cubes(counts.collect(), most_cubes)
    };
    let norm_cubes = first_cubes(NORM_VECTORS_PER_UNIT, MAX_PARTIALS);
    let update_cubes = first_cubes(UPDATE_VECTORS_PER_UNIT, MAX_UPDATE_CUBES);
    let total = |first_cubes: &[usize]| *first_cubes.last().expect("a total") as u32;
    let workspace = workspace(
        first,
        FACTOR_SLOTS * entries.len() + total(&norm_cubes) as usize,
    );
    let sequence = |first_cubes: &[usize]| first_cubes.iter().copied().collect::<SequenceArg<_>>();

    kernel::multi::grad_norm_partials::launch(
        &client,
        CubeCount::Static(total(&norm_cubes), 1, 1),
        cube_dim,
        group.vector_size,
        list(entries.iter().map(|entry| &entry.grad)),
        workspace.clone().into_tensor_arg(),
        sequence(&norm_cubes),
    );
    kernel::multi::finish_norms::launch(
        &client,
        CubeCount::Static(entries.len() as u32, 1, 1),
        cube_dim,
        list(entries.iter().map(|entry| &entry.parts.moment_2)),
        list(entries.iter().map(|entry| &entry.parts.step)),
        max_moments_2(),
        workspace.clone().into_tensor_arg(),
        sequence(&norm_cubes),
        hyper(),
        group.hyper.bias_correction,
        elem_type(&entries[0].parts.step),
    );
    kernel::multi::update::launch(
        &client,
        CubeCount::Static(total(&update_cubes), 1, 1),
        cube_dim,
        group.vector_size,
        list(entries.iter().map(|entry| &entry.parts.param)),
        list(entries.iter().map(|entry| &entry.parts.moment_1)),
        list(entries.iter().map(|entry| &entry.grad)),
        workspace.into_tensor_arg(),
        sequence(&update_cubes),
        hyper(),
        decay_on_update,
        elem_type(&entries[0].parts.moment_1),
    );
}

/// `tensors` as a kernel's list argument.
fn list<'a, T: CubePrimitive>(
    tensors: impl Iterator<Item = &'a CubeTensor>,
) -> SequenceArg<OwnedTensor<T>> {
    tensors
        .map(|tensor| tensor.clone().into_tensor_arg())
        .collect()
}

/// The first cube of each tensor for `counts` cubes per tensor, then their total, which stays
/// within `most` (each count scaled down if needed, at least one; units then loop over more of
/// their tensor).
fn first_cubes(counts: Vec<usize>, most: usize) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    let budget = most.saturating_sub(counts.len()).max(1);
    let mut first = Vec::with_capacity(counts.len() + 1);
    let mut next = 0;
    for count in counts {
        first.push(next);
        next += match total > most {
            true => (count * budget / total).max(1),
            false => count,
        };
    }
    first.push(next);
    first
}

#[cfg(test)]
mod tests {
    use super::first_cubes;

    #[test]
    fn first_cubes_lay_tensors_out_one_after_another_within_the_most() {
        assert_eq!(first_cubes(vec![1, 3, 2], 100), vec![0, 1, 4, 6]);
        // 2 × 60,000 cubes over 65,535: scaled to fit, each tensor keeps at least one.
        let first = first_cubes(vec![60_000, 1, 60_000], 65_535);
        assert!(*first.last().unwrap() <= 65_535, "{first:?}");
        assert!(first.windows(2).all(|pair| pair[1] > pair[0]), "{first:?}");
    }
}
