//! Reports: of a training run, the MLP-vs-logistic comparison table, the
//! learning-curve plot (SVG, written by hand: two panels, loss and accuracy
//! against epochs, train vs validation, with axes, ticks and a legend) and
//! `metrics.json`; of an evaluation, the HTML page of `xfer evaluate --report`
//! ([`html`], with image thumbnails from [`thumbs`]). The functions build
//! strings; the front end writes them with [`crate::util::atomic`].
//!
//! Line colours are the Okabe–Ito palette (blue, vermillion, bluish green), which
//! people with any common colour-vision deficiency tell apart, and lines also
//! differ by dashes.
//!
//! Why not `plotters`' SVG backend: it would bring a dependency tree of its own
//! (font discovery and rendering crates among them) into a binary that only
//! needs two line charts, and its output embeds font metrics of the build
//! machine; this one is ~250 lines, deterministic, and its text is plain SVG
//! `<text>` that any viewer renders.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::eval::metrics::Evaluation;
use crate::train::head::HeadKind;
use crate::train::EpochRecord;
use crate::util::format::fixed;

mod figures;
pub mod html;
pub(crate) mod thumbs;

/// Okabe–Ito colours: distinct under protanopia, deuteranopia and tritanopia.
pub(crate) const BLUE: &str = "#0072B2";
pub(crate) const VERMILLION: &str = "#D55E00";
pub(crate) const BLUISH_GREEN: &str = "#009E73";

/// What one head achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadReport {
    pub kind: HeadKind,
    /// e.g. "Dropout(0.5) → Linear(4608, 1000) → …" or "logistic regression (L-BFGS, C = 1)".
    pub(crate) description: String,
    pub train_seconds: f64,
    /// Seconds per epoch (MLP only).
    pub(crate) seconds_per_epoch: Option<f64>,
    /// Training rows, inference mode: (log loss, accuracy).
    pub(crate) train_loss: f64,
    pub train_accuracy: f64,
    /// Validation scores, when there is a validation split.
    pub validation: Option<Evaluation>,
    /// Per-epoch figures (MLP only).
    pub(crate) history: Vec<EpochRecord>,
    pub(crate) best_epoch: Option<usize>,
    pub(crate) stopped_early: bool,
    /// The bundle file, relative to the output folder.
    pub bundle: String,
    /// The temperature fitted on held-out predictions (1 = not calibrated).
    #[serde(default = "one")]
    pub temperature: f32,
    /// Held-out log loss before calibration (`validation` is after it).
    #[serde(default)]
    pub uncalibrated_log_loss: Option<f64>,
    /// Cross-validation figures, when validation was by folds (`validation`
    /// then scores the pooled out-of-fold predictions).
    #[serde(default)]
    pub cv: Option<CvSummary>,
    /// How a setting was chosen (e.g. "C = 0.0464 by 5-fold CV").
    #[serde(default)]
    pub chosen: Option<String>,
    /// The head `xfer train` recommends (lowest held-out log loss), saved
    /// again as `best.safetensors`.
    #[serde(default)]
    pub recommended: bool,
}

fn one() -> f32 {
    1.0
}

/// Mean ± sample standard deviation of the folds' held-out scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    pub(crate) folds: usize,
    pub accuracy_mean: f64,
    pub accuracy_sd: f64,
    pub log_loss_mean: f64,
    pub log_loss_sd: f64,
    /// Per fold: (log loss, accuracy), calibrated.
    pub(crate) per_fold: Vec<(f64, f64)>,
}

/// Mean and sample standard deviation (n − 1; 0 for one value).
pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

impl CvSummary {
    pub(crate) fn new(per_fold: Vec<(f64, f64)>) -> CvSummary {
        let (log_loss_mean, log_loss_sd) =
            mean_sd(&per_fold.iter().map(|v| v.0).collect::<Vec<_>>());
        let (accuracy_mean, accuracy_sd) =
            mean_sd(&per_fold.iter().map(|v| v.1).collect::<Vec<_>>());
        CvSummary {
            folds: per_fold.len(),
            accuracy_mean,
            accuracy_sd,
            log_loss_mean,
            log_loss_sd,
            per_fold,
        }
    }
}

/// A share as a percentage with one decimal, or a dash when there is none.
fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{} %", fixed(100.0 * v, 1)))
}

/// The side-by-side table printed at the end of `xfer train`. With
/// cross-validation the held-out columns are mean ± sd over the folds; the
/// recommended head is marked `*`.
pub fn comparison_table(heads: &[HeadReport]) -> String {
    let mut s = String::new();
    let cv = heads.iter().any(|h| h.cv.is_some());
    let (acc_title, loss_title) = if cv {
        ("cv acc", "cv loss")
    } else {
        ("val acc", "val loss")
    };
    let w = if cv { 17 } else { 10 };
    let _ = writeln!(
        s,
        "{:<11} {:>w$} {:>w$} {:>12} {:>5} {:>10} {:>10}  train time",
        "head", acc_title, loss_title, "uncal. loss", "T", "train acc", "train loss"
    );
    for h in heads {
        let (va, vl) = match (&h.cv, &h.validation) {
            (Some(c), _) => (
                format!(
                    "{} ± {} %",
                    fixed(100.0 * c.accuracy_mean, 1),
                    fixed(100.0 * c.accuracy_sd, 1)
                ),
                format!(
                    "{} ± {}",
                    fixed(c.log_loss_mean, 4),
                    fixed(c.log_loss_sd, 4)
                ),
            ),
            (None, Some(e)) => (
                format!("{} %", fixed(100.0 * e.accuracy, 2)),
                fixed(e.log_loss, 4),
            ),
            (None, None) => ("—".into(), "—".into()),
        };
        let uncal = h.uncalibrated_log_loss.map_or("—".into(), |v| fixed(v, 4));
        let time = match h.seconds_per_epoch {
            Some(spe) => format!("{} s ({} s/ep)", fixed(h.train_seconds, 1), fixed(spe, 2)),
            None => format!("{} s", fixed(h.train_seconds, 1)),
        };
        let name = format!("{}{}", h.kind, if h.recommended { " *" } else { "" });
        let _ = writeln!(
            s,
            "{:<11} {:>w$} {:>w$} {:>12} {:>5} {:>10} {:>10}  {}",
            name,
            va,
            vl,
            uncal,
            fixed(h.temperature as f64, 2),
            format!("{} %", fixed(100.0 * h.train_accuracy, 2)),
            fixed(h.train_loss, 4),
            time
        );
    }
    if let Some(r) = heads.iter().find(|h| h.recommended) {
        let _ = writeln!(
            s,
            "* recommended: {} (lowest held-out log loss), saved again as best.safetensors",
            r.kind
        );
    }
    s
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `n` intervals over `range`.
fn nice_step(range: f64, n: usize) -> f64 {
    let raw = (range / n.max(1) as f64).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

/// Text made safe for HTML and SVG, in element content and in quoted
/// attribute values alike: `& < > " '` become entities.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// One panel of a chart: where it goes and what it shows.
struct Panel<'a> {
    /// The panel's box in the SVG: left, top, width, height.
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    title: &'a str,
    y_label: &'a str,
    n_epochs: usize,
    series: &'a [Series<'a>],
    /// The values the y axis must show; the series' range when `None`.
    y_range: Option<(f64, f64)>,
    best_epoch: Option<usize>,
    /// The legend at the bottom right (for rising curves), not the top right.
    legend_bottom: bool,
}

/// A panel's plot area and its axes' ranges, which place values in it.
struct Frame {
    px: f64,
    py: f64,
    pw: f64,
    ph: f64,
    xlo: f64,
    xhi: f64,
    ylo: f64,
    yhi: f64,
    ystep: f64,
}

impl Frame {
    /// The plot area inside the panel's margins, the y axis rounded out to whole ticks.
    fn new(p: &Panel) -> Frame {
        let (ml, mr, mt, mb) = (62.0, 14.0, 30.0, 46.0);
        let (px, py, pw, ph) = (p.x0 + ml, p.y0 + mt, p.w - ml - mr, p.h - mt - mb);
        let all: Vec<f64> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .collect();
        let (mut lo, mut hi) = p.y_range.unwrap_or_else(|| {
            let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() {
                (lo, hi)
            } else {
                (0.0, 1.0)
            }
        });
        if hi - lo < 1e-9 {
            lo -= 0.5;
            hi += 0.5;
        }
        let ystep = nice_step(hi - lo, 5);
        let (ylo, yhi) = ((lo / ystep).floor() * ystep, (hi / ystep).ceil() * ystep);
        let (xlo, xhi) = (1.0, (p.n_epochs.max(2)) as f64);
        Frame {
            px,
            py,
            pw,
            ph,
            xlo,
            xhi,
            ylo,
            yhi,
            ystep,
        }
    }

    /// The SVG x of an epoch.
    fn sx(&self, x: f64) -> f64 {
        self.px + (x - self.xlo) / (self.xhi - self.xlo) * self.pw
    }

    /// The SVG y of a value.
    fn sy(&self, y: f64) -> f64 {
        self.py + self.ph - (y - self.ylo) / (self.yhi - self.ylo) * self.ph
    }
}

/// One panel: axes, ticks, grid, the series, a title and axis labels.
fn panel(svg: &mut String, p: &Panel) {
    let f = Frame::new(p);
    let (px, py, pw, ph) = (f.px, f.py, f.pw, f.ph);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"##,
        px + pw / 2.0,
        p.y0 + 20.0,
        escape(p.title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{px:.1}" y="{py:.1}" width="{pw:.1}" height="{ph:.1}" fill="white" stroke="#444"/>"##
    );
    y_ticks(svg, &f);
    x_ticks(svg, &f);
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">epoch</text>"##,
        px + pw / 2.0,
        py + ph + 38.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
        p.x0 + 16.0,
        py + ph / 2.0,
        p.x0 + 16.0,
        py + ph / 2.0,
        escape(p.y_label)
    );
    if let Some(b) = p.best_epoch {
        best_epoch_line(svg, &f, b);
    }
    for s in p.series {
        polyline(svg, &f, s);
    }
    legend(svg, &f, p.series, p.legend_bottom);
}

/// The y ticks, their values and the horizontal grid.
fn y_ticks(svg: &mut String, f: &Frame) {
    let mut v = f.ylo;
    while v <= f.yhi + f.ystep * 1e-6 {
        let y = f.sy(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/>"##,
            f.px,
            f.px + f.pw
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            f.px - 6.0,
            y + 4.0,
            fmt_tick(v, f.ystep)
        );
        v += f.ystep;
    }
}

/// The x ticks (epochs: 1, then multiples of a nice step) and their numbers.
fn x_ticks(svg: &mut String, f: &Frame) {
    let (py, ph) = (f.py, f.ph);
    let xstep = nice_step(f.xhi - f.xlo, 8).max(1.0);
    let mut e = 1.0;
    while e <= f.xhi + 1e-9 {
        let x = f.sx(e);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/>"##,
            py + ph,
            py + ph + 5.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            py + ph + 19.0,
            e as usize
        );
        e = if e == 1.0 && xstep > 1.0 {
            xstep
        } else {
            e + xstep
        };
    }
}

/// The dotted vertical line at the best epoch, labelled on the side with room.
fn best_epoch_line(svg: &mut String, f: &Frame, b: usize) {
    let (px, py, pw, ph) = (f.px, f.py, f.pw, f.ph);
    let x = f.sx(b as f64);
    let _ = writeln!(
        svg,
        r##"<line x1="{x:.1}" y1="{py:.1}" x2="{x:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2,3"/>"##,
        py + ph
    );
    // the label on the side with room
    let (lx, anchor) = if x > px + pw - 70.0 {
        (x - 3.0, "end")
    } else {
        (x + 3.0, "start")
    };
    let _ = writeln!(
        svg,
        r##"<text x="{lx:.1}" y="{:.1}" font-size="11" fill="#666" text-anchor="{anchor}">best epoch</text>"##,
        py + ph - 6.0
    );
}

/// The SVG attribute that dashes a dashed series' line.
fn dash(s: &Series) -> &'static str {
    if s.dashed {
        r#" stroke-dasharray="6,4""#
    } else {
        ""
    }
}

/// A series as a line through its finite points, each marked with a dot.
fn polyline(svg: &mut String, f: &Frame, s: &Series) {
    let pts: Vec<String> = s
        .points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(x, y)| format!("{:.1},{:.1}", f.sx(x), f.sy(y)))
        .collect();
    let _ = writeln!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"##,
        pts.join(" "),
        s.color,
        dash(s)
    );
    for p in &pts {
        let (x, y) = p.split_once(',').expect("x,y");
        let _ = writeln!(
            svg,
            r##"<circle cx="{x}" cy="{y}" r="2.5" fill="{}"/>"##,
            s.color
        );
    }
}

/// The legend, top right inside the plot (bottom right for rising curves).
fn legend(svg: &mut String, f: &Frame, series: &[Series], bottom: bool) {
    let (px, py, pw, ph) = (f.px, f.py, f.pw, f.ph);
    let chars = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(5) as f64;
    let lw = 44.0 + 7.0 * chars;
    let lh = 8.0 + 18.0 * series.len() as f64;
    let lx = px + pw - lw - 4.0;
    let mut ly = if bottom {
        py + ph - lh - 16.0
    } else {
        py + 10.0
    };
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="{lw:.0}" height="{lh:.0}" fill="white" fill-opacity="0.85" stroke="#bbb"/>"##,
        lx - 6.0,
        ly - 4.0
    );
    for s in series {
        let _ = writeln!(
            svg,
            r##"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{}/>"##,
            ly + 6.0,
            lx + 26.0,
            ly + 6.0,
            s.color,
            dash(s)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
            lx + 32.0,
            ly + 10.0,
            escape(s.name)
        );
        ly += 18.0;
    }
}

/// The loss and accuracy series of a run: train and validation per epoch, and
/// the logistic baseline as a flat line.
fn curves(
    history: &[EpochRecord],
    baseline: Option<(f64, f64)>,
) -> (Vec<Series<'static>>, Vec<Series<'static>>) {
    let n = history.len();
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let flat = |v: f64| vec![(1.0, v), (n.max(2) as f64, v)];
    let mut loss = vec![
        Series {
            name: "train (dropout on)",
            color: BLUE,
            dashed: false,
            points: pts(&|r| Some(r.train_loss)),
        },
        Series {
            name: "validation",
            color: VERMILLION,
            dashed: false,
            points: pts(&|r| r.val_loss),
        },
    ];
    let mut acc = vec![
        Series {
            name: "train (dropout on)",
            color: BLUE,
            dashed: false,
            points: pts(&|r| Some(100.0 * r.train_accuracy)),
        },
        Series {
            name: "validation",
            color: VERMILLION,
            dashed: false,
            points: pts(&|r| r.val_accuracy.map(|a| 100.0 * a)),
        },
    ];
    if let Some((bl, ba)) = baseline {
        loss.push(Series {
            name: "logistic (val)",
            color: BLUISH_GREEN,
            dashed: true,
            points: flat(bl),
        });
        acc.push(Series {
            name: "logistic (val)",
            color: BLUISH_GREEN,
            dashed: true,
            points: flat(100.0 * ba),
        });
    }
    (loss, acc)
}

/// The learning curves of an MLP run: loss and accuracy per epoch, train vs
/// validation, with the kept (best) epoch marked. `baseline`, if given, is the
/// logistic head's validation (loss, accuracy), drawn as a flat reference line.
pub(crate) fn learning_curve_svg(
    history: &[EpochRecord],
    title: &str,
    best_epoch: Option<usize>,
    baseline: Option<(f64, f64)>,
) -> String {
    let (w, h) = (1000.0, 420.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#fafafa"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="22" font-size="16" text-anchor="middle">{}</text>"##,
        w / 2.0,
        escape(title)
    );
    let n = history.len();
    let (mut loss, mut acc) = curves(history, baseline);
    loss.retain(|s| !s.points.is_empty());
    acc.retain(|s| !s.points.is_empty());
    let lmax = loss
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    panel(
        &mut svg,
        &Panel {
            x0: 0.0,
            y0: 30.0,
            w: w / 2.0,
            h: h - 30.0,
            title: "Loss (cross-entropy)",
            y_label: "loss",
            n_epochs: n,
            series: &loss,
            y_range: Some((0.0, lmax)),
            best_epoch,
            legend_bottom: false,
        },
    );
    panel(
        &mut svg,
        &Panel {
            x0: w / 2.0,
            y0: 30.0,
            w: w / 2.0,
            h: h - 30.0,
            title: "Accuracy",
            y_label: "accuracy (%)",
            n_epochs: n,
            series: &acc,
            y_range: None,
            best_epoch,
            legend_bottom: true,
        },
    );
    svg += "</svg>\n";
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_negative_zero() {
        assert_eq!(fixed(-0.00001, 4), "0.0000");
        assert_eq!(fixed(-0.0, 2), "0.00");
        assert_eq!(fixed(-0.5, 1), "-0.5");
        assert_eq!(fixed(0.12345, 3), "0.123");
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(37.0, 8), 5.0);
        assert_eq!(fmt_tick(0.4, 0.2), "0.4");
    }

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;"
        );
        assert_eq!(escape("fleurs/été.png"), "fleurs/été.png");
        // Escaping twice escapes the ampersands again (never done by the callers).
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn svg_has_axes_legend_and_both_curves() {
        let history: Vec<EpochRecord> = (1..=5)
            .map(|e| EpochRecord {
                epoch: e,
                lr: 1e-3,
                train_loss: 1.0 / e as f64,
                train_accuracy: 0.5 + 0.08 * e as f64,
                val_loss: Some(1.1 / e as f64),
                val_accuracy: Some(0.5 + 0.07 * e as f64),
                seconds: 1.0,
                cpu_seconds: None,
            })
            .collect();
        let svg = learning_curve_svg(&history, "MLP <test>", Some(5), Some((0.3, 0.8)));
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("MLP &lt;test&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        for label in [
            "epoch",
            "accuracy (%)",
            "validation",
            "train",
            "logistic (val)",
            "best",
        ] {
            assert!(svg.contains(label), "{label}");
        }
    }
}
