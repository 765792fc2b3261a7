//! `xfer models add`: a user's ONNX file becomes a backbone of the zoo. The
//! graph is inspected (one NCHW input with a dynamic batch axis, the chosen
//! output, probed with a batch of two), the preprocessing comes from the
//! model's own config ([`model_config`]) with explicit values overriding it,
//! the pooling from the output's shape, and a manifest `NAME.toml` is written
//! into the zoo. Every decision and assumption is returned for the front end
//! to print.

use std::path::{Path, PathBuf};

use crate::error::{Error, Next, Output, Refusal, Result, Setting};
use crate::images::preprocess::{
    ChannelOrder, CropOffset, Interpolation, Recipe, ResizeMode, MAX_SIDE,
};
use crate::models::backbone::Graph;
use crate::models::config::{self as model_config, ConfigRecipe, ModelConfig};
use crate::models::pool;
use crate::models::runtime::Runtime;
use crate::models::zoo::{InputSpec, Manifest, OutputSpec, Pool, Weights, Zoo};

/// Preprocessing given explicitly; each value overrides the config's.
#[derive(Debug, Clone, Default)]
pub struct RecipeFlags {
    pub resize: Option<u32>,
    pub crop: Option<u32>,
    /// timm's crop fraction: resize = floor(crop / crop_pct).
    pub crop_pct: Option<f64>,
    pub square: bool,
    pub interpolation: Option<Interpolation>,
    pub pixel_scale: Option<f32>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub channel_order: Option<ChannelOrder>,
}

/// What `xfer models add` was asked.
#[derive(Debug, Clone)]
pub struct AddRequest {
    pub onnx: PathBuf,
    pub name: String,
    pub config: Option<PathBuf>,
    pub output: Option<String>,
    pub pool: Option<Pool>,
    pub prefix_tokens: Option<usize>,
    pub l2: bool,
    pub recipe: RecipeFlags,
    /// The command as typed, recorded as the manifest's `generator`.
    pub command_line: String,
    /// Replace an existing manifest of that name.
    pub force: bool,
    /// What the weights are (`--weights`; default pretrained).
    pub weights: Weights,
}

/// The manifest written, and what was decided on the way.
#[derive(Debug)]
pub struct Added {
    pub manifest: Manifest,
    pub path: PathBuf,
    /// One line per decision ("pooling: cls+mean (…)").
    pub decisions: Vec<String>,
    /// Keys of the config not applied, values assumed.
    pub warnings: Vec<String>,
}

const REEXPORT: &str = "re-export it with a dynamic batch axis: torch.onnx.export(..., dynamic_axes={INPUT: {0: 'batch'}, OUTPUT: {0: 'batch'}}), or tools/export_timm.py / tools/export_hf.py";

pub fn add(runtime: &Runtime, zoo: &Zoo, req: &AddRequest) -> Result<Added> {
    let fail = |refusal: Refusal| failure(req, refusal);
    if let Err(e) = crate::models::zoo::check_name(&req.name) {
        return Err(fail(Refusal::new(
            format!(
                "the name `{}`: {e} (it names the file NAME.toml in the zoo)",
                req.name
            ),
            Next::OtherModelName,
        )));
    }
    if let Some(p) = req.recipe.crop_pct.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        return Err(Error::Setting {
            setting: Setting::CropPct,
            problem: format!("must be in (0, 1], got {p}"),
        });
    }
    let onnx = std::fs::canonicalize(&req.onnx).map_err(|e| Error::io(&req.onnx, e))?;
    let path = manifest_path(zoo, req, &onnx)?;
    let mut decisions = Vec::new();
    let mut warnings = Vec::new();

    let config = read_config(req, &mut decisions, &mut warnings)?;
    let from_config = config
        .as_ref()
        .map(|c| c.recipe.clone())
        .unwrap_or_default();

    let mut graph = Graph::open(runtime, &onnx)?;
    let input = check_input(&graph).map_err(fail)?;

    let recipe = resolve_recipe(
        &req.recipe,
        &from_config,
        input.fixed_side.map(|s| s.0 as u32),
        &mut decisions,
    )
    .map_err(fail)?;
    check_recipe_fits(&recipe, input.fixed_side, from_config.patch_size).map_err(fail)?;

    let (output, shape) = probe_output(&mut graph, req, &input.name, recipe.crop).map_err(fail)?;
    decisions.push(format!(
        "input `{}` {:?}, output `{output}` {:?} for a batch of N",
        input.name,
        input.shape,
        shape_with_n(&shape)
    ));
    let spec = output_spec(
        req,
        output,
        &shape,
        from_config.global_pool.as_deref(),
        &mut decisions,
    )
    .map_err(fail)?;

    let parts = Parts {
        config: config.as_ref(),
        input: input.name,
        recipe,
        spec,
    };
    let manifest = manifest(zoo, req, &onnx, parts)?;
    let manifest = write_manifest(req, &manifest, &path)?;
    Ok(Added {
        manifest,
        path,
        decisions,
        warnings,
    })
}

/// The error `xfer models add` gives for `req`'s ONNX file.
fn failure(req: &AddRequest, refusal: Refusal) -> Error {
    Error::AddModel {
        path: req.onnx.clone(),
        reason: refusal.reason,
        next: refusal.next,
    }
}

/// The manifest's path in the zoo (made if missing), refused when it would
/// overwrite an input or, unless `req.force`, another manifest.
fn manifest_path(zoo: &Zoo, req: &AddRequest, onnx: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(&zoo.dir).map_err(|e| Error::io(&zoo.dir, e))?;
    let path = zoo.dir.join(format!("{}.toml", req.name));
    let mut inputs = vec![crate::util::clobber::Input::new("the ONNX file", onnx)];
    if let Some(c) = &req.config {
        inputs.push(crate::util::clobber::Input::new("the model's config", c));
    }
    crate::util::clobber::refuse_inputs(Output::Manifest, &path, &inputs)?;
    if path.exists() && !req.force {
        return Err(failure(
            req,
            Refusal::new(
                format!("the zoo already has {}", path.display()),
                Next::OtherModelNameOrReplace,
            ),
        ));
    }
    Ok(path)
}

/// The model's config, if one is given, with its decision and warnings noted.
fn read_config(
    req: &AddRequest,
    decisions: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<ModelConfig>> {
    let Some(p) = &req.config else {
        return Ok(None);
    };
    let c = model_config::read(p)?;
    decisions.push(format!(
        "preprocessing from {} ({})",
        p.display(),
        c.kind.describe()
    ));
    warnings.extend(c.warnings.iter().map(|w| format!("{}: {w}", p.display())));
    Ok(Some(c))
}

/// The graph's one image input.
struct GraphInput {
    name: String,
    shape: Vec<i64>,
    /// (height, width) when the graph fixes them.
    fixed_side: Option<(i64, i64)>,
}

/// The graph's input, refused unless it is one NCHW RGB tensor with a dynamic
/// batch axis and, if fixed, a square side xfer can feed.
fn check_input(graph: &Graph) -> std::result::Result<GraphInput, Refusal> {
    let (input, in_shape) = match graph.inputs.as_slice() {
        [one] => one.clone(),
        many => {
            return Err(Refusal::from(format!(
                "xfer feeds one image tensor, the graph has {} inputs ({}); export the image encoder alone",
                many.len(),
                many.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    if in_shape.len() != 4 || !(in_shape[1] == 3 || in_shape[1] < 0) {
        return Err(format!(
            "input `{input}` has shape {in_shape:?}; xfer feeds NCHW RGB images [N, 3, S, S]"
        )
        .into());
    }
    if in_shape[0] > 0 {
        return Err(format!(
            "input `{input}` has a fixed batch size of {} (shape {in_shape:?}); {}",
            in_shape[0],
            REEXPORT.replace("INPUT", &format!("'{input}'"))
        )
        .into());
    }
    let fixed_side = (in_shape[2] > 0 && in_shape[3] > 0).then_some((in_shape[2], in_shape[3]));
    if let Some((h, w)) = fixed_side.filter(|&(h, w)| h.max(w) > i64::from(MAX_SIDE)) {
        return Err(format!(
            "input `{input}` is {h}×{w}; xfer takes images of at most {MAX_SIDE}×{MAX_SIDE}"
        )
        .into());
    }
    if let Some((h, w)) = fixed_side {
        if h != w {
            return Err(format!("input `{input}` is {h}×{w}; xfer feeds square images").into());
        }
    }
    Ok(GraphInput {
        name: input,
        shape: in_shape,
        fixed_side,
    })
}

/// Refuses a crop that is not the graph's fixed side or not a multiple of the patch size.
// `%` as before this was split out of `add` (`is_multiple_of` would not panic
// on a patch size of 0, which would change what a bad config does).
#[allow(clippy::manual_is_multiple_of)]
fn check_recipe_fits(
    recipe: &Recipe,
    fixed_side: Option<(i64, i64)>,
    patch_size: Option<u32>,
) -> std::result::Result<(), Refusal> {
    if let Some((side, _)) = fixed_side {
        if side != i64::from(recipe.crop) {
            return Err(Refusal::new(
                format!(
                    "the graph takes {side}×{side} images, but the preprocessing crops {}",
                    recipe.crop
                ),
                Next::CropOf { side },
            ));
        }
    }
    if let Some(p) = patch_size {
        if recipe.crop % p != 0 {
            return Err(Refusal::new(
                format!(
                    "the input side {} is not a multiple of the patch size {p}",
                    recipe.crop
                ),
                Next::CropMultipleOf { patch: p },
            ));
        }
    }
    Ok(())
}

/// The chosen output and its shape for a probe batch of two, refused unless
/// it has the batch axis and finite values.
fn probe_output(
    graph: &mut Graph,
    req: &AddRequest,
    input: &str,
    crop: u32,
) -> std::result::Result<(String, Vec<usize>), Refusal> {
    let output = match (&req.output, graph.outputs.as_slice()) {
        (Some(name), outs) => {
            if !outs.iter().any(|(n, _)| n == name) {
                return Err(Refusal::new(
                    format!("no output `{name}`; the graph has {}", describe(outs)),
                    Next::ChooseOutput,
                ));
            }
            name.clone()
        }
        (None, [(name, _)]) => name.clone(),
        (None, outs) => {
            return Err(Refusal::new(
                format!("the graph has several outputs ({})", describe(outs)),
                Next::ChooseOutput,
            ))
        }
    };
    let (shape, non_finite) = graph.probe(input, crop, 2, &output).map_err(|e| {
        format!(
            "a batch of 2 images of {0}×{0} does not run: {e}; if the export fixed the batch size inside the graph, {1}",
            crop,
            REEXPORT.replace("INPUT", &format!("'{input}'"))
        )
    })?;
    if shape.first() != Some(&2) {
        return Err(format!(
            "output `{output}` has shape {shape:?} for a batch of 2; {}",
            REEXPORT.replace("INPUT", &format!("'{input}'"))
        )
        .into());
    }
    if non_finite > 0 {
        return Err(format!(
            "output `{output}` has {non_finite} non-finite values (NaN or infinity) for the probe batch (a black image and a test pattern); xfer would store them as features. Fix the model (or its export) so that it gives finite outputs"
        )
        .into());
    }
    Ok((output, shape))
}

/// The output's pooling (asked, or suggested by its shape) and feature width, with the decisions noted.
fn output_spec(
    req: &AddRequest,
    output: String,
    shape: &[usize],
    global_pool: Option<&str>,
    decisions: &mut Vec<String>,
) -> std::result::Result<OutputSpec, Refusal> {
    let pool_mode = match req.pool {
        Some(p) => {
            decisions.push(format!("pooling: {} (--pool)", p.name()));
            p
        }
        None => {
            let (p, why) = default_pool(shape, global_pool);
            decisions.push(format!("pooling: {} ({why}; --pool to choose)", p.name()));
            p
        }
    };
    let prefix_tokens = req.prefix_tokens.unwrap_or(1);
    if matches!(pool_mode, Pool::Mean | Pool::ClsMean) && req.prefix_tokens.is_none() {
        decisions.push(
            "prefix tokens: 1 (the class token; pass --prefix-tokens 1+R for R register tokens)"
                .into(),
        );
    }
    let mut spec = OutputSpec {
        features: output,
        feature_dim: 0,
        pool: pool_mode,
        prefix_tokens,
        l2: req.l2,
        logits: None,
        n_logits: None,
    };
    spec.feature_dim = pool::pooled_width(shape, &spec).map_err(|r| Refusal {
        reason: format!("output `{}` {}", spec.features, r.reason),
        next: r.next,
    })?;
    decisions.push(format!(
        "features: {} values per image{}",
        spec.feature_dim,
        if spec.l2 { ", L2-normalised" } else { "" }
    ));
    Ok(spec)
}

/// What the manifest is made of, beyond the request.
struct Parts<'a> {
    config: Option<&'a ModelConfig>,
    input: String,
    recipe: Recipe,
    spec: OutputSpec,
}

/// The manifest of the ONNX file: its sha256, where it lies, how it was made and what it does.
fn manifest(zoo: &Zoo, req: &AddRequest, onnx: &Path, parts: Parts) -> Result<Manifest> {
    let Parts {
        config,
        input,
        recipe,
        spec,
    } = parts;
    let sha256 = crate::models::onnx_data::model_sha256(onnx)?;
    let dir = std::fs::canonicalize(&zoo.dir).map_err(|e| Error::io(&zoo.dir, e))?;
    let file = match onnx.strip_prefix(&dir) {
        Ok(rel) if rel.components().count() == 1 => rel.display().to_string(),
        _ => onnx.display().to_string(),
    };
    Ok(Manifest {
        name: req.name.clone(),
        file,
        sha256,
        weights: req.weights,
        weights_source: format!(
            "user-supplied ONNX file {}{}",
            onnx.display(),
            if req.weights == Weights::Random {
                " (random weights: a test export, not pretrained)"
            } else {
                ""
            }
        ),
        license: config
            .and_then(|c| c.recipe.license.clone())
            .unwrap_or_default(),
        generator: req.command_line.clone(),
        setup: String::new(),
        description: format!(
            "Added by `xfer models add` (xfer {}). Preprocessing: {}. Pooling in xfer: {}.",
            crate::VERSION,
            match &req.config {
                Some(p) => format!(
                    "from {} ({}) with the flags given",
                    p.display(),
                    config.expect("read above").kind.describe()
                ),
                None => "from the flags given".into(),
            },
            if spec.pooling().is_empty() {
                "none".to_owned()
            } else {
                spec.pooling()
            }
        ),
        input: InputSpec {
            name: input,
            shape: [-1, 3, i64::from(recipe.crop), i64::from(recipe.crop)],
        },
        output: spec,
        preprocess: recipe,
        quantization: None,
        dir: zoo.dir.clone(),
    })
}

/// Writes the manifest to `path` once it reads back; returns it as read.
fn write_manifest(req: &AddRequest, manifest: &Manifest, path: &Path) -> Result<Manifest> {
    let text =
        toml::to_string(manifest).map_err(|e| failure(req, format!("manifest: {e}").into()))?;
    let text = format!(
        "# Written by `xfer models add`; re-run it (with --force) rather than edit by hand.\n{text}"
    );
    // Read back before it is committed: the zoo only ever holds manifests it can load.
    let manifest = Manifest::from_toml_str(&text, path)?;
    crate::util::atomic::write_bytes_atomic(path, text.as_bytes())?;
    Ok(manifest)
}

fn describe(outs: &[(String, Vec<i64>)]) -> String {
    outs.iter()
        .map(|(n, s)| format!("`{n}` {s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn shape_with_n(shape: &[usize]) -> Vec<String> {
    std::iter::once("N".to_owned())
        .chain(shape[1..].iter().map(usize::to_string))
        .collect()
}

/// The pooling an output's shape suggests, and why.
fn default_pool(shape: &[usize], global_pool: Option<&str>) -> (Pool, String) {
    match shape.len() {
        4 if shape[2] == 1 && shape[3] == 1 => (Pool::None, "already pooled [N, C, 1, 1]".into()),
        4 => (Pool::Avg, "feature maps [N, C, H, W]".into()),
        3 => match global_pool {
            Some("avg") => (
                Pool::Mean,
                "tokens [N, T, D], the config's global_pool = avg".into(),
            ),
            Some("token") => (
                Pool::Cls,
                "tokens [N, T, D], the config's global_pool = token".into(),
            ),
            _ => (
                Pool::Cls,
                "tokens [N, T, D]: the class token; DINOv2's linear probe uses cls+mean".into(),
            ),
        },
        _ => (Pool::None, "one vector per image".into()),
    }
}

/// Flags over config over the graph's own size, and defaults that are said.
fn resolve_recipe(
    flags: &RecipeFlags,
    config: &ConfigRecipe,
    graph_side: Option<u32>,
    decisions: &mut Vec<String>,
) -> std::result::Result<Recipe, Refusal> {
    let crop = flags
        .crop
        .or(config.crop)
        .or(graph_side)
        .ok_or(Refusal::new(
            "the graph's input size is symbolic, and neither a config nor a crop gives it",
            Next::GiveConfigOrCrop,
        ))?;
    let resize_mode = if flags.square {
        ResizeMode::Square
    } else {
        config.resize_mode.unwrap_or_default()
    };
    let resize = match (flags.resize, flags.crop_pct) {
        (Some(_), Some(_)) => {
            return Err(Refusal::new(
                "both a resize and a crop fraction are given, and each sets the resize",
                Next::ResizeOrCropPct,
            ))
        }
        (Some(r), None) => r,
        // `add` refused a fraction outside (0, 1].
        (None, Some(p)) => (crop as f64 / p).floor() as u32,
        // The config's resize belongs to its crop; an overridden crop keeps the ratio.
        (None, None) => match (config.resize, config.crop) {
            (Some(r), Some(c)) if flags.crop.is_none() || flags.crop == Some(c) => r,
            (Some(r), Some(c)) => (crop as f64 * r as f64 / c as f64).floor() as u32,
            _ => {
                let r = (crop as f64 / 0.875).floor() as u32;
                decisions.push(format!(
                    "resize: {r} (no config or --resize: crop_pct 0.875 assumed, as timm's default)"
                ));
                r
            }
        },
    };
    let interpolation = flags
        .interpolation
        .or(config.interpolation)
        .unwrap_or_else(|| {
            decisions.push("interpolation: bilinear assumed (no config or --interpolation)".into());
            Interpolation::Bilinear
        });
    let pixel_scale = flags.pixel_scale.or(config.pixel_scale).unwrap_or_else(|| {
        decisions.push("pixel scale: 1/255 assumed (no config or --pixel-scale)".into());
        1.0 / 255.0
    });
    let (Some(mean), Some(std)) = (flags.mean.or(config.mean), flags.std.or(config.std)) else {
        return Err(Refusal::new(
            "no normalisation: neither a config nor a mean and std give it",
            Next::GiveNormalisation,
        ));
    };
    let recipe = Recipe {
        resize,
        resize_mode,
        crop,
        crop_offset: config.crop_offset.unwrap_or(CropOffset::RoundHalfEven),
        interpolation,
        pixel_scale,
        mean,
        std,
        channel_order: flags
            .channel_order
            .or(config.channel_order)
            .unwrap_or_default(),
    };
    recipe.validate().map_err(|e| e.to_string())?;
    decisions.push(format!(
        "preprocessing: {} to {resize}{}, {:?} interpolation, centre crop {crop}, x = u8 × {pixel_scale}, (x − {mean:?}) / {std:?}",
        if resize_mode == ResizeMode::Square {
            "resize"
        } else {
            "shorter side"
        },
        if resize_mode == ResizeMode::Square {
            format!("×{resize}")
        } else {
            String::new()
        },
        interpolation
    ));
    Ok(recipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_keep_its_ratio() {
        let config = ConfigRecipe {
            resize: Some(256),
            crop: Some(224),
            interpolation: Some(Interpolation::Bicubic),
            pixel_scale: Some(1.0 / 255.0),
            mean: Some([0.5; 3]),
            std: Some([0.5; 3]),
            ..Default::default()
        };
        let mut d = Vec::new();
        let r = resolve_recipe(&RecipeFlags::default(), &config, None, &mut d).unwrap();
        assert_eq!((r.resize, r.crop), (256, 224));
        let flags = RecipeFlags {
            crop: Some(448),
            ..Default::default()
        };
        let r = resolve_recipe(&flags, &config, None, &mut d).unwrap();
        assert_eq!((r.resize, r.crop), (512, 448));
        let flags = RecipeFlags {
            crop_pct: Some(1.0),
            interpolation: Some(Interpolation::Bilinear),
            ..Default::default()
        };
        let r = resolve_recipe(&flags, &config, None, &mut d).unwrap();
        assert_eq!((r.resize, r.interpolation), (224, Interpolation::Bilinear));
        let none = resolve_recipe(
            &RecipeFlags::default(),
            &ConfigRecipe::default(),
            Some(224),
            &mut d,
        );
        assert_eq!(none.unwrap_err().next, Some(Next::GiveNormalisation));
    }

    #[test]
    fn default_pooling_follows_the_shape() {
        assert_eq!(default_pool(&[2, 768], None).0, Pool::None);
        assert_eq!(default_pool(&[2, 2048, 1, 1], None).0, Pool::None);
        assert_eq!(default_pool(&[2, 2048, 7, 7], None).0, Pool::Avg);
        assert_eq!(default_pool(&[2, 197, 768], None).0, Pool::Cls);
        assert_eq!(default_pool(&[2, 197, 768], Some("avg")).0, Pool::Mean);
    }
}
