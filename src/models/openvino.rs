//! OpenVINO through ONNX Runtime's plugin execution provider (PyPI
//! `onnxruntime-ep-openvino`, a shared library ONNX Runtime 1.31 loads at run
//! time): finding the plugin, registering it once per process, the devices it
//! offers and what they can do, the precision a run gets, and the provider
//! options xfer gives it (precision hint, threads, compiled-model cache).
//!
//! The plugin offers devices only on Intel hardware (it skips every device
//! whose vendor id is not Intel's); on other CPUs it loads and offers nothing,
//! and a run that asks for it is refused (or falls back, when allowed).

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::SessionBuilder;
use ort::AsPointer;

use crate::models::runtime::{
    not_a_library_file, python_site_packages, xfer_home, Runtime, CPU_PROVIDER,
};

/// The provider's name in ONNX Runtime.
pub const EP_NAME: &str = "OpenVINOExecutionProvider";
/// The plugin library's file name.
pub const PLUGIN_FILE: &str = "libonnxruntime_providers_openvino_plugin.so";
/// The plugin version this xfer is checked with (PyPI `onnxruntime-ep-openvino`),
/// paired with ONNX Runtime [`crate::models::runtime::ORT_VERSION`].
pub const PLUGIN_VERSION: &str = "1.8.1";
/// The environment variable naming the plugin library.
pub const PLUGIN_ENV: &str = "XFER_OPENVINO_LIB";
/// The Python package holding the plugin and OpenVINO's own libraries.
const PACKAGE: &str = "onnxruntime_ep_openvino";

/// The precision OpenVINO computes in (its `INFERENCE_PRECISION_HINT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// OpenVINO's own choice: bf16 where the CPU computes it natively (AMX,
    /// AVX512_BF16), else f32.
    #[default]
    Auto,
    F32,
    Bf16,
}

/// Where the plugin library was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// The path the caller gave (the command line: `--openvino-lib`).
    Given,
    /// [`PLUGIN_ENV`].
    Env,
    /// Where `tools/setup.sh --openvino` installs it ([`default_plugin_path`]).
    SetUp,
    /// The `onnxruntime_ep_openvino` package of the Python environment xfer is
    /// installed in.
    PythonEnv { site_packages: PathBuf },
}

impl PluginSource {
    pub fn describe(&self) -> String {
        match self {
            PluginSource::Given => "the path given".into(),
            PluginSource::Env => PLUGIN_ENV.into(),
            PluginSource::SetUp => "the set-up location (tools/setup.sh --openvino)".into(),
            PluginSource::PythonEnv { site_packages } => format!(
                "the {PACKAGE} package of the Python environment {}",
                site_packages.display()
            ),
        }
    }
}

/// A registered plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    pub path: PathBuf,
    pub source: PluginSource,
}

/// Where `tools/setup.sh --openvino` installs the plugin: `<xfer_home>/openvino-ep/`.
pub(crate) fn default_plugin_path() -> Option<PathBuf> {
    Some(xfer_home()?.join("openvino-ep").join(PLUGIN_FILE))
}

/// `explicit` (--openvino-lib), else [`PLUGIN_ENV`], else the set-up location,
/// else the `onnxruntime_ep_openvino` package of the Python environment this
/// binary is installed in. A path the user names must be a file (never
/// replaced by another); none found is an error listing where it looked.
pub fn locate_plugin(explicit: Option<&Path>) -> std::result::Result<Plugin, String> {
    let env = std::env::var_os(PLUGIN_ENV).filter(|v| !v.is_empty());
    let exe = std::env::current_exe().ok();
    locate_plugin_from(
        explicit,
        env.as_deref().map(Path::new),
        default_plugin_path(),
        exe.as_deref().map(python_site_packages).unwrap_or_default(),
    )
}

fn locate_plugin_from(
    explicit: Option<&Path>,
    env: Option<&Path>,
    default: Option<PathBuf>,
    site_packages: Vec<PathBuf>,
) -> std::result::Result<Plugin, String> {
    let named = explicit
        .map(|p| (p, PluginSource::Given))
        .or_else(|| env.map(|p| (p, PluginSource::Env)));
    if let Some((path, source)) = named {
        return match not_a_library_file(path) {
            None => Ok(Plugin {
                path: path.to_owned(),
                source,
            }),
            Some(reason) => Err(format!(
                "the OpenVINO plugin {} ({}) is not a file: {reason}",
                path.display(),
                source.describe()
            )),
        };
    }
    let mut searched = Vec::new();
    match default {
        Some(p) if p.is_file() => {
            return Ok(Plugin {
                path: p,
                source: PluginSource::SetUp,
            })
        }
        Some(p) => searched.push(p.display().to_string()),
        None => searched.push("no set-up location (HOME is not set)".into()),
    }
    for site in site_packages {
        let p = site.join(PACKAGE).join(PLUGIN_FILE);
        if p.is_file() {
            return Ok(Plugin {
                path: p,
                source: PluginSource::PythonEnv {
                    site_packages: site,
                },
            });
        }
        searched.push(p.display().to_string());
    }
    Err(format!(
        "no OpenVINO plugin found (looked for {}); install it with `tools/setup.sh --openvino`, or `pip install onnxruntime-ep-openvino=={PLUGIN_VERSION}` into xfer's Python environment",
        searched.join(", ")
    ))
}

/// The plugin registered in this process (ONNX Runtime takes a library once
/// per environment): the first call registers it, later calls return the same
/// outcome.
static REGISTERED: Mutex<Option<std::result::Result<Plugin, String>>> = Mutex::new(None);

/// Finds the plugin ([`locate_plugin`]) and registers it with `runtime`'s
/// environment, once per process.
pub fn register(runtime: &Runtime, explicit: Option<&Path>) -> std::result::Result<Plugin, String> {
    let mut slot = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(done) = slot.as_ref() {
        return done.clone();
    }
    let done = locate_plugin(explicit).and_then(|plugin| {
        runtime
            .env
            .register_ep_library("OpenVINO", &plugin.path)
            .map(|()| plugin.clone())
            .map_err(|e| {
                format!(
                    "ONNX Runtime could not load the OpenVINO plugin {} ({}): {e}",
                    plugin.path.display(),
                    plugin.source.describe()
                )
            })
    });
    *slot = Some(done.clone());
    done
}

/// A device the plugin offers, with what OpenVINO says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvDevice {
    /// OpenVINO's device: `CPU`, `GPU`, `NPU`.
    pub ov_device: String,
    /// `FULL_DEVICE_NAME`.
    pub name: String,
    /// `OPTIMIZATION_CAPABILITIES`: `FP32`, `BF16`, `INT8`, …
    pub capabilities: Vec<String>,
    /// The plugin's version.
    pub version: String,
    /// A meta device (`AUTO`, `HETERO`, …): the plugin's dispatcher, not hardware.
    pub meta: bool,
}

impl OvDevice {
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// The key/value metadata ONNX Runtime keeps for an EP device.
fn metadata(device: &ort::device::Device<'_>) -> Vec<(String, String)> {
    let api = ort::api();
    let mut out = Vec::new();
    // SAFETY: the device comes from the environment's own list and outlives this
    // call; ONNX Runtime owns the pairs, which are only read here.
    unsafe {
        let kvps = (api.EpDevice_EpMetadata)(device.ptr());
        if kvps.is_null() {
            return out;
        }
        let mut keys = std::ptr::null();
        let mut values = std::ptr::null();
        let mut n = 0usize;
        (api.GetKeyValuePairs)(kvps, &mut keys, &mut values, &mut n);
        for i in 0..n {
            let (k, v) = (*keys.add(i), *values.add(i));
            if k.is_null() || v.is_null() {
                continue;
            }
            out.push((
                CStr::from_ptr(k).to_string_lossy().into_owned(),
                CStr::from_ptr(v).to_string_lossy().into_owned(),
            ));
        }
    }
    out
}

/// The devices the plugin offers in `env` (none before [`register`], none on
/// hardware that is not Intel's).
pub fn devices(env: &Environment) -> Vec<OvDevice> {
    env.devices()
        .filter(|d| d.ep().is_ok_and(|e| e == EP_NAME))
        .map(|d| describe(&d))
        .collect()
}

fn describe(d: &ort::device::Device<'_>) -> OvDevice {
    let meta = metadata(d);
    let get = |key: &str| {
        meta.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    OvDevice {
        ov_device: get("ov_device"),
        name: get("FULL_DEVICE_NAME"),
        capabilities: get("OPTIMIZATION_CAPABILITIES")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        version: get("version"),
        meta: !get("ov_meta_device").is_empty(),
    }
}

/// The CPU as ONNX Runtime sees it ("AMD", "Intel"), for messages.
fn cpu_vendor(env: &Environment) -> String {
    env.devices()
        .find(|d| d.ep().is_ok_and(|e| e == CPU_PROVIDER))
        .and_then(|d| d.hardware_device().vendor().ok().map(str::to_owned))
        .unwrap_or_else(|| "unknown vendor".into())
}

/// What an OpenVINO run gets: the plugin, its CPU device and the precision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub plugin: Plugin,
    pub device: OvDevice,
    /// `bf16` or `f32`: what OpenVINO is told to compute in.
    pub precision: &'static str,
}

/// Why OpenVINO cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No plugin, a plugin that does not load, no device on this CPU: the
    /// provider is unavailable (a fallback may run elsewhere).
    Device(String),
    /// The device is there but cannot compute in the precision asked for: the
    /// flag is wrong for this CPU, whatever the fallback.
    Precision(String),
}

/// Registers the plugin and picks its CPU device and the precision `wanted`
/// resolves to there.
pub fn choose(
    runtime: &Runtime,
    explicit: Option<&Path>,
    wanted: Precision,
) -> std::result::Result<Choice, Unavailable> {
    let plugin = register(runtime, explicit).map_err(Unavailable::Device)?;
    let offered = devices(&runtime.env);
    let Some(device) = offered
        .iter()
        .find(|d| d.ov_device == "CPU" && !d.meta)
        .cloned()
    else {
        return Err(Unavailable::Device(no_device(
            &plugin,
            &offered,
            &cpu_vendor(&runtime.env),
        )));
    };
    let precision = resolve_precision(wanted, &device).map_err(Unavailable::Precision)?;
    Ok(Choice {
        plugin,
        device,
        precision,
    })
}

fn no_device(plugin: &Plugin, offered: &[OvDevice], vendor: &str) -> String {
    let others = offered
        .iter()
        .map(|d| d.ov_device.as_str())
        .collect::<Vec<_>>();
    format!(
        "the OpenVINO plugin {} offers no CPU device on this machine (CPU vendor: {vendor}{}); it serves Intel CPUs only",
        plugin.path.display(),
        if others.is_empty() {
            String::new()
        } else {
            format!("; it offers {}", others.join(", "))
        }
    )
}

/// `auto`: bf16 where the device lists BF16 (OpenVINO's own default there),
/// else f32. `bf16` on a device without it is refused: OpenVINO would compute
/// in f32 without a word, and the run would record a precision it never had.
fn resolve_precision(
    wanted: Precision,
    device: &OvDevice,
) -> std::result::Result<&'static str, String> {
    let bf16 = device.has("BF16");
    match wanted {
        Precision::F32 => Ok("f32"),
        Precision::Auto | Precision::Bf16 if bf16 => Ok("bf16"),
        Precision::Auto => Ok("f32"),
        Precision::Bf16 => Err(format!(
            "bf16 is not available on this CPU ({} lists {})",
            device.name,
            device.capabilities.join(" ")
        )),
    }
}

/// The provider options of a session: OpenVINO's configuration for the CPU
/// (the plugin takes these through `load_config`, not as separate options).
fn provider_options(
    precision: &str,
    threads: usize,
    cache: Option<&Path>,
) -> Vec<(String, String)> {
    let mut cpu = serde_json::Map::new();
    cpu.insert("INFERENCE_PRECISION_HINT".into(), precision.into());
    if threads > 0 {
        cpu.insert("INFERENCE_NUM_THREADS".into(), threads.to_string().into());
    }
    if let Some(dir) = cache {
        cpu.insert("CACHE_DIR".into(), dir.display().to_string().into());
    }
    let config = serde_json::json!({ "CPU": cpu });
    vec![(format!("{EP_NAME}.load_config"), config.to_string())]
}

/// Where OpenVINO keeps compiled models under `--model-cache DIR`:
/// `DIR/openvino`, created; None when it cannot be (the run goes on uncached).
pub(crate) fn cache_dir(model_cache: Option<&Path>) -> Option<PathBuf> {
    let dir = model_cache?.join("openvino");
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::canonicalize(&dir).ok()
}

/// Appends the plugin's CPU device to `builder` with `choice`'s precision.
pub(crate) fn append(
    builder: SessionBuilder,
    env: &Environment,
    choice: &Choice,
    threads: usize,
    cache: Option<&Path>,
) -> std::result::Result<SessionBuilder, String> {
    let options = provider_options(choice.precision, threads, cache);
    let device = env
        .devices()
        .filter(|d| d.ep().is_ok_and(|e| e == EP_NAME))
        .find(|d| describe(d) == choice.device)
        .ok_or_else(|| "the OpenVINO device chosen is no longer offered".to_string())?;
    builder
        .with_devices([device], Some(&options))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(caps: &str) -> OvDevice {
        OvDevice {
            ov_device: "CPU".into(),
            name: "Intel(R) Xeon(R)".into(),
            capabilities: caps.split_whitespace().map(str::to_owned).collect(),
            version: PLUGIN_VERSION.into(),
            meta: false,
        }
    }

    #[test]
    fn precision_follows_the_device() {
        let amx = cpu("FP32 BF16 INT8 BIN EXPORT_IMPORT");
        let avx2 = cpu("FP32 INT8 BIN EXPORT_IMPORT");
        assert_eq!(resolve_precision(Precision::Auto, &amx), Ok("bf16"));
        assert_eq!(resolve_precision(Precision::Auto, &avx2), Ok("f32"));
        assert_eq!(resolve_precision(Precision::F32, &amx), Ok("f32"));
        assert_eq!(resolve_precision(Precision::Bf16, &amx), Ok("bf16"));
        let e = resolve_precision(Precision::Bf16, &avx2).unwrap_err();
        assert!(
            e.contains("bf16 is not available") && e.contains("FP32 INT8"),
            "{e}"
        );
    }

    #[test]
    fn options_go_through_load_config() {
        let o = provider_options("bf16", 2, Some(Path::new("/c/openvino")));
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].0, "OpenVINOExecutionProvider.load_config");
        let v: serde_json::Value = serde_json::from_str(&o[0].1).unwrap();
        assert_eq!(v["CPU"]["INFERENCE_PRECISION_HINT"], "bf16");
        assert_eq!(v["CPU"]["INFERENCE_NUM_THREADS"], "2");
        assert_eq!(v["CPU"]["CACHE_DIR"], "/c/openvino");
        let v: serde_json::Value =
            serde_json::from_str(&provider_options("f32", 0, None)[0].1).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"CPU": {"INFERENCE_PRECISION_HINT": "f32"}})
        );
    }

    #[test]
    fn the_plugin_is_found_in_order_and_a_named_one_is_never_replaced() {
        let t = tempfile::tempdir().unwrap();
        let set_up = t.path().join("home").join(PLUGIN_FILE);
        let site = t.path().join("site-packages");
        let in_site = site.join(PACKAGE).join(PLUGIN_FILE);
        std::fs::create_dir_all(in_site.parent().unwrap()).unwrap();
        std::fs::write(&in_site, b"").unwrap();
        let given = t.path().join("given.so");
        std::fs::write(&given, b"").unwrap();
        let find = |e: Option<&Path>, v: Option<&Path>| {
            locate_plugin_from(e, v, Some(set_up.clone()), vec![site.clone()])
        };
        // The Python environment's package when nothing else is there.
        let p = find(None, None).unwrap();
        assert_eq!(p.path, in_site);
        assert!(matches!(p.source, PluginSource::PythonEnv { .. }));
        // The set-up location before it.
        std::fs::create_dir_all(set_up.parent().unwrap()).unwrap();
        std::fs::write(&set_up, b"").unwrap();
        assert_eq!(find(None, None).unwrap().source, PluginSource::SetUp);
        // Named: taken before everything, and an error when missing.
        assert_eq!(
            find(Some(&given), None).unwrap().source,
            PluginSource::Given
        );
        assert_eq!(find(None, Some(&given)).unwrap().source, PluginSource::Env);
        let e = find(Some(Path::new("/no/such.so")), Some(&given)).unwrap_err();
        assert!(
            e.contains("/no/such.so") && e.contains("the path given"),
            "{e}"
        );
        let e = find(None, Some(Path::new("/no/such.so"))).unwrap_err();
        assert!(e.contains(PLUGIN_ENV), "{e}");
        // Nothing anywhere: where it looked.
        let e = locate_plugin_from(None, None, None, vec![t.path().join("none")]).unwrap_err();
        assert!(
            e.contains("HOME is not set") && e.contains("none/onnxruntime_ep_openvino"),
            "{e}"
        );
    }

    #[test]
    fn no_device_names_the_vendor() {
        let plugin = Plugin {
            path: PathBuf::from("/p/".to_owned() + PLUGIN_FILE),
            source: PluginSource::SetUp,
        };
        let e = no_device(&plugin, &[], "AMD");
        assert!(
            e.contains("CPU vendor: AMD") && e.contains("Intel CPUs only"),
            "{e}"
        );
    }
}
