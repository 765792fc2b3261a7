//! Prediction: image files → class probabilities, the one path shared by
//! `xfer predict` and the slim `xfer-predict` binary.
//!
//! ```text
//! files ─► pipeline (the bundle's recipe per backbone ─► backbone(s)) ─► HeadSink: concat ─► head ─► softmax
//! ```
//!
//! [`resolve`] finds each backbone of the bundle in the zoo and refuses a
//! different model, a changed recipe or another image decoding before any work
//! starts; the [`pipeline`](crate::features::pipeline) decodes on a thread pool while the
//! backbones run the previous batch, exactly as extraction does; [`output`]
//! writes the table, CSV and Kaggle files (shared with `xfer evaluate`).
//!
//! This module needs neither HDF5 nor linfa.

pub mod output;
pub(crate) mod resolve;

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::features::pipeline::{self, Batch, PipelineConfig, Sink, Stage};
use crate::images::preprocess::{DecodeOptions, Recipe};
use crate::models::backbone::{Backbone, SessionOptions};
use crate::models::runtime::Runtime;
use crate::models::zoo::Zoo;
use crate::ship::bundle::Bundle;
use crate::util::clobber::Input;

pub(crate) use crate::features::pipeline::{Progress, Timings};
pub use crate::images::dataset::{collect_inputs, Inputs};
pub(crate) use resolve::check_decode;
pub use resolve::{resolve_backbones, ResolvedBackbone};

#[derive(Debug, Clone, Default)]
pub struct PredictorOptions {
    pub session: SessionOptions,
    pub pipeline: PipelineConfig,
}

/// Results of [`Predictor::predict`], in input order.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// The images that were predicted.
    pub paths: Vec<PathBuf>,
    /// [n_predicted, n_classes]
    pub probs: Array2<f32>,
    /// Files that could not be read or decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// `sink` is the head: concatenation, head and softmax.
    pub timings: Timings,
}

/// A bundle with its backbones loaded.
pub struct Predictor {
    pub bundle: Bundle,
    stages: Vec<Stage>,
    resolved: Vec<ResolvedBackbone>,
    /// Distinct recipes; each stage names one.
    recipes: Vec<Recipe>,
    opts: PredictorOptions,
}

/// The head as the pipeline's sink: concatenates the backbones' features (in
/// the bundle's order) and keeps the class probabilities.
struct HeadSink<'a> {
    bundle: &'a Bundle,
    inputs: &'a [PathBuf],
    blocks: Vec<Array2<f32>>,
    paths: Vec<PathBuf>,
    skipped: Vec<(PathBuf, String)>,
}

impl Sink for HeadSink<'_> {
    type Error = Error;
    fn consume(&mut self, batch: Batch) -> Result<()> {
        if !batch.rows.is_empty() {
            let probs = head_probs(self.bundle, &batch.features); // [n, n_classes]
                                                                  // A silently wrong row is worse than a stop: features the head
                                                                  // overflows on give NaN, which no output format should carry.
            if let Some((r, _)) = probs
                .rows()
                .into_iter()
                .enumerate()
                .find(|(_, row)| row.iter().any(|p| !p.is_finite()))
            {
                return Err(Error::Input {
                    path: self.inputs[batch.rows[r]].clone(),
                    reason: "the head gives non-finite probabilities for this image (its features overflow the head's 32-bit arithmetic); check the bundle and the backbone, or train the head again".into(),
                });
            }
            self.blocks.push(probs);
        }
        self.paths
            .extend(batch.rows.iter().map(|&i| self.inputs[i].clone()));
        self.skipped.extend(
            batch
                .skipped
                .into_iter()
                .map(|(i, reason)| (self.inputs[i].clone(), reason)),
        );
        Ok(())
    }
}

/// A bundle whose backbones were found in the zoo and checked (the same
/// model, recipe and decoding as in training), not loaded yet: what a front
/// end checks its outputs against before it pays for the load.
pub struct CheckedBundle {
    pub path: PathBuf,
    pub bundle: Bundle,
    pub backbones: Vec<ResolvedBackbone>,
}

impl CheckedBundle {
    pub fn class_names(&self) -> &[String] {
        &self.bundle.meta.class_names
    }

    /// The files a prediction reads: the bundle and its backbones' files.
    pub fn inputs(&self) -> Vec<Input> {
        let mut own = vec![Input::new("the bundle", &self.path)];
        own.extend(self.backbones.iter().flat_map(|r| r.manifest.inputs()));
        own
    }

    /// Loads the backbones on the requested execution provider.
    pub fn load(self, runtime: &Runtime, opts: PredictorOptions) -> Result<Predictor> {
        Predictor::load(runtime, self.bundle, self.backbones, opts)
    }
}

impl Predictor {
    /// Opens a bundle for prediction: reads it, finds its backbones in `zoo`,
    /// checks them and loads them.
    ///
    /// ```no_run
    /// use xfer::{Predictor, PredictorOptions, Runtime, Zoo};
    ///
    /// let runtime = Runtime::init(None)?;
    /// let zoo = Zoo::locate(None);
    /// let mut predictor = Predictor::open("run/best.safetensors".as_ref(), &zoo, &runtime, PredictorOptions::default())?;
    /// let preds = predictor.predict(&["cat.jpg".into()], &mut |_| {})?;
    /// let names = predictor.class_names();
    /// for (path, row) in preds.paths.iter().zip(preds.probs.rows()) {
    ///     let (k, p) = xfer::train::head::argmax(row);
    ///     println!("{}: {} ({p:.3})", path.display(), names[k]);
    /// }
    /// # Ok::<(), xfer::Error>(())
    /// ```
    pub fn open(
        bundle: &Path,
        zoo: &Zoo,
        runtime: &Runtime,
        opts: PredictorOptions,
    ) -> Result<Predictor> {
        Predictor::check(bundle, zoo, &opts.pipeline.decode)?.load(runtime, opts)
    }

    /// The part of [`open`](Predictor::open) before any model is loaded.
    pub fn check(bundle: &Path, zoo: &Zoo, decode: &DecodeOptions) -> Result<CheckedBundle> {
        let loaded = Bundle::load(bundle)?;
        let backbones = resolve_backbones(&loaded, bundle, zoo)?;
        check_decode(&loaded, bundle, decode.mode())?;
        Ok(CheckedBundle {
            path: bundle.to_owned(),
            bundle: loaded,
            backbones,
        })
    }

    /// Loads the backbones of `resolved` (from [`resolve_backbones`]) on the
    /// requested execution provider.
    pub(crate) fn load(
        runtime: &Runtime,
        bundle: Bundle,
        resolved: Vec<ResolvedBackbone>,
        opts: PredictorOptions,
    ) -> Result<Predictor> {
        let width: usize = resolved.iter().map(|r| r.manifest.output.feature_dim).sum();
        if width != bundle.mlp.n_features() || resolved.len() != bundle.meta.backbones.len() {
            return Err(Error::Config(format!(
                "the backbones give {width} features, the head expects {}; resolve the bundle's backbones with resolve_backbones",
                bundle.mlp.n_features()
            )));
        }
        let mut recipes: Vec<Recipe> = Vec::new();
        let mut stages = Vec::with_capacity(resolved.len());
        for r in &resolved {
            let recipe = match recipes.iter().position(|x| *x == r.recipe) {
                Some(k) => k,
                None => {
                    recipes.push(r.recipe.clone());
                    recipes.len() - 1
                }
            };
            let backbone = Backbone::load(runtime, &r.manifest, &opts.session)?;
            stages.push(Stage { backbone, recipe });
        }
        Ok(Predictor {
            bundle,
            stages,
            resolved,
            recipes,
            opts,
        })
    }

    pub fn resolved(&self) -> &[ResolvedBackbone] {
        &self.resolved
    }

    pub fn backbones(&self) -> impl Iterator<Item = &Backbone> {
        self.stages.iter().map(|s| &s.backbone)
    }

    /// Notes on backbones computing in another precision than the head's
    /// training features ([`crate::ship::bundle::precision_note`]), e.g. bf16
    /// under OpenVINO for a head trained on ONNX Runtime's fp32 features.
    pub fn precision_notes(&self) -> Vec<String> {
        let n = self.stages.len();
        self.bundle
            .meta
            .backbones
            .iter()
            .zip(&self.stages)
            .enumerate()
            .filter_map(|(i, (trained, stage))| {
                crate::ship::bundle::precision_note(
                    &format!("backbone {} of {n}", i + 1),
                    &trained.name,
                    &trained.inference_precision,
                    &stage.backbone.inference_precision,
                )
            })
            .collect()
    }

    pub fn class_names(&self) -> &[String] {
        &self.bundle.meta.class_names
    }

    /// Class probabilities of every image in `paths`; unreadable files are
    /// skipped and listed. Memory holds at most three batches of pixels.
    pub fn predict(
        &mut self,
        paths: &[PathBuf],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Predictions> {
        let stages = std::mem::take(&mut self.stages);
        let sink = HeadSink {
            bundle: &self.bundle,
            inputs: paths,
            blocks: Vec::new(),
            paths: Vec::with_capacity(paths.len()),
            skipped: Vec::new(),
        };
        let finished = pipeline::run(
            paths,
            &self.recipes,
            || Ok::<_, Error>((stages, sink)),
            &self.opts.pipeline,
            progress,
        )?;
        self.stages = finished.stages;
        let HeadSink {
            blocks,
            paths,
            skipped,
            ..
        } = finished.sink;
        let n_classes = self.bundle.mlp.n_classes();
        let views: Vec<ArrayView2<f32>> = blocks.iter().map(|b| b.view()).collect();
        let probs = if views.is_empty() {
            Array2::zeros((0, n_classes))
        } else {
            ndarray::concatenate(Axis(0), &views).expect("blocks have n_classes columns")
        }; // [n_predicted, n_classes]
        Ok(Predictions {
            paths,
            probs,
            skipped,
            timings: finished.timings,
        })
    }
}

/// Concatenates the backbones' features (in the bundle's order) and runs the head.
///
/// # Shapes
/// `feats[b]`: [n_samples, d_b] → [n_samples, n_classes]
fn head_probs(bundle: &Bundle, feats: &[Array2<f32>]) -> Array2<f32> {
    if feats.len() == 1 {
        return bundle.predict_proba(feats[0].view());
    }
    let views: Vec<ArrayView2<f32>> = feats.iter().map(|f| f.view()).collect();
    let x = ndarray::concatenate(Axis(1), &views).expect("backbone outputs have equal rows"); // [n, Σ d_b]
    bundle.predict_proba(x.view())
}
