//! `study --quick` end to end on tiny MNIST files the test writes: every sweep, the memory
//! probes (processes of their own), the report and its plots; `--fresh` leaves the user's own
//! files in the artifact directory alone.

use std::process::Command;

use example_kit::mnist::{synthetic, write_idx};

#[test]
fn quick_study_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train", &synthetic(160, 1), false).unwrap();
    write_idx(&data, "t10k", &synthetic(60, 2), false).unwrap();
    let out = dir.path().join("STUDY.md");
    let artifacts = dir.path().join("artifacts");
    let (notes, kept) = (artifacts.join("notes.txt"), artifacts.join("mine/kept.txt"));
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::write(&notes, "the user's").unwrap();
    std::fs::write(&kept, "the user's too").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_study"))
        .args(["--quick", "--fresh", "--backend", "flex", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--artifact-dir")
        .arg(&artifacts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // 3 optimizers × (3 learning rates + 2 more init scales) + 3 larger batches; the default
    // point of each optimizer is shared by the three sweeps and trained once.
    assert_eq!(
        stderr.matches("study: ").count(),
        3 * (3 + 2) + 3,
        "{stderr}"
    );
    let report = std::fs::read_to_string(&out).unwrap();
    for section in [
        "## 1. Learning-rate robustness",
        "## 2. Initialisation robustness",
        "## 3. Large batch",
        "## 4. Memory",
        "| novograd |",
        "| adamw |",
        "| sgd |",
        "What the data say",
        "| MnistCnn | novograd |",
        "| CharLm | sgd |",
    ] {
        assert!(
            report.contains(section),
            "{section:?} missing from:\n{report}"
        );
    }
    for plot in ["lr.png", "init.png", "batch.png"] {
        let path = dir.path().join("docs/study").join(plot);
        assert!(path.metadata().unwrap().len() > 1000, "{plot}");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "the user's");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "the user's too");
}
