//! `xfer train`: train the tutorial's MLP head and/or the logistic baseline on
//! feature files, print one line per epoch and a comparison table, and write
//! the bundle(s), metrics.json and a learning-curve plot to --out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use xfer::bundle::Bundle;
use xfer::head::optim::{AdamConfig, LrSchedule, OptimizerConfig, SgdConfig};
use xfer::head::HeadKind;
use xfer::report::{self, HeadReport};
use xfer::train::data::TrainingData;
use xfer::train::plan::{LogisticPlan, MlpPlan, TrainPlan, Validation};
use xfer::train::run::{self as fit, Trained};
use xfer::train::{Progress, TrainConfig};

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

/// Train a classifier head on feature files.
///
/// The defaults are the tutorial's method-3 settings: Dropout(0.5) → Linear(D, 1000) →
/// ReLU → Dropout(0.5) → Linear(1000, C), plain SGD with lr 1e-3, batches of 64, 20
/// epochs, cross-entropy. Several --train files (one per backbone) are concatenated
/// along the features, rows matched by image path.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Training feature file; repeat for several backbones (concatenated in this order).
    #[arg(long = "train", value_name = "FILE.h5", required = true)]
    train: Vec<PathBuf>,
    /// Validation feature file(s), one per backbone in the --train order.
    #[arg(long = "val", value_name = "FILE.h5", conflicts_with = "val_split")]
    val: Vec<PathBuf>,
    /// Hold out this fraction of the training rows (stratified, seeded) for validation.
    #[arg(long, value_name = "FRACTION")]
    val_split: Option<f64>,
    /// Which head(s) to train.
    #[arg(long, value_enum, default_value_t = HeadArg::Both)]
    head: HeadArg,
    /// Output folder for the bundle(s), metrics.json and learning_curve.svg.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace the results of an earlier run in --out.
    #[arg(long)]
    overwrite: bool,
    /// Epochs (the tutorial: 20).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Mini-batch size (the tutorial: 64).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Optimiser (the tutorial: plain SGD).
    #[arg(long, value_enum, default_value_t = OptimArg::Sgd)]
    optim: OptimArg,
    /// Learning rate (the tutorial: 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// SGD momentum (PyTorch's default: 0).
    #[arg(long, default_value_t = 0.0)]
    momentum: f32,
    /// SGD: Nesterov momentum (needs --momentum > 0).
    #[arg(long)]
    nesterov: bool,
    /// L2 weight decay (default: 0 for SGD and Adam, 1e-2 for AdamW, as in PyTorch).
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, cosine, or step:EVERY:GAMMA (StepLR).
    #[arg(long, default_value = "constant", value_name = "SCHEDULE")]
    lr_schedule: String,
    /// Stop when the validation loss has not improved for this many epochs.
    #[arg(long, value_name = "EPOCHS")]
    patience: Option<usize>,
    /// Hidden layer widths, comma-separated (the tutorial: 1000).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    hidden: Vec<usize>,
    /// Dropout probability (the tutorial: 0.5).
    #[arg(long, default_value_t = 0.5)]
    dropout: f32,
    /// No Dropout before the first Linear (the variant of the tutorial's code).
    #[arg(long)]
    no_input_dropout: bool,
    /// Standardise the features for the MLP too (the logistic head always is).
    #[arg(long)]
    standardize: bool,
    /// Logistic baseline: inverse L2 strength C (sklearn's, default 1).
    #[arg(long, default_value_t = 1.0)]
    logistic_c: f32,
    /// Logistic baseline: L-BFGS iterations (sklearn's max_iter, default 100).
    #[arg(long, default_value_t = 100)]
    logistic_max_iter: u64,
    /// Seed for initialisation, shuffling, dropout and --val-split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads for the matrix products (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Flags → a checked [`TrainPlan`]; the output folder is checked too.
fn plan(args: &TrainArgs) -> Result<TrainPlan> {
    if args.out.exists() && !args.out.is_dir() {
        bail!("--out {} exists and is not a folder", args.out.display());
    }
    if !args.overwrite {
        for name in ["metrics.json", "mlp.safetensors", "logistic.safetensors"] {
            let p = args.out.join(name);
            if p.exists() {
                bail!(
                    "{} already exists; pass --overwrite to replace it, or choose another --out",
                    p.display()
                );
            }
        }
    }
    let weight_decay = args.weight_decay.unwrap_or(match args.optim {
        OptimArg::Adamw => 1e-2,
        _ => 0.0,
    });
    let optimizer = match args.optim {
        OptimArg::Sgd => OptimizerConfig::Sgd(SgdConfig {
            lr: args.lr,
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
                lr: args.lr,
                weight_decay,
                decoupled_weight_decay: args.optim == OptimArg::Adamw,
                ..AdamConfig::default()
            })
        }
    };
    let plan = TrainPlan {
        train_files: args.train.clone(),
        validation: match (&args.val[..], args.val_split) {
            ([], None) => Validation::None,
            ([], Some(f)) => Validation::Split(f),
            (files, _) => Validation::Files(files.to_vec()),
        },
        mlp: (args.head != HeadArg::Logistic).then(|| MlpPlan {
            hidden: args.hidden.clone(),
            dropout: args.dropout,
            input_dropout: !args.no_input_dropout,
            standardize: args.standardize,
        }),
        logistic: (args.head != HeadArg::Mlp).then_some(LogisticPlan {
            c: args.logistic_c,
            max_iterations: args.logistic_max_iter,
        }),
        config: TrainConfig {
            epochs: args.epochs,
            batch_size: args.batch,
            optimizer,
            schedule: LrSchedule::parse(&args.lr_schedule, args.epochs)?,
            patience: args.patience,
            seed: args.seed,
        },
    };
    plan.validate()?;
    Ok(plan)
}

fn abbreviate(names: &[String]) -> String {
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, … {}", names[..4].join(", "), names[names.len() - 1])
    }
}

pub fn train(_cli: &Cli, args: &TrainArgs) -> Result<i32> {
    let plan = plan(args)?;
    // A second training run into the same folder is refused while this one runs.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let _lock = xfer::lock::OutputLock::acquire(&args.out.join("run"))?;
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut reports: Vec<HeadReport> = Vec::new();

    // The logistic baseline first: it standardises a copy of the raw features.
    if let Some(l) = &plan.logistic {
        let trained = train_logistic(&plan, l, &data)?;
        save(&trained.bundle, &args.out, &trained.report.bundle)?;
        reports.push(trained.report);
    }
    if plan.mlp.is_some() {
        let trained = train_mlp(&plan, &mut data)?;
        save(&trained.bundle, &args.out, &trained.report.bundle)?;
        reports.push(trained.report);
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
        xfer::atomic::write_bytes_atomic(&p, svg.as_bytes())?;
    }
    let metrics = fit::metrics_json(&plan, &data, &reports);
    let p = args.out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics)? + "\n";
    xfer::atomic::write_bytes_atomic(&p, text.as_bytes())?;
    println!();
    print!("{}", report::comparison_table(&reports));
    println!(
        "\nwrote {} to {}",
        reports
            .iter()
            .map(|r| r.bundle.clone())
            .chain(["metrics.json".to_string()])
            .chain(plan.mlp.is_some().then(|| "learning_curve.svg".to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display()
    );
    Ok(0)
}

#[cfg(feature = "train")]
fn train_logistic(plan: &TrainPlan, l: &LogisticPlan, data: &TrainingData) -> Result<Trained> {
    eprintln!(
        "logistic regression ({}, C = {}, max {} iterations) on standardised features…",
        fit::logistic_engine(plan, data.train_rows.len() * data.train.n_features()),
        l.c,
        l.max_iterations
    );
    let trained = fit::fit_logistic(plan, data)?;
    for n in &trained.notes {
        eprintln!("{n}");
    }
    let r = &trained.report;
    eprintln!(
        "logistic regression: {:.1} s, train accuracy {:.2} %{}",
        r.train_seconds,
        100.0 * r.train_accuracy,
        r.validation
            .as_ref()
            .map(|e| format!(
                ", val accuracy {:.2} %, val loss {:.4}",
                100.0 * e.accuracy,
                e.log_loss
            ))
            .unwrap_or_default()
    );
    Ok(trained)
}

#[cfg(not(feature = "train"))]
fn train_logistic(_: &TrainPlan, _: &LogisticPlan, _: &TrainingData) -> Result<Trained> {
    bail!("this xfer was built without the `train` feature (linfa); use --head mlp or rebuild with default features")
}

fn save(bundle: &Bundle, out: &Path, name: &str) -> Result<()> {
    let p = out.join(name);
    bundle
        .save(&p)
        .with_context(|| format!("writing {}", p.display()))
}

fn train_mlp(plan: &TrainPlan, data: &mut TrainingData) -> Result<Trained> {
    let m = plan.mlp.as_ref().expect("the plan has an MLP");
    let config = m.config(data.train.n_features(), data.class_names.len());
    eprintln!(
        "MLP {} ({} parameters), {}, batch {}, {} epochs",
        config.describe(),
        config.n_parameters(),
        plan.config.optimizer.describe(),
        plan.config.batch_size,
        plan.config.epochs
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  epoch {msg} {bar:30} {pos}/{len} batches  ETA {eta}")
            .expect("valid template"),
    );
    let epochs = plan.config.epochs;
    let mut progress = |p: Progress| match p {
        Progress::Batch { epoch, done, total } => {
            if done == 1 {
                bar.reset();
                bar.set_length(total as u64);
                bar.set_message(format!("{epoch}/{epochs}"));
            }
            bar.set_position(done as u64);
        }
        Progress::Epoch(r) => {
            bar.suspend(|| {
                let val = match (r.val_loss, r.val_accuracy) {
                    (Some(l), Some(a)) => format!("  val loss {l:.4}  val acc {:6.2} %", 100.0 * a),
                    _ => String::new(),
                };
                println!(
                    "epoch {:>3}/{epochs}  loss {:.4}  acc {:6.2} %{val}  {:.2} s",
                    r.epoch,
                    r.train_loss,
                    100.0 * r.train_accuracy,
                    r.seconds
                );
            });
        }
    };
    let trained = fit::fit_mlp(plan, data, &mut progress)?;
    bar.finish_and_clear();
    for n in &trained.notes {
        println!("{n}");
    }
    Ok(trained)
}
