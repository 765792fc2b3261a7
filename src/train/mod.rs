//! Training heads on cached features, in the order the work happens:
//!
//! ```text
//! plan (every setting, checked before a file is read)
//!   ─► data (feature files loaded, aligned, labels checked, validation split)
//!   ─► run (fit the logistic baseline and/or the MLP; score; bundle)
//! ```
//!
//! [`epochs`] is the MLP's training loop itself (no I/O: progress goes to a
//! callback); its items are re-exported here. The front end (`xfer train`)
//! turns flags into a [`plan::Plan`], calls [`data::TrainingData::load`]
//! and the fits in [`run`], prints, and writes the files.

#[cfg(feature = "store")]
pub mod data;
pub(crate) mod epochs;
pub mod folder;
pub mod head;
pub mod plan;
#[cfg(feature = "store")]
pub mod run;

pub use epochs::*;
