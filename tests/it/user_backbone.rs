//! Your own backbone (`xfer models add`), checked against the libraries that
//! own the configs. The fixtures (tests/fixtures/backbones/, made by
//! tools/make_backbone_fixtures.py) are a tiny vision transformer (class
//! token + 2 register tokens, output `[N, 199, 32]`) and a tiny CNN with an
//! unpooled `[N, 12, 24, 24]` output, with a timm `config.json` and two
//! Hugging Face `preprocessor_config.json`s; `reference.json` holds the
//! features timm's `create_transform` / transformers' image processors (PIL),
//! onnxruntime (Python) and numpy pooling give on real photos, and the pooled
//! outputs on a fixed input.

use crate::common::{self, s, xfer_ok};

use std::path::PathBuf;

use serde_json::Value;
use xfer::models::add::{self as model_add, AddRequest, RecipeFlags};
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::zoo::{Pool, Zoo};

fn fixtures() -> PathBuf {
    common::repo().join("tests/fixtures/backbones")
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json")).unwrap())
        .unwrap()
}

fn pool_of(name: &str) -> Pool {
    serde_json::from_value(Value::String(name.into())).unwrap()
}

/// docs/models.md's claim: features of a user-added model agree with the
/// preprocessing of the library that wrote its config (timm, transformers)
/// with cosine ≥ 0.9999 on real photos, every pooling mode.
#[test]
fn features_match_timm_and_transformers_on_real_photos() {
    let r = reference();
    let t = tempfile::tempdir().unwrap();
    let (zoo, imgs) = (t.path().join("zoo"), t.path().join("imgs"));
    std::fs::create_dir_all(&imgs).unwrap();
    let photos: Vec<String> = r["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let src = common::setup_file(p.as_str().unwrap());
            let name = src.file_name().unwrap().to_str().unwrap().to_owned();
            std::fs::copy(&src, imgs.join(&name)).unwrap();
            name
        })
        .collect();
    for case in r["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let model = fixtures().join(case["model"].as_str().unwrap());
        let config = fixtures().join(case["config"].as_str().unwrap());
        let mut args = vec![
            "--zoo",
            s(&zoo),
            "models",
            "add",
            s(&model),
            "--name",
            name,
            "--config",
            s(&config),
            "--pool",
            case["pool"].as_str().unwrap(),
            "--prefix-tokens",
            "3",
        ];
        if case["l2"].as_bool().unwrap() {
            args.push("--l2");
        }
        xfer_ok(&args);
        let out = t.path().join(format!("{name}.h5"));
        xfer_ok(&[
            "--zoo",
            s(&zoo),
            "extract",
            "--model",
            name,
            "--data",
            s(&imgs),
            "--out",
            s(&out),
            "--quiet",
        ]);
        let f = xfer::features::store::read(&out).unwrap();
        let manifest = Zoo { dir: zoo.clone() }.find(name).unwrap();
        assert_eq!(
            f.provenance.as_ref().unwrap().pooling,
            manifest.output.pooling()
        );
        for (photo, want) in photos.iter().zip(case["features"].as_array().unwrap()) {
            let want: Vec<f32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let row = f
                .paths
                .as_ref()
                .unwrap()
                .iter()
                .position(|p| p == photo)
                .unwrap();
            let got = f.data.row(row).to_vec();
            assert_eq!(got.len(), want.len(), "{name}");
            let c = common::cosine(&got, &want);
            eprintln!("{name} {photo}: cosine {c:.7}");
            assert!(c >= 0.9999, "{name} on {photo}: cosine {c}");
        }
    }
}

/// Each pooling mode in xfer against numpy on the same model output (a fixed
/// input, so no preprocessing is involved): equal to 1e-5.
#[test]
fn pooling_modes_equal_numpy() {
    let r = reference();
    let rt = common::runtime();
    let t = tempfile::tempdir().unwrap();
    let zoo = Zoo {
        dir: t.path().to_owned(),
    };
    for (file, side, config) in [
        ("vit.onnx", 224usize, "timm_config.json"),
        ("cnn.onnx", 96, "hf_vit_preprocessor_config.json"),
    ] {
        let fixed = &r["fixed_input"][file];
        let n = 2 * 3 * side * side;
        let x: Vec<f32> = (0..n).map(|i| (0.001 * i as f64).sin() as f32).collect();
        let x = ndarray::Array4::from_shape_vec((2, 3, side, side), x).unwrap();
        for (mode, want) in fixed.as_object().unwrap() {
            if mode == "raw_shape" {
                continue;
            }
            let name = format!(
                "{}_{}",
                file.trim_end_matches(".onnx"),
                mode.replace('+', "_")
            );
            let req = AddRequest {
                onnx: fixtures().join(file),
                name: name.clone(),
                config: Some(fixtures().join(config)),
                output: None,
                pool: Some(pool_of(mode)),
                prefix_tokens: Some(3),
                l2: false,
                recipe: RecipeFlags::default(),
                command_line: "test".into(),
                force: false,
                weights: xfer::models::zoo::Weights::Pretrained,
            };
            let added = model_add::add(&rt, &zoo, &req).unwrap();
            let mut b = Backbone::load(&rt, &added.manifest, &SessionOptions::default()).unwrap();
            let got = b.run(x.view(), false).unwrap().features;
            let want: Vec<Vec<f64>> = serde_json::from_value(want.clone()).unwrap();
            assert_eq!(got.nrows(), 2);
            for (g, w) in got.outer_iter().zip(&want) {
                assert_eq!(g.len(), w.len(), "{name}");
                let worst = g
                    .iter()
                    .zip(w)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0.0, f64::max);
                assert!(worst <= 1e-5, "{name}: max |Δ| {worst}");
            }
        }
    }
}

#[test]
fn models_add_refuses_what_it_cannot_run_and_says_why() {
    let t = tempfile::tempdir().unwrap();
    let zoo = t.path().join("zoo");
    let add = |args: &[&str]| {
        let mut all = vec!["--zoo", s(&zoo), "models", "add"];
        all.extend_from_slice(args);
        common::xfer(&all)
    };
    let fx = fixtures();
    let (vit, cnn_fixed) = (fx.join("vit.onnx"), fx.join("cnn_fixed_batch.onnx"));
    let timm = fx.join("timm_config.json");
    let hf = fx.join("hf_vit_preprocessor_config.json");

    // A fixed batch size: refused with how to re-export.
    let o = add(&[s(&cnn_fixed), "--name", "c", "--config", s(&hf)]);
    let e = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("fixed batch size of 1") && e.contains("dynamic_axes"),
        "{e}"
    );

    // Several outputs and no --output: each is named with its shape.
    let tiny = common::repo().join("tests/fixtures/tiny/tiny.onnx");
    let o = add(&[s(&tiny), "--name", "t", "--mean", "0", "--std", "1"]);
    let e = common::text(&o);
    assert!(
        e.contains("--output NAME") && e.contains("`features`") && e.contains("`logits`"),
        "{e}"
    );
    // With it, an already pooled [N, 8] output needs no pooling.
    let o = add(&[
        s(&tiny),
        "--name",
        "t",
        "--mean",
        "0",
        "--std",
        "1",
        "--output",
        "features",
    ]);
    let e = common::text(&o);
    assert!(o.status.success() && e.contains("pooling: none"), "{e}");

    // No normalisation from anywhere: refused, naming the flags.
    let o = add(&[s(&vit), "--name", "v"]);
    assert!(
        common::text(&o).contains("--mean and --std"),
        "{}",
        common::text(&o)
    );

    // The crop must fit the graph's input.
    let o = add(&[
        s(&vit),
        "--name",
        "v",
        "--config",
        s(&timm),
        "--crop",
        "192",
    ]);
    assert!(
        common::text(&o).contains("takes 224×224"),
        "{}",
        common::text(&o)
    );

    // A token output cannot be average-pooled like a feature map.
    let o = add(&[
        s(&vit),
        "--name",
        "v",
        "--config",
        s(&timm),
        "--pool",
        "avg",
    ]);
    assert!(
        common::text(&o).contains("[N, C, H, W]"),
        "{}",
        common::text(&o)
    );

    // Unknown config keys are named in a warning; the name is then taken.
    let odd = t.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&timm).unwrap()).unwrap();
    cfg["pretrained_cfg"]["brand_new_knob"] = Value::from(3);
    std::fs::write(&odd, cfg.to_string()).unwrap();
    let o = add(&[s(&vit), "--name", "v", "--config", s(&odd)]);
    let e = common::text(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("warning") && e.contains("pretrained_cfg.brand_new_knob"),
        "{e}"
    );
    assert!(e.contains("pooling: cls"), "{e}");
    let o = add(&[s(&vit), "--name", "v", "--config", s(&timm)]);
    assert!(common::text(&o).contains("--force"), "{}", common::text(&o));
    xfer_ok(&[
        "--zoo",
        s(&zoo),
        "models",
        "add",
        s(&vit),
        "--name",
        "v",
        "--config",
        s(&timm),
        "--force",
    ]);
    let list = common::text(&xfer_ok(&["--zoo", s(&zoo), "models"]));
    assert!(
        list.contains("user-supplied ONNX file") && list.contains("cls "),
        "{list}"
    );
}

/// A head trained on a user-added backbone predicts through `xfer predict`,
/// `xfer-predict` and `xfer evaluate` with the same probabilities; a manifest
/// whose pooling changed since training is refused.
#[test]
fn bundle_on_a_user_backbone_predicts_through_all_three_paths() {
    let t = tempfile::tempdir().unwrap();
    let zoo = t.path().join("zoo");
    let fx = fixtures();
    let (vit, clip) = (
        fx.join("vit.onnx"),
        fx.join("hf_clip_preprocessor_config.json"),
    );
    let add = |pool: &str, force: bool| {
        let mut a = vec![
            "--zoo",
            s(&zoo),
            "models",
            "add",
            s(&vit),
            "--name",
            "tinyvit",
            "--config",
            s(&clip),
            "--pool",
            pool,
            "--prefix-tokens",
            "3",
        ];
        if force {
            a.push("--force");
        }
        xfer_ok(&a);
    };
    add("mean", false);
    // The stamp photos, every third held back.
    let (train, test, _) = common::stamps_split(t.path());
    let (ftrain, ftest) = (t.path().join("train.h5"), t.path().join("test.h5"));
    for (data, out) in [(&train, &ftrain), (&test, &ftest)] {
        xfer_ok(&[
            "--zoo",
            s(&zoo),
            "extract",
            "--model",
            "tinyvit",
            "--data",
            s(data),
            "--out",
            s(out),
            "--quiet",
        ]);
    }
    let run = t.path().join("run");
    xfer_ok(&[
        "train",
        "--train",
        s(&ftrain),
        "--head",
        "logistic",
        "--cv",
        "3",
        "--out",
        s(&run),
        "--quiet",
    ]);
    let bundle = run.join("logistic.safetensors");
    let (ev, p1, p2) = (
        t.path().join("ev.csv"),
        t.path().join("p1.csv"),
        t.path().join("p2.csv"),
    );
    xfer_ok(&[
        "evaluate",
        "--bundle",
        s(&bundle),
        "--features",
        s(&ftest),
        "--csv",
        s(&ev),
    ]);
    xfer_ok(&[
        "--zoo",
        s(&zoo),
        "predict",
        "--bundle",
        s(&bundle),
        s(&test),
        "--csv",
        s(&p1),
        "--quiet",
    ]);
    common::run_ok(
        common::XFER_PREDICT,
        &[
            "--zoo",
            s(&zoo),
            "--bundle",
            s(&bundle),
            s(&test),
            "--csv",
            s(&p2),
            "--quiet",
        ],
    );
    let (_, e) = common::read_predictions_csv(&ev, None);
    let (_, a) = common::read_predictions_csv(&p1, Some(&test));
    let (_, b) = common::read_predictions_csv(&p2, Some(&test));
    assert!(e.len() >= 20, "{} held-out photos", e.len());
    assert_eq!(e.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
    assert_eq!(e.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, pe) in &e {
        for ((p, q), r) in pe.iter().zip(&a[path]).zip(&b[path]) {
            assert!(
                (p - q).abs() <= 1e-5 && (p - r).abs() <= 1e-5,
                "{path}: {pe:?} {:?} {:?}",
                a[path],
                b[path]
            );
        }
    }
    // The same model pooled another way gives other features: refused.
    add("cls", true);
    let o = common::xfer(&[
        "--zoo",
        s(&zoo),
        "predict",
        "--bundle",
        s(&bundle),
        s(&test),
        "--quiet",
    ]);
    let e = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("pooled as mean, prefix_tokens 3") && e.contains("now pools as cls"),
        "{e}"
    );
}

/// `models add --pool` says the pooling it records; `--weights random` and
/// the licence a timm config names go into the manifest (issue 26).
#[test]
fn models_add_records_the_pooling_asked_random_weights_and_the_licence() {
    let t = tempfile::tempdir().unwrap();
    let zoo = t.path().join("zoo");
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("timm_config.json")).unwrap(),
    )
    .unwrap();
    cfg["pretrained_cfg"]["license"] = "apache-2.0".into();
    let config = t.path().join("config.json");
    std::fs::write(&config, cfg.to_string()).unwrap();
    let vit = fixtures().join("vit.onnx");
    let o = xfer_ok(&[
        "--zoo",
        s(&zoo),
        "models",
        "add",
        s(&vit),
        "--name",
        "v",
        "--config",
        s(&config),
        "--pool",
        "cls",
        "--weights",
        "random",
    ]);
    let out = common::text(&o);
    assert!(out.contains("pooling: cls (--pool)"), "{out}");
    let m = Zoo { dir: zoo.clone() }.find("v").unwrap();
    assert_eq!(m.weights, xfer::models::zoo::Weights::Random);
    assert!(
        m.weights_source.contains("random weights"),
        "{}",
        m.weights_source
    );
    assert_eq!(m.license, "apache-2.0");
    let text = std::fs::read_to_string(zoo.join("v.toml")).unwrap();
    assert!(
        text.contains("weights = \"random\"") && text.contains("license = \"apache-2.0\""),
        "{text}"
    );
}
