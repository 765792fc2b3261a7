//! `xfer fit`: porcelain over the plumbing commands, git-style. It builds the
//! command lines of `xfer extract`, `xfer train`, `xfer evaluate` and `xfer
//! audit`, prints each (shell-quoted) and runs it in this process through the
//! same parser and dispatch as `main`, so every printed line is exactly what
//! ran and can be run again by hand. What no plumbing command does is here or
//! in the library: the recorded test split, the feature cache keyed by image
//! content ([`xfer::features::cache`]), the choice among backbones
//! (`--model auto`), skipping steps whose outputs are up to date, and the
//! summary with the uncertainty of the test scores.
//!
//! In the order a fit runs: [`split`] (the photos and the recorded test
//! split), [`features`] (the cache, per split and backbone), [`auto`]
//! (`--model auto`), [`steps`] (train, evaluate, audit), [`summary`]; each
//! plumbing command goes through the [`runner`].

mod auto;
mod features;
mod runner;
mod split;
mod steps;
mod summary;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use xfer::util::lock::OutputLock;

use super::common::DeviceArgs;
use super::train::HeadArg;
use super::{Cli, EXIT_SKIPPED};
use features::Features;
use runner::Runner;

/// From a folder of labelled photos to a checked classifier in one command.
///
/// Holds out a stratified, seeded test split (recorded by path in OUT/split.json, so
/// every later run holds out the same photos), extracts features through a cache keyed
/// by each image's content (a second run, or a run on the folder with a few photos
/// more, extracts only what is new), chooses the backbone (`--model auto`: the zoo's
/// real-weight backbones and their concatenation, by 5-fold cross-validated log loss
/// of the logistic head on the training split), trains the default heads with
/// cross-validation and calibration, evaluates the recommended head on the test split
/// with an HTML report, and audits the data. Each step is a plumbing command, printed
/// before it runs; a step whose outputs are up to date is skipped, so running the
/// same command again after an interruption continues where it stopped.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["data", "list"]))]
#[command(after_long_help = "Examples:
  xfer fit data/stamps --out runs/stamps
  xfer fit photos/ --out runs/p --model efficientnet_lite0 --model resnet50
  xfer fit photos/train --test photos/test --out runs/p --json
  xfer fit --list labelled.csv --out runs/l --test-split 0.25 --seed 1
Then: xfer predict --bundle runs/stamps/best.safetensors new_photos/")]
pub struct FitArgs {
    /// Dataset folder: DATA/<class>/*.jpg (ImageFolder) or DATA/cat.0.jpg (Kaggle flat).
    #[arg(value_name = "DATA")]
    data: Option<PathBuf>,
    /// A labelled list instead of a folder (*.csv or *.tsv with path,label records).
    #[arg(long, value_name = "FILE")]
    list: Option<PathBuf>,
    /// The run folder: split, lists, features, heads, report.
    #[arg(long, value_name = "RUN")]
    out: PathBuf,
    /// Backbone(s): `auto` (the zoo's real-weight backbones that are present,
    /// and their concatenation, chosen by cross-validation), or names from
    /// `xfer models`; several are concatenated.
    #[arg(long = "model", value_name = "M", default_value = "auto")]
    models: Vec<String>,
    /// A test folder with the same classes, instead of a split of DATA.
    #[arg(long, value_name = "DIR", conflicts_with = "test_split")]
    test: Option<PathBuf>,
    /// Fraction of each class held out for the test (stratified, seeded). Default 0.2.
    #[arg(long, value_name = "FRACTION")]
    test_split: Option<f64>,
    /// Also extract K augmented views per training image (`xfer extract --views`).
    #[arg(long, value_name = "K")]
    views: Option<usize>,
    /// Which head(s) `xfer train` fits.
    #[arg(long, value_enum, default_value_t = HeadArg::Both)]
    head: HeadArg,
    /// Seed of the test split, the views and training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The feature cache folder (default: cache/features in xfer's data
    /// folder, $XFER_HOME). Deleting it is always safe.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Print one JSON object on stdout at the end (the steps' own output goes to stderr).
    #[arg(long)]
    json: bool,
    /// Fewer progress lines (passes --quiet to extract and train).
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

const DEFAULT_TEST_FRACTION: f64 = 0.2;
/// Folds of the screening runs of `--model auto`.
const AUTO_FOLDS: usize = 5;

fn validate(args: &FitArgs) -> Result<()> {
    args.device.validate()?;
    if let Some(f) = args.test_split {
        if !(f > 0.0 && f < 1.0) {
            bail!("--test-split must be between 0 and 1 (e.g. 0.2), got {f}");
        }
    }
    if args.models.len() > 1 && args.models.iter().any(|m| m == "auto") {
        bail!("--model auto chooses among the zoo's backbones by itself; pass it alone, or name the backbones");
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!(
            "--out {} exists and is not a folder; give a folder for the run",
            args.out.display()
        );
    }
    Ok(())
}

/// `s` as a command-line argument.
fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Creates the run folder and its sub-folders, and locks it: a second fit
/// into the same folder is refused while this one runs.
fn open_run(run: &Path) -> Result<OutputLock> {
    for d in ["", "lists", "features", "report", ".fit"] {
        let p = run.join(d);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    Ok(OutputLock::acquire(&run.join("fit"))?)
}

pub fn fit(cli: &Cli, args: &FitArgs) -> Result<i32> {
    validate(args)?;
    let start = std::time::Instant::now();
    let _lock = open_run(&args.out)?;
    let mut runner = Runner::new(cli, args.json, &args.out);
    // The data and the split.
    let (ds, data_id) = split::open_data(args)?;
    let lists = split::write_lists(args, &ds, &data_id, &args.out)?;
    // Content hashes (the cache's keys), then the backbone(s) and their features.
    let (train, test, hashing) = features::hash_contents(args, lists)?;
    let mut features = Features::new(cli, args, &hashing.root)?;
    let (chosen, selection) = auto::choose(args, &mut features, &mut runner, &train, &test)?;
    let (train_files, test_files) = features.prepare_all(&mut runner, &chosen, &train, &test)?;
    // The heads, the test split's scores and report, the audit.
    let out = steps::run(args, &mut runner, &train_files, &test_files)?;
    let fitted = summary::Fitted {
        data_id: &data_id,
        train: &train.ds,
        test: &test.ds,
        chosen: &chosen,
        selection: selection.as_deref(),
        hashing: &hashing,
        used: &features.used,
        test_files: &test_files,
        out: &out,
        commands: &runner.commands,
        start,
    };
    summary::finish(args, &fitted)?;
    Ok(if runner.skipped { EXIT_SKIPPED } else { 0 })
}
