//! `xfer evaluate --report DIR` on features extracted with the tiny generated
//! ONNX model from generated images: an ImageFolder whose class names need
//! escaping (`<`, `&`, `"`), the Kaggle flat layout, two backbones
//! concatenated, data moved after extraction (`--image-root`), and tutorial
//! files without paths; the `--overwrite` convention. The page is checked as
//! text here; `tests/it/report_browser.rs` opens one in Chromium.

use crate::common::{self, ok, s, xfer};

use std::path::{Path, PathBuf};

fn extract(data: &Path, out: &Path, preset: &str) -> PathBuf {
    ok(common::tiny_extract(data, out, &["--preset", preset]));
    out.to_owned()
}

/// Trains both heads (a few epochs) into `out`; returns best.safetensors.
fn train(features: &[&Path], out: &Path) -> PathBuf {
    let mut args = vec!["train"];
    for f in features {
        args.extend(["--train", s(f)]);
    }
    args.extend(["--out", s(out), "--epochs", "5", "--cv", "2"]);
    ok(xfer(&args));
    out.join("best.safetensors")
}

/// Runs `xfer evaluate --report DIR` and returns the page.
fn report(bundle: &Path, features: &[&Path], dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["evaluate", "--bundle", s(bundle)];
    for f in features {
        args.extend(["--features", s(f)]);
    }
    args.extend(["--report", s(dir)]);
    args.extend(extra);
    let o = ok(xfer(&args));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("report.html"), "{err}");
    std::fs::read_to_string(dir.join("report.html")).unwrap()
}

const SECTIONS: [&str; 6] = [
    "summary",
    "provenance",
    "confusion",
    "reliability",
    "learning-curves",
    "mistakes",
];

fn assert_sections(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..80]);
    assert!(page.trim_end().ends_with("</html>"));
    for id in SECTIONS {
        assert!(page.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    for needle in [
        "expected calibration error",
        "Reliability: ECE = ",
        "precision",
        "F1",
        "temperature",
        "@media print",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    // Self-contained: nothing is fetched.
    for external in ["http://", "https://", "<script", "<link", "@import", "url("] {
        let hits: Vec<_> = page
            .match_indices(external)
            .filter(|(i, _)| !page[..*i].ends_with("xmlns=\""))
            .collect();
        assert!(hits.is_empty(), "{external} in the page");
    }
}

/// (thumbnails, figures): every figure has a thumbnail when the images are reachable.
fn thumbnails(page: &str) -> (usize, usize) {
    (
        page.matches("<img src=\"data:image/jpeg;base64,").count(),
        page.matches("<figure>").count(),
    )
}

#[test]
fn image_folder_report_has_every_section_thumbnails_and_escaped_names() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("photos");
    let classes = ["a<b", "c&d", "e\"f"];
    common::make_image_folder(&data, &classes, 6);
    let feats = extract(&data, &t.path().join("f.h5"), "native");
    let bundle = train(&[&feats], &t.path().join("run"));
    let dir = t.path().join("report");
    let page = report(&bundle, &[&feats], &dir, &[]);
    assert_sections(&page);
    let (imgs, figures) = thumbnails(&page);
    assert!(figures > 0 && imgs == figures, "{imgs} of {figures}");
    assert!(!page.contains("not reachable"));
    // Class names are escaped everywhere (headers, cells, captions, titles).
    assert!(page.contains("a&lt;b") && page.contains("c&amp;d") && page.contains("e&quot;f"));
    for raw in ["a<b", "c&d", "e\"f"] {
        assert!(!page.contains(raw), "{raw} unescaped");
    }
    // The run's learning curves and its comparison table, from metrics.json.
    assert!(page.contains("Loss (cross-entropy)"), "learning curves");
    assert!(page.contains("recommended"));
    assert!(page.matches("<svg").count() >= 2, "reliability + curves");

    // An existing page is replaced only with --overwrite.
    let mut args = vec![
        "evaluate",
        "--bundle",
        s(&bundle),
        "--features",
        s(&feats),
        "--report",
        s(&dir),
    ];
    let o = xfer(&args);
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("pass --overwrite"),
        "{}",
        common::text(&o)
    );
    args.push("--overwrite");
    ok(xfer(&args));
    // A file where the folder should be is refused before any work.
    let file = t.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let o = xfer(&[
        "evaluate",
        "--bundle",
        s(&bundle),
        "--features",
        s(&feats),
        "--report",
        s(&file),
    ]);
    assert!(
        common::text(&o).contains("is not a folder"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn kaggle_layout_and_two_backbones_get_thumbnails() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("train");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..8u32 {
        for (c, name) in ["cat", "dog"].iter().enumerate() {
            common::pattern(48, 40 + i, c as u32 * 100 + i)
                .save(data.join(format!("{name}.{i}.jpg")))
                .unwrap();
        }
    }
    let a = extract(&data, &t.path().join("a.h5"), "native");
    let b = extract(&data, &t.path().join("b.h5"), "tutorial");
    // Kaggle flat, one backbone.
    let bundle = train(&[&a], &t.path().join("run1"));
    let page = report(&bundle, &[&a], &t.path().join("r1"), &[]);
    assert_sections(&page);
    let (imgs, figures) = thumbnails(&page);
    assert!(figures > 0 && imgs == figures, "{imgs} of {figures}");
    assert!(
        page.contains("cat.") || page.contains("dog."),
        "paths in captions"
    );
    // Two feature files concatenated: both backbones listed, images found.
    let bundle = train(&[&a, &b], &t.path().join("run2"));
    let page = report(&bundle, &[&a, &b], &t.path().join("r2"), &[]);
    assert_sections(&page);
    let (imgs, figures) = thumbnails(&page);
    assert!(figures > 0 && imgs == figures, "{imgs} of {figures}");
    assert_eq!(page.matches("<tr><td class=\"l\">tiny</td>").count(), 2);
    assert!(page.contains("tiny + tiny"));
}

#[test]
fn moved_images_and_tutorial_files_get_a_note_instead_of_thumbnails() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("photos");
    common::make_image_folder(&data, &["cat", "dog"], 5);
    let feats = extract(&data, &t.path().join("f.h5"), "native");
    let bundle = train(&[&feats], &t.path().join("run"));
    // The data moved after extraction: a note, no thumbnails, no error.
    let moved = t.path().join("elsewhere");
    std::fs::rename(&data, &moved).unwrap();
    let page = report(&bundle, &[&feats], &t.path().join("r1"), &[]);
    assert_sections(&page);
    assert_eq!(thumbnails(&page).0, 0);
    assert!(page.contains("The images are not reachable"), "note");
    assert!(
        page.contains(&format!("{}", data.display())),
        "names the old root"
    );
    assert!(page.contains("--image-root"));
    // --image-root says where they are now.
    let page = report(
        &bundle,
        &[&feats],
        &t.path().join("r2"),
        &["--image-root", s(&moved)],
    );
    let (imgs, figures) = thumbnails(&page);
    assert!(figures > 0 && imgs == figures, "{imgs} of {figures}");
    // One image gone: its figure says why, the others still show.
    let gone = std::fs::read_dir(moved.join("cat"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&gone).unwrap();
    let page = report(
        &bundle,
        &[&feats],
        &t.path().join("r3"),
        &["--image-root", s(&moved)],
    );
    let (imgs, figures) = thumbnails(&page);
    assert_eq!(imgs + 1, figures, "one figure without its image");
    assert!(page.contains("could not be read"));
    // A bundle away from its run: no metrics.json, said so.
    let lone = t.path().join("lone.safetensors");
    std::fs::copy(&bundle, &lone).unwrap();
    let page = report(&lone, &[&feats], &t.path().join("r4"), &[]);
    assert!(
        page.contains("no metrics.json beside the bundle"),
        "curves note"
    );

    // Tutorial files: no paths, no provenance.
    let x = ndarray::Array2::from_shape_fn((12, 4), |(i, j)| ((i % 2) * 3 + j) as f32);
    let labels: Vec<i64> = (0..12).map(|i| (i % 2) as i64).collect();
    let tut = t.path().join("train_feature_tiny.hd5f");
    {
        let f = hdf5::File::create(&tut).unwrap();
        f.new_dataset_builder()
            .with_data(&x)
            .create("data")
            .unwrap();
        f.new_dataset_builder()
            .with_data(&labels)
            .create("label")
            .unwrap();
    }
    let run = t.path().join("run_tut");
    ok(xfer(&[
        "train",
        "--train",
        s(&tut),
        "--out",
        s(&run),
        "--head",
        "logistic",
        "--cv",
        "2",
    ]));
    let page = report(
        &run.join("best.safetensors"),
        &[&tut],
        &t.path().join("r5"),
        &[],
    );
    assert_sections(&page);
    assert_eq!(thumbnails(&page).0, 0);
    assert!(page.contains("record no image paths"), "tutorial note");
    assert!(page.contains("trained no MLP"), "logistic-only run");
}
