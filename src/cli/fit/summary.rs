//! The end of a fit: the test scores with their uncertainty, recorded in
//! the run's metrics.json (its `fit` entry) and printed, as a short summary
//! with the plumbing commands that ran, or as one JSON object (`--json`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use xfer::features::cache;
use xfer::images::dataset::Dataset;
use xfer::train::folder::RunFolder;
use xfer::util::format::fixed;
use xfer::util::shell;

use super::auto::Candidate;
use super::features::{CacheUse, Hashing};
use super::steps::Outputs;
use super::{s, FitArgs, AUTO_FOLDS};

/// What a fit did, for its summary.
pub(super) struct Fitted<'a> {
    pub data_id: &'a str,
    pub train: &'a Dataset,
    pub test: &'a Dataset,
    pub chosen: &'a [String],
    pub selection: Option<&'a [Candidate]>,
    pub hashing: &'a Hashing,
    pub used: &'a [CacheUse],
    pub test_files: &'a [PathBuf],
    pub out: &'a Outputs,
    pub commands: &'a [String],
    pub start: Instant,
}

/// The recommended head's scores on the test split.
struct TestScores {
    n: usize,
    accuracy: f64,
    /// The Wilson 95 % interval of the accuracy.
    wilson: (f64, f64),
    log_loss: f64,
    log_loss_se: f64,
}

fn test_scores(bundle: &Path, test_files: &[PathBuf]) -> Result<TestScores> {
    let b = xfer::ship::bundle::Bundle::load(bundle)?;
    let set = xfer::features::load(test_files)?;
    let names = &b.meta.class_names;
    let rn = |r: usize| set.row_name(r);
    let labels =
        xfer::features::eval_labels(set.labels.view(), names.len(), "the test features", &rn)?;
    let probs = b.predict_proba(set.data.view());
    let eval = xfer::eval::metrics::evaluate(probs.view(), &labels, names, None);
    let correct = (eval.accuracy * eval.n_samples as f64).round() as usize;
    let wilson = xfer::eval::metrics::wilson_interval(correct, eval.n_samples, 1.959964);
    let log_loss_se = xfer::eval::metrics::log_loss_standard_error(probs.view(), &labels);
    Ok(TestScores {
        n: eval.n_samples,
        accuracy: eval.accuracy,
        wilson,
        log_loss: eval.log_loss,
        log_loss_se,
    })
}

/// Records the summary in metrics.json and prints it.
pub(super) fn finish(args: &FitArgs, f: &Fitted) -> Result<()> {
    let scores = test_scores(&f.out.bundle, f.test_files)?;
    let file = &f.out.metrics;
    let mut metrics: Value =
        serde_json::from_slice(&std::fs::read(file).with_context(|| file.display().to_string())?)?;
    let recommended = metrics["recommended"].as_str().unwrap_or("").to_string();
    let cache_bytes = cache::disk_use(&f.hashing.root);
    let summary = summary_json(args, f, &scores, &recommended, cache_bytes);
    // Recorded in the run's metrics.json, beside what `xfer train` wrote.
    metrics["fit"] = summary.clone();
    let text = serde_json::to_string_pretty(&metrics)? + "\n";
    RunFolder::new(&args.out).write(RunFolder::METRICS, text.as_bytes())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(args, f, &scores, &recommended, cache_bytes);
    }
    Ok(())
}

fn summary_json(
    args: &FitArgs,
    f: &Fitted,
    t: &TestScores,
    recommended: &str,
    cache_bytes: u64,
) -> Value {
    let run = &args.out;
    json!({
        "data": f.data_id,
        "out": run,
        "split": {
            "file": run.join("split.json"),
            "train": f.train.items.len(),
            "test": f.test.items.len(),
            "classes": f.train.classes,
        },
        "models": f.chosen,
        "model_selection": f.selection.map(|c| json!({
            "criterion": format!("{AUTO_FOLDS}-fold cross-validated log loss of the logistic head (xfer train --head logistic --cv {AUTO_FOLDS}) on the training split"),
            "candidates": c,
        })),
        "cache": {
            "dir": f.hashing.root,
            "disk_bytes": cache_bytes,
            "content_hashes_read": f.hashing.hashed,
            "content_hashes_known": f.hashing.trusted,
            "features": f.used,
        },
        "test": {
            "n_samples": t.n,
            "accuracy": t.accuracy,
            "accuracy_wilson95": [t.wilson.0, t.wilson.1],
            "log_loss": t.log_loss,
            "log_loss_standard_error": t.log_loss_se,
        },
        "recommended": recommended,
        "bundle": f.out.bundle,
        "report": f.out.page,
        "audit": f.out.audit_page,
        "predictions": f.out.predictions,
        "commands": f.commands,
        "seconds": f.start.elapsed().as_secs_f64(),
    })
}

fn print_summary(args: &FitArgs, f: &Fitted, t: &TestScores, recommended: &str, cache_bytes: u64) {
    println!();
    println!(
        "fit: {} on {} training photos; test split of {} photos ({}):",
        f.chosen.join(" + "),
        f.train.items.len(),
        t.n,
        args.out.join("split.json").display()
    );
    println!(
        "  test accuracy {} % (95 % interval {}–{} %, Wilson), log loss {} ± {} (standard error)",
        fixed(100.0 * t.accuracy, 2),
        fixed(100.0 * t.wilson.0, 1),
        fixed(100.0 * t.wilson.1, 1),
        fixed(t.log_loss, 4),
        fixed(t.log_loss_se, 4)
    );
    println!(
        "  recommended head: {} (lowest held-out log loss), saved as {}",
        if recommended.is_empty() {
            "none"
        } else {
            recommended
        },
        f.out.bundle.display()
    );
    let (page, audit) = (f.out.page.display(), f.out.audit_page.display());
    println!("  report: {page} (audit: {audit})");
    let extracted: usize = f.used.iter().map(|u| u.extracted).sum();
    let cached: usize = f.used.iter().map(|u| u.cached).sum();
    println!(
        "  features: {cached} rows from the cache, {extracted} extracted ({} on disk in {})",
        human_bytes(cache_bytes),
        f.hashing.root.display()
    );
    println!(
        "  classify new photos: xfer predict --bundle {} PHOTOS…",
        shell::word(&s(&f.out.bundle))
    );
    println!("\nthe plumbing commands (run any again by hand):");
    for c in f.commands {
        println!("  {c}");
    }
    println!("done in {} s", fixed(f.start.elapsed().as_secs_f64(), 1));
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", fixed(b as f64 / (1u64 << 30) as f64, 2))
    } else if b >= 1 << 20 {
        format!("{} MiB", fixed(b as f64 / (1u64 << 20) as f64, 1))
    } else {
        format!("{} KiB", fixed(b as f64 / 1024.0, 1))
    }
}
