//! Features: images through a backbone ([`pipeline`]) into HDF5 feature files
//! ([`extract`], [`store`]; cached by image content for `xfer fit`:
//! [`cache`]), split into shards and merged again ([`shard`], [`merge`]), and
//! loaded back for training and evaluation ([`load`], whose items are
//! re-exported here); the recorded test split of `xfer fit` ([`split`]).

#[cfg(feature = "store")]
pub mod cache;
#[cfg(feature = "store")]
pub mod extract;
#[cfg(feature = "store")]
pub mod extraction;
pub(crate) mod load;
#[cfg(feature = "store")]
pub mod merge;
pub mod pipeline;
pub mod shard;
pub mod split;
#[cfg(feature = "store")]
pub mod store;

pub use load::*;
