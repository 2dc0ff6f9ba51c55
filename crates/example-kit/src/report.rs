//! What a run leaves behind: `results.json` and PNG curves.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use crate::backend::BackendName;
use crate::optimizer::OptimizerSpec;
use crate::training::{EpochStats, step_losses};

/// The results of one training run; `outcome` holds the task's final figures.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport<T: Serialize> {
    /// Which optimizer, with its learning rate and weight decay.
    pub optimizer: OptimizerSpec,
    /// Which backend.
    pub backend: BackendName,
    /// Devices trained on (data-parallel when more than one).
    pub devices: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Items per batch.
    pub batch_size: usize,
    /// Seed of the model initialisation and data order.
    pub seed: u64,
    /// Wall time of the whole training.
    pub train_seconds: f64,
    /// Optimizer state after one step, as Burn's burnpack record (`ModuleOptimizer::into_bytes`).
    pub optimizer_state_bytes: usize,
    /// The task's final figures.
    #[serde(flatten)]
    pub outcome: T,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
}

impl<T: Serialize> RunReport<T> {
    /// Writes `DIR/results.json`, returning its path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("results.json");
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json + "\n")?;
        Ok(path)
    }
}

/// One named line of a plot.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from `(x, Option<y>)` pairs, skipping missing values.
    pub fn new(
        label: impl Into<String>,
        points: impl IntoIterator<Item = (f64, Option<f64>)>,
    ) -> Self {
        Self {
            label: label.into(),
            points: points
                .into_iter()
                .filter_map(|(x, y)| Some((x, y?)))
                .collect(),
        }
    }
}

/// The curve of the training loss per step in an artifact directory.
pub const STEP_LOSS_PLOT: &str = "loss-steps.png";

/// Draws the training loss of every step of the run in `dir` ([`step_losses`]) into
/// `dir/loss-steps.png`, titled `title`.
pub fn plot_step_losses(
    dir: &Path,
    title: &str,
    epochs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let losses = step_losses(dir, epochs);
    let series = Series {
        label: "train, per step".to_string(),
        points: losses,
    };
    plot(
        &dir.join(STEP_LOSS_PLOT),
        title,
        ("step", "loss"),
        &[series],
        false,
    )
}

/// Draws `series` as lines into a PNG at `path`; `log_x` for a logarithmic x axis.
pub fn plot(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[Series],
    log_x: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x_min, x_max, y_min, y_max) = (x_min.min(x), x_max.max(x), y_min.min(y), y_max.max(y));
    }
    if x_min > x_max {
        return Err("nothing to plot".into());
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-6);
    let (y_range, x_range) = ((y_min - pad)..(y_max + pad), x_min..x_max.max(x_min + 1e-9));
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()?;
            for (index, s) in series.iter().enumerate() {
                let color = colors[index % colors.len()];
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                // Markers on short series only (per-epoch curves, not per-step ones).
                if s.points.len() <= 100 {
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    if log_x {
        draw!(builder.build_cartesian_2d(x_range.log_scale(), y_range)?);
    } else {
        draw!(builder.build_cartesian_2d(x_range, y_range)?);
    }
    root.present()?;
    Ok(())
}

/// Draws one horizontal bar per `(label, value)`, top to bottom, into a PNG at `path`.
pub fn bars(
    path: &Path,
    title: &str,
    x_label: &str,
    bars: &[(String, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let x_max = bars.iter().map(|(_, value)| *value).fold(0.0, f64::max);
    if bars.is_empty() || x_max <= 0.0 {
        return Err("nothing to plot".into());
    }
    let height = 120 + 32 * bars.len() as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let rows = bars.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..x_max * 1.15, (0..rows).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_label)
        .y_labels(bars.len())
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(row) => bars
                .get((rows - 1 - row) as usize)
                .map_or(String::new(), |(label, _)| label.clone()),
            _ => String::new(),
        })
        .draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
        let row = rows - 1 - index as i32;
        let color = colors[index % colors.len()].mix(0.7).filled();
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row)),
                (*value, SegmentValue::Exact(row + 1)),
            ],
            color,
        );
        bar.set_margin(4, 4, 0, 0);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
        let row = rows - 1 - index as i32;
        Text::new(
            format!(" {value:.1}"),
            (*value, SegmentValue::CenterOf(row)),
            ("sans-serif", 14),
        )
    }))?;
    root.present()?;
    Ok(())
}
