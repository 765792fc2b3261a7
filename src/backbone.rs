//! The only place that touches `ort` sessions: load a backbone from its
//! manifest on the requested execution provider, check the graph against the
//! manifest, and run batches into pooled features.

use ndarray::{Array2, ArrayView4, Axis};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::runtime::{Device, DeviceRequest, Runtime};
use crate::zoo::Manifest;

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
}

/// A loaded backbone.
pub struct Backbone {
    session: Session,
    pub manifest: Manifest,
    /// The execution provider that really runs the model (ONNX Runtime's name).
    pub provider: String,
    /// Why the requested device was not used, when the run fell back to CPU.
    pub fallback_reason: Option<String>,
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
        let (sha256, built) = std::thread::scope(|s| {
            let sha256 = s.spawn(|| crate::zoo::sha256_file(&manifest.onnx_path()));
            let built = build_session(runtime, manifest, opts);
            (sha256.join().expect("sha256 thread panicked"), built)
        });
        manifest.check_sha256(&sha256?)?;
        let (session, provider, fallback_reason) = built?;
        check_io(&session, manifest)?;
        Ok(Backbone {
            session,
            manifest: manifest.clone(),
            provider,
            fallback_reason,
        })
    }

    pub fn feature_dim(&self) -> usize {
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
        let features = crate::pool::pool(raw, n, out).map_err(mismatch)?;
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

fn provider_name(device: Device) -> &'static str {
    match device {
        Device::Cpu => "CPUExecutionProvider",
        Device::Cuda => "CUDAExecutionProvider",
        Device::Tensorrt => "TensorrtExecutionProvider",
    }
}

/// Builds the session on the requested provider; registration failures are
/// errors unless CPU fallback was allowed, in which case the reason is kept.
fn build_session(
    runtime: &Runtime,
    manifest: &Manifest,
    opts: &SessionOptions,
) -> Result<(Session, String, Option<String>)> {
    let mut builder = Session::builder(&runtime.env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_op_spinning(opts.intra_op_spinning)?;
    if opts.threads > 0 {
        builder = builder.with_intra_threads(opts.threads)?;
    }
    let request = &opts.device;
    let mut provider = provider_name(Device::Cpu).to_owned();
    let mut fallback_reason = None;
    if request.device != Device::Cpu {
        match register_device(builder, request) {
            Ok(b) => {
                builder = b;
                provider = provider_name(request.device).to_owned();
            }
            Err((b, reason)) => {
                if !request.allow_cpu_fallback {
                    return Err(Error::ProviderUnavailable {
                        requested: provider_name(request.device).into(),
                        reason,
                        hint: gpu_hint(request.device),
                    });
                }
                builder = b;
                fallback_reason = Some(reason);
            }
        }
    }
    let cache = match (
        &opts.optimized_cache,
        provider == provider_name(Device::Cpu),
    ) {
        (Some(dir), true) => Some(optimized_cache_file(dir, runtime, manifest)),
        _ => None,
    };
    let session = match cache {
        None => builder.commit_from_file(manifest.onnx_path())?,
        Some(cached) => commit_cached(builder, manifest, &cached)?,
    };
    Ok((session, provider, fallback_reason))
}

fn gpu_hint(device: Device) -> String {
    let feature = if device == Device::Cuda {
        "cuda"
    } else {
        "tensorrt"
    };
    format!(
        "install the GPU build of ONNX Runtime (PyPI onnxruntime-gpu==1.31.1, with CUDA 13 and cuDNN 9{}) \
         and point --ort-lib at its libonnxruntime.so; xfer must be built with --features {feature}; \
         or pass --allow-cpu-fallback to run on CPU",
        if device == Device::Tensorrt { " and TensorRT 10" } else { "" }
    )
}

type Builder = ort::session::builder::SessionBuilder;

// The builder comes back on failure so that --allow-cpu-fallback can go on with
// it; it is large, but this runs once per session.
#[allow(unused_variables, unused_mut, clippy::result_large_err)]
fn register_device(
    mut builder: Builder,
    request: &DeviceRequest,
) -> std::result::Result<Builder, (Builder, String)> {
    match request.device {
        Device::Cpu => Ok(builder),
        Device::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let ep = ort::ep::CUDA::default()
                    .with_device_id(request.device_id)
                    .build()
                    .error_on_failure();
                builder.with_execution_providers([ep]).map_err(|e| {
                    let reason = e.to_string();
                    (e.recover(), reason)
                })
            }
            #[cfg(not(feature = "cuda"))]
            Err((
                builder,
                "this xfer was built without the `cuda` feature".into(),
            ))
        }
        Device::Tensorrt => {
            #[cfg(feature = "tensorrt")]
            {
                let mut ep = ort::ep::TensorRT::default()
                    .with_device_id(request.device_id)
                    .with_fp16(request.trt_fp16)
                    .with_engine_cache(true)
                    .with_timing_cache(true);
                if let Some(dir) = &request.trt_cache_dir {
                    let dir = dir.display().to_string();
                    ep = ep.with_engine_cache_path(&dir).with_timing_cache_path(&dir);
                }
                builder
                    .with_execution_providers([ep.build().error_on_failure()])
                    .map_err(|e| {
                        let reason = e.to_string();
                        (e.recover(), reason)
                    })
            }
            #[cfg(not(feature = "tensorrt"))]
            Err((
                builder,
                "this xfer was built without the `tensorrt` feature".into(),
            ))
        }
    }
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
    let pooled = m.output.pool == crate::zoo::Pool::None;
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
    pub inputs: Vec<(String, Vec<i64>)>,
    pub outputs: Vec<(String, Vec<i64>)>,
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

    /// Runs a batch of `n` zero images of `side × side` through `input` and
    /// returns the concrete shape of `output`.
    pub fn probe(&mut self, input: &str, side: u32, n: usize, output: &str) -> Result<Vec<usize>> {
        let s = side as usize;
        let x = ndarray::Array4::<f32>::zeros((n, 3, s, s));
        let outputs = self
            .session
            .run(ort::inputs![input => TensorRef::from_array_view(x.view())?])?;
        let value = outputs[output].try_extract_array::<f32>()?;
        Ok(value.shape().to_vec())
    }
}

/// Where the optimised graph of `manifest`'s model is kept in `dir`: named by
/// the model's sha256 and a key of what the optimised graph depends on (the
/// ONNX Runtime library and the CPU's features: ONNX Runtime's level-3
/// optimisations lay out tensors for this CPU).
pub fn optimized_cache_file(
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
    builder: Builder,
    manifest: &Manifest,
    cached: &std::path::Path,
) -> Result<Session> {
    if cached.is_file() {
        let mut b = builder.with_optimization_level(GraphOptimizationLevel::Disable)?;
        if let Ok(s) = b.commit_from_file(cached) {
            return Ok(s);
        }
        let _ = std::fs::remove_file(cached);
        let mut b = b.with_optimization_level(GraphOptimizationLevel::Level3)?;
        return Ok(b.commit_from_file(manifest.onnx_path())?);
    }
    let tmp = cached.with_extension(format!("tmp-{}", std::process::id()));
    let writable = cached
        .parent()
        .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
        && std::fs::File::create(&tmp).is_ok();
    let mut b = if writable {
        builder.with_optimized_model_path(&tmp)?
    } else {
        builder
    };
    let session = b.commit_from_file(manifest.onnx_path());
    if writable {
        let saved = session.is_ok()
            && std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 0)
            && std::fs::rename(&tmp, cached).is_ok();
        if !saved {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(session?)
}
