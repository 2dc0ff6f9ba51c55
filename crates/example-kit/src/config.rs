//! A run's configuration, `config.json` in its artifact directory: everything needed to train
//! it again (and to check that `--resume` continues the same run), and to rebuild the trained
//! model from `model.bpk` for predictions.

use std::path::Path;

use burn::module::Module;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::training::MODEL_FILE;
use crate::{BackendName, OptimizerSpec, RunSettings};

/// The configuration file in an artifact directory.
pub const CONFIG_FILE: &str = "config.json";

/// How a run was configured: `model` is the example's model config, `data` where its data came
/// from and how much of it was used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig<M, D> {
    /// Which example.
    pub example: String,
    /// The model's sizes.
    pub model: M,
    /// The data.
    pub data: D,
    /// The optimizer and its command-line hyperparameters.
    pub optimizer: OptimizerSpec,
    /// The optimizer's Burn configuration, every field.
    pub optimizer_config: serde_json::Value,
    /// Items per batch (per device).
    pub batch_size: usize,
    /// Epochs in total.
    pub epochs: usize,
    /// Seed of the initialisation, the shuffling and dropout.
    pub seed: u64,
    /// Backend trained on.
    pub backend: BackendName,
    /// Devices trained on.
    pub devices: usize,
}

impl<M: Serialize + DeserializeOwned, D: Serialize + DeserializeOwned> RunConfig<M, D> {
    /// The configuration of a run of `example` with `settings`.
    pub fn new(example: &str, settings: &RunSettings, model: M, data: D) -> Self {
        Self {
            example: example.to_string(),
            model,
            data,
            optimizer: settings.optimizer,
            optimizer_config: settings.optimizer.burn_config(),
            batch_size: settings.batch_size,
            epochs: settings.epochs,
            seed: settings.seed,
            backend: settings.backend,
            devices: settings.devices,
        }
    }

    /// Writes `dir/config.json`; when `resuming`, checks instead that the earlier run's
    /// `config.json` is the same, naming what differs.
    pub fn save(&self, dir: &Path, resuming: bool) -> Result<(), String> {
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(self).expect("configs serialize") + "\n";
        if resuming {
            // Both compared as read back from their text.
            let json: serde_json::Value = serde_json::from_str(&text).expect("JSON reads back");
            let earlier = std::fs::read_to_string(&path)
                .map_err(|error| format!("--resume: cannot read {}: {error}", path.display()))?;
            let earlier: serde_json::Value = serde_json::from_str(&earlier)
                .map_err(|error| format!("--resume: {}: {error}", path.display()))?;
            let keys = json.as_object().expect("a config is a JSON object").keys();
            let differ: Vec<&str> = keys
                .filter(|key| json.get(key) != earlier.get(key))
                .map(String::as_str)
                .collect();
            if !differ.is_empty() {
                return Err(format!(
                    "--resume: the interrupted run ({}) was started with other settings ({}); \
                     resume it with the arguments it was started with",
                    path.display(),
                    differ.join(", ")
                ));
            }
            return Ok(());
        }
        std::fs::write(&path, text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }

    /// The configuration of the trained run of `example` in `dir`, or why there is none.
    pub fn load(dir: &Path, example: &str) -> Result<Self, String> {
        let shown = dir.display();
        if !dir.is_dir() {
            return Err(format!("--model {shown}: no such directory"));
        }
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| {
            format!(
                "--model {shown}: cannot read {CONFIG_FILE} ({error}); give the artifact \
                 directory of a training run"
            )
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|error| {
            format!("{}: not a {example} configuration: {error}", path.display())
        })?;
        if config.example != example {
            return Err(format!(
                "--model {shown} holds a {} model, not {example}",
                config.example
            ));
        }
        Ok(config)
    }
}

/// `model` with the trained weights of the run in `dir` (its `model.bpk`).
pub fn load_weights<M: Module>(model: M, dir: &Path) -> Result<M, String> {
    let path = dir.join(MODEL_FILE);
    if !path.is_file() {
        return Err(format!(
            "--model {}: no {MODEL_FILE}: the run has not finished (continue it with --resume)",
            dir.display()
        ));
    }
    model
        .try_load_file(&path)
        .map_err(|error| format!("{}: cannot load the model: {error:?}", path.display()))
}
