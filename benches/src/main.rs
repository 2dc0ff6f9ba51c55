//! Runs the benchmarks and writes `BENCHMARKS.md`, its chart and raw figures.

use std::path::PathBuf;

use clap::Parser;
use example_kit::{BackendName, fail, run_on};
use novograd_benches::e2e::Workload;
use novograd_benches::report::{Machine, Report, command_line};
use novograd_benches::sets::ParamSet;
use novograd_benches::suite::Suite;
use novograd_benches::timing::Sampling;
use novograd_benches::{peers, triad};

/// Time NovoGrad, Burn's AdamW and SGD (optimizer step, state bytes, end-to-end training step)
/// on every backend compiled in, next to the memory-bandwidth bound and PyTorch/JAX peers, and
/// write the report.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Backends to measure [default: every one compiled in: flex, ndarray, and wgpu/cuda with
    /// their cargo features].
    #[arg(long, value_enum, value_delimiter = ',')]
    backends: Vec<BackendName>,
    /// Parameter sets of the optimizer step [default: transformer-like, resnet-like, many-small].
    #[arg(long, value_enum, value_delimiter = ',')]
    sets: Vec<ParamSet>,
    /// Timed optimizer steps per optimizer and set.
    #[arg(long, default_value_t = 15)]
    samples: usize,
    /// Untimed optimizer steps first (kernel compilation, autotune).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed training steps per optimizer and model.
    #[arg(long, default_value_t = 5)]
    e2e_samples: usize,
    /// Batch size of the training steps [default: each example's, 128 and 32].
    #[arg(long)]
    e2e_batch: Option<usize>,
    /// Python with torch, torch-optimizer, timm, jax and optax for the peers.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Where the peers' tensors live: `cpu` (torch limited to this machine's cores) or `cuda`.
    #[arg(long, default_value = "cpu")]
    peers_device: String,
    /// The peers' script [default: `peers/step.py` of this crate's sources].
    #[arg(long)]
    peers_script: Option<PathBuf>,
    /// Skip the peers.
    #[arg(long)]
    no_peers: bool,
    /// Skip the end-to-end training steps.
    #[arg(long)]
    no_e2e: bool,
    /// f32 elements per array of the bandwidth triad.
    #[arg(long, default_value_t = 1 << 25)]
    triad_len: usize,
    /// Seed of weights, gradients and batches.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The Markdown report; the chart and JSON go to `docs/benchmarks/` beside it.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

/// Every backend, in report order.
const BACKENDS: [BackendName; 4] = [
    BackendName::Flex,
    BackendName::Ndarray,
    BackendName::Wgpu,
    BackendName::Cuda,
];

fn compiled_in() -> Vec<BackendName> {
    let mut backends = vec![BackendName::Flex, BackendName::Ndarray];
    if cfg!(feature = "wgpu") {
        backends.push(BackendName::Wgpu);
    }
    if cfg!(feature = "cuda") {
        backends.push(BackendName::Cuda);
    }
    backends
}

fn main() {
    let args = Args::parse();
    let command = command_line("novograd-benches");
    let backends = if args.backends.is_empty() {
        compiled_in()
    } else {
        args.backends.clone()
    };
    let sets = if args.sets.is_empty() {
        ParamSet::MEASURED.to_vec()
    } else {
        args.sets.clone()
    };
    let machine = Machine::here();
    let step_sampling = Sampling {
        warmup: args.warmup,
        samples: args.samples,
    };

    eprintln!("bandwidth triad, {} threads", machine.cores);
    let bandwidth = triad::triad(
        machine.cores,
        args.triad_len,
        Sampling {
            warmup: 2,
            samples: 10,
        },
    );

    let peers = if args.no_peers {
        Err("skipped (--no-peers)".to_string())
    } else if !sets.contains(&ParamSet::TransformerLike) {
        Err("they run on the transformer-like set, which was not measured".to_string())
    } else {
        eprintln!("peers (python)");
        let script = (args.peers_script.clone())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/step.py"));
        peers::run(
            &args.python,
            &script,
            &args.peers_device,
            ParamSet::TransformerLike,
            machine.cores,
            step_sampling,
        )
    };

    let workloads = match args.no_e2e {
        true => Vec::new(),
        false => (Workload::ALL.iter())
            .map(|&w| (w, args.e2e_batch.unwrap_or(w.default_batch())))
            .collect::<Vec<_>>(),
    };
    let mut results = Vec::new();
    let mut not_measured = Vec::new();
    for backend in BACKENDS {
        if !backends.contains(&backend) {
            let why = if compiled_in().contains(&backend) {
                "not asked for (--backends)".to_string()
            } else {
                format!(
                    "not compiled in (`--features {backend}`); no such device was used for this report"
                )
            };
            not_measured.push((backend, why));
            continue;
        }
        let suite = Suite {
            backend,
            sets: sets.clone(),
            step_sampling,
            workloads: workloads.clone(),
            e2e_sampling: Sampling {
                warmup: 2,
                samples: args.e2e_samples,
            },
            seed: args.seed,
        };
        match run_on(backend, 1, suite) {
            Ok(result) => results.push(result),
            Err(why) => not_measured.push((backend, why)),
        }
    }

    let report = Report {
        command,
        machine,
        bandwidth,
        backends: results,
        not_measured,
        peers,
    };
    if let Err(error) = report.write(&args.out) {
        fail(format!("{}: {error}", args.out.display()));
    }
    println!("{}", report.markdown("docs/benchmarks/step-times.png"));
    println!("written: {}", args.out.display());
}
