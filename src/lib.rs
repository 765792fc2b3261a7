//! xfer: transfer learning on images. Pretrained backbones run under ONNX
//! Runtime turn images into pooled features, cached in HDF5, on which small
//! classifier heads are trained. `docs/ARCHITECTURE.md` describes the parts,
//! the data flow and the file formats.
//!
//! The source is grouped by layer, in the order data flows:
//! [`images`] → [`models`] → [`features`] → [`train`] → [`eval`] → [`ship`],
//! with [`util`] for file-system care shared by all.

pub mod error;
pub mod eval;
pub mod features;
pub mod images;
pub mod models;
pub mod ship;
pub mod train;
pub mod util;

pub use error::{Error, Result};

/// xfer's version, recorded in every file it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
