//! `xfer predict` and the slim `xfer-predict` binary (which includes this file):
//! classify images with a trained bundle and its backbone(s); print a table,
//! write a CSV of probabilities and/or a Kaggle submission.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use xfer::images::dataset::Inputs;
use xfer::models::runtime::Runtime;
use xfer::models::zoo::{Weights, Zoo};
use xfer::ship::predict::{self, output, CheckedBundle, Predictions, Predictor, PredictorOptions};
use xfer::util::clobber::{refuse_inputs, Input};
use xfer::util::lock::OutputLock;

use super::common::{check_output, DecodeArgs, DeviceArgs, EXIT_SKIPPED};
use super::progress::Progress;

/// Classify images with a trained head (a bundle from `xfer train`) and the
/// backbone(s) it was trained on.
///
/// The bundle records each backbone's sha256 and preprocessing; the backbones
/// are found in the zoo (--zoo) and must match. Bad files are skipped and
/// listed; the exit status is 3 when any was skipped.
#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer predict --bundle runs/a/best.safetensors photo.jpg folder/ --top-k 3
  xfer predict --bundle runs/a/best.safetensors test/ --csv predictions.csv --quiet
  xfer predict --bundle runs/a/best.safetensors test1/ --kaggle submission.csv --positive dog
  xfer predict --bundle runs/a/best.safetensors photos/ --json > predictions.json")]
pub struct PredictArgs {
    /// The bundle written by `xfer train` (mlp.safetensors or logistic.safetensors).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// Image files, or folders searched recursively for images.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// Show the K most likely classes of each image.
    #[arg(long, default_value_t = 1, value_name = "K")]
    top_k: usize,
    /// Write path, predicted class and one probability column per class to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    csv: Option<PathBuf>,
    /// Write a Kaggle submission (`id,label`: the id from the file name, the
    /// probability of the --positive class) to this file.
    #[arg(long, value_name = "FILE.csv")]
    kaggle: Option<PathBuf>,
    /// The class whose probability is the Kaggle `label` (default: the second
    /// of two classes in label order, e.g. `dog` of cat/dog).
    #[arg(long, value_name = "CLASS")]
    positive: Option<String>,
    /// Kaggle: clip the label into [CLIP, 1 − CLIP] (log loss punishes confident
    /// mistakes without bound; 0 turns clipping off).
    #[arg(long, default_value_t = 0.005, value_name = "CLIP")]
    clip: f64,
    /// Replace existing --csv / --kaggle files.
    #[arg(long)]
    overwrite: bool,
    /// Print neither the table nor progress (use with --csv or --kaggle on large
    /// folders); warnings and errors still go to stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object on stdout at the end instead of the table: the
    /// bundle, counts, seconds, images/s, provider(s), outputs written, skipped
    /// files, and each image's predicted class and probability.
    #[arg(long)]
    json: bool,
    /// Print where the time went (per phase), on stderr.
    #[arg(long, short = 'v', visible_alias = "verbose")]
    timings: bool,
    /// Images per backbone run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    decode: DecodeArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Parse, then validate: everything that can be checked before a file is read.
fn validate(args: &PredictArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if !(0.0..0.5).contains(&args.clip) {
        bail!(
            "--clip must be in [0, 0.5) (e.g. 0.005 for [0.005, 0.995]), got {}",
            args.clip
        );
    }
    args.decode.validate()?;
    args.device.validate()?;
    if args.positive.is_some() && args.kaggle.is_none() {
        bail!("--positive chooses the class of a Kaggle submission: pass --kaggle FILE too");
    }
    if !args.bundle.is_file() {
        bail!(
            "bundle {} does not exist; train one with `xfer train` (it writes mlp.safetensors and logistic.safetensors)",
            args.bundle.display()
        );
    }
    for p in &args.paths {
        if !p.exists() {
            bail!(
                "{} does not exist; pass image files or folders of images",
                p.display()
            );
        }
    }
    let outputs: Vec<(&str, &PathBuf)> = [("--csv", &args.csv), ("--kaggle", &args.kaggle)]
        .into_iter()
        .filter_map(|(flag, p)| p.as_ref().map(|p| (flag, p)))
        .collect();
    if let [(_, a), (_, b)] = outputs[..] {
        if a == b {
            bail!(
                "--csv and --kaggle name the same file {}; give two files",
                a.display()
            );
        }
    }
    for (flag, p) in outputs {
        check_output(flag, p, args.overwrite)?;
    }
    Ok(())
}

/// The class whose probability goes into a Kaggle submission.
fn positive_class(args: &PredictArgs, names: &[String]) -> Result<Option<usize>> {
    if args.kaggle.is_none() {
        return Ok(None);
    }
    match &args.positive {
        Some(p) => match names.iter().position(|n| n == p) {
            Some(k) => Ok(Some(k)),
            None => bail!(
                "--positive {p} is not a class of the bundle; its classes are {}",
                names.join(", ")
            ),
        },
        None if names.len() == 2 => Ok(Some(1)),
        None => bail!(
            "the bundle has {} classes ({}); a Kaggle submission gives the probability of one: pass --positive CLASS",
            names.len(),
            names.join(", ")
        ),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn predict(args: &PredictArgs, ort_lib: Option<&Path>, zoo: Option<&Path>) -> Result<i32> {
    let t0 = Instant::now();
    validate(args)?;
    let checked = Predictor::check(&args.bundle, &Zoo::locate(zoo), &args.decode.options())?;
    let names = checked.class_names().to_vec();
    let positive = positive_class(args, &names)?;
    let inputs = collect(args)?;
    let _locks = guard_outputs(args, &checked, &inputs.images)?;
    let t_checked = t0.elapsed();

    let runtime = Runtime::init(ort_lib)?;
    let t_runtime = t0.elapsed();
    let opts = PredictorOptions {
        // --ort-spin auto is off for prediction: measured slower on small files
        // too (tools/bench/compare_builds.sh --predict), unlike extraction.
        session: args.device.session_options(args.batch),
        pipeline: args.decode.pipeline(args.batch),
    };
    let mut predictor = checked
        .load(&runtime, opts)
        .with_context(|| format!("loading the backbone(s) of {}", args.bundle.display()))?;
    let t_loaded = t0.elapsed();
    announce(args, &predictor, &inputs);
    let n = inputs.images.len();
    let progress = Progress::new("predict", "images", n as u64, args.quiet || n < 64);
    let preds = predictor.predict(&inputs.images, &mut |p| {
        progress.set(p.done as u64, p.skipped)
    })?;
    progress.finish();
    let t_predicted = t0.elapsed();

    write_outputs(args, &preds, &names, positive)?;
    print_skipped(&preds, n);
    if args.timings {
        let phases = [t_checked, t_runtime, t_loaded, t_predicted, t0.elapsed()];
        print_timings(&preds, phases);
    }
    if args.json {
        print_json(args, &predictor, &preds, n, t0.elapsed().as_secs_f64())?;
    }
    Ok(if preds.skipped.is_empty() {
        0
    } else {
        EXIT_SKIPPED
    })
}

/// The images named on the command line (folders searched), at least one.
fn collect(args: &PredictArgs) -> Result<Inputs> {
    let inputs = predict::collect_inputs(&args.paths)?;
    if inputs.images.is_empty() {
        bail!(
            "no images found in {} (looked for {}); pass image files or folders of images",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            xfer::images::dataset::IMAGE_EXTENSIONS.join(", ")
        );
    }
    Ok(inputs)
}

/// Refuses an output that is one of the inputs (the bundle, a backbone, an
/// image), and locks the outputs now, not after the work.
fn guard_outputs(
    args: &PredictArgs,
    checked: &CheckedBundle,
    images: &[PathBuf],
) -> Result<Vec<OutputLock>> {
    let mut own = checked.inputs();
    own.extend(images.iter().map(|p| Input::new("an input image", p)));
    for (flag, p) in [("--csv", &args.csv), ("--kaggle", &args.kaggle)] {
        if let Some(p) = p {
            refuse_inputs(flag, p, &own)?;
        }
    }
    Ok([&args.csv, &args.kaggle]
        .into_iter()
        .flatten()
        .map(|p| OutputLock::acquire(p))
        .collect::<xfer::Result<Vec<_>>>()?)
}

/// Warnings about the loaded backbones, and what is about to run.
fn announce(args: &PredictArgs, predictor: &Predictor, inputs: &Inputs) {
    for (b, r) in predictor.backbones().zip(predictor.resolved()) {
        for line in super::common::backbone_warnings(args.device.device, b) {
            eprintln!("{line}");
        }
        if r.manifest.weights == Weights::Random {
            eprintln!(
                "warning: {} has RANDOM weights (structure and speed tests only): its predictions mean nothing",
                r.manifest.name
            );
        }
    }
    for note in predictor.precision_notes() {
        eprintln!("warning: {note}");
    }
    let n = inputs.images.len();
    if n > 1 || args.timings {
        eprintln!(
            "predicting {n} image{} with the {} head of {} on {} ({})",
            if n == 1 { "" } else { "s" },
            predictor.bundle.meta.kind,
            args.bundle.display(),
            described(predictor).join(" + "),
            provider(predictor).unwrap_or("?")
        );
    }
    for line in xfer::images::dataset::describe_ignored(&inputs.ignored, 5) {
        eprintln!("{line}");
    }
}

fn described(predictor: &Predictor) -> Vec<String> {
    predictor.resolved().iter().map(|r| r.describe()).collect()
}

fn provider(predictor: &Predictor) -> Option<&str> {
    predictor.backbones().next().map(|b| b.provider.as_str())
}

/// The table on stdout, the CSV and the Kaggle submission.
fn write_outputs(
    args: &PredictArgs,
    preds: &Predictions,
    names: &[String],
    positive: Option<usize>,
) -> Result<()> {
    let rows: Vec<String> = preds
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if !args.quiet && !args.json {
        output::write_table(
            &mut std::io::stdout().lock(),
            &rows,
            preds.probs.view(),
            names,
            args.top_k.min(names.len()),
        )?;
    }
    if let Some(path) = &args.csv {
        xfer::util::atomic::write_atomic(path, |w| {
            output::write_csv(w, &rows, preds.probs.view(), names)
        })?;
        eprintln!("wrote {} rows to {}", rows.len(), path.display());
    }
    if let (Some(path), Some(k)) = (&args.kaggle, positive) {
        write_kaggle(args, path, preds, &names[k], k)?;
    }
    Ok(())
}

fn write_kaggle(
    args: &PredictArgs,
    path: &Path,
    preds: &Predictions,
    positive: &str,
    k: usize,
) -> Result<()> {
    let unreadable: Vec<PathBuf> = preds.skipped.iter().map(|(p, _)| p.clone()).collect();
    let rows = output::kaggle_rows(&preds.paths, preds.probs.view(), k, args.clip, &unreadable)?;
    xfer::util::atomic::write_atomic(path, |w| output::write_kaggle(w, &rows))?;
    eprintln!(
        "wrote a Kaggle submission of {} rows to {} (label = P({positive}){})",
        rows.len(),
        path.display(),
        if args.clip > 0.0 {
            format!(", clipped to [{}, {}]", args.clip, 1.0 - args.clip)
        } else {
            String::new()
        }
    );
    if !unreadable.is_empty() {
        eprintln!(
            "warning: {} unreadable image(s), listed below, have the label {} in the submission (a row is needed for every id); fix or replace them and predict again",
            unreadable.len(),
            output::KAGGLE_UNREADABLE
        );
    }
    Ok(())
}

fn print_json(
    args: &PredictArgs,
    predictor: &Predictor,
    preds: &Predictions,
    n: usize,
    seconds: f64,
) -> Result<()> {
    let names = predictor.class_names();
    let predictions: Vec<serde_json::Value> = preds
        .paths
        .iter()
        .zip(preds.probs.rows())
        .map(|(p, row)| {
            let (k, prob) = xfer::train::head::argmax(row);
            serde_json::json!({"path": p, "class": names[k], "probability": prob})
        })
        .collect();
    let out = serde_json::json!({
        "command": "predict",
        "bundle": args.bundle,
        "head": predictor.bundle.meta.kind,
        "backbones": described(predictor),
        "provider": provider(predictor),
        "images": n,
        "predicted": preds.paths.len(),
        "skipped": preds.skipped.iter().map(|(p, r)| serde_json::json!({"path": p, "reason": r})).collect::<Vec<_>>(),
        "csv": args.csv,
        "kaggle": args.kaggle,
        "seconds": seconds,
        "images_per_second": if seconds > 0.0 { n as f64 / seconds } else { 0.0 },
        "predictions": predictions,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_skipped(preds: &Predictions, n: usize) {
    if !preds.skipped.is_empty() {
        eprintln!(
            "skipped {} of {n} file{}:",
            preds.skipped.len(),
            if n == 1 { "" } else { "s" }
        );
        for (p, reason) in &preds.skipped {
            eprintln!("  {}: {reason}", p.display());
        }
    }
}

/// `--timings`: `at` holds the times since the start at which the checks,
/// ONNX Runtime, the backbone load, the prediction and the outputs ended.
fn print_timings(preds: &Predictions, at: [Duration; 5]) {
    let [checked, runtime, loaded, predicted, total] = at;
    let t = &preds.timings;
    eprintln!(
        "timings: checks (bundle, zoo, files) {}, ONNX Runtime {}, backbone load (sha256 + session) {}, \
         predict {} (decode {}, backbone {}, head {}), output {}, total {}",
        ms(checked),
        ms(runtime - checked),
        ms(loaded - runtime),
        ms(predicted - loaded),
        ms(t.decode),
        ms(t.backbones),
        ms(t.sink),
        ms(total - predicted),
        ms(total)
    );
}
