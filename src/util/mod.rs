//! File-system care shared by every command: atomic writes ([`atomic`]),
//! output locks ([`lock`]), outputs that must not be inputs ([`clobber`]) and
//! checks before HDF5 opens a path ([`h5file`]); file hashes ([`digest`]) and
//! shell words ([`shell`]).

pub mod atomic;
pub mod clobber;
pub(crate) mod digest;
pub mod format;
#[cfg(feature = "store")]
pub(crate) mod h5file;
pub mod lock;
pub mod shell;
