//! xfer's Python helpers (`tools/*.py`), carried inside the binary so that an
//! installed xfer (`pip install`, `cargo install`) has them without a checkout,
//! and the Python that runs them.
//!
//! - In a checkout (the current folder, or the checkout this binary was built in
//!   and still lives in) the script is taken from its `tools/` folder.
//! - Otherwise the copy embedded at build time is written once to
//!   `<xfer_home>/tools/<version>-<hash>/NAME` and run from there.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The helpers, by file name.
const SCRIPTS: &[(&str, &str)] = &[
    ("quantize.py", include_str!("../../tools/quantize.py")),
    (
        "lite_to_onnx.py",
        include_str!("../../tools/lite_to_onnx.py"),
    ),
    ("export_timm.py", include_str!("../../tools/export_timm.py")),
    ("export_hf.py", include_str!("../../tools/export_hf.py")),
    (
        "export_torchvision.py",
        include_str!("../../tools/export_torchvision.py"),
    ),
    // Imported by the three exporters from their own folder.
    (
        "export_common.py",
        include_str!("../../tools/export_common.py"),
    ),
];

/// The names of the embedded helpers.
pub fn names() -> impl Iterator<Item = &'static str> {
    SCRIPTS.iter().map(|(n, _)| *n)
}

/// The source checkout to take scripts (and its `.venv`) from: the current
/// folder when it has `tools/lite_to_onnx.py`, else the checkout this binary
/// was built in when the binary lives inside it (`target/…/xfer`); None for an
/// installed binary.
pub(crate) fn checkout() -> Option<PathBuf> {
    if Path::new("tools/lite_to_onnx.py").is_file() && Path::new("Cargo.toml").is_file() {
        return Some(PathBuf::from("."));
    }
    built_checkout().filter(|b| b.join("tools/lite_to_onnx.py").is_file())
}

/// The source checkout this binary was built in, when the binary still lives
/// inside it (`target/…/xfer`); None for an installed or copied binary.
pub(crate) fn built_checkout() -> Option<PathBuf> {
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().ok()?;
    exe.starts_with(built).then(|| built.to_owned())
}

/// The path of helper `name`: the checkout's `tools/NAME`, else the embedded
/// copy written out under xfer's home folder (written once, atomically, with
/// every other helper beside it, since the exporters import `export_common`).
pub fn script(name: &str) -> Result<PathBuf> {
    if !SCRIPTS.iter().any(|(n, _)| *n == name) {
        return Err(Error::Config(format!("no helper script named {name}")));
    }
    if let Some(dir) = checkout() {
        return Ok(dir.join("tools").join(name));
    }
    let home = crate::models::runtime::xfer_home().ok_or_else(|| {
        Error::Config(
            "HOME is not set, so xfer has no folder to put its helper scripts in; set XFER_HOME"
                .into(),
        )
    })?;
    let mut hasher = Sha256::new();
    for (_, t) in SCRIPTS {
        hasher.update(t.as_bytes());
    }
    let hash = format!("{:x}", hasher.finalize());
    let dir = home
        .join("tools")
        .join(format!("{}-{}", crate::VERSION, &hash[..12]));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for (n, t) in SCRIPTS {
        let p = dir.join(n);
        crate::util::atomic::write_bytes_if_changed(&p, t.as_bytes())?;
    }
    Ok(dir.join(name))
}

/// The Python that runs the helpers: `explicit` (a --python flag), else
/// `$XFER_PYTHON`, else the Python of the environment xfer is installed in
/// (`python3` beside the binary: a venv, pipx, uv tool), else the checkout's
/// `.venv/bin/python` (made by `tools/setup.sh`), else `python3` on the PATH.
pub fn python(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    if let Some(p) = std::env::var_os("XFER_PYTHON").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("python3")))
        .filter(|p| p.is_file());
    if let Some(p) = beside {
        return p;
    }
    if let Some(venv) = checkout()
        .map(|c| c.join(".venv/bin/python"))
        .filter(|p| p.exists())
    {
        return venv;
    }
    PathBuf::from("python3")
}
