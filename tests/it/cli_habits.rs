//! The command-line habits scripts and clusters rely on, on the tiny generated
//! model: `--json` on extract, train, evaluate and predict (each parsed here),
//! plain progress lines when stderr is not a terminal (and none with
//! `--quiet`), one-line errors for the mistakes a user makes with a path,
//! shell completions, and a closed pipe ending the program quietly.

use crate::common::{self, s, xfer, xfer_env};

use std::io::Read;

use std::process::{Command, Output, Stdio};

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", common::text(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", common::text(o)))
}

#[test]
fn json_summaries_and_progress_lines() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["cat", "dog", "fox"], 12);
    std::fs::write(data.join("cat/broken.jpg"), b"not a jpeg").unwrap();
    let tiny = common::tiny_manifest();
    let feats = t.path().join("f.h5");

    // extract: plain lines at every 10 % (stderr is a pipe here), JSON on stdout.
    let o = xfer_env(
        &[
            "extract",
            "--model",
            s(&tiny),
            "--data",
            s(&data),
            "--out",
            s(&feats),
            "--batch",
            "4",
            "--json",
            "-v",
        ],
        &[("XFER_PROGRESS_INTERVAL", "3600")],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "one file skipped\n{}",
        common::text(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("extract: "))
        .collect();
    assert!(lines.len() >= 3, "progress lines:\n{stderr}");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("extract: 37/37 images (100 %)"),
        "{stderr}"
    );
    assert!(lines.iter().all(|l| l.contains(" images/s")), "{stderr}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["command"], "extract");
    assert_eq!(j["images"], 37);
    assert_eq!(j["rows"], 36);
    assert_eq!(j["skipped"][0]["path"], "cat/broken.jpg");
    assert!(j["images_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(j["provider"], "CPUExecutionProvider");
    assert!(j["timings"]["backbone_seconds"].as_f64().unwrap() > 0.0);
    assert!(stderr.contains("timings: decoding"), "{stderr}");

    // --quiet: no progress lines.
    let q = t.path().join("q.h5");
    let o = xfer(&[
        "extract",
        "--model",
        s(&tiny),
        "--data",
        s(&data),
        "--out",
        s(&q),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", common::text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("extract: "),
        "{}",
        common::text(&o)
    );

    // train --json: stdout holds only the object; epoch lines went to stderr.
    let run = t.path().join("run");
    let j = json(&xfer(&[
        "train",
        "--train",
        s(&feats),
        "--out",
        s(&run),
        "--hidden",
        "16",
        "--json",
    ]));
    assert_eq!(j["command"], "train");
    assert_eq!(j["heads"].as_array().unwrap().len(), 2);
    let best = run.join("best.safetensors");
    assert!(j["written"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w == "best.safetensors"));
    assert!(j["validation"]
        .as_str()
        .unwrap()
        .contains("cross-validation"));
    for h in j["heads"].as_array().unwrap() {
        assert!(h["cv"]["accuracy_mean"].is_f64(), "{h}");
    }

    // evaluate --json.
    let j = json(&xfer(&[
        "evaluate",
        "--bundle",
        s(&best),
        "--features",
        s(&feats),
        "--json",
    ]));
    assert_eq!(j["evaluation"]["n_samples"], 36);

    // predict --json: every image, its class and probability.
    let zoo = tiny.parent().unwrap();
    let o = xfer(&[
        "predict",
        "--bundle",
        s(&best),
        s(&data.join("dog")),
        "--zoo",
        s(zoo),
        "--json",
    ]);
    let j = json(&o);
    assert_eq!(j["command"], "predict");
    assert_eq!(j["images"], 12);
    let preds = j["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 12);
    assert!(preds
        .iter()
        .all(|p| p["probability"].as_f64().unwrap() > 0.0));
}

#[test]
fn path_mistakes_are_one_line_with_a_next_step() {
    let t = tempfile::tempdir().unwrap();
    let notes = t.path().join("notes.h5");
    std::fs::write(&notes, vec![b'x'; 3000]).unwrap();
    let f = hdf5::File::create(t.path().join("real.h5")).unwrap();
    f.new_dataset_builder()
        .with_data(&ndarray::Array2::<f32>::zeros((64, 64)))
        .create("data")
        .unwrap();
    drop(f);
    let bytes = std::fs::read(t.path().join("real.h5")).unwrap();
    let cut = t.path().join("cut.h5");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let out = t.path().join("run");
    for (file, needle) in [
        (t.path(), "is a folder, not a feature file"),
        (notes.as_path(), "is not an HDF5 file"),
        (cut.as_path(), "is truncated"),
    ] {
        // (evaluate and predict read feature files through the same check.)
        let o = xfer(&["train", "--train", s(file), "--out", s(&out)]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
        assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
        assert!(e.contains(needle) && e.contains(s(file)), "{e}");
        assert!(!e.contains("errno") && !e.contains("H5F"), "{e}");
    }
}

/// An OS error is said once: `Io` errors show their source in their own text
/// and give it as their cause too, and the printed chain used to repeat it
/// ("Is a directory (os error 21): Is a directory (os error 21)").
#[test]
fn os_errors_are_printed_once() {
    let t = tempfile::tempdir().unwrap();
    let manifest = t.path().join("folder.toml");
    std::fs::create_dir(&manifest).unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a"], 1);
    let o = xfer(&[
        "extract",
        "--model",
        s(&manifest),
        "--data",
        s(&data),
        "--out",
        s(&t.path().join("f.h5")),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(e.contains(s(&manifest)), "{e}");
    assert_eq!(e.matches("(os error 21)").count(), 1, "{e}");
}

#[test]
fn completions_and_a_closed_pipe() {
    for shell in ["bash", "zsh", "fish"] {
        let o = xfer(&["completions", shell]);
        assert!(o.status.success(), "{}", common::text(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("extract") && text.contains("bundle"),
            "{shell}"
        );
    }
    // `xfer completions bash | head -c 10`: the reader goes away; no panic.
    let mut child = Command::new(common::XFER)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then dropped: closed
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The help names the exit statuses.
    let o = xfer(&["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 done, but some inputs were skipped"));
}
