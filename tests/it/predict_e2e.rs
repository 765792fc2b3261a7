//! End to end on real photos: EfficientNet-Lite0 (real ImageNet weights) on a
//! held-out split of Debian's Tux Paint photo cut-outs (4 classes): extract →
//! train with the default recipe (MLP, logistic, the recommended head) → evaluate and predict the held-back images with
//! `xfer predict` and `xfer-predict`. Asserts accuracy well above chance and
//! the three prediction paths equal within 1e-5.
//!
//! Needs what the test command's set-up provides: the ONNX Runtime library,
//! `onnx/efficientnet_lite0.onnx` (tools/setup.sh) and `data/stamps`
//! (tools/fetch_stamps.sh). Nothing is downloaded here.

use crate::common::{self, run_ok, s, xfer_ok};

use std::collections::BTreeMap;
use std::path::Path;

fn read_csv(path: &Path, root: Option<&Path>) -> (Vec<String>, BTreeMap<String, Vec<f32>>) {
    common::read_predictions_csv(path, root)
}

#[test]
fn stamps_extract_train_predict_agree_and_beat_chance() {
    common::setup_file("onnx/efficientnet_lite0.onnx");
    let t = tempfile::tempdir().unwrap();
    // A reproducible split: every third image of each class (sorted) is held back.
    let (train, test, classes) = common::stamps_split(t.path());
    assert_eq!(classes.len(), 4, "flowers, fruit, vegetables, vehicles");
    let (ftrain, ftest) = (t.path().join("train.h5"), t.path().join("test.h5"));
    for (data, out) in [(&train, &ftrain), (&test, &ftest)] {
        xfer_ok(&[
            "extract",
            "--model",
            "efficientnet_lite0",
            "--data",
            s(data),
            "--out",
            s(out),
        ]);
    }
    let run_dir = t.path().join("run");
    xfer_ok(&["train", "--train", s(&ftrain), "--out", s(&run_dir)]);
    // The default recipe: both heads calibrated on cross-validated predictions
    // (so the temperature must travel through all three prediction paths),
    // and the recommended one saved again as best.safetensors.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap())
            .unwrap();
    let temps: Vec<f64> = m["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["temperature"].as_f64().unwrap())
        .collect();
    assert!(temps.iter().any(|&t| t != 1.0), "temperatures {temps:?}");
    let recommended = m["recommended"].as_str().unwrap();
    assert_eq!(
        std::fs::read(run_dir.join("best.safetensors")).unwrap(),
        std::fs::read(run_dir.join(recommended)).unwrap()
    );
    for head in ["mlp", "logistic", "best"] {
        let bundle = run_dir.join(format!("{head}.safetensors"));
        let ev = t.path().join(format!("{head}-evaluate.csv"));
        xfer_ok(&[
            "evaluate",
            "--bundle",
            s(&bundle),
            "--features",
            s(&ftest),
            "--csv",
            s(&ev),
        ]);
        let p1 = t.path().join(format!("{head}-predict.csv"));
        let p2 = t.path().join(format!("{head}-slim.csv"));
        xfer_ok(&[
            "predict",
            "--bundle",
            s(&bundle),
            s(&test),
            "--csv",
            s(&p1),
            "--quiet",
        ]);
        run_ok(
            common::XFER_PREDICT,
            &[
                "--bundle",
                s(&bundle),
                s(&test),
                "--csv",
                s(&p2),
                "--quiet",
                "--batch",
                "7",
            ],
        );
        let (names, e) = read_csv(&ev, None);
        let (_, a) = read_csv(&p1, Some(&test));
        let (_, b) = read_csv(&p2, Some(&test));
        assert_eq!(names, ["flowers", "fruit", "vegetables", "vehicles"]);
        assert_eq!(e.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
        assert_eq!(e.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        let mut worst = 0f32;
        let mut correct = 0;
        for (path, pe) in &e {
            for (x, (y, z)) in pe.iter().zip(a[path].iter().zip(&b[path])) {
                worst = worst
                    .max((x - y).abs())
                    .max((x - z).abs())
                    .max((y - z).abs());
            }
            let class = path.split('/').next().unwrap();
            let best = (0..pe.len())
                .max_by(|&i, &j| a[path][i].total_cmp(&a[path][j]))
                .unwrap();
            correct += (names[best] == class) as usize;
        }
        let accuracy = correct as f64 / e.len() as f64;
        eprintln!("{head}: {correct}/{} held-out photos right ({:.1} %), max |Δp| between the three paths {worst:e}", e.len(), 100.0 * accuracy);
        assert!(
            worst <= 1e-5,
            "{head}: predict, xfer-predict and evaluate differ by {worst}"
        );
        // Chance is about 30 % (the largest class); EfficientNet-Lite0 features do far better.
        assert!(
            accuracy >= 0.6,
            "{head}: accuracy {accuracy} on {} held-out photos",
            e.len()
        );
    }
}
