//! The only place that touches `ort` sessions: load a backbone from its
//! manifest on the requested execution provider, check the graph against the
//! manifest, and run batches into pooled features.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayView4, Axis};
use ort::logging::LogLevel;
use ort::session::builder::{AutoDevicePolicy, GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::models::openvino;
use crate::models::runtime::{self, Device, DeviceRequest, Runtime, TrtProfile, CPU_PROVIDER};
use crate::models::zoo::Manifest;

pub(crate) use crate::models::placement::Placement;
use crate::models::placement::SessionLog;

#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub device: DeviceRequest,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default: one per core).
    pub threads: usize,
    /// Let ONNX Runtime's threads spin between operators instead of sleeping:
    /// faster when little else needs the cores (cheap decoding), slower when
    /// decoders do (large photos). Off by default.
    pub intra_op_spinning: bool,
    /// A folder for ONNX Runtime's optimised graphs (CPU sessions only): see
    /// [`optimized_cache_file`].
    pub optimized_cache: Option<std::path::PathBuf>,
    /// The most images one run gets (`--batch`): TensorRT's profile is built for
    /// 1..=max_batch (0 counts as 1).
    pub max_batch: usize,
}

/// A loaded backbone.
pub struct Backbone {
    session: Session,
    pub manifest: Manifest,
    /// What feature files and JSON record as the execution provider: the
    /// providers ONNX Runtime placed the graph's nodes on (read from its session
    /// log, [`Placement`]), joined by "+" in the order of preference
    /// (`TensorrtExecutionProvider+CUDAExecutionProvider`, or
    /// `CUDAExecutionProvider+CPUExecutionProvider` after a partial fallback);
    /// `CPUExecutionProvider` alone after a fallback to the CPU.
    pub provider: String,
    /// The precision the provider computes in, when it is not the model's own
    /// (see [`inference_precision`]): `bf16` or `f32` (OpenVINO), `fp16`
    /// (TensorRT with fp16 engines); empty: ONNX Runtime's kernels.
    pub inference_precision: String,
    /// Where ONNX Runtime put the nodes of the (optimised) graph.
    pub placement: Placement,
    /// Why the session is not the one asked for, when --allow-cpu-fallback let it
    /// run elsewhere (all on the CPU, or some nodes on the CPU).
    pub fallback_reason: Option<String>,
    /// ONNX Runtime's warnings while it built the session. xfer takes its session
    /// log over to read the placement, so it hands them on for the front end.
    pub ort_warnings: Vec<String>,
}

/// Outputs of one batch.
pub struct Outputs {
    /// [n_samples, feature_dim]
    pub features: Array2<f32>,
    /// [n_samples, n_logits], when the model has logits and they were asked for.
    pub logits: Option<Array2<f32>>,
}

impl Backbone {
    /// Loads `manifest`'s model and checks its sha256. The checksum is computed
    /// on a second thread while ONNX Runtime builds the session (mostly one
    /// core), so it costs no start-up time; a wrong file is reported before any
    /// session error it may have caused.
    pub fn load(runtime: &Runtime, manifest: &Manifest, opts: &SessionOptions) -> Result<Backbone> {
        manifest.check_present()?;
        if opts.device.device == Device::Tensorrt {
            // A cache folder that cannot be made is the user's to fix, never a
            // reason to fall back to the CPU.
            runtime::trt_cache_dir(&opts.device)?;
        }
        let profile = trt_profile(manifest, opts.max_batch);
        let openvino = (opts.device.device == Device::Openvino).then(|| {
            openvino::choose(
                runtime,
                opts.device.openvino_lib.as_deref(),
                opts.device.precision,
            )
        });
        if let Some(Err(openvino::Unavailable::Precision(problem))) = &openvino {
            return Err(Error::Setting {
                setting: crate::error::Setting::Precision,
                problem: problem.clone(),
            });
        }
        let path = manifest.onnx_path();
        let cached = opts
            .optimized_cache
            .as_ref()
            .map(|dir| optimized_cache_file(dir, runtime, manifest));
        let model = match &cached {
            Some(cached) => ModelSource::Cached {
                model: &path,
                cached,
            },
            None => ModelSource::File(&path),
        };
        let (sha256, built) = std::thread::scope(|s| {
            let sha256 = s.spawn(|| crate::models::onnx_data::model_sha256(&manifest.onnx_path()));
            let built = open_with_fallback(&opts.device, &manifest.name, |mode| {
                open(
                    runtime,
                    model,
                    opts,
                    mode,
                    accelerate(runtime, opts, &profile, openvino.as_ref()),
                )
            });
            (sha256.join().expect("sha256 thread panicked"), built)
        });
        manifest.check_sha256(&sha256?)?;
        let built = built?;
        check_io(&built.opened.session, manifest)?;
        let inference_precision = inference_precision(&opts.device, &built.provider, openvino);
        Ok(Backbone {
            session: built.opened.session,
            manifest: manifest.clone(),
            inference_precision,
            provider: built.provider,
            placement: built.opened.placement,
            fallback_reason: built.fallback_reason,
            ort_warnings: built.opened.warnings,
        })
    }

    /// The provider and, when set, the precision it computes in, for people:
    /// "OpenVINOExecutionProvider (bf16)".
    pub fn provider_label(&self) -> String {
        label(&self.provider, &self.inference_precision)
    }

    /// Whether the whole model runs on the CPU.
    pub fn on_cpu(&self) -> bool {
        self.provider == CPU_PROVIDER
    }

    pub(crate) fn feature_dim(&self) -> usize {
        self.manifest.output.feature_dim
    }

    /// Runs one batch.
    ///
    /// # Shapes
    /// `batch`: [n_samples, 3, crop, crop] → features [n_samples, feature_dim]
    pub fn run(&mut self, batch: ArrayView4<f32>, with_logits: bool) -> Result<Outputs> {
        let n = batch.len_of(Axis(0));
        let input = TensorRef::from_array_view(batch)?;
        let outputs = self
            .session
            .run(ort::inputs![self.manifest.input.name.as_str() => input])?;
        let out = &self.manifest.output;
        let mismatch = |reason: String| Error::ModelMismatch {
            model: self.manifest.name.clone(),
            reason: format!("output `{}` {reason}", out.features),
        };
        let raw = outputs[out.features.as_str()].try_extract_array::<f32>()?;
        let features = crate::models::pool::pool(raw, n, out).map_err(mismatch)?;
        if features.ncols() != out.feature_dim {
            return Err(mismatch(format!(
                "gives {} values per image after pooling ({}), the manifest says {}",
                features.ncols(),
                out.pool.name(),
                out.feature_dim
            )));
        }
        let logits = match (&out.logits, with_logits) {
            (Some(name), true) => {
                let k = out.n_logits.unwrap_or(0);
                Some(extract_2d(
                    &outputs[name.as_str()],
                    n,
                    k,
                    &self.manifest.name,
                    name,
                )?)
            }
            _ => None,
        };
        Ok(Outputs { features, logits })
    }
}

fn extract_2d(
    value: &ort::value::DynValue,
    n: usize,
    d: usize,
    model: &str,
    name: &str,
) -> Result<Array2<f32>> {
    let view = value.try_extract_array::<f32>()?;
    let shape = view.shape().to_vec();
    // Pooled outputs may come as [n, d] or [n, d, 1, 1].
    if shape.first() != Some(&n) || shape.iter().skip(1).product::<usize>() != d {
        return Err(Error::ModelMismatch {
            model: model.to_owned(),
            reason: format!("output `{name}` has shape {shape:?}, expected [{n}, {d}]"),
        });
    }
    Ok(view
        .to_shape((n, d))
        .map_err(|e| Error::ModelMismatch {
            model: model.to_owned(),
            reason: e.to_string(),
        })?
        .to_owned())
}

/// TensorRT's profile for `manifest`'s input: its axes after the batch, which
/// the manifest fixes, and batches of 1..=`max_batch`.
fn trt_profile(manifest: &Manifest, max_batch: usize) -> TrtProfile {
    TrtProfile {
        input: manifest.input.name.clone(),
        dims: manifest.input.shape.iter().skip(1).copied().collect(),
        max_batch,
    }
}

/// What a session is built from.
#[derive(Clone, Copy)]
enum ModelSource<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
    /// A file whose CPU sessions go through the optimised-graph cache
    /// ([`optimized_cache_file`]); GPU sessions read `model` itself.
    Cached {
        model: &'a Path,
        cached: &'a Path,
    },
}

/// How one attempt registers providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The GPU providers, with ONNX Runtime's `session.disable_cpu_ep_fallback`:
    /// the session builds only when they take every node.
    Strict,
    /// The GPU providers, and the nodes they cannot take on the CPU.
    Mixed,
    /// The CPU alone.
    Cpu,
}

/// A session that was built, and what its log said.
struct Opened {
    session: Session,
    placement: Placement,
    warnings: Vec<String>,
}

/// Why an attempt failed.
#[derive(Debug)]
struct Failure {
    error: Error,
    /// ONNX Runtime refused the strict session because some nodes would run on the CPU.
    cpu_nodes: bool,
}

impl Failure {
    fn new(stage: &str, e: impl std::fmt::Display) -> Failure {
        // ONNX Runtime's messages start with its source location and can end with
        // a newline (the loader's): one line, from its own error text on.
        let full = e.to_string();
        let from = full.find("[ONNXRuntimeError]").unwrap_or(0);
        let message = full[from..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Failure {
            cpu_nodes: message.contains("assigned to the default CPU EP"),
            error: Error::Session(format!("{stage}: {message}")),
        }
    }

    fn reason(&self) -> String {
        match &self.error {
            Error::Session(m) => m.clone(),
            e => e.to_string(),
        }
    }
}

/// One attempt at a session: the providers `accelerate` registers (for the
/// accelerated modes), verbose session log into a [`SessionLog`] (the placement is logged
/// only at that level; nothing is logged per run), on the CPU no automatic
/// provider selection (only what xfer registers runs).
fn open(
    runtime: &Runtime,
    model: ModelSource,
    opts: &SessionOptions,
    mode: Mode,
    accelerate: impl FnOnce(SessionBuilder) -> std::result::Result<SessionBuilder, String>,
) -> std::result::Result<Opened, Failure> {
    let log = Arc::new(Mutex::new(SessionLog::default()));
    let sink = log.clone();
    let setup = |e: ort::Error<_>| Failure::new("setting up the session", e);
    let mut builder = Session::builder(&runtime.env)
        .map_err(|e| Failure::new("setting up the session", e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(setup)?
        .with_intra_op_spinning(opts.intra_op_spinning)
        .map_err(setup)?
        .with_log_level(LogLevel::Verbose)
        .map_err(setup)?
        .with_logger(Arc::new(
            move |level, _category, _id, _location, message| {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(level, message)
            },
        ))
        .map_err(setup)?;
    if opts.threads > 0 {
        builder = builder.with_intra_threads(opts.threads).map_err(setup)?;
    }
    if mode == Mode::Cpu {
        // No automatic provider selection (ort asks for one by default): the CPU.
        // With providers registered ONNX Runtime selects none anyway.
        builder = builder
            .with_auto_device(AutoDevicePolicy::PreferCPU)
            .map_err(setup)?;
    } else {
        builder = accelerate(builder).map_err(|e| Failure::new("registering the provider", e))?;
        if mode == Mode::Strict {
            builder = builder.with_disable_cpu_fallback().map_err(setup)?;
        }
    }
    let session = match model {
        ModelSource::Cached { model, cached } if mode == Mode::Cpu => {
            commit_cached(builder, model, cached)
        }
        ModelSource::File(p) | ModelSource::Cached { model: p, .. } => {
            builder.commit_from_file(p).map_err(Error::from)
        }
        ModelSource::Memory(m) => builder.commit_from_memory(m).map_err(Error::from),
    }
    .map_err(|e| Failure::new("building the session", e))?;
    let log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Opened {
        session,
        placement: Placement::parse(log.placement.iter().map(String::as_str)),
        warnings: log.warnings,
    })
}

/// An [`Backbone::inference_precision`] as the precision it is: empty (ONNX
/// Runtime's own kernels) is `f32`, as is OpenVINO told f32 (the two agree to
/// about 1e-6). Features whose precisions differ by this measure differ.
pub fn precision_class(inference_precision: &str) -> &str {
    if inference_precision.is_empty() {
        "f32"
    } else {
        inference_precision
    }
}

/// "P (precision)", or P alone when no precision is recorded.
pub fn label(provider: &str, inference_precision: &str) -> String {
    if inference_precision.is_empty() {
        provider.to_owned()
    } else {
        format!("{provider} ({inference_precision})")
    }
}

/// What registers the requested device's providers on a session builder:
/// OpenVINO's plugin device (`openvino`: its [`openvino::choose`], made once
/// per load), else the GPU providers.
fn accelerate<'a>(
    runtime: &'a Runtime,
    opts: &'a SessionOptions,
    profile: &'a TrtProfile,
    openvino: Option<&'a std::result::Result<openvino::Choice, openvino::Unavailable>>,
) -> impl FnOnce(SessionBuilder) -> std::result::Result<SessionBuilder, String> + 'a {
    move |builder| match openvino {
        Some(choice) => {
            let choice = choice.clone().map_err(|u| match u {
                openvino::Unavailable::Device(r) | openvino::Unavailable::Precision(r) => r,
            })?;
            let cache = openvino::cache_dir(opts.optimized_cache.as_deref());
            openvino::append(
                builder,
                &runtime.env,
                &choice,
                opts.threads,
                cache.as_deref(),
            )
        }
        None => {
            let eps = runtime::gpu_providers(&opts.device, Some(profile))?;
            builder
                .with_execution_providers(eps)
                .map_err(|e| e.to_string())
        }
    }
}

/// [`Backbone::inference_precision`]: what OpenVINO was told (when it got the
/// nodes), `fp16` for TensorRT's fp16 engines, else empty.
fn inference_precision(
    request: &DeviceRequest,
    provider: &str,
    openvino: Option<std::result::Result<openvino::Choice, openvino::Unavailable>>,
) -> String {
    let ran = |p: &str| provider.split('+').any(|x| x == p);
    match openvino {
        Some(Ok(choice)) if ran(openvino::EP_NAME) => choice.precision.to_owned(),
        _ if request.device == Device::Tensorrt
            && request.trt_fp16
            && ran(runtime::TENSORRT_PROVIDER) =>
        {
            "fp16".to_owned()
        }
        _ => String::new(),
    }
}

/// A session, the provider to record, and why it is not the one asked for.
struct Built {
    opened: Opened,
    provider: String,
    fallback_reason: Option<String>,
}

/// Builds the session `request` asks for, through `open`:
/// - CPU: a CPU session.
/// - GPU: first strict (every node on the GPU providers, or no session). When that
///   fails, without --allow-cpu-fallback it is an error: [`Error::ProviderPartial`]
///   when ONNX Runtime refused only because some nodes would run on the CPU,
///   else [`Error::ProviderUnavailable`] (registration, no GPU, a bad device id,
///   cuDNN missing, a TensorRT engine build or cache error). With it: a session
///   with those nodes on the CPU in the first case (a CPU session if even that
///   fails), a CPU session in the second, and the reason is kept.
fn open_with_fallback(
    request: &DeviceRequest,
    model: &str,
    mut open: impl FnMut(Mode) -> std::result::Result<Opened, Failure>,
) -> Result<Built> {
    let device = request.device;
    let built = |opened: Opened, mode: Mode, fallback_reason: Option<String>| {
        let provider = recorded_provider(&opened.placement, mode, device);
        Built {
            opened,
            provider,
            fallback_reason,
        }
    };
    if device == Device::Cpu {
        let opened = open(Mode::Cpu).map_err(|f| f.error)?;
        return Ok(built(opened, Mode::Cpu, None));
    }
    let strict = match open(Mode::Strict) {
        Ok(opened) => return Ok(built(opened, Mode::Strict, None)),
        Err(f) => f,
    };
    let requested = device.provider_name().to_owned();
    let mut reason = strict.reason();
    if strict.cpu_nodes {
        if !request.allow_cpu_fallback {
            return Err(Error::ProviderPartial {
                requested,
                model: model.to_owned(),
                reason,
            });
        }
        match open(Mode::Mixed) {
            Ok(opened) => {
                let p = &opened.placement;
                let on_cpu = p.nodes_on(CPU_PROVIDER);
                let ops = p
                    .providers
                    .iter()
                    .filter(|n| n.provider == CPU_PROVIDER)
                    .flat_map(|n| n.op_types.iter().map(|(o, c)| format!("{c} {o}")))
                    .collect::<Vec<_>>();
                let why = format!(
                    "{on_cpu} of the {} nodes of {model} have no kernel on {}{}",
                    p.total(),
                    device.registered_providers().join(" or "),
                    if ops.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", ops.join(", "))
                    }
                );
                return Ok(built(opened, Mode::Mixed, Some(why)));
            }
            Err(f) => reason = format!("{reason}; with the CPU taking those nodes: {}", f.reason()),
        }
    } else if !request.allow_cpu_fallback {
        return Err(Error::ProviderUnavailable { device, reason });
    }
    let opened = open(Mode::Cpu).map_err(|f| f.error)?;
    Ok(built(opened, Mode::Cpu, Some(reason)))
}

/// The provider string of [`Backbone::provider`]: the providers that got nodes;
/// when ONNX Runtime reported no placement, what the mode guarantees.
fn recorded_provider(placement: &Placement, mode: Mode, device: Device) -> String {
    let registered = device.registered_providers();
    let used = placement.providers_used(registered);
    if !used.is_empty() {
        return used.join("+");
    }
    match mode {
        Mode::Cpu => CPU_PROVIDER.to_owned(),
        Mode::Strict => registered.join("+"),
        Mode::Mixed => format!("{}+{CPU_PROVIDER}", registered.join("+")),
    }
}

/// A 129-byte ONNX model for [`probe`]: y = Relu(Conv(x, w)), x and y float
/// [1, 1, 2, 2], w = [[[[1]]]] (IR 7, opset 13; made with onnx.helper and checked
/// with onnx.checker). A convolution, so a CUDA run goes through cuDNN.
const PROBE_MODEL: &[u8] = &[
    8, 7, 18, 0, 58, 117, 10, 15, 10, 1, 120, 10, 1, 119, 18, 1, 99, 34, 4, 67, 111, 110, 118, 10,
    12, 10, 1, 99, 18, 1, 121, 34, 4, 82, 101, 108, 117, 18, 5, 112, 114, 111, 98, 101, 42, 19, 8,
    1, 8, 1, 8, 1, 8, 1, 16, 1, 34, 4, 0, 0, 128, 63, 66, 1, 119, 90, 27, 10, 1, 120, 18, 22, 10,
    20, 8, 1, 18, 16, 10, 2, 8, 1, 10, 2, 8, 1, 10, 2, 8, 2, 10, 2, 8, 2, 98, 27, 10, 1, 121, 18,
    22, 10, 20, 8, 1, 18, 16, 10, 2, 8, 1, 10, 2, 8, 1, 10, 2, 8, 2, 10, 2, 8, 2, 66, 4, 10, 0, 16,
    13,
];

/// What [`probe`] found for one device.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The placement of a session that built and ran right, or ONNX Runtime's error.
    pub result: std::result::Result<Placement, String>,
}

/// Tries `device` for real (`xfer info`): registers its providers on a throwaway
/// session of a tiny convolution, strictly (no node may fall back to the CPU),
/// runs it once and checks the answer. The error is ONNX Runtime's own (a
/// missing `libcublasLt.so.13`, no GPU, an unusable TensorRT).
pub fn probe(runtime: &Runtime, device: Device, device_id: i32) -> Probe {
    let t = std::env::temp_dir().join(format!("xfer-probe-trt-{}", std::process::id()));
    let request = DeviceRequest {
        device,
        device_id,
        trt_cache_dir: Some(t.clone()),
        ..DeviceRequest::default()
    };
    let opts = SessionOptions {
        device: request,
        max_batch: 1,
        ..SessionOptions::default()
    };
    let profile = TrtProfile {
        input: "x".into(),
        dims: vec![1, 2, 2],
        max_batch: 1,
    };
    let mode = if device == Device::Cpu {
        Mode::Cpu
    } else {
        Mode::Strict
    };
    let openvino = (device == Device::Openvino)
        .then(|| openvino::choose(runtime, None, openvino::Precision::Auto));
    let result = open(
        runtime,
        ModelSource::Memory(PROBE_MODEL),
        &opts,
        mode,
        accelerate(runtime, &opts, &profile, openvino.as_ref()),
    )
    .map_err(|f| f.reason())
    .and_then(|mut o| {
        let x = ndarray::Array4::from_shape_vec((1, 1, 2, 2), vec![-1f32, 0.0, 1.0, 2.0])
            .expect("4 values");
        let input = TensorRef::from_array_view(x.view()).map_err(|e| e.to_string())?;
        let out = o
            .session
            .run(ort::inputs!["x" => input])
            .map_err(|e| format!("running: {e}"))?;
        let y = out["y"]
            .try_extract_array::<f32>()
            .map_err(|e| e.to_string())?;
        let y: Vec<f32> = y.iter().copied().collect();
        if y != [0.0, 0.0, 1.0, 2.0] {
            return Err(format!("ran, but computed {y:?} instead of [0, 0, 1, 2]"));
        }
        Ok(o.placement)
    });
    let _ = std::fs::remove_dir_all(&t);
    Probe { result }
}

/// Checks the graph's real inputs and outputs against the manifest.
fn check_io(session: &Session, m: &Manifest) -> Result<()> {
    let mismatch = |reason: String| Error::ModelMismatch {
        model: m.name.clone(),
        reason,
    };
    let names = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| o.name().to_owned())
            .collect::<Vec<_>>()
    };
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == m.input.name)
        .ok_or_else(|| {
            mismatch(format!(
                "no input `{}` (the graph has {:?})",
                m.input.name,
                names(session.inputs())
            ))
        })?;
    if session.inputs().len() != 1 {
        return Err(mismatch(format!(
            "expected one input, the graph has {:?}",
            names(session.inputs())
        )));
    }
    if let Some(shape) = input.dtype().tensor_shape() {
        let dims: Vec<i64> = shape.iter().copied().collect();
        let ok = dims.len() == 4 && dims[1..] == m.input.shape[1..];
        if !ok {
            return Err(mismatch(format!(
                "input `{}` has shape {dims:?}, the manifest says {:?}",
                m.input.name, m.input.shape
            )));
        }
    }
    // Pooled features are checked on the first batch (`pool::pool`), where
    // every axis is known; the graph's shapes may be symbolic.
    let pooled = m.output.pool == crate::models::zoo::Pool::None;
    let mut wanted = vec![(&m.output.features, pooled.then_some(m.output.feature_dim))];
    if let Some(l) = &m.output.logits {
        wanted.push((l, m.output.n_logits));
    }
    for (name, dim) in wanted {
        let out = session
            .outputs()
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| {
                mismatch(format!(
                    "no output `{name}` (the graph has {:?})",
                    names(session.outputs())
                ))
            })?;
        if let (Some(shape), Some(dim)) = (out.dtype().tensor_shape(), dim) {
            let trailing: i64 = shape.iter().skip(1).product();
            if trailing > 0 && trailing as usize != dim {
                return Err(mismatch(format!(
                    "output `{name}` has {trailing} values per image, the manifest says {dim}"
                )));
            }
        }
    }
    Ok(())
}

/// A model file's graph as ONNX Runtime sees it, before any manifest exists
/// (`xfer models add`): its inputs and outputs with their shapes (−1 for a
/// symbolic axis), and a CPU session to probe it with.
pub struct Graph {
    session: Session,
    pub(crate) inputs: Vec<(String, Vec<i64>)>,
    pub(crate) outputs: Vec<(String, Vec<i64>)>,
}

impl Graph {
    /// Opens `path` on the CPU.
    pub fn open(runtime: &Runtime, path: &std::path::Path) -> Result<Graph> {
        let session = Session::builder(&runtime.env)?
            .with_optimization_level(GraphOptimizationLevel::Level1)?
            .commit_from_file(path)?;
        let shapes = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| {
                    let dims = o
                        .dtype()
                        .tensor_shape()
                        .map(|s| s.iter().copied().collect())
                        .unwrap_or_default();
                    (o.name().to_owned(), dims)
                })
                .collect::<Vec<_>>()
        };
        let (inputs, outputs) = (shapes(session.inputs()), shapes(session.outputs()));
        Ok(Graph {
            session,
            inputs,
            outputs,
        })
    }

    /// Runs a batch of `n` images of `side × side` through `input`: the
    /// first all zeros, the others a fixed pattern in [−2, 2] (the range of
    /// normalised pixels). Returns the concrete shape of `output` and how many
    /// of its values are not finite (NaN or ±inf).
    pub fn probe(
        &mut self,
        input: &str,
        side: u32,
        n: usize,
        output: &str,
    ) -> Result<(Vec<usize>, usize)> {
        let s = side as usize;
        let x = ndarray::Array4::<f32>::from_shape_fn((n, 3, s, s), |(i, c, y, x)| {
            if i == 0 {
                0.0
            } else {
                (((x * 7 + y * 13 + c * 29 + i * 31) % 41) as f32 / 10.0) - 2.0
            }
        });
        let outputs = self
            .session
            .run(ort::inputs![input => TensorRef::from_array_view(x.view())?])?;
        let value = outputs[output].try_extract_array::<f32>()?;
        let non_finite = value.iter().filter(|v| !v.is_finite()).count();
        Ok((value.shape().to_vec(), non_finite))
    }
}

/// Where the optimised graph of `manifest`'s model is kept in `dir`: named by
/// the model's sha256 and a key of what the optimised graph depends on (the
/// ONNX Runtime library and the CPU's features: ONNX Runtime's level-3
/// optimisations lay out tensors for this CPU).
pub(crate) fn optimized_cache_file(
    dir: &std::path::Path,
    runtime: &Runtime,
    manifest: &Manifest,
) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("flags"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(runtime.library.to_string_lossy().as_bytes());
    h.update(runtime.version.as_bytes());
    if let Ok(m) = std::fs::metadata(&runtime.library) {
        h.update(m.len().to_le_bytes());
    }
    h.update(flags.as_bytes());
    let key = format!("{:x}", h.finalize());
    dir.join(format!(
        "{}-{}-{}.ort.onnx",
        manifest.name,
        &manifest.sha256[..manifest.sha256.len().min(16)],
        &key[..16]
    ))
}

/// Builds the session from the cached optimised graph (no optimisation to
/// redo); without one, from the model, saving its optimised graph for next
/// time (written under a temporary name, then renamed; not at all where the
/// folder cannot be written). A cached graph ONNX Runtime cannot load is
/// removed and the model used instead.
fn commit_cached(
    builder: ort::session::builder::SessionBuilder,
    model: &Path,
    cached: &Path,
) -> Result<Session> {
    if cached.is_file() {
        let mut b = builder.with_optimization_level(GraphOptimizationLevel::Disable)?;
        if let Ok(s) = b.commit_from_file(cached) {
            return Ok(s);
        }
        let _ = std::fs::remove_file(cached);
        let mut b = b.with_optimization_level(GraphOptimizationLevel::Level3)?;
        return Ok(b.commit_from_file(model)?);
    }
    let tmp = cached.with_extension(format!("tmp-{}", std::process::id()));
    // Made new (never through a link planted at the name); only that file is
    // removed again.
    let made = cached
        .parent()
        .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
        .then(|| crate::util::atomic::create_new(&tmp).ok())
        .flatten()
        .and_then(|f| {
            use std::os::unix::fs::MetadataExt;
            f.metadata().ok().map(|m| (m.dev(), m.ino()))
        });
    let writable = made.is_some();
    let mut b = if writable {
        builder.with_optimized_model_path(&tmp)?
    } else {
        builder
    };
    let session = b.commit_from_file(model);
    if writable {
        let saved = session.is_ok()
            && std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 0)
            && std::fs::rename(&tmp, cached).is_ok();
        if let (false, Some(id)) = (saved, made) {
            crate::util::atomic::remove_if_same(&tmp, id);
        }
    }
    Ok(session?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::placement::ProviderNodes;
    use std::path::PathBuf;

    fn runtime() -> Runtime {
        Runtime::init(None)
            .unwrap_or_else(|e| panic!("{e} (the test command runs tools/setup.sh first)"))
    }

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The test fixture: Conv, Relu, pooling, flatten, Gemm.
    fn tiny() -> Manifest {
        Manifest::from_file(&repo().join("tests/fixtures/tiny/tiny.toml")).unwrap()
    }

    fn request(device: Device, allow_cpu_fallback: bool) -> SessionOptions {
        SessionOptions {
            device: DeviceRequest {
                device,
                allow_cpu_fallback,
                ..DeviceRequest::default()
            },
            max_batch: 4,
            ..SessionOptions::default()
        }
    }

    #[test]
    fn the_recorded_provider_is_where_the_nodes_ran() {
        let placed = |v: &[(&str, usize)]| Placement {
            providers: v
                .iter()
                .map(|(p, n)| ProviderNodes {
                    provider: p.to_string(),
                    nodes: *n,
                    op_types: vec![],
                })
                .collect(),
        };
        let trt = Device::Tensorrt;
        // ONNX Runtime lists providers in its own order; the record follows preference.
        let both = placed(&[
            ("CUDAExecutionProvider", 2),
            ("TensorrtExecutionProvider", 3),
        ]);
        assert_eq!(
            recorded_provider(&both, Mode::Strict, trt),
            "TensorrtExecutionProvider+CUDAExecutionProvider"
        );
        // TensorRT took everything: CUDA, registered but idle, is not named.
        let all_trt = placed(&[
            ("TensorrtExecutionProvider", 3),
            ("CUDAExecutionProvider", 0),
        ]);
        assert_eq!(
            recorded_provider(&all_trt, Mode::Strict, trt),
            "TensorrtExecutionProvider"
        );
        let mixed = placed(&[("CPUExecutionProvider", 2), ("CUDAExecutionProvider", 40)]);
        assert_eq!(
            recorded_provider(&mixed, Mode::Mixed, Device::Cuda),
            "CUDAExecutionProvider+CPUExecutionProvider"
        );
        // No placement in the log: what the mode guarantees.
        let none = Placement::default();
        assert_eq!(
            recorded_provider(&none, Mode::Strict, Device::Cuda),
            "CUDAExecutionProvider"
        );
        assert_eq!(
            recorded_provider(&none, Mode::Cpu, Device::Cuda),
            "CPUExecutionProvider"
        );
        assert_eq!(
            recorded_provider(&none, Mode::Mixed, trt),
            "TensorrtExecutionProvider+CUDAExecutionProvider+CPUExecutionProvider"
        );
    }

    /// The real model on the CPU: the placement xfer records is the one ONNX
    /// Runtime logs. onnxruntime-python 1.31.1 on the same file (default options:
    /// all optimisations; `log_severity_level = 0`) logs "All nodes placed on
    /// [CPUExecutionProvider]. Number of nodes: 53" for efficientnet_lite0 and 5 for
    /// the tiny fixture.
    #[test]
    fn a_cpu_session_records_onnx_runtimes_placement() {
        let rt = runtime();
        let lite0 = Manifest::from_file(&repo().join("onnx/efficientnet_lite0.toml")).unwrap();
        for (m, nodes) in [(tiny(), 5), (lite0, 53)] {
            let b = Backbone::load(&rt, &m, &request(Device::Cpu, false)).unwrap();
            assert_eq!(b.provider, CPU_PROVIDER);
            assert!(b.on_cpu() && b.fallback_reason.is_none());
            assert_eq!(b.placement.providers.len(), 1, "{:?}", b.placement);
            assert_eq!(b.placement.nodes_on(CPU_PROVIDER), nodes, "{}", m.name);
        }
    }

    /// A GPU session that fails when ONNX Runtime builds it, for real: a strict
    /// session whose GPU providers take nothing (the list is empty) is refused by
    /// ONNX Runtime at commit, as a GPU session with a node its providers lack
    /// would be. The fallback code under test is the one `Backbone::load` runs.
    #[test]
    fn a_session_refused_at_build_falls_back_only_when_allowed() {
        let rt = runtime();
        let m = tiny();
        let path = m.onnx_path();
        let attempt = |opts: &SessionOptions, modes: &mut Vec<Mode>, mode: Mode| {
            modes.push(mode);
            open(&rt, ModelSource::File(&path), opts, mode, Ok)
        };

        let opts = request(Device::Cuda, false);
        let mut modes = Vec::new();
        let e = open_with_fallback(&opts.device, "tiny", |mode| {
            attempt(&opts, &mut modes, mode)
        })
        .err()
        .expect("strict build must fail");
        assert_eq!(modes, [Mode::Strict]);
        // The facts; the CLI adds "pass --allow-cpu-fallback" from the variant.
        assert!(matches!(e, Error::ProviderPartial { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("CUDAExecutionProvider cannot run every node of tiny")
                && e.contains("fallback to CPU EP has been explicitly disabled"),
            "{e}"
        );

        let opts = request(Device::Cuda, true);
        let mut modes = Vec::new();
        let b = open_with_fallback(&opts.device, "tiny", |mode| {
            attempt(&opts, &mut modes, mode)
        })
        .unwrap();
        assert_eq!(modes, [Mode::Strict, Mode::Mixed]);
        // Every node ended on the CPU, and that is what is recorded.
        assert_eq!(b.provider, CPU_PROVIDER);
        assert_eq!(b.opened.placement.nodes_on(CPU_PROVIDER), 5);
        let why = b.fallback_reason.unwrap();
        assert!(
            why.contains("5 of the 5 nodes of tiny have no kernel on CUDAExecutionProvider"),
            "{why}"
        );
    }

    /// A device failure at session build (no GPU, a bad --device id, cuDNN
    /// missing): injected through `open`, the real ladder decides.
    #[test]
    fn a_device_failure_at_build_is_an_error_or_a_recorded_cpu_run() {
        let rt = runtime();
        let m = tiny();
        let path = m.onnx_path();
        let cuda_error = "CUDA failure 101: invalid device ordinal ; GPU=7";
        let attempt = |opts: &SessionOptions, modes: &mut Vec<Mode>, mode: Mode| {
            modes.push(mode);
            if mode == Mode::Cpu {
                open(&rt, ModelSource::File(&path), opts, mode, Ok)
            } else {
                Err(Failure::new("building the session", cuda_error))
            }
        };
        for device in [Device::Cuda, Device::Tensorrt] {
            let opts = request(device, false);
            let mut modes = Vec::new();
            let e = open_with_fallback(&opts.device, "tiny", |mode| {
                attempt(&opts, &mut modes, mode)
            })
            .err()
            .expect("no fallback allowed")
            .to_string();
            assert_eq!(modes, [Mode::Strict]);
            assert!(
                e.contains(&format!("{} is not available", device.provider_name()))
                    && e.contains(cuda_error)
                    && e.contains("nvidia-smi")
                    && !e.contains("--"),
                "{e}"
            );

            let opts = request(device, true);
            let mut modes = Vec::new();
            let b = open_with_fallback(&opts.device, "tiny", |mode| {
                attempt(&opts, &mut modes, mode)
            })
            .unwrap();
            assert_eq!(modes, [Mode::Strict, Mode::Cpu]);
            assert_eq!(b.provider, CPU_PROVIDER);
            assert!(b.fallback_reason.unwrap().contains(cuda_error));
        }
    }

    /// `xfer info`'s check: a real registration and run. This library is the CPU
    /// build, so the CPU works and the GPU providers fail with ONNX Runtime's text
    /// ("CUDA execution provider is not enabled in this build."; the GPU build
    /// with a CUDA library missing says which, from the loader).
    #[test]
    fn probe_tries_each_provider_for_real() {
        let rt = runtime();
        let cpu = probe(&rt, Device::Cpu, 0).result.unwrap();
        assert!(cpu.nodes_on(CPU_PROVIDER) >= 1, "{cpu:?}");
        for device in [Device::Cuda, Device::Tensorrt] {
            let e = probe(&rt, device, 0).result.unwrap_err();
            assert!(e.starts_with("registering the provider: "), "{e}");
            assert!(
                e.contains("execution provider is not enabled in this build"),
                "{e}"
            );
        }
    }
}
