//! Trains the MNIST CNN and writes `results.json`, `config.json`, `model.bpk`, the curves and
//! checkpoints (`mnist`, `mnist train`), or reads a digit with a trained model
//! (`mnist predict`).

use std::path::PathBuf;

use burn::data::dataset::Dataset;
use clap::{ArgGroup, Parser, Subcommand};
use example_kit::mnist::{Mnist, read_image};
use example_kit::{BackendName, CommonArgs, RunConfig, fail, run_on};
use mnist::model::ModelConfig;
use mnist::{DEFAULTS, EPOCHS, MnistData, MnistRun, PLOTS, load_trained, plot_curves, predict};

/// Train a small CNN on MNIST with NovoGrad, AdamW, SGD, LAMB or Lion through Burn's Learner
/// (the default command), or predict digits with a trained one.
///
/// Default learning rate / weight decay per optimizer: NovoGrad 0.01 / 1e-3 (β = 0.95, 0.98),
/// AdamW 1e-3 / 1e-2 (β = 0.9, 0.999), SGD 0.05 / 5e-4 (momentum 0.9), LAMB 0.01 / 0.01
/// (β = 0.9, 0.999), Lion 3e-4 / 0.03 (β = 0.9, 0.99); warm-up over the first 5% of steps,
/// then cosine decay.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train (what `mnist` without a subcommand does).
    Train(TrainArgs),
    /// Print the digit a trained model reads in a test image or an image file, and its
    /// probability.
    Predict(PredictArgs),
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Images per batch (per device).
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Directory with the four MNIST IDX files (.gz or raw) [default: download them to the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Train on the first N training images only (quick runs) [default: all].
    #[arg(long)]
    train_limit: Option<usize>,
    /// Channels of the first convolution; the second has twice as many [default: 24].
    #[arg(long)]
    channels: Option<usize>,
    /// Width of the hidden linear layer [default: 256].
    #[arg(long)]
    hidden: Option<usize>,
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("input").required(true).args(["index", "image"])))]
struct PredictArgs {
    /// The artifact directory of a training run (its config.json and model.bpk).
    #[arg(long)]
    model: PathBuf,
    /// Index of an MNIST test image (0 to 9,999).
    #[arg(long)]
    index: Option<usize>,
    /// A PNG or binary PGM (P5) image of a digit, light on dark, 28×28 grey (colour is turned
    /// grey, other sizes are resized).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Directory with the MNIST IDX files, for --index [default: the training run's
    /// --data-dir, else the downloaded copy].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Backend to predict on.
    #[arg(long, value_enum, default_value_t = BackendName::Flex)]
    backend: BackendName,
}

fn main() {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => train(args),
        Command::Predict(args) => predict_digit(args),
    }
}

fn train(args: TrainArgs) {
    let mut data = Mnist::load(args.data_dir.as_deref()).unwrap_or_else(|error| fail(error));
    if let Some(limit) = args.train_limit {
        data.train = data.train.truncated(limit);
    }
    let settings = args
        .common
        .settings("mnist", &PLOTS, &DEFAULTS, args.batch_size, EPOCHS);
    let artifact_dir = settings.artifact_dir.clone();
    let model = ModelConfig::new();
    let model = ModelConfig {
        channels: args.channels.unwrap_or(model.channels),
        hidden: args.hidden.unwrap_or(model.hidden),
        ..model
    };
    let data_config = MnistData {
        data_dir: args.data_dir.clone(),
        train_limit: args.train_limit,
    };
    RunConfig::new("mnist", &settings, model.clone(), data_config)
        .save(&artifact_dir, settings.resume_from.is_some())
        .unwrap_or_else(|error| fail(error));
    println!(
        "MNIST: {} training / {} test images; {}",
        data.train.len(),
        data.test.len(),
        args.common.describe(&settings)
    );
    let run = MnistRun {
        settings,
        model,
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
        "results: {} (beside it: config.json, model.bpk, loss.png, accuracy.png, loss-steps.png)",
        results.display()
    );
}

fn predict_digit(args: PredictArgs) {
    let device = args.backend.device().unwrap_or_else(|error| fail(error));
    let (model, config) = load_trained(&args.model, &device).unwrap_or_else(|error| fail(error));
    if let Some(path) = &args.image {
        let (image, resized) = read_image(path).unwrap_or_else(|error| fail(error));
        if resized {
            println!("{}: resized to 28×28", path.display());
        }
        let (digit, probability) = predict(&model, image);
        println!("predicted {digit} (confidence {:.1}%)", 100.0 * probability);
        return;
    }
    let index = args.index.expect("clap requires --index or --image");
    let data_dir = args.data_dir.or(config.data.data_dir);
    let test = Mnist::load(data_dir.as_deref())
        .unwrap_or_else(|error| fail(error))
        .test;
    if index >= test.len() {
        fail(format!(
            "--index {index}: the test set has {} images (0 to {})",
            test.len(),
            test.len().saturating_sub(1)
        ));
    }
    let item = test.get(index).expect("an index within the test set");
    let (digit, probability) = predict(&model, item.image);
    println!(
        "test image {index}: predicted {digit} (confidence {:.1}%), label {}",
        100.0 * probability,
        item.label
    );
}
