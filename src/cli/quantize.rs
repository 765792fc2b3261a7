//! `xfer quantize`: a zoo model → a calibrated INT8 model with its agreement report.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use xfer::images::dataset;
use xfer::models::cpu::Int8Support;
use xfer::models::quantize::{self, Method, Outcome, Phase, QuantizeConfig};
use xfer::models::runtime::Runtime;
use xfer::models::zoo::{Agreement, Manifest, Quantization, Zoo};

use super::Cli;

#[derive(Args, Debug)]
#[command(after_long_help = "Examples:
  xfer quantize --model efficientnet_lite0 --calib photos/train
  xfer quantize --model efficientnet_lite0 --calib photos/train --n 128 --method entropy --name lite0_q
  xfer quantize --model efficientnet_lite0 --calib photos/train --reduce-range   (CPUs without VNNI)
  then: xfer extract --model efficientnet_lite0_int8 --data photos/train --out train_int8.h5

The calibration images are preprocessed by xfer (the model's own recipe) and fed as
tensors to ONNX Runtime's static quantiser (tools/quantize.py: QDQ, per-channel int8
weights, uint8 activations). Some images are held back; the int8 model's features on
them are compared with the fp32 model's (cosine; top-1 agreement when the model has
logits). The report is printed and kept in the new manifest's [quantization] table
and in ZOO/NAME.agreement.json.")]
pub struct QuantizeArgs {
    /// The fp32 backbone: a name from `xfer models`, or a manifest file (*.toml).
    #[arg(long)]
    model: String,
    /// Folder of calibration images (an image folder, or images without classes);
    /// your own images, like those you will extract features from.
    #[arg(long, value_name = "DIR")]
    calib: PathBuf,
    /// At most this many calibration images, spread over the folder's sorted list.
    #[arg(long, default_value_t = 256)]
    n: usize,
    /// Images held back from calibration to measure the agreement (at most a
    /// quarter of the folder).
    #[arg(long, default_value_t = 32)]
    holdout: usize,
    /// ONNX Runtime's calibration method.
    #[arg(long, value_enum, default_value_t = MethodArg::Minmax)]
    method: MethodArg,
    /// The new model's name (default: MODEL_int8).
    #[arg(long)]
    name: Option<String>,
    /// 7-bit weights (ONNX Runtime's reduce_range), for CPUs without VNNI
    /// (`xfer info` shows the CPU's int8 instructions).
    #[arg(long)]
    reduce_range: bool,
    /// Replace NAME's model and manifest if they exist.
    #[arg(long)]
    overwrite: bool,
    /// The Python that runs ONNX Runtime's quantiser (else $XFER_PYTHON, else the
    /// Python beside xfer in its environment, else the checkout's .venv, else python3).
    #[arg(long, value_name = "FILE")]
    python: Option<PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object on stdout at the end instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    Minmax,
    Entropy,
    Percentile,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Minmax => Method::MinMax,
            MethodArg::Entropy => Method::Entropy,
            MethodArg::Percentile => Method::Percentile,
        }
    }
}

pub fn quantize(cli: &Cli, args: &QuantizeArgs) -> Result<i32> {
    let zoo = Zoo::locate(cli.zoo.as_deref());
    let source = zoo.find(&args.model)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}_int8", source.name));
    let manifest_path = check_outputs(args, &zoo, &source, &name)?;
    let _lock = xfer::util::lock::OutputLock::acquire(&manifest_path)?;
    // The quantiser script: the checkout's tools/quantize.py, else the copy this
    // binary carries (an installed xfer has no checkout).
    let python = xfer::models::scripts::python(args.python.as_deref());
    let script = xfer::models::scripts::script("quantize.py")?;
    let calib = dataset::scan(&args.calib, None)?;
    for line in dataset::describe_ignored(&calib.ignored, 5) {
        eprintln!("{line}");
    }
    let cpu = Int8Support::detect();
    let command = std::iter::once("xfer".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let cfg = QuantizeConfig {
        source,
        zoo_dir: zoo.dir.clone(),
        calib,
        n: args.n,
        holdout: args.holdout,
        method: args.method.into(),
        reduce_range: args.reduce_range,
        name,
        python,
        script,
        command,
        cpu_int8: cpu.describe(),
    };
    let runtime = Runtime::init(cli.ort_lib.as_deref())?;
    let quiet = args.quiet;
    let out = quantize::quantize(&cfg, &runtime, &mut |phase| {
        if !quiet {
            say_phase(&cfg, phase)
        }
    })
    .with_context(|| format!("quantising {}", cfg.source.name))?;
    for (path, reason) in out.skipped.iter().take(5) {
        eprintln!("skipped {path}: {reason}");
    }
    if args.json {
        print_json(&out)?;
    } else {
        print_done(&cfg, &out, &cpu);
    }
    Ok(0)
}

/// The quantised model's name and files: a valid name, not the source's,
/// files not there (unless --overwrite) and none of them an input. Returns
/// the manifest's path, whose lock guards the three.
fn check_outputs(args: &QuantizeArgs, zoo: &Zoo, source: &Manifest, name: &str) -> Result<PathBuf> {
    if let Err(e) = xfer::models::zoo::check_name(name) {
        bail!("--name: {e} (it names the files NAME.onnx and NAME.toml); choose another --name");
    }
    if name == source.name {
        bail!("--name {name}: that is the source model's name; choose another, e.g. {name}_int8");
    }
    let manifest_path = zoo.dir.join(format!("{name}.toml"));
    let model_path = zoo.dir.join(format!("{name}.onnx"));
    if !args.overwrite {
        for p in [&manifest_path, &model_path] {
            if p.exists() {
                bail!(
                    "{} already exists; pass --overwrite to replace it, or --name to make another",
                    p.display()
                );
            }
        }
    }
    let report_path = zoo.dir.join(format!("{name}.agreement.json"));
    let inputs = source.inputs();
    for p in [&manifest_path, &model_path, &report_path] {
        xfer::util::clobber::refuse_inputs("--name", p, &inputs)?;
    }
    Ok(manifest_path)
}

fn say_phase(cfg: &QuantizeConfig, phase: Phase) {
    match phase {
        Phase::Preprocessing { calib, holdout } => eprintln!(
            "preprocessing {calib} calibration and {holdout} held-back images with {}'s recipe",
            cfg.source.name
        ),
        Phase::Quantizing => eprintln!(
            "quantising with ONNX Runtime ({} {}, {})",
            cfg.python.display(),
            cfg.script.display(),
            cfg.method.as_str()
        ),
        Phase::Measuring => eprintln!("measuring the agreement on the held-back images"),
    }
}

/// The `[quantization]` table quantize writes, with its agreement report.
fn table(out: &Outcome) -> (&Quantization, &Agreement) {
    let q = out
        .manifest
        .quantization
        .as_ref()
        .expect("quantize writes the table");
    let a = q
        .agreement
        .as_ref()
        .expect("quantize measures the agreement");
    (q, a)
}

fn print_json(out: &Outcome) -> Result<()> {
    let (q, _) = table(out);
    let json = serde_json::json!({
        "command": "quantize",
        "model": out.manifest.name,
        "manifest": out.manifest_path,
        "onnx": out.manifest.onnx_path(),
        "report": out.report_path,
        "quantization": q,
        "skipped_files": out.skipped.len(),
        "quantizer_seconds": out.quantizer_seconds,
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn print_done(cfg: &QuantizeConfig, out: &Outcome, cpu: &Int8Support) {
    let (q, a) = table(out);
    println!(
        "{} → {} ({} {}, {} calibration images, {}{}; ONNX Runtime {}, {:.1} s)",
        cfg.source.name,
        out.manifest.name,
        q.precision,
        q.format,
        q.calibration_images,
        q.method,
        if q.reduce_range { ", reduce_range" } else { "" },
        q.ort_version,
        out.quantizer_seconds
    );
    println!(
        "agreement with {} on {} held-back images: feature cosine mean {:.4}, min {:.4}, 5th percentile {:.4}{}",
        cfg.source.name,
        a.images,
        a.cosine_mean,
        a.cosine_min,
        a.cosine_p5,
        a.top1_agreement
            .map(|t| format!("; top-1 agreement {:.3}", t))
            .unwrap_or_default()
    );
    println!(
        "wrote {}, {} and {}",
        out.manifest.onnx_path().display(),
        out.manifest_path.display(),
        out.report_path.display()
    );
    if let Some(w) = super::common::int8_warning(&out.manifest.name, q, cpu) {
        println!("note: {w}");
    }
    println!(
        "next: xfer extract --model {} --data DIR --out FILE.h5",
        out.manifest.name
    );
}
