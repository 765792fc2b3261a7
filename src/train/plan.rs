//! The training plan: every setting of a training run, checked before any
//! feature file is read, so a bad flag fails in milliseconds.

use std::path::PathBuf;

use serde_json::json;

use crate::error::{Error, Result};
use crate::head::mlp::MlpConfig;
use crate::train::TrainConfig;

/// Where validation rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Validation {
    /// None: the last epoch is kept.
    None,
    /// Feature files, one per backbone in the training files' order.
    Files(Vec<PathBuf>),
    /// A stratified, seeded fraction of the training rows.
    Split(f64),
}

/// The MLP head's shape (its input and output widths come from the data).
#[derive(Debug, Clone, PartialEq)]
pub struct MlpPlan {
    pub hidden: Vec<usize>,
    pub dropout: f32,
    /// Dropout before the first Linear too (the tutorial's text; its code has none).
    pub input_dropout: bool,
    /// Standardise the features (fitted on the training rows) before the MLP.
    pub standardize: bool,
}

impl MlpPlan {
    /// The architecture for `n_features` inputs and `n_classes` outputs.
    pub fn config(&self, n_features: usize, n_classes: usize) -> MlpConfig {
        MlpConfig {
            n_features,
            hidden: self.hidden.clone(),
            n_classes,
            dropout: self.dropout,
            input_dropout: self.input_dropout,
        }
    }
}

/// The logistic baseline's settings (scikit-learn's names).
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticPlan {
    /// Inverse L2 strength.
    pub c: f32,
    pub max_iterations: u64,
}

/// Everything a training run needs to know.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    /// One feature file per backbone, concatenated in this order.
    pub train_files: Vec<PathBuf>,
    pub validation: Validation,
    /// Train the MLP head (None: do not).
    pub mlp: Option<MlpPlan>,
    /// Train the logistic baseline (None: do not).
    pub logistic: Option<LogisticPlan>,
    /// How the MLP is optimised; its seed also seeds the validation split.
    pub config: TrainConfig,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Config(reason.into())
}

impl TrainPlan {
    /// Checks the plan as a whole; the architecture is checked with
    /// [`MlpConfig::validate`] on placeholder widths (the real ones come from the data).
    pub fn validate(&self) -> Result<()> {
        if self.mlp.is_none() && self.logistic.is_none() {
            return Err(invalid(
                "no head to train; choose --head mlp, logistic or both",
            ));
        }
        let val_files: &[PathBuf] = match &self.validation {
            Validation::Files(f) => f,
            _ => &[],
        };
        for f in self.train_files.iter().chain(val_files) {
            if !f.exists() {
                return Err(invalid(format!(
                    "{} does not exist; create it with `xfer extract`",
                    f.display()
                )));
            }
        }
        match &self.validation {
            Validation::Files(f) if f.len() != self.train_files.len() => {
                return Err(invalid(format!(
                    "{} training file(s) but {} validation file(s): give one validation file per backbone, in the same order",
                    self.train_files.len(),
                    f.len()
                )))
            }
            Validation::Split(f) if !(*f > 0.0 && *f < 1.0) => {
                return Err(invalid(format!(
                    "--val-split must be between 0 and 1 (e.g. 0.1), got {f}"
                )))
            }
            Validation::None if self.config.patience.is_some() => {
                return Err(invalid(
                    "--patience needs validation data: pass --val or --val-split",
                ))
            }
            _ => {}
        }
        self.config.validate()?;
        if let Some(m) = &self.mlp {
            m.config(1, 2).validate()?;
        }
        if let Some(l) = &self.logistic {
            if !(l.c > 0.0 && l.c.is_finite()) {
                return Err(invalid(format!(
                    "--logistic-c must be positive, got {}",
                    l.c
                )));
            }
        }
        Ok(())
    }

    /// The training configuration a bundle records, with the head's own part.
    pub fn training_json(&self, head: serde_json::Value) -> serde_json::Value {
        let (val_files, val_split) = match &self.validation {
            Validation::Files(f) => (f.clone(), None),
            Validation::Split(s) => (Vec::new(), Some(*s)),
            Validation::None => (Vec::new(), None),
        };
        json!({
            "train_files": self.train_files,
            "val_files": val_files,
            "val_split": val_split,
            "seed": self.config.seed,
            "head": head,
        })
    }
}
