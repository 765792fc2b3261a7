//! Backbone manifests (`onnx/<name>.toml`): what a model file is, what it expects
//! and what it produces. See docs/formats.md, "The backbone manifest", for the schema.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::images::preprocess::Recipe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    Pretrained,
    Random,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub(crate) name: String,
    /// NCHW; -1 marks the dynamic batch axis.
    pub shape: [i64; 4],
}

/// How the `features` output becomes one vector per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Pool {
    /// The output is already `[N, D]` (or `[N, D, 1, 1]`).
    #[default]
    #[serde(rename = "none")]
    None,
    /// `[N, C, H, W]` → the mean over H × W.
    #[serde(rename = "avg")]
    Avg,
    /// `[N, C, H, W]` → the maximum over H × W.
    #[serde(rename = "max")]
    Max,
    /// `[N, T, D]` tokens → token 0 (the class token).
    #[serde(rename = "cls")]
    Cls,
    /// `[N, T, D]` → the mean of the patch tokens, after the `prefix_tokens`
    /// leading ones (the class token and any register tokens).
    #[serde(rename = "mean")]
    Mean,
    /// `[N, T, D]` → `cls` and `mean` concatenated (2·D; DINOv2's linear probe).
    #[serde(rename = "cls+mean")]
    ClsMean,
}

impl Pool {
    fn is_none(&self) -> bool {
        *self == Pool::None
    }

    /// The manifest's (and `--pool`'s) name of the mode.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Pool::None => "none",
            Pool::Avg => "avg",
            Pool::Max => "max",
            Pool::Cls => "cls",
            Pool::Mean => "mean",
            Pool::ClsMean => "cls+mean",
        }
    }
}

impl OutputSpec {
    /// What xfer does to the output, as recorded in feature files and
    /// bundles: empty for built-in models (pooled inside the graph), else
    /// e.g. `cls+mean, prefix_tokens 5, l2`. Features pooled one way are not
    /// those of another.
    pub fn pooling(&self) -> String {
        let mut parts = Vec::new();
        if self.pool != Pool::None {
            parts.push(self.pool.name().to_owned());
        }
        if matches!(self.pool, Pool::Mean | Pool::ClsMean) {
            parts.push(format!("prefix_tokens {}", self.prefix_tokens));
        }
        if self.l2 {
            parts.push("l2".into());
        }
        parts.join(", ")
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_one(k: &usize) -> bool {
    *k == 1
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub(crate) features: String,
    /// The width of one image's feature vector after pooling.
    pub feature_dim: usize,
    /// What xfer does to the `features` output (absent = `none`).
    #[serde(default, skip_serializing_if = "Pool::is_none")]
    pub(crate) pool: Pool,
    /// Leading tokens that are not patches (`mean`, `cls+mean`): 1 for a
    /// class token, 1 + R with R register tokens.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub(crate) prefix_tokens: usize,
    /// Divide each pooled vector by its L2 norm (CLIP's image embeddings).
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) l2: bool,
    #[serde(default)]
    pub(crate) logits: Option<String>,
    #[serde(default)]
    pub(crate) n_logits: Option<usize>,
}

/// How a quantised model was made from its source, and how closely it agrees
/// with it (`[quantization]` of a manifest written by `xfer quantize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// `int8`.
    pub precision: String,
    /// ONNX Runtime's `QDQ` format, per-channel int8 weights, uint8 activations.
    pub format: String,
    pub weights: String,
    pub activations: String,
    pub per_channel: bool,
    /// ONNX Runtime's `reduce_range`: 7-bit weights, for CPUs without VNNI.
    pub reduce_range: bool,
    /// The calibration method: `minmax`, `entropy` or `percentile`.
    pub method: String,
    /// The fp32 model it was made from (its manifest name and model sha256).
    pub source: String,
    pub source_sha256: String,
    /// How many images calibrated it, and the SHA-256 over their sorted
    /// relative paths (each followed by a NUL).
    pub calibration_images: usize,
    pub calibration_sha256: String,
    #[serde(default)]
    pub(crate) calibration_root: String,
    /// The ONNX Runtime (Python) version whose quantiser made it.
    pub ort_version: String,
    /// The int8 instructions of the CPU that quantised it and measured the
    /// agreement (`xfer info` shows this machine's).
    #[serde(default)]
    pub(crate) cpu_int8: String,
    #[serde(default)]
    pub(crate) xfer_version: String,
    /// Agreement with the source model on held-back calibration images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
}

/// Agreement of a quantised model with its source on the same input tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Held-back images (not used for calibration) it was measured on.
    pub images: usize,
    /// Cosine similarity of the pooled features, per image: mean, minimum and
    /// 5th percentile (nearest rank).
    pub cosine_mean: f64,
    pub cosine_min: f64,
    pub cosine_p5: f64,
    /// Fraction of images whose top-1 class is the same, when the model has logits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
}

/// What a model name may be, in words (for errors).
pub(crate) const NAME_RULE: &str = "one file name of ASCII letters, digits, `_`, `-` and `.`, not starting with `.` or `-`, at most 100 characters";

/// A model name that breaks [`NAME_RULE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model name {shown:?} is not allowed: a name is {NAME_RULE}")]
pub struct BadName {
    /// The name (its first 120 characters).
    pub(crate) shown: String,
}

/// Checks a model name: it names the files `<name>.toml` (and often
/// `<name>.onnx`) in the zoo and in packages, so it must be one path component
/// of safe characters ([`NAME_RULE`]).
pub fn check_name(name: &str) -> std::result::Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(BadName {
            shown: name.chars().take(120).collect(),
        })
    }
}

/// The most features per image a model may give: 64 times the widest
/// backbones' (ResNet-152's 2048, ViT-G's 1664 × 2 for cls+mean).
pub(crate) const MAX_FEATURE_DIM: usize = 1 << 17;

/// One backbone, as committed in `onnx/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub(crate) file: String,
    pub sha256: String,
    pub weights: Weights,
    #[serde(default)]
    pub weights_source: String,
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub(crate) generator: String,
    /// The command a user runs to make the ONNX file (e.g. `tools/setup.sh --lite 1`),
    /// when it is not the generator itself.
    #[serde(default)]
    pub(crate) setup: String,
    #[serde(default)]
    pub(crate) description: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub preprocess: Recipe,
    /// Present when the model is a quantised copy of another (`xfer quantize`);
    /// absent for fp32 models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Folder the manifest was read from; `file` is relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates a manifest's text; `path` is where it was read from
    /// (errors name it, and `file` is relative to its folder).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let mut m: Manifest = toml::from_str(text).map_err(|e| Error::Manifest {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        m.dir = path.parent().unwrap_or(Path::new(".")).to_owned();
        m.validate().map_err(|reason| Error::Manifest {
            path: path.to_owned(),
            reason,
        })?;
        Ok(m)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        check_name(&self.name)
            .map_err(|e| format!("{e} (it names files in the zoo and in packages); fix `name`"))?;
        let [_, c, h, w] = self.input.shape;
        if c != 3 || h != w || h <= 0 {
            return Err(format!(
                "input shape {:?} must be [-1, 3, S, S]",
                self.input.shape
            ));
        }
        // Compared as i64: `h as u32` would let 2^32 + crop pass.
        if h != i64::from(self.preprocess.crop) {
            return Err(format!(
                "input size {h} differs from the preprocessing crop {}",
                self.preprocess.crop
            ));
        }
        if self.output.feature_dim == 0 || self.output.feature_dim > MAX_FEATURE_DIM {
            return Err(format!(
                "feature_dim {} must be 1..={MAX_FEATURE_DIM} (xfer's limit of features per image)",
                self.output.feature_dim
            ));
        }
        // (Non-finite means are refused by the recipe: they would become
        // `null` in the JSON of feature files and bundles.)
        self.preprocess.validate().map_err(|e| e.to_string())
    }

    /// `int8` for quantised models, else `fp32`.
    pub fn precision(&self) -> &str {
        self.quantization
            .as_ref()
            .map_or("fp32", |q| q.precision.as_str())
    }

    pub fn onnx_path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// The model file and the manifest `<dir>/<name>.toml`, as inputs a
    /// command's outputs must not overwrite ([`crate::util::clobber`]).
    pub fn inputs(&self) -> Vec<crate::util::clobber::Input> {
        use crate::util::clobber::Input;
        vec![
            Input::new(format!("model {}'s ONNX file", self.name), self.onnx_path()),
            Input::new(
                format!("model {}'s manifest", self.name),
                self.dir.join(format!("{}.toml", self.name)),
            ),
        ]
    }

    pub fn generator_hint(&self) -> String {
        if !self.setup.is_empty() {
            self.setup.clone()
        } else if self.generator.is_empty() {
            "the tool in tools/ that made it".into()
        } else {
            self.generator.clone()
        }
    }

    /// Checks that the ONNX file exists and has the manifest's sha256 (with
    /// its external data files, [`crate::models::onnx_data::model_sha256`]).
    pub fn verify_file(&self) -> Result<()> {
        self.check_present()?;
        self.check_sha256(&crate::models::onnx_data::model_sha256(&self.onnx_path())?)
    }

    /// Checks that the ONNX file exists.
    pub fn check_present(&self) -> Result<()> {
        let path = self.onnx_path();
        if !path.exists() {
            return Err(Error::ModelFileMissing {
                path,
                generator: self.generator_hint(),
            });
        }
        Ok(())
    }

    /// Compares the ONNX file's sha256, computed by the caller, with the manifest's.
    pub(crate) fn check_sha256(&self, actual: &str) -> Result<()> {
        if actual != self.sha256 {
            return Err(Error::ModelChecksum {
                path: self.onnx_path(),
                expected: self.sha256.clone(),
                actual: actual.to_owned(),
                generator: self.generator_hint(),
            });
        }
        Ok(())
    }
}

/// SHA-256 of a file's bytes, hex ([`crate::util::digest::sha256_file`]).
pub fn sha256_file(path: &Path) -> Result<String> {
    crate::util::digest::sha256_file(path).map_err(|e| Error::io(path, e))
}

/// The folder of manifests.
pub struct Zoo {
    pub dir: PathBuf,
}

impl Zoo {
    /// `explicit`, else `$XFER_ZOO`, else `./onnx`, else `onnx/` of the source
    /// checkout this binary was built in and still lives in (`target/…/xfer`),
    /// else `<xfer_home>/zoo` (an installed xfer: `pip install`, `cargo install`,
    /// a copied binary), where `xfer models fetch` and `models add` put models.
    pub fn locate(explicit: Option<&Path>) -> Zoo {
        if let Some(p) = explicit {
            return Zoo { dir: p.to_owned() };
        }
        if let Some(p) = std::env::var_os("XFER_ZOO").filter(|p| !p.is_empty()) {
            return Zoo { dir: p.into() };
        }
        let local = PathBuf::from("onnx");
        if local.is_dir() {
            return Zoo { dir: local };
        }
        if let Some(dir) = crate::models::scripts::built_checkout()
            .map(|b| b.join("onnx"))
            .filter(|d| d.is_dir())
        {
            return Zoo { dir };
        }
        match crate::models::runtime::xfer_home() {
            Some(home) => Zoo {
                dir: home.join("zoo"),
            },
            None => Zoo { dir: local },
        }
    }

    pub fn manifests(&self) -> Result<Vec<Manifest>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Manifest::from_file(p)).collect()
    }

    /// A model by name, or a path to a manifest file (`*.toml`).
    pub fn find(&self, name_or_path: &str) -> Result<Manifest> {
        if name_or_path.ends_with(".toml") {
            return Manifest::from_file(Path::new(name_or_path));
        }
        check_name(name_or_path).map_err(|e| {
            Error::Config(format!(
                "{e}; pass a model of the zoo (`xfer models` lists them) or a manifest file NAME.toml"
            ))
        })?;
        let path = self.dir.join(format!("{name_or_path}.toml"));
        if path.exists() {
            return Manifest::from_file(&path);
        }
        let known = self
            .manifests()
            .map(|ms| {
                ms.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|_| format!("none (no manifests in {})", self.dir.display()));
        Err(Error::UnknownModel {
            name: name_or_path.to_owned(),
            known,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_is_refused_not_ignored() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/efficientnet_lite0.toml"),
        )
        .unwrap();
        let path = Path::new("onnx/x.toml");
        assert!(Manifest::from_toml_str(&text, path).is_ok());
        let bad = text.replace(
            "feature_dim = 1280",
            "feature_dim = 1280\npooling = \"cls\"",
        );
        let e = Manifest::from_toml_str(&bad, path).unwrap_err().to_string();
        assert!(e.contains("unknown field `pooling`"), "{e}");
    }
}
