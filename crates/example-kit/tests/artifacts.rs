//! The artifact directory: a directory the user owns is refused unless `--overwrite`, and even
//! then only the files a run writes are removed; an earlier run of the same example is reused.

use std::path::Path;

use example_kit::{RUN_MARKER, prepare_artifact_dir, resumable_checkpoint};

const PLOTS: [&str; 2] = ["loss.png", "accuracy.png"];

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

/// What a finished run leaves, as Burn and the examples write it.
fn write_run_outputs(dir: &Path) {
    for sub in ["checkpoint", "train/epoch-1", "valid/epoch-1"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for file in [
        "checkpoint/model-1.bpk",
        "checkpoint/optim-1.bpk",
        "checkpoint/scheduler-1.bpk",
        "train/epoch-1/Loss.log",
        "valid/epoch-1/Loss.log",
        "experiment.log",
        "results.json",
        "config.json",
        "model.bpk",
        "loss.png",
        "accuracy.png",
        "loss-steps.png",
    ] {
        std::fs::write(dir.join(file), "run").unwrap();
    }
}

#[test]
fn new_and_empty_directories_are_used() {
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("a/b");
    prepare_artifact_dir(&fresh, "mnist", &PLOTS, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(fresh.join(RUN_MARKER)).unwrap(),
        "mnist\n"
    );
    let empty = tempfile::tempdir().unwrap();
    prepare_artifact_dir(empty.path(), "mnist", &PLOTS, false).unwrap();
    assert!(empty.path().join(RUN_MARKER).is_file());
}

#[test]
fn a_directory_the_user_owns_is_refused_and_kept() {
    let dir = user_dir();
    let error = prepare_artifact_dir(dir.path(), "mnist", &PLOTS, false).unwrap_err();
    assert!(
        error.contains("is not empty") && error.contains("--overwrite"),
        "{error}"
    );
    assert_user_files_kept(dir.path());
    assert!(!dir.path().join(RUN_MARKER).exists());
}

#[test]
fn overwrite_removes_only_what_a_run_writes() {
    let dir = user_dir();
    write_run_outputs(dir.path());
    // Look-alikes the run did not write stay: other files in its directories, a directory
    // named like a checkpoint.
    std::fs::write(dir.path().join("checkpoint/my-notes.txt"), "mine").unwrap();
    std::fs::write(dir.path().join("train/data.csv"), "mine").unwrap();
    std::fs::create_dir(dir.path().join("checkpoint/model-7.bpk")).unwrap();
    prepare_artifact_dir(dir.path(), "mnist", &PLOTS, true).unwrap();
    assert_user_files_kept(dir.path());
    for gone in [
        "checkpoint/model-1.bpk",
        "checkpoint/optim-1.bpk",
        "checkpoint/scheduler-1.bpk",
        "train/epoch-1",
        "valid",
        "experiment.log",
        "results.json",
        "config.json",
        "model.bpk",
        "loss.png",
        "accuracy.png",
        "loss-steps.png",
    ] {
        assert!(!dir.path().join(gone).exists(), "{gone} should be removed");
    }
    for kept in [
        "checkpoint/my-notes.txt",
        "checkpoint/model-7.bpk",
        "train/data.csv",
    ] {
        assert!(dir.path().join(kept).exists(), "{kept} should be kept");
    }
    assert!(dir.path().join(RUN_MARKER).is_file());
}

#[test]
fn an_earlier_run_of_the_same_example_is_reused() {
    let dir = user_dir();
    prepare_artifact_dir(dir.path(), "char-lm", &["loss.png"], true).unwrap();
    write_run_outputs(dir.path());
    prepare_artifact_dir(dir.path(), "char-lm", &["loss.png"], false).unwrap();
    assert_user_files_kept(dir.path());
    assert!(!dir.path().join("results.json").exists());
    assert!(!dir.path().join("checkpoint").exists());
    // char-lm draws no accuracy.png: one there is not its own.
    assert!(dir.path().join("accuracy.png").is_file());
    // Another example's run is not this one's.
    let error = prepare_artifact_dir(dir.path(), "mnist", &PLOTS, false).unwrap_err();
    assert!(error.contains("an earlier run of char-lm"), "{error}");
    assert_user_files_kept(dir.path());
}

#[test]
fn resume_goes_on_from_the_last_complete_checkpoint() {
    let dir = user_dir();
    let error = resumable_checkpoint(dir.path(), "mnist").unwrap_err();
    assert!(error.contains("holds no earlier run of mnist"), "{error}");
    prepare_artifact_dir(dir.path(), "mnist", &PLOTS, true).unwrap();
    let error = resumable_checkpoint(dir.path(), "mnist").unwrap_err();
    assert!(error.contains("holds no complete checkpoint"), "{error}");
    write_run_outputs(dir.path());
    for file in [
        "model-2.bpk",
        "optim-2.bpk",
        "scheduler-2.bpk",
        "model-3.bpk",
        "optim-3.bpk",
    ] {
        std::fs::write(dir.path().join("checkpoint").join(file), "run").unwrap();
    }
    // Epoch 3 lacks its scheduler: the run stopped while writing it.
    assert_eq!(resumable_checkpoint(dir.path(), "mnist"), Ok(2));
    let error = resumable_checkpoint(dir.path(), "char-lm").unwrap_err();
    assert!(error.contains("holds no earlier run of char-lm"), "{error}");
    assert_user_files_kept(dir.path());
}

#[cfg(unix)]
#[test]
fn links_are_not_followed() {
    let elsewhere = user_dir();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("train")).unwrap();
    std::os::unix::fs::symlink(
        elsewhere.path().join("notes.txt"),
        dir.path().join("results.json"),
    )
    .unwrap();
    prepare_artifact_dir(dir.path(), "mnist", &PLOTS, true).unwrap();
    assert_user_files_kept(elsewhere.path());
    assert!(
        dir.path().join("train").exists(),
        "a linked directory is left"
    );
    assert!(
        !dir.path().join("results.json").exists(),
        "the link goes, not its target"
    );
}
