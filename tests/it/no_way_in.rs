//! Fixed names, names and outputs an attacker or a slip can aim (issue 25,
//! items 1, 2, 7, 8), on the tiny generated model:
//!
//! - a symbolic link planted at a lock (`out.h5.lock`, `DIR/run.lock`), at an
//!   interrupted extraction (`.partial`) or at a package's folder: refused with
//!   a clear error, the file it points at unchanged, the link left there;
//! - names: a library path with `$(…)` in a package's `predict.sh` stays text;
//!   a manifest named `../../escaped` is refused by `models`, `extract`,
//!   `train` (features that record it), `package`;
//! - an output that is one of the run's inputs (by identity, through links) is
//!   refused even with `--overwrite`: `export --onnx`, `evaluate --csv`,
//!   `predict --csv`, `train --out`;
//! - `package --overwrite` replaces only a package folder, leaves no staging
//!   folder behind on any error, and holds the output lock.

use crate::common::{self, s, xfer};

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure whose error is one line, the last on stderr; that line.
fn refused(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", common::text(o));
    let e = stderr(o);
    let errors: Vec<&str> = e.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {e}");
    assert_eq!(e.trim_end().lines().last(), Some(errors[0]), "{e}");
    errors[0].to_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// A copy of the tiny model's zoo (the tests may write into it), images,
/// their features and a trained logistic head.
struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    zoo: PathBuf,
    data: PathBuf,
    feats: PathBuf,
    bundle: PathBuf,
}

fn fixture(with_bundle: bool) -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_owned();
    let zoo = dir.join("zoo");
    std::fs::create_dir(&zoo).unwrap();
    let tiny = common::tiny_manifest();
    for f in ["tiny.toml", "tiny.onnx"] {
        std::fs::copy(tiny.parent().unwrap().join(f), zoo.join(f)).unwrap();
    }
    let data = dir.join("data");
    common::make_image_folder(&data, &["cat", "dog"], 6);
    let feats = dir.join("f.h5");
    let bundle = dir.join("run/logistic.safetensors");
    if with_bundle {
        let o = xfer(&[
            "extract",
            "--model",
            s(&zoo.join("tiny.toml")),
            "--data",
            s(&data),
            "--out",
            s(&feats),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", common::text(&o));
        let o = xfer(&[
            "train",
            "--train",
            s(&feats),
            "--out",
            s(&dir.join("run")),
            "--head",
            "logistic",
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", common::text(&o));
        assert!(bundle.is_file());
    }
    Fixture {
        _t: t,
        dir,
        zoo,
        data,
        feats,
        bundle,
    }
}

// ---- item 1: fixed names beside an output ----

#[test]
fn a_symlink_at_extracts_lock_is_refused_and_the_victim_kept() {
    let f = fixture(false);
    let victim = f.dir.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let out = f.dir.join("out.h5");
    let lock = f.dir.join("out.h5.lock");
    symlink(&victim, &lock).unwrap();
    let o = xfer(&[
        "extract",
        "--model",
        s(&f.zoo.join("tiny.toml")),
        "--data",
        s(&f.data),
        "--out",
        s(&out),
        "--quiet",
    ]);
    let e = refused(&o);
    assert!(
        e.contains("out.h5.lock") && e.contains("symbolic link") && e.contains("remove it"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(is_link(&lock), "the link was deleted");
    assert!(!out.exists());
}

#[test]
fn a_symlink_at_trains_run_lock_is_refused_and_the_victim_kept() {
    let f = fixture(true);
    let victim = f.dir.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let run = f.dir.join("run2");
    std::fs::create_dir(&run).unwrap();
    symlink(&victim, run.join("run.lock")).unwrap();
    let o = xfer(&[
        "train",
        "--train",
        s(&f.feats),
        "--out",
        s(&run),
        "--head",
        "logistic",
        "--quiet",
    ]);
    let e = refused(&o);
    assert!(e.contains("run.lock") && e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(is_link(&run.join("run.lock")));
    assert_eq!(names(&run), ["run.lock"]);
}

#[test]
fn a_symlink_at_the_partial_file_is_not_resumed() {
    let f = fixture(true);
    // The victim is a real feature file of someone else: HDF5 would open it.
    let victim = f.dir.join("theirs.h5");
    std::fs::copy(&f.feats, &victim).unwrap();
    let before = std::fs::read(&victim).unwrap();
    let out = f.dir.join("mine.h5");
    let partial = f.dir.join("mine.h5.partial");
    symlink(&victim, &partial).unwrap();
    let o = xfer(&[
        "extract",
        "--model",
        s(&f.zoo.join("tiny.toml")),
        "--data",
        s(&f.data),
        "--out",
        s(&out),
        "--resume",
        "--quiet",
    ]);
    let e = refused(&o);
    assert!(
        e.contains("mine.h5.partial") && e.contains("symbolic link"),
        "{e}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), before);
    assert!(is_link(&partial));
}

// ---- item 2: names ----

/// A fake slim predictor: says it is slim, and writes its arguments (one a
/// line) beside itself.
fn fake_predictor(dir: &Path) -> PathBuf {
    let p = dir.join("fake-xfer-predict");
    common::write_executable(
        &p,
        b"#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'xfer-predict 0.0.0 (slim)'; exit 0; fi\nprintf '%s\\n' \"$@\" > \"${0%/*}/args.txt\"\n",
    );
    p
}

fn package(f: &Fixture, out: &Path, extra: &[&str]) -> Output {
    let predictor = fake_predictor(&f.dir);
    let lib = f.dir.join("libonnxruntime.so.1.31.1");
    if !lib.exists() {
        std::fs::write(&lib, b"not really a library").unwrap();
    }
    let mut args = vec![
        "--zoo",
        s(&f.zoo),
        "--ort-lib",
        s(&lib),
        "package",
        "--bundle",
        s(&f.bundle),
        "--out",
        s(out),
        "--predictor",
        s(&predictor),
    ];
    args.extend_from_slice(extra);
    xfer(&args)
}

#[test]
fn a_library_name_with_shell_syntax_stays_text_in_predict_sh() {
    let f = fixture(true);
    let name = "libonnxruntime'$(touch pwned1)`touch pwned2`\n$(touch pwned3).so";
    let lib = f.dir.join(name);
    std::fs::write(&lib, b"not really a library").unwrap();
    let predictor = fake_predictor(&f.dir);
    let pkg = f.dir.join("pkg");
    let o = xfer(&[
        "--zoo",
        s(&f.zoo),
        "--ort-lib",
        s(&lib),
        "package",
        "--bundle",
        s(&f.bundle),
        "--out",
        s(&pkg),
        "--predictor",
        s(&predictor),
    ]);
    assert!(o.status.success(), "{}", common::text(&o));
    let cwd = f.dir.join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let o = Command::new(pkg.join("predict.sh"))
        .arg("photo.jpg")
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::text(&o));
    for d in [&cwd, &pkg, &f.dir] {
        assert!(
            !names(d).iter().any(|n| n.starts_with("pwned")),
            "the script ran a command from the library's name: {:?}",
            names(d)
        );
    }
    let args = std::fs::read_to_string(pkg.join("args.txt")).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines[0], "--ort-lib");
    // The name arrives whole (its newline splits it over two lines here).
    assert_eq!(
        format!("{}\n{}", lines[1], lines[2]),
        format!("{}/lib/{name}", pkg.canonicalize().unwrap().display())
    );
    assert!(pkg.join("lib").join(name).is_file());
}

fn escaped_manifest(zoo: &Path) -> PathBuf {
    let text = std::fs::read_to_string(zoo.join("tiny.toml")).unwrap();
    let evil = text.replacen("name = \"tiny\"", "name = \"../../escaped\"", 1);
    assert_ne!(evil, text, "the tiny manifest's name line changed");
    let p = zoo.join("tiny.toml");
    std::fs::write(&p, evil).unwrap();
    p
}

#[test]
fn a_manifest_named_dot_dot_is_refused_by_models_extract_train_and_package() {
    let f = fixture(true);
    // train: features that record the name (as an older xfer wrote them).
    let edited = f.dir.join("edited.h5");
    std::fs::copy(&f.feats, &edited).unwrap();
    {
        let h = hdf5::File::open_rw(&edited).unwrap();
        h.attr("backbone")
            .unwrap()
            .write_scalar(
                &"../../escaped"
                    .parse::<hdf5::types::VarLenUnicode>()
                    .unwrap(),
            )
            .unwrap();
    }
    let o = xfer(&[
        "train",
        "--train",
        s(&edited),
        "--out",
        s(&f.dir.join("run3")),
        "--head",
        "logistic",
        "--quiet",
    ]);
    let e = refused(&o);
    assert!(
        e.contains("edited.h5") && e.contains("../../escaped") && e.contains("letters, digits"),
        "{e}"
    );

    let manifest = escaped_manifest(&f.zoo);
    let rule =
        |e: &str| e.contains("\"../../escaped\" is not allowed") && e.contains("letters, digits");
    let e = refused(&xfer(&["models", "--zoo", s(&f.zoo)]));
    assert!(rule(&e) && e.contains("tiny.toml"), "models: {e}");
    let out = f.dir.join("x.h5");
    let e = refused(&xfer(&[
        "extract",
        "--model",
        s(&manifest),
        "--data",
        s(&f.data),
        "--out",
        s(&out),
    ]));
    assert!(rule(&e), "extract: {e}");
    // A name given on the command line that is a path.
    let e = refused(&xfer(&[
        "--zoo",
        s(&f.zoo),
        "extract",
        "--model",
        "../../escaped",
        "--data",
        s(&f.data),
        "--out",
        s(&out),
    ]));
    assert!(rule(&e), "extract --model: {e}");
    let pkg = f.dir.join("deep/er/pkg");
    std::fs::create_dir_all(pkg.parent().unwrap()).unwrap();
    let e = refused(&package(&f, &pkg, &[]));
    assert!(rule(&e), "package: {e}");
    assert!(!f.dir.join("deep/escaped.toml").exists());
    assert_eq!(names(pkg.parent().unwrap()), Vec::<String>::new());
    let e = refused(&xfer(&[
        "--zoo",
        s(&f.zoo),
        "export",
        "--bundle",
        s(&f.bundle),
        "--onnx",
        s(&f.dir.join("x.onnx")),
    ]));
    assert!(rule(&e), "export: {e}");
}

// ---- item 7: outputs that are inputs ----

#[test]
fn outputs_that_are_the_runs_inputs_are_refused_even_with_overwrite() {
    let f = fixture(true);
    let model = f.zoo.join("tiny.onnx");
    let model_bytes = std::fs::read(&model).unwrap();
    let bundle_bytes = std::fs::read(&f.bundle).unwrap();
    let feats_bytes = std::fs::read(&f.feats).unwrap();
    let link = f.dir.join("link.onnx");
    symlink(&model, &link).unwrap();
    for (target, what) in [
        (&model, "model tiny's ONNX file"),
        (&link, "model tiny's ONNX file"),
        (&f.zoo.join("tiny.toml"), "model tiny's manifest"),
        (&f.bundle, "the bundle"),
    ] {
        let e = refused(&xfer(&[
            "--zoo",
            s(&f.zoo),
            "export",
            "--bundle",
            s(&f.bundle),
            "--onnx",
            s(target),
            "--overwrite",
        ]));
        assert!(
            e.contains("--onnx") && e.contains(what) && e.contains("even with --overwrite"),
            "{e}"
        );
    }
    let dotted = format!("{}/../f.h5", f.data.display());
    for csv in [s(&f.feats), dotted.as_str(), s(&f.bundle)] {
        let e = refused(&xfer(&[
            "evaluate",
            "--bundle",
            s(&f.bundle),
            "--features",
            s(&f.feats),
            "--csv",
            csv,
            "--overwrite",
        ]));
        assert!(
            e.contains("--csv") && e.contains("an input of this run"),
            "{e}"
        );
    }
    let image = f
        .data
        .join("cat")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let image_bytes = std::fs::read(&image).unwrap();
    for csv in [&image, &f.bundle, &model] {
        let e = refused(&xfer(&[
            "--zoo",
            s(&f.zoo),
            "predict",
            "--bundle",
            s(&f.bundle),
            s(&f.data),
            "--csv",
            s(csv),
            "--overwrite",
        ]));
        assert!(
            e.contains("--csv") && e.contains("an input of this run"),
            "{e}"
        );
    }
    // train: a feature file among the run's own file names.
    let run = f.dir.join("run4");
    std::fs::create_dir(&run).unwrap();
    let inside = run.join("metrics.json");
    std::fs::copy(&f.feats, &inside).unwrap();
    let e = refused(&xfer(&[
        "train",
        "--train",
        s(&inside),
        "--out",
        s(&run),
        "--head",
        "logistic",
        "--overwrite",
        "--quiet",
    ]));
    assert!(
        e.contains("metrics.json") && e.contains("a feature file"),
        "{e}"
    );
    assert_eq!(std::fs::read(&inside).unwrap(), feats_bytes);
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);
    assert_eq!(std::fs::read(&f.bundle).unwrap(), bundle_bytes);
    assert_eq!(std::fs::read(&f.feats).unwrap(), feats_bytes);
    assert_eq!(std::fs::read(&image).unwrap(), image_bytes);
}

// ---- item 8: package ----

#[test]
fn package_overwrite_replaces_only_a_package_and_leaves_nothing_behind() {
    let f = fixture(true);
    let parent = f.dir.join("out");
    std::fs::create_dir(&parent).unwrap();
    // A user's folder: not replaced, even with --overwrite.
    let mine = parent.join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("thesis.tex"), "years of work").unwrap();
    let e = refused(&package(&f, &mine, &["--overwrite"]));
    assert!(
        e.contains("did not make") && e.contains(".xfer-package"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("thesis.tex")).unwrap(),
        "years of work"
    );
    // A file, and a dangling link, with --overwrite: refused before any work.
    let file = parent.join("file");
    std::fs::write(&file, "x").unwrap();
    let e = refused(&package(&f, &file, &["--overwrite"]));
    assert!(e.contains("is a file, not a package folder"), "{e}");
    let dangling = parent.join("dangling");
    symlink(f.dir.join("nowhere"), &dangling).unwrap();
    let e = refused(&package(&f, &dangling, &["--overwrite"]));
    assert!(e.contains("symbolic link"), "{e}");
    assert!(!f.dir.join("nowhere").exists());
    assert_eq!(
        names(&parent),
        ["dangling", "file", "mine"],
        "no staging folder left"
    );

    // A package is replaced with --overwrite, and only with it.
    let pkg = parent.join("pkg");
    let o = package(&f, &pkg, &["--tar"]);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(pkg.join(".xfer-package").is_file());
    let e = refused(&package(&f, &pkg, &[]));
    assert!(e.contains("pass --overwrite"), "{e}");
    std::fs::write(pkg.join("stale"), "from before").unwrap();
    let o = package(&f, &pkg, &["--overwrite", "--tar"]);
    assert!(o.status.success(), "{}", common::text(&o));
    assert!(!pkg.join("stale").exists() && pkg.join("predict.sh").is_file());
    assert_eq!(
        names(&parent),
        ["dangling", "file", "mine", "pkg", "pkg.tar.gz"]
    );
    // A link planted at the tarball's name: refused before any work, the
    // victim kept.
    let victim = f.dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let planted = parent.join("evil.tar.gz");
    symlink(&victim, &planted).unwrap();
    let e = refused(&package(
        &f,
        &parent.join("evil"),
        &["--tar", "--overwrite"],
    ));
    assert!(
        e.contains("symbolic link") && e.contains("evil.tar.gz"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn a_package_being_written_blocks_a_second_one() {
    let f = fixture(true);
    let pkg = f.dir.join("pkg");
    let held = xfer::util::lock::OutputLock::acquire(&pkg).unwrap();
    let e = refused(&package(&f, &pkg, &[]));
    assert!(e.contains("being written by another xfer process"), "{e}");
    assert!(!pkg.exists());
    drop(held);
    let o = package(&f, &pkg, &[]);
    assert!(o.status.success(), "{}", common::text(&o));
    assert_eq!(
        names(&f.dir).iter().filter(|n| n.contains("pkg")).count(),
        1
    );
}

#[test]
fn models_add_refuses_a_name_that_is_a_path() {
    let f = fixture(false);
    let o = xfer(&[
        "--zoo",
        s(&f.zoo),
        "models",
        "add",
        s(&f.zoo.join("tiny.onnx")),
        "--name",
        "../../escaped",
    ]);
    let e = refused(&o);
    assert!(e.contains("--name") && e.contains("letters, digits"), "{e}");
    assert_eq!(names(&f.zoo), ["tiny.onnx", "tiny.toml"]);
}

#[test]
fn extract_merge_and_quantize_refuse_an_output_that_is_an_input() {
    let f = fixture(false);
    let model = f.zoo.join("tiny.onnx");
    let model_bytes = std::fs::read(&model).unwrap();
    let image = f
        .data
        .join("dog")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let image_bytes = std::fs::read(&image).unwrap();
    for out in [&model, &image] {
        let e = refused(&xfer(&[
            "extract",
            "--model",
            s(&f.zoo.join("tiny.toml")),
            "--data",
            s(&f.data),
            "--out",
            s(out),
            "--overwrite",
            "--quiet",
        ]));
        assert!(
            e.contains("--out") && e.contains("an input of this run"),
            "{e}"
        );
    }
    assert_eq!(std::fs::read(&model).unwrap(), model_bytes);
    assert_eq!(std::fs::read(&image).unwrap(), image_bytes);

    // merge: the output named through a link to a shard.
    let shards: Vec<PathBuf> = (0..2).map(|i| f.dir.join(format!("s{i}.h5"))).collect();
    for (i, sh) in shards.iter().enumerate() {
        let o = xfer(&[
            "extract",
            "--model",
            s(&f.zoo.join("tiny.toml")),
            "--data",
            s(&f.data),
            "--out",
            s(sh),
            "--shard",
            &format!("{i}/2"),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", common::text(&o));
    }
    let shard_bytes = std::fs::read(&shards[0]).unwrap();
    let link = f.dir.join("merged.h5");
    symlink(&shards[0], &link).unwrap();
    let e = refused(&xfer(&[
        "merge",
        "--out",
        s(&link),
        "--overwrite",
        s(&shards[0]),
        s(&shards[1]),
    ]));
    assert!(e.contains("a shard file"), "{e}");
    assert_eq!(std::fs::read(&shards[0]).unwrap(), shard_bytes);

    // quantize: the int8 model's name is the source's own model file.
    std::fs::copy(&model, f.zoo.join("tiny_int8.onnx")).unwrap();
    let text = std::fs::read_to_string(f.zoo.join("tiny.toml")).unwrap();
    std::fs::write(
        f.zoo.join("tiny.toml"),
        text.replacen("file = \"tiny.onnx\"", "file = \"tiny_int8.onnx\"", 1),
    )
    .unwrap();
    let e = refused(&xfer(&[
        "--zoo",
        s(&f.zoo),
        "quantize",
        "--model",
        "tiny",
        "--calib",
        s(&f.data),
        "--overwrite",
    ]));
    assert!(e.contains("model tiny's ONNX file"), "{e}");
    assert_eq!(
        std::fs::read(f.zoo.join("tiny_int8.onnx")).unwrap(),
        model_bytes
    );
}

#[test]
fn package_folder_named_like_an_option_and_a_missing_parent() {
    let f = fixture(true);
    // `tar … -v` would take the folder's name for a flag.
    let pkg = f.dir.join("-v");
    let o = package(&f, &pkg, &["--tar"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(f.dir.join("-v.tar.gz"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("-v/predict.sh"),
        "{}",
        common::text(&list)
    );
    let e = refused(&package(&f, &f.dir.join("no/such/pkg"), &[]));
    assert!(e.contains("does not exist") && e.contains("no/such"), "{e}");
}
