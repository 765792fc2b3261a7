//! Reading a model's own preprocessing configuration: timm's `config.json`
//! (`pretrained_cfg`) and Hugging Face's `preprocessor_config.json`. Each
//! becomes the values of a [`Recipe`] it determines, plus the pooling it
//! implies; keys that are neither used nor known to be irrelevant are
//! returned as warnings, never dropped silently, and values xfer cannot
//! reproduce are errors.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::preprocess::{ChannelOrder, CropOffset, Interpolation, ResizeMode};

/// Which library's configuration a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Timm,
    HuggingFace,
}

impl Kind {
    pub fn describe(&self) -> &'static str {
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
    pub channel_order: Option<ChannelOrder>,
    /// timm's `global_pool` (`token`, `avg`, …), when the file names it.
    pub global_pool: Option<String>,
    /// The patch size, when the file names it (`patch_size`).
    pub patch_size: Option<u32>,
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
];

/// Reads `path`, deciding from its keys which library wrote it.
pub fn read(path: &Path) -> Result<ModelConfig> {
    let err = |reason: String| Error::ModelConfig {
        path: path.to_owned(),
        reason,
    };
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
        hugging_face(&obj).map_err(err)
    } else {
        Err(err(format!(
            "neither a timm config (no `pretrained_cfg`) nor a Hugging Face preprocessor config (no `size`, `do_resize` or `image_mean`); its keys are {:?}. Pass the right file, or give the preprocessing with --resize/--crop/--mean/--std",
            obj.keys().collect::<Vec<_>>()
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
        Some(name) => interpolation_by_name(name)?,
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

fn hugging_face(cfg: &Map<String, Value>) -> std::result::Result<ModelConfig, String> {
    let mut warnings = Vec::new();
    let mut r = ConfigRecipe::default();
    let flag = |k: &str, default: bool| cfg.get(k).and_then(Value::as_bool).unwrap_or(default);
    let do_resize = flag("do_resize", true);
    let do_crop = flag("do_center_crop", false);
    // Sizes: {"shortest_edge": S}, {"height": H, "width": W} or a bare int.
    let size = cfg.get("size");
    let crop = match (do_crop, cfg.get("crop_size")) {
        (false, _) => None,
        (true, Some(v)) => Some(square_size(v, "crop_size")?),
        (true, None) => return Err("do_center_crop is true but there is no crop_size".into()),
    };
    if !do_resize {
        return Err("do_resize is false: images of different sizes cannot be batched; give --resize and --crop".into());
    }
    let (resize, mode) = match size {
        Some(Value::Object(m)) if m.contains_key("shortest_edge") => {
            let s = m["shortest_edge"]
                .as_u64()
                .ok_or("size.shortest_edge is not an integer")? as u32;
            match cfg.get("crop_pct").and_then(Value::as_f64) {
                // ConvNeXt's processor: below 384 it resizes the shortest edge
                // to int(S / crop_pct) and crops S; from 384 it warps to S × S.
                Some(pct) if s < 384 => {
                    if crop.is_some() {
                        return Err("both crop_pct and do_center_crop: ambiguous".into());
                    }
                    r.crop = Some(s);
                    ((s as f64 / pct) as u32, ResizeMode::ShorterSide)
                }
                Some(_) => (s, ResizeMode::Square),
                None => (s, ResizeMode::ShorterSide),
            }
        }
        Some(Value::Object(m)) if m.contains_key("height") => (
            square_size(&Value::Object(m.clone()), "size")?,
            ResizeMode::Square,
        ),
        Some(Value::Object(m)) => {
            return Err(format!(
                "size {:?} is not supported (xfer does shortest_edge and height/width)",
                m.keys().collect::<Vec<_>>()
            ))
        }
        Some(v @ Value::Number(_)) => {
            let s = square_size(v, "size")?;
            // Older processors: a bare int is the shortest edge when a crop
            // follows (CLIP), the square otherwise (ViT).
            let mode = if crop.is_some() {
                ResizeMode::ShorterSide
            } else {
                ResizeMode::Square
            };
            warnings.push(format!(
                "size {s} is a bare number: read as {} ({})",
                if mode == ResizeMode::Square {
                    format!("{s}×{s}")
                } else {
                    format!("the shortest edge {s}")
                },
                if crop.is_some() {
                    "a centre crop follows"
                } else {
                    "no centre crop"
                }
            ));
            (s, mode)
        }
        Some(v) => return Err(format!("size {v} is not supported")),
        None => return Err("no size".into()),
    };
    r.resize = Some(resize);
    r.resize_mode = Some(mode);
    if r.crop.is_none() {
        r.crop = Some(crop.unwrap_or(resize));
    }
    if mode == ResizeMode::ShorterSide
        && crop.is_none()
        && r.crop == Some(resize)
        && !cfg.contains_key("crop_pct")
    {
        return Err(format!(
            "resizes the shortest edge to {resize} with no centre crop: images of different shapes cannot be batched; give --crop"
        ));
    }
    // Hugging Face's center_crop puts the box at (len - crop) // 2.
    r.crop_offset = Some(CropOffset::Floor);
    r.interpolation = Some(match cfg.get("resample") {
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
    });
    r.pixel_scale = Some(if flag("do_rescale", true) {
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
    if flag("do_normalize", true) {
        r.mean = Some(
            triple(cfg.get("image_mean"), "image_mean")?
                .ok_or("do_normalize without image_mean")?,
        );
        r.std = Some(
            triple(cfg.get("image_std"), "image_std")?.ok_or("do_normalize without image_std")?,
        );
    } else {
        r.mean = Some([0.0; 3]);
        r.std = Some([1.0; 3]);
    }
    r.channel_order = Some(if flag("do_flip_channel_order", false) {
        ChannelOrder::Bgr
    } else {
        ChannelOrder::Rgb
    });
    r.patch_size = cfg
        .get("patch_size")
        .and_then(Value::as_u64)
        .map(|p| p as u32);
    let used = [
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
    ];
    unknown_keys(cfg, &used, HF_IGNORED, "", &mut warnings);
    Ok(ModelConfig {
        kind: Kind::HuggingFace,
        recipe: r,
        warnings,
    })
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

pub fn interpolation_by_name(name: &str) -> std::result::Result<Interpolation, String> {
    match name {
        "bicubic" => Ok(Interpolation::Bicubic),
        "bilinear" => Ok(Interpolation::Bilinear),
        "nearest" => Ok(Interpolation::Nearest),
        other => Err(format!(
            "interpolation `{other}` is not supported (xfer does bicubic, bilinear, nearest)"
        )),
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
            hugging_face(obj)
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
