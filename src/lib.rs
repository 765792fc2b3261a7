//! xfer: transfer learning on images. Pretrained backbones run under ONNX
//! Runtime turn images into pooled features, cached in HDF5, on which small
//! classifier heads are trained. `docs/ARCHITECTURE.md` describes the parts,
//! the data flow and the file formats.
//!
//! The source is grouped by layer, in the order data flows:
//! [`images`] → [`models`] → [`features`] → [`train`] → [`eval`] → [`ship`],
//! with [`util`] for file-system care shared by all.

// Builds without `train` or `ship` (the slim predictor, the fuzz crate) leave
// out the code that uses some crate-private helpers: unused there by design.
// The default build warns of dead code.
#![cfg_attr(not(all(feature = "train", feature = "ship")), allow(dead_code))]
// The docs are written for whoever works on xfer too: they link to crate-private
// items (`cargo doc --document-private-items` shows them).
#![allow(rustdoc::private_intra_doc_links)]

pub mod error;
pub mod eval;
pub mod features;
pub mod images;
pub mod models;
pub mod ship;
pub mod train;
pub mod util;

pub use error::{Error, Result};

// The front door: what a program that uses xfer as a library starts from
// (`examples/end_to_end.rs` goes through all of them).
#[cfg(feature = "store")]
pub use features::extraction::{Event, Existing, Extraction, Outcome, Source};
#[cfg(feature = "store")]
pub use features::store::FileReader as FeatureFile;
pub use models::runtime::{Device, Runtime};
pub use models::zoo::Zoo;
pub use ship::bundle::Bundle;
pub use ship::predict::{Predictions, Predictor, PredictorOptions};
#[cfg(feature = "store")]
pub use train::data::TrainingData;
pub use train::folder::RunFolder;
pub use train::plan::{Choices, Plan};

/// xfer's version, recorded in every file it writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
