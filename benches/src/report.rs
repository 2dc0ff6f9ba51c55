//! `BENCHMARKS.md`: the figures of one run, as tables, ratios and a bar chart.

use std::fmt::Write;
use std::path::Path;

use example_kit::{BackendName, OptimizerName};
use serde::Serialize;

use crate::peers::{Peer, Peers};
use crate::sets::ParamSet;
use crate::step::{
    Contender, NOVOGRAD_BF16_MOMENT_BYTES_PER_PARAM, NOVOGRAD_BYTES_PER_PARAM,
    NOVOGRAD_INT8_MOMENT_BYTES_PER_PARAM,
};
use crate::suite::{BackendResults, StepResult, novograd_step};
use crate::timing::Stats;
use crate::triad::{Bandwidth, TRIAD_BYTES_PER_ELEMENT};

/// The command of this process as a user types it: `cargo run --release -p PACKAGE [-- ARGS]`.
pub fn command_line(package: &str) -> String {
    std::iter::once(format!("cargo run --release -p {package}"))
        .chain(std::env::args().nth(1).map(|_| "--".to_string()))
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

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

/// Microseconds per tensor of a step.
fn per_tensor_us(result: &StepResult) -> f64 {
    result.stats.median_ms * 1e3 / result.tensors as f64
}

fn set_name(set: ParamSet) -> &'static str {
    match set {
        ParamSet::TransformerLike => "transformer-like",
        ParamSet::ResnetLike => "ResNet-18-like",
        ParamSet::ManySmall => "1,000 × 1,024",
        ParamSet::Large => "8 × 4,096 × 4,096",
        ParamSet::Tiny => "tiny",
    }
}

impl Report {
    /// The least time of `result`'s step (a NovoGrad step) at the measured best bandwidth, in ms.
    fn bound_ms(&self, result: &StepResult) -> Option<f64> {
        let bytes = result.optimizer.bytes_per_param()? * result.parameters as f64;
        Some(bytes / self.bandwidth.best_bytes_per_second * 1e3)
    }

    /// `bound_ms` as a percentage of `result`'s time, for NovoGrad on the CPU backends (the
    /// triad measured host memory); `None` elsewhere.
    fn bound_percent(&self, backend: &BackendResults, result: &StepResult) -> Option<f64> {
        let cpu = matches!(backend.backend, BackendName::Flex | BackendName::Ndarray);
        let bound_ms = self.bound_ms(result).filter(|_| cpu)?;
        Some(100.0 * bound_ms / result.stats.median_ms)
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

    /// The backend the peers and the headline compare with: Flex (the default CPU backend)
    /// where it was measured, else the first backend measured.
    fn primary(&self) -> Option<&BackendResults> {
        (self.backends.iter())
            .find(|b| b.backend == BackendName::Flex)
            .or(self.backends.first())
    }

    fn best_peer(&self) -> Option<(&str, Stats)> {
        self.peers.as_ref().ok()?.measured().into_iter().next()
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
             (NovoGrad fused, NovoGrad tensor ops, NovoGrad with a bf16 moment where the device \
             has bf16, AdamW, SGD, NovoGrad fused, …) so that noise from other work on the \
             machine falls on all of them.\n",
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
            "- Memory bandwidth, STREAM-style triad (`a = b + s·c`, {} threads, 3 × {:.1} MiB \
             arrays): best {:.2} GB/s, median {:.2} GB/s, counting {TRIAD_BYTES_PER_ELEMENT} B \
             per element: `b` and `c` read, and `a`'s cache line read before it is written \
             (write-allocate) and written. STREAM's own count of 12 B leaves the write-allocate \
             read out.",
            bw.threads,
            bw.len as f64 * 4.0 / f64::from(1 << 20),
            bw.best_bytes_per_second / 1e9,
            TRIAD_BYTES_PER_ELEMENT * bw.len as f64 / bw.stats.median_ms / 1e6
        );
        for backend in &self.backends {
            let _ = writeln!(
                md,
                "- `{}`: {}; NovoGrad step: **{}**",
                backend.backend,
                backend.device,
                novograd_step(backend.fused_path.as_deref())
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
        let _ = writeln!(
            md,
            "The bound of a NovoGrad step is {NOVOGRAD_BYTES_PER_PARAM} B per f32 parameter at \
             the measured best bandwidth: `g` read for the norm, `w` and `m` read and written \
             for the update, whose read of `g` comes from the cache (on Flex each thread updates \
             the part of a tensor it has just summed); {NOVOGRAD_BF16_MOMENT_BYTES_PER_PARAM} B \
             with `m` stored in bf16, {NOVOGRAD_INT8_MOMENT_BYTES_PER_PARAM} B in 8 bits with an \
             f32 scale per 128 values. It applies to the CPU backends, whose memory the triad \
             measured.\n"
        );
        for backend in &self.backends {
            let mut sets: Vec<ParamSet> = backend.steps.iter().map(|r| r.set).collect();
            sets.dedup();
            for set in sets {
                self.ratios(md, backend, set);
            }
        }
        let Some(primary) = self.primary() else {
            return;
        };
        let set = ParamSet::TransformerLike;
        let (Some(novograd), Some(adamw)) = (
            self.step(primary, set, Contender::Novograd),
            self.step(primary, set, Contender::Adamw),
        ) else {
            return;
        };
        let _ = writeln!(
            md,
            "- State bytes on {}, NovoGrad / AdamW through `ModuleOptimizer`'s record: \
             **{:.3}** (goal: 0.50).",
            primary.backend,
            novograd.state_bytes as f64 / adamw.state_bytes as f64
        );
        let Ok(peers) = &self.peers else {
            return;
        };
        let ratios: Vec<String> = (peers.measured().into_iter())
            .map(|(name, peer)| {
                format!(
                    "{name} {} ms = **{:.2}×**",
                    ms(&peer),
                    novograd.stats.median_ms / peer.median_ms
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "- Fused NovoGrad on {}, transformer-like set, {} ms, against the peers on the same \
             shapes and threads (ours ÷ peer): {}.",
            primary.backend,
            ms(&novograd.stats),
            ratios.join(", ")
        );
    }

    /// The fused step against the tensor-op step, AdamW and SGD, and the bound, on one backend
    /// and set.
    fn ratios(&self, md: &mut String, backend: &BackendResults, set: ParamSet) {
        let [Some(fused), Some(tensor_ops), Some(adamw), Some(sgd)] = [
            Contender::Novograd,
            Contender::NovogradTensorOps,
            Contender::Adamw,
            Contender::Sgd,
        ]
        .map(|optimizer| self.step(backend, set, optimizer)) else {
            return;
        };
        let ratio = |other: &StepResult| fused.stats.median_ms / other.stats.median_ms;
        let bound = |result: &StepResult| match (
            self.bound_ms(result),
            self.bound_percent(backend, result),
        ) {
            (Some(bound_ms), Some(percent)) => {
                format!("; bound {bound_ms:.2} ms = **{percent:.0}%**")
            }
            _ => String::new(),
        };
        let narrow_moments: String = [
            (Contender::NovogradBf16Moment, "bf16"),
            (Contender::NovogradInt8Moment, "8 bits per block of 128"),
        ]
        .into_iter()
        .filter_map(|(contender, storage)| {
            let narrow = self.step(backend, set, contender)?;
            Some(format!(
                " With `m` in {storage}: {} ms, **{:.2}×** the f32-moment step{}.",
                ms(&narrow.stats),
                narrow.stats.median_ms / fused.stats.median_ms,
                bound(&narrow)
            ))
        })
        .collect();
        let multi_tensor = (self.step(backend, set, Contender::NovogradMultiTensor)).map_or(
            String::new(),
            |multi| {
                let ratio = |other: &StepResult| multi.stats.median_ms / other.stats.median_ms;
                format!(
                    " Multi-tensor step (`multi_tensor`): {} ms, **{:.2}×** the per-tensor \
                     fused step, **{:.2}×** AdamW, **{:.2}×** SGD.",
                    ms(&multi.stats),
                    ratio(&fused),
                    ratio(&adamw),
                    ratio(&sgd)
                )
            },
        );
        let bound = bound(&fused);
        let note = match backend.fused_path {
            None => " (no fused step here: both NovoGrads are the tensor-op step)",
            Some(_) => "",
        };
        let _ = writeln!(
            md,
            "- {}, {} set ({} parameters, {} tensors): fused NovoGrad {} ms ({:.1} µs per \
             tensor); fused/AdamW **{:.2}**, fused/tensor ops **{:.2}**{note}, fused/SGD \
             **{:.2}**{bound}.{multi_tensor}{narrow_moments}",
            backend.backend,
            set_name(set),
            fused.parameters,
            fused.tensors,
            ms(&fused.stats),
            per_tensor_us(&fused),
            ratio(&adamw),
            ratio(&tensor_ops),
            ratio(&sgd)
        );
    }

    fn step_tables(&self, md: &mut String) {
        let _ = writeln!(md, "## Optimizer step\n");
        let _ = writeln!(
            md,
            "Burn's per-tensor `Optimizer::step` over every tensor of the set, as \
             `ModuleOptimizer` drives it: each parameter handed over by value (no clone of it \
             held, so a step may work in place), the same gradients every step. NovoGrad β = \
             (0.95, 0.98); AdamW β = (0.9, 0.999), ε = 1e-8; SGD momentum 0.9; weight decay 1e-3 \
             for each. \"Bound\" is the bandwidth bound of a NovoGrad step \
             ({NOVOGRAD_BYTES_PER_PARAM} B/param, {NOVOGRAD_BF16_MOMENT_BYTES_PER_PARAM} with a \
             bf16 moment, {NOVOGRAD_INT8_MOMENT_BYTES_PER_PARAM} with an 8-bit one) divided by the measured time, on the CPU backends. \"× peer\" \
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
                let bound = (self.bound_percent(backend, result))
                    .map_or("-".into(), |percent| format!("{percent:.0}%"));
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
                    per_tensor_us(result)
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
        let primary = self.primary();
        let ours =
            primary.and_then(|b| self.step(b, ParamSet::TransformerLike, Contender::Novograd));
        let ours_name = primary.map_or("-".into(), |b| b.backend.to_string());
        let _ = writeln!(
            md,
            "`benches/peers/step.py`, same shapes, learning rate and weight decay, f32, gradients \
             in place before the timed `step()`; optax's update is jitted with donated buffers.\n"
        );
        let _ = writeln!(
            md,
            "| peer | median ms | min–max ms | our fused NovoGrad ({ours_name}) ÷ peer |"
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
            "Bytes of the optimizer's record over the set after one step through \
             `ModuleOptimizer` (burnpack, each tensor padded to 256 bytes: what a checkpoint \
             stores).\n"
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
