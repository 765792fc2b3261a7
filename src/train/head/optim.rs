//! Optimisers with PyTorch's semantics and defaults (`torch.optim.SGD`, `Adam`,
//! `AdamW` of PyTorch 1.13, single-tensor code path, f32 arithmetic).
//!
//! The state (momentum buffers, Adam's moments, the step count) lives in
//! [`Optimizer`], apart from the parameters and gradients, which are passed as
//! flat slices in a fixed order.
//!
//! **Denormals.** Weights whose inputs are always zero (a ReLU feature that never
//! fires) get exactly zero gradients; their momentum buffers and Adam moments
//! then decay geometrically into subnormal floats, which the CPU processes up to
//! a hundred times slower (PyTorch slows from ~16 to ~26 s/epoch this way unless
//! `torch.set_flush_denormal(True)`). Without `unsafe` there is no flush-to-zero
//! mode, so the update kernels flush state values below `f32::MIN_POSITIVE` to
//! zero explicitly; this changes nothing above 1.2e−38.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Setting;

/// `torch.optim.SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    /// PyTorch's defaults, with the tutorial's learning rate 1e-3 (PyTorch has none).
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// `torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)`;
/// with `decoupled_weight_decay` it is `torch.optim.AdamW` (whose default weight decay is 1e-2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW` defaults: Adam's, with decoupled weight decay 1e-2.
    pub fn adamw() -> AdamConfig {
        AdamConfig {
            weight_decay: 1e-2,
            decoupled_weight_decay: true,
            ..AdamConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    Sgd(SgdConfig),
    Adam(AdamConfig),
}

impl Default for OptimizerConfig {
    /// The tutorial's method-2/3 training: plain SGD, lr 1e-3.
    fn default() -> Self {
        OptimizerConfig::Sgd(SgdConfig::default())
    }
}

impl OptimizerConfig {
    pub(crate) fn lr(&self) -> f32 {
        match self {
            OptimizerConfig::Sgd(c) => c.lr,
            OptimizerConfig::Adam(c) => c.lr,
        }
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |setting, problem: &str| {
            Err(crate::Error::Setting {
                setting,
                problem: problem.into(),
            })
        };
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(
                Setting::LearningRate,
                &format!("must be positive, got {lr}"),
            );
        }
        let weight_decay = match self {
            OptimizerConfig::Sgd(c) => c.weight_decay,
            OptimizerConfig::Adam(c) => c.weight_decay,
        };
        if weight_decay < 0.0 {
            return bad(Setting::WeightDecay, "must be ≥ 0");
        }
        match self {
            OptimizerConfig::Sgd(c) => {
                if c.momentum < 0.0 {
                    return bad(Setting::Momentum, "must be ≥ 0");
                }
                if c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0) {
                    return bad(
                        Setting::Momentum,
                        &format!("is {}, but Nesterov momentum requires a momentum > 0 and zero dampening (as in PyTorch)", c.momentum),
                    );
                }
            }
            OptimizerConfig::Adam(c) => {
                let betas = [c.beta1, c.beta2];
                if !(betas.iter().all(|b| (0.0..1.0).contains(b)) && c.eps > 0.0) {
                    return Err(crate::Error::Config(format!(
                        "Adam's betas must be in [0, 1) and its eps > 0, got {betas:?} and {}",
                        c.eps
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        match self {
            OptimizerConfig::Sgd(c) => {
                let mut s = format!("SGD lr {}", c.lr);
                if c.momentum > 0.0 {
                    s += &format!(
                        ", momentum {}{}",
                        c.momentum,
                        if c.nesterov { " (Nesterov)" } else { "" }
                    );
                }
                if c.weight_decay > 0.0 {
                    s += &format!(", weight decay {}", c.weight_decay);
                }
                s
            }
            OptimizerConfig::Adam(c) => {
                let name = if c.decoupled_weight_decay {
                    "AdamW"
                } else {
                    "Adam"
                };
                let mut s = format!("{name} lr {}", c.lr);
                if c.weight_decay > 0.0 {
                    s += &format!(", weight decay {}", c.weight_decay);
                }
                s
            }
        }
    }
}

/// Flush subnormal values to zero (see the module docs).
#[inline(always)]
fn ftz(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// Elements per parallel chunk of an update.
const CHUNK: usize = 1 << 16;

/// Optimiser state for a fixed list of parameter tensors.
#[derive(Debug, Clone)]
pub struct Optimizer {
    pub(crate) config: OptimizerConfig,
    /// The current learning rate (a schedule may change it between steps).
    pub(crate) lr: f32,
    /// Steps taken.
    pub(crate) t: u64,
    sizes: Vec<usize>,
    /// SGD: momentum buffers; Adam: first moments. Empty until needed.
    buf1: Vec<Vec<f32>>,
    /// Adam: second moments.
    buf2: Vec<Vec<f32>>,
}

impl Optimizer {
    /// State for tensors of the given sizes (see [`super::Mlp::param_sizes`]).
    pub fn new(config: OptimizerConfig, sizes: Vec<usize>) -> Optimizer {
        let (b1, b2) = match &config {
            OptimizerConfig::Sgd(c) if c.momentum != 0.0 => (true, false),
            OptimizerConfig::Sgd(_) => (false, false),
            OptimizerConfig::Adam(_) => (true, true),
        };
        let alloc = |yes: bool| {
            sizes
                .iter()
                .map(|&n| if yes { vec![0f32; n] } else { Vec::new() })
                .collect()
        };
        Optimizer {
            lr: config.lr(),
            config,
            t: 0,
            buf1: alloc(b1),
            buf2: alloc(b2),
            sizes,
        }
    }

    /// One optimisation step over all tensors.
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]]) {
        assert_eq!(
            params.len(),
            self.sizes.len(),
            "number of parameter tensors"
        );
        assert_eq!(grads.len(), self.sizes.len(), "number of gradient tensors");
        self.t += 1;
        let lr = self.lr;
        let first = self.t == 1;
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            assert_eq!(p.len(), self.sizes[i], "parameter tensor {i} size");
            assert_eq!(g.len(), self.sizes[i], "gradient tensor {i} size");
            match self.config {
                OptimizerConfig::Sgd(c) => {
                    sgd_update(&c, lr, first, p, g, &mut self.buf1[i]);
                }
                OptimizerConfig::Adam(c) => {
                    adam_update(&c, lr, self.t, p, g, &mut self.buf1[i], &mut self.buf2[i]);
                }
            }
        }
    }
}

/// ```python
/// # torch/optim/sgd.py, _single_tensor_sgd (1.13)
/// if weight_decay != 0: d_p = d_p.add(param, alpha=weight_decay)
/// if momentum != 0:
///     if buf is None: buf = torch.clone(d_p).detach()
///     else: buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
///     if nesterov: d_p = d_p.add(buf, alpha=momentum)
///     else: d_p = buf
/// param.add_(d_p, alpha=-lr)
/// ```
fn sgd_update(c: &SgdConfig, lr: f32, first: bool, p: &mut [f32], g: &[f32], buf: &mut [f32]) {
    let (wd, mom, nesterov) = (c.weight_decay, c.momentum, c.nesterov);
    // Python-float constants, rounded to f32 once as PyTorch's scalar arguments are.
    let one_minus_damp = (1.0 - c.dampening as f64) as f32;
    // One branch-free loop per case, so that each vectorises.
    match (mom != 0.0, wd != 0.0) {
        (false, false) => par2(p, g, |p, g| {
            for (p, &g) in p.iter_mut().zip(g) {
                *p += -lr * g;
            }
        }),
        (false, true) => par2(p, g, |p, g| {
            for (p, &g) in p.iter_mut().zip(g) {
                *p += -lr * (g + wd * *p);
            }
        }),
        (true, _) => par3(p, g, buf, |p, g, b| {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                let d = if wd != 0.0 { g + wd * *p } else { g };
                *b = if first {
                    d
                } else {
                    ftz(mom * *b + one_minus_damp * d)
                };
                let d = if nesterov { d + mom * *b } else { *b };
                *p += -lr * d;
            }
        }),
    }
}

fn par2(p: &mut [f32], g: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .for_each(|(p, g)| f(p, g));
}

fn par3(
    p: &mut [f32],
    g: &[f32],
    b: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(b.par_chunks_mut(CHUNK))
        .for_each(|((p, g), b)| f(p, g, b));
}

/// Gradients smaller than this are taken as zero by Adam: their square times
/// (1 − β₂) would be subnormal. Their effect on a step is below lr·1e-17/eps.
const ADAM_TINY_GRAD: f32 = 1e-17;

/// ```python
/// # torch/optim/adam.py, _single_tensor_adam (1.13), amsgrad=False;
/// # AdamW (adamw.py) instead does param.mul_(1 - lr * weight_decay) first and no grad term.
/// if weight_decay != 0: grad = grad.add(param, alpha=weight_decay)
/// exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
/// exp_avg_sq.mul_(beta2).addcmul_(grad, grad.conj(), value=1 - beta2)
/// bias_correction1 = 1 - beta1 ** step
/// bias_correction2 = 1 - beta2 ** step
/// step_size = lr / bias_correction1
/// bias_correction2_sqrt = _dispatch_sqrt(bias_correction2)
/// denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
/// param.addcdiv_(exp_avg, denom, value=-step_size)
/// ```
fn adam_update(
    c: &AdamConfig,
    lr: f32,
    t: u64,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let (b1, b2, eps, wd) = (c.beta1, c.beta2, c.eps, c.weight_decay);
    // PyTorch computes the bias corrections in Python floats (f64).
    let bc1 = 1.0 - (b1 as f64).powi(t as i32);
    let bc2 = 1.0 - (b2 as f64).powi(t as i32);
    let k = AdamStep {
        b1,
        b2,
        eps,
        wd,
        step_size: (lr as f64 / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
        decay: (1.0 - lr as f64 * wd as f64) as f32,
        one_minus_b1: (1.0 - b1 as f64) as f32,
        one_minus_b2: (1.0 - b2 as f64) as f32,
    };
    type Kernel = fn(&AdamStep, &mut [f32], &[f32], &mut [f32], &mut [f32]);
    let mut run = |f: Kernel| {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| f(&k, p, g, m, v));
    };
    // One branch-free loop per case, so that each vectorises.
    match (wd != 0.0, c.decoupled_weight_decay) {
        (false, _) => run(adam_chunk::<false, false>),
        (true, false) => run(adam_chunk::<true, false>),
        (true, true) => run(adam_chunk::<false, true>),
    }
}

struct AdamStep {
    b1: f32,
    b2: f32,
    eps: f32,
    wd: f32,
    step_size: f32,
    bc2_sqrt: f32,
    decay: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
}

#[inline(always)]
fn adam_chunk<const L2: bool, const DECOUPLED: bool>(
    k: &AdamStep,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if L2 { g + k.wd * *p } else { g };
        let g = if g.abs() < ADAM_TINY_GRAD { 0.0 } else { g };
        if DECOUPLED {
            *p *= k.decay;
        }
        *m = ftz(*m * k.b1 + k.one_minus_b1 * g);
        *v = ftz(*v * k.b2 + k.one_minus_b2 * g * g);
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += -k.step_size * (*m / denom);
    }
}

/// A learning-rate schedule, applied at the start of each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "lowercase")]
pub(crate) enum LrSchedule {
    #[default]
    Constant,
    /// `StepLR(step_size, gamma)`: multiply by `gamma` every `step` epochs.
    Step { step: usize, gamma: f32 },
    /// `CosineAnnealingLR(T_max = epochs, eta_min = 0)`.
    Cosine { epochs: usize },
}

impl LrSchedule {
    /// The learning rate of (0-based) `epoch`.
    pub(crate) fn lr(&self, base: f32, epoch: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { step, gamma } => base * gamma.powi((epoch / step.max(1)) as i32),
            LrSchedule::Cosine { epochs } => {
                let t = epoch.min(epochs) as f64 / epochs.max(1) as f64;
                (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }

    /// Parses `constant`, `step:EVERY:GAMMA` or `cosine`.
    pub(crate) fn parse(s: &str, epochs: usize) -> crate::Result<LrSchedule> {
        let bad = |problem: String| crate::Error::Setting {
            setting: Setting::Schedule,
            problem,
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["constant"] | ["none"] => Ok(LrSchedule::Constant),
            ["cosine"] => Ok(LrSchedule::Cosine { epochs }),
            ["step", every, gamma] => {
                let step: usize = every
                    .parse()
                    .map_err(|_| bad(format!("step: `{every}` is not a number of epochs")))?;
                let gamma: f32 = gamma
                    .parse()
                    .map_err(|_| bad(format!("step: `{gamma}` is not a factor")))?;
                if step == 0 || gamma.is_nan() || gamma <= 0.0 {
                    return Err(bad("step:EVERY:GAMMA needs EVERY ≥ 1 and GAMMA > 0".into()));
                }
                Ok(LrSchedule::Step { step, gamma })
            }
            _ => Err(bad(format!(
                "`{s}` is an unknown learning-rate schedule; use constant, cosine or step:EVERY:GAMMA (e.g. step:7:0.1)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: OptimizerConfig, steps: usize) -> Vec<f32> {
        // Minimise sum((p - 1)^2) from p = [0, 2, -3].
        let mut p = vec![0.0f32, 2.0, -3.0];
        let mut opt = Optimizer::new(config, vec![3]);
        for _ in 0..steps {
            let g: Vec<f32> = p.iter().map(|x| 2.0 * (x - 1.0)).collect();
            opt.step(&mut [&mut p[..]], &[&g[..]]);
        }
        p
    }

    #[test]
    fn sgd_matches_hand_computation() {
        // p=0, g=-2, lr 0.1 → 0.2; momentum 0.9: buf=-2 first, then buf = 0.9 * -2 + g2
        let p = run(
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.1,
                ..Default::default()
            }),
            1,
        );
        assert!((p[0] - 0.2).abs() < 1e-7);
        let p = run(
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            }),
            2,
        );
        // step1: p=0.2 ; g2 = -1.6 ; buf = -1.8 - 1.6 = -3.4 ; p = 0.2 + 0.34 = 0.54
        assert!((p[0] - 0.54).abs() < 1e-6, "{}", p[0]);
        let p = run(
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                ..Default::default()
            }),
            1,
        );
        // d = g + 0.9 * buf = -2 - 1.8 = -3.8 → p = 0.38
        assert!((p[0] - 0.38).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let p = run(
            OptimizerConfig::Adam(AdamConfig {
                lr: 0.01,
                ..Default::default()
            }),
            1,
        );
        assert!((p[0] - 0.01).abs() < 1e-6);
        assert!((p[1] - 1.99).abs() < 1e-6);
        // converges
        let p = run(
            OptimizerConfig::Adam(AdamConfig {
                lr: 0.05,
                ..Default::default()
            }),
            2000,
        );
        assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-3), "{p:?}");
        let p = run(OptimizerConfig::Adam(AdamConfig::adamw()), 1);
        // decoupled decay of 0 is 0; of 2: 2 * (1 - 1e-5) - 1e-3
        assert!((p[1] - (2.0 * (1.0 - 1e-5) - 1e-3)).abs() < 1e-6);
    }

    #[test]
    fn state_never_goes_subnormal() {
        let mut p = [1.0f32; 4];
        let mut opt = Optimizer::new(OptimizerConfig::Adam(AdamConfig::default()), vec![4]);
        opt.step(&mut [&mut p[..]], &[&[1.0, 1.0, 1.0, 1.0][..]]);
        for _ in 0..2000 {
            opt.step(&mut [&mut p[..]], &[&[0.0, 0.0, 0.0, 0.0][..]]);
        }
        assert!(opt.buf1[0]
            .iter()
            .chain(&opt.buf2[0])
            .all(|&x| x == 0.0 || x.abs() >= f32::MIN_POSITIVE));
        assert!(opt.buf1[0].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn schedules() {
        let s = LrSchedule::parse("step:2:0.1", 10).unwrap();
        assert!((s.lr(1.0, 3) - 0.1).abs() < 1e-7);
        let c = LrSchedule::parse("cosine", 10).unwrap();
        assert_eq!(c.lr(1.0, 0), 1.0);
        assert!(c.lr(1.0, 10).abs() < 1e-7);
        assert!(LrSchedule::parse("warp", 1).is_err());
    }
}
