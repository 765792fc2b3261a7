//! Fitting the heads of a [`TrainPlan`] on [`TrainingData`]: each fit gives
//! a [`Trained`] head (its report and its bundle). Nothing here prints or
//! writes files; the front end does both.

use serde_json::json;

use crate::bundle::Bundle;
use crate::error::Result;
use crate::head::mlp::Mlp;
use crate::head::{HeadKind, Rng, Standardize};
use crate::metrics::{self, Evaluation};
use crate::report::HeadReport;
use crate::train::data::TrainingData;
use crate::train::plan::TrainPlan;
use crate::train::{self, Progress, Rows};

/// A trained head: what it scored, and the bundle that ships it.
pub struct Trained {
    pub report: HeadReport,
    pub bundle: Bundle,
    /// Lines worth telling the user (solver details, early stopping, …).
    pub notes: Vec<String>,
}

/// Scores of a head on some rows, given a function from feature rows to
/// probabilities; rows are gathered in blocks, so memory stays small.
fn evaluate_rows(
    rows: Rows,
    class_names: &[String],
    predict: &dyn Fn(ndarray::ArrayView2<f32>) -> ndarray::Array2<f32>,
) -> Evaluation {
    const BLOCK: usize = 2048;
    let mut xb = ndarray::Array2::zeros((0, 0));
    let mut probs = ndarray::Array2::<f32>::zeros((rows.len(), class_names.len())); // [n_rows, n_classes]
    for (i, chunk) in rows.rows.chunks(BLOCK).enumerate() {
        Mlp::gather_rows(rows.x, chunk, &mut xb);
        let p = predict(xb.view());
        probs
            .slice_mut(ndarray::s![i * BLOCK..i * BLOCK + chunk.len(), ..])
            .assign(&p);
    }
    let labels: Vec<usize> = rows.rows.iter().map(|&r| rows.labels[r]).collect();
    metrics::evaluate(probs.view(), &labels, class_names, None)
}

fn final_metrics(r: &HeadReport) -> serde_json::Value {
    json!({
        "train_loss": r.train_loss,
        "train_accuracy": r.train_accuracy,
        "val_loss": r.validation.as_ref().map(|e| e.log_loss),
        "val_accuracy": r.validation.as_ref().map(|e| e.accuracy),
        "best_epoch": r.best_epoch,
        "train_seconds": r.train_seconds,
    })
}

/// The logistic baseline's solver, as it will be described.
#[cfg(feature = "train")]
pub fn logistic_config(plan: &TrainPlan) -> crate::head::logistic::LogisticConfig {
    let l = plan
        .logistic
        .clone()
        .unwrap_or(crate::train::plan::LogisticPlan {
            c: 1.0,
            max_iterations: 100,
        });
    crate::head::logistic::LogisticConfig {
        alpha: 1.0 / l.c,
        max_iterations: l.max_iterations,
        ..Default::default()
    }
}

/// "linfa-logistic, L-BFGS" or the streaming engine, for `n_values` feature values.
#[cfg(feature = "train")]
pub fn logistic_engine(plan: &TrainPlan, n_values: usize) -> &'static str {
    match logistic_config(plan).engine.resolve(n_values) {
        crate::head::logistic::LogisticEngine::Streaming => {
            "argmin L-BFGS as linfa-logistic, streaming products"
        }
        _ => "linfa-logistic, L-BFGS",
    }
}

/// Fits the logistic baseline (L-BFGS on standardised features).
#[cfg(feature = "train")]
pub fn fit_logistic(plan: &TrainPlan, data: &TrainingData) -> Result<Trained> {
    use crate::head::logistic;
    let config = logistic_config(plan);
    let c = 1.0 / config.alpha;
    let engine = logistic_engine(plan, data.train_rows.len() * data.train.n_features());
    let t0 = std::time::Instant::now();
    let fit = logistic::fit(
        data.train.data.view(),
        &data.train_labels,
        &data.train_rows,
        data.class_names.len(),
        &config,
    )?;
    let mut notes = Vec::new();
    if let (Some(it), Some(passes)) = (fit.iterations, fit.passes) {
        notes.push(format!(
            "logistic regression: {it} L-BFGS iterations, {passes} passes over the features, stopped: {}",
            fit.stop.as_deref().unwrap_or("—")
        ));
    }
    let (head, std) = (fit.head, fit.standardize);
    let seconds = t0.elapsed().as_secs_f64();
    let predict = |x: ndarray::ArrayView2<f32>| head.predict_proba(std.apply(x).view());
    let tr = evaluate_rows(data.train_rows(), &data.class_names, &predict);
    let validation = data
        .val_rows()
        .map(|v| evaluate_rows(v, &data.class_names, &predict));
    let report = HeadReport {
        kind: HeadKind::Logistic,
        description: format!("logistic regression ({engine}, C = {c}, standardised)"),
        train_seconds: seconds,
        seconds_per_epoch: None,
        train_loss: tr.log_loss,
        train_accuracy: tr.accuracy,
        validation,
        history: Vec::new(),
        best_epoch: None,
        stopped_early: false,
        bundle: "logistic.safetensors".into(),
    };
    let bundle = Bundle::new(
        HeadKind::Logistic,
        head,
        Some(std),
        data.class_names.clone(),
        data.train.backbones.clone(),
        plan.training_json(json!({"kind": "logistic", "config": config})),
        final_metrics(&report),
    );
    Ok(Trained {
        report,
        bundle,
        notes,
    })
}

/// Fits the MLP head. With `standardize` in the plan, the features of `data`
/// are standardised in place (fitted on the training rows) first.
pub fn fit_mlp(
    plan: &TrainPlan,
    data: &mut TrainingData,
    progress: &mut dyn FnMut(Progress),
) -> Result<Trained> {
    let m = plan
        .mlp
        .as_ref()
        .ok_or_else(|| crate::Error::Config("the plan has no MLP head".into()))?;
    let std = if m.standardize {
        let s = Standardize::fit(data.train.data.view(), Some(&data.train_rows));
        s.apply_inplace(data.train.data.view_mut());
        if let Some(v) = &mut data.val {
            s.apply_inplace(v.data.view_mut());
        }
        Some(s)
    } else {
        None
    };
    let config = m.config(data.train.n_features(), data.class_names.len());
    config.validate()?;
    let mut mlp = Mlp::new(config.clone(), &mut Rng::new(plan.config.seed));
    let outcome = train::train_mlp(
        &mut mlp,
        data.train_rows(),
        data.val_rows(),
        &plan.config,
        progress,
    );
    let mut notes = Vec::new();
    if outcome.stopped_early {
        notes.push(format!(
            "stopped early: no lower validation loss for {} epochs",
            plan.config.patience.unwrap_or(0)
        ));
    }
    if data.val_rows().is_some() {
        notes.push(format!(
            "kept the weights of epoch {} (lowest validation loss)",
            outcome.best_epoch
        ));
    }
    let predict = |x: ndarray::ArrayView2<f32>| mlp.predict_proba(x);
    let tr = evaluate_rows(data.train_rows(), &data.class_names, &predict);
    let validation = data
        .val_rows()
        .map(|v| evaluate_rows(v, &data.class_names, &predict));
    let n_epochs = outcome.history.len().max(1);
    let report = HeadReport {
        kind: HeadKind::Mlp,
        description: config.describe(),
        train_seconds: outcome.seconds,
        seconds_per_epoch: Some(
            outcome.history.iter().map(|h| h.seconds).sum::<f64>() / n_epochs as f64,
        ),
        train_loss: tr.log_loss,
        train_accuracy: tr.accuracy,
        validation,
        history: outcome.history.clone(),
        best_epoch: Some(outcome.best_epoch),
        stopped_early: outcome.stopped_early,
        bundle: "mlp.safetensors".into(),
    };
    let bundle = Bundle::new(
        HeadKind::Mlp,
        mlp,
        std,
        data.class_names.clone(),
        data.train.backbones.clone(),
        plan.training_json(json!({
            "kind": "mlp",
            "architecture": config,
            "config": plan.config,
            "standardize": m.standardize,
        })),
        final_metrics(&report),
    );
    Ok(Trained {
        report,
        bundle,
        notes,
    })
}

/// `metrics.json` of a run.
pub fn metrics_json(
    plan: &TrainPlan,
    data: &TrainingData,
    reports: &[HeadReport],
) -> serde_json::Value {
    let (val_files, val_split) = match &plan.validation {
        crate::train::plan::Validation::Files(f) => (f.clone(), None),
        crate::train::plan::Validation::Split(s) => (Vec::new(), Some(*s)),
        crate::train::plan::Validation::None => (Vec::new(), None),
    };
    json!({
        "xfer_version": crate::VERSION,
        "train": {
            "files": plan.train_files,
            "n_samples": data.train_rows.len(),
            "n_features": data.train.n_features(),
            "backbones": data.train.backbones,
        },
        "validation": {
            "files": val_files,
            "split": val_split,
            "n_samples": data.val_rows.len(),
        },
        "classes": data.class_names,
        "heads": reports,
    })
}
