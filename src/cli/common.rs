//! Flags and conventions shared by the front ends: `xfer` and the slim
//! `xfer-predict` (which includes this file and `predict.rs` with `#[path]`),
//! so both accept the same flags.

use std::path::PathBuf;

use clap::Args;
use xfer::features::pipeline::{schedule, PipelineConfig};
use xfer::images::preprocess::DecodeOptions;
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::runtime::{Device, DeviceRequest};

/// Exit status of a run that finished but skipped some inputs.
pub const EXIT_SKIPPED: i32 = 3;

/// Where the model runs.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Execution provider. cuda and tensorrt need the GPU build of ONNX Runtime
    /// (docs/clusters.md, "GPUs"); tensorrt registers TensorRT, then CUDA for the nodes
    /// TensorRT rejects.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// GPU index for cuda/tensorrt.
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    /// When the GPU session cannot be built (no GPU, a bad --device-id, a CUDA
    /// library missing, a TensorRT error), run on CPU instead of failing; when
    /// only some nodes have no GPU kernel, run those on CPU. Said on stderr, and
    /// the providers that really ran are recorded.
    #[arg(long)]
    pub allow_cpu_fallback: bool,
    /// TensorRT engine cache folder, created with its parents (engines take
    /// minutes to build; one per model, GPU, precision and --batch). Default:
    /// trt-cache in xfer's data folder ($XFER_HOME, else ~/.local/share/xfer).
    #[arg(long, value_name = "DIR")]
    pub trt_cache: Option<PathBuf>,
    /// TensorRT: build fp16 engines.
    #[arg(long)]
    pub trt_fp16: bool,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Let ONNX Runtime's threads spin between operators (CPU). auto: for
    /// `extract` on the CPU, on when the images are small files (mean under
    /// 256 KiB, from the first 64), whose decoding leaves the cores to the model,
    /// off for large photos, whose decoders need the time spinning would burn;
    /// off on a GPU (its CPU threads only wait); for `predict`, off (spinning
    /// measured 7 % slower there on 2 cores).
    #[arg(long, value_enum, default_value_t = Spin::Auto)]
    pub ort_spin: Spin,
    /// Keep ONNX Runtime's optimised graph of each backbone in DIR (keyed by
    /// the model's sha256, the ONNX Runtime library and the CPU) and start from
    /// it on later runs: a faster session build (CPU only). A folder that
    /// cannot be written is left alone.
    #[arg(long, value_name = "DIR")]
    pub model_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Spin {
    Auto,
    On,
    Off,
}

impl DeviceArgs {
    /// Flags that would be ignored are errors: the TensorRT ones need --device tensorrt.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.device != Device::Tensorrt {
            let given: Vec<&str> = [
                ("--trt-cache", self.trt_cache.is_some()),
                ("--trt-fp16", self.trt_fp16),
            ]
            .into_iter()
            .filter_map(|(f, on)| on.then_some(f))
            .collect();
            if !given.is_empty() {
                anyhow::bail!(
                    "{} only apply to --device tensorrt (this run uses --device {}); drop {} or pass --device tensorrt",
                    given.join(" and "),
                    format!("{:?}", self.device).to_lowercase(),
                    if given.len() == 1 { "it" } else { "them" }
                );
            }
        }
        Ok(())
    }

    /// The session options for a run of `batch` images per backbone run over
    /// `inputs` (`--ort-spin auto` looks at their sizes, and at the device).
    #[allow(dead_code)] // used by `xfer extract`; xfer-predict includes this file too
    pub fn session_options_for(&self, batch: usize, inputs: &[PathBuf]) -> SessionOptions {
        SessionOptions {
            intra_op_spinning: match self.ort_spin {
                Spin::On => true,
                Spin::Off => false,
                Spin::Auto => schedule::auto_spin(self.device, inputs),
            },
            ..self.session_options(batch)
        }
    }

    /// These settings as flags again (those not at their default), for a
    /// command `xfer fit` runs.
    #[allow(dead_code)] // used by `xfer fit`; xfer-predict includes this file too
    pub fn flags(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut v = Vec::new();
        if self.device != Device::Cpu {
            v.extend([
                "--device".into(),
                format!("{:?}", self.device).to_lowercase(),
            ]);
        }
        if self.device_id != 0 {
            v.extend(["--device-id".into(), self.device_id.to_string()]);
        }
        if self.allow_cpu_fallback {
            v.push("--allow-cpu-fallback".into());
        }
        if let Some(c) = &self.trt_cache {
            v.extend(["--trt-cache".into(), path(c)]);
        }
        if self.trt_fp16 {
            v.push("--trt-fp16".into());
        }
        if self.threads != 0 {
            v.extend(["--threads".into(), self.threads.to_string()]);
        }
        match self.ort_spin {
            Spin::Auto => {}
            Spin::On => v.extend(["--ort-spin".into(), "on".into()]),
            Spin::Off => v.extend(["--ort-spin".into(), "off".into()]),
        }
        if let Some(c) = &self.model_cache {
            v.extend(["--model-cache".into(), path(c)]);
        }
        v
    }

    /// The session options, spinning off (`--ort-spin on` turns it on).
    pub fn session_options(&self, batch: usize) -> SessionOptions {
        SessionOptions {
            device: DeviceRequest {
                device: self.device,
                device_id: self.device_id,
                allow_cpu_fallback: self.allow_cpu_fallback,
                trt_cache_dir: self.trt_cache.clone(),
                trt_fp16: self.trt_fp16,
            },
            threads: self.threads,
            intra_op_spinning: self.ort_spin == Spin::On,
            optimized_cache: self.model_cache.clone(),
            max_batch: batch,
        }
    }
}

/// What a front end says on stderr about a loaded backbone: a fallback that
/// --allow-cpu-fallback allowed, and ONNX Runtime's own warnings.
pub fn backbone_warnings(device: Device, backbone: &Backbone) -> Vec<String> {
    let name = &backbone.manifest.name;
    let mut out: Vec<String> = backbone
        .ort_warnings
        .iter()
        .map(|w| format!("onnxruntime ({name}): {w}"))
        .collect();
    if let Some(reason) = &backbone.fallback_reason {
        out.push(if backbone.on_cpu() {
            format!(
                "warning: {} unavailable for {name} ({reason}); running on CPU as --allow-cpu-fallback asked (provider recorded: {})",
                device.provider_name(),
                backbone.provider
            )
        } else {
            format!(
                "warning: {reason}; running those nodes on CPU as --allow-cpu-fallback asked (provider recorded: {})",
                backbone.provider
            )
        });
    }
    out
}

/// How images are decoded.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Threads decoding images (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub decode_threads: usize,
    /// Refuse images larger than this many megapixels.
    #[arg(long, default_value_t = 100.0)]
    pub max_megapixels: f64,
    /// Decode JPEGs at full size even when a reduced-size decode would do
    /// (predict with the setting the training features were extracted with).
    #[arg(long)]
    pub full_jpeg_decode: bool,
    /// On CPU, decoders normally run only on idle CPU time so they never slow the
    /// backbone down; this gives them normal priority.
    #[arg(long)]
    pub normal_priority_decoders: bool,
}

impl DecodeArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_megapixels.is_nan() || self.max_megapixels <= 0.0 {
            anyhow::bail!("--max-megapixels must be positive");
        }
        Ok(())
    }

    pub fn options(&self) -> DecodeOptions {
        DecodeOptions {
            max_pixels: (self.max_megapixels * 1e6) as u64,
            scaled_jpeg: !self.full_jpeg_decode,
            ..DecodeOptions::default()
        }
    }

    /// The pipeline's settings, with `batch` images per backbone run.
    pub fn pipeline(&self, batch: usize) -> PipelineConfig {
        PipelineConfig {
            batch,
            decode_threads: self.decode_threads,
            decode: self.options(),
            background_decoders: !self.normal_priority_decoders,
        }
    }
}

/// Checks an output file named by `flag` before any work starts: not a
/// folder, in a folder that exists, and not already there unless `overwrite`.
pub fn check_output(flag: &str, path: &std::path::Path, overwrite: bool) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("{flag} {} is a folder; give a file name", path.display());
    }
    if path.exists() && !overwrite {
        anyhow::bail!(
            "{} already exists; pass --overwrite to replace it",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !parent.is_dir() {
            anyhow::bail!(
                "the folder of {flag} {}, {}, does not exist",
                path.display(),
                parent.display()
            );
        }
    }
    Ok(())
}

/// Prints an error with its whole chain (each cause once:
/// [`xfer::error::chain_message`]) and gives the exit status for it.
pub fn report(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            let hint = e
                .chain()
                .find_map(|c| c.downcast_ref::<xfer::Error>())
                .and_then(hint);
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            match hint {
                Some(h) => eprintln!("error: {}; {h}", xfer::error::chain_message(e)),
                None => eprintln!("error: {}", xfer::error::chain_message(e)),
            }
            1
        }
    }
}

/// The next step for a library error that states only the facts, in the
/// words of the command line (a library user gets the facts alone).
pub fn hint(e: &xfer::Error) -> Option<&'static str> {
    use xfer::Error as E;
    Some(match e {
        E::OutputExists { .. } => "pass --overwrite to replace it",
        E::Interrupted { .. } => "pass --resume to continue it, or --overwrite to start again",
        E::NothingToResume { .. } => "run without --resume",
        E::NoOutputFolder { .. } => "create it, or give another path",
        E::MomentumWithoutSgd => "--momentum and --nesterov are for --optim sgd",
        _ => return None,
    })
}

/// `xfer info | head`: when the reader of stdout goes away, end quietly as
/// Unix tools do (killed by SIGPIPE, status 141) instead of panicking on a
/// failed `println!` (Rust ignores SIGPIPE by default).
pub fn die_quietly_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
