//! Augmented views (`xfer extract --views K`).
//!
//! Parity: a view's tensor against torchvision on real photos. The references
//! in tests/fixtures/views/ were made by tools/make_views_fixture.py:
//! ```python
//! v = F.resized_crop(PIL.Image.open(p).convert('RGB'), top, left, height, width, [224, 224], BILINEAR)
//! if flip: v = F.hflip(v)
//! x = F.normalize(F.to_tensor(v), mean=[127/255]*3, std=[128/255]*3)   # EfficientNet-Lite0
//! features = ort.InferenceSession('onnx/efficientnet_lite0.onnx').run(['features'], {'input': x[None].numpy()})
//! ```
//! The rest runs the CLI on generated images with the tiny test model:
//! view 0 is plain extraction bit for bit, views are a function of (seed,
//! path, view), a resumed run equals an uninterrupted one, shards merge with
//! their views, h5py reads them, and training uses and records them.

use crate::common::{self, done};

use std::path::{Path, PathBuf};

use ndarray::{s, Array4};
use xfer::features::store::{self, FeatureWriter};
use xfer::images::preprocess::{self, CropBox, DecodeOptions, ViewOps};
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::zoo::Manifest;

#[test]
fn augmented_views_match_torchvision_resized_crop_and_flip() {
    let repo = common::repo();
    let fixture = repo.join("tests/fixtures/views");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("index.json")).unwrap())
            .unwrap();
    common::setup_file("onnx/efficientnet_lite0.onnx");
    let manifest = Manifest::from_file(&repo.join("onnx/efficientnet_lite0.toml")).unwrap();
    assert_eq!(index["model_sha256"], manifest.sha256.as_str());
    let mut backbone =
        Backbone::load(&common::runtime(), &manifest, &SessionOptions::default()).unwrap();
    let recipe = &manifest.preprocess;
    for case in index["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let source = common::setup_file(case["source"].as_str().unwrap());
        // As extraction decodes it (a JPEG this small is decoded at full size).
        let img = preprocess::decode(&source, &DecodeOptions::default(), recipe.resize).unwrap();
        assert_eq!(
            [img.width() as u64, img.height() as u64],
            [
                case["source_size_wh"][0].as_u64().unwrap(),
                case["source_size_wh"][1].as_u64().unwrap()
            ],
            "{name}: decoded at full size"
        );
        let b = &case["box"];
        let get = |k: &str| b[k].as_u64().unwrap() as u32;
        let ops = ViewOps {
            crop: CropBox {
                left: get("left"),
                top: get("top"),
                width: get("width"),
                height: get("height"),
            },
            flip: case["flip"].as_bool().unwrap(),
            jitter: None,
        };
        let mut ours = vec![0f32; recipe.tensor_len()];
        preprocess::view_tensor(&img, recipe, &ops, &mut ours);
        let theirs = common::read_f16(&fixture.join(case["input_file"].as_str().unwrap()));
        assert_eq!(ours.len(), theirs.len());
        let diffs: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() as f64)
            .collect();
        let mean_abs = diffs.iter().sum::<f64>() / diffs.len() as f64;
        println!("{name}: input mean |Δ| = {mean_abs:.5}");
        // One 8-bit level is 1/128 ≈ 0.0078 here: off by at most a level on average.
        assert!(mean_abs <= 0.01, "{name}: input mean |Δ| {mean_abs} > 0.01");
        // A flip or a box off by a pixel would leave most values far apart.
        let far = diffs.iter().filter(|&&d| d > 0.05).count() as f64 / diffs.len() as f64;
        assert!(
            far < 0.01,
            "{name}: {:.1} % of values differ by > 0.05",
            100.0 * far
        );
        let c = recipe.crop as usize;
        let input = Array4::from_shape_vec((1, 3, c, c), ours).unwrap();
        let out = backbone.run(input.view(), false).unwrap();
        let reference = common::read_f32(&fixture.join(case["features_file"].as_str().unwrap()));
        let cos = common::cosine(out.features.as_slice().unwrap(), &reference);
        println!("{name}: feature cosine = {cos:.6}");
        assert!(cos >= 0.999, "{name}: feature cosine {cos} < 0.999");
    }
}

fn extract(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-q"];
    if !extra.contains(&"--batch") {
        args.extend(["--batch", "6"]);
    }
    args.extend_from_slice(extra);
    common::tiny_extract(data, out, &args)
}

/// A folder of 3 classes × 9 images (odd sizes, JPEG and PNG) and one broken file.
fn dataset(t: &Path) -> PathBuf {
    let data = t.join("data");
    common::make_image_folder(&data, &["ant", "bee", "cow"], 9);
    std::fs::write(data.join("bee/0100_broken.jpg"), b"\xFF\xD8\xFFnot a jpeg").unwrap();
    data
}

#[test]
fn views_are_seeded_resumable_and_view_0_is_plain_extraction() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let plain = t.path().join("plain.h5");
    done(extract(&data, &plain, &[]));
    let v = t.path().join("v.h5");
    done(extract(&data, &v, &["--views", "5", "--seed", "3"]));
    let p = store::read(&plain).unwrap();
    let f = store::read(&v).unwrap();
    // `data` is exactly what a plain run writes; old readers see a plain file.
    assert_eq!(
        f.data, p.data,
        "centre view = plain extraction, bit for bit"
    );
    assert_eq!(f.paths, p.paths);
    assert_eq!(f.labels, p.labels);
    assert_eq!(f.skipped.len(), 1, "the broken file is skipped");
    assert!(f.skipped[0].0.ends_with("0100_broken.jpg"));
    let views = f.views.clone().expect("views");
    assert_eq!(views.dim(), (27, 5, 8));
    assert_eq!(views.slice(s![.., 0, ..]), f.data, "view 0 = data");
    for k in 1..5 {
        let d = (&views.slice(s![.., k, ..]) - &f.data).mapv(f32::abs).sum();
        assert!(d > 1e-3, "view {k} differs from the centre view");
    }
    let prov = f.provenance.clone().unwrap();
    assert_eq!(prov.views, 5);
    let aug: serde_json::Value = serde_json::from_str(&prov.augment).unwrap();
    assert_eq!(aug["seed"], 3);
    assert_eq!(aug["views"], 5);
    assert_eq!(aug["recipe"]["name"], "tutorial");
    assert_eq!(aug["recipe"]["scale"][0], 0.08);

    // Same seed, another batch size (other batch boundaries): the same views.
    let again = t.path().join("again.h5");
    done(extract(
        &data,
        &again,
        &["--views", "5", "--seed", "3", "--batch", "17"],
    ));
    assert_eq!(store::read(&again).unwrap().views, f.views);
    // Another seed: other views, the same centre.
    let other = t.path().join("other.h5");
    done(extract(&data, &other, &["--views", "5", "--seed", "4"]));
    let o = store::read(&other).unwrap();
    assert_eq!(o.data, f.data);
    assert_ne!(o.views, f.views);

    // Interrupted after 10 rows (the broken file not reached), then resumed.
    let resumed = t.path().join("resumed.h5");
    let mut w = FeatureWriter::create(&resumed, 8, &prov).unwrap();
    let paths = f.paths.as_ref().unwrap();
    for a in (0..10).step_by(4) {
        let b = (a + 4).min(10);
        w.append_views(
            f.data.slice(s![a..b, ..]),
            Some(views.slice(s![a..b, .., ..])),
            &f.labels.as_slice().unwrap()[a..b],
            &paths[a..b],
            &[],
        )
        .unwrap();
    }
    drop(w); // never finished
             // A resume with other views settings is refused, naming them.
    let o = extract(
        &data,
        &resumed,
        &["--views", "5", "--seed", "9", "--resume"],
    );
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(txt.contains("augmented views"), "{txt}");
    done(extract(
        &data,
        &resumed,
        &["--views", "5", "--seed", "3", "--resume"],
    ));
    let r = store::read(&resumed).unwrap();
    assert_eq!(r.views, f.views, "resumed = uninterrupted");
    assert_eq!(r.data, f.data);
    assert_eq!(r.skipped, f.skipped);

    // Bad flags are refused before any work.
    let o = extract(&data, &t.path().join("x.h5"), &["--views", "1"]);
    assert!(
        common::text(&o).contains("at least 2"),
        "{}",
        common::text(&o)
    );
    let o = extract(&data, &t.path().join("x.h5"), &["--augment", "light"]);
    assert!(!o.status.success(), "--augment needs --views");
}

#[test]
fn h5py_reads_views_and_merged_shards_carry_them() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let whole = t.path().join("whole.h5");
    let light = ["--views", "3", "--augment", "light", "--seed", "11"];
    done(extract(&data, &whole, &light));
    let mut shards = Vec::new();
    for i in 0..3 {
        let s = t.path().join(format!("s{i}.h5"));
        let shard = format!("{i}/3");
        let mut args = light.to_vec();
        args.extend(["--shard", shard.as_str()]);
        done(extract(&data, &s, &args));
        shards.push(s);
    }
    let merged = t.path().join("merged.h5");
    let mut args = vec!["merge", "--out", merged.to_str().unwrap()];
    args.extend(shards.iter().map(|s| s.to_str().unwrap()));
    done(common::xfer(&args));
    let (w, m) = (store::read(&whole).unwrap(), store::read(&merged).unwrap());
    assert!(w.views.is_some());
    assert_eq!(m.views, w.views, "merged views = unsharded views");
    assert_eq!(m.data, w.data);
    assert_eq!(m.provenance.unwrap().augment, w.provenance.unwrap().augment);

    let python = {
        let venv = common::repo().join(".venv/bin/python");
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        }
    };
    let script = r#"
import sys, json, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r')
v, d = f['views'][:], f['data'][:]
aug = json.loads(f.attrs['augment'])
print(json.dumps({"shape": list(v.shape), "dtype": str(v.dtype), "centre": bool(np.array_equal(v[:, 0], d)),
                  "k": int(f.attrs['views']), "recipe": aug['recipe']['name'], "sum": float(v.astype('f8').sum())}))
"#;
    let o = std::process::Command::new(python)
        .args(["-c", script, whole.to_str().unwrap()])
        .output()
        .expect("python with h5py (tools/setup.sh installs it)");
    assert!(o.status.success(), "{}", common::text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["shape"], serde_json::json!([27, 3, 8]));
    assert_eq!(j["dtype"], "float32");
    assert_eq!(j["centre"], true);
    assert_eq!(j["k"], 3);
    assert_eq!(j["recipe"], "light");
    let ours: f64 = w.views.unwrap().iter().map(|&x| x as f64).sum();
    assert!((j["sum"].as_f64().unwrap() - ours).abs() < 1e-6 * ours.abs().max(1.0));
}

#[test]
fn training_on_views_uses_and_records_them() {
    let t = tempfile::tempdir().unwrap();
    let data = dataset(t.path());
    let v = t.path().join("v.h5");
    done(extract(&data, &v, &["--views", "4"]));
    let out = t.path().join("heads");
    let o = common::xfer(&[
        "train",
        "--train",
        v.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "3",
    ]);
    let txt = common::text(&o);
    assert!(o.status.success(), "{txt}");
    assert!(txt.contains("views: 4 per image"), "{txt}");
    let meta = |name: &str| -> serde_json::Value {
        let bytes = std::fs::read(out.join(name)).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        serde_json::from_str(header["__metadata__"]["xfer"].as_str().unwrap()).unwrap()
    };
    let mlp = meta("mlp.safetensors");
    let views = &mlp["training"]["views"];
    assert_eq!(views["k"], 4, "{mlp}");
    assert_eq!(views["augment"]["recipe"]["name"], "tutorial");
    assert!(views["used"]
        .as_str()
        .unwrap()
        .contains("one view per image per epoch"));
    let logistic = meta("logistic.safetensors");
    assert!(logistic["training"]["views"]["used"]
        .as_str()
        .unwrap()
        .contains("centre view only"));
    // The MLP really trains on the views: the same run on the plain centre
    // features ends with other weights.
    let plain = t.path().join("plain.h5");
    done(extract(&data, &plain, &[]));
    let out2 = t.path().join("plain_heads");
    done(common::xfer(&[
        "train",
        "--train",
        plain.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--epochs",
        "3",
        "--head",
        "mlp",
    ]));
    assert_ne!(
        std::fs::read(out.join("mlp.safetensors")).unwrap(),
        std::fs::read(out2.join("mlp.safetensors")).unwrap()
    );
    assert!(meta_of(&out2.join("mlp.safetensors"))["training"]
        .get("views")
        .is_none());
}

fn meta_of(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_str(header["__metadata__"]["xfer"].as_str().unwrap()).unwrap()
}
