//! Other libraries' NovoGrad and AdamW steps, timed by `peers/step.py` on the same parameter set.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::sets::ParamSet;
use crate::step::HYPER;
use crate::timing::{Sampling, Stats};

/// What the peers script found and measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Peers {
    /// Threads torch was limited to.
    pub threads: usize,
    /// Threads XLA's CPU client uses (all cores).
    pub jax_threads: usize,
    /// Python's version.
    pub python: String,
    /// Versions of the packages found.
    pub versions: BTreeMap<String, String>,
    /// Per peer: its step times, or why it was not measured.
    pub peers: BTreeMap<String, Peer>,
}

/// One peer's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Peer {
    /// Step times.
    Measured(Stats),
    /// The import that failed.
    Missing {
        /// Python's error message.
        missing: String,
    },
}

impl Peers {
    /// The measured peers, fastest first.
    pub fn measured(&self) -> Vec<(&str, Stats)> {
        let mut measured: Vec<(&str, Stats)> = self
            .peers
            .iter()
            .filter_map(|(name, peer)| match peer {
                Peer::Measured(stats) => Some((name.as_str(), *stats)),
                Peer::Missing { .. } => None,
            })
            .collect();
        measured.sort_by(|a, b| a.1.median_ms.total_cmp(&b.1.median_ms));
        measured
    }
}

/// Runs `script` with `python` on `set`; the error says why no figures came back.
pub fn run(
    python: &str,
    script: &Path,
    device: &str,
    set: ParamSet,
    threads: usize,
    sampling: Sampling,
) -> Result<Peers, String> {
    let request = json!({
        "shapes": set.shapes(),
        "device": device,
        "threads": threads,
        "warmup": sampling.warmup,
        "samples": sampling.samples,
        "lr": HYPER.lr,
        "weight_decay": HYPER.weight_decay,
    });
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not start `{python}`: {error}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes())
        .map_err(|error| format!("could not write to {}: {error}", script.display()))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("{} did not finish: {error}", script.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!(
            "{} failed ({}): {last}",
            script.display(),
            output.status
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("{} printed no valid JSON: {error}", script.display()))
}
