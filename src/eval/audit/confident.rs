//! Label issues by confident learning (Northcutt, Jiang & Chuang, "Confident
//! Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021), step for
//! step as cleanlab 2.x's `filter.find_label_issues` does it with its
//! defaults (`filter_by="prune_by_noise_rate"`, `frac_noise=1`,
//! `min_examples_per_class=1`, calibrated confident joint):
//!
//! 1. per-class thresholds t_k = the mean of p(k) over the rows labelled k;
//! 2. the confident joint C[given][true]: each row counted once, under the
//!    class it is confidently in (p ≥ t − 1e-6; of several, the most probable),
//!    its diagonal clipped to at least 1, then calibrated to the label counts
//!    and rounded preserving row sums;
//! 3. for every given class k with more than one row and every other class j,
//!    the C[k][j] rows labelled k with the largest margin p(j) − p(k) are flagged;
//! 4. rows whose given class is the most probable (within 1e-6) are unflagged.
//!
//! Flagged rows are ranked by self-confidence (p of the given class) or by
//! the normalised margin ((p_given − max_other + 1) / 2), lowest first, as
//! `cleanlab.rank.order_label_issues` does. Pure: no I/O.

use ndarray::ArrayView2;

/// cleanlab's `FLOATING_POINT_COMPARISON`.
const EPS: f32 = 1e-6;

/// How flagged rows are ranked (cleanlab's `return_indices_ranked_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    SelfConfidence,
    NormalizedMargin,
}

/// The label quality of row `i` (lower: more likely mislabelled).
///
/// # Shapes
/// `probs`: [n_rows, n_classes]
pub(crate) fn quality(probs: ArrayView2<f32>, labels: &[usize], i: usize, by: RankBy) -> f32 {
    let p = probs.row(i);
    let given = p[labels[i]];
    match by {
        RankBy::SelfConfidence => given,
        RankBy::NormalizedMargin => {
            let other = p
                .iter()
                .enumerate()
                .filter(|&(k, _)| k != labels[i])
                .map(|(_, &v)| v)
                .fold(f32::NEG_INFINITY, f32::max);
            (given - other.max(0.0) + 1.0) / 2.0
        }
    }
}

/// The per-class thresholds: mean p(k) over the rows labelled k, at least
/// 2e-6 (2 for a class with no rows, so that nothing is confidently in it:
/// cleanlab's `BIG_VALUE`).
pub(crate) fn thresholds(probs: ArrayView2<f32>, labels: &[usize]) -> Vec<f32> {
    let k = probs.ncols();
    let mut sum = vec![0f64; k];
    let mut n = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        sum[l] += probs[[i, l]] as f64;
        n[l] += 1;
    }
    (0..k)
        .map(|c| {
            if n[c] > 0 {
                ((sum[c] / n[c] as f64) as f32).max(2.0 * EPS)
            } else {
                2.0
            }
        })
        .collect()
}

/// cleanlab's `round_preserving_sum`: rounds, then moves the rows' largest
/// rounding losses by one until the sum is the rounded original sum.
fn round_preserving_sum(v: &[f64]) -> Vec<i64> {
    let mut ints: Vec<f64> = v.iter().map(|x| x.round_ties_even()).collect();
    let orig: f64 = v.iter().sum::<f64>().round_ties_even();
    let mut int_sum: f64 = ints.iter().sum::<f64>().round_ties_even();
    while (int_sum - orig).abs() > 1e-6 {
        let diff = (orig - int_sum).round_ties_even();
        let inc = if diff < 0.0 { -1.0 } else { 1.0 };
        let changes = (diff.abs() as usize).min(v.len());
        // np.argsort(floats - ints)[::-increment][:changes]: the largest
        // rounding losses first when adding, the smallest when taking away.
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| (v[a] - ints[a]).total_cmp(&(v[b] - ints[b])));
        if inc > 0.0 {
            idx.reverse();
        }
        for &i in idx.iter().take(changes) {
            ints[i] += inc;
        }
        int_sum = ints.iter().sum::<f64>().round_ties_even();
    }
    ints.iter().map(|&x| x as i64).collect()
}

fn round_rows(m: &[Vec<f64>]) -> Vec<Vec<i64>> {
    m.iter().map(|r| round_preserving_sum(r)).collect()
}

/// The calibrated confident joint C[given][true] (cleanlab's
/// `compute_confident_joint(calibrate=True)`).
///
/// # Shapes
/// `probs`: [n_rows, n_classes] → [n_classes, n_classes]
pub fn confident_joint(probs: ArrayView2<f32>, labels: &[usize]) -> Vec<Vec<i64>> {
    let k = probs.ncols();
    let t = thresholds(probs, labels);
    let mut cj = vec![vec![0i64; k]; k];
    for (i, &given) in labels.iter().enumerate() {
        let p = probs.row(i);
        let confident: Vec<usize> = (0..k).filter(|&c| p[c] >= t[c] - EPS).collect();
        let guess = match confident.len() {
            0 => continue,
            1 => confident[0],
            _ => crate::train::head::argmax(p).0,
        };
        cj[given][guess] += 1;
    }
    for (c, row) in cj.iter_mut().enumerate() {
        row[c] = row[c].max(1);
    }
    // Calibrate: each row to its label count, the whole to the row count.
    let mut counts = vec![0f64; k];
    for &l in labels {
        counts[l] += 1.0;
    }
    let mut cal: Vec<Vec<f64>> = cj
        .iter()
        .zip(&counts)
        .map(|(row, &n)| {
            let s = (row.iter().sum::<i64>() as f64).max(1e-5);
            row.iter().map(|&v| v as f64 / s * n).collect()
        })
        .collect();
    let total: f64 = cal.iter().flatten().sum::<f64>().max(1e-5);
    let n: f64 = counts.iter().sum();
    for v in cal.iter_mut().flatten() {
        *v = *v / total * n;
    }
    round_rows(&cal)
}

/// cleanlab's `_keep_at_least_n_per_class` (frac_noise = 1) on the
/// transposed joint: P[true][given], its diagonal at least `n`, the
/// increase taken evenly from the column's non-zero noise rates.
fn keep_at_least_n_per_class(cj: &[Vec<i64>], n: i64) -> Vec<Vec<i64>> {
    let k = cj.len();
    // P = C^T: P[j][g] = C[g][j].
    let p: Vec<Vec<f64>> = (0..k)
        .map(|j| (0..k).map(|g| cj[g][j] as f64).collect())
        .collect();
    let mut out = p.clone();
    for col in 0..k {
        let diag = p[col][col];
        let new_diag = diag.max(n as f64);
        let diff = new_diag - diag;
        let nonzero = (0..k).filter(|&r| p[r][col] != 0.0).count() as f64;
        let per = (nonzero - 1.0).max(1.0);
        for r in 0..k {
            out[r][col] = (p[r][col] - diff / per).max(0.0);
        }
        out[col][col] = new_diag;
    }
    round_rows(&out)
}

/// The rows cleanlab's `find_label_issues` flags (defaults, as above), in row order.
///
/// # Shapes
/// `probs`: [n_rows, n_classes] (each row sums to 1), `labels`: [n_rows]
pub fn find_label_issues(probs: ArrayView2<f32>, labels: &[usize]) -> Vec<usize> {
    let n = labels.len();
    let k = probs.ncols();
    let cj = confident_joint(probs, labels);
    let prune = keep_at_least_n_per_class(&cj, 1);
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l] += 1;
    }
    let mut flagged = vec![false; n];
    for given in 0..k {
        if counts[given] <= 1 {
            continue;
        }
        let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == given).collect();
        for (truth, prune_row) in prune.iter().enumerate() {
            let m = prune_row[given].max(0) as usize;
            if truth == given || m == 0 {
                continue;
            }
            // The m rows labelled `given` with the largest p(truth) − p(given).
            let mut by_margin: Vec<(f32, usize)> = rows
                .iter()
                .map(|&i| (probs[[i, truth]] - probs[[i, given]], i))
                .collect();
            by_margin.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, i) in by_margin.iter().take(m) {
                flagged[i] = true;
            }
        }
    }
    // Not an issue when the given class is (within 1e-6) the most probable.
    for (i, f) in flagged.iter_mut().enumerate() {
        if *f {
            let p = probs.row(i);
            // argmax of p with p[given] + 1e-6 (the first on ties).
            let mut best = 0;
            let mut best_p = f32::NEG_INFINITY;
            for (c, &v) in p.iter().enumerate() {
                let v = if c == labels[i] { v + EPS } else { v };
                if v > best_p {
                    best = c;
                    best_p = v;
                }
            }
            if best == labels[i] {
                *f = false;
            }
        }
    }
    (0..n).filter(|&i| flagged[i]).collect()
}

/// `rows` ordered by [`quality`], lowest first (ties: lower row first).
pub fn rank(probs: ArrayView2<f32>, labels: &[usize], rows: &[usize], by: RankBy) -> Vec<usize> {
    let mut r: Vec<(f32, usize)> = rows
        .iter()
        .map(|&i| (quality(probs, labels, i, by), i))
        .collect();
    r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    r.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_preserves_row_sums() {
        // numpy: argsort([.4, .4, .2])[::-1] = [1, 0, 2]: index 1 gets the unit.
        assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1, 2, 1]);
        assert_eq!(round_preserving_sum(&[2.0, 3.0]), vec![2, 3]);
        let r = round_preserving_sum(&[0.6, 0.6, 0.6, 0.2]);
        assert_eq!(r.iter().sum::<i64>(), 2);
    }

    #[test]
    fn a_confident_flip_is_flagged_and_a_clean_row_is_not() {
        // Three classes, four rows each; row 0 (given 0) looks like class 2.
        let mut p = ndarray::Array2::<f32>::zeros((12, 3));
        let mut labels = Vec::new();
        for i in 0..12 {
            let c = i / 4;
            labels.push(c);
            p[[i, c]] = 0.9;
            p[[i, (c + 1) % 3]] = 0.1;
        }
        p.row_mut(0).assign(&ndarray::arr1(&[0.05, 0.05, 0.9]));
        assert_eq!(find_label_issues(p.view(), &labels), vec![0]);
    }
}
