//! Models: the zoo of backbone manifests ([`zoo`]), ONNX Runtime and its
//! execution providers ([`runtime`]), running a backbone ([`backbone`],
//! [`pool`]), bringing a user's model in ([`add`], [`config`], [`onnx_data`]),
//! fetching real weights ([`fetch`]), int8 quantisation ([`quantize`]) and
//! OpenVINO through ONNX Runtime's plugin provider ([`openvino`]).

pub mod add;
pub mod backbone;
pub mod config;
pub mod cpu;
pub mod fetch;
pub mod nvidia;
pub mod onnx_data;
pub mod openvino;
pub(crate) mod placement;
pub(crate) mod pool;
pub(crate) mod proto;
#[cfg(feature = "store")]
pub mod quantize;
pub mod runtime;
pub mod scripts;
pub mod zoo;
