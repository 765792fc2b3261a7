//! xfer's MLP + optimisers against PyTorch, step by step.
//!
//! The fixture `tests/fixtures/heads/torch_steps.json` comes from
//! `tools/make_head_fixture.py` (Debian's torch 1.13, CPU): 48 samples × 20
//! features, 3 classes, batches of 8 in a recorded order, dropout off, the
//! initial weights recorded. For each case PyTorch ran
//!
//! ```python
//! model.eval()                     # dropout off
//! for s in range(20):
//!     idx = torch.tensor(order[s * 8 : (s + 1) * 8])
//!     opt.zero_grad()
//!     loss = F.cross_entropy(model(xt[idx]), yt[idx])
//!     loss.backward()
//!     opt.step()
//!     losses.append(loss.item())
//!     with torch.no_grad():
//!         after.append(F.cross_entropy(model(xt), yt).item())
//! ```
//!
//! with, per case: `SGD(lr=0.1)`; `SGD(lr=0.05, momentum=0.9, nesterov=True,
//! weight_decay=1e-3)`; `SGD(lr=0.05, momentum=0.5, dampening=0.1)` on two hidden
//! layers; `Adam(lr=1e-2)`; `Adam(lr=1e-2, weight_decay=1e-2)`; `AdamW(lr=1e-2)`
//! on two hidden layers; `Adam(lr=5e-2, betas=(0.8, 0.99), eps=1e-6)` on a linear
//! model. xfer must reproduce each loss within 1e-4 relative.

use ndarray::{Array1, Array2};
use serde::Deserialize;
use xfer::train::head::cross_entropy;
use xfer::train::head::mlp::{Activations, Linear, Mlp, MlpConfig, MlpGrads, Mode};
use xfer::train::head::optim::{AdamConfig, Optimizer, OptimizerConfig, SgdConfig};

#[derive(Deserialize)]
struct Fixture {
    n_samples: usize,
    n_features: usize,
    n_classes: usize,
    batch: usize,
    steps: usize,
    x: Vec<f32>,
    y: Vec<usize>,
    order: Vec<usize>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    hidden: Vec<usize>,
    init: Vec<Layer>,
    losses: Vec<f64>,
    loss_after: Vec<f64>,
    #[serde(rename = "final")]
    final_: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

fn optimizer(name: &str) -> OptimizerConfig {
    let sgd = SgdConfig::default();
    let adam = AdamConfig::default();
    match name {
        "sgd" => OptimizerConfig::Sgd(SgdConfig { lr: 0.1, ..sgd }),
        "sgd_momentum_nesterov_wd" => OptimizerConfig::Sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-3,
            ..sgd
        }),
        "sgd_momentum_dampening" => OptimizerConfig::Sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.5,
            dampening: 0.1,
            ..sgd
        }),
        "adam" => OptimizerConfig::Adam(AdamConfig { lr: 1e-2, ..adam }),
        "adam_wd" => OptimizerConfig::Adam(AdamConfig {
            lr: 1e-2,
            weight_decay: 1e-2,
            ..adam
        }),
        "adamw" => OptimizerConfig::Adam(AdamConfig {
            lr: 1e-2,
            ..AdamConfig::adamw()
        }),
        "linear_adam" => OptimizerConfig::Adam(AdamConfig {
            lr: 5e-2,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            ..adam
        }),
        other => panic!("fixture case {other} has no optimiser mapping in this test"),
    }
}

fn layers(config: &MlpConfig, ls: &[Layer]) -> Vec<Linear> {
    config
        .layer_dims()
        .iter()
        .zip(ls)
        .map(|(&(i, o), l)| Linear {
            weight: Array2::from_shape_vec((o, i), l.weight.clone()).unwrap(),
            bias: Array1::from_vec(l.bias.clone()),
        })
        .collect()
}

#[test]
fn twenty_steps_match_pytorch() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/heads/torch_steps.json"
    );
    let f: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let x = Array2::from_shape_vec((f.n_samples, f.n_features), f.x.clone()).unwrap();
    assert_eq!(f.cases.len(), 7);
    let mut worst = 0f64;
    for case in &f.cases {
        let config = MlpConfig {
            n_features: f.n_features,
            hidden: case.hidden.clone(),
            n_classes: f.n_classes,
            dropout: 0.5,
            input_dropout: false,
        };
        let mut mlp = Mlp::from_layers(config.clone(), layers(&config, &case.init)).unwrap();
        let mut opt = Optimizer::new(optimizer(&case.name), mlp.param_sizes());
        let mut acts = Activations::default();
        let mut grads = MlpGrads::zeros(&config);
        let mut xb = Array2::zeros((0, 0));
        let mut case_worst = 0f64;
        for s in 0..f.steps {
            let rows = &f.order[s * f.batch..(s + 1) * f.batch];
            Mlp::gather_rows(x.view(), rows, &mut xb);
            let yb: Vec<usize> = rows.iter().map(|&r| f.y[r]).collect();
            // Mode::Eval: dropout off, as model.eval() in the reference.
            let (loss, _) =
                mlp.loss_and_grad(xb.view(), &yb, None, Mode::Eval, &mut acts, &mut grads);
            opt.step(&mut mlp.param_slices_mut(), &grads.slices());
            let (after, _) = cross_entropy(mlp.forward(x.view()).view(), &f.y);
            for (what, ours, theirs) in [
                ("batch loss", loss, case.losses[s]),
                ("loss after", after, case.loss_after[s]),
            ] {
                let rel = (ours - theirs).abs() / theirs.abs();
                case_worst = case_worst.max(rel);
                assert!(
                    rel <= 1e-4,
                    "{}: step {} {what}: xfer {ours} vs PyTorch {theirs} (relative {rel:.2e})",
                    case.name,
                    s + 1
                );
            }
        }
        let want = layers(&config, &case.final_);
        let mut max_w = 0f32;
        for (ours, theirs) in mlp.layers.iter().zip(&want) {
            for (a, b) in ours
                .weight
                .iter()
                .zip(&theirs.weight)
                .chain(ours.bias.iter().zip(&theirs.bias))
            {
                max_w = max_w.max((a - b).abs());
            }
        }
        assert!(
            max_w < 1e-4,
            "{}: final weights differ by up to {max_w}",
            case.name
        );
        println!(
            "{:<26} max relative loss diff {case_worst:.2e}, max weight diff {max_w:.2e}",
            case.name
        );
        worst = worst.max(case_worst);
    }
    println!("worst relative loss difference over all cases and steps: {worst:.2e}");
}

/// The fused backward + plain-SGD update follows PyTorch as closely as the
/// separate backward and optimiser step do.
#[test]
fn fused_sgd_step_matches_pytorch_too() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/heads/torch_steps.json"
    );
    let f: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let x = Array2::from_shape_vec((f.n_samples, f.n_features), f.x.clone()).unwrap();
    let case = f.cases.iter().find(|c| c.name == "sgd").unwrap();
    let config = MlpConfig {
        n_features: f.n_features,
        hidden: case.hidden.clone(),
        n_classes: f.n_classes,
        dropout: 0.5,
        input_dropout: false,
    };
    let mut mlp = Mlp::from_layers(config.clone(), layers(&config, &case.init)).unwrap();
    let mut acts = Activations::default();
    let mut xb = Array2::zeros((0, 0));
    let mut worst = 0f64;
    for s in 0..f.steps {
        let rows = &f.order[s * f.batch..(s + 1) * f.batch];
        Mlp::gather_rows(x.view(), rows, &mut xb);
        let yb: Vec<usize> = rows.iter().map(|&r| f.y[r]).collect();
        let (loss, _) = mlp.loss_and_sgd_step(xb.view(), &yb, None, Mode::Eval, &mut acts, 0.1);
        let (after, _) = cross_entropy(mlp.forward(x.view()).view(), &f.y);
        for (ours, theirs) in [(loss, case.losses[s]), (after, case.loss_after[s])] {
            let rel = (ours - theirs).abs() / theirs.abs();
            worst = worst.max(rel);
            assert!(
                rel <= 1e-4,
                "step {}: xfer {ours} vs PyTorch {theirs}",
                s + 1
            );
        }
    }
    println!("fused SGD: max relative loss diff {worst:.2e}");
}
