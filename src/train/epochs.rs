//! The training loop of the MLP head (seeded per-epoch shuffling, mini-batches,
//! an optional learning-rate schedule, validation every epoch, early stopping
//! on validation loss, the best epoch's weights kept) and the logistic
//! baseline's fit. No I/O: progress goes to a callback.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, ArrayView3};
use serde::{Deserialize, Serialize};

use crate::train::head::mlp::{Activations, Mlp, MlpGrads, Mode};
use crate::train::head::optim::{LrSchedule, Optimizer, OptimizerConfig};
use crate::train::head::{cross_entropy, Rng};

/// How to train the MLP head. The defaults are the tutorial's method-3
/// settings: plain SGD with lr 1e-3, batches of 64, 20 epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub(crate) schedule: LrSchedule,
    /// Stop after this many epochs without a lower validation loss.
    pub patience: Option<usize>,
    pub(crate) seed: u64,
    /// Per-class weights of the loss (`--class-weight balanced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) class_weights: Option<Vec<f32>>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 64,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::Constant,
            patience: None,
            seed: 0,
            class_weights: None,
        }
    }
}

impl TrainConfig {
    pub(crate) fn validate(&self) -> crate::Result<()> {
        use crate::error::Setting;
        let bad = |setting| {
            Err(crate::Error::Setting {
                setting,
                problem: "must be at least 1".into(),
            })
        };
        if self.epochs == 0 {
            return bad(Setting::Epochs);
        }
        if self.batch_size == 0 {
            return bad(Setting::Batch);
        }
        if self.patience == Some(0) {
            return bad(Setting::Patience);
        }
        self.optimizer.validate()
    }
}

/// One epoch's figures. The training loss and accuracy are averaged over the
/// epoch's batches as they were trained (with dropout), as the tutorial prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub(crate) lr: f32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    /// CPU time of the whole process during the epoch (all threads), where the
    /// system reports it: with other work on the machine, a fairer speed figure.
    #[serde(default)]
    pub(crate) cpu_seconds: Option<f64>,
}

/// CPU time (user + system, all threads) of this process so far, from
/// `getrusage(RUSAGE_SELF)` (microsecond resolution; `None` if the call fails).
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Progress reported during training.
pub enum Progress<'a> {
    /// `done` of `total` batches of `epoch` (1-based) are trained.
    Batch {
        epoch: usize,
        done: usize,
        total: usize,
    },
    Epoch(&'a EpochRecord),
    /// The weights at the end of an epoch (1-based), after its record.
    Weights {
        epoch: usize,
        mlp: &'a Mlp,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TrainOutcome {
    pub(crate) history: Vec<EpochRecord>,
    /// The epoch whose weights were kept (lowest validation loss; the last one without validation).
    pub(crate) best_epoch: usize,
    pub(crate) stopped_early: bool,
    /// Wall time of training, validation included.
    pub(crate) seconds: f64,
}

/// The rows of one split of a feature matrix.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    /// [n_samples, n_features], all splits.
    pub(crate) x: ArrayView2<'a, f32>,
    /// [n_samples]: class index of every row of `x`.
    pub(crate) labels: &'a [usize],
    /// Which rows of `x` belong to the split.
    pub(crate) rows: &'a [usize],
    /// [n_samples, K, n_features]: augmented views of every row of `x` (view 0
    /// = `x`). When present, [`train_mlp`] trains each epoch on one view per
    /// row, drawn afresh (seeded); scoring always uses `x`.
    pub(crate) views: Option<ArrayView3<'a, f32>>,
}

impl Rows<'_> {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Mean cross-entropy and accuracy of `mlp` on some rows, in inference mode.
pub(crate) fn score(mlp: &Mlp, data: Rows) -> (f64, f64) {
    const BLOCK: usize = 1024;
    let mut xb = Array2::zeros((0, 0));
    let (mut total, mut correct) = (0f64, 0usize);
    for chunk in data.rows.chunks(BLOCK) {
        Mlp::gather_rows(data.x, chunk, &mut xb);
        let y: Vec<usize> = chunk.iter().map(|&r| data.labels[r]).collect();
        let (loss, ok) = cross_entropy(mlp.forward(xb.view()).view(), &y);
        total += loss * chunk.len() as f64;
        correct += ok;
    }
    let n = data.len().max(1) as f64;
    (total / n, correct as f64 / n)
}

/// Copies view `picks[i]` of row `rows[i]` into row i of `out`.
///
/// # Shapes
/// `views`: [n_samples, K, n_features] → `out`: [rows.len(), n_features]
fn gather_views(views: ArrayView3<f32>, rows: &[usize], picks: &[usize], out: &mut Array2<f32>) {
    let d = views.shape()[2];
    if out.dim() != (rows.len(), d) {
        *out = Array2::zeros((rows.len(), d));
    }
    for (i, (&r, &v)) in rows.iter().zip(picks).enumerate() {
        out.row_mut(i).assign(&views.slice(ndarray::s![r, v, ..]));
    }
}

/// Trains `mlp` in place; on return it holds the best epoch's weights.
pub(crate) fn train_mlp(
    mlp: &mut Mlp,
    train: Rows,
    val: Option<Rows>,
    config: &TrainConfig,
    progress: &mut dyn FnMut(Progress),
) -> TrainOutcome {
    let start = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut shuffle_rng = rng.fork();
    let mut dropout_rng = rng.fork();
    // Forked after the others, so that runs without views draw as before.
    let mut view_rng = rng.fork();
    // A batch never holds more rows than the training set (`--batch` is a
    // size from a flag: reserving it as given could abort the process).
    let batch_rows = config.batch_size.min(train.rows.len());
    let mut picks: Vec<usize> = Vec::with_capacity(batch_rows);
    let mut opt = Optimizer::new(config.optimizer, mlp.param_sizes());
    // Plain SGD: the update is fused into the backward pass (no gradient buffers).
    let fused_sgd = matches!(config.optimizer, OptimizerConfig::Sgd(c) if c.momentum == 0.0 && c.weight_decay == 0.0);
    let mut grads = if fused_sgd {
        MlpGrads {
            weights: Vec::new(),
            biases: Vec::new(),
        }
    } else {
        MlpGrads::zeros(&mlp.config)
    };
    let mut acts = Activations::default();
    let mut xb = Array2::zeros((0, 0));
    let mut yb = Vec::with_capacity(batch_rows);
    let class_weights = config.class_weights.as_deref();
    let mut order: Vec<usize> = train.rows.to_vec();
    let n_batches = order.len().div_ceil(config.batch_size);
    let val = val.filter(|v| !v.is_empty());
    let mut history = Vec::new();
    let mut best: Option<(f64, usize, Mlp)> = None;
    let mut stopped_early = false;
    for epoch in 0..config.epochs {
        let t0 = Instant::now();
        let cpu0 = process_cpu_seconds();
        opt.lr = config.schedule.lr(config.optimizer.lr(), epoch);
        shuffle_rng.shuffle(&mut order);
        let (mut total, mut correct) = (0f64, 0usize);
        for (b, batch) in order.chunks(config.batch_size).enumerate() {
            match train.views {
                None => Mlp::gather_rows(train.x, batch, &mut xb), // [batch, n_features]
                Some(v) => {
                    // One view per row, as per-epoch augmentation would give.
                    let k = v.shape()[1] as u64;
                    picks.clear();
                    picks.extend(batch.iter().map(|_| (view_rng.next_u64() % k) as usize));
                    gather_views(v, batch, &picks, &mut xb);
                }
            }
            yb.clear();
            yb.extend(batch.iter().map(|&r| train.labels[r]));
            let (loss, ok) = if fused_sgd {
                mlp.loss_and_sgd_step(
                    xb.view(),
                    &yb,
                    class_weights,
                    Mode::Train(&mut dropout_rng),
                    &mut acts,
                    opt.lr,
                )
            } else {
                let r = mlp.loss_and_grad(
                    xb.view(),
                    &yb,
                    class_weights,
                    Mode::Train(&mut dropout_rng),
                    &mut acts,
                    &mut grads,
                );
                opt.step(&mut mlp.param_slices_mut(), &grads.slices());
                r
            };
            total += loss * batch.len() as f64;
            correct += ok;
            progress(Progress::Batch {
                epoch: epoch + 1,
                done: b + 1,
                total: n_batches,
            });
        }
        let n = order.len().max(1) as f64;
        let (val_loss, val_accuracy) = match val {
            Some(v) => {
                let (l, a) = score(mlp, v);
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let record = EpochRecord {
            epoch: epoch + 1,
            lr: opt.lr,
            train_loss: total / n,
            train_accuracy: correct as f64 / n,
            val_loss,
            val_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            cpu_seconds: cpu0.and_then(|a| process_cpu_seconds().map(|b| b - a)),
        };
        progress(Progress::Epoch(&record));
        progress(Progress::Weights {
            epoch: epoch + 1,
            mlp,
        });
        history.push(record);
        if let Some(vl) = val_loss {
            let improved = best.as_ref().is_none_or(|(b, _, _)| vl < *b);
            if improved {
                best = Some((vl, epoch + 1, mlp.clone()));
            } else if let (Some(p), Some((_, be, _))) = (config.patience, &best) {
                if epoch + 1 - be >= p {
                    stopped_early = true;
                    break;
                }
            }
        }
    }
    let best_epoch = match best {
        Some((_, e, weights)) => {
            *mlp = weights;
            e
        }
        None => history.len(),
    };
    TrainOutcome {
        history,
        best_epoch,
        stopped_early,
        seconds: start.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::head::mlp::MlpConfig;
    use crate::train::head::optim::{AdamConfig, SgdConfig};

    fn blobs(n: usize) -> (Array2<f32>, Vec<usize>) {
        let mut rng = Rng::new(9);
        let labels: Vec<usize> = (0..n).map(|i| i % 3).collect();
        let x = Array2::from_shape_fn((n, 8), |(i, j)| {
            rng.uniform(0.0, 1.0) + if j % 3 == labels[i] { 1.5 } else { 0.0 }
        });
        (x, labels)
    }

    #[test]
    fn learns_blobs_keeps_best_and_stops_early() {
        let (x, y) = blobs(300);
        let rows: Vec<usize> = (0..240).collect();
        let vrows: Vec<usize> = (240..300).collect();
        let mut cfg = MlpConfig::tutorial(8, 3);
        cfg.hidden = vec![32];
        let mut mlp = Mlp::new(cfg, &mut Rng::new(1));
        let tc = TrainConfig {
            epochs: 40,
            batch_size: 16,
            optimizer: OptimizerConfig::Adam(AdamConfig {
                lr: 1e-2,
                ..Default::default()
            }),
            patience: Some(3),
            ..Default::default()
        };
        let mut epochs_seen = 0;
        let out = train_mlp(
            &mut mlp,
            Rows {
                x: x.view(),
                labels: &y,
                rows: &rows,
                views: None,
            },
            Some(Rows {
                x: x.view(),
                labels: &y,
                rows: &vrows,
                views: None,
            }),
            &tc,
            &mut |p| {
                if let Progress::Epoch(_) = p {
                    epochs_seen += 1
                }
            },
        );
        assert_eq!(epochs_seen, out.history.len());
        let (vl, va) = score(
            &mlp,
            Rows {
                x: x.view(),
                labels: &y,
                rows: &vrows,
                views: None,
            },
        );
        assert!(va > 0.9, "val accuracy {va}");
        let best = &out.history[out.best_epoch - 1];
        assert!(
            (best.val_loss.unwrap() - vl).abs() < 1e-9,
            "kept the best epoch's weights"
        );
        assert!(out
            .history
            .iter()
            .all(|h| h.val_loss.unwrap() >= vl - 1e-12));
        if out.stopped_early {
            assert_eq!(out.history.len(), out.best_epoch + 3);
        }
    }

    /// `--batch` larger than memory can hold (a size from a flag): the
    /// batch is the whole training set, nothing is reserved by the flag.
    #[test]
    fn a_huge_batch_size_is_the_whole_set() {
        let (x, y) = blobs(16);
        let rows: Vec<usize> = (0..16).collect();
        let mut mlp = Mlp::new(MlpConfig::linear(8, 3), &mut Rng::new(2));
        let tc = TrainConfig {
            epochs: 1,
            batch_size: usize::MAX / 2,
            ..Default::default()
        };
        let rows = Rows {
            x: x.view(),
            labels: &y,
            rows: &rows,
            views: None,
        };
        let out = train_mlp(&mut mlp, rows, None, &tc, &mut |_| {});
        assert_eq!(out.history.len(), 1);
    }

    #[test]
    fn same_seed_same_result() {
        let (x, y) = blobs(64);
        let rows: Vec<usize> = (0..64).collect();
        let run = || {
            let mut mlp = Mlp::new(MlpConfig::tutorial(8, 3), &mut Rng::new(2));
            let tc = TrainConfig {
                epochs: 2,
                batch_size: 10,
                optimizer: OptimizerConfig::Sgd(SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    ..Default::default()
                }),
                ..Default::default()
            };
            train_mlp(
                &mut mlp,
                Rows {
                    x: x.view(),
                    labels: &y,
                    rows: &rows,
                    views: None,
                },
                None,
                &tc,
                &mut |_| {},
            );
            mlp
        };
        assert_eq!(run(), run());
    }
}
