//! The page of `xfer evaluate --report DIR`: one self-contained HTML file
//! (`DIR/report.html`) showing what a head gets wrong. No scripts, no
//! external fonts or style sheets, nothing fetched: the styles are inline, the
//! charts are inline SVG and the thumbnails are JPEG `data:` URIs
//! ([`super::thumbs`]), so the file can be mailed, archived or opened offline.
//!
//! Sections (each a `<section id=…>`), what the head gets wrong first and
//! where it came from last: `summary` (accuracy, log loss, ECE, per-class
//! n, precision, recall and F1, with `confusion` beside the table: a grid,
//! coloured by the share of the true class's rows in a colour-blind-safe
//! sequential palette, counts printed; above [`MAX_GRID_CLASSES`] classes the
//! most frequent confusions instead), `mistakes` (thumbnails of the most
//! confidently wrong rows and of the least confident right ones, at most
//! [`MAX_EXAMPLES`] each), `reliability` (the top class's predicted
//! probability in 10 bins against the observed accuracy, the bin counts and
//! ECE), `learning-curves` (the run's, from `metrics.json` beside the bundle,
//! drawn by [`super::learning_curve_svg`]) and `provenance` (the bundle's head,
//! backbones, preprocessing, training configuration, temperature, whether
//! `xfer train` recommended it).
//!
//! [`evaluation_page`] gathers what the page needs (reading `metrics.json` and
//! the images, whose failures become notes on the page, never errors) and
//! [`render`] turns it into the HTML string; the front end writes it with
//! [`crate::util::atomic`]. Every piece of text that comes from data (class names,
//! paths, file names) goes through [`escape`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::Deserialize;

use super::figures::{confusion, reliability};
use super::{comparison_table, escape, fixed, learning_curve_svg, pct, thumbs, HeadReport};
use crate::eval::metrics::{self, Evaluation, Reliability};
use crate::images::preprocess::Recipe;
use crate::ship::bundle::BundleMeta;
use crate::train::folder::RunFolder;
use crate::train::head::HeadKind;

/// Bins of the reliability diagram.
pub(crate) const N_BINS: usize = 10;
/// Thumbnails per gallery (the most confident mistakes; the least confident right answers).
pub(crate) const MAX_EXAMPLES: usize = 24;

/// What `xfer evaluate` knows when it writes the page.
pub struct PageInput<'a> {
    /// The bundle file, as given (its folder is searched for `metrics.json`).
    pub bundle_path: &'a Path,
    pub bundle: &'a BundleMeta,
    /// The feature files evaluated, one per backbone.
    pub feature_files: &'a [PathBuf],
    /// Each row's image, relative to `dataset_root`; `None` for tutorial files.
    pub paths: Option<&'a [String]>,
    /// Where the images were at extraction (the first feature file's `dataset_root`).
    pub dataset_root: Option<&'a Path>,
    /// Where they are now, when given (`--image-root`): replaces `dataset_root`.
    pub image_root: Option<&'a Path>,
    pub evaluation: &'a Evaluation,
    /// The head's probabilities (calibrated, as `Bundle::predict_proba` gives them).
    pub probs: ArrayView2<'a, f32>,
    pub labels: &'a [usize],
}

/// One row shown in a gallery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Example {
    pub(crate) row: usize,
    pub(crate) label: usize,
    pub(crate) predicted: usize,
    /// Probability of the predicted (top) class.
    pub(crate) p_predicted: f32,
    /// Probability of the true class.
    pub(crate) p_true: f32,
    /// The second most likely class and its probability (none with one class).
    pub(crate) runner_up: Option<(usize, f32)>,
}

fn example(row: usize, probs: ndarray::ArrayView1<f32>, label: usize) -> Example {
    let (predicted, p_predicted) = crate::train::head::argmax(probs);
    let runner_up = probs
        .iter()
        .enumerate()
        .filter(|&(k, _)| k != predicted)
        .fold(None, |best: Option<(usize, f32)>, (k, &p)| match best {
            Some((_, bp)) if bp >= p => best,
            _ => Some((k, p)),
        });
    Example {
        row,
        label,
        predicted,
        p_predicted,
        p_true: probs[label],
        runner_up,
    }
}

/// The rows predicted wrong, the most confident first (ties: lower row
/// first), at most `k` of them, and how many there are in all.
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub(crate) fn confident_mistakes(
    probs: ArrayView2<f32>,
    labels: &[usize],
    k: usize,
) -> (Vec<Example>, usize) {
    pick(probs, labels, false, k)
}

/// The rows predicted right, the least confident first (ties: lower row
/// first), at most `k` of them, and how many there are in all.
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub(crate) fn unsure_hits(
    probs: ArrayView2<f32>,
    labels: &[usize],
    k: usize,
) -> (Vec<Example>, usize) {
    pick(probs, labels, true, k)
}

fn pick(probs: ArrayView2<f32>, labels: &[usize], right: bool, k: usize) -> (Vec<Example>, usize) {
    assert_eq!(probs.nrows(), labels.len(), "one label per row");
    let mut v: Vec<Example> = probs
        .rows()
        .into_iter()
        .zip(labels)
        .enumerate()
        .map(|(r, (p, &y))| example(r, p, y))
        .filter(|e| (e.predicted == e.label) == right)
        .collect();
    v.sort_by(|a, b| {
        let by_p = a.p_predicted.total_cmp(&b.p_predicted);
        (if right { by_p } else { by_p.reverse() }).then(a.row.cmp(&b.row))
    });
    let total = v.len();
    v.truncate(k);
    (v, total)
}

/// The training run a bundle came from: `metrics.json` beside it.
#[derive(Debug, Deserialize)]
struct RunMetrics {
    heads: Vec<HeadReport>,
    #[serde(default)]
    recommended: Option<String>,
}

struct Run {
    file: PathBuf,
    metrics: RunMetrics,
    /// The head of `metrics.heads` this bundle is.
    this: usize,
}

/// Finds the run of the bundle, or says why there is none to show.
fn find_run(bundle_path: &Path, meta: &BundleMeta) -> std::result::Result<Run, String> {
    let run = RunFolder::of_bundle(bundle_path);
    let file = run.file(RunFolder::METRICS);
    let shown = file.display();
    let text = match run.read_metrics() {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(format!(
                "There is no metrics.json beside the bundle (looked for {shown}), so the run's \
                 learning curves cannot be shown: they are for bundles in the output folder of \
                 `xfer train`, next to the metrics.json it writes."
            ))
        }
        Err(e) => {
            return Err(format!(
                "{shown} could not be read ({e}): no learning curves."
            ))
        }
    };
    let metrics: RunMetrics = serde_json::from_str(&text).map_err(|e| {
        format!("{shown} is not the metrics.json of an `xfer train` run ({e}): no learning curves.")
    })?;
    let name = bundle_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trained_loss = meta.metrics.get("train_loss").and_then(|v| v.as_f64());
    let same = |h: &HeadReport| {
        h.kind == meta.kind
            && (h.temperature - meta.temperature).abs() <= 1e-6 * meta.temperature.abs()
            && trained_loss.is_none_or(|l| (h.train_loss - l).abs() <= 1e-9 * l.abs().max(1.0))
    };
    let candidates: Vec<usize> = (0..metrics.heads.len())
        .filter(|&i| same(&metrics.heads[i]))
        .collect();
    let this = candidates
        .iter()
        .copied()
        .find(|&i| metrics.heads[i].bundle == name)
        .or_else(|| candidates.first().copied())
        .ok_or_else(|| {
            format!(
                "{shown} belongs to another training run (none of its heads has this bundle's \
                 kind, temperature and training loss): its learning curves are not shown."
            )
        })?;
    Ok(Run {
        file,
        metrics,
        this,
    })
}

/// Where the images are, or why they cannot be shown.
fn image_root(input: &PageInput) -> std::result::Result<PathBuf, String> {
    if input.paths.is_none() {
        return Err(
            "These features record no image paths (the tutorial's layout: `data` and \
                    `label` only), so the images are not shown. Features extracted with \
                    `xfer extract` record them."
                .into(),
        );
    }
    let (root, given) = match (input.image_root, input.dataset_root) {
        (Some(r), _) => (r, true),
        (None, Some(r)) => (r, false),
        (None, None) => {
            return Err(
                "The feature files record no dataset_root, so the images are not \
                        shown; pass --image-root DIR with the folder their paths are relative to."
                    .into(),
            )
        }
    };
    if root.is_dir() {
        return Ok(root.to_owned());
    }
    Err(if given {
        format!(
            "--image-root {} is not a folder, so the images are not shown.",
            root.display()
        )
    } else {
        format!(
            "The images are not reachable, so they are not shown: the feature file's \
             dataset_root, {}, is not a folder here (the data moved, or the features were \
             extracted on another machine). Pass --image-root DIR with the folder that now holds \
             them.",
            root.display()
        )
    })
}

/// A thumbnail, or why there is none.
type Thumb = std::result::Result<String, String>;

/// Everything the page shows, gathered.
pub(crate) struct Page<'p, 'a> {
    pub(crate) input: &'p PageInput<'a>,
    pub(crate) reliability: Reliability,
    pub(crate) mistakes: (Vec<Example>, usize),
    pub(crate) hits: (Vec<Example>, usize),
    /// One per example of `mistakes` then `hits`; empty when `images` is a note.
    thumbs: Vec<Thumb>,
    /// The folder the images were read from, or why they were not.
    images: std::result::Result<PathBuf, String>,
    run: std::result::Result<Run, String>,
}

/// Gathers and renders the page (reads `metrics.json` beside the bundle and
/// the thumbnails' images; what cannot be read is said on the page).
pub fn evaluation_page(input: &PageInput) -> String {
    render(&gather(input))
}

/// The page's content: scores, picks, the run and the thumbnails.
pub(crate) fn gather<'p, 'a>(input: &'p PageInput<'a>) -> Page<'p, 'a> {
    let reliability = metrics::reliability(input.probs, input.labels, N_BINS);
    let mistakes = confident_mistakes(input.probs, input.labels, MAX_EXAMPLES);
    let hits = unsure_hits(input.probs, input.labels, MAX_EXAMPLES);
    let images = image_root(input);
    let thumbs = match (&images, input.paths) {
        (Ok(root), Some(paths)) => mistakes
            .0
            .iter()
            .chain(&hits.0)
            .collect::<Vec<_>>()
            .par_iter()
            .map(|e| {
                thumbs::data_uri(&thumbs::image_path(root, &paths[e.row]), thumbs::MAX_SIDE)
                    .map_err(|err| err.to_string())
            })
            .collect(),
        _ => Vec::new(),
    };
    Page {
        input,
        reliability,
        mistakes,
        hits,
        thumbs,
        images,
        run: find_run(input.bundle_path, input.bundle),
    }
}

pub(crate) const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Helvetica, Arial, sans-serif; font-size: 15px;
  line-height: 1.45; color: #1a1a1a; background: #fff; max-width: 1180px; margin: 0 auto; padding: 0 24px 40px; }
h1 { font-size: 1.55em; margin: 0.9em 0 0.2em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.6em; padding-bottom: 0.2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.5em; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; }
pre { background: #f5f5f5; padding: 8px 10px; overflow-x: auto; }
.sub { color: #444; margin: 0.2em 0; word-break: break-word; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #e5e5e5; padding: 6px 0; z-index: 1; }
nav a { margin-right: 1.1em; color: #0b5394; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 0.6em 0 1em; }
.card { border: 1px solid #d6d6d6; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card .v { font-size: 1.6em; font-weight: bold; font-variant-numeric: tabular-nums; }
.card .k { color: #444; font-size: 0.85em; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e8e8e8; text-align: right; vertical-align: top; }
th { background: #f4f4f4; }
th.l, td.l { text-align: left; }
td.num { font-variant-numeric: tabular-nums; }
.kv td, .kv th { text-align: left; }
.kv th { font-weight: normal; color: #333; white-space: nowrap; }
.wrap { overflow-x: auto; }
.pair { display: flex; flex-wrap: wrap; gap: 12px 48px; align-items: flex-start; }
.pair > * { flex: 0 1 auto; min-width: 0; }
.explain { flex: 1 1 300px; max-width: 460px; }
.half { flex: 0 1 480px; }
.pair > section { flex: 1 1 400px; }
table.cm { border-collapse: separate; border-spacing: 2px; }
table.cm td { min-width: 2.6em; height: 2.3em; text-align: center; vertical-align: middle; border: 0; padding: 2px 4px; font-variant-numeric: tabular-nums; }
table.cm td.diag { outline: 2px solid #1a1a1a; outline-offset: -2px; }
table.cm th { background: none; border: 0; font-weight: normal; }
table.cm th.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; vertical-align: bottom; max-height: 12em; }
table.cm th.row { text-align: right; white-space: nowrap; }
.legend { display: flex; align-items: center; gap: 6px; font-size: 0.85em; color: #333; margin: 0.4em 0; }
.legend span.sw { display: inline-block; width: 22px; height: 14px; }
.note { background: #fff6e0; border-left: 4px solid #E69F00; padding: 6px 10px; margin: 0.6em 0; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(178px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #d6d6d6; border-radius: 6px; padding: 6px; break-inside: avoid; }
figure img { display: block; margin: 0 auto 4px; max-width: 160px; max-height: 160px; }
.noimg { width: 160px; height: 96px; margin: 0 auto 4px; display: flex; align-items: center; justify-content: center;
  text-align: center; font-size: 0.72em; color: #444; overflow: hidden; word-break: break-all;
  background: repeating-linear-gradient(45deg, #f2f2f2 0 8px, #e4e4e4 8px 16px); }
figcaption { font-size: 0.85em; }
figcaption .path { color: #555; font-size: 0.85em; word-break: break-all; }
svg { max-width: 100%; height: auto; }
details summary { cursor: pointer; color: #0b5394; }
footer { margin-top: 2.5em; color: #555; font-size: 0.85em; border-top: 1px solid #ddd; padding-top: 0.6em; }
@media print {
  nav { display: none; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  table, figure, svg, .cards { break-inside: avoid; }
  details::details-content { content-visibility: visible; display: block; }
  .gallery { grid-template-columns: repeat(5, 1fr); }
  figure img { max-width: 100%; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// The page for `page`, as one HTML string.
pub(crate) fn render(page: &Page) -> String {
    let input = page.input;
    let meta = input.bundle;
    let e = input.evaluation;
    let mut h = String::with_capacity(64 << 10);
    let backbones = meta
        .backbones
        .iter()
        .map(|b| b.name.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let title = format!("{} head on {backbones}", meta.kind);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"xfer {}\">\n<title>xfer evaluate: {}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n",
        crate::VERSION,
        escape(&title)
    );
    let _ = writeln!(
        h,
        "<header>\n<h1>What the head gets wrong: {}</h1>",
        escape(&title)
    );
    let _ = writeln!(
        h,
        "<p class=\"sub\">bundle <code>{}</code> on {} labelled rows of {}</p>\n</header>",
        escape(&input.bundle_path.display().to_string()),
        e.n_samples,
        join_code(input.feature_files)
    );
    h += "<nav><a href=\"#summary\">Scores</a><a href=\"#confusion\">Confusion matrix</a>\
          <a href=\"#mistakes\">Mistakes</a><a href=\"#reliability\">Calibration</a>\
          <a href=\"#learning-curves\">Learning curves</a><a href=\"#provenance\">Provenance</a></nav>\n";
    // What the head gets wrong first; where it came from last.
    summary(&mut h, page);
    mistakes(&mut h, page);
    reliability(&mut h, &page.reliability);
    learning_curves(&mut h, page);
    provenance(&mut h, page);
    let _ = writeln!(
        h,
        "<footer>Written by xfer {} (<code>xfer evaluate --report</code>). One self-contained \
         file: no scripts, fonts or network; thumbnails (at most {} px) are embedded JPEGs.</footer>\n</body>\n</html>",
        crate::VERSION,
        thumbs::MAX_SIDE
    );
    h
}

fn join_code(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| format!("<code>{}</code>", escape(&f.display().to_string())))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn summary(h: &mut String, page: &Page) {
    let e = page.input.evaluation;
    let clip = match e.clip {
        Some(c) => format!(" (clipped to [{c}, {}])", 1.0 - c),
        None => String::new(),
    };
    let wrong = page.mistakes.1;
    let _ = writeln!(
        h,
        "<section id=\"summary\">\n<h2>Scores</h2>\n<div class=\"cards\">"
    );
    for (v, k) in [
        (
            format!("{} %", fixed(100.0 * e.accuracy, 1)),
            format!("accuracy ({wrong} of {} wrong)", e.n_samples),
        ),
        (fixed(e.log_loss, 4), format!("log loss{clip}")),
        (
            fixed(page.reliability.ece, 4),
            format!("expected calibration error ({N_BINS} bins)"),
        ),
        (e.n_samples.to_string(), "rows".into()),
        (e.class_names.len().to_string(), "classes".into()),
    ] {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
            escape(&v),
            escape(&k)
        );
    }
    h.push_str("</div>\n<div class=\"pair\">\n<div class=\"half\"><h3>Per class</h3>\n<div class=\"wrap\"><table>\n<tr><th class=\"l\">class</th><th>n</th><th>predicted</th><th>precision</th><th>recall</th><th>F1</th></tr>\n");
    for (k, c) in e.per_class.iter().enumerate() {
        let predicted: usize = e.confusion.iter().map(|row| row[k]).sum();
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"num\">{}</td><td class=\"num\">{predicted}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.name),
            c.support,
            pct(c.precision),
            pct(c.recall),
            c.f1().map_or("—".into(), |f| fixed(f, 3))
        );
    }
    h.push_str(
        "</table></div>\n<p class=\"sub\">n: rows of the class; predicted: rows predicted as it; \
                — where undefined (a class never predicted has no precision).</p>\n</div>\n",
    );
    confusion(h, e);
    h.push_str("</div>\n</section>\n");
}

/// A JSON number as written by a person: f32 values stored as f64 (0.001
/// rather than 0.0010000000474974513).
fn json_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if (f as f32) as f64 == f => format!("{}", f as f32),
            _ => n.to_string(),
        },
        serde_json::Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            format!(
                "[{}]",
                a.iter().map(json_scalar).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// `{"a": {"b": 1}}` → `[("a.b", "1")]`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                flatten(&key(k), x, out);
            }
        }
        serde_json::Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), x, out);
            }
        }
        _ => out.push((prefix.to_string(), json_scalar(v))),
    }
}

fn kv_table(h: &mut String, rows: &[(String, String)]) {
    h.push_str("<div class=\"wrap\"><table class=\"kv\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    h.push_str("</table></div>\n");
}

/// A preprocessing recipe in words.
fn recipe_text(json: &str) -> String {
    if json.is_empty() {
        return "not recorded (tutorial-layout features)".into();
    }
    match serde_json::from_str::<Recipe>(json) {
        Ok(r) => format!(
            "resize {} → centre crop {}, {:?}; (pixel × {} − {:?}) / {:?}, {:?}",
            r.resize, r.crop, r.interpolation, r.pixel_scale, r.mean, r.std, r.channel_order
        )
        .to_lowercase(),
        Err(_) => json.to_string(),
    }
}

fn provenance(h: &mut String, page: &Page) {
    let meta = page.input.bundle;
    let t = &meta.training;
    let get = |k: &str| t.get(k).map(json_scalar).unwrap_or_else(|| "—".into());
    h.push_str("<section id=\"provenance\">\n<h2>Provenance</h2>\n");
    let name = page
        .input
        .bundle_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let recommended = match &page.run {
        Ok(run) => {
            let this = &run.metrics.heads[run.this];
            match &run.metrics.recommended {
                _ if this.recommended => format!(
                    "yes: `xfer train` recommended this head (lowest calibrated held-out log loss){}",
                    if name == "best.safetensors" {
                        "; this file is best.safetensors, its copy"
                    } else {
                        ""
                    }
                ),
                Some(other) => format!("no: `xfer train` recommended {other}"),
                None => "no head was recommended (the run had no held-out data)".into(),
            }
        }
        Err(_) if name == "best.safetensors" => {
            "best.safetensors is the copy `xfer train` makes of the recommended head (no metrics.json beside it to confirm)".into()
        }
        Err(_) => "unknown (no metrics.json of the run beside the bundle)".into(),
    };
    let validation = match (
        t.get("val_files").and_then(|v| v.as_array()),
        t.get("val_split").and_then(|v| v.as_f64()),
        t.get("cv_folds").and_then(|v| v.as_u64()),
    ) {
        (_, _, Some(k)) => format!("{k}-fold cross-validation"),
        (_, Some(s), _) => format!("a held-out split of {} %", fixed(100.0 * s, 0)),
        (Some(f), _, _) if !f.is_empty() => {
            format!(
                "--val {}",
                json_scalar(&serde_json::Value::Array(f.clone()))
            )
        }
        _ => "none".into(),
    };
    let rows = vec![
        (
            "head".to_string(),
            format!("{} — {}", meta.kind, meta.architecture.describe()),
        ),
        (
            "standardised features".into(),
            if meta.standardized { "yes" } else { "no" }.into(),
        ),
        (
            "temperature".into(),
            format!(
                "{} (probabilities are softmax(logits / T); 1 = not calibrated)",
                fixed(meta.temperature as f64, 4)
            ),
        ),
        ("recommended".into(), recommended),
        ("preset".into(), get("preset")),
        ("training files".into(), get("train_files")),
        ("validation".into(), validation),
        ("class weights".into(), get("class_weight")),
        ("calibrated".into(), get("calibrated")),
        ("seed".into(), get("seed")),
        (
            "bundle".into(),
            format!(
                "format {} version {}, written by xfer {}",
                meta.format, meta.format_version, meta.xfer_version
            ),
        ),
    ];
    kv_table(h, &rows);
    h.push_str(
        "<h3>Backbones (features concatenated in this order)</h3>\n<div class=\"wrap\"><table>\n\
                <tr><th class=\"l\">backbone</th><th>features</th><th class=\"l\">model sha256</th>\
                <th class=\"l\">preprocessing</th><th class=\"l\">image decoding</th></tr>\n",
    );
    for b in &meta.backbones {
        let sha = if b.model_sha256.is_empty() {
            "—".to_string()
        } else {
            format!(
                "<code title=\"{}\">{}…</code>",
                escape(&b.model_sha256),
                escape(&b.model_sha256.chars().take(12).collect::<String>())
            )
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"num\">{}</td><td class=\"l\">{sha}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            escape(&b.name),
            b.n_features,
            escape(&recipe_text(&b.preprocess)),
            escape(if b.decode.is_empty() { "—" } else { &b.decode })
        );
    }
    h.push_str("</table></div>\n");
    let mut all = Vec::new();
    flatten("", t, &mut all);
    if !all.is_empty() {
        h.push_str("<details><summary>Every training setting recorded in the bundle</summary>\n");
        kv_table(h, &all);
        h.push_str("</details>\n");
    }
    let mut scores = Vec::new();
    flatten("", &meta.metrics, &mut scores);
    if !scores.is_empty() {
        h.push_str("<details><summary>Scores recorded at training</summary>\n");
        kv_table(h, &scores);
        h.push_str("</details>\n");
    }
    h.push_str("</section>\n");
}

fn learning_curves(h: &mut String, page: &Page) {
    h.push_str("<section id=\"learning-curves\">\n<h2>Learning curves of the training run</h2>\n");
    match &page.run {
        Err(note) => {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(note));
        }
        Ok(run) => {
            let heads = &run.metrics.heads;
            let this = &heads[run.this];
            let _ = writeln!(
                h,
                "<p class=\"sub\">From <code>{}</code> (this bundle is its {} head).</p>",
                escape(&run.file.display().to_string()),
                this.kind
            );
            match heads
                .iter()
                .find(|r| r.kind == HeadKind::Mlp && !r.history.is_empty())
            {
                Some(m) => {
                    let baseline = heads
                        .iter()
                        .find(|r| r.kind == HeadKind::Logistic)
                        .and_then(|r| r.validation.as_ref())
                        .map(|e| (e.log_loss, e.accuracy));
                    if this.kind != HeadKind::Mlp {
                        h.push_str(
                            "<p class=\"sub\">The curves are the run's MLP; this logistic head's \
                                    held-out scores are the dashed lines.</p>\n",
                        );
                    }
                    h.push_str(&learning_curve_svg(
                        &m.history,
                        &format!("MLP: {}", m.description),
                        m.best_epoch,
                        baseline,
                    ));
                }
                None => h.push_str(
                    "<p class=\"note\">The run trained no MLP, so there are no epochs to plot \
                     (the logistic head is fitted in one go).</p>\n",
                ),
            }
            let _ = writeln!(
                h,
                "<h3>The run's heads</h3>\n<pre>{}</pre>",
                escape(&comparison_table(heads))
            );
        }
    }
    h.push_str("</section>\n");
}

fn caption(page: &Page, e: &Example) -> String {
    let names = &page.input.evaluation.class_names;
    let p = |v: f32| fixed(v as f64, 3);
    let path = page
        .input
        .paths
        .map(|p| p[e.row].clone())
        .unwrap_or_else(|| format!("row {}", e.row));
    let body = if e.predicted != e.label {
        format!(
            "true <b>{}</b> (p&nbsp;{})<br>predicted <b>{}</b> (p&nbsp;{})",
            escape(&names[e.label]),
            p(e.p_true),
            escape(&names[e.predicted]),
            p(e.p_predicted)
        )
    } else {
        let runner = e.runner_up.map_or(String::new(), |(k, q)| {
            format!("<br>next: {} (p&nbsp;{})", escape(&names[k]), p(q))
        });
        format!(
            "<b>{}</b> (p&nbsp;{}){runner}",
            escape(&names[e.label]),
            p(e.p_predicted)
        )
    };
    format!(
        "<figcaption>{body}<br><span class=\"path\">{}</span></figcaption>",
        escape(&path)
    )
}

fn gallery(h: &mut String, page: &Page, examples: &[Example], thumbs: &[Thumb]) {
    h.push_str("<div class=\"gallery\">\n");
    for (i, e) in examples.iter().enumerate() {
        h.push_str("<figure>");
        match thumbs.get(i) {
            Some(Ok(uri)) => {
                let alt = page
                    .input
                    .paths
                    .map(|p| p[e.row].as_str())
                    .unwrap_or_default();
                let _ = write!(h, "<img src=\"{uri}\" alt=\"{}\">", escape(alt));
            }
            Some(Err(reason)) => {
                let _ = write!(h, "<div class=\"noimg\">{}</div>", escape(reason));
            }
            None => {}
        }
        h.push_str(&caption(page, e));
        h.push_str("</figure>\n");
    }
    h.push_str("</div>\n");
}

fn mistakes(h: &mut String, page: &Page) {
    h.push_str("<section id=\"mistakes\">\n<h2>The top mistakes</h2>\n");
    match &page.images {
        Err(note) => {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(note));
        }
        Ok(root) => {
            let failed = page.thumbs.iter().filter(|t| t.is_err()).count();
            let _ = writeln!(
                h,
                "<p class=\"sub\">Images from <code>{}</code>, shrunk to at most {} px.</p>",
                escape(&root.display().to_string()),
                thumbs::MAX_SIDE
            );
            if failed > 0 {
                let _ = writeln!(
                    h,
                    "<p class=\"note\">{failed} of {} images could not be read; the reason is shown in place of each.</p>",
                    page.thumbs.len()
                );
            }
        }
    }
    let (wrong, n_wrong) = &page.mistakes;
    let (right, n_right) = &page.hits;
    let shown = |k: usize, n: usize| {
        if k < n {
            format!("the {k} of {n}")
        } else {
            format!("all {n}")
        }
    };
    let _ = writeln!(
        h,
        "<h3>Most confidently wrong ({}, most confident first)</h3>",
        shown(wrong.len(), *n_wrong)
    );
    let (t_wrong, t_right) = if page.thumbs.is_empty() {
        (&[][..], &[][..])
    } else {
        page.thumbs.split_at(wrong.len())
    };
    if wrong.is_empty() {
        h.push_str("<p>No mistakes: every row is predicted right.</p>\n");
    } else {
        gallery(h, page, wrong, t_wrong);
    }
    let _ = writeln!(
        h,
        "<h3>Least confident right answers ({}, least confident first)</h3>",
        shown(right.len(), *n_right)
    );
    if right.is_empty() {
        h.push_str("<p>No right answers.</p>\n");
    } else {
        gallery(h, page, right, t_right);
    }
    let _ = writeln!(
        h,
        "<p class=\"sub\">p: the head's probability (with its temperature, as <code>xfer predict</code> gives it). \
         Captions say <i>true</i> and <i>predicted</i> in words: colour is never the only cue.</p>\n</section>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn mistakes_most_confident_first_hits_least_confident_first() {
        let p = array![
            [0.9f32, 0.1],
            [0.2, 0.8],
            [0.6, 0.4],
            [0.45, 0.55],
            [0.7, 0.3]
        ];
        let y = [1, 1, 1, 0, 0];
        let (wrong, n) = confident_mistakes(p.view(), &y, 24);
        assert_eq!(n, 3);
        let rows: Vec<usize> = wrong.iter().map(|e| e.row).collect();
        assert_eq!(rows, [0, 2, 3]);
        assert_eq!(wrong[0].predicted, 0);
        assert_eq!(wrong[0].p_true, 0.1);
        assert_eq!(wrong[0].runner_up, Some((1, 0.1)));
        let (right, n) = unsure_hits(p.view(), &y, 1);
        assert_eq!((right.len(), n), (1, 2));
        assert_eq!(right[0].row, 4);
    }

    #[test]
    fn json_numbers_read_as_written() {
        let v: serde_json::Value = serde_json::json!({"lr": 0.0010000000474974513f64, "n": 3, "x": [1, 2], "s": "a<b", "z": null});
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        let m: std::collections::HashMap<_, _> = out.into_iter().collect();
        assert_eq!(m["lr"], "0.001");
        assert_eq!(m["n"], "3");
        assert_eq!(m["x"], "[1, 2]");
        assert_eq!(m["s"], "a<b");
        assert_eq!(m["z"], "—");
    }
}
