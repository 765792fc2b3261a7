//! `xfer audit`: confident learning against cleanlab's own numbers (a
//! committed fixture, `tools/make_audit_fixture.py`), near-duplicates and
//! leakage on real photos with planted copies (re-encoded, resized, cropped,
//! mirrored, byte-identical), the bad-input errors, and `xfer train` writing
//! the out-of-fold probabilities that `audit --run` reads.

use crate::common::{self, ok, s, xfer};

use std::path::{Path, PathBuf};
use std::process::Output;

use xfer::eval::audit::confident::{self, RankBy};

fn fails_with(o: Output, needle: &str) -> String {
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains(needle), "expected {needle:?} in: {t}");
    let errors = err.lines().filter(|l| !l.starts_with("warning: ")).count();
    assert_eq!(errors, 1, "one line (besides warnings): {t}");
    assert!(!err.contains("Some("), "{t}");
    err
}

fn extract(model: &str, data: &Path, out: &Path) -> PathBuf {
    ok(xfer(&[
        "extract",
        "--model",
        model,
        "--data",
        s(data),
        "--out",
        s(out),
        "--quiet",
    ]));
    out.to_owned()
}

fn audit_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["audit", "--json"];
    a.extend_from_slice(args);
    let o = ok(xfer(&a));
    serde_json::from_slice(&o.stdout).expect("audit --json prints JSON")
}

// --- confident learning against cleanlab ------------------------------------

#[test]
fn confident_learning_matches_cleanlab_on_fixed_examples() {
    let text =
        std::fs::read_to_string(common::repo().join("tests/fixtures/audit/cleanlab.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ints = |x: &serde_json::Value| -> Vec<usize> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let mut total = 0;
    for case in v["cases"].as_array().unwrap() {
        let labels = ints(&case["labels"]);
        let rows = case["pred_probs"].as_array().unwrap();
        let k = rows[0].as_array().unwrap().len();
        let p = ndarray::Array2::from_shape_fn((labels.len(), k), |(i, j)| {
            rows[i][j].as_f64().unwrap() as f32
        });
        let seed = &case["seed"];
        let cj = confident::confident_joint(p.view(), &labels);
        let want_cj: Vec<Vec<i64>> = case["confident_joint"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(cj, want_cj, "confident joint, case {seed}");
        let issues = confident::find_label_issues(p.view(), &labels);
        assert_eq!(issues, ints(&case["issues"]), "flagged rows, case {seed}");
        for (by, key) in [
            (RankBy::SelfConfidence, "ranked_self_confidence"),
            (RankBy::NormalizedMargin, "ranked_normalized_margin"),
        ] {
            assert_eq!(
                confident::rank(p.view(), &labels, &issues, by),
                ints(&case[key]),
                "{key}, case {seed}"
            );
        }
        total += issues.len();
    }
    assert!(
        total >= 20,
        "the fixture exercises the pruning ({total} issues)"
    );
}

// --- near-duplicates and leakage on real photos -----------------------------

fn on_white(path: &Path) -> image::RgbImage {
    let img = image::open(path).unwrap().to_rgba8();
    image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        let a = p[3] as f32 / 255.0;
        let c = |v: u8| (v as f32 * a + 255.0 * (1.0 - a)).round() as u8;
        image::Rgb([c(p[0]), c(p[1]), c(p[2])])
    })
}

fn jpeg(img: &image::RgbImage, quality: u8, out: &Path) {
    let mut f = std::fs::File::create(out).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut f, quality)
        .encode_image(img)
        .unwrap();
}

/// train/{fruit,flowers} and test/{fruit,flowers} of distinct stamp photos,
/// with planted copies: (train image, its copy in test or train).
fn planted(root: &Path) -> Vec<(String, String)> {
    let stamps = common::repo().join("data/stamps");
    let put = |split: &str, class: &str, names: &[&str]| {
        let d = root.join(split).join(class);
        std::fs::create_dir_all(&d).unwrap();
        for n in names {
            std::fs::copy(stamps.join(class).join(n), d.join(n)).unwrap();
        }
    };
    put(
        "train",
        "fruit",
        &[
            "avocado.png",
            "banana.png",
            "grapes.png",
            "kiwi.png",
            "lemon.png",
            "mango.png",
        ],
    );
    put(
        "test",
        "fruit",
        &["pear.png", "pineapple.png", "pomegranate.png"],
    );
    put(
        "train",
        "flowers",
        &[
            "adeenia.png",
            "anemone_red.png",
            "anthoorium.png",
            "daffodil.png",
            "iris.png",
            "marigold.png",
        ],
    );
    put(
        "test",
        "flowers",
        &["rose.png", "pigface.png", "bolsom.png"],
    );
    let src = |class: &str, n: &str| on_white(&stamps.join(class).join(n));
    // Re-encoded at another JPEG quality.
    jpeg(
        &src("fruit", "avocado.png"),
        90,
        &root.join("test/fruit/avocado_q90.jpg"),
    );
    // Mirrored.
    image::imageops::flip_horizontal(&src("fruit", "banana.png"))
        .save(root.join("test/fruit/banana_mirrored.png"))
        .unwrap();
    // The same bytes.
    std::fs::copy(
        stamps.join("fruit/grapes.png"),
        root.join("test/fruit/grapes_copy.png"),
    )
    .unwrap();
    // Resized to 60 %.
    let a = src("flowers", "adeenia.png");
    image::imageops::resize(
        &a,
        a.width() * 3 / 5,
        a.height() * 3 / 5,
        image::imageops::FilterType::Triangle,
    )
    .save(root.join("test/flowers/adeenia_small.png"))
    .unwrap();
    // Cropped a little (5 % off each side).
    let b = src("flowers", "anemone_red.png");
    let (w, h) = (b.width(), b.height());
    image::imageops::crop_imm(&b, w / 20, h / 20, w - w / 10, h - h / 10)
        .to_image()
        .save(root.join("test/flowers/anemone_cropped.png"))
        .unwrap();
    // A copy within training, re-encoded.
    jpeg(
        &src("fruit", "kiwi.png"),
        75,
        &root.join("train/fruit/kiwi_q75.jpg"),
    );
    vec![
        (
            "train:fruit/avocado.png".into(),
            "test:fruit/avocado_q90.jpg".into(),
        ),
        (
            "train:fruit/banana.png".into(),
            "test:fruit/banana_mirrored.png".into(),
        ),
        (
            "train:fruit/grapes.png".into(),
            "test:fruit/grapes_copy.png".into(),
        ),
        (
            "train:flowers/adeenia.png".into(),
            "test:flowers/adeenia_small.png".into(),
        ),
        (
            "train:flowers/anemone_red.png".into(),
            "test:flowers/anemone_cropped.png".into(),
        ),
        (
            "train:fruit/kiwi.png".into(),
            "train:fruit/kiwi_q75.jpg".into(),
        ),
    ]
}

fn side(v: &serde_json::Value) -> String {
    format!(
        "{}:{}",
        v["split"].as_str().unwrap(),
        v["path"].as_str().unwrap()
    )
}

#[test]
fn planted_duplicates_and_leakage_are_found_on_real_photos() {
    let t = tempfile::tempdir().unwrap();
    let want = planted(t.path());
    let train = extract(
        "efficientnet_lite0",
        &t.path().join("train"),
        &t.path().join("train_efficientnet_lite0.h5"),
    );
    let test = extract(
        "efficientnet_lite0",
        &t.path().join("test"),
        &t.path().join("test_efficientnet_lite0.h5"),
    );
    let csv = t.path().join("audit.csv");
    let report = t.path().join("report");
    let v = audit_json(&[
        "--features",
        s(&train),
        "--features",
        s(&test),
        "--csv",
        s(&csv),
        "--report",
        s(&report),
    ]);
    let dups = v["duplicates"].as_array().unwrap();
    let got: Vec<(String, String, bool, String, f64)> = dups
        .iter()
        .map(|d| {
            let (a, b) = (side(&d["a"]), side(&d["b"]));
            let (a, b) = if a.starts_with("train") && (b.starts_with("test") || a < b) {
                (a, b)
            } else {
                (b, a)
            };
            (
                a,
                b,
                d["leakage"].as_bool().unwrap(),
                d["kind"].as_str().unwrap().to_string(),
                d["similarity"].as_f64().unwrap(),
            )
        })
        .collect();
    eprintln!("pairs found: {got:#?}");
    for (a, b) in &want {
        let hit = got
            .iter()
            .find(|g| (&g.0 == a && &g.1 == b) || (&g.0 == b && &g.1 == a));
        let hit = hit.unwrap_or_else(|| {
            panic!("planted pair {a} ~ {b} not found at the default threshold: {got:#?}")
        });
        assert_eq!(
            hit.2,
            a.split(':').next() != b.split(':').next(),
            "leakage flag of {a} ~ {b}"
        );
        if b.contains("grapes_copy") {
            assert_eq!(hit.3, "exact", "the same bytes are an exact duplicate");
        }
    }
    assert_eq!(
        got.len(),
        want.len(),
        "no false positives among distinct photos: {got:#?}"
    );
    // Leakage is listed first.
    assert!(dups[..5].iter().all(|d| d["leakage"].as_bool().unwrap()));
    let csv = std::fs::read_to_string(csv).unwrap();
    assert!(csv.starts_with("issue,rank,split,path,given,suggested,score,other_split,other_path,other_given,similarity\n"), "{csv}");
    assert_eq!(csv.matches("\nleakage_").count(), 5, "{csv}");
    let page = std::fs::read_to_string(report.join("audit.html")).unwrap();
    for id in ["leakage", "duplicates", "labels", "outliers"] {
        assert!(page.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    // Each pair side by side, each with its thumbnail.
    assert!(
        page.matches("data:image/jpeg;base64,").count() >= 12,
        "thumbnails"
    );
    // Without --threshold the planted pairs are found; with a strict one the exact copy stays.
    let strict = audit_json(&[
        "--features",
        s(&train),
        "--features",
        s(&test),
        "--threshold",
        "0.9999",
        "--no-hash",
    ]);
    let n = strict["duplicates"].as_array().unwrap().len();
    assert!(
        (1..want.len()).contains(&n),
        "a stricter threshold finds fewer: {n}"
    );
}

// --- out-of-fold probabilities written by train ------------------------------

#[test]
fn train_writes_out_of_fold_probabilities_that_audit_reads() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b", "c"], 8);
    let tiny = common::tiny_manifest();
    let f = extract(s(&tiny), &data, &t.path().join("train_tiny.h5"));
    let run = t.path().join("run");
    ok(xfer(&[
        "train",
        "--train",
        s(&f),
        "--out",
        s(&run),
        "--cv",
        "3",
        "--epochs",
        "3",
        "--quiet",
    ]));
    let oof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("out_of_fold.json")).unwrap())
            .unwrap();
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(oof["folds"], metrics["validation"]["folds"]);
    assert_eq!(oof["n_folds"], 3);
    assert_eq!(oof["paths"].as_array().unwrap().len(), 24);
    let labels: Vec<u64> = oof["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let heads = oof["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 2, "both heads");
    for h in heads {
        let p = h["probabilities"].as_array().unwrap();
        assert_eq!(p.len(), 24);
        let mut right = 0;
        let mut loss = 0.0;
        for (row, &l) in p.iter().zip(&labels) {
            let row: Vec<f64> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4);
            let best = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            right += (best as u64 == l) as usize;
            loss -= row[l as usize].max(1e-15).ln();
        }
        // The run's held-out figures are these probabilities' figures.
        let m = metrics["heads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["bundle"] == h["bundle"])
            .unwrap();
        let acc = m["validation"]["accuracy"].as_f64().unwrap();
        assert!(
            (acc - right as f64 / 24.0).abs() < 1e-9,
            "{acc} vs {right}/24"
        );
        let ll = m["validation"]["log_loss"].as_f64().unwrap();
        assert!((ll - loss / 24.0).abs() < 1e-3, "{ll} vs {}", loss / 24.0);
    }
    let v = audit_json(&["--features", s(&f), "--run", s(&run)]);
    assert!(
        v["probabilities"]
            .as_str()
            .unwrap()
            .starts_with("from the run"),
        "{v}"
    );
    assert_eq!(v["n_label_checked"], 24);
    let v = audit_json(&["--features", s(&f), "--run", s(&run), "--head", "logistic"]);
    assert!(
        v["probabilities"]
            .as_str()
            .unwrap()
            .contains("logistic head"),
        "{v}"
    );
    // Two backbones of one split, comma-separated, concatenated as training does.
    let g = t.path().join("train_tiny_tutorial.h5");
    ok(xfer(&[
        "extract",
        "--model",
        s(&tiny),
        "--data",
        s(&data),
        "--out",
        s(&g),
        "--preset",
        "tutorial",
        "--quiet",
    ]));
    let both = format!("{},{}", s(&f), s(&g));
    let v = audit_json(&["--features", &both]);
    assert_eq!(v["splits"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["n_rows"], 24);
    let e = fails_with(
        xfer(&["audit", "--features", &both, "--run", s(&run)]),
        "does not match the features",
    );
    assert!(e.contains("backbone"), "{e}");
    // A run without cross-validation has none, and an earlier run's file goes.
    ok(xfer(&[
        "train",
        "--train",
        s(&f),
        "--out",
        s(&run),
        "--val-split",
        "0.25",
        "--epochs",
        "3",
        "--quiet",
        "--overwrite",
    ]));
    assert!(!run.join("out_of_fold.json").exists());
    fails_with(
        xfer(&["audit", "--features", s(&f), "--run", s(&run)]),
        "did not cross-validate",
    );
}

// --- bad input ----------------------------------------------------------------

#[test]
fn bad_input_gets_one_clear_line() {
    let t = tempfile::tempdir().unwrap();
    let tiny = common::tiny_manifest();
    let mk = |name: &str, classes: &[&str], n: u32| {
        let d = t.path().join(name);
        common::make_image_folder(&d, classes, n);
        extract(s(&tiny), &d, &t.path().join(format!("{name}_tiny.h5")))
    };
    let train = mk("train", &["a", "b"], 6);
    let test = mk("test", &["a", "b"], 3);
    // Another backbone for one split.
    let lite = extract(
        "efficientnet_lite0",
        &t.path().join("test"),
        &t.path().join("test_lite0.h5"),
    );
    fails_with(
        xfer(&["audit", "--features", s(&train), "--features", s(&lite)]),
        "different backbones",
    );
    // Another dataset (other classes).
    let other = mk("other", &["x", "y"], 3);
    fails_with(
        xfer(&["audit", "--features", s(&train), "--features", s(&other)]),
        "different datasets",
    );
    // One split given twice.
    let copy = t.path().join("train_again.h5");
    std::fs::copy(&train, &copy).unwrap();
    fails_with(
        xfer(&["audit", "--features", s(&train), "--features", s(&copy)]),
        "one split given twice",
    );
    fails_with(
        xfer(&["audit", "--features", s(&train), "--features", s(&train)]),
        "given twice",
    );
    // A class with one image.
    let one = t.path().join("one");
    common::make_image_folder(&one, &["a", "b"], 4);
    for i in 1..4 {
        std::fs::remove_file(
            one.join("b")
                .join(format!("{i:04}.{}", if i % 2 == 0 { "jpg" } else { "png" })),
        )
        .unwrap();
    }
    let one = extract(s(&tiny), &one, &t.path().join("one_tiny.h5"));
    fails_with(
        xfer(&["audit", "--features", s(&one)]),
        "b (1) have fewer than 2 labelled images",
    );
    // A run whose folds do not match the features: trained, then the data changed.
    let run = t.path().join("run");
    ok(xfer(&[
        "train",
        "--train",
        s(&test),
        "--out",
        s(&run),
        "--cv",
        "3",
        "--epochs",
        "2",
        "--head",
        "logistic",
        "--quiet",
    ]));
    let e = fails_with(
        xfer(&["audit", "--features", s(&train), "--run", s(&run)]),
        "folds do not match the features",
    );
    assert!(e.contains("leave out --run"), "{e}");
    common::make_image_folder(&t.path().join("test"), &["a", "b"], 4); // one more image per class
    let test2 = t.path().join("test2_tiny.h5");
    extract(s(&tiny), &t.path().join("test"), &test2);
    let e = fails_with(
        xfer(&["audit", "--features", s(&test2), "--run", s(&run)]),
        "2 images new since the run",
    );
    assert!(e.contains("train again"), "{e}");
    // A run folder that is not one.
    fails_with(
        xfer(&["audit", "--features", s(&train), "--run", s(&train)]),
        "is not a folder",
    );
    // A threshold outside (0, 1].
    fails_with(
        xfer(&["audit", "--features", s(&train), "--threshold", "1.5"]),
        "--threshold must be in (0, 1]",
    );
    // Unlabelled splits are audited for duplicates and outliers only.
    let v = audit_json(&["--features", s(&train), "--features", s(&test)]);
    assert_eq!(v["n_label_checked"], 18);
}

/// Blocked exact search at scale (synthetic features): `cargo test --release
/// --test it audit::scale -- --ignored --nocapture`; XFER_AUDIT_ROWS sets the rows.
#[test]
#[ignore]
fn scale_blocked_neighbour_search() {
    let n: usize = std::env::var("XFER_AUDIT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let d = 1280;
    let mut rng = xfer::train::head::Rng::new(1);
    let x = ndarray::Array2::from_shape_fn((n, d), |_| rng.uniform(0.0, 1.0).powi(4));
    let t0 = std::time::Instant::now();
    let u = xfer::eval::audit::neighbors::normalize_rows(x.view());
    drop(x);
    let nb = xfer::eval::audit::neighbors::search(u.view(), 5, 0.95);
    let secs = t0.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    println!(
        "{n} × {d}: {secs:.1} s ({:.1} GFLOP/s), {} pairs ≥ 0.95, peak RSS {}",
        (n as f64 * n as f64 * d as f64) / secs / 1e9,
        nb.pairs.len(),
        hwm.trim_start_matches("VmHWM:").trim()
    );
}
