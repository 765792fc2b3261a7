//! `--device openvino` for real: ONNX Runtime's OpenVINO plugin (installed by
//! `tools/setup.sh --openvino`) on EfficientNet-Lite0 and real photos.
//!
//! The plugin offers devices on Intel CPUs only (it skips every device whose
//! vendor id is not Intel's), so each run goes through qemu-user
//! (`qemu-x86_64 -cpu max,vendor=…`): the same xfer binary, plugin and OpenVINO
//! CPU kernels, with the CPUID vendor the test chooses — Intel for the path
//! users of Intel CPUs take, AMD for the refusal and the fallback, whatever
//! CPU runs the test. qemu's emulated CPU has AVX2 but no AVX-512 or bf16, so
//! OpenVINO computes in f32 there: bf16 itself is measured in
//! tools/bench/bf16_quality.py, on a CPU that has it.

use std::path::{Path, PathBuf};
use std::process::Command;

use xfer::features::store;

use crate::common::*;

const QEMU: &str = "qemu-x86_64";

/// `xfer args` under qemu-user with the CPU vendor `vendor`.
fn xfer_as(vendor: &str, args: &[&str]) -> std::process::Output {
    let which = Command::new("sh")
        .args(["-c", &format!("command -v {QEMU}")])
        .output()
        .expect("run sh");
    assert!(
        which.status.success(),
        "{QEMU} is missing: run tools/setup.sh --openvino (it installs qemu-user)"
    );
    let mut c = command(QEMU, &["-cpu", &format!("max,vendor={vendor}"), XFER]);
    c.args(args);
    output(c)
}

/// Two classes of two real photos each.
fn photos(root: &Path) -> PathBuf {
    let data = root.join("photos");
    for (class, files) in [
        ("flowers", ["flower1.png", "flower2.png"]),
        ("fruit", ["Apricot_whole.png", "Cherry_Stella.png"]),
    ] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files {
            let src = setup_file(&format!("data/stamps/{class}/{f}"));
            std::fs::copy(src, data.join(class).join(f)).unwrap();
        }
    }
    data
}

fn extract_args<'a>(data: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "extract",
        "--model",
        "efficientnet_lite0",
        "--data",
        s(data),
        "--out",
        s(out),
    ];
    v.extend_from_slice(extra);
    v
}

fn plugin_installed() {
    setup_file("onnx/efficientnet_lite0.onnx");
    let home = std::env::var("XFER_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/xfer")
        });
    let plugin = home
        .join("openvino-ep")
        .join(xfer::models::openvino::PLUGIN_FILE);
    assert!(
        plugin.is_file() || std::env::var_os(xfer::models::openvino::PLUGIN_ENV).is_some(),
        "{} is missing: run tools/setup.sh --openvino",
        plugin.display()
    );
}

#[test]
fn on_an_intel_cpu_openvino_extracts_what_onnx_runtime_does_and_records_it() {
    plugin_installed();
    let t = tempfile::tempdir().unwrap();
    let data = photos(t.path());
    let cache = t.path().join("cache");
    let (ov, cpu) = (t.path().join("ov.h5"), t.path().join("cpu.h5"));
    let o = done(xfer_as(
        "GenuineIntel",
        &extract_args(
            &data,
            &ov,
            &["--device", "openvino", "--model-cache", s(&cache)],
        ),
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("on OpenVINOExecutionProvider (f32)"),
        "{}",
        text(&o)
    );
    ok(xfer(&extract_args(&data, &cpu, &[])));
    let (a, b) = (store::read(&ov).unwrap(), store::read(&cpu).unwrap());
    let p = a.provenance.as_ref().unwrap();
    assert_eq!(p.execution_provider, "OpenVINOExecutionProvider");
    // qemu's CPU has no bf16: auto is f32, and recorded as what OpenVINO was told.
    assert_eq!(p.inference_precision, "f32");
    assert_eq!(b.provenance.as_ref().unwrap().inference_precision, "");
    assert_eq!(a.paths, b.paths);
    // OpenVINO in f32 against ONNX Runtime: the same features to about 1e-6
    // (measured: cosine ≥ 0.9999997 on the 88 demo photos).
    for (x, y) in a.data.rows().into_iter().zip(b.data.rows()) {
        let c = cosine(x.as_slice().unwrap(), y.as_slice().unwrap());
        assert!(c > 0.99999, "cosine {c}");
    }
    // OpenVINO's compiled-model cache under --model-cache.
    let blobs = std::fs::read_dir(cache.join("openvino")).unwrap().count();
    assert!(blobs >= 1, "no compiled model in {}", cache.display());

    // bf16 asked of a CPU without it: refused, naming what the CPU offers.
    let o = xfer_as(
        "GenuineIntel",
        &extract_args(
            &data,
            &t.path().join("bf16.h5"),
            &["--device", "openvino", "--precision", "bf16"],
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        err.contains("--precision bf16 is not available on this CPU")
            && err.contains("FP32")
            && err.contains("pass --precision auto"),
        "{}",
        text(&o)
    );
    assert!(!t.path().join("bf16.h5").exists());

    // xfer info lists the plugin's device with its capabilities and runs it.
    let o = ok(xfer_as("GenuineIntel", &["info"]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("device CPU (") && out.contains("FP32 INT8"),
        "{}",
        text(&o)
    );
    assert!(
        out.lines()
            .any(|l| l.contains("OpenVINOExecutionProvider") && l.contains("works")),
        "{}",
        text(&o)
    );
}

#[test]
fn on_another_cpu_openvino_is_refused_and_a_fallback_is_recorded() {
    plugin_installed();
    let t = tempfile::tempdir().unwrap();
    let data = photos(t.path());
    let out = t.path().join("f.h5");
    let o = xfer_as(
        "AuthenticAMD",
        &extract_args(&data, &out, &["--device", "openvino"]),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        err.contains("offers no CPU device on this machine (CPU vendor: AMD)")
            && err.contains("--allow-cpu-fallback")
            && err.lines().filter(|l| l.starts_with("error")).count() == 1,
        "{}",
        text(&o)
    );
    assert!(!out.exists());
    let o = done(xfer_as(
        "AuthenticAMD",
        &extract_args(
            &data,
            &out,
            &["--device", "openvino", "--allow-cpu-fallback"],
        ),
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: OpenVINOExecutionProvider unavailable")
            && err.contains("running on CPU"),
        "{}",
        text(&o)
    );
    let f = store::read(&out).unwrap();
    let p = f.provenance.unwrap();
    assert_eq!(p.execution_provider, "CPUExecutionProvider");
    assert_eq!(p.inference_precision, "");
}

#[test]
fn a_named_plugin_that_is_missing_is_said_and_never_replaced() {
    let t = tempfile::tempdir().unwrap();
    let data = photos(t.path());
    let out = t.path().join("f.h5");
    let o = xfer_env(
        &extract_args(&data, &out, &["--device", "openvino"]),
        &[(xfer::models::openvino::PLUGIN_ENV, "/no/such/plugin.so")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        err.contains("the OpenVINO plugin /no/such/plugin.so (XFER_OPENVINO_LIB) is not a file")
            && err.contains("--openvino-lib"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
}

#[test]
fn openvino_flags_need_the_openvino_device() {
    let t = tempfile::tempdir().unwrap();
    let o = xfer(&extract_args(
        t.path(),
        &t.path().join("f.h5"),
        &["--precision", "f32"],
    ));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--precision only applies to --device openvino")
            && err.contains("this run uses --device cpu"),
        "{}",
        text(&o)
    );
}

/// `xfer package --openvino`: the package carries the plugin and OpenVINO's
/// libraries, and its predict.sh runs `--device openvino` on an Intel CPU with
/// the probabilities of the CPU run (OpenVINO in f32 there), with nothing from
/// outside the folder.
#[test]
fn a_package_carries_openvino_and_predicts_with_it() {
    plugin_installed();
    let t = tempfile::tempdir().unwrap();
    let data = photos(t.path());
    let feats = t.path().join("f.h5");
    ok(xfer(&extract_args(&data, &feats, &[])));
    let run = t.path().join("run");
    ok(xfer(&[
        "train",
        "--train",
        s(&feats),
        "--out",
        s(&run),
        "--head",
        "logistic",
        "--cv",
        "2",
    ]));
    build_slim();
    let pkg = t.path().join("pkg");
    let o = ok(xfer(&[
        "package",
        "--bundle",
        s(&run.join("logistic.safetensors")),
        "--out",
        s(&pkg),
        "--no-build",
        "--openvino",
    ]));
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains("lib/openvino-ep/libonnxruntime_providers_openvino_plugin.so")
            && listing.contains("lib/openvino-ep/libopenvino_intel_cpu_plugin.so"),
        "{listing}"
    );
    let readme = std::fs::read_to_string(pkg.join("README.md")).unwrap();
    assert!(readme.contains("--device openvino"), "{readme}");
    // Run as on another machine: no HOME, no xfer, no Python. qemu-user stands
    // in for an Intel CPU; it does not follow an exec, so the Intel run uses a
    // copy of predict.sh whose one change is qemu in front of xfer-predict.
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let sh = std::fs::read_to_string(pkg.join("predict.sh")).unwrap();
    let exec = "exec \"$here/xfer-predict\"";
    assert!(sh.contains(exec), "{sh}");
    let qemu = Command::new("sh")
        .args(["-c", &format!("command -v {QEMU}")])
        .output()
        .unwrap();
    let qemu = String::from_utf8_lossy(&qemu.stdout).trim().to_owned();
    assert!(
        !qemu.is_empty(),
        "{QEMU} is missing: run tools/setup.sh --openvino"
    );
    let intel_sh = pkg.join("predict_intel.sh");
    write_executable(
        &intel_sh,
        sh.replace(
            exec,
            &format!("exec {qemu} -cpu max,vendor=GenuineIntel \"$here/xfer-predict\""),
        )
        .as_bytes(),
    );
    let predict = |script: &Path, csv: &Path, extra: &[&str]| {
        let mut c = Command::new(script);
        c.args([s(&data), "--csv", s(csv), "--overwrite"])
            .args(extra)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin");
        output(c)
    };
    let (cpu_csv, ov_csv) = (t.path().join("cpu.csv"), t.path().join("ov.csv"));
    ok(predict(&pkg.join("predict.sh"), &cpu_csv, &[]));
    let o = ok(predict(&intel_sh, &ov_csv, &["--device", "openvino"]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("OpenVINOExecutionProvider"),
        "{}",
        text(&o)
    );
    let (_, cpu) = read_predictions_csv(&cpu_csv, Some(&data));
    let (_, ov) = read_predictions_csv(&ov_csv, Some(&data));
    assert_eq!(
        cpu.keys().collect::<Vec<_>>(),
        ov.keys().collect::<Vec<_>>()
    );
    for (k, p) in &cpu {
        for (a, b) in p.iter().zip(&ov[k]) {
            assert!((a - b).abs() < 1e-4, "{k}: {p:?} vs {:?}", ov[k]);
        }
    }
}
