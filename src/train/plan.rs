//! The training plan: every setting of a training run, checked before any
//! feature file is read, so a bad flag fails in milliseconds.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{Error, Result, Setting};
use crate::train::head::mlp::MlpConfig;
use crate::train::head::optim::{AdamConfig, LrSchedule, OptimizerConfig, SgdConfig};
use crate::train::TrainConfig;

/// Where validation rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Validation {
    /// Chosen from the data when it is loaded ([`Validation::resolve`]):
    /// stratified k-fold cross-validation up to [`AUTO_CV_MAX_ROWS`] rows
    /// (k = 5, fewer when a class has fewer rows), a 10 % split above.
    Auto,
    /// None: the last epoch is kept, nothing is calibrated or compared.
    None,
    /// Feature files, one per backbone in the training files' order.
    Files(Vec<PathBuf>),
    /// A stratified, seeded fraction of the training rows.
    Split(f64),
    /// Stratified k-fold cross-validation on the training rows: settings
    /// (C, the MLP's epochs), calibration and the recommended head come from
    /// the held-out folds; the final heads are fitted on all rows.
    Folds(usize),
}

/// Most training rows for which [`Validation::Auto`] cross-validates.
pub(crate) const AUTO_CV_MAX_ROWS: usize = 10_000;

impl Validation {
    /// What [`Validation::Auto`] becomes for `n_rows` rows whose smallest
    /// class has `min_class` rows; other kinds stay as they are.
    pub(crate) fn resolve(&self, n_rows: usize, min_class: usize) -> Validation {
        match self {
            Validation::Auto if n_rows <= AUTO_CV_MAX_ROWS => {
                let k = min_class.min(5);
                if k >= 2 {
                    Validation::Folds(k)
                } else {
                    Validation::None
                }
            }
            Validation::Auto => Validation::Split(0.1),
            v => v.clone(),
        }
    }
}

/// A named set of defaults for every head setting (flags override them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Robust from 50 to 100,000 images: standardised features, AdamW with a
    /// cosine schedule over a budget of optimiser steps, early stopping with
    /// the best weights restored, C chosen by cross-validation, temperature
    /// scaling, validation chosen from the data.
    #[default]
    Default,
    /// The tutorial's method-3 settings exactly: SGD lr 1e-3, batch 64, 20
    /// epochs, no early stopping, raw features, C = 1, no calibration.
    Tutorial,
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
    /// A budget in optimiser steps: the epochs are `steps / batches per
    /// epoch`, within [[`MIN_EPOCHS`], the configured epochs]. None: exactly
    /// the configured epochs.
    pub steps: Option<usize>,
    /// Early-stopping patience from the epochs (`max(10, epochs / 5)`) when
    /// there is validation data and none was given.
    pub auto_patience: bool,
}

/// Fewest epochs a step budget gives.
pub(crate) const MIN_EPOCHS: usize = 10;

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
    /// Inverse L2 strength; None: chosen by stratified k-fold cross-validation
    /// on log loss over `logspace(-4, 4, 10)` (LogisticRegressionCV).
    pub c: Option<f32>,
    pub max_iterations: u64,
}

/// Everything a training run needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One feature file per backbone, concatenated in this order.
    pub train_files: Vec<PathBuf>,
    pub validation: Validation,
    /// Train the MLP head (None: do not).
    pub mlp: Option<MlpPlan>,
    /// Train the logistic baseline (None: do not).
    pub logistic: Option<LogisticPlan>,
    /// How the MLP is optimised; its seed also seeds the validation split
    /// and the folds. With a step budget, `epochs` is the most it may run.
    pub config: TrainConfig,
    /// Fit a temperature on held-out predictions (validation rows or folds).
    pub calibrate: bool,
    /// Weight each class by `n / (n_classes · n_c)` in the losses
    /// (scikit-learn's `class_weight="balanced"`).
    pub balanced: bool,
    pub preset: Preset,
}

/// Which heads a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Heads {
    Mlp,
    Logistic,
    #[default]
    Both,
}

/// The MLP's optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optim {
    /// `torch.optim.SGD`.
    Sgd,
    /// `torch.optim.Adam`.
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    Adamw,
}

/// The default preset's step budget and most epochs.
pub(crate) const DEFAULT_STEPS: usize = 1000;
pub(crate) const MAX_EPOCHS: usize = 300;

/// What a user chose for a run; every `None` takes the preset's value.
/// [`Plan::resolve`] makes the plan (the presets live there, nowhere else).
///
/// ```
/// use xfer::train::plan::{Choices, Plan, Preset};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let train = dir.path().join("train.h5");
/// # std::fs::write(&train, b"").unwrap(); // the plan checks that the file exists
/// let tutorial = Plan::resolve(&Choices {
///     train_files: vec![train.clone()],
///     preset: Preset::Tutorial,
///     ..Choices::default()
/// })
/// .unwrap();
/// assert_eq!(tutorial.config.batch_size, 64); // the tutorial's batch
/// assert!(!tutorial.calibrate);
///
/// let mine = Plan::resolve(&Choices {
///     train_files: vec![train],
///     batch: Some(128), // any choice overrides the preset's value
///     ..Choices::default()
/// })
/// .unwrap();
/// assert_eq!(mine.config.batch_size, 128);
/// assert!(mine.calibrate);
/// ```
#[derive(Debug, Clone)]
pub struct Choices {
    pub train_files: Vec<PathBuf>,
    /// Validation feature files, one per backbone.
    pub val_files: Vec<PathBuf>,
    /// A held-out fraction of the training rows.
    pub val_split: Option<f64>,
    /// K-fold cross-validation.
    pub cv: Option<usize>,
    pub preset: Preset,
    pub heads: Heads,
    pub epochs: Option<usize>,
    /// A budget in optimiser steps (the epochs follow from it).
    pub steps: Option<usize>,
    pub batch: Option<usize>,
    pub optim: Option<Optim>,
    pub lr: Option<f32>,
    /// SGD only.
    pub momentum: f32,
    /// SGD only.
    pub nesterov: bool,
    pub weight_decay: Option<f32>,
    /// `constant`, `cosine` or `step:EVERY:GAMMA`.
    pub lr_schedule: Option<String>,
    pub patience: Option<usize>,
    pub hidden: Option<Vec<usize>>,
    pub dropout: Option<f32>,
    /// Dropout before the first Linear too.
    pub input_dropout: bool,
    /// Standardise the MLP's features (`None`: the preset's choice).
    pub standardize: Option<bool>,
    pub logistic_c: Option<f32>,
    pub logistic_max_iterations: u64,
    /// Temperature scaling, where the preset calibrates.
    pub calibrate: bool,
    pub balanced: bool,
    pub seed: u64,
}

impl Default for Choices {
    fn default() -> Self {
        Choices {
            train_files: Vec::new(),
            val_files: Vec::new(),
            val_split: None,
            cv: None,
            preset: Preset::Default,
            heads: Heads::Both,
            epochs: None,
            steps: None,
            batch: None,
            optim: None,
            lr: None,
            momentum: 0.0,
            nesterov: false,
            weight_decay: None,
            lr_schedule: None,
            patience: None,
            hidden: None,
            dropout: None,
            input_dropout: true,
            standardize: None,
            logistic_c: None,
            logistic_max_iterations: 100,
            calibrate: true,
            balanced: false,
            seed: 0,
        }
    }
}

impl Choices {
    fn optimizer(&self, tutorial: bool) -> Result<OptimizerConfig> {
        let optim = self
            .optim
            .unwrap_or(if tutorial { Optim::Sgd } else { Optim::Adamw });
        let lr = self.lr.unwrap_or(1e-3);
        let weight_decay = self.weight_decay.unwrap_or(match optim {
            Optim::Adamw => 1e-2,
            _ => 0.0,
        });
        Ok(match optim {
            Optim::Sgd => OptimizerConfig::Sgd(SgdConfig {
                lr,
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay,
                ..SgdConfig::default()
            }),
            Optim::Adam | Optim::Adamw => {
                if self.momentum != 0.0 || self.nesterov {
                    return Err(Error::MomentumWithoutSgd);
                }
                OptimizerConfig::Adam(AdamConfig {
                    lr,
                    weight_decay,
                    decoupled_weight_decay: optim == Optim::Adamw,
                    ..AdamConfig::default()
                })
            }
        })
    }

    fn validation(&self, tutorial: bool) -> Validation {
        match (&self.val_files[..], self.val_split, self.cv) {
            (_, _, Some(k)) => Validation::Folds(k),
            ([], Some(f), None) => Validation::Split(f),
            ([], None, None) if tutorial => Validation::None,
            ([], None, None) => Validation::Auto,
            (files, _, None) => Validation::Files(files.to_vec()),
        }
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Config(reason.into())
}

fn setting(setting: Setting, problem: impl Into<String>) -> Error {
    Error::Setting {
        setting,
        problem: problem.into(),
    }
}

impl Plan {
    /// The plan for `c`: the preset's values where `c` leaves a choice open,
    /// checked as a whole.
    pub fn resolve(c: &Choices) -> Result<Plan> {
        let tutorial = c.preset == Preset::Tutorial;
        // The step budget: the default preset's, unless epochs are given.
        let steps = match (c.steps, c.epochs) {
            (Some(s), _) => Some(s),
            (None, Some(_)) => None,
            (None, None) => (!tutorial).then_some(DEFAULT_STEPS),
        };
        let epochs = c.epochs.unwrap_or(if !tutorial && steps.is_some() {
            MAX_EPOCHS
        } else {
            20
        });
        let schedule = c
            .lr_schedule
            .clone()
            .unwrap_or_else(|| if tutorial { "constant" } else { "cosine" }.to_string());
        let plan = Plan {
            train_files: c.train_files.clone(),
            validation: c.validation(tutorial),
            mlp: (c.heads != Heads::Logistic).then(|| MlpPlan {
                hidden: c.hidden.clone().unwrap_or_else(|| vec![1000]),
                dropout: c.dropout.unwrap_or(0.5),
                input_dropout: c.input_dropout,
                standardize: c.standardize.unwrap_or(!tutorial),
                steps,
                auto_patience: !tutorial,
            }),
            logistic: (c.heads != Heads::Mlp).then(|| LogisticPlan {
                c: c.logistic_c.or(tutorial.then_some(1.0)),
                max_iterations: c.logistic_max_iterations,
            }),
            config: TrainConfig {
                epochs,
                batch_size: c.batch.unwrap_or(if tutorial { 64 } else { 32 }),
                optimizer: c.optimizer(tutorial)?,
                schedule: LrSchedule::parse(&schedule, epochs)?,
                patience: c.patience,
                seed: c.seed,
                class_weights: None,
            },
            calibrate: !tutorial && c.calibrate,
            balanced: c.balanced,
            preset: c.preset,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Checks the plan as a whole; the architecture is checked with
    /// [`MlpConfig::validate`] on placeholder widths (the real ones come from the data).
    pub(crate) fn validate(&self) -> Result<()> {
        if self.mlp.is_none() && self.logistic.is_none() {
            return Err(Error::NoHead);
        }
        let val_files: &[PathBuf] = match &self.validation {
            Validation::Files(f) => f,
            _ => &[],
        };
        for f in self.train_files.iter().chain(val_files) {
            if !f.exists() {
                return Err(Error::Store {
                    path: f.clone(),
                    reason: "does not exist; create it with `xfer extract`".into(),
                });
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
                return Err(setting(
                    Setting::ValSplit,
                    format!("must be between 0 and 1 (e.g. 0.1), got {f}"),
                ))
            }
            Validation::None if self.config.patience.is_some() => {
                return Err(setting(Setting::Patience, "needs validation data"))
            }
            Validation::Folds(k) if *k < 2 => {
                return Err(setting(
                    Setting::Folds,
                    format!("must be at least 2 (e.g. 5), got {k}"),
                ))
            }
            _ => {}
        }
        self.config.validate()?;
        if let Some(m) = &self.mlp {
            m.config(1, 2).validate()?;
        }
        if let Some(c) = self.logistic.as_ref().and_then(|l| l.c) {
            if !(c > 0.0 && c.is_finite()) {
                return Err(setting(
                    Setting::LogisticC,
                    format!("must be positive, got {c}"),
                ));
            }
        }
        if let Some(MlpPlan { steps: Some(0), .. }) = &self.mlp {
            return Err(setting(Setting::Steps, "must be at least 1"));
        }
        Ok(())
    }

    /// The MLP's training configuration for `n_train` training rows: the
    /// epochs from the step budget (the cosine schedule spans them), and the
    /// automatic patience when `validated`.
    pub fn mlp_config(&self, n_train: usize, validated: bool) -> TrainConfig {
        let mut c = self.config.clone();
        let Some(m) = &self.mlp else { return c };
        if let Some(steps) = m.steps {
            let per_epoch = n_train.div_ceil(c.batch_size).max(1);
            c.epochs = steps
                .div_ceil(per_epoch)
                .clamp(MIN_EPOCHS.min(c.epochs), c.epochs);
        }
        if let crate::train::head::optim::LrSchedule::Cosine { epochs } = &mut c.schedule {
            *epochs = c.epochs;
        }
        if m.auto_patience && validated && c.patience.is_none() {
            c.patience = Some((c.epochs / 5).max(10));
        }
        if !validated {
            c.patience = None;
        }
        c
    }

    /// The training configuration a bundle records, with the head's own part.
    /// `validation` is what was used (the plan's, resolved by the data).
    pub(crate) fn training_json(
        &self,
        validation: &Validation,
        head: serde_json::Value,
    ) -> serde_json::Value {
        let (val_files, val_split, cv) = match validation {
            Validation::Files(f) => (f.clone(), None, None),
            Validation::Split(s) => (Vec::new(), Some(*s), None),
            Validation::Folds(k) => (Vec::new(), None, Some(*k)),
            Validation::None | Validation::Auto => (Vec::new(), None, None),
        };
        json!({
            "preset": self.preset,
            "train_files": self.train_files,
            "val_files": val_files,
            "val_split": val_split,
            "cv_folds": cv,
            "seed": self.config.seed,
            "class_weight": if self.balanced { "balanced" } else { "none" },
            "calibrated": self.calibrate,
            "head": head,
        })
    }
}
