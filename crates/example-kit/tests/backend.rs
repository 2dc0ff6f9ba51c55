//! How `--devices N` trains: Burn's DDP needs collective operations, which Burn 0.22.1 has on
//! CUDA only; the CPU backends train data-parallel through the multi-device strategy.

use burn::tensor::Device;
use burn::train::ExecutionStrategy;
use example_kit::BackendName;

#[test]
fn cpu_devices_train_through_the_multi_device_strategy() {
    let device = Device::flex().autodiff();
    let one = BackendName::Flex.execution_strategy(vec![device.clone()]);
    assert!(matches!(one, ExecutionStrategy::SingleDevice(_)));
    let two = BackendName::Flex.execution_strategy(vec![device.clone(), device]);
    assert!(matches!(two, ExecutionStrategy::MultiDevice(devices, _) if devices.len() == 2));
}
