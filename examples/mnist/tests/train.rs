//! The MNIST example end to end on tiny IDX files the tests write: the real loader, training
//! through the Learner, the results and the command line's errors.

use std::path::Path;
use std::process::Command;

use burn::data::dataset::Dataset;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use example_kit::mnist::{Mnist, synthetic, write_idx};
use example_kit::{
    BackendName, OptimizerName, OptimizerSpec, RunReport, RunSettings, WARMUP_PERCENT, run_on,
};
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
            devices: 1,
            epochs,
            batch_size: 32,
            seed: 5,
            warmup_percent: WARMUP_PERCENT,
            artifact_dir: artifact_dir.to_path_buf(),
            resume_from: None,
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

/// Runs the `mnist` binary: exit code, stdout, stderr.
fn mnist_run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes `pixels` (rows of `width`) as a binary PGM (P5).
fn write_pgm(path: &Path, width: usize, pixels: &[u8]) {
    let mut bytes = format!("P5\n{width} {}\n255\n", pixels.len() / width).into_bytes();
    bytes.extend_from_slice(pixels);
    std::fs::write(path, bytes).unwrap();
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
    let (code, _, stderr) = mnist_run(&["--data-dir", path]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("t10k-labels-idx1-ubyte.gz: is not a valid gzip file"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (code, _, stderr) = mnist_run(&["--data-dir", "/nonexistent/mnist"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/mnist: is not a directory"),
        "{stderr}"
    );
}

#[test]
fn command_line_trains_saves_the_model_and_predicts_with_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    tiny_mnist(data_dir.path());
    let (data, model) = (
        data_dir.path().to_str().unwrap(),
        artifacts.path().to_str().unwrap(),
    );
    let (code, stdout, stderr) = mnist_run(&[
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--optimizer",
        "adamw",
        "--grad-clip-norm",
        "5",
        "--channels",
        "4",
        "--hidden",
        "32",
        "--artifact-dir",
        model,
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("adamw: test accuracy"), "{stdout}");
    for file in ["results.json", "config.json", "model.bpk", "loss-steps.png"] {
        assert!(artifacts.path().join(file).is_file(), "{file} missing");
    }
    assert!(
        std::fs::read(artifacts.path().join("loss-steps.png"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    // The learning rate is among the Learner's metrics: one entry per step (320 / 64).
    let rates =
        std::fs::read_to_string(artifacts.path().join("train/epoch-1/Learning_Rate.log")).unwrap();
    let steps = rates.lines().filter(|line| !line.ends_with(",final"));
    assert_eq!(steps.count(), 5, "{rates}");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(artifacts.path().join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["example"], "mnist");
    assert_eq!(config["model"]["channels"], 4);
    assert_eq!(config["model"]["hidden"], 32);
    assert_eq!(config["data"]["data_dir"], data);
    assert_eq!(config["optimizer"]["name"], "adamw");
    assert_eq!(config["optimizer"]["grad_clip_norm"], 5.0);
    assert_eq!(
        config["optimizer_config"]["beta_2"]
            .as_f64()
            .map(|beta| beta as f32),
        Some(0.999)
    );
    assert_eq!(config["optimizer_config"]["grad_clipping"]["Norm"], 5.0);
    for (key, value) in [
        ("batch_size", 64),
        ("epochs", 1),
        ("seed", 42),
        ("devices", 1),
    ] {
        assert_eq!(config[key], value, "{key}");
    }
    assert_eq!(config["backend"], "flex");

    // A test image by index: the synthetic digits are `index % 10`.
    let (code, stdout, stderr) = mnist_run(&["predict", "--model", model, "--index", "3"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("test image 3: predicted ") && stdout.contains("%), label 3"),
        "{stdout}"
    );
    // The same digit as a PGM file, 28×28, and twice as large (resized).
    let digit = synthetic(4, 2).get(3).unwrap().image;
    let pgm = data_dir.path().join("three.pgm");
    write_pgm(&pgm, 28, &digit);
    let (code, stdout, stderr) = mnist_run(&[
        "predict",
        "--model",
        model,
        "--image",
        pgm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("predicted ") && stdout.contains("(confidence "),
        "{stdout}"
    );
    let doubled: Vec<u8> = (0..56 * 56)
        .map(|p| digit[(p / 56 / 2) * 28 + (p % 56) / 2])
        .collect();
    write_pgm(&pgm, 56, &doubled);
    let (code, stdout, stderr) = mnist_run(&[
        "predict",
        "--model",
        model,
        "--image",
        pgm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("resized to 28×28\npredicted "), "{stdout}");

    // Bad input: clear errors, status 2, no panic.
    let text = data_dir.path().join("digit.png");
    std::fs::write(&text, "not an image").unwrap();
    let empty = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            vec!["--model", "/nonexistent/run", "--index", "0"],
            "--model /nonexistent/run: no such directory",
        ),
        (
            vec!["--model", empty.path().to_str().unwrap(), "--index", "0"],
            "cannot read config.json",
        ),
        (
            vec!["--model", model, "--image", text.to_str().unwrap()],
            "digit.png: is neither a PNG nor a binary PGM (P5) image",
        ),
        (
            vec!["--model", model, "--index", "100", "--data-dir", data],
            "--index 100: the test set has 100 images (0 to 99)",
        ),
    ] {
        let (code, _, stderr) = mnist_run(&[&["predict"], args.as_slice()].concat());
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{stderr}"
        );
    }
    std::fs::remove_file(artifacts.path().join("model.bpk")).unwrap();
    let (code, _, stderr) = mnist_run(&["predict", "--model", model, "--index", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no model.bpk: the run has not finished"),
        "{stderr}"
    );
}

#[test]
fn command_line_checks_optimizer_options_and_states_their_defaults() {
    let data_dir = tempfile::tempdir().unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    tiny_mnist(data_dir.path());
    let base = [
        "--data-dir",
        data_dir.path().to_str().unwrap(),
        "--artifact-dir",
        artifacts.path().to_str().unwrap(),
    ];
    for (args, expected) in [
        (
            vec!["--beta-1", "1.5"],
            "--beta-1 1.5: expected a value in [0, 1)",
        ),
        (
            vec!["--beta-2", "-0.1"],
            "--beta-2 -0.1: expected a value in [0, 1)",
        ),
        (
            vec!["--epsilon", "0"],
            "--epsilon 0: expected a finite value > 0",
        ),
        (
            vec!["--grad-clip-norm", "-1"],
            "--grad-clip-norm -1: expected a finite value > 0",
        ),
        (
            vec!["--lr", "2"],
            "--lr 2: Burn's learning-rate schedulers take a peak rate in (0, 1]",
        ),
        (
            vec!["--optimizer", "adamw", "--amsgrad"],
            "--amsgrad is a NovoGrad option; --optimizer adamw does not take it",
        ),
        (
            vec!["--optimizer", "sgd", "--beta-1", "0.9"],
            "--beta-1 is a NovoGrad option",
        ),
        (
            vec!["--weight-decay-mode", "sideways"],
            "invalid value 'sideways'",
        ),
        (
            vec!["--optimizer", "lion", "--moment-dtype", "bf16"],
            "--moment-dtype is a NovoGrad option",
        ),
        (vec!["--moment-dtype", "fp8"], "invalid value 'fp8'"),
        (
            vec!["--resume"],
            "holds no earlier run of mnist to continue",
        ),
    ] {
        let (code, _, stderr) = mnist_run(&[&base[..], args.as_slice()].concat());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(artifacts.path()).unwrap().count(), 0);

    let (code, help, _) = mnist_run(&["--help"]);
    assert_eq!(code, 0);
    for default in [
        "[default: 0.95]",
        "[default: 0.98]",
        "[default: 1e-8]",
        "[default: in-moment]",
        "[default: param]",
        "[default: no clipping]",
        "[default: decay on every parameter]",
        "[default: flex]",
        "[default: 128]",
    ] {
        assert!(help.contains(default), "--help lacks {default}:\n{help}");
    }
    for command in ["train", "predict"] {
        assert!(help.contains(command), "{help}");
    }
}

/// Copies the directory `from` into a new directory `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every float a module holds (parameters and running statistics), as bits.
#[derive(Default)]
struct Values(Vec<u32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        self.0.extend(data.iter::<f32>().map(f32::to_bits));
    }
}

/// The values of the trained model in the artifact directory `dir`, as `predict` loads it.
fn trained_values(dir: &Path) -> Vec<u32> {
    let (model, _) = mnist::load_trained(dir, &Device::flex()).unwrap();
    let mut values = Values::default();
    model.visit(&mut values);
    values.0
}

/// A run interrupted after its first epoch and resumed ends exactly where the uninterrupted run
/// does (NovoGrad with amsgrad and a bf16 first moment, through the Learner's burnpack
/// checkpoints): same weights and batch-norm statistics (to the bit), same test accuracy and validation losses. The interruption
/// is the uninterrupted run's directory as it was when epoch 1's checkpoint had been written:
/// without epoch 2's checkpoint and the final outputs (epoch 2's partial logs stay, as a killed
/// run leaves them).
#[test]
fn command_line_resumes_an_interrupted_run_where_it_would_have_ended() {
    resumes_where_it_would_have_ended("bf16");
}

/// The same with an 8-bit first moment, which the checkpoints hold as Burn's quantised tensors.
#[test]
fn command_line_resumes_an_interrupted_run_with_an_int8_moment_where_it_would_have_ended() {
    resumes_where_it_would_have_ended("int8");
}

/// The test above with `m` stored as `moment_dtype` (the `--moment-dtype` value).
fn resumes_where_it_would_have_ended(moment_dtype: &str) {
    let data_dir = tempfile::tempdir().unwrap();
    tiny_mnist(data_dir.path());
    let root = tempfile::tempdir().unwrap();
    let (uninterrupted, interrupted) = (root.path().join("whole"), root.path().join("resumed"));
    let quick = |dir: &Path, extra: &[&str]| {
        let args = [
            "--data-dir",
            data_dir.path().to_str().unwrap(),
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--train-limit",
            "96",
            "--seed",
            "5",
            "--grad-clip-norm",
            "10",
            "--no-decay-bias-norm",
            "--amsgrad",
            "--moment-dtype",
            moment_dtype,
            "--artifact-dir",
            dir.to_str().unwrap(),
        ];
        mnist_run(&[&args[..], extra].concat())
    };
    let (code, stdout, stderr) = quick(&uninterrupted, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    copy_dir(&uninterrupted, &interrupted);
    for file in [
        "checkpoint/model-2.bpk",
        "checkpoint/optim-2.bpk",
        "checkpoint/scheduler-2.bpk",
        "model.bpk",
        "results.json",
    ] {
        std::fs::remove_file(interrupted.join(file)).unwrap();
    }
    let (code, stdout, stderr) = quick(&interrupted, &["--resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("resuming after epoch 1"), "{stdout}");

    assert_eq!(
        trained_values(&uninterrupted),
        trained_values(&interrupted),
        "the resumed run's weights or running statistics differ"
    );
    let read = |dir: &Path, file: &str| std::fs::read(dir.join(file)).unwrap();
    let results = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&read(dir, "results.json")).unwrap()
    };
    let (whole, resumed) = (results(&uninterrupted), results(&interrupted));
    assert_eq!(whole["test_accuracy"], resumed["test_accuracy"]);
    for epoch in 0..2 {
        assert_eq!(
            whole["history"][epoch]["valid_loss"],
            resumed["history"][epoch]["valid_loss"]
        );
    }

    // Resuming with other settings than the run's is refused, and nothing is removed.
    let (code, _, stderr) = quick(&interrupted, &["--resume", "--lr", "0.02"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("was started with other settings (optimizer)"),
        "{stderr}"
    );
    assert!(interrupted.join("model.bpk").is_file());
    std::fs::remove_dir_all(interrupted.join("checkpoint")).unwrap();
    let (code, _, stderr) = quick(&interrupted, &["--resume"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("holds no complete checkpoint"), "{stderr}");
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
        mnist_run(&args)
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
