//! `xfer quantize` on the real EfficientNet-Lite0 with 16 real photos
//! (`data/stamps`, flowers/fruit/vegetables): the manifest's provenance, the
//! agreement report against an independent onnxruntime-python + numpy
//! computation on the same held-back tensors, extraction with the int8 model
//! (and its hardware warning), and a head trained on int8 features refused
//! with the fp32 model's features and with a zoo that has only the fp32 model.
//!
//! One test: quantising takes ~25 s on two loaded cores. Needs what
//! tools/setup.sh provides (the ONNX Runtime library, onnx/efficientnet_lite0.onnx,
//! .venv with onnxruntime and ml_dtypes, data/stamps). Nothing is downloaded.

use crate::common::{self, s, xfer_ok};

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use xfer::images::preprocess::{self, DecodeOptions};
use xfer::models::zoo::Manifest;

const CLASSES: [&str; 3] = ["flowers", "fruit", "vegetables"];

fn xfer_err(args: &[&str]) -> String {
    let o = common::xfer(args);
    assert!(
        !o.status.success(),
        "xfer {args:?} should fail\n{}",
        common::text(&o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 7 photos of each class (sorted names), copied into `dir/<class>/`.
fn calibration_folder(dir: &Path) {
    let stamps = common::setup_file("data/stamps");
    for c in CLASSES {
        let mut names: Vec<PathBuf> = std::fs::read_dir(stamps.join(c))
            .unwrap_or_else(|e| panic!("data/stamps/{c}: {e}; run tools/fetch_stamps.sh"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
            .collect();
        names.sort();
        std::fs::create_dir_all(dir.join(c)).unwrap();
        for p in names.iter().take(7) {
            std::fs::copy(p, dir.join(c).join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// SHA-256 over path NUL label NUL of each item, as the manifest documents.
fn list_sha256(items: &[(String, i64)]) -> String {
    let mut h = Sha256::new();
    for (p, l) in items {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(l.to_string().as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

const PY_COSINE: &str = r#"
import sys, json, numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])
def feats(path):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(["features", "logits"], {"input": x})
fa, la = feats(sys.argv[2])
fb, lb = feats(sys.argv[3])
fa = fa.reshape(len(x), -1).astype(np.float64); fb = fb.reshape(len(x), -1).astype(np.float64)
cos = (fa * fb).sum(1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1))
print(json.dumps({"cos": cos.tolist(), "top1": float((la.argmax(1) == lb.argmax(1)).mean())}))
"#;

#[test]
fn quantize_lite0_report_extract_and_bundle_checks() {
    let fp32_onnx = common::setup_file("onnx/efficientnet_lite0.onnx");
    let python = common::setup_file(".venv/bin/python");
    let t = tempfile::tempdir().unwrap();
    let zoo = t.path().join("zoo");
    std::fs::create_dir(&zoo).unwrap();
    std::fs::copy(
        common::repo().join("onnx/efficientnet_lite0.toml"),
        zoo.join("efficientnet_lite0.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&fp32_onnx, zoo.join("efficientnet_lite0.onnx")).unwrap();
    let calib = t.path().join("calib");
    calibration_folder(&calib);

    // 21 photos: 4 held back (at most a quarter), 16 calibrate, 1 unused.
    let o = xfer_ok(&[
        "--zoo",
        s(&zoo),
        "quantize",
        "--model",
        "efficientnet_lite0",
        "--calib",
        s(&calib),
        "--n",
        "16",
        "--holdout",
        "4",
        "--method",
        "minmax",
        "--json",
    ]);
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["model"], "efficientnet_lite0_int8");

    // The manifest: through the one parser, with its provenance.
    let fp32 = Manifest::from_file(&zoo.join("efficientnet_lite0.toml")).unwrap();
    let m = Manifest::from_file(&zoo.join("efficientnet_lite0_int8.toml")).unwrap();
    assert_eq!(m.precision(), "int8");
    m.verify_file()
        .expect("the int8 file has the manifest's sha256");
    assert_ne!(m.sha256, fp32.sha256);
    assert_eq!(m.preprocess, fp32.preprocess);
    let q = m.quantization.as_ref().unwrap();
    assert_eq!(
        (
            q.format.as_str(),
            q.weights.as_str(),
            q.activations.as_str()
        ),
        ("qdq", "int8", "uint8")
    );
    assert!(q.per_channel && !q.reduce_range);
    assert_eq!(q.method, "minmax");
    assert_eq!(q.source, "efficientnet_lite0");
    assert_eq!(q.source_sha256, fp32.sha256);
    assert_eq!(q.ort_version, "1.31.1");
    assert_eq!(q.calibration_images, 16);
    assert!(fp32.quantization.is_none() && fp32.precision() == "fp32");

    // The calibration hash: the 21 sorted paths less the 4 held back, less
    // the one left over, i.e. exactly the images the report does not list.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(zoo.join("efficientnet_lite0_int8.agreement.json")).unwrap(),
    )
    .unwrap();
    let held: Vec<String> = report["holdout_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(held.len(), 4);
    let mut all: Vec<(String, i64)> = Vec::new();
    for (l, c) in CLASSES.iter().enumerate() {
        let mut names: Vec<String> = std::fs::read_dir(calib.join(c))
            .unwrap()
            .map(|e| format!("{c}/{}", e.unwrap().file_name().to_str().unwrap()))
            .collect();
        names.sort();
        all.extend(names.into_iter().map(|n| (n, l as i64)));
    }
    // 21 spread over 20 picks: i * 21 / 20 skips index 20 (the last photo).
    let picked: Vec<(String, i64)> = (0..20).map(|i| all[i * 21 / 20].clone()).collect();
    let used: Vec<(String, i64)> = picked
        .into_iter()
        .filter(|(p, _)| !held.contains(p))
        .collect();
    assert_eq!(used.len(), 16);
    assert_eq!(q.calibration_sha256, list_sha256(&used));

    // The agreement, against onnxruntime-python + numpy on the same tensors
    // (xfer's preprocessing of the held-back images, written as .npy).
    let a = q.agreement.as_ref().unwrap();
    assert_eq!(a.images, 4);
    let recipe = &fp32.preprocess;
    let len = recipe.tensor_len();
    let mut tensors = vec![0f32; 4 * len];
    for (i, p) in held.iter().enumerate() {
        preprocess::load_tensor(
            &calib.join(p),
            recipe,
            &DecodeOptions::default(),
            &mut tensors[i * len..(i + 1) * len],
        )
        .unwrap();
    }
    let npy = t.path().join("held.npy");
    let mut f = std::fs::File::create(&npy).unwrap();
    let side = recipe.crop as usize;
    xfer::models::quantize::write_npy(&mut f, &[4, 3, side, side], &tensors).unwrap();
    drop(f);
    let py = Command::new(&python)
        .args(["-c", PY_COSINE, s(&npy), s(&fp32_onnx), s(&m.onnx_path())])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let refd: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let ref_cos: Vec<f64> = refd["cos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let ours: Vec<f64> = report["holdout_cosines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (x, y) in ours.iter().zip(&ref_cos) {
        assert!((x - y).abs() < 1e-4, "xfer {ours:?} vs python {ref_cos:?}");
    }
    let mean = ref_cos.iter().sum::<f64>() / 4.0;
    let min = ref_cos.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!((a.cosine_mean - mean).abs() < 1e-4 && (a.cosine_min - min).abs() < 1e-4);
    assert_eq!(a.cosine_p5, a.cosine_min, "p5 of 4 values is the smallest");
    assert!((a.top1_agreement.unwrap() - refd["top1"].as_f64().unwrap()).abs() < 1e-9);
    // Still the same network: an int8 copy of a real model stays correlated
    // with it even where int8 saturates (AVX2 without VNNI: ~0.6–0.95 here).
    assert!(min > 0.5, "cosines {ref_cos:?}");

    // Extraction with the int8 model; the hardware warning as the CPU decides.
    let f_int8 = t.path().join("int8.h5");
    let f_fp32 = t.path().join("fp32.h5");
    let o = xfer_ok(&[
        "--zoo",
        s(&zoo),
        "extract",
        "--model",
        "efficientnet_lite0_int8",
        "--data",
        s(&calib),
        "--out",
        s(&f_int8),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let cpu = xfer::models::cpu::Int8Support::detect();
    assert_eq!(
        stderr.contains("is an int8 model with 8-bit weights"),
        cpu.known && !cpu.has_dot_product(),
        "{stderr}"
    );
    xfer_ok(&[
        "--zoo",
        s(&zoo),
        "extract",
        "--model",
        "efficientnet_lite0",
        "--data",
        s(&calib),
        "--out",
        s(&f_fp32),
    ]);

    // A head trained on int8 features records the int8 model ...
    let run = t.path().join("run");
    xfer_ok(&[
        "--zoo",
        s(&zoo),
        "train",
        "--train",
        s(&f_int8),
        "--head",
        "logistic",
        "--out",
        s(&run),
    ]);
    let bundle = run.join("logistic.safetensors");
    let b = xfer::ship::bundle::Bundle::load(&bundle).unwrap();
    let r = &b.meta.backbones[0];
    assert_eq!(
        (
            r.name.as_str(),
            r.model_sha256.as_str(),
            r.precision.as_str()
        ),
        ("efficientnet_lite0_int8", m.sha256.as_str(), "int8")
    );
    // ... and is refused with the fp32 model's features, saying which is int8,
    let e = xfer_err(&[
        "--zoo",
        s(&zoo),
        "evaluate",
        "--bundle",
        s(&bundle),
        "--features",
        s(&f_fp32),
    ]);
    assert!(
        e.contains("features of efficientnet_lite0 (fp32)")
            && e.contains("efficientnet_lite0_int8 (int8)"),
        "{e}"
    );
    // ... and with a zoo that has only the fp32 model.
    let fp32_zoo = t.path().join("fp32_zoo");
    std::fs::create_dir(&fp32_zoo).unwrap();
    std::fs::copy(
        zoo.join("efficientnet_lite0.toml"),
        fp32_zoo.join("efficientnet_lite0.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&fp32_onnx, fp32_zoo.join("efficientnet_lite0.onnx")).unwrap();
    let one = calib.join("fruit");
    let e = xfer_err(&[
        "--zoo",
        s(&fp32_zoo),
        "predict",
        "--bundle",
        s(&bundle),
        s(&one),
    ]);
    assert!(
        e.contains("efficientnet_lite0_int8 (int8)") && e.contains("xfer quantize"),
        "{e}"
    );
    // The reverse: a head on fp32 features refuses int8 features.
    let run32 = t.path().join("run32");
    xfer_ok(&[
        "--zoo",
        s(&zoo),
        "train",
        "--train",
        s(&f_fp32),
        "--head",
        "logistic",
        "--out",
        s(&run32),
    ]);
    let e = xfer_err(&[
        "--zoo",
        s(&zoo),
        "evaluate",
        "--bundle",
        s(&run32.join("logistic.safetensors")),
        "--features",
        s(&f_int8),
    ]);
    assert!(
        e.contains("features of efficientnet_lite0_int8 (int8)"),
        "{e}"
    );

    // Quantising again under the same name is refused without --overwrite.
    let e = xfer_err(&[
        "--zoo",
        s(&zoo),
        "quantize",
        "--model",
        "efficientnet_lite0",
        "--calib",
        s(&calib),
    ]);
    assert!(e.contains("--overwrite"), "{e}");
}

/// A two-Conv network with one (non-zero) bias initialiser, as PyTorch exports
/// identical constants: the first Conv reads it directly, the second through an
/// Identity (a torchvision ResNet-50 with random weights has 47 such Convs).
/// tools/quantize.py must give ONNX Runtime a graph in which every Conv becomes
/// an integer convolution (QLinearConv). Without pre-processing the
/// Identity-fed Conv stays float, with weights dequantised on every run (that
/// ResNet-50 ran at 0.6 of its fp32 speed); with pre-processing alone the
/// Identity is folded, the bias is shared, and ONNX Runtime's quantiser hands
/// both Convs the copy quantised at the second one's scale, so the first stays
/// float.
const PY_SHARED_BIAS: &str = r#"
import sys, subprocess, numpy as np, onnx, onnxruntime as ort
from onnx import helper as h, TensorProto as T, numpy_helper as nh
d = sys.argv[1]
r = np.random.RandomState(0)
inits = [nh.from_array(r.randn(8, 3, 3, 3).astype(np.float32), "w1"),
         nh.from_array(r.randn(8, 8, 3, 3).astype(np.float32), "w2"),
         nh.from_array(r.randn(8).astype(np.float32), "b")]
nodes = [h.make_node("Identity", ["b"], ["b2"]),
         h.make_node("Conv", ["input", "w1", "b"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c1"], ["r1"]),
         h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c2"], ["r2"]),
         h.make_node("GlobalAveragePool", ["r2"], ["features"])]
g = h.make_graph(nodes, "shared_bias", [h.make_tensor_value_info("input", T.FLOAT, ["N", 3, 16, 16])],
                 [h.make_tensor_value_info("features", T.FLOAT, ["N", 8, 1, 1])], inits)
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
m.ir_version = 8
onnx.save(m, f"{d}/fp32.onnx")
np.save(f"{d}/calib.npy", r.rand(8, 3, 16, 16).astype(np.float32))
subprocess.run([sys.executable, sys.argv[2], "--model", f"{d}/fp32.onnx", "--calib", f"{d}/calib.npy",
                "--input-name", "input", "--out", f"{d}/int8.onnx"], check=True, stdout=subprocess.DEVNULL)
so = ort.SessionOptions()
so.optimized_model_filepath = f"{d}/opt.onnx"
ort.InferenceSession(f"{d}/int8.onnx", so, providers=["CPUExecutionProvider"])
ops = [n.op_type for n in onnx.load(f"{d}/opt.onnx").graph.node]
x = r.rand(4, 3, 16, 16).astype(np.float32)
f32 = ort.InferenceSession(f"{d}/fp32.onnx", providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
i8 = ort.InferenceSession(f"{d}/int8.onnx", providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
print(" ".join(ops))
print(float(np.abs(i8 - f32).max() / np.abs(f32).max()))
"#;

#[test]
fn quantizer_fuses_convs_whose_bias_comes_through_an_identity() {
    let python = common::setup_file(".venv/bin/python");
    let t = tempfile::tempdir().unwrap();
    let script = common::repo().join("tools/quantize.py");
    let o = Command::new(&python)
        .args(["-c", PY_SHARED_BIAS, s(t.path()), s(&script)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    let ops: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let rel_err: f64 = lines.next().unwrap().parse().unwrap();
    assert_eq!(
        ops.iter().filter(|op| **op == "QLinearConv").count(),
        2,
        "ONNX Runtime's optimised graph: {ops:?}"
    );
    assert!(!ops.contains(&"Conv"), "a float Conv is left: {ops:?}");
    // And the int8 network still computes what the fp32 one does, to int8
    // precision (measured 1.8 % of the largest output).
    assert!(rel_err < 0.04, "max |int8 - fp32| / max |fp32| = {rel_err}");
}
