//! `STUDY.md` and its plots, from the sweeps and the memory probes.

use std::fmt::Write;
use std::path::Path;

use example_kit::{OptimizerName, Series, plot};
use novograd_benches::e2e::Workload;
use novograd_benches::report::Machine;

use crate::memory::Memory;
use crate::{Budget, OPTIMIZERS, Point, Sweeps};

/// Mean accuracy per x of one optimizer's points, x ascending; `x` picks the swept value.
fn curve(points: &[Point], optimizer: OptimizerName, x: impl Fn(&Point) -> f64) -> Vec<(f64, f64)> {
    let mut xs: Vec<f64> = points
        .iter()
        .filter(|p| p.run.optimizer.name == optimizer)
        .map(&x)
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.into_iter()
        .map(|value| {
            let at: Vec<f64> = points
                .iter()
                .filter(|p| p.run.optimizer.name == optimizer && x(p) == value)
                .map(|p| p.accuracy)
                .collect();
            (value, at.iter().sum::<f64>() / at.len() as f64)
        })
        .collect()
}

/// Best and worst (x, accuracy) of a curve, and the number of x within 1 point of the best.
fn extremes(curve: &[(f64, f64)]) -> ((f64, f64), (f64, f64), usize) {
    let best = curve
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    let worst = curve
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    let near = curve.iter().filter(|p| p.1 >= best.1 - 1.0).count();
    (best, worst, near)
}

/// The optimizer with the smallest value of `key`, by name.
fn smallest(values: &[(OptimizerName, f64)]) -> String {
    values
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("-".into(), |(name, _)| name.to_string())
}

/// A plot: file, title, x label, points and the swept value of a point.
type Plot<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [Point],
    &'a dyn Fn(&Point) -> f64,
);

/// Everything the report says.
pub struct Study<'a> {
    /// The command that produced it.
    pub command: String,
    /// The backend's name.
    pub backend: String,
    /// The budget.
    pub budget: &'a Budget,
    /// The sweeps.
    pub sweeps: &'a Sweeps,
    /// The memory probes, or why there are none.
    pub memory: &'a Result<Vec<Memory>, String>,
    /// Minutes this invocation took.
    pub minutes: f64,
    /// Runs whose outcome an earlier invocation left behind.
    pub reused: usize,
}

impl Study<'_> {
    /// Writes `markdown` and its plots into `docs/study/` beside it.
    pub fn write(&self, markdown: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let dir = markdown
            .parent()
            .unwrap_or(Path::new("."))
            .join("docs/study");
        std::fs::create_dir_all(&dir)?;
        let lr = |p: &Point| p.run.optimizer.hyper.lr;
        let init = |p: &Point| p.run.init_scale;
        let batch = |p: &Point| p.run.batch_size as f64;
        let plots: [Plot; 3] = [
            (
                "lr.png",
                "Test accuracy vs learning rate",
                "learning rate",
                &self.sweeps.lr,
                &lr,
            ),
            (
                "init.png",
                "Test accuracy vs initialisation scale",
                "× default init scale",
                &self.sweeps.init,
                &init,
            ),
            (
                "batch.png",
                "Test accuracy vs batch size (LR scaled)",
                "batch size",
                &self.sweeps.batch,
                &batch,
            ),
        ];
        for (file, title, x_label, points, x) in plots {
            let series: Vec<Series> = OPTIMIZERS
                .iter()
                .map(|&o| {
                    let points = curve(points, o, x).into_iter().map(|(x, y)| (x, Some(y)));
                    Series::new(o.to_string(), points)
                })
                .collect();
            plot(
                &dir.join(file),
                title,
                (x_label, "test accuracy (%)"),
                &series,
                true,
            )?;
        }
        std::fs::write(markdown, self.markdown())?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let b = self.budget;
        let m = Machine::here();
        let mut md = String::new();
        let _ = writeln!(md, "# Study: the NovoGrad paper's claims on MNIST\n");
        let _ = writeln!(
            md,
            "Ginsburg et al. (2019) claim NovoGrad is robust to the learning rate and to weight \
             initialisation, good at large batch, and needs half of Adam's optimizer memory, \
             while matching SGD with momentum and AdamW. This report measures those claims with \
             short seeded trainings of the MNIST example's CNN through Burn's `Learner`, with \
             each optimizer's defaults from the example (NovoGrad λ = 0.01, d = 1e-3, β = (0.95, \
             0.98); AdamW 1e-3 / 1e-2; SGD 0.05 / 5e-4, momentum 0.9), warm-up over the first 5% \
             of steps (at least one) and cosine decay.\n"
        );
        let _ = writeln!(md, "- Command: `{}`", self.command);
        let points = || {
            self.sweeps
                .lr
                .iter()
                .chain(&self.sweeps.init)
                .chain(&self.sweeps.batch)
        };
        let mut runs: Vec<&Point> = points().collect();
        runs.sort_by(|a, b| format!("{:?}", a.run).cmp(&format!("{:?}", b.run)));
        runs.dedup_by(|a, b| a.run == b.run);
        let training_minutes = runs.iter().map(|p| p.seconds).sum::<f64>() / 60.0;
        let _ = writeln!(
            md,
            "- Machine: {}, {} cores, {:.0} GiB; backend `{}`. {} distinct runs, {:.1} minutes of training in all (evaluation not counted); this invocation took {:.1} minutes and reused {} runs an earlier invocation had finished.",
            m.cpu,
            m.cores,
            m.memory_gib,
            self.backend,
            runs.len(),
            training_minutes,
            self.minutes,
            self.reused
        );
        let _ = writeln!(
            md,
            "- Short runs: the learning-rate and initialisation sweeps train {} epoch(s) on the first {} training images at batch {}; the large-batch sweep {} epochs on the first {}; every run is scored on the first {} test images. Seeds {:?} (large batch: {:?}); points are means over seeds.",
            b.sweep_epochs,
            b.sweep_images,
            b.sweep_batch,
            b.batch_epochs,
            b.batch_images,
            b.test_images,
            b.seeds,
            b.batch_seeds
        );
        let _ = writeln!(
            md,
            "- Accuracies after so little training are far from converged (the full example reaches 99.2%); they compare the optimizers at equal, small budgets.\n"
        );
        self.lr_section(&mut md);
        self.init_section(&mut md);
        self.batch_section(&mut md);
        self.memory_section(&mut md);
        md
    }

    fn lr_section(&self, md: &mut String) {
        let _ = writeln!(md, "## 1. Learning-rate robustness\n");
        let _ = writeln!(
            md,
            "{} learning rates per optimizer, from {:.3}× to {:.1}× its default.\n\n![accuracy vs learning rate](docs/study/lr.png)\n",
            self.budget.lr_factors.len(),
            self.budget.lr_factors.first().copied().unwrap_or(1.0),
            self.budget.lr_factors.last().copied().unwrap_or(1.0)
        );
        let _ = writeln!(
            md,
            "| optimizer | best (lr: accuracy) | worst (lr: accuracy) | spread (points) | rates within 1 point of best |"
        );
        let _ = writeln!(md, "|---|---|---|---:|---:|");
        let mut spreads = Vec::new();
        let mut near_counts = Vec::new();
        for optimizer in OPTIMIZERS {
            let curve = curve(&self.sweeps.lr, optimizer, |p| p.run.optimizer.hyper.lr);
            let (best, worst, near) = extremes(&curve);
            spreads.push((optimizer, best.1 - worst.1));
            near_counts.push((optimizer, -(near as f64)));
            let _ = writeln!(
                md,
                "| {optimizer} | {:.2e}: {:.2}% | {:.2e}: {:.2}% | {:.2} | {near} of {} |",
                best.0,
                best.1,
                worst.0,
                worst.1,
                best.1 - worst.1,
                curve.len()
            );
        }
        let _ = writeln!(
            md,
            "\nWhat the data say: the smallest spread over the sweep is {}'s; the most learning rates within one point of the optimizer's own best: {}.\n",
            smallest(&spreads),
            smallest(&near_counts)
        );
    }

    fn init_section(&self, md: &mut String) {
        let _ = writeln!(md, "## 2. Initialisation robustness\n");
        let _ = writeln!(
            md,
            "Convolution and linear layers initialised at {:?}× Burn's default scale (Kaiming-uniform), default learning rates.\n\n![accuracy vs init scale](docs/study/init.png)\n",
            self.budget.init_scales
        );
        let scales = &self.budget.init_scales;
        let header: Vec<String> = scales.iter().map(|s| format!("{s}×")).collect();
        let _ = writeln!(
            md,
            "| optimizer | {} | spread (points) |",
            header.join(" | ")
        );
        let _ = writeln!(md, "|---|{}---:|", "---:|".repeat(scales.len()));
        let mut spreads = Vec::new();
        for optimizer in OPTIMIZERS {
            let curve = curve(&self.sweeps.init, optimizer, |p| p.run.init_scale);
            let (best, worst, _) = extremes(&curve);
            spreads.push((optimizer, best.1 - worst.1));
            let cells: Vec<String> = curve.iter().map(|(_, a)| format!("{a:.2}%")).collect();
            let _ = writeln!(
                md,
                "| {optimizer} | {} | {:.2} |",
                cells.join(" | "),
                best.1 - worst.1
            );
        }
        let _ = writeln!(
            md,
            "\nWhat the data say: the smallest spread across initialisation scales is {}'s.\n",
            smallest(&spreads)
        );
    }

    fn batch_section(&self, md: &mut String) {
        let _ = writeln!(md, "## 3. Large batch\n");
        let _ = writeln!(
            md,
            "Batch sizes {:?} at a fixed {} epochs on {} images, so larger batches take fewer steps. Learning rates scaled from the batch-{} default: linearly for SGD (Goyal et al. 2017), by the square root for AdamW and NovoGrad, capped at {} (the most Burn's schedulers take, which cuts SGD's largest-batch rate).\n\n![accuracy vs batch size](docs/study/batch.png)\n",
            self.budget.batch_sizes,
            self.budget.batch_epochs,
            self.budget.batch_images,
            self.budget.batch_sizes.first().copied().unwrap_or(0),
            crate::MAX_LR
        );
        let sizes = &self.budget.batch_sizes;
        let header: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            md,
            "| optimizer | {} | drop, smallest to largest batch (points) |",
            header.join(" | ")
        );
        let _ = writeln!(md, "|---|{}---:|", "---:|".repeat(sizes.len()));
        let mut drops = Vec::new();
        for optimizer in OPTIMIZERS {
            let curve = curve(&self.sweeps.batch, optimizer, |p| p.run.batch_size as f64);
            let drop = curve.first().map_or(0.0, |f| f.1) - curve.last().map_or(0.0, |l| l.1);
            drops.push((optimizer, drop));
            let cells: Vec<String> = curve.iter().map(|(_, a)| format!("{a:.2}%")).collect();
            let _ = writeln!(md, "| {optimizer} | {} | {drop:.2} |", cells.join(" | "));
        }
        let largest = |name: OptimizerName| {
            curve(&self.sweeps.batch, name, |p| p.run.batch_size as f64)
                .last()
                .map_or(0.0, |l| l.1)
        };
        let at_largest: Vec<(OptimizerName, f64)> =
            OPTIMIZERS.iter().map(|&o| (o, -largest(o))).collect();
        let _ = writeln!(
            md,
            "\nWhat the data say: the smallest drop is {}'s; the best accuracy at the largest batch is {}'s.\n",
            smallest(&drops),
            smallest(&at_largest)
        );
    }

    fn memory_section(&self, md: &mut String) {
        let _ = writeln!(md, "## 4. Memory\n");
        let measured = match self.memory {
            Ok(measured) => measured,
            Err(why) => {
                let _ = writeln!(md, "Not measured: {why}\n");
                return;
            }
        };
        let _ = writeln!(
            md,
            "Each row is a fresh process that trains {} step(s) of the example's model at its default batch size: the optimizer state as its burnpack record (what a checkpoint stores), and the process's peak resident memory (VmHWM).\n",
            self.budget.probe_steps
        );
        let _ = writeln!(
            md,
            "| model | optimizer | state bytes | × AdamW | peak process memory |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|");
        for row in measured {
            let adamw = measured
                .iter()
                .find(|r| r.workload == row.workload && r.optimizer == OptimizerName::Adamw);
            let _ = writeln!(
                md,
                "| {:?} | {} | {} | {} | {:.1} MiB |",
                row.workload,
                row.optimizer,
                row.state_bytes,
                adamw.map_or("-".into(), |a| format!(
                    "{:.3}",
                    row.state_bytes as f64 / a.state_bytes as f64
                )),
                row.peak_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(md);
        for workload in Workload::ALL {
            let row = |optimizer| {
                measured
                    .iter()
                    .find(|r| r.workload == workload && r.optimizer == optimizer)
            };
            if let (Some(novograd), Some(adamw)) =
                (row(OptimizerName::Novograd), row(OptimizerName::Adamw))
            {
                let mib = |bytes: f64| bytes / f64::from(1 << 20);
                let _ = writeln!(
                    md,
                    "What the data say ({workload:?}): NovoGrad's state is {:.3}× AdamW's ({:.2} MiB less); the process peak is {:.1} MiB with NovoGrad vs {:.1} MiB with AdamW ({:+.1} MiB).",
                    novograd.state_bytes as f64 / adamw.state_bytes as f64,
                    mib(adamw.state_bytes as f64 - novograd.state_bytes as f64),
                    novograd.peak_kib as f64 / 1024.0,
                    adamw.peak_kib as f64 / 1024.0,
                    (novograd.peak_kib as f64 - adamw.peak_kib as f64) / 1024.0
                );
            }
        }
        let _ = writeln!(md);
    }
}
