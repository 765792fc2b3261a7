//! Shared helpers of the integration tests. Nothing here downloads anything:
//! the ONNX Runtime library, the EfficientNet-Lite0 model and the photos are put
//! in place by `tools/setup.sh`, which the README's test command runs first.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use xfer::models::runtime::Runtime;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The ONNX Runtime set up by tools/setup.sh; a clear failure otherwise.
pub fn runtime() -> Runtime {
    Runtime::init(None)
        .unwrap_or_else(|e| panic!("{e} (the test command runs tools/setup.sh first)"))
}

/// A file that tools/setup.sh generates; a clear failure when it is missing.
pub fn setup_file(rel: &str) -> PathBuf {
    let p = repo().join(rel);
    assert!(p.exists(), "{} is missing: run tools/setup.sh", p.display());
    p
}

pub fn tiny_manifest() -> PathBuf {
    repo().join("tests/fixtures/tiny/tiny.toml")
}

/// [`tiny_manifest`] as a command-line argument.
pub fn tiny() -> String {
    tiny_manifest().display().to_string()
}

// ---- running the binaries ----

/// The full tool, as cargo built it for this test binary.
pub const XFER: &str = env!("CARGO_BIN_EXE_xfer");
/// The predictor of the default build (not the slim one of [`build_slim`]).
pub const XFER_PREDICT: &str = env!("CARGO_BIN_EXE_xfer-predict");

/// `exe args` as every test runs a binary of this package: in the repository,
/// with HDF5's advisory file locking off. The tests run in parallel threads of
/// one process, some writing HDF5 files in-process; a child spawned meanwhile
/// inherits the open file (HDF5 opens without O_CLOEXEC) and with it the
/// writer's lock, so another child could not open that file until the first
/// one exits. The children therefore skip the locking (the files they read are
/// complete and closed). The environment is otherwise the test process's: a
/// test that needs other variables sets them on the command, never on the
/// process (`std::env::set_var` would reach every test running beside it).
pub fn command<S: AsRef<OsStr>>(exe: &str, args: &[S]) -> Command {
    let mut c = Command::new(exe);
    c.args(args)
        .current_dir(repo())
        .env("HDF5_USE_FILE_LOCKING", "FALSE");
    c
}

/// [`command`] for `xfer args`, to add to before running it with [`output`].
pub fn xfer_cmd<S: AsRef<OsStr>>(args: &[S]) -> Command {
    command(XFER, args)
}

/// Runs `cmd` to its end, stdout and stderr captured.
pub fn output(mut cmd: Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()))
}

/// `exe args` ([`command`]), run to its end; whatever its exit status.
pub fn run<S: AsRef<OsStr>>(exe: &str, args: &[S]) -> Output {
    output(command(exe, args))
}

/// `xfer args`, run to its end; whatever its exit status.
pub fn xfer<S: AsRef<OsStr>>(args: &[S]) -> Output {
    run(XFER, args)
}

/// `xfer args` with `env` added to its environment.
pub fn xfer_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = xfer_cmd(args);
    c.envs(env.iter().copied());
    output(c)
}

/// `xfer-predict args` (the default build's), run to its end.
pub fn slim(args: &[&str]) -> Output {
    run(XFER_PREDICT, args)
}

/// Writes `contents` to `path` as an executable (mode 755) through a child
/// process (`sh -c 'cat > path'`), never through a descriptor of this process.
/// The tests run in threads of one process, each spawning children; a file this
/// process had open for writing is inherited by a child another thread spawns
/// at that moment (`O_CLOEXEC` closes it only at that child's `exec`), and
/// executing a file that any process holds open for writing fails with ETXTBSY
/// ("Text file busy"), at random. Written by `sh`, which exits before the test
/// goes on, nothing can be holding it.
pub fn write_executable(path: &Path, contents: &[u8]) {
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sh");
    // Dropped after writing: `cat` sees the end of its input.
    child.stdin.take().unwrap().write_all(contents).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "writing {}: {status}", path.display());
}

/// `exe args`, asserted to succeed.
pub fn run_ok(exe: &str, args: &[&str]) -> Output {
    let o = run(exe, args);
    assert!(o.status.success(), "{exe} {args:?}\n{}", text(&o));
    o
}

/// `xfer args`, asserted to succeed.
pub fn xfer_ok(args: &[&str]) -> Output {
    let o = xfer(args);
    assert!(o.status.success(), "xfer {args:?}\n{}", text(&o));
    o
}

/// `o`, asserted to have succeeded (exit status 0).
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// `o`, asserted to have finished, with or without skipped files (exit status 0 or 3).
pub fn done(o: Output) -> Output {
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", text(&o));
    o
}

/// A path as a command-line argument (the tests' paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The exit status, stdout and stderr of `o`, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `extract --model <tiny> --data <data> --out <out>` and `extra`: the
/// extraction most tests run, on the tiny fixture backbone.
pub fn tiny_extract_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "extract",
        "--model",
        &tiny(),
        "--data",
        s(data),
        "--out",
        s(out),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// `xfer` [`tiny_extract_args`], run to its end; whatever its exit status.
pub fn tiny_extract(data: &Path, out: &Path, extra: &[&str]) -> Output {
    xfer(&tiny_extract_args(data, out, extra))
}

/// A deterministic, textured RGB image (not flat, so resizing matters).
pub fn pattern(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = x
            .wrapping_mul(31)
            .wrapping_add(y.wrapping_mul(17))
            .wrapping_add(seed * 97);
        image::Rgb([
            (v % 251) as u8,
            ((x * 7 + seed) % 256) as u8,
            ((y * 5 + seed * 3) % 256) as u8,
        ])
    })
}

/// An ImageFolder of `per_class` JPEGs and PNGs in each of `classes`.
pub fn make_image_folder(root: &Path, classes: &[&str], per_class: u32) {
    for (ci, c) in classes.iter().enumerate() {
        std::fs::create_dir_all(root.join(c)).unwrap();
        for i in 0..per_class {
            let img = pattern(40 + i % 7, 50 + i % 5, ci as u32 * 1000 + i);
            let ext = if i % 2 == 0 { "jpg" } else { "png" };
            img.save(root.join(c).join(format!("{i:04}.{ext}")))
                .unwrap();
        }
    }
}

/// Runs `cmd` where no ONNX Runtime library can be found (an empty home, a
/// wrong `ORT_DYLIB_PATH`) and checks that it fails with the message naming
/// the set-up command, not a panic.
pub fn assert_missing_ort_is_clear(cmd: &mut Command) {
    let home = tempfile::tempdir().unwrap();
    let o = cmd
        .env("HOME", home.path())
        .env_remove("XFER_HOME")
        .env_remove("XDG_DATA_HOME")
        .env("ORT_DYLIB_PATH", home.path().join("nope.so"))
        .output()
        .unwrap();
    let txt = text(&o);
    assert_eq!(o.status.code(), Some(1), "{txt}");
    assert!(
        txt.contains("no ONNX Runtime library found") && txt.contains("tools/setup.sh"),
        "{txt}"
    );
    assert!(!txt.contains("panicked"), "{txt}");
}

/// The real photos of `data/stamps` split reproducibly into `root/train` and
/// `root/test` (symlinks): every third image of each class (sorted) is held
/// back. Returns (train, test, class folders).
pub fn stamps_split(root: &Path) -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let stamps = repo().join("data/stamps");
    assert!(
        stamps.join(".complete").exists(),
        "{} is missing: run tools/fetch_stamps.sh (the test command's set-up should)",
        stamps.display()
    );
    let (train, test) = (root.join("train"), root.join("test"));
    let mut classes: Vec<PathBuf> = std::fs::read_dir(&stamps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    for c in &classes {
        let name = c.file_name().unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(c)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for (i, f) in files.iter().enumerate() {
            let dir = if i % 3 == 2 { &test } else { &train }.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    (train, test, classes)
}

/// `path → probabilities` of a predictions CSV (`xfer predict --csv`, `xfer
/// evaluate --csv`), paths made relative to `root`; and the class names.
pub fn read_predictions_csv(
    path: &Path,
    root: Option<&Path>,
) -> (Vec<String>, std::collections::BTreeMap<String, Vec<f32>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let mut rows = std::collections::BTreeMap::new();
    for line in lines {
        assert!(!line.contains('"'), "{line}");
        let f: Vec<&str> = line.split(',').collect();
        let mut p = PathBuf::from(f[0]);
        if let Some(r) = root {
            p = p.strip_prefix(r).map(Path::to_path_buf).unwrap_or(p);
        }
        rows.insert(
            p.display().to_string(),
            f[2..].iter().map(|v| v.parse().unwrap()).collect(),
        );
    }
    (header[2..].to_vec(), rows)
}

/// Raw little-endian float16 values of a fixture file, as f32.
pub fn read_f16(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    b.chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

/// Raw little-endian float32 values of a fixture file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap();
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Cosine similarity, summed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Builds the slim predictor as `xfer package` does (its own target folder,
/// so the default build's xfer-predict, which other tests run, stays).
pub fn build_slim() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args: Vec<&str> = xfer::ship::package::SLIM_BUILD
        .split_whitespace()
        .skip(1)
        .collect();
    let o = Command::new(cargo)
        .args(&args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let bin = repo().join(xfer::ship::package::SLIM_BINARY);
    assert!(
        xfer::ship::package::is_slim(&bin),
        "{} is not slim",
        bin.display()
    );
    bin
}
