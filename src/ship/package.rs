//! `xfer package`: a folder that classifies images on another machine with
//! nothing else installed:
//!
//! ```text
//! DIR/xfer-predict                  the slim predictor (no HDF5, no linfa)
//! DIR/lib/libonnxruntime.so.1.31.1  ONNX Runtime (loaded at run time)
//! DIR/zoo/<backbone>.toml, .onnx    each backbone's manifest and model
//! DIR/bundle.safetensors            the head
//! DIR/predict.sh                    xfer-predict with the flags that find them
//! DIR/README.md                     the command and its output
//! ```
//!
//! The folder is written as `.DIR.tmp-<pid>` (made new: never through a link
//! planted at that name) and renamed at the end, so a half-written package
//! never looks complete; it is removed on every error. A run holds the lock
//! `DIR.lock` ([`crate::util::lock`]), so two packages into one folder cannot both
//! be written. `--overwrite` replaces only a folder that `xfer package` made
//! (it holds the marker file [`MARKER`]), never another folder, file or link.
//! Every value written into `predict.sh` is single-quoted for the shell.
//! Finding or building the slim predictor is [`find_slim_predictor`]; the
//! caller decides which ONNX Runtime library and which resolved backbones go in.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Next, Result};
use crate::ship::bundle::Bundle;
use crate::ship::predict::ResolvedBackbone;

/// The slim build command (docs/guide.md, "The slim binary"; tools/check_slim.sh). Its
/// own target folder keeps it apart from the default build's `xfer-predict`
/// (which links HDF5), so neither replaces the other.
pub const SLIM_BUILD: &str = "cargo build --release --no-default-features --features cuda,tensorrt --bin xfer-predict --target-dir target/slim";

/// Where [`SLIM_BUILD`] puts the binary, relative to the source checkout.
pub const SLIM_BINARY: &str = "target/slim/release/xfer-predict";

/// What `xfer-predict --version` ends with in a build without HDF5 and linfa.
pub(crate) const SLIM_MARK: &str = "(slim)";

/// The bundle's name inside a package.
pub(crate) const BUNDLE: &str = "bundle.safetensors";

/// The file that marks a folder as made by `xfer package`: `--overwrite`
/// replaces only such a folder.
pub(crate) const MARKER: &str = ".xfer-package";

fn err(msg: impl Into<String>) -> Error {
    Error::Package {
        reason: msg.into(),
        next: None,
    }
}

/// A refusal with what would get past it.
fn refuse(reason: String, next: Next) -> Error {
    Error::Package {
        reason,
        next: Some(next),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// The `--version` line of an `xfer-predict` binary, run with a clean
/// environment (it must not need one).
pub(crate) fn predictor_version(bin: &Path) -> Result<String> {
    let o = Command::new(bin)
        .arg("--version")
        .env_clear()
        .output()
        .map_err(io(bin))?;
    if !o.status.success() {
        return Err(err(format!(
            "{} --version failed ({}): {}; build the slim predictor with `{SLIM_BUILD}`",
            bin.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Whether `bin` is a slim `xfer-predict` (its version line says so).
pub fn is_slim(bin: &Path) -> bool {
    predictor_version(bin).is_ok_and(|v| v.starts_with("xfer-predict ") && v.ends_with(SLIM_MARK))
}

/// Where the slim predictor comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredictorSource {
    /// Named by the caller (`--predictor`).
    Given,
    /// Found already built.
    Found,
    /// Built now with [`SLIM_BUILD`].
    Built,
}

/// Finds the slim `xfer-predict`: `explicit` (which must be slim), else one
/// next to the running program, else the source checkout's [`SLIM_BINARY`],
/// else its `target/release/xfer-predict`; when none of those is slim and `source` is
/// an xfer checkout and cargo runs, builds it there with [`SLIM_BUILD`]. A
/// full build (default features: it links HDF5) is never taken for it.
pub fn find_slim_predictor(
    explicit: Option<&Path>,
    source: &Path,
    build: bool,
) -> Result<(PathBuf, PredictorSource)> {
    if let Some(p) = explicit {
        let v = predictor_version(p)?;
        if !v.ends_with(SLIM_MARK) {
            return Err(err(format!(
                "{} is not the slim predictor (its version says \"{v}\"): a build with the default features links HDF5, which the other machine may not have; build it with `{SLIM_BUILD}` and pass that binary",
                p.display()
            )));
        }
        return Ok((p.to_owned(), PredictorSource::Given));
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        candidates.push(dir.join("xfer-predict"));
    }
    let built = source.join(SLIM_BINARY);
    candidates.push(built.clone());
    candidates.push(source.join("target/release/xfer-predict"));
    for c in &candidates {
        if c.is_file() && is_slim(c) {
            return Ok((c.clone(), PredictorSource::Found));
        }
    }
    let full: Vec<String> = candidates
        .iter()
        .filter(|c| c.is_file())
        .map(|c| c.display().to_string())
        .collect();
    let found = if full.is_empty() {
        "no xfer-predict was found next to xfer or in the source checkout".to_string()
    } else {
        format!(
            "{} {} the full build (default features, links HDF5)",
            full.join(" and "),
            if full.len() == 1 { "is" } else { "are" }
        )
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let can_build = build
        && source.join("Cargo.toml").is_file()
        && Command::new(&cargo)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !can_build {
        return Err(refuse(
            format!("no slim xfer-predict: {found}"),
            Next::BuildOrGivePredictor {
                build: SLIM_BUILD.into(),
            },
        ));
    }
    let args: Vec<&str> = SLIM_BUILD.split_whitespace().skip(1).collect();
    let o = Command::new(&cargo)
        .args(&args)
        .current_dir(source)
        .output()
        .map_err(io(source))?;
    if !o.status.success() || !is_slim(&built) {
        let stderr = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(refuse(
            format!(
                "{found}, and building the slim one failed (`{SLIM_BUILD}` in {}, {}):\n{}",
                source.display(),
                o.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
            Next::FixBuildOrGivePredictor,
        ));
    }
    Ok((built, PredictorSource::Built))
}

/// What goes into a package.
pub struct PackageInputs<'a> {
    pub bundle: &'a Bundle,
    pub bundle_path: &'a Path,
    pub backbones: &'a [ResolvedBackbone],
    /// The slim `xfer-predict`.
    pub predictor: &'a Path,
    /// The ONNX Runtime library (symlinks followed).
    pub ort_lib: &'a Path,
    /// ONNX Runtime's OpenVINO plugin library, to carry with OpenVINO's
    /// libraries beside it (`lib/openvino-ep/`), for `--device openvino`.
    pub openvino_plugin: Option<&'a Path>,
}

/// Where a package carries the OpenVINO plugin and OpenVINO's libraries.
pub const OPENVINO_DIR: &str = "lib/openvino-ep";

/// A written package.
#[derive(Debug, Clone)]
pub struct Packaged {
    pub dir: PathBuf,
    /// Paths relative to `dir` and sizes in bytes, in the order written.
    pub files: Vec<(PathBuf, u64)>,
    /// The `.tar.gz`, when asked for.
    pub tarball: Option<(PathBuf, u64)>,
}

impl Packaged {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

fn copy(src: &Path, dst: &Path) -> Result<u64> {
    std::fs::copy(src, dst).map_err(io(src))
}

fn write(path: &Path, text: &str) -> Result<u64> {
    std::fs::write(path, text).map_err(io(path))?;
    Ok(text.len() as u64)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io(path))
}

/// `predict.sh`: the predictor with the package's library, zoo, model cache
/// and bundle, found relative to the script (a POSIX shell and its built-ins
/// only). Names are quoted ([`crate::util::shell::quote`]).
fn predict_sh(lib_name: &str) -> String {
    let lib_name = crate::util::shell::quote(lib_name);
    let bundle = crate::util::shell::quote(BUNDLE);
    format!(
        r#"#!/bin/sh
# Classify images with this package: ./predict.sh PATHS... [xfer-predict flags]
# (made by `xfer package`; see README.md). Needs nothing outside this folder.
case "$0" in
  */*) here=${{0%/*}} ;;
  *) here=. ;;
esac
here=$(cd "$here" && pwd) || exit 1
ov="$here/{ov_dir}/{ov_plugin}"
if [ -z "${{XFER_OPENVINO_LIB:-}}" ] && [ -f "$ov" ]; then
  XFER_OPENVINO_LIB=$ov
  export XFER_OPENVINO_LIB
fi
exec "$here/xfer-predict" --ort-lib "$here/lib/"{lib_name} --zoo "$here/zoo" \
  --model-cache "$here/cache" --bundle "$here/"{bundle} "$@"
"#,
        ov_dir = OPENVINO_DIR,
        ov_plugin = crate::models::openvino::PLUGIN_FILE,
    )
}

fn readme(inputs: &PackageInputs, lib_name: &str, version: &str) -> String {
    let b = &inputs.bundle.meta;
    let backbones: Vec<String> = inputs.backbones.iter().map(|r| r.describe()).collect();
    format!(
        r#"# A packaged xfer classifier

Made by `xfer package` (xfer {xfer}) from `{bundle}`: a {kind} head on {backbones}, classes
{classes}.

## Classify

```sh
./predict.sh photo.jpg folder/ --top-k 3
./predict.sh folder/ --csv predictions.csv --quiet
```

`predict.sh` runs `xfer-predict` with this folder's ONNX Runtime library, backbone(s)
and bundle; every other flag is `xfer-predict`'s (`./predict.sh --help`). It needs
nothing outside this folder: no Python, no HDF5, no `HOME` (Linux x86-64 with glibc;
ONNX Runtime needs libstdc++, which every Linux distribution has).

## Output

A table on stdout, one image a line: the path, the most likely class and its
probability, and with `--top-k K` the next classes. `--csv FILE` writes
`path,class,<one probability column per class>`; `--json` prints one JSON object.
Files that cannot be read are skipped and listed on stderr; the exit status is
0 (all classified), 3 (some skipped) or 1 (an error; the message says what to do).

## Contents

- `xfer-predict`: {version}; it links only the C runtime.
- `lib/{lib_name}`: ONNX Runtime (CPU). For a GPU, put the GPU build's libraries
  (`libonnxruntime.so.*` and `libonnxruntime_providers_*.so`) in `lib/` instead and pass
  `--device cuda`.
- `zoo/`: each backbone's manifest and ONNX file (checked against its sha256 on load).{openvino}
- `cache/` (made by the first run, when this folder is writable): ONNX Runtime's
  optimised graph of each backbone for this machine's CPU, which makes later
  starts faster. Safe to delete.
- `{BUNDLE}`: the head (safetensors; its metadata record the preprocessing).
- `{MARKER}`: marks this folder as made by `xfer package`; `xfer package --overwrite`
  replaces only such a folder.
"#,
        xfer = crate::VERSION,
        bundle = inputs.bundle_path.display(),
        kind = b.kind,
        backbones = backbones.join(" + "),
        classes = b.class_names.join(", "),
        openvino = if inputs.openvino_plugin.is_some() {
            format!(
                "\n- `{OPENVINO_DIR}/`: ONNX Runtime's OpenVINO plugin with OpenVINO's libraries (PyPI\n  onnxruntime-ep-openvino {}): on an Intel CPU, pass `--device openvino` (and\n  `--precision auto|f32|bf16`); `predict.sh` points xfer-predict at it.",
                crate::models::openvino::PLUGIN_VERSION
            )
        } else {
            String::new()
        },
    )
}

/// Refuses an `out` that is there and is not a package folder `overwrite`
/// may replace.
fn check_out(out: &Path, overwrite: bool) -> Result<bool> {
    let m = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(out, e)),
    };
    if !m.file_type().is_dir() {
        return Err(refuse(
            format!(
                "{} is {}, not a package folder: xfer replaces only a folder that `xfer package` made",
                out.display(),
                crate::util::atomic::describe_kind(&m)
            ),
            Next::OtherOutputOrRemove,
        ));
    }
    let marked = std::fs::symlink_metadata(out.join(MARKER)).is_ok_and(|m| m.is_file());
    if !marked {
        return Err(refuse(
            format!(
                "{} is a folder that `xfer package` did not make (it has no {MARKER}), so xfer does not replace it",
                out.display()
            ),
            Next::OtherOutputOrRemove,
        ));
    }
    if !overwrite {
        return Err(refuse(
            format!("{} exists (a package)", out.display()),
            Next::ReplaceOrOtherOutput,
        ));
    }
    Ok(true)
}

/// Writes the package into `out` (which must not exist, or with `overwrite`
/// be a package folder an earlier `xfer package` made), and `out.tar.gz` beside
/// it with `tar`. Holds the lock `out.lock` while it works; the staging folder
/// is removed on every error.
pub fn write_package(
    inputs: &PackageInputs,
    out: &Path,
    overwrite: bool,
    tar: bool,
) -> Result<Packaged> {
    let name = out.file_name().filter(|n| *n != "..").ok_or_else(|| {
        refuse(
            format!("{} names no folder", out.display()),
            Next::GiveOutputFolder,
        )
    })?;
    let tarball = out.with_file_name(format!("{}.tar.gz", name.to_string_lossy()));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(Error::NoOutputFolder {
                path: out.to_owned(),
                folder: parent.to_owned(),
            });
        }
    }
    let _lock = crate::util::lock::OutputLock::acquire(out)?;
    let replace = check_out(out, overwrite)?;
    if tar {
        if let Ok(m) = std::fs::symlink_metadata(&tarball) {
            if !m.file_type().is_file() {
                return Err(refuse(
                    format!(
                        "{} is {}, not a tarball xfer wrote",
                        tarball.display(),
                        crate::util::atomic::describe_kind(&m)
                    ),
                    Next::OtherOutputOrRemove,
                ));
            }
            if !overwrite {
                return Err(refuse(
                    format!("{} exists", tarball.display()),
                    Next::ReplaceOrOtherOutput,
                ));
            }
        }
    }
    let version = predictor_version(inputs.predictor)?;
    let staging = crate::util::atomic::TempDir::new(out)?;
    let files = fill(inputs, staging.path(), &version)?;
    write(
        &staging.path().join(MARKER),
        &format!("made by `xfer package` (xfer {})\n", crate::VERSION),
    )?;
    if replace {
        // The old package moves aside, and comes back if the new one cannot
        // take its place.
        let old = out.with_file_name(format!(
            ".{}.old-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::rename(out, &old).map_err(io(out))?;
        if let Err(e) = staging.commit() {
            let _ = std::fs::rename(&old, out);
            return Err(e.into());
        }
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        staging.commit()?;
    }
    let tarball = if tar {
        Some((tarball.clone(), make_tarball(out, &tarball)?))
    } else {
        None
    };
    Ok(Packaged {
        dir: out.to_owned(),
        files,
        tarball,
    })
}

fn fill(inputs: &PackageInputs, dir: &Path, version: &str) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for sub in ["lib", "zoo"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
    }
    let exe = dir.join("xfer-predict");
    files.push(("xfer-predict".into(), copy(inputs.predictor, &exe)?));
    set_executable(&exe)?;
    let lib = std::fs::canonicalize(inputs.ort_lib).map_err(io(inputs.ort_lib))?;
    let lib_name = lib
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "libonnxruntime.so".into());
    let rel = PathBuf::from("lib").join(&lib_name);
    files.push((rel.clone(), copy(&lib, &dir.join(&rel))?));
    let mut models: Vec<(String, String)> = Vec::new(); // (file name, sha256)
    for r in inputs.backbones {
        let m = &r.manifest;
        m.verify_file()?;
        let file = m
            .onnx_path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| err(format!("manifest {} names no model file", m.name)))?;
        let rel = PathBuf::from("zoo").join(&file);
        match models.iter().find(|(f, _)| *f == file) {
            Some((_, sha)) if *sha == m.sha256 => {} // one file for two manifests
            Some(_) => {
                return Err(err(format!(
                    "two backbones' model files are both named {file} but differ; rename one (and its manifest's `file`)"
                )))
            }
            None => {
                files.push((rel.clone(), copy(&m.onnx_path(), &dir.join(&rel))?));
                models.push((file.clone(), m.sha256.clone()));
                // Its weights outside the file, at the same place beside it.
                let onnx = m.onnx_path();
                let bytes = std::fs::read(&onnx).map_err(io(&onnx))?;
                for data in crate::models::onnx_data::external_files(&onnx, &bytes)? {
                    let rel = PathBuf::from("zoo").join(&data);
                    if files.iter().any(|(f, _)| *f == rel) {
                        return Err(err(format!(
                            "two backbones keep weights in external data files both named {data}; export one of them again with its weights inside"
                        )));
                    }
                    let target = dir.join(&rel);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(io(parent))?;
                    }
                    files.push((rel, copy(&m.dir.join(&data), &target)?));
                }
            }
        }
        // The manifest as xfer reads it, with its model file beside it.
        let mut copy_m = m.clone();
        copy_m.file = file;
        let text = format!(
            "# Copied by `xfer package` (xfer {}) from {}.\n{}",
            crate::VERSION,
            m.dir.display(),
            toml::to_string(&copy_m).map_err(|e| err(format!("manifest {}: {e}", m.name)))?
        );
        let rel = PathBuf::from("zoo").join(format!("{}.toml", m.name));
        files.push((rel.clone(), write(&dir.join(&rel), &text)?));
    }
    if let Some(plugin) = inputs.openvino_plugin {
        files.extend(copy_openvino(plugin, dir)?);
    }
    files.push((BUNDLE.into(), copy(inputs.bundle_path, &dir.join(BUNDLE))?));
    let sh = dir.join("predict.sh");
    files.push(("predict.sh".into(), write(&sh, &predict_sh(&lib_name))?));
    set_executable(&sh)?;
    files.push((
        "README.md".into(),
        write(&dir.join("README.md"), &readme(inputs, &lib_name, version))?,
    ));
    Ok(files)
}

/// The OpenVINO plugin's folder as pip installs it (the plugin, OpenVINO's
/// libraries, which it finds beside itself, and their licence notices), less
/// its Python files, into [`OPENVINO_DIR`].
fn copy_openvino(plugin: &Path, dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let src = plugin.parent().unwrap_or(Path::new("."));
    let dst = PathBuf::from(OPENVINO_DIR);
    std::fs::create_dir_all(dir.join(&dst)).map_err(io(dir))?;
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(src)
        .map_err(io(src))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().ends_with(".py"))
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let rel = dst.join(&name);
        files.push((rel.clone(), copy(&src.join(&name), &dir.join(&rel))?));
    }
    Ok(files)
}

/// `tar -cz` of the package folder (its name as the top folder), written to a
/// temporary file of xfer's own ([`crate::util::atomic::TempFile`]) and renamed.
fn make_tarball(dir: &Path, tarball: &Path) -> Result<u64> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dir.file_name().expect("checked above");
    let mut tmp = crate::util::atomic::TempFile::new(tarball)?;
    let file = tmp.take_file().expect("a new TempFile holds its file");
    let o = Command::new("tar")
        .arg("-czf")
        .arg("-")
        .arg("-C")
        .arg(parent)
        .arg("--") // a folder named like an option stays a name
        .arg(name)
        .stdout(file)
        .output()
        .map_err(|e| refuse(format!("cannot run tar ({e})"), Next::InstallTarOrNoTarball))?;
    if !o.status.success() {
        return Err(refuse(
            format!(
                "tar failed ({}): {}; the folder {} is complete",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim(),
                dir.display()
            ),
            Next::FixTarOrNoTarball,
        ));
    }
    tmp.commit()?;
    Ok(std::fs::metadata(tarball).map_err(io(tarball))?.len())
}
