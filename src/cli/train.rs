//! `xfer train`: train the tutorial's MLP head and/or the logistic baseline on
//! feature files, print one line per epoch and a comparison table, and write
//! the bundle(s), metrics.json and a learning-curve plot to --out.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use xfer::eval::report::{self, HeadReport};
use xfer::train::data::TrainingData;
use xfer::train::folder::RunFolder;
use xfer::train::head::mlp::MlpConfig;
use xfer::train::plan::{Choices, Heads, LogisticPlan, MlpPlan, Optim, Plan, Preset};
use xfer::train::run::{self as fit, Trained};
use xfer::train::{EpochRecord, Progress, TrainConfig};
use xfer::util::clobber::{refuse_inputs, Input};
use xfer::util::format::fixed;

use super::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadArg {
    Mlp,
    Logistic,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimArg {
    /// torch.optim.SGD (with --momentum, --nesterov, --weight-decay).
    Sgd,
    /// torch.optim.Adam (betas 0.9, 0.999, eps 1e-8).
    Adam,
    /// torch.optim.AdamW (decoupled weight decay, default 1e-2).
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Robust defaults from 50 to 100,000 images (see below).
    Default,
    /// The tutorial's method-3 settings exactly.
    Tutorial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClassWeightArg {
    /// Every row counts the same.
    None,
    /// Weight each class by n / (n_classes · n_class), as scikit-learn's "balanced".
    Balanced,
}

/// Train a classifier head on feature files.
///
/// Trains the logistic baseline and the MLP head, calibrates both, and recommends the one
/// with the lower held-out log loss (saved again as best.safetensors).
///
/// --preset default (robust from 50 to 100,000 images): features standardised; the
/// MLP Dropout(0.5) → Linear(D, 1000) → ReLU → Dropout(0.5) → Linear(1000, C) trained with
/// AdamW (lr 1e-3, weight decay 1e-2), batches of 32, a budget of 1,000 optimiser steps
/// (10 to 300 epochs) under a cosine schedule, early stopping with the best weights kept;
/// the logistic baseline's C chosen by stratified 5-fold cross-validation on log loss over
/// logspace(-4, 4, 10), as scikit-learn's LogisticRegressionCV; temperature scaling on
/// held-out predictions. Without --val, --val-split or --cv it cross-validates (5 folds) up
/// to 10,000 rows and holds out 10 % above, and says so.
///
/// --preset tutorial: the tutorial's method-3 settings exactly: raw features, plain SGD
/// with lr 1e-3, batches of 64, 20 epochs, no early stopping, C = 1, no calibration.
///
/// Any flag below overrides the preset's value. Several --train files (one per backbone)
/// are concatenated along the features, rows matched by image path.
#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer train --train train.h5 --out runs/a                      # cross-validated, calibrated, best.safetensors
  xfer train --train train.h5 --val val.h5 --out runs/b --json  # one JSON object on stdout
  xfer train --train a.h5 --train b.h5 --cv 10 --out runs/c     # two backbones, 10-fold mean ± sd
  xfer train --train train.h5 --val val.h5 --preset tutorial --head mlp --out runs/tutorial")]
pub struct TrainArgs {
    /// Training feature file; repeat for several backbones (concatenated in this order).
    #[arg(long = "train", value_name = "FILE.h5", required = true)]
    train: Vec<PathBuf>,
    /// Validation feature file(s), one per backbone in the --train order.
    #[arg(long = "val", value_name = "FILE.h5", conflicts_with_all = ["val_split", "cv"])]
    val: Vec<PathBuf>,
    /// Hold out this fraction of the training rows (stratified, seeded) for validation.
    #[arg(long, value_name = "FRACTION", conflicts_with = "cv")]
    val_split: Option<f64>,
    /// Stratified K-fold cross-validation: mean ± sd of accuracy and log loss over the
    /// folds; settings, calibration and the recommended head from the held-out folds;
    /// the final heads fitted on all rows.
    #[arg(long, value_name = "K")]
    cv: Option<usize>,
    /// The defaults of every setting below.
    #[arg(long, value_enum, default_value_t = PresetArg::Default)]
    preset: PresetArg,
    /// Which head(s) to train.
    #[arg(long, value_enum, default_value_t = HeadArg::Both)]
    head: HeadArg,
    /// Output folder for the bundle(s), best.safetensors, metrics.json and learning_curve.svg.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace the results of an earlier run in --out.
    #[arg(long)]
    overwrite: bool,
    /// Epochs, exactly (default: from the step budget, at most 300; tutorial: 20).
    #[arg(long)]
    epochs: Option<usize>,
    /// Budget in optimiser steps; the epochs follow from it (default: 1000; tutorial: none).
    #[arg(long, value_name = "STEPS", conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Mini-batch size (default: 32; tutorial: 64).
    #[arg(long)]
    batch: Option<usize>,
    /// Optimiser (default: adamw; tutorial: plain sgd).
    #[arg(long, value_enum)]
    optim: Option<OptimArg>,
    /// Learning rate (default and tutorial: 1e-3).
    #[arg(long)]
    lr: Option<f32>,
    /// SGD momentum (PyTorch's default: 0).
    #[arg(long, default_value_t = 0.0)]
    momentum: f32,
    /// SGD: Nesterov momentum (needs --momentum > 0).
    #[arg(long)]
    nesterov: bool,
    /// L2 weight decay (default: 0 for SGD and Adam, 1e-2 for AdamW, as in PyTorch).
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, cosine, or step:EVERY:GAMMA (StepLR)
    /// (default: cosine; tutorial: constant).
    #[arg(long, value_name = "SCHEDULE")]
    lr_schedule: Option<String>,
    /// Stop when the validation loss has not improved for this many epochs
    /// (default: max(10, epochs / 5) with validation; tutorial: never).
    #[arg(long, value_name = "EPOCHS")]
    patience: Option<usize>,
    /// Hidden layer widths, comma-separated (default and tutorial: 1000).
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Dropout probability (default and tutorial: 0.5).
    #[arg(long)]
    dropout: Option<f32>,
    /// No Dropout before the first Linear (the variant of the tutorial's code).
    #[arg(long)]
    no_input_dropout: bool,
    /// Standardise the features for the MLP (default: yes; tutorial: no). The
    /// logistic head always is.
    #[arg(long, conflicts_with = "no_standardize")]
    standardize: bool,
    /// Raw features for the MLP.
    #[arg(long)]
    no_standardize: bool,
    /// Logistic baseline: inverse L2 strength C, fixed (default: chosen by
    /// cross-validation; tutorial: 1).
    #[arg(long)]
    logistic_c: Option<f32>,
    /// Logistic baseline: L-BFGS iterations (sklearn's max_iter, default 100).
    #[arg(long, default_value_t = 100)]
    logistic_max_iter: u64,
    /// Class weights in both heads' losses.
    #[arg(long, value_enum, default_value_t = ClassWeightArg::None)]
    class_weight: ClassWeightArg,
    /// No temperature scaling (default: calibrate; tutorial: no).
    #[arg(long)]
    no_calibrate: bool,
    /// Seed for initialisation, shuffling, dropout, --val-split and the folds.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads for the matrix products (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No epoch lines or progress (warnings and errors still go to stderr).
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object on stdout at the end instead of the table (epoch
    /// lines go to stderr): files written, the validation used, the
    /// recommended head, and each head's scores.
    #[arg(long)]
    json: bool,
}

/// Where a run's human-readable lines go: stdout, stderr (with --json, whose
/// object owns stdout), or nowhere (--quiet).
#[derive(Clone, Copy)]
enum Lines {
    Stdout,
    Stderr,
    Off,
}

impl Lines {
    fn of(args: &TrainArgs) -> Lines {
        match (args.quiet, args.json) {
            (true, _) => Lines::Off,
            (false, true) => Lines::Stderr,
            (false, false) => Lines::Stdout,
        }
    }

    fn say(self, line: &str) {
        match self {
            Lines::Stdout => println!("{line}"),
            Lines::Stderr => eprintln!("{line}"),
            Lines::Off => {}
        }
    }
}

/// The flags as the user's [`Choices`]; [`Plan::resolve`] fills in the preset.
fn choices(args: &TrainArgs) -> Choices {
    Choices {
        train_files: args.train.clone(),
        val_files: args.val.clone(),
        val_split: args.val_split,
        cv: args.cv,
        preset: match args.preset {
            PresetArg::Default => Preset::Default,
            PresetArg::Tutorial => Preset::Tutorial,
        },
        heads: match args.head {
            HeadArg::Mlp => Heads::Mlp,
            HeadArg::Logistic => Heads::Logistic,
            HeadArg::Both => Heads::Both,
        },
        epochs: args.epochs,
        steps: args.steps,
        batch: args.batch,
        optim: args.optim.map(|o| match o {
            OptimArg::Sgd => Optim::Sgd,
            OptimArg::Adam => Optim::Adam,
            OptimArg::Adamw => Optim::Adamw,
        }),
        lr: args.lr,
        momentum: args.momentum,
        nesterov: args.nesterov,
        weight_decay: args.weight_decay,
        lr_schedule: args.lr_schedule.clone(),
        patience: args.patience,
        hidden: args.hidden.clone(),
        dropout: args.dropout,
        input_dropout: !args.no_input_dropout,
        standardize: match (args.standardize, args.no_standardize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        logistic_c: args.logistic_c,
        logistic_max_iterations: args.logistic_max_iter,
        calibrate: !args.no_calibrate,
        balanced: args.class_weight == ClassWeightArg::Balanced,
        seed: args.seed,
    }
}

fn abbreviate(names: &[String]) -> String {
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, … {}", names[..4].join(", "), names[names.len() - 1])
    }
}

pub fn train(_cli: &Cli, args: &TrainArgs) -> Result<i32> {
    let folder = RunFolder::new(&args.out);
    folder.check_writable(args.overwrite)?;
    let plan = Plan::resolve(&choices(args))?;
    let _lock = folder.lock()?;
    // The run's files (written, or removed as an earlier run's) are none of its inputs.
    let inputs: Vec<Input> = args
        .train
        .iter()
        .chain(&args.val)
        .map(|f| Input::new("a feature file", f))
        .collect();
    for name in RunFolder::FILES {
        refuse_inputs("--out", &folder.file(name), &inputs)?;
    }
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("setting the number of threads")?;
    }
    let mut data = TrainingData::load(&plan)?;
    describe(&data);
    let mut trained: Vec<Trained> = Vec::new();
    // The logistic baseline first: it standardises a copy of the raw features.
    if let Some(l) = &plan.logistic {
        trained.push(train_logistic(&plan, l, &data)?);
    }
    if plan.mlp.is_some() {
        trained.push(train_mlp(&plan, &mut data, Lines::of(args))?);
    }
    let mut reports: Vec<HeadReport> = trained.iter().map(|t| t.report.clone()).collect();
    let best = fit::recommend(&mut reports);
    let written = fit::save(&folder, &plan, &data, &trained, &reports, best)?;
    // An earlier run's outputs that this run did not rewrite would mix two runs.
    for p in folder.remove_stale(&written)? {
        eprintln!(
            "removed {} (from an earlier run; this run does not write it)",
            p.display()
        );
    }
    if args.json {
        print_json(args, &plan, &data, &reports, &written)?;
    } else if !args.quiet {
        println!();
        print!("{}", report::comparison_table(&reports));
        if best.is_none() && reports.len() > 1 {
            println!("no held-out data: no head is recommended (pass --val, --val-split or --cv)");
        }
        println!("\nwrote {} to {}", written.join(", "), args.out.display());
    }
    Ok(0)
}

/// What was loaded, on stderr.
fn describe(data: &TrainingData) {
    for w in &data.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "features: {} train rows{} × {} features from {} ({} classes: {}), loaded in {:.1} s",
        data.train_rows.len(),
        if data.val_rows.is_empty() {
            String::new()
        } else {
            format!(", {} validation rows", data.val_rows.len())
        },
        data.train.n_features(),
        data.train.describe_backbones(),
        data.class_names.len(),
        abbreviate(&data.class_names),
        data.load_seconds
    );
    if let Some(v) = &data.train.views {
        eprintln!(
            "views: {} per image (augmented, view 0 = centre): the MLP trains on one drawn per image per epoch, the logistic head and all validation on the centre view",
            v.shape()[1]
        );
    }
    if !data.validation_note.is_empty() {
        eprintln!("{}", data.validation_note);
    }
}

fn print_json(
    args: &TrainArgs,
    plan: &Plan,
    data: &TrainingData,
    reports: &[HeadReport],
    written: &[String],
) -> Result<()> {
    let json = serde_json::json!({
        "command": "train",
        "out": args.out,
        "written": written,
        "preset": plan.preset,
        "validation": data.validation_note,
        "recommended": reports.iter().find(|r| r.recommended).map(|r| &r.bundle),
        "heads": reports.iter().map(|r| {
            let mut h = fit::final_metrics(r);
            h["kind"] = serde_json::json!(r.kind);
            h["bundle"] = serde_json::json!(r.bundle);
            h["recommended"] = serde_json::json!(r.recommended);
            h["chosen"] = serde_json::json!(r.chosen);
            h
        }).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

#[cfg(feature = "train")]
fn train_logistic(plan: &Plan, l: &LogisticPlan, data: &TrainingData) -> Result<Trained> {
    // The engine that ran is named in the report's description (`logistic::fit` decides).
    eprintln!(
        "logistic regression (L-BFGS, {}, max {} iterations) on standardised features…",
        match l.c {
            Some(c) => format!("C = {c}"),
            None => "C by cross-validation".into(),
        },
        l.max_iterations
    );
    let trained = fit::fit_logistic(plan, data)?;
    for n in &trained.notes {
        eprintln!("{n}");
    }
    eprintln!("logistic regression: {}", summary(&trained.report));
    Ok(trained)
}

/// "1.2 s, train accuracy …, val accuracy …, val loss … (… before calibration, T = …)".
fn summary(r: &HeadReport) -> String {
    let held = match (&r.cv, &r.validation) {
        (Some(c), _) => format!(
            ", cv accuracy {} ± {} %, cv loss {} ± {}",
            fixed(100.0 * c.accuracy_mean, 2),
            fixed(100.0 * c.accuracy_sd, 2),
            fixed(c.log_loss_mean, 4),
            fixed(c.log_loss_sd, 4)
        ),
        (None, Some(e)) => format!(
            ", val accuracy {} %, val loss {}",
            fixed(100.0 * e.accuracy, 2),
            fixed(e.log_loss, 4)
        ),
        (None, None) => String::new(),
    };
    let cal = match r.uncalibrated_log_loss {
        Some(u) if r.temperature != 1.0 => format!(
            " (temperature {}: held-out log loss {} before calibration)",
            fixed(r.temperature as f64, 3),
            fixed(u, 4)
        ),
        _ => String::new(),
    };
    format!(
        "{} s, train accuracy {} %{held}{cal}",
        fixed(r.train_seconds, 1),
        fixed(100.0 * r.train_accuracy, 2)
    )
}

#[cfg(not(feature = "train"))]
fn train_logistic(_: &Plan, _: &LogisticPlan, _: &TrainingData) -> Result<Trained> {
    anyhow::bail!("this xfer was built without the `train` feature (linfa); use --head mlp or rebuild with default features")
}

fn train_mlp(plan: &Plan, data: &mut TrainingData, lines: Lines) -> Result<Trained> {
    let m = plan.mlp.as_ref().expect("the plan has an MLP");
    let config = m.config(data.train.n_features(), data.class_names.len());
    let folds = data.n_folds();
    let tc = plan.mlp_config(
        data.train_rows.len(),
        folds > 0 || data.val_rows().is_some(),
    );
    eprintln!("{}", mlp_line(plan, m, &config, &tc, folds));
    // The batch bar only on a terminal; epoch lines are the log elsewhere.
    let bar = if matches!(lines, Lines::Off) || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("  epoch {msg} {bar:30} {pos}/{len} batches  ETA {eta}")
            .expect("valid template"),
    );
    // Long runs print about 25 epoch lines (all epochs are in metrics.json).
    let every = tc.epochs.div_ceil(25).max(1);
    let mut progress = |p: Progress| match p {
        Progress::Batch { epoch, done, total } => {
            if done == 1 {
                bar.reset();
                bar.set_length(total as u64);
                bar.set_message(format!("{epoch}"));
            }
            bar.set_position(done as u64);
        }
        Progress::Epoch(r) if r.epoch == 1 || r.epoch % every == 0 => {
            bar.suspend(|| lines.say(&epoch_line(r)));
        }
        _ => {}
    };
    let trained = fit::fit_mlp(plan, data, &mut progress)?;
    bar.finish_and_clear();
    for n in &trained.notes {
        lines.say(n);
    }
    lines.say(&format!("MLP: {}", summary(&trained.report)));
    Ok(trained)
}

/// The MLP's settings, printed before it trains.
fn mlp_line(
    plan: &Plan,
    m: &MlpPlan,
    config: &MlpConfig,
    tc: &TrainConfig,
    folds: usize,
) -> String {
    format!(
        "MLP {} ({} parameters), {}, batch {}, {}{}{}{}",
        config.describe(),
        config.n_parameters(),
        plan.config.optimizer.describe(),
        tc.batch_size,
        match m.steps {
            Some(s) => format!("{} epochs (a budget of {s} steps)", tc.epochs),
            None => format!("{} epochs", tc.epochs),
        },
        if m.standardize {
            ", standardised features"
        } else {
            ""
        },
        tc.patience
            .map(|p| format!(", early stopping after {p} epochs without improvement"))
            .unwrap_or_default(),
        if folds > 0 {
            format!("; {folds}-fold cross-validation first")
        } else {
            String::new()
        }
    )
}

/// One epoch's figures.
fn epoch_line(r: &EpochRecord) -> String {
    let val = match (r.val_loss, r.val_accuracy) {
        (Some(l), Some(a)) => format!(
            "  val loss {}  val acc {:>6} %",
            fixed(l, 4),
            fixed(100.0 * a, 2)
        ),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}  loss {}  acc {:>6} %{val}  {} s",
        r.epoch,
        fixed(r.train_loss, 4),
        fixed(100.0 * r.train_accuracy, 2),
        fixed(r.seconds, 2)
    )
}
