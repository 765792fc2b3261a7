//! Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural
//! Networks"): one scalar `T > 0` divides a head's logits before the softmax,
//! fitted by minimising the mean log loss of held-out predictions. It changes
//! no arg-max (accuracy is untouched), only how confident the probabilities are.

use ndarray::ArrayView2;

/// Mean negative log-likelihood of `softmax(logits / t)` (f64 throughout).
///
/// # Shapes
/// `logits`: [n_samples, n_classes], `labels`: [n_samples]
pub(crate) fn log_loss_at(logits: ArrayView2<f32>, labels: &[usize], t: f64) -> f64 {
    let mut total = 0f64;
    for (row, &y) in logits.rows().into_iter().zip(labels) {
        let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let sum: f64 = row.iter().map(|&v| ((v as f64 - max) / t).exp()).sum();
        total += sum.ln() - (row[y] as f64 - max) / t;
    }
    total / logits.nrows().max(1) as f64
}

/// The fitted temperature and the log loss before (T = 1) and after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Temperature {
    pub(crate) t: f32,
    pub(crate) log_loss_before: f64,
    pub(crate) log_loss_after: f64,
}

/// Smallest and largest temperature considered.
pub(crate) const RANGE: (f64, f64) = (0.05, 20.0);

/// Fits `T` by golden-section search on `ln T` over [`RANGE`]: the log loss
/// is convex in `1/T` (a log-sum-exp of affine functions), so it is unimodal
/// in `ln T` and the search finds its minimum to 1e-5 in `ln T`. Rows with
/// non-finite logits, and empty inputs, give `T = 1`.
///
/// # Shapes
/// `logits`: [n_samples, n_classes], `labels`: [n_samples]
pub(crate) fn fit_temperature(logits: ArrayView2<f32>, labels: &[usize]) -> Temperature {
    let before = log_loss_at(logits, labels, 1.0);
    let identity = Temperature {
        t: 1.0,
        log_loss_before: before,
        log_loss_after: before,
    };
    if logits.nrows() == 0 || !before.is_finite() || logits.iter().any(|v| !v.is_finite()) {
        return identity;
    }
    let f = |u: f64| log_loss_at(logits, labels, u.exp());
    let (mut a, mut b) = (RANGE.0.ln(), RANGE.1.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-5 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    let u = (a + b) / 2.0;
    let after = f(u);
    if after < before {
        Temperature {
            t: u.exp() as f32,
            log_loss_before: before,
            log_loss_after: after,
        }
    } else {
        identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::head::Rng;
    use ndarray::Array2;

    /// Logits of a reasonable classifier (right about 80 % of the time), scaled by `k`.
    fn logits(n: usize, k: f32) -> (Array2<f32>, Vec<usize>) {
        let mut rng = Rng::new(3);
        let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let z = Array2::from_shape_fn((n, 3), |(i, j)| {
            k * (rng.uniform(-1.0, 1.0) + if j == labels[i] { 1.2 } else { 0.0 })
        });
        (z, labels)
    }

    #[test]
    fn undoes_over_confidence() {
        let (z, y) = logits(600, 1.0);
        let fit1 = fit_temperature(z.view(), &y);
        // The same classifier made 6× too confident: T comes back about 6× larger.
        let (z6, y6) = logits(600, 6.0);
        let fit6 = fit_temperature(z6.view(), &y6);
        assert!(
            fit6.log_loss_after < 0.95 * fit6.log_loss_before,
            "{fit6:?}"
        );
        assert!((fit6.t / fit1.t - 6.0).abs() < 0.05, "{fit1:?} {fit6:?}");
        assert!((fit6.log_loss_after - fit1.log_loss_after).abs() < 1e-6);
        // The minimum: a little either side is worse.
        let t = fit6.t as f64;
        for s in [0.97, 1.03] {
            assert!(log_loss_at(z6.view(), &y6, t * s) > fit6.log_loss_after);
        }
    }

    #[test]
    fn lowers_the_log_loss_of_an_over_confident_head() {
        // Labels drawn from softmax(z): z is calibrated (T ≈ 1). A head that
        // outputs 8·z is 8× too sure of itself; T comes back near 8 and the
        // log loss falls to that of z.
        let mut rng = Rng::new(11);
        let n = 4000;
        let z = Array2::from_shape_fn((n, 4), |_| rng.uniform(-2.0, 2.0));
        let p = crate::train::head::softmax_rows(z.view());
        let y: Vec<usize> = p
            .rows()
            .into_iter()
            .map(|row| {
                let u = rng.next_f32();
                let mut acc = 0.0;
                row.iter()
                    .position(|&q| {
                        acc += q;
                        u < acc
                    })
                    .unwrap_or(3)
            })
            .collect();
        let calibrated = fit_temperature(z.view(), &y);
        assert!((calibrated.t - 1.0).abs() < 0.1, "{calibrated:?}");
        let z8 = &z * 8.0;
        let fit = fit_temperature(z8.view(), &y);
        assert!((fit.t / 8.0 - 1.0).abs() < 0.1, "{fit:?}");
        assert!(fit.log_loss_after < 0.5 * fit.log_loss_before, "{fit:?}");
        assert!((fit.log_loss_after - calibrated.log_loss_after).abs() < 1e-3);
    }

    #[test]
    fn degenerate_inputs_keep_t_one() {
        let z = Array2::<f32>::zeros((0, 3));
        assert_eq!(fit_temperature(z.view(), &[]).t, 1.0);
        let mut z = Array2::<f32>::zeros((2, 2));
        z[[0, 0]] = f32::NAN;
        assert_eq!(fit_temperature(z.view(), &[0, 1]).t, 1.0);
    }
}
