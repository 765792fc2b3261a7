//! Scores of a classifier: accuracy, log loss (optionally clipped as Kaggle
//! submissions are), confusion matrix, per-class precision and recall. Pure
//! functions over predicted probabilities and true labels.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::head::argmax;

/// Probabilities below this are treated as this in an unclipped log loss
/// (sklearn's `log_loss` uses the same floor), so a confident mistake costs
/// about 34.5 instead of infinity.
pub const PROB_FLOOR: f64 = 1e-15;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub name: String,
    /// True rows of this class.
    pub support: usize,
    /// Of the rows predicted as this class, the share that are; `None` when none were predicted.
    pub precision: Option<f64>,
    /// Of the rows of this class, the share predicted so; `None` without support.
    pub recall: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub n_samples: usize,
    pub accuracy: f64,
    pub log_loss: f64,
    /// The clipping of probabilities into [clip, 1 − clip] used for `log_loss`, if any.
    pub clip: Option<f64>,
    pub class_names: Vec<String>,
    /// `confusion[true][predicted]`: row counts.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassScores>,
}

/// Mean negative log-probability of the true class. With `clip`, the
/// probability of the true class is clipped into [clip, 1 − clip] first (for two
/// classes this is exactly Kaggle's clipping of P(dog) into [clip, 1 − clip]).
///
/// # Shapes
/// `probs`: [n_samples, n_classes], `labels`: [n_samples]
pub fn log_loss(probs: ArrayView2<f32>, labels: &[usize], clip: Option<f64>) -> f64 {
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
            crate::report::fixed(100.0 * self.accuracy, 2),
            crate::report::fixed(self.log_loss, 5)
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
