//! The trained head with everything needed to use it again (docs/formats.md, "Bundle"):
//! one safetensors file holding the weights (f32, PyTorch's `[out, in]` layout)
//! and, in its string metadata under the key `xfer`, a JSON document with the
//! head's architecture, the class names, the backbones whose features it expects
//! (name, sha256, preprocessing, dimension, in concatenation order), whether the
//! features are standardised, the temperature its logits are divided by
//! (calibration; 1 = none), the training configuration and the final metrics.
//!
//! Format version 2 added `temperature`: a version-1 reader would ignore it and
//! give other probabilities, so bundles are written as version 2 and older
//! xfer builds refuse them ("upgrade xfer"); version-1 bundles load with T = 1.
//!
//! Tensors: `layers.{l}.weight` [out, in], `layers.{l}.bias` [out], and with
//! standardisation `standardize.mean`, `standardize.scale` [n_features].
//! Python reads it with `safetensors.numpy.load_file` and
//! `json.loads(safe_open(path, "np").metadata()["xfer"])`.
//!
//! This module needs neither HDF5 nor linfa: the slim predictor uses it.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::train::head::mlp::{Linear, Mlp, MlpConfig};
use crate::train::head::{softmax_rows_inplace, HeadKind, Standardize};

pub(crate) use crate::error::Result;
use crate::error::{Error, Next, Refusal};

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::io(path, source)
}

pub(crate) const FORMAT: &str = "xfer-head";
pub(crate) const FORMAT_VERSION: u32 = 2;
const META_KEY: &str = "xfer";

/// A backbone whose features a head was trained on, as recorded in the feature
/// files' provenance. Files in the tutorial's layout have no provenance: their
/// `model_sha256` and `preprocess` are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneRef {
    pub name: String,
    pub model_sha256: String,
    /// The preprocessing recipe, JSON.
    pub preprocess: String,
    pub n_features: usize,
    /// How images were decoded for its features (`jpeg_scaled` or
    /// `jpeg_full`, see `DecodeOptions::mode`); empty when not recorded
    /// (feature files before format 2, tutorial files).
    #[serde(default)]
    pub decode: String,
    /// What xfer did to the backbone's output ([`OutputSpec::pooling`]);
    /// empty (and absent from the JSON) for models that pool in their graph.
    ///
    /// [`OutputSpec::pooling`]: crate::models::zoo::OutputSpec::pooling
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pooling: String,
    /// `int8` when the features came from a quantised model (`xfer
    /// quantize`); empty for fp32 models (and not written).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub precision: String,
    /// The precision the execution provider computed the features in when it
    /// is not the model's own (`bf16`, `f32`: OpenVINO; `fp16`: TensorRT);
    /// empty (and not written) for ONNX Runtime's own kernels.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inference_precision: String,
}

/// Features computed in `got` meeting a head trained on features computed in
/// `trained` ([`BackboneRef::inference_precision`]): a note naming both, or
/// None when they are the same (OpenVINO's f32 counts as ONNX Runtime's
/// own: they agree to about 1e-6). Close but not equal, so a note and not a
/// refusal: measured on real photos, a head trained on fp32 features kept its
/// accuracy on bf16 ones (docs/guide.md, "OpenVINO").
pub fn precision_note(at: &str, name: &str, trained: &str, got: &str) -> Option<String> {
    use crate::models::backbone::precision_class as said;
    if said(trained) == said(got) {
        return None;
    }
    Some(format!(
        "{at}: features of {name} computed in {}, but the head was trained on features computed in {}: close, not equal; train the head on features of one precision to rule the difference out",
        said(got),
        said(trained)
    ))
}

impl BackboneRef {
    pub(crate) fn known(&self) -> bool {
        !self.model_sha256.is_empty()
    }

    /// "efficientnet_lite0_int8 (int8)", "efficientnet_lite0 (fp32)"; the name
    /// alone when nothing is recorded (tutorial files).
    pub(crate) fn describe(&self) -> String {
        match (self.known(), self.precision.as_str()) {
            (false, _) => self.name.clone(),
            (true, "") => format!("{} (fp32)", self.name),
            (true, p) => format!("{} ({p})", self.name),
        }
    }
}

/// Checks that features come from the backbones a head expects, in the same
/// order; the error says what differs. Ok: notes for the caller to show, on
/// features computed in another precision ([`precision_note`]).
pub fn check_backbones(
    expected: &[BackboneRef],
    got: &[BackboneRef],
    what: &str,
) -> Result<Vec<String>> {
    backbones_differ(expected, got, what).map_err(|r| Error::FeaturesMismatch {
        reason: r.reason,
        next: r.next,
    })?;
    let n = expected.len();
    Ok(expected
        .iter()
        .zip(got)
        .enumerate()
        .filter_map(|(i, (e, g))| {
            precision_note(
                &format!("{what}, backbone {} of {n}", i + 1),
                &g.name,
                &e.inference_precision,
                &g.inference_precision,
            )
        })
        .collect())
}

fn backbones_differ(
    expected: &[BackboneRef],
    got: &[BackboneRef],
    what: &str,
) -> std::result::Result<(), Refusal> {
    let names = |v: &[BackboneRef]| {
        v.iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    if expected.len() != got.len() {
        return Err(Refusal::from(format!(
            "{what} come from {} backbone(s) ({}), expected {} ({}); pass one feature file per backbone, in the order used for training",
            got.len(),
            names(got),
            expected.len(),
            names(expected)
        )));
    }
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        let at = format!("{what}, backbone {} of {}", i + 1, expected.len());
        if e.n_features != g.n_features {
            return Err(Refusal::from(format!(
                "{at}: {} features from {}, expected {} from {}; pass the files in the training order ({})",
                g.n_features,
                g.name,
                e.n_features,
                e.name,
                names(expected)
            )));
        }
        if e.known() && g.known() {
            if e.precision != g.precision {
                return Err(Refusal::from(format!(
                    "{at}: features of {}, but the head was trained on features of {}: an int8 model's features and its fp32 source's differ; extract with {} (or train the head again on these features)",
                    g.describe(),
                    e.describe(),
                    e.name
                )));
            }
            if e.name != g.name {
                return Err(Refusal::from(format!(
                    "{at}: features of {}, expected {}; pass the files in the training order ({})",
                    g.name,
                    e.name,
                    names(expected)
                )));
            }
            if e.model_sha256 != g.model_sha256 {
                return Err(Refusal::from(format!(
                    "{at}: {} was extracted with model sha256 {}, but training used {}; the backbone changed: extract again with the model used for training",
                    g.name, g.model_sha256, e.model_sha256
                )));
            }
            if !e.decode.is_empty() && !g.decode.is_empty() && e.decode != g.decode {
                return Err(Refusal::new(
                    format!(
                        "{at}: {} was extracted with image decoding {}, but training used {}",
                        g.name, g.decode, e.decode
                    ),
                    Next::DecodeAsTrained {
                        full: e.decode == "jpeg_full",
                        extract: true,
                    },
                ));
            }
            if e.pooling != g.pooling {
                return Err(Refusal::from(format!(
                    "{at}: {} was extracted with pooling `{}`, but training used `{}`; extract again with the manifest used for training",
                    g.name, g.pooling, e.pooling
                )));
            }
            if e.preprocess != g.preprocess {
                return Err(Refusal::new(
                    format!(
                        "{at}: {} was extracted with preprocessing {}, but training used {}",
                        g.name, g.preprocess, e.preprocess
                    ),
                    Next::SamePreset,
                ));
            }
        }
    }
    Ok(())
}

/// The JSON metadata of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleMeta {
    pub(crate) format: String,
    pub(crate) format_version: u32,
    pub kind: HeadKind,
    pub architecture: MlpConfig,
    pub class_names: Vec<String>,
    pub backbones: Vec<BackboneRef>,
    pub(crate) standardized: bool,
    /// Temperature scaling: probabilities are `softmax(logits / temperature)`
    /// (1 = uncalibrated; absent in version-1 bundles).
    #[serde(default = "one")]
    pub temperature: f32,
    /// The training configuration (free-form JSON written by `xfer train`).
    pub training: serde_json::Value,
    /// Final metrics (free-form JSON).
    pub(crate) metrics: serde_json::Value,
    pub(crate) xfer_version: String,
}

fn one() -> f32 {
    1.0
}

/// A trained head, ready to predict.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub meta: BundleMeta,
    pub mlp: Mlp,
    pub standardize: Option<Standardize>,
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(t: &TensorView) -> Vec<f32> {
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The checks the metadata allow on their own.
fn check_meta(meta: &BundleMeta) -> std::result::Result<(), String> {
    let arch = &meta.architecture;
    arch.validate()
        .map_err(|e| format!("its architecture is invalid: {e}"))?;
    if meta.class_names.len() != arch.n_classes {
        return Err(format!(
            "names {} classes ({}) but the head has {} outputs",
            meta.class_names.len(),
            meta.class_names.join(", "),
            arch.n_classes
        ));
    }
    for (i, n) in meta.class_names.iter().enumerate() {
        if meta.class_names[..i].contains(n) {
            return Err(format!("names the class {n:?} twice"));
        }
    }
    let (t_min, t_max) = TEMPERATURE_RANGE;
    if !(meta.temperature.is_finite() && meta.temperature > 0.0) {
        return Err(format!(
            "has temperature {}: it must be a positive number",
            meta.temperature
        ));
    }
    if !(t_min..=t_max).contains(&meta.temperature) {
        return Err(format!(
            "has temperature {}, outside {t_min}..={t_max} (the range `xfer train` calibrates in; 1 is no scaling): it was edited; train it again or set it to 1",
            meta.temperature
        ));
    }
    if meta.backbones.is_empty() {
        return Err("names no backbones: it cannot know which features to compute".into());
    }
    let widths: Vec<String> = meta
        .backbones
        .iter()
        .map(|b| format!("{} {}", b.name, b.n_features))
        .collect();
    let sum: usize = meta.backbones.iter().map(|b| b.n_features).sum();
    if sum != arch.n_features {
        return Err(format!(
            "its backbones give {sum} features ({}), but the head takes {}",
            widths.join(" + "),
            arch.n_features
        ));
    }
    Ok(())
}

/// The temperatures a bundle may have: the range calibration fits in
/// ([`crate::train::head::calibrate::RANGE`]).
pub(crate) const TEMPERATURE_RANGE: (f32, f32) = (
    crate::train::head::calibrate::RANGE.0 as f32,
    crate::train::head::calibrate::RANGE.1 as f32,
);

/// The largest weight or bias (in magnitude) a head may have. Trained heads
/// stay far below: the MLP's weight decay and the logistic baseline's L2
/// penalty (C ≤ 10⁴) keep them within the hundreds; 10⁶ only comes from an
/// edited file, whose predictions would be saturated nonsense.
pub(crate) const MAX_WEIGHT: f32 = 1e6;

/// An error naming the first weight or bias whose magnitude is over [`MAX_WEIGHT`].
fn absurd<'a>(
    name: &str,
    values: impl Iterator<Item = &'a f32>,
) -> std::result::Result<(), String> {
    for (i, v) in values.enumerate() {
        if v.abs() > MAX_WEIGHT {
            return Err(format!(
                "tensor {name} holds {v} at flat index {i}, over xfer's bound of {MAX_WEIGHT:e} in magnitude for a trained head's weights: it was edited or damaged; make it again with `xfer train`"
            ));
        }
    }
    Ok(())
}

/// An error naming the first value that is NaN or infinite.
fn non_finite<'a>(
    name: &str,
    values: impl Iterator<Item = &'a f32>,
) -> std::result::Result<(), String> {
    let mut count = 0usize;
    let mut first = None;
    for (i, v) in values.enumerate() {
        if !v.is_finite() {
            count += 1;
            first.get_or_insert((i, *v));
        }
    }
    match first {
        None => Ok(()),
        Some((i, v)) => Err(format!(
            "tensor {name} holds {count} value(s) that are not finite (the first, at flat index {i}, is {v})"
        )),
    }
}

impl Bundle {
    pub fn new(
        kind: HeadKind,
        mlp: Mlp,
        standardize: Option<Standardize>,
        class_names: Vec<String>,
        backbones: Vec<BackboneRef>,
        training: serde_json::Value,
        metrics: serde_json::Value,
    ) -> Bundle {
        Bundle {
            meta: BundleMeta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                kind,
                architecture: mlp.config.clone(),
                class_names,
                backbones,
                standardized: standardize.is_some(),
                temperature: 1.0,
                training,
                metrics,
                xfer_version: crate::VERSION.into(),
            },
            mlp,
            standardize,
        }
    }

    /// Writes the bundle atomically (`<path>.tmp-<pid>` in the same folder, synced,
    /// then renamed), so that a half-written bundle never looks complete. A bundle
    /// that [`Bundle::validate`] refuses is not written.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check().map_err(|reason| Error::Bundle {
            path: path.to_owned(),
            reason: format!(
                "cannot be saved: {reason}; nothing was written: train again (a head with \
                 weights that are not finite diverged: lower the learning rate)"
            ),
        })?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (l, layer) in self.mlp.layers.iter().enumerate() {
            tensors.push((
                format!("layers.{l}.weight"),
                layer.weight.shape().to_vec(),
                bytes(layer.weight.as_slice().expect("standard layout")),
            ));
            tensors.push((
                format!("layers.{l}.bias"),
                vec![layer.bias.len()],
                bytes(layer.bias.as_slice().expect("standard layout")),
            ));
        }
        if let Some(s) = &self.standardize {
            tensors.push((
                "standardize.mean".into(),
                vec![s.mean.len()],
                bytes(s.mean.as_slice().expect("contiguous")),
            ));
            tensors.push((
                "standardize.scale".into(),
                vec![s.scale.len()],
                bytes(s.scale.as_slice().expect("contiguous")),
            ));
        }
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, shape, data)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, shape.clone(), data).expect("sizes match"),
                )
            })
            .collect();
        let meta = HashMap::from([(
            META_KEY.to_string(),
            serde_json::to_string(&self.meta).expect("metadata serialises"),
        )]);
        let buf = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Bundle {
            path: path.to_owned(),
            reason: format!("cannot be serialised: {e}"),
        })?;
        crate::util::atomic::write_bytes_atomic(path, &buf)?;
        Ok(())
    }

    /// Reads a bundle and checks that it agrees with itself ([`Bundle::validate`]):
    /// a bundle whose metadata and tensors disagree, or whose numbers are not
    /// finite, is refused here with a message naming what disagrees, rather than
    /// failing later.
    pub fn load(path: &Path) -> Result<Bundle> {
        let bad = |reason: String| Error::Bundle {
            path: path.to_owned(),
            reason,
        };
        let damaged = |what: String| {
            bad(format!(
                "{what}; the file is damaged or was edited: use the bundle `xfer train` wrote, or train again"
            ))
        };
        let buf = std::fs::read(path).map_err(|e| io(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| {
            bad(format!(
                "is not a safetensors file ({e}); pass a bundle written by `xfer train`"
            ))
        })?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| {
                bad("has no xfer metadata; pass a bundle written by `xfer train`".into())
            })?;
        let meta: BundleMeta = serde_json::from_str(json)
            .map_err(|e| damaged(format!("has unreadable xfer metadata ({e})")))?;
        if meta.format != FORMAT || meta.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "is format {} version {}; this xfer reads {FORMAT} version ≤ {FORMAT_VERSION}: upgrade xfer",
                meta.format, meta.format_version
            )));
        }
        // The metadata alone first: they say which tensors to expect.
        check_meta(&meta).map_err(damaged)?;
        let st = SafeTensors::deserialize(&buf)
            .map_err(|e| damaged(format!("cannot be read as safetensors ({e})")))?;
        let arch = &meta.architecture;
        let from_meta = format!(
            "metadata: n_features {}, hidden {:?}, n_classes {}",
            arch.n_features, arch.hidden, arch.n_classes
        );
        let mut expected: Vec<String> = Vec::new();
        let mut get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            expected.push(name.to_string());
            let t = st.tensor(name).map_err(|_| {
                damaged(format!(
                    "has no tensor {name} (expected F32 {shape:?} from its {from_meta})"
                ))
            })?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(damaged(format!(
                    "tensor {name} is {:?} {:?}, but its {from_meta} make it F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(floats(&t))
        };
        let mut layers = Vec::new();
        for (l, (i, o)) in arch.layer_dims().into_iter().enumerate() {
            let w = get(&format!("layers.{l}.weight"), &[o, i])?;
            let b = get(&format!("layers.{l}.bias"), &[o])?;
            layers.push(Linear {
                weight: Array2::from_shape_vec((o, i), w).expect("checked shape"),
                bias: Array1::from_vec(b),
            });
        }
        let d = arch.n_features;
        let standardize = if meta.standardized {
            Some(Standardize {
                mean: Array1::from_vec(get("standardize.mean", &[d])?),
                scale: Array1::from_vec(get("standardize.scale", &[d])?),
            })
        } else {
            None
        };
        let mut extra: Vec<String> = st
            .names()
            .into_iter()
            .filter(|n| !expected.iter().any(|e| e == *n))
            .map(str::to_owned)
            .collect();
        if !extra.is_empty() {
            extra.sort();
            let why = if !meta.standardized && extra.iter().any(|n| n.starts_with("standardize.")) {
                " (its metadata say the features are not standardised)"
            } else {
                ""
            };
            return Err(damaged(format!(
                "holds tensor(s) {} that its {from_meta} do not describe{why}",
                extra.join(", ")
            )));
        }
        let mlp = Mlp::from_layers(meta.architecture.clone(), layers)
            .map_err(|e| damaged(e.to_string()))?;
        let bundle = Bundle {
            meta,
            mlp,
            standardize,
        };
        bundle.check().map_err(damaged)?;
        Ok(bundle)
    }

    /// Checks that the bundle agrees with itself: the architecture is valid; the
    /// class names are as many as the outputs, and distinct; the backbones'
    /// feature widths add up to the head's input width; the layers' shapes follow
    /// the architecture; the standardisation vectors are as long as the input;
    /// every weight, bias, mean and scale is finite, and every scale positive.
    /// The error names what disagrees.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|reason| Error::Bundle {
            path: "(in memory)".into(),
            reason,
        })
    }

    fn check(&self) -> std::result::Result<(), String> {
        check_meta(&self.meta)?;
        let arch = &self.meta.architecture;
        if self.mlp.config != *arch {
            return Err(format!(
                "the head's architecture ({}) differs from the metadata's ({})",
                self.mlp.config.describe(),
                arch.describe()
            ));
        }
        for (l, ((i, o), layer)) in arch
            .layer_dims()
            .into_iter()
            .zip(&self.mlp.layers)
            .enumerate()
        {
            if layer.weight.dim() != (o, i) || layer.bias.len() != o {
                return Err(format!(
                    "layer {l} has weight {:?} and bias [{}], but the architecture makes them [{o}, {i}] and [{o}]",
                    layer.weight.shape(),
                    layer.bias.len()
                ));
            }
            non_finite(&format!("layers.{l}.weight"), layer.weight.iter())?;
            non_finite(&format!("layers.{l}.bias"), layer.bias.iter())?;
            absurd(&format!("layers.{l}.weight"), layer.weight.iter())?;
            absurd(&format!("layers.{l}.bias"), layer.bias.iter())?;
        }
        if self.mlp.layers.len() != arch.layer_dims().len() {
            return Err(format!(
                "the head has {} layers, its architecture {}",
                self.mlp.layers.len(),
                arch.layer_dims().len()
            ));
        }
        match (&self.standardize, self.meta.standardized) {
            (Some(s), true) => {
                let d = arch.n_features;
                if s.mean.len() != d || s.scale.len() != d {
                    return Err(format!(
                        "standardisation has {} means and {} scales for {d} features",
                        s.mean.len(),
                        s.scale.len()
                    ));
                }
                non_finite("standardize.mean", s.mean.iter())?;
                non_finite("standardize.scale", s.scale.iter())?;
                if let Some(i) = s.scale.iter().position(|v| *v <= 0.0) {
                    return Err(format!(
                        "standardize.scale[{i}] is {}: scales must be positive",
                        s.scale[i]
                    ));
                }
            }
            (None, false) => {}
            (Some(_), false) => {
                return Err("has standardisation vectors, but its metadata say the features are not standardised".into())
            }
            (None, true) => {
                return Err("its metadata say the features are standardised, but it has no standardisation vectors".into())
            }
        }
        // Finite values can still overflow f32 on the way (a tiny scale, huge
        // weights): probe the head at the origin of its input (tutorial files
        // and standardised features are centred there) and refuse NaN or inf.
        let probe = self.predict_proba(Array2::<f32>::zeros((1, arch.n_features)).view());
        if probe.iter().any(|p| !p.is_finite()) {
            return Err("its head gives non-finite probabilities for an all-zero input (its weights or standardisation overflow 32-bit floats); train it again".into());
        }
        Ok(())
    }

    /// Class probabilities for raw (unstandardised) features:
    /// `softmax(logits / temperature)`. Every prediction path (`xfer predict`,
    /// `xfer-predict`, `xfer evaluate`) goes through here.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] → [n_samples, n_classes]
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut logits = self.logits(x);
        let t = self.meta.temperature;
        if t != 1.0 {
            logits.mapv_inplace(|v| v / t);
        }
        softmax_rows_inplace(logits.view_mut());
        logits
    }

    /// Logits for raw (unstandardised) features, in blocks of rows.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] → [n_samples, n_classes]
    pub(crate) fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        match &self.standardize {
            None => self.mlp.forward(x),
            Some(s) => {
                const BLOCK: usize = 2048;
                let mut out = Array2::zeros((x.nrows(), self.mlp.n_classes()));
                for (xb, mut ob) in x
                    .axis_chunks_iter(Axis(0), BLOCK)
                    .zip(out.axis_chunks_iter_mut(Axis(0), BLOCK))
                {
                    ob.assign(&self.mlp.forward(s.apply(xb).view()));
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::head::Rng;
    use ndarray::array;

    fn refs() -> Vec<BackboneRef> {
        vec![
            BackboneRef {
                name: "a".into(),
                model_sha256: "11".into(),
                preprocess: "{}".into(),
                n_features: 3,
                decode: String::new(),
                pooling: String::new(),
                precision: String::new(),
                inference_precision: String::new(),
            },
            BackboneRef {
                name: "b".into(),
                model_sha256: "22".into(),
                preprocess: "{}".into(),
                n_features: 2,
                decode: String::new(),
                pooling: String::new(),
                precision: String::new(),
                inference_precision: String::new(),
            },
        ]
    }

    #[test]
    fn save_load_roundtrip_predicts_the_same() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("head.safetensors");
        let mut cfg = MlpConfig::tutorial(5, 3);
        cfg.hidden = vec![4];
        let mlp = Mlp::new(cfg, &mut Rng::new(1));
        let std = Standardize {
            mean: array![1.0, 0.0, 0.0, 2.0, 0.0],
            scale: array![2.0, 1.0, 1.0, 1.0, 4.0],
        };
        let b = Bundle::new(
            HeadKind::Mlp,
            mlp,
            Some(std),
            vec!["x".into(), "y".into(), "z".into()],
            refs(),
            serde_json::json!({"epochs": 3}),
            serde_json::json!({"val_accuracy": 0.5}),
        );
        b.save(&p).unwrap();
        let c = Bundle::load(&p).unwrap();
        assert_eq!(c.meta, b.meta);
        assert_eq!(c.mlp, b.mlp);
        let x = array![[1.0f32, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]];
        assert_eq!(c.predict_proba(x.view()), b.predict_proba(x.view()));
        let p0 = b.predict_proba(x.view());
        assert!((p0.row(0).sum() - 1.0).abs() < 1e-6);
        // Not a bundle:
        std::fs::write(t.path().join("x"), b"nope").unwrap();
        let e = Bundle::load(&t.path().join("x")).unwrap_err().to_string();
        assert!(e.contains("not a safetensors file"), "{e}");
    }

    #[test]
    fn temperature_divides_the_logits_and_survives_a_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("head.safetensors");
        let mlp = Mlp::new(MlpConfig::linear(5, 3), &mut Rng::new(4));
        let mut b = Bundle::new(
            HeadKind::Logistic,
            mlp,
            None,
            vec!["x".into(), "y".into(), "z".into()],
            refs(),
            serde_json::json!({}),
            serde_json::json!({}),
        );
        let x = array![[1.0f32, -2.0, 3.0, 0.5, 5.0]];
        let plain = b.predict_proba(x.view());
        b.meta.temperature = 2.5;
        b.save(&p).unwrap();
        let c = Bundle::load(&p).unwrap();
        assert_eq!(c.meta.temperature, 2.5);
        let expected = crate::train::head::softmax_rows((b.logits(x.view()) / 2.5).view());
        assert_eq!(c.predict_proba(x.view()), expected);
        assert!(expected[[0, 0]] != plain[[0, 0]]);
        // A version-1 document has no temperature: it reads as 1.
        let mut v: serde_json::Value = serde_json::to_value(&b.meta).unwrap();
        v.as_object_mut().unwrap().remove("temperature");
        let m: BundleMeta = serde_json::from_value(v).unwrap();
        assert_eq!(m.temperature, 1.0);
        // Nonsense temperatures are refused.
        b.meta.temperature = 0.0;
        assert!(b
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature 0"));
    }

    #[test]
    fn backbone_checks_say_what_differs() {
        let a = refs();
        assert!(check_backbones(&a, &a, "features").is_ok());
        let mut b = a.clone();
        b.swap(0, 1);
        let e = check_backbones(&a, &b, "features").unwrap_err().to_string();
        assert!(e.contains("training order (a + b)"), "{e}");
        let mut c = a.clone();
        c[1].model_sha256 = "33".into();
        assert!(check_backbones(&a, &c, "features")
            .unwrap_err()
            .to_string()
            .contains("sha256 33"));
        let e = check_backbones(&a, &a[..1], "features")
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 backbone(s) (a), expected 2 (a + b)"), "{e}");
    }

    #[test]
    fn features_of_another_precision_get_a_note_naming_both() {
        let a = refs();
        assert_eq!(
            check_backbones(&a, &a, "features").unwrap(),
            Vec::<String>::new()
        );
        // OpenVINO's f32 is ONNX Runtime's precision: no note.
        let mut f32 = a.clone();
        f32[0].inference_precision = "f32".into();
        assert!(check_backbones(&a, &f32, "features").unwrap().is_empty());
        let mut bf16 = a.clone();
        bf16[1].inference_precision = "bf16".into();
        let notes = check_backbones(&a, &bf16, "features").unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("backbone 2 of 2")
                && notes[0].contains("features of b computed in bf16")
                && notes[0].contains("trained on features computed in f32"),
            "{notes:?}"
        );
        // And the other way round.
        let notes = check_backbones(&bf16, &a, "features").unwrap();
        assert!(
            notes[0]
                .contains("computed in f32, but the head was trained on features computed in bf16"),
            "{notes:?}"
        );
        // An int8 model's features are still refused (another model, not another precision).
        let mut int8 = a.clone();
        int8[0].precision = "int8".into();
        assert!(check_backbones(&a, &int8, "features").is_err());
    }
}
