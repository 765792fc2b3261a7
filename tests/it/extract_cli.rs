//! The `xfer` binary end to end on the tiny generated ONNX model: feature files,
//! bad files, interruption and resume, device errors, missing ONNX Runtime.

use crate::common::{self, tiny};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ndarray::Array4;
use xfer::features::store;
use xfer::images::preprocess::{self, DecodeOptions};
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::zoo::Manifest;

#[test]
fn extract_writes_a_complete_feature_file_matching_the_backbone() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["cat", "dog"], 5);
    let out = t.path().join("f.h5");
    let o = common::tiny_extract(&data, &out, &["--batch", "3"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let f = store::read(&out).unwrap();
    assert_eq!(f.data.dim(), (10, 8));
    assert_eq!(f.labels.to_vec(), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    let paths = f.paths.unwrap();
    assert_eq!(paths[0], "cat/0000.jpg");
    assert_eq!(paths[9], "dog/0004.jpg");
    let prov = f.provenance.unwrap();
    assert_eq!(prov.backbone, "tiny");
    assert_eq!(prov.class_names, ["cat", "dog"]);
    assert_eq!(prov.execution_provider, "CPUExecutionProvider");
    assert_eq!(prov.ort_version, "1.31.1");

    // Row 6 equals the backbone run directly on the same image.
    let manifest = Manifest::from_file(&common::tiny_manifest()).unwrap();
    let mut t6 = vec![0f32; manifest.preprocess.tensor_len()];
    preprocess::load_tensor(
        &data.join(&paths[6]),
        &manifest.preprocess,
        &DecodeOptions::default(),
        &mut t6,
    )
    .unwrap();
    let mut bb = Backbone::load(&common::runtime(), &manifest, &SessionOptions::default()).unwrap();
    let direct = bb
        .run(
            Array4::from_shape_vec((1, 3, 32, 32), t6).unwrap().view(),
            false,
        )
        .unwrap();
    for (a, b) in direct.features.iter().zip(f.data.row(6)) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    // A second run refuses to overwrite silently.
    let o = common::tiny_extract(&data, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::text(&o).contains("--overwrite"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn session_matches_python_onnxruntime_reference() {
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/tiny/reference.json"))
            .unwrap(),
    )
    .unwrap();
    let floats = |k: &str| -> Vec<f32> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let manifest = Manifest::from_file(&common::tiny_manifest()).unwrap();
    let mut bb = Backbone::load(&common::runtime(), &manifest, &SessionOptions::default()).unwrap();
    let input = Array4::from_shape_vec((2, 3, 32, 32), floats("input")).unwrap();
    let out = bb.run(input.view(), true).unwrap();
    for (a, b) in out.features.iter().zip(floats("features")) {
        assert!((a - b).abs() <= 1e-5, "features {a} vs {b}");
    }
    for (a, b) in out.logits.unwrap().iter().zip(floats("logits")) {
        assert!((a - b).abs() <= 1e-5, "logits {a} vs {b}");
    }
}

#[test]
fn model_not_matching_its_manifest_is_refused() {
    let manifest =
        Manifest::from_file(&common::repo().join("tests/fixtures/tiny/bad_io.toml")).unwrap();
    let e = Backbone::load(&common::runtime(), &manifest, &SessionOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no output `features`") && e.contains("pooled"),
        "{e}"
    );
}

#[test]
fn bad_files_are_skipped_listed_and_reported_in_the_exit_status() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 3);
    std::fs::write(data.join("a/empty.jpg"), b"").unwrap();
    std::fs::write(data.join("a/text.png"), b"this is not an image at all").unwrap();
    let jpeg = std::fs::read(data.join("b/0000.jpg")).unwrap();
    std::fs::write(data.join("b/truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    common::pattern(300, 300, 1)
        .save(data.join("b/huge.png"))
        .unwrap();
    std::fs::write(
        data.join("b/readme.txt"),
        b"ignored: not an image extension",
    )
    .unwrap();
    let out = t.path().join("f.h5");
    let o = common::tiny_extract(&data, &out, &["--max-megapixels", "0.05"]);
    let txt = common::text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit status 3 = finished with skipped files\n{txt}"
    );
    for needle in [
        "a/empty.jpg: empty file",
        "a/text.png: not an image",
        "b/truncated.jpg",
        "b/huge.png: image is 300×300",
        "4 skipped",
    ] {
        assert!(txt.contains(needle), "missing `{needle}` in\n{txt}");
    }
    let f = store::read(&out).unwrap();
    assert_eq!(f.data.nrows(), 6);
    let skipped: Vec<&str> = f.skipped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        skipped,
        ["a/empty.jpg", "a/text.png", "b/huge.png", "b/truncated.jpg"]
    );
}

fn run_to_completion(data: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["--batch", "2"];
    args.extend_from_slice(extra);
    let o = common::tiny_extract(data, out, &args);
    assert!(o.status.success(), "{}", common::text(&o));
}

#[test]
fn killed_run_is_not_complete_and_resume_gives_the_same_rows() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["x", "y"], 600);
    let reference = t.path().join("ref.h5");
    run_to_completion(&data, &reference, &[]);

    let out = t.path().join("killed.h5");
    let partial = store::partial_path(&out);
    let mut killed_midway = false;
    for delay_ms in [150u64, 60, 300, 20] {
        let _ = std::fs::remove_file(&partial);
        let mut child = Command::new(common::XFER)
            .args(common::tiny_extract_args(&data, &out, &["--batch", "2"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        if !out.exists() && partial.exists() {
            killed_midway = true;
            break;
        }
        let _ = std::fs::remove_file(&out);
    }
    assert!(killed_midway, "could not interrupt a run midway");
    assert!(
        !out.exists(),
        "a killed run must not leave a file under the final name"
    );
    // The library states the fact and what would finish it; the CLI words it.
    let e = store::read(&out).unwrap_err();
    assert!(
        matches!(
            e,
            xfer::Error::FeatureFile {
                next: xfer::error::Next::FinishInterrupted(None),
                ..
            }
        ) && e.to_string().contains("is an interrupted extraction"),
        "{e}"
    );

    let o = common::tiny_extract(&data, &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a new run must not clobber the partial file\n{}",
        common::text(&o)
    );
    run_to_completion(&data, &out, &["--resume"]);
    let (a, b) = (store::read(&reference).unwrap(), store::read(&out).unwrap());
    assert_eq!(a.paths, b.paths);
    assert_eq!(a.labels, b.labels);
    let max_diff = (&a.data - &b.data)
        .mapv(f32::abs)
        .fold(0f32, |m, &v| m.max(v));
    assert!(max_diff < 1e-6, "resumed features differ by {max_diff}");
}

#[test]
fn cuda_request_on_cpu_library_fails_loudly_unless_fallback_is_allowed() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 2);
    let out = t.path().join("f.h5");
    let o = common::tiny_extract(&data, &out, &["--device", "cuda"]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("CUDAExecutionProvider is not available")
            && txt.contains("--allow-cpu-fallback"),
        "{txt}"
    );
    assert!(!out.exists());

    let o = common::tiny_extract(&data, &out, &["--device", "cuda", "--allow-cpu-fallback"]);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(common::text(&o).contains("running on CPU"));
    assert_eq!(
        store::read(&out)
            .unwrap()
            .provenance
            .unwrap()
            .execution_provider,
        "CPUExecutionProvider"
    );
}

#[test]
fn tensorrt_flags_without_tensorrt_are_errors_not_ignored() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 1);
    let out = t.path().join("f.h5");
    for (extra, named) in [
        (
            &["--device", "cuda", "--trt-fp16"][..],
            "--trt-fp16 only applies",
        ),
        (&["--trt-cache", "c"][..], "--trt-cache only applies"),
        (
            &["--device", "cuda", "--trt-cache", "c", "--trt-fp16"][..],
            "--trt-cache and --trt-fp16 only apply",
        ),
    ] {
        let o = common::tiny_extract(&data, &out, extra);
        let txt = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{txt}");
        assert!(
            txt.contains(named) && txt.contains("pass --device tensorrt"),
            "{txt}"
        );
        assert!(!out.exists() && !common::repo().join("c").exists());
    }
    // bench-model checks them too.
    let o = common::xfer(&["bench-model", "--model", &tiny(), "--trt-fp16"]);
    assert!(
        common::text(&o).contains("--trt-fp16 only applies"),
        "{}",
        common::text(&o)
    );
}

/// The TensorRT engine cache, named relative to another working folder, is created
/// with its parents (ONNX Runtime makes one level only) before the provider is
/// registered; on this CPU-only library the registration then fails, and
/// --allow-cpu-fallback records the CPU run.
#[test]
fn tensorrt_cache_is_created_with_its_parents() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 1);
    let out = t.path().join("f.h5");
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let mut args = common::tiny_extract_args(&data, &out, &[]);
    args.extend(
        [
            "--device",
            "tensorrt",
            "--trt-cache",
            "cache/a/b",
            "--allow-cpu-fallback",
        ]
        .map(String::from),
    );
    let o = Command::new(common::XFER)
        .args(&args)
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let txt = common::text(&o);
    assert!(o.status.success(), "{txt}");
    assert!(elsewhere.join("cache/a/b").is_dir(), "{txt}");
    assert!(
        txt.contains("TensorrtExecutionProvider unavailable")
            && txt.contains("not enabled in this build")
            && txt.contains("provider recorded: CPUExecutionProvider"),
        "{txt}"
    );
    let prov = store::read(&out).unwrap().provenance.unwrap();
    assert_eq!(prov.execution_provider, "CPUExecutionProvider");
}

#[test]
fn missing_onnx_runtime_is_a_clear_error_not_a_panic() {
    common::assert_missing_ort_is_clear(Command::new(common::XFER).args([
        "bench-model",
        "--model",
        &tiny(),
    ]));
}

#[test]
fn tutorial_layout_files_are_readable() {
    // The tutorial writes: h5py.File(name, 'w'); f.create_dataset('data', data=feats); f.create_dataset('label', data=labels)
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("train_feature_resnet152.hd5f");
    {
        let f = hdf5::File::create(&p).unwrap();
        f.new_dataset_builder()
            .with_data(&ndarray::array![[1.0f64, 2.0], [3.0, 4.0]])
            .create("data")
            .unwrap();
        f.new_dataset_builder()
            .with_data(&ndarray::array![0i64, 1])
            .create("label")
            .unwrap();
    }
    let f = store::read(&p).unwrap();
    assert_eq!(f.data, ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
    assert_eq!(f.labels.to_vec(), [0, 1]);
    assert!(f.paths.is_none() && f.provenance.is_none());
}

#[test]
fn bench_model_prints_json() {
    let o = common::xfer(&[
        "bench-model",
        "--model",
        &tiny(),
        "--batch",
        "4",
        "--batches",
        "2",
    ]);
    assert!(o.status.success(), "{}", common::text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["images"], 8);
    assert_eq!(v["input"], "random");

    // On real images: 3 photos repeated to fill a batch of 4.
    let t = tempfile::tempdir().unwrap();
    common::make_image_folder(t.path(), &["a"], 3);
    let data = t.path().to_str().unwrap();
    let o = common::xfer(&[
        "bench-model",
        "--model",
        &tiny(),
        "--batch",
        "4",
        "--batches",
        "1",
        "--data",
        data,
    ]);
    assert!(o.status.success(), "{}", common::text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["input"], "images");
    assert_eq!(v["images"], 4);
}
