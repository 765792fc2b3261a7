//! The run folder: what `xfer train` writes into `--out`, and the one place
//! its file names live. The report reads `metrics.json` and the audit reads
//! `out_of_fold.json` through it.
//!
//! ```text
//! run/
//!   metrics.json          every head's figures, learning curves, the recommendation
//!   logistic.safetensors  the logistic baseline's bundle
//!   mlp.safetensors       the MLP's bundle
//!   best.safetensors      the recommended one again
//!   learning_curve.svg    the MLP's curves
//!   out_of_fold.json      held-out probabilities of every row (with --cv)
//!   run.lock              while a run writes here
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::util::atomic::write_bytes_atomic;
use crate::util::lock::OutputLock;

/// A training run's output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    pub const METRICS: &'static str = "metrics.json";
    pub const OUT_OF_FOLD: &'static str = "out_of_fold.json";
    pub const MLP: &'static str = "mlp.safetensors";
    pub const LOGISTIC: &'static str = "logistic.safetensors";
    pub const BEST: &'static str = "best.safetensors";
    pub const LEARNING_CURVE: &'static str = "learning_curve.svg";
    /// Every file a run may write (a run removes an earlier run's that it
    /// does not write again, so that the folder never mixes two runs).
    pub const FILES: [&'static str; 6] = [
        Self::METRICS,
        Self::OUT_OF_FOLD,
        Self::MLP,
        Self::LOGISTIC,
        Self::BEST,
        Self::LEARNING_CURVE,
    ];

    pub fn new(dir: impl Into<PathBuf>) -> RunFolder {
        RunFolder { dir: dir.into() }
    }

    /// The run folder a bundle was written into (its own folder).
    pub(crate) fn of_bundle(bundle: &Path) -> RunFolder {
        RunFolder::new(bundle.parent().unwrap_or(Path::new("")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of [`RunFolder::FILES`].
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The files of an earlier run, which a new run would replace.
    pub fn existing(&self) -> Vec<PathBuf> {
        Self::FILES
            .iter()
            .map(|n| self.file(n))
            .filter(|p| p.exists())
            .collect()
    }

    /// Checks that a run may write here: a folder (or nothing yet), and no
    /// earlier run's files unless `replace`.
    pub fn check_writable(&self, replace: bool) -> Result<()> {
        if self.dir.exists() && !self.dir.is_dir() {
            return Err(Error::Config(format!(
                "{} exists and is not a folder",
                self.dir.display()
            )));
        }
        match self.existing().into_iter().next() {
            Some(path) if !replace => Err(Error::OutputExists { path }),
            _ => Ok(()),
        }
    }

    /// Creates the folder and locks it: a second run into the same folder is
    /// refused while this one holds the lock.
    pub fn lock(&self) -> Result<OutputLock> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        OutputLock::acquire(&self.dir.join("run"))
    }

    /// Writes one of the run's files atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        debug_assert!(Self::FILES.contains(&name), "{name} is not a run file");
        Ok(write_bytes_atomic(&self.file(name), bytes)?)
    }

    /// Removes the files of an earlier run that this run (which wrote
    /// `written`) did not write again; returns them.
    pub fn remove_stale(&self, written: &[String]) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for name in Self::FILES {
            let p = self.file(name);
            if !written.iter().any(|w| w == name) && p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                removed.push(p);
            }
        }
        Ok(removed)
    }

    /// `metrics.json`'s text, `None` when the folder has none.
    pub(crate) fn read_metrics(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(self.file(Self::METRICS)) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The scores of the run's first head as `metrics.json` records them:
    /// cross-validated (mean and standard deviation over the folds), else on
    /// the validation split. `None` when it records no head.
    pub fn first_head_scores(&self) -> Result<Option<HeadScores>> {
        let file = self.file(Self::METRICS);
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let m: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Input {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        let Some(head) = m["heads"].as_array().and_then(|h| h.first()) else {
            return Ok(None);
        };
        let (cv, val) = (&head["cv"], &head["validation"]);
        Ok(Some(HeadScores {
            n_features: m["train"]["n_features"].as_u64(),
            log_loss: cv["log_loss_mean"].as_f64().or(val["log_loss"].as_f64()),
            log_loss_sd: cv["log_loss_sd"].as_f64(),
            accuracy: cv["accuracy_mean"].as_f64().or(val["accuracy"].as_f64()),
            accuracy_sd: cv["accuracy_sd"].as_f64(),
        }))
    }
}

/// A head's scores read back from a run folder ([`RunFolder::first_head_scores`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HeadScores {
    /// Features per row the head was trained on.
    pub n_features: Option<u64>,
    pub log_loss: Option<f64>,
    /// Over the folds; `None` without cross-validation.
    pub log_loss_sd: Option<f64>,
    pub accuracy: Option<f64>,
    pub accuracy_sd: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_run_is_refused_unless_replaced_and_its_stale_files_go() {
        let d = tempfile::tempdir().unwrap();
        let run = RunFolder::new(d.path().join("run"));
        run.check_writable(false).unwrap();
        let _lock = run.lock().unwrap();
        run.write(RunFolder::MLP, b"x").unwrap();
        run.write(RunFolder::METRICS, b"{}").unwrap();
        assert!(matches!(
            run.check_writable(false),
            Err(Error::OutputExists { .. })
        ));
        run.check_writable(true).unwrap();
        let removed = run.remove_stale(&[RunFolder::METRICS.to_string()]).unwrap();
        assert_eq!(removed, vec![run.file(RunFolder::MLP)]);
        assert_eq!(run.read_metrics().unwrap().as_deref(), Some("{}"));
        assert_eq!(RunFolder::of_bundle(&run.file(RunFolder::BEST)), run);
    }

    #[test]
    fn the_first_heads_scores_are_cross_validated_else_validation() {
        let d = tempfile::tempdir().unwrap();
        let run = RunFolder::new(d.path());
        assert!(run.first_head_scores().is_err(), "no metrics.json");
        let cv = r#"{"train": {"n_features": 1280}, "heads": [
            {"cv": {"log_loss_mean": 0.5, "log_loss_sd": 0.1, "accuracy_mean": 0.8, "accuracy_sd": 0.05},
             "validation": {"log_loss": 0.7, "accuracy": 0.6}}, {}]}"#;
        run.write(RunFolder::METRICS, cv.as_bytes()).unwrap();
        let s = run.first_head_scores().unwrap().unwrap();
        assert_eq!(
            s,
            HeadScores {
                n_features: Some(1280),
                log_loss: Some(0.5),
                log_loss_sd: Some(0.1),
                accuracy: Some(0.8),
                accuracy_sd: Some(0.05),
            }
        );
        let val = r#"{"heads": [{"validation": {"log_loss": 0.7, "accuracy": 0.6}}]}"#;
        run.write(RunFolder::METRICS, val.as_bytes()).unwrap();
        let s = run.first_head_scores().unwrap().unwrap();
        assert_eq!(
            (s.log_loss, s.accuracy, s.log_loss_sd),
            (Some(0.7), Some(0.6), None)
        );
        run.write(RunFolder::METRICS, br#"{"heads": []}"#).unwrap();
        assert_eq!(run.first_head_scores().unwrap(), None);
        run.write(RunFolder::METRICS, b"{").unwrap();
        assert!(run.first_head_scores().is_err());
    }
}
