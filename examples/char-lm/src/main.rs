//! Trains the character transformer and writes `results.json`, `config.json`, `model.bpk`, the
//! curves and checkpoints (`char-lm`, `char-lm train`), or continues a prompt with a trained
//! model (`char-lm sample`).

use std::path::PathBuf;

use char_lm::model::ModelConfig;
use char_lm::{DEFAULTS, EPOCHS, LmData, LmRun, PLOTS, generate, load_trained, plot_curves};
use clap::{Parser, Subcommand};
use example_kit::text::CharCorpus;
use example_kit::{BackendName, CommonArgs, RunConfig, fail, run_on};

/// Train a small decoder-only transformer on characters with NovoGrad, AdamW, SGD, LAMB or Lion
/// through Burn's Learner (the default command), or sample text from a trained one.
///
/// Default learning rate / weight decay per optimizer: NovoGrad 0.01 / 1e-3 (β = 0.95, 0.98),
/// AdamW 1e-3 / 0.1 (β = 0.9, 0.999), SGD 0.1 / 0 (momentum 0.9), LAMB 0.01 / 0.1 (β = 0.9,
/// 0.999), Lion 3e-4 / 0.3 (β = 0.9, 0.99); warm-up over the first 5% of steps, then cosine
/// decay.
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
    /// Train (what `char-lm` without a subcommand does).
    Train(TrainArgs),
    /// Continue a prompt with a trained model.
    Sample(SampleArgs),
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Windows of context+1 characters per batch (per device).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Train on at most this many windows per epoch (quick runs) [default: all].
    #[arg(long)]
    window_limit: Option<usize>,
    /// Characters of context.
    #[arg(long, default_value_t = 64)]
    context: usize,
    /// Any UTF-8 text: the first 90% trains, the last 10% validates [default: tiny-shakespeare, downloaded to the cache].
    #[arg(long)]
    text: Option<PathBuf>,
    /// After training, continue this text (at temperature 0.8) [default: no sample].
    #[arg(long)]
    prompt: Option<String>,
    /// Characters to generate after the prompt.
    #[arg(long, default_value_t = 300)]
    sample_len: usize,
}

#[derive(clap::Args, Debug)]
struct SampleArgs {
    /// The artifact directory of a training run (its config.json and model.bpk).
    #[arg(long)]
    model: PathBuf,
    /// The text to continue; every character must occur in the training text.
    #[arg(long)]
    prompt: String,
    /// Characters to generate.
    #[arg(long, default_value_t = 300)]
    len: usize,
    /// Sampling temperature, > 0: lower is more conservative, 1 samples the model's own
    /// probabilities.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Seed of the draws.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Backend to sample on.
    #[arg(long, value_enum, default_value_t = BackendName::Flex)]
    backend: BackendName,
}

fn main() {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => train(args),
        Command::Sample(args) => sample(args),
    }
}

/// The tokens of a non-empty `prompt`, or the process ends with a clear error.
fn encode_prompt(corpus: &CharCorpus, prompt: &str) -> Vec<u32> {
    match corpus.encode(prompt) {
        Ok(tokens) if !tokens.is_empty() => tokens,
        Ok(_) => fail("--prompt is empty"),
        Err(c) => fail(format!(
            "--prompt: character {c:?} does not occur in the text"
        )),
    }
}

fn train(args: TrainArgs) {
    // At least ten windows of training and one of validation.
    let corpus = CharCorpus::load(args.text.as_deref(), 100 * (args.context + 1))
        .unwrap_or_else(|error| fail(error));
    let prompt = args
        .prompt
        .map(|prompt| (encode_prompt(&corpus, &prompt), args.sample_len));
    let settings = args
        .common
        .settings("char-lm", &PLOTS, &DEFAULTS, args.batch_size, EPOCHS);
    let artifact_dir = settings.artifact_dir.clone();
    let model = ModelConfig::new(corpus.vocabulary.len()).with_context(args.context);
    let data = LmData {
        text: args.text.clone(),
        window_limit: args.window_limit,
        vocabulary: corpus.vocabulary.iter().collect(),
    };
    RunConfig::new("char-lm", &settings, model.clone(), data)
        .save(&artifact_dir, settings.resume_from.is_some())
        .unwrap_or_else(|error| fail(error));
    println!(
        "char-LM: {} training / {} validation characters, {} distinct; {}",
        corpus.train.len(),
        corpus.valid.len(),
        corpus.vocabulary.len(),
        args.common.describe(&settings)
    );
    let run = LmRun {
        settings,
        window_limit: args.window_limit,
        model,
        corpus,
        prompt,
    };
    let report =
        run_on(args.common.backend, args.common.devices, run).unwrap_or_else(|error| fail(error));

    println!("\nepoch  seconds  train loss  valid loss");
    for epoch in &report.history {
        let show = |value: Option<f64>| value.map_or("-".into(), |v| format!("{v:.4}"));
        println!(
            "{:>5}  {:>7.1}  {:>10}  {:>10}",
            epoch.epoch,
            epoch.seconds,
            show(epoch.train_loss),
            show(epoch.valid_loss)
        );
    }
    let results = report.write(&artifact_dir).expect("results.json");
    if let Err(error) = plot_curves(&report, &artifact_dir) {
        eprintln!("warning: no curves drawn: {error}");
    }
    let outcome = &report.outcome;
    println!(
        "\n{}: validation loss {:.4} nats/char = {:.3} bits/char after {} steps in {:.0} s; optimizer state {} bytes",
        report.optimizer.name,
        outcome.valid_loss,
        outcome.valid_bits_per_char,
        outcome.steps,
        report.train_seconds,
        report.optimizer_state_bytes
    );
    if let Some(sample) = &outcome.sample {
        println!("\n--- sample ---\n{sample}\n--------------");
    }
    println!(
        "results: {} (beside it: config.json, model.bpk, loss.png, loss-steps.png)",
        results.display()
    );
}

fn sample(args: SampleArgs) {
    if !(args.temperature.is_finite() && args.temperature > 0.0) {
        fail(format!(
            "--temperature {}: expected a finite value > 0",
            args.temperature
        ));
    }
    let device = args.backend.device().unwrap_or_else(|error| fail(error));
    let (model, config) = load_trained(&args.model, &device).unwrap_or_else(|error| fail(error));
    // The run's characters, as a corpus without text, to encode the prompt and decode the sample.
    let characters = CharCorpus {
        vocabulary: config.data.vocabulary.chars().collect(),
        train: Vec::new(),
        valid: Vec::new(),
    };
    let prompt = encode_prompt(&characters, &args.prompt);
    let tokens = generate(&model, &prompt, args.len, args.temperature, args.seed);
    println!("{}", characters.decode(&tokens));
}
