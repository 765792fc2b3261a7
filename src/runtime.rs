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

/// `explicit` (--ort-lib), then `ORT_DYLIB_PATH`, then [`default_library_path`].
/// The first candidate that is set must exist; none set and none installed is an error.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut searched = Vec::new();
    let candidates: [(Option<PathBuf>, &str); 3] = [
        (explicit.map(Path::to_path_buf), "--ort-lib"),
        (
            std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
            "ORT_DYLIB_PATH",
        ),
        (default_library_path(), "the set-up location"),
    ];
    for (candidate, source) in candidates {
        let Some(path) = candidate else { continue };
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("{} ({source})", path.display()));
    }
    Err(Error::OrtLibraryMissing {
        searched: if searched.is_empty() {
            "nowhere: HOME is not set".into()
        } else {
            searched.join(", ")
        },
    })
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
    fn version_is_read_from_file_name() {
        let v = |p: &str| version_from_file_name(Path::new(p));
        assert_eq!(
            v("/nonexistent/libonnxruntime.so.1.31.1").as_deref(),
            Some("1.31.1")
        );
        assert_eq!(v("/nonexistent/libonnxruntime.so"), None);
    }
}
