//! Evaluation: scores of a classifier ([`metrics`]), the HTML report of its
//! mistakes ([`report`]) and the audit of a dataset's labels ([`audit`]).

#[cfg(feature = "store")]
pub mod audit;
pub mod metrics;
pub mod report;
