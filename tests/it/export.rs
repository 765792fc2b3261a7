//! `xfer export`'s pooling and composition on two tiny backbones whose outputs
//! are not pooled (tests/fixtures/export, made by tools/make_export_fixture.py):
//! the exported graph's `features` equal numpy's pooling of onnxruntime-Python's
//! raw outputs (avg, max, none, cls, mean with 1 and 3 prefix tokens, cls+mean,
//! L2), alone and with two backbones sharing the input, and its
//! `probabilities` equal the bundle's own head on those features. The real
//! EfficientNet-Lite0 path is tests/it/ship_e2e.rs.

use crate::common;

use std::path::PathBuf;

use ndarray::{Array1, Array2, Array4, Ix2};
use xfer::images::preprocess::Preset;
use xfer::models::zoo::Manifest;
use xfer::ship::bundle::{BackboneRef, Bundle};
use xfer::ship::export::{self, ExportOptions};
use xfer::ship::predict::ResolvedBackbone;
use xfer::train::head::mlp::{Linear, Mlp, MlpConfig};
use xfer::train::head::{HeadKind, Standardize};

fn fixture() -> PathBuf {
    common::repo().join("tests/fixtures/export")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap())
        .unwrap()
}

fn matrix(v: &serde_json::Value) -> Array2<f32> {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone()).unwrap();
    let (n, d) = (rows.len(), rows[0].len());
    Array2::from_shape_vec((n, d), rows.concat()).unwrap()
}

/// A manifest for fixture model `model` with the given `[output]` pooling lines.
fn backbone(model: &str, dim: usize, output: &str, resize: u32) -> ResolvedBackbone {
    let r = reference();
    let dir = tempfile::tempdir().unwrap().keep();
    let text = format!(
        r#"name = "{model}"
file = "{file}"
sha256 = "{sha}"
weights = "random"
[input]
name = "input"
shape = [-1, 3, 8, 8]
[output]
features = "features"
feature_dim = {dim}
{output}
[preprocess]
resize = {resize}
crop = 8
interpolation = "bilinear"
pixel_scale = 1.0
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
"#,
        file = fixture().join(format!("{model}.onnx")).display(),
        sha = r["sha256"][model].as_str().unwrap(),
    );
    let path = dir.join(format!("{model}.toml"));
    let manifest = Manifest::from_toml_str(&text, &path).unwrap();
    ResolvedBackbone {
        recipe: manifest.preprocess.clone(),
        manifest,
        preset: Preset::Native,
    }
}

/// A head on these backbones: an MLP (hidden 6, standardised features,
/// temperature 1.7) or a linear one; deterministic weights.
fn bundle(backbones: &[&ResolvedBackbone], mlp: bool) -> Bundle {
    let d: usize = backbones
        .iter()
        .map(|b| b.manifest.output.feature_dim)
        .sum();
    let c = 3;
    let config = if mlp {
        MlpConfig {
            hidden: vec![6],
            ..MlpConfig::tutorial(d, c)
        }
    } else {
        MlpConfig::linear(d, c)
    };
    let layers = config
        .layer_dims()
        .into_iter()
        .enumerate()
        .map(|(l, (i, o))| Linear {
            weight: Array2::from_shape_fn((o, i), |(a, b)| {
                ((a * 7 + b * 3 + l) as f32 * 0.37).sin() * 0.5
            }),
            bias: Array1::from_shape_fn(o, |a| (a as f32 * 0.9 + l as f32).cos() * 0.1),
        })
        .collect();
    let standardize = mlp.then(|| Standardize {
        mean: Array1::from_shape_fn(d, |i| (i as f32 * 0.3).sin()),
        scale: Array1::from_shape_fn(d, |i| 0.5 + (i % 5) as f32 * 0.25),
    });
    let refs = backbones
        .iter()
        .map(|b| BackboneRef {
            name: b.manifest.name.clone(),
            model_sha256: b.manifest.sha256.clone(),
            preprocess: serde_json::to_string(&b.recipe).unwrap(),
            n_features: b.manifest.output.feature_dim,
            decode: "jpeg_scaled".into(),
            pooling: b.manifest.output.pooling(),
            precision: String::new(),
            inference_precision: String::new(),
        })
        .collect();
    let kind = if mlp {
        HeadKind::Mlp
    } else {
        HeadKind::Logistic
    };
    let mut bundle = Bundle::new(
        kind,
        Mlp::from_layers(config, layers).unwrap(),
        standardize,
        vec!["a".into(), "b".into(), "c".into()],
        refs,
        serde_json::json!({}),
        serde_json::json!({}),
    );
    if mlp {
        bundle.meta.temperature = 1.7;
    }
    bundle.validate().unwrap();
    bundle
}

/// Runs an exported model under ONNX Runtime (Rust) on the fixture's input:
/// (probabilities, features).
fn run(bytes: &[u8]) -> (Array2<f32>, Array2<f32>) {
    let rt = common::runtime();
    let r = reference();
    let shape: Vec<usize> = serde_json::from_value(r["input_shape"].clone()).unwrap();
    let data: Vec<f32> = serde_json::from_value(r["input"].clone()).unwrap();
    let x = Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), data).unwrap();
    let mut session = ort::session::Session::builder(&rt.env)
        .unwrap()
        .commit_from_memory(bytes)
        .unwrap();
    let out = session
        .run(ort::inputs![export::INPUT => ort::value::TensorRef::from_array_view(x.view()).unwrap()])
        .unwrap();
    let get = |name: &str| {
        out[name]
            .try_extract_array::<f32>()
            .unwrap()
            .into_dimensionality::<Ix2>()
            .unwrap()
            .to_owned()
    };
    (get(export::PROBABILITIES), get(export::FEATURES))
}

/// max |a − b| / (1 + |b|)
fn rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

fn check(backbones: &[&ResolvedBackbone], expected: &Array2<f32>, what: &str) {
    for mlp in [false, true] {
        let b = bundle(backbones, mlp);
        let owned: Vec<ResolvedBackbone> = backbones.iter().map(|b| (*b).clone()).collect();
        let e = export::export(&b, &owned, &ExportOptions::default()).unwrap();
        assert_eq!(e.opset, 17);
        let (probs, feats) = run(&e.bytes);
        let df = rel_diff(&feats, expected);
        // The head on numpy's features, by xfer's own forward pass.
        let dp = rel_diff(&probs, &b.predict_proba(expected.view()));
        eprintln!("{what} (mlp head: {mlp}): features vs numpy {df:e}, probabilities vs xfer's head {dp:e}");
        assert!(df <= 1e-5, "{what}: features differ from numpy by {df}");
        assert!(dp <= 1e-5, "{what}: probabilities differ by {dp}");
    }
}

#[test]
fn every_pooling_matches_numpy() {
    let r = reference();
    let cases: [(&str, &str, usize, &str); 9] = [
        ("map", "avg", 4, r#"pool = "avg""#),
        ("map", "max", 4, r#"pool = "max""#),
        ("map", "none", 256, ""),
        ("map", "avg+l2", 4, "pool = \"avg\"\nl2 = true"),
        ("tokens", "cls", 5, r#"pool = "cls""#),
        ("tokens", "mean", 5, r#"pool = "mean""#),
        ("tokens", "mean/3", 5, "pool = \"mean\"\nprefix_tokens = 3"),
        ("tokens", "cls+mean", 10, r#"pool = "cls+mean""#),
        (
            "tokens",
            "cls+mean+l2",
            10,
            "pool = \"cls+mean\"\nl2 = true",
        ),
    ];
    for (model, key, dim, output) in cases {
        let b = backbone(model, dim, output, 8);
        check(
            &[&b],
            &matrix(&r["pooled"][model][key]),
            &format!("{model} {key}"),
        );
    }
}

#[test]
fn two_backbones_share_the_input_and_keep_their_names_apart() {
    let r = reference();
    // Both graphs name their weights `w` and their output `features`.
    let a = backbone("map", 4, r#"pool = "max""#, 8);
    let b = backbone("tokens", 10, r#"pool = "cls+mean""#, 8);
    let (pa, pb) = (
        matrix(&r["pooled"]["map"]["max"]),
        matrix(&r["pooled"]["tokens"]["cls+mean"]),
    );
    let expected = ndarray::concatenate(ndarray::Axis(1), &[pa.view(), pb.view()]).unwrap();
    check(&[&a, &b], &expected, "map max + tokens cls+mean");
    // The same backbone twice: the second copy gets its own prefix.
    let pa2 = ndarray::concatenate(ndarray::Axis(1), &[pa.view(), pa.view()]).unwrap();
    check(&[&a, &a], &pa2, "map max twice");
}

#[test]
fn what_cannot_be_one_graph_is_refused_with_the_reason() {
    let a = backbone("map", 4, r#"pool = "avg""#, 8);
    let b = backbone("tokens", 5, r#"pool = "cls""#, 9); // resize 9: another recipe
    let bundle2 = bundle(&[&a, &b], false);
    let e = export::export(&bundle2, &[a.clone(), b], &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("preprocess images differently") && e.contains("xfer package"),
        "{e}"
    );
    let bundle1 = bundle(&[&a], false);
    let e = export::export(
        &bundle1,
        std::slice::from_ref(&a),
        &ExportOptions { opset: Some(18) },
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            xfer::Error::Export {
                next: Some(xfer::error::Next::KeepOpset { have: 17, want: 18 }),
                ..
            }
        ),
        "{e}"
    );
    let e = e.to_string();
    assert!(
        e.contains("opset 18 was asked") && e.contains("opset 17"),
        "{e}"
    );
    // The metadata carry the recipe, the classes and the version.
    let ok = export::export(&bundle1, &[a], &ExportOptions { opset: Some(17) }).unwrap();
    let text = String::from_utf8_lossy(&ok.bytes);
    for key in [
        "xfer.preprocess",
        "xfer.class_names",
        "xfer.version",
        "xfer.input",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
}
