//! Shipping, end to end on real photos with the real EfficientNet-Lite0: a head
//! trained on Tux Paint photo cut-outs (the split of tests/it/predict_e2e.rs), then
//!
//! - `xfer export`: the ONNX file, run by ONNX Runtime from Rust and from Python
//!   (tools/check_export.py) on xfer's preprocessed tensors of the held-out
//!   photos, gives the probabilities of `xfer predict` within 1e-5 (the MLP
//!   head, with ReLU, and the standardised logistic one);
//! - `xfer package --tar`: the tarball, unpacked into an empty folder and run
//!   from another empty folder with `env -i` (an empty HOME, PATH=/usr/bin:/bin:
//!   no repository, no cargo, no Python), gives the probabilities of `xfer
//!   predict` within 1e-5. The slim predictor is built first, with the
//!   packaged command, into its own target folder (target/slim).
//!
//! Needs what the test command's set-up provides (tools/setup.sh): the ONNX
//! Runtime library, `onnx/efficientnet_lite0.onnx`, `data/stamps`, `.venv`.

use crate::common::{self, s, xfer_ok};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array2, Array4, Ix2};
use xfer::images::preprocess::DecodeOptions;
use xfer::models::zoo::Zoo;
use xfer::ship::bundle::Bundle;

/// A little-endian float32 .npy file (format 1.0).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut buf = b"\x93NUMPY\x01\x00".to_vec();
    buf.extend_from_slice(&(header.len() as u16).to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    buf.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, buf).unwrap();
}

/// xfer's preprocessed tensors of the images under `root` (the bundle's
/// recipe, the default decoding), with their paths relative to `root`.
fn tensors(bundle_path: &Path, root: &Path) -> (Vec<String>, Array4<f32>) {
    let bundle = Bundle::load(bundle_path).unwrap();
    let zoo = Zoo::locate(Some(&common::repo().join("onnx")));
    let resolved = xfer::ship::predict::resolve_backbones(&bundle, bundle_path, &zoo).unwrap();
    let recipe = &resolved[0].recipe;
    let images = xfer::ship::predict::collect_inputs(&[root.to_owned()])
        .unwrap()
        .images;
    let c = recipe.crop as usize;
    let mut x = Array4::<f32>::zeros((images.len(), 3, c, c));
    for (i, p) in images.iter().enumerate() {
        let mut row = x.index_axis_mut(ndarray::Axis(0), i);
        xfer::images::preprocess::load_tensor(
            p,
            recipe,
            &DecodeOptions::default(),
            row.as_slice_mut().unwrap(),
        )
        .unwrap();
    }
    let names = images
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    (names, x)
}

fn run_exported(onnx: &Path, x: &Array4<f32>) -> Array2<f32> {
    let rt = common::runtime();
    let mut session = ort::session::Session::builder(&rt.env)
        .unwrap()
        .commit_from_file(onnx)
        .unwrap();
    let out = session
        .run(ort::inputs!["input" => ort::value::TensorRef::from_array_view(x.view()).unwrap()])
        .unwrap();
    out["probabilities"]
        .try_extract_array::<f32>()
        .unwrap()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .to_owned()
}

fn max_diff(names: &[String], probs: &Array2<f32>, reference: &BTreeMap<String, Vec<f32>>) -> f32 {
    assert_eq!(names.len(), reference.len());
    let mut worst = 0f32;
    for (name, row) in names.iter().zip(probs.rows()) {
        let r = &reference[name];
        assert_eq!(r.len(), row.len());
        for (a, b) in row.iter().zip(r) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

#[test]
fn exported_onnx_and_package_give_the_probabilities_of_xfer_predict() {
    common::setup_file("onnx/efficientnet_lite0.onnx");
    let python = common::repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tools/setup.sh",
        python.display()
    );
    let t = tempfile::tempdir().unwrap();
    let (train, test, _) = common::stamps_split(t.path());
    let ftrain = t.path().join("train.h5");
    xfer_ok(&[
        "extract",
        "--model",
        "efficientnet_lite0",
        "--data",
        s(&train),
        "--out",
        s(&ftrain),
        "--quiet",
    ]);
    let run_dir = t.path().join("run");
    xfer_ok(&[
        "train",
        "--train",
        s(&ftrain),
        "--out",
        s(&run_dir),
        "--quiet",
    ]);

    let mut predicted = BTreeMap::new();
    for head in ["mlp", "logistic"] {
        let bundle = run_dir.join(format!("{head}.safetensors"));
        let csv = t.path().join(format!("{head}.csv"));
        xfer_ok(&[
            "predict",
            "--bundle",
            s(&bundle),
            s(&test),
            "--csv",
            s(&csv),
            "--quiet",
        ]);
        let (_, reference) = common::read_predictions_csv(&csv, Some(&test));

        let onnx = t.path().join(format!("{head}.onnx"));
        xfer_ok(&["export", "--bundle", s(&bundle), "--onnx", s(&onnx)]);
        let (names, x) = tensors(&bundle, &test);
        let probs = run_exported(&onnx, &x);
        let d = max_diff(&names, &probs, &reference);
        eprintln!("{head}: exported ONNX under ONNX Runtime (Rust) vs xfer predict, {} photos: max |Δp| {d:e}", names.len());
        assert!(
            d <= 1e-5,
            "{head}: the exported model differs from xfer predict by {d}"
        );

        // The same check from Python: onnxruntime-python and onnx's checker.
        let (xn, pn) = (t.path().join("x.npy"), t.path().join("p.npy"));
        write_npy(&xn, x.shape(), x.as_slice().unwrap());
        let expected: Vec<f32> = names.iter().flat_map(|n| reference[n].clone()).collect();
        write_npy(&pn, &[names.len(), expected.len() / names.len()], &expected);
        let o = Command::new(&python)
            .arg(common::repo().join("tools/check_export.py"))
            .args([&onnx, &xn, &pn])
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&o.stdout).trim());
        assert!(
            o.status.success(),
            "tools/check_export.py\n{}",
            common::text(&o)
        );
        predicted.insert(head, reference);
    }

    // The package: built slim, tarred, unpacked and run elsewhere with nothing.
    common::build_slim();
    let bundle = run_dir.join("mlp.safetensors");
    let pkg = t.path().join("classifier");
    let o = xfer_ok(&[
        "package",
        "--bundle",
        s(&bundle),
        "--out",
        s(&pkg),
        "--tar",
        "--no-build",
    ]);
    let listing = String::from_utf8_lossy(&o.stdout);
    eprintln!("{listing}");
    for f in [
        "xfer-predict",
        "lib/libonnxruntime.so",
        "zoo/efficientnet_lite0.toml",
        "zoo/efficientnet_lite0.onnx",
        "bundle.safetensors",
        "predict.sh",
        "README.md",
    ] {
        assert!(listing.contains(f), "{f} not listed");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let (unpacked, cwd, home, photos) = (
        elsewhere.path().join("unpacked"),
        elsewhere.path().join("cwd"),
        elsewhere.path().join("home"),
        elsewhere.path().join("photos"),
    );
    for d in [&unpacked, &cwd, &home] {
        std::fs::create_dir(d).unwrap();
    }
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(t.path().join("classifier.tar.gz"))
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(untar.status.success(), "{}", common::text(&untar));
    // The photos copied out of the repository (the split holds symlinks into it).
    for e in walk(&test) {
        let dst = photos.join(e.strip_prefix(&test).unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&e, &dst).unwrap();
    }
    // Twice: the first run fills the package's model cache, the second starts from it.
    for run in ["first", "second (cached optimised graph)"] {
        let out_csv = cwd.join("out.csv");
        let o = Command::new(unpacked.join("classifier/predict.sh"))
            .args([s(&photos), "--csv", "out.csv", "--quiet", "--overwrite"])
            .current_dir(&cwd)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "packaged predict.sh\n{}",
            common::text(&o)
        );
        // No ONNX Runtime log lines (e.g. about saving the optimised graph).
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !stderr.contains("onnxruntime:") && !stderr.contains("warning"),
            "{stderr}"
        );
        let (_, got) = common::read_predictions_csv(&out_csv, Some(&photos));
        let reference = &predicted["mlp"];
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            reference.keys().collect::<Vec<_>>()
        );
        let worst = got
            .iter()
            .flat_map(|(k, v)| v.iter().zip(&reference[k]).map(|(a, b)| (a - b).abs()))
            .fold(0f32, f32::max);
        eprintln!(
            "package under env -i, {run} run, vs xfer predict, {} photos: max |Δp| {worst:e}",
            got.len()
        );
        assert!(
            worst <= 1e-5,
            "the package differs from xfer predict by {worst}"
        );
        let cached = std::fs::read_dir(unpacked.join("classifier/cache"))
            .unwrap()
            .count();
        assert_eq!(cached, 1, "one optimised graph in the package's cache");
    }
}

/// Files under `root`, symlinks followed.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
