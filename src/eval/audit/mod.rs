//! `xfer audit`: what is wrong with the data rather than the model, from the
//! cached features and out-of-fold probabilities:
//!
//! - label issues by confident learning ([`confident`], cleanlab's
//!   `find_label_issues`), from a training run's out-of-fold probabilities
//!   ([`oof`]) or, without a run, from the default logistic head cross-validated here;
//! - exact duplicates (the same bytes: SHA-256 of the image files, when they
//!   can be read) and near-duplicates (cosine similarity of the features at or
//!   above a threshold, [`neighbors`]), within a split and across splits
//!   (leakage from training into validation or test);
//! - outliers: rows far from their k nearest neighbours.
//!
//! [`Splits::load`] reads the feature files (the loader training uses,
//! [`crate::features::load`]: several backbones concatenated); [`audit`] does
//! the work and returns an [`Audit`] that the front end prints, writes as
//! CSV/JSON, and renders ([`html`]).

pub mod confident;
#[cfg(feature = "train")]
pub mod html;
pub mod neighbors;
pub(crate) mod oof;

#[cfg(feature = "train")]
mod run;
#[cfg(feature = "train")]
pub use run::*;

/// Default cosine similarity at or above which two images count as near-duplicates.
pub const DEFAULT_THRESHOLD: f32 = 0.90;
/// Default neighbours per row for the outlier score.
pub const DEFAULT_K: usize = 5;
