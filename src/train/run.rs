//! Fitting the heads of a [`Plan`] on [`TrainingData`]: each fit gives
//! a [`Trained`] head (its report and its bundle), then [`recommend`] marks the
//! one with the lowest held-out log loss. Nothing here prints or writes files;
//! the front end does both.
//!
//! Held-out predictions come from the validation rows, or with
//! cross-validation from the folds (each row predicted by the fold model that
//! did not train on it). They choose the settings left open (C, the MLP's
//! epochs), fit the temperature, and score the heads against each other.

use ndarray::{Array2, ArrayView2};
use serde_json::json;

use crate::error::Result;
use crate::eval::metrics::{self, Evaluation};
use crate::eval::report::{self, CvSummary, HeadReport};
use crate::ship::bundle::Bundle;
use crate::train::data::TrainingData;
use crate::train::folder::RunFolder;
use crate::train::head::calibrate::{self, Temperature};
use crate::train::head::mlp::Mlp;
use crate::train::head::{softmax_rows, HeadKind, Rng, Standardize};
use crate::train::plan::{MlpPlan, Plan, Validation};
use crate::train::{self, Progress, Rows, TrainConfig};

/// A trained head: what it scored, and the bundle that ships it.
pub struct Trained {
    pub report: HeadReport,
    pub(crate) bundle: Bundle,
    /// Lines worth telling the user (solver details, early stopping, …).
    pub notes: Vec<String>,
    /// With cross-validation: every training row's out-of-fold
    /// probabilities at the fitted temperature, [train_rows.len(), n_classes]
    /// in `train_rows` order (`out_of_fold.json`, read by `xfer audit --run`).
    pub(crate) oof_probs: Option<Array2<f32>>,
}

/// Out-of-fold logits as probabilities at temperature `t`.
fn oof_probs(oof_logits: Option<ArrayView2<f32>>, t: f32) -> Option<Array2<f32>> {
    oof_logits.map(|z| softmax_rows((&z / t).view()))
}

/// Logits of a head on some rows, gathered in blocks so memory stays small.
///
/// # Shapes
/// → [rows.len(), n_classes]
fn logits_of(
    rows: Rows,
    n_classes: usize,
    logits: &dyn Fn(ArrayView2<f32>) -> Array2<f32>,
) -> Array2<f32> {
    const BLOCK: usize = 2048;
    let mut xb = Array2::zeros((0, 0));
    let mut out = Array2::<f32>::zeros((rows.len(), n_classes));
    for (i, chunk) in rows.rows.chunks(BLOCK).enumerate() {
        Mlp::gather_rows(rows.x, chunk, &mut xb);
        out.slice_mut(ndarray::s![i * BLOCK..i * BLOCK + chunk.len(), ..])
            .assign(&logits(xb.view()));
    }
    out
}

fn labels_of(rows: Rows) -> Vec<usize> {
    rows.rows.iter().map(|&r| rows.labels[r]).collect()
}

/// Scores of logits at temperature `t`.
fn evaluate_logits(
    logits: ArrayView2<f32>,
    labels: &[usize],
    t: f32,
    class_names: &[String],
) -> Evaluation {
    let probs = softmax_rows((&logits / t).view());
    metrics::evaluate(probs.view(), labels, class_names, None)
}

/// What held-out predictions say about a head.
struct HeldOut {
    temperature: Temperature,
    evaluation: Evaluation,
    cv: Option<CvSummary>,
}

/// Fits the temperature (when the plan calibrates) on held-out logits and
/// scores them; with folds (the fold of each row) also per fold.
fn held_out(
    plan: &Plan,
    logits: ArrayView2<f32>,
    labels: &[usize],
    folds: Option<(&[usize], usize)>,
    class_names: &[String],
) -> HeldOut {
    let temperature = if plan.calibrate {
        calibrate::fit_temperature(logits, labels)
    } else {
        let l = calibrate::log_loss_at(logits, labels, 1.0);
        Temperature {
            t: 1.0,
            log_loss_before: l,
            log_loss_after: l,
        }
    };
    let evaluation = evaluate_logits(logits, labels, temperature.t, class_names);
    let cv = folds.map(|(fold_of, k)| {
        let per_fold = (0..k)
            .map(|f| {
                let idx: Vec<usize> = (0..labels.len()).filter(|&i| fold_of[i] == f).collect();
                let z = logits.select(ndarray::Axis(0), &idx);
                let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
                let e = evaluate_logits(z.view(), &y, temperature.t, class_names);
                (e.log_loss, e.accuracy)
            })
            .collect();
        CvSummary::new(per_fold)
    });
    HeldOut {
        temperature,
        evaluation,
        cv,
    }
}

/// The held-out figures of a head — from out-of-fold logits when given, else
/// from its logits on the validation rows — and its training rows' scores at
/// the fitted temperature.
fn score(
    plan: &Plan,
    data: &TrainingData,
    oof_logits: Option<ArrayView2<f32>>,
    logits: &dyn Fn(ArrayView2<f32>) -> Array2<f32>,
) -> (Option<HeldOut>, Evaluation) {
    let n_classes = data.class_names.len();
    let held = match oof_logits {
        Some(z) => Some(held_out(
            plan,
            z,
            &labels_of(data.train_rows()),
            Some((&data.folds, data.n_folds())),
            &data.class_names,
        )),
        None => data.val_rows().map(|v| {
            let z = logits_of(v, n_classes, logits);
            held_out(plan, z.view(), &labels_of(v), None, &data.class_names)
        }),
    };
    let t = held.as_ref().map_or(1.0, |h| h.temperature.t);
    let train = evaluate_logits(
        logits_of(data.train_rows(), n_classes, logits).view(),
        &labels_of(data.train_rows()),
        t,
        &data.class_names,
    );
    (held, train)
}

/// A head's final figures, as bundles, `metrics.json` and `train --json` record them.
pub fn final_metrics(r: &HeadReport) -> serde_json::Value {
    json!({
        "train_loss": r.train_loss,
        "train_accuracy": r.train_accuracy,
        "val_loss": r.validation.as_ref().map(|e| e.log_loss),
        "val_accuracy": r.validation.as_ref().map(|e| e.accuracy),
        "val_loss_uncalibrated": r.uncalibrated_log_loss,
        "temperature": r.temperature,
        "cv": r.cv,
        "best_epoch": r.best_epoch,
        "train_seconds": r.train_seconds,
    })
}

/// `--class-weight balanced`: weights from the training rows' labels.
fn class_weights(plan: &Plan, data: &TrainingData) -> Option<Vec<f32>> {
    plan.balanced.then(|| {
        let y: Vec<usize> = data
            .train_rows
            .iter()
            .map(|&r| data.train_labels[r])
            .collect();
        crate::train::head::balanced_class_weights(&y, data.class_names.len())
    })
}

/// The logistic baseline's solver settings for C.
#[cfg(feature = "train")]
fn logistic_config(plan: &Plan, c: f32) -> crate::train::head::logistic::LogisticConfig {
    crate::train::head::logistic::LogisticConfig {
        alpha: 1.0 / c,
        max_iterations: plan.logistic.as_ref().map_or(100, |l| l.max_iterations),
        ..Default::default()
    }
}

/// Folds for choosing C when validation is not by folds: stratified, as many
/// as the smallest class allows (at most 5).
#[cfg(feature = "train")]
fn inner_folds(data: &TrainingData, seed: u64) -> (Vec<usize>, usize) {
    let y: Vec<usize> = data
        .train_rows
        .iter()
        .map(|&r| data.train_labels[r])
        .collect();
    let mut counts = vec![0usize; data.class_names.len()];
    for &l in &y {
        counts[l] += 1;
    }
    let k = counts
        .iter()
        .copied()
        .filter(|&c| c > 0)
        .min()
        .unwrap_or(0)
        .min(5);
    (
        crate::features::stratified_folds(&y, data.class_names.len(), k.max(2), seed),
        k,
    )
}

/// Fits the logistic baseline (L-BFGS on standardised features), with C
/// chosen by cross-validation unless the plan fixes it.
#[cfg(feature = "train")]
pub fn fit_logistic(plan: &Plan, data: &TrainingData) -> Result<Trained> {
    use crate::train::head::logistic;
    let t0 = std::time::Instant::now();
    let x = data.train.data.view();
    let n_classes = data.class_names.len();
    let weights = class_weights(plan, data);
    let fixed_c = plan.logistic.as_ref().and_then(|l| l.c);
    let mut notes = Vec::new();
    // The folds C is chosen on: the run's own, or inner folds of the training rows.
    let by_folds = data.n_folds() > 0;
    let (folds, k) = if by_folds {
        (data.folds.clone(), data.n_folds())
    } else {
        inner_folds(data, plan.config.seed)
    };
    let cs = match fixed_c {
        Some(c) => vec![c],
        None => logistic::default_cs(),
    };
    let path = if (fixed_c.is_none() && k >= 2) || by_folds {
        Some(logistic::cross_validate(
            x,
            &data.train_labels,
            &data.train_rows,
            &folds,
            k,
            n_classes,
            &cs,
            &logistic_config(plan, 1.0),
            weights.as_deref(),
        )?)
    } else {
        None
    };
    let (c, chosen) = match (&path, fixed_c) {
        (_, Some(c)) => (c, None),
        (Some(p), None) => {
            let c = p.cs[p.best];
            notes.push(format!(
                "logistic regression: C = {c:.4} chosen by stratified {k}-fold cross-validation on log loss over {} values from 1e-4 to 1e4 (held-out log loss {:.4}; {} L-BFGS iterations in all)",
                p.cs.len(),
                p.mean_log_loss(p.best),
                p.iterations
            ));
            (c, Some(format!("C = {c:.4} by {k}-fold CV")))
        }
        (None, None) => {
            notes.push(
                "logistic regression: too few rows per class to cross-validate C; C = 1".into(),
            );
            (1.0, None)
        }
    };
    let config = logistic_config(plan, c);
    // A cross-validated C is refitted from the folds' mean solution.
    let init = path
        .as_ref()
        .filter(|_| fixed_c.is_none())
        .map(|p| p.mean_params.clone());
    let fit = logistic::fit(
        x,
        &data.train_labels,
        &data.train_rows,
        n_classes,
        &config,
        weights.as_deref(),
        init,
    )?;
    if let (Some(it), Some(passes)) = (fit.iterations, fit.passes) {
        notes.push(format!(
            "logistic regression: {it} L-BFGS iterations, {passes} passes over the features, stopped: {}",
            fit.stop.as_deref().unwrap_or("—")
        ));
    }
    let fit_engine = fit.engine;
    let (head, std) = (fit.head, fit.standardize);
    let logits = |x: ArrayView2<f32>| head.forward(std.apply(x).view());
    let oof = if by_folds {
        Some(
            path.as_ref()
                .expect("folds cross-validate")
                .oof_logits
                .view(),
        )
    } else {
        None
    };
    let (held, tr) = score(plan, data, oof, &logits);
    let t = held.as_ref().map_or(1.0, |h| h.temperature.t);
    let oof_probs = oof_probs(oof, t);
    let engine = fit_engine.describe();
    let report = HeadReport {
        kind: HeadKind::Logistic,
        description: format!("logistic regression ({engine}, C = {c:.4}, standardised)"),
        train_seconds: t0.elapsed().as_secs_f64(),
        seconds_per_epoch: None,
        train_loss: tr.log_loss,
        train_accuracy: tr.accuracy,
        uncalibrated_log_loss: held.as_ref().map(|h| h.temperature.log_loss_before),
        temperature: t,
        cv: held.as_ref().and_then(|h| h.cv.clone()),
        validation: held.map(|h| h.evaluation),
        history: Vec::new(),
        best_epoch: None,
        stopped_early: false,
        bundle: RunFolder::LOGISTIC.into(),
        chosen,
        recommended: false,
    };
    let mut bundle = Bundle::new(
        HeadKind::Logistic,
        head,
        Some(std),
        data.class_names.clone(),
        data.train.backbones.clone(),
        with_views(
            plan.training_json(
                &data.validation,
                json!({"kind": "logistic", "config": config, "c_by_cv": fixed_c.is_none()}),
            ),
            data,
            "centre view only (the logistic head does not use the augmented views)",
        ),
        final_metrics(&report),
    );
    bundle.meta.temperature = t;
    Ok(Trained {
        report,
        bundle,
        notes,
        oof_probs,
    })
}

/// The training metadata with `views` added when the training features hold
/// augmented views: their number, how they were drawn (the file's `augment`
/// JSON) and how this head used them.
fn with_views(
    mut training: serde_json::Value,
    data: &TrainingData,
    used: &str,
) -> serde_json::Value {
    if let (Some(v), Some(obj)) = (&data.train.views, training.as_object_mut()) {
        let augment: serde_json::Value = data
            .train
            .augment
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or(serde_json::Value::Null);
        obj.insert(
            "views".into(),
            json!({"k": v.shape()[1], "augment": augment, "used": used}),
        );
    }
    training
}

/// The MLP's cross-validation: one run per fold, held-out loss every epoch;
/// the epoch count with the lowest mean held-out loss (over the epochs every
/// fold ran) wins, and each fold's logits at that epoch are the out-of-fold
/// predictions.
struct MlpFolds {
    epochs: usize,
    /// [train_rows.len(), n_classes], in the order of `train_rows`.
    oof_logits: Array2<f32>,
    /// Mean held-out loss per epoch (over the common epochs).
    curve: Vec<f64>,
    /// The learning-rate schedule the folds ran (the final head runs it too).
    schedule: crate::train::head::optim::LrSchedule,
}

fn cross_validate_mlp(
    plan: &Plan,
    data: &TrainingData,
    config: &crate::train::head::mlp::MlpConfig,
    progress: &mut dyn FnMut(Progress),
) -> MlpFolds {
    let k = data.n_folds();
    let n_classes = data.class_names.len();
    let x = data.train.data.view();
    let position: std::collections::HashMap<usize, usize> = data
        .train_rows
        .iter()
        .enumerate()
        .map(|(i, &r)| (r, i))
        .collect();
    let mut curves: Vec<Vec<f64>> = Vec::new();
    // Per fold, the held-out logits of every epoch: [fold][epoch] → [n_fold, n_classes]
    let mut fold_logits: Vec<Vec<Array2<f32>>> = Vec::new();
    let mut fold_rows: Vec<Vec<usize>> = Vec::new();
    // One configuration for all folds (from the mean fold size), so that
    // every fold and the final head follow the same schedule.
    let n_outside = data.train_rows.len() - data.train_rows.len() / k.max(1);
    let mut tc = plan.mlp_config(n_outside, true);
    tc.class_weights = class_weights(plan, data);
    for f in 0..k {
        let (outside, inside) = data.fold_rows(f);
        let mut mlp = Mlp::new(config.clone(), &mut Rng::new(plan.config.seed));
        let held = Rows {
            x,
            labels: &data.train_labels,
            rows: &inside,
            views: None,
        };
        let mut per_epoch = Vec::new();
        let mut hook = |p: Progress| match p {
            Progress::Weights { mlp, .. } => {
                per_epoch.push(logits_of(held, n_classes, &|xb| mlp.forward(xb)))
            }
            other => progress(other),
        };
        let outcome = train::train_mlp(
            &mut mlp,
            Rows {
                x,
                labels: &data.train_labels,
                rows: &outside,
                views: data.train.views.as_ref().map(|v| v.view()),
            },
            Some(held),
            &tc,
            &mut hook,
        );
        curves.push(outcome.history.iter().filter_map(|h| h.val_loss).collect());
        fold_logits.push(per_epoch);
        fold_rows.push(inside);
    }
    let common = curves.iter().map(Vec::len).min().unwrap_or(0);
    let curve: Vec<f64> = (0..common)
        .map(|e| curves.iter().map(|c| c[e]).sum::<f64>() / k as f64)
        .collect();
    let best = (0..common)
        .min_by(|&a, &b| curve[a].total_cmp(&curve[b]).then(a.cmp(&b)))
        .unwrap_or(0);
    let mut oof_logits = Array2::<f32>::zeros((data.train_rows.len(), n_classes));
    for (rows, logits) in fold_rows.iter().zip(&fold_logits) {
        if let Some(z) = logits.get(best) {
            for (j, r) in rows.iter().enumerate() {
                oof_logits.row_mut(position[r]).assign(&z.row(j));
            }
        }
    }
    MlpFolds {
        epochs: best + 1,
        oof_logits,
        curve,
        schedule: tc.schedule,
    }
}

/// Fits the MLP head. With `standardize` in the plan, the features of `data`
/// are standardised in place (fitted on the training rows) first. With
/// folds, the epoch count comes from cross-validation and the final head is
/// trained on all rows for that many epochs.
pub fn fit_mlp(
    plan: &Plan,
    data: &mut TrainingData,
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained> {
    let m = plan
        .mlp
        .as_ref()
        .ok_or_else(|| crate::Error::Config("the plan has no MLP head".into()))?;
    let std = m.standardize.then(|| standardize_in_place(data));
    let config = m.config(data.train.n_features(), data.class_names.len());
    config.validate()?;
    let weights = class_weights(plan, data);
    let mut notes = Vec::new();
    let by_folds = data.n_folds() > 0;
    let validated = by_folds || data.val_rows().is_some();
    let mut tc = plan.mlp_config(data.train_rows.len(), validated && !by_folds);
    tc.class_weights = weights;
    let t0 = std::time::Instant::now();
    let folds = by_folds.then(|| {
        let mut fold_progress = |p: Progress| {
            if let Progress::Batch { .. } = p {
                progress(p)
            }
        };
        cross_validate_mlp(plan, data, &config, &mut fold_progress)
    });
    if let Some(f) = &folds {
        // The final head: all rows, the schedule as planned, stopped at the chosen epoch.
        tc.epochs = f.epochs;
        tc.schedule = f.schedule;
        tc.patience = None;
        notes.push(format!(
            "MLP: {} epochs chosen by {}-fold cross-validation (lowest mean held-out loss, {:.4}, over the first {} epochs every fold ran); the final head trains on all {} rows for {} epochs",
            f.epochs,
            data.n_folds(),
            f.curve[f.epochs - 1],
            f.curve.len(),
            data.train_rows.len(),
            f.epochs
        ));
    }
    let mut mlp = Mlp::new(config.clone(), &mut Rng::new(plan.config.seed));
    let outcome = train::train_mlp(
        &mut mlp,
        data.train_rows(),
        if by_folds { None } else { data.val_rows() },
        &tc,
        progress,
    );
    if outcome.stopped_early {
        notes.push(format!(
            "stopped early: no lower validation loss for {} epochs",
            tc.patience.unwrap_or(0)
        ));
    }
    if !by_folds && data.val_rows().is_some() {
        notes.push(format!(
            "kept the weights of epoch {} (lowest validation loss)",
            outcome.best_epoch
        ));
    }
    let logits = |x: ArrayView2<f32>| mlp.forward(x);
    let (held, tr) = score(
        plan,
        data,
        folds.as_ref().map(|f| f.oof_logits.view()),
        &logits,
    );
    let t = held.as_ref().map_or(1.0, |h| h.temperature.t);
    let oof_probs = oof_probs(folds.as_ref().map(|f| f.oof_logits.view()), t);
    let n_epochs = outcome.history.len().max(1);
    let report = HeadReport {
        kind: HeadKind::Mlp,
        description: config.describe(),
        train_seconds: t0.elapsed().as_secs_f64(),
        seconds_per_epoch: Some(
            outcome.history.iter().map(|h| h.seconds).sum::<f64>() / n_epochs as f64,
        ),
        train_loss: tr.log_loss,
        train_accuracy: tr.accuracy,
        uncalibrated_log_loss: held.as_ref().map(|h| h.temperature.log_loss_before),
        temperature: t,
        cv: held.as_ref().and_then(|h| h.cv.clone()),
        validation: held.map(|h| h.evaluation),
        history: outcome.history.clone(),
        best_epoch: Some(outcome.best_epoch),
        stopped_early: outcome.stopped_early,
        bundle: RunFolder::MLP.into(),
        chosen: folds
            .as_ref()
            .map(|f| format!("{} epochs by {}-fold CV", f.epochs, data.n_folds())),
        recommended: false,
    };
    let mut bundle = mlp_bundle(plan, m, data, mlp, std, &tc, &report);
    bundle.meta.temperature = t;
    Ok(Trained {
        report,
        bundle,
        notes,
        oof_probs,
    })
}

/// Standardises the features of `data` in place (training, views,
/// validation), fitted on the training rows; returns the transform the
/// bundle applies to new features.
fn standardize_in_place(data: &mut TrainingData) -> Standardize {
    let s = Standardize::fit(data.train.data.view(), Some(&data.train_rows));
    s.apply_inplace(data.train.data.view_mut());
    if let Some(v) = &mut data.train.views {
        let (n, k, d) = v.dim();
        let flat = v
            .view_mut()
            .into_shape_with_order((n * k, d))
            .expect("views are contiguous"); // [n × K, d]
        s.apply_inplace(flat);
    }
    if let Some(v) = &mut data.val {
        s.apply_inplace(v.data.view_mut());
    }
    s
}

/// The MLP's bundle: the head, its standardisation and what trained it.
fn mlp_bundle(
    plan: &Plan,
    m: &MlpPlan,
    data: &TrainingData,
    mlp: Mlp,
    std: Option<Standardize>,
    tc: &TrainConfig,
    report: &HeadReport,
) -> Bundle {
    let config = mlp.config.clone();
    Bundle::new(
        HeadKind::Mlp,
        mlp,
        std,
        data.class_names.clone(),
        data.train.backbones.clone(),
        with_views(
            plan.training_json(
                &data.validation,
                json!({
                    "kind": "mlp",
                    "architecture": config,
                    "config": tc,
                    "standardize": m.standardize,
                    "step_budget": m.steps,
                }),
            ),
            data,
            "one view per image per epoch, drawn at random (seeded); validation and held-out folds on the centre view",
        ),
        final_metrics(report),
    )
}

/// Marks the head with the lowest held-out log loss (after calibration) as
/// recommended and returns its index; None without held-out figures. On a
/// tie the earlier head (the logistic baseline, trained first) wins.
pub fn recommend(reports: &mut [HeadReport]) -> Option<usize> {
    let best = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.validation.as_ref().map(|e| (i, e.log_loss)))
        .filter(|(_, l)| l.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(i, _)| i)?;
    for (i, r) in reports.iter_mut().enumerate() {
        r.recommended = i == best;
    }
    Some(best)
}

/// `out_of_fold.json` of a run: every head's out-of-fold probabilities, with
/// the rows' paths, labels and folds; None without cross-validation.
pub(crate) fn out_of_fold(
    plan: &Plan,
    data: &TrainingData,
    trained: &[Trained],
    reports: &[HeadReport],
) -> Option<crate::eval::audit::oof::OutOfFold> {
    use crate::eval::audit::oof::{rows, OofHead, OutOfFold};
    let heads: Vec<OofHead> = trained
        .iter()
        .zip(reports)
        .filter_map(|(t, r)| {
            t.oof_probs.as_ref().map(|p| OofHead {
                kind: r.kind.to_string(),
                bundle: r.bundle.clone(),
                temperature: r.temperature,
                probabilities: rows(p.view()),
            })
        })
        .collect();
    if heads.is_empty() {
        return None;
    }
    Some(OutOfFold {
        xfer_version: crate::VERSION.into(),
        files: plan.train_files.clone(),
        backbones: data.train.backbones.clone(),
        classes: data.class_names.clone(),
        paths: data
            .train
            .paths
            .as_ref()
            .map(|p| data.train_rows.iter().map(|&r| p[r].clone()).collect()),
        labels: data
            .train_rows
            .iter()
            .map(|&r| data.train_labels[r])
            .collect(),
        folds: data.folds.clone(),
        n_folds: data.n_folds(),
        recommended: reports
            .iter()
            .find(|r| r.recommended)
            .map(|r| r.bundle.clone()),
        heads,
    })
}

/// `metrics.json` of a run.
pub(crate) fn metrics_json(
    plan: &Plan,
    data: &TrainingData,
    reports: &[HeadReport],
) -> serde_json::Value {
    let (val_files, val_split, cv) = match &data.validation {
        Validation::Files(f) => (f.clone(), None, None),
        Validation::Split(s) => (Vec::new(), Some(*s), None),
        Validation::Folds(k) => (Vec::new(), None, Some(*k)),
        Validation::None | Validation::Auto => (Vec::new(), None, None),
    };
    json!({
        "xfer_version": crate::VERSION,
        "preset": plan.preset,
        "train": {
            "files": plan.train_files,
            "n_samples": data.train_rows.len(),
            "n_features": data.train.n_features(),
            "backbones": data.train.backbones,
        },
        "validation": {
            "files": val_files,
            "split": val_split,
            "cv_folds": cv,
            // The fold of each training row (file order), so that other tools
            // can be scored on the same folds.
            "folds": data.folds,
            "n_samples": data.val_rows.len(),
            "note": data.validation_note,
        },
        "classes": data.class_names,
        "recommended": reports.iter().find(|r| r.recommended).map(|r| &r.bundle),
        "heads": reports,
    })
}

/// Writes a finished run into `folder`: each head's bundle, the recommended
/// one again as `best.safetensors`, the MLP's learning curves,
/// `metrics.json` and, with folds, `out_of_fold.json`. Returns the names
/// written, in that order (then [`RunFolder::remove_stale`] clears an
/// earlier run's others).
pub fn save(
    folder: &RunFolder,
    plan: &Plan,
    data: &TrainingData,
    trained: &[Trained],
    reports: &[HeadReport],
    best: Option<usize>,
) -> Result<Vec<String>> {
    let mut written: Vec<String> = Vec::new();
    for (t, r) in trained.iter().zip(reports) {
        t.bundle.save(&folder.file(&r.bundle))?;
        written.push(r.bundle.clone());
    }
    if let Some(b) = best {
        trained[b].bundle.save(&folder.file(RunFolder::BEST))?;
        written.push(RunFolder::BEST.into());
    }
    let baseline = reports
        .iter()
        .find(|r| r.kind == HeadKind::Logistic)
        .and_then(|r| r.validation.as_ref())
        .map(|e| (e.log_loss, e.accuracy));
    if let Some(m) = reports.iter().find(|r| r.kind == HeadKind::Mlp) {
        let title = format!(
            "MLP on {} — {}",
            data.train.describe_backbones(),
            plan.config.optimizer.describe()
        );
        let svg = report::learning_curve_svg(&m.history, &title, m.best_epoch, baseline);
        folder.write(RunFolder::LEARNING_CURVE, svg.as_bytes())?;
        written.push(RunFolder::LEARNING_CURVE.into());
    }
    let metrics = metrics_json(plan, data, reports);
    let text = serde_json::to_string_pretty(&metrics).expect("JSON values serialise") + "\n";
    folder.write(RunFolder::METRICS, text.as_bytes())?;
    written.push(RunFolder::METRICS.into());
    if let Some(oof) = out_of_fold(plan, data, trained, reports) {
        let text = serde_json::to_string(&oof).expect("JSON values serialise") + "\n";
        folder.write(RunFolder::OUT_OF_FOLD, text.as_bytes())?;
        written.push(RunFolder::OUT_OF_FOLD.into());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(kind: HeadKind, val_loss: Option<f64>) -> HeadReport {
        HeadReport {
            kind,
            description: String::new(),
            train_seconds: 0.0,
            seconds_per_epoch: None,
            train_loss: 0.0,
            train_accuracy: 1.0,
            validation: val_loss.map(|l| {
                let mut e = metrics::evaluate(
                    ndarray::array![[0.9f32, 0.1]].view(),
                    &[0],
                    &["a".into(), "b".into()],
                    None,
                );
                e.log_loss = l;
                e
            }),
            history: Vec::new(),
            best_epoch: None,
            stopped_early: false,
            bundle: format!("{kind}.safetensors"),
            temperature: 1.0,
            uncalibrated_log_loss: None,
            cv: None,
            chosen: None,
            recommended: false,
        }
    }

    #[test]
    fn the_lowest_held_out_log_loss_is_recommended() {
        let mut r = vec![
            report(HeadKind::Logistic, Some(0.42)),
            report(HeadKind::Mlp, Some(0.31)),
        ];
        assert_eq!(recommend(&mut r), Some(1));
        assert!(!r[0].recommended && r[1].recommended);
        // A tie goes to the first (the logistic baseline); NaN never wins.
        let mut r = vec![
            report(HeadKind::Logistic, Some(0.3)),
            report(HeadKind::Mlp, Some(0.3)),
        ];
        assert_eq!(recommend(&mut r), Some(0));
        let mut r = vec![
            report(HeadKind::Logistic, Some(f64::NAN)),
            report(HeadKind::Mlp, Some(0.9)),
        ];
        assert_eq!(recommend(&mut r), Some(1));
        // Without held-out figures nothing is recommended.
        let mut r = vec![
            report(HeadKind::Logistic, None),
            report(HeadKind::Mlp, None),
        ];
        assert_eq!(recommend(&mut r), None);
        assert!(r.iter().all(|h| !h.recommended));
    }
}
