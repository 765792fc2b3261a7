//! Finding and initialising the ONNX Runtime library, and choosing execution
//! providers. ort is built with `load-dynamic`: nothing works until
//! [`Runtime::init`] has loaded a library, so every entry point calls it first.

use std::path::{Path, PathBuf};

use ort::environment::Environment;

use crate::error::{Error, Result};

/// The ONNX Runtime version this build targets (ort rc.15 = API 31).
pub const ORT_VERSION: &str = "1.31.1";

/// Where `tools/setup.sh` installs the library: `$XFER_HOME/onnxruntime/`,
/// `XFER_HOME` defaulting to `$XDG_DATA_HOME/xfer` or `~/.local/share/xfer`.
pub fn default_library_path() -> Option<PathBuf> {
    let home = std::env::var_os("XFER_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .map(|d| PathBuf::from(d).join("xfer"))
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/xfer"))
                })
        })?;
    Some(
        home.join("onnxruntime")
            .join(format!("libonnxruntime.so.{ORT_VERSION}")),
    )
}

/// `explicit` (--ort-lib), else `ORT_DYLIB_PATH` (when set and not empty), else
/// [`default_library_path`]. A library the user names (the first two) must exist
/// and be a file: it is an error naming it, never silently replaced by another
/// library. None named and none installed is an error too.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let env = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    find_library_from(
        explicit,
        env.as_deref().map(Path::new),
        default_library_path(),
    )
}

/// [`find_library`] with its environment as arguments.
fn find_library_from(
    explicit: Option<&Path>,
    env: Option<&Path>,
    default: Option<PathBuf>,
) -> Result<PathBuf> {
    let named = explicit
        .map(|p| (p, "--ort-lib", "pass --ort-lib the path of a libonnxruntime.so of version 1.31, or leave --ort-lib out to use the one `tools/setup.sh` installs"))
        .or_else(|| {
            env.map(|p| {
                (
                    p,
                    "ORT_DYLIB_PATH",
                    "set ORT_DYLIB_PATH to the path of a libonnxruntime.so of version 1.31, or unset it to use the one `tools/setup.sh` installs",
                )
            })
        });
    if let Some((path, via, hint)) = named {
        let reason = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => return Ok(path.to_owned()),
            Ok(m) if m.is_dir() => "it is a folder, not the library file".to_string(),
            Ok(_) => "it is not a regular file".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
            Err(e) => e.to_string(),
        };
        return Err(Error::OrtLibraryNamed {
            path: path.to_owned(),
            via: via.into(),
            reason,
            hint: hint.into(),
        });
    }
    match default {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => Err(Error::OrtLibraryMissing {
            searched: format!("{} (the set-up location)", p.display()),
        }),
        None => Err(Error::OrtLibraryMissing {
            searched: "nowhere: HOME is not set".into(),
        }),
    }
}

/// A loaded ONNX Runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub env: Environment,
    pub library: PathBuf,
    pub version: String,
}

/// ONNX Runtime allows one environment per process: the first `init` creates
/// it, later calls share it.
static RUNTIME: std::sync::Mutex<Option<Runtime>> = std::sync::Mutex::new(None);

impl Runtime {
    /// Loads the library found by [`find_library`] and creates the process's
    /// environment, or returns the one already created.
    pub fn init(explicit: Option<&Path>) -> Result<Runtime> {
        let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let rt = Self::load(explicit)?;
        *slot = Some(rt.clone());
        Ok(rt)
    }

    fn load(explicit: Option<&Path>) -> Result<Runtime> {
        let library = find_library(explicit)?;
        let builder = ort::init_from(&library).map_err(|e| Error::OrtLibraryLoad {
            path: library.clone(),
            reason: e.to_string(),
        })?;
        let env = builder.with_name("xfer").build()?;
        Ok(Runtime {
            env,
            version: version_from_file_name(&library)
                .unwrap_or_else(|| "1.31 or newer (API 31)".into()),
            library,
        })
    }

    /// Providers this library was built with, by ONNX Runtime's names.
    pub fn available_providers(&self) -> Vec<(&'static str, bool)> {
        use ort::ep::ExecutionProvider;
        #[allow(unused_mut)]
        let mut out = vec![(
            "CPUExecutionProvider",
            ort::ep::CPU::is_available().unwrap_or(false),
        )];
        #[cfg(feature = "cuda")]
        out.push((
            "CUDAExecutionProvider",
            ort::ep::CUDA::is_available().unwrap_or(false),
        ));
        #[cfg(feature = "tensorrt")]
        out.push((
            "TensorrtExecutionProvider",
            ort::ep::TensorRT::is_available().unwrap_or(false),
        ));
        out
    }
}

/// The version in a library's (resolved) file name: `libonnxruntime.so.1.31.1` → `1.31.1`.
/// ONNX Runtime's build-info string carries no version, and ort has already
/// refused libraries older than API 31 when this runs.
fn version_from_file_name(library: &Path) -> Option<String> {
    let resolved = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
    let name = resolved.file_name()?.to_str()?;
    let version = name.split_once(".so.")?.1;
    let ok = version
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| version.to_owned())
}

/// Which execution provider to run a backbone on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
    Tensorrt,
}

/// A device request, with what to do when it cannot be honoured.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    pub device: Device,
    pub device_id: i32,
    /// Fall back to CPU (and say so) instead of failing when the device is unavailable.
    pub allow_cpu_fallback: bool,
    /// TensorRT: where built engines are cached (they take minutes to build).
    pub trt_cache_dir: Option<PathBuf>,
    /// TensorRT: build fp16 engines.
    pub trt_fp16: bool,
}

impl Default for DeviceRequest {
    fn default() -> Self {
        DeviceRequest {
            device: Device::Cpu,
            device_id: 0,
            allow_cpu_fallback: false,
            trt_cache_dir: None,
            trt_fp16: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_library_must_exist_and_is_never_replaced() {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&lib, b"").unwrap();
        let other = t.path().join("other.so");
        std::fs::write(&other, b"").unwrap();
        let missing = Path::new("/no/such/file");
        let find = |e: Option<&Path>, v: Option<&Path>| {
            find_library_from(e, v, Some(lib.clone())).map_err(|e| e.to_string())
        };
        // Named and present: taken, before the environment and the default.
        assert_eq!(find(Some(&other), Some(missing)).unwrap(), other);
        assert_eq!(find(None, Some(&other)).unwrap(), other);
        assert_eq!(find(None, None).unwrap(), lib);
        // Named and missing: an error naming it, even though the default exists.
        let e = find(Some(missing), None).unwrap_err();
        assert!(
            e.contains("/no/such/file") && e.contains("--ort-lib") && e.contains("no such file"),
            "{e}"
        );
        let e = find(None, Some(missing)).unwrap_err();
        assert!(
            e.contains("/no/such/file") && e.contains("ORT_DYLIB_PATH") && e.contains("unset it"),
            "{e}"
        );
        // --ort-lib wins over a broken ORT_DYLIB_PATH.
        assert_eq!(find(Some(&lib), Some(missing)).unwrap(), lib);
        // A folder is not a library.
        let e = find(Some(t.path()), None).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");
        // Nothing named, nothing installed.
        let gone = t.path().join("gone.so");
        let e = find_library_from(None, None, Some(gone))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no ONNX Runtime library found") && e.contains("tools/setup.sh"),
            "{e}"
        );
    }

    #[test]
    fn version_is_read_from_file_name() {
        let v = |p: &str| version_from_file_name(Path::new(p));
        assert_eq!(
            v("/nonexistent/libonnxruntime.so.1.31.1").as_deref(),
            Some("1.31.1")
        );
        assert_eq!(v("/nonexistent/libonnxruntime.so"), None);
    }
}
