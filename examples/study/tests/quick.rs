//! `study --quick` end to end on tiny MNIST files and a tiny text the test writes: every sweep,
//! the memory probes (processes of their own), the report and its plots; `--fresh` leaves the
//! user's own files in the artifact directory alone, and a second invocation trains nothing
//! again.

use std::process::Command;

use example_kit::mnist::{synthetic, write_idx};

#[test]
fn quick_study_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train", &synthetic(160, 1), false).unwrap();
    write_idx(&data, "t10k", &synthetic(60, 2), false).unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog. ".repeat(60),
    )
    .unwrap();
    let out = dir.path().join("STUDY.md");
    let artifacts = dir.path().join("artifacts");
    let (notes, kept) = (artifacts.join("notes.txt"), artifacts.join("mine/kept.txt"));
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::write(&notes, "the user's").unwrap();
    std::fs::write(&kept, "the user's too").unwrap();
    let study = |fresh: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_study"));
        command.args(["--quick", "--backend", "flex", "--data-dir"]);
        command
            .arg(&data)
            .arg("--text")
            .arg(&text)
            .arg("--out")
            .arg(&out);
        command.arg("--artifact-dir").arg(&artifacts);
        if fresh {
            command.arg("--fresh");
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let stderr = study(true);
    // MNIST: 5 optimizers × (3 learning rates + 2 more init scales + 1 larger batch + 3 rates
    // tuned at it + the tuned rate without warm-up; the best rate's run is shared by the three
    // first sweeps and trained once, and the rule's rate at the larger batch is off the grid);
    // char-LM: 3 × (3 rates + the best rate for 2 epochs: its 1-epoch run is the sweep's, and
    // a single epoch has no last-epoch drop, so the plateau doubles once, to its cap).
    assert_eq!(
        stderr.matches("study: ").count(),
        5 * (3 + 2 + 1 + 3 + 1) + 3 * (3 + 1),
        "{stderr}"
    );
    let report = std::fs::read_to_string(&out).unwrap();
    for section in [
        "## 1. Learning-rate robustness (MNIST)",
        "## 2. Initialisation robustness (MNIST)",
        "## 3. Large batch (MNIST)",
        "### Each optimizer tuned at each batch size",
        "What the data say (batch 128, tuned): the best accuracy is",
        "| warm-up 5%: accuracy (seed spread) | warm-up none: accuracy (seed spread) |",
        "## 4. Learning rate on a character-level transformer",
        "### At the plateau",
        "What the data say: at the plateau the lowest validation loss is",
        "Runs still lowering the loss by 0.01 nats or more in their last epoch at 2 epochs",
        "## 5. Memory",
        "| novograd |",
        "| adamw |",
        "| sgd |",
        "| lamb |",
        "| lion |",
        "What the data say: the widest range",
        "| MnistCnn | novograd |",
        "| CharLm | lion |",
        "| MnistCnn | novograd (`m` in bf16) |",
        "| CharLm | novograd (`m` in bf16) |",
        "With `m` in bf16 the state is",
        "| MnistCnn | novograd (`m` in 8 bits) |",
        "| CharLm | novograd (`m` in 8 bits) |",
        "With `m` in 8 bits the state is",
    ] {
        assert!(
            report.contains(section),
            "{section:?} missing from:\n{report}"
        );
    }
    for plot in [
        "lr.png",
        "init.png",
        "batch.png",
        "batch-tuned.png",
        "lm.png",
    ] {
        let path = dir.path().join("docs/study").join(plot);
        assert!(path.metadata().unwrap().len() > 1000, "{plot}");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "the user's");
    // Resumed: every run is read back, none trained again, the same sweeps (memory is probed
    // again, and the time of the invocation differs).
    let stderr = study(false);
    assert_eq!(stderr.matches("study: ").count(), 0, "{stderr}");
    let sweeps = |report: &str| {
        report[report.find("## 1.").unwrap()..report.find("## 5.").unwrap()].to_string()
    };
    assert_eq!(
        sweeps(&std::fs::read_to_string(&out).unwrap()),
        sweeps(&report)
    );
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "the user's too");
}
