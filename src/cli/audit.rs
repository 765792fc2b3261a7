//! `xfer audit`: label issues, duplicates, leakage between splits and
//! outliers, from feature files (and a training run's out-of-fold probabilities).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use xfer::eval::audit::confident::RankBy;
use xfer::eval::audit::{self, ProbSource, Settings, Splits};

use super::common::{check_output, report_page, write_report_page};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RankArg {
    /// The probability of the given class (cleanlab's default).
    SelfConfidence,
    /// (p of the given class − the largest other + 1) / 2.
    NormalizedMargin,
}

/// Find what is wrong with the data: label issues (confident learning on
/// out-of-fold probabilities), exact and near-duplicates within and across
/// splits (leakage), and outliers.
#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer audit --features train.h5 --features val.h5 --features test.h5
  xfer train --train train.h5 --out runs/a && xfer audit --features train.h5 --features test.h5 --run runs/a
  xfer audit --features train_lite0.h5,train_r18.h5 --features test_lite0.h5,test_r18.h5 --csv audit.csv --report audit/")]
pub struct AuditArgs {
    /// The feature file(s) of one split; repeat for each split (train,
    /// validation, test). Several backbones of one split: comma-separated,
    /// in the training order (they are concatenated as `xfer train` does).
    #[arg(long = "features", value_name = "FILE.h5[,FILE.h5…]", required = true)]
    features: Vec<String>,
    /// A run folder of `xfer train` (cross-validated): use its out-of-fold
    /// probabilities. Without it, audit cross-validates the default logistic head itself.
    #[arg(long, value_name = "DIR")]
    run: Option<PathBuf>,
    /// With --run: the head whose probabilities to use (default: the recommended one).
    #[arg(long, value_name = "KIND", requires = "run", value_parser = ["logistic", "mlp"])]
    head: Option<String>,
    /// Cosine similarity of the features (each backbone's part at unit
    /// length) at or above which two images are near-duplicates. At 0.90 (the
    /// default), on the demo photos with EfficientNet-Lite0: every mirrored
    /// copy, 99 % of JPEG re-encodes at quality 90, 92 % of 10 % crops, 58 % at
    /// quality 50, 27 % of half-size copies; 2 false pairs of 137,736 (docs/guide.md).
    /// Lower it to find looser copies, raise it for fewer false pairs.
    #[arg(long, value_name = "SIM", default_value_t = audit::DEFAULT_THRESHOLD)]
    threshold: f32,
    /// Neighbours per image for the outlier score.
    #[arg(long, value_name = "K", default_value_t = audit::DEFAULT_K)]
    neighbours: usize,
    /// How label issues are ranked.
    #[arg(long, value_enum, default_value_t = RankArg::SelfConfidence)]
    rank_by: RankArg,
    /// Folds for the logistic head's out-of-fold probabilities (without --run).
    #[arg(long, value_name = "K", default_value_t = 5, conflicts_with = "run")]
    cv: usize,
    /// Seed of the folds (without --run).
    #[arg(long, default_value_t = 0, conflicts_with = "run")]
    seed: u64,
    /// Do not read the image files (no content hash: exact duplicates by features only).
    #[arg(long)]
    no_hash: bool,
    /// The folder the images are in now, when they moved since extraction.
    #[arg(long, value_name = "DIR")]
    image_root: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the ranked list (every issue, one per row) to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    csv: Option<PathBuf>,
    /// Also write an HTML page, DIR/audit.html (created with DIR): thumbnails,
    /// duplicate pairs side by side, given and suggested classes.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Replace an existing --csv file or --report page.
    #[arg(long)]
    overwrite: bool,
    /// Rows printed per kind of issue (all are in --csv and --json).
    #[arg(long, default_value_t = 10)]
    top: usize,
}

pub fn audit(args: &AuditArgs) -> Result<i32> {
    // One --features per split; commas separate a split's backbones.
    let groups = groups(args)?;
    let page = check(args, &groups)?;
    let splits = Splits::load(&groups).context("loading the features")?;
    for w in &splits.warnings {
        eprintln!("warning: {w}");
    }
    let settings = Settings {
        probs: match &args.run {
            Some(dir) => ProbSource::Run(dir, args.head.as_deref()),
            None => ProbSource::Logistic {
                folds: args.cv,
                seed: args.seed,
            },
        },
        threshold: args.threshold,
        k: args.neighbours,
        rank_by: match args.rank_by {
            RankArg::SelfConfidence => RankBy::SelfConfidence,
            RankArg::NormalizedMargin => RankBy::NormalizedMargin,
        },
        hash_files: !args.no_hash,
        image_root: args.image_root.as_deref(),
    };
    let result = audit::audit(&splits, &settings)?;
    if let Some(path) = &args.csv {
        xfer::util::atomic::write_atomic(path, |w| result.write_csv(w))?;
    }
    if let (Some(page), Some(dir)) = (&page, &args.report) {
        let html = audit::html::page(&result, &splits, args.image_root.as_deref());
        write_report_page(dir, page, &html)?;
    }
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        v["command"] = serde_json::json!("audit");
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    print_text(&result, args.top);
    Ok(0)
}

/// One group of files per --features (a split), its backbones split at commas.
fn groups(args: &AuditArgs) -> Result<Vec<Vec<PathBuf>>> {
    args.features
        .iter()
        .map(|v| {
            let files: Vec<PathBuf> = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
            if files.is_empty() {
                anyhow::bail!("--features {v:?} names no file");
            }
            Ok(files)
        })
        .collect()
}

fn print_text(a: &audit::Audit, top: usize) {
    println!(
        "audited {} rows in {} split(s): {}",
        a.n_rows,
        a.splits.len(),
        a.splits
            .iter()
            .map(|s| format!(
                "{} ({}{})",
                s.name,
                s.n_rows,
                if s.labelled { "" } else { ", unlabelled" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("out-of-fold probabilities: {}", a.probabilities);
    for n in &a.notes {
        println!("note: {n}");
    }
    print_duplicates(a, top);
    print_label_issues(a, top);
    println!(
        "outliers: {} (1 − mean similarity to the {} nearest above {:.4})",
        a.outliers.len(),
        a.k,
        a.outlier_fence
    );
    for o in a.outliers.iter().take(top) {
        println!("  {:.3}  {}:{}", o.score, o.row.split, o.row.path);
    }
    if a.label_issues.len() + a.duplicates.len() + a.outliers.len() > 0 {
        println!("\nnext: fix the folders (move or delete the files), extract again (--overwrite: a completed file is not updated in place), train again, audit again");
    }
}

/// Leakage across splits, then duplicates within one.
fn print_duplicates(a: &audit::Audit, top: usize) {
    let leaks = a.n_leaks();
    println!();
    if leaks > 0 {
        println!(
            "LEAKAGE: {leaks} pair(s) of the same or nearly the same image in two splits (similarity ≥ {}):",
            a.threshold
        );
    } else {
        println!(
            "leakage: no pair across splits at similarity ≥ {}",
            a.threshold
        );
    }
    let pair = |d: &audit::Duplicate| {
        println!(
            "  {:<5} {:.4}  {}:{}  ~  {}:{}{}",
            d.kind,
            d.similarity,
            d.a.split,
            d.a.path,
            d.b.split,
            d.b.path,
            if d.labels_differ {
                "  (different classes)"
            } else {
                ""
            }
        )
    };
    a.duplicates
        .iter()
        .filter(|d| d.leakage)
        .take(top)
        .for_each(pair);
    let within = a.duplicates.len() - leaks;
    println!("duplicates within a split: {within} pair(s)");
    a.duplicates
        .iter()
        .filter(|d| !d.leakage)
        .take(top)
        .for_each(pair);
}

/// Rows whose label looks wrong, best candidates first.
fn print_label_issues(a: &audit::Audit, top: usize) {
    println!(
        "label issues: {} of {} labelled rows (confident learning; ranked by {})",
        a.label_issues.len(),
        a.n_label_checked,
        match a.rank_by {
            RankBy::SelfConfidence => "self-confidence",
            RankBy::NormalizedMargin => "normalised margin",
        }
    );
    for l in a.label_issues.iter().take(top) {
        println!(
            "  {:.3}  {}:{}  given {} (p {:.2}), suggested {} (p {:.2})",
            l.score,
            l.row.split,
            l.row.path,
            l.row.label.as_deref().unwrap_or("?"),
            l.p_given,
            l.suggested,
            l.p_suggested
        );
    }
}

/// The flags and outputs, before a file is read: the report page's path, if any.
fn check(args: &AuditArgs, groups: &[Vec<PathBuf>]) -> Result<Option<PathBuf>> {
    for f in groups.iter().flatten() {
        if !f.exists() {
            anyhow::bail!(
                "{} does not exist; create it with `xfer extract`",
                f.display()
            );
        }
    }
    if args.cv < 2 {
        anyhow::bail!("--cv needs at least 2 folds, got {}", args.cv);
    }
    if let Some(csv) = &args.csv {
        check_output("--csv", csv, args.overwrite)?;
    }
    let page = match &args.report {
        Some(dir) => Some(report_page(dir, "audit.html", args.overwrite)?),
        None => None,
    };
    Ok(page)
}
