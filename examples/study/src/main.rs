//! Runs the study and writes `STUDY.md` with its plots.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use example_kit::cli::MomentStorage;
use example_kit::mnist::Mnist;
use example_kit::text::CharCorpus;
use example_kit::{BackendName, OptimizerName, fail};
use novograd_benches::e2e::Workload;
use novograd_benches::report::command_line;
use study::report::Study;
use study::{Budget, OPTIMIZERS, Trainer, memory, sweeps};

/// Measure the NovoGrad paper's claims (learning-rate and initialisation robustness, large
/// batch, memory) against AdamW, SGD, LAMB and Lion with seeded trainings (MNIST runs that
/// reach their plateau, and a char-LM learning-rate sweep whose best rates then train to their
/// plateau), and write STUDY.md. Resumable: a run already trained is read back from the artifact
/// directory.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    probe: Option<Probe>,
    /// A few minutes' version: one seed, three learning rates, two batch sizes, small subsets
    /// and models.
    #[arg(long)]
    quick: bool,
    /// Backend of every run (flex is the faster CPU backend here).
    #[arg(long, value_enum, default_value_t = BackendName::Flex)]
    backend: BackendName,
    /// Directory with the four MNIST IDX files (.gz or raw) [default: download them to the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The char-LM sweep's text (UTF-8; the first 90% trains) [default: tiny-shakespeare,
    /// downloaded to the cache].
    #[arg(long)]
    text: Option<PathBuf>,
    /// The report; its plots go to `docs/study/` beside it.
    #[arg(long, default_value = "STUDY.md")]
    out: PathBuf,
    /// Where the runs' Learner artifacts go, with each finished run's outcome (`point.json`),
    /// which a later invocation reuses instead of training the run again.
    #[arg(long, default_value = "artifacts/study")]
    artifact_dir: PathBuf,
    /// Train every run again, ignoring the outcomes kept in the artifact directory. Nothing is
    /// deleted but what the runs themselves wrote, which they write again.
    #[arg(long)]
    fresh: bool,
}

/// Internal: one memory probe in a process of its own.
#[derive(Subcommand, Debug)]
enum Probe {
    /// Train a few steps and print the optimizer state bytes and the peak process memory (JSON).
    #[command(hide = true)]
    Probe {
        #[arg(long, value_enum)]
        backend: BackendName,
        #[arg(long, value_enum)]
        workload: Workload,
        #[arg(long, value_enum)]
        optimizer: OptimizerName,
        #[arg(long, value_enum, default_value_t = MomentStorage::Param)]
        moment_dtype: MomentStorage,
        #[arg(long)]
        steps: usize,
    },
}

fn main() {
    let args = Args::parse();
    if let Some(Probe::Probe {
        backend,
        workload,
        optimizer,
        moment_dtype,
        steps,
    }) = args.probe
    {
        let optimizer = (optimizer, moment_dtype.into());
        let measured =
            memory::probe(backend, workload, optimizer, steps).unwrap_or_else(|e| fail(e));
        println!(
            "{}",
            serde_json::to_string(&measured).expect("serialisable")
        );
        return;
    }
    let command = command_line("study");
    let budget = if args.quick {
        Budget::quick()
    } else {
        Budget::full()
    };
    let mnist = Mnist::load(args.data_dir.as_deref()).unwrap_or_else(|error| fail(error));
    // At least a hundred windows, a tenth of them for validation.
    let corpus = CharCorpus::load(args.text.as_deref(), 100 * (budget.lm.context + 1))
        .unwrap_or_else(|error| fail(error));
    let start = Instant::now();
    let mut trainer = Trainer::new(
        args.backend,
        mnist,
        corpus,
        args.artifact_dir.clone(),
        args.fresh,
    );
    let sweeps = sweeps(&mut trainer, &budget, &mnist::DEFAULTS, &char_lm::DEFAULTS);
    let exe = std::env::current_exe().expect("the study's own executable");
    let memory = memory::measure(&exe, args.backend, &OPTIMIZERS, budget.probe_steps);
    let study = Study {
        command,
        backend: args.backend.to_string(),
        budget: &budget,
        sweeps: &sweeps,
        memory: &memory,
        minutes: start.elapsed().as_secs_f64() / 60.0,
        reused: trainer.reused,
    };
    if let Err(error) = study.write(&args.out) {
        fail(format!("{}: {error}", args.out.display()));
    }
    println!(
        "written: {} ({:.1} minutes)",
        args.out.display(),
        study.minutes
    );
}
