//! `out_of_fold.json`: the out-of-fold probabilities of every training row,
//! written by `xfer train` when it cross-validates and read by
//! `xfer audit --run DIR`. Each row is predicted by the fold model that did
//! not train on it, at the head's fitted temperature. The file also records
//! what the rows were (paths, labels, folds, classes, backbones), so that a
//! run can be matched to feature files and refused when they differ.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Next, Result};
use crate::ship::bundle::BackboneRef;
use crate::train::folder::RunFolder;

/// One head's out-of-fold probabilities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OofHead {
    /// `logistic` or `mlp`.
    pub(crate) kind: String,
    /// The bundle it belongs to (`logistic.safetensors`).
    pub(crate) bundle: String,
    /// The temperature the probabilities are at.
    pub(crate) temperature: f32,
    /// [n_rows][n_classes], rows in `OutOfFold::paths` order.
    pub(crate) probabilities: Vec<Vec<f32>>,
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutOfFold {
    pub(crate) xfer_version: String,
    /// The training feature files, one per backbone.
    pub(crate) files: Vec<PathBuf>,
    pub(crate) backbones: Vec<BackboneRef>,
    pub(crate) classes: Vec<String>,
    /// Each row's image (relative path), `None` for tutorial files.
    pub(crate) paths: Option<Vec<String>>,
    /// Each row's class index.
    pub(crate) labels: Vec<usize>,
    /// Each row's fold.
    pub(crate) folds: Vec<usize>,
    pub(crate) n_folds: usize,
    /// The recommended head's bundle, if any.
    pub(crate) recommended: Option<String>,
    pub(crate) heads: Vec<OofHead>,
}

impl OutOfFold {
    /// Reads `dir/out_of_fold.json`, checking its shapes.
    pub(crate) fn read(dir: &Path) -> Result<OutOfFold> {
        let path = RunFolder::new(dir).file(RunFolder::OUT_OF_FOLD);
        let bad = |reason: String| Error::Audit {
            reason: format!("{}: {reason}", path.display()),
            next: None,
        };
        if !dir.is_dir() {
            return Err(Error::Audit {
                reason: format!("the run {} is not a folder", dir.display()),
                next: Some(Next::GiveTrainingRun),
            });
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Audit {
                    reason: format!(
                        "{}: not found: the run did not cross-validate (or predates xfer recording out-of-fold probabilities)",
                        path.display()
                    ),
                    next: Some(Next::CrossValidateOrWithoutRun {
                        default: "logistic head, 5 folds".into(),
                    }),
                })
            }
            Err(e) => return Err(bad(format!("cannot be read ({e})"))),
        };
        let oof: OutOfFold = serde_json::from_str(&text)
            .map_err(|e| bad(format!("is not a valid out-of-fold file ({e})")))?;
        let n = oof.labels.len();
        let k = oof.classes.len();
        if oof.folds.len() != n || oof.paths.as_ref().is_some_and(|p| p.len() != n) {
            return Err(bad("its labels, folds and paths differ in length".into()));
        }
        if oof.labels.iter().any(|&l| l >= k) {
            return Err(bad("a label is outside its classes".into()));
        }
        for h in &oof.heads {
            if h.probabilities.len() != n || h.probabilities.iter().any(|r| r.len() != k) {
                return Err(bad(format!(
                    "the {} head's probabilities are not {n} × {k}",
                    h.kind
                )));
            }
        }
        if oof.heads.is_empty() {
            return Err(bad("holds no head".into()));
        }
        Ok(oof)
    }

    /// The recommended head (else the first).
    pub(crate) fn head(&self, kind: Option<&str>) -> Result<&OofHead> {
        match kind {
            Some(k) => self
                .heads
                .iter()
                .find(|h| h.kind == k)
                .ok_or_else(|| Error::Audit {
                    reason: format!(
                        "the run has no out-of-fold probabilities of a {k} head (it has: {})",
                        self.heads
                            .iter()
                            .map(|h| h.kind.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    next: Some(Next::PickRecordedHead),
                }),
            None => Ok(self
                .recommended
                .as_ref()
                .and_then(|b| self.heads.iter().find(|h| &h.bundle == b))
                .unwrap_or(&self.heads[0])),
        }
    }
}

/// A head's probabilities as a matrix.
///
/// # Shapes
/// → [n_rows, n_classes]
pub(crate) fn matrix(h: &OofHead) -> Array2<f32> {
    let n = h.probabilities.len();
    let k = h.probabilities.first().map_or(0, Vec::len);
    Array2::from_shape_fn((n, k), |(i, j)| h.probabilities[i][j])
}

/// Rows of a matrix as nested vectors (for the JSON file).
pub(crate) fn rows(p: ArrayView2<f32>) -> Vec<Vec<f32>> {
    p.rows().into_iter().map(|r| r.to_vec()).collect()
}
