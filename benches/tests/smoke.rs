//! The report command runs end to end on tiny sizes and writes a report that holds every
//! section. No timing is asserted.

use std::process::Command;

#[test]
fn report_runs_on_tiny_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("BENCHMARKS.md");
    let status = Command::new(env!("CARGO_BIN_EXE_novograd-benches"))
        .args([
            "--backends",
            "ndarray,flex",
            "--sets",
            "tiny",
            "--samples",
            "2",
            "--warmup",
            "1",
            "--e2e-samples",
            "1",
            "--e2e-batch",
            "2",
            "--triad-len",
            "65536",
            "--no-peers",
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let report = std::fs::read_to_string(&out).unwrap();
    for section in [
        "## Machine",
        "GB/s",
        "### ndarray",
        "| tiny | 81 / 4 | novograd (tensor ops) |",
        "### flex",
        "## Optimizer state",
        "## End-to-end training step",
        "| MnistCnn | 2 | ndarray | novograd |",
        "| CharLm | 2 | flex | sgd |",
        "Peers: **not measured**: skipped (--no-peers)",
    ] {
        assert!(
            report.contains(section),
            "{section:?} missing from:\n{report}"
        );
    }
    // NovoGrad keeps one moment per parameter and one scalar per tensor; AdamW two moments.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("docs/benchmarks/benchmarks.json")).unwrap(),
    )
    .unwrap();
    let steps = state["backends"][0]["steps"].as_array().unwrap();
    let bytes = |name: &str| {
        steps.iter().find(|s| s["optimizer"] == name).unwrap()["state_bytes"]
            .as_u64()
            .unwrap()
    };
    assert!(bytes("novograd") < bytes("adamw"));
    assert!(
        dir.path()
            .join("docs/benchmarks/step-times.png")
            .metadata()
            .unwrap()
            .len()
            > 1000
    );
}
