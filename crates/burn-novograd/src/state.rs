use burn::optim::RecordState;
use burn::tensor::{Int, Tensor};

/// The state NovoGrad keeps for one parameter tensor: one tensor shaped like the parameter and
/// one-element tensors, all on the parameter's device.
#[derive(RecordState, Clone, Debug)]
pub struct NovoGradState<const D: usize> {
    /// First moment `m`, shaped like the parameter.
    pub moment_1: Tensor<D>,
    /// Second moment `v`, the running average of `‖g‖²`: one element, in at least f32.
    pub moment_2: Tensor<1>,
    /// Running maximum of `v`, kept with amsgrad only.
    pub max_moment_2: Option<Tensor<1>>,
    /// Number of steps applied so far (skipped steps not counted): one element.
    pub step: Tensor<1, Int>,
}
