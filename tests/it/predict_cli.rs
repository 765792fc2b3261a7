//! `xfer predict` and the slim `xfer-predict` on the tiny generated ONNX model
//! and generated images: one truth (both front ends and `xfer evaluate` on
//! features extracted from the same images give the same probabilities), the
//! bundle checked against the backbone's sha256 and preprocessing, bad files,
//! Kaggle submissions, devices and set-up errors.

use crate::common::{self, ok, s, slim, xfer};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use xfer::ship::bundle::{BackboneRef, Bundle};
use xfer::train::head::mlp::{Mlp, MlpConfig};
use xfer::train::head::{HeadKind, Rng};

fn tiny_zoo() -> PathBuf {
    common::repo().join("tests/fixtures/tiny")
}

/// A predictions CSV (`path,class,<class…>`): class names and rows keyed by
/// path relative to `root` (paths outside `root` are kept as they are).
struct Csv {
    classes: Vec<String>,
    rows: BTreeMap<String, (String, Vec<f32>)>,
}

fn read_csv(path: &Path, root: Option<&Path>) -> Csv {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..2], ["path", "class"]);
    let mut rows = BTreeMap::new();
    for line in lines {
        assert!(!line.contains('"'), "test paths need no quoting: {line}");
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        let mut p = PathBuf::from(f[0]);
        if let Some(r) = root {
            if let Ok(rel) = p.strip_prefix(r) {
                p = rel.to_owned();
            }
        }
        let probs = f[2..].iter().map(|v| v.parse::<f32>().unwrap()).collect();
        rows.insert(p.display().to_string(), (f[1].to_string(), probs));
    }
    Csv {
        classes: header[2..].iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

/// The largest |Δp| between two prediction files over the same images.
fn max_diff(a: &Csv, b: &Csv) -> f32 {
    assert_eq!(a.classes, b.classes);
    assert_eq!(
        a.rows.keys().collect::<Vec<_>>(),
        b.rows.keys().collect::<Vec<_>>(),
        "the same images"
    );
    let mut worst = 0f32;
    for (k, (_, pa)) in &a.rows {
        let pb = &b.rows[k].1;
        for (x, y) in pa.iter().zip(pb) {
            worst = worst.max((x - y).abs());
        }
        assert!((pa.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{k}: {pa:?}");
    }
    worst
}

/// Extracts features of `data` with the tiny model.
fn extract(data: &Path, out: &Path, preset: &str) {
    ok(common::tiny_extract(
        data,
        out,
        &["--batch", "5", "--preset", preset],
    ));
}

/// A trained MLP and logistic head on `train` (feature files, one per backbone).
fn train(train: &[&Path], out: &Path) {
    let mut args = vec!["train"];
    for f in train {
        args.extend(["--train", s(f)]);
    }
    args.extend([
        "--out",
        s(out),
        "--optim",
        "adam",
        "--epochs",
        "15",
        "--batch",
        "8",
        "--hidden",
        "16",
        "--standardize",
    ]);
    ok(xfer(&args));
}

#[test]
fn predict_slim_predict_and_evaluate_agree() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["cat", "dog", "fox"], 7);
    let native = t.path().join("native.h5");
    let tutorial = t.path().join("tutorial.h5");
    extract(&data, &native, "native");
    extract(&data, &tutorial, "tutorial");
    // One backbone, and two "backbones" side by side (the tutorial's method 3:
    // the tiny model with its own recipe and with the tutorial's).
    let runs: [(&str, Vec<&Path>); 2] = [("one", vec![&native]), ("two", vec![&native, &tutorial])];
    for (name, files) in runs {
        let out = t.path().join(name);
        train(&files, &out);
        for head in ["mlp", "logistic"] {
            let bundle = out.join(format!("{head}.safetensors"));
            let ev = t.path().join(format!("{name}-{head}-evaluate.csv"));
            let mut args = vec!["evaluate", "--bundle", s(&bundle)];
            for f in &files {
                args.extend(["--features", s(f)]);
            }
            args.extend(["--csv", s(&ev)]);
            ok(xfer(&args));
            // An existing --csv file is replaced only with --overwrite.
            let before = std::fs::read(&ev).unwrap();
            let o = xfer(&args);
            assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
            assert!(common::text(&o).contains("--overwrite"));
            args.push("--overwrite");
            ok(xfer(&args));
            assert_eq!(std::fs::read(&ev).unwrap(), before);
            let p1 = t.path().join(format!("{name}-{head}-predict.csv"));
            let p2 = t.path().join(format!("{name}-{head}-slim.csv"));
            // Different batch sizes: batching must not change the result.
            let o = ok(xfer(&[
                "predict",
                "--zoo",
                s(&tiny_zoo()),
                "--bundle",
                s(&bundle),
                s(&data),
                "--csv",
                s(&p1),
                "--batch",
                "4",
            ]));
            let table = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(
                table.starts_with("path") && table.contains("probability"),
                "{table}"
            );
            assert_eq!(table.lines().count(), 22, "{table}");
            ok(slim(&[
                "--zoo",
                s(&tiny_zoo()),
                "--bundle",
                s(&bundle),
                s(&data),
                "--csv",
                s(&p2),
                "--quiet",
            ]));
            let e = read_csv(&ev, None);
            let a = read_csv(&p1, Some(&data));
            let b = read_csv(&p2, Some(&data));
            assert_eq!(e.rows.len(), 21);
            assert_eq!(e.classes, ["cat", "dog", "fox"]);
            for (what, x, y) in [
                ("predict vs evaluate", &a, &e),
                ("xfer-predict vs evaluate", &b, &e),
                ("predict vs xfer-predict", &a, &b),
            ] {
                let d = max_diff(x, y);
                eprintln!("{name} {head}: {what}: max abs diff {d:e}");
                assert!(d <= 1e-5, "{name} {head}: {what} differ by {d}");
            }
        }
    }
}

#[test]
fn one_image_kaggle_submission_top_k_and_bad_files() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["cat", "dog", "fox"], 4);
    let f = t.path().join("f.h5");
    extract(&data, &f, "native");
    let out = t.path().join("run");
    train(&[&f], &out);
    let bundle = out.join("mlp.safetensors");
    let zoo = tiny_zoo();

    // One image, top 3: one row with three classes.
    let img = data.join("dog/0001.png");
    let o = ok(slim(&[
        "--zoo",
        s(&zoo),
        "--bundle",
        s(&bundle),
        s(&img),
        "--top-k",
        "3",
    ]));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("top 3"), "{stdout}");
    for c in ["cat", "dog", "fox"] {
        assert!(lines[1].contains(c), "{stdout}");
    }

    // A Kaggle-style test folder with bad files among the good ones.
    let test1 = t.path().join("test1");
    std::fs::create_dir_all(&test1).unwrap();
    for (i, id) in [1u32, 2, 10].iter().enumerate() {
        common::pattern(45, 41, 50 + i as u32)
            .save(test1.join(format!("{id}.jpg")))
            .unwrap();
    }
    std::fs::write(test1.join("7.jpg"), b"").unwrap();
    std::fs::write(test1.join("8.png"), b"not an image").unwrap();
    std::fs::write(test1.join("notes.txt"), b"ignored").unwrap();
    let sub = t.path().join("submission.csv");
    let base = [
        "--zoo",
        s(&zoo),
        "--bundle",
        s(&bundle),
        s(&test1),
        "--kaggle",
        s(&sub),
    ];
    // Three classes: which one is "label" must be said.
    let o = slim(&base);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("pass --positive CLASS"),
        "{}",
        common::text(&o)
    );
    assert!(!sub.exists());
    let mut args = base.to_vec();
    args.extend(["--positive", "dog", "--clip", "0.01", "--quiet"]);
    let o = slim(&args);
    let txt = common::text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "bad files set the exit status: {txt}"
    );
    assert!(
        txt.contains("7.jpg: empty file") && txt.contains("8.png"),
        "{txt}"
    );
    let csv = std::fs::read_to_string(&sub).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "id,label");
    let ids: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["1", "2", "7", "8", "10"],
        "sorted by number, every id"
    );
    assert!(txt.contains("label 0.5"), "{txt}");
    for r in &rows[1..] {
        let p: f32 = r.split(',').nth(1).unwrap().parse().unwrap();
        assert!((0.01..=0.99).contains(&p), "{r}");
    }
    assert!(rows.contains(&"7,0.5") && rows.contains(&"8,0.5"), "{csv}");
    // The label is P(dog) of the CSV output, clipped.
    let full = t.path().join("full.csv");
    let o = xfer(&[
        "predict",
        "--zoo",
        s(&zoo),
        "--bundle",
        s(&bundle),
        s(&test1),
        "--csv",
        s(&full),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", common::text(&o));
    let c = read_csv(&full, Some(&test1));
    for r in rows[1..]
        .iter()
        .filter(|r| !r.starts_with("7,") && !r.starts_with("8,"))
    {
        let (id, label) = r.split_once(',').unwrap();
        let p = c.rows[&format!("{id}.jpg")].1[1].clamp(0.01, 0.99);
        assert_eq!(label.parse::<f32>().unwrap(), p);
    }
    // Outputs are not replaced silently.
    let o = slim(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::text(&o).contains("--overwrite"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn bundle_is_checked_against_the_backbone() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 3);
    let f = t.path().join("f.h5");
    extract(&data, &f, "native");
    let out = t.path().join("run");
    ok(xfer(&[
        "train",
        "--train",
        s(&f),
        "--out",
        s(&out),
        "--head",
        "mlp",
        "--epochs",
        "1",
        "--hidden",
        "4",
    ]));
    let bundle = out.join("mlp.safetensors");
    let manifest = std::fs::read_to_string(common::tiny_manifest()).unwrap();
    let zoo = |name: &str, text: &str| -> PathBuf {
        let dir = t.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tiny.toml"), text).unwrap();
        std::fs::copy(tiny_zoo().join("tiny.onnx"), dir.join("tiny.onnx")).unwrap();
        dir
    };
    let predict = |zoo: &Path| slim(&["--zoo", s(zoo), "--bundle", s(&bundle), s(&data)]);

    // Another model under the same name: both sha256 are named.
    let real_sha = "4173d4e131615eab";
    let other = manifest.replace(real_sha, "0000000000000000");
    let o = predict(&zoo("other-model", &other));
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains(real_sha) && txt.contains("0000000000000000") && txt.contains("--zoo DIR"),
        "{txt}"
    );

    // Same model, changed preprocessing: both recipes are named.
    let resized = manifest.replace("resize = 36", "resize = 40");
    let o = predict(&zoo("other-recipe", &resized));
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("\"resize\":36")
            && txt.contains("\"resize\":40")
            && txt.contains("preprocessing changed"),
        "{txt}"
    );

    // No such backbone in the zoo.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = predict(&empty);
    assert!(
        common::text(&o).contains("not in the zoo"),
        "{}",
        common::text(&o)
    );

    // A head trained on tutorial-layout files (no provenance) cannot be used on images.
    let refs = vec![BackboneRef {
        name: "resnet152".into(),
        model_sha256: String::new(),
        preprocess: String::new(),
        n_features: 8,
        decode: String::new(),
        pooling: String::new(),
        precision: String::new(),
        inference_precision: String::new(),
    }];
    let mut cfg = MlpConfig::tutorial(8, 2);
    cfg.hidden = vec![4];
    let b = Bundle::new(
        HeadKind::Mlp,
        Mlp::new(cfg, &mut Rng::new(0)),
        None,
        vec!["cat".into(), "dog".into()],
        refs,
        serde_json::json!({}),
        serde_json::json!({}),
    );
    let tut = t.path().join("tutorial.safetensors");
    b.save(&tut).unwrap();
    let o = slim(&["--zoo", s(&tiny_zoo()), "--bundle", s(&tut), s(&data)]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("without provenance") && txt.contains("xfer extract"),
        "{txt}"
    );
}

#[test]
fn bad_flags_fail_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("x.png");
    common::pattern(40, 40, 1).save(&img).unwrap();
    let csv = t.path().join("exists.csv");
    std::fs::write(&csv, "x").unwrap();
    let missing_bundle = t.path().join("nope.safetensors");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--bundle", s(&missing_bundle), s(&img)], "xfer train"),
        (
            vec!["--bundle", s(&img), s(&img), "--top-k", "0"],
            "--top-k",
        ),
        (
            vec!["--bundle", s(&img), "/no/such/image.jpg"],
            "does not exist",
        ),
        (
            vec!["--bundle", s(&img), s(&img), "--csv", s(&csv)],
            "--overwrite",
        ),
    ];
    for (args, want) in cases {
        for o in [slim(&args), xfer(&[&["predict"][..], &args[..]].concat())] {
            let txt = common::text(&o);
            assert_eq!(o.status.code(), Some(1), "{txt}");
            assert!(txt.contains(want), "{want}: {txt}");
        }
    }
    // Not a bundle.
    let o = slim(&["--bundle", s(&img), s(&img)]);
    assert!(
        common::text(&o).contains("not a safetensors file"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn devices_and_missing_onnx_runtime() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 2);
    let f = t.path().join("f.h5");
    extract(&data, &f, "native");
    let out = t.path().join("run");
    ok(xfer(&[
        "train",
        "--train",
        s(&f),
        "--out",
        s(&out),
        "--head",
        "mlp",
        "--epochs",
        "1",
        "--hidden",
        "4",
    ]));
    let bundle = out.join("mlp.safetensors");
    let zoo = tiny_zoo();
    let base = [
        "--zoo",
        s(&zoo),
        "--bundle",
        s(&bundle),
        s(&data),
        "--device",
        "cuda",
    ];
    let o = slim(&base);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("CUDAExecutionProvider is not available")
            && txt.contains("--allow-cpu-fallback"),
        "{txt}"
    );
    let mut fallback = base.to_vec();
    fallback.push("--allow-cpu-fallback");
    let o = ok(slim(&fallback));
    assert!(common::text(&o).contains("on CPU"), "{}", common::text(&o));

    common::assert_missing_ort_is_clear(
        Command::new(common::XFER_PREDICT)
            .args(&base[..5])
            .current_dir(common::repo()),
    );
}

#[test]
fn prediction_refuses_another_jpeg_decoding_than_training() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["cat", "dog"], 6);
    let feats = t.path().join("f.h5");
    extract(&data, &feats, "native");
    let out = t.path().join("run");
    train(&[&feats], &out);
    let bundle = out.join("mlp.safetensors");
    let b = Bundle::load(&bundle).unwrap();
    assert_eq!(b.meta.backbones[0].decode, "jpeg_scaled");
    let o = xfer(&[
        "predict",
        "--zoo",
        s(&tiny_zoo()),
        "--bundle",
        s(&bundle),
        s(&data),
        "--full-jpeg-decode",
    ]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("decoded as jpeg_scaled") && txt.contains("leave out --full-jpeg-decode"),
        "{txt}"
    );
    ok(xfer(&[
        "predict",
        "--zoo",
        s(&tiny_zoo()),
        "--bundle",
        s(&bundle),
        s(&data),
    ]));
}
