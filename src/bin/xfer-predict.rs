//! `xfer-predict`: the slim predictor. Classifies images with a bundle from
//! `xfer train` and its backbone(s); the same flags as `xfer predict` (it
//! includes the same front-end code). Built without the `store` and `train`
//! features it links neither HDF5 nor linfa:
//!
//! ```sh
//! cargo build --release --no-default-features --features cuda,tensorrt --bin xfer-predict
//! ```

use std::path::PathBuf;

use clap::Parser;

#[path = "../cli/common.rs"]
mod common;
#[path = "../cli/predict.rs"]
mod predict;
#[path = "../cli/progress.rs"]
mod progress;

/// The version line says which build this is: `xfer package` ships only the
/// slim one, and a full build must not be mistaken for it (it links HDF5).
#[cfg(not(feature = "store"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (slim)");
#[cfg(feature = "store")]
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (full build: links HDF5, not for shipping; `xfer package` builds and ships the slim one)"
);

/// Classify images with a trained head (a bundle from `xfer train`) and the
/// backbone(s) it was trained on. Bad files are skipped and listed; the exit
/// status is 3 when any was skipped, 1 on errors.
#[derive(Parser)]
#[command(name = "xfer-predict", version = VERSION)]
struct Cli {
    /// ONNX Runtime library (else $ORT_DYLIB_PATH, else where tools/setup.sh put it, else the
    /// onnxruntime package of the Python environment xfer is installed in).
    #[arg(long, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
    /// Folder of backbone manifests and ONNX files (else $XFER_ZOO, else ./onnx, else the zoo under XFER_HOME).
    #[arg(long, value_name = "DIR")]
    zoo: Option<PathBuf>,
    #[command(flatten)]
    args: predict::PredictArgs,
}

fn main() {
    common::die_quietly_on_closed_pipe();
    let cli = Cli::parse();
    std::process::exit(common::report(predict::predict(
        &cli.args,
        cli.ort_lib.as_deref(),
        cli.zoo.as_deref(),
    )));
}
