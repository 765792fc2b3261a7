//! Finite-difference gradient checks of every layer of the MLP head and of the
//! whole net: softmax cross-entropy, Linear, ReLU, Dropout (a fixed mask: the
//! same seed on every evaluation), and deep nets with and without input dropout.
//!
//! The maths is f32, so the central differences use a step of 1e-3 on a loss of
//! order 1 and the comparison is the relative error of the whole gradient vector,
//! ‖g − g_fd‖ / (‖g‖ + ‖g_fd‖), the usual check (cs231n), which must be < 1e-3
//! (smooth cases give ~5e-5). A ReLU input within ~1e-3 of its kink makes a
//! central difference straddle the kink (it then averages the two one-sided
//! slopes); the seeds below have none. `GC_H=… GC_DEBUG=1` show the worst entries.

use ndarray::Array2;
use xfer::train::head::mlp::{Activations, Mlp, MlpConfig, MlpGrads, Mode};
use xfer::train::head::{cross_entropy, cross_entropy_with_grad, Rng};

fn data(n: usize, d: usize, c: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_simple_fn((n, d), || rng.uniform(-1.0, 1.5));
    let y = (0..n).map(|_| rng.below(c)).collect();
    (x, y)
}

/// The loss at the current parameters, with dropout masks fixed by `mask_seed`.
fn loss(mlp: &Mlp, x: &Array2<f32>, y: &[usize], mask_seed: Option<u64>) -> f64 {
    let mut acts = Activations::default();
    match mask_seed {
        Some(s) => mlp.forward_train(x.view(), Mode::Train(&mut Rng::new(s)), &mut acts),
        None => mlp.forward_train(x.view(), Mode::Eval, &mut acts),
    }
    cross_entropy(acts.logits.view(), y).0
}

/// Relative error between the analytic gradient and central differences, over all parameters.
fn check(config: MlpConfig, mask_seed: Option<u64>, seed: u64) -> f64 {
    let (x, y) = data(12, config.n_features, config.n_classes, seed);
    let mut mlp = Mlp::new(config.clone(), &mut Rng::new(seed + 100));
    // Larger weights than the default init, so the loss varies visibly.
    for l in &mut mlp.layers {
        l.weight.mapv_inplace(|w| 3.0 * w);
    }
    let mut acts = Activations::default();
    let mut grads = MlpGrads::zeros(&config);
    match mask_seed {
        Some(s) => mlp.loss_and_grad(
            x.view(),
            &y,
            None,
            Mode::Train(&mut Rng::new(s)),
            &mut acts,
            &mut grads,
        ),
        None => mlp.loss_and_grad(x.view(), &y, None, Mode::Eval, &mut acts, &mut grads),
    };
    let analytic: Vec<f64> = grads
        .slices()
        .iter()
        .flat_map(|s| s.iter().map(|&v| v as f64))
        .collect();
    let h: f32 = std::env::var("GC_H")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1e-3);
    let mut numeric = Vec::with_capacity(analytic.len());
    let n_tensors = mlp.param_sizes().len();
    for t in 0..n_tensors {
        let len = mlp.param_sizes()[t];
        for i in 0..len {
            let orig = mlp.param_slices_mut()[t][i];
            mlp.param_slices_mut()[t][i] = orig + h;
            let up = loss(&mlp, &x, &y, mask_seed);
            mlp.param_slices_mut()[t][i] = orig - h;
            let down = loss(&mlp, &x, &y, mask_seed);
            mlp.param_slices_mut()[t][i] = orig;
            numeric.push((up - down) / (2.0 * h as f64));
        }
    }
    let diff: f64 = analytic
        .iter()
        .zip(&numeric)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let na: f64 = analytic.iter().map(|a| a * a).sum::<f64>().sqrt();
    let nb: f64 = numeric.iter().map(|a| a * a).sum::<f64>().sqrt();
    assert!(na > 1e-3, "gradient too small to check: {na}");
    if std::env::var("GC_DEBUG").is_ok() {
        let mut idx: Vec<usize> = (0..analytic.len()).collect();
        idx.sort_by(|&a, &b| {
            (analytic[b] - numeric[b])
                .abs()
                .partial_cmp(&(analytic[a] - numeric[a]).abs())
                .unwrap()
        });
        for &i in idx.iter().take(4) {
            eprintln!(
                "  param {i}: analytic {:.6} numeric {:.6}",
                analytic[i], numeric[i]
            );
        }
    }
    diff / (na + nb)
}

const TOL: f64 = 1e-3;

/// Worst absolute error of the cross-entropy gradient (optionally class-weighted)
/// against central differences of the loss.
fn cross_entropy_fd_error(weights: Option<&[f32]>) -> f64 {
    let (logits, y) = data(6, 4, 4, 1);
    let mut d = Array2::zeros((6, 4));
    cross_entropy_with_grad(logits.view(), &y, weights, d.view_mut());
    let loss = |l: &Array2<f32>| {
        let mut scratch = Array2::zeros((6, 4));
        cross_entropy_with_grad(l.view(), &y, weights, scratch.view_mut()).0
    };
    let h = 1e-2f32;
    let mut worst = 0f64;
    for i in 0..6 {
        for j in 0..4 {
            let mut up = logits.clone();
            up[[i, j]] += h;
            let mut down = logits.clone();
            down[[i, j]] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            worst = worst.max((fd - d[[i, j]] as f64).abs());
        }
    }
    worst
}

#[test]
fn softmax_cross_entropy_gradient() {
    let worst = cross_entropy_fd_error(None);
    println!("softmax cross-entropy: max abs error {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
    let worst = cross_entropy_fd_error(Some(&[0.5, 2.0, 1.0, 3.0]));
    println!("class-weighted softmax cross-entropy: max abs error {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
}

#[test]
fn class_weighted_loss_matches_pytorch() {
    // torch: F.cross_entropy(torch.tensor([[1.,2.,3.],[1.,1.,1.],[0.,2.,-1.]]),
    //   torch.tensor([2,0,1]), weight=torch.tensor([2.,1.,0.5])) = 0.7345353
    let logits = ndarray::array![[1.0f32, 2.0, 3.0], [1.0, 1.0, 1.0], [0.0, 2.0, -1.0]];
    let mut d = Array2::zeros((3, 3));
    let (loss, _) = cross_entropy_with_grad(
        logits.view(),
        &[2, 0, 1],
        Some(&[2.0, 1.0, 0.5]),
        d.view_mut(),
    );
    let unweighted = cross_entropy(logits.view(), &[2, 0, 1]).0;
    assert!(
        (loss - 0.734_535_3).abs() < 1e-6,
        "{loss} (unweighted {unweighted})"
    );
}

#[test]
fn linear_layer_gradient() {
    let e = check(MlpConfig::linear(7, 3), None, 2);
    println!("Linear: relative error {e:.2e}");
    assert!(e < TOL, "{e}");
}

#[test]
fn linear_relu_linear_gradient() {
    let mut c = MlpConfig::tutorial(6, 3);
    c.hidden = vec![9];
    let e = check(c, None, 3);
    println!("Linear → ReLU → Linear: relative error {e:.2e}");
    assert!(e < TOL, "{e}");
}

#[test]
fn dropout_gradient_with_fixed_mask() {
    // The tutorial's code: Linear → ReLU → Dropout → Linear.
    let mut c = MlpConfig::tutorial(6, 2);
    c.hidden = vec![10];
    c.input_dropout = false;
    let e = check(c, Some(11), 8);
    println!("Linear → ReLU → Dropout(0.5) → Linear: relative error {e:.2e}");
    assert!(e < TOL, "{e}");
    // Dropout on the input as well, another probability.
    let mut c = MlpConfig::tutorial(6, 2);
    c.hidden = vec![10];
    c.dropout = 0.3;
    let e = check(c, Some(12), 5);
    println!("Dropout(0.3) → Linear → ReLU → Dropout(0.3) → Linear: relative error {e:.2e}");
    assert!(e < TOL, "{e}");
}

#[test]
fn whole_net_gradient() {
    let c = MlpConfig {
        n_features: 8,
        hidden: vec![12, 7],
        n_classes: 4,
        dropout: 0.5,
        input_dropout: true,
    };
    let e = check(c.clone(), Some(13), 6);
    println!("whole net (2 hidden layers, dropout everywhere): relative error {e:.2e}");
    assert!(e < TOL, "{e}");
    let e = check(c, None, 7);
    println!("whole net, eval mode: relative error {e:.2e}");
    assert!(e < TOL, "{e}");
}
