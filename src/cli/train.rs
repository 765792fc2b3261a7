//! `xfer train`: train the tutorial's MLP head and/or the logistic baseline on
//! feature files, print one line per epoch and a comparison table, and write
//! the bundle(s), metrics.json and a learning-curve plot to --out.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use xfer::eval::report::{self, HeadReport};
use xfer::ship::bundle::Bundle;
use xfer::train::data::TrainingData;
use xfer::train::head::optim::{AdamConfig, LrSchedule, OptimizerConfig, SgdConfig};
use xfer::train::head::HeadKind;
use xfer::train::plan::{LogisticPlan, MlpPlan, Preset, TrainPlan, Validation};
use xfer::train::run::{self as fit, Trained};
use xfer::train::{Progress, TrainConfig};
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

/// Flags → a checked [`TrainPlan`]; the output folder is checked too.
fn plan(args: &TrainArgs) -> Result<TrainPlan> {
    if args.out.exists() && !args.out.is_dir() {
        bail!("--out {} exists and is not a folder", args.out.display());
    }
    if !args.overwrite {
        for name in OUTPUTS {
            let p = args.out.join(name);
            if p.exists() {
                bail!(
                    "{} already exists; pass --overwrite to replace it, or choose another --out",
                    p.display()
                );
            }
        }
    }
    let tutorial = args.preset == PresetArg::Tutorial;
    let optim = args.optim.unwrap_or(if tutorial {
        OptimArg::Sgd
    } else {
        OptimArg::Adamw
    });
    let lr = args.lr.unwrap_or(1e-3);
    let weight_decay = args.weight_decay.unwrap_or(match optim {
        OptimArg::Adamw => 1e-2,
        _ => 0.0,
    });
    let optimizer = match optim {
        OptimArg::Sgd => OptimizerConfig::Sgd(SgdConfig {
            lr,
            momentum: args.momentum,
            nesterov: args.nesterov,
            weight_decay,
            ..SgdConfig::default()
        }),
        OptimArg::Adam | OptimArg::Adamw => {
            if args.momentum != 0.0 || args.nesterov {
                bail!("--momentum and --nesterov are for --optim sgd");
            }
            OptimizerConfig::Adam(AdamConfig {
                lr,
                weight_decay,
                decoupled_weight_decay: optim == OptimArg::Adamw,
                ..AdamConfig::default()
            })
        }
    };
    // The step budget: the default preset's, unless epochs are given.
    let steps = match (args.steps, args.epochs) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => (!tutorial).then_some(DEFAULT_STEPS),
    };
    let epochs = args.epochs.unwrap_or(if tutorial {
        20
    } else if steps.is_some() {
        MAX_EPOCHS
    } else {
        20
    });
    let schedule = args
        .lr_schedule
        .clone()
        .unwrap_or_else(|| if tutorial { "constant" } else { "cosine" }.to_string());
    let validation = match (&args.val[..], args.val_split, args.cv) {
        (_, _, Some(k)) => Validation::Folds(k),
        ([], Some(f), None) => Validation::Split(f),
        ([], None, None) if tutorial => Validation::None,
        ([], None, None) => Validation::Auto,
        (files, _, None) => Validation::Files(files.to_vec()),
    };
    let plan = TrainPlan {
        train_files: args.train.clone(),
        validation,
        mlp: (args.head != HeadArg::Logistic).then(|| MlpPlan {
            hidden: args.hidden.clone().unwrap_or_else(|| vec![1000]),
            dropout: args.dropout.unwrap_or(0.5),
            input_dropout: !args.no_input_dropout,
            standardize: args.standardize || (!tutorial && !args.no_standardize),
            steps,
            auto_patience: !tutorial,
        }),
        logistic: (args.head != HeadArg::Mlp).then(|| LogisticPlan {
            c: args.logistic_c.or(tutorial.then_some(1.0)),
            max_iterations: args.logistic_max_iter,
        }),
        config: TrainConfig {
            epochs,
            batch_size: args.batch.unwrap_or(if tutorial { 64 } else { 32 }),
            optimizer,
            schedule: LrSchedule::parse(&schedule, epochs)?,
            patience: args.patience,
            seed: args.seed,
            class_weights: None,
        },
        calibrate: !tutorial && !args.no_calibrate,
        balanced: args.class_weight == ClassWeightArg::Balanced,
        preset: if tutorial {
            Preset::Tutorial
        } else {
            Preset::Default
        },
    };
    plan.validate()?;
    Ok(plan)
}

/// The default preset's step budget and most epochs.
const DEFAULT_STEPS: usize = 1000;
const MAX_EPOCHS: usize = 300;

/// Files a run writes into --out.
const OUTPUTS: [&str; 6] = [
    "metrics.json",
    xfer::eval::audit::oof::FILE,
    "mlp.safetensors",
    "logistic.safetensors",
    "best.safetensors",
    "learning_curve.svg",
];

fn abbreviate(names: &[String]) -> String {
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, … {}", names[..4].join(", "), names[names.len() - 1])
    }
}

use xfer::util::clobber::{refuse_inputs, Input};

/// Every feature file a run reads (--train and --val).
fn feature_files(args: &TrainArgs) -> Vec<&PathBuf> {
    args.train.iter().chain(&args.val).collect()
}

pub fn train(_cli: &Cli, args: &TrainArgs) -> Result<i32> {
    let plan = plan(args)?;
    // A second training run into the same folder is refused while this one runs.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let _lock = xfer::util::lock::OutputLock::acquire(&args.out.join("run"))?;
    // The run's files (written, or removed as an earlier run's) are none of its inputs.
    let inputs: Vec<Input> = feature_files(args)
        .into_iter()
        .map(|f| Input::new("a feature file", f))
        .collect();
    for name in OUTPUTS {
        refuse_inputs("--out", &args.out.join(name), &inputs)?;
    }
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("setting the number of threads")?;
    }
    let mut data = TrainingData::load(&plan)?;
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
    let mut written: Vec<String> = Vec::new();
    for (t, r) in trained.iter().zip(&reports) {
        save(&t.bundle, &args.out, &r.bundle)?;
        written.push(r.bundle.clone());
    }
    if let Some(b) = best {
        save(&trained[b].bundle, &args.out, "best.safetensors")?;
        written.push("best.safetensors".into());
    }

    // Reports.
    let baseline = reports
        .iter()
        .find(|r| r.kind == HeadKind::Logistic)
        .and_then(|r| r.validation.as_ref())
        .map(|e| (e.log_loss, e.accuracy));
    if let Some(m) = reports.iter().find(|r| r.kind == HeadKind::Mlp) {
        let title = format!(
            "MLP on {} — {}",
            data.train.describe_backbones(),
            plan.config.optimizer.describe()
        );
        let svg = report::learning_curve_svg(&m.history, &title, m.best_epoch, baseline);
        let p = args.out.join("learning_curve.svg");
        xfer::util::atomic::write_bytes_atomic(&p, svg.as_bytes())?;
        written.push("learning_curve.svg".into());
    }
    let metrics = fit::metrics_json(&plan, &data, &reports);
    let p = args.out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics)? + "\n";
    xfer::util::atomic::write_bytes_atomic(&p, text.as_bytes())?;
    written.push("metrics.json".into());
    if let Some(oof) = fit::out_of_fold(&plan, &data, &trained, &reports) {
        let p = args.out.join(xfer::eval::audit::oof::FILE);
        let text = serde_json::to_string(&oof)? + "\n";
        xfer::util::atomic::write_bytes_atomic(&p, text.as_bytes())?;
        written.push(xfer::eval::audit::oof::FILE.into());
    }
    // An earlier run's outputs that this run did not rewrite would mix two runs.
    for name in OUTPUTS {
        let p = args.out.join(name);
        if !written.iter().any(|w| w == name) && p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            eprintln!(
                "removed {} (from an earlier run; this run does not write it)",
                p.display()
            );
        }
    }
    let no_recommendation = best.is_none() && reports.len() > 1;
    if args.json {
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
    } else if !args.quiet {
        println!();
        print!("{}", report::comparison_table(&reports));
        if no_recommendation {
            println!("no held-out data: no head is recommended (pass --val, --val-split or --cv)");
        }
        println!("\nwrote {} to {}", written.join(", "), args.out.display());
    }
    Ok(0)
}

#[cfg(feature = "train")]
fn train_logistic(plan: &TrainPlan, l: &LogisticPlan, data: &TrainingData) -> Result<Trained> {
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
fn save(bundle: &Bundle, out: &Path, name: &str) -> Result<()> {
    let p = out.join(name);
    bundle
        .save(&p)
        .with_context(|| format!("writing {}", p.display()))
}

#[cfg(not(feature = "train"))]
fn train_logistic(_: &TrainPlan, _: &LogisticPlan, _: &TrainingData) -> Result<Trained> {
    bail!("this xfer was built without the `train` feature (linfa); use --head mlp or rebuild with default features")
}

fn train_mlp(plan: &TrainPlan, data: &mut TrainingData, lines: Lines) -> Result<Trained> {
    let m = plan.mlp.as_ref().expect("the plan has an MLP");
    let config = m.config(data.train.n_features(), data.class_names.len());
    let folds = data.n_folds();
    let tc = plan.mlp_config(
        data.train_rows.len(),
        folds > 0 || data.val_rows().is_some(),
    );
    eprintln!(
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
    );
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
            bar.suspend(|| {
                let val = match (r.val_loss, r.val_accuracy) {
                    (Some(l), Some(a)) => format!(
                        "  val loss {}  val acc {:>6} %",
                        fixed(l, 4),
                        fixed(100.0 * a, 2)
                    ),
                    _ => String::new(),
                };
                lines.say(&format!(
                    "epoch {:>3}  loss {}  acc {:>6} %{val}  {} s",
                    r.epoch,
                    fixed(r.train_loss, 4),
                    fixed(100.0 * r.train_accuracy, 2),
                    fixed(r.seconds, 2)
                ));
            });
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
