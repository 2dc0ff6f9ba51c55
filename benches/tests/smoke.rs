//! The report command runs end to end on tiny sizes and writes a report that holds every
//! section. No timing is asserted.

use std::process::Command;

#[test]
fn smoke_report_runs_on_tiny_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("BENCHMARKS.md");
    let output = Command::new(env!("CARGO_BIN_EXE_novograd-benches"))
        .args([
            "--backends",
            "flex,ndarray",
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
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "flex: NovoGrad step: fused (flex)",
        "ndarray: NovoGrad step: tensor ops",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let report = std::fs::read_to_string(&out).unwrap();
    for section in [
        "## Machine",
        "GB/s, counting 16 B per element",
        "`flex`: Device<",
        "NovoGrad step: **fused (flex)**",
        "`ndarray`: Device<",
        "NovoGrad step: **tensor ops**",
        "## The bars",
        "bound of a NovoGrad step is 20 B per f32 parameter",
        "- flex, tiny set (2384 parameters, 4 tensors): fused NovoGrad",
        "fused/AdamW **",
        "### flex",
        "| tiny | 2384 / 4 | novograd (tensor ops) |",
        "| tiny | 2384 / 4 | novograd (bf16 moment) |",
        "With `m` in bf16: ",
        "### ndarray",
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
    // Backend 0 is flex, the first in report order.
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
    assert!(bytes("novograd-bf16-moment") < bytes("novograd"));
    assert!(
        dir.path()
            .join("docs/benchmarks/step-times.png")
            .metadata()
            .unwrap()
            .len()
            > 1000
    );
}
