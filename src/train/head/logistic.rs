//! The logistic-regression baseline: linfa-logistic (L-BFGS) on standardised
//! features, binary (`LogisticRegression`) for two classes and multinomial
//! (`MultiLogisticRegression`) for more. linfa uses ndarray 0.16 (`ndarray16`),
//! which stays inside this file: the fitted model comes out as an ndarray 0.17
//! linear [`Mlp`] (`hidden = []`) plus its [`Standardize`], so a bundle holding it
//! needs neither linfa nor this module.
//!
//! The objective is linfa's: `Σᵢ log-loss + ½·alpha·‖W‖²` (sklearn's
//! `LogisticRegression(C = 1/alpha)`, whose default is C = 1), intercepts not
//! penalised.
//!
//! **Engines.** linfa-logistic computes `X·w` as a matrix product with one
//! column, which makes matrixmultiply copy ("pack") the whole feature matrix on
//! every evaluation: on the tutorial's 20,000 × 4,608 case one fit takes minutes.
//! For inputs above [`LINFA_MAX_ENTRIES`] the same solver that linfa-logistic
//! runs — argmin's L-BFGS (memory 10) with the More–Thuente line search — is
//! driven directly on the same objective with streaming, multi-threaded
//! matrix–vector products, and also stops when the cost no longer changes (as
//! sklearn's lbfgs does). [`LogisticEngine`] forces either.

use linfa::prelude::*;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, ArrayView2};
use ndarray16 as nd16;
use serde::{Deserialize, Serialize};

use super::mlp::{Linear, Mlp, MlpConfig};
use super::Standardize;

/// Above this many training entries (rows × features), [`LogisticEngine::Auto`]
/// uses the streaming engine.
pub(crate) const LINFA_MAX_ENTRIES: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogisticEngine {
    /// linfa-logistic up to [`LINFA_MAX_ENTRIES`], streaming above.
    #[default]
    Auto,
    Linfa,
    Streaming,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogisticConfig {
    /// L2 penalty weight (sklearn's 1/C).
    pub(crate) alpha: f32,
    pub(crate) max_iterations: u64,
    /// Stop when the gradient of the *mean* loss (+ penalty / n) is below this, as
    /// sklearn's lbfgs does (sklearn ≥ 1.1 optimises the mean); both engines
    /// optimise the sum, so they are given `gradient_tolerance × n_samples`.
    pub(crate) gradient_tolerance: f32,
    #[serde(default)]
    pub(crate) engine: LogisticEngine,
}

impl Default for LogisticConfig {
    /// sklearn's defaults: C = 1, max_iter = 100, tol = 1e-4.
    fn default() -> Self {
        LogisticConfig {
            alpha: 1.0,
            max_iterations: 100,
            gradient_tolerance: 1e-4,
            engine: LogisticEngine::Auto,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogisticError {
    #[error("logistic regression needs at least two classes in the training rows")]
    OneClass,
    #[error("linfa-logistic: {0}")]
    Linfa(String),
    #[error("L-BFGS: {0}")]
    Solver(String),
}

/// A fitted logistic head and how the solver went.
#[derive(Debug, Clone)]
pub(crate) struct LogisticFit {
    /// `Linear(n_features, n_classes)` on standardised features.
    pub(crate) head: Mlp,
    pub(crate) standardize: Standardize,
    pub(crate) engine: LogisticEngine,
    /// L-BFGS iterations (streaming engine; linfa does not report them).
    pub(crate) iterations: Option<u64>,
    /// Passes over the feature matrix (streaming engine).
    pub(crate) passes: Option<u64>,
    /// Why the solver stopped (streaming engine).
    pub(crate) stop: Option<String>,
}

impl LogisticEngine {
    /// How the engine is named to users.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            LogisticEngine::Streaming => "argmin L-BFGS as linfa-logistic, streaming products",
            _ => "linfa-logistic, L-BFGS",
        }
    }

    /// The engine that runs for `entries` = rows × features.
    pub(crate) fn resolve(self, entries: usize) -> LogisticEngine {
        match self {
            LogisticEngine::Auto if entries > LINFA_MAX_ENTRIES => LogisticEngine::Streaming,
            LogisticEngine::Auto => LogisticEngine::Linfa,
            e => e,
        }
    }
}

/// Fits on the given rows of `x` (standardised with statistics of those rows).
/// With `init` (e.g. [`CvPath::mean_params`], the refit after
/// [`cross_validate`], as LogisticRegressionCV's refit starts) the streaming
/// engine starts from it.
///
/// # Shapes
/// `x`: [n_samples, n_features], `labels`: [n_samples] (class indices < `n_classes`),
/// `rows`: [n_train] → a linear head `Linear(n_features, n_classes)`
pub(crate) fn fit(
    x: ArrayView2<f32>,
    labels: &[usize],
    rows: &[usize],
    n_classes: usize,
    config: &LogisticConfig,
    class_weights: Option<&[f32]>,
    init: Option<Vec<f32>>,
) -> Result<LogisticFit, LogisticError> {
    // linfa-logistic has no sample weights and no starting point: such fits stream.
    let engine = match (class_weights, &init) {
        (None, None) => config.engine.resolve(rows.len() * x.ncols()),
        _ => LogisticEngine::Streaming,
    };
    match engine {
        LogisticEngine::Streaming => {
            streaming::fit(x, labels, rows, n_classes, config, class_weights, init)
        }
        _ => {
            let (head, standardize) = fit_linfa(x, labels, rows, n_classes, config)?;
            // linfa-logistic 0.8.1's multinomial fit can stop far from the
            // optimum (seen: 78 % training accuracy where the converged
            // solution has 100 %). Continue from its solution with the same
            // objective and solver until the gradient tolerance is met: when
            // linfa converged this takes an iteration or two.
            let init = streaming::from_linear(&head.layers[0], n_classes);
            let polished = streaming::fit(x, labels, rows, n_classes, config, None, Some(init))?;
            debug_assert_eq!(polished.standardize, standardize);
            Ok(LogisticFit {
                engine: LogisticEngine::Linfa,
                ..polished
            })
        }
    }
}

/// scikit-learn's `LogisticRegressionCV(Cs=10)` grid: `logspace(-4, 4, 10)`.
pub(crate) fn default_cs() -> Vec<f32> {
    (0..10)
        .map(|i| 10f64.powf(-4.0 + 8.0 * i as f64 / 9.0) as f32)
        .collect()
}

/// The cross-validated regularisation path of [`cross_validate`].
#[derive(Debug, Clone)]
pub(crate) struct CvPath {
    /// The inverse L2 strengths tried, in the order tried.
    pub(crate) cs: Vec<f32>,
    /// Held-out (log loss, accuracy) per C, per fold: [n_cs][n_folds].
    pub(crate) scores: Vec<Vec<(f64, f64)>>,
    /// Index into `cs` of the lowest mean held-out log loss (the first on ties).
    pub(crate) best: usize,
    /// Held-out logits at the best C, one row per entry of `rows` (each row
    /// predicted by the fold that did not train on it): [rows.len(), n_classes].
    pub(crate) oof_logits: Array2<f32>,
    /// L-BFGS iterations, all fits together.
    pub(crate) iterations: u64,
    /// The mean over the folds of the solutions at the best C: the refit on
    /// all rows starts there ([`fit`]'s `init`, as LogisticRegressionCV's refit does).
    pub(crate) mean_params: Vec<f32>,
}

impl CvPath {
    /// Mean held-out log loss of C number `i`.
    pub(crate) fn mean_log_loss(&self, i: usize) -> f64 {
        let s = &self.scores[i];
        s.iter().map(|v| v.0).sum::<f64>() / s.len().max(1) as f64
    }
}

/// Chooses C as `LogisticRegressionCV(Cs, cv=folds, scoring="neg_log_loss")`
/// does: the features are standardised once with the statistics of all `rows`
/// (a `StandardScaler` before it in a pipeline), each fold's path runs through
/// `cs` in order, each fit warm-started from the previous C's solution, and
/// the C with the lowest mean held-out log loss wins. Fits stream (the same
/// objective and solver as linfa-logistic, with sample weights for
/// `class_weights`).
///
/// # Shapes
/// `x`: [n_samples, n_features]; `labels`: [n_samples]; `rows`, `folds`:
/// [n_rows] (the fold 0..n_folds of each row); `class_weights`: [n_classes]
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_validate(
    x: ArrayView2<f32>,
    labels: &[usize],
    rows: &[usize],
    folds: &[usize],
    n_folds: usize,
    n_classes: usize,
    cs: &[f32],
    config: &LogisticConfig,
    class_weights: Option<&[f32]>,
) -> Result<CvPath, LogisticError> {
    assert_eq!(rows.len(), folds.len(), "one fold per row");
    let d = x.ncols();
    let std = Standardize::fit(x, Some(rows));
    let all: Vec<usize> = (0..rows.len()).collect();
    let xs = streaming::standardized_rows(x, rows, &std); // [n_rows, d]
    let y: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
    let mut scores = vec![vec![(0f64, 0f64); n_folds]; cs.len()];
    let mut fold_logits: Vec<Vec<Array2<f32>>> = Vec::new(); // [fold][c] → [n_test, n_classes]
    let mut fold_params: Vec<Vec<Vec<f32>>> = Vec::new(); // [fold][c] → params
    let mut iterations = 0;
    // `f` is the fold id (compared with `folds`), not only an index of `scores`.
    #[allow(clippy::needless_range_loop)]
    for f in 0..n_folds {
        let train: Vec<usize> = all.iter().copied().filter(|&i| folds[i] != f).collect();
        let test: Vec<usize> = all.iter().copied().filter(|&i| folds[i] == f).collect();
        let xtr = xs.select(ndarray::Axis(0), &train);
        let xte = xs.select(ndarray::Axis(0), &test);
        let ytr: Vec<usize> = train.iter().map(|&i| y[i]).collect();
        let yte: Vec<usize> = test.iter().map(|&i| y[i]).collect();
        let weights: Option<Vec<f32>> =
            class_weights.map(|cw| ytr.iter().map(|&c| cw[c]).collect());
        let mut init: Option<Vec<f32>> = None;
        let mut per_c = Vec::with_capacity(cs.len());
        let mut params_c = Vec::with_capacity(cs.len());
        for (ci, &c) in cs.iter().enumerate() {
            let cfg = LogisticConfig {
                alpha: 1.0 / c,
                ..*config
            };
            let sol = streaming::solve(
                xtr.view(),
                &ytr,
                weights.clone(),
                n_classes,
                &cfg,
                init.take(),
            )?;
            iterations += sol.iterations;
            let lin = streaming::to_linear(&sol.params, d, n_classes);
            let z = xte.dot(&lin.weight.t()) + &lin.bias; // [n_test, n_classes]
            let loss = super::calibrate::log_loss_at(z.view(), &yte, 1.0);
            let right = super::argmax_rows(z.view())
                .iter()
                .zip(&yte)
                .filter(|(a, b)| a == b)
                .count();
            scores[ci][f] = (loss, right as f64 / yte.len().max(1) as f64);
            per_c.push(z);
            params_c.push(sol.params.clone());
            init = Some(sol.params);
        }
        fold_logits.push(per_c);
        fold_params.push(params_c);
    }
    let mean = |i: usize| scores[i].iter().map(|v| v.0).sum::<f64>() / n_folds.max(1) as f64;
    let best = (0..cs.len())
        .min_by(|&a, &b| mean(a).total_cmp(&mean(b)).then(a.cmp(&b)))
        .unwrap_or(0);
    let mut oof_logits = Array2::<f32>::zeros((rows.len(), n_classes));
    for (f, per_c) in fold_logits.iter().enumerate() {
        let test = all.iter().copied().filter(|&i| folds[i] == f);
        for (j, i) in test.enumerate() {
            oof_logits.row_mut(i).assign(&per_c[best].row(j));
        }
    }
    let mut mean_params = vec![0f32; fold_params.first().map_or(0, |f| f[best].len())];
    for f in &fold_params {
        for (m, v) in mean_params.iter_mut().zip(&f[best]) {
            *m += v / n_folds as f32;
        }
    }
    Ok(CvPath {
        cs: cs.to_vec(),
        scores,
        best,
        oof_logits,
        iterations,
        mean_params,
    })
}

fn fit_linfa(
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
            .gradient_tolerance(config.gradient_tolerance * rows.len() as f32)
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
            .gradient_tolerance(config.gradient_tolerance * rows.len() as f32)
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

mod streaming {
    //! linfa-logistic's objective and solver with streaming products.

    use std::cell::RefCell;

    use argmin::core::{CostFunction, Executor, Gradient, State};
    use argmin::solver::linesearch::MoreThuenteLineSearch;
    use argmin::solver::quasinewton::LBFGS;
    use ndarray::{Array1, Array2, ArrayView2, Axis};
    use ndarray16 as nd16;
    use rayon::prelude::*;

    use super::{LogisticConfig, LogisticError};
    use crate::train::head::mlp::{Linear, Mlp, MlpConfig};
    use crate::train::head::Standardize;

    /// Rows per parallel block.
    const BLOCK: usize = 256;

    /// A dot product with 8 independent partial sums, so that it vectorises.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
        acc.iter().sum::<f32>() + tail
    }

    /// The problem: `k` weight rows (1 for two classes: logits `[0, z]`; else one per class).
    ///
    /// # Shapes
    /// `x`: [n, d] standardised training rows; params: `k·d` weights then `k` intercepts.
    struct Problem<'a> {
        x: ArrayView2<'a, f32>,
        y: Vec<usize>,
        /// Per-row weights of the loss (class weights), or all ones.
        w: Option<Vec<f32>>,
        k: usize,
        n_classes: usize,
        alpha: f32,
        /// The logits of the last parameters seen, reused by the gradient.
        cache: RefCell<Option<(Vec<f32>, Array2<f32>)>>,
        /// Passes over `x` so far.
        passes: std::cell::Cell<u64>,
    }

    impl Problem<'_> {
        fn d(&self) -> usize {
            self.x.ncols()
        }

        /// Class logits `[n, n_classes]`.
        fn logits(&self, p: &[f32]) -> Array2<f32> {
            if let Some((q, z)) = &*self.cache.borrow() {
                if q.as_slice() == p {
                    return z.clone();
                }
            }
            let (n, d, k) = (self.x.nrows(), self.d(), self.k);
            let (w, b) = p.split_at(k * d);
            let nc = self.n_classes;
            self.passes.set(self.passes.get() + 1);
            let mut z = Array2::<f32>::zeros((n, nc));
            let xs = self.x.as_slice().expect("standard layout");
            z.as_slice_mut()
                .expect("standard layout")
                .par_chunks_mut(BLOCK * nc)
                .zip(xs.par_chunks(BLOCK * d))
                .for_each(|(zb, xb)| {
                    for (zr, xr) in zb.chunks_exact_mut(nc).zip(xb.chunks_exact(d)) {
                        for c in 0..k {
                            let v = dot(xr, &w[c * d..(c + 1) * d]) + b[c];
                            // two classes: logits [0, z]
                            zr[if k == 1 { 1 } else { c }] = v;
                        }
                    }
                });
            *self.cache.borrow_mut() = Some((p.to_vec(), z.clone()));
            z
        }
    }

    fn lse(row: ndarray::ArrayView1<f32>) -> f32 {
        let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln()
    }

    impl CostFunction for Problem<'_> {
        type Param = nd16::Array1<f32>;
        type Output = f32;

        fn cost(&self, p: &Self::Param) -> Result<f32, argmin::core::Error> {
            let p = p.as_slice().expect("contiguous");
            let z = self.logits(p);
            let mut loss = 0f64;
            for (i, (row, &y)) in z.rows().into_iter().zip(&self.y).enumerate() {
                let wi = self.w.as_ref().map_or(1.0, |w| w[i]) as f64;
                loss += wi * (lse(row) - row[y]) as f64;
            }
            let w = &p[..self.k * self.d()];
            let penalty =
                0.5 * self.alpha as f64 * w.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            Ok((loss + penalty) as f32)
        }
    }

    impl Gradient for Problem<'_> {
        type Param = nd16::Array1<f32>;
        type Gradient = nd16::Array1<f32>;

        fn gradient(&self, p: &Self::Param) -> Result<Self::Gradient, argmin::core::Error> {
            let p = p.as_slice().expect("contiguous");
            let (d, k) = (self.d(), self.k);
            let z = self.logits(p);
            // Residuals softmax − onehot, for the k parametrised logits: [n, k]
            let mut r = Array2::<f32>::zeros((z.nrows(), k));
            for (i, ((row, &y), mut rr)) in z
                .rows()
                .into_iter()
                .zip(&self.y)
                .zip(r.rows_mut())
                .enumerate()
            {
                let l = lse(row);
                let wi = self.w.as_ref().map_or(1.0, |w| w[i]);
                for c in 0..k {
                    let class = if k == 1 { 1 } else { c };
                    rr[c] = wi * ((row[class] - l).exp() - (y == class) as u8 as f32);
                }
            }
            // Σᵢ rᵢ xᵢ per weight row, in parallel blocks: [k, d]
            let xs = self.x.as_slice().expect("standard layout");
            self.passes.set(self.passes.get() + 1);
            let partial = xs
                .par_chunks(BLOCK * d)
                .zip(r.as_slice().expect("standard layout").par_chunks(BLOCK * k))
                .fold(
                    || vec![0f32; k * d],
                    |mut acc, (xb, rb)| {
                        for (xr, rr) in xb.chunks_exact(d).zip(rb.chunks_exact(k)) {
                            for c in 0..k {
                                let a = rr[c];
                                for (g, &v) in acc[c * d..(c + 1) * d].iter_mut().zip(xr) {
                                    *g += a * v;
                                }
                            }
                        }
                        acc
                    },
                )
                .reduce(
                    || vec![0f32; k * d],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            let mut g = partial;
            for (gv, &wv) in g.iter_mut().zip(&p[..k * d]) {
                *gv += self.alpha * wv;
            }
            g.extend(r.sum_axis(Axis(0)).iter());
            Ok(nd16::Array1::from_vec(g))
        }
    }

    /// The standardised rows `rows` of `x`, contiguous: [rows.len(), d].
    pub(crate) fn standardized_rows(
        x: ArrayView2<f32>,
        rows: &[usize],
        std: &Standardize,
    ) -> Array2<f32> {
        let d = x.ncols();
        let mut xs = Array2::<f32>::zeros((rows.len(), d));
        xs.as_slice_mut()
            .expect("standard layout")
            .par_chunks_mut(BLOCK * d)
            .zip(rows.par_chunks(BLOCK))
            .for_each(|(out, rs)| {
                for (o, &r) in out.chunks_exact_mut(d).zip(rs) {
                    for (((v, &src), &m), &sd) in o
                        .iter_mut()
                        .zip(x.row(r).iter())
                        .zip(&std.mean)
                        .zip(&std.scale)
                    {
                        *v = (src - m) / sd;
                    }
                }
            });
        xs
    }

    /// A solved problem: parameters (`k·d` weights then `k` intercepts) and
    /// how the solver went.
    pub(crate) struct Solution {
        pub(crate) params: Vec<f32>,
        pub(crate) iterations: u64,
        pub(crate) passes: Option<u64>,
        pub(crate) stop: Option<String>,
    }

    /// Solves linfa-logistic's problem on standardised, contiguous rows `xs`
    /// with labels `y` and optional per-row weights, from `init` (warm start)
    /// or zeros.
    pub(crate) fn solve(
        xs: ArrayView2<f32>,
        y: &[usize],
        weights: Option<Vec<f32>>,
        n_classes: usize,
        config: &LogisticConfig,
        init: Option<Vec<f32>>,
    ) -> Result<Solution, LogisticError> {
        let d = xs.ncols();
        let mut present = y.to_vec();
        present.sort_unstable();
        present.dedup();
        if present.len() < 2 {
            return Err(LogisticError::OneClass);
        }
        let k = n_params_rows(n_classes);
        let n = xs.nrows();
        let problem = Problem {
            x: xs,
            y: y.to_vec(),
            w: weights,
            k,
            n_classes,
            alpha: config.alpha,
            cache: RefCell::new(None),
            passes: std::cell::Cell::new(0),
        };
        let solver_err = |e: argmin::core::Error| LogisticError::Solver(e.to_string());
        // The summed loss starts at n·ln C; stop when a step changes it by less
        // than f32 can resolve there (as sklearn's ftol stop).
        let tol_cost = n as f32 * (n_classes as f32).ln() * 1e-7;
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(config.gradient_tolerance * n as f32)
            .map_err(solver_err)?
            .with_tolerance_cost(tol_cost)
            .map_err(solver_err)?;
        let init = match init {
            Some(p) if p.len() == k * d + k => nd16::Array1::from_vec(p),
            _ => nd16::Array1::<f32>::zeros(k * d + k),
        };
        let result = Executor::new(problem, solver)
            .configure(|state| state.param(init.clone()).max_iters(config.max_iterations))
            .run()
            .map_err(solver_err)?;
        let iterations = result.state.get_iter();
        let stop = result
            .state
            .get_termination_reason()
            .map(|r| r.text().to_string());
        let passes = result.problem.problem.as_ref().map(|p| p.passes.get());
        let p = result.state.best_param.unwrap_or(init);
        Ok(Solution {
            params: p.to_vec(),
            iterations,
            passes,
            stop,
        })
    }

    /// Weight rows of the parametrisation: 1 for two classes (logits `[0, z]`), else one per class.
    pub(crate) fn n_params_rows(n_classes: usize) -> usize {
        if n_classes == 2 {
            1
        } else {
            n_classes
        }
    }

    /// The parameters as `Linear(d, n_classes)`.
    pub(crate) fn to_linear(p: &[f32], d: usize, n_classes: usize) -> Linear {
        let k = n_params_rows(n_classes);
        let mut weight = Array2::<f32>::zeros((n_classes, d)); // [n_classes, n_features]
        let mut bias = Array1::<f32>::zeros(n_classes);
        for c in 0..k {
            let class = if k == 1 { 1 } else { c };
            weight
                .row_mut(class)
                .assign(&ndarray::ArrayView1::from(&p[c * d..(c + 1) * d]));
            bias[class] = p[k * d + c];
        }
        Linear { weight, bias }
    }

    /// The parameters of `Linear(d, n_classes)` (inverse of [`to_linear`]; for
    /// two classes the logits `[a, b]` become `[0, b − a]`, the same softmax).
    pub(crate) fn from_linear(lin: &Linear, n_classes: usize) -> Vec<f32> {
        let (k, d) = (n_params_rows(n_classes), lin.weight.ncols());
        let mut p = vec![0f32; k * d + k];
        for c in 0..k {
            let row = &mut p[c * d..(c + 1) * d];
            if k == 1 {
                for ((v, &w1), &w0) in row.iter_mut().zip(lin.weight.row(1)).zip(lin.weight.row(0))
                {
                    *v = w1 - w0;
                }
                p[d] = lin.bias[1] - lin.bias[0];
            } else {
                row.iter_mut()
                    .zip(lin.weight.row(c))
                    .for_each(|(v, &w)| *v = w);
                p[k * d + c] = lin.bias[c];
            }
        }
        p
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fit(
        x: ArrayView2<f32>,
        labels: &[usize],
        rows: &[usize],
        n_classes: usize,
        config: &LogisticConfig,
        class_weights: Option<&[f32]>,
        init: Option<Vec<f32>>,
    ) -> Result<super::LogisticFit, LogisticError> {
        let d = x.ncols();
        let std = Standardize::fit(x, Some(rows));
        let xs = standardized_rows(x, rows, &std);
        let y: Vec<usize> = rows.iter().map(|&r| labels[r]).collect();
        let weights = class_weights.map(|cw| y.iter().map(|&c| cw[c]).collect());
        let sol = solve(xs.view(), &y, weights, n_classes, config, init)?;
        let head = Mlp::from_layers(
            MlpConfig::linear(d, n_classes),
            vec![to_linear(&sol.params, d, n_classes)],
        )
        .expect("shapes built above");
        Ok(super::LogisticFit {
            head,
            standardize: std,
            engine: super::LogisticEngine::Streaming,
            iterations: Some(sol.iterations),
            passes: sol.passes,
            stop: sol.stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::head::Rng;

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
            let f = fit(
                x.view(),
                &y,
                &rows,
                classes,
                &LogisticConfig::default(),
                None,
                None,
            )
            .unwrap();
            let (head, std) = (f.head, f.standardize);
            let p = head.predict_proba(std.apply(x.view()).view());
            let acc = crate::train::head::argmax_rows(p.view())
                .iter()
                .zip(&y)
                .filter(|(a, b)| a == b)
                .count() as f64
                / 300.0;
            assert!(acc > 0.95, "{classes} classes: accuracy {acc}");
        }
    }

    #[test]
    fn cross_validation_prefers_strong_regularisation_on_noise() {
        // Labels unrelated to 40 noisy features: weak regularisation overfits,
        // so the held-out log loss is lowest at a small C.
        let mut rng = Rng::new(8);
        let n = 90;
        let x = Array2::from_shape_fn((n, 40), |_| rng.uniform(-1.0, 1.0));
        let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let rows: Vec<usize> = (0..n).collect();
        let folds: Vec<usize> = (0..n).map(|i| (i / 3) % 5).collect();
        let cs = default_cs();
        let cv = cross_validate(
            x.view(),
            &y,
            &rows,
            &folds,
            5,
            3,
            &cs,
            &LogisticConfig::default(),
            None,
        )
        .unwrap();
        assert!(cv.cs[cv.best] < 0.1, "chose C = {}", cv.cs[cv.best]);
        assert!(cv.mean_log_loss(cv.best) < cv.mean_log_loss(cs.len() - 1));
        // Separable blobs: a weak penalty does better than the strongest one.
        let (x, y) = blobs(150, 6, 3, 2);
        let rows: Vec<usize> = (0..150).collect();
        let folds: Vec<usize> = (0..150).map(|i| (i / 3) % 5).collect();
        let cv = cross_validate(
            x.view(),
            &y,
            &rows,
            &folds,
            5,
            3,
            &cs,
            &LogisticConfig::default(),
            None,
        )
        .unwrap();
        assert!(cv.best > 0, "chose C = {}", cv.cs[cv.best]);
        assert_eq!(cv.oof_logits.nrows(), 150);
        assert!(cv.oof_logits.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn streaming_engine_solves_linfas_problem() {
        // Same objective and solver: the probabilities agree closely with linfa's.
        for classes in [2, 3] {
            let (x, y) = blobs(240, 7, classes, 4);
            let rows: Vec<usize> = (0..240).collect();
            let mut cfg = LogisticConfig {
                alpha: 5.0,
                ..Default::default()
            };
            cfg.engine = LogisticEngine::Linfa;
            let f = fit(x.view(), &y, &rows, classes, &cfg, None, None).unwrap();
            let (a, sa) = (f.head, f.standardize);
            cfg.engine = LogisticEngine::Streaming;
            let f = fit(x.view(), &y, &rows, classes, &cfg, None, None).unwrap();
            assert!(f.iterations.unwrap() > 0 && f.passes.unwrap() > 0);
            let (b, sb) = (f.head, f.standardize);
            assert_eq!(sa, sb);
            let pa = a.predict_proba(sa.apply(x.view()).view());
            let pb = b.predict_proba(sb.apply(x.view()).view());
            let worst = pa
                .iter()
                .zip(&pb)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-2,
                "{classes} classes: probabilities differ by {worst}"
            );
        }
        assert_eq!(
            LogisticEngine::Auto.resolve(LINFA_MAX_ENTRIES + 1),
            LogisticEngine::Streaming
        );
        assert_eq!(LogisticEngine::Auto.resolve(10), LogisticEngine::Linfa);
    }
}
