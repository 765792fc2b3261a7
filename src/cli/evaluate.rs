//! `xfer evaluate`: score a trained head (a bundle) on labelled feature files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use xfer::eval::metrics;
use xfer::eval::report::html::{evaluation_page, PageInput};
use xfer::features;
use xfer::ship::bundle::{check_backbones, Bundle};
use xfer::util::clobber::{refuse_inputs, Input};

use super::common::{check_output, report_page, write_report_page};
use super::Cli;

/// Score a trained head on labelled features: accuracy, log loss, confusion matrix,
/// per-class precision and recall; --report writes an HTML page with the images it gets wrong.
#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer evaluate --bundle runs/a/best.safetensors --features test.h5
  xfer evaluate --bundle runs/a/best.safetensors --features test_a.h5 --features test_b.h5 --json
  xfer evaluate --bundle runs/a/best.safetensors --features valid.h5 --clip 0.005 --csv scored.csv")]
pub struct EvaluateArgs {
    /// The bundle written by `xfer train` (mlp.safetensors or logistic.safetensors).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// Feature file; repeat for several backbones, in the training order.
    #[arg(long = "features", value_name = "FILE.h5", required = true)]
    features: Vec<PathBuf>,
    /// Clip probabilities into [CLIP, 1 − CLIP] for the log loss, as Kaggle
    /// submissions often are (e.g. 0.005).
    #[arg(long, value_name = "CLIP")]
    clip: Option<f64>,
    /// Print the scores as JSON.
    #[arg(long)]
    json: bool,
    /// Also write each row's predicted class and class probabilities to this CSV
    /// file, in the format of `xfer predict --csv` (paths relative to the dataset root).
    #[arg(long, value_name = "FILE.csv")]
    csv: Option<PathBuf>,
    /// Also write an HTML report, DIR/report.html (created with DIR): scores,
    /// provenance, confusion matrix, reliability diagram, the run's learning
    /// curves, and thumbnails of the most confident mistakes. One self-contained file.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// For --report: the folder the images are in now, when they moved since
    /// extraction (default: the feature file's dataset_root).
    #[arg(long, value_name = "DIR", requires = "report")]
    image_root: Option<PathBuf>,
    /// Replace an existing --csv file or --report page.
    #[arg(long)]
    overwrite: bool,
}

pub fn evaluate(_cli: &Cli, args: &EvaluateArgs) -> Result<i32> {
    let page = check(args)?;
    let bundle = Bundle::load(&args.bundle)?;
    let set = features::load(&args.features).context("loading the features")?;
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
    for note in check_backbones(&bundle.meta.backbones, &set.backbones, "the features")? {
        eprintln!("warning: {note}");
    }
    let names = &bundle.meta.class_names;
    features::check_class_names(names, set.class_names.as_deref(), "the features")?;
    let rn = |r: usize| set.row_name(r);
    let what = format!(
        "features ({})",
        args.features
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let labels = features::eval_labels(set.labels.view(), names.len(), &what, &rn)?;
    let probs = bundle.predict_proba(set.data.view());
    let eval = metrics::evaluate(probs.view(), &labels, names, args.clip);
    if let Some(path) = &args.csv {
        let rows: Vec<String> = match &set.paths {
            Some(p) => p.clone(),
            None => (0..set.n_samples()).map(|r| format!("row {r}")).collect(),
        };
        xfer::util::atomic::write_atomic(path, |w| {
            xfer::ship::predict::output::write_csv(w, &rows, probs.view(), names)
        })?;
    }
    if let (Some(page), Some(dir)) = (&page, &args.report) {
        let html = evaluation_page(&PageInput {
            bundle_path: &args.bundle,
            bundle: &bundle.meta,
            feature_files: &args.features,
            paths: set.paths.as_deref(),
            dataset_root: set.dataset_root.as_deref(),
            image_root: args.image_root.as_deref(),
            evaluation: &eval,
            probs: probs.view(),
            labels: &labels,
        });
        write_report_page(dir, page, &html)?;
    }
    print_result(args, &bundle, &set, &eval)?;
    Ok(0)
}

/// The flags and outputs, before a file is read: the report page's path, if any.
fn check(args: &EvaluateArgs) -> Result<Option<PathBuf>> {
    if let Some(c) = args.clip {
        if !(c > 0.0 && c < 0.5) {
            anyhow::bail!("--clip must be between 0 and 0.5 (e.g. 0.005), got {c}");
        }
    }
    for f in &args.features {
        if !f.exists() {
            anyhow::bail!(
                "{} does not exist; create it with `xfer extract`",
                f.display()
            );
        }
    }
    if let Some(csv) = &args.csv {
        check_output("--csv", csv, args.overwrite)?;
    }
    let page = match &args.report {
        Some(dir) => Some(report_page(dir, "report.html", args.overwrite)?),
        None => None,
    };
    let mut inputs = vec![Input::new("the bundle", &args.bundle)];
    inputs.extend(
        args.features
            .iter()
            .map(|f| Input::new("a feature file", f)),
    );
    if let Some(csv) = &args.csv {
        refuse_inputs("--csv", csv, &inputs)?;
    }
    if let Some(page) = &page {
        refuse_inputs("--report", page, &inputs)?;
    }
    Ok(page)
}

fn print_result(
    args: &EvaluateArgs,
    bundle: &Bundle,
    set: &features::FeatureSet,
    eval: &metrics::Evaluation,
) -> Result<()> {
    if args.json {
        let out = serde_json::json!({
            "bundle": args.bundle,
            "head": bundle.meta.kind,
            "features": args.features,
            "evaluation": eval,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} head ({}) on {}",
            bundle.meta.kind,
            bundle.meta.architecture.describe(),
            set.describe_backbones()
        );
        print!("{}", eval.to_text());
    }
    Ok(())
}
