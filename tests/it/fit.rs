//! `xfer fit` on real photos (the Tux Paint stamps of data/stamps; the
//! package's `animals` folder is kept back and never read): a fit end to end,
//! the feature cache, an interrupted run continued, and `--model auto`.

use std::path::{Path, PathBuf};

use crate::common::{read_predictions_csv, repo, text, xfer, xfer_cmd, xfer_ok};

/// The classes used; `animals` is held back.
const CLASSES: [&str; 4] = ["flowers", "fruit", "vegetables", "vehicles"];

/// The photos of each class, sorted.
fn stamps() -> Vec<(String, Vec<PathBuf>)> {
    let root = repo().join("data/stamps");
    assert!(
        root.join(".complete").exists(),
        "{} is missing: run tools/fetch_stamps.sh (the test command's set-up should)",
        root.display()
    );
    CLASSES
        .iter()
        .map(|c| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(c))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            (c.to_string(), files)
        })
        .collect()
}

/// An ImageFolder of links to the stamps, without the last `hold` of each
/// class; returns the held-back photos (class, file).
fn stamps_folder(root: &Path, hold: usize) -> Vec<(String, PathBuf)> {
    let mut held = Vec::new();
    for (c, files) in stamps() {
        std::fs::create_dir_all(root.join(&c)).unwrap();
        let keep = files.len() - hold;
        for (i, f) in files.iter().enumerate() {
            if i < keep {
                std::os::unix::fs::symlink(f, root.join(&c).join(f.file_name().unwrap())).unwrap();
            } else {
                held.push((c.clone(), f.clone()));
            }
        }
    }
    held
}

fn fit_json(args: &[&str]) -> (serde_json::Value, String) {
    let mut a = vec!["fit", "--json"];
    a.extend_from_slice(args);
    let o = xfer_ok(&a);
    let json = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e})\n{}", text(&o)));
    (json, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn extracted(j: &serde_json::Value) -> u64 {
    j["cache"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["extracted"].as_u64().unwrap())
        .sum()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The photos of a list written by fit (path,label CSV, paths quoted).
fn list_paths(list: &Path) -> Vec<String> {
    std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let path = l.rsplit_once(',').unwrap().0;
            path.trim_matches('"').replace("\"\"", "\"")
        })
        .collect()
}

#[test]
fn fit_end_to_end_report_bundle_and_predictions_agree_with_predict() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("stamps");
    stamps_folder(&data, 0);
    let out = t.path().join("run");
    let cache = t.path().join("cache");
    let (j, err) = fit_json(&[
        p(&data),
        "--out",
        p(&out),
        "--cache",
        p(&cache),
        "--model",
        "efficientnet_lite0",
    ]);
    // The plumbing is printed before it runs, and listed at the end.
    let commands: Vec<&str> = j["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for sub in ["extract", "train", "evaluate", "audit"] {
        let c = commands
            .iter()
            .find(|c| c.starts_with(&format!("xfer {sub} ")))
            .unwrap_or_else(|| panic!("no xfer {sub} in {commands:?}"));
        assert!(err.contains(&format!("$ {c}")), "{c} printed\n{err}");
    }
    // Report, audit, bundle.
    let page = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(page.contains("data:image/jpeg;base64,"), "thumbnails");
    assert!(out.join("report/audit.html").exists());
    assert!(out.join("best.safetensors").exists());
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        metrics["fit"]["test"], j["test"],
        "recorded in metrics.json"
    );
    let n_test = j["test"]["n_samples"].as_u64().unwrap() as usize;
    let n_train = j["split"]["train"].as_u64().unwrap() as usize;
    assert_eq!(n_train + n_test, 88);
    assert!((17..=18).contains(&n_test), "a fifth held out: {n_test}");
    let (lo, hi) = (
        j["test"]["accuracy_wilson95"][0].as_f64().unwrap(),
        j["test"]["accuracy_wilson95"][1].as_f64().unwrap(),
    );
    let acc = j["test"]["accuracy"].as_f64().unwrap();
    assert!(lo < acc && acc < hi && acc > 0.6, "{acc} in [{lo}, {hi}]");

    // xfer predict on the test photos says what fit's evaluation says.
    let tests = list_paths(&out.join("lists/test.csv"));
    assert_eq!(tests.len(), n_test);
    let predicted = t.path().join("predicted.csv");
    let bundle = out.join("best.safetensors");
    let mut a = vec![
        "predict",
        "--bundle",
        p(&bundle),
        "--csv",
        p(&predicted),
        "--quiet",
    ];
    a.extend(tests.iter().map(String::as_str));
    xfer_ok(&a);
    let (classes, by_predict) = read_predictions_csv(&predicted, None);
    let (classes2, by_fit) = read_predictions_csv(&out.join("report/test_predictions.csv"), None);
    assert_eq!(classes, classes2);
    assert_eq!(by_predict.len(), n_test);
    assert_eq!(
        by_predict.keys().collect::<Vec<_>>(),
        by_fit.keys().collect::<Vec<_>>()
    );
    let mut right = 0;
    for (path, probs) in &by_predict {
        let q = &by_fit[path];
        for (a, b) in probs.iter().zip(q) {
            assert!((a - b).abs() < 1e-5, "{path}: {probs:?} vs {q:?}");
        }
        let best = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap();
        let class = Path::new(path)
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        right += usize::from(classes[best] == class);
    }
    assert!(
        (right as f64 / n_test as f64 - acc).abs() < 1e-9,
        "predict's accuracy {right}/{n_test} is fit's {acc}"
    );

    // The same command again: every step is up to date.
    let (j2, err2) = fit_json(&[
        p(&data),
        "--out",
        p(&out),
        "--cache",
        p(&cache),
        "--model",
        "efficientnet_lite0",
    ]);
    assert_eq!(extracted(&j2), 0);
    assert!(!err2.contains("\n$ "), "nothing runs again\n{err2}");
    assert_eq!(j2["test"], j["test"]);
}

#[test]
fn the_cache_extracts_only_new_photos_and_misses_on_another_model_or_recipe() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("stamps");
    let held = stamps_folder(&data, 2);
    let cache = t.path().join("cache");
    let fit = |out: &str, extra: &[&str]| {
        let out = t.path().join(out);
        let mut a = vec![p(&data), "--out", p(&out), "--cache", p(&cache)];
        a.extend(["--head", "logistic"]);
        a.extend_from_slice(extra);
        let (j, err) = fit_json(&a);
        (j, err, out)
    };
    let lite = ["--model", "efficientnet_lite0"];
    let (j, _, run1) = fit("run1", &lite);
    assert_eq!(extracted(&j), 80, "every photo once");
    // A new run on the same photos extracts nothing …
    let (j, _, run2) = fit("run2", &lite);
    assert_eq!(extracted(&j), 0, "{j}");
    // … and its files hold the features `xfer extract` gives, bit for bit.
    for split in ["train", "test"] {
        let direct = t.path().join(format!("direct_{split}.h5"));
        xfer_ok(&[
            "extract",
            "--model",
            "efficientnet_lite0",
            "--list",
            p(&run2.join(format!("lists/{split}.csv"))),
            "--out",
            p(&direct),
            "--quiet",
        ]);
        let a = xfer::features::store::read(&direct).unwrap();
        let b = xfer::features::store::read(
            &run2.join(format!("features/{split}_efficientnet_lite0.h5")),
        )
        .unwrap();
        assert_eq!(a.data, b.data, "{split}: the same features");
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.paths, b.paths);
        let (pa, pb) = (a.provenance.unwrap(), b.provenance.unwrap());
        assert_eq!(pa, pb, "{split}: the same provenance");
    }
    // Eight photos more: only they are extracted; the recorded test split stays.
    let test_before = std::fs::read_to_string(run1.join("lists/test.csv")).unwrap();
    for (c, f) in &held {
        std::os::unix::fs::symlink(f, data.join(c).join(f.file_name().unwrap())).unwrap();
    }
    let (j, err, _) = fit("run1", &lite);
    assert_eq!(extracted(&j), 8, "{j}");
    assert!(
        err.contains("8 photo(s) are new since the split was recorded"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(run1.join("lists/test.csv")).unwrap(),
        test_before
    );
    assert_eq!(
        j["split"]["train"],
        88 - j["split"]["test"].as_u64().unwrap()
    );
    // One file holds one precision: with a second chunk made as a bf16 run
    // (OpenVINO on an AMX CPU) would write it, assembling a split from both chunks
    // is refused; with the chunk as it was, the same run assembles.
    let folder = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|d| d.join("chunk-000001.h5").is_file())
        .expect("a cache folder with a second chunk");
    let chunk = folder.join("chunk-000001.h5");
    let kept = t.path().join("chunk-000001.h5.kept");
    std::fs::copy(&chunk, &kept).unwrap();
    let r = xfer::features::store::FileReader::open(&chunk).unwrap();
    let mut prov = r.provenance.clone();
    prov.execution_provider = "OpenVINOExecutionProvider".into();
    prov.inference_precision = "bf16".into();
    let bf16 = t.path().join("bf16-chunk.h5");
    let mut w =
        xfer::features::store::FeatureWriter::create_for(&bf16, r.dim, &prov, r.list.as_ref())
            .unwrap();
    let (x, labels, paths) = r.block(0..r.rows).unwrap();
    w.append(x.view(), &labels, &paths, &[]).unwrap();
    w.finish().unwrap();
    std::fs::rename(&bf16, &chunk).unwrap();
    let o = xfer(&[
        "fit",
        p(&data),
        "--out",
        p(&t.path().join("run_bf16")),
        "--cache",
        p(&cache),
        "--model",
        "efficientnet_lite0",
        "--head",
        "logistic",
    ]);
    let txt = text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        (txt.contains("was computed in bf16, other chunks in f32")
            || txt.contains("was computed in f32, other chunks in bf16"))
            && txt.contains("delete the cache folder"),
        "{txt}"
    );
    std::fs::rename(&kept, &chunk).unwrap();
    let (j, _, _) = fit("run_bf16", &lite);
    assert_eq!(extracted(&j), 0, "{j}");
    // Another recipe of the same model misses the cache.
    let zoo = t.path().join("zoo");
    std::fs::create_dir(&zoo).unwrap();
    let manifest = std::fs::read_to_string(repo().join("onnx/efficientnet_lite0.toml"))
        .unwrap()
        .replace(
            "file = \"efficientnet_lite0.onnx\"",
            &format!(
                "file = {:?}",
                p(&repo().join("onnx/efficientnet_lite0.onnx"))
            ),
        )
        .replace("resize = 256", "resize = 240");
    std::fs::write(zoo.join("efficientnet_lite0.toml"), manifest).unwrap();
    let mut a = vec!["--zoo", p(&zoo)];
    a.extend(lite);
    let (j, _, _) = fit("run3", &a);
    assert_eq!(extracted(&j), 88, "another recipe: {j}");
    // Another model misses it too.
    let tiny = repo().join("tests/fixtures/tiny/tiny.toml");
    let (j, _, _) = fit("run4", &["--model", p(&tiny)]);
    assert_eq!(extracted(&j), 88, "another model: {j}");
    // A held-out photo gone: the recorded split no longer applies, and fit says so.
    let test_photo = list_paths(&run1.join("lists/test.csv")).remove(0);
    std::fs::remove_file(&test_photo).unwrap();
    let o = xfer(&[
        "fit",
        p(&data),
        "--out",
        p(&run1),
        "--cache",
        p(&cache),
        "--model",
        "efficientnet_lite0",
    ]);
    let txt = text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("the recorded split no longer applies") && txt.contains("another --out"),
        "{txt}"
    );
}

#[test]
fn a_killed_fit_run_again_ends_as_an_uninterrupted_one() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("stamps");
    stamps_folder(&data, 0);
    let args = |name: &str| -> Vec<String> {
        [
            "fit",
            p(&data),
            "--out",
            p(&t.path().join(format!("run_{name}"))),
            "--cache",
            p(&t.path().join(format!("cache_{name}"))),
            "--model",
            "efficientnet_lite0",
            "--head",
            "logistic",
        ]
        .map(String::from)
        .to_vec()
    };
    let a: Vec<String> = args("a");
    xfer_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // Killed (SIGKILL) while the first chunk is being extracted.
    let b: Vec<String> = args("b");
    let mut child = xfer_cmd(&b.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cache_b = t.path().join("cache_b");
    let start = std::time::Instant::now();
    let partial = loop {
        let found = std::fs::read_dir(&cache_b).ok().and_then(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".h5.partial"))
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "fit ended before its extraction was seen"
        );
        assert!(start.elapsed().as_secs() < 120, "no extraction started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    std::thread::sleep(std::time::Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!t.path().join("run_b/best.safetensors").exists());
    let interrupted = partial.exists();
    let o = xfer_ok(&b.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    if interrupted {
        assert!(err.contains("--resume"), "the chunk is resumed\n{err}");
    }
    // The same features and the same head.
    for f in [
        "features/train_efficientnet_lite0.h5",
        "features/test_efficientnet_lite0.h5",
    ] {
        let x = xfer::features::store::read(&t.path().join("run_a").join(f)).unwrap();
        let y = xfer::features::store::read(&t.path().join("run_b").join(f)).unwrap();
        assert_eq!(x.data, y.data, "{f}");
        assert_eq!(x.paths, y.paths, "{f}");
    }
    let test =
        xfer::features::store::read(&t.path().join("run_a/features/test_efficientnet_lite0.h5"))
            .unwrap();
    let ba = xfer::ship::bundle::Bundle::load(&t.path().join("run_a/best.safetensors")).unwrap();
    let bb = xfer::ship::bundle::Bundle::load(&t.path().join("run_b/best.safetensors")).unwrap();
    assert_eq!(ba.meta.temperature, bb.meta.temperature);
    assert_eq!(
        ba.predict_proba(test.data.view()),
        bb.predict_proba(test.data.view())
    );
    assert_eq!(
        std::fs::read(t.path().join("run_a/report/test_predictions.csv")).unwrap(),
        std::fs::read(t.path().join("run_b/report/test_predictions.csv")).unwrap()
    );
}

#[test]
fn model_auto_chooses_by_cross_validation_among_real_weight_backbones() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("stamps");
    stamps_folder(&data, 0);
    // A zoo of two real-weight backbones (EfficientNet-Lite0 with its own
    // recipe, and with a square resize) and a random-weight one.
    let zoo = t.path().join("zoo");
    std::fs::create_dir(&zoo).unwrap();
    let lite = std::fs::read_to_string(repo().join("onnx/efficientnet_lite0.toml"))
        .unwrap()
        .replace(
            "file = \"efficientnet_lite0.onnx\"",
            &format!(
                "file = {:?}",
                p(&repo().join("onnx/efficientnet_lite0.onnx"))
            ),
        );
    std::fs::write(zoo.join("efficientnet_lite0.toml"), &lite).unwrap();
    let square = lite
        .replacen(
            "name = \"efficientnet_lite0\"",
            "name = \"lite0_square\"",
            1,
        )
        .replace("resize = 256", "resize = 224\nresize_mode = \"square\"");
    std::fs::write(zoo.join("lite0_square.toml"), square).unwrap();
    let tiny = std::fs::read_to_string(repo().join("tests/fixtures/tiny/tiny.toml"))
        .unwrap()
        .replace(
            "file = \"tiny.onnx\"",
            &format!(
                "file = {:?}",
                p(&repo().join("tests/fixtures/tiny/tiny.onnx"))
            ),
        );
    std::fs::write(zoo.join("tiny.toml"), tiny).unwrap();
    let out = t.path().join("run");
    let (j, err) = fit_json(&[
        "--zoo",
        p(&zoo),
        p(&data),
        "--out",
        p(&out),
        "--cache",
        p(&t.path().join("cache")),
        "--head",
        "logistic",
    ]);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let sel = &metrics["fit"]["model_selection"];
    let cands = sel["candidates"].as_array().unwrap();
    let names: Vec<Vec<&str>> = cands
        .iter()
        .map(|c| {
            c["models"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        names,
        [
            vec!["efficientnet_lite0"],
            vec!["lite0_square"],
            vec!["efficientnet_lite0", "lite0_square"]
        ],
        "the real-weight backbones and their concatenation, never the random one"
    );
    let losses: Vec<f64> = cands
        .iter()
        .map(|c| c["cv_log_loss"].as_f64().unwrap())
        .collect();
    let best = (0..losses.len())
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .unwrap();
    for (i, c) in cands.iter().enumerate() {
        assert_eq!(c["chosen"].as_bool(), Some(i == best), "{sel}");
        // Each loss is the one its screening run's metrics.json reports.
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(c["run"].as_str().unwrap()).join("metrics.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(m["heads"][0]["cv"]["log_loss_mean"], c["cv_log_loss"]);
    }
    assert_eq!(
        j["models"].as_array().unwrap(),
        cands[best]["models"].as_array().unwrap()
    );
    assert!(err.contains("cv log loss"), "the table is printed\n{err}");
    // The head was trained on the chosen backbone(s).
    let bundle = xfer::ship::bundle::Bundle::load(&out.join("best.safetensors")).unwrap();
    let used: Vec<&str> = bundle
        .meta
        .backbones
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(used, names[best]);
}
