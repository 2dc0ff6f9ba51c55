//! `STUDY.md` and its plots, from the sweeps and the memory probes. Every sentence about what
//! the data say is computed from the data.

use std::fmt::Write;
use std::path::Path;

use burn_novograd::MomentDtype;
use example_kit::{OptimizerName, Series, plot};
use novograd_benches::e2e::Workload;
use novograd_benches::report::Machine;

use crate::memory::Memory;
use crate::{
    Budget, LM_OPTIMIZERS, OPTIMIZERS, Point, Sweeps, WARMUP_PERCENT, best_index, curve, grid_index,
};

/// A point's learning rate.
fn lr(point: &Point) -> f64 {
    point.run.optimizer.hyper.lr
}

/// Points of one optimizer.
fn of(points: &[Point], optimizer: OptimizerName) -> Vec<Point> {
    let mine = points.iter().filter(|p| p.run.optimizer.name == optimizer);
    mine.cloned().collect()
}

/// Steps per run of a sweep, as "N" or "N–M" when its runs differ.
fn steps(points: &[Point]) -> String {
    let min = points.iter().map(|p| p.steps).min().unwrap_or(0);
    let max = points.iter().map(|p| p.steps).max().unwrap_or(0);
    if min == max {
        format!("{min}")
    } else {
        format!("{min}–{max}")
    }
}

/// Mean score of `points`.
fn mean_score(points: &[Point]) -> f64 {
    points.iter().map(|p| p.score).sum::<f64>() / points.len() as f64
}

/// Largest minus smallest of `scores`.
fn spread(scores: impl Iterator<Item = f64> + Clone) -> f64 {
    scores.clone().fold(f64::MIN, f64::max) - scores.fold(f64::MAX, f64::min)
}

/// Largest minus smallest score of `points` (over seeds).
fn seed_spread(points: &[Point]) -> f64 {
    spread(points.iter().map(|p| p.score))
}

/// `optimizer`'s points at batch `size`.
fn at_batch(points: &[Point], optimizer: OptimizerName, size: usize) -> Vec<Point> {
    let mine = of(points, optimizer).into_iter();
    mine.filter(|p| p.run.batch_size == size).collect()
}

/// One optimizer's rate sweep at a tuned batch size, and its best rate's runs with each warm-up.
struct Tuned {
    summary: LrSummary,
    /// At the best rate: the sweep's warm-up, then the other one (empty before it ran).
    warmups: [Vec<Point>; 2],
}

impl Tuned {
    /// The best rate's runs with the better warm-up: the sweep's unless the other one is
    /// strictly better (mean over seeds).
    fn best(&self) -> &[Point] {
        let [sweep, other] = &self.warmups;
        match !other.is_empty() && mean_score(other) > mean_score(sweep) {
            true => other,
            false => sweep,
        }
    }
}

/// Minutes of wall time of a sweep's runs (each counted once).
fn minutes(points: &[&Point]) -> f64 {
    let mut runs: Vec<&&Point> = points.iter().collect();
    runs.sort_by_key(|p| format!("{:?}", p.run));
    runs.dedup_by(|a, b| a.run == b.run);
    runs.iter().map(|p| p.seconds).sum::<f64>() / 60.0
}

/// The optimizers with the largest `value` (or smallest, with `lowest`), by name; ties are
/// all named.
fn leader(values: &[(OptimizerName, f64)], lowest: bool) -> String {
    let sign = if lowest { -1.0 } else { 1.0 };
    let top = values.iter().map(|v| sign * v.1).fold(f64::MIN, f64::max);
    let leaders: Vec<String> = values
        .iter()
        .filter(|v| sign * v.1 == top)
        .map(|(name, _)| name.to_string())
        .collect();
    match leaders.len() {
        0 => "-".into(),
        1 => format!("{}'s", leaders[0]),
        _ => format!("shared by {}", leaders.join(", ")),
    }
}

/// 1-based rank of NovoGrad among `values` (1 = largest, or smallest with `lowest`), with the
/// number of optimizers tied with it.
fn novograd_rank(values: &[(OptimizerName, f64)], lowest: bool) -> String {
    let sign = if lowest { -1.0 } else { 1.0 };
    let Some(&(_, mine)) = values.iter().find(|v| v.0 == OptimizerName::Novograd) else {
        return "-".into();
    };
    let ahead = values.iter().filter(|v| sign * v.1 > sign * mine).count();
    let tied = values.iter().filter(|v| v.1 == mine).count() - 1;
    let ties = if tied > 0 {
        format!(", tied with {tied}")
    } else {
        String::new()
    };
    format!("{} of {}{ties}", ahead + 1, values.len())
}

/// The learning-rate sweep of one optimizer, summarised.
struct LrSummary {
    /// Mean score per rate (over seeds).
    curve: Vec<(f64, f64)>,
    /// Index of the best rate in `curve`.
    best: usize,
    /// Width, in decades, of the contiguous run of rates around the best whose mean score is
    /// within `tolerance` of the best.
    width: f64,
    /// Largest minus smallest score over seeds at the best rate.
    seed_spread: f64,
    /// Largest last-epoch gain of the best rate's runs.
    last_gain: Option<f64>,
}

impl LrSummary {
    fn new(points: &[Point], lower_is_better: bool, tolerance: f64) -> Self {
        let optimizer = points[0].run.optimizer.name;
        let curve = curve(points, optimizer, lr);
        let best = best_index(&curve, lower_is_better);
        let near = |i: usize| (curve[i].1 - curve[best].1).abs() <= tolerance;
        let low = (0..=best)
            .rev()
            .take_while(|&i| near(i))
            .last()
            .unwrap_or(best);
        let high = (best..curve.len())
            .take_while(|&i| near(i))
            .last()
            .unwrap_or(best);
        let decades = |i: usize| f64::from(grid_index(curve[i].0)) / 2.0;
        let at_best: Vec<&Point> = points.iter().filter(|p| lr(p) == curve[best].0).collect();
        let seed_spread = spread(at_best.iter().map(|p| p.score));
        let last_gain = at_best
            .iter()
            .filter_map(|p| p.last_epoch_gain())
            .reduce(f64::max);
        Self {
            width: decades(high) - decades(low),
            curve,
            best,
            seed_spread,
            last_gain,
        }
    }

    fn best_lr(&self) -> f64 {
        self.curve[self.best].0
    }

    fn best_score(&self) -> f64 {
        self.curve[self.best].1
    }

    /// Whether the best rate has a swept rate on each side.
    fn inside(&self) -> bool {
        self.best > 0 && self.best + 1 < self.curve.len()
    }

    fn window(&self) -> String {
        let first = self.curve.first().map_or(0.0, |c| c.0);
        let last = self.curve.last().map_or(0.0, |c| c.0);
        format!("{first:.1e} … {last:.1e} ({})", self.curve.len())
    }
}

/// Sentences saying whether each optimizer's best rate lies inside its window, and whether its
/// best runs reached their plateau: improved by less than `threshold` (in `unit`s) over their
/// last epoch.
fn window_and_plateau(
    summaries: &[(OptimizerName, LrSummary)],
    threshold: f64,
    unit: &str,
) -> String {
    let failing = |failed: &dyn Fn(&LrSummary) -> bool| {
        let names = summaries.iter().filter(|(_, s)| failed(s));
        names
            .map(|(o, _)| o.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let window = match failing(&|s| !s.inside()).as_str() {
        "" => "Every optimizer's best rate lies inside its window.".to_string(),
        edge => format!("Best rate at an edge of its window: {edge}."),
    };
    let plateau = match failing(&|s| s.last_gain.is_none_or(|g| g >= threshold)).as_str() {
        "" => format!(
            "Every best run improved by less than {threshold} {unit} in its last epoch: the budget reaches the plateau."
        ),
        unsettled => format!(
            "Best runs that improved by {threshold} {unit} or more in their last epoch, so not at their plateau (the comparison holds at this number of steps, not at convergence): {unsettled}."
        ),
    };
    format!("{window} {plateau}")
}

/// Accuracy below which the plots draw a run at this value, so that diverged runs (≈ 10%) do
/// not squash the range where the optimizers differ; the tables give every value.
const ACCURACY_FLOOR: f64 = 90.0;

/// A plot: file, title, axis labels, log x, one series per optimizer, scores under `floor`
/// drawn at it.
fn write_plot(
    dir: &Path,
    (file, title, axes): (&str, &str, (&str, &str)),
    (points, floor): (&[Point], Option<f64>),
    optimizers: &[OptimizerName],
    x: impl Fn(&Point) -> f64 + Copy,
) -> Result<(), Box<dyn std::error::Error>> {
    let series: Vec<Series> = optimizers
        .iter()
        .map(|&o| {
            let curve = curve(points, o, x).into_iter();
            let points = curve.map(|(x, y)| (x, Some(floor.map_or(y, |f| y.max(f)))));
            Series::new(o.to_string(), points)
        })
        .collect();
    plot(&dir.join(file), title, axes, &series, true)
}

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
        let accuracy: &str = &format!(
            "test accuracy (%; runs under {ACCURACY_FLOOR:.0} drawn at {ACCURACY_FLOOR:.0})"
        );
        let floored = Some(ACCURACY_FLOOR);
        let s = self.sweeps;
        let init = |p: &Point| p.run.init_scale;
        let batch = |p: &Point| p.run.batch_size as f64;
        let lr_title = ("lr.png", "MNIST: test accuracy vs learning rate");
        write_plot(
            &dir,
            (lr_title.0, lr_title.1, ("learning rate", accuracy)),
            (&s.lr, floored),
            &OPTIMIZERS,
            lr,
        )?;
        let init_axes = ("× default init scale", accuracy);
        write_plot(
            &dir,
            (
                "init.png",
                "MNIST: test accuracy vs initialisation scale",
                init_axes,
            ),
            (&s.init, floored),
            &OPTIMIZERS,
            init,
        )?;
        let batch_title = "MNIST: test accuracy vs batch size (LR scaled)";
        write_plot(
            &dir,
            ("batch.png", batch_title, ("batch size", accuracy)),
            (&s.batch, floored),
            &OPTIMIZERS,
            batch,
        )?;
        let tuned_title = "MNIST: test accuracy vs batch size (LR tuned)";
        write_plot(
            &dir,
            ("batch-tuned.png", tuned_title, ("batch size", accuracy)),
            (&self.tuned_curve_points(), floored),
            &OPTIMIZERS,
            batch,
        )?;
        let lm_axes = ("learning rate", "validation loss (nats/char)");
        write_plot(
            &dir,
            (
                "lm.png",
                "char-LM: validation loss vs learning rate",
                lm_axes,
            ),
            (&s.lm, None),
            &LM_OPTIMIZERS,
            lr,
        )?;
        std::fs::write(markdown, self.markdown())?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let (b, l) = (&self.budget.mnist, &self.budget.lm);
        let s = self.sweeps;
        let m = Machine::here();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# Study: the NovoGrad paper's claims, with MNIST trainings that reach their plateau\n"
        );
        let decay = |points: &[Point], optimizers: &[OptimizerName]| {
            let each = optimizers.iter().filter_map(|&o| {
                let point = points.iter().find(|p| p.run.optimizer.name == o)?;
                Some(format!("{o} {}", point.run.optimizer.hyper.weight_decay))
            });
            each.collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            md,
            "Ginsburg et al. (2019) claim NovoGrad is robust to the learning rate and to weight \
             initialisation, good at large batch, and needs half of Adam's optimizer memory. This \
             report measures those claims against Burn's AdamW, SGD with momentum 0.9, LAMB (the \
             other layer-wise adaptive method, NovoGrad's rival at large batch) and Lion, with \
             seeded trainings through Burn's `Learner`: linear warm-up over the first {WARMUP_PERCENT}% of \
             steps (Goyal et al.'s 5 of 90 epochs), then cosine decay to 1% of the peak rate. Weight \
             decay is the examples' (MNIST: {}; char-LM: {}); every other setting is the \
             optimizer's default (NovoGrad β = (0.95, 0.98), ε = 1e-8).\n",
            decay(&s.lr, &OPTIMIZERS),
            decay(&s.lm, &LM_OPTIMIZERS)
        );
        let _ = writeln!(md, "- Command: `{}`", self.command);
        let all: Vec<&Point> = [&s.lr, &s.init, &s.batch, &s.tuned, &s.tuned_warmup, &s.lm]
            .into_iter()
            .chain([&s.plateau])
            .flatten()
            .collect();
        let mut distinct = all.clone();
        distinct.sort_by_key(|p| format!("{:?}", p.run));
        distinct.dedup_by(|a, b| a.run == b.run);
        let _ = writeln!(
            md,
            "- Machine: {}, {} cores, {:.0} GiB; backend `{}`. {} distinct runs, **{:.1} minutes** of wall time in all (each run's training, validation and scoring, summed over the invocations that trained them); this invocation took {:.1} minutes and reused {} runs an earlier one had finished.",
            m.cpu,
            m.cores,
            m.memory_gib,
            self.backend,
            distinct.len(),
            minutes(&all),
            self.minutes,
            self.reused
        );
        let _ = writeln!(
            md,
            "- MNIST model: a perceptron 784 → {h} → {h} → 10 with ReLU, no normalisation, no dropout ({params} parameters). Why: its layers are matrix products, which Flex runs near the machine's arithmetic rate, so a run over all {images} training images costs seconds per epoch on 2 cores and every run can reach its plateau; and without normalisation layers the initialisation scale reaches the logits, which is what section 2 tests. The MNIST example's CNN reaches 99.4% but costs about 110 s per epoch here (README), too much for {runs} runs.",
            h = b.hidden,
            params =
                784 * b.hidden + b.hidden + b.hidden * b.hidden + b.hidden + b.hidden * 10 + 10,
            images = s.lr.first().map_or(0, |p| match p.run.task {
                crate::Task::Mnist { train_images, .. } => train_images,
                crate::Task::CharLm { .. } => 0,
            }),
            runs = distinct.len()
        );
        let _ = writeln!(
            md,
            "- char-LM model: the char-LM example's transformer, narrower: {} wide, {} block(s), {} characters of context (the example: 128, 3, 64), batch {}.\n",
            l.d_model, l.layers, l.context, l.batch
        );
        self.lr_section(&mut md);
        self.init_section(&mut md);
        self.batch_section(&mut md);
        self.lm_section(&mut md);
        self.memory_section(&mut md);
        md
    }

    fn lr_section(&self, md: &mut String) {
        let b = &self.budget.mnist;
        let points = &self.sweeps.lr;
        let _ = writeln!(md, "## 1. Learning-rate robustness (MNIST)\n");
        let _ = writeln!(
            md,
            "Each run: {} epoch(s) at batch {} = **{} steps**, scored on every test image; seeds {:?}, scores are means over seeds. Rates half a decade apart, {} per optimizer to start, centred on its default; a window whose best rate was at an edge grew on that side (up to {} rates, none above 1, the most Burn's schedulers take). {:.1} minutes.\n\n![accuracy vs learning rate](docs/study/lr.png)\n",
            b.epochs,
            b.batch,
            steps(points),
            b.seeds,
            b.lr_points,
            b.lr_max_points,
            minutes(&points.iter().collect::<Vec<_>>())
        );
        let _ = writeln!(
            md,
            "| optimizer | rates swept | best rate | best accuracy | seed spread at best (points) | worst accuracy | range within 1 point of best (decades) | last-epoch gain of the best runs (points) |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
        let (mut widths, mut bests, mut summaries) = (vec![], vec![], vec![]);
        for optimizer in OPTIMIZERS {
            let mine = of(points, optimizer);
            if mine.is_empty() {
                continue;
            }
            let summary = LrSummary::new(&mine, false, 1.0);
            let worst = summary.curve.iter().map(|c| c.1).fold(f64::MAX, f64::min);
            let gain = summary.last_gain.map_or("-".into(), |g| format!("{g:+.2}"));
            let _ = writeln!(
                md,
                "| {optimizer} | {} | {:.1e} | {:.2}% | {:.2} | {worst:.2}% | {:.1} | {gain} |",
                summary.window(),
                summary.best_lr(),
                summary.best_score(),
                summary.seed_spread,
                summary.width
            );
            widths.push((optimizer, summary.width));
            bests.push((optimizer, summary.best_score()));
            summaries.push((optimizer, summary));
        }
        let _ = writeln!(
            md,
            "\nWhat the data say: the widest range of rates within one point of the optimizer's own best is {} (NovoGrad ranks {}); the best accuracy is {} (NovoGrad ranks {}).",
            leader(&widths, false),
            novograd_rank(&widths, false),
            leader(&bests, false),
            novograd_rank(&bests, false)
        );
        let _ = writeln!(md, "{}\n", window_and_plateau(&summaries, 0.1, "point"));
    }

    fn init_section(&self, md: &mut String) {
        let b = &self.budget.mnist;
        let points = &self.sweeps.init;
        let _ = writeln!(md, "## 2. Initialisation robustness (MNIST)\n");
        let _ = writeln!(
            md,
            "Every layer's weights and biases initialised at {:?}× Burn's default scale (Kaiming-uniform), at each optimizer's best rate from section 1; {} steps per run, seeds {:?}. {:.1} minutes (the 1× runs are section 1's).\n\n![accuracy vs init scale](docs/study/init.png)\n",
            b.init_scales,
            steps(points),
            b.seeds,
            minutes(&points.iter().collect::<Vec<_>>())
        );
        let header: Vec<String> = b.init_scales.iter().map(|s| format!("{s}×")).collect();
        let _ = writeln!(
            md,
            "| optimizer | rate | {} | spread (points) |",
            header.join(" | ")
        );
        let _ = writeln!(md, "|---|---:|{}---:|", "---:|".repeat(b.init_scales.len()));
        let mut spreads = Vec::new();
        for optimizer in OPTIMIZERS {
            let mine = of(points, optimizer);
            let Some(first) = mine.first() else { continue };
            let curve = curve(&mine, optimizer, |p| p.run.init_scale);
            let spread = spread(curve.iter().map(|c| c.1));
            spreads.push((optimizer, spread));
            let cells: Vec<String> = curve.iter().map(|(_, a)| format!("{a:.2}%")).collect();
            let _ = writeln!(
                md,
                "| {optimizer} | {:.1e} | {} | {spread:.2} |",
                lr(first),
                cells.join(" | ")
            );
        }
        let _ = writeln!(
            md,
            "\nWhat the data say: the smallest spread across initialisation scales is {} (NovoGrad ranks {}).\n",
            leader(&spreads, true),
            novograd_rank(&spreads, true)
        );
    }

    fn batch_section(&self, md: &mut String) {
        let b = &self.budget.mnist;
        let points = &self.sweeps.batch;
        let _ = writeln!(md, "## 3. Large batch (MNIST)\n");
        let per_size: Vec<String> = b
            .batch_sizes
            .iter()
            .map(|&size| {
                let at: Vec<Point> = points
                    .iter()
                    .filter(|p| p.run.batch_size == size)
                    .cloned()
                    .collect();
                format!("{} at {size}", steps(&at))
            })
            .collect();
        let _ = writeln!(
            md,
            "Batch sizes {:?} at a fixed {} epoch(s), so larger batches take fewer steps ({}); seeds {:?}. Each optimizer starts from its best batch-{} rate of section 1, scaled linearly for SGD (Goyal et al. 2017) and by the square root of the batch ratio for the adaptive methods (Hoffer et al. 2017; LAMB's own rule, You et al. 2019), at most 1; warm-up {WARMUP_PERCENT}% of steps ({} epoch(s)) for all; LAMB with its usual large-batch settings (β = (0.9, 0.999), ε = 1e-6, weight decay 0.01, trust ratio). {:.1} minutes.\n\n![accuracy vs batch size](docs/study/batch.png)\n",
            b.batch_sizes,
            b.batch_epochs,
            per_size.join(", "),
            b.batch_seeds,
            b.batch,
            (b.batch_epochs * WARMUP_PERCENT) as f64 / 100.0,
            minutes(&points.iter().collect::<Vec<_>>())
        );
        let header: Vec<String> = b.batch_sizes.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            md,
            "| optimizer | {} | drop, smallest to largest batch (points) |",
            header.join(" | ")
        );
        let _ = writeln!(md, "|---|{}---:|", "---:|".repeat(b.batch_sizes.len()));
        let (mut drops, mut largest) = (Vec::new(), Vec::new());
        for optimizer in OPTIMIZERS {
            let mine = of(points, optimizer);
            if mine.is_empty() {
                continue;
            }
            let curve = curve(&mine, optimizer, |p| p.run.batch_size as f64);
            let cells: Vec<String> = curve
                .iter()
                .map(|&(size, accuracy)| {
                    let rate = mine
                        .iter()
                        .find(|p| p.run.batch_size as f64 == size)
                        .map_or(0.0, lr);
                    format!("{accuracy:.2}% (lr {rate:.1e})")
                })
                .collect();
            let drop = curve.first().map_or(0.0, |f| f.1) - curve.last().map_or(0.0, |l| l.1);
            drops.push((optimizer, drop));
            largest.push((optimizer, curve.last().map_or(0.0, |l| l.1)));
            let _ = writeln!(md, "| {optimizer} | {} | {drop:.2} |", cells.join(" | "));
        }
        let _ = writeln!(
            md,
            "\nWhat the data say: the smallest drop is {} (NovoGrad ranks {}); the best accuracy at the largest batch is {} (NovoGrad ranks {}).\n",
            leader(&drops, true),
            novograd_rank(&drops, true),
            leader(&largest, false),
            novograd_rank(&largest, false)
        );
        self.tuned_batch_section(md);
    }

    /// `optimizer`'s tuned runs at batch `size`, `None` before its sweep ran.
    fn tuned(&self, optimizer: OptimizerName, size: usize) -> Option<Tuned> {
        let swept = at_batch(&self.sweeps.tuned, optimizer, size);
        if swept.is_empty() {
            return None;
        }
        let summary = LrSummary::new(&swept, false, 0.0);
        let at_best = |points: Vec<Point>| -> Vec<Point> {
            let best = points.into_iter().filter(|p| lr(p) == summary.best_lr());
            best.collect()
        };
        let other = at_batch(&self.sweeps.tuned_warmup, optimizer, size);
        let warmups = [at_best(swept), at_best(other)];
        Some(Tuned { summary, warmups })
    }

    /// Section 3's rates tuned at each batch size, beside the scaling rule's.
    fn tuned_batch_section(&self, md: &mut String) {
        let b = &self.budget.mnist;
        let s = self.sweeps;
        if s.tuned.is_empty() {
            return;
        }
        let warmups = [WARMUP_PERCENT, b.tuned_warmup_percent].map(|p| match p {
            0 => "none".to_string(),
            p => format!("{p}%"),
        });
        let _ = writeln!(
            md,
            "### Each optimizer tuned at each batch size

At batch sizes {:?}, each optimizer's rate is swept on the half-decade grid: {} rates to start, centred on the rule's rate above (at most 1), growing at an edge that holds the best (up to {}); seeds {:?}; the same {} epoch(s), with warm-up over {} of steps as above. At the best rate, the runs are repeated with warm-up {} (the NovoGrad paper's claim: NovoGrad needs no warm-up), and the tuned accuracy is the better warm-up's. The drop is the best batch-{} accuracy of section 1 minus the tuned accuracy. {:.1} minutes.

![tuned accuracy vs batch size](docs/study/batch-tuned.png)
",
            b.tuned_batch_sizes,
            b.tuned_lr_points,
            b.tuned_lr_max_points,
            b.tuned_seeds,
            b.batch_epochs,
            warmups[0],
            warmups[1],
            b.batch,
            minutes(&s.tuned.iter().chain(&s.tuned_warmup).collect::<Vec<_>>())
        );
        for &size in &b.tuned_batch_sizes {
            let _ = writeln!(
                md,
                "| batch | optimizer | rule: lr, accuracy | tuned: rates swept | best lr | warm-up {}: accuracy (seed spread) | warm-up {}: accuracy (seed spread) | tuned − rule | drop from batch {} |",
                warmups[0], warmups[1], b.batch
            );
            let _ = writeln!(md, "|---:|---|---:|---|---:|---:|---:|---:|---:|");
            let (mut accuracies, mut drops, mut edges) = (Vec::new(), Vec::new(), Vec::new());
            let (mut novograd_gain, mut no_warmup_better) = (None, Vec::new());
            for optimizer in OPTIMIZERS {
                let rule = at_batch(&s.batch, optimizer, size);
                let reference = of(&s.lr, optimizer);
                let Some(tuned) = self.tuned(optimizer, size) else {
                    continue;
                };
                let (summary, best) = (&tuned.summary, tuned.best());
                if rule.is_empty() || reference.is_empty() {
                    continue;
                }
                let accuracy = mean_score(best);
                let rule_accuracy = mean_score(&rule);
                let gain = accuracy - rule_accuracy;
                let drop = LrSummary::new(&reference, false, 0.0).best_score() - accuracy;
                accuracies.push((optimizer, accuracy));
                drops.push((optimizer, drop));
                if !summary.inside() {
                    edges.push(optimizer.to_string());
                }
                if optimizer == OptimizerName::Novograd {
                    novograd_gain = Some(gain);
                }
                if best[0].run.warmup_percent != WARMUP_PERCENT {
                    no_warmup_better.push(optimizer.to_string());
                }
                let with_warmup = |runs: &[Point]| match runs.is_empty() {
                    true => "-".to_string(),
                    false => format!("{:.2}% ({:.2})", mean_score(runs), seed_spread(runs)),
                };
                let _ = writeln!(
                    md,
                    "| {size} | {optimizer} | {:.1e}, {rule_accuracy:.2}% | {} | {:.1e} | {} | {} | {gain:+.2} | {drop:.2} |",
                    lr(&rule[0]),
                    summary.window(),
                    summary.best_lr(),
                    with_warmup(&tuned.warmups[0]),
                    with_warmup(&tuned.warmups[1]),
                );
            }
            let edges = match edges.is_empty() {
                true => "every best rate lies inside its window".to_string(),
                false => format!("best rate at an edge of its window: {}", edges.join(", ")),
            };
            let warmup = match no_warmup_better.is_empty() {
                true => format!(
                    "warm-up {} was the better one for every optimizer",
                    warmups[0]
                ),
                false => format!(
                    "warm-up {} was the better one for {}",
                    warmups[1],
                    no_warmup_better.join(", ")
                ),
            };
            let novograd_gain = novograd_gain.map_or("-".into(), |gain| format!("{gain:+.2}"));
            let _ = writeln!(
                md,
                "\nWhat the data say (batch {size}, tuned): the best accuracy is {} (NovoGrad ranks {}); the smallest drop from batch {} is {} (NovoGrad ranks {}); tuning changed NovoGrad's accuracy by {novograd_gain} points from the rule's rate; {warmup}; {edges}.\n",
                leader(&accuracies, false),
                novograd_rank(&accuracies, false),
                b.batch,
                leader(&drops, true),
                novograd_rank(&drops, true),
            );
        }
    }

    /// The tuned accuracy per batch size: section 1's best at the reference batch, then each
    /// tuned batch size's best.
    fn tuned_curve_points(&self) -> Vec<Point> {
        let b = &self.budget.mnist;
        let mut points = Vec::new();
        for optimizer in OPTIMIZERS {
            let reference = of(&self.sweeps.lr, optimizer);
            if reference.is_empty() {
                continue;
            }
            let best = LrSummary::new(&reference, false, 0.0).best_lr();
            points.extend(reference.into_iter().filter(|p| lr(p) == best));
            for &size in &b.tuned_batch_sizes {
                if let Some(tuned) = self.tuned(optimizer, size) {
                    points.extend_from_slice(tuned.best());
                }
            }
        }
        points
    }

    fn lm_section(&self, md: &mut String) {
        let l = &self.budget.lm;
        let points = &self.sweeps.lm;
        let _ = writeln!(md, "## 4. Learning rate on a character-level transformer\n");
        let _ = writeln!(
            md,
            "tiny-shakespeare (or the `--text` given), {} epoch(s) of {} windows at batch {} = **{} steps** per run, scored by the mean validation loss over the held-out last 10% of the text; seeds {:?}. Rates half a decade apart, {} per optimizer to start, centred on its default, growing at an edge that holds the best (up to {}). {:.1} minutes.\n\n![validation loss vs learning rate](docs/study/lm.png)\n",
            l.epochs,
            l.windows.map_or("all".into(), |w| w.to_string()),
            l.batch,
            steps(points),
            l.seeds,
            l.lr_points,
            l.lr_max_points,
            minutes(&points.iter().collect::<Vec<_>>())
        );
        let _ = writeln!(
            md,
            "| optimizer | validation loss per rate (nats/char) | best rate | best loss | range within 0.05 nats of best (decades) | last-epoch drop of the best run (nats) |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
        let (mut bests, mut widths, mut summaries) = (vec![], vec![], vec![]);
        for optimizer in LM_OPTIMIZERS {
            let mine = of(points, optimizer);
            if mine.is_empty() {
                continue;
            }
            let summary = LrSummary::new(&mine, true, 0.05);
            let cells: Vec<String> = summary
                .curve
                .iter()
                .map(|(r, loss)| format!("{r:.1e}: {loss:.3}"))
                .collect();
            let drop = summary.last_gain.map_or("-".into(), |g| format!("{g:.3}"));
            let _ = writeln!(
                md,
                "| {optimizer} | {} | {:.1e} | {:.4} | {:.1} | {drop} |",
                cells.join(", "),
                summary.best_lr(),
                summary.best_score(),
                summary.width
            );
            bests.push((optimizer, summary.best_score()));
            widths.push((optimizer, summary.width));
            summaries.push((optimizer, summary));
        }
        let _ = writeln!(
            md,
            "\nWhat the data say: the lowest validation loss is {} (NovoGrad ranks {}); the widest range of rates within 0.05 nats of the optimizer's own best is {} (NovoGrad ranks {}). {}\n",
            leader(&bests, true),
            novograd_rank(&bests, true),
            leader(&widths, false),
            novograd_rank(&widths, false),
            window_and_plateau(&summaries, 0.01, "nats")
        );
        self.plateau_section(md, &bests);
    }

    /// Each optimizer's best char-LM rate trained to its plateau, ranked beside the sweep's
    /// ranking (`at_sweep`: best loss per optimizer at the sweep's steps).
    fn plateau_section(&self, md: &mut String, at_sweep: &[(OptimizerName, f64)]) {
        let l = &self.budget.lm;
        let s = self.sweeps;
        if s.plateau.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "### At the plateau

Each optimizer's best rate above, trained {} epoch(s) with seeds {:?}, and twice as long while a seed's last epoch still lowered the validation loss by {} nats or more (up to {} epochs); the same warm-up and cosine decay over the longer run. {:.1} minutes.
",
            l.plateau_epochs,
            l.plateau_seeds,
            l.plateau_drop,
            l.plateau_max_epochs,
            minutes(&s.plateau.iter().collect::<Vec<_>>())
        );
        let _ = writeln!(
            md,
            "| optimizer | rate | loss at {} steps (the sweep, seeds {:?}) | steps to the plateau | loss at the plateau (seed spread) | largest last-epoch drop (nats) |",
            steps(&s.lm),
            l.seeds
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        let (mut losses, mut unsettled) = (Vec::new(), Vec::new());
        for optimizer in LM_OPTIMIZERS {
            let mine = of(&s.plateau, optimizer);
            let Some(longest) = mine.iter().map(|p| p.run.epochs).max() else {
                continue;
            };
            let last: Vec<Point> = mine
                .into_iter()
                .filter(|p| p.run.epochs == longest)
                .collect();
            let drop = last
                .iter()
                .map(|p| p.last_epoch_gain().unwrap_or(f64::INFINITY))
                .fold(f64::MIN, f64::max);
            if drop >= l.plateau_drop {
                unsettled.push(optimizer.to_string());
            }
            let loss = mean_score(&last);
            losses.push((optimizer, loss));
            let before = at_sweep.iter().find(|(o, _)| *o == optimizer);
            let _ = writeln!(
                md,
                "| {optimizer} | {:.1e} | {} | {} | {loss:.4} ({:.4}) | {drop:.4} |",
                lr(&last[0]),
                before.map_or("-".into(), |(_, loss)| format!("{loss:.4}")),
                steps(&last),
                seed_spread(&last),
            );
        }
        let settled = match unsettled.is_empty() {
            true => format!(
                "Every optimizer's runs reached the plateau (last-epoch drop under {} nats).",
                l.plateau_drop
            ),
            false => format!(
                "Runs still lowering the loss by {} nats or more in their last epoch at {} epochs: {}.",
                l.plateau_drop,
                l.plateau_max_epochs,
                unsettled.join(", ")
            ),
        };
        let _ = writeln!(
            md,
            "\nWhat the data say: at the plateau the lowest validation loss is {} (NovoGrad ranks {}); at the sweep's {} steps it was {} (NovoGrad ranked {}). {settled}\n",
            leader(&losses, true),
            novograd_rank(&losses, true),
            steps(&s.lm),
            leader(at_sweep, true),
            novograd_rank(at_sweep, true),
        );
    }

    fn memory_section(&self, md: &mut String) {
        let _ = writeln!(md, "## 5. Memory\n");
        let measured = match self.memory {
            Ok(measured) => measured,
            Err(why) => {
                let _ = writeln!(md, "Not measured: {why}\n");
                return;
            }
        };
        let _ = writeln!(
            md,
            "Each row is a fresh process that trains {} step(s) of the examples' models (the MNIST CNN and the char-LM transformer, full size) at their default batch size: the optimizer state as its burnpack record (what a checkpoint stores), and the process's peak resident memory (VmHWM).\n",
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
            let storage = match row.moment_dtype {
                MomentDtype::Param => "",
                MomentDtype::Bf16 => " (`m` in bf16)",
                MomentDtype::Int8 => " (`m` in 8 bits)",
            };
            let _ = writeln!(
                md,
                "| {:?} | {}{storage} | {} | {} | {:.1} MiB |",
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
            let row = |optimizer, moment_dtype| {
                measured.iter().find(|r| {
                    (r.workload, r.optimizer, r.moment_dtype) == (workload, optimizer, moment_dtype)
                })
            };
            let row_param = |optimizer| row(optimizer, MomentDtype::Param);
            if let (Some(novograd), Some(adamw)) = (
                row_param(OptimizerName::Novograd),
                row_param(OptimizerName::Adamw),
            ) {
                let bf16: String = [(MomentDtype::Bf16, "bf16"), (MomentDtype::Int8, "8 bits")]
                    .into_iter()
                    .filter_map(|(moment_dtype, storage)| {
                        let narrow = row(OptimizerName::Novograd, moment_dtype)?;
                        Some(format!(
                            " With `m` in {storage} the state is {:.3}× AdamW's.",
                            narrow.state_bytes as f64 / adamw.state_bytes as f64
                        ))
                    })
                    .collect();
                let mib = |bytes: f64| bytes / f64::from(1 << 20);
                let _ = writeln!(
                    md,
                    "What the data say ({workload:?}): NovoGrad's state is {:.3}× AdamW's ({:.2} MiB less); the process peak is {:.1} MiB with NovoGrad vs {:.1} MiB with AdamW ({:+.1} MiB).{bf16}",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary whose best rate is `best` of three and whose best runs gained `last_gain`.
    fn summary(best: usize, last_gain: Option<f64>) -> LrSummary {
        LrSummary {
            curve: vec![(1e-3, 90.0), (1e-2, 95.0), (1e-1, 92.0)],
            best,
            width: 0.5,
            seed_spread: 0.0,
            last_gain,
        }
    }

    #[test]
    fn the_window_and_plateau_sentences_name_who_fails() {
        let settled = [
            (OptimizerName::Novograd, summary(1, Some(0.02))),
            (OptimizerName::Adamw, summary(1, Some(-0.3))),
        ];
        assert_eq!(
            window_and_plateau(&settled, 0.1, "point"),
            "Every optimizer's best rate lies inside its window. Every best run improved by \
             less than 0.1 point in its last epoch: the budget reaches the plateau."
        );
        let unsettled = [
            (OptimizerName::Novograd, summary(1, Some(0.005))),
            (OptimizerName::Adamw, summary(0, Some(0.01))),
            (OptimizerName::Lamb, summary(2, None)),
            (OptimizerName::Sgd, summary(1, Some(0.5))),
        ];
        let sentences = window_and_plateau(&unsettled, 0.01, "nats");
        assert!(
            sentences.starts_with("Best rate at an edge of its window: adamw, lamb. "),
            "{sentences}"
        );
        assert!(
            sentences.ends_with("not at convergence): adamw, lamb, sgd."),
            "{sentences}"
        );
    }
}
