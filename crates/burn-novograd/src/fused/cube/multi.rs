//! The multi-tensor step ([`crate::multi_tensor`]) on CubeCL: while it runs, each tensor's
//! fused step is gathered instead of launched, and returns the tensors that the gathered step
//! will write in place. The gathered steps are launched together, three kernels
//! ([`kernel::multi`]) per group of tensors (one device, vector width, step-counter and `m`
//! dtypes, amsgrad or not, hyper-parameters and learning rate), once they reach the kernels'
//! binding limit ([`max_tensors`]) or [`ELEMENTS_PER_LAUNCH`], and at the end. Under Fusion each launch
//! is a custom operation ([`fusion::register_all`]).
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
    Entry, MAX_PARTIALS, MAX_UPDATE_CUBES, NORM_VECTORS_PER_UNIT, Parts, UPDATE_VECTORS_PER_UNIT,
    cube_count, cube_dim, elem_type, hyper_arg, vector_size, workspace,
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
    /// Elements of `plain`'s parameters.
    plain_elements: usize,
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
        let per_launch = max_tensors(&entry.parts.param.client);
        gathered.plain_elements += entry.parts.param.meta.num_elements();
        gathered.plain.push(entry);
        // A launch's worth gathered: launched now, so that the device starts on it while the
        // rest is gathered.
        if gathered.plain.len() == per_launch || gathered.plain_elements >= ELEMENTS_PER_LAUNCH {
            gathered.plain_elements = 0;
            launch_all(std::mem::take(&mut gathered.plain));
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
    amsgrad: bool,
    step_dtype: DType,
    moment_1_dtype: DType,
    hyper: Hyper,
    lr: LearningRate,
}

impl Group {
    fn of(entry: &Entry<CubeTensor>) -> Self {
        Group {
            device: entry.parts.param.device.clone(),
            vector_size: vector_size(&entry.parts.param),
            amsgrad: entry.parts.max_moment_2.is_some(),
            step_dtype: entry.parts.step.dtype,
            moment_1_dtype: entry.parts.moment_1.dtype,
            hyper: entry.hyper,
            lr: entry.lr,
        }
    }
}

/// Launches the steps of `entries`, whose buffers are all uniquely owned, in place: three
/// kernels per [`Group`] and chunk of at most [`max_tensors`]. Returns their parts, in order.
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
        let most = max_tensors(&members[0].parts.param.client);
        for chunk in members.chunks(most) {
            launch_chunk(group, chunk);
        }
    }
    entries.into_iter().map(|entry| entry.parts).collect()
}

/// Most tensors per launch on `client`'s device: the update kernel binds three buffers per
/// tensor and the workspace (a few bindings kept for the runtime's own).
pub(super) fn max_tensors(client: &Client) -> usize {
    let bindings = client.properties().hardware.max_bindings as usize;
    (bindings.saturating_sub(4) / 3).max(1)
}

/// [`max_tensors`] on `device`, if the step runs there.
pub(crate) fn tensors_per_launch(device: &DispatchDevice) -> Option<usize> {
    super::path(device)?;
    #[allow(irrefutable_let_patterns)] // `Cube` is the only variant in some builds.
    let DispatchDevice::Cube(device) = device else {
        return None;
    };
    Some(max_tensors(&device.client()))
}

/// The three kernels of [`kernel::multi`] over `entries`, one group.
fn launch_chunk(group: &Group, entries: &[&Entry<CubeTensor>]) {
    let first = &entries[0].parts.param;
    let client = first.client.clone();
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
    let cube_dim = cube_dim(&client);
    let hyper = || hyper_arg(&group.hyper, group.lr);

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
        list(
            entries
                .iter()
                .filter_map(|entry| entry.parts.max_moment_2.as_ref()),
        ),
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
        group.hyper.weight_decay_mode == WeightDecayMode::OnUpdate,
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
