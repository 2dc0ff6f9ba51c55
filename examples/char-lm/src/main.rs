//! Trains the character transformer and writes `results.json`, the curves and checkpoints.

use std::path::PathBuf;

use char_lm::model::ModelConfig;
use char_lm::{DEFAULTS, LmRun, PLOTS, plot_curves};
use clap::Parser;
use example_kit::text::CharCorpus;
use example_kit::{CommonArgs, fail, run_on};

/// Train a small decoder-only transformer on characters with NovoGrad, AdamW or SGD through
/// Burn's Learner.
///
/// Default learning rate / weight decay per optimizer: NovoGrad 0.01 / 1e-3 (β = 0.95, 0.98),
/// AdamW 1e-3 / 0.1 (β = 0.9, 0.999), SGD 0.1 / 0 (momentum 0.9); warm-up over the first 5% of
/// steps, then cosine decay.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Windows of context+1 characters per batch (per device).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Train on at most this many windows per epoch (quick runs).
    #[arg(long)]
    window_limit: Option<usize>,
    /// Characters of context.
    #[arg(long, default_value_t = 64)]
    context: usize,
    /// Any UTF-8 text: the first 90% trains, the last 10% validates [default: tiny-shakespeare, downloaded to the cache].
    #[arg(long)]
    text: Option<PathBuf>,
    /// After training, continue this text.
    #[arg(long)]
    prompt: Option<String>,
    /// Characters to generate after the prompt.
    #[arg(long, default_value_t = 300)]
    sample_len: usize,
}

fn main() {
    let args = Args::parse();
    // At least ten windows of training and one of validation.
    let corpus = CharCorpus::load(args.text.as_deref(), 100 * (args.context + 1))
        .unwrap_or_else(|error| fail(error));
    let prompt = args.prompt.map(|prompt| match corpus.encode(&prompt) {
        Ok(tokens) if !tokens.is_empty() => (tokens, args.sample_len),
        Ok(_) => fail("--prompt is empty"),
        Err(c) => fail(format!(
            "--prompt: character {c:?} does not occur in the text"
        )),
    });
    let settings = args
        .common
        .settings("char-lm", &PLOTS, &DEFAULTS, args.batch_size);
    let artifact_dir = settings.artifact_dir.clone();
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
        model: ModelConfig::new(corpus.vocabulary.len()).with_context(args.context),
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
        "results: {} (curves: loss.png beside it)",
        results.display()
    );
}
