//! xfer: transfer learning on images. Pretrained backbones run under ONNX
//! Runtime turn images into pooled features, cached in HDF5, on which small
//! classifier heads are trained. `docs/ARCHITECTURE.md` describes the parts,
//! the data flow and the file formats.

pub mod atomic;
#[cfg(feature = "store")]
pub mod audit;
pub mod augment;
pub mod backbone;
pub mod bundle;
pub mod clobber;
pub mod cpu;
pub mod dataset;
pub mod error;
#[cfg(feature = "ship")]
pub mod export;
#[cfg(feature = "store")]
pub mod extract;
pub mod features;
#[cfg(feature = "store")]
pub mod h5file;
pub mod head;
pub mod jpeg;
pub mod lock;
#[cfg(feature = "store")]
pub mod merge;
pub mod metrics;
pub mod model_add;
pub mod model_config;
pub mod model_fetch;
pub mod nvidia;
pub mod onnx_data;
#[cfg(feature = "ship")]
pub mod package;
pub mod pipeline;
pub mod pool;
pub mod predict;
pub mod preprocess;
pub mod proto;
#[cfg(feature = "store")]
pub mod quantize;
pub mod report;
pub mod runtime;
pub mod scripts;
pub mod shard;
#[cfg(feature = "store")]
pub mod store;
pub mod train;
pub mod zoo;

pub use error::{Error, Result};

/// xfer's version, recorded in every file it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
