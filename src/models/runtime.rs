//! Finding and initialising the ONNX Runtime library, and choosing execution
//! providers. ort is built with `load-dynamic`: nothing works until
//! [`Runtime::init`] has loaded a library, so every entry point calls it first.

use std::path::{Path, PathBuf};

use ort::environment::Environment;

use crate::error::{Error, Result};

/// The ONNX Runtime version this build targets (ort rc.15 = API 31).
pub const ORT_VERSION: &str = "1.31.1";

/// xfer's per-user data folder: `$XFER_HOME`, else `$XDG_DATA_HOME/xfer`, else
/// `~/.local/share/xfer` (None when none of them is set).
pub(crate) fn xfer_home() -> Option<PathBuf> {
    std::env::var_os("XFER_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .filter(|v| !v.is_empty())
                .map(|d| PathBuf::from(d).join("xfer"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/xfer")))
}

/// Where `tools/setup.sh` installs the library: `<xfer_home>/onnxruntime/`.
pub(crate) fn default_library_path() -> Option<PathBuf> {
    Some(
        xfer_home()?
            .join("onnxruntime")
            .join(format!("libonnxruntime.so.{ORT_VERSION}")),
    )
}

/// The TensorRT engine cache when `--trt-cache` is not given: `<xfer_home>/trt-cache`,
/// one per user whatever the working folder (engines take minutes to build).
pub(crate) fn default_trt_cache_dir() -> Option<PathBuf> {
    Some(xfer_home()?.join("trt-cache"))
}

/// Creates the TensorRT engine cache folder with its parents (ONNX Runtime creates
/// only the last level) and returns it absolute, so the provider finds it whatever
/// the working folder.
pub(crate) fn prepare_cache_dir(dir: &Path) -> Result<PathBuf> {
    let fail = |e: std::io::Error| Error::TrtCache {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let abs = std::fs::canonicalize(dir).map_err(fail)?;
    if !abs.is_dir() {
        return Err(Error::TrtCache {
            path: dir.to_owned(),
            reason: "it is not a folder".into(),
        });
    }
    Ok(abs)
}

/// Where the ONNX Runtime library in use was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySource {
    /// The path the caller gave (the command line: `--ort-lib`).
    Given,
    /// `ORT_DYLIB_PATH`.
    Env,
    /// Where `tools/setup.sh` installs it ([`default_library_path`]).
    SetUp,
    /// The `onnxruntime` (or `onnxruntime-gpu`) package of the Python environment
    /// xfer is installed in: `<env>/bin/xfer` → `<env>/lib/python3.*/site-packages`.
    PythonEnv { site_packages: PathBuf },
}

impl LibrarySource {
    /// "ORT_DYLIB_PATH", "the onnxruntime package of the Python environment /v/lib/python3.11/site-packages", …
    pub fn describe(&self) -> String {
        match self {
            LibrarySource::Given => "the path given".into(),
            LibrarySource::Env => "ORT_DYLIB_PATH".into(),
            LibrarySource::SetUp => "the set-up location (tools/setup.sh)".into(),
            LibrarySource::PythonEnv { site_packages } => format!(
                "the onnxruntime package of the Python environment {}",
                site_packages.display()
            ),
        }
    }
}

/// A library found by [`locate_library`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundLibrary {
    pub(crate) path: PathBuf,
    pub(crate) source: LibrarySource,
}

/// The path of the library [`locate_library`] finds.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    locate_library(explicit).map(|f| f.path)
}

/// `explicit` (--ort-lib), else `ORT_DYLIB_PATH` (when set and not empty), else
/// [`default_library_path`], else the `onnxruntime` package of the Python
/// environment this binary is installed in ([`python_site_packages`]; found
/// from the binary's own location, without running Python). A library the user
/// names (the first two) must exist and be a file: it is an error naming it,
/// never silently replaced by another library. None found is an error listing
/// where it looked.
pub(crate) fn locate_library(explicit: Option<&Path>) -> Result<FoundLibrary> {
    let env = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty());
    let exe = std::env::current_exe().ok();
    find_library_from(
        explicit,
        env.as_deref().map(Path::new),
        default_library_path(),
        exe.as_deref().map(python_site_packages).unwrap_or_default(),
    )
}

/// The site-packages folders of the Python environment holding `exe`:
/// `<env>/bin/xfer` → `<env>/lib{,64}/python3.*/site-packages`, newest Python
/// first. A venv, `pip install --user` (`~/.local/bin`), pipx, `uv tool` and
/// conda all lay it out so. Empty when `exe` is not in such a place.
pub(crate) fn python_site_packages(exe: &Path) -> Vec<PathBuf> {
    let Some(env) = exe
        .parent()
        .filter(|b| b.ends_with("bin"))
        .and_then(Path::parent)
    else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(env.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(|n| n.strip_prefix("python")) else {
                continue;
            };
            let site = entry.path().join("site-packages");
            if site.is_dir() && !found.iter().any(|(_, p)| same_file(p, &site)) {
                found.push((numeric_version(version), site));
            }
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// "3.11" → [3, 11]; "1.31.1" → [1, 31, 1]; a part that is not a number counts 0.
fn numeric_version(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The newest `onnxruntime/capi/libonnxruntime.so.<version>` in `site_packages`
/// of a version this build can use (1.31 or newer; ort checks the API level too).
fn python_library(site_packages: &Path) -> Option<PathBuf> {
    let capi = site_packages.join("onnxruntime").join("capi");
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir(&capi).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name
            .to_str()
            .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        else {
            continue;
        };
        let v = numeric_version(version);
        if v.as_slice() < [1, 31].as_slice() || !entry.path().is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, entry.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// Why a library path someone named cannot be loaded as one ("no such file",
/// "it is a folder, not the library file", …); None when it is a file.
pub(crate) fn not_a_library_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(m) if m.is_dir() => Some("it is a folder, not the library file".into()),
        Ok(_) => Some("it is not a regular file".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file".into()),
        Err(e) => Some(e.to_string()),
    }
}

/// [`locate_library`] with its environment as arguments.
fn find_library_from(
    explicit: Option<&Path>,
    env: Option<&Path>,
    default: Option<PathBuf>,
    site_packages: Vec<PathBuf>,
) -> Result<FoundLibrary> {
    let named = explicit
        .map(|p| (p, LibrarySource::Given))
        .or_else(|| env.map(|p| (p, LibrarySource::Env)));
    if let Some((path, source)) = named {
        let Some(reason) = not_a_library_file(path) else {
            return Ok(FoundLibrary {
                path: path.to_owned(),
                source,
            });
        };
        return Err(Error::OrtLibraryNamed {
            path: path.to_owned(),
            via: source,
            reason,
        });
    }
    let mut searched = Vec::new();
    match default {
        Some(p) if p.is_file() => {
            return Ok(FoundLibrary {
                path: p,
                source: LibrarySource::SetUp,
            })
        }
        Some(p) => searched.push(format!("{} (the set-up location)", p.display())),
        None => searched.push("no set-up location (HOME is not set)".into()),
    }
    for site in site_packages {
        if let Some(path) = python_library(&site) {
            return Ok(FoundLibrary {
                path,
                source: LibrarySource::PythonEnv {
                    site_packages: site,
                },
            });
        }
        searched.push(format!(
            "{} (no onnxruntime package of version 1.31 or newer)",
            site.join("onnxruntime/capi").display()
        ));
    }
    Err(Error::OrtLibraryMissing {
        searched: searched.join("; "),
    })
}

/// A loaded ONNX Runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub env: Environment,
    pub library: PathBuf,
    /// Where [`Runtime::library`] was found.
    pub source: LibrarySource,
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
        let FoundLibrary {
            path: library,
            source,
        } = locate_library(explicit)?;
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
            source,
        })
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

/// NVIDIA's pip libraries beside the loaded ONNX Runtime library, loaded once
/// ([`crate::models::nvidia`]); an error naming what is missing when some required one is
/// missing or fails to load. Nothing to do for a library outside a Python
/// environment with an `nvidia/` folder (a system CUDA is found by the loader).
pub(crate) fn preload_nvidia(
) -> std::result::Result<Option<&'static crate::models::nvidia::Preloaded>, String> {
    let library = RUNTIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|r| r.library.clone());
    let Some(library) = library else {
        return Ok(None);
    };
    // Only for a GPU build of ONNX Runtime (its CUDA provider beside it): with the
    // CPU build the provider's own "not enabled in this build" is the real reason.
    if !library
        .with_file_name("libonnxruntime_providers_cuda.so")
        .is_file()
    {
        return Ok(None);
    }
    let Some(done) = crate::models::nvidia::preload_once(&library) else {
        return Ok(None);
    };
    let problems = done.problems();
    if problems.is_empty() {
        Ok(Some(done))
    } else {
        Err(format!(
            "NVIDIA's libraries in {}/nvidia are incomplete ({}); install them with `pip install onnxruntime-gpu[cuda,cudnn]==1.31.1` in that environment",
            done.site_packages.display(),
            problems.join("; ")
        ))
    }
}

/// Which execution provider to run a backbone on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
    Tensorrt,
    /// OpenVINO on the CPU, through ONNX Runtime's plugin provider
    /// ([`crate::models::openvino`]).
    Openvino,
}

/// ONNX Runtime's name of the CPU provider.
pub(crate) const CPU_PROVIDER: &str = "CPUExecutionProvider";
/// ONNX Runtime's name of the CUDA provider.
pub(crate) const CUDA_PROVIDER: &str = "CUDAExecutionProvider";
/// ONNX Runtime's name of the TensorRT provider.
pub(crate) const TENSORRT_PROVIDER: &str = "TensorrtExecutionProvider";

impl Device {
    /// ONNX Runtime's name of the device's own provider.
    pub fn provider_name(self) -> &'static str {
        match self {
            Device::Cpu => CPU_PROVIDER,
            Device::Cuda => CUDA_PROVIDER,
            Device::Tensorrt => TENSORRT_PROVIDER,
            Device::Openvino => crate::models::openvino::EP_NAME,
        }
    }

    /// A GPU provider (CUDA, TensorRT): NVIDIA's libraries, a device id.
    pub fn is_gpu(self) -> bool {
        matches!(self, Device::Cuda | Device::Tensorrt)
    }

    /// The providers registered for this device, in ONNX Runtime's order of
    /// preference: TensorRT is followed by CUDA, which takes the nodes TensorRT
    /// rejects (ONNX Runtime's documented set-up). Empty for the CPU, which ONNX
    /// Runtime adds by itself.
    pub(crate) fn registered_providers(self) -> &'static [&'static str] {
        match self {
            Device::Cpu => &[],
            Device::Cuda => &[CUDA_PROVIDER],
            Device::Tensorrt => &[TENSORRT_PROVIDER, CUDA_PROVIDER],
            Device::Openvino => &[crate::models::openvino::EP_NAME],
        }
    }
}

/// A device request, with what to do when it cannot be honoured.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    pub device: Device,
    pub device_id: i32,
    /// Instead of failing, fall back (and say so) when the GPU session cannot be
    /// built: to a session with the unsupported nodes on CPU when ONNX Runtime
    /// refuses only those, else to a CPU session. See `backbone`'s `open_with_fallback`.
    pub allow_cpu_fallback: bool,
    /// TensorRT: where built engines are cached (they take minutes to build); None:
    /// [`default_trt_cache_dir`]. Made absolute and created by [`prepare_cache_dir`].
    pub trt_cache_dir: Option<PathBuf>,
    /// TensorRT: build fp16 engines.
    pub trt_fp16: bool,
    /// OpenVINO: the precision to compute in.
    pub precision: crate::models::openvino::Precision,
    /// OpenVINO: the plugin library; None: [`crate::models::openvino::locate_plugin`]'s search.
    pub openvino_lib: Option<PathBuf>,
}

impl Default for DeviceRequest {
    fn default() -> Self {
        DeviceRequest {
            device: Device::Cpu,
            device_id: 0,
            allow_cpu_fallback: false,
            trt_cache_dir: None,
            trt_fp16: false,
            precision: crate::models::openvino::Precision::Auto,
            openvino_lib: None,
        }
    }
}

/// The request's TensorRT engine cache folder ([`default_trt_cache_dir`] when none
/// is named), created and absolute ([`prepare_cache_dir`]).
pub(crate) fn trt_cache_dir(request: &DeviceRequest) -> Result<PathBuf> {
    let dir = match &request.trt_cache_dir {
        Some(d) => d.clone(),
        None => default_trt_cache_dir().ok_or_else(|| Error::TrtCache {
            path: PathBuf::from("trt-cache"),
            reason: "HOME is not set, so xfer has no data folder".into(),
        })?,
    };
    prepare_cache_dir(&dir)
}

/// TensorRT's optimisation profile for the model's one input, whose first axis
/// (the batch) is dynamic: one engine serves every batch from 1 to `max_batch`,
/// tuned for `max_batch` (a last, shorter batch needs no second engine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TrtProfile {
    pub(crate) input: String,
    /// The input's other axes (channels, height, width).
    pub(crate) dims: Vec<i64>,
    pub(crate) max_batch: usize,
}

impl TrtProfile {
    fn shape(&self, batch: usize) -> String {
        let mut s = format!("{}:{batch}", self.input);
        for d in &self.dims {
            s.push_str(&format!("x{d}"));
        }
        s
    }

    /// `trt_profile_min_shapes`, `trt_profile_opt_shapes`, `trt_profile_max_shapes`,
    /// in ONNX Runtime's form `input:1x3x224x224`.
    pub(crate) fn min_opt_max(&self) -> [String; 3] {
        let max = self.max_batch.max(1);
        [self.shape(1), self.shape(max), self.shape(max)]
    }
}

/// The CUDA provider as xfer registers it: the device, and cuDNN's convolution
/// algorithm chosen by its heuristic (`cudnn_conv_algo_search = HEURISTIC`)
/// instead of ONNX Runtime's default exhaustive benchmark, which runs again for
/// every new input shape (a last, shorter batch, another `--batch`).
#[cfg(feature = "cuda")]
pub(crate) fn cuda_provider(request: &DeviceRequest) -> ort::ep::CUDA {
    ort::ep::CUDA::default()
        .with_device_id(request.device_id)
        .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Heuristic)
}

/// The TensorRT provider as xfer registers it: the device, fp16 when asked, the
/// engine and timing caches in `cache` (absolute, existing: [`prepare_cache_dir`]),
/// and the batch profile, so one engine is built per model, precision and `--batch`.
#[cfg(feature = "tensorrt")]
pub(crate) fn tensorrt_provider(
    request: &DeviceRequest,
    profile: &TrtProfile,
    cache: &Path,
) -> ort::ep::TensorRT {
    let [min, opt, max] = profile.min_opt_max();
    let cache = cache.display().to_string();
    ort::ep::TensorRT::default()
        .with_device_id(request.device_id)
        .with_fp16(request.trt_fp16)
        .with_engine_cache(true)
        .with_engine_cache_path(&cache)
        .with_timing_cache(true)
        .with_timing_cache_path(&cache)
        .with_profile_min_shapes(min)
        .with_profile_opt_shapes(opt)
        .with_profile_max_shapes(max)
}

/// The providers to register for a GPU request, in order ([`Device::registered_providers`]),
/// each failing loudly at registration (never skipped in silence). `Err`: this
/// xfer cannot register them (built without the feature; the cache folder).
pub(crate) fn gpu_providers(
    request: &DeviceRequest,
    profile: Option<&TrtProfile>,
) -> std::result::Result<Vec<ort::ep::ExecutionProviderDispatch>, String> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    if request.device.is_gpu() {
        preload_nvidia()?;
    }
    match request.device {
        Device::Cpu | Device::Openvino => {}
        Device::Tensorrt => {
            #[cfg(feature = "tensorrt")]
            {
                let profile = profile.ok_or("no input profile for TensorRT")?;
                let dir = trt_cache_dir(request).map_err(|e| e.to_string())?;
                out.push(
                    tensorrt_provider(request, profile, &dir)
                        .build()
                        .error_on_failure(),
                );
                #[cfg(feature = "cuda")]
                out.push(cuda_provider(request).build().error_on_failure());
            }
            #[cfg(not(feature = "tensorrt"))]
            {
                let _ = profile;
                return Err("this xfer was built without the `tensorrt` feature".into());
            }
        }
        Device::Cuda => {
            #[cfg(feature = "cuda")]
            out.push(cuda_provider(request).build().error_on_failure());
            #[cfg(not(feature = "cuda"))]
            return Err("this xfer was built without the `cuda` feature".into());
        }
    }
    Ok(out)
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
            find_library_from(e, v, Some(lib.clone()), Vec::new())
                .map(|f| f.path)
                .map_err(|e| e.to_string())
        };
        // Named and present: taken, before the environment and the default.
        assert_eq!(find(Some(&other), Some(missing)).unwrap(), other);
        assert_eq!(find(None, Some(&other)).unwrap(), other);
        assert_eq!(find(None, None).unwrap(), lib);
        // Named and missing: an error naming it, even though the default exists.
        let e = find(Some(missing), None).unwrap_err();
        assert!(
            e.contains("/no/such/file")
                && e.contains("the path given")
                && e.contains("no such file")
                && !e.contains("--"),
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
        let e = find_library_from(None, None, Some(gone), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no ONNX Runtime library found") && e.contains("tools/setup.sh"),
            "{e}"
        );
    }

    /// A pip install: `<env>/bin/xfer` and the onnxruntime wheel's library in
    /// `<env>/lib/python3.X/site-packages/onnxruntime/capi/`.
    #[test]
    fn the_python_environment_of_the_binary_is_searched_last() {
        let t = tempfile::tempdir().unwrap();
        let env = t.path().join("venv");
        let exe = env.join("bin/xfer");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::write(&exe, b"").unwrap();
        // Not a Python environment yet: nothing to search.
        assert!(python_site_packages(&exe).is_empty());
        assert!(python_site_packages(Path::new("/usr/local/xfer")).is_empty());
        let old = env.join("lib/python3.9/site-packages");
        let new = env.join("lib/python3.11/site-packages");
        for site in [&old, &new] {
            std::fs::create_dir_all(site.join("onnxruntime/capi")).unwrap();
        }
        // lib64 a link to lib (as some distributions make it): each folder once.
        std::os::unix::fs::symlink("lib", env.join("lib64")).unwrap();
        assert_eq!(python_site_packages(&exe), vec![new.clone(), old.clone()]);
        let setup = t.path().join("setup/libonnxruntime.so.1.31.1");
        let find = |sites: Vec<PathBuf>| find_library_from(None, None, Some(setup.clone()), sites);
        // Too old a library, or none: an error listing every place searched.
        std::fs::write(old.join("onnxruntime/capi/libonnxruntime.so.1.20.0"), b"").unwrap();
        let e = find(python_site_packages(&exe)).unwrap_err().to_string();
        assert!(
            e.contains("setup/libonnxruntime.so.1.31.1 (the set-up location)")
                && e.contains("python3.11/site-packages/onnxruntime/capi")
                && e.contains("python3.9/site-packages/onnxruntime/capi")
                && e.contains("pip install onnxruntime==1.31.1"),
            "{e}"
        );
        // The newest usable one is taken, and said where it came from.
        for v in ["1.31.1", "1.32.0"] {
            std::fs::write(
                old.join(format!("onnxruntime/capi/libonnxruntime.so.{v}")),
                b"",
            )
            .unwrap();
        }
        let f = find(python_site_packages(&exe)).unwrap();
        assert_eq!(
            f.path,
            old.join("onnxruntime/capi/libonnxruntime.so.1.32.0")
        );
        assert_eq!(
            f.source,
            LibrarySource::PythonEnv {
                site_packages: old.clone()
            }
        );
        assert!(
            f.source.describe().contains("python3.9/site-packages"),
            "{}",
            f.source.describe()
        );
        // The set-up location comes first.
        std::fs::create_dir_all(setup.parent().unwrap()).unwrap();
        std::fs::write(&setup, b"").unwrap();
        let f = find(python_site_packages(&exe)).unwrap();
        assert_eq!((f.path, f.source), (setup.clone(), LibrarySource::SetUp));
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

    #[test]
    fn tensorrt_profile_is_in_onnx_runtimes_form() {
        let p = TrtProfile {
            input: "input".into(),
            dims: vec![3, 224, 224],
            max_batch: 32,
        };
        assert_eq!(
            p.min_opt_max(),
            [
                "input:1x3x224x224".to_string(),
                "input:32x3x224x224".into(),
                "input:32x3x224x224".into()
            ]
        );
        let p = TrtProfile { max_batch: 0, ..p };
        assert_eq!(p.min_opt_max()[2], "input:1x3x224x224");
    }

    /// The options really handed to ort's provider objects (their Debug shows the
    /// key/value map ONNX Runtime receives).
    #[cfg(all(feature = "cuda", feature = "tensorrt"))]
    #[test]
    fn provider_options_carry_profile_cache_and_cudnn_search() {
        let t = tempfile::tempdir().unwrap();
        let request = DeviceRequest {
            device: Device::Tensorrt,
            device_id: 1,
            trt_fp16: true,
            ..DeviceRequest::default()
        };
        let profile = TrtProfile {
            input: "input".into(),
            dims: vec![3, 240, 240],
            max_batch: 16,
        };
        let trt = format!("{:?}", tensorrt_provider(&request, &profile, t.path()));
        let dir = t.path().display().to_string();
        for (k, v) in [
            ("device_id", "1"),
            ("trt_fp16_enable", "true"),
            ("trt_engine_cache_enable", "true"),
            ("trt_engine_cache_path", dir.as_str()),
            ("trt_timing_cache_enable", "true"),
            ("trt_timing_cache_path", dir.as_str()),
            ("trt_profile_min_shapes", "input:1x3x240x240"),
            ("trt_profile_opt_shapes", "input:16x3x240x240"),
            ("trt_profile_max_shapes", "input:16x3x240x240"),
        ] {
            assert!(
                trt.contains(&format!("{k:?}: {v:?}")),
                "{k}={v} not in {trt}"
            );
        }
        let cuda = format!("{:?}", cuda_provider(&request));
        assert!(
            cuda.contains("\"cudnn_conv_algo_search\": \"HEURISTIC\""),
            "{cuda}"
        );
        assert!(cuda.contains("\"device_id\": \"1\""), "{cuda}");
        assert_eq!(
            Device::Tensorrt.registered_providers(),
            [TENSORRT_PROVIDER, CUDA_PROVIDER]
        );
    }

    #[test]
    fn the_trt_cache_is_created_with_its_parents_and_made_absolute() {
        let t = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(t.path(), &cwd).join("a/b/c");
        assert!(rel.is_relative());
        let abs = prepare_cache_dir(&rel).unwrap();
        assert!(abs.is_absolute() && abs.is_dir(), "{}", abs.display());
        assert_eq!(abs, std::fs::canonicalize(t.path()).unwrap().join("a/b/c"));
        // Again: it exists, same answer.
        assert_eq!(prepare_cache_dir(&rel).unwrap(), abs);
        // A file in the way: an error naming the folder and what to do.
        let file = t.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let e = prepare_cache_dir(&file.join("x")).unwrap_err();
        assert!(matches!(e, Error::TrtCache { .. }), "{e}");
        assert!(e.to_string().contains("f/x"), "{e}");
    }

    /// `to` relative to `from` (both absolute), through `..` as needed.
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let (to, from) = (
            std::fs::canonicalize(to).unwrap(),
            std::fs::canonicalize(from).unwrap(),
        );
        let common = to
            .components()
            .zip(from.components())
            .take_while(|(a, b)| a == b)
            .count();
        let mut out = PathBuf::new();
        for _ in from.components().skip(common) {
            out.push("..");
        }
        for c in to.components().skip(common) {
            out.push(c);
        }
        out
    }
}
