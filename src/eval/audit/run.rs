//! The audit itself: loading the splits, the out-of-fold probabilities, and
//! the three checks. Nothing here prints.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ndarray::{s, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::confident::{self, RankBy};
use super::neighbors;
use super::oof::{self, OutOfFold};
use crate::error::{Error, Next, Result};
use crate::features::{self, FeatureSet};
use crate::ship::bundle::check_backbones;

/// One split (train, validation, test…): its feature files (one per backbone) loaded.
pub(crate) struct Split {
    /// Its name: the first file's stem without the backbone's name (`train`).
    pub(crate) name: String,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) set: FeatureSet,
    /// Class index per row; None for an unlabelled split (all labels −1).
    pub(crate) labels: Option<Vec<usize>>,
}

/// Every split, checked against the others.
pub struct Splits {
    pub(crate) splits: Vec<Split>,
    pub(crate) class_names: Vec<String>,
    pub warnings: Vec<String>,
}

fn audit_err(reason: impl Into<String>) -> Error {
    Error::Audit {
        reason: reason.into(),
        next: None,
    }
}

/// An audit refused, and what would get past it.
fn refused(reason: impl Into<String>, next: Next) -> Error {
    Error::Audit {
        reason: reason.into(),
        next: Some(next),
    }
}

fn split_name(files: &[PathBuf], backbone: &str) -> String {
    let stem = files[0]
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = format!("_{backbone}");
    match stem.strip_suffix(&suffix) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => stem,
    }
}

impl Splits {
    /// Loads each group of files (one group per split, one file per backbone)
    /// and checks that the splits come from the same backbones and classes.
    pub fn load(groups: &[Vec<PathBuf>]) -> Result<Splits> {
        if groups.is_empty() {
            return Err(refused("no feature file given", Next::GiveFeatures));
        }
        let mut seen: Vec<&PathBuf> = Vec::new();
        for f in groups.iter().flatten() {
            if seen.contains(&f) {
                return Err(refused(
                    format!("{} is given twice", f.display()),
                    Next::GiveEachSplitOnce,
                ));
            }
            seen.push(f);
        }
        let mut splits: Vec<Split> = Vec::new();
        let mut warnings = Vec::new();
        let mut class_names: Option<Vec<String>> = None;
        for files in groups {
            let set = features::load(files)?;
            warnings.extend(set.warnings.iter().cloned());
            let mut name = split_name(files, &set.backbones[0].name);
            if splits.iter().any(|s| s.name == name) {
                name = format!("{name}#{}", splits.len() + 1);
            }
            if let Some(first) = splits.first() {
                let notes = check_backbones(
                    &first.set.backbones,
                    &set.backbones,
                    &format!("the features of split `{name}`"),
                )
                .map_err(|e| {
                    audit_err(format!(
                        "splits `{}` and `{name}` come from different backbones: {e}",
                        first.name
                    ))
                })?;
                warnings.extend(notes);
            }
            let what = format!(
                "features of split `{name}` ({})",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let unlabelled = set.labels.iter().all(|&l| l == -1);
            match (&class_names, set.class_names.as_deref()) {
                (Some(c), Some(o)) if c.as_slice() != o => {
                    return Err(audit_err(format!(
                        "split `{name}` records classes {o:?}, but split `{}` records {c:?}: they come from different datasets; audit splits extracted from folders with the same class folders",
                        splits[0].name
                    )))
                }
                (None, Some(o)) if !unlabelled => class_names = Some(o.to_vec()),
                _ => {}
            }
            if class_names.is_none() && !unlabelled {
                let n = set.labels.iter().copied().max().unwrap_or(-1).max(0) as usize + 1;
                class_names = Some((0..n).map(|k| k.to_string()).collect());
            }
            let labels = if unlabelled {
                None
            } else {
                let n = class_names.as_ref().map_or(0, Vec::len);
                let rn = |r: usize| set.row_name(r);
                Some(features::eval_labels(set.labels.view(), n, &what, &rn)?)
            };
            splits.push(Split {
                name,
                files: files.clone(),
                set,
                labels,
            });
        }
        // The same image (path under the same root) in two splits is one dataset given twice.
        for (a, sa) in splits.iter().enumerate() {
            for sb in &splits[a + 1..] {
                if let (Some(pa), Some(pb), Some(ra), Some(rb)) = (
                    &sa.set.paths,
                    &sb.set.paths,
                    &sa.set.dataset_root,
                    &sb.set.dataset_root,
                ) {
                    if ra == rb && !pa.is_empty() && pa == pb {
                        return Err(refused(
                            format!(
                                "splits `{}` and `{}` hold the same images of {}: they are one split given twice (e.g. two backbones' files of one split)",
                                sa.name,
                                sb.name,
                                ra.display()
                            ),
                            Next::GiveSplitBackbonesTogether,
                        ));
                    }
                }
            }
        }
        let class_names = class_names.unwrap_or_default();
        Ok(Splits {
            splits,
            class_names,
            warnings,
        })
    }

    pub(crate) fn n_rows(&self) -> usize {
        self.splits.iter().map(|s| s.set.n_samples()).sum()
    }

    /// The first global row of each split.
    pub(crate) fn offsets(&self) -> Vec<usize> {
        let mut o = Vec::with_capacity(self.splits.len());
        let mut at = 0;
        for s in &self.splits {
            o.push(at);
            at += s.set.n_samples();
        }
        o
    }

    /// (split, row in split) of a global row.
    pub(crate) fn locate(&self, g: usize) -> (usize, usize) {
        let mut at = 0;
        for (i, s) in self.splits.iter().enumerate() {
            if g < at + s.set.n_samples() {
                return (i, g - at);
            }
            at += s.set.n_samples();
        }
        panic!("row {g} is past the last split")
    }

    /// Every split's rows scaled for cosine similarity: each backbone's
    /// block of features to unit length, divided by √(backbones), so that
    /// every backbone weighs the same whatever the scale of its features.
    ///
    /// # Shapes
    /// → [n_rows, n_features]
    pub(crate) fn unit_rows(&self) -> Array2<f32> {
        let widths: Vec<usize> = self.splits[0]
            .set
            .backbones
            .iter()
            .map(|b| b.n_features)
            .collect();
        let views: Vec<ArrayView2<f32>> = self.splits.iter().map(|s| s.set.data.view()).collect();
        let mut x = ndarray::concatenate(Axis(0), &views).expect("same widths (checked)");
        let scale = 1.0 / (widths.len() as f32).sqrt();
        let mut col = 0;
        for w in widths {
            let block = x.slice(s![.., col..col + w]);
            let unit = neighbors::normalize_rows(block) * scale;
            x.slice_mut(s![.., col..col + w]).assign(&unit);
            col += w;
        }
        x
    }

    fn path(&self, s: usize, r: usize) -> String {
        match &self.splits[s].set.paths {
            Some(p) => p[r].clone(),
            None => format!("row {r}"),
        }
    }

    fn label_name(&self, s: usize, r: usize) -> Option<String> {
        self.splits[s]
            .labels
            .as_ref()
            .map(|l| self.class_names[l[r]].clone())
    }

    /// A row as the results name it.
    pub(crate) fn row_ref(&self, g: usize) -> RowRef {
        let (s, r) = self.locate(g);
        RowRef {
            split: self.splits[s].name.clone(),
            row: r,
            path: self.path(s, r),
            label: self.label_name(s, r),
        }
    }

    /// The image file of a global row, when the split records paths and a root.
    pub(crate) fn image_file(&self, g: usize, image_root: Option<&Path>) -> Option<PathBuf> {
        let (s, r) = self.locate(g);
        let set = &self.splits[s].set;
        let root = image_root
            .map(Path::to_path_buf)
            .or_else(|| set.dataset_root.clone())?;
        let rel = set.paths.as_ref()?.get(r)?;
        Some(crate::eval::report::thumbs::image_path(&root, rel))
    }
}

/// Where the out-of-fold probabilities come from.
pub enum ProbSource<'a> {
    /// A training run's `out_of_fold.json` (and which head: None = the recommended one).
    Run(&'a Path, Option<&'a str>),
    /// Cross-validate the default logistic head here, with this many folds at most.
    Logistic { folds: usize, seed: u64 },
}

/// What the audit was asked to do.
pub struct Settings<'a> {
    pub probs: ProbSource<'a>,
    /// Cosine similarity at or above which rows are near-duplicates.
    pub threshold: f32,
    /// Neighbours per row for the outlier score.
    pub k: usize,
    pub rank_by: RankBy,
    /// Hash the image files to find exact duplicates (when they can be read).
    pub hash_files: bool,
    /// Where the images are now, when they moved since extraction.
    pub image_root: Option<&'a Path>,
}

/// A row, as the results name it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowRef {
    pub split: String,
    /// The row in its split's feature file.
    pub(crate) row: usize,
    /// The image, relative to the dataset root.
    pub path: String,
    /// Its given class; None in an unlabelled split.
    pub label: Option<String>,
}

/// A row whose label is probably wrong.
#[derive(Debug, Clone, Serialize)]
pub struct LabelIssue {
    #[serde(flatten)]
    pub row: RowRef,
    /// The most probable class out of fold.
    pub suggested: String,
    /// Out-of-fold probability of the given class.
    pub p_given: f32,
    /// Out-of-fold probability of the suggested class.
    pub p_suggested: f32,
    /// The ranking score (self-confidence or normalised margin), lowest first.
    pub score: f32,
    /// Global row (for the report).
    #[serde(skip)]
    pub(crate) global: usize,
}

/// Two rows that are the same image, or nearly.
#[derive(Debug, Clone, Serialize)]
pub struct Duplicate {
    /// `exact` (the same bytes) or `near` (similar features).
    pub kind: &'static str,
    /// The two rows are in different splits.
    pub leakage: bool,
    /// Cosine similarity of their features.
    pub similarity: f32,
    pub a: RowRef,
    pub b: RowRef,
    /// The two rows have different given classes.
    pub labels_differ: bool,
    #[serde(skip)]
    pub(crate) global: (usize, usize),
}

/// A row far from every other.
#[derive(Debug, Clone, Serialize)]
pub struct Outlier {
    #[serde(flatten)]
    pub row: RowRef,
    /// 1 − the mean cosine similarity to its k nearest rows.
    pub score: f32,
    /// Its nearest row.
    pub(crate) nearest: Option<RowRef>,
    #[serde(skip)]
    pub(crate) global: usize,
}

/// Timings of the parts, in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Timings {
    pub(crate) probabilities: f64,
    pub(crate) label_issues: f64,
    pub(crate) neighbours: f64,
    pub(crate) hashing: f64,
}

/// Everything the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub splits: Vec<SplitSummary>,
    pub(crate) classes: Vec<String>,
    pub n_rows: usize,
    /// Where the out-of-fold probabilities came from, in words.
    pub probabilities: String,
    /// Rows whose labels were checked.
    pub n_label_checked: usize,
    pub rank_by: RankBy,
    pub label_issues: Vec<LabelIssue>,
    pub threshold: f32,
    /// Leakage first, then the most similar.
    pub duplicates: Vec<Duplicate>,
    pub k: usize,
    /// Outlier scores above this (Q3 + 1.5 IQR of all rows' scores) are flagged.
    pub outlier_fence: f32,
    pub outliers: Vec<Outlier>,
    /// Files hashed for exact duplicates, and those that could not be read.
    pub(crate) files_hashed: usize,
    pub(crate) files_unreadable: usize,
    /// Things the user should know.
    pub notes: Vec<String>,
    pub(crate) seconds: Timings,
}

/// One split in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub name: String,
    pub(crate) files: Vec<PathBuf>,
    pub n_rows: usize,
    pub labelled: bool,
}

/// Out-of-fold probabilities for some global rows.
pub(crate) struct Probabilities {
    /// [rows.len(), n_classes]
    pub(crate) probs: Array2<f32>,
    /// The global rows they belong to.
    pub(crate) rows: Vec<usize>,
    pub(crate) describe: String,
}

/// Checks that a run's out-of-fold rows are one split's rows; the split's index.
fn match_run(splits: &Splits, oof: &OutOfFold, dir: &Path) -> Result<usize> {
    let run = dir.display();
    if oof.classes != splits.class_names {
        return Err(refused(
            format!(
                "the run {run} was trained on classes {:?}, the features record {:?}",
                oof.classes, splits.class_names
            ),
            Next::AuditTrainedFeaturesOrWithoutRun,
        ));
    }
    // Notes on another precision are left out: the audit takes the run's own
    // out-of-fold probabilities, which the features' precision does not enter.
    let _notes = check_backbones(
        &oof.backbones,
        &splits.splits[0].set.backbones,
        "the features",
    )
    .map_err(|e| audit_err(format!("the run {run} does not match the features: {e}")))?;
    let mut why = Vec::new();
    for (i, s) in splits.splits.iter().enumerate() {
        let Some(labels) = &s.labels else { continue };
        match (&oof.paths, &s.set.paths) {
            (Some(rp), Some(sp)) if rp == sp && &oof.labels == labels => return Ok(i),
            (Some(rp), Some(sp)) => {
                let have: std::collections::HashSet<&String> = sp.iter().collect();
                let had: std::collections::HashSet<&String> = rp.iter().collect();
                let new = have.difference(&had).count();
                let gone = had.difference(&have).count();
                let relabelled = if new == 0 && gone == 0 {
                    let pos: HashMap<&String, usize> =
                        sp.iter().enumerate().map(|(r, p)| (p, r)).collect();
                    rp.iter()
                        .zip(&oof.labels)
                        .filter(|(p, &l)| labels[pos[p]] != l)
                        .count()
                } else {
                    0
                };
                why.push(format!(
                    "split `{}`: {} rows against the run's {}{}{}{}",
                    s.name,
                    sp.len(),
                    rp.len(),
                    if new == sp.len() {
                        ", no image in common".to_string()
                    } else if new > 0 {
                        format!(", {new} images new since the run")
                    } else {
                        String::new()
                    },
                    if gone > 0 && new < sp.len() {
                        format!(", {gone} of the run's images gone")
                    } else {
                        String::new()
                    },
                    if relabelled > 0 {
                        format!(", {relabelled} images with another class")
                    } else if new == 0 && gone == 0 {
                        ", in another order".into()
                    } else {
                        String::new()
                    }
                ));
            }
            _ => {
                if s.set.n_samples() == oof.labels.len() && &oof.labels == labels {
                    return Ok(i);
                }
                why.push(format!(
                    "split `{}`: {} rows against the run's {} (no paths recorded; rows are matched by count and labels)",
                    s.name,
                    s.set.n_samples(),
                    oof.labels.len()
                ));
            }
        }
    }
    Err(refused(
        format!(
            "the run {run}'s folds do not match the features: no split holds the {} rows it was trained on ({})",
            oof.labels.len(),
            why.join("; ")
        ),
        Next::TrainAgainOrWithoutRun,
    ))
}

/// The out-of-fold probabilities of the labelled rows, by the default
/// logistic head (C by cross-validation, as `xfer train` chooses it, then
/// temperature-scaled), cross-validated over every labelled row of every split.
fn logistic_oof(
    splits: &Splits,
    x: ArrayView2<f32>,
    folds: usize,
    seed: u64,
) -> Result<Probabilities> {
    use crate::train::head::logistic;
    let offsets = splits.offsets();
    let mut rows = Vec::new();
    let mut labels = vec![0usize; x.nrows()];
    for (s, split) in splits.splits.iter().enumerate() {
        if let Some(l) = &split.labels {
            for (r, &c) in l.iter().enumerate() {
                rows.push(offsets[s] + r);
                labels[offsets[s] + r] = c;
            }
        }
    }
    let n_classes = splits.class_names.len();
    let y: Vec<usize> = rows.iter().map(|&g| labels[g]).collect();
    let mut counts = vec![0usize; n_classes];
    for &c in &y {
        counts[c] += 1;
    }
    let k = counts.iter().copied().min().unwrap_or(0).min(folds);
    let fold_of = features::stratified_folds(&y, n_classes, k, seed);
    let cs = logistic::default_cs();
    let config = logistic::LogisticConfig {
        alpha: 1.0,
        max_iterations: 100,
        ..Default::default()
    };
    let path = logistic::cross_validate(
        x, &labels, &rows, &fold_of, k, n_classes, &cs, &config, None,
    )
    .map_err(|e| audit_err(format!("cross-validating the logistic head: {e}")))?;
    let t = crate::train::head::calibrate::fit_temperature(path.oof_logits.view(), &y);
    let probs = crate::train::head::softmax_rows((&path.oof_logits / t.t).view());
    Ok(Probabilities {
        probs,
        rows,
        describe: format!(
            "computed here: the default logistic head (standardised features, C = {:.4} by {k}-fold cross-validation, temperature {:.3}), stratified {k}-fold over the {} labelled rows of all splits (pass --run DIR after `xfer train` to use the run's own)",
            path.cs[path.best],
            t.t,
            y.len()
        ),
    })
}

/// SHA-256 of every readable image file: (global row, digest).
fn hash_files(splits: &Splits, root: Option<&Path>) -> (Vec<(usize, [u8; 32])>, usize) {
    let files: Vec<(usize, PathBuf)> = (0..splits.n_rows())
        .filter_map(|g| splits.image_file(g, root).map(|p| (g, p)))
        .collect();
    let hashed: Vec<Option<(usize, [u8; 32])>> = files
        .par_iter()
        .map(|(g, p)| {
            let bytes = std::fs::read(p).ok()?;
            Some((*g, Sha256::digest(&bytes).into()))
        })
        .collect();
    let unreadable =
        hashed.iter().filter(|h| h.is_none()).count() + (splits.n_rows() - files.len());
    (hashed.into_iter().flatten().collect(), unreadable)
}

/// The first and third quartiles (linear interpolation, as numpy's default).
fn quartiles(v: &[f32]) -> (f32, f32) {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    let q = |p: f64| {
        if s.is_empty() {
            return 0.0;
        }
        let h = p * (s.len() - 1) as f64;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (h - lo as f64) as f32
    };
    (q(0.25), q(0.75))
}

/// Runs the audit.
pub fn audit(splits: &Splits, settings: &Settings) -> Result<Audit> {
    let n = splits.n_rows();
    let mut notes = Vec::new();
    let mut seconds = Timings::default();
    if !(settings.threshold > 0.0 && settings.threshold <= 1.0) {
        return Err(Error::Setting {
            setting: crate::error::Setting::Threshold,
            problem: format!(
                "must be in (0, 1] (a cosine similarity; the default is {}), got {}",
                super::DEFAULT_THRESHOLD,
                settings.threshold
            ),
        });
    }
    let labelled = count_labelled(splits)?;
    // Out-of-fold probabilities.
    let t0 = std::time::Instant::now();
    let x = splits.unit_rows(); // [n, d]
    let probs = probabilities(splits, &settings.probs, labelled, &mut notes)?;
    seconds.probabilities = t0.elapsed().as_secs_f64();
    // Label issues.
    let t1 = std::time::Instant::now();
    let (label_issues, n_label_checked) = match &probs {
        Some(p) => label_issues(splits, p, settings.rank_by),
        None => (Vec::new(), 0),
    };
    seconds.label_issues = t1.elapsed().as_secs_f64();
    // Neighbours: near-duplicates and outliers.
    let t2 = std::time::Instant::now();
    let k = settings.k.min(n.saturating_sub(1));
    let nb = neighbors::search(x.view(), k, settings.threshold);
    seconds.neighbours = t2.elapsed().as_secs_f64();
    if nb.truncated {
        notes.push(format!(
            "more than {} pairs are at or above similarity {}: only the most similar are listed; raise --threshold",
            neighbors::MAX_PAIRS,
            settings.threshold
        ));
    }
    // Exact duplicates by content.
    let t3 = std::time::Instant::now();
    let (hashes, unreadable) = if settings.hash_files {
        hash_files(splits, settings.image_root)
    } else {
        (Vec::new(), 0)
    };
    seconds.hashing = t3.elapsed().as_secs_f64();
    if settings.hash_files && unreadable > 0 {
        notes.push(format!(
            "{unreadable} of {n} image files could not be read (moved? pass --image-root): exact duplicates among them are found by their features only"
        ));
    }
    let duplicates = duplicates(splits, x.view(), &nb, &exact_pairs(&hashes));
    let (outliers, fence) = outliers(splits, &nb, k);
    Ok(Audit {
        splits: split_summaries(splits),
        classes: splits.class_names.clone(),
        n_rows: n,
        probabilities: probs.map_or_else(|| "none (no labelled split)".into(), |p| p.describe),
        n_label_checked,
        rank_by: settings.rank_by,
        label_issues,
        threshold: settings.threshold,
        duplicates,
        k,
        outlier_fence: fence,
        outliers,
        files_hashed: hashes.len(),
        files_unreadable: unreadable,
        notes,
        seconds,
    })
}

/// The number of labelled rows; refused when a class has fewer than two.
fn count_labelled(splits: &Splits) -> Result<usize> {
    // Classes with fewer than two labelled rows cannot be held out and predicted.
    let mut counts = vec![0usize; splits.class_names.len()];
    for l in splits.splits.iter().filter_map(|s| s.labels.as_ref()) {
        for &c in l {
            counts[c] += 1;
        }
    }
    let labelled: usize = counts.iter().sum();
    if labelled > 0 {
        let thin: Vec<String> = counts
            .iter()
            .zip(&splits.class_names)
            .filter(|(&c, _)| c < 2)
            .map(|(c, name)| format!("{name} ({c})"))
            .collect();
        if !thin.is_empty() {
            return Err(audit_err(format!(
                "class(es) {} have fewer than 2 labelled images: out-of-fold probabilities need at least 2 per class (one to hold out, one to learn from); add images of them, or remove their folders and extract again",
                thin.join(", ")
            )));
        }
    }
    Ok(labelled)
}

/// The out-of-fold probabilities from where the settings say; none without labelled rows.
fn probabilities(
    splits: &Splits,
    source: &ProbSource,
    labelled: usize,
    notes: &mut Vec<String>,
) -> Result<Option<Probabilities>> {
    if labelled == 0 {
        notes.push("no split is labelled: label issues are not checked".into());
        return Ok(None);
    }
    Ok(Some(match *source {
        ProbSource::Run(dir, head) => run_probabilities(splits, dir, head, notes)?,
        ProbSource::Logistic { folds, seed } => {
            // The logistic head learns from the features as extracted, not the unit rows.
            let views: Vec<ArrayView2<f32>> =
                splits.splits.iter().map(|s| s.set.data.view()).collect();
            let raw = ndarray::concatenate(Axis(0), &views).expect("same widths (checked)");
            logistic_oof(splits, raw.view(), folds, seed)?
        }
    }))
}

/// The out-of-fold probabilities of a training run's head, on the split it was trained on.
fn run_probabilities(
    splits: &Splits,
    dir: &Path,
    head: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Probabilities> {
    let oof = OutOfFold::read(dir)?;
    let s = match_run(splits, &oof, dir)?;
    let h = oof.head(head)?;
    let off = splits.offsets()[s];
    let others: Vec<&str> = splits
        .splits
        .iter()
        .enumerate()
        .filter(|&(i, sp)| i != s && sp.labels.is_some())
        .map(|(_, sp)| sp.name.as_str())
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "the run's out-of-fold probabilities cover split `{}` only: the labels of {} are not checked (leave out --run to check every split's labels with a logistic head cross-validated over all of them)",
            splits.splits[s].name,
            others.join(", ")
        ));
    }
    Ok(Probabilities {
        probs: oof::matrix(h),
        rows: (off..off + oof.labels.len()).collect(),
        describe: format!(
            "from the run {}: the {} head's out-of-fold probabilities ({}-fold, temperature {:.3}) on split `{}`",
            dir.display(),
            h.kind,
            oof.n_folds,
            h.temperature,
            splits.splits[s].name
        ),
    })
}

/// The rows whose given label the probabilities doubt, ranked; with the number of rows checked.
fn label_issues(splits: &Splits, p: &Probabilities, rank_by: RankBy) -> (Vec<LabelIssue>, usize) {
    let labels: Vec<usize> = p
        .rows
        .iter()
        .map(|&g| {
            let (s, r) = splits.locate(g);
            splits.splits[s].labels.as_ref().expect("labelled")[r]
        })
        .collect();
    let flagged = confident::find_label_issues(p.probs.view(), &labels);
    let issues = confident::rank(p.probs.view(), &labels, &flagged, rank_by)
        .into_iter()
        .map(|i| {
            let (suggested, p_suggested) = crate::train::head::argmax(p.probs.row(i));
            LabelIssue {
                row: splits.row_ref(p.rows[i]),
                suggested: splits.class_names[suggested].clone(),
                p_given: p.probs[[i, labels[i]]],
                p_suggested,
                score: confident::quality(p.probs.view(), &labels, i, rank_by),
                global: p.rows[i],
            }
        })
        .collect();
    (issues, labels.len())
}

/// The pairs of global rows (lower first) whose files have the same digest.
fn exact_pairs(hashes: &[(usize, [u8; 32])]) -> HashSet<(usize, usize)> {
    let mut by_hash: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
    for (g, h) in hashes {
        by_hash.entry(*h).or_default().push(*g);
    }
    let mut exact: HashSet<(usize, usize)> = Default::default();
    for rows in by_hash.values().filter(|r| r.len() > 1) {
        for (i, &a) in rows.iter().enumerate() {
            for &b in &rows[i + 1..] {
                exact.insert((a.min(b), a.max(b)));
            }
        }
    }
    exact
}

/// The near pairs and the exact ones, leaks first, then exact, then the most similar.
fn duplicates(
    splits: &Splits,
    x: ArrayView2<f32>,
    nb: &neighbors::Neighbours,
    exact: &HashSet<(usize, usize)>,
) -> Vec<Duplicate> {
    let mut pairs: Vec<(usize, usize, f32)> = nb
        .pairs
        .iter()
        .map(|&(a, b, s)| (a as usize, b as usize, s))
        .collect();
    let listed: HashSet<(usize, usize)> = pairs.iter().map(|p| (p.0, p.1)).collect();
    for &(a, b) in exact {
        if !listed.contains(&(a, b)) {
            pairs.push((a, b, x.row(a).dot(&x.row(b))));
        }
    }
    let mut duplicates: Vec<Duplicate> = pairs
        .into_iter()
        .map(|(a, b, sim)| {
            let (ra, rb) = (splits.row_ref(a), splits.row_ref(b));
            Duplicate {
                kind: if exact.contains(&(a, b)) {
                    "exact"
                } else {
                    "near"
                },
                leakage: ra.split != rb.split,
                similarity: sim,
                labels_differ: ra.label.is_some() && rb.label.is_some() && ra.label != rb.label,
                a: ra,
                b: rb,
                global: (a, b),
            }
        })
        .collect();
    duplicates.sort_by(|p, q| {
        q.leakage
            .cmp(&p.leakage)
            .then((q.kind == "exact").cmp(&(p.kind == "exact")))
            .then(q.similarity.total_cmp(&p.similarity))
            .then(p.global.cmp(&q.global))
    });
    duplicates
}

/// Outliers: 1 − mean similarity to the k nearest rows, flagged above Q3 +
/// 1.5 IQR, most outlying first; with the fence.
fn outliers(splits: &Splits, nb: &neighbors::Neighbours, k: usize) -> (Vec<Outlier>, f32) {
    let scores: Vec<f32> = nb
        .topk
        .iter()
        .map(|t| {
            if t.items.is_empty() {
                0.0
            } else {
                1.0 - t.items.iter().map(|p| p.0).sum::<f32>() / t.items.len() as f32
            }
        })
        .collect();
    let (q1, q3) = quartiles(&scores);
    let fence = q3 + 1.5 * (q3 - q1);
    let mut out_rows: Vec<usize> = (0..splits.n_rows())
        .filter(|&g| k > 0 && scores[g] > fence)
        .collect();
    out_rows.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let outliers = out_rows
        .into_iter()
        .map(|g| Outlier {
            row: splits.row_ref(g),
            score: scores[g],
            nearest: nb.topk[g]
                .items
                .first()
                .map(|p| splits.row_ref(p.1 as usize)),
            global: g,
        })
        .collect();
    (outliers, fence)
}

/// Each split's name, files, rows and whether it is labelled.
fn split_summaries(splits: &Splits) -> Vec<SplitSummary> {
    splits
        .splits
        .iter()
        .map(|s| SplitSummary {
            name: s.name.clone(),
            files: s.files.clone(),
            n_rows: s.set.n_samples(),
            labelled: s.labels.is_some(),
        })
        .collect()
}

impl Audit {
    /// How many duplicate pairs cross splits.
    pub fn n_leaks(&self) -> usize {
        self.duplicates.iter().filter(|d| d.leakage).count()
    }

    /// One ranked list of everything, as CSV (RFC 4180).
    pub fn write_csv(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut c = csv::Writer::from_writer(w);
        let io = |e: csv::Error| std::io::Error::other(e.to_string());
        c.write_record([
            "issue",
            "rank",
            "split",
            "path",
            "given",
            "suggested",
            "score",
            "other_split",
            "other_path",
            "other_given",
            "similarity",
        ])
        .map_err(io)?;
        let f = |v: f32| format!("{v:.6}");
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        for (i, l) in self.label_issues.iter().enumerate() {
            c.write_record([
                "label".to_string(),
                (i + 1).to_string(),
                l.row.split.clone(),
                l.row.path.clone(),
                opt(&l.row.label),
                l.suggested.clone(),
                f(l.score),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ])
            .map_err(io)?;
        }
        for (i, d) in self.duplicates.iter().enumerate() {
            let issue = match (d.leakage, d.kind) {
                (true, "exact") => "leakage_exact",
                (true, _) => "leakage_near",
                (false, "exact") => "duplicate_exact",
                _ => "duplicate_near",
            };
            c.write_record([
                issue.to_string(),
                (i + 1).to_string(),
                d.a.split.clone(),
                d.a.path.clone(),
                opt(&d.a.label),
                String::new(),
                String::new(),
                d.b.split.clone(),
                d.b.path.clone(),
                opt(&d.b.label),
                f(d.similarity),
            ])
            .map_err(io)?;
        }
        for (i, o) in self.outliers.iter().enumerate() {
            let near = o.nearest.clone();
            c.write_record([
                "outlier".to_string(),
                (i + 1).to_string(),
                o.row.split.clone(),
                o.row.path.clone(),
                opt(&o.row.label),
                String::new(),
                f(o.score),
                near.as_ref().map(|r| r.split.clone()).unwrap_or_default(),
                near.as_ref().map(|r| r.path.clone()).unwrap_or_default(),
                near.as_ref()
                    .and_then(|r| r.label.clone())
                    .unwrap_or_default(),
                String::new(),
            ])
            .map_err(io)?;
        }
        c.flush()
    }
}
