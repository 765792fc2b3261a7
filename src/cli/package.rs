//! `xfer package`: a folder (and optionally a .tar.gz) that classifies images
//! on another machine.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use xfer::models::runtime;
use xfer::models::zoo::Zoo;
use xfer::ship::bundle::Bundle;
use xfer::ship::package::{self, PackageInputs, Packaged, PredictorSource};
use xfer::ship::predict;

use super::Cli;

/// Gather everything needed to classify images elsewhere into one folder: the
/// slim `xfer-predict` (found, or built with cargo), the ONNX Runtime library,
/// each backbone's manifest and ONNX file, the bundle, a `predict.sh` that
/// passes the right flags, and a README with the command and its output.
#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer package --bundle runs/a/best.safetensors --out classifier
  classifier/predict.sh photos/ --top-k 3
  xfer package --bundle runs/a/best.safetensors --out classifier --tar   # also classifier.tar.gz")]
pub struct PackageArgs {
    /// The bundle written by `xfer train`.
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// The folder to write (it must not exist, unless --overwrite).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also write DIR.tar.gz.
    #[arg(long)]
    tar: bool,
    /// The slim xfer-predict to ship (else one next to xfer, else
    /// target/slim/release/xfer-predict of the source checkout, else built there).
    #[arg(long, value_name = "FILE")]
    predictor: Option<PathBuf>,
    /// Never run cargo: fail when no slim xfer-predict is found.
    #[arg(long)]
    no_build: bool,
    /// Replace an existing DIR (and DIR.tar.gz).
    #[arg(long)]
    overwrite: bool,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also carry ONNX Runtime's OpenVINO plugin and OpenVINO's libraries
    /// (~160 MB), so the package runs `--device openvino` on Intel CPUs. The
    /// plugin is found as for `--device openvino` ($XFER_OPENVINO_LIB, the
    /// set-up location, xfer's Python environment).
    #[arg(long)]
    openvino: bool,
}

fn size(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1} MB", n as f64 / 1e6)
    } else {
        format!("{:.1} kB", n as f64 / 1e3)
    }
}

pub fn package(cli: &Cli, args: &PackageArgs) -> Result<i32> {
    if !args.bundle.is_file() {
        bail!(
            "bundle {} does not exist; train one with `xfer train`",
            args.bundle.display()
        );
    }
    let bundle = Bundle::load(&args.bundle)?;
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let resolved = predict::resolve_backbones(&bundle, &args.bundle, &zoo)?;
    let ort_lib = runtime::find_library(cli.ort_lib.as_deref())?;
    let openvino = if args.openvino {
        let found = xfer::models::openvino::locate_plugin(None)
            .map_err(|e| anyhow::anyhow!("--openvino: {e}"))?;
        Some(found.path)
    } else {
        None
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    if args.predictor.is_none() && !args.no_build && !args.json {
        eprintln!("looking for the slim xfer-predict (building it with cargo if needed: a few minutes the first time)");
    }
    let (predictor, how) =
        package::find_slim_predictor(args.predictor.as_deref(), source, !args.no_build)?;
    let packaged = package::write_package(
        &PackageInputs {
            bundle: &bundle,
            bundle_path: &args.bundle,
            backbones: &resolved,
            predictor: &predictor,
            ort_lib: &ort_lib,
            openvino_plugin: openvino.as_deref(),
        },
        &args.out,
        args.overwrite,
        args.tar,
    )?;
    if args.json {
        let j = serde_json::json!({
            "command": "package",
            "dir": packaged.dir,
            "bytes": packaged.total_bytes(),
            "files": packaged.files.iter().map(|(p, n)| serde_json::json!({"path": p, "bytes": n})).collect::<Vec<_>>(),
            "tarball": packaged.tarball.as_ref().map(|(p, n)| serde_json::json!({"path": p, "bytes": n})),
            "predictor": predictor,
            "predictor_built": how == PredictorSource::Built,
            "ort_lib": ort_lib,
            "openvino_plugin": openvino,
        });
        println!("{j}");
        return Ok(0);
    }
    print_summary(&packaged, &predictor, how);
    Ok(0)
}

fn print_summary(packaged: &Packaged, predictor: &Path, how: PredictorSource) {
    let how = match how {
        PredictorSource::Given => "given",
        PredictorSource::Found => "found",
        PredictorSource::Built => "built now",
    };
    println!(
        "wrote {} ({}, {} files); xfer-predict {how}: {}",
        packaged.dir.display(),
        size(packaged.total_bytes()),
        packaged.files.len(),
        predictor.display()
    );
    for (p, n) in &packaged.files {
        println!("  {:>9}  {}", size(*n), p.display());
    }
    if let Some((t, n)) = &packaged.tarball {
        println!("and {} ({})", t.display(), size(*n));
    }
    println!(
        "classify with: {}/predict.sh PATHS... (see {}/README.md)",
        packaged.dir.display(),
        packaged.dir.display()
    );
}
