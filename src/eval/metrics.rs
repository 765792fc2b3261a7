//! Scores of a classifier: accuracy, log loss (optionally clipped as Kaggle
//! submissions are), confusion matrix, per-class precision, recall and F1, and
//! calibration (the reliability diagram's bins and the expected calibration
//! error). Pure functions over predicted probabilities and true labels.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::train::head::argmax;

/// Probabilities below this are treated as this in an unclipped log loss
/// (sklearn's `log_loss` uses the same floor), so a confident mistake costs
/// about 34.5 instead of infinity.
pub(crate) const PROB_FLOOR: f64 = 1e-15;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClassScores {
    pub(crate) name: String,
    /// True rows of this class.
    pub(crate) support: usize,
    /// Of the rows predicted as this class, the share that are; `None` when none were predicted.
    pub(crate) precision: Option<f64>,
    /// Of the rows of this class, the share predicted so; `None` without support.
    pub(crate) recall: Option<f64>,
}

impl ClassScores {
    /// F1 = 2·tp / (2·tp + fp + fn): the harmonic mean of precision and
    /// recall, 0 for a class that has rows but is never predicted right (as
    /// scikit-learn's `f1_score` with `zero_division=0`); `None` for a class
    /// neither present nor predicted.
    pub(crate) fn f1(&self) -> Option<f64> {
        match (self.precision, self.recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) | (None, Some(_)) | (Some(_), None) => Some(0.0),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub n_samples: usize,
    pub accuracy: f64,
    pub log_loss: f64,
    /// The clipping of probabilities into [clip, 1 − clip] used for `log_loss`, if any.
    pub(crate) clip: Option<f64>,
    pub(crate) class_names: Vec<String>,
    /// `confusion[true][predicted]`: row counts.
    pub(crate) confusion: Vec<Vec<usize>>,
    pub(crate) per_class: Vec<ClassScores>,
}

/// Mean negative log-probability of the true class. With `clip`, the
/// probability of the true class is clipped into [clip, 1 − clip] first (for two
/// classes this is exactly Kaggle's clipping of P(dog) into [clip, 1 − clip]).
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub(crate) fn log_loss(probs: ArrayView2<f32>, labels: &[usize], clip: Option<f64>) -> f64 {
    assert_eq!(probs.nrows(), labels.len(), "one label per row");
    let (lo, hi) = match clip {
        Some(c) => (c.max(PROB_FLOOR), 1.0 - c),
        None => (PROB_FLOOR, 1.0),
    };
    let total: f64 = probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &y)| -(row[y] as f64).clamp(lo, hi).ln())
        .sum();
    total / labels.len().max(1) as f64
}

/// The Wilson score interval of an accuracy of `correct` out of `n` at `z`
/// standard deviations (1.96: 95 %): (low, high). (0, 1) when `n` is 0.
pub fn wilson_interval(correct: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (correct as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The standard error of [`log_loss`] (no clipping) over the rows: the sample
/// standard deviation of the rows' losses over √n; 0 for fewer than two rows.
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub fn log_loss_standard_error(probs: ArrayView2<f32>, labels: &[usize]) -> f64 {
    let losses: Vec<f64> = probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &y)| -(row[y] as f64).clamp(PROB_FLOOR, 1.0).ln())
        .collect();
    let n = losses.len();
    if n < 2 {
        return 0.0;
    }
    let mean = losses.iter().sum::<f64>() / n as f64;
    let var = losses.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// All scores at once.
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub fn evaluate(
    probs: ArrayView2<f32>,
    labels: &[usize],
    class_names: &[String],
    clip: Option<f64>,
) -> Evaluation {
    let c = probs.ncols();
    assert_eq!(class_names.len(), c, "one name per class");
    let mut confusion = vec![vec![0usize; c]; c];
    for (row, &y) in probs.rows().into_iter().zip(labels) {
        confusion[y][argmax(row).0] += 1;
    }
    let n = labels.len();
    let correct: usize = (0..c).map(|k| confusion[k][k]).sum();
    let per_class = (0..c)
        .map(|k| {
            let support: usize = confusion[k].iter().sum();
            let predicted: usize = (0..c).map(|t| confusion[t][k]).sum();
            let tp = confusion[k][k] as f64;
            ClassScores {
                name: class_names[k].clone(),
                support,
                precision: (predicted > 0).then(|| tp / predicted as f64),
                recall: (support > 0).then(|| tp / support as f64),
            }
        })
        .collect();
    Evaluation {
        n_samples: n,
        accuracy: correct as f64 / n.max(1) as f64,
        log_loss: log_loss(probs, labels, clip),
        clip,
        class_names: class_names.to_vec(),
        confusion,
        per_class,
    }
}

/// One bin of a reliability diagram: the rows whose top-class probability
/// falls in `[lo, hi)` (the last bin includes 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReliabilityBin {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) count: usize,
    /// Mean top-class probability of its rows; `None` when empty.
    pub(crate) confidence: Option<f64>,
    /// Share of its rows whose top class is the true one; `None` when empty.
    pub(crate) accuracy: Option<f64>,
}

/// Calibration of the top class: the bins of a reliability diagram and the
/// expected calibration error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reliability {
    pub(crate) bins: Vec<ReliabilityBin>,
    /// ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b| (Guo et al., 2017).
    pub(crate) ece: f64,
    pub(crate) n_samples: usize,
}

/// The top-class probability of each row, binned into `n_bins` equal-width
/// bins over [0, 1] (row r goes to bin min(⌊p_r · n_bins⌋, n_bins − 1), its
/// probability taken as f64), with each bin's mean probability and accuracy,
/// and the expected calibration error. Ties for the top class go to the
/// lowest index, as [`evaluate`]'s predictions do.
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub(crate) fn reliability(probs: ArrayView2<f32>, labels: &[usize], n_bins: usize) -> Reliability {
    assert_eq!(probs.nrows(), labels.len(), "one label per row");
    assert!(n_bins > 0, "at least one bin");
    // Per bin: (rows, Σ confidence, rows right).
    let mut acc = vec![(0usize, 0f64, 0usize); n_bins];
    for (row, &y) in probs.rows().into_iter().zip(labels) {
        let (k, p) = argmax(row);
        let p = p as f64;
        let b = ((p * n_bins as f64).floor().max(0.0) as usize).min(n_bins - 1);
        acc[b].0 += 1;
        acc[b].1 += p;
        acc[b].2 += usize::from(k == y);
    }
    let n = labels.len();
    let mut ece = 0.0;
    let bins = acc
        .iter()
        .enumerate()
        .map(|(b, &(count, sum_p, right))| {
            let (confidence, accuracy) = if count > 0 {
                let (c, a) = (sum_p / count as f64, right as f64 / count as f64);
                ece += count as f64 / n as f64 * (a - c).abs();
                (Some(c), Some(a))
            } else {
                (None, None)
            };
            ReliabilityBin {
                lo: b as f64 / n_bins as f64,
                hi: (b + 1) as f64 / n_bins as f64,
                count,
                confidence,
                accuracy,
            }
        })
        .collect();
    Reliability {
        bins,
        ece,
        n_samples: n,
    }
}

impl Evaluation {
    /// A plain-text report: the scores, the confusion matrix and per-class precision/recall.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let clip = match self.clip {
            Some(c) => format!(" (probabilities clipped to [{c}, {}])", 1.0 - c),
            None => String::new(),
        };
        s += &format!(
            "{} samples: accuracy {} %, log loss {}{clip}\n",
            self.n_samples,
            crate::util::format::fixed(100.0 * self.accuracy, 2),
            crate::util::format::fixed(self.log_loss, 5)
        );
        let w = self
            .class_names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(4)
            .max(9);
        s += &format!(
            "\nconfusion matrix (rows: true class, columns: predicted)\n{:w$}",
            ""
        );
        for n in &self.class_names {
            s += &format!(" {n:>w$}");
        }
        s += "\n";
        for (name, row) in self.class_names.iter().zip(&self.confusion) {
            s += &format!("{name:w$}");
            for v in row {
                s += &format!(" {v:>w$}");
            }
            s += "\n";
        }
        let pct = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{:.2} %", 100.0 * v));
        s += &format!(
            "\n{:w$} {:>9} {:>10} {:>10}\n",
            "class", "support", "precision", "recall"
        );
        for c in &self.per_class {
            s += &format!(
                "{:w$} {:>9} {:>10} {:>10}\n",
                c.name,
                c.support,
                pct(c.precision),
                pct(c.recall)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn wilson_interval_and_log_loss_standard_error() {
        // statsmodels: proportion_confint(8, 10, alpha=0.05, method="wilson")
        // = (0.4901625, 0.9433178) at z = 1.959964.
        let (lo, hi) = wilson_interval(8, 10, 1.959964);
        assert!((lo - 0.4901625).abs() < 1e-6 && (hi - 0.9433178).abs() < 1e-6);
        assert_eq!(wilson_interval(0, 0, 1.96), (0.0, 1.0));
        // losses −ln 0.5 and −ln 0.25: sd = ln 2 / √2, se = ln 2 / 2.
        let p = array![[0.5f32, 0.5], [0.75, 0.25]];
        let se = log_loss_standard_error(p.view(), &[0, 1]);
        assert!((se - std::f64::consts::LN_2 / 2.0).abs() < 1e-6);
    }

    #[test]
    fn matches_sklearn() {
        // sklearn: y = [0, 1, 1, 2]; p as below
        // accuracy_score(y, p.argmax(1)) = 0.75 ; log_loss(y, p) = 0.6618017 (mean of −ln 0.7, 0.6, 0.3, 0.8)
        // predictions [0, 1, 2, 2]: precision_score(average=None) = [1, 1, 0.5],
        // recall_score(average=None) = [1, 0.5, 1]
        let p = array![
            [0.7f32, 0.2, 0.1],
            [0.1, 0.6, 0.3],
            [0.3, 0.3, 0.4],
            [0.1, 0.1, 0.8]
        ];
        let y = [0, 1, 1, 2];
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let e = evaluate(p.view(), &y, &names, None);
        assert_eq!(e.accuracy, 0.75);
        let want = -((0.7f64).ln() + (0.6f64).ln() + (0.3f64).ln() + (0.8f64).ln()) / 4.0;
        assert!((e.log_loss - want).abs() < 1e-6, "{} vs {want}", e.log_loss);
        assert_eq!(
            e.confusion,
            vec![vec![1, 0, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert_eq!(e.per_class[1].recall, Some(0.5));
        assert_eq!(e.per_class[2].precision, Some(0.5));
        assert_eq!(e.per_class[0].precision, Some(1.0));
        assert!(e.to_text().contains("accuracy 75.00 %"));
    }

    #[test]
    fn f1_is_the_harmonic_mean_and_zero_when_never_right() {
        let c = |precision, recall| ClassScores {
            name: "a".into(),
            support: 1,
            precision,
            recall,
        };
        // sklearn f1_score on the matches_sklearn example: [1, 0.6667, 0.6667]
        assert!((c(Some(1.0), Some(0.5)).f1().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c(Some(0.0), Some(0.0)).f1(), Some(0.0));
        assert_eq!(c(None, Some(0.0)).f1(), Some(0.0));
        assert_eq!(c(None, None).f1(), None);
    }

    #[test]
    fn reliability_bins_and_ece_match_numpy() {
        // numpy, with conf = p.max(1) (as float64), b = np.minimum((conf * 10).astype(int), 9),
        // ece = Σ_b mean(b == i) · |acc_i − conf_i|:
        //   bins 3, 4, 5: one row each (0.34 wrong, 0.4 wrong, 0.5 right);
        //   bin 6: 0.6 and 0.7, both right; bin 8: 0.8 right, 0.9 wrong; bin 9: 1.0 right;
        //   ece = (0.34 + 0.4 + 0.5 + 2 · 0.35 + 2 · 0.35 + 0) / 8 = 0.33 (numpy: 0.32999999821186066)
        let p = array![
            [0.7f32, 0.2, 0.1],
            [0.1, 0.6, 0.3],
            [0.3, 0.3, 0.4],
            [0.1, 0.1, 0.8],
            [0.05, 0.9, 0.05],
            [0.5, 0.45, 0.05],
            [0.34, 0.33, 0.33],
            [0.0, 0.0, 1.0]
        ];
        let y = [0, 1, 1, 2, 0, 0, 2, 2];
        let r = reliability(p.view(), &y, 10);
        assert_eq!(r.n_samples, 8);
        let counts: Vec<usize> = r.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 0, 0, 1, 1, 1, 2, 0, 2, 1]);
        assert!((r.ece - 0.32999999821186066).abs() < 1e-12, "{}", r.ece);
        assert_eq!(r.bins[8].accuracy, Some(0.5));
        assert!((r.bins[6].confidence.unwrap() - 0.65).abs() < 1e-7);
        assert_eq!(r.bins[0].confidence, None);
        assert_eq!((r.bins[9].lo, r.bins[9].hi), (0.9, 1.0));
        // Perfectly calibrated: 0.5 confidence, half right.
        let p = array![[0.5f32, 0.5], [0.5, 0.5]];
        assert_eq!(reliability(p.view(), &[0, 1], 10).ece, 0.0);
    }

    #[test]
    fn clipping_bounds_a_confident_mistake() {
        let p = array![[1.0f32, 0.0], [0.0, 1.0]];
        let y = [1, 1];
        let raw = log_loss(p.view(), &y, None);
        assert!((raw - (-(1e-15f64).ln()) / 2.0).abs() < 1e-9);
        let clipped = log_loss(p.view(), &y, Some(0.005));
        let want = (-(0.005f64).ln() - (0.995f64).ln()) / 2.0;
        assert!((clipped - want).abs() < 1e-12);
    }
}
