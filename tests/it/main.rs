//! The integration tests, one binary: each file of this folder was a test
//! binary of its own (each linking HDF5, ONNX Runtime and linfa); as modules of
//! one crate they link once. `common` holds what they share, the runner of the
//! `xfer` and `xfer-predict` binaries among it. One test file alone:
//! `cargo test --release --test it audit::`.

mod common;

mod audit;
mod bundle_validation;
mod cli_habits;
mod crash_safety;
mod dataset_walk;
mod decode;
mod export;
mod external_data;
mod extract_cli;
mod fit;
mod fuzz_regressions;
mod heads_bench;
mod heads_cli;
mod heads_fixture;
mod heads_gradcheck;
mod hf_processors;
mod hostile;
mod no_way_in;
mod openvino;
mod parity;
mod predict_cli;
mod predict_e2e;
mod quantize_cli;
mod report_browser;
mod report_cli;
mod resize_safety;
mod resume_checks;
mod runtime_path;
mod shard_merge;
mod ship_e2e;
mod user_backbone;
mod views;
