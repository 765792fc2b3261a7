//! Resolving a bundle's backbones: each one found in the zoo and checked
//! against what the bundle recorded (model sha256, feature width,
//! preprocessing, image decoding) before any model is loaded.

use std::path::Path;

use crate::error::{Error, Next, Refusal, Result};
use crate::images::preprocess::{Preset, Recipe};
use crate::models::zoo::{Manifest, Zoo};
use crate::ship::bundle::{BackboneRef, Bundle};

/// A backbone of a bundle, found in the zoo and checked against the bundle.
#[derive(Debug, Clone)]
pub struct ResolvedBackbone {
    pub manifest: Manifest,
    /// The preprocessing the head's training features were extracted with.
    pub recipe: Recipe,
    /// Which of the manifest's presets that recipe is.
    pub preset: Preset,
}

impl ResolvedBackbone {
    /// "efficientnet_lite0 (native preprocessing)".
    pub fn describe(&self) -> String {
        let preset = match self.preset {
            Preset::Native => "native",
            Preset::Tutorial => "tutorial",
        };
        format!("{} ({preset} preprocessing)", self.manifest.name)
    }
}

/// The precision a bundle recorded for a backbone (`fp32` when none).
fn precision(b: &BackboneRef) -> &str {
    if b.precision.is_empty() {
        "fp32"
    } else {
        &b.precision
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(16)]
}

fn recipe_json(r: &Recipe) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| format!("{r:?}"))
}

/// Finds every backbone of `bundle` in `zoo`, in the bundle's order, and checks
/// it: same model sha256 (a manifest of another name with that sha256 is
/// accepted), same feature dimension, and a recorded preprocessing recipe that
/// is one of the manifest's presets. Reads manifests only: no ONNX Runtime, no
/// model file (the model file is checked against its manifest when it loads).
pub fn resolve_backbones(
    bundle: &Bundle,
    bundle_path: &Path,
    zoo: &Zoo,
) -> Result<Vec<ResolvedBackbone>> {
    let n = bundle.meta.backbones.len();
    if n == 0 {
        return Err(Error::BundleMismatch {
            bundle: bundle_path.to_owned(),
            reason: "names no backbone; train the head with `xfer train` on features from `xfer extract`".into(),
            next: None,
        });
    }
    bundle
        .meta
        .backbones
        .iter()
        .enumerate()
        .map(|(i, b)| {
            resolve_one(b, zoo).map_err(|r| Error::BundleMismatch {
                bundle: bundle_path.to_owned(),
                reason: if n > 1 {
                    format!("backbone {} of {n}: {}", i + 1, r.reason)
                } else {
                    r.reason
                },
                next: r.next,
            })
        })
        .collect()
}

fn resolve_one(b: &BackboneRef, zoo: &Zoo) -> std::result::Result<ResolvedBackbone, Refusal> {
    if !b.known() || b.preprocess.is_empty() {
        return Err(Refusal::from(format!(
            "its head was trained on {} features without provenance (tutorial-layout files: no model sha256, no preprocessing recorded), so xfer cannot make the same features from images; extract the features with `xfer extract` and train the head again",
            b.name
        )));
    }
    let zoo_file = zoo.dir.join(format!("{}.toml", b.name));
    // A name that is not a model name (`../x`) is never used as a path.
    let by_name = if crate::models::zoo::check_name(&b.name).is_ok() && zoo_file.exists() {
        Some(Manifest::from_file(&zoo_file).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let manifest = match by_name {
        Some(m) if m.sha256 == b.model_sha256 => m,
        other => {
            // Another manifest with the same model (renamed)?
            let same_model = zoo
                .manifests()
                .ok()
                .and_then(|ms| ms.into_iter().find(|m| m.sha256 == b.model_sha256));
            match (same_model, other) {
                (Some(m), _) => m,
                (None, Some(m)) => {
                    return Err(Refusal::new(format!(
                        "its head was trained on features of {} with model sha256 {}…, but the zoo's {} ({}) is {}model sha256 {}…: a different model",
                        b.describe(),
                        short(&b.model_sha256),
                        m.name,
                        zoo_file.display(),
                        if m.precision() == precision(b) {
                            String::new()
                        } else {
                            format!("the {} ", m.precision())
                        },
                        short(&m.sha256)
                    ), Next::TrainingZooOrRetrain))
                }
                (None, None) => {
                    return Err(Refusal::new(
                        format!(
                            "its head needs backbone {} (model sha256 {}…), which is not in the zoo {}",
                            b.describe(),
                            short(&b.model_sha256),
                            zoo.dir.display(),
                        ),
                        Next::ZooWithBackbone {
                            name: b.name.clone(),
                            precision: b.precision.clone(),
                        },
                    ))
                }
            }
        }
    };
    if manifest.output.feature_dim != b.n_features {
        return Err(Refusal::new(
            format!(
                "its head expects {} features from {}, but the manifest of {} gives {}",
                b.n_features, b.name, manifest.name, manifest.output.feature_dim
            ),
            Next::TrainingZooOrRetrain,
        ));
    }
    if manifest.output.pooling() != b.pooling {
        let show = |p: &str| {
            if p.is_empty() {
                "none (in the graph)".to_owned()
            } else {
                p.to_owned()
            }
        };
        return Err(Refusal::new(
            format!(
                "its head was trained on {} features pooled as {}, but the manifest of {} now pools as {}",
                b.name,
                show(&b.pooling),
                manifest.name,
                show(&manifest.output.pooling())
            ),
            Next::TrainingZooOrRetrain,
        ));
    }
    let recipe: Recipe = serde_json::from_str(&b.preprocess).map_err(|e| {
        format!(
            "its preprocessing record for {} is unreadable ({e}): {}; train the head again on features from `xfer extract`",
            b.name, b.preprocess
        )
    })?;
    let presets = [Preset::Native, Preset::Tutorial];
    let preset = presets
        .into_iter()
        .find(|&p| manifest.preprocess.with_preset(p) == recipe);
    let Some(preset) = preset else {
        return Err(Refusal::new(
            format!(
                "its head was trained on {} features preprocessed as {}, but the manifest of {} now gives {} (native) and {} (the tutorial preset): the backbone's preprocessing changed",
                b.name,
                recipe_json(&recipe),
                manifest.name,
                recipe_json(&manifest.preprocess),
                recipe_json(&manifest.preprocess.with_preset(Preset::Tutorial))
            ),
            Next::TrainingZooOrRetrain,
        ));
    };
    Ok(ResolvedBackbone {
        manifest,
        recipe,
        preset,
    })
}

/// Checks that images will be decoded as they were for the head's training
/// features: the JPEG decode mode (reduced-size IDCT or full) changes pixels,
/// so features made the other way are not the ones the head learnt from.
/// `mode` is [`DecodeOptions::mode`](crate::images::preprocess::DecodeOptions::mode)
/// of this run; backbones that recorded no mode (older files) are not checked.
pub(crate) fn check_decode(bundle: &Bundle, bundle_path: &Path, mode: &str) -> Result<()> {
    for b in &bundle.meta.backbones {
        if !b.decode.is_empty() && b.decode != mode {
            return Err(Error::BundleMismatch {
                bundle: bundle_path.to_owned(),
                reason: format!(
                    "its head was trained on {} features of images decoded as {}, but this run decodes as {mode}",
                    b.name, b.decode
                ),
                next: Some(Next::DecodeAsTrained {
                    full: b.decode == "jpeg_full",
                    extract: false,
                }),
            });
        }
    }
    Ok(())
}
