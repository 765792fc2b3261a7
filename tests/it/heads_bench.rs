//! Timing of the parts of one training step of the tutorial's large head
//! (4608 → 1000 → 2), for tuning. Not a test: run with
//! `cargo test --release --test it heads_bench:: -- --ignored --nocapture`.

use std::time::Instant;

use ndarray::Array2;
use xfer::train::head::linalg::gemm;
use xfer::train::head::mlp::{Activations, Mlp, MlpConfig, MlpGrads, Mode};
use xfer::train::head::optim::{Optimizer, OptimizerConfig};
use xfer::train::head::Rng;

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{name:<40} {ms:8.3} ms");
    ms
}

#[test]
#[ignore]
fn step_parts() {
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let (d, h) = (4608, 1000);
    let mut rng = Rng::new(0);
    let x = Array2::from_shape_simple_fn((batch, d), || rng.uniform(0.0, 1.0));
    let y: Vec<usize> = (0..batch).map(|i| i % 2).collect();
    let mut mlp = Mlp::new(MlpConfig::tutorial(d, 2), &mut rng);
    let w = mlp.layers[0].weight.clone();
    let mut z = Array2::zeros((batch, h));
    let fwd = time("forward gemm x·W1ᵀ", 20, || {
        gemm(1.0, x.view(), w.t(), 0.0, z.view_mut())
    });
    let mut g = Array2::zeros((h, d));
    let bwd = time("backward gemm dZᵀ·x (beta 0)", 20, || {
        gemm(1.0, z.t(), x.view(), 0.0, g.view_mut())
    });
    let mut w2 = w.clone();
    time("fused update gemm W −= lr·dZᵀ·x (beta 1)", 20, || {
        gemm(-1e-3, z.t(), x.view(), 1.0, w2.view_mut())
    });
    let flops = 2.0 * (batch * d * h) as f64;
    println!(
        "forward {:.1} GFLOP/s, backward {:.1} GFLOP/s",
        flops / fwd / 1e6,
        flops / bwd / 1e6
    );
    let mut acts = Activations::default();
    let mut grads = MlpGrads::zeros(&mlp.config);
    let mut drng = Rng::new(1);
    time("loss_and_grad (train mode)", 20, || {
        mlp.loss_and_grad(
            x.view(),
            &y,
            None,
            Mode::Train(&mut drng),
            &mut acts,
            &mut grads,
        );
    });
    time("loss_and_grad (eval mode)", 20, || {
        mlp.loss_and_grad(x.view(), &y, None, Mode::Eval, &mut acts, &mut grads);
    });
    for cfg in [
        OptimizerConfig::default(),
        OptimizerConfig::Adam(Default::default()),
    ] {
        let mut opt = Optimizer::new(cfg, mlp.param_sizes());
        time(&format!("optimizer step {}", cfg.describe()), 20, || {
            opt.step(&mut mlp.param_slices_mut(), &grads.slices())
        });
    }
    let mut xb = Array2::zeros((0, 0));
    let big = Array2::from_shape_simple_fn((20000, d), || rng.uniform(0.0, 1.0));
    let mut rows: Vec<usize> = (0..20000).collect();
    rng.shuffle(&mut rows);
    time("gather a batch of rows", 50, || {
        Mlp::gather_rows(big.view(), &rows[..batch], &mut xb)
    });
}

#[test]
#[ignore]
fn optimizer_step_inputs() {
    let n = 4_611_002;
    let mut rng = Rng::new(0);
    let g: Vec<f32> = (0..n).map(|_| rng.uniform(-1e-3, 1e-3)).collect();
    let mut p: Vec<f32> = (0..n).map(|_| rng.uniform(-1e-2, 1e-2)).collect();
    let mut opt = Optimizer::new(OptimizerConfig::Adam(Default::default()), vec![n]);
    time("Optimizer::step Adam, random grads", 10, || {
        opt.step(&mut [&mut p[..]], &[&g[..]])
    });
    let g0 = vec![0f32; n];
    time("Optimizer::step Adam, zero grads", 10, || {
        opt.step(&mut [&mut p[..]], &[&g0[..]])
    });
    let gs: Vec<f32> = (0..n).map(|_| rng.uniform(-1e-3, 1e-3) * 1e-18).collect();
    // Before flushing gradients below 1e-17, squaring these made subnormals: ~8x slower.
    time("Optimizer::step Adam, tiny grads", 10, || {
        opt.step(&mut [&mut p[..]], &[&gs[..]])
    });
}
