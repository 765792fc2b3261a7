//! `xfer train`: train the tutorial's MLP head and/or the logistic baseline on
//! feature files, print one line per epoch and a comparison table, and write
//! the bundle(s), metrics.json and a learning-curve plot to --out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use xfer::bundle::{check_backbones, Bundle};
use xfer::features::{self, FeatureSet};
use xfer::head::mlp::{Mlp, MlpConfig};
use xfer::head::optim::{AdamConfig, LrSchedule, OptimizerConfig, SgdConfig};
use xfer::head::{HeadKind, Rng, Standardize};
use xfer::metrics::{self, Evaluation};
use xfer::report::{self, HeadReport};
use xfer::train::{self, Progress, Rows, TrainConfig};

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

/// Checked settings, built before any file is read.
struct Plan {
    mlp: bool,
    logistic: bool,
    train: TrainConfig,
    hidden: Vec<usize>,
    dropout: f32,
    input_dropout: bool,
}

fn validate(args: &TrainArgs) -> Result<Plan> {
    for f in args.train.iter().chain(&args.val) {
        if !f.exists() {
            bail!(
                "{} does not exist; create it with `xfer extract`",
                f.display()
            );
        }
    }
    if !args.val.is_empty() && args.val.len() != args.train.len() {
        bail!(
            "{} --train file(s) but {} --val file(s): give one validation file per backbone, in the same order",
            args.train.len(),
            args.val.len()
        );
    }
    if let Some(f) = args.val_split {
        if !(f > 0.0 && f < 1.0) {
            bail!("--val-split must be between 0 and 1 (e.g. 0.1), got {f}");
        }
    }
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
    let schedule = LrSchedule::parse(&args.lr_schedule, args.epochs).map_err(anyhow::Error::msg)?;
    let train = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch,
        optimizer,
        schedule,
        patience: args.patience,
        seed: args.seed,
    };
    train.validate().map_err(anyhow::Error::msg)?;
    if args.patience.is_some() && args.val.is_empty() && args.val_split.is_none() {
        bail!("--patience needs validation data: pass --val or --val-split");
    }
    if args.hidden.contains(&0) {
        bail!("--hidden widths must be at least 1");
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout must be in [0, 1), got {}", args.dropout);
    }
    if !(args.logistic_c > 0.0) {
        bail!("--logistic-c must be positive");
    }
    Ok(Plan {
        mlp: args.head != HeadArg::Logistic,
        logistic: args.head != HeadArg::Mlp,
        train,
        hidden: args.hidden.clone(),
        dropout: args.dropout,
        input_dropout: !args.no_input_dropout,
    })
}

fn warn_all(set: &FeatureSet) {
    for w in &set.warnings {
        eprintln!("warning: {w}");
    }
}

/// Training (and validation) data, checked.
struct Data {
    train: FeatureSet,
    train_labels: Vec<usize>,
    train_rows: Vec<usize>,
    /// A separate validation set, or None when it is a split of `train`.
    val: Option<FeatureSet>,
    val_labels: Vec<usize>,
    val_rows: Vec<usize>,
    class_names: Vec<String>,
}

impl Data {
    fn train_rows(&self) -> Rows<'_> {
        Rows {
            x: self.train.data.view(),
            labels: &self.train_labels,
            rows: &self.train_rows,
        }
    }

    fn val_rows(&self) -> Option<Rows<'_>> {
        if self.val_rows.is_empty() {
            return None;
        }
        Some(match &self.val {
            Some(v) => Rows {
                x: v.data.view(),
                labels: &self.val_labels,
                rows: &self.val_rows,
            },
            None => Rows {
                x: self.train.data.view(),
                labels: &self.train_labels,
                rows: &self.val_rows,
            },
        })
    }
}

fn load(args: &TrainArgs) -> Result<Data> {
    let t0 = Instant::now();
    let train = features::load(&args.train).context("loading the training features")?;
    warn_all(&train);
    let rn = |r: usize| train.row_name(r);
    let (train_labels, class_names) = features::training_labels(
        train.labels.view(),
        train.class_names.as_deref(),
        &format!("training features ({})", list(&args.train)),
        &rn,
    )?;
    let (train_rows, val_rows, val, val_labels) = if let Some(frac) = args.val_split {
        let (t, v) = features::stratified_split(&train_labels, class_names.len(), frac, args.seed);
        (t, v, None, Vec::new())
    } else if !args.val.is_empty() {
        let val = features::load(&args.val).context("loading the validation features")?;
        warn_all(&val);
        check_backbones(&train.backbones, &val.backbones, "the validation features")
            .map_err(anyhow::Error::msg)?;
        features::check_class_names(
            &class_names,
            val.class_names.as_deref(),
            "the validation features",
        )?;
        let vrn = |r: usize| val.row_name(r);
        let labels = features::eval_labels(
            val.labels.view(),
            class_names.len(),
            &format!("validation features ({})", list(&args.val)),
            &vrn,
        )?;
        let rows: Vec<usize> = (0..val.n_samples()).collect();
        ((0..train.n_samples()).collect(), rows, Some(val), labels)
    } else {
        (
            (0..train.n_samples()).collect(),
            Vec::new(),
            None,
            Vec::new(),
        )
    };
    eprintln!(
        "features: {} train rows{} × {} features from {} ({} classes: {}), loaded in {:.1} s",
        train_rows.len(),
        if val_rows.is_empty() {
            String::new()
        } else {
            format!(", {} validation rows", val_rows.len())
        },
        train.n_features(),
        train.describe_backbones(),
        class_names.len(),
        abbreviate(&class_names),
        t0.elapsed().as_secs_f64()
    );
    if val_rows.is_empty() {
        eprintln!("warning: no validation data (pass --val or --val-split): the best epoch cannot be chosen, the last one is kept");
    }
    Ok(Data {
        train,
        train_labels,
        train_rows,
        val,
        val_labels,
        val_rows,
        class_names,
    })
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn abbreviate(names: &[String]) -> String {
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, … {}", names[..4].join(", "), names[names.len() - 1])
    }
}

/// Scores of a head on some rows, given a function from feature rows to
/// probabilities; rows are gathered in blocks, so memory stays small.
fn evaluate_rows(
    rows: Rows,
    class_names: &[String],
    predict: &dyn Fn(ndarray::ArrayView2<f32>) -> ndarray::Array2<f32>,
) -> Evaluation {
    const BLOCK: usize = 2048;
    let mut xb = ndarray::Array2::zeros((0, 0));
    let mut probs = ndarray::Array2::<f32>::zeros((rows.len(), class_names.len())); // [n_rows, n_classes]
    for (i, chunk) in rows.rows.chunks(BLOCK).enumerate() {
        Mlp::gather_rows(rows.x, chunk, &mut xb);
        let p = predict(xb.view());
        probs
            .slice_mut(ndarray::s![i * BLOCK..i * BLOCK + chunk.len(), ..])
            .assign(&p);
    }
    let labels: Vec<usize> = rows.rows.iter().map(|&r| rows.labels[r]).collect();
    metrics::evaluate(probs.view(), &labels, class_names, None)
}

fn training_json(args: &TrainArgs, extra: serde_json::Value) -> serde_json::Value {
    json!({
        "train_files": args.train,
        "val_files": args.val,
        "val_split": args.val_split,
        "seed": args.seed,
        "head": extra,
    })
}

pub fn train(_cli: &Cli, args: &TrainArgs) -> Result<i32> {
    let plan = validate(args)?;
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("setting the number of threads")?;
    }
    let mut data = load(args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut reports: Vec<HeadReport> = Vec::new();
    let backbones = data.train.backbones.clone();

    // The logistic baseline first: it standardises a copy of the raw features.
    if plan.logistic {
        reports.push(train_logistic(args, &data, &backbones)?);
    }
    if plan.mlp {
        let std = if args.standardize {
            let s = Standardize::fit(data.train.data.view(), Some(&data.train_rows));
            s.apply_inplace(data.train.data.view_mut());
            if let Some(v) = &mut data.val {
                s.apply_inplace(v.data.view_mut());
            }
            Some(s)
        } else {
            None
        };
        reports.push(train_mlp(args, &plan, &data, std, &backbones)?);
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
            plan.train.optimizer.describe()
        );
        let svg = report::learning_curve_svg(&m.history, &title, m.best_epoch, baseline);
        let p = args.out.join("learning_curve.svg");
        report::write(&p, &svg).with_context(|| p.display().to_string())?;
    }
    let metrics = json!({
        "xfer_version": xfer::VERSION,
        "train": {
            "files": args.train,
            "n_samples": data.train_rows.len(),
            "n_features": data.train.n_features(),
            "backbones": data.train.backbones,
        },
        "validation": {
            "files": args.val,
            "split": args.val_split,
            "n_samples": data.val_rows.len(),
        },
        "classes": data.class_names,
        "heads": reports,
    });
    let p = args.out.join("metrics.json");
    report::write(&p, &(serde_json::to_string_pretty(&metrics)? + "\n"))
        .with_context(|| p.display().to_string())?;
    println!();
    print!("{}", report::comparison_table(&reports));
    println!(
        "\nwrote {} to {}",
        reports
            .iter()
            .map(|r| r.bundle.clone())
            .chain(["metrics.json".to_string()])
            .chain(plan.mlp.then(|| "learning_curve.svg".to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display()
    );
    Ok(0)
}

#[cfg(feature = "train")]
fn train_logistic(
    args: &TrainArgs,
    data: &Data,
    backbones: &[xfer::bundle::BackboneRef],
) -> Result<HeadReport> {
    use xfer::head::logistic::{self, LogisticConfig};
    let config = LogisticConfig {
        alpha: 1.0 / args.logistic_c,
        max_iterations: args.logistic_max_iter,
        ..LogisticConfig::default()
    };
    let engine = match config
        .engine
        .resolve(data.train_rows.len() * data.train.n_features())
    {
        logistic::LogisticEngine::Streaming => {
            "argmin L-BFGS as linfa-logistic, streaming products"
        }
        _ => "linfa-logistic, L-BFGS",
    };
    eprintln!(
        "logistic regression ({engine}, C = {}, max {} iterations) on standardised features…",
        args.logistic_c, args.logistic_max_iter
    );
    let t0 = Instant::now();
    let fit = logistic::fit(
        data.train.data.view(),
        &data.train_labels,
        &data.train_rows,
        data.class_names.len(),
        &config,
    )?;
    let (head, std) = (fit.head, fit.standardize);
    if let (Some(it), Some(passes)) = (fit.iterations, fit.passes) {
        eprintln!(
            "logistic regression: {it} L-BFGS iterations, {passes} passes over the features, stopped: {}",
            fit.stop.as_deref().unwrap_or("—")
        );
    }
    let seconds = t0.elapsed().as_secs_f64();
    let predict = |x: ndarray::ArrayView2<f32>| head.predict_proba(std.apply(x).view());
    let tr = evaluate_rows(data.train_rows(), &data.class_names, &predict);
    let validation = data
        .val_rows()
        .map(|v| evaluate_rows(v, &data.class_names, &predict));
    eprintln!(
        "logistic regression: {:.1} s, train accuracy {:.2} %{}",
        seconds,
        100.0 * tr.accuracy,
        validation
            .as_ref()
            .map(|e| format!(
                ", val accuracy {:.2} %, val loss {:.4}",
                100.0 * e.accuracy,
                e.log_loss
            ))
            .unwrap_or_default()
    );
    let report = HeadReport {
        kind: HeadKind::Logistic,
        description: format!(
            "logistic regression ({engine}, C = {}, standardised)",
            args.logistic_c
        ),
        train_seconds: seconds,
        seconds_per_epoch: None,
        train_loss: tr.log_loss,
        train_accuracy: tr.accuracy,
        validation,
        history: Vec::new(),
        best_epoch: None,
        stopped_early: false,
        bundle: "logistic.safetensors".into(),
    };
    let bundle = Bundle::new(
        HeadKind::Logistic,
        head,
        Some(std),
        data.class_names.clone(),
        backbones.to_vec(),
        training_json(args, json!({"kind": "logistic", "config": config})),
        final_metrics(&report),
    );
    save(&bundle, &args.out, &report.bundle)?;
    Ok(report)
}

#[cfg(not(feature = "train"))]
fn train_logistic(_: &TrainArgs, _: &Data, _: &[xfer::bundle::BackboneRef]) -> Result<HeadReport> {
    bail!("this xfer was built without the `train` feature (linfa); use --head mlp or rebuild with default features")
}

fn final_metrics(r: &HeadReport) -> serde_json::Value {
    json!({
        "train_loss": r.train_loss,
        "train_accuracy": r.train_accuracy,
        "val_loss": r.validation.as_ref().map(|e| e.log_loss),
        "val_accuracy": r.validation.as_ref().map(|e| e.accuracy),
        "best_epoch": r.best_epoch,
        "train_seconds": r.train_seconds,
    })
}

fn save(bundle: &Bundle, out: &Path, name: &str) -> Result<()> {
    let p = out.join(name);
    bundle
        .save(&p)
        .with_context(|| format!("writing {}", p.display()))
}

fn train_mlp(
    args: &TrainArgs,
    plan: &Plan,
    data: &Data,
    std: Option<Standardize>,
    backbones: &[xfer::bundle::BackboneRef],
) -> Result<HeadReport> {
    let config = MlpConfig {
        n_features: data.train.n_features(),
        hidden: plan.hidden.clone(),
        n_classes: data.class_names.len(),
        dropout: plan.dropout,
        input_dropout: plan.input_dropout,
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let mut mlp = Mlp::new(config.clone(), &mut Rng::new(args.seed));
    eprintln!(
        "MLP {} ({} parameters), {}, batch {}, {} epochs",
        config.describe(),
        config.n_parameters(),
        plan.train.optimizer.describe(),
        plan.train.batch_size,
        plan.train.epochs
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  epoch {msg} {bar:30} {pos}/{len} batches  ETA {eta}")
            .expect("valid template"),
    );
    let epochs = plan.train.epochs;
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
    let outcome = train::train_mlp(
        &mut mlp,
        data.train_rows(),
        data.val_rows(),
        &plan.train,
        &mut progress,
    );
    bar.finish_and_clear();
    if outcome.stopped_early {
        println!(
            "stopped early: no lower validation loss for {} epochs",
            plan.train.patience.unwrap_or(0)
        );
    }
    if data.val_rows().is_some() {
        println!(
            "kept the weights of epoch {} (lowest validation loss)",
            outcome.best_epoch
        );
    }
    let predict = |x: ndarray::ArrayView2<f32>| mlp.predict_proba(x);
    let tr = evaluate_rows(data.train_rows(), &data.class_names, &predict);
    let validation = data
        .val_rows()
        .map(|v| evaluate_rows(v, &data.class_names, &predict));
    let n_epochs = outcome.history.len().max(1);
    let report = HeadReport {
        kind: HeadKind::Mlp,
        description: config.describe(),
        train_seconds: outcome.seconds,
        seconds_per_epoch: Some(
            outcome.history.iter().map(|h| h.seconds).sum::<f64>() / n_epochs as f64,
        ),
        train_loss: tr.log_loss,
        train_accuracy: tr.accuracy,
        validation,
        history: outcome.history.clone(),
        best_epoch: Some(outcome.best_epoch),
        stopped_early: outcome.stopped_early,
        bundle: "mlp.safetensors".into(),
    };
    let bundle = Bundle::new(
        HeadKind::Mlp,
        mlp,
        std,
        data.class_names.clone(),
        backbones.to_vec(),
        training_json(
            args,
            json!({"kind": "mlp", "architecture": config, "config": plan.train, "standardize": args.standardize}),
        ),
        final_metrics(&report),
    );
    save(&bundle, &args.out, &report.bundle)?;
    Ok(report)
}
