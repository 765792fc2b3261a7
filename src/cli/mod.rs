//! Argument parsing (clap derive), progress bars and printing.

#[cfg(feature = "train")]
mod audit;
mod common;
mod evaluate;
#[cfg(feature = "ship")]
mod export;
mod extract;
#[cfg(feature = "train")]
mod fit;
mod info;
mod merge;
mod models;
#[cfg(feature = "ship")]
mod package;
mod predict;
mod progress;
mod quantize;
mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use common::{die_quietly_on_closed_pipe, EXIT_SKIPPED};

#[derive(Parser)]
#[command(
    name = "xfer",
    version,
    about = "Transfer learning on images: ONNX backbones → HDF5 features → small heads",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// ONNX Runtime library (else $ORT_DYLIB_PATH, else where tools/setup.sh put it, else the
    /// onnxruntime package of the Python environment xfer is installed in).
    #[arg(long, global = true, value_name = "FILE")]
    ort_lib: Option<PathBuf>,
    /// Folder of backbone manifests (else $XFER_ZOO, else ./onnx, else the zoo under XFER_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    zoo: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Versions, the ONNX Runtime library in use, execution providers, and the zoo's status.
    Info,
    /// List the backbones of the zoo; `models add` adds your own ONNX backbone.
    Models(models::ModelsArgs),
    /// Turn a folder (or a list) of images into an HDF5 feature file, or one shard of it.
    Extract(extract::ExtractArgs),
    /// Join the shard files of `xfer extract --shard I/N` into one feature file.
    Merge(merge::MergeArgs),
    /// Make a calibrated INT8 copy of a zoo model, with its measured agreement report.
    Quantize(quantize::QuantizeArgs),
    /// Time the backbone alone on random input tensors (no decoding).
    BenchModel(extract::BenchArgs),
    /// Train a classifier head (the tutorial's MLP and/or a logistic baseline) on feature files.
    Train(train::TrainArgs),
    /// Score a trained head on labelled feature files.
    Evaluate(evaluate::EvaluateArgs),
    /// Find label errors, duplicates, leakage between splits and outliers in feature files.
    #[cfg(feature = "train")]
    Audit(audit::AuditArgs),
    /// From a folder of photos to a checked classifier: split, extract (cached), train, evaluate; prints the plumbing it runs.
    #[cfg(feature = "train")]
    Fit(fit::FitArgs),
    /// Classify images with a trained head and its backbone(s); CSV and Kaggle output.
    Predict(predict::PredictArgs),
    /// Write the bundle and its backbone(s) as one ONNX file (backbone, pooling, head, softmax).
    #[cfg(feature = "ship")]
    Export(export::ExportArgs),
    /// Gather what classifies images on another machine: the slim xfer-predict, ONNX Runtime, the backbone(s), the bundle, predict.sh.
    #[cfg(feature = "ship")]
    Package(package::PackageArgs),
    /// Print a shell completion script (e.g. `xfer completions bash > ~/.local/share/bash-completion/completions/xfer`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The exit statuses, in one place (also in the README).
const EXIT_CODES: &str = "Exit status: 0 success; 1 error (the message says what to do); \
2 usage error (a bad flag or value); 3 done, but some inputs were skipped (listed).

Progress goes to stderr: a live bar on a terminal, plain lines every 10 % and 30 s \
otherwise (XFER_PROGRESS_INTERVAL=SECONDS), none with --quiet. --json prints one JSON \
object on stdout. xfer prints no colours (NO_COLOR is honoured by clap's help).";

pub fn main() -> i32 {
    let cli = Cli::parse();
    common::report(dispatch(cli))
}

/// Runs a parsed command line (`xfer fit` runs its plumbing commands through here).
fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Info => info::info(&cli),
        Command::Models(args) => models::models(&cli, args),
        Command::Extract(args) => extract::extract(&cli, args),
        Command::Merge(args) => merge::merge(args),
        Command::Quantize(args) => quantize::quantize(&cli, args),
        Command::BenchModel(args) => extract::bench_model(&cli, args),
        Command::Train(args) => train::train(&cli, args),
        Command::Evaluate(args) => evaluate::evaluate(&cli, args),
        #[cfg(feature = "train")]
        Command::Audit(args) => audit::audit(args),
        #[cfg(feature = "train")]
        Command::Fit(args) => fit::fit(&cli, args),
        Command::Predict(args) => {
            predict::predict(args, cli.ort_lib.as_deref(), cli.zoo.as_deref())
        }
        #[cfg(feature = "ship")]
        Command::Export(args) => export::export(&cli, args),
        #[cfg(feature = "ship")]
        Command::Package(args) => package::package(&cli, args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "xfer", &mut std::io::stdout());
            Ok(0)
        }
    }
}
