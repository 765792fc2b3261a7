//! `xfer extract --resume` after the dataset changed: it continues only when
//! the result equals an uninterrupted run on today's files, and otherwise
//! refuses, naming what changed. The interrupted file is made exactly as an
//! interrupted run leaves it: the first rows of a complete run, written with
//! the same provenance into `<out>.partial`, never finished.

use crate::common;

use std::path::{Path, PathBuf};

use xfer::features::store::{self, FeatureWriter};

fn extract(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    common::tiny_extract(data, out, &[&["--batch", "4"], extra].concat())
}

/// A complete run of `data` into `dir/name`.
fn complete(data: &Path, dir: &Path, name: &str) -> store::FeatureFile {
    let out = dir.join(name);
    let o = extract(data, &out, &[]);
    assert!(o.status.success(), "{}", common::text(&o));
    store::read(&out).unwrap()
}

/// `<out>.partial` holding the first `rows` rows of `reference`, as a run
/// killed after them leaves it.
fn interrupted(reference: &store::FeatureFile, out: &Path, rows: usize) {
    let prov = reference.provenance.clone().unwrap();
    let mut w = FeatureWriter::create(out, reference.data.ncols(), &prov).unwrap();
    let paths = reference.paths.as_ref().unwrap();
    for start in (0..rows).step_by(4) {
        let end = (start + 4).min(rows);
        w.append(
            reference.data.slice(ndarray::s![start..end, ..]),
            &reference.labels.as_slice().unwrap()[start..end],
            &paths[start..end],
            &[],
        )
        .unwrap();
    }
    drop(w); // never finished
}

fn setup(classes: &[&str]) -> (tempfile::TempDir, PathBuf, store::FeatureFile) {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, classes, 20);
    let reference = complete(&data, t.path(), "before.h5");
    (t, data, reference)
}

#[test]
fn a_class_added_before_resume_is_refused_not_renumbered() {
    let (t, data, reference) = setup(&["birds", "mammals"]);
    let out = t.path().join("f.h5");
    interrupted(&reference, &out, 16);
    // fish sorts between birds and mammals: mammals would become 2.
    common::make_image_folder(&data, &["fish"], 3);
    let o = extract(&data, &out, &["--resume"]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("fish") && txt.contains("numbering") && txt.contains("--overwrite"),
        "{txt}"
    );
    assert!(!out.exists(), "nothing may look complete\n{txt}");
    assert!(
        store::partial_path(&out).exists(),
        "the interrupted file is kept"
    );
}

#[test]
fn files_removed_or_added_before_the_resume_point_are_refused() {
    let (t, data, reference) = setup(&["a", "b"]);
    let out = t.path().join("f.h5");
    interrupted(&reference, &out, 16);
    // Deleted between the kill and --resume (this used to underflow the skipped count).
    std::fs::remove_file(data.join("a/0003.png")).unwrap();
    let o = extract(&data, &out, &["--resume"]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(txt.contains("dataset changed"), "{txt}");
    assert!(!txt.contains("panicked"), "{txt}");
    // Put back, and one added that sorts before the resume point.
    common::make_image_folder(&data, &["a"], 4);
    std::fs::copy(data.join("a/0001.png"), data.join("a/0001b.png")).unwrap();
    let o = extract(&data, &out, &["--resume"]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("a/0001b.png is in the dataset but not in the file"),
        "{txt}"
    );
}

#[test]
fn changes_after_the_resume_point_give_the_uninterrupted_result() {
    let (t, data, reference) = setup(&["a", "b"]);
    let out = t.path().join("f.h5");
    interrupted(&reference, &out, 16);
    // After the resume point: one file deleted, one added.
    std::fs::remove_file(data.join("b/0010.jpg")).unwrap();
    std::fs::copy(data.join("b/0001.png"), data.join("b/0099.png")).unwrap();
    let o = extract(&data, &out, &["--resume"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let resumed = store::read(&out).unwrap();
    let fresh = complete(&data, t.path(), "fresh.h5");
    assert_eq!(resumed.paths, fresh.paths);
    assert_eq!(resumed.labels, fresh.labels);
    assert_eq!(resumed.data, fresh.data, "features bit for bit");
    assert_eq!(resumed.provenance, fresh.provenance);
}

#[test]
fn another_decode_mode_is_refused() {
    let (t, data, reference) = setup(&["a", "b"]);
    let out = t.path().join("f.h5");
    interrupted(&reference, &out, 8);
    let o = extract(&data, &out, &["--resume", "--full-jpeg-decode"]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("image decoding") && txt.contains("jpeg_scaled"),
        "{txt}"
    );
    let prov = reference.provenance.unwrap();
    assert_eq!(prov.decode, "jpeg_scaled");
}

/// `--list` + `--resume` after a label was edited in the list: the committed
/// rows keep the old label while the file would record the new list's hash,
/// so it is refused, naming the file and both labels. The list as it was
/// resumes.
#[test]
fn a_label_edited_in_the_list_before_the_resume_point_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a"], 20);
    let write_list = |first_label: &str| {
        let mut text = String::from("path,label\n");
        for i in 0..20 {
            let label = if i == 0 {
                first_label
            } else if i % 2 == 0 {
                "cat"
            } else {
                "dog"
            };
            let ext = if i % 2 == 0 { "jpg" } else { "png" };
            text.push_str(&format!("a/{i:04}.{ext},{label}\n"));
        }
        std::fs::write(data.join("list.csv"), text).unwrap();
    };
    write_list("cat");
    let list = data.join("list.csv");
    let extract_list = |out: &Path, extra: &[&str]| {
        let tiny = common::tiny_manifest();
        let mut args = vec![
            "extract",
            "--model",
            tiny.to_str().unwrap(),
            "--list",
            list.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch",
            "4",
        ];
        args.extend_from_slice(extra);
        common::xfer(&args)
    };
    let before = t.path().join("before.h5");
    let o = extract_list(&before, &[]);
    assert!(o.status.success(), "{}", common::text(&o));
    let reference = store::read(&before).unwrap();
    assert_eq!(reference.paths.as_ref().unwrap()[0], "a/0000.jpg");
    let out = t.path().join("f.h5");
    interrupted(&reference, &out, 8);
    write_list("dog");
    let o = extract_list(&out, &["--resume"]);
    let txt = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("a/0000.jpg has the label \"cat\" in the file but \"dog\" today")
            && txt.contains("--overwrite"),
        "{txt}"
    );
    assert!(!out.exists() && store::partial_path(&out).exists(), "{txt}");
    write_list("cat");
    let o = extract_list(&out, &["--resume"]);
    assert!(o.status.success(), "{}", common::text(&o));
    assert_eq!(store::read(&out).unwrap().labels, reference.labels);
}

#[test]
fn a_resume_computing_in_another_precision_is_refused() {
    // A run started under OpenVINO in bf16 and continued on ONNX Runtime's CPU
    // would hold rows of two precisions, which no uninterrupted run gives.
    let (t, data, mut reference) = setup(&["birds", "mammals"]);
    let out = t.path().join("f.h5");
    let prov = reference.provenance.as_mut().unwrap();
    prov.execution_provider = "OpenVINOExecutionProvider".into();
    prov.inference_precision = "bf16".into();
    interrupted(&reference, &out, 16);
    let o = extract(&data, &out, &["--resume"]);
    let txt = common::text(&o);
    assert!(!o.status.success(), "{txt}");
    assert!(
        txt.contains("was started computing in bf16, this run computes in the model's precision")
            && txt.contains("same device and precision"),
        "{txt}"
    );
    assert!(!out.exists(), "{txt}");
}
