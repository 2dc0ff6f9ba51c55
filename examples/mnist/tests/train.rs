//! The MNIST example end to end on tiny IDX files the tests write: the real loader, training
//! through the Learner, the results and the command line's errors.

use std::path::Path;
use std::process::Command;

use example_kit::mnist::{Mnist, synthetic, write_idx};
use example_kit::{BackendName, OptimizerName, OptimizerSpec, RunReport, RunSettings, run_on};
use mnist::model::ModelConfig;
use mnist::{DEFAULTS, MnistOutcome, MnistRun, plot_curves};

/// Writes a tiny MNIST in IDX format (gzip) into `dir` and reads it back with the real loader.
fn tiny_mnist(dir: &Path) -> Mnist {
    write_idx(dir, "train", &synthetic(320, 1), true).unwrap();
    write_idx(dir, "t10k", &synthetic(100, 2), true).unwrap();
    Mnist::from_dir(dir).unwrap()
}

fn run(optimizer: OptimizerName, epochs: usize, artifact_dir: &Path, data: Mnist) -> MnistRun {
    MnistRun {
        settings: RunSettings {
            optimizer: OptimizerSpec::new(optimizer, &DEFAULTS, Some(0.01), None),
            backend: BackendName::Flex,
            epochs,
            batch_size: 32,
            seed: 5,
            artifact_dir: artifact_dir.to_path_buf(),
        },
        model: ModelConfig::new().with_channels(4).with_hidden(32),
        data,
    }
}

#[test]
fn novograd_trains_through_the_learner_and_writes_results() {
    let data_dir = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let data = tiny_mnist(data_dir.path());
    let report: RunReport<MnistOutcome> = run_on(
        BackendName::Flex,
        1,
        run(OptimizerName::Novograd, 3, artifacts.path(), data),
    )
    .unwrap();

    assert_eq!(report.history.len(), 3);
    assert!(
        report.outcome.test_accuracy > 80.0,
        "test accuracy {}",
        report.outcome.test_accuracy
    );
    let losses: Vec<f64> = report
        .history
        .iter()
        .map(|e| e.train_loss.unwrap())
        .collect();
    assert!(losses[2] < losses[0], "train loss {losses:?}");
    assert!(
        report
            .history
            .iter()
            .all(|e| e.seconds > 0.0 && e.valid_accuracy.is_some())
    );
    assert!(report.optimizer_state_bytes > 0);

    let results = report.write(artifacts.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    for key in [
        "optimizer",
        "backend",
        "epochs",
        "train_seconds",
        "test_accuracy",
        "history",
    ] {
        assert!(json.get(key).is_some(), "results.json lacks {key}: {json}");
    }
    assert_eq!(json["optimizer"]["name"], "novograd");
    assert_eq!(json["backend"], "flex");
    plot_curves(&report, artifacts.path()).unwrap();
    for png in ["loss.png", "accuracy.png"] {
        let bytes = std::fs::read(artifacts.path().join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
    }
    assert!(artifacts.path().join("checkpoint/optim-3.bpk").is_file());
}

const RATIO_BOUND: f64 = 0.6;

#[test]
fn adamw_and_sgd_train_too_and_novograd_state_is_half_of_adamw() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = tiny_mnist(data_dir.path());
    let mut state_bytes = Vec::new();
    for optimizer in [
        OptimizerName::Novograd,
        OptimizerName::Adamw,
        OptimizerName::Sgd,
    ] {
        let artifacts = tempfile::tempdir().unwrap();
        let report = run_on(
            BackendName::Flex,
            1,
            run(optimizer, 1, artifacts.path(), data.clone()),
        )
        .unwrap();
        assert!(
            report.outcome.test_accuracy > 20.0,
            "{optimizer}: {}",
            report.outcome.test_accuracy
        );
        state_bytes.push(report.optimizer_state_bytes as f64);
    }
    // NovoGrad keeps one parameter-sized moment where AdamW keeps two, plus two one-element
    // tensors per parameter, which burnpack pads to 256 bytes each: on this small CNN (12
    // parameters, 13 kB of weights) the padding and metadata weigh more than on a real model.
    let ratio = state_bytes[0] / state_bytes[1];
    assert!(ratio < RATIO_BOUND, "NovoGrad/AdamW state {ratio}");
}

#[test]
fn two_devices_train_data_parallel() {
    let data_dir = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let data = tiny_mnist(data_dir.path());
    let report = run_on(
        BackendName::Flex,
        2,
        run(OptimizerName::Novograd, 3, artifacts.path(), data),
    )
    .unwrap();
    assert_eq!(report.devices, 2);
    // Half the optimizer steps of one device (each step sees two batches); chance is 10%.
    assert!(
        report.outcome.test_accuracy > 50.0,
        "test accuracy {}",
        report.outcome.test_accuracy
    );
}

fn mnist_command(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn command_line_reports_bad_data_clearly() {
    let dir = tempfile::tempdir().unwrap();
    tiny_mnist(dir.path());
    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte.gz"),
        b"\x1f\x8b broken",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let (code, stderr) = mnist_command(&["--data-dir", path]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("t10k-labels-idx1-ubyte.gz: is not a valid gzip file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (code, stderr) = mnist_command(&["--data-dir", "/nonexistent/mnist"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/mnist: is not a directory"),
        "{stderr}"
    );
}

#[test]
fn command_line_trains_a_quick_run() {
    let data_dir = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    tiny_mnist(data_dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args([
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "64",
        ])
        .args([
            "--optimizer",
            "adamw",
            "--artifact-dir",
            artifacts.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("adamw: test accuracy"), "{stdout}");
    assert!(artifacts.path().join("results.json").is_file());
}

/// A directory the user owns: an unrelated file and a subdirectory with a file in it.
fn user_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    std::fs::write(dir.path().join("photos/cat.jpg"), "meow").unwrap();
    dir
}

fn assert_user_files_kept(dir: &Path) {
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("photos/cat.jpg")).unwrap(),
        "meow"
    );
}

#[test]
fn command_line_never_deletes_what_the_user_owns() {
    let data_dir = tempfile::tempdir().unwrap();
    tiny_mnist(data_dir.path());
    let artifacts = user_dir();
    let quick = |extra: &[&str]| {
        let mut args = vec![
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--train-limit",
            "128",
            "--artifact-dir",
            artifacts.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_mnist"))
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // A non-empty directory without an earlier run: refused, untouched.
    let (code, _, stderr) = quick(&[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: --artifact-dir ") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_user_files_kept(artifacts.path());
    assert!(!artifacts.path().join("results.json").exists());

    // With --overwrite: the run writes its outputs beside the user's files.
    let (code, stdout, stderr) = quick(&["--overwrite"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("NovoGrad step: "), "{stdout}");
    assert_user_files_kept(artifacts.path());
    assert!(artifacts.path().join("results.json").is_file());
    assert!(artifacts.path().join("checkpoint/model-1.bpk").is_file());

    // The directory now holds an earlier run of this example: reused without --overwrite,
    // its outputs replaced, the user's files still kept.
    let (code, stdout, stderr) = quick(&[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_user_files_kept(artifacts.path());
    assert!(artifacts.path().join("results.json").is_file());

    // A directory holding an earlier run of another example is refused.
    std::fs::write(artifacts.path().join(example_kit::RUN_MARKER), "char-lm\n").unwrap();
    let (code, _, stderr) = quick(&[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("an earlier run of char-lm"), "{stderr}");
    assert_user_files_kept(artifacts.path());
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_smoke() {
    let data_dir = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let mut data = tiny_mnist(data_dir.path());
    data.train = data.train.truncated(64);
    let mut wgpu_run = run(OptimizerName::Novograd, 1, artifacts.path(), data);
    wgpu_run.settings.backend = BackendName::Wgpu;
    let report = run_on(BackendName::Wgpu, 1, wgpu_run).unwrap();
    assert_eq!(report.history.len(), 1);
    assert!(report.history[0].train_loss.unwrap().is_finite());
}
