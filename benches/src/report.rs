//! `BENCHMARKS.md`: the figures of one run, as tables, ratios and a bar chart.

use std::fmt::Write;
use std::path::Path;

use example_kit::{BackendName, OptimizerName};
use serde::Serialize;

use crate::peers::{Peer, Peers};
use crate::sets::ParamSet;
use crate::step::{Contender, NOVOGRAD_BYTES_PER_PARAM};
use crate::suite::{BackendResults, StepResult};
use crate::timing::Stats;
use crate::triad::Bandwidth;

/// The machine the run was on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// Physical memory, GiB.
    pub memory_gib: f64,
}

impl Machine {
    /// Reads `/proc` (Linux); elsewhere the CPU and memory are "unknown".
    pub fn here() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|line| line.starts_with(key))
                .and_then(|line| line.split(':').nth(1))
                .map(|value| value.trim().to_string())
        };
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let memory_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|value| value.trim_end_matches(" kB").parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
        }
    }
}

/// Everything one run measured, and what it could not.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The command that produced it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Memory bandwidth.
    pub bandwidth: Bandwidth,
    /// Per backend.
    pub backends: Vec<BackendResults>,
    /// Backends not measured, and why.
    pub not_measured: Vec<(BackendName, String)>,
    /// The peers on the transformer-like set, or why there are none.
    pub peers: Result<Peers, String>,
}

fn ms(stats: &Stats) -> String {
    format!("{:.2}", stats.median_ms)
}

fn range(stats: &Stats) -> String {
    format!("{:.2}–{:.2}", stats.min_ms, stats.max_ms)
}

fn set_name(set: ParamSet) -> &'static str {
    match set {
        ParamSet::TransformerLike => "transformer-like",
        ParamSet::ResnetLike => "ResNet-18-like",
        ParamSet::ManySmall => "1,000 × 1,024",
        ParamSet::Tiny => "tiny",
    }
}

impl Report {
    /// The best bandwidth bound of a NovoGrad step on `parameters` f32 parameters, in ms.
    fn bound_ms(&self, parameters: usize) -> f64 {
        NOVOGRAD_BYTES_PER_PARAM * parameters as f64 / self.bandwidth.best_bytes_per_second * 1e3
    }

    fn step(
        &self,
        backend: &BackendResults,
        set: ParamSet,
        optimizer: Contender,
    ) -> Option<StepResult> {
        backend
            .steps
            .iter()
            .find(|r| r.set == set && r.optimizer == optimizer)
            .cloned()
    }

    fn best_peer(&self) -> Option<(&str, Stats)> {
        self.peers.as_ref().ok()?.measured().into_iter().next()
    }

    fn peer(&self, name: &str) -> Option<Stats> {
        match self.peers.as_ref().ok()?.peers.get(name)? {
            Peer::Measured(stats) => Some(*stats),
            Peer::Missing { .. } => None,
        }
    }

    /// The report as Markdown; `chart` is the bar chart's path relative to the report.
    pub fn markdown(&self, chart: &str) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let bw = &self.bandwidth;
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Produced by `{}` in one run; every ratio below compares figures from that same run. \
             Times are medians (min–max) of timed samples after untimed warm-up steps; the \
             device is synchronised inside the timed region. The optimizers are sampled in turn \
             (NovoGrad, AdamW, SGD, NovoGrad, …) so that noise from other work on the machine \
             falls on all of them.\n",
            self.command
        );
        let _ = writeln!(md, "## Machine\n");
        let _ = writeln!(
            md,
            "- CPU: {}, {} logical cores; {:.1} GiB memory",
            m.cpu, m.cores, m.memory_gib
        );
        let _ = writeln!(
            md,
            "- Memory bandwidth, STREAM-style triad (`a = b + s·c`, {} threads, 3 × {:.1} MiB arrays, 12 B per element): best {:.2} GB/s, median {:.2} GB/s",
            bw.threads,
            bw.len as f64 * 4.0 / f64::from(1 << 20),
            bw.best_bytes_per_second / 1e9,
            12.0 * bw.len as f64 / bw.stats.median_ms / 1e6
        );
        for backend in &self.backends {
            let _ = writeln!(
                md,
                "- `{}`: Burn reports `{}`",
                backend.backend, backend.burn_name
            );
        }
        for (backend, why) in &self.not_measured {
            let _ = writeln!(md, "- `{backend}`: **not measured**: {why}");
        }
        match &self.peers {
            Ok(peers) => {
                let versions: Vec<String> = peers
                    .versions
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                let _ = writeln!(
                    md,
                    "- Peers: Python {}, {}; torch limited to {} threads, XLA uses {}",
                    peers.python,
                    versions.join(", "),
                    peers.threads,
                    peers.jax_threads
                );
            }
            Err(why) => {
                let _ = writeln!(md, "- Peers: **not measured**: {why}");
            }
        }
        self.headline(&mut md);
        let _ = writeln!(md, "\n![Optimizer step times]({chart})\n");
        self.step_tables(&mut md);
        self.peer_table(&mut md);
        self.state_table(&mut md);
        self.e2e_table(&mut md);
        md
    }

    fn headline(&self, md: &mut String) {
        let _ = writeln!(md, "\n## The bars\n");
        self.fused_vs_tensor_ops(md);
        let Some(ndarray) = self
            .backends
            .iter()
            .find(|b| b.backend == BackendName::Ndarray)
        else {
            let _ = writeln!(md, "ndarray was not measured in this run.");
            return;
        };
        let set = ParamSet::TransformerLike;
        let (Some(novograd), Some(adamw)) = (
            self.step(ndarray, set, Contender::Novograd),
            self.step(ndarray, set, Contender::Adamw),
        ) else {
            let _ = writeln!(md, "The transformer-like set was not measured in this run.");
            return;
        };
        let ratio = novograd.stats.median_ms / adamw.stats.median_ms;
        let _ = writeln!(
            md,
            "- NovoGrad step on ndarray, transformer-like set (16.8M parameters, 51 tensors): {} ms vs Burn AdamW {} ms = **{ratio:.2}×** (goal: < 1, faster than AdamW).",
            ms(&novograd.stats),
            ms(&adamw.stats)
        );
        match self.peer("torch-optimizer NovoGrad") {
            Some(peer) => {
                let _ = writeln!(
                    md,
                    "- vs torch-optimizer NovoGrad on the same set and threads: {} ms = **{:.2}×** (goal: ≤ 1.0).",
                    ms(&peer),
                    novograd.stats.median_ms / peer.median_ms
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "- vs torch-optimizer NovoGrad: not measured in this run (see Machine)."
                );
            }
        }
        let _ = writeln!(
            md,
            "- State bytes, NovoGrad / AdamW through Burn's recorder: **{:.3}** (goal: 0.50).",
            novograd.state_bytes as f64 / adamw.state_bytes as f64
        );
        let _ = writeln!(
            md,
            "- NovoGrad step vs the bandwidth bound ({} B/param at the measured best bandwidth = {:.2} ms): **{:.0}%** of the bound.",
            NOVOGRAD_BYTES_PER_PARAM,
            self.bound_ms(novograd.parameters),
            100.0 * self.bound_ms(novograd.parameters) / novograd.stats.median_ms
        );
    }

    /// The fused step against the tensor-op step, per backend and set.
    fn fused_vs_tensor_ops(&self, md: &mut String) {
        for backend in &self.backends {
            for set in ParamSet::MEASURED {
                let pair = (
                    self.step(backend, set, Contender::Novograd),
                    self.step(backend, set, Contender::NovogradTensorOps),
                );
                if let (Some(fused), Some(tensor_ops)) = pair {
                    let per_tensor = |r: &StepResult| r.stats.median_ms * 1e3 / r.tensors as f64;
                    let note = match backend.backend {
                        BackendName::Flex => {
                            " flex has no fused path: both are the tensor-op step."
                        }
                        _ => "",
                    };
                    let _ = writeln!(
                        md,
                        "- Fused vs tensor-op NovoGrad step on {}, {} set: {} ms vs {} ms = **{:.2}×** ({:.1} vs {:.1} µs per tensor).{note}",
                        backend.backend,
                        set_name(set),
                        ms(&fused.stats),
                        ms(&tensor_ops.stats),
                        fused.stats.median_ms / tensor_ops.stats.median_ms,
                        per_tensor(&fused),
                        per_tensor(&tensor_ops)
                    );
                }
            }
        }
    }

    fn step_tables(&self, md: &mut String) {
        let _ = writeln!(md, "## Optimizer step\n");
        let _ = writeln!(
            md,
            "`OptimizerAdaptor::step` on a module holding the set, gradients registered with \
             `GradientsParams`. NovoGrad β = (0.95, 0.98); AdamW β = (0.9, 0.999); SGD momentum \
             0.9; weight decay 1e-3 for each. \"Bound\" is the bandwidth bound of a NovoGrad step \
             ({NOVOGRAD_BYTES_PER_PARAM} B/param) divided by the measured time. \"× peer\" \
             compares with the fastest peer on the transformer-like set.\n"
        );
        let best_peer = self.best_peer();
        for backend in &self.backends {
            let _ = writeln!(md, "### {}\n", backend.backend);
            let _ = writeln!(
                md,
                "| set | parameters / tensors | optimizer | median ms | min–max ms | × AdamW | × peer | bound | µs per tensor |"
            );
            let _ = writeln!(md, "|---|---|---|---:|---|---:|---:|---:|---:|");
            for result in &backend.steps {
                let adamw = self.step(backend, result.set, Contender::Adamw);
                let vs_adamw = adamw.map_or("-".into(), |a| {
                    format!("{:.2}", result.stats.median_ms / a.stats.median_ms)
                });
                let vs_peer = match best_peer {
                    Some((_, peer)) if result.set == ParamSet::TransformerLike => {
                        format!("{:.2}", result.stats.median_ms / peer.median_ms)
                    }
                    _ => "-".into(),
                };
                let bound = if matches!(
                    result.optimizer,
                    Contender::Novograd | Contender::NovogradTensorOps
                ) {
                    format!(
                        "{:.0}%",
                        100.0 * self.bound_ms(result.parameters) / result.stats.median_ms
                    )
                } else {
                    "-".into()
                };
                let _ = writeln!(
                    md,
                    "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                    set_name(result.set),
                    result.parameters,
                    result.tensors,
                    result.optimizer,
                    ms(&result.stats),
                    range(&result.stats),
                    vs_adamw,
                    vs_peer,
                    bound,
                    result.stats.median_ms * 1e3 / result.tensors as f64
                );
            }
            let _ = writeln!(md);
        }
    }

    fn peer_table(&self, md: &mut String) {
        let _ = writeln!(md, "## Peers, transformer-like set\n");
        let peers = match &self.peers {
            Ok(peers) => peers,
            Err(why) => {
                let _ = writeln!(md, "Not measured: {why}\n");
                return;
            }
        };
        let ours = self
            .backends
            .iter()
            .find(|b| b.backend == BackendName::Ndarray)
            .and_then(|b| self.step(b, ParamSet::TransformerLike, Contender::Novograd));
        let _ = writeln!(
            md,
            "`benches/peers/step.py`, same shapes, learning rate and weight decay, f32, gradients \
             in place before the timed `step()`; optax's update is jitted with donated buffers.\n"
        );
        let _ = writeln!(
            md,
            "| peer | median ms | min–max ms | our NovoGrad (ndarray) ÷ peer |"
        );
        let _ = writeln!(md, "|---|---:|---|---:|");
        for (name, peer) in &peers.peers {
            match peer {
                Peer::Measured(stats) => {
                    let ratio = ours.as_ref().map_or("-".into(), |o| {
                        format!("{:.2}", o.stats.median_ms / stats.median_ms)
                    });
                    let _ = writeln!(
                        md,
                        "| {name} | {} | {} | {ratio} |",
                        ms(stats),
                        range(stats)
                    );
                }
                Peer::Missing { missing } => {
                    let _ = writeln!(md, "| {name} | not installed: {missing} | | |");
                }
            }
        }
        let _ = writeln!(md);
    }

    fn state_table(&self, md: &mut String) {
        let _ = writeln!(md, "## Optimizer state\n");
        let _ = writeln!(
            md,
            "Bytes of the optimizer record after the timed steps, through Burn's full-precision \
             binary recorder (what a checkpoint stores).\n"
        );
        let _ = writeln!(
            md,
            "| backend | set | optimizer | state bytes | bytes per parameter | × AdamW |"
        );
        let _ = writeln!(md, "|---|---|---|---:|---:|---:|");
        for backend in &self.backends {
            for result in &backend.steps {
                let adamw = self.step(backend, result.set, Contender::Adamw);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.3} | {} |",
                    backend.backend,
                    set_name(result.set),
                    result.optimizer,
                    result.state_bytes,
                    result.state_bytes as f64 / result.parameters as f64,
                    adamw.map_or("-".into(), |a| format!(
                        "{:.3}",
                        result.state_bytes as f64 / a.state_bytes as f64
                    ))
                );
            }
        }
        let _ = writeln!(md);
    }

    fn e2e_table(&self, md: &mut String) {
        let _ = writeln!(md, "## End-to-end training step\n");
        let _ = writeln!(
            md,
            "Forward, backward and optimizer step of the examples' models (`examples/mnist`, \
             `examples/char-lm`) on synthetic batches of their default shapes, with each \
             optimizer's default hyperparameters for that example.\n"
        );
        let _ = writeln!(
            md,
            "| model | batch | backend | optimizer | median ms | min–max ms | × AdamW |"
        );
        let _ = writeln!(md, "|---|---:|---|---|---:|---|---:|");
        for backend in &self.backends {
            for result in &backend.e2e {
                let adamw = backend
                    .e2e
                    .iter()
                    .find(|r| r.workload == result.workload && r.optimizer == OptimizerName::Adamw);
                let _ = writeln!(
                    md,
                    "| {:?} | {} | {} | {} | {} | {} | {} |",
                    result.workload,
                    result.batch_size,
                    backend.backend,
                    result.optimizer,
                    ms(&result.stats),
                    range(&result.stats),
                    adamw.map_or("-".into(), |a| format!(
                        "{:.2}",
                        result.stats.median_ms / a.stats.median_ms
                    ))
                );
            }
        }
        let _ = writeln!(md);
    }

    /// The chart's set (the transformer-like one, or the first measured) and its bars: every
    /// optimizer step on it, then the peers.
    fn chart(&self) -> Option<(ParamSet, Vec<(String, f64)>)> {
        let measured = || self.backends.iter().flat_map(|b| b.steps.iter());
        let set = measured()
            .map(|r| r.set)
            .find(|&s| s == ParamSet::TransformerLike)
            .or_else(|| measured().map(|r| r.set).next())?;
        let mut bars: Vec<(String, f64)> = self
            .backends
            .iter()
            .flat_map(|b| b.steps.iter().map(move |r| (b.backend, r)))
            .filter(|(_, r)| r.set == set)
            .map(|(backend, r)| (format!("{} {backend}", r.optimizer), r.stats.median_ms))
            .collect();
        if let (ParamSet::TransformerLike, Ok(peers)) = (set, &self.peers) {
            bars.extend(
                peers
                    .measured()
                    .into_iter()
                    .map(|(name, s)| (name.to_string(), s.median_ms)),
            );
        }
        Some((set, bars))
    }

    /// Writes the Markdown to `markdown`, and the chart and the raw figures (JSON) beside it
    /// under `docs/benchmarks/`.
    pub fn write(&self, markdown: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let dir = markdown
            .parent()
            .unwrap_or(Path::new("."))
            .join("docs/benchmarks");
        std::fs::create_dir_all(&dir)?;
        let (set, bars) = self.chart().ok_or("no optimizer step was measured")?;
        let title = format!(
            "Optimizer step, {} set (median ms, lower is better)",
            set_name(set)
        );
        example_kit::bars(
            &dir.join("step-times.png"),
            &title,
            "milliseconds per step",
            &bars,
        )?;
        std::fs::write(markdown, self.markdown("docs/benchmarks/step-times.png"))?;
        std::fs::write(
            dir.join("benchmarks.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        Ok(())
    }
}
