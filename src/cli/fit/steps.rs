//! The steps after the features: the heads (`xfer train`), the evaluation
//! on the test split (`xfer evaluate --report`) and the audit (`xfer audit`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use xfer::train::folder::RunFolder;

use super::runner::{each, Runner};
use super::{s, FitArgs};
use crate::cli::train::HeadArg;

/// The files the steps wrote.
pub(super) struct Outputs {
    pub bundle: PathBuf,
    pub metrics: PathBuf,
    pub page: PathBuf,
    pub audit_page: PathBuf,
    pub predictions: PathBuf,
}

/// Trains, evaluates and audits on the feature files of both splits.
pub(super) fn run(
    args: &FitArgs,
    runner: &mut Runner,
    train_files: &[PathBuf],
    test_files: &[PathBuf],
) -> Result<Outputs> {
    let run = RunFolder::new(&args.out);
    let report = args.out.join("report");
    let out = Outputs {
        bundle: run.file(RunFolder::BEST),
        metrics: run.file(RunFolder::METRICS),
        page: report.join("report.html"),
        audit_page: report.join("audit.html"),
        predictions: report.join("test_predictions.csv"),
    };
    train(args, runner, train_files, &out)?;
    evaluate(runner, test_files, &report, &out)?;
    audit(args, runner, train_files, test_files, &report, &out)?;
    Ok(out)
}

/// The heads: `xfer train` into OUT.
fn train(
    args: &FitArgs,
    runner: &mut Runner,
    train_files: &[PathBuf],
    out: &Outputs,
) -> Result<()> {
    let inputs: Vec<&Path> = train_files.iter().map(PathBuf::as_path).collect();
    let mut a = each("--train", &inputs);
    a.extend([
        "--out".into(),
        s(&args.out),
        "--seed".into(),
        args.seed.to_string(),
    ]);
    if args.head != HeadArg::Both {
        a.extend(["--head".into(), format!("{:?}", args.head).to_lowercase()]);
    }
    if args.quiet {
        a.push("--quiet".into());
    }
    let argv = runner.argv("train", a);
    runner.step(
        "train",
        argv,
        &inputs,
        &[out.metrics.clone(), out.bundle.clone()],
        &RunFolder::new(&args.out).existing(),
    )?;
    Ok(())
}

/// The test split: scores, report, per-photo predictions.
fn evaluate(
    runner: &mut Runner,
    test_files: &[PathBuf],
    report: &Path,
    out: &Outputs,
) -> Result<()> {
    let files: Vec<&Path> = test_files.iter().map(PathBuf::as_path).collect();
    let mut a = vec!["--bundle".to_string(), s(&out.bundle)];
    a.extend(each("--features", &files));
    a.extend([
        "--report".into(),
        s(report),
        "--csv".into(),
        s(&out.predictions),
    ]);
    let argv = runner.argv("evaluate", a);
    let mut inputs: Vec<&Path> = vec![out.bundle.as_path()];
    inputs.extend(files);
    let outputs = [out.page.clone(), out.predictions.clone()];
    runner.step("evaluate", argv, &inputs, &outputs, &[])?;
    Ok(())
}

/// The audit: label issues, duplicates, leakage between the splits.
fn audit(
    args: &FitArgs,
    runner: &mut Runner,
    train_files: &[PathBuf],
    test_files: &[PathBuf],
    report: &Path,
    out: &Outputs,
) -> Result<()> {
    let join = |v: &[PathBuf]| v.iter().map(|p| s(p)).collect::<Vec<_>>().join(",");
    let mut a = vec![
        "--features".to_string(),
        join(train_files),
        "--features".into(),
        join(test_files),
    ];
    let oof = RunFolder::new(&args.out).file(RunFolder::OUT_OF_FOLD);
    let mut inputs: Vec<&Path> = train_files
        .iter()
        .chain(test_files)
        .map(PathBuf::as_path)
        .collect();
    if oof.exists() {
        a.extend(["--run".into(), s(&args.out)]);
        inputs.push(&oof);
    }
    a.extend(["--report".into(), s(report)]);
    let argv = runner.argv("audit", a);
    let outputs = std::slice::from_ref(&out.audit_page);
    runner.step("audit", argv, &inputs, outputs, &[])?;
    Ok(())
}
