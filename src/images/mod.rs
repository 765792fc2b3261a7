//! Images: finding them and their labels ([`dataset`]; lists written by
//! [`list`]), decoding and the pixel maths ([`preprocess`], [`jpeg`]), and the
//! augmented views ([`augment`]).
//! Nothing here knows about models or files xfer writes.

pub mod augment;
pub mod dataset;
pub(crate) mod jpeg;
pub mod list;
pub mod preprocess;
