//! The data of a training run: the training feature files loaded and
//! concatenated, labels checked, and the validation rows (separate files, or
//! a stratified split of the training rows).

use std::path::PathBuf;
use std::time::Instant;

use crate::error::Result;
use crate::features::{self, FeatureSet};
use crate::ship::bundle::check_backbones;
use crate::train::plan::{Plan, Validation};
use crate::train::Rows;

/// Training (and validation) data, checked.
pub struct TrainingData {
    pub train: FeatureSet,
    /// Class index of every row of `train`.
    pub train_labels: Vec<usize>,
    /// The rows of `train` that are trained on.
    pub train_rows: Vec<usize>,
    /// Separate validation features, or None when validation is a split of `train`.
    pub val: Option<FeatureSet>,
    pub val_labels: Vec<usize>,
    /// Validation rows (of `val`, or of `train` for a split).
    pub val_rows: Vec<usize>,
    pub class_names: Vec<String>,
    /// The validation that is used (the plan's, with `Auto` resolved).
    pub validation: Validation,
    /// With [`Validation::Folds`]: the fold of each entry of `train_rows`.
    pub folds: Vec<usize>,
    /// One line saying where validation figures come from.
    pub validation_note: String,
    /// Things the user should know (from loading both splits).
    pub warnings: Vec<String>,
    pub load_seconds: f64,
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl TrainingData {
    pub fn load(plan: &Plan) -> Result<TrainingData> {
        let t0 = Instant::now();
        let train = features::load(&plan.train_files)?;
        let mut warnings = train.warnings.clone();
        let rn = |r: usize| train.row_name(r);
        let (train_labels, class_names) = features::training_labels(
            train.labels.view(),
            train.class_names.as_deref(),
            &format!("training features ({})", list(&plan.train_files)),
            &rn,
        )?;
        let all_train: Vec<usize> = (0..train.n_samples()).collect();
        let mut counts = vec![0usize; class_names.len()];
        for &l in &train_labels {
            counts[l] += 1;
        }
        let min_class = counts.iter().copied().min().unwrap_or(0);
        let validation = plan.validation.resolve(train_labels.len(), min_class);
        let mut folds = Vec::new();
        let (train_rows, val_rows, val, val_labels) = match &validation {
            Validation::Folds(k) => {
                if *k > train_labels.len() {
                    return Err(crate::Error::Setting {
                        setting: crate::error::Setting::Folds,
                        problem: format!(
                            "{k} asks for more folds than there are training rows ({})",
                            train_labels.len()
                        ),
                    });
                }
                if min_class < *k {
                    warnings.push(format!(
                        "the smallest class has {min_class} training rows, fewer than the {k} folds: some folds hold none of it"
                    ));
                }
                folds = features::stratified_folds(
                    &train_labels,
                    class_names.len(),
                    *k,
                    plan.config.seed,
                );
                (all_train, Vec::new(), None, Vec::new())
            }
            Validation::Split(frac) => {
                let (t, v) = features::stratified_split(
                    &train_labels,
                    class_names.len(),
                    *frac,
                    plan.config.seed,
                );
                (t, v, None, Vec::new())
            }
            Validation::Files(files) => {
                let val = features::load(files)?;
                warnings.extend(val.warnings.iter().cloned());
                warnings.extend(check_backbones(
                    &train.backbones,
                    &val.backbones,
                    "the validation features",
                )?);
                features::check_class_names(
                    &class_names,
                    val.class_names.as_deref(),
                    "the validation features",
                )?;
                let vrn = |r: usize| val.row_name(r);
                let labels = features::eval_labels(
                    val.labels.view(),
                    class_names.len(),
                    &format!("validation features ({})", list(files)),
                    &vrn,
                )?;
                let rows: Vec<usize> = (0..val.n_samples()).collect();
                (all_train, rows, Some(val), labels)
            }
            Validation::None | Validation::Auto => (all_train, Vec::new(), None, Vec::new()),
        };
        let auto = plan.validation == Validation::Auto;
        let validation_note = match &validation {
            Validation::Folds(k) => format!(
                "validation: stratified {k}-fold cross-validation on the {} training rows{} (C, the MLP's epochs, calibration and the recommended head come from the held-out folds; the final heads are fitted on all rows)",
                train_labels.len(),
                if auto { ", chosen because no --val, --val-split or --cv was given" } else { "" }
            ),
            Validation::Split(f) => format!(
                "validation: a stratified {:.0} % of the training rows ({} rows){}",
                100.0 * f,
                val_rows.len(),
                if auto { format!(", chosen because no --val, --val-split or --cv was given and there are more than {} rows", crate::train::plan::AUTO_CV_MAX_ROWS) } else { String::new() }
            ),
            Validation::Files(_) => format!("validation: {} rows from --val", val_rows.len()),
            Validation::None | Validation::Auto => String::new(),
        };
        if val_rows.is_empty() && folds.is_empty() {
            warnings.push(if auto {
                format!("no validation: the smallest class has {min_class} training row(s), too few for 2 folds; the last epoch is kept and nothing is calibrated")
            } else {
                "no validation data (pass --val, --val-split or --cv): the best epoch cannot be chosen, the last one is kept".into()
            });
        }
        Ok(TrainingData {
            train,
            train_labels,
            train_rows,
            val,
            val_labels,
            val_rows,
            class_names,
            validation,
            folds,
            validation_note,
            warnings,
            load_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    pub(crate) fn train_rows(&self) -> Rows<'_> {
        Rows {
            x: self.train.data.view(),
            labels: &self.train_labels,
            rows: &self.train_rows,
            views: self.train.views.as_ref().map(|v| v.view()),
        }
    }

    /// With folds: the training rows outside and inside fold `f`.
    pub(crate) fn fold_rows(&self, f: usize) -> (Vec<usize>, Vec<usize>) {
        let (mut outside, mut inside) = (Vec::new(), Vec::new());
        for (&r, &fold) in self.train_rows.iter().zip(&self.folds) {
            if fold == f {
                inside.push(r);
            } else {
                outside.push(r);
            }
        }
        (outside, inside)
    }

    /// The number of folds (0 without cross-validation).
    pub fn n_folds(&self) -> usize {
        match self.validation {
            Validation::Folds(k) => k,
            _ => 0,
        }
    }

    pub fn val_rows(&self) -> Option<Rows<'_>> {
        if self.val_rows.is_empty() {
            return None;
        }
        Some(match &self.val {
            // Validation uses the centre view (`data`) only.
            Some(v) => Rows {
                x: v.data.view(),
                labels: &self.val_labels,
                rows: &self.val_rows,
                views: None,
            },
            None => Rows {
                x: self.train.data.view(),
                labels: &self.train_labels,
                rows: &self.val_rows,
                views: None,
            },
        })
    }
}
