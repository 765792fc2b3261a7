//! Shipping a trained head: the bundle file ([`bundle`]), prediction on new
//! images ([`predict`]), one ONNX file with backbone and head ([`export`]) and
//! a folder for another machine ([`package`]).

pub mod bundle;
#[cfg(feature = "ship")]
pub mod export;
#[cfg(feature = "ship")]
pub mod package;
pub mod predict;
