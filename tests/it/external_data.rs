//! Weights outside the `.onnx` file (ONNX external data, issue 26):
//! `tests/fixtures/tiny/tiny_ext.onnx` is tiny.onnx with every weight in
//! `tiny_ext.onnx.data` (tools/make_tiny_onnx.py, `onnx.save_model(...,
//! save_as_external_data=True)`). The model sha256 covers the data file, a
//! changed weight is refused, `package` carries the file and `export`
//! inlines it.

use crate::common::{self, s};

use std::path::{Path, PathBuf};

use ndarray::Array4;
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::onnx_data;
use xfer::models::zoo::{sha256_file, Manifest};

/// tiny_ext.onnx and its data file copied into a fresh folder.
fn copy_ext(dir: &Path) -> PathBuf {
    let fx = common::repo().join("tests/fixtures/tiny");
    for f in ["tiny_ext.onnx", "tiny_ext.onnx.data"] {
        std::fs::copy(fx.join(f), dir.join(f)).unwrap();
    }
    dir.join("tiny_ext.onnx")
}

/// tiny.toml pointed at `onnx` with `sha256`.
fn ext_manifest(onnx: &Path, sha256: &str) -> Manifest {
    let text = std::fs::read_to_string(common::tiny_manifest()).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("file = ") {
                format!("file = {:?}", onnx.file_name().unwrap().to_str().unwrap())
            } else if l.starts_with("sha256 = ") {
                format!("sha256 = {sha256:?}")
            } else if l.starts_with("name = \"tiny\"") {
                "name = \"tiny_ext\"".into()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    Manifest::from_toml_str(&text, &onnx.with_file_name("tiny_ext.toml")).unwrap()
}

#[test]
fn the_model_sha256_covers_its_external_data_and_a_changed_weight_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let onnx = copy_ext(t.path());
    assert_eq!(
        onnx_data::external_files(&onnx, &std::fs::read(&onnx).unwrap()).unwrap(),
        ["tiny_ext.onnx.data"]
    );
    // A self-contained model's sha256 is its file's, as before.
    let tiny = common::repo().join("tests/fixtures/tiny/tiny.onnx");
    assert_eq!(
        onnx_data::model_sha256(&tiny).unwrap(),
        sha256_file(&tiny).unwrap()
    );

    let sha = onnx_data::model_sha256(&onnx).unwrap();
    assert_ne!(
        sha,
        sha256_file(&onnx).unwrap(),
        "the data file is hashed too"
    );
    let manifest = ext_manifest(&onnx, &sha);
    manifest.verify_file().unwrap();

    // Its features are tiny.onnx's (ONNX Runtime reads the data file).
    let x = Array4::from_shape_fn((2, 3, 32, 32), |(n, c, h, w)| {
        ((n * 7 + c * 5 + h * 3 + w) as f32 * 0.37).sin()
    });
    let rt = common::runtime();
    let opts = SessionOptions::default();
    let want = Backbone::load(
        &rt,
        &Manifest::from_file(&common::tiny_manifest()).unwrap(),
        &opts,
    )
    .unwrap()
    .run(x.view(), false)
    .unwrap()
    .features;
    let got = Backbone::load(&rt, &manifest, &opts)
        .unwrap()
        .run(x.view(), false)
        .unwrap()
        .features;
    assert_eq!(got, want);

    // One weight changed in the data file: refused, the graph unchanged.
    let data = t.path().join("tiny_ext.onnx.data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let e = Backbone::load(&rt, &manifest, &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has sha256") && e.contains("but its manifest says"),
        "{e}"
    );

    // The data file missing: named, with what to do.
    std::fs::remove_file(&data).unwrap();
    let e = manifest.verify_file().unwrap_err().to_string();
    assert!(
        e.contains("tiny_ext.onnx.data, which is missing") && e.contains("next to the model"),
        "{e}"
    );
}

#[test]
fn a_location_outside_the_models_folder_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let onnx = copy_ext(t.path());
    // Same length as "tiny_ext.onnx.data", so the protobuf stays valid.
    let bytes = std::fs::read(&onnx).unwrap();
    let from = b"tiny_ext.onnx.data";
    let to = b"../../../etc/passw";
    let mut out = bytes.clone();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    std::fs::write(&onnx, &out).unwrap();
    let e = onnx_data::model_sha256(&onnx).unwrap_err().to_string();
    assert!(
        e.contains("../../../etc/passw") && e.contains("not a path inside the model's folder"),
        "{e}"
    );
}

/// `models add`, extract, train, then `export` (inlined: one self-contained
/// file) and `package` (the data file carried beside the model).
#[test]
fn export_inlines_and_package_carries_the_external_data() {
    let t = tempfile::tempdir().unwrap();
    let zoo = t.path().join("zoo");
    std::fs::create_dir(&zoo).unwrap();
    let onnx = copy_ext(&zoo);
    let ok = |args: &[&str]| {
        let o = common::xfer(args);
        assert!(o.status.success(), "xfer {args:?}\n{}", common::text(&o));
        o
    };
    ok(&[
        "--zoo",
        s(&zoo),
        "models",
        "add",
        s(&onnx),
        "--name",
        "tiny_ext",
        "--output",
        "features",
        "--resize",
        "36",
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
    ]);
    let m = Manifest::from_file(&zoo.join("tiny_ext.toml")).unwrap();
    assert_eq!(m.sha256, onnx_data::model_sha256(&onnx).unwrap());

    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 6);
    let feats = t.path().join("f.h5");
    ok(&[
        "--zoo",
        s(&zoo),
        "extract",
        "--model",
        "tiny_ext",
        "--data",
        s(&data),
        "--out",
        s(&feats),
        "--quiet",
    ]);
    let run = t.path().join("run");
    ok(&[
        "train",
        "--train",
        s(&feats),
        "--head",
        "logistic",
        "--cv",
        "2",
        "--out",
        s(&run),
        "--quiet",
    ]);
    let bundle = run.join("logistic.safetensors");

    let exported = t.path().join("one.onnx");
    ok(&[
        "--zoo",
        s(&zoo),
        "export",
        "--bundle",
        s(&bundle),
        "--onnx",
        s(&exported),
    ]);
    let bytes = std::fs::read(&exported).unwrap();
    assert!(onnx_data::external_files(&exported, &bytes)
        .unwrap()
        .is_empty());
    // It runs from another folder, where no data file lies.
    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(&exported, alone.path().join("one.onnx")).unwrap();
    let rt = common::runtime();
    let mut graph =
        xfer::models::backbone::Graph::open(&rt, &alone.path().join("one.onnx")).unwrap();
    // (shape, non-finite values)
    assert_eq!(
        graph.probe("input", 32, 1, "probabilities").unwrap(),
        (vec![1, 2], 0)
    );

    let pkg = t.path().join("pkg");
    let o = ok(&[
        "--zoo",
        s(&zoo),
        "package",
        "--bundle",
        s(&bundle),
        "--out",
        s(&pkg),
        "--predictor",
        s(&common::build_slim()),
    ]);
    assert!(
        common::text(&o).contains("tiny_ext.onnx.data"),
        "{}",
        common::text(&o)
    );
    assert_eq!(
        std::fs::read(pkg.join("zoo/tiny_ext.onnx.data")).unwrap(),
        std::fs::read(zoo.join("tiny_ext.onnx.data")).unwrap()
    );
    let packaged = Manifest::from_file(&pkg.join("zoo/tiny_ext.toml")).unwrap();
    packaged.verify_file().unwrap();
}
