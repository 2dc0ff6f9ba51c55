//! Trains the MNIST CNN and writes `results.json`, the curves and checkpoints.

use std::path::PathBuf;

use burn::data::dataset::Dataset;
use clap::Parser;
use example_kit::mnist::Mnist;
use example_kit::{CommonArgs, fail, run_on};
use mnist::model::ModelConfig;
use mnist::{DEFAULTS, MnistRun, PLOTS, plot_curves};

/// Train a small CNN on MNIST with NovoGrad, AdamW or SGD through Burn's Learner.
///
/// Default learning rate / weight decay per optimizer: NovoGrad 0.01 / 1e-3 (β = 0.95, 0.98),
/// AdamW 1e-3 / 1e-2 (β = 0.9, 0.999), SGD 0.05 / 5e-4 (momentum 0.9); warm-up over the first
/// 5% of steps, then cosine decay.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Images per batch (per device).
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Directory with the four MNIST IDX files (.gz or raw) [default: download them to the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Train on the first N training images only (quick runs).
    #[arg(long)]
    train_limit: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let mut data = Mnist::load(args.data_dir.as_deref()).unwrap_or_else(|error| fail(error));
    if let Some(limit) = args.train_limit {
        data.train = data.train.truncated(limit);
    }
    let settings = args
        .common
        .settings("mnist", &PLOTS, &DEFAULTS, args.batch_size);
    let artifact_dir = settings.artifact_dir.clone();
    println!(
        "MNIST: {} training / {} test images; {}",
        data.train.len(),
        data.test.len(),
        args.common.describe(&settings)
    );
    let run = MnistRun {
        settings,
        model: ModelConfig::new(),
        data,
    };
    let report =
        run_on(args.common.backend, args.common.devices, run).unwrap_or_else(|error| fail(error));

    println!("\nepoch  seconds  train loss  test loss  test accuracy");
    for epoch in &report.history {
        let show = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.4}"));
        println!(
            "{:>5}  {:>7.1}  {:>10}  {:>9}  {:>12}",
            epoch.epoch,
            epoch.seconds,
            show(epoch.train_loss),
            show(epoch.valid_loss),
            epoch
                .valid_accuracy
                .map_or("-".into(), |v| format!("{v:.2}%"))
        );
    }
    let results = report.write(&artifact_dir).expect("results.json");
    if let Err(error) = plot_curves(&report, &artifact_dir) {
        eprintln!("warning: no curves drawn: {error}");
    }
    println!(
        "\n{}: test accuracy {:.2}% after {} epochs in {:.0} s ({:.0} s/epoch); optimizer state {} bytes",
        report.optimizer.name,
        report.outcome.test_accuracy,
        report.epochs,
        report.train_seconds,
        report.train_seconds / report.epochs.max(1) as f64,
        report.optimizer_state_bytes
    );
    println!(
        "results: {} (curves: loss.png, accuracy.png beside it)",
        results.display()
    );
}
