//! A bundle whose metadata disagree with its own tensors, or whose numbers are
//! not finite, is refused by `Bundle::load` with a message naming what
//! disagrees and what to do, never accepted to fail (or panic) later. Bundles
//! are written by the library, then tampered with through the `safetensors` crate.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::array;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use xfer::ship::bundle::{BackboneRef, Bundle};
use xfer::train::head::{HeadKind, Mlp, MlpConfig, Rng, Standardize};

fn refs() -> Vec<BackboneRef> {
    vec![
        BackboneRef {
            name: "a".into(),
            model_sha256: "11".into(),
            preprocess: "{}".into(),
            n_features: 3,
            decode: String::new(),
            pooling: String::new(),
            precision: String::new(),
            inference_precision: String::new(),
        },
        BackboneRef {
            name: "b".into(),
            model_sha256: "22".into(),
            preprocess: "{}".into(),
            n_features: 2,
            decode: String::new(),
            pooling: String::new(),
            precision: String::new(),
            inference_precision: String::new(),
        },
    ]
}

/// 5 features (a 3 + b 2) → hidden 4 → 3 classes, standardised.
fn good_bundle() -> Bundle {
    let mut cfg = MlpConfig::tutorial(5, 3);
    cfg.hidden = vec![4];
    Bundle::new(
        HeadKind::Mlp,
        Mlp::new(cfg, &mut Rng::new(7)),
        Some(Standardize {
            mean: array![1.0, 0.0, 0.0, 2.0, 0.0],
            scale: array![2.0, 1.0, 1.0, 1.0, 4.0],
        }),
        vec!["x".into(), "y".into(), "z".into()],
        refs(),
        serde_json::json!({}),
        serde_json::json!({}),
    )
}

fn write_good(dir: &Path) -> PathBuf {
    let p = dir.join("head.safetensors");
    good_bundle().save(&p).unwrap();
    Bundle::load(&p).expect("the untouched bundle loads");
    p
}

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Rewrites the bundle at `p` after `edit` changed its metadata JSON and tensors.
fn tamper(p: &Path, edit: impl FnOnce(&mut serde_json::Value, &mut Tensors)) {
    let buf = std::fs::read(p).unwrap();
    let (_, header) = SafeTensors::read_metadata(&buf).unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()["xfer"]).unwrap();
    let st = SafeTensors::deserialize(&buf).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect();
    edit(&mut meta, &mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let md = HashMap::from([("xfer".to_string(), meta.to_string())]);
    std::fs::write(p, safetensors::serialize(views, Some(md)).unwrap()).unwrap();
}

/// Loads a tampered bundle: an error (not a panic) that names the file, contains
/// every one of `needles` and says what to do.
fn refused(edit: impl FnOnce(&mut serde_json::Value, &mut Tensors), needles: &[&str]) -> String {
    let t = tempfile::tempdir().unwrap();
    let p = write_good(t.path());
    tamper(&p, edit);
    let e = Bundle::load(&p).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("head.safetensors"), "{e}");
    for n in needles {
        assert!(e.contains(n), "missing {n:?} in: {e}");
    }
    assert!(e.contains("train again") || e.contains("xfer train"), "{e}");
    e
}

#[test]
fn untouched_bundle_loads_and_tamper_roundtrips() {
    let t = tempfile::tempdir().unwrap();
    let p = write_good(t.path());
    tamper(&p, |_, _| {});
    let b = Bundle::load(&p).unwrap();
    assert_eq!(b.meta, good_bundle().meta);
}

#[test]
fn n_features_disagreeing_with_the_backbones() {
    refused(
        |m, _| m["architecture"]["n_features"] = 6.into(),
        &["backbones give 5 features (a 3 + b 2)", "head takes 6"],
    );
    refused(
        |m, _| m["backbones"][0]["n_features"] = 2.into(),
        &["backbones give 4 features (a 2 + b 2)", "head takes 5"],
    );
    refused(
        |m, _| m["backbones"] = serde_json::json!([]),
        &["names no backbones"],
    );
}

#[test]
fn n_features_disagreeing_with_the_weights() {
    // Metadata consistent with themselves (6 = 4 + 2), not with the tensors.
    refused(
        |m, _| {
            m["architecture"]["n_features"] = 6.into();
            m["backbones"][0]["n_features"] = 4.into();
        },
        &[
            "layers.0.weight is F32 [4, 5]",
            "F32 [4, 6]",
            "n_features 6",
        ],
    );
}

#[test]
fn hidden_width_disagreeing_with_the_weights() {
    refused(
        |m, _| m["architecture"]["hidden"] = serde_json::json!([8]),
        &["layers.0.weight", "[8, 5]", "hidden [8]"],
    );
    // One more hidden layer than the tensors hold.
    refused(
        |m, _| m["architecture"]["hidden"] = serde_json::json!([4, 4]),
        &["layers.1.weight is F32 [3, 4]", "[4, 4]"],
    );
}

#[test]
fn class_names_disagreeing_with_the_outputs() {
    refused(
        |m, _| m["class_names"] = serde_json::json!(["x", "y"]),
        &["names 2 classes (x, y)", "3 outputs"],
    );
    refused(
        |m, _| m["architecture"]["n_classes"] = 4.into(),
        &["names 3 classes", "4 outputs"],
    );
    // Names and n_classes agree (4), the last layer has 3 outputs.
    refused(
        |m, _| {
            m["architecture"]["n_classes"] = 4.into();
            m["class_names"] = serde_json::json!(["w", "x", "y", "z"]);
        },
        &["layers.1.weight is F32 [3, 4]", "[4, 4]", "n_classes 4"],
    );
    refused(
        |m, _| m["class_names"] = serde_json::json!(["x", "y", "x"]),
        &["class \"x\" twice"],
    );
}

#[test]
fn standardisation_vectors_of_the_wrong_length_or_presence() {
    refused(
        |_, t| {
            t.insert(
                "standardize.mean".into(),
                (Dtype::F32, vec![4], f32s(&[0.0; 4])),
            );
        },
        &["standardize.mean is F32 [4]", "F32 [5]"],
    );
    refused(
        |_, t| {
            t.remove("standardize.scale");
        },
        &["has no tensor standardize.scale"],
    );
    refused(
        |m, _| m["standardized"] = false.into(),
        &["standardize.mean, standardize.scale", "not standardised"],
    );
}

#[test]
fn weights_that_are_not_finite() {
    refused(
        |_, t| {
            let w = &mut t.get_mut("layers.1.weight").unwrap().2;
            w[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        },
        &["layers.1.weight", "not finite", "flat index 2", "NaN"],
    );
    refused(
        |_, t| {
            let b = &mut t.get_mut("layers.0.bias").unwrap().2;
            b[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        },
        &["layers.0.bias", "not finite", "inf"],
    );
    refused(
        |_, t| {
            let s = &mut t.get_mut("standardize.scale").unwrap().2;
            s[4..8].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
        },
        &["standardize.scale", "not finite"],
    );
    refused(
        |_, t| {
            let s = &mut t.get_mut("standardize.scale").unwrap().2;
            s[4..8].copy_from_slice(&0f32.to_le_bytes());
        },
        &["standardize.scale[1] is 0", "positive"],
    );
}

/// Finite but absurd values from an edited bundle: a temperature outside the
/// range calibration fits in (it would make every prediction 100 % or
/// uniform), weights beyond 10⁶ in magnitude. The error says the bound.
#[test]
fn finite_but_absurd_temperature_and_weights() {
    for t in [1e-30f64, 0.01, 25.0, 1e30] {
        refused(
            |m, _| m["temperature"] = serde_json::json!(t),
            &["temperature", "outside 0.05..=20"],
        );
    }
    refused(
        |_, t| {
            let w = &mut t.get_mut("layers.1.weight").unwrap().2;
            w[8..12].copy_from_slice(&3e7f32.to_le_bytes());
        },
        &["layers.1.weight", "flat index 2", "bound of 1e6"],
    );
    refused(
        |_, t| {
            let b = &mut t.get_mut("layers.0.bias").unwrap().2;
            b[0..4].copy_from_slice(&(-1e9f32).to_le_bytes());
        },
        &["layers.0.bias", "bound of 1e6"],
    );
    // The bounds themselves are accepted.
    let t = tempfile::tempdir().unwrap();
    let p = write_good(t.path());
    tamper(&p, |m, t| {
        m["temperature"] = serde_json::json!(20.0);
        let w = &mut t.get_mut("layers.1.weight").unwrap().2;
        w[0..4].copy_from_slice(&(-1e6f32).to_le_bytes());
    });
    Bundle::load(&p).unwrap();
}

#[test]
fn other_tensor_types_and_extra_tensors() {
    refused(
        |_, t| {
            let e = t.get_mut("layers.0.bias").unwrap();
            e.0 = Dtype::I32;
        },
        &["layers.0.bias is I32 [4]", "F32 [4]"],
    );
    refused(
        |_, t| {
            t.insert(
                "layers.2.weight".into(),
                (Dtype::F32, vec![1], f32s(&[1.0])),
            );
        },
        &["layers.2.weight", "do not describe"],
    );
}

#[test]
fn invalid_architecture_and_unreadable_metadata() {
    refused(
        |m, _| m["architecture"]["dropout"] = 1.5.into(),
        &["architecture is invalid", "dropout"],
    );
    refused(
        |m, _| m["architecture"] = serde_json::json!("mlp"),
        &["unreadable xfer metadata"],
    );
}

#[test]
fn truncated_bundle_is_refused_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let p = write_good(t.path());
    let buf = std::fs::read(&p).unwrap();
    std::fs::write(&p, &buf[..buf.len() - 10]).unwrap();
    let e = Bundle::load(&p).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("head.safetensors"), "{e}");
    assert!(e.contains("xfer train"), "{e}");
}

#[test]
fn save_is_atomic_and_refuses_an_inconsistent_bundle() {
    let t = tempfile::tempdir().unwrap();
    let p = write_good(t.path());
    let before = std::fs::read(&p).unwrap();
    // Saving over it leaves only the bundle (no temporary file).
    good_bundle().save(&p).unwrap();
    let names: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["head.safetensors"]);
    // A diverged head (NaN weights) is not written; the old file stays.
    let mut b = good_bundle();
    b.mlp.layers[0].weight[[0, 0]] = f32::NAN;
    let e = b.save(&p).unwrap_err().to_string();
    assert!(
        e.contains("cannot be saved") && e.contains("layers.0.weight") && e.contains("train again"),
        "{e}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), before);
    // Class names that do not match the head: not written either.
    let mut b = good_bundle();
    b.meta.class_names.pop();
    let q = t.path().join("other.safetensors");
    assert!(b.save(&q).is_err());
    assert!(!q.exists());
    // No folder to write in: an error naming the file.
    let e = good_bundle()
        .save(&t.path().join("no/such/head.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no/such/head.safetensors") && e.contains("run again"),
        "{e}"
    );
}
