//! The character LM end to end on a small text the tests write: the real reader, training
//! through the Learner, sampling, the results and the command line's errors.

use std::path::Path;
use std::process::Command;

use char_lm::model::ModelConfig;
use char_lm::{DEFAULTS, LmRun, plot_curves};
use example_kit::text::CharCorpus;
use example_kit::{BackendName, OptimizerName, OptimizerSpec, RunSettings, WARMUP_PERCENT, run_on};

/// A text with structure to learn: numbered lines of a few repeated words.
fn write_text(path: &Path) {
    let words = ["to be", "or not", "that is", "the question"];
    let text: String = (0..400)
        .map(|i| format!("{}: {}\n", i % 7, words[i % 4]))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn run(corpus: CharCorpus, optimizer: OptimizerName, artifact_dir: &Path) -> LmRun {
    LmRun {
        settings: RunSettings {
            optimizer: OptimizerSpec::new(optimizer, &DEFAULTS, None, None),
            backend: BackendName::Flex,
            devices: 1,
            epochs: 3,
            batch_size: 16,
            seed: 3,
            warmup_percent: WARMUP_PERCENT,
            artifact_dir: artifact_dir.to_path_buf(),
            resume_from: None,
        },
        window_limit: None,
        model: ModelConfig::new(corpus.vocabulary.len())
            .with_context(16)
            .with_d_model(32)
            .with_heads(2)
            .with_layers(1)
            .with_dropout(0.0),
        prompt: Some((corpus.encode("3: ").unwrap(), 40)),
        corpus,
    }
}

#[test]
fn novograd_learns_the_text_and_samples_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    write_text(&path);
    let corpus = CharCorpus::from_file(&path, 100).unwrap();
    let uniform = (corpus.vocabulary.len() as f64).ln();
    let artifacts = tempfile::tempdir().unwrap();
    let report = run_on(
        BackendName::Flex,
        1,
        run(corpus, OptimizerName::Novograd, artifacts.path()),
    )
    .unwrap();

    let outcome = &report.outcome;
    assert!(
        outcome.valid_loss < 0.6 * uniform,
        "validation loss {} vs uniform {uniform}",
        outcome.valid_loss
    );
    assert!(
        (outcome.valid_bits_per_char - outcome.valid_loss / std::f64::consts::LN_2).abs() < 1e-12
    );
    let sample = outcome.sample.as_deref().unwrap();
    assert!(
        sample.starts_with("3: ") && sample.chars().count() == 43,
        "{sample:?}"
    );
    assert_eq!(report.history.len(), 3);

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.write(artifacts.path()).unwrap()).unwrap(),
    )
    .unwrap();
    for key in [
        "optimizer",
        "backend",
        "epochs",
        "train_seconds",
        "valid_loss",
        "valid_bits_per_char",
        "history",
    ] {
        assert!(json.get(key).is_some(), "results.json lacks {key}");
    }
    plot_curves(&report, artifacts.path()).unwrap();
    assert!(
        std::fs::read(artifacts.path().join("loss.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
}

#[test]
fn adamw_runs_on_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    write_text(&path);
    let corpus = CharCorpus::from_file(&path, 100).unwrap();
    let uniform = (corpus.vocabulary.len() as f64).ln();
    let artifacts = tempfile::tempdir().unwrap();
    let report = run_on(
        BackendName::Flex,
        1,
        run(corpus, OptimizerName::Adamw, artifacts.path()),
    )
    .unwrap();
    assert!(
        report.outcome.valid_loss < uniform,
        "{}",
        report.outcome.valid_loss
    );
}

/// Runs the `char-lm` binary: exit code, stdout, stderr.
fn char_lm(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_char-lm"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn command_line_trains_saves_the_model_and_samples_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    write_text(&text);
    let artifacts = dir.path().join("run");
    let model = artifacts.to_str().unwrap();
    let (code, stdout, stderr) = char_lm(&[
        "--text",
        text.to_str().unwrap(),
        "--context",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--window-limit",
        "32",
        "--beta-2",
        "0.5",
        "--weight-decay-mode",
        "on-update",
        "--artifact-dir",
        model,
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for file in [
        "results.json",
        "config.json",
        "model.bpk",
        "loss.png",
        "loss-steps.png",
    ] {
        assert!(artifacts.join(file).is_file(), "{file} missing");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(artifacts.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["optimizer_config"]["beta_2"], 0.5);
    assert_eq!(config["optimizer_config"]["weight_decay_mode"], "OnUpdate");
    assert_eq!(config["data"]["vocabulary"], "\n 0123456:abehinoqrstu");
    assert_eq!(config["model"]["context"], 16);

    let sample = |seed: &str| {
        let (code, stdout, stderr) = char_lm(&[
            "sample", "--model", model, "--prompt", "3: ", "--len", "20", "--seed", seed,
        ]);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let first = sample("7");
    assert!(
        first.starts_with("3: ") && first.trim_end_matches('\n').chars().count() == 23,
        "{first:?}"
    );
    assert_eq!(sample("7"), first, "the same seed draws the same text");

    for (args, expected) in [
        (
            vec!["--prompt", "JULIET:"],
            "--prompt: character 'J' does not occur in the text",
        ),
        (vec!["--prompt", ""], "--prompt is empty"),
        (
            vec!["--prompt", "3", "--temperature", "0"],
            "--temperature 0: expected a finite value > 0",
        ),
    ] {
        let (code, _, stderr) = char_lm(&[&["sample", "--model", model], args.as_slice()].concat());
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{stderr}"
        );
    }
    let (code, _, stderr) = char_lm(&["sample", "--model", "/nonexistent/run", "--prompt", "3"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--model /nonexistent/run: no such directory"),
        "{stderr}"
    );
}

#[test]
fn command_line_reports_bad_text_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    let file = path.to_str().unwrap();

    std::fs::write(&path, "").unwrap();
    let (code, _, stderr) = char_lm(&["--text", file]);
    assert_eq!(code, 2);
    assert!(stderr.contains("input.txt: is empty"), "{stderr}");

    std::fs::write(&path, b"caf\xe9 au lait").unwrap();
    let (code, _, stderr) = char_lm(&["--text", file]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("input.txt: is not UTF-8 text (invalid byte at offset 3)"),
        "{stderr}"
    );

    write_text(&path);
    let (code, _, stderr) = char_lm(&["--text", file, "--context", "16", "--prompt", "JULIET:"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--prompt: character 'J' does not occur in the text"),
        "{stderr}"
    );

    let (code, _, stderr) = char_lm(&["--text", "/nonexistent/input.txt"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/input.txt: cannot read"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text.txt");
    write_text(&path);
    let corpus = CharCorpus::from_file(&path, 100).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let mut wgpu_run = run(corpus, OptimizerName::Novograd, artifacts.path());
    (wgpu_run.settings.backend, wgpu_run.settings.epochs) = (BackendName::Wgpu, 1);
    wgpu_run.window_limit = Some(32);
    let report = run_on(BackendName::Wgpu, 1, wgpu_run).unwrap();
    assert!(report.outcome.valid_loss.is_finite());
}
