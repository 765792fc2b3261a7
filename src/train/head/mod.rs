//! Classifier heads trained on cached features: the tutorial's dropout MLP
//! ([`mlp`], hand-written with ndarray), its optimisers ([`optim`]) and the
//! linfa logistic-regression baseline ([`logistic`], behind the `train` feature).
//!
//! This module and [`mlp`]/[`optim`] depend on ndarray only (no HDF5, no linfa),
//! so the slim predictor can run a trained head.
//!
//! The numeric kernels here are small pure functions over array views:
//! max-subtracted softmax and log-sum-exp cross-entropy (numerically stable by construction).

pub(crate) mod calibrate;
pub mod linalg;
#[cfg(feature = "train")]
pub(crate) mod logistic;
pub mod mlp;
pub mod optim;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Zip};
use serde::{Deserialize, Serialize};

pub use mlp::{Mlp, MlpConfig};

/// A small, seeded, portable random generator (xoshiro256++ seeded through
/// splitmix64). Its streams never change between xfer versions, so a seed
/// always gives the same initialisation, shuffles and dropout masks.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// An independent generator derived from this one (for a sub-task such as dropout).
    pub(crate) fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift, negligible bias).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Per-feature standardisation `(x − mean) / scale`, fitted on training rows.
/// Saved in the bundle and applied before the head at prediction time.
///
/// # Shapes
/// `mean`, `scale`: [n_features]
#[derive(Debug, Clone, PartialEq)]
pub struct Standardize {
    pub mean: Array1<f32>,
    pub scale: Array1<f32>,
}

impl Standardize {
    /// Fits mean and standard deviation over the given rows (all rows when `rows` is `None`).
    /// Constant features get scale 1 (as sklearn's StandardScaler does).
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features]
    pub(crate) fn fit(x: ArrayView2<f32>, rows: Option<&[usize]>) -> Standardize {
        let d = x.ncols();
        let mut sum = vec![0f64; d];
        let mut sq = vec![0f64; d];
        let mut n = 0usize;
        let mut add = |row: ArrayView1<f32>| {
            for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(row.iter()) {
                let v = v as f64;
                *s += v;
                *q += v * v;
            }
            n += 1;
        };
        match rows {
            Some(rows) => rows.iter().for_each(|&r| add(x.row(r))),
            None => x.rows().into_iter().for_each(add),
        }
        let n = n.max(1) as f64;
        let mean: Array1<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let scale: Array1<f32> = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let m = s / n;
                let var = (q / n - m * m).max(0.0);
                let sd = var.sqrt();
                if sd > 1e-12 {
                    sd as f32
                } else {
                    1.0
                }
            })
            .collect();
        Standardize { mean, scale }
    }

    /// # Shapes
    /// `x`: [n_samples, n_features] → same
    pub(crate) fn apply(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut out = x.to_owned();
        self.apply_inplace(out.view_mut());
        out
    }

    pub(crate) fn apply_inplace(&self, mut x: ArrayViewMut2<f32>) {
        for mut row in x.rows_mut() {
            Zip::from(&mut row)
                .and(&self.mean)
                .and(&self.scale)
                .for_each(|v, &m, &s| *v = (*v - m) / s);
        }
    }
}

/// In-place, max-subtracted softmax of each row.
///
/// # Shapes
/// `logits`: [n_samples, n_classes]
pub(crate) fn softmax_rows_inplace(mut logits: ArrayViewMut2<f32>) {
    for mut row in logits.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0f32;
        row.mapv_inplace(|v| {
            let e = (v - max).exp();
            sum += e;
            e
        });
        row.mapv_inplace(|v| v / sum);
    }
}

/// Row-wise softmax.
///
/// # Shapes
/// `logits`: [n_samples, n_classes] → same
pub(crate) fn softmax_rows(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut p = logits.to_owned();
    softmax_rows_inplace(p.view_mut());
    p
}

/// Mean softmax cross-entropy of `logits` against `labels` (as PyTorch's
/// `F.cross_entropy`), computed with log-sum-exp; writes its gradient with
/// respect to the logits, `(softmax − onehot) / n`, into `dlogits`, and returns
/// `(mean loss, number of rows whose arg-max equals the label)`.
///
/// With `class_weights` it is PyTorch's `F.cross_entropy(weight=w)`: row `i`
/// counts `w[yᵢ]` times and the mean divides by `Σᵢ w[yᵢ]`.
///
/// # Shapes
/// `logits`: [n_samples, n_classes], `labels`: [n_samples], `class_weights`:
/// [n_classes], `dlogits`: [n_samples, n_classes]
pub fn cross_entropy_with_grad(
    logits: ArrayView2<f32>,
    labels: &[usize],
    class_weights: Option<&[f32]>,
    mut dlogits: ArrayViewMut2<f32>,
) -> (f64, usize) {
    let n = logits.nrows();
    assert_eq!(labels.len(), n, "one label per row");
    assert_eq!(dlogits.dim(), logits.dim(), "dlogits shape");
    let weight = |y: usize| class_weights.map_or(1.0, |w| w[y]);
    let total_weight: f32 = match class_weights {
        None => n as f32,
        Some(w) => labels.iter().map(|&y| w[y]).sum(),
    };
    let inv_total = if total_weight > 0.0 {
        1.0 / total_weight
    } else {
        0.0
    };
    let mut total = 0f64;
    let mut correct = 0usize;
    for ((row, mut drow), &y) in logits
        .rows()
        .into_iter()
        .zip(dlogits.rows_mut())
        .zip(labels)
    {
        let (arg, max) = argmax(row);
        correct += (arg == y) as usize;
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        let lse = max + sum.ln();
        let w = weight(y);
        total += w as f64 * (lse - row[y]) as f64;
        let k = w * inv_total;
        Zip::from(&mut drow).and(&row).for_each(|d, &v| {
            // Probabilities below 1e-30 contribute nothing measurable; keeping
            // them would feed subnormal numbers to the backward pass.
            let p = (v - lse).exp();
            *d = if p < 1e-30 { 0.0 } else { p * k };
        });
        drow[y] -= k;
    }
    (total * inv_total as f64, correct)
}

/// scikit-learn's `class_weight="balanced"`: `n / (n_classes · n_c)` for the
/// classes present in `labels` (weight 0 for absent ones).
pub(crate) fn balanced_class_weights(labels: &[usize], n_classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; n_classes];
    for &y in labels {
        counts[y] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                labels.len() as f32 / (present as f32 * c as f32)
            }
        })
        .collect()
}

/// Mean cross-entropy and correct count without a gradient.
///
/// # Shapes
/// `logits`: [n_samples, n_classes], `labels`: [n_samples]
pub fn cross_entropy(logits: ArrayView2<f32>, labels: &[usize]) -> (f64, usize) {
    let mut total = 0f64;
    let mut correct = 0usize;
    for (row, &y) in logits.rows().into_iter().zip(labels) {
        let (arg, max) = argmax(row);
        correct += (arg == y) as usize;
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        total += (max + sum.ln() - row[y]) as f64;
    }
    (total / logits.nrows().max(1) as f64, correct)
}

/// Index and value of the largest entry (the first one on ties, as `torch.argmax`).
pub fn argmax(row: ArrayView1<f32>) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Arg-max of each row.
///
/// # Shapes
/// `scores`: [n_samples, n_classes] → [n_samples]
pub(crate) fn argmax_rows(scores: ArrayView2<f32>) -> Vec<usize> {
    scores.axis_iter(Axis(0)).map(|r| argmax(r).0).collect()
}

/// Which kind of head a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// The tutorial's dropout MLP.
    Mlp,
    /// Multinomial (or binary) logistic regression, stored as a linear layer.
    Logistic,
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadKind::Mlp => "mlp",
            HeadKind::Logistic => "logistic",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax_rows(array![[1000.0f32, 1001.0], [-1000.0, -1000.0]].view());
        assert!((p[[0, 1]] - 0.7310586).abs() < 1e-6);
        assert!((p[[1, 0]] - 0.5).abs() < 1e-7);
    }

    #[test]
    fn cross_entropy_matches_closed_form() {
        // torch: F.cross_entropy(torch.tensor([[1.,2.,3.],[1.,1.,1.]]), torch.tensor([2,0])) = 0.7531091
        let logits = array![[1.0f32, 2.0, 3.0], [1.0, 1.0, 1.0]];
        let mut d = Array2::zeros((2, 3));
        let (loss, correct) = cross_entropy_with_grad(logits.view(), &[2, 0], None, d.view_mut());
        assert!((loss - 0.753_109_1).abs() < 1e-6, "{loss}");
        assert_eq!(correct, 2);
        // rows of the gradient sum to zero
        for r in d.rows() {
            assert!(r.sum().abs() < 1e-7);
        }
        assert_eq!(cross_entropy(logits.view(), &[2, 0]).0 as f32, loss as f32);
    }

    #[test]
    fn rng_is_deterministic_and_uniform_enough() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mean: f32 = (0..10_000).map(|_| a.next_f32()).sum::<f32>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.01);
        let mut v: Vec<usize> = (0..100).collect();
        a.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }

    #[test]
    fn standardize_matches_numpy() {
        // numpy: x.mean(0) = [2, 10], x.std(0) = [0.8164966, 0] → scale [0.8164966, 1]
        let x = array![[1.0f32, 10.0], [2.0, 10.0], [3.0, 10.0]];
        let s = Standardize::fit(x.view(), None);
        assert_eq!(s.mean, array![2.0, 10.0]);
        assert!((s.scale[0] - 0.816_496_6).abs() < 1e-6);
        assert_eq!(s.scale[1], 1.0);
        let y = s.apply(x.view());
        assert!((y[[0, 0]] + 1.224_744_9).abs() < 1e-6);
        assert_eq!(y[[0, 1]], 0.0);
    }
}
