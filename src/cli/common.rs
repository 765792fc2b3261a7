//! Flags and conventions shared by the front ends: `xfer` and the slim
//! `xfer-predict` (which includes this file and `predict.rs` with `#[path]`),
//! so both accept the same flags.

use std::path::PathBuf;

use clap::Args;
use xfer::backbone::SessionOptions;
use xfer::preprocess::DecodeOptions;
use xfer::runtime::{Device, DeviceRequest};

/// Exit status of a run that finished but skipped some inputs.
pub const EXIT_SKIPPED: i32 = 3;

/// Where the model runs.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// GPU index for cuda/tensorrt.
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    /// Run on CPU (and say so) when the requested device is unavailable, instead of failing.
    #[arg(long)]
    pub allow_cpu_fallback: bool,
    /// TensorRT engine cache folder (engines take minutes to build).
    #[arg(long, value_name = "DIR", default_value = "data/trt-cache")]
    pub trt_cache: PathBuf,
    /// TensorRT: build fp16 engines.
    #[arg(long)]
    pub trt_fp16: bool,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl DeviceArgs {
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            device: DeviceRequest {
                device: self.device,
                device_id: self.device_id,
                allow_cpu_fallback: self.allow_cpu_fallback,
                trt_cache_dir: Some(self.trt_cache.clone()),
                trt_fp16: self.trt_fp16,
            },
            threads: self.threads,
            intra_op_spinning: false,
        }
    }
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
}

impl DecodeArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.max_megapixels > 0.0) {
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

    /// Decoder threads, 0 resolved to one per core.
    pub fn threads(&self) -> usize {
        if self.decode_threads > 0 {
            self.decode_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Prints an error with its whole chain and gives the exit status for it.
pub fn report(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
