//! Hugging Face `preprocessor_config.json` files in the shapes the hub's
//! popular vision checkpoints ship (tests/fixtures/hf_processors/, issue 26),
//! read by xfer as transformers' image processors read them: a bare-integer
//! `size` by the processor class (square for ViT, DeiT, BEiT, Swin; the
//! shortest edge for CLIP, ConvNeXt, BiT), ConvNeXt's `crop_pct` (shortest
//! edge int(S / crop_pct), then crop S; a warp from 384), EfficientNet's
//! `include_top`. `expected.json` says what transformers does;
//! `tools/check_hf_processors.py` checks it against the real processors.

use crate::common;

use xfer::images::preprocess::{CropOffset, ResizeMode};
use xfer::models::config::{self as model_config, Kind};

#[test]
fn hub_processor_configs_are_read_as_transformers_reads_them() {
    let dir = common::repo().join("tests/fixtures/hf_processors");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let expected = expected["expected"].as_object().unwrap();
    assert_eq!(expected.len(), 12);
    for (name, want) in expected {
        let c = model_config::read(&dir.join(format!("{name}.json"))).unwrap();
        assert_eq!(c.kind, Kind::HuggingFace);
        let r = &c.recipe;
        let mode = match want["resize_mode"].as_str().unwrap() {
            "square" => ResizeMode::Square,
            _ => ResizeMode::ShorterSide,
        };
        let interp =
            model_config::interpolation_by_name(want["interpolation"].as_str().unwrap()).unwrap();
        let f3 = |v: &serde_json::Value| -> [f32; 3] {
            let a: Vec<f32> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            [a[0], a[1], a[2]]
        };
        assert_eq!(
            (r.resize, r.resize_mode, r.crop, r.interpolation),
            (
                Some(want["resize"].as_u64().unwrap() as u32),
                Some(mode),
                Some(want["crop"].as_u64().unwrap() as u32),
                Some(interp)
            ),
            "{name}"
        );
        assert_eq!(r.crop_offset, Some(CropOffset::Floor), "{name}");
        assert_eq!(r.pixel_scale, Some(1.0 / 255.0), "{name}");
        for (got, want) in [
            (r.mean.unwrap(), f3(&want["mean"])),
            (r.std.unwrap(), f3(&want["std"])),
        ] {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-7, "{name}: {got:?} vs {want:?}");
            }
        }
        // Nothing in these files is left unread.
        assert!(
            !c.warnings
                .iter()
                .any(|w| w.contains("not understood") || w.contains("bare number")),
            "{name}: {:?}",
            c.warnings
        );
    }
}

#[test]
fn sizes_that_cannot_be_batched_or_are_ambiguous_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let read = |json: &str| {
        let p = t.path().join("preprocessor_config.json");
        std::fs::write(&p, json).unwrap();
        model_config::read(&p)
            .map(|c| c.recipe)
            .map_err(|e| e.to_string())
    };
    // The library states the fact and, typed, what would get past it (the
    // command line words it as --resize and --crop).
    let p = t.path().join("preprocessor_config.json");
    std::fs::write(
        &p,
        r#"{"size": {"longest_edge": 512}, "image_mean": [0.5], "image_std": [0.5]}"#,
    )
    .unwrap();
    match model_config::read(&p) {
        Err(xfer::Error::ModelConfig { reason, next, .. }) => {
            assert!(reason.contains("longest edge"), "{reason}");
            assert_eq!(next, Some(xfer::error::Next::GiveResizeAndCrop));
        }
        other => panic!("{other:?}"),
    }
    let e = read(r#"{"size": {"shortest_edge": 800, "longest_edge": 1333}, "image_mean": [0.5], "image_std": [0.5]}"#)
        .unwrap_err();
    assert!(e.contains("longest edge"), "{e}");
    // An unknown class with a bare size: read by the old rule, with a warning.
    let p = t.path().join("x.json");
    std::fs::write(&p, r#"{"size": 224, "image_processor_type": "NewImageProcessor", "image_mean": [0.5], "image_std": [0.5], "resample": 2}"#).unwrap();
    let c = model_config::read(&p).unwrap();
    assert_eq!(c.recipe.resize_mode, Some(ResizeMode::Square));
    assert!(
        c.warnings.iter().any(|w| w.contains("New")),
        "{:?}",
        c.warnings
    );
}
