//! The data of a training run: the training feature files loaded and
//! concatenated, labels checked, and the validation rows (separate files, or
//! a stratified split of the training rows).

use std::path::PathBuf;
use std::time::Instant;

use crate::bundle::check_backbones;
use crate::error::Result;
use crate::features::{self, FeatureSet};
use crate::train::plan::{TrainPlan, Validation};
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
    pub fn load(plan: &TrainPlan) -> Result<TrainingData> {
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
        let (train_rows, val_rows, val, val_labels) = match &plan.validation {
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
                check_backbones(&train.backbones, &val.backbones, "the validation features")?;
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
            Validation::None => (all_train, Vec::new(), None, Vec::new()),
        };
        if val_rows.is_empty() {
            warnings.push("no validation data (pass --val or --val-split): the best epoch cannot be chosen, the last one is kept".into());
        }
        Ok(TrainingData {
            train,
            train_labels,
            train_rows,
            val,
            val_labels,
            val_rows,
            class_names,
            warnings,
            load_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    pub fn train_rows(&self) -> Rows<'_> {
        Rows {
            x: self.train.data.view(),
            labels: &self.train_labels,
            rows: &self.train_rows,
        }
    }

    pub fn val_rows(&self) -> Option<Rows<'_>> {
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
