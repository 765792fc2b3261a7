//! NVIDIA's CUDA libraries from PyPI (`pip install onnxruntime-gpu[cuda,cudnn]`
//! installs them as `nvidia-*` wheels under `site-packages/nvidia/`): found
//! beside the `onnxruntime` package whose library xfer uses, and loaded into the
//! process (globally, in dependency order) before the CUDA provider is
//! registered, as onnxruntime's own `preload_dlls()` does — so the CUDA provider
//! loads with no system CUDA and no `LD_LIBRARY_PATH`.
//!
//! The list follows onnxruntime-gpu 1.31 (CUDA 13, Linux): `nvidia/cu13/lib/`
//! holds cuBLASLt, cuBLAS, NVRTC, cuRAND, cuFFT and the CUDA runtime, and
//! `nvidia/cudnn/lib/` cuDNN 9 (its sub-libraries load themselves later). As in
//! onnxruntime, NVRTC, cuFFT and cuDNN are optional.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One library of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NvidiaLibrary {
    /// The file name, e.g. `libcublasLt.so.13`.
    pub(crate) name: &'static str,
    /// Where it is, when found.
    pub(crate) path: Option<PathBuf>,
    /// Missing is not an error (onnxruntime treats these so).
    pub(crate) optional: bool,
}

/// The libraries in load order: (folder under `nvidia/`, file, optional).
const LIBRARIES: &[(&str, &str, bool)] = &[
    ("cu13/lib", "libcublasLt.so.13", false),
    ("cu13/lib", "libcublas.so.13", false),
    ("cu13/lib", "libnvrtc.so.13", true),
    ("cu13/lib", "libcurand.so.10", false),
    ("cu13/lib", "libcufft.so.12", true),
    ("cu13/lib", "libcudart.so.13", false),
    ("cudnn/lib", "libcudnn.so.9", true),
];

/// The `site-packages` folder of an ONNX Runtime library inside the
/// `onnxruntime` package: `<site>/onnxruntime/capi/libonnxruntime.so.X` → `<site>`.
pub fn site_packages_of(library: &Path) -> Option<PathBuf> {
    let capi = library.parent()?;
    let package = capi.parent()?;
    (capi.file_name()? == "capi" && package.file_name()? == "onnxruntime")
        .then(|| package.parent().map(Path::to_owned))
        .flatten()
}

/// The list, with what `site_packages/nvidia/` holds; None when there is no
/// `nvidia/` folder there at all (a CPU install, or a system CUDA).
pub(crate) fn find(site_packages: &Path) -> Option<Vec<NvidiaLibrary>> {
    let root = site_packages.join("nvidia");
    if !root.is_dir() {
        return None;
    }
    Some(
        LIBRARIES
            .iter()
            .map(|&(dir, name, optional)| {
                let p = root.join(dir).join(name);
                NvidiaLibrary {
                    name,
                    path: p.is_file().then_some(p),
                    optional,
                }
            })
            .collect(),
    )
}

/// What preloading did, library by library.
#[derive(Debug, Clone)]
pub struct Preloaded {
    pub(crate) site_packages: PathBuf,
    /// (library, Ok or the loader's reason).
    pub(crate) results: Vec<(NvidiaLibrary, Result<(), String>)>,
}

impl Preloaded {
    /// Required libraries missing or failing to load, named, for an error message.
    pub(crate) fn problems(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|(l, _)| !l.optional)
            .filter_map(|(l, r)| match (&l.path, r) {
                (None, _) => Some(format!("{} missing", l.name)),
                (Some(_), Err(e)) => Some(format!("{}: {e}", l.name)),
                _ => None,
            })
            .collect()
    }

    /// One line per library: "libcublas.so.13 loaded (path)", "libcudnn.so.9 missing (optional)".
    pub fn describe(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|(l, r)| match (&l.path, r) {
                (Some(p), Ok(())) => format!("{} loaded ({})", l.name, p.display()),
                (Some(p), Err(e)) => format!("{} failed to load ({}): {e}", l.name, p.display()),
                (None, _) if l.optional => format!("{} missing (optional)", l.name),
                (None, _) => format!("{} missing", l.name),
            })
            .collect()
    }
}

/// Loads every library found, in order, with `RTLD_NOW | RTLD_GLOBAL`, so that
/// ONNX Runtime's CUDA provider finds them already in the process.
pub(crate) fn preload(site_packages: &Path, libraries: Vec<NvidiaLibrary>) -> Preloaded {
    let results = libraries
        .into_iter()
        .map(|l| {
            let r = match &l.path {
                Some(p) => open_global(p),
                None => Err("not found".into()),
            };
            (l, r)
        })
        .collect();
    Preloaded {
        site_packages: site_packages.to_owned(),
        results,
    }
}

/// The preload for the ONNX Runtime library in use, done once per process
/// (None when that library is not inside a Python environment with `nvidia/`).
pub fn preload_once(library: &Path) -> Option<&'static Preloaded> {
    static DONE: OnceLock<Option<Preloaded>> = OnceLock::new();
    DONE.get_or_init(|| {
        let site = site_packages_of(library)?;
        let libs = find(&site)?;
        Some(preload(&site, libs))
    })
    .as_ref()
}

fn open_global(path: &Path) -> Result<(), String> {
    let c =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| "a NUL in the path".to_string())?;
    // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept open for
    // the life of the process on purpose (the libraries must stay loaded), and
    // dlerror is read right after a failure on this thread.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null.
        let msg = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(msg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of `pip install onnxruntime-gpu[cuda,cudnn]`, with a real shared
    /// library (the C library's libm, under the CUDA runtime's name) and an empty
    /// file where cuBLAS should be: loaded, failing with the loader's reason, missing.
    #[test]
    fn libraries_beside_onnxruntime_are_found_and_loaded_globally() {
        let t = tempfile::tempdir().unwrap();
        let site = t.path().join("lib/python3.11/site-packages");
        let lib = site.join("onnxruntime/capi/libonnxruntime.so.1.31.1");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, b"").unwrap();
        assert_eq!(site_packages_of(&lib), Some(site.clone()));
        assert_eq!(
            site_packages_of(Path::new("/opt/ort/libonnxruntime.so.1.31.1")),
            None
        );
        // A CPU install: no nvidia/ folder, nothing to do.
        assert!(find(&site).is_none());
        let cu = site.join("nvidia/cu13/lib");
        std::fs::create_dir_all(&cu).unwrap();
        let libm = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/libm.so.6",
        ]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a libm.so.6");
        std::fs::copy(libm, cu.join("libcudart.so.13")).unwrap();
        std::fs::write(cu.join("libcublas.so.13"), b"").unwrap();
        let p = preload(&site, find(&site).unwrap());
        let text = p.describe().join("\n");
        assert!(text.contains("libcudart.so.13 loaded"), "{text}");
        assert!(text.contains("libcublas.so.13 failed to load"), "{text}");
        assert!(text.contains("libcublasLt.so.13 missing\n"), "{text}");
        assert!(text.contains("libcudnn.so.9 missing (optional)"), "{text}");
        let problems = p.problems().join("; ");
        assert!(
            problems.contains("libcublasLt.so.13 missing")
                && problems.contains("libcublas.so.13: ")
                && !problems.contains("cudart")
                && !problems.contains("cudnn"),
            "{problems}"
        );
    }
}
