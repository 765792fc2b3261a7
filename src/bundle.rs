//! The trained head with everything needed to use it again (docs/ARCHITECTURE.md, "Bundle"):
//! one safetensors file holding the weights (f32, PyTorch's `[out, in]` layout)
//! and, in its string metadata under the key `xfer`, a JSON document with the
//! head's architecture, the class names, the backbones whose features it expects
//! (name, sha256, preprocessing, dimension, in concatenation order), whether the
//! features are standardised, the training configuration and the final metrics.
//!
//! Tensors: `layers.{l}.weight` [out, in], `layers.{l}.bias` [out], and with
//! standardisation `standardize.mean`, `standardize.scale` [n_features].
//! Python reads it with `safetensors.numpy.load_file` and
//! `json.loads(safe_open(path, "np").metadata()["xfer"])`.
//!
//! This module needs neither HDF5 nor linfa: the slim predictor uses it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2, Axis};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::head::mlp::{Linear, Mlp, MlpConfig};
use crate::head::{softmax_rows_inplace, HeadKind, Standardize};

/// Errors reading or writing a bundle. (Kept here rather than in `crate::error`
/// so that this module stays independent of the HDF5- and ORT-bound parts.)
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = BundleError> = std::result::Result<T, E>;

fn io(path: &Path, source: std::io::Error) -> BundleError {
    BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

pub const FORMAT: &str = "xfer-head";
pub const FORMAT_VERSION: u32 = 1;
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
}

impl BackboneRef {
    pub fn known(&self) -> bool {
        !self.model_sha256.is_empty()
    }
}

/// Checks that features come from the backbones a head expects, in the same
/// order; the error says what differs.
pub fn check_backbones(
    expected: &[BackboneRef],
    got: &[BackboneRef],
    what: &str,
) -> std::result::Result<(), String> {
    let names = |v: &[BackboneRef]| {
        v.iter()
            .map(|b| b.name.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    if expected.len() != got.len() {
        return Err(format!(
            "{what} come from {} backbone(s) ({}), expected {} ({}); pass one feature file per backbone, in the order used for training",
            got.len(),
            names(got),
            expected.len(),
            names(expected)
        ));
    }
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        let at = format!("{what}, backbone {} of {}", i + 1, expected.len());
        if e.n_features != g.n_features {
            return Err(format!(
                "{at}: {} features from {}, expected {} from {}; pass the files in the training order ({})",
                g.n_features,
                g.name,
                e.n_features,
                e.name,
                names(expected)
            ));
        }
        if e.known() && g.known() {
            if e.name != g.name {
                return Err(format!(
                    "{at}: features of {}, expected {}; pass the files in the training order ({})",
                    g.name,
                    e.name,
                    names(expected)
                ));
            }
            if e.model_sha256 != g.model_sha256 {
                return Err(format!(
                    "{at}: {} was extracted with model sha256 {}, but training used {}; the backbone changed: extract again with the model used for training",
                    g.name, g.model_sha256, e.model_sha256
                ));
            }
            if e.preprocess != g.preprocess {
                return Err(format!(
                    "{at}: {} was extracted with preprocessing {}, but training used {}; extract again with the same --preset",
                    g.name, g.preprocess, e.preprocess
                ));
            }
        }
    }
    Ok(())
}

/// The JSON metadata of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleMeta {
    pub format: String,
    pub format_version: u32,
    pub kind: HeadKind,
    pub architecture: MlpConfig,
    pub class_names: Vec<String>,
    pub backbones: Vec<BackboneRef>,
    pub standardized: bool,
    /// The training configuration (free-form JSON written by `xfer train`).
    pub training: serde_json::Value,
    /// Final metrics (free-form JSON).
    pub metrics: serde_json::Value,
    pub xfer_version: String,
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
                training,
                metrics,
                xfer_version: crate::VERSION.into(),
            },
            mlp,
            standardize,
        }
    }

    /// Writes the bundle (atomically: a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
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
        let buf = safetensors::serialize(views, Some(meta)).map_err(|e| BundleError::Invalid {
            path: path.to_owned(),
            reason: format!("cannot be serialised: {e}"),
        })?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, buf).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Bundle> {
        let bad = |reason: String| BundleError::Invalid {
            path: path.to_owned(),
            reason,
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
            .map_err(|e| bad(format!("has unreadable xfer metadata ({e})")))?;
        if meta.format != FORMAT || meta.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "is format {} version {}; this xfer reads {FORMAT} version ≤ {FORMAT_VERSION}: upgrade xfer",
                meta.format, meta.format_version
            )));
        }
        let st = SafeTensors::deserialize(&buf).map_err(|e| bad(e.to_string()))?;
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("has no tensor {name}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(bad(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(floats(&t))
        };
        let mut layers = Vec::new();
        for (l, (i, o)) in meta.architecture.layer_dims().into_iter().enumerate() {
            let w = get(&format!("layers.{l}.weight"), &[o, i])?;
            let b = get(&format!("layers.{l}.bias"), &[o])?;
            layers.push(Linear {
                weight: Array2::from_shape_vec((o, i), w).expect("checked shape"),
                bias: Array1::from_vec(b),
            });
        }
        let d = meta.architecture.n_features;
        let standardize = if meta.standardized {
            Some(Standardize {
                mean: Array1::from_vec(get("standardize.mean", &[d])?),
                scale: Array1::from_vec(get("standardize.scale", &[d])?),
            })
        } else {
            None
        };
        if meta.class_names.len() != meta.architecture.n_classes {
            return Err(bad(format!(
                "names {} classes but the head has {}",
                meta.class_names.len(),
                meta.architecture.n_classes
            )));
        }
        let mlp = Mlp::from_layers(meta.architecture.clone(), layers).map_err(bad)?;
        Ok(Bundle {
            meta,
            mlp,
            standardize,
        })
    }

    /// Class probabilities for raw (unstandardised) features.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] → [n_samples, n_classes]
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut logits = self.logits(x);
        softmax_rows_inplace(logits.view_mut());
        logits
    }

    /// Logits for raw (unstandardised) features, in blocks of rows.
    ///
    /// # Shapes
    /// `x`: [n_samples, n_features] → [n_samples, n_classes]
    pub fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
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
    use crate::head::Rng;
    use ndarray::array;

    fn refs() -> Vec<BackboneRef> {
        vec![
            BackboneRef {
                name: "a".into(),
                model_sha256: "11".into(),
                preprocess: "{}".into(),
                n_features: 3,
            },
            BackboneRef {
                name: "b".into(),
                model_sha256: "22".into(),
                preprocess: "{}".into(),
                n_features: 2,
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
    fn backbone_checks_say_what_differs() {
        let a = refs();
        assert!(check_backbones(&a, &a, "features").is_ok());
        let mut b = a.clone();
        b.swap(0, 1);
        let e = check_backbones(&a, &b, "features").unwrap_err();
        assert!(e.contains("training order (a + b)"), "{e}");
        let mut c = a.clone();
        c[1].model_sha256 = "33".into();
        assert!(check_backbones(&a, &c, "features")
            .unwrap_err()
            .contains("sha256 33"));
        let e = check_backbones(&a, &a[..1], "features").unwrap_err();
        assert!(e.contains("1 backbone(s) (a), expected 2 (a + b)"), "{e}");
    }
}
