//! The logistic-regression baseline: linfa-logistic (L-BFGS) on standardised
//! features, binary (`LogisticRegression`) for two classes and multinomial
//! (`MultiLogisticRegression`) for more. linfa uses ndarray 0.16 (`ndarray16`),
//! which stays inside this file: the fitted model comes out as an ndarray 0.17
//! linear [`Mlp`] (`hidden = []`) plus its [`Standardize`], so a bundle holding it
//! needs neither linfa nor this module.
//!
//! The objective is linfa's: `Σᵢ log-loss + ½·alpha·‖W‖²` (sklearn's
//! `LogisticRegression(C = 1/alpha)`, whose default is C = 1).

use linfa::prelude::*;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, ArrayView2};
use ndarray16 as nd16;
use serde::{Deserialize, Serialize};

use super::mlp::{Linear, Mlp, MlpConfig};
use super::Standardize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticConfig {
    /// L2 penalty weight (sklearn's 1/C).
    pub alpha: f32,
    pub max_iterations: u64,
    pub gradient_tolerance: f32,
}

impl Default for LogisticConfig {
    /// sklearn's defaults: C = 1, max_iter = 100; linfa's gradient tolerance 1e-4.
    fn default() -> Self {
        LogisticConfig {
            alpha: 1.0,
            max_iterations: 100,
            gradient_tolerance: 1e-4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogisticError {
    #[error("logistic regression needs at least two classes in the training rows")]
    OneClass,
    #[error("linfa-logistic: {0}")]
    Linfa(String),
}

/// Fits on the given rows of `x` (standardised with statistics of those rows).
///
/// # Shapes
/// `x`: [n_samples, n_features], `labels`: [n_samples] (class indices < `n_classes`),
/// `rows`: [n_train] → a linear head `Linear(n_features, n_classes)`
pub fn fit(
    x: ArrayView2<f32>,
    labels: &[usize],
    rows: &[usize],
    n_classes: usize,
    config: &LogisticConfig,
) -> Result<(Mlp, Standardize), LogisticError> {
    let d = x.ncols();
    let std = Standardize::fit(x, Some(rows));
    // The standardised training rows, straight into linfa's ndarray 0.16.
    let mut buf = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        buf.extend(
            x.row(r)
                .iter()
                .zip(&std.mean)
                .zip(&std.scale)
                .map(|((&v, &m), &s)| (v - m) / s),
        );
    }
    let records = nd16::Array2::from_shape_vec((rows.len(), d), buf).expect("shape");
    let targets: nd16::Array1<usize> = rows.iter().map(|&r| labels[r]).collect();
    let mut present: Vec<usize> = targets.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.len() < 2 {
        return Err(LogisticError::OneClass);
    }
    let dataset = Dataset::new(records, targets);
    let mut weight = Array2::<f32>::zeros((n_classes, d)); // [n_classes, n_features]
    let mut bias = Array1::<f32>::zeros(n_classes);
    if present.len() == 2 && n_classes == 2 {
        let model = LogisticRegression::default()
            .alpha(config.alpha)
            .max_iterations(config.max_iterations)
            .gradient_tolerance(config.gradient_tolerance)
            .fit(&dataset)
            .map_err(|e| LogisticError::Linfa(e.to_string()))?;
        // P(pos) = σ(w·x + b) = softmax([0, w·x + b])[pos]
        let pos = model.labels().pos.class;
        for (j, &w) in model.params().iter().enumerate() {
            weight[[pos, j]] = w;
        }
        bias[pos] = model.intercept();
    } else {
        let model = MultiLogisticRegression::default()
            .alpha(config.alpha)
            .max_iterations(config.max_iterations)
            .gradient_tolerance(config.gradient_tolerance)
            .fit(&dataset)
            .map_err(|e| LogisticError::Linfa(e.to_string()))?;
        // params: [n_features, n_present_classes], classes: the present labels, sorted.
        let params = model.params();
        for (k, &class) in model.classes().iter().enumerate() {
            for j in 0..d {
                weight[[class, j]] = params[[j, k]];
            }
            bias[class] = model.intercept()[k];
        }
        // Classes absent from training keep a very low logit.
        for c in 0..n_classes {
            if !present.contains(&c) {
                bias[c] = -30.0;
            }
        }
    }
    let mlp = Mlp::from_layers(
        MlpConfig::linear(d, n_classes),
        vec![Linear { weight, bias }],
    )
    .expect("shapes built above");
    Ok((mlp, std))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Rng;

    fn blobs(n: usize, d: usize, classes: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            let c = labels[i];
            let centre = if j % classes == c { 2.0 } else { 0.0 };
            centre + rng.uniform(-1.0, 1.0) + 10.0 * j as f32
        });
        (x, labels)
    }

    #[test]
    fn binary_and_multinomial_separate_blobs() {
        for classes in [2, 3] {
            let (x, y) = blobs(300, 6, classes, 1);
            let rows: Vec<usize> = (0..300).collect();
            let (head, std) =
                fit(x.view(), &y, &rows, classes, &LogisticConfig::default()).unwrap();
            let p = head.predict_proba(std.apply(x.view()).view());
            let acc = crate::head::argmax_rows(p.view())
                .iter()
                .zip(&y)
                .filter(|(a, b)| a == b)
                .count() as f64
                / 300.0;
            assert!(acc > 0.95, "{classes} classes: accuracy {acc}");
        }
    }
}
