//! Reading a model's own preprocessing configuration: timm's `config.json`
//! (`pretrained_cfg`) and Hugging Face's `preprocessor_config.json`. Each
//! becomes the values of a [`Recipe`] it determines, plus the pooling it
//! implies; keys that are neither used nor known to be irrelevant are
//! returned as warnings, never dropped silently, and values xfer cannot
//! reproduce are errors.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Next, Refusal, Result};
use crate::images::preprocess::{ChannelOrder, CropOffset, Interpolation, ResizeMode};

/// Which library's configuration a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Timm,
    HuggingFace,
}

impl Kind {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Kind::Timm => "timm pretrained_cfg",
            Kind::HuggingFace => "Hugging Face image processor",
        }
    }
}

/// What a configuration says about preprocessing; `None` where it says
/// nothing (the caller's flags or defaults decide).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigRecipe {
    pub resize: Option<u32>,
    pub resize_mode: Option<ResizeMode>,
    pub crop: Option<u32>,
    pub crop_offset: Option<CropOffset>,
    pub interpolation: Option<Interpolation>,
    pub pixel_scale: Option<f32>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub(crate) channel_order: Option<ChannelOrder>,
    /// timm's `global_pool` (`token`, `avg`, …), when the file names it.
    pub(crate) global_pool: Option<String>,
    /// The patch size, when the file names it (`patch_size`).
    pub(crate) patch_size: Option<u32>,
    /// The weights' licence, when the file names it (timm's `license`).
    pub(crate) license: Option<String>,
}

/// A configuration file read.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub kind: Kind,
    pub recipe: ConfigRecipe,
    /// Keys not used and not known to be irrelevant, and values noted as
    /// assumptions: shown to the user.
    pub warnings: Vec<String>,
}

const TIMM_DEFAULT_CROP_PCT: f64 = 0.875;

/// timm keys that describe the model, not its preprocessing.
const TIMM_IGNORED: &[&str] = &[
    "architecture",
    "num_classes",
    "num_features",
    "model_args",
    "label_names",
    "label_descriptions",
];
const TIMM_CFG_IGNORED: &[&str] = &[
    "url",
    "hf_hub_id",
    "hf_hub_filename",
    "file",
    "tag",
    "custom_load",
    "num_classes",
    "pool_size",
    "first_conv",
    "classifier",
    "fixed_input_size",
    "license",
    "description",
    "origin_url",
    "paper_ids",
    "paper_name",
    "notes",
    "min_input_size",
    "architecture",
    "source",
    "label_names",
    "label_descriptions",
];
/// Hugging Face keys that xfer reads.
const HF_USED: &[&str] = &[
    "do_resize",
    "size",
    "resample",
    "do_center_crop",
    "crop_size",
    "crop_pct",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
    "do_flip_channel_order",
    "patch_size",
    "include_top",
    "rescale_offset",
];
/// Hugging Face keys that change nothing xfer does.
const HF_IGNORED: &[&str] = &[
    "image_processor_type",
    "feature_extractor_type",
    "processor_class",
    "auto_map",
    "do_convert_rgb",
    "_processor_class",
    "data_format",
    "input_data_format",
    "return_tensors",
    "device",
    "disable_grouping",
    // Segmentation labels (BEiT), not pixels.
    "reduce_labels",
    "do_reduce_labels",
];

/// Reads `path`, deciding from its keys which library wrote it.
pub fn read(path: &Path) -> Result<ModelConfig> {
    let refuse = |r: Refusal| Error::ModelConfig {
        path: path.to_owned(),
        reason: r.reason,
        next: r.next,
    };
    let err = |reason: String| refuse(reason.into());
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}; pass the model's config.json (timm) or preprocessor_config.json (Hugging Face)")))?;
    let Value::Object(obj) = value else {
        return Err(err("not a JSON object; pass the model's config.json (timm) or preprocessor_config.json (Hugging Face)".into()));
    };
    if obj.contains_key("pretrained_cfg")
        || obj.contains_key("crop_pct") && obj.contains_key("input_size")
    {
        timm(&obj).map_err(err)
    } else if [
        "do_resize",
        "size",
        "image_processor_type",
        "feature_extractor_type",
        "image_mean",
    ]
    .iter()
    .any(|k| obj.contains_key(*k))
    {
        hugging_face(&obj).map_err(refuse)
    } else {
        Err(refuse(Refusal::new(
            format!(
                "neither a timm config (no `pretrained_cfg`) nor a Hugging Face preprocessor config (no `size`, `do_resize` or `image_mean`); its keys are {:?}",
                obj.keys().collect::<Vec<_>>()
            ),
            Next::RightConfigOrRecipe,
        )))
    }
}

fn timm(top: &Map<String, Value>) -> std::result::Result<ModelConfig, String> {
    let mut warnings = Vec::new();
    // A hub config.json holds `pretrained_cfg`; a bare pretrained_cfg is accepted too.
    let (cfg, outer): (&Map<String, Value>, Option<&Map<String, Value>>) =
        match top.get("pretrained_cfg") {
            Some(Value::Object(c)) => (c, Some(top)),
            Some(_) => return Err("`pretrained_cfg` is not an object".into()),
            None => (top, None),
        };
    let mut r = ConfigRecipe::default();
    let size = match cfg.get("input_size") {
        Some(v) => {
            let dims = numbers(v, "input_size")?;
            match dims.as_slice() {
                [c, h, w] if *c == 3.0 && h == w && *h >= 1.0 => *h as u32,
                _ => {
                    return Err(format!(
                        "input_size {dims:?} is not [3, S, S]; xfer feeds square RGB inputs"
                    ))
                }
            }
        }
        None => return Err("pretrained_cfg has no input_size".into()),
    };
    let crop_pct = match cfg.get("crop_pct") {
        Some(v) => v
            .as_f64()
            .filter(|p| *p > 0.0 && *p <= 1.0)
            .ok_or_else(|| format!("crop_pct {v} must be a number in (0, 1]"))?,
        None => {
            warnings.push(format!(
                "no crop_pct: timm's default {TIMM_DEFAULT_CROP_PCT} assumed"
            ));
            TIMM_DEFAULT_CROP_PCT
        }
    };
    // timm's transforms_factory: scale_size = math.floor(img_size / crop_pct).
    let scale = (size as f64 / crop_pct).floor() as u32;
    r.resize_mode = Some(match cfg.get("crop_mode").and_then(Value::as_str) {
        None | Some("center") => ResizeMode::ShorterSide,
        Some("squash") => ResizeMode::Square,
        Some(other) => {
            return Err(format!(
                "crop_mode `{other}` is not supported (xfer does `center` and `squash`); give the preprocessing with explicit flags"
            ))
        }
    });
    r.resize = Some(scale);
    r.crop = Some(size);
    r.crop_offset = Some(CropOffset::RoundHalfEven);
    r.interpolation = Some(match cfg.get("interpolation").and_then(Value::as_str) {
        None => {
            warnings.push("no interpolation: timm's default bilinear assumed".into());
            Interpolation::Bilinear
        }
        Some(name) => interpolation_by_name(name).map_err(|e| e.to_string())?,
    });
    r.pixel_scale = Some(1.0 / 255.0);
    r.mean = Some(triple(cfg.get("mean"), "mean")?.unwrap_or_else(|| {
        warnings.push("no mean: ImageNet's assumed".into());
        [0.485, 0.456, 0.406]
    }));
    r.std = Some(triple(cfg.get("std"), "std")?.unwrap_or_else(|| {
        warnings.push("no std: ImageNet's assumed".into());
        [0.229, 0.224, 0.225]
    }));
    r.channel_order = Some(ChannelOrder::Rgb);
    r.license = cfg
        .get("license")
        .and_then(Value::as_str)
        .map(str::to_owned);
    for k in ["test_input_size", "test_crop_pct"] {
        if cfg.contains_key(k) {
            warnings.push(format!(
                "{k} not used: xfer uses input_size and crop_pct, timm's evaluation transform"
            ));
        }
    }
    let used = [
        "input_size",
        "crop_pct",
        "crop_mode",
        "interpolation",
        "mean",
        "std",
        "test_input_size",
        "test_crop_pct",
    ];
    unknown_keys(
        cfg,
        &used,
        TIMM_CFG_IGNORED,
        "pretrained_cfg.",
        &mut warnings,
    );
    if let Some(outer) = outer {
        r.global_pool = outer
            .get("global_pool")
            .and_then(Value::as_str)
            .map(str::to_owned);
        r.patch_size = outer
            .get("model_args")
            .and_then(|a| a.get("patch_size"))
            .and_then(Value::as_u64)
            .map(|p| p as u32);
        unknown_keys(
            outer,
            &["pretrained_cfg", "global_pool"],
            TIMM_IGNORED,
            "",
            &mut warnings,
        );
    }
    Ok(ModelConfig {
        kind: Kind::Timm,
        recipe: r,
        warnings,
    })
}

/// The image processor class a Hugging Face config names
/// (`image_processor_type`, or `feature_extractor_type` in older files),
/// without its `ImageProcessor`/`ImageProcessorFast`/`FeatureExtractor` suffix.
fn processor_class(cfg: &Map<String, Value>) -> Option<&str> {
    let name = cfg
        .get("image_processor_type")
        .or_else(|| cfg.get("feature_extractor_type"))?
        .as_str()?;
    Some(
        ["ImageProcessorFast", "ImageProcessor", "FeatureExtractor"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name),
    )
}

/// How a processor class reads a bare-integer `size`: transformers'
/// `get_size_dict(size, default_to_square=…)` in its `preprocess`. `true`:
/// `{height: S, width: S}`; `false`: `{shortest_edge: S}`; `None`: a class
/// xfer does not know.
fn int_size_is_square(class: Option<&str>) -> Option<bool> {
    match class? {
        "ViT" | "DeiT" | "Beit" | "Data2VecVision" | "Swin" | "EfficientNet" | "Siglip" | "Dpt" => {
            Some(true)
        }
        "CLIP" | "ConvNext" | "Bit" | "Dinov2" | "MobileViT" | "MobileNetV1" | "MobileNetV2"
        | "LevIT" | "PoolFormer" => Some(false),
        _ => None,
    }
}

/// Whether a processor class centre-crops when its config does not say
/// (`do_center_crop` absent): the class's own default.
fn crops_by_default(class: Option<&str>) -> bool {
    matches!(
        class,
        Some(
            "CLIP"
                | "Bit"
                | "DeiT"
                | "MobileViT"
                | "MobileNetV1"
                | "MobileNetV2"
                | "LevIT"
                | "PoolFormer"
        )
    )
}

/// A boolean key of a Hugging Face config, `default` when absent.
fn flag(cfg: &Map<String, Value>, k: &str, default: bool) -> bool {
    cfg.get(k).and_then(Value::as_bool).unwrap_or(default)
}

fn hugging_face(cfg: &Map<String, Value>) -> std::result::Result<ModelConfig, Refusal> {
    let mut warnings = Vec::new();
    let mut r = ConfigRecipe::default();
    let class = processor_class(cfg);
    // ConvNextImageProcessor (ConvNeXt, ConvNeXt V2, ResNet, …) ignores
    // do_center_crop/crop_size: its crop comes from crop_pct.
    let convnext = class == Some("ConvNext");
    let do_resize = flag(cfg, "do_resize", true);
    let do_crop = !convnext && flag(cfg, "do_center_crop", crops_by_default(class));
    let crop = match (do_crop, cfg.get("crop_size")) {
        (false, _) => None,
        (true, Some(v)) => Some(square_size(v, "crop_size")?),
        (true, None) => return Err("do_center_crop is true but there is no crop_size".into()),
    };
    if !do_resize {
        return Err(Refusal::new(
            "do_resize is false: images of different sizes cannot be batched",
            Next::GiveResizeAndCrop,
        ));
    }
    let (side, mode) = hf_size(cfg.get("size"), class, crop, &mut warnings)?;
    let resize = hf_resize(cfg, &mut r, (side, mode), crop, class)?;
    r.resize = Some(resize);
    if r.crop.is_none() {
        r.crop = Some(crop.unwrap_or(resize));
    }
    if r.resize_mode == Some(ResizeMode::ShorterSide) && crop.is_none() && r.crop == Some(resize) {
        return Err(Refusal::new(
            format!("resizes the shortest edge to {resize} with no centre crop: images of different shapes cannot be batched"),
            Next::GiveCrop,
        ));
    }
    // Hugging Face's center_crop puts the box at (len - crop) // 2.
    r.crop_offset = Some(CropOffset::Floor);
    r.interpolation = Some(hf_interpolation(cfg.get("resample"), &mut warnings)?);
    r.pixel_scale = Some(if flag(cfg, "do_rescale", true) {
        match cfg.get("rescale_factor") {
            Some(v) => v
                .as_f64()
                .filter(|f| *f > 0.0)
                .ok_or_else(|| format!("rescale_factor {v} must be a positive number"))?
                as f32,
            None => 1.0 / 255.0,
        }
    } else {
        1.0
    });
    let (mean, std) = hf_normalisation(cfg, class)?;
    r.mean = Some(mean);
    r.std = Some(std);
    r.channel_order = Some(if flag(cfg, "do_flip_channel_order", false) {
        ChannelOrder::Bgr
    } else {
        ChannelOrder::Rgb
    });
    r.patch_size = cfg
        .get("patch_size")
        .and_then(Value::as_u64)
        .map(|p| p as u32);
    unknown_keys(cfg, HF_USED, HF_IGNORED, "", &mut warnings);
    Ok(ModelConfig {
        kind: Kind::HuggingFace,
        recipe: r,
        warnings,
    })
}

/// The resize side and mode from `size`, normalised as transformers'
/// get_size_dict does: a bare integer by the processor class, then
/// {shortest_edge} or {height, width}.
fn hf_size(
    size: Option<&Value>,
    class: Option<&str>,
    crop: Option<u32>,
    warnings: &mut Vec<String>,
) -> std::result::Result<(u32, ResizeMode), Refusal> {
    let shortest = |s: u32| (s, ResizeMode::ShorterSide);
    Ok(match size {
        Some(v @ Value::Number(_)) => {
            let s = square_size(v, "size")?;
            match int_size_is_square(class) {
                Some(true) => (s, ResizeMode::Square),
                Some(false) => shortest(s),
                None => {
                    // A class xfer does not know: a crop after the resize
                    // means the shortest edge (CLIP), none a square (ViT).
                    let mode = if crop.is_some() { ResizeMode::ShorterSide } else { ResizeMode::Square };
                    warnings.push(format!(
                        "size {s} is a bare number and the processor class ({}) is not one xfer knows: read as {}",
                        class.unwrap_or("not named"),
                        if mode == ResizeMode::Square {
                            format!("{s}×{s}")
                        } else {
                            format!("the shortest edge {s}, as a centre crop follows")
                        }
                    ));
                    (s, mode)
                }
            }
        }
        Some(Value::Object(m)) if m.contains_key("longest_edge") || m.contains_key("max_height") => {
            return Err(Refusal::new(
                format!(
                    "size {} bounds the longest edge, so images of different shapes give different input sizes, which cannot be batched",
                    Value::Object(m.clone())
                ),
                Next::GiveResizeAndCrop,
            ))
        }
        Some(Value::Object(m)) if m.contains_key("shortest_edge") => shortest(
            m["shortest_edge"]
                .as_u64()
                .ok_or("size.shortest_edge is not an integer")? as u32,
        ),
        Some(v @ Value::Object(m)) if m.contains_key("height") => {
            (square_size(v, "size")?, ResizeMode::Square)
        }
        Some(Value::Object(m)) => {
            return Err(format!(
                "size {:?} is not supported (xfer does shortest_edge and height/width)",
                m.keys().collect::<Vec<_>>()
            )
            .into())
        }
        Some(v) => return Err(format!("size {v} is not supported").into()),
        None => return Err("no size".into()),
    })
}

/// The resize side after `crop_pct`; sets the recipe's resize mode, and its
/// crop where `crop_pct` decides it.
fn hf_resize(
    cfg: &Map<String, Value>,
    r: &mut ConfigRecipe,
    (side, mode): (u32, ResizeMode),
    crop: Option<u32>,
    class: Option<&str>,
) -> std::result::Result<u32, String> {
    let convnext = class == Some("ConvNext");
    let pct = match cfg.get("crop_pct") {
        None | Some(Value::Null) => convnext.then_some(224.0 / 256.0),
        Some(v) => Some(
            v.as_f64()
                .filter(|p| *p > 0.0 && *p <= 1.0)
                .ok_or_else(|| format!("crop_pct {v} must be a number in (0, 1]"))?,
        ),
    };
    Ok(match (mode, pct) {
        // ConvNeXt's processor (and PoolFormer's): below 384 it resizes the
        // shortest edge to int(S / crop_pct) and crops S; from 384 on
        // (ConvNeXt) it warps to S × S.
        (ResizeMode::ShorterSide, Some(pct)) if !(convnext && side >= 384) => {
            if crop.is_some() && !matches!(class, Some("PoolFormer")) {
                return Err("both crop_pct and do_center_crop: ambiguous".into());
            }
            r.crop = Some(crop.unwrap_or(side));
            r.resize_mode = Some(ResizeMode::ShorterSide);
            (side as f64 / pct) as u32
        }
        (ResizeMode::ShorterSide, Some(_)) => {
            r.resize_mode = Some(ResizeMode::Square);
            side
        }
        _ => {
            r.resize_mode = Some(mode);
            side
        }
    })
}

/// The interpolation PIL's `resample` number names (bilinear when absent, said in a warning).
fn hf_interpolation(
    resample: Option<&Value>,
    warnings: &mut Vec<String>,
) -> std::result::Result<Interpolation, String> {
    Ok(match resample {
        None => {
            warnings.push("no resample: bilinear assumed".into());
            Interpolation::Bilinear
        }
        Some(v) => match v.as_u64() {
            Some(0) => Interpolation::Nearest,
            Some(2) => Interpolation::Bilinear,
            Some(3) => Interpolation::Bicubic,
            _ => {
                return Err(format!(
                    "resample {v} is not supported (xfer does 0 nearest, 2 bilinear, 3 bicubic)"
                ))
            }
        },
    })
}

/// The normalisation's (mean, std), with EfficientNet's offset and second division folded in.
fn hf_normalisation(
    cfg: &Map<String, Value>,
    class: Option<&str>,
) -> std::result::Result<([f32; 3], [f32; 3]), String> {
    let (mut mean, mut std) = if flag(cfg, "do_normalize", true) {
        (
            triple(cfg.get("image_mean"), "image_mean")?
                .ok_or("do_normalize without image_mean")?,
            triple(cfg.get("image_std"), "image_std")?.ok_or("do_normalize without image_std")?,
        )
    } else {
        ([0.0; 3], [1.0; 3])
    };
    if class == Some("EfficientNet") {
        // EfficientNetImageProcessor: rescale_offset maps to [-1, 1]
        // (x·scale − 1), and include_top (default true) normalises a second
        // time with mean 0 and the same std: (x − mean) / std².
        if flag(cfg, "do_rescale", true) && flag(cfg, "rescale_offset", false) {
            mean = mean.map(|m| m + 1.0);
        }
        if flag(cfg, "include_top", true) {
            let first = std;
            std = std.map(|s| s * s);
            if !flag(cfg, "do_normalize", true) {
                std = first;
                mean = [0.0; 3];
            }
        }
    }
    Ok((mean, std))
}

fn unknown_keys(
    cfg: &Map<String, Value>,
    used: &[&str],
    ignored: &[&str],
    prefix: &str,
    warnings: &mut Vec<String>,
) {
    let unknown: Vec<String> = cfg
        .keys()
        .filter(|k| !used.contains(&k.as_str()) && !ignored.contains(&k.as_str()))
        .map(|k| format!("{prefix}{k}"))
        .collect();
    if !unknown.is_empty() {
        warnings.push(format!(
            "not understood, so not applied: {}; check that they do not change the preprocessing, or give it with explicit flags",
            unknown.join(", ")
        ));
    }
}

/// An interpolation xfer does not reproduce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interpolation `{0}` is not supported (xfer does bicubic, bilinear, nearest)")]
pub struct UnknownInterpolation(pub(crate) String);

pub fn interpolation_by_name(
    name: &str,
) -> std::result::Result<Interpolation, UnknownInterpolation> {
    match name {
        "bicubic" => Ok(Interpolation::Bicubic),
        "bilinear" => Ok(Interpolation::Bilinear),
        "nearest" => Ok(Interpolation::Nearest),
        other => Err(UnknownInterpolation(other.to_owned())),
    }
}

fn numbers(v: &Value, what: &str) -> std::result::Result<Vec<f64>, String> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("{what} {v} is not a list of numbers"))
}

fn triple(v: Option<&Value>, what: &str) -> std::result::Result<Option<[f32; 3]>, String> {
    let Some(v) = v else { return Ok(None) };
    let n = numbers(v, what)?;
    match n.as_slice() {
        [a, b, c] => Ok(Some([*a as f32, *b as f32, *c as f32])),
        [a] => Ok(Some([*a as f32; 3])),
        _ => Err(format!("{what} {v} must have 3 values")),
    }
}

/// `{"height": H, "width": W}` with H = W, or a bare integer.
fn square_size(v: &Value, what: &str) -> std::result::Result<u32, String> {
    if let Some(s) = v.as_u64() {
        return Ok(s as u32);
    }
    let h = v.get("height").and_then(Value::as_u64);
    let w = v.get("width").and_then(Value::as_u64);
    match (h, w) {
        (Some(h), Some(w)) if h == w => Ok(h as u32),
        (Some(h), Some(w)) => Err(format!("{what} is {h}×{w}; xfer feeds square inputs")),
        _ => Err(format!("{what} {v} is not {{height, width}} or an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<ModelConfig, String> {
        let v: Value = serde_json::from_str(json).unwrap();
        let obj = v.as_object().unwrap();
        if obj.contains_key("pretrained_cfg") {
            timm(obj)
        } else {
            hugging_face(obj).map_err(|r| r.reason)
        }
    }

    #[test]
    fn timm_crop_pct_and_squash() {
        let c = parse(r#"{"pretrained_cfg": {"input_size": [3, 224, 224], "crop_pct": 0.9, "interpolation": "bicubic",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "hf_hub_id": "x"}, "global_pool": "token", "architecture": "vit"}"#).unwrap();
        // floor(224 / 0.9) = 248
        assert_eq!(c.recipe.resize, Some(248));
        assert_eq!(c.recipe.crop, Some(224));
        assert_eq!(c.recipe.resize_mode, Some(ResizeMode::ShorterSide));
        assert_eq!(c.recipe.global_pool.as_deref(), Some("token"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = parse(r#"{"pretrained_cfg": {"input_size": [3, 384, 384], "crop_pct": 1.0, "crop_mode": "squash",
            "interpolation": "bicubic", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "brand_new": 1}}"#).unwrap();
        assert_eq!(
            (s.recipe.resize, s.recipe.resize_mode),
            (Some(384), Some(ResizeMode::Square))
        );
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("pretrained_cfg.brand_new")),
            "{:?}",
            s.warnings
        );
        let border =
            parse(r#"{"pretrained_cfg": {"input_size": [3, 224, 224], "crop_mode": "border"}}"#);
        assert!(border.unwrap_err().contains("border"));
    }

    #[test]
    fn hugging_face_layouts() {
        let clip = parse(r#"{"do_resize": true, "size": {"shortest_edge": 224}, "resample": 3, "do_center_crop": true,
            "crop_size": {"height": 224, "width": 224}, "rescale_factor": 0.00392156862745098,
            "image_mean": [0.48, 0.45, 0.4], "image_std": [0.26, 0.26, 0.27], "do_convert_rgb": true}"#).unwrap();
        let r = &clip.recipe;
        assert_eq!(
            (r.resize, r.crop, r.resize_mode),
            (Some(224), Some(224), Some(ResizeMode::ShorterSide))
        );
        assert_eq!(r.interpolation, Some(Interpolation::Bicubic));
        assert_eq!(r.crop_offset, Some(CropOffset::Floor));
        let vit = parse(
            r#"{"size": {"height": 224, "width": 224}, "resample": 2, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "do_pad": true}"#,
        )
        .unwrap();
        assert_eq!(
            (vit.recipe.resize, vit.recipe.crop, vit.recipe.resize_mode),
            (Some(224), Some(224), Some(ResizeMode::Square))
        );
        assert!(
            vit.warnings.iter().any(|w| w.contains("do_pad")),
            "{:?}",
            vit.warnings
        );
        // ConvNeXt: int(224 / 0.875) = 256, then crop 224.
        let convnext = parse(
            r#"{"size": {"shortest_edge": 224}, "crop_pct": 0.875, "resample": 3,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#,
        )
        .unwrap();
        assert_eq!(
            (convnext.recipe.resize, convnext.recipe.crop),
            (Some(256), Some(224))
        );
        assert!(parse(
            r#"{"size": {"height": 224, "width": 256}, "image_mean": [0.5], "image_std": [0.5]}"#
        )
        .unwrap_err()
        .contains("square"));
        assert!(parse(r#"{"size": {"shortest_edge": 224}, "resample": 1, "image_mean": [0.5], "image_std": [0.5],
            "do_center_crop": true, "crop_size": 224}"#)
            .unwrap_err()
            .contains("resample"));
    }
}
