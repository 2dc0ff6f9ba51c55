//! The optimizer step under criterion: NovoGrad, Burn's AdamW and SGD on every parameter set
//! and every backend compiled in (`--features wgpu`, `--features cuda`).

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::AutodiffBackend;
use criterion::{Criterion, criterion_group, criterion_main};
use novograd_benches::sets::ParamSet;
use novograd_benches::step::{Contender, StepBench};

fn bench_backend<B: AutodiffBackend>(c: &mut Criterion, backend: &str, device: B::Device) {
    for set in ParamSet::MEASURED {
        let mut group = c.benchmark_group(format!("step/{backend}/{set:?}"));
        group.sample_size(10);
        for optimizer in Contender::ALL {
            let mut bench = StepBench::<B>::new(set, optimizer, &device, 42);
            group.bench_function(optimizer.to_string(), |b| {
                b.iter_custom(|iterations| (0..iterations).map(|_| bench.step()).sum())
            });
        }
        group.finish();
    }
}

fn steps(c: &mut Criterion) {
    bench_backend::<Autodiff<NdArray>>(c, "ndarray", Default::default());
    bench_backend::<Autodiff<Flex>>(c, "flex", Default::default());
    #[cfg(feature = "wgpu")]
    bench_backend::<Autodiff<burn::backend::Wgpu>>(c, "wgpu", Default::default());
    #[cfg(feature = "cuda")]
    bench_backend::<Autodiff<burn::backend::Cuda>>(c, "cuda", Default::default());
}

criterion_group!(benches, steps);
criterion_main!(benches);
