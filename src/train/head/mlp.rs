//! The tutorial's classifier, hand-written with ndarray:
//!
//! ```text
//! [Dropout(p)] → Linear(D, h₁) → ReLU → Dropout(p) → … → Linear(h_k, C)
//! ```
//!
//! With `hidden = [1000]` this is the tutorial's method-2/3 head; `input_dropout =
//! false` is the variant of the tutorial's code (no Dropout before the first
//! Linear); `hidden = []` is a linear softmax classifier (the logistic head).
//!
//! Parameters ([`Mlp`]), activations ([`Activations`]), gradients ([`MlpGrads`])
//! and optimiser state ([`super::optim::Optimizer`]) are separate types. Inference
//! ([`Mlp::forward`], [`Mlp::predict_proba`]) takes `&self` only. Dropout runs only
//! in [`Mode::Train`], which carries the seeded generator.

use ndarray::{s, Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip};
use serde::{Deserialize, Serialize};

use super::linalg::gemm;
use super::{cross_entropy_with_grad, Rng};

/// The architecture of an MLP head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub n_features: usize,
    /// Widths of the hidden layers (the tutorial: `[1000]`).
    pub hidden: Vec<usize>,
    pub n_classes: usize,
    /// Dropout probability before every Linear after the first (the tutorial: 0.5).
    pub dropout: f32,
    /// Also drop out the input features before the first Linear.
    pub input_dropout: bool,
}

impl MlpConfig {
    /// `Dropout(0.5) → Linear(D, 1000) → ReLU → Dropout(0.5) → Linear(1000, C)`.
    pub fn tutorial(n_features: usize, n_classes: usize) -> MlpConfig {
        MlpConfig {
            n_features,
            hidden: vec![1000],
            n_classes,
            dropout: 0.5,
            input_dropout: true,
        }
    }

    /// A linear softmax classifier `Linear(D, C)` (no hidden layer, no dropout).
    pub fn linear(n_features: usize, n_classes: usize) -> MlpConfig {
        MlpConfig {
            n_features,
            hidden: vec![],
            n_classes,
            dropout: 0.0,
            input_dropout: false,
        }
    }

    /// `(in, out)` of each Linear, in order.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut widths = vec![self.n_features];
        widths.extend(&self.hidden);
        widths.push(self.n_classes);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Whether the input of Linear `l` goes through dropout in training.
    pub(crate) fn dropout_before(&self, l: usize) -> bool {
        self.dropout > 0.0 && (l > 0 || self.input_dropout)
    }

    pub fn n_parameters(&self) -> usize {
        self.layer_dims().iter().map(|(i, o)| i * o + o).sum()
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.n_features == 0 || self.n_classes < 2 {
            return bad(format!(
                "a head needs at least 1 feature and 2 classes (got {} and {})",
                self.n_features, self.n_classes
            ));
        }
        if self.hidden.contains(&0) {
            return Err(crate::Error::Setting {
                setting: crate::error::Setting::Hidden,
                problem: "must be at least 1".into(),
            });
        }
        // Checked: the widths come from a flag or a bundle's metadata.
        let params = self.layer_dims().iter().try_fold(0u64, |sum, &(i, o)| {
            (i as u64)
                .checked_mul(o as u64)
                .and_then(|w| w.checked_add(o as u64))
                .and_then(|l| sum.checked_add(l))
        });
        if params.is_none_or(|p| p > MAX_PARAMETERS) {
            return Err(crate::Error::HeadTooLarge {
                head: self.describe(),
                parameters: params.map_or("more than 2^64".to_string(), |p| p.to_string()),
                limit: MAX_PARAMETERS,
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::Setting {
                setting: crate::error::Setting::Dropout,
                problem: format!("must be in [0, 1), got {}", self.dropout),
            });
        }
        Ok(())
    }

    /// `Dropout(0.5) → Linear(4608, 1000) → ReLU → Dropout(0.5) → Linear(1000, 2)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (l, (i, o)) in self.layer_dims().into_iter().enumerate() {
            if self.dropout_before(l) {
                parts.push(format!("Dropout({})", self.dropout));
            }
            parts.push(format!("Linear({i}, {o})"));
            if l + 1 < self.hidden.len() + 1 {
                parts.push("ReLU".into());
            }
        }
        parts.join(" → ")
    }
}

/// The most parameters a head may have: 2^28 (1 GiB of float32 weights, 3 GiB
/// with Adam's moments), 200 times the tutorial's `Linear(1280, 1000)` head.
pub(crate) const MAX_PARAMETERS: u64 = 1 << 28;

/// One fully connected layer, `y = x · weightᵀ + bias` (PyTorch's `nn.Linear`).
///
/// # Shapes
/// `weight`: [out, in], `bias`: [out]
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

impl Linear {
    /// PyTorch's default initialisation: `kaiming_uniform_(a=√5)` for the weight
    /// and U(−1/√in, 1/√in) for the bias, i.e. both uniform in ±1/√in.
    pub(crate) fn init(n_in: usize, n_out: usize, rng: &mut Rng) -> Linear {
        let bound = 1.0 / (n_in as f32).sqrt();
        Linear {
            weight: Array2::from_shape_simple_fn((n_out, n_in), || rng.uniform(-bound, bound)),
            bias: Array1::from_shape_simple_fn(n_out, || rng.uniform(-bound, bound)),
        }
    }
}

/// Training or inference. Dropout is active only in `Train`, with its generator.
pub enum Mode<'a> {
    Train(&'a mut Rng),
    Eval,
}

/// The parameters of an MLP head.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    pub config: MlpConfig,
    pub layers: Vec<Linear>,
}

/// Gradients of the loss with respect to each parameter of an [`Mlp`].
///
/// # Shapes
/// `weights[l]`: [out_l, in_l], `biases[l]`: [out_l]
#[derive(Debug, Clone, PartialEq)]
pub struct MlpGrads {
    pub(crate) weights: Vec<Array2<f32>>,
    pub(crate) biases: Vec<Array1<f32>>,
}

impl MlpGrads {
    pub fn zeros(config: &MlpConfig) -> MlpGrads {
        let dims = config.layer_dims();
        MlpGrads {
            weights: dims.iter().map(|&(i, o)| Array2::zeros((o, i))).collect(),
            biases: dims.iter().map(|&(_, o)| Array1::zeros(o)).collect(),
        }
    }

    /// Flat views in the order of [`Mlp::param_slices_mut`]: W₀, b₀, W₁, b₁, …
    pub fn slices(&self) -> Vec<&[f32]> {
        self.weights
            .iter()
            .zip(&self.biases)
            .flat_map(|(w, b)| {
                [
                    w.as_slice().expect("standard layout"),
                    b.as_slice().expect("standard layout"),
                ]
            })
            .collect()
    }
}

/// What the forward pass keeps for the backward pass, reused between batches.
///
/// # Shapes
/// `inputs[l]`: [n_samples, in_l] — the input of Linear `l` after ReLU and dropout
/// (`inputs[0]` is used only when the features themselves are dropped out);
/// `logits` and `dlogits`: [n_samples, n_classes]
#[derive(Debug, Default)]
pub struct Activations {
    inputs: Vec<Array2<f32>>,
    dropped: Vec<bool>,
    pub logits: Array2<f32>,
    pub(crate) dlogits: Array2<f32>,
    delta: Vec<Array2<f32>>,
}

fn ensure(a: &mut Array2<f32>, shape: (usize, usize)) {
    if a.dim() != shape {
        *a = Array2::zeros(shape);
    }
}

/// Inverted dropout (as `nn.Dropout`): zero each entry with probability `p`,
/// scale the others by 1/(1 − p). Each row draws from its own generator, seeded
/// from `rng` in row order, so the masks do not depend on how many threads run
/// the rows.
fn dropout_inplace(mut x: ArrayViewMut2<f32>, p: f32, rng: &mut Rng) {
    use rayon::prelude::*;
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let scale = 1.0 / (1.0 - p);
    let keep = move |v: f32, r: u32| {
        if (r as u64) < threshold {
            0.0
        } else {
            v * scale
        }
    };
    let ncols = x.ncols().max(1);
    let seeds: Vec<u64> = (0..x.nrows()).map(|_| rng.next_u64()).collect();
    let row_mask = move |(row, &seed): (&mut [f32], &u64)| {
        let mut r = Rng::new(seed);
        // Two 32-bit draws per 64-bit output.
        let mut pairs = row.chunks_exact_mut(2);
        for pair in &mut pairs {
            let w = r.next_u64();
            pair[0] = keep(pair[0], (w >> 32) as u32);
            pair[1] = keep(pair[1], w as u32);
        }
        if let [last] = pairs.into_remainder() {
            *last = keep(*last, (r.next_u64() >> 32) as u32);
        }
    };
    let data = x.as_slice_mut().expect("activations are contiguous");
    if data.len() >= 1 << 15 {
        data.par_chunks_mut(ncols)
            .zip(seeds.par_iter())
            .for_each(row_mask);
    } else {
        data.chunks_mut(ncols).zip(seeds.iter()).for_each(row_mask);
    }
}

impl Mlp {
    /// A freshly initialised head (PyTorch's defaults), seeded.
    pub fn new(config: MlpConfig, rng: &mut Rng) -> Mlp {
        let layers = config
            .layer_dims()
            .into_iter()
            .map(|(i, o)| Linear::init(i, o, rng))
            .collect();
        Mlp { config, layers }
    }

    /// A head with the given layers; checks their shapes against `config`.
    pub fn from_layers(config: MlpConfig, layers: Vec<Linear>) -> crate::Result<Mlp> {
        let dims = config.layer_dims();
        if dims.len() != layers.len() {
            return Err(crate::Error::HeadShape(format!(
                "architecture has {} layers, weights have {}",
                dims.len(),
                layers.len()
            )));
        }
        for (l, ((i, o), lin)) in dims.iter().zip(&layers).enumerate() {
            if lin.weight.dim() != (*o, *i) || lin.bias.len() != *o {
                return Err(crate::Error::HeadShape(format!(
                    "layer {l}: weight {:?} and bias [{}], expected [{o}, {i}] and [{o}]",
                    lin.weight.shape(),
                    lin.bias.len()
                )));
            }
        }
        Ok(Mlp { config, layers })
    }

    pub(crate) fn n_features(&self) -> usize {
        self.config.n_features
    }

    pub(crate) fn n_classes(&self) -> usize {
        self.config.n_classes
    }

    /// Flat mutable views of the parameters: W₀, b₀, W₁, b₁, … (the optimiser's order).
    pub fn param_slices_mut(&mut self) -> Vec<&mut [f32]> {
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    l.weight.as_slice_mut().expect("standard layout"),
                    l.bias.as_slice_mut().expect("standard layout"),
                ]
            })
            .collect()
    }

    /// Sizes of the parameter tensors, in the order of [`Mlp::param_slices_mut`].
    pub fn param_sizes(&self) -> Vec<usize> {
        self.layers
            .iter()
            .flat_map(|l| [l.weight.len(), l.bias.len()])
            .collect()
    }

    /// Logits in inference mode (no dropout), in blocks of rows to bound memory.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] → [n_samples, n_classes]
    pub fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(x.ncols(), self.config.n_features, "feature dimension");
        const BLOCK: usize = 2048;
        let mut out = Array2::zeros((x.nrows(), self.config.n_classes));
        let mut acts = Activations::default();
        for (xb, mut ob) in x
            .axis_chunks_iter(Axis(0), BLOCK)
            .zip(out.axis_chunks_iter_mut(Axis(0), BLOCK))
        {
            self.forward_train(xb, Mode::Eval, &mut acts);
            ob.assign(&acts.logits);
        }
        out
    }

    /// Class probabilities (softmax of the logits), inference mode.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] → [n_samples, n_classes]
    #[cfg(test)]
    pub(crate) fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut p = self.forward(x);
        super::softmax_rows_inplace(p.view_mut());
        p
    }

    /// Forward pass that keeps what [`Mlp::backward`] needs in `acts`; the logits
    /// are left in `acts.logits`.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features]
    pub fn forward_train(&self, x: ArrayView2<f32>, mut mode: Mode, acts: &mut Activations) {
        let n = x.nrows();
        assert_eq!(x.ncols(), self.config.n_features, "feature dimension");
        let n_layers = self.layers.len();
        acts.inputs.resize_with(n_layers, Default::default);
        acts.dropped.resize(n_layers, false);
        ensure(&mut acts.logits, (n, self.config.n_classes));
        let p = self.config.dropout;
        // Input of the first Linear: the features, dropped out if configured.
        acts.dropped[0] = matches!(mode, Mode::Train(_)) && self.config.dropout_before(0);
        if acts.dropped[0] {
            let buf = &mut acts.inputs[0];
            ensure(buf, x.dim());
            buf.assign(&x);
            if let Mode::Train(rng) = &mut mode {
                dropout_inplace(buf.view_mut(), p, rng);
            }
        }
        for l in 0..n_layers {
            let layer = &self.layers[l];
            let (n_in, n_out) = (layer.weight.ncols(), layer.weight.nrows());
            let last = l + 1 == n_layers;
            // The output buffer: the next layer's input, or the logits.
            let (head, tail) = acts.inputs.split_at_mut(l + 1);
            let input: ArrayView2<f32> = if l == 0 && !acts.dropped[0] {
                x
            } else {
                head[l].view()
            };
            debug_assert_eq!(input.ncols(), n_in);
            let out: &mut Array2<f32> = if last {
                &mut acts.logits
            } else {
                ensure(&mut tail[0], (n, n_out));
                &mut tail[0]
            };
            out.assign(&layer.bias.broadcast((n, n_out)).expect("bias broadcast"));
            gemm(1.0, input, layer.weight.t(), 1.0, out.view_mut()); // [n, n_out]
            if !last {
                out.mapv_inplace(|v| v.max(0.0));
                let drop = matches!(mode, Mode::Train(_)) && self.config.dropout_before(l + 1);
                acts.dropped[l + 1] = drop;
                if drop {
                    if let Mode::Train(rng) = &mut mode {
                        dropout_inplace(out.view_mut(), p, rng);
                    }
                }
            }
        }
    }

    /// Backward pass: gradients of the loss whose gradient with respect to the
    /// logits is `acts.dlogits`, for the forward pass recorded in `acts` on `x`.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] (the same rows as the forward pass)
    pub(crate) fn backward(
        &self,
        x: ArrayView2<f32>,
        acts: &mut Activations,
        grads: &mut MlpGrads,
    ) {
        let n = x.nrows();
        let n_layers = self.layers.len();
        acts.delta.resize_with(n_layers, Default::default);
        let scale = 1.0 / (1.0 - self.config.dropout);
        for l in (0..n_layers).rev() {
            let layer = &self.layers[l];
            let (delta_head, delta_tail) = acts.delta.split_at_mut(l + 1);
            // dL/d(output of Linear l): [n, out_l]
            let d: ArrayView2<f32> = if l + 1 == n_layers {
                acts.dlogits.view()
            } else {
                delta_tail[0].view()
            };
            let input: ArrayView2<f32> = if l == 0 && !acts.dropped[0] {
                x
            } else {
                acts.inputs[l].view()
            };
            gemm(1.0, d.t(), input, 0.0, grads.weights[l].view_mut()); // [out_l, in_l]
            let gb = &mut grads.biases[l];
            gb.fill(0.0);
            for row in d.rows() {
                *gb += &row;
            }
            if l > 0 {
                // Through Linear l, then ReLU and dropout: the stored input is
                // relu(z)·mask, positive exactly where the gradient flows.
                let dz = &mut delta_head[l];
                ensure(dz, (n, layer.weight.ncols()));
                gemm(1.0, d, layer.weight.view(), 0.0, dz.view_mut()); // [n, in_l]
                let k = if acts.dropped[l] { scale } else { 1.0 };
                Zip::from(dz.view_mut())
                    .and(&acts.inputs[l])
                    .for_each(|g, &h| *g = if h > 0.0 { *g * k } else { 0.0 });
            }
        }
    }

    /// Backward pass fused with a plain SGD update (`torch.optim.SGD(lr)`, no
    /// momentum, no weight decay): each layer's gradient is propagated to the layer
    /// below with the old weights, then added into the weights by the same matrix
    /// product that computes it (`W ← W − lr·dᵀ·input`), so no gradient buffer is
    /// written or read. The result equals [`Mlp::backward`] followed by
    /// [`super::optim::Optimizer::step`] up to float rounding; the weights of the
    /// tutorial's large head then stay in the CPU cache between batches.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] (the same rows as the forward pass)
    pub(crate) fn backward_sgd_step(
        &mut self,
        x: ArrayView2<f32>,
        acts: &mut Activations,
        lr: f32,
    ) {
        let n = x.nrows();
        let n_layers = self.layers.len();
        acts.delta.resize_with(n_layers, Default::default);
        let scale = 1.0 / (1.0 - self.config.dropout);
        for l in (0..n_layers).rev() {
            let (delta_head, delta_tail) = acts.delta.split_at_mut(l + 1);
            let d: ArrayView2<f32> = if l + 1 == n_layers {
                acts.dlogits.view()
            } else {
                delta_tail[0].view()
            };
            let input: ArrayView2<f32> = if l == 0 && !acts.dropped[0] {
                x
            } else {
                acts.inputs[l].view()
            };
            let layer = &mut self.layers[l];
            if l > 0 {
                let dz = &mut delta_head[l];
                ensure(dz, (n, layer.weight.ncols()));
                gemm(1.0, d, layer.weight.view(), 0.0, dz.view_mut()); // [n, in_l], old weights
                let k = if acts.dropped[l] { scale } else { 1.0 };
                Zip::from(dz.view_mut())
                    .and(&acts.inputs[l])
                    .for_each(|g, &h| *g = if h > 0.0 { *g * k } else { 0.0 });
            }
            gemm(-lr, d.t(), input, 1.0, layer.weight.view_mut()); // [out_l, in_l]
                                                                   // The bias gradient in f32 as PyTorch sums it, then the update.
            let mut gb = Array1::<f32>::zeros(layer.bias.len());
            for row in d.rows() {
                gb += &row;
            }
            Zip::from(&mut layer.bias)
                .and(&gb)
                .for_each(|b, &g| *b += -lr * g);
        }
    }

    /// Forward, mean cross-entropy and backward on one batch. Returns the mean
    /// loss and the number of rows predicted right.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features], `labels`: [n_samples]
    pub fn loss_and_grad(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        class_weights: Option<&[f32]>,
        mode: Mode,
        acts: &mut Activations,
        grads: &mut MlpGrads,
    ) -> (f64, usize) {
        self.forward_train(x, mode, acts);
        let n = x.nrows();
        ensure(&mut acts.dlogits, (n, self.config.n_classes));
        let (loss, correct) = cross_entropy_with_grad(
            acts.logits.view(),
            labels,
            class_weights,
            acts.dlogits.view_mut(),
        );
        self.backward(x, acts, grads);
        (loss, correct)
    }

    /// [`Mlp::loss_and_grad`] with the plain-SGD update fused into the backward
    /// pass ([`Mlp::backward_sgd_step`]).
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features], `labels`: [n_samples]
    pub fn loss_and_sgd_step(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[usize],
        class_weights: Option<&[f32]>,
        mode: Mode,
        acts: &mut Activations,
        lr: f32,
    ) -> (f64, usize) {
        self.forward_train(x, mode, acts);
        ensure(&mut acts.dlogits, (x.nrows(), self.config.n_classes));
        let (loss, correct) = cross_entropy_with_grad(
            acts.logits.view(),
            labels,
            class_weights,
            acts.dlogits.view_mut(),
        );
        self.backward_sgd_step(x, acts, lr);
        (loss, correct)
    }

    /// A copy of some rows of a matrix, in the given order (a batch).
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features], `rows`: [n] → `out`: [n, n_features]
    pub fn gather_rows(x: ArrayView2<f32>, rows: &[usize], out: &mut Array2<f32>) {
        ensure(out, (rows.len(), x.ncols()));
        for (i, &r) in rows.iter().enumerate() {
            out.slice_mut(s![i, ..]).assign(&x.row(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn describe_names_the_layers() {
        let c = MlpConfig::tutorial(4608, 2);
        assert_eq!(
            c.describe(),
            "Dropout(0.5) → Linear(4608, 1000) → ReLU → Dropout(0.5) → Linear(1000, 2)"
        );
        let mut code = c.clone();
        code.input_dropout = false;
        assert_eq!(
            code.describe(),
            "Linear(4608, 1000) → ReLU → Dropout(0.5) → Linear(1000, 2)"
        );
        assert_eq!(MlpConfig::linear(3, 2).describe(), "Linear(3, 2)");
        assert_eq!(c.n_parameters(), 4608 * 1000 + 1000 + 1000 * 2 + 2);
    }

    #[test]
    fn init_is_bounded_like_pytorch() {
        let mut rng = Rng::new(0);
        let m = Mlp::new(MlpConfig::tutorial(400, 3), &mut rng);
        let bound = 1.0 / 20.0;
        assert!(m.layers[0].weight.iter().all(|v| v.abs() <= bound));
        let max = m.layers[0].weight.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(max > 0.9 * bound);
        let b2 = 1.0 / (1000f32).sqrt();
        assert!(m.layers[1].bias.iter().all(|v| v.abs() <= b2));
    }

    #[test]
    fn dropout_keeps_expectation() {
        let mut rng = Rng::new(3);
        let mut x = Array2::from_elem((100, 1000), 1.0f32);
        dropout_inplace(x.view_mut(), 0.5, &mut rng);
        let zeros = x.iter().filter(|&&v| v == 0.0).count() as f64 / 1e5;
        assert!((zeros - 0.5).abs() < 0.01, "{zeros}");
        assert!((x.mean().unwrap() - 1.0).abs() < 0.02);
        assert!(x.iter().all(|&v| v == 0.0 || v == 2.0));
    }

    #[test]
    fn eval_forward_is_deterministic_and_matches_manual() {
        let cfg = MlpConfig {
            n_features: 2,
            hidden: vec![2],
            n_classes: 2,
            dropout: 0.5,
            input_dropout: true,
        };
        let m = Mlp::from_layers(
            cfg,
            vec![
                Linear {
                    weight: array![[1.0, -1.0], [0.5, 2.0]],
                    bias: array![0.0, -1.0],
                },
                Linear {
                    weight: array![[1.0, 1.0], [-1.0, 2.0]],
                    bias: array![0.5, 0.0],
                },
            ],
        )
        .unwrap();
        // x = [1, 2]: z1 = [-1, 3.5] → relu [0, 3.5] → logits [4.0, 7.0]
        let out = m.forward(array![[1.0f32, 2.0]].view());
        assert_eq!(out, array![[4.0, 7.0]]);
    }

    #[test]
    fn heads_over_the_parameter_limit_are_refused_before_allocating() {
        let cfg = |hidden: Vec<usize>| MlpConfig {
            hidden,
            ..MlpConfig::tutorial(1280, 2)
        };
        assert!(cfg(vec![1000]).validate().is_ok());
        let e = cfg(vec![100_000_000]).validate().unwrap_err().to_string();
        assert!(e.contains("limit of 268435456") && !e.contains("--"), "{e}");
        let e = cfg(vec![usize::MAX, usize::MAX])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 2^64"), "{e}");
    }
}
